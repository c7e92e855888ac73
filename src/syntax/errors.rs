//! Turns the parser's errors into diagnostics: "expected X, found Y" in
//! words rather than terminal names, and hints for the mistakes people make.

use super::lexer::{Spanned, Token};
use crate::diag::{did_you_mean, Diagnostic, Span};
use lalrpop_util::ParseError;
use std::convert::Infallible;

/// Sets of terminals that read better as one word. A set is used when all
/// its members are expected and no earlier set took one of them.
const GROUPS: &[(&str, &[&str])] = &[
    ("statement", &["input", "output", "return", "train", "Ident"]),
    ("`target`, `key: value`", &["target", "Ident"]),
    (
        "expression",
        &["Int", "Float", "Str", "true", "false", "Ident", "(", "[", "-"],
    ),
    ("an operator", OPERATORS),
    ("end of statement", &["Newline", ";"]),
];

const OPERATORS: &[&str] = &["|>", "+", "-", "*", "/", "//", "%", "@"];

const DTYPES: &[&str] = &["f16", "bf16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "bool"];

/// What the parser's errors need to know about the file.
pub struct Context<'a, 'src> {
    pub src: &'src str,
    /// The tokens the parser read.
    pub tokens: &'a [Spanned<'src>],
    pub train_bodies: &'a [Span],
    pub poisoned: &'a [Span],
    /// Where the lexer reported malformed tokens: the parser rejecting such
    /// a token says nothing new.
    pub lexer_errors: &'a [Span],
}

/// What the parser expected, as terminal names, before grouping.
struct Expected(Vec<String>);

impl Expected {
    fn new(raw: Vec<String>) -> Self {
        // lalrpop quotes the names of terminals written as strings.
        Expected(
            raw.into_iter()
                .map(|s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(inner) => inner.to_string(),
                    None => s,
                })
                .collect(),
        )
    }

    fn has(&self, terminal: &str) -> bool {
        self.0.iter().any(|t| t == terminal)
    }

    fn is(&self, terminals: &[&str]) -> bool {
        self.0.len() == terminals.len() && terminals.iter().all(|t| self.has(t))
    }

    fn has_group(&self, name: &str) -> bool {
        GROUPS
            .iter()
            .any(|(n, members)| *n == name && members.iter().all(|m| self.has(m)))
    }

    fn phrase(&self) -> String {
        let mut left: Vec<&str> = self.0.iter().map(String::as_str).collect();
        // Where `|>` may follow, so may any operator, if the parser has not
        // reduced the operand yet; it only lists what its state allows.
        if self.has("|>") {
            left.retain(|t| !OPERATORS.contains(t));
            left.extend(OPERATORS);
        }
        // Where a statement or setting may start, an empty one (`;;`) may
        // too; saying so would only distract.
        if self.has_group("statement") || self.has("target") {
            left.retain(|t| !matches!(*t, "Newline" | ";"));
        }
        let mut groups = Vec::new();
        for (name, members) in GROUPS {
            if members.iter().all(|m| left.contains(m)) {
                left.retain(|t| !members.contains(t));
                groups.push(*name);
            }
        }
        // The statement-level groups read best first, the operators and the
        // end of statement last, the way rustc lists them.
        let (first, last): (Vec<&str>, Vec<&str>) = groups
            .into_iter()
            .partition(|g| !matches!(*g, "an operator" | "end of statement"));
        // A group may stand for several items, separated by ", ".
        let mut items: Vec<String> = first
            .into_iter()
            .flat_map(|g| g.split(", "))
            .map(String::from)
            .collect();
        items.extend(left.into_iter().map(describe_terminal));
        items.extend(last.into_iter().map(String::from));
        match items.as_slice() {
            [] => "nothing more".to_string(),
            [one] => one.clone(),
            [a, b] => format!("{a} or {b}"),
            [init @ .., z] => format!("one of {}, or {z}", init.join(", ")),
        }
    }
}

