//! Functions of the language. Each builds its result from primitive ops.

use super::exprs;
use super::{Ctx, Function, LibResult};
use crate::check::value::{opt, req, ArgError, Args, Default as D, Kind, Param, Value};
use crate::ir::expr::{arg, lit, SExpr};
use crate::ir::{numel, Dim, NodeId};
use crate::ops::*;

macro_rules! func {
    ($name:literal, $shapes:literal, $params:expr, $build:expr, $summary:literal, $torch:literal) => {
        Function {
            name: $name,
            shapes: $shapes,
            params: $params,
            build: $build,
            summary: $summary,
            torch: $torch,
        }
    };
}

const X: Param = req("x", Kind::Tensor);

pub static ALL: &[Function] = &[
    func!(
        "relu",
        "any → same",
        &[X],
        |c, a| unary(c, a, exprs::relu()),
        "max(x, 0)",
        "torch.relu"
    ),
    func!(
        "leaky_relu",
        "any → same",
        &[X, opt("negative_slope", Kind::Float, D::Float(0.01))],
        |c, a| unary(c, a, exprs::leaky_relu(a.float("negative_slope")?)),
        "x if x > 0 else negative_slope * x",
        "F.leaky_relu"
    ),
    func!(
        "sigmoid",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).sigmoid()),
        "1 / (1 + exp(-x))",
        "torch.sigmoid"
    ),
    func!(
        "tanh",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).tanh()),
        "hyperbolic tangent",
        "torch.tanh"
    ),
    func!(
        "gelu",
        "any → same",
        &[X, opt("approximate", Kind::Str, D::Str("none"))],
        gelu,
        "x·Φ(x); approximate: \"none\" (erf) or \"tanh\"",
        "F.gelu"
    ),
    func!(
        "exp",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).exp()),
        "eˣ",
        "torch.exp"
    ),
    func!(
        "log",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).log()),
        "natural logarithm",
        "torch.log"
    ),
    func!(
        "sqrt",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).sqrt()),
        "square root",
        "torch.sqrt"
    ),
    func!(
        "abs",
        "any → same",
        &[X],
        |c, a| unary(c, a, arg(0).abs()),
        "absolute value",
        "torch.abs"
    ),
    func!(
        "softmax",
        "any → same",
        &[X, opt("dim", Kind::Int, D::Int(-1))],
        |c, a| softmax(c, a, false),
        "exp(x) / sum(exp(x)) along dim, computed stably",
        "F.softmax"
    ),
    func!(
        "log_softmax",
        "any → same",
        &[X, opt("dim", Kind::Int, D::Int(-1))],
        |c, a| softmax(c, a, true),
        "x − log(sum(exp(x))) along dim, computed stably",
        "F.log_softmax"
    ),
    func!(
        "dropout",
        "any → same",
        &[X, opt("p", Kind::Float, D::Float(0.5))],
        |c, a| {
            let x = c.float_tensor("x", a.tensor("x")?)?;
            Ok(Value::Tensor(dropout(c, x, a.float("p")?)?))
        },
        "zeroes elements with probability p while training, scaling the rest by 1/(1−p)",
        "F.dropout"
    ),
    func!(
        "max_pool2d",
        "[N, C, H, W] → [N, C, H_out, W_out]",
        &[
            X,
            req("kernel", Kind::Pair),
            opt("stride", Kind::Pair, D::SameAs("kernel")),
            opt("padding", Kind::Pair, D::Int(0)),
            opt("dilation", Kind::Pair, D::Int(1)),
            opt("ceil_mode", Kind::Bool, D::Bool(false)),
        ],
        |c, a| {
            let pool = pool_from_args(PoolKind::Max, a)?;
            Ok(Value::Tensor(c.add(pool, &[a.tensor("x")?])?))
        },
        "2-D max pooling over NCHW",
        "F.max_pool2d"
    ),
    func!(
        "avg_pool2d",
        "[N, C, H, W] → [N, C, H_out, W_out]",
        &[
            X,
            req("kernel", Kind::Pair),
            opt("stride", Kind::Pair, D::SameAs("kernel")),
            opt("padding", Kind::Pair, D::Int(0)),
            opt("ceil_mode", Kind::Bool, D::Bool(false)),
            opt("count_include_pad", Kind::Bool, D::Bool(true)),
        ],
        |c, a| {
            let pool = pool_from_args(PoolKind::Avg, a)?;
            Ok(Value::Tensor(c.add(pool, &[a.tensor("x")?])?))
        },
        "2-D average pooling over NCHW",
        "F.avg_pool2d"
    ),
    func!(
        "global_avg_pool2d",
        "[N, C, H, W] → [N, C, 1, 1]",
        &[X],
        |c, a| {
            let x = c.float_tensor("x", a.tensor("x")?)?;
            if c.ty(x).rank() != 4 {
                return Err(ArgError::at("x", format!("expected an NCHW tensor, found {}", c.ty(x))).into());
            }
            Ok(Value::Tensor(
                c.add(Reduce::new(ReduceKind::Mean, vec![2, 3], true), &[x])?,
            ))
        },
        "mean over H and W, keeping them as size 1: [N, C, 1, 1]",
        "F.adaptive_avg_pool2d(x, 1)"
    ),
    func!(
        "flatten",
        "[N, C, H, W] → [N, C·H·W] (defaults)",
        &[
            X,
            opt("start_dim", Kind::Int, D::Int(1)),
            opt("end_dim", Kind::Int, D::Int(-1))
        ],
        flatten,
        "merges axes start_dim..=end_dim into one",
        "torch.flatten"
    ),
    func!(
        "reshape",
        "any → `shape` (same element count)",
        &[X, req("shape", Kind::Shape)],
        reshape,
        "same elements, new shape; one size may be -1",
        "torch.reshape"
    ),
    func!(
        "transpose",
        "axes dim0 and dim1 swapped",
        &[X, req("dim0", Kind::Int), req("dim1", Kind::Int)],
        |c, a| {
            let x = a.tensor("x")?;
            let rank = c.ty(x).rank();
            let (d0, d1) = (
                c.axis("dim0", a.int("dim0")?, rank)?,
                c.axis("dim1", a.int("dim1")?, rank)?,
            );
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.swap(d0, d1);
            Ok(Value::Tensor(c.add(Permute { perm }, &[x])?))
        },
        "swaps two axes",
        "torch.transpose"
    ),
    func!(
        "permute",
        "output axis i has size of input axis dims[i]",
        &[X, req("dims", Kind::Shape)],
        |c, a| {
            let x = a.tensor("x")?;
            let rank = c.ty(x).rank();
            let perm = a
                .shape("dims")?
                .iter()
                .map(|d| c.axis("dims", d.as_const().unwrap_or(i64::MAX), rank))
                .collect::<LibResult<Vec<usize>>>()?;
            Ok(Value::Tensor(c.add(Permute { perm }, &[x])?))
        },
        "reorders axes: output axis i is input axis dims[i]",
        "torch.permute"
    ),
    func!(
        "concat",
        "equal but for `dim` → sizes along `dim` added",
        &[req("tensors", Kind::Tensors), opt("dim", Kind::Int, D::Int(0))],
        |c, a| {
            let parts = a.tensors("tensors")?;
            let rank = c.ty(parts[0]).rank();
            let axis = c.axis("dim", a.int("dim")?, rank)?;
            Ok(Value::Tensor(c.add(Concat { axis }, &parts)?))
        },
        "joins tensors along an axis",
        "torch.cat"
    ),
    func!(
        "unsqueeze",
        "size 1 inserted at `dim`",
        &[X, req("dim", Kind::Int)],
        |c, a| {
            let x = a.tensor("x")?;
            let mut shape = c.ty(x).shape.clone();
            let axis = c.axis("dim", a.int("dim")?, shape.len() + 1)?;
            shape.insert(axis, Dim::lit(1));
            Ok(Value::Tensor(c.add(Reshape { shape }, &[x])?))
        },
        "inserts an axis of size 1",
        "torch.unsqueeze"
    ),
    func!(
        "squeeze",
        "size-1 axis `dim` removed",
        &[X, req("dim", Kind::Int)],
        |c, a| {
            let x = a.tensor("x")?;
            let mut shape = c.ty(x).shape.clone();
            let axis = c.axis("dim", a.int("dim")?, shape.len())?;
            if !shape[axis].is_const(1) {
                return Err(ArgError::at("dim", format!("axis {axis} has size {}, not 1", shape[axis])).into());
            }
            shape.remove(axis);
            Ok(Value::Tensor(c.add(Reshape { shape }, &[x])?))
        },
        "removes an axis of size 1",
        "torch.squeeze"
    ),
    func!(
        "matmul",
        "[…, M, K] @ […, K, N] → […, M, N]",
        &[req("a", Kind::Tensor), req("b", Kind::Tensor)],
        matmul,
        "matrix product (batched, broadcasting); also `a @ b`",
        "torch.matmul"
    ),
    func!(
        "sum",
        "listed axes removed (size 1 with keepdim)",
        &[X, req("dim", Kind::Axes), opt("keepdim", Kind::Bool, D::Bool(false))],
        |c, a| reduce(c, a, ReduceKind::Sum),
        "sum over the listed axes",
        "torch.sum"
    ),
    func!(
        "mean",
        "listed axes removed (size 1 with keepdim)",
        &[X, req("dim", Kind::Axes), opt("keepdim", Kind::Bool, D::Bool(false))],
        |c, a| reduce(c, a, ReduceKind::Mean),
        "mean over the listed axes",
        "torch.mean"
    ),
    func!(
        "amax",
        "listed axes removed (size 1 with keepdim)",
        &[X, req("dim", Kind::Axes), opt("keepdim", Kind::Bool, D::Bool(false))],
        |c, a| reduce(c, a, ReduceKind::Max),
        "maximum over the listed axes",
        "torch.amax"
    ),
    func!(
        "argmax",
        "`dim` removed (size 1 with keepdim); i64",
        &[X, req("dim", Kind::Int), opt("keepdim", Kind::Bool, D::Bool(false))],
        |c, a| {
            let x = c.float_tensor("x", a.tensor("x")?)?;
            let axis = c.axis("dim", a.int("dim")?, c.ty(x).rank())?;
            Ok(Value::Tensor(c.add(
                Reduce::new(ReduceKind::ArgMax, vec![axis], a.bool("keepdim")?),
                &[x],
            )?))
        },
        "index (i64) of the first maximum along an axis",
        "torch.argmax"
    ),
];

