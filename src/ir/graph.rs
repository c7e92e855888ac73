//! The graph: a petgraph DAG whose nodes are typed tensor values, each the
//! result of one primitive op applied to its operands (the incoming edges,
//! ordered by slot).

use super::dim::{fmt_shape, Dim};
use crate::diag::Span;
use crate::ops::{Op, OpError};
use crate::tensor::DType;
use petgraph::graph::DiGraph;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::HashMap;
use std::fmt;

pub type NodeId = petgraph::graph::NodeIndex<u32>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType {
            dtype,
            shape: Vec::new(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Concrete sizes; `None` while a symbol is unbound.
    pub fn dims(&self) -> Option<Vec<usize>> {
        self.shape
            .iter()
            .map(|d| d.as_const().and_then(|v| usize::try_from(v).ok()))
            .collect()
    }

    pub fn numel(&self) -> Dim {
        super::numel(&self.shape)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, fmt_shape(&self.shape))
    }
}

/// Where a node came from: the source span and a human name (the binding,
/// layer or function that produced it), shown in graphs and kernel comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub span: Option<Span>,
    pub name: String,
}

impl Origin {
    pub fn new(name: impl Into<String>, span: Option<Span>) -> Origin {
        Origin {
            span,
            name: name.into(),
        }
    }

    pub fn named(name: impl Into<String>) -> Origin {
        Origin {
            span: None,
            name: name.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub ty: TensorType,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    g: DiGraph<Node, u32>,
    /// Data inputs, in declaration order.
    pub inputs: Vec<NodeId>,
    /// Named outputs, in declaration order.
    pub outputs: Vec<(String, NodeId)>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a node after checking its operands against the op's shape rule.
    pub fn add(&mut self, op: Op, operands: &[NodeId], origin: Origin) -> Result<NodeId, OpError> {
        let types: Vec<&TensorType> = operands.iter().map(|&o| &self.g[o].ty).collect();
        let ty = op.infer(&types)?;
        Ok(self.add_typed(op, operands, ty, origin))
    }

    /// Adds a node whose type the caller already knows (e.g. when copying a checked graph).
    pub fn add_typed(&mut self, op: Op, operands: &[NodeId], ty: TensorType, origin: Origin) -> NodeId {
        let id = self.g.add_node(Node { op, ty, origin });
        for (slot, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, slot as u32);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.g[id].ty
    }

    pub fn op(&self, id: NodeId) -> &Op {
        &self.g[id].op
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// Operands in slot order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// Nodes that use `id`, each once, in id order.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Nodes in an order where operands come before users. Nodes are only
    /// ever appended after their operands, so id order already is one.
    pub fn topo_order(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// Trainable parameters and buffers, in creation order.
    pub fn params(&self) -> Vec<NodeId> {
        self.ids().filter(|&id| matches!(self.op(id), Op::Param(_))).collect()
    }

    pub fn param_named(&self, name: &str) -> Option<NodeId> {
        self.ids()
            .find(|&id| matches!(self.op(id), Op::Param(p) if p.name == name))
    }

    pub fn input_named(&self, name: &str) -> Option<NodeId> {
        self.inputs
            .iter()
            .copied()
            .find(|&id| matches!(self.op(id), Op::Input(i) if i.name == name))
    }

    pub fn output_named(&self, name: &str) -> Option<NodeId> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, id)| *id)
    }

    /// Symbols that occur in any node's shape.
    pub fn symbols(&self) -> Vec<String> {
        let mut syms: Vec<String> = self
            .g
            .node_weights()
            .flat_map(|n| n.ty.shape.iter().flat_map(|d| d.symbols().map(String::from)))
            .collect();
        syms.sort();
        syms.dedup();
        syms
    }

    /// A copy with every symbol bound to a size: what codegen and the
    /// evaluators work on. Nodes keep their ids.
    pub fn specialize(&self, bindings: &HashMap<String, i64>) -> Result<Graph, String> {
        let mut out = self.clone();
        for node in out.g.node_weights_mut() {
            for d in &mut node.ty.shape {
                *d = d.bind(bindings);
                if d.as_const().is_none() {
                    return Err(format!("size `{d}` of `{}` is not bound", node.origin.name));
                }
                if d.as_const().is_some_and(|v| v < 0) {
                    return Err(format!("size of `{}` is negative ({d})", node.origin.name));
                }
            }
            node.op = node.op.bind_dims(bindings);
        }
        Ok(out)
    }

    /// Only the nodes that `roots` depend on, renumbered; returns the map
    /// from old ids to new ones.
    pub fn prune(&self, roots: &[NodeId]) -> (Graph, HashMap<NodeId, NodeId>) {
        let mut live = vec![false; self.len()];
        let mut stack: Vec<NodeId> = roots.to_vec();
        stack.extend(self.inputs.iter().copied());
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(self.operands(id));
            }
        }
        let mut out = Graph::new(self.name.clone());
        let mut map = HashMap::new();
        for id in self.topo_order() {
            if live[id.index()] {
                let node = self.node(id);
                let ops: Vec<NodeId> = self.operands(id).iter().map(|o| map[o]).collect();
                map.insert(
                    id,
                    out.add_typed(node.op.clone(), &ops, node.ty.clone(), node.origin.clone()),
                );
            }
        }
        out.inputs = self.inputs.iter().map(|i| map[i]).collect();
        out.outputs = self
            .outputs
            .iter()
            .filter(|(_, id)| map.contains_key(id))
            .map(|(n, id)| (n.clone(), map[id]))
            .collect();
        (out, map)
    }
}
