//! The parser on hostile input: whatever it is given, it returns a tree or
//! at least one diagnostic whose spans lie within the text, renders it, and
//! neither panics, overflows its stack nor takes long.

use netc::diag::SourceFile;
use netc::syntax::parse;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const VALID: &str = r#"model cifar_cnn {
    input image: f32[B, 3, 32, 32]
    conv1 = Conv2d(3, 32, kernel: 3, padding: 1)
    fc1 = Linear(32 * 16 * 16, 128)
    logits = image |> conv1 |> relu |> max_pool2d(2) |> flatten |> fc1
    output probs = softmax(logits, dim: -1)
    train {
        target label: i64[B]
        data: idx(image: "a.gz", label: "b.gz")
        optimizer: SGD(lr: 0.05, momentum: 0.9)
        metrics: [loss, accuracy]; shuffle: true
    }
}
block residual(x, c) {
    a = Conv2d(c, c, kernel: 3)
    return relu(x + (x |> a |> relu))
}
"#;

const FRAGMENTS: &[&str] = &[
    "model",
    "block",
    "input",
    "output",
    "return",
    "train",
    "target",
    "true",
    "false",
    "x",
    "Conv2d",
    "f32",
    "B",
    "_y1",
    "0",
    "32",
    "1_000",
    "0.5",
    "1e-3",
    "3.",
    "1e",
    "0x1F",
    "99999999999999999999",
    "1e999",
    "\"s\"",
    "\"a\\n\"",
    "\"open",
    "\"bad\\q\"",
    "'q'",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    "=",
    "|>",
    "|",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "@",
    "$",
    "é",
    "\0",
    "“",
    "−",
    "# comment",
    "\n",
    "\n",
    "\n",
];

/// Parses `src` and checks what comes back.
fn check(src: &str) -> Result<(), TestCaseError> {
    let file = SourceFile::new("fuzz.net", src);
    let Err(diags) = parse(&file) else {
        return Ok(());
    };
    prop_assert!(!diags.is_empty(), "an error without a diagnostic");
    for d in &diags {
        prop_assert!(d.is_error());
        prop_assert!(d.primary_span().is_some(), "{d:?}");
        for label in &d.labels {
            let s = &label.span;
            prop_assert!(s.start <= s.end && s.end <= src.len(), "{d:?} out of 0..{}", src.len());
            prop_assert!(src.is_char_boundary(s.start) && src.is_char_boundary(s.end), "{d:?}");
        }
    }
    prop_assert!(!file.render(&diags, false).is_empty());
    Ok(())
}

fn soup() -> impl Strategy<Value = String> {
    let piece = (
        prop::sample::select(FRAGMENTS),
        prop::sample::select(&[" ", "", "\n"][..]),
    );
    prop::collection::vec(piece, 0..160).prop_map(|pieces| pieces.into_iter().flat_map(|(f, sep)| [f, sep]).collect())
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    Swap(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let chars = prop::sample::select(
        &[
            '(', ')', '{', '}', '[', ']', ',', ':', '=', '"', '\n', ' ', '-', '|', '>', 'x', '1', '.', '#', 'é',
        ][..],
    );
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), chars).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Swap),
    ]
}

fn mutated(edits: &[Edit]) -> String {
    let mut chars: Vec<char> = VALID.chars().collect();
    for e in edits {
        let n = chars.len().max(1);
        match *e {
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % n);
            }
            Edit::Delete(_) => {}
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Swap(i) if chars.len() > 1 => chars.swap(i % (n - 1), i % (n - 1) + 1),
            Edit::Swap(_) => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn token_soups_never_break_the_parser(src in soup()) {
        check(&src)?;
    }

    #[test]
    fn arbitrary_characters_never_break_the_parser(chars in prop::collection::vec(any::<char>(), 0..200)) {
        check(&chars.into_iter().collect::<String>())?;
    }

    #[test]
    fn arbitrary_bytes_never_break_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn edits_of_a_valid_program_never_break_the_parser(edits in prop::collection::vec(edit(), 1..6)) {
        check(&mutated(&edits))?;
    }
}

#[test]
fn the_valid_program_is_valid() {
    assert!(parse(&SourceFile::new("valid.net", VALID)).is_ok());
}

