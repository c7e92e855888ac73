//! `netc compile model.net --emit cuda|ptx -o DIR`

use super::common::{bind_symbols, cache, dim_binding};
use super::load::load;
use super::{CliError, CliResult};
use crate::check::Mode;
use crate::codegen::{generate, Target};
use crate::device::cache::write_atomically;
use crate::device::nvrtc::{Nvrtc, Target as Arch};
use crate::exec::NETC_CUH;
use crate::passes::fusion::Fusion;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The CUDA C source (with the netc.cuh header it includes).
    Cuda,
    /// PTX from NVRTC.
    Ptx,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Shared-memory tiles, barriers and warp shuffles (what a GPU runs).
    Gpu,
    /// Barrier-free loops (what the cpu device runs).
    Cpu,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file.
    pub file: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "cuda")]
    pub emit: Emit,
    /// Output folder (created if needed).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Size of a symbolic dimension, e.g. `--dim B=64` (repeatable; default: the
    /// train section's batch for B, else 1).
    #[arg(long = "dim", value_parser = dim_binding)]
    pub dims: Vec<(String, i64)>,
    /// Which schedules to generate.
    #[arg(long, value_enum, default_value = "gpu")]
    pub schedule: Schedule,
    /// GPU architecture for `--emit ptx`, as compute capability digits (`90` = sm_90).
    #[arg(long, default_value_t = 90)]
    pub arch: u32,
    /// Emit the training step (forward, backward, optimizer) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Which model, when the file defines several.
    #[arg(long)]
    pub model: Option<String>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn run(args: Args) -> CliResult {
    let mode = if args.train { Mode::Train } else { Mode::Eval };
    let loaded = load(&args.file, mode, args.model.as_deref())?;
    let model = &loaded.model;
    let config = super::run::train_config(&loaded, args.train)?;
    let (graph, required) = if args.train {
        let step = super::run::step_graph(&loaded, config.as_ref())?;
        let required = step.required();
        (step.graph, required)
    } else {
        (
            model.graph.clone(),
            model.graph.outputs.iter().map(|(_, id)| *id).collect(),
        )
    };
    let mut defaults = HashMap::new();
    if let Some(b) = config.as_ref().and_then(|c| c.batch_size()) {
        defaults.insert("B".to_string(), b as i64);
    }
    let sizes = bind_symbols(&graph.symbols(), &args.dims, &defaults)?;
    let graph = graph.specialize(&sizes).map_err(CliError::new)?;
    let target = match args.schedule {
        Schedule::Gpu => Target::Gpu,
        Schedule::Cpu => Target::Cpu,
    };
    let fusion = Fusion::new(&graph, &required);
    let program = generate(&graph, &fusion, target, Some(&loaded.source)).map_err(|e| CliError::new(e.to_string()))?;
    let source = program.source();
    std::fs::create_dir_all(&args.output)
        .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", args.output.display())))?;
    let stem = if args.train {
        format!("{}_train", model.name)
    } else {
        model.name.clone()
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = args.output.join(name);
        write_atomically(&path, bytes).map_err(|e| CliError::new(format!("cannot write `{}`: {e}", path.display())))?;
        Ok::<PathBuf, CliError>(path)
    };
    let mut sizes_text: Vec<String> = sizes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sizes_text.sort();
    let written = match args.emit {
        Emit::Cuda => {
            write("netc.cuh", NETC_CUH.as_bytes())?;
            write(&format!("{stem}.cu"), source.as_bytes())?
        }
        Emit::Ptx => {
            let nvrtc = Nvrtc::load()
                .map_err(|e| CliError::new(e.to_string()).hint("run scripts/setup.sh, or set NETC_NVRTC"))?;
            let compiled = nvrtc
                .compile_cached(
                    cache(args.no_cache).as_ref(),
                    &source,
                    &[("netc.cuh", NETC_CUH)],
                    Arch::Ptx { compute: args.arch },
                    &[],
                )
                .map_err(|e| {
                    let saved = e.save_failure(&args.output).ok().flatten();
                    let msg = format!("NVRTC rejected the generated kernels: {e}");
                    match saved {
                        Some(p) => CliError::new(msg).hint(format!("the source and log are saved in {}", p.display())),
                        None => CliError::new(msg),
                    }
                })?;
            write(&format!("{stem}.ptx"), compiled.ptx().unwrap_or_default().as_bytes())?
        }
    };
    println!(
        "{}: {} kernels ({} schedule, {}) written to {}",
        loaded.source.name,
        program.kernels.len(),
        target.name(),
        if sizes_text.is_empty() {
            "no symbolic sizes".into()
        } else {
            sizes_text.join(", ")
        },
        written.display()
    );
    Ok(())
}
