//! Tokens of `.net` files. logos finds the token boundaries; this module turns
//! them into parser tokens, decoding literals and reporting malformed ones.
//!
//! Lexing never fails: a malformed literal is reported and still yields a
//! token of its kind, so the parser carries on as if it were well formed, and
//! a character that starts no token yields [`Token::Error`], which the parser
//! rejects without a second report (the lexer already explained it).

use crate::diag::{Diagnostic, Span};
use logos::Logos;

/// A token with its byte span, in the shape lalrpop consumes.
pub type Spanned<'src> = (usize, Token<'src>, usize);

#[derive(Clone, Debug, PartialEq)]
pub enum Token<'src> {
    Model,
    Block,
    Input,
    Output,
    Return,
    Train,
    Target,
    True,
    False,
    Ident(&'src str),
    Int(i64),
    Float(f64),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Semi,
    Eq,
    Pipe,
    Plus,
    Minus,
    Star,
    Slash,
    SlashSlash,
    Percent,
    At,
    /// A line break that ends a statement. The raw token stream has one per
    /// `\n`; [`super::layout`] keeps only those that separate statements.
    Newline,
    /// Characters that start no token; already reported by the lexer.
    Error,
}

impl Token<'_> {
    pub fn keyword(&self) -> Option<&'static str> {
        Some(match self {
            Token::Model => "model",
            Token::Block => "block",
            Token::Input => "input",
            Token::Output => "output",
            Token::Return => "return",
            Token::Train => "train",
            Token::Target => "target",
            Token::True => "true",
            Token::False => "false",
            _ => return None,
        })
    }

    /// The fixed spelling of punctuation tokens.
    pub fn punct(&self) -> Option<&'static str> {
        Some(match self {
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Semi => ";",
            Token::Eq => "=",
            Token::Pipe => "|>",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::SlashSlash => "//",
            Token::Percent => "%",
            Token::At => "@",
            _ => return None,
        })
    }

    /// Infix operators: a line that starts with one continues the previous
    /// line, and a line that ends with one continues on the next.
    pub fn is_infix_operator(&self) -> bool {
        matches!(
            self,
            Token::Pipe
                | Token::Plus
                | Token::Minus
                | Token::Star
                | Token::Slash
                | Token::SlashSlash
                | Token::Percent
                | Token::At
        )
    }
}

/// Token boundaries. Malformed literals get patterns of their own so that
/// they are reported as one unit with a specific message.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\f]+")]
#[logos(skip(r"#[^\n]*", allow_greedy = true))]
enum Raw {
    #[token("\n")]
    Newline,
    #[token("model")]
    Model,
    #[token("block")]
    Block,
    #[token("input")]
    Input,
    #[token("output")]
    Output,
    #[token("return")]
    Return,
    #[token("train")]
    Train,
    #[token("target")]
    Target,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident,
    #[regex(r"[0-9][0-9_]*", priority = 10)]
    Int,
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*([eE][+-]?[0-9][0-9_]*)?", priority = 10)]
    #[regex(r"[0-9][0-9_]*[eE][+-]?[0-9][0-9_]*", priority = 10)]
    Float,
    /// Anything else that starts with a digit and runs on with letters or a
    /// dot, like `3.`, `1e`, `0x1F` or `2x`; the valid forms above win ties.
    #[regex(r"[0-9][0-9A-Za-z_]*(\.[0-9A-Za-z_]*)?", priority = 1)]
    BadNumber,
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    Str,
    /// Strings end at the line: an unclosed one then swallows a single line
    /// rather than the rest of the file.
    #[regex(r#""([^"\\\n]|\\[^\n])*\\?"#)]
    UnterminatedStr,
    /// `'...'` and `“...”`: strings in the wrong quotes.
    #[regex(r#"'([^'\\\n]|\\[^\n])*'?"#)]
    #[regex(r#"“[^”\n]*”"#)]
    WrongQuotes,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(";")]
    Semi,
    #[token("=")]
    Eq,
    #[token("|>")]
    Pipe,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("//")]
    SlashSlash,
    #[token("%")]
    Percent,
    #[token("@")]
    At,
}

/// The tokens of `src`, one [`Token::Newline`] per line break, and the
/// problems found in them.
pub fn tokenize(src: &str) -> (Vec<Spanned<'_>>, Vec<Diagnostic>) {
    let mut tokens: Vec<Spanned<'_>> = Vec::new();
    let mut diags = Vec::new();
    let mut lexer = Raw::lexer(src);
    while let Some(raw) = lexer.next() {
        let span = lexer.span();
        let text = lexer.slice();
        match raw {
            Ok(raw) => cook(raw, text, span, &mut tokens, &mut diags),
            Err(()) => {
                let span = widen_to_char(src, span);
                // One report for a run of unknown characters, not one each.
                match tokens.last_mut() {
                    Some((_, Token::Error, end)) if *end == span.start => *end = span.end,
                    _ => tokens.push((span.start, Token::Error, span.end)),
                }
            }
        }
    }
    for (start, token, end) in &tokens {
        if *token == Token::Error {
            diags.push(unknown_characters(&src[*start..*end], *start..*end));
        }
    }
    (tokens, diags)
}

