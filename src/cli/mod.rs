//! The `netc` command line. Each subcommand lives in its own file; user
//! mistakes become diagnostics or one-line errors with a hint, and exit code 1.

mod bench;
mod check;
mod common;
mod compile;
mod eval;
mod grad;
mod graph;
mod load;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "netc",
    version,
    about = "A kernel compiler and JIT for neural-network layer graphs"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a .net file: syntax, names, shapes and dtypes.
    Check(check::Args),
    /// Print a model's graph as text or Graphviz dot.
    Graph(graph::Args),
    /// Generate a model's kernels as CUDA C or PTX.
    Compile(compile::Args),
    /// Evaluate a model on inputs and write its outputs as .npy files.
    Eval(eval::Args),
    /// Train a model as its `train` section describes.
    Run(run::Args),
    /// Write the loss and every parameter gradient for one batch.
    Grad(grad::Args),
    /// Time a model's inference or training step, kernel by kernel.
    Bench(bench::Args),
}

/// A failure to report: already-rendered diagnostics, or a message with a hint.
#[derive(Debug)]
pub enum CliError {
    /// Diagnostics were printed already.
    Reported,
    Message {
        message: String,
        hint: Option<String>,
    },
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError::Message {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(self, hint: impl Into<String>) -> CliError {
        match self {
            CliError::Message { message, .. } => CliError::Message {
                message,
                hint: Some(hint.into()),
            },
            other => other,
        }
    }
}

pub type CliResult = Result<(), CliError>;

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Graph(a) => graph::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Run(a) => run::run(a),
        Command::Grad(a) => grad::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Reported) => ExitCode::from(1),
        Err(CliError::Message { message, hint }) => {
            eprintln!("error: {message}");
            if let Some(h) = hint {
                eprintln!("  hint: {h}");
            }
            ExitCode::from(1)
        }
    }
}
