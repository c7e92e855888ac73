//! `netc grad model.net --weights W --input x=... --target y=... --output DIR`:
//! the loss and every parameter gradient for one batch, for comparison with
//! another framework.

use super::common::{cache, device, named_path};
use super::eval::{read_inputs, weights};
use super::load::load;
use super::{CliError, CliResult};
use crate::check::Mode;
use crate::exec::bind::{infer_sizes, write_bound};
use crate::exec::{DeviceChoice, Executable, Options};
use crate::ir::NodeId;
use crate::ops::Op;
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file; its `train` section's `loss:` is differentiated.
    pub file: PathBuf,
    /// Weights (safetensors, PyTorch names); default: PyTorch-style init from --seed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// A model input as NAME=FILE.npy.
    #[arg(long = "input", value_parser = named_path)]
    pub inputs: Vec<(String, PathBuf)>,
    /// A train-section target as NAME=FILE.npy.
    #[arg(long = "target", value_parser = named_path)]
    pub targets: Vec<(String, PathBuf)>,
    /// Folder for loss.npy and grads.safetensors.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Seed for initial parameters and dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub no_cache: bool,
}

pub fn run(args: Args) -> CliResult {
    let loaded = load(&args.file, Mode::Train, args.model.as_deref())?;
    let model = &loaded.model;
    let step = crate::train::step::build(model, None, None).map_err(|e| {
        CliError::new(format!("cannot differentiate `{}`: {e}", model.name)).hint("the train section needs `loss:`")
    })?;
    let g = &step.graph;
    let targets: Vec<NodeId> = model.targets.clone();
    let data_inputs: Vec<NodeId> = g
        .inputs
        .iter()
        .copied()
        .filter(|id| !targets.contains(id) && matches!(g.op(*id), Op::Input(i) if i.name != crate::check::library::SEED_INPUT && !i.name.starts_with("optim.")))
        .collect();
    let mut given = read_inputs(g, &data_inputs, &args.inputs, "--input")?;
    given.extend(read_inputs(g, &targets, &args.targets, "--target")?);
    let weights = weights(&model.graph, args.weights.as_deref(), args.seed)?;
    let bound: Vec<(NodeId, &Tensor)> = given.iter().map(|(id, t)| (*id, t)).collect();
    let sizes = infer_sizes(g, &bound).map_err(CliError::new)?;
    let graph = g.specialize(&sizes).map_err(CliError::new)?;
    let mut required = vec![step.loss];
    required.extend(step.grads.iter().map(|(_, gr)| *gr));
    let device = device(args.device)?;
    let options = Options {
        cache: cache(args.no_cache),
        target: None,
        source: Some(loaded.source.clone()),
    };
    let mut exe = Executable::new(graph, &required, &device, &options).map_err(|e| CliError::new(e.to_string()))?;
    let fail = |e: crate::exec::ExecError| CliError::new(e.to_string());
    write_bound(&mut exe, &weights, &given).map_err(fail)?;
    if let Some(seed) = model.seed.filter(|s| exe.plan.slot_of.contains_key(s)) {
        exe.write(seed, &Tensor::i64(vec![], vec![args.seed as i64]))
            .map_err(fail)?;
    }
    exe.run().map_err(fail)?;
    std::fs::create_dir_all(&args.output)
        .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", args.output.display())))?;
    let loss = exe.read(step.loss).map_err(fail)?;
    crate::io::write_npy(args.output.join("loss.npy"), &loss.cast(DType::F32))
        .map_err(|e| CliError::new(e.to_string()))?;
    let mut grads = BTreeMap::new();
    for (p, gr) in &step.grads {
        if let Op::Param(param) = model.graph.op(*p) {
            grads.insert(param.name.clone(), exe.read(*gr).map_err(fail)?);
        }
    }
    crate::io::write_safetensors(args.output.join("grads.safetensors"), &grads)
        .map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "loss {:.6}; {} gradients written to {}",
        loss.to_f64_vec()[0],
        grads.len(),
        args.output.join("grads.safetensors").display()
    );
    Ok(())
}
