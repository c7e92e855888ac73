//! The training step as one graph: the model's forward pass in training
//! form, its loss, the backward graph autodiff derives, optional gradient
//! clipping, and every optimizer update. Compiled once, run every step.

use super::optim::{self, Optimizer};
use crate::autodiff::{gradients, AutodiffError};
use crate::check::Model;
use crate::ir::expr::{arg, lit};
use crate::ir::{Graph, NodeId, Origin};
use crate::ops::{Map, Op, OpError, Reduce, ReduceKind};
use crate::tensor::DType;

/// The step graph and the roles of its nodes.
pub struct StepGraph {
    pub graph: Graph,
    pub loss: NodeId,
    /// How many predictions in the batch were right (classification losses).
    pub correct: Option<NodeId>,
    /// After a step, each leaf takes the value of the node next to it:
    /// updated parameters, optimizer state, batch-norm statistics.
    pub replaces: Vec<(NodeId, NodeId)>,
    /// Gradients of the trainable parameters, by parameter.
    pub grads: Vec<(NodeId, NodeId)>,
    pub scalars: [NodeId; 3],
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("the model has no `loss:` in its train section")]
    NoLoss,
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    #[error("building the update: {0}")]
    Op(#[from] OpError),
}

impl StepGraph {
    /// Every node whose value the step must leave in a buffer.
    pub fn required(&self) -> Vec<NodeId> {
        let mut r = vec![self.loss];
        r.extend(self.correct);
        r.extend(self.replaces.iter().map(|(_, new)| *new));
        r
    }
}

/// Builds the step of a model checked in training mode. Without an
/// optimizer the graph stops at the gradients (`netc grad`).
pub fn build(model: &Model, optimizer: Option<&Optimizer>, clip_norm: Option<f64>) -> Result<StepGraph, StepError> {
    let mut graph = model.graph.clone();
    let loss = model.loss.ok_or(StepError::NoLoss)?;
    let correct = model
        .classification
        .map(|(scores, target)| correct_count(&mut graph, scores, target))
        .transpose()?;
    let trainable: Vec<NodeId> = graph
        .params()
        .into_iter()
        .filter(|&p| matches!(graph.op(p), Op::Param(prm) if prm.trainable))
        .collect();
    let grads_of = gradients(&mut graph, loss, &trainable)?;
    let mut grads: Vec<(NodeId, NodeId)> = trainable
        .iter()
        .filter_map(|p| grads_of.get(p).map(|g| (*p, *g)))
        .collect();
    if let Some(max_norm) = clip_norm {
        grads = clip(&mut graph, &grads, max_norm)?;
    }
    let scalars = optim::scalar_inputs(&mut graph);
    let mut replaces: Vec<(NodeId, NodeId)> = model.state_updates.clone();
    if let Some(opt) = optimizer {
        for &(p, g) in &grads {
            let name = match graph.op(p) {
                Op::Param(prm) => prm.name.clone(),
                _ => unreachable!("gradients are taken of parameters"),
            };
            replaces.extend(optim::update(opt, &mut graph, &name, p, g, scalars)?.replaces);
        }
    }
    Ok(StepGraph {
        graph,
        loss,
        correct,
        replaces,
        grads,
        scalars,
    })
}

/// Σ [argmax(scores, 1) == target], as an f32 scalar.
pub fn correct_count(g: &mut Graph, scores: NodeId, target: NodeId) -> Result<NodeId, OpError> {
    let origin = Origin::named("accuracy");
    let predicted = g.add(
        Reduce::new(ReduceKind::ArgMax, vec![1], false).into(),
        &[scores],
        origin.clone(),
    )?;
    let hit = g.add(
        Map::new(arg(0).eq_(arg(1)), DType::F32).into(),
        &[predicted, target],
        origin.clone(),
    )?;
    let axes: Vec<usize> = (0..g.ty(hit).rank()).collect();
    if axes.is_empty() {
        return Ok(hit);
    }
    g.add(Reduce::new(ReduceKind::Sum, axes, false).into(), &[hit], origin)
}

/// `clip_grad_norm_`: scales every gradient by min(1, max_norm / (‖g‖ + 1e-6))
/// where ‖g‖ is the norm of all gradients together.
fn clip(g: &mut Graph, grads: &[(NodeId, NodeId)], max_norm: f64) -> Result<Vec<(NodeId, NodeId)>, OpError> {
    let origin = Origin::named("clip_grad_norm");
    let mut squares = Vec::new();
    for &(_, grad) in grads {
        let sq = g.add(Map::new(arg(0) * arg(0), DType::F32).into(), &[grad], origin.clone())?;
        let axes: Vec<usize> = (0..g.ty(sq).rank()).collect();
        squares.push(if axes.is_empty() {
            sq
        } else {
            g.add(Reduce::new(ReduceKind::Sum, axes, false).into(), &[sq], origin.clone())?
        });
    }
    // Kernels take a bounded number of operands: sum in chunks.
    while squares.len() > 1 {
        let mut next = Vec::new();
        for chunk in squares.chunks(16) {
            let body = (1..chunk.len()).fold(arg(0), |acc, k| acc + arg(k));
            next.push(g.add(Map::new(body, DType::F32).into(), chunk, origin.clone())?);
        }
        squares = next;
    }
    let Some(&total) = squares.first() else {
        return Ok(Vec::new());
    };
    let scale = g.add(
        Map::new((lit(max_norm) / (arg(0).sqrt() + lit(1e-6))).min(lit(1.0)), DType::F32).into(),
        &[total],
        origin.clone(),
    )?;
    grads
        .iter()
        .map(|&(p, grad)| {
            Ok((
                p,
                g.add(
                    Map::new(arg(0) * arg(1), DType::F32).into(),
                    &[grad, scale],
                    origin.clone(),
                )?,
            ))
        })
        .collect()
}
