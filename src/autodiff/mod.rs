//! Reverse-mode autodiff over the IR. The backward graph is built in the
//! same graph as the forward one, from each op's own backward rule
//! (`Primitive::backward`), so it is checked, fused, lowered and tested
//! exactly like the forward graph.

use crate::ir::expr::{arg, lit};
use crate::ir::{Dim, Graph, NodeId, Origin, SExpr, TensorType};
use crate::ops::{Map, Op, OpError, OpResult, Reduce, ReduceKind, Reshape};
use std::collections::HashMap;

/// What a backward rule uses to add gradient nodes.
pub struct AdCtx<'a> {
    pub g: &'a mut Graph,
    origin: Origin,
}

impl<'a> AdCtx<'a> {
    pub fn new(g: &'a mut Graph, origin: Origin) -> AdCtx<'a> {
        AdCtx { g, origin }
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.g.ty(id)
    }

    pub fn add(&mut self, op: impl Into<Op>, operands: &[NodeId]) -> OpResult<NodeId> {
        self.g.add(op.into(), operands, self.origin.clone())
    }

    /// An elementwise node whose result has the float dtype of its operands.
    pub fn map(&mut self, expr: SExpr, operands: &[NodeId]) -> OpResult<NodeId> {
        let dtype = operands
            .iter()
            .map(|&o| self.g.ty(o).dtype)
            .find(|d| d.is_float())
            .unwrap_or(crate::tensor::DType::F32);
        self.add(Map::new(expr, dtype), operands)
    }

    pub fn reshape(&mut self, node: NodeId, shape: Vec<Dim>) -> OpResult<NodeId> {
        if self.g.ty(node).shape == shape {
            return Ok(node);
        }
        self.add(Reshape { shape }, &[node])
    }

    /// Sums a broadcast result back to the shape of the operand that was
    /// broadcast (the backward of implicit broadcasting).
    pub fn sum_to(&mut self, node: NodeId, shape: &[Dim]) -> OpResult<NodeId> {
        let from = self.g.ty(node).shape.clone();
        if from == shape {
            return Ok(node);
        }
        let lead = from.len() - shape.len();
        let axes: Vec<usize> = (0..from.len())
            .filter(|&a| a < lead || (shape[a - lead].is_const(1) && !from[a].is_const(1)))
            .collect();
        let summed = if axes.is_empty() {
            node
        } else {
            self.add(
                Reduce {
                    kind: ReduceKind::Sum,
                    axes,
                    keepdim: false,
                },
                &[node],
            )?
        };
        self.reshape(summed, shape.to_vec())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AutodiffError {
    #[error("the loss must be a scalar, but `{name}` has type {ty}")]
    NotScalar { name: String, ty: TensorType },
    #[error("while differentiating `{name}` ({op}): {source}")]
    Rule { name: String, op: String, source: OpError },
}

/// Adds the backward graph of `loss` to `graph` and returns, for each node
/// in `wrt`, the node holding d loss / d node (absent when the loss does not
/// depend on it).
pub fn gradients(graph: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<HashMap<NodeId, NodeId>, AutodiffError> {
    let loss_ty = graph.ty(loss).clone();
    if !loss_ty.shape.is_empty() {
        return Err(AutodiffError::NotScalar {
            name: graph.node(loss).origin.name.clone(),
            ty: loss_ty,
        });
    }
    let needed = nodes_between(graph, loss, wrt);
    let mut pending: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    let seed = {
        let mut ad = AdCtx::new(graph, Origin::named(format!("d({})", graph_name(graph, loss))));
        ad.map(lit(1.0), &[])
            .map_err(|e| rule_error(graph_name(ad.g, loss), "seed", e))?
    };
    pending.insert(loss, vec![seed]);
    let mut grads = HashMap::new();
    for id in (0..=loss.index()).rev().map(NodeId::new) {
        if !needed[id.index()] {
            continue;
        }
        let Some(parts) = pending.remove(&id) else {
            continue;
        };
        let node = graph.node(id).clone();
        let origin = Origin::new(format!("d({})", node.origin.name), node.origin.span.clone());
        let mut ad = AdCtx::new(graph, origin);
        let grad =
            accumulate(&mut ad, &parts).map_err(|e| rule_error(node.origin.name.clone(), "sum of gradients", e))?;
        grads.insert(id, grad);
        if matches!(node.op, Op::Input(_) | Op::Param(_)) {
            continue;
        }
        let operands = ad.g.operands(id);
        let operand_grads = node
            .op
            .backward(&mut ad, id, grad)
            .map_err(|e| rule_error(node.origin.name.clone(), &node.op.to_string(), e))?;
        for (operand, g) in operands.into_iter().zip(operand_grads) {
            if let Some(g) = g {
                if needed[operand.index()] {
                    pending.entry(operand).or_default().push(g);
                }
            }
        }
    }
    Ok(wrt.iter().filter_map(|w| grads.get(w).map(|g| (*w, *g))).collect())
}

fn graph_name(graph: &Graph, id: NodeId) -> String {
    graph.node(id).origin.name.clone()
}

fn rule_error(name: String, op: &str, source: OpError) -> AutodiffError {
    AutodiffError::Rule {
        name,
        op: op.to_string(),
        source,
    }
}

/// One node summing all contributions to a gradient.
fn accumulate(ad: &mut AdCtx, parts: &[NodeId]) -> OpResult<NodeId> {
    if parts.len() == 1 {
        return Ok(parts[0]);
    }
    let sum = (1..parts.len()).fold(arg(0), |acc, k| acc + arg(k));
    ad.map(sum, parts)
}

/// Nodes on some path from a `wrt` node to the loss: only these need gradients.
fn nodes_between(graph: &Graph, loss: NodeId, wrt: &[NodeId]) -> Vec<bool> {
    let n = graph.len();
    let mut reaches_loss = vec![false; n];
    let mut stack = vec![loss];
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut reaches_loss[id.index()], true) {
            stack.extend(graph.operands(id));
        }
    }
    let mut from_wrt = vec![false; n];
    for &w in wrt {
        from_wrt[w.index()] = true;
    }
    for id in graph.topo_order() {
        if graph.operands(id).iter().any(|o| from_wrt[o.index()]) && !matches!(graph.op(id), Op::Detach(_)) {
            from_wrt[id.index()] = true;
        }
    }
    (0..n).map(|i| reaches_loss[i] && from_wrt[i]).collect()
}
