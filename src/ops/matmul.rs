//! `matmul`: batched matrix product with optional transposed operands, so
//! that `Linear` (x @ Wᵀ) and every backward product need no transpose copy.

use super::map::broadcast_shapes;
use super::{expect_arity, expect_float, FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{CodegenError, Coords, KernelCtx};
use crate::codegen::gemm::{self, axis, CpuOrder, GemmOperands, GemmShape};
use crate::codegen::kir::{load, KExpr};
use crate::ir::{NodeId, TensorType};
use crate::reference::{Real, RefTensor};

/// `op(a) @ op(b)` where `op` transposes the last two axes when its flag is
/// set; leading (batch) axes broadcast.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MatMul {
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatMul {
    pub fn new(trans_a: bool, trans_b: bool) -> MatMul {
        MatMul { trans_a, trans_b }
    }
}

/// (rows, cols) of `op(x)` for the last two axes.
fn matrix_axes(rank: usize, transposed: bool) -> (usize, usize) {
    if transposed {
        (rank - 1, rank - 2)
    } else {
        (rank - 2, rank - 1)
    }
}

impl Primitive for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn attrs(&self) -> String {
        match (self.trans_a, self.trans_b) {
            (false, false) => String::new(),
            (true, false) => "aᵀ".into(),
            (false, true) => "bᵀ".into(),
            (true, true) => "aᵀ, bᵀ".into(),
        }
    }

    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }

    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let ops = k.graph.operands(node);
        let out = k.dims(node);
        let r = out.len();
        let operand = |k: &mut KernelCtx, id: NodeId, transposed: bool| Operand {
            name: k.buffer(id),
            shape: k.dims(id),
            transposed,
        };
        let plan = MatMulGemm {
            a: operand(k, ops[0], self.trans_a),
            b: operand(k, ops[1], self.trans_b),
            batch_shape: out[..r - 2].to_vec(),
        };
        let inner = plan.a.shape[matrix_axes(plan.a.shape.len(), self.trans_a).1];
        let shape = GemmShape {
            batch: out[..r - 2].iter().product(),
            m: vec![axis("row", out[r - 2])],
            n: vec![axis("col", out[r - 1])],
            k: vec![axis("k", inner)],
        };
        gemm::emit(k, node, shape, &plan);
        Ok(())
    }

    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("matmul", inputs, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        expect_float("matmul", "left operand", a)?;
        expect_float("matmul", "right operand", b)?;
        if a.rank() < 2 || b.rank() < 2 {
            return Err(
                OpError::new(format!("matmul needs operands of rank 2 or more, got {a} and {b}"))
                    .with_hint("reshape a vector to [1, n] or [n, 1] first"),
            );
        }
        let (m, k) = matrix_axes(a.rank(), self.trans_a);
        let (k2, n) = matrix_axes(b.rank(), self.trans_b);
        if a.shape[k] != b.shape[k2] {
            return Err(OpError::new(format!(
                "matmul inner sizes differ: {a} has {} columns but {b} has {} rows",
                a.shape[k], b.shape[k2]
            )));
        }
        let batch = broadcast_shapes(&[&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2]])?;
        let mut shape = batch;
        shape.push(a.shape[m].clone());
        shape.push(b.shape[n].clone());
        Ok(TensorType::new(a.dtype, shape))
    }

    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (a, b) = (inputs[0], inputs[1]);
        let r = out.len();
        let (ma, ka) = matrix_axes(a.shape.len(), self.trans_a);
        let (kb, nb) = matrix_axes(b.shape.len(), self.trans_b);
        let inner = a.shape[ka];
        let mut ia = vec![0; a.shape.len()];
        let mut ib = vec![0; b.shape.len()];
        RefTensor::from_fn(out, |c| {
            // Batch coordinates, broadcast into each operand.
            let batch = &c[..r - 2];
            let fill = |idx: &mut Vec<usize>, shape: &[usize]| {
                let lead = shape.len() - 2;
                let off = batch.len() - lead;
                for ax in 0..lead {
                    idx[ax] = if shape[ax] == 1 { 0 } else { batch[off + ax] };
                }
            };
            fill(&mut ia, &a.shape);
            fill(&mut ib, &b.shape);
            ia[ma] = c[r - 2];
            ib[nb] = c[r - 1];
            let mut acc = T::zero();
            for k in 0..inner {
                ia[ka] = k;
                ib[kb] = k;
                acc += a.at(&ia) * b.at(&ib);
            }
            acc
        })
    }

    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let ops = ad.g.operands(node);
        let (a, b) = (ops[0], ops[1]);
        let (ta, tb) = (self.trans_a, self.trans_b);
        // d op(a) = dC @ op(b)ᵀ and d op(b) = op(a)ᵀ @ dC, re-expressed with flags
        // so that the gradient comes out in the operand's own layout.
        let ga = if ta {
            ad.add(MatMul::new(tb, true), &[b, grad])?
        } else {
            ad.add(MatMul::new(false, !tb), &[grad, b])?
        };
        let gb = if tb {
            ad.add(MatMul::new(true, ta), &[grad, a])?
        } else {
            ad.add(MatMul::new(!ta, false), &[a, grad])?
        };
        let (sa, sb) = (ad.ty(a).shape.clone(), ad.ty(b).shape.clone());
        Ok(vec![Some(ad.sum_to(ga, &sa)?), Some(ad.sum_to(gb, &sb)?)])
    }
}

struct Operand {
    name: String,
    shape: Vec<usize>,
    transposed: bool,
}

impl Operand {
    /// Element (row, col) of `op(x)` in batch `b`, batch axes broadcast.
    fn at(&self, batch_shape: &[usize], b: &KExpr, row: &KExpr, col: &KExpr) -> KExpr {
        let lead = &self.shape[..self.shape.len() - 2];
        let mut axes = Coords::from_flat(b.clone(), batch_shape)
            .broadcast(lead, batch_shape)
            .axes;
        let (r, c) = if self.transposed { (col, row) } else { (row, col) };
        axes.push(r.clone());
        axes.push(c.clone());
        load(self.name.clone(), Coords::from_axes(axes).linear(&self.shape))
    }
}

struct MatMulGemm {
    a: Operand,
    b: Operand,
    batch_shape: Vec<usize>,
}

impl GemmOperands for MatMulGemm {
    fn a(&self, _: &mut KernelCtx, b: &KExpr, m: &[KExpr], kk: &[KExpr]) -> KExpr {
        self.a.at(&self.batch_shape, b, &m[0], &kk[0])
    }
    fn b(&self, _: &mut KernelCtx, b: &KExpr, kk: &[KExpr], n: &[KExpr]) -> KExpr {
        self.b.at(&self.batch_shape, b, &kk[0], &n[0])
    }
    fn out(&self, _: &mut KernelCtx, b: &KExpr, m: &[KExpr], n: &[KExpr]) -> Coords {
        let mut axes = Coords::from_flat(b.clone(), &self.batch_shape).axes;
        axes.push(m[0].clone());
        axes.push(n[0].clone());
        Coords::from_axes(axes)
    }
    /// With B transposed (x @ Wᵀ) both operands run along k: dot products.
    fn cpu_order(&self) -> CpuOrder {
        if self.b.transposed {
            CpuOrder::DotProduct
        } else {
            CpuOrder::RowUpdate
        }
    }
}
