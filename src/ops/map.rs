//! `map`: one elementwise scalar expression over operands broadcast
//! numpy-style. Every pointwise op of the language is a `map`.

use super::{FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{Coords, KernelCtx, Value};
use crate::codegen::kir::{self, call, cast, f32c, CTy, KExpr};
use crate::ir::expr::{arg, BinOp, EvalEnv, SExpr, UnOp};
use crate::ir::{fmt_shape, Dim, NodeId, TensorType};
use crate::reference::{broadcast_index, unravel_into, Real, RefTensor};
use crate::tensor::DType;
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    pub expr: SExpr,
    pub dtype: DType,
}

impl Map {
    pub fn new(expr: SExpr, dtype: DType) -> Map {
        Map { expr, dtype }
    }
}

/// The numpy broadcast of several shapes, or which two do not fit.
pub fn broadcast_shapes(shapes: &[&[Dim]]) -> OpResult<Vec<Dim>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![Dim::lit(1); rank];
    for s in shapes {
        let offset = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[offset + i];
            if o.is_const(1) {
                *o = d.clone();
            } else if !d.is_const(1) && d != o {
                let listed: Vec<String> = shapes.iter().map(|s| fmt_shape(s)).collect();
                return Err(OpError::new(format!(
                    "shapes {} cannot be broadcast together: size {d} does not match {o}",
                    listed.join(" and ")
                ))
                .with_hint("broadcasting aligns shapes from the right; each size must match or be 1"));
            }
        }
    }
    Ok(out)
}

impl Primitive for Map {
    fn name(&self) -> &'static str {
        "map"
    }

    fn attrs(&self) -> String {
        self.expr.to_string()
    }

    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }

    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let operands = k.graph.operands(node);
        let shape = k.dims(node);
        let v = translate(&self.expr, k, &operands, &shape, at);
        match self.dtype {
            DType::I64 => Value::new(cast(CTy::I64, v.to_f32()), CTy::I64),
            _ => Value::f32(v.to_f32()),
        }
    }

    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        if self.expr.arity() > inputs.len() {
            return Err(OpError::new(format!(
                "map body uses {} operands, got {}",
                self.expr.arity(),
                inputs.len()
            )));
        }
        let shapes: Vec<&[Dim]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        Ok(TensorType::new(self.dtype, broadcast_shapes(&shapes)?))
    }

    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let mut args = vec![0.0; inputs.len()];
        let mut coords = vec![0; out.len()];
        let n: usize = out.iter().product();
        let integral = self.dtype == DType::I64;
        let data = (0..n)
            .map(|flat| {
                unravel_into(flat, out, &mut coords);
                for (a, t) in args.iter_mut().zip(inputs) {
                    *a = t.data[broadcast_index(&coords, &t.shape)].to_f64();
                }
                let v = self.expr.eval(&EvalEnv {
                    args: &args,
                    coords: &coords,
                    flat,
                });
                T::from_f64(if integral { v.trunc() } else { v })
            })
            .collect();
        RefTensor {
            shape: out.to_vec(),
            data,
        }
    }

    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let operands = ad.g.operands(node);
        let g = operands.len();
        let mut grads = Vec::with_capacity(g);
        for (k, &operand) in operands.iter().enumerate() {
            let d = self.expr.derivative(k);
            if d == SExpr::Const(0.0) || !ad.ty(operand).dtype.is_float() {
                grads.push(None);
                continue;
            }
            let body = arg(g) * d;
            let (body, used) = compact_operands(&body, &[operands.as_slice(), &[grad]].concat());
            let full = ad.map(body, &used)?;
            let shape = ad.ty(operand).shape.clone();
            grads.push(Some(ad.sum_to(full, &shape)?));
        }
        Ok(grads)
    }

    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Map {
        Map {
            expr: self.expr.bind_dims(bindings),
            dtype: self.dtype,
        }
    }
}

