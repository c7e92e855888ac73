//! The checker's diagnostics, rendered as a user sees them (snapshots): one
//! per class of mistake, and the seed CNN's size error.

use netc::check::{check, Mode};
use netc::diag::SourceFile;
use netc::syntax::parse;

/// Renders every diagnostic of checking `src` (which must parse).
fn render(src: &str) -> String {
    let file = SourceFile::new("model.net", src);
    let ast = parse(&file).unwrap_or_else(|d| panic!("does not parse:\n{}", file.render(&d, false)));
    let checked = check(&ast, Mode::Eval);
    assert!(!checked.diagnostics.is_empty(), "expected diagnostics for:\n{src}");
    file.render(&checked.diagnostics, false)
}

#[test]
fn seed_cnn_size_error() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cifar_cnn_broken.net")).unwrap();
    let file = SourceFile::new("examples/cifar_cnn_broken.net", src);
    let checked = check(&parse(&file).unwrap(), Mode::Eval);
    let text = file.render(&checked.diagnostics, false);
    assert!(text.contains("`fc1` expects 2048 input features but receives 8192"));
    assert!(text.contains("`32 * 16 * 16`"));
    insta::assert_snapshot!(text);
}

#[test]
fn unknown_function_suggests_the_nearest() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 10]\n    y = x |> rleu\n    output y\n}\n"
    ));
}

#[test]
fn unknown_name_suggests_the_nearest() {
    insta::assert_snapshot!(render(
        "model m {\n    input image: f32[B, 10]\n    fc = Linear(10, 2)\n    output y = imgae |> fc\n}\n"
    ));
}

#[test]
fn unknown_layer_type() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 3, 8, 8]\n    conv = Conv2D(3, 4, kernel: 3)\n    output y = x |> conv\n}\n"
    ));
}

#[test]
fn missing_argument() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 3, 8, 8]\n    conv = Conv2d(3, 4)\n    output y = x |> conv\n}\n"
    ));
}

#[test]
fn wrong_argument_kind() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 3, 8, 8]\n    output y = max_pool2d(x, \"2\")\n}\n"
    ));
}

#[test]
fn unknown_named_argument() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 3, 8, 8]\n    conv = Conv2d(3, 4, kernel: 3, paddin: 1)\n    output y = x |> conv\n}\n"
    ));
}

#[test]
fn shape_mismatch_in_arithmetic() {
    insta::assert_snapshot!(render(
        "model m {\n    input a: f32[B, 10]\n    input b: f32[B, 5]\n    output y = a + b\n}\n"
    ));
}

#[test]
fn channel_mismatch_points_at_the_declaration() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 3, 8, 8]\n    conv = Conv2d(4, 8, kernel: 3)\n    output y = x |> conv\n}\n"
    ));
}

#[test]
fn dtype_mismatch() {
    insta::assert_snapshot!(render(
        "model m {\n    input tokens: i64[B, 16]\n    input x: f32[B, 16]\n    output y = x * tokens\n}\n"
    ));
}

#[test]
fn dtype_mismatch_in_a_function() {
    insta::assert_snapshot!(render(
        "model m {\n    input tokens: i64[B, 16]\n    output y = relu(tokens)\n}\n"
    ));
}

#[test]
fn duplicate_name() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 4]\n    fc = Linear(4, 4)\n    fc = Linear(4, 2)\n    output y = x |> fc\n}\n"
    ));
}

#[test]
fn use_before_definition() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 4]\n    h = x |> fc\n    fc = Linear(4, 4)\n    output h\n}\n"
    ));
}

#[test]
fn unused_layer_is_a_warning() {
    let src = "model m {\n    input x: f32[B, 4]\n    fc = Linear(4, 4)\n    extra = Linear(4, 4)\n    output y = x |> fc\n}\n";
    let file = SourceFile::new("model.net", src);
    let checked = check(&parse(&file).unwrap(), Mode::Eval);
    assert!(!checked.has_errors(), "an unused layer is not an error");
    assert_eq!(checked.models.len(), 1);
    insta::assert_snapshot!(file.render(&checked.diagnostics, false));
}

#[test]
fn several_errors_are_all_reported() {
    let text = render(
        "model m {\n    input x: f32[B, 4]\n    a = x |> nosuch\n    b = x + q\n    fc = Linear(5, 2)\n    output y = x |> fc\n}\n",
    );
    assert_eq!(text.matches("error[").count(), 3, "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn block_errors() {
    insta::assert_snapshot!(render(
        "block twice(x) {\n    return twice(x)\n}\n\nmodel m {\n    input x: f32[B, 4]\n    output y = twice(x)\n}\n"
    ));
}

#[test]
fn reshape_that_cannot_fit() {
    insta::assert_snapshot!(render(
        "model m {\n    input x: f32[B, 6]\n    output y = reshape(x, [B, 4])\n}\n"
    ));
}
