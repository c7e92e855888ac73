//! The parser: the tree and spans it builds for each construct, and (as
//! snapshots) the diagnostics it renders for each kind of syntax error.

use netc::diag::{Diagnostic, SourceFile, Span};
use netc::syntax::ast::{Arg, Expr, ExprKind, File, Item, Stmt};
use netc::syntax::lexer::{tokenize, Token};
use netc::syntax::{parse, MAX_DEPTH, MAX_NESTING};

const EXAMPLE: &str = r#"# comment to end of line
model cifar_cnn {
    input image: f32[B, 3, 32, 32]
    conv1 = Conv2d(3, 32, kernel: 3, padding: 1)
    fc1   = Linear(32 * 16 * 16, 128)
    fc2   = Linear(128, 10)
    logits = image |> conv1 |> relu |> max_pool2d(2) |> flatten |> fc1 |> relu |> fc2
    output logits
    output probs = softmax(logits, dim: 1)

    train {
        target label: i64[B]
        data: idx(image: "examples/data/train-images.gz", label: "examples/data/train-labels.gz")
        loss: cross_entropy(logits, label, label_smoothing: 0.1)
        optimizer: SGD(lr: 0.05, momentum: 0.9)
        batch: 64
        epochs: 3
        metrics: [loss, accuracy]
        shuffle: true
    }
}

block residual(x, c) {            # reusable blocks; their layers get nested names
    a = Conv2d(c, c, kernel: 3, padding: 1)
    b = Conv2d(c, c, kernel: 3, padding: 1)
    return relu(x + (x |> a |> relu |> b))
}
"#;

fn parse_ok(src: &str) -> File {
    let file = SourceFile::new("test.net", src);
    match parse(&file) {
        Ok(ast) => ast,
        Err(diags) => panic!("{}", file.render(&diags, false)),
    }
}

fn parse_err(src: &str) -> Vec<Diagnostic> {
    match parse(&SourceFile::new("test.net", src)) {
        Ok(ast) => panic!("parsed, but should not have: {ast:?}"),
        Err(diags) => diags,
    }
}

/// What the errors in `src` render to, as a user sees them.
fn rendered(src: &str) -> String {
    let file = SourceFile::new("test.net", src);
    file.render(&parse_err(src), false)
}

fn codes(src: &str) -> Vec<&'static str> {
    parse_err(src).iter().map(|d| d.code).collect()
}

/// A compact, fully parenthesised form of an expression.
fn sx(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Float(v) => format!("{v:?}"),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Name(id) => id.name.clone(),
        ExprKind::List(items) => {
            let items: Vec<String> = items.iter().map(sx).collect();
            format!("[{}]", items.join(" "))
        }
        ExprKind::Call { callee, args } => {
            let mut s = format!("({}", callee.name);
            for Arg { name, value, .. } in args {
                match name {
                    Some(n) => s += &format!(" {}={}", n.name, sx(value)),
                    None => s += &format!(" {}", sx(value)),
                }
            }
            s + ")"
        }
        ExprKind::Pipe { lhs, rhs } => format!("(|> {} {})", sx(lhs), sx(rhs)),
        ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", op.symbol(), sx(lhs), sx(rhs)),
        ExprKind::Neg(inner) => format!("(neg {})", sx(inner)),
    }
}

/// The statements of the only model in `src`.
fn model_body(src: &str) -> Vec<Stmt> {
    match parse_ok(src).items.as_slice() {
        [Item::Model(m)] => m.body.clone(),
        other => panic!("expected one model, got {other:?}"),
    }
}

/// The value bound by `x = ...` in `model m { x = <expr> }`.
fn expr(text: &str) -> Expr {
    match model_body(&format!("model m {{ x = {text} }}")).as_slice() {
        [Stmt::Let { value, .. }] => value.clone(),
        other => panic!("expected one binding, got {other:?}"),
    }
}

fn at(src: &str, span: &Span) -> String {
    src[span.clone()].to_string()
}