fn describe_terminal(t: &str) -> String {
    match t {
        "Ident" => "identifier".to_string(),
        "Int" => "integer".to_string(),
        "Float" => "float".to_string(),
        "Str" => "string".to_string(),
        "Newline" => "end of line".to_string(),
        _ => format!("`{t}`"),
    }
}

impl<'src> Context<'_, 'src> {
    /// The diagnostic for a parse error, or `None` when the error follows
    /// from a problem that the lexer or the delimiter check reported.
    pub fn diagnose(&self, error: ParseError<usize, Token<'_>, Infallible>) -> Option<Diagnostic> {
        let (span, token, expected) = match error {
            ParseError::UnrecognizedToken {
                token: (l, token, r),
                expected,
            } => (l..r, Some(token), Expected::new(expected)),
            ParseError::UnrecognizedEof { location, expected } => (location..location, None, Expected::new(expected)),
            ParseError::ExtraToken { token: (l, token, r) } => (l..r, Some(token), Expected(Vec::new())),
            ParseError::InvalidToken { location } => (location..location, Some(Token::Error), Expected(Vec::new())),
            ParseError::User { error } => match error {},
        };
        let reported = self
            .lexer_errors
            .iter()
            .any(|e| span.start <= e.start && e.start < span.end);
        // Closers inserted by the delimiter check are empty; whatever the
        // parser says about one, the missing delimiter was reported.
        let inserted = span.is_empty() && matches!(token, Some(Token::RParen | Token::RBracket | Token::RBrace));
        if reported || inserted || self.is_poisoned(span.start) {
            return None;
        }
        let found = match &token {
            Some(t) => self.describe_found(t, &span),
            None => "end of file".to_string(),
        };
        let phrase = expected.phrase();
        let d = Diagnostic::error("E0001", format!("expected {phrase}, found {found}"))
            .primary(span.clone(), format!("expected {phrase}"));
        Some(match token {
            Some(token) => self.hint(d, &token, &span, &expected),
            None => d,
        })
    }

    fn is_poisoned(&self, at: usize) -> bool {
        self.poisoned.iter().any(|p| p.start <= at && at <= p.end)
    }

    fn in_train_body(&self, at: usize) -> bool {
        self.train_bodies.iter().any(|p| p.start < at && at < p.end)
    }

    fn describe_found(&self, token: &Token<'_>, span: &Span) -> String {
        if let Some(kw) = token.keyword() {
            return format!("keyword `{kw}`");
        }
        if let Some(p) = token.punct() {
            return format!("`{p}`");
        }
        match token {
            Token::Newline => "end of line".to_string(),
            Token::Str(_) => format!("string literal `{}`", self.excerpt(span)),
            _ => format!("`{}`", self.excerpt(span)),
        }
    }

    /// The source of a token, cut short if it is long.
    fn excerpt(&self, span: &Span) -> String {
        let text = self.src.get(span.clone()).unwrap_or_default();
        match text.char_indices().nth(24) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        }
    }

    /// The tokens before the one at `span` (the nearest last) and after it.
    fn neighbours(&self, span: &Span) -> (&[Spanned<'src>], Option<&Token<'src>>) {
        match self.tokens.iter().position(|t| t.0 == span.start && t.2 == span.end) {
            Some(i) => (&self.tokens[..i], self.tokens.get(i + 1).map(|t| &t.1)),
            None => (&[], None),
        }
    }

    fn hint(&self, d: Diagnostic, token: &Token<'_>, span: &Span, expected: &Expected) -> Diagnostic {
        let (before, next) = self.neighbours(span);
        let prev = before.last();
        // A line that ends with an operator continues on the next one; an
        // error on that next line is likely the operator's fault.
        let line_start = self.src.get(..span.start).and_then(|s| s.rfind('\n'));
        if let Some(line_start) = line_start {
            let last_before = before.iter().rev().find(|t| t.2 <= line_start);
            if let Some((op_start, op, op_end)) = last_before.filter(|t| t.1.is_infix_operator()) {
                let op = op.punct().unwrap_or_default();
                return d
                    .secondary(*op_start..*op_end, "the expression continues after this operator")
                    .help(format!("complete the expression, or remove the trailing `{op}`"));
            }
        }
        let starts_line = matches!(
            before,
            [] | [
                ..,
                (_, Token::Newline | Token::Semi | Token::LBrace | Token::RBrace, _),
                _
            ]
        );
        if let (Some((_, Token::Ident(word), _)), true) = (prev, starts_line) {
            let keywords = if expected.is(&["model", "block"]) {
                &["model", "block"][..]
            } else {
                &["input", "output", "return", "train", "target"][..]
            };
            if let Some(kw) = misspelled(word, keywords) {
                return d.help(format!("`{word}` is not a keyword; did you mean `{kw}`?"));
            }
        }
        let in_train = self.in_train_body(span.start);
        if let (Some((start, Token::Target, end)), false) = (prev, in_train) {
            if expected.is(&[":"]) {
                return d
                    .secondary(*start..*end, "`target` is a keyword")
                    .note("`target` names an argument (`target: labels`) or declares a target in `train`; it cannot be a value");
            }
        }
        match token {
            Token::Ident(word) if expected.is(&["model", "block"]) => match misspelled(word, &["model", "block"]) {
                Some(kw) => d.help(format!("did you mean `{kw}`?")),
                None => d.help("statements belong inside a `model` or a `block`"),
            },
            _ if expected.is(&["model", "block"]) && token.keyword().is_some() => {
                d.help("statements belong inside a `model` or a `block`")
            }
            Token::Eq if expected.is(&[":"]) && in_train => {
                d.help("`=` is used for bindings; settings in `train` use `key: value`")
            }
            Token::Eq if expected.has(",") && expected.has(")") => d.help("named arguments are written `name: value`"),
            Token::Colon if expected.is(&["="]) && !in_train => match next {
                Some(Token::Ident(t)) if DTYPES.contains(t) => d.help("inputs are declared as `input name: type`"),
                _ => d.help(
                    "bindings are written `name = expr`; `key: value` settings belong in a `train { ... }` section",
                ),
            },
            Token::LParen
                if expected.is(&["{"]) && matches!(before, [.., (_, Token::Model, _), (_, Token::Ident(_), _)]) =>
            {
                d.note("a model takes no parameters; a `block` does")
            }
            Token::Comma if expected.has_group("end of statement") => {
                d.help("statements and settings are separated by line breaks or `;`, not `,`")
            }
            Token::Target if expected.has_group("statement") => {
                d.help("`target` declarations belong in the `train { ... }` section")
            }
            Token::Input | Token::Output | Token::Return | Token::Train if expected.has("target") => {
                d.note("a `train` section holds only `target` declarations and `key: value` settings")
            }
            _ if expected.has("Ident") && !expected.has_group("statement") && !expected.has("target") => {
                match token.keyword() {
                    Some(kw) => d.note(format!("`{kw}` is a keyword and cannot be used as a name")),
                    None => d,
                }
            }
            _ if expected.has_group("end of statement") && starts_statement(token, next) => {
                d.help("put each statement on its own line, or separate them with `;`")
            }
            _ if expected.has(",") && starts_expression(token) => d.help("a `,` may be missing before this"),
            _ => d,
        }
    }
}

/// The keyword that `word` is a typo of (one edit away, a swap counting as one).
fn misspelled(word: &str, keywords: &[&'static str]) -> Option<&'static str> {
    did_you_mean(word, keywords.iter().copied())
}

fn starts_statement(token: &Token<'_>, next: Option<&Token<'_>>) -> bool {
    match token {
        Token::Input | Token::Output | Token::Return | Token::Train | Token::Target => true,
        Token::Ident(_) => matches!(next, Some(Token::Eq | Token::Colon)),
        _ => false,
    }
}

fn starts_expression(token: &Token<'_>) -> bool {
    matches!(
        token,
        Token::Int(_)
            | Token::Float(_)
            | Token::Str(_)
            | Token::True
            | Token::False
            | Token::Ident(_)
            | Token::LParen
            | Token::LBracket
    )
}
