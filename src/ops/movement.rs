//! Movement ops: they only rearrange elements. Codegen folds them into the
//! index arithmetic of the kernels that read them, so most never run alone.

use super::{expect_arity, FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{Coords, KernelCtx, Value};
use crate::codegen::kir::{int, AssignOp, KExpr, KStmt};
use crate::ir::{fmt_shape, numel, Dim, NodeId, TensorType};
use crate::reference::{broadcast_index, ravel, Real, RefTensor};
use std::collections::HashMap;

fn bind_shape(shape: &[Dim], bindings: &HashMap<String, i64>) -> Vec<Dim> {
    shape.iter().map(|d| d.bind(bindings)).collect()
}

/// Same elements in row-major order, new shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub shape: Vec<Dim>,
}

impl Primitive for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        let flat = at.linear(&k.dims(node));
        let from = k.dims(x);
        k.value_at(x, &Coords::from_flat(flat, &from))
    }
    fn attrs(&self) -> String {
        fmt_shape(&self.shape)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("reshape", inputs, 1)?;
        let t = inputs[0];
        if numel(&t.shape) != numel(&self.shape) {
            return Err(OpError::new(format!(
                "cannot reshape {t} ({} elements) to {} ({} elements)",
                numel(&t.shape),
                fmt_shape(&self.shape),
                numel(&self.shape)
            )));
        }
        Ok(TensorType::new(t.dtype, self.shape.clone()))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        RefTensor {
            shape: out.to_vec(),
            data: inputs[0].data.clone(),
        }
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let shape = ad.ty(x).shape.clone();
        Ok(vec![Some(ad.reshape(grad, shape)?)])
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        Reshape {
            shape: bind_shape(&self.shape, bindings),
        }
    }
}

/// Output axis `i` is input axis `perm[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Permute {
    pub perm: Vec<usize>,
}

impl Permute {
    pub fn inverse(&self) -> Permute {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        Permute { perm: inv }
    }
}

impl Primitive for Permute {
    fn name(&self) -> &'static str {
        "permute"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        let mut axes = vec![int(0); self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            axes[p] = at.axes[i].clone();
        }
        k.value_at(x, &Coords::from_axes(axes))
    }
    fn attrs(&self) -> String {
        format!("{:?}", self.perm)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("permute", inputs, 1)?;
        let t = inputs[0];
        let mut seen = vec![false; t.rank()];
        if self.perm.len() != t.rank()
            || self
                .perm
                .iter()
                .any(|&p| p >= t.rank() || std::mem::replace(&mut seen[p], true))
        {
            return Err(OpError::new(format!(
                "{:?} is not a permutation of the {} axes of {t}",
                self.perm,
                t.rank()
            )));
        }
        Ok(TensorType::new(
            t.dtype,
            self.perm.iter().map(|&p| t.shape[p].clone()).collect(),
        ))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let mut src = vec![0; out.len()];
        RefTensor::from_fn(out, |c| {
            for (i, &p) in self.perm.iter().enumerate() {
                src[p] = c[i];
            }
            x.at(&src)
        })
    }
    fn backward(&self, ad: &mut AdCtx, _: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Ok(vec![Some(ad.add(self.inverse(), &[grad])?)])
    }
}

/// Broadcasts size-1 axes (and new leading axes) to a larger shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Expand {
    pub shape: Vec<Dim>,
}

impl Primitive for Expand {
    fn name(&self) -> &'static str {
        "expand"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        let (from, to) = (k.dims(x), k.dims(node));
        k.value_at(x, &at.broadcast(&from, &to))
    }
    fn attrs(&self) -> String {
        fmt_shape(&self.shape)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("expand", inputs, 1)?;
        let t = inputs[0];
        let fits = t.rank() <= self.shape.len()
            && t.shape
                .iter()
                .zip(&self.shape[self.shape.len() - t.rank()..])
                .all(|(a, b)| a.is_const(1) || a == b);
        if !fits {
            return Err(OpError::new(format!("cannot expand {t} to {}", fmt_shape(&self.shape))));
        }
        Ok(TensorType::new(t.dtype, self.shape.clone()))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        RefTensor::from_fn(out, |c| x.data[broadcast_index(c, &x.shape)])
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let shape = ad.ty(x).shape.clone();
        Ok(vec![Some(ad.sum_to(grad, &shape)?)])
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        Expand {
            shape: bind_shape(&self.shape, bindings),
        }
    }
}