fn unary(c: &mut Ctx, a: &Args, body: SExpr) -> LibResult<Value> {
    let x = c.float_tensor("x", a.tensor("x")?)?;
    Ok(Value::Tensor(c.map(body, &[x])?))
}

fn gelu(c: &mut Ctx, a: &Args) -> LibResult<Value> {
    let body = match a.str("approximate")?.as_str() {
        "none" => exprs::gelu_exact(),
        "tanh" => exprs::gelu_tanh(),
        other => {
            return Err(
                ArgError::at("approximate", format!("unknown approximation \"{other}\""))
                    .hint("use \"none\" or \"tanh\"")
                    .into(),
            )
        }
    };
    unary(c, a, body)
}

/// Stable (log-)softmax: the max is subtracted first and detached, since
/// softmax does not change when a constant is subtracted.
fn softmax(c: &mut Ctx, a: &Args, log: bool) -> LibResult<Value> {
    let x = c.float_tensor("x", a.tensor("x")?)?;
    let axis = c.axis("dim", a.int("dim")?, c.ty(x).rank())?;
    let m = c.add(Reduce::new(ReduceKind::Max, vec![axis], true), &[x])?;
    let m = c.add(Detach, &[m])?;
    let shifted = c.map(arg(0) - arg(1), &[x, m])?;
    let e = c.map(arg(0).exp(), &[shifted])?;
    let s = c.add(Reduce::new(ReduceKind::Sum, vec![axis], true), &[e])?;
    let y = if log {
        c.map(arg(0) - arg(1).log(), &[shifted, s])?
    } else {
        c.map(arg(0) / arg(1), &[e, s])?
    };
    Ok(Value::Tensor(y))
}

