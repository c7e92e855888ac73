//! Diagnostics shared by every stage: a message with labelled source spans and
//! hints, rendered like rustc's through codespan-reporting.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};
use std::ops::Range;

/// Byte offsets into one source file.
pub type Span = Range<usize>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// One problem found in a `.net` file (or in a file it names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// The label that carries the underline of the main problem.
    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    /// A label pointing at related source, drawn with `-`.
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(format!("note: {}", text.into()));
        self
    }

    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.notes.push(format!("help: {}", text.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Where the main problem is, for messages that do not render spans.
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.iter().find(|l| l.primary).map(|l| l.span.clone())
    }
}

/// A source file as the user wrote it, kept for rendering diagnostics.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Renders diagnostics the way rustc does; `color` adds ANSI styles.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        let file = SimpleFile::new(self.name.as_str(), self.text.as_str());
        let config = Config::default();
        let mut out = Vec::new();
        for d in diagnostics {
            let cs = to_codespan(d, self.text.len());
            let result = if color {
                let mut writer = term::termcolor::Ansi::new(&mut out);
                term::emit_to_write_style(&mut writer, &config, &file, &cs)
            } else {
                term::emit_to_io_write(&mut out, &config, &file, &cs)
            };
            if result.is_err() {
                out.extend_from_slice(format!("error: {}\n", d.message).as_bytes());
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn to_codespan(d: &Diagnostic, len: usize) -> CsDiagnostic<()> {
    let clamp = |s: &Span| s.start.min(len)..s.end.min(len).max(s.start.min(len));
    let base = match d.severity {
        Severity::Error => CsDiagnostic::error(),
        Severity::Warning => CsDiagnostic::warning(),
    };
    base.with_code(d.code)
        .with_message(&d.message)
        .with_labels(
            d.labels
                .iter()
                .map(|l| {
                    let label = if l.primary {
                        CsLabel::primary((), clamp(&l.span))
                    } else {
                        CsLabel::secondary((), clamp(&l.span))
                    };
                    label.with_message(&l.message)
                })
                .collect(),
        )
        .with_notes(d.notes.clone())
}

/// Closest candidate by edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Short names are too close to too much: suggest only for 3+ letters.
    let limit = name.chars().count() / 3;
    candidates
        .into_iter()
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len(), c.to_string()))
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbouring characters counts once
/// (optimal string alignment), since `rleu` for `relu` is a typical typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let f = SourceFile::new("a.net", "ab\ncd");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(4), (2, 2));
    }

    #[test]
    fn suggestions_pick_the_nearest_name() {
        assert_eq!(did_you_mean("rleu", ["relu", "gelu", "tanh"]), Some("relu"));
        assert_eq!(did_you_mean("Conv2D", ["Conv2d", "Linear"]), Some("Conv2d"));
        assert_eq!(did_you_mean("zzzzz", ["relu"]), None);
    }
}