/// `x[..., start:start+len, ...]` along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub axis: usize,
    pub start: Dim,
    pub len: Dim,
}

impl Primitive for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        let mut axes = at.axes.clone();
        axes[self.axis] = axes[self.axis].clone() + const_of(&self.start) as i64;
        k.value_at(x, &Coords::from_axes(axes))
    }
    fn attrs(&self) -> String {
        format!("axis={}, start={}, len={}", self.axis, self.start, self.len)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("slice", inputs, 1)?;
        let t = inputs[0];
        if self.axis >= t.rank() {
            return Err(OpError::new(format!("cannot slice axis {} of {t}", self.axis)));
        }
        let end = self.start.add(&self.len);
        if let (Some(e), Some(n)) = (end.as_const(), t.shape[self.axis].as_const()) {
            if e > n || self.start.as_const().is_some_and(|s| s < 0) {
                return Err(OpError::new(format!(
                    "slice {}..{e} is out of range for axis {} of {t}",
                    self.start, self.axis
                )));
            }
        }
        let mut shape = t.shape.clone();
        shape[self.axis] = self.len.clone();
        Ok(TensorType::new(t.dtype, shape))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let start = const_of(&self.start);
        let mut src = vec![0; out.len()];
        RefTensor::from_fn(out, |c| {
            src.copy_from_slice(c);
            src[self.axis] += start;
            x.at(&src)
        })
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let total = ad.ty(x).shape[self.axis].clone();
        let after = total.sub(&self.start).sub(&self.len);
        Ok(vec![Some(ad.add(
            Pad {
                axis: self.axis,
                before: self.start.clone(),
                after,
            },
            &[grad],
        )?)])
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        Slice {
            axis: self.axis,
            start: self.start.bind(bindings),
            len: self.len.bind(bindings),
        }
    }
}

/// Zero padding along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub axis: usize,
    pub before: Dim,
    pub after: Dim,
}

impl Primitive for Pad {
    fn name(&self) -> &'static str {
        "pad"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        let (before, len) = (const_of(&self.before) as i64, k.dims(x)[self.axis] as i64);
        let i = at.axes[self.axis].clone();
        let mut axes = at.axes.clone();
        axes[self.axis] = i.clone() - before;
        let inside = i.clone().ge(int(before)).and(i.lt(int(before + len)));
        guarded_choice(k, x, vec![(inside, Coords::from_axes(axes))])
    }
    fn attrs(&self) -> String {
        format!("axis={}, before={}, after={}", self.axis, self.before, self.after)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("pad", inputs, 1)?;
        let t = inputs[0];
        if self.axis >= t.rank() {
            return Err(OpError::new(format!("cannot pad axis {} of {t}", self.axis)));
        }
        let mut shape = t.shape.clone();
        shape[self.axis] = shape[self.axis].add(&self.before).add(&self.after);
        Ok(TensorType::new(t.dtype, shape))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let before = const_of(&self.before);
        let mut src = vec![0; out.len()];
        RefTensor::from_fn(out, |c| {
            let i = c[self.axis];
            if i < before || i - before >= x.shape[self.axis] {
                return T::zero();
            }
            src.copy_from_slice(c);
            src[self.axis] = i - before;
            x.at(&src)
        })
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let len = ad.ty(x).shape[self.axis].clone();
        Ok(vec![Some(ad.add(
            Slice {
                axis: self.axis,
                start: self.before.clone(),
                len,
            },
            &[grad],
        )?)])
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        Pad {
            axis: self.axis,
            before: self.before.bind(bindings),
            after: self.after.bind(bindings),
        }
    }
}