/// Training: x · [u ≥ p] / (1 − p) with u from a counter hash of the seed,
/// recomputed (not stored) in the backward pass. Evaluation: x.
pub fn dropout(c: &mut Ctx, x: NodeId, p: f64) -> LibResult<NodeId> {
    if !(0.0..1.0).contains(&p) {
        return Err(ArgError::at("p", format!("dropout probability must be in [0, 1), got {p}")).into());
    }
    if c.mode == crate::check::Mode::Eval || p == 0.0 {
        return Ok(x);
    }
    let seed = c.seed();
    c.state.dropout_calls += 1;
    let keep = SExpr::Uniform {
        seed: 1,
        salt: c.state.dropout_calls,
    }
    .ge(lit(p));
    c.map(arg(0) * keep * lit(1.0 / (1.0 - p)), &[x, seed])
}

pub fn pool_from_args(kind: PoolKind, a: &Args) -> LibResult<Pool2d> {
    let dilation = if kind == PoolKind::Max {
        a.pair("dilation", 1)?
    } else {
        [1, 1]
    };
    Ok(Pool2d {
        kind,
        kernel: a.pair("kernel", 1)?,
        stride: a.pair("stride", 1)?,
        padding: a.pair("padding", 0)?,
        dilation,
        ceil_mode: a.bool("ceil_mode")?,
        count_include_pad: if kind == PoolKind::Avg {
            a.bool("count_include_pad")?
        } else {
            true
        },
    })
}