/// Drops operands the body does not use and renumbers the rest, so gradient
/// nodes only depend on what they read.
pub fn compact_operands(body: &SExpr, operands: &[NodeId]) -> (SExpr, Vec<NodeId>) {
    let mut used = vec![false; operands.len()];
    body.visit(&mut |e| match e {
        SExpr::Arg(k) | SExpr::Uniform { seed: k, .. } => used[*k] = true,
        _ => {}
    });
    let mut map = vec![usize::MAX; operands.len()];
    let mut kept = Vec::new();
    for (k, &id) in operands.iter().enumerate() {
        if used[k] {
            // The same node used twice becomes one operand.
            map[k] = match kept.iter().position(|&n| n == id) {
                Some(p) => p,
                None => {
                    kept.push(id);
                    kept.len() - 1
                }
            };
        }
    }
    (body.remap_args(&map), kept)
}

/// The scalar expression as C, reading operand `k` (broadcast) through the inliner.
fn translate(e: &SExpr, k: &mut KernelCtx, operands: &[NodeId], shape: &[usize], at: &Coords) -> Value {
    let sub = |e: &SExpr, k: &mut KernelCtx| translate(e, k, operands, shape, at);
    match e {
        SExpr::Arg(i) => {
            let from = k.dims(operands[*i]);
            k.value_at(operands[*i], &at.broadcast(&from, shape))
        }
        SExpr::Const(v) => Value::f32(f32c(*v)),
        SExpr::Size(d) => Value::f32(f32c(
            d.as_const().unwrap_or_else(|| panic!("unbound size {d} in codegen")) as f64,
        )),
        SExpr::Coord(a) => Value::new(at.axes[*a].clone(), CTy::I32),
        SExpr::Uniform { seed, salt } => {
            let seed = k.value_at(operands[*seed], &Coords::from_axes(Vec::new()));
            let index = cast(CTy::U32, at.linear(shape));
            Value::f32(call(
                "netc_uniform",
                vec![cast(CTy::I64, seed.expr), KExpr::Int(i64::from(*salt)), index],
            ))
        }
        SExpr::Unary(op, a) => {
            let a = sub(a, k).to_f32();
            let f = |name: &'static str| call(name, vec![a.clone()]);
            Value::f32(match op {
                UnOp::Neg => -a,
                UnOp::Exp => f("expf"),
                UnOp::Log => f("logf"),
                UnOp::Sqrt => f("sqrtf"),
                UnOp::Rsqrt => f("rsqrtf"),
                UnOp::Tanh => f("tanhf"),
                UnOp::Sigmoid => f("netc_sigmoid"),
                UnOp::Erf => f("erff"),
                UnOp::Abs => f("fabsf"),
                UnOp::Recip => f32c(1.0) / a,
                UnOp::Log1p => f("log1pf"),
            })
        }
        SExpr::Binary(op, a, b) => {
            let (a, b) = (sub(a, k).to_f32(), sub(b, k).to_f32());
            let cmp = |o: kir::BinOp| Value::new(KExpr::bin(o, a.clone(), b.clone()), CTy::Bool);
            match op {
                BinOp::Add => Value::f32(a + b),
                BinOp::Sub => Value::f32(a - b),
                BinOp::Mul => Value::f32(a * b),
                BinOp::Div => Value::f32(a / b),
                BinOp::Max => Value::f32(call("fmaxf", vec![a, b])),
                BinOp::Min => Value::f32(call("fminf", vec![a, b])),
                BinOp::Pow if b == f32c(2.0) => Value::f32(a.clone() * a),
                BinOp::Pow => Value::f32(call("powf", vec![a, b])),
                BinOp::Lt => cmp(kir::BinOp::Lt),
                BinOp::Le => cmp(kir::BinOp::Le),
                BinOp::Gt => cmp(kir::BinOp::Gt),
                BinOp::Ge => cmp(kir::BinOp::Ge),
                BinOp::Eq => cmp(kir::BinOp::Eq),
                BinOp::Ne => cmp(kir::BinOp::Ne),
            }
        }
        SExpr::Select(c, a, b) => {
            let c = sub(c, k).to_bool();
            let (a, b) = (sub(a, k).to_f32(), sub(b, k).to_f32());
            Value::f32(kir::select(c, a, b))
        }
    }
}
