//! `netc graph model.net --format text|dot`

use super::load::ModelArgs;
use super::CliResult;
use crate::ir::print;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Text,
    Dot,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> CliResult {
    let loaded = args.model.load()?;
    let g = &loaded.model.graph;
    match args.format {
        Format::Text => print!("{}", print::to_text(g, Some(&loaded.source))),
        Format::Dot => print!("{}", print::to_dot(g)),
    }
    Ok(())
}
