//! Lexer, grammar and syntax tree of `.net` files.
//!
//! The pipeline: [`lexer::tokenize`] → `layout` (delimiters, statement
//! breaks) → the lalrpop parser (grammar/netc.lalrpop), whose actions build
//! the [`ast`] through `builder`; `errors` explains what the parser rejects.

pub mod ast;
mod builder;
mod errors;
mod layout;
pub mod lexer;

pub use builder::MAX_DEPTH;
pub use layout::MAX_NESTING;

use crate::diag::{Diagnostic, SourceFile};

lalrpop_util::lalrpop_mod!(grammar, "/netc.rs");

/// Parses one file. Every syntax error in it is reported, in source order,
/// as far as recovery at statement and item level can find them.
pub fn parse(file: &SourceFile) -> Result<ast::File, Vec<Diagnostic>> {
    let src = file.text.as_str();
    let (raw, mut diagnostics) = lexer::tokenize(src);
    let lexer_errors: Vec<_> = diagnostics.iter().filter_map(Diagnostic::primary_span).collect();
    let layout = layout::arrange(src, raw);
    diagnostics.extend(layout.diagnostics);
    if layout.too_deep {
        return Err(in_source_order(diagnostics));
    }
    let mut builder = builder::Builder::default();
    let result = grammar::FileParser::new().parse(&mut builder, layout.tokens.iter().cloned().map(Ok));
    let context = errors::Context {
        src,
        tokens: &layout.tokens,
        train_bodies: &layout.train_bodies,
        poisoned: &layout.poisoned,
        lexer_errors: &lexer_errors,
    };
    let mut errors: Vec<_> = builder.recovered.into_iter().map(|r| r.error).collect();
    let file = match result {
        Ok(file) => Some(file),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    diagnostics.extend(errors.into_iter().filter_map(|e| context.diagnose(e)));
    diagnostics.extend(builder.diagnostics);
    match file {
        Some(file) if diagnostics.is_empty() => Ok(file),
        // Errors are only dropped above when another diagnostic explains
        // them, so a failed parse never comes back without one.
        _ => Err(in_source_order(diagnostics)),
    }
}

fn in_source_order(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|d| d.primary_span().map_or(0, |s| s.start));
    diagnostics
}
