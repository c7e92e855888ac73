//! `reduce`: sum, mean, max or argmax over a set of axes.

use super::{expect_arity, FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{CodegenError, Coords, KernelCtx, Value};
use crate::codegen::kir::{call, cast, f32c, int, var, AssignOp, CTy, KExpr, KStmt, LoopHint};
use crate::codegen::templates::{block_idx, for_each_output, thread_idx};
use crate::codegen::Target;
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
        format!(
            "axes=[{}]{}",
            axes.join(", "),
            if self.keepdim { ", keepdim" } else { "" }
        )
    }

    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }

    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let x = k.graph.operands(node)[0];
        let shape = k.dims(x);
        let out_shape = k.dims(node);
        let kept: Vec<usize> = (0..shape.len())
            .filter(|a| !self.axes.contains(a))
            .map(|a| shape[a])
            .collect();
        let reduced: Vec<usize> = self.axes.iter().map(|&a| shape[a]).collect();
        let n_out: usize = kept.iter().product();
        let extent: usize = reduced.iter().product();
        // Input coordinates of (output index o, reduction index r).
        let coords = |o: &KExpr, r: &KExpr| {
            let (ko, kr) = (
                Coords::from_flat(o.clone(), &kept).axes,
                Coords::from_flat(r.clone(), &reduced).axes,
            );
            let (mut ko, mut kr) = (ko.into_iter(), kr.into_iter());
            let axes = (0..shape.len())
                .map(|a| if self.axes.contains(&a) { kr.next() } else { ko.next() }.expect("axes partition the shape"))
                .collect();
            Coords::from_axes(axes)
        };
        let block_wide = k.target == Target::Gpu && extent >= 64;
        if block_wide {
            k.cooperative = true;
            let threads = 256.min(extent.next_power_of_two());
            k.block = [threads as u32, 1, 1];
            k.grid = [n_out as u32, 1, 1];
            let o = k.constant("o", CTy::I32, block_idx('x'));
            let acc = self.accumulate(k, x, CTy::F32, thread_idx('x'), var("blockDim.x"), extent, &|r| {
                coords(&o, r)
            });
            k.emit(KStmt::Shared {
                ty: CTy::F32,
                name: "red".into(),
                len: 32,
            });
            let combined = match self.kind {
                ReduceKind::Sum | ReduceKind::Mean => call("netc_block_sum", vec![acc.value.clone(), var("red")]),
                ReduceKind::Max => call("netc_block_max", vec![acc.value.clone(), var("red")]),
                ReduceKind::ArgMax => {
                    k.emit(KStmt::Shared {
                        ty: CTy::I32,
                        name: "red_index".into(),
                        len: 32,
                    });
                    call(
                        "netc_block_argmax",
                        vec![acc.value.clone(), acc.index.clone(), var("red"), var("red_index")],
                    )
                }
            };
            let target = if self.kind == ReduceKind::ArgMax {
                acc.index.clone()
            } else {
                acc.value.clone()
            };
            k.assign(target, AssignOp::Set, combined);
            k.push_scope();
            self.finish(k, node, &acc, extent, &Coords::from_flat(o, &out_shape));
            let store = k.pop_scope();
            k.emit(KStmt::If {
                cond: thread_idx('x').eq(int(0)),
                then: store,
                otherwise: vec![],
            });
        } else if k.target == Target::Cpu {
            // Long sums on the CPU accumulate in double, so results stay
            // within the oracle's tolerance whatever the extent.
            for_each_output(k, n_out, extent, |k, o| {
                let kept_axes = Coords::from_flat(o.clone(), &kept).axes;
                let acc = self.accumulate_nested(k, x, &shape, kept_axes);
                self.finish(k, node, &acc, extent, &Coords::from_flat(o, &out_shape));
            });
        } else {
            for_each_output(k, n_out, extent, |k, o| {
                let acc = self.accumulate(k, x, CTy::F32, int(0), int(1), extent, &|r| coords(&o, r));
                self.finish(k, node, &acc, extent, &Coords::from_flat(o, &out_shape));
            });
        }
        Ok(())
    }

    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 1)?;
        let t = inputs[0];
        if let Some(&bad) = self.axes.iter().find(|&&a| a >= t.rank()) {
            return Err(OpError::new(format!(
                "cannot reduce axis {bad} of a rank-{} tensor {t}",
                t.rank()
            )));
        }
        if self.kind == ReduceKind::ArgMax && self.axes.len() != 1 {
            return Err(OpError::new("argmax reduces exactly one axis"));
        }
        let shape = if self.keepdim {
            self.kept_shape(&t.shape)
        } else {
            t.shape
                .iter()
                .enumerate()
                .filter(|(a, _)| !self.axes.contains(a))
                .map(|(_, d)| d.clone())
                .collect()
        };
        let dtype = if self.kind == ReduceKind::ArgMax {
            DType::I64
        } else {
            t.dtype
        };
        Ok(TensorType::new(dtype, shape))
    }

    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let kept: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(a, &n)| if self.axes.contains(&a) { 1 } else { n })
            .collect();
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
        RefTensor {
            shape: out.to_vec(),
            data,
        }
    }

    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let in_shape = ad.ty(x).shape.clone();
        let kept = self.kept_shape(&in_shape);
        let g = ad.reshape(grad, kept.clone())?;
        let g = ad.add(
            Expand {
                shape: in_shape.clone(),
            },
            &[g],
        )?;
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

