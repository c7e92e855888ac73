//! Loss functions, for the `loss:` setting of a `train` section (and usable
//! anywhere). Each reduces to a scalar mean, as PyTorch's default
//! `reduction="mean"` does.

use super::{Ctx, Function, LibResult};
use crate::check::value::{opt, req, ArgError, Args, Default as D, Kind, Value};
use crate::ir::expr::{arg, lit, SExpr};
use crate::ir::{numel, Dim, NodeId};
use crate::ops::*;
use crate::tensor::DType;

pub static ALL: &[Function] = &[
    Function {
        name: "cross_entropy",
        shapes: "logits [N, C, …], target i64 [N, …] → scalar",
        params: &[
            req("logits", Kind::Tensor),
            req("target", Kind::Tensor),
            opt("label_smoothing", Kind::Float, D::Float(0.0)),
        ],
        build: |c, a| {
            let logits = c.float_tensor("logits", a.tensor("logits")?)?;
            let logp = log_softmax_classes(c, logits)?;
            classification_loss(c, a, logits, logp, a.float("label_smoothing")?)
        },
        summary: "mean cross entropy of logits [N, C, ...] against class indices [N, ...] (i64)",
        torch: "F.cross_entropy",
    },
    Function {
        name: "nll_loss",
        shapes: "log_probs [N, C, …], target i64 [N, …] → scalar",
        params: &[req("log_probs", Kind::Tensor), req("target", Kind::Tensor)],
        build: |c, a| {
            let logp = c.float_tensor("log_probs", a.tensor("log_probs")?)?;
            classification_loss(c, a, logp, logp, 0.0)
        },
        summary: "mean negative log likelihood of log-probabilities against class indices",
        torch: "F.nll_loss",
    },
    Function {
        name: "mse_loss",
        shapes: "input and target of one shape → scalar",
        params: &[req("input", Kind::Tensor), req("target", Kind::Tensor)],
        build: |c, a| {
            let (x, y) = (
                c.float_tensor("input", a.tensor("input")?)?,
                c.float_tensor("target", a.tensor("target")?)?,
            );
            same_shape(c, x, y)?;
            let sq = c.map((arg(0) - arg(1)) * (arg(0) - arg(1)), &[x, y])?;
            mean_all(c, sq)
        },
        summary: "mean squared error",
        torch: "F.mse_loss",
    },
    Function {
        name: "binary_cross_entropy_with_logits",
        shapes: "logits and target of one shape → scalar",
        params: &[req("logits", Kind::Tensor), req("target", Kind::Tensor)],
        build: |c, a| {
            let (x, y) = (
                c.float_tensor("logits", a.tensor("logits")?)?,
                c.float_tensor("target", a.tensor("target")?)?,
            );
            same_shape(c, x, y)?;
            // max(x, 0) − x·y + log(1 + e^−|x|): never overflows.
            let body = arg(0).max(lit(0.0)) - arg(0) * arg(1) + (-arg(0).abs()).exp().log1p();
            let terms = c.map(body, &[x, y])?;
            mean_all(c, terms)
        },
        summary: "mean binary cross entropy on logits, computed stably",
        torch: "F.binary_cross_entropy_with_logits",
    },
];

fn same_shape(c: &Ctx, x: NodeId, y: NodeId) -> LibResult<()> {
    if c.ty(x).shape == c.ty(y).shape {
        Ok(())
    } else {
        Err(ArgError::at(
            "target",
            format!("target {} does not match the input {}", c.ty(y), c.ty(x)),
        )
        .into())
    }
}

fn mean_all(c: &mut Ctx, x: NodeId) -> LibResult<Value> {
    let axes: Vec<usize> = (0..c.ty(x).rank()).collect();
    if axes.is_empty() {
        return Ok(Value::Tensor(x));
    }
    Ok(Value::Tensor(c.add(Reduce::new(ReduceKind::Mean, axes, false), &[x])?))
}

fn log_softmax_classes(c: &mut Ctx, logits: NodeId) -> LibResult<NodeId> {
    if c.ty(logits).rank() < 2 {
        return Err(ArgError::at("logits", format!("expected logits [N, C, ...], found {}", c.ty(logits))).into());
    }
    let m = c.add(Reduce::new(ReduceKind::Max, vec![1], true), &[logits])?;
    let m = c.add(Detach, &[m])?;
    let shifted = c.map(arg(0) - arg(1), &[logits, m])?;
    let e = c.map(arg(0).exp(), &[shifted])?;
    let s = c.add(Reduce::new(ReduceKind::Sum, vec![1], true), &[e])?;
    c.map(arg(0) - arg(1).log(), &[shifted, s])
}

/// −mean over samples of Σ_c q_c · log p_c, with q the (smoothed) one-hot
/// target built in place from class indices (never materialised).
fn classification_loss(c: &mut Ctx, a: &Args, scores: NodeId, logp: NodeId, smoothing: f64) -> LibResult<Value> {
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(ArgError::at(
            "label_smoothing",
            format!("label_smoothing must be in [0, 1], got {smoothing}"),
        )
        .into());
    }
    let target = a.tensor("target")?;
    let (lt, tt) = (c.ty(logp).clone(), c.ty(target).clone());
    if tt.dtype != DType::I64 {
        return Err(ArgError::at("target", format!("class targets must be i64 class indices, found {tt}"))
            .hint("declare the target as `target label: i64[B]`; for probabilities use mse_loss or binary_cross_entropy_with_logits")
            .into());
    }
    let mut expected = lt.shape.clone();
    let classes = expected.remove(1);
    if tt.shape != expected {
        return Err(ArgError::at(
            "target",
            format!(
                "target {tt} does not fit scores {lt}: expected shape {}",
                crate::ir::fmt_shape(&expected)
            ),
        )
        .into());
    }
    let mut kept = tt.shape.clone();
    kept.insert(1, Dim::lit(1));
    let t = c.add(Reshape { shape: kept }, &[target])?;
    let hit = SExpr::Coord(1).eq_(arg(1));
    let weight = if smoothing == 0.0 {
        SExpr::select(hit, lit(1.0), lit(0.0))
    } else {
        SExpr::select(hit, lit(1.0 - smoothing), lit(0.0)) + lit(smoothing) / SExpr::Size(classes)
    };
    let terms = c.map(-(weight * arg(0)), &[logp, t])?;
    let axes: Vec<usize> = (0..lt.rank()).collect();
    let total = c.add(Reduce::new(ReduceKind::Sum, axes, false), &[terms])?;
    let samples = numel(&expected);
    let loss = c.map(arg(0) / SExpr::Size(samples), &[total])?;
    c.state.classification = Some((scores, target));
    Ok(Value::Tensor(loss))
}
