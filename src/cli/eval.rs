//! `netc eval model.net --weights W --input image=x.npy --output DIR`

use super::common::{cache, device, named_path};
use super::load::load;
use super::{CliError, CliResult};
use crate::check::Mode;
use crate::diag::did_you_mean;
use crate::exec::bind::{check_input_shape, check_weights, infer_sizes, initial_params, write_bound};
use crate::exec::{DeviceChoice, Executable, Options};
use crate::ir::{Graph, NodeId};
use crate::ops::Op;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file.
    pub file: PathBuf,
    /// Weights (safetensors, PyTorch state_dict names); without it the
    /// parameters are initialised as PyTorch does, from --seed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// An input as NAME=FILE.npy (repeat for each input).
    #[arg(long = "input", value_parser = named_path)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Folder for the outputs, one NAME.npy per model output.
    #[arg(long)]
    pub output: PathBuf,
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Seed for initial parameters when there are no --weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which model, when the file defines several.
    #[arg(long)]
    pub model: Option<String>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Reads `NAME=FILE.npy` arguments for the given input nodes; every input
/// needs exactly one file.
pub fn read_inputs(
    graph: &Graph,
    wanted: &[NodeId],
    given: &[(String, PathBuf)],
    flag: &str,
) -> Result<Vec<(NodeId, Tensor)>, CliError> {
    let name_of = |id: NodeId| match graph.op(id) {
        Op::Input(i) => i.name.clone(),
        _ => String::new(),
    };
    let names: Vec<String> = wanted.iter().map(|&id| name_of(id)).collect();
    let mut out = Vec::new();
    for (name, path) in given {
        let Some(pos) = names.iter().position(|n| n == name) else {
            let hint = match did_you_mean(name, names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "expected {}",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(CliError::new(format!(
                "`{flag} {name}=...`: the model has no such {}",
                flag.trim_start_matches('-')
            ))
            .hint(hint));
        };
        if out.iter().any(|(id, _)| *id == wanted[pos]) {
            return Err(CliError::new(format!("`{name}` is given twice")));
        }
        let t = crate::io::read_npy(path).map_err(|e| CliError::new(e.to_string()))?;
        let ty = graph.ty(wanted[pos]);
        if ty.dtype.is_float() != t.dtype().is_float() {
            return Err(CliError::new(format!(
                "`{}`: {name} must be {}, but the file holds {}",
                path.display(),
                ty.dtype,
                t.dtype()
            ))
            .hint(if ty.dtype.is_float() {
                "save the array as float32"
            } else {
                "save class indices as int64"
            }));
        }
        check_input_shape(graph, wanted[pos], &t).map_err(|msg| {
            CliError::new(format!("`{}`: {msg}", path.display())).hint(
                "`netc check` prints every input's shape; an axis written as a name (like `B`) takes the array's size",
            )
        })?;
        out.push((wanted[pos], t));
    }
    let missing: Vec<&String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| !out.iter().any(|(id, _)| *id == wanted[*i]))
        .map(|(_, n)| n)
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|n| format!("{flag} {n}=FILE.npy")).collect();
        return Err(CliError::new(format!("missing {}", list.join(", "))));
    }
    Ok(out)
}

/// The weights to use: the file (checked against the model) or fresh ones.
pub fn weights(graph: &Graph, path: Option<&Path>, seed: u64) -> Result<BTreeMap<String, Tensor>, CliError> {
    match path {
        Some(p) => {
            let w = crate::io::read_safetensors(p).map_err(|e| CliError::new(e.to_string()))?;
            check_weights(graph, &w, false).map_err(|problems| {
                CliError::new(format!("`{}` does not fit the model:\n  {}", p.display(), problems.join("\n  ")))
                    .hint("weights are a PyTorch state_dict saved with safetensors; `netc check --params` lists the expected names and shapes")
            })?;
            Ok(w)
        }
        None => {
            eprintln!("netc: no --weights; parameters are initialised as PyTorch does (seed {seed})");
            Ok(initial_params(graph, seed))
        }
    }
}

pub fn run(args: Args) -> CliResult {
    let loaded = load(&args.file, Mode::Eval, args.model.as_deref())?;
    let g = &loaded.model.graph;
    let outputs: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    // Only the inputs the outputs depend on (not the train section's targets).
    let (live, _) = g.prune(&outputs);
    let wanted: Vec<NodeId> = g
        .inputs
        .iter()
        .copied()
        .filter(|&id| matches!(g.op(id), Op::Input(i) if live.input_named(&i.name).is_some_and(|l| !live.users(l).is_empty())))
        .collect();
    let inputs = read_inputs(g, &wanted, &args.inputs, "--input")?;
    let weights = weights(g, args.weights.as_deref(), args.seed)?;
    let bound: Vec<(NodeId, &Tensor)> = inputs.iter().map(|(id, t)| (*id, t)).collect();
    let sizes = infer_sizes(g, &bound).map_err(CliError::new)?;
    let graph = g.specialize(&sizes).map_err(CliError::new)?;
    let device = device(args.device)?;
    let options = Options {
        cache: cache(args.no_cache),
        target: None,
        source: Some(loaded.source.clone()),
    };
    let mut exe = Executable::new(graph, &outputs, &device, &options).map_err(|e| CliError::new(e.to_string()))?;
    let fail = |e: crate::exec::ExecError| CliError::new(e.to_string());
    write_bound(&mut exe, &weights, &inputs).map_err(fail)?;
    exe.run().map_err(fail)?;
    std::fs::create_dir_all(&args.output)
        .map_err(|e| CliError::new(format!("cannot create `{}`: {e}", args.output.display())))?;
    for (name, id) in &loaded.model.graph.outputs {
        let t = exe.read(*id).map_err(fail)?;
        let path = args.output.join(format!("{name}.npy"));
        crate::io::write_npy(&path, &t).map_err(|e| CliError::new(e.to_string()))?;
        println!("{}: {:?} {}", path.display(), t.shape, t.dtype());
    }
    Ok(())
}
