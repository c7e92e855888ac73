//! `reduce`: sum, mean, max or argmax over a set of axes.

use super::{expect_arity, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::ir::expr::arg;
use crate::ir::{numel, Dim, NodeId, SExpr, TensorType};
use crate::ops::Expand;
use crate::reference::{ravel, unravel_into, Real, RefTensor};
use crate::tensor::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    /// Index of the first maximum; i64, like `torch.argmax` (single axis).
    ArgMax,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    /// Sorted, distinct.
    pub axes: Vec<usize>,
    pub keepdim: bool,
}

impl Reduce {
    pub fn new(kind: ReduceKind, mut axes: Vec<usize>, keepdim: bool) -> Reduce {
        axes.sort_unstable();
        axes.dedup();
        Reduce { kind, axes, keepdim }
    }

    /// The input shape with reduced axes kept as size 1.
    pub fn kept_shape(&self, input: &[Dim]) -> Vec<Dim> {
        input
            .iter()
            .enumerate()
            .map(|(a, d)| if self.axes.contains(&a) { Dim::lit(1) } else { d.clone() })
            .collect()
    }

    /// How many elements each output reduces.
    pub fn extent(&self, input: &[Dim]) -> Dim {
        numel(&self.axes.iter().map(|&a| input[a].clone()).collect::<Vec<_>>())
    }
}

impl Primitive for Reduce {
    fn name(&self) -> &'static str {
        match self.kind {
            ReduceKind::Sum => "sum",
            ReduceKind::Mean => "mean",
            ReduceKind::Max => "max",
            ReduceKind::ArgMax => "argmax",
        }
    }

    fn attrs(&self) -> String {
        let axes: Vec<String> = self.axes.iter().map(usize::to_string).collect();
        format!("axes=[{}]{}", axes.join(", "), if self.keepdim { ", keepdim" } else { "" })
    }

    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 1)?;
        let t = inputs[0];
        if let Some(&bad) = self.axes.iter().find(|&&a| a >= t.rank()) {
            return Err(OpError::new(format!("cannot reduce axis {bad} of a rank-{} tensor {t}", t.rank())));
        }
        if self.kind == ReduceKind::ArgMax && self.axes.len() != 1 {
            return Err(OpError::new("argmax reduces exactly one axis"));
        }
        let shape = if self.keepdim {
            self.kept_shape(&t.shape)
        } else {
            t.shape.iter().enumerate().filter(|(a, _)| !self.axes.contains(a)).map(|(_, d)| d.clone()).collect()
        };
        let dtype = if self.kind == ReduceKind::ArgMax { DType::I64 } else { t.dtype };
        Ok(TensorType::new(dtype, shape))
    }

    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let kept: Vec<usize> =
            x.shape.iter().enumerate().map(|(a, &n)| if self.axes.contains(&a) { 1 } else { n }).collect();
        let count: usize = self.axes.iter().map(|&a| x.shape[a]).product();
        let mut acc: Vec<(T, usize)> = vec![(T::zero(), usize::MAX); kept.iter().product()];
        let mut coords = vec![0; x.shape.len()];
        for (flat, &v) in x.data.iter().enumerate() {
            unravel_into(flat, &x.shape, &mut coords);
            let position = self.axes.iter().fold(0, |p, &a| p * x.shape[a] + coords[a]);
            for &a in &self.axes {
                coords[a] = 0;
            }
            let slot = &mut acc[ravel(&coords, &kept)];
            match self.kind {
                ReduceKind::Sum | ReduceKind::Mean => slot.0 += v,
                // Strictly greater keeps the first maximum, as PyTorch does.
                ReduceKind::Max | ReduceKind::ArgMax => {
                    if slot.1 == usize::MAX || v > slot.0 {
                        *slot = (v, position);
                    }
                }
            }
        }
        let data = acc
            .into_iter()
            .map(|(v, pos)| match self.kind {
                ReduceKind::Sum | ReduceKind::Max => v,
                ReduceKind::Mean => v / T::from_f64(count as f64),
                ReduceKind::ArgMax => T::from_f64(pos as f64),
            })
            .collect();
        RefTensor { shape: out.to_vec(), data }
    }

    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let in_shape = ad.ty(x).shape.clone();
        let kept = self.kept_shape(&in_shape);
        let g = ad.reshape(grad, kept.clone())?;
        let g = ad.add(Expand { shape: in_shape.clone() }, &[g])?;
        let gx = match self.kind {
            ReduceKind::Sum => g,
            ReduceKind::Mean => ad.map(arg(0) / SExpr::Size(self.extent(&in_shape)), &[g])?,
            ReduceKind::Max => {
                // Ties share the gradient equally, as torch.amax does.
                let m = ad.reshape(node, kept)?;
                let hit = ad.map(arg(0).eq_(arg(1)), &[x, m])?;
                let ties = ad.add(Reduce::new(ReduceKind::Sum, self.axes.clone(), true), &[hit])?;
                ad.map(arg(0) * arg(1) / arg(2), &[g, hit, ties])?
            }
            ReduceKind::ArgMax => return Ok(vec![None]),
        };
        Ok(vec![Some(gx)])
    }
}
