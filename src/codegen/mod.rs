//! Code generation: each fusion group becomes one kernel in the kernel IR
//! (`kir`), printed as CUDA C by one printer (`cuda`). Ops provide their
//! lowering (`Primitive::inline_value` / `Primitive::lower`); the shared
//! loop schedules live in `templates` and `gemm`.

pub mod ctx;
pub mod cuda;
pub mod gemm;
pub mod kir;
pub mod templates;

use crate::diag::SourceFile;
use crate::ir::{Graph, NodeId};
use crate::passes::fusion::Fusion;
use crate::tensor::DType;
use ctx::{sanitize, CodegenError, KernelCtx};
use std::collections::HashSet;

/// Which schedules to generate. Both run on the host shim; `Gpu` uses shared
/// memory, barriers and warp shuffles, `Cpu` prefers barrier-free loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Gpu,
    Cpu,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Gpu => "gpu",
            Target::Cpu => "cpu",
        }
    }
}

/// A launch of one kernel: its buffers, by the node that owns each, in
/// parameter order (the written buffer first).
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub kernel: usize,
    pub buffers: Vec<NodeId>,
}

/// All kernels of a graph, in execution order, and how to launch them.
#[derive(Clone, Debug)]
pub struct Program {
    pub title: String,
    pub target: Target,
    pub kernels: Vec<kir::Kernel>,
    pub launches: Vec<Launch>,
}

impl Program {
    /// The CUDA C translation unit.
    pub fn source(&self) -> String {
        cuda::print_program(&self.title, &self.kernels)
    }
}

/// Generates the kernels of a specialised graph under a fusion plan.
pub fn generate(
    graph: &Graph,
    fusion: &Fusion,
    target: Target,
    source: Option<&SourceFile>,
) -> Result<Program, CodegenError> {
    check_types(graph, fusion)?;
    let mut kernels = Vec::new();
    let mut launches = Vec::new();
    let mut names = HashSet::new();
    for (index, group) in fusion.groups.iter().enumerate() {
        let mut k = KernelCtx::new(graph, fusion, target, group.root);
        match group.anchor {
            Some(anchor) => graph.op(anchor).lower(&mut k, anchor)?,
            None => templates::elementwise(&mut k),
        }
        let name = unique_name(&mut names, kernel_name(graph, index, group.root, group.anchor));
        let doc = describe(graph, &name, &k, source);
        let buffers = k.param_nodes();
        kernels.push(k.finish(name, doc));
        launches.push(Launch { kernel: index, buffers });
    }
    Ok(Program {
        title: format!("{} ({} schedule)", graph.name, target.name()),
        target,
        kernels,
        launches,
    })
}

fn check_types(graph: &Graph, fusion: &Fusion) -> Result<(), CodegenError> {
    for id in graph.ids() {
        if *fusion.placement(id) == crate::passes::fusion::Placement::Dead {
            continue;
        }
        let node = graph.node(id);
        if node.ty.dtype == DType::F64 {
            return Err(CodegenError::UnsupportedDtype(node.origin.name.clone()));
        }
        let n: usize = node.ty.dims().map(|d| d.iter().product()).unwrap_or(0);
        if n > i32::MAX as usize {
            return Err(CodegenError::TooLarge(node.origin.name.clone(), n));
        }
    }
    Ok(())
}

/// `k03_conv1_conv2d_relu`: position, source name, and what it computes.
fn kernel_name(graph: &Graph, index: usize, root: NodeId, anchor: Option<NodeId>) -> String {
    let root_node = graph.node(root);
    let mut parts = Vec::new();
    match anchor {
        Some(a) => {
            let anchor_node = graph.node(a);
            parts.push(sanitize(&anchor_node.origin.name));
            if anchor_node.origin.name != anchor_node.op.name() {
                parts.push(anchor_node.op.name().to_string());
            }
            if a != root && root_node.origin.name != anchor_node.origin.name {
                parts.push(sanitize(&root_node.origin.name));
            }
        }
        None => parts.push(sanitize(&root_node.origin.name)),
    }
    let mut name = format!("k{index:02}_{}", parts.join("_"));
    name.truncate(60);
    name.trim_end_matches('_').to_string()
}

fn unique_name(used: &mut HashSet<String>, name: String) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !used.insert(candidate.clone()) {
        candidate = format!("{name}_{n}");
        n += 1;
    }
    candidate
}

/// The kernel's comment: what it computes and which nodes (and lines) it covers.
fn describe(graph: &Graph, name: &str, k: &KernelCtx, source: Option<&SourceFile>) -> Vec<String> {
    let ops: Vec<String> = k.covered.iter().map(|&id| graph.op(id).to_string()).collect();
    let mut doc = vec![format!("{name}: {}", ops.join(" → "))];
    let nodes: Vec<String> = k
        .covered
        .iter()
        .map(|&id| {
            let node = graph.node(id);
            let line = match (source, &node.origin.span) {
                (Some(src), Some(span)) => format!(" (line {})", src.line_col(span.start).0),
                _ => String::new(),
            };
            format!("%{} {}{line}", id.index(), node.origin.name)
        })
        .collect();
    doc.push(format!("  nodes: {}", nodes.join(", ")));
    doc.push(format!(
        "  launch: grid ({}, {}, {}), block ({}, {}, {}){}",
        k.grid[0],
        k.grid[1],
        k.grid[2],
        k.block[0],
        k.block[1],
        k.block[2],
        if k.cooperative { ", cooperative" } else { "" }
    ));
    doc
}
