//! `netc bench model.net`: times a model's inference or training step on a
//! device, with random data, and shows where the time goes.

use super::common::{cache, device};
use super::load::load;
use super::{CliError, CliResult};
use crate::check::Mode;
use crate::exec::bind::initial_params;
use crate::exec::{DeviceChoice, Executable, Options};
use crate::ops::Op;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file.
    pub file: PathBuf,
    /// Time the training step (forward, backward, optimizer) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Samples per run (default: the train section's batch, else 32).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed runs, after as many warm-up runs.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
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
    let config = super::run::train_config(&loaded, false)?;
    let batch = args
        .batch
        .or_else(|| config.as_ref().and_then(|c| c.batch_size()))
        .unwrap_or(32);
    if batch == 0 || args.runs == 0 {
        return Err(CliError::new("--batch and --runs must be positive"));
    }
    let (graph, required, scalars) = if args.train {
        let step = super::run::step_graph(&loaded, config.as_ref())?;
        let required = step.required();
        (
            step.graph,
            required,
            config.map(|c| c.optimizer.scalars(1, c.optimizer.lr())),
        )
    } else {
        let g = loaded.model.graph.clone();
        let required = g.outputs.iter().map(|(_, id)| *id).collect();
        (g, required, None)
    };
    let sizes: HashMap<String, i64> = graph.symbols().into_iter().map(|s| (s, batch as i64)).collect();
    let graph = graph.specialize(&sizes).map_err(CliError::new)?;
    let device = device(args.device)?;
    let options = Options {
        cache: cache(args.no_cache),
        target: None,
        source: Some(loaded.source.clone()),
    };
    let compile = Instant::now();
    let mut exe = Executable::new(graph, &required, &device, &options).map_err(|e| CliError::new(e.to_string()))?;
    let compile_seconds = compile.elapsed().as_secs_f64();
    fill_with_random_data(&mut exe, scalars).map_err(|e| CliError::new(e.to_string()))?;
    let fail = |e: crate::exec::ExecError| CliError::new(e.to_string());
    for _ in 0..args.runs {
        exe.run().map_err(fail)?;
    }
    let started = Instant::now();
    for _ in 0..args.runs {
        exe.run().map_err(fail)?;
    }
    let seconds = started.elapsed().as_secs_f64() / args.runs as f64;
    exe.enable_profile();
    for _ in 0..args.runs {
        exe.run().map_err(fail)?;
    }
    println!(
        "{} ({}, batch {batch}) on {}: {:.3} ms per run, {:.0} samples/s; {} kernels, compiled in {:.2} s",
        loaded.model.name,
        if args.train { "training step" } else { "inference" },
        device.describe(),
        seconds * 1e3,
        batch as f64 / seconds,
        exe.program.kernels.len(),
        compile_seconds
    );
    if let Some(report) = exe.profile_report(10) {
        println!("{report}");
    }
    Ok(())
}

/// Parameters as PyTorch initialises them; inputs N(0, 1); class targets in
/// range of the scores; the optimizer's scalars for its first step.
fn fill_with_random_data(exe: &mut Executable, scalars: Option<[f64; 3]>) -> Result<(), crate::exec::ExecError> {
    let params = initial_params(&exe.graph, 0);
    let mut rng = Rng::new(1);
    let leaves: Vec<_> = exe.graph.ids().filter(|id| exe.plan.slot_of.contains_key(id)).collect();
    for id in leaves {
        let dims = exe.graph.ty(id).dims().unwrap_or_default();
        let n: usize = dims.iter().product();
        let t = match exe.graph.op(id) {
            Op::Param(p) => match params.get(&p.name) {
                Some(t) => t.clone(),
                None => Tensor::zeros(p.ty.dtype, dims),
            },
            Op::Input(i) => match (
                i.ty.dtype,
                crate::train::optim::SCALARS.iter().position(|s| *s == i.name),
            ) {
                (_, Some(k)) => Tensor::f32(dims, vec![scalars.map_or(0.0, |s| s[k]) as f32; n]),
                (DType::I64, _) => Tensor::i64(dims, (0..n).map(|_| rng.below(2) as i64).collect()),
                _ => Tensor::f32(dims, (0..n).map(|_| rng.normal() as f32).collect()),
            },
            _ => continue,
        };
        exe.write(id, &t)?;
    }
    Ok(())
}