/// Parses on a thread with a small stack, so that any recursion as deep as
/// the input shows up as an overflow, and within a time limit far above
/// what a linear parse needs.
fn parse_hostile(name: &str, src: String) -> Vec<&'static str> {
    let started = Instant::now();
    let codes = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || match parse(&SourceFile::new("deep.net", src)) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(|d| d.code).collect::<Vec<_>>(),
        })
        .expect("spawn a parser thread")
        .join()
        .unwrap_or_else(|_| panic!("{name}: the parser panicked"));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    codes
}

#[test]
fn deep_nesting_is_rejected_quickly() {
    let n = 100_000;
    let model = |body: String| format!("model m {{\n    x = {body}\n}}\n");
    let cases = [
        ("parentheses", model(format!("{}1", "(".repeat(n)))),
        ("brackets", model(format!("{}1{}", "[".repeat(n), "]".repeat(n)))),
        ("calls", model(format!("{}1{}", "f(".repeat(n), ")".repeat(n)))),
        (
            "balanced parentheses",
            model(format!("{}1{}", "(".repeat(n), ")".repeat(n))),
        ),
        ("braces", "{".repeat(n)),
        ("negations", model(format!("{}1", "- ".repeat(n)))),
        ("sums", model(format!("1{}", " + 1".repeat(n)))),
        ("pipes", model(format!("x{}", " |> f".repeat(n)))),
        ("pipes over lines", model(format!("x{}", "\n    |> f".repeat(n)))),
    ];
    for (name, src) in cases {
        let codes = parse_hostile(name, src);
        assert_eq!(codes, ["E0011"], "{name}");
    }
}

#[test]
fn long_and_odd_inputs_are_handled_quickly() {
    let n = 1_000_000;
    let model = |body: String| format!("model m {{\n    x = {body}\n}}\n");
    let long_name = model("a".repeat(n));
    assert!(parse_hostile("a long name", long_name).is_empty());
    let long_string = model(format!("\"{}\"", "s".repeat(n)));
    assert!(parse_hostile("a long string", long_string).is_empty());
    assert_eq!(parse_hostile("a long number", model("9".repeat(n))), ["E0007"]);
    assert_eq!(parse_hostile("NULs", "\0".repeat(n)), ["E0002"]);
    // Recovery drops these one by one, each time looking for a state to
    // resume from: it must not be quadratic.
    let junk = model(format!("{}1{}", "- ".repeat(n / 10), " 1".repeat(n / 10)));
    assert_eq!(parse_hostile("junk after negations", junk), ["E0001"]);
    // The `}` then finds the parentheses open; what the parser says about
    // the junk inside them is left out as a consequence.
    let nested_junk = model(format!("{}1{}", "(".repeat(190), " 1".repeat(n / 10)));
    assert_eq!(parse_hostile("junk in parentheses", nested_junk), ["E0009"]);
}

#[test]
fn a_hundred_thousand_tokens_parse_quickly() {
    let mut src = String::from("model big {\n    input x: f32[B, 64]\n");
    for i in 0..10_000 {
        src += &format!("    h{i} = h |> Linear(64, 64) |> relu\n");
    }
    src += "}\n";
    let started = Instant::now();
    assert!(parse(&SourceFile::new("big.net", src)).is_ok());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// One slip of the finger is one mistake: it should read as one or two
/// diagnostics, not as a cascade. Every single-character edit of a valid
/// program is tried.
#[test]
fn single_edits_cause_few_diagnostics() {
    let chars: Vec<char> = VALID.chars().collect();
    let mut counts = Vec::new();
    for i in 0..chars.len() {
        for insert in [
            None,
            Some('('),
            Some(')'),
            Some('{'),
            Some('}'),
            Some('"'),
            Some(','),
            Some('\n'),
        ] {
            let mut edited = chars.clone();
            match insert {
                None => {
                    edited.remove(i);
                }
                Some(c) => edited.insert(i, c),
            }
            let src: String = edited.into_iter().collect();
            let n = parse(&SourceFile::new("edit.net", src.as_str())).map_or_else(|d| d.len(), |_| 0);
            counts.push((n, src));
        }
    }
    let few = counts.iter().filter(|(n, _)| *n <= 2).count();
    assert!(
        few * 100 >= counts.len() * 95,
        "only {few} of {} edits give at most two diagnostics",
        counts.len()
    );
    let (worst, src) = counts.iter().max_by_key(|(n, _)| *n).expect("edits");
    assert!(*worst <= 8, "{worst} diagnostics for one edit:\n{src}");
}
