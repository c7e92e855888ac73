//! Reading, parsing and checking a `.net` file for a command.

use super::CliError;
use crate::check::{self, Mode, Model};
use crate::diag::SourceFile;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// A checked model with the source it came from.
pub struct Loaded {
    pub source: SourceFile,
    pub model: Model,
}

/// The file, mode and model of the commands that show a checked model
/// (`check`, `graph`). They flatten it after their own options, so `--train`
/// and `--model` come last in their help.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// The .net file.
    pub file: PathBuf,
    /// Use the training graph (batch statistics, dropout) instead of the inference graph.
    #[arg(long)]
    pub train: bool,
    /// Which model, when the file defines several.
    #[arg(long)]
    pub model: Option<String>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded, CliError> {
        let mode = if self.train { Mode::Train } else { Mode::Eval };
        load(&self.file, mode, self.model.as_deref())
    }
}

/// Reads and checks `path`; prints warnings, and on errors prints them all
/// and fails. `model` picks one model when the file has several.
pub fn load(path: &Path, mode: Mode, model: Option<&str>) -> Result<Loaded, CliError> {
    let source = read_source(path)?;
    let checked = match crate::syntax::parse(&source) {
        Ok(ast) => check::check(&ast, mode),
        Err(diags) => check::Checked {
            models: Vec::new(),
            diagnostics: diags,
        },
    };
    print_diagnostics(&source, &checked.diagnostics);
    if checked.has_errors() {
        let n = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        eprintln!(
            "error: could not check `{}` due to {n} previous error{}",
            source.name,
            if n == 1 { "" } else { "s" }
        );
        return Err(CliError::Reported);
    }
    let mut models = checked.models;
    let index = match model {
        Some(name) => models.iter().position(|m| m.name == name).ok_or_else(|| {
            let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
            CliError::new(format!("`{}` has no model named `{name}`", source.name))
                .hint(format!("models in this file: {}", names.join(", ")))
        })?,
        None => 0,
    };
    let model = models.swap_remove(index);
    Ok(Loaded { source, model })
}

pub fn read_source(path: &Path) -> Result<SourceFile, CliError> {
    let text = std::fs::read(path).map_err(|e| {
        CliError::new(format!("cannot read `{}`: {e}", path.display())).hint("check the path; model files end in .net")
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        CliError::new(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

/// Diagnostics to stderr, in colour on a terminal.
pub fn print_diagnostics(source: &SourceFile, diags: &[crate::diag::Diagnostic]) {
    if diags.is_empty() {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", source.render(diags, color));
}