/// Joins operands along an axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: usize,
}

impl Primitive for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let parts = k.graph.operands(node);
        let i = at.axes[self.axis].clone();
        let mut start = 0i64;
        let mut cases = Vec::new();
        for &p in &parts {
            let len = k.dims(p)[self.axis] as i64;
            let mut axes = at.axes.clone();
            axes[self.axis] = i.clone() - start;
            cases.push((p, i.clone().lt(int(start + len)), Coords::from_axes(axes)));
            start += len;
        }
        concat_choice(k, cases)
    }
    fn attrs(&self) -> String {
        format!("axis={}", self.axis)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        let Some(first) = inputs.first() else {
            return Err(OpError::new("concat needs at least one tensor"));
        };
        if self.axis >= first.rank() {
            return Err(OpError::new(format!(
                "cannot concatenate along axis {} of {first}",
                self.axis
            )));
        }
        let mut shape = first.shape.clone();
        for t in &inputs[1..] {
            let same_elsewhere = t.rank() == first.rank()
                && t.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(a, (x, y))| a == self.axis || x == y);
            if !same_elsewhere || t.dtype != first.dtype {
                return Err(OpError::new(format!(
                    "cannot concatenate {t} with {first} along axis {}: other axes and dtypes must match",
                    self.axis
                )));
            }
            shape[self.axis] = shape[self.axis].add(&t.shape[self.axis]);
        }
        Ok(TensorType::new(first.dtype, shape))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let mut src = vec![0; out.len()];
        RefTensor::from_fn(out, |c| {
            let mut i = c[self.axis];
            for x in inputs {
                if i < x.shape[self.axis] {
                    src.copy_from_slice(c);
                    src[self.axis] = i;
                    return x.data[ravel(&src, &x.shape)];
                }
                i -= x.shape[self.axis];
            }
            unreachable!("coordinate beyond the concatenated extent")
        })
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let mut start = Dim::lit(0);
        let mut grads = Vec::new();
        for x in ad.g.operands(node) {
            let len = ad.ty(x).shape[self.axis].clone();
            grads.push(Some(ad.add(
                Slice {
                    axis: self.axis,
                    start: start.clone(),
                    len: len.clone(),
                },
                &[grad],
            )?));
            start = start.add(&len);
        }
        Ok(grads)
    }
}

fn const_of(d: &Dim) -> usize {
    d.as_const()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or_else(|| panic!("size {d} is not bound"))
}

/// `cond ? x[at] : 0` where the load must not happen when `cond` fails (it
/// would read out of bounds), so it is computed inside an `if`.
fn guarded_choice(k: &mut KernelCtx, x: NodeId, cases: Vec<(KExpr, Coords)>) -> Value {
    let parts = cases.into_iter().map(|(c, at)| (x, c, at)).collect();
    concat_choice(k, parts)
}

/// The value of the first part whose condition holds (zero if none), each
/// part computed only inside its own branch.
fn concat_choice(k: &mut KernelCtx, parts: Vec<(NodeId, KExpr, Coords)>) -> Value {
    let ty = crate::codegen::ctx::c_type(k.graph.ty(parts[0].0).dtype);
    let result = k.mutable("v", ty, int(0));
    let mut branches = Vec::new();
    for (x, cond, at) in parts {
        k.push_scope();
        let v = k.value_at(x, &at);
        k.assign(result.clone(), AssignOp::Set, v.expr);
        branches.push((cond, k.pop_scope()));
    }
    // Build `if (c0) {..} else if (c1) {..}` from the last branch up; the last
    // part of a concat needs no test.
    let mut chain: Vec<KStmt> = Vec::new();
    let count = branches.len();
    for (idx, (cond, body)) in branches.into_iter().enumerate().rev() {
        chain = if idx + 1 == count && count > 1 {
            body
        } else {
            vec![KStmt::If {
                cond,
                then: body,
                otherwise: chain,
            }]
        };
    }
    for s in chain {
        k.emit(s);
    }
    Value::new(result, ty)
}