impl Reduce {
    /// Emits `for (r = start; r < extent; r += step)` folding the input into
    /// an accumulator; returns (accumulator, argmax index) variables.
    #[allow(clippy::too_many_arguments)]
    fn accumulate(
        &self,
        k: &mut KernelCtx,
        x: NodeId,
        acc_ty: CTy,
        start: KExpr,
        step: KExpr,
        extent: usize,
        coords: &dyn Fn(&KExpr) -> Coords,
    ) -> Accumulator {
        let lowest = f32c(f64::NEG_INFINITY);
        let (init, ty) = match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => (f32c(0.0), acc_ty),
            ReduceKind::Max | ReduceKind::ArgMax => (lowest, CTy::F32),
        };
        let acc = k.mutable("acc", ty, init);
        let index = if self.kind == ReduceKind::ArgMax {
            k.mutable("arg", CTy::I32, int(0))
        } else {
            int(0)
        };
        k.push_scope();
        let v = k.value_at(x, &coords(&var("r"))).to_f32();
        match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => {
                let v = if ty == CTy::F64 { cast(CTy::F64, v) } else { v };
                k.assign(acc.clone(), AssignOp::Add, v);
            }
            ReduceKind::Max => k.assign(acc.clone(), AssignOp::Set, call("fmaxf", vec![acc.clone(), v])),
            ReduceKind::ArgMax => keep_first_maximum(k, &acc, &index, v, var("r")),
        }
        let body = k.pop_scope();
        k.emit(KStmt::For {
            var: "r".into(),
            start,
            end: int(extent as i64),
            step,
            body,
            hint: LoopHint::Compiler,
        });
        Accumulator { value: acc, index, ty }
    }

    /// The CPU form of [`Reduce::accumulate`]: one loop per reduced axis
    /// (no index division), the innermost one a vectorised sum.
    fn accumulate_nested(&self, k: &mut KernelCtx, x: NodeId, shape: &[usize], kept: Vec<KExpr>) -> Accumulator {
        let (init, ty) = match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => (f32c(0.0), CTy::F64),
            ReduceKind::Max | ReduceKind::ArgMax => (f32c(f64::NEG_INFINITY), CTy::F32),
        };
        let acc = k.mutable("acc", ty, init);
        let index = if self.kind == ReduceKind::ArgMax {
            k.mutable("arg", CTy::I32, int(0))
        } else {
            int(0)
        };
        // Reduced axes of size 1 need no loop.
        let looped: Vec<usize> = self.axes.iter().copied().filter(|&a| shape[a] != 1).collect();
        let names: Vec<String> = (0..looped.len()).map(|i| format!("r{i}")).collect();
        for _ in &looped {
            k.push_scope();
        }
        let mut kept = kept.into_iter();
        let axes: Vec<KExpr> = (0..shape.len())
            .map(|a| match looped.iter().position(|&l| l == a) {
                Some(i) => var(&names[i]),
                None if self.axes.contains(&a) => int(0),
                None => kept.next().expect("axes partition the shape"),
            })
            .collect();
        let v = k.value_at(x, &Coords::from_axes(axes)).to_f32();
        match self.kind {
            ReduceKind::Sum | ReduceKind::Mean => k.assign(acc.clone(), AssignOp::Add, cast(CTy::F64, v)),
            ReduceKind::Max => k.assign(acc.clone(), AssignOp::Set, call("fmaxf", vec![acc.clone(), v])),
            ReduceKind::ArgMax => {
                let reduced: Vec<usize> = looped.iter().map(|&a| shape[a]).collect();
                let position = Coords::from_axes(names.iter().map(var).collect()).linear(&reduced);
                keep_first_maximum(k, &acc, &index, v, position);
            }
        }
        for (i, &a) in looped.iter().enumerate().rev() {
            let body = k.pop_scope();
            let innermost = i + 1 == looped.len();
            let hint = match (&acc, innermost, self.kind) {
                (KExpr::Var(name), true, ReduceKind::Sum | ReduceKind::Mean) => LoopHint::VectorizeSum {
                    var: name.clone(),
                    len: None,
                },
                _ => LoopHint::Compiler,
            };
            k.emit(KStmt::For {
                var: names[i].clone(),
                start: int(0),
                end: int(shape[a] as i64),
                step: int(1),
                body,
                hint,
            });
        }
        Accumulator { value: acc, index, ty }
    }

    /// Binds the reduced value to the node and stores the kernel's root.
    fn finish(&self, k: &mut KernelCtx, node: NodeId, acc: &Accumulator, extent: usize, at: &Coords) {
        let sum = Value::new(acc.value.clone(), acc.ty).to_f32();
        let value = match self.kind {
            ReduceKind::Sum | ReduceKind::Max => Value::f32(sum),
            ReduceKind::Mean => Value::f32(sum * f32c(1.0 / extent as f64)),
            ReduceKind::ArgMax => Value::new(cast(CTy::I64, acc.index.clone()), CTy::I64),
        };
        let value = k.name_value(value);
        k.bind(node, value);
        k.store_root(at);
    }
}

/// `if (v > acc) { acc = v; index = position; }`: strictly greater keeps
/// the first maximum, as PyTorch does.
fn keep_first_maximum(k: &mut KernelCtx, acc: &KExpr, index: &KExpr, v: KExpr, position: KExpr) {
    let update = vec![
        KStmt::Assign {
            target: acc.clone(),
            op: AssignOp::Set,
            value: v.clone(),
        },
        KStmt::Assign {
            target: index.clone(),
            op: AssignOp::Set,
            value: position,
        },
    ];
    k.emit(KStmt::If {
        cond: v.gt(acc.clone()),
        then: update,
        otherwise: vec![],
    });
}

/// The running value of a reduction and, for argmax, its position.
struct Accumulator {
    value: KExpr,
    index: KExpr,
    ty: CTy,
}
