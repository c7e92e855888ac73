//! Fusion: decides which nodes get a buffer and which are computed inside
//! another node's kernel.
//!
//! * Elementwise and movement nodes are *inlined* into their users' kernels
//!   (recomputed per use when cheap, otherwise given a buffer).
//! * Anchors (reductions, matmuls, convolutions, pooling) get their own
//!   kernel; a chain of same-shape elementwise users becomes that kernel's
//!   *epilogue* (conv → bias → relu is one kernel).
//! * A reshape or detach of a buffer is an *alias*: same buffer, no kernel.

use crate::ir::{Graph, NodeId, SExpr};
use crate::ops::{FusionRole, Op};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// An input or parameter: a buffer the caller provides.
    Leaf,
    /// Computed by its own kernel into its own buffer.
    Materialized,
    /// Recomputed inside each kernel that reads it.
    Inline,
    /// Shares the buffer of another node (the root of the alias chain).
    Alias(NodeId),
    /// An anchor computed inside the kernel of this root, ahead of its epilogue.
    Epilogue(NodeId),
    /// Nothing that is needed reads it.
    Dead,
}

/// One kernel: it computes `root` into the root's buffer, with `anchor`
/// (if any) computed inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub root: NodeId,
    pub anchor: Option<NodeId>,
}

#[derive(Clone, Debug)]
pub struct Fusion {
    pub placement: Vec<Placement>,
    pub groups: Vec<Group>,
}

/// How much arithmetic an inlined node costs per element; a node used by
/// several kernels is recomputed in each only when this stays small.
const RECOMPUTE_LIMIT: usize = 4;

impl Fusion {
    pub fn new(graph: &Graph, required: &[NodeId]) -> Fusion {
        let n = graph.len();
        let mut live = vec![false; n];
        let mut stack: Vec<NodeId> = required.to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(graph.operands(id));
            }
        }
        let mut is_required = vec![false; n];
        for r in required {
            is_required[r.index()] = true;
        }
        let users: Vec<Vec<NodeId>> = graph
            .ids()
            .map(|id| graph.users(id).into_iter().filter(|u| live[u.index()]).collect())
            .collect();

        // Cost of recomputing each node, operands included, if inlined.
        let mut placement = vec![Placement::Dead; n];
        let mut inline_cost = vec![0usize; n];
        for id in graph.topo_order() {
            if !live[id.index()] {
                continue;
            }
            let op = graph.op(id);
            placement[id.index()] = match op.fusion_role() {
                FusionRole::Leaf => Placement::Leaf,
                FusionRole::Anchor => Placement::Materialized,
                FusionRole::Inline => {
                    let cost = own_cost(op)
                        + graph
                            .operands(id)
                            .iter()
                            .filter(|o| placement[o.index()] == Placement::Inline)
                            .map(|o| inline_cost[o.index()])
                            .sum::<usize>();
                    inline_cost[id.index()] = cost;
                    let us = &users[id.index()];
                    let needs_buffer = us
                        .iter()
                        .any(|&u| graph.op(u).fusion_role() == FusionRole::Anchor && !reads_inline(graph.op(u)));
                    let shared_and_costly = us.len() > 1 && cost > RECOMPUTE_LIMIT;
                    if is_required[id.index()] || needs_buffer || shared_and_costly {
                        Placement::Materialized
                    } else {
                        Placement::Inline
                    }
                }
            };
        }

        // A materialized reshape/detach of a buffer shares that buffer.
        for id in graph.topo_order() {
            if placement[id.index()] == Placement::Materialized
                && matches!(graph.op(id), Op::Reshape(_) | Op::Detach(_))
            {
                let src = graph.operands(id)[0];
                match placement[src.index()].clone() {
                    Placement::Leaf | Placement::Materialized => placement[id.index()] = Placement::Alias(src),
                    Placement::Alias(root) => placement[id.index()] = Placement::Alias(root),
                    _ => {}
                }
            }
        }

        // An anchor whose only use is a same-shape elementwise chain ending
        // in a buffer runs as that buffer's kernel, the chain as epilogue.
        for id in graph.topo_order() {
            if placement[id.index()] != Placement::Materialized
                || graph.op(id).fusion_role() != FusionRole::Anchor
                || is_required[id.index()]
            {
                continue;
            }
            if let Some(root) = epilogue_root(graph, &users, &placement, id) {
                placement[id.index()] = Placement::Epilogue(root);
            }
        }

        let mut epilogue_anchor = vec![None; n];
        for id in graph.topo_order() {
            if let Placement::Epilogue(root) = placement[id.index()] {
                epilogue_anchor[root.index()] = Some(id);
            }
        }
        let groups = graph
            .topo_order()
            .into_iter()
            .filter(|id| placement[id.index()] == Placement::Materialized)
            .map(|root| {
                let anchor = if graph.op(root).fusion_role() == FusionRole::Anchor {
                    Some(root)
                } else {
                    epilogue_anchor[root.index()]
                };
                Group { root, anchor }
            })
            .collect();
        Fusion { placement, groups }
    }

    pub fn placement(&self, id: NodeId) -> &Placement {
        &self.placement[id.index()]
    }

    /// The node whose buffer holds `id`'s value, if it has one.
    pub fn buffer_of(&self, id: NodeId) -> Option<NodeId> {
        match self.placement(id) {
            Placement::Leaf | Placement::Materialized => Some(id),
            Placement::Alias(root) => Some(*root),
            _ => None,
        }
    }
}

/// Anchors whose template reads operands through the inliner (a reduction
/// reads `value_at(x, coords)`); the others index their operand buffers.
fn reads_inline(op: &Op) -> bool {
    matches!(op, Op::Reduce(_))
}

fn own_cost(op: &Op) -> usize {
    match op {
        Op::Map(m) => {
            let mut cost = 0;
            m.expr.visit(&mut |e| {
                cost += match e {
                    SExpr::Unary(..) => 2,
                    SExpr::Binary(..) | SExpr::Select(..) | SExpr::Uniform { .. } => 1,
                    _ => 0,
                }
            });
            cost
        }
        _ => 0,
    }
}

fn epilogue_root(graph: &Graph, users: &[Vec<NodeId>], placement: &[Placement], anchor: NodeId) -> Option<NodeId> {
    let shape = &graph.ty(anchor).shape;
    let mut cur = anchor;
    loop {
        let [user] = users[cur.index()].as_slice() else {
            return None;
        };
        let user = *user;
        if !matches!(graph.op(user), Op::Map(_)) || &graph.ty(user).shape != shape {
            return None;
        }
        match placement[user.index()] {
            Placement::Materialized => return Some(user),
            Placement::Inline => cur = user,
            _ => return None,
        }
    }
}
