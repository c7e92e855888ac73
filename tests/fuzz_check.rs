//! The checker on hostile input: mutated example models and randomly
//! assembled ones go through lexer, parser and checker in both forms; every
//! outcome is a model or diagnostics with spans inside the text, never a
//! panic. Deep block nesting and long models stay within the stack.

use netc::check::{check, Mode};
use netc::diag::SourceFile;
use netc::syntax::parse;
use proptest::prelude::*;

fn examples() -> Vec<String> {
    ["cifar_cnn", "mlp", "mnist_cnn", "resnet", "cifar_cnn_broken"]
        .iter()
        .map(|n| std::fs::read_to_string(format!("{}/examples/{n}.net", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .collect()
}

/// Parses and checks in both forms; asserts every diagnostic is well placed.
fn survive(text: &str) {
    let file = SourceFile::new("fuzz.net", text);
    let Ok(ast) = parse(&file) else { return };
    for mode in [Mode::Eval, Mode::Train] {
        let checked = check(&ast, mode);
        for d in &checked.diagnostics {
            for l in &d.labels {
                assert!(
                    l.span.start <= l.span.end && l.span.end <= text.len(),
                    "label outside the text: {d:?}"
                );
            }
        }
        if checked.has_errors() {
            assert!(checked.diagnostics.iter().any(|d| d.is_error()));
        }
        let _ = file.render(&checked.diagnostics, false);
    }
}

/// Replaces the token-like piece at `at` (a number, a name) by `with`.
fn substitute(text: &str, at: usize, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut start = at.min(text.len());
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    format!("{}{with}{}", &text[..start], &text[end..])
}

const PIECES: &[&str] = &[
    "0",
    "1",
    "-1",
    "3",
    "64",
    "1000000",
    "B",
    "T",
    "x",
    "relu",
    "Linear",
    "Conv2d",
    "flatten",
    "softmax",
    "[2, 2]",
    "[B, -1]",
    "3.5",
    "\"s\"",
    "true",
    "image",
    "logits",
    "fc1",
    "conv1",
    "max_pool2d(2)",
    "reshape",
    "B * 2",
    "residual",
    "label",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_are_checked_without_panics(which in 0usize..5, edits in prop::collection::vec((0usize..4000, 0usize..PIECES.len()), 1..4)) {
        let mut text = examples()[which].clone();
        for (at, piece) in edits {
            let at = at % (text.len() + 1);
            text = substitute(&text, at, PIECES[piece]);
        }
        survive(&text);
    }

    #[test]
    fn random_pipelines_are_checked_without_panics(
        dims in prop::collection::vec(0i64..40, 1..5),
        stages in prop::collection::vec(0usize..12, 0..12),
        args in prop::collection::vec(-3i64..70, 12),
    ) {
        let shape: Vec<String> = dims.iter().map(|d| if *d == 0 { "B".to_string() } else { d.to_string() }).collect();
        let mut text = format!("model m {{\n    input x: f32[{}]\n", shape.join(", "));
        let mut pipe = String::from("x");
        for (i, s) in stages.iter().enumerate() {
            let (a, b) = (args[i % args.len()], args[(i + 1) % args.len()]);
            let stage = match s {
                0 => "relu".to_string(),
                1 => format!("max_pool2d({})", a.abs().max(1)),
                2 => "flatten".to_string(),
                3 => { text += &format!("    l{i} = Linear({a}, {b})\n"); format!("l{i}") }
                4 => { text += &format!("    c{i} = Conv2d({a}, {b}, kernel: {})\n", (a % 5).abs()); format!("c{i}") }
                5 => format!("softmax(dim: {a})"),
                6 => format!("reshape([B, {a}])"),
                7 => format!("transpose({a}, {b})"),
                8 => { text += &format!("    n{i} = BatchNorm2d({a})\n"); format!("n{i}") }
                9 => format!("avg_pool2d({}, padding: {b})", a.abs()),
                10 => format!("mean(dim: [{a}, {b}])"),
                _ => format!("concat([x, x], dim: {a})"),
            };
            pipe = format!("{pipe} |> {stage}");
        }
        text += &format!("    output y = {pipe}\n}}\n");
        survive(&text);
    }
}

#[test]
fn deeply_nested_blocks_and_long_models_stay_on_the_stack() {
    // 100 blocks, each calling the next: the checker stops at its depth limit.
    let mut text = String::new();
    for i in 0..100 {
        text += &format!("block b{i}(x) {{\n    return b{}(x)\n}}\n", i + 1);
    }
    text += "block b100(x) {\n    return relu(x)\n}\nmodel m {\n    input x: f32[B, 4]\n    output y = b0(x)\n}\n";
    let big_stack = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || survive(&text))
        .unwrap();
    big_stack.join().unwrap();
    // 2,000 layers in one model.
    let mut text = String::from("model deep {\n    input x: f32[B, 16]\n    h0 = x\n");
    for i in 0..2000 {
        text += &format!("    l{i} = Linear(16, 16)\n    h{} = h{i} |> l{i} |> relu\n", i + 1);
    }
    text += "    output y = h2000\n}\n";
    let file = SourceFile::new("deep.net", text);
    let checked = check(&parse(&file).unwrap(), Mode::Train);
    assert!(!checked.has_errors());
    assert_eq!(checked.models[0].graph.params().len(), 4000);
}