/// An unterminated string, and the brackets it is taken to end before. A
/// line that ends with `{` is code that opens a body, and closing brackets
/// at the end of the line that the string itself does not open most likely
/// follow the missing quote. What is given back still does what it was
/// meant to.
fn unterminated<'src>(text: &'src str, start: usize, tokens: &mut Vec<Spanned<'src>>, diags: &mut Vec<Diagnostic>) {
    let trimmed = text.trim_end_matches([' ', '\t', '\r']);
    let mut body = trimmed;
    let mut given_back = Vec::new();
    if let Some(rest) = trimmed.strip_suffix('{') {
        body = rest.trim_end_matches([' ', '\t', '\r']);
        given_back.push((start + rest.len(), Token::LBrace));
    } else {
        let opened = trimmed.matches(['(', '[', '{']).count();
        let closed = trimmed.matches([')', ']', '}']).count();
        for _ in opened..closed {
            let Some(c) = body.chars().next_back() else {
                break;
            };
            let closer = match c {
                ')' => Token::RParen,
                ']' => Token::RBracket,
                '}' => Token::RBrace,
                _ => break,
            };
            body = body[..body.len() - 1].trim_end_matches([' ', '\t', '\r']);
            given_back.push((start + body.len(), closer));
        }
    }
    // Closers were found from the end; the stream wants them in order.
    given_back.sort_by_key(|g| g.0);
    diags.push(
        Diagnostic::error("E0003", "unterminated string literal")
            .primary(start..start + 1, "this string is never closed")
            .note("a string ends with `\"` on the line where it starts"),
    );
    let value = unescape(&body[1..], start + 1, diags);
    tokens.push((start, Token::Str(value), start + body.len()));
    tokens.extend(given_back.into_iter().map(|(at, t)| (at, t, at + 1)));
}

/// logos reports an unmatched byte; a diagnostic must cover whole characters.
fn widen_to_char(src: &str, span: Span) -> Span {
    let mut end = span.end.max(span.start + 1).min(src.len());
    while !src.is_char_boundary(end) {
        end += 1;
    }
    span.start..end
}

fn cook<'src>(raw: Raw, text: &'src str, span: Span, tokens: &mut Vec<Spanned<'src>>, diags: &mut Vec<Diagnostic>) {
    let token = match raw {
        Raw::UnterminatedStr => return unterminated(text, span.start, tokens, diags),
        Raw::Newline => Token::Newline,
        Raw::Model => Token::Model,
        Raw::Block => Token::Block,
        Raw::Input => Token::Input,
        Raw::Output => Token::Output,
        Raw::Return => Token::Return,
        Raw::Train => Token::Train,
        Raw::Target => Token::Target,
        Raw::True => Token::True,
        Raw::False => Token::False,
        Raw::Ident => Token::Ident(text),
        Raw::Int => Token::Int(int_value(text, span.clone(), diags)),
        Raw::Float => Token::Float(float_value(text, span.clone(), diags)),
        Raw::BadNumber => {
            diags.push(bad_number(text, span.clone()));
            Token::Int(0)
        }
        Raw::Str => Token::Str(unescape(&text[1..text.len() - 1], span.start + 1, diags)),
        Raw::WrongQuotes => {
            let open = text.chars().next().map_or(1, char::len_utf8);
            let body = text[open..].strip_suffix(['\'', '”']).unwrap_or(&text[open..]);
            let mut d = Diagnostic::error("E0005", "strings are written with straight double quotes")
                .primary(span.clone(), "wrong quotes");
            if !body.contains(['"', '\\']) {
                d = d.help(format!("write `\"{body}\"`"));
            }
            diags.push(d);
            Token::Str(unescape(body, span.start + open, diags))
        }
        Raw::LParen => Token::LParen,
        Raw::RParen => Token::RParen,
        Raw::LBracket => Token::LBracket,
        Raw::RBracket => Token::RBracket,
        Raw::LBrace => Token::LBrace,
        Raw::RBrace => Token::RBrace,
        Raw::Comma => Token::Comma,
        Raw::Colon => Token::Colon,
        Raw::Semi => Token::Semi,
        Raw::Eq => Token::Eq,
        Raw::Pipe => Token::Pipe,
        Raw::Plus => Token::Plus,
        Raw::Minus => Token::Minus,
        Raw::Star => Token::Star,
        Raw::Slash => Token::Slash,
        Raw::SlashSlash => Token::SlashSlash,
        Raw::Percent => Token::Percent,
        Raw::At => Token::At,
    };
    tokens.push((span.start, token, span.end));
}

