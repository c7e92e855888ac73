//! The step between lexer and parser: it balances delimiters and decides
//! which line breaks end a statement.
//!
//! Delimiters are checked here, before parsing, the way rustc does it: a
//! missing `)` is reported once, at the delimiter, and the parser gets a
//! balanced token stream (stray delimiters dropped, missing closers
//! inserted as empty tokens) so that everything after the mistake still
//! parses. What the parser says inside a region that an unclosed `(` or `[`
//! swallowed is a consequence of the same mistake; those regions are
//! recorded so that its errors there are dropped.
//!
//! Line breaks: inside `( )` and `[ ]` they are whitespace. Inside `{ }` a
//! line break ends a statement, unless the line ends with an infix operator
//! or the next line starts with one (or with `{`), which lets pipelines run
//! over several lines. Outside any braces they are whitespace.

use super::lexer::{Spanned, Token};
use crate::diag::{Diagnostic, Span};

/// Brackets may nest this deep. Beyond it the input is rejected before
/// parsing, so that no stage ever has to recurse through a deeper tree.
pub const MAX_NESTING: usize = 200;

pub struct Layout<'src> {
    /// What the parser reads.
    pub tokens: Vec<Spanned<'src>>,
    pub diagnostics: Vec<Diagnostic>,
    /// Regions swallowed by an unclosed `(` or `[`.
    pub poisoned: Vec<Span>,
    /// The insides of `train { ... }`, for hints about `key: value`.
    pub train_bodies: Vec<Span>,
    /// Brackets nest beyond [`MAX_NESTING`]: `tokens` stops there and must
    /// not be parsed.
    pub too_deep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delim {
    Paren,
    Bracket,
    Brace,
}

impl Delim {
    fn of_opener(token: &Token) -> Option<Delim> {
        match token {
            Token::LParen => Some(Delim::Paren),
            Token::LBracket => Some(Delim::Bracket),
            Token::LBrace => Some(Delim::Brace),
            _ => None,
        }
    }

    fn of_closer(token: &Token) -> Option<Delim> {
        match token {
            Token::RParen => Some(Delim::Paren),
            Token::RBracket => Some(Delim::Bracket),
            Token::RBrace => Some(Delim::Brace),
            _ => None,
        }
    }

    fn open(self) -> &'static str {
        match self {
            Delim::Paren => "(",
            Delim::Bracket => "[",
            Delim::Brace => "{",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Delim::Paren => ")",
            Delim::Bracket => "]",
            Delim::Brace => "}",
        }
    }

    fn opener(self) -> Token<'static> {
        match self {
            Delim::Paren => Token::LParen,
            Delim::Bracket => Token::LBracket,
            Delim::Brace => Token::LBrace,
        }
    }

    fn closer(self) -> Token<'static> {
        match self {
            Delim::Paren => Token::RParen,
            Delim::Bracket => Token::RBracket,
            Delim::Brace => Token::RBrace,
        }
    }
}

struct Open {
    delim: Delim,
    span: Span,
    /// This is the `{` of a `train` section.
    train: bool,
}

/// The state of one pass over the raw tokens.
struct Arranger<'a, 'src> {
    src: &'a str,
    /// The raw tokens; those already passed on are left as `Newline`.
    raw: Vec<Spanned<'src>>,
    stack: Vec<Open>,
    out: Layout<'src>,
}

pub fn arrange<'src>(src: &str, raw: Vec<Spanned<'src>>) -> Layout<'src> {
    let end_of_text = raw
        .iter()
        .rev()
        .find(|(_, t, _)| *t != Token::Newline)
        .map_or(0, |(_, _, end)| *end);
    let mut a = Arranger {
        src,
        out: Layout {
            tokens: Vec::with_capacity(raw.len()),
            diagnostics: Vec::new(),
            poisoned: Vec::new(),
            train_bodies: Vec::new(),
            too_deep: false,
        },
        raw,
        stack: Vec::new(),
    };
    let mut line_break = false;
    for i in 0..a.raw.len() {
        let (start, token, end) = std::mem::replace(&mut a.raw[i], (0, Token::Newline, 0));
        if token == Token::Newline {
            line_break = true;
            continue;
        }
        let starts_line = line_break || a.out.tokens.is_empty();
        if line_break {
            a.close_brackets_before_statement(i, &token, start..end);
            if a.ends_statement(&token) {
                let at = a.out.tokens.last().map_or(start, |t| t.2);
                a.out.tokens.push((at, Token::Newline, at));
            }
            line_break = false;
        }
        if let Some(delim) = Delim::of_opener(&token) {
            if a.stack.len() == MAX_NESTING {
                a.out.diagnostics.push(
                    Diagnostic::error("E0011", "brackets nest too deeply")
                        .primary(start..end, format!("more than {MAX_NESTING} levels deep"))
                        .note(format!(
                            "parentheses, brackets and braces may nest at most {MAX_NESTING} levels"
                        )),
                );
                a.out.too_deep = true;
                return a.out;
            }
            a.open(i, delim, start..end);
        } else if let Some(delim) = Delim::of_closer(&token) {
            a.close(i, delim, start..end, starts_line);
        } else if matches!(token, Token::Model | Token::Block) && !a.stack.is_empty() {
            // Items only appear at the top level, so whatever is still
            // open was meant to be closed before this one.
            let unclosed = std::mem::take(&mut a.stack);
            let d = unclosed_before(&unclosed, start..end, "the next item");
            a.out.diagnostics.push(d);
            let at = a.out.tokens.last().map_or(start, |t| t.2);
            a.close_all(unclosed, at, false);
            a.out.tokens.push((start, token, end));
        } else {
            a.out.tokens.push((start, token, end));
        }
    }
    if !a.stack.is_empty() {
        let mut d = Diagnostic::error("E0008", "this file contains an unclosed delimiter")
            .primary(end_of_text..end_of_text, "the file ends here");
        for o in &a.stack {
            d = d.secondary(o.span.clone(), "unclosed delimiter");
        }
        a.out.diagnostics.push(d);
        let unclosed = std::mem::take(&mut a.stack);
        a.close_all(unclosed, end_of_text, true);
    }
    a.out
}