fn flatten(c: &mut Ctx, a: &Args) -> LibResult<Value> {
    let x = a.tensor("x")?;
    let shape = c.ty(x).shape.clone();
    if shape.is_empty() {
        return Ok(Value::Tensor(c.add(
            Reshape {
                shape: vec![Dim::lit(1)],
            },
            &[x],
        )?));
    }
    let start = c.axis("start_dim", a.int("start_dim")?, shape.len())?;
    let end = c.axis("end_dim", a.int("end_dim")?, shape.len())?;
    if start > end {
        return Err(ArgError::at("end_dim", format!("end_dim ({end}) comes before start_dim ({start})")).into());
    }
    let merged = numel(&shape[start..=end]);
    let mut out: Vec<Dim> = shape[..start].to_vec();
    out.push(merged);
    out.extend_from_slice(&shape[end + 1..]);
    let y = c.add(Reshape { shape: out }, &[x])?;
    if end + 1 == shape.len() {
        c.state.flattened.insert(y, shape[start..].to_vec());
    }
    Ok(Value::Tensor(y))
}

fn reshape(c: &mut Ctx, a: &Args) -> LibResult<Value> {
    let x = a.tensor("x")?;
    let total = c.ty(x).numel();
    let mut shape = a.shape("shape")?;
    let holes: Vec<usize> = (0..shape.len()).filter(|&i| shape[i].is_const(-1)).collect();
    if holes.len() > 1 {
        return Err(ArgError::at("shape", "only one size may be -1").into());
    }
    if let Some(&hole) = holes.first() {
        let known = numel(
            &shape
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != hole)
                .map(|(_, d)| d.clone())
                .collect::<Vec<_>>(),
        );
        let inferred = total.div_exact(&known).ok_or_else(|| {
            ArgError::at(
                "shape",
                format!("cannot infer -1: {total} elements do not divide into {known}"),
            )
        })?;
        shape[hole] = inferred;
    }
    Ok(Value::Tensor(c.add(Reshape { shape }, &[x])?))
}

fn matmul(c: &mut Ctx, a: &Args) -> LibResult<Value> {
    let (x, y) = (
        c.float_tensor("a", a.tensor("a")?)?,
        c.float_tensor("b", a.tensor("b")?)?,
    );
    Ok(Value::Tensor(c.add(MatMul::default(), &[x, y])?))
}

fn reduce(c: &mut Ctx, a: &Args, kind: ReduceKind) -> LibResult<Value> {
    let x = c.float_tensor("x", a.tensor("x")?)?;
    let rank = c.ty(x).rank();
    let axes = match a.get("dim") {
        Some(Value::Int(d)) => vec![c.axis("dim", d.as_const().unwrap_or(i64::MAX), rank)?],
        _ => a
            .shape("dim")?
            .iter()
            .map(|d| c.axis("dim", d.as_const().unwrap_or(i64::MAX), rank))
            .collect::<LibResult<Vec<usize>>>()?,
    };
    Ok(Value::Tensor(c.add(Reduce::new(kind, axes, a.bool("keepdim")?), &[x])?))
}