fn int_value(text: &str, span: Span, diags: &mut Vec<Diagnostic>) -> i64 {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    digits.parse().unwrap_or_else(|_| {
        // The pattern admits only digits, so the one way to fail is overflow.
        diags.push(
            Diagnostic::error("E0007", "integer literal is too large")
                .primary(span, "does not fit in a 64-bit signed integer")
                .note(format!("the largest integer is {}", i64::MAX)),
        );
        0
    })
}

fn float_value(text: &str, span: Span, diags: &mut Vec<Diagnostic>) -> f64 {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => {
            diags.push(
                Diagnostic::error("E0007", "float literal is out of range")
                    .primary(span, "does not fit in a 64-bit float")
                    .note(format!("the largest float is about {:e}", f64::MAX)),
            );
            0.0
        }
    }
}

fn bad_number(text: &str, span: Span) -> Diagnostic {
    let d = Diagnostic::error("E0006", format!("invalid number literal `{text}`"));
    let lower = text.to_ascii_lowercase();
    if let Some(int) = text.strip_suffix('.') {
        d.primary(span, "a decimal point needs a digit after it")
            .help(format!("write `{int}.0`"))
    } else if lower.ends_with('e') && text.starts_with(|c: char| c.is_ascii_digit()) {
        d.primary(span, "the exponent has no digits")
            .help("write the exponent after `e`, as in `1e-3`")
    } else if lower.starts_with("0x") || lower.starts_with("0b") || lower.starts_with("0o") {
        d.primary(span, "not a decimal number")
            .note("only decimal literals are supported")
    } else {
        d.primary(span, "not a number")
            .note("names cannot start with a digit; a number and a name need an operator between them, as in `2 * x`")
    }
}

/// Decodes escapes in a string body that starts at byte `offset` of the file.
fn unescape(body: &str, offset: usize, diags: &mut Vec<Diagnostic>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((j, e)) = chars.next() else {
            // A trailing backslash only occurs in an unterminated string,
            // which is reported already.
            break;
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            _ => {
                let span = offset + i..offset + j + e.len_utf8();
                diags.push(
                    Diagnostic::error("E0004", format!("unknown character escape `\\{}`", e.escape_debug()))
                        .primary(span, "unknown escape")
                        .help("the escapes are `\\n`, `\\t`, `\\r`, `\\0`, `\\\\`, `\\\"` and `\\'`"),
                );
                out.push(e);
            }
        }
    }
    out
}

/// Characters that look like a token but are another code point, from
/// copying text out of documents.
const LOOKALIKES: &[(char, &str)] = &[
    ('“', "\""),
    ('”', "\""),
    ('‘', "'"),
    ('’', "'"),
    ('−', "-"),
    ('–', "-"),
    ('×', "*"),
    ('÷', "/"),
    ('；', ";"),
    ('：', ":"),
    ('，', ","),
    ('（', "("),
    ('）', ")"),
];

fn unknown_characters(text: &str, span: Span) -> Diagnostic {
    let shown: String = text.chars().take(16).flat_map(char::escape_debug).collect();
    let ellipsis = if text.chars().count() > 16 { "…" } else { "" };
    let (message, label) = if text.chars().count() == 1 {
        (format!("unexpected character `{shown}`"), "unexpected character")
    } else {
        (
            format!("unexpected characters `{shown}{ellipsis}`"),
            "unexpected characters",
        )
    };
    let d = Diagnostic::error("E0002", message).primary(span, label);
    let first = text.chars().next();
    if first == Some('|') {
        return d.help("the pipe operator is written `|>`");
    }
    if first == Some('.') {
        return d.note("`.` only appears inside number literals, as in `0.5`");
    }
    match first {
        Some(c) if c.is_alphabetic() => d.note("names are made of ASCII letters, digits and `_`"),
        Some(c) if c.is_whitespace() => d.help(format!("U+{:04X} is a Unicode space; use a plain space", u32::from(c))),
        Some(c) => match LOOKALIKES.iter().find(|(l, _)| *l == c) {
            Some((_, ascii)) => d.help(format!(
                "`{c}` (U+{:04X}) looks like `{ascii}` but is a different character",
                u32::from(c)
            )),
            None => d,
        },
        None => d,
    }
}