/// The report for delimiters still open where `what` ("the next item",
/// say) starts, at `next`: the innermost one is the likely culprit.
fn unclosed_before(unclosed: &[Open], next: Span, what: &str) -> Diagnostic {
    let mut d = Diagnostic::error("E0008", "unclosed delimiter");
    for (i, o) in unclosed.iter().enumerate().rev() {
        d = if i + 1 == unclosed.len() {
            d.primary(o.span.clone(), "unclosed delimiter")
        } else {
            d.secondary(o.span.clone(), "also unclosed")
        };
    }
    let closers: Vec<String> = unclosed
        .iter()
        .rev()
        .map(|o| format!("`{}`", o.delim.close()))
        .collect();
    d.secondary(next, format!("{what} starts here"))
        .help(format!("add {} before {what}", closers.join(" and ")))
}

fn stray_closer(delim: Delim, span: Span) -> Diagnostic {
    Diagnostic::error("E0010", format!("unexpected closing delimiter: `{}`", delim.close()))
        .primary(span, "unexpected closing delimiter")
        .help("delete it, or add the opening delimiter it belongs to")
}

/// Indentation of the line that holds byte `at`.
fn indentation(src: &str, at: usize) -> usize {
    let line_start = src.get(..at).and_then(|s| s.rfind('\n')).map_or(0, |i| i + 1);
    let line = src.get(line_start..).unwrap_or_default();
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

impl Arranger<'_, '_> {
    fn top(&self) -> Option<Delim> {
        self.stack.last().map(|o| o.delim)
    }

    /// Whether a line break before `next` ends a statement.
    fn ends_statement(&self, next: &Token) -> bool {
        let in_braces = self.top() == Some(Delim::Brace);
        let continues = next.is_infix_operator() || *next == Token::LBrace;
        let after_complete = match self.out.tokens.last() {
            Some((_, last, _)) => {
                !last.is_infix_operator() && !matches!(last, Token::LBrace | Token::Semi | Token::Newline)
            }
            None => false,
        };
        in_braces && !continues && after_complete
    }

    /// The raw token after index `i`, if on the same line.
    fn next_on_line(&self, i: usize) -> Option<&Token<'_>> {
        self.raw.get(i + 1).map(|t| &t.1).filter(|t| **t != Token::Newline)
    }

    /// Whether the closer of `delim` follows on the line after index `i`,
    /// at the same depth.
    fn closed_later_on_line(&self, i: usize, delim: Delim) -> bool {
        let mut depth = 0usize;
        for (_, t, _) in self.raw.iter().skip(i + 1) {
            if *t == Token::Newline {
                return false;
            }
            if Delim::of_opener(t).is_some() {
                depth += 1;
            } else if let Some(d) = Delim::of_closer(t) {
                if depth == 0 {
                    return d == delim;
                }
                depth -= 1;
            }
        }
        false
    }

    fn open(&mut self, i: usize, delim: Delim, span: Span) {
        let in_brackets = matches!(self.top(), Some(Delim::Paren | Delim::Bracket));
        let ends_line = self.next_on_line(i).is_none();
        if delim == Delim::Brace && ends_line && in_brackets {
            // A `{` that ends its line opens a body, so the brackets still
            // open before it (a header's `(`) were left unclosed.
            let first = self
                .stack
                .iter()
                .rposition(|o| o.delim == Delim::Brace)
                .map_or(0, |i| i + 1);
            let unclosed = self.stack.split_off(first);
            let d = unclosed_before(&unclosed, span.clone(), "the body");
            self.out.diagnostics.push(d);
            let at = self.out.tokens.last().map_or(span.start, |t| t.2);
            self.close_all(unclosed, at, false);
        }
        let last = self.out.tokens.last().map(|t| &t.1);
        let in_expression = in_brackets
            || last.is_some_and(|t| t.is_infix_operator() || matches!(t, Token::Eq | Token::Colon | Token::Comma));
        let closes_on_line = self.next_on_line(i) == Some(&Token::RBrace);
        if delim == Delim::Brace && !ends_line && !closes_on_line && in_expression {
            // Braces hold bodies, after a header; one amid other tokens
            // where an expression goes was typed by mistake.
            self.out.diagnostics.push(
                Diagnostic::error("E0010", "unexpected opening delimiter: `{`")
                    .primary(span, "unexpected opening delimiter")
                    .note("braces only hold the body of a model, a block or a `train` section"),
            );
            return;
        }
        let train = delim == Delim::Brace && last == Some(&Token::Train);
        self.out.tokens.push((span.start, delim.opener(), span.end));
        self.stack.push(Open { delim, span, train });
    }

    /// A line inside `( )` or `[ ]` that starts like a statement, no deeper
    /// than the line that opened the brackets, is taken for the next
    /// statement: the brackets were left open on the lines before. (A
    /// line of named arguments starts with `name:`, which does not count.)
    fn close_brackets_before_statement(&mut self, i: usize, token: &Token, span: Span) {
        let looks_like_statement = match token {
            Token::Input | Token::Output | Token::Return | Token::Train | Token::Target => true,
            Token::Ident(_) => self.next_on_line(i) == Some(&Token::Eq),
            _ => false,
        };
        if !looks_like_statement {
            return;
        }
        let first = self
            .stack
            .iter()
            .rposition(|o| o.delim == Delim::Brace)
            .map_or(0, |i| i + 1);
        let Some(outer) = self.stack.get(first) else {
            return;
        };
        if indentation(self.src, span.start) > indentation(self.src, outer.span.start) {
            return;
        }
        let unclosed = self.stack.split_off(first);
        self.out
            .diagnostics
            .push(unclosed_before(&unclosed, span.clone(), "the next statement"));
        let at = self.out.tokens.last().map_or(span.start, |t| t.2);
        self.close_all(unclosed, at, false);
    }

    /// Handles the closer of `delim` at raw index `i`.
    fn close(&mut self, i: usize, delim: Delim, span: Span, starts_line: bool) {
        let top = self.top();
        // A `}` that ends a body is followed by the end of its line or by
        // what may follow a body, and starts its line unless it closes a
        // brace on it (`model e {}`). Any other `}` was typed by mistake
        // (into `( )`, or into a word), as was `}` in `[B}]`: the right
        // closer follows.
        let ends_body = matches!(
            self.next_on_line(i),
            None | Some(Token::RBrace | Token::Semi | Token::Model | Token::Block)
        ) && (starts_line || top == Some(Delim::Brace));
        let stray_brace = delim == Delim::Brace && !ends_body;
        if stray_brace || top.is_some_and(|t| t != delim && self.closed_later_on_line(i, t)) {
            self.out.diagnostics.push(stray_closer(delim, span));
        } else if top == Some(delim) {
            self.pop(span);
        } else if let Some(pos) = self.stack.iter().rposition(|o| o.delim == delim) {
            // Everything opened after the matching opener was left open.
            let unclosed = self.stack.split_off(pos + 1);
            let mut d = Diagnostic::error("E0009", format!("mismatched closing delimiter: `{}`", delim.close()))
                .primary(span.clone(), "mismatched closing delimiter");
            for o in &unclosed {
                d = d.secondary(o.span.clone(), "unclosed delimiter");
            }
            d = d.secondary(
                self.stack[pos].span.clone(),
                "closing delimiter possibly meant for this",
            );
            self.out.diagnostics.push(d);
            self.close_all(unclosed, span.start, true);
            self.pop(span);
        } else if let Some(top) = self.stack.last().filter(|o| o.delim != Delim::Brace) {
            // Nothing open takes this closer: most likely the wrong one was
            // typed for the innermost bracket, so it stands in for that.
            let d = Diagnostic::error("E0009", format!("mismatched closing delimiter: `{}`", delim.close()))
                .primary(span.clone(), "mismatched closing delimiter")
                .secondary(top.span.clone(), "unclosed delimiter")
                .help(format!("`{}` is closed by `{}`", top.delim.open(), top.delim.close()));
            self.out.diagnostics.push(d);
            self.pop(span);
        } else {
            self.out.diagnostics.push(stray_closer(delim, span));
        }
    }

    /// Closes the innermost open delimiter with the closer at `span`.
    fn pop(&mut self, span: Span) {
        if let Some(open) = self.stack.pop() {
            if open.train {
                self.out.train_bodies.push(open.span.start..span.end);
            }
            self.out.tokens.push((span.start, open.delim.closer(), span.end));
        }
    }

    /// Inserts empty closers at `at` for the delimiters in `unclosed`
    /// (outermost first). With `poison`, what an unclosed `(` or `[`
    /// swallowed up to `at` is marked as such: it was not where it was
    /// probably meant to close.
    fn close_all(&mut self, unclosed: Vec<Open>, at: usize, poison: bool) {
        if let Some(first) = unclosed.iter().find(|o| o.delim != Delim::Brace) {
            if poison {
                self.out.poisoned.push(first.span.start..at);
            }
        }
        let depth = self.stack.len();
        self.stack.extend(unclosed);
        while self.stack.len() > depth {
            self.pop(at..at);
        }
    }
}