#[test]
fn the_reference_example_parses_into_the_expected_tree() {
    let ast = parse_ok(EXAMPLE);
    let [Item::Model(model), Item::Block(block)] = ast.items.as_slice() else {
        panic!("expected a model and a block: {ast:?}");
    };
    assert_eq!(model.name.name, "cifar_cnn");
    assert!(at(EXAMPLE, &model.span).starts_with("model cifar_cnn {"));
    assert!(at(EXAMPLE, &model.span).ends_with("shuffle: true\n    }\n}"));
    let shapes: Vec<String> = model
        .body
        .iter()
        .map(|s| match s {
            Stmt::Input { name, ty, .. } => {
                let dims: Vec<String> = ty.dims.iter().map(sx).collect();
                format!("input {}: {}{:?}", name.name, ty.dtype.name, dims)
            }
            Stmt::Let { name, value, .. } => format!("{} = {}", name.name, sx(value)),
            Stmt::Output { name, value, .. } => {
                format!("output {} {:?}", name.name, value.as_ref().map(sx))
            }
            Stmt::Return { value, .. } => format!("return {}", sx(value)),
            Stmt::Train(t) => format!("train {} {}", t.targets.len(), t.settings.len()),
        })
        .collect();
    assert_eq!(
        shapes,
        [
            r#"input image: f32["B", "3", "32", "32"]"#,
            "conv1 = (Conv2d 3 32 kernel=3 padding=1)",
            "fc1 = (Linear (* (* 32 16) 16) 128)",
            "fc2 = (Linear 128 10)",
            "logits = (|> (|> (|> (|> (|> (|> (|> image conv1) relu) (max_pool2d 2)) flatten) fc1) relu) fc2)",
            "output logits None",
            r#"output probs Some("(softmax logits dim=1)")"#,
            "train 1 7",
        ]
    );
    let stmt_texts: Vec<String> = model.body.iter().map(|s| at(EXAMPLE, s.span())).collect();
    assert_eq!(stmt_texts[0], "input image: f32[B, 3, 32, 32]");
    assert_eq!(stmt_texts[1], "conv1 = Conv2d(3, 32, kernel: 3, padding: 1)");
    assert_eq!(stmt_texts[5], "output logits");
    assert_eq!(stmt_texts[6], "output probs = softmax(logits, dim: 1)");
    assert!(stmt_texts[7].starts_with("train {") && stmt_texts[7].ends_with("shuffle: true\n    }"));

    assert_eq!(block.name.name, "residual");
    let params: Vec<&str> = block.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(params, ["x", "c"]);
    assert_eq!(at(EXAMPLE, &block.params[1].span), "c");
    let Some(Stmt::Return { value, span }) = block.body.last() else {
        panic!("the block ends with a return: {:?}", block.body);
    };
    assert_eq!(sx(value), "(relu (+ x (|> (|> (|> x a) relu) b)))");
    assert_eq!(at(EXAMPLE, span), "return relu(x + (x |> a |> relu |> b))");
}

#[test]
fn the_train_section_keeps_targets_and_settings_in_order() {
    let ast = parse_ok(EXAMPLE);
    let Some(Item::Model(model)) = ast.items.first() else {
        panic!("the example starts with a model");
    };
    let Some(Stmt::Train(train)) = model.body.last() else {
        panic!("the model ends with its train section");
    };
    let [target] = train.targets.as_slice() else {
        panic!("one target: {:?}", train.targets);
    };
    assert_eq!(target.name.name, "label");
    assert_eq!(at(EXAMPLE, &target.span), "target label: i64[B]");
    assert_eq!(at(EXAMPLE, &target.ty.span), "i64[B]");
    let settings: Vec<String> = train
        .settings
        .iter()
        .map(|s| format!("{}: {}", s.key.name, sx(&s.value)))
        .collect();
    assert_eq!(
        settings,
        [
            r#"data: (idx image="examples/data/train-images.gz" label="examples/data/train-labels.gz")"#,
            "loss: (cross_entropy logits label label_smoothing=0.1)",
            "optimizer: (SGD lr=0.05 momentum=0.9)",
            "batch: 64",
            "epochs: 3",
            "metrics: [loss accuracy]",
            "shuffle: true",
        ]
    );
    assert_eq!(at(EXAMPLE, &train.settings[3].span), "batch: 64");
    assert_eq!(at(EXAMPLE, &train.settings[5].value.span), "[loss, accuracy]");
}

