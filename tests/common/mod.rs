//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cases;
pub mod device;
pub mod gradcheck;
pub mod nvrtc;
pub mod programs;
pub mod torch;

use netc::ir::{Dim, Graph, NodeId, Origin, TensorType};
use netc::ops::{Init, Param};
use netc::reference::RefTensor;
use netc::rng::Rng;
use netc::tensor::DType;
use std::collections::HashMap;

/// The checkout: `CARGO_MANIFEST_DIR` at run time when set (so test binaries
/// carried to another machine find their data there), else where they were built.
pub fn root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

/// A scratch folder for caches and outputs, likewise overridable at run time.
pub fn scratch() -> std::path::PathBuf {
    std::env::var_os("NETC_TEST_TMPDIR").map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), Into::into)
}

/// Where the device tests run: `NETC_TEST_DEVICE=cuda` (scripts/gpu-check.sh)
/// runs the same tests on a GPU; the default is the cpu device.
pub fn test_device() -> netc::exec::Device {
    match std::env::var("NETC_TEST_DEVICE").as_deref() {
        Ok("cuda") => netc::exec::Device::select(netc::exec::DeviceChoice::Cuda, |_| {})
            .expect("NETC_TEST_DEVICE=cuda needs a GPU"),
        _ => netc::exec::Device::Cpu,
    }
}

/// A graph under construction with random values for its leaves.
pub struct Case {
    pub graph: Graph,
    pub values: HashMap<String, RefTensor<f64>>,
    /// Leaves whose gradients are checked.
    pub diff: Vec<NodeId>,
    pub rng: Rng,
}

impl Case {
    pub fn new(seed: u64) -> Case {
        Case {
            graph: Graph::new("case"),
            values: HashMap::new(),
            diff: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// A differentiable f32 leaf filled with values in [-1, 1).
    pub fn leaf(&mut self, shape: &[usize]) -> NodeId {
        let id = self.leaf_with(shape, |r| r.range(-1.0, 1.0));
        self.diff.push(id);
        id
    }

    /// A leaf with values from `f`, not differentiated.
    pub fn leaf_with(&mut self, shape: &[usize], mut f: impl FnMut(&mut Rng) -> f64) -> NodeId {
        let name = format!("p{}", self.values.len());
        let ty = TensorType::new(DType::F32, shape.iter().map(|&d| Dim::from(d)).collect());
        let param = Param {
            name: name.clone(),
            ty: ty.clone(),
            init: Init::Const(0.0),
            trainable: true,
        };
        let id = self.graph.add_typed(param.into(), &[], ty, Origin::named(name.clone()));
        let n = shape.iter().product();
        let data = (0..n).map(|_| f(&mut self.rng)).collect();
        self.values.insert(
            name,
            RefTensor {
                shape: shape.to_vec(),
                data,
            },
        );
        id
    }

    pub fn add(&mut self, op: impl Into<netc::ops::Op>, operands: &[NodeId]) -> NodeId {
        let op = op.into();
        let label = op.name();
        self.graph
            .add(op, operands, Origin::named(label))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Parses and checks a `.net` file; panics with rendered diagnostics on errors.
pub fn load_model(path: &std::path::Path, mode: netc::check::Mode) -> netc::check::Model {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = netc::diag::SourceFile::new(path.display().to_string(), text);
    let ast = netc::syntax::parse(&file).unwrap_or_else(|d| panic!("{}", file.render(&d, false)));
    let mut checked = netc::check::check(&ast, mode);
    if checked.has_errors() {
        panic!("{}", file.render(&checked.diagnostics, false));
    }
    checked.models.swap_remove(0)
}
