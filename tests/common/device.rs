//! Running a graph on the cpu device (the host shim) and comparing it with
//! the reference evaluator.

use netc::codegen::Target;
use netc::device::cache::DiskCache;
use netc::exec::{Device, Executable, Options};
use netc::ir::{Graph, NodeId};
use netc::ops::Op;
use netc::reference::{evaluate, RefTensor};
use netc::tensor::{DType, Tensor};
use std::collections::HashMap;

/// A cache shared by the test binaries, so reruns skip the C++ compiler.
pub fn test_cache() -> DiskCache {
    DiskCache::new(super::scratch().join("netc-cache"))
}

/// max |got − want| / max |want|: the error relative to the tensor's scale.
pub fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let worst = got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    if got.iter().chain(want).any(|v| v.is_nan()) {
        return f64::INFINITY;
    }
    worst / scale
}

/// Values of every leaf, rounded to what the device stores (f32, i64).
pub fn leaf_values(graph: &Graph, values: &HashMap<String, RefTensor<f64>>) -> HashMap<String, RefTensor<f64>> {
    let mut out = HashMap::new();
    for id in graph.ids() {
        let (name, dtype) = match graph.op(id) {
            Op::Input(i) => (i.name.clone(), i.ty.dtype),
            Op::Param(p) => (p.name.clone(), p.ty.dtype),
            _ => continue,
        };
        if let Some(v) = values.get(&name) {
            let rounded = v.to_tensor(dtype).cast(DType::F64);
            out.insert(name, RefTensor::from_tensor(&rounded));
        }
    }
    out
}

/// Runs `required` nodes of a specialised graph on the cpu device with the
/// given schedule, returning their values.
pub fn run_on_cpu(
    graph: &Graph,
    required: &[NodeId],
    values: &HashMap<String, RefTensor<f64>>,
    target: Target,
) -> Vec<Tensor> {
    run_on(&Device::Cpu, graph, required, values, target)
}

/// Runs `required` nodes of a specialised graph on `device`.
pub fn run_on(
    device: &Device,
    graph: &Graph,
    required: &[NodeId],
    values: &HashMap<String, RefTensor<f64>>,
    target: Target,
) -> Vec<Tensor> {
    let options = Options {
        cache: Some(test_cache()),
        target: Some(target),
        source: None,
    };
    let mut exe = Executable::new(graph.clone(), required, device, &options).unwrap_or_else(|e| panic!("compile: {e}"));
    for id in graph.ids() {
        let name = match graph.op(id) {
            Op::Input(i) => &i.name,
            Op::Param(p) => &p.name,
            _ => continue,
        };
        if exe.plan.slot_of.contains_key(&id) {
            if let Some(v) = values.get(name) {
                exe.write(id, &v.to_tensor(graph.ty(id).dtype))
                    .unwrap_or_else(|e| panic!("write {name}: {e}"));
            }
        }
    }
    exe.run().unwrap_or_else(|e| panic!("run: {e}"));
    required
        .iter()
        .map(|&r| exe.read(r).unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}

/// Checks every output of `graph` on the cpu device (both schedules)
/// against the f64 reference, to `tol` relative error.
pub fn check_against_reference(name: &str, graph: &Graph, values: &HashMap<String, RefTensor<f64>>, tol: f64) {
    let device = super::test_device();
    check_on(&device, schedules(&device), name, graph, values, tol);
}

/// Both schedules run on the host shim; a GPU runs its own.
pub fn schedules(device: &Device) -> &'static [Target] {
    match device {
        Device::Cpu => &[Target::Cpu, Target::Gpu],
        Device::Cuda(_) => &[Target::Gpu],
    }
}

/// Checks every output of `graph` on `device` with each schedule against
/// the f64 reference; returns the largest relative error seen.
pub fn check_on(
    device: &Device,
    targets: &[Target],
    name: &str,
    graph: &Graph,
    values: &HashMap<String, RefTensor<f64>>,
    tol: f64,
) -> f64 {
    let values = leaf_values(graph, values);
    let reference = evaluate::<f64>(graph, &values).unwrap_or_else(|e| panic!("{name}: reference: {e}"));
    let outputs: Vec<(String, NodeId)> = graph.outputs.clone();
    let ids: Vec<NodeId> = outputs.iter().map(|(_, id)| *id).collect();
    let mut worst = 0.0f64;
    for &target in targets {
        let got = run_on(device, graph, &ids, &values, target);
        for ((out_name, id), t) in outputs.iter().zip(got) {
            let want = &reference[id.index()].data;
            let err = relative_error(&t.to_f64_vec(), want);
            assert!(
                err <= tol,
                "{name}: output `{out_name}` on the {} schedule: relative error {err:e} > {tol:e}",
                target.name()
            );
            worst = worst.max(err);
        }
    }
    worst
}