#[test]
fn operators_bind_by_precedence_and_associate_left() {
    let cases = [
        ("1 + 2 * 3", "(+ 1 (* 2 3))"),
        ("1 * 2 + 3", "(+ (* 1 2) 3)"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b // c % d @ e", "(@ (% (// (/ a b) c) d) e)"),
        ("-a * b", "(* (neg a) b)"),
        ("- -a", "(neg (neg a))"),
        ("a - -b", "(- a (neg b))"),
        ("-(a + b)", "(neg (+ a b))"),
        ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
        ("a |> f |> g(1)", "(|> (|> a f) (g 1))"),
        ("a + b |> f", "(|> (+ a b) f)"),
        ("x |> f(a + b, k: c * d)", "(|> x (f (+ a b) k=(* c d)))"),
        ("x @ w + b", "(+ (@ x w) b)"),
    ];
    for (text, shape) in cases {
        assert_eq!(sx(&expr(text)), shape, "{text}");
    }
}

#[test]
fn every_expression_node_spans_exactly_its_source() {
    let src = "model m { x = -a * (b + c) |> f(1, k: [2, 3]) }";
    let body = model_body(src);
    let [Stmt::Let { value, span, .. }] = body.as_slice() else {
        panic!("{body:?}")
    };
    assert_eq!(at(src, span), "x = -a * (b + c) |> f(1, k: [2, 3])");
    assert_eq!(at(src, &value.span), "-a * (b + c) |> f(1, k: [2, 3])");
    let ExprKind::Pipe { lhs, rhs } = &value.kind else {
        panic!("{value:?}")
    };
    assert_eq!(at(src, &lhs.span), "-a * (b + c)");
    let ExprKind::Binary { lhs: neg, rhs: sum, .. } = &lhs.kind else {
        panic!("{lhs:?}")
    };
    assert_eq!(at(src, &neg.span), "-a");
    // Parentheses belong to the expression they enclose.
    assert_eq!(at(src, &sum.span), "(b + c)");
    let ExprKind::Call { callee, args } = &rhs.kind else {
        panic!("{rhs:?}")
    };
    assert_eq!(at(src, &rhs.span), "f(1, k: [2, 3])");
    assert_eq!(at(src, &callee.span), "f");
    assert_eq!(at(src, &args[0].span), "1");
    assert_eq!(at(src, &args[1].span), "k: [2, 3]");
    assert_eq!(at(src, &args[1].name.as_ref().expect("named").span), "k");
    assert_eq!(at(src, &args[1].value.span), "[2, 3]");
}

#[test]
fn literals_are_decoded() {
    let cases = [
        ("32", "32"),
        ("1_000_000", "1000000"),
        ("9223372036854775807", "9223372036854775807"),
        ("0.5", "0.5"),
        ("1e-3", "0.001"),
        ("2.5E+2", "250.0"),
        ("1_0.2_5", "10.25"),
        (r#""a\"b\\c\n\t""#, r#""a\"b\\c\n\t""#),
        (r#""ünï""#, r#""ünï""#),
        ("true", "true"),
        ("false", "false"),
        ("[]", "[]"),
        ("[1, [2, 3],]", "[1 [2 3]]"),
        ("f()", "(f)"),
        ("f(1,)", "(f 1)"),
    ];
    for (text, shape) in cases {
        assert_eq!(sx(&expr(text)), shape, "{text}");
    }
}

#[test]
fn types_are_scalars_or_have_dimension_expressions() {
    let src = "model m {\n input s: f32\n input x: f16[B, C * 2, 7]\n}";
    let body = model_body(src);
    let [Stmt::Input { ty: scalar, .. }, Stmt::Input { ty, .. }] = body.as_slice() else {
        panic!("{body:?}")
    };
    assert_eq!(scalar.dtype.name, "f32");
    assert!(scalar.dims.is_empty());
    assert_eq!(at(src, &scalar.span), "f32");
    let dims: Vec<String> = ty.dims.iter().map(sx).collect();
    assert_eq!(dims, ["B", "(* C 2)", "7"]);
    assert_eq!(at(src, &ty.span), "f16[B, C * 2, 7]");
}

#[test]
fn line_breaks_separate_statements_but_not_expressions() {
    let src = "model m {
    # leading pipes continue the line above
    y = x
        |> conv
        |> relu   # comments are fine here
    # so do trailing operators
    z = 1 +
        2
    c = Conv2d(3,
               32,
               kernel: 3,
    )
    a = 1; b = 2;; output a
}";
    let body = model_body(src);
    let shapes: Vec<String> = body
        .iter()
        .map(|s| match s {
            Stmt::Let { name, value, .. } => format!("{} = {}", name.name, sx(value)),
            Stmt::Output { name, .. } => format!("output {}", name.name),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        shapes,
        [
            "y = (|> (|> x conv) relu)",
            "z = (+ 1 2)",
            "c = (Conv2d 3 32 kernel=3)",
            "a = 1",
            "b = 2",
            "output a",
        ]
    );
    assert_eq!(at(src, body[0].span()), "y = x\n        |> conv\n        |> relu");
}

#[test]
fn carriage_returns_braces_on_their_own_line_and_empty_bodies_are_accepted() {
    let src = "model m\r\n{\r\n  input x: f32[B]\r\n  train\r\n  {\r\n    batch: 1\r\n  }\r\n}\r\nblock b()\n{\n}\nmodel e {}";
    let ast = parse_ok(src);
    assert_eq!(ast.items.len(), 3);
    let Item::Model(m) = &ast.items[0] else {
        panic!("{ast:?}")
    };
    assert_eq!(m.body.len(), 2);
    assert!(matches!(&ast.items[1], Item::Block(b) if b.params.is_empty() && b.body.is_empty()));
}

#[test]
fn empty_and_comment_only_files_have_no_items() {
    assert!(parse_ok("").items.is_empty());
    assert!(parse_ok("# nothing here\n\n   # at all").items.is_empty());
}

#[test]
fn keywords_only_match_whole_words() {
    let body = model_body("model m { models = inputs |> train_x |> target2 }");
    let [Stmt::Let { name, value, .. }] = body.as_slice() else {
        panic!("{body:?}")
    };
    assert_eq!(name.name, "models");
    assert_eq!(sx(value), "(|> (|> inputs train_x) target2)");
}

#[test]
fn the_lexer_marks_every_line_break_and_skips_comments() {
    let (tokens, diags) = tokenize("a |> b # c\n\"s\" 1.5");
    assert!(diags.is_empty());
    let kinds: Vec<Token> = tokens.iter().map(|t| t.1.clone()).collect();
    assert_eq!(
        kinds,
        [
            Token::Ident("a"),
            Token::Pipe,
            Token::Ident("b"),
            Token::Newline,
            Token::Str("s".into()),
            Token::Float(1.5),
        ]
    );
    let spans: Vec<(usize, usize)> = tokens.iter().map(|t| (t.0, t.2)).collect();
    assert_eq!(spans, [(0, 1), (2, 4), (5, 6), (10, 11), (11, 14), (15, 18)]);
}

#[test]
fn independent_errors_are_all_reported_once() {
    let src = "model m {
    a = Conv2d(3 32)
    b = relu(a
    c = x |> 3
    train {
        batch = 64
        epochs: 3
    }
}
block b(x) {
    return x +
}
x = 1
";
    assert_eq!(
        codes(src),
        ["E0001", "E0008", "E0012", "E0001", "E0001", "E0001"],
        "{}",
        rendered(src)
    );
}

#[test]
fn expressions_may_nest_up_to_the_limit() {
    // `1 + 1 + ...` with n operators is n + 1 levels deep.
    let limit = usize::try_from(MAX_DEPTH).expect("small") - 1;
    let chain = |n: usize| format!("model m {{ x = 1{} }}", " + 1".repeat(n));
    let ast = parse_ok(&chain(limit));
    // The tree at the limit is still cloned, compared and printed without
    // running out of stack on a test thread.
    assert_eq!(ast.clone(), ast);
    assert!(format!("{ast:?}").len() > limit);
    assert_eq!(codes(&chain(limit + 1)), ["E0011"]);
    // Parentheses add no level of their own, negations do.
    let negations = |n: usize| format!("model m {{ x = {}1{} }}", "(-".repeat(n), ")".repeat(n));
    assert!(parse(&SourceFile::new("t.net", negations(MAX_NESTING - 1))).is_ok());
}

#[test]
fn brackets_may_nest_up_to_the_limit() {
    let nested = |n: usize| format!("model m {{ x = {}1{} }}", "[".repeat(n), "]".repeat(n));
    // The model's braces count too.
    assert!(parse(&SourceFile::new("t.net", nested(MAX_NESTING - 1))).is_ok());
    assert_eq!(codes(&nested(MAX_NESTING)), ["E0011"]);
}

macro_rules! snapshot {
    ($name:ident, $src:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(rendered($src));
        }
    };
}

// E0001: the parser found a token it cannot use.
snapshot!(missing_comma_between_arguments, "model m {\n    c = Conv2d(3 32)\n}\n");
snapshot!(missing_expression_at_end_of_line, "model m {\n    x = \n    y = x\n}\n");
snapshot!(
    equals_sign_in_train_settings,
    "model m {\n    train {\n        batch = 64\n    }\n}\n"
);
snapshot!(colon_in_model_body, "model m {\n    lr: 0.1\n}\n");
snapshot!(input_without_keyword, "model m {\n    x: f32[B]\n}\n");
snapshot!(
    named_argument_with_equals,
    "model m {\n    c = Conv2d(3, 32, kernel=3)\n}\n"
);
snapshot!(keyword_as_name, "model m {\n    y = cross_entropy(logits, target)\n}\n");
snapshot!(target_outside_train, "model m {\n    target y: i64[B]\n}\n");
snapshot!(
    input_inside_train,
    "model m {\n    train {\n        input x: f32\n    }\n}\n"
);
snapshot!(misspelled_statement_keyword, "model m {\n    inptu x: f32[B]\n}\n");
snapshot!(misspelled_item_keyword, "modle m {\n    x = 1\n}\n");
snapshot!(statement_outside_any_item, "x = relu(y)\n");
snapshot!(model_with_parameters, "model m(x) {\n    y = x\n}\n");
snapshot!(two_statements_on_one_line, "model m {\n    a = 1 b = 2\n}\n");
snapshot!(
    comma_between_settings,
    "model m {\n    train {\n        batch: 64,\n        epochs: 3\n    }\n}\n"
);
snapshot!(
    trailing_operator_continues_the_line,
    "model m {\n    a = x +\n    b = 2\n}\n"
);
snapshot!(missing_name_at_end_of_file, "model");
// E0002..E0007: the lexer.
snapshot!(stray_character, "model m {\n    y = x $ 2\n}\n");
snapshot!(stray_characters_in_a_run, "model m {\n    y = x ?!? 2\n}\n");
snapshot!(half_a_pipe, "model m {\n    y = x | relu\n}\n");
snapshot!(lookalike_character, "model m {\n    y = x − 2\n}\n");
snapshot!(control_character, "model m {\n    y = x\u{0} 2\n}\n");
snapshot!(
    unterminated_string,
    "model m {\n    train {\n        data: idx(image: \"a.gz)\n    }\n}\n"
);
snapshot!(
    unknown_escape,
    "model m {\n    train {\n        data: \"C:\\data\"\n    }\n}\n"
);
snapshot!(
    single_quoted_string,
    "model m {\n    train {\n        data: 'a.gz'\n    }\n}\n"
);
snapshot!(decimal_point_without_digits, "model m {\n    x = 3. * y\n}\n");
snapshot!(exponent_without_digits, "model m {\n    x = 1e * y\n}\n");
snapshot!(hexadecimal_number, "model m {\n    x = 0xff\n}\n");
snapshot!(digit_then_letters, "model m {\n    x = 2x\n}\n");
snapshot!(integer_too_large, "model m {\n    x = 99999999999999999999\n}\n");
snapshot!(float_out_of_range, "model m {\n    x = 1e999\n}\n");
// E0008..E0010: delimiters.
snapshot!(
    unclosed_parenthesis_before_next_statement,
    "model m {\n    conv1 = Conv2d(3, 32, kernel: 3\n    fc1 = Linear(32, 10)\n}\n"
);
snapshot!(
    unclosed_brace_before_next_item,
    "model a {\n    y = relu(x)\n\nblock b(x) {\n    return x\n}\n"
);
snapshot!(unclosed_delimiters_at_end_of_file, "model m {\n    y = f(x,\n");
snapshot!(
    mismatched_closing_brace,
    "model m {\n    train {\n        data: idx(image: \"a.gz\"\n    }\n}\n"
);
snapshot!(mismatched_closing_bracket, "model m {\n    x = [1, 2)\n}\n");
snapshot!(unexpected_closing_delimiter, "model m {\n    x = f(y))\n}\n");
// E0011: nesting limits.
snapshot!(
    brackets_nest_too_deeply,
    &format!("model m {{\n    x = {}1\n}}\n", "(\n".repeat(MAX_NESTING))
);
snapshot!(
    expression_nests_too_deeply,
    &format!(
        "model m {{\n    x = 1{}\n}}\n",
        "\n    + 1".repeat(usize::try_from(MAX_DEPTH).expect("small"))
    )
);
// E0012: pipes.
snapshot!(pipe_into_a_literal, "model m {\n    y = x |> 3\n}\n");
snapshot!(pipe_precedence, "model m {\n    y = x |> f + 1\n}\n");
// Several at once.
snapshot!(
    several_independent_errors,
    "model m {\n    input x: f32[B, 3\n    a = Conv2d(3 32)\n    train {\n        batch = 64\n        lr: 0.1\n    }\n}\n\nmodle n {\n    y = 3.\n}\n"
);
snapshot!(stray_brace_inside_parentheses, "model m {\n    c = Conv2d(3, }32)\n}\n");
snapshot!(
    stray_closer_before_the_right_one,
    "model m {\n    input x: f32[B}]\n}\n"
);
snapshot!(stray_opening_brace, "model m {\n    y = x + { 1\n}\n");
snapshot!(unclosed_parenthesis_before_body, "block b(x, c {\n    return x\n}\n");
snapshot!(
    misspelled_train_skips_its_body,
    "model m {\n    trian {\n        batch = 64\n    }\n    output y\n}\n"
);
snapshot!(
    unterminated_string_before_a_brace,
    "model m {\n    x = \"a train {\n        batch: 1\n    }\n}\n"
);
