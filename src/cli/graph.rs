//! `netc graph model.net --format text|dot`

use super::load::load;
use super::CliResult;
use crate::check::Mode;
use crate::ir::print;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Text,
    Dot,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Show the training graph (batch statistics, dropout) instead of the inference graph.
    #[arg(long)]
    pub train: bool,
    /// Which model, when the file defines several.
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let mode = if args.train { Mode::Train } else { Mode::Eval };
    let loaded = load(&args.file, mode, args.model.as_deref())?;
    let g = &loaded.model.graph;
    match args.format {
        Format::Text => print!("{}", print::to_text(g, Some(&loaded.source))),
        Format::Dot => print!("{}", print::to_dot(g)),
    }
    Ok(())
}
