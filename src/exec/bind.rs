//! Binding a graph to data: sizes of symbolic dimensions from input
//! tensors, parameters from weight files (checked all at once), fresh
//! parameters when there are no weights.

use super::{ExecError, Executable};
use crate::ir::{fmt_shape, Graph, NodeId};
use crate::ops::Op;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};

/// The sizes of symbols (`B`, `T`) implied by the shapes of given inputs.
/// `inputs` pairs each input node with its tensor.
pub fn infer_sizes(graph: &Graph, inputs: &[(NodeId, &Tensor)]) -> Result<HashMap<String, i64>, String> {
    let mut sizes: HashMap<String, i64> = HashMap::new();
    // Plain symbols first, then check every size (expressions included).
    for &(id, t) in inputs {
        let ty = graph.ty(id);
        let name = &graph.node(id).origin.name;
        check_input_shape(graph, id, t)?;
        for (d, &n) in ty.shape.iter().zip(&t.shape) {
            let syms: Vec<&str> = d.symbols().collect();
            if syms.len() == 1 && *d == crate::ir::Dim::sym(syms[0]) {
                let s = syms[0].to_string();
                match sizes.get(&s) {
                    Some(&v) if v != n as i64 => {
                        return Err(format!(
                            "input `{name}` gives {s} = {n}, but an earlier input gave {s} = {v}"
                        ));
                    }
                    _ => {
                        sizes.insert(s, n as i64);
                    }
                }
            }
        }
    }
    for &(id, t) in inputs {
        let ty = graph.ty(id);
        let name = &graph.node(id).origin.name;
        for (axis, (d, &n)) in ty.shape.iter().zip(&t.shape).enumerate() {
            match d.eval(&sizes) {
                Ok(v) if v == n as i64 => {}
                Ok(v) => {
                    return Err(format!(
                        "input `{name}` should have shape {} but the data is {:?}: axis {axis} is {n}, expected {v}",
                        fmt_shape(&ty.shape),
                        t.shape
                    ))
                }
                Err(sym) => {
                    return Err(format!(
                        "the size `{sym}` of input `{name}` cannot be inferred from the data"
                    ))
                }
            }
        }
    }
    Ok(sizes)
}

/// What one tensor alone can get wrong for an input: its rank, an empty
/// axis, or a size the model fixes. Symbolic sizes need every input, so
/// `infer_sizes` checks those.
pub fn check_input_shape(graph: &Graph, id: NodeId, t: &Tensor) -> Result<(), String> {
    let ty = graph.ty(id);
    let name = &graph.node(id).origin.name;
    let expected = fmt_shape(&ty.shape);
    if t.shape.len() != ty.rank() {
        return Err(format!(
            "input `{name}` should have shape {expected}, but the data has {} axes {:?}",
            t.shape.len(),
            t.shape
        ));
    }
    if t.shape.contains(&0) {
        return Err(format!("input `{name}` is empty (shape {:?})", t.shape));
    }
    for (axis, (d, &n)) in ty.shape.iter().zip(&t.shape).enumerate() {
        if let Some(v) = d.as_const().filter(|&v| v != n as i64) {
            return Err(format!(
                "input `{name}` should have shape {expected} but the data is {:?}: axis {axis} is {n}, expected {v}",
                t.shape
            ));
        }
    }
    Ok(())
}

/// Parameters and buffers of a graph by name, with their nodes.
pub fn param_nodes(graph: &Graph) -> Vec<(String, NodeId)> {
    graph
        .params()
        .into_iter()
        .filter_map(|id| match graph.op(id) {
            Op::Param(p) => Some((p.name.clone(), id)),
            _ => None,
        })
        .collect()
}

/// Writes every parameter from `weights` (which must hold them all, as after
/// [`check_weights`] or [`initial_params`]) and the given input tensors into
/// `exe`. Nodes the plan keeps no buffer for are skipped: the outputs `exe`
/// was compiled for do not read them.
pub fn write_bound(
    exe: &mut Executable,
    weights: &BTreeMap<String, Tensor>,
    inputs: &[(NodeId, Tensor)],
) -> Result<(), ExecError> {
    for (name, id) in param_nodes(&exe.graph) {
        if exe.plan.slot_of.contains_key(&id) {
            exe.write(id, &weights[&name])?;
        }
    }
    for (id, t) in inputs {
        if exe.plan.slot_of.contains_key(id) {
            exe.write(*id, t)?;
        }
    }
    Ok(())
}

/// PyTorch-style initial values for every parameter and buffer.
pub fn initial_params(graph: &Graph, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    graph
        .params()
        .into_iter()
        .filter_map(|id| match graph.op(id) {
            Op::Param(p) => Some((p.name.clone(), p.initial_value(&mut rng))),
            _ => None,
        })
        .collect()
}

/// Checks a weight file's tensors against the model's parameters; every
/// problem (missing, unexpected, wrong shape or dtype) is listed together.
/// Buffers that a file may omit are not required when `buffers_optional`.
pub fn check_weights(
    graph: &Graph,
    weights: &BTreeMap<String, Tensor>,
    buffers_optional: bool,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let params = param_nodes(graph);
    for (name, id) in &params {
        let ty = graph.ty(*id);
        let trainable = matches!(graph.op(*id), Op::Param(p) if p.trainable);
        match weights.get(name) {
            None if !trainable && buffers_optional => {}
            None => problems.push(format!("missing `{name}` ({ty})")),
            Some(t) => {
                let dims = ty.dims().unwrap_or_default();
                if t.shape != dims {
                    problems.push(format!(
                        "`{name}` has shape {:?}, the model expects {}",
                        t.shape,
                        fmt_shape(&ty.shape)
                    ));
                }
                let fits = match ty.dtype {
                    DType::F32 => t.dtype().is_float(),
                    DType::I64 => t.dtype() == DType::I64,
                    DType::F64 => t.dtype().is_float(),
                };
                if !fits {
                    problems.push(format!("`{name}` is {}, the model expects {}", t.dtype(), ty.dtype));
                }
            }
        }
    }
    for name in weights.keys() {
        if !params.iter().any(|(n, _)| n == name) {
            problems.push(format!("unexpected `{name}`: the model has no such parameter"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
