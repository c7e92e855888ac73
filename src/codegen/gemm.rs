//! One matrix-product template for every contraction: matmul, convolution
//! (as an implicit GEMM over im2col indices) and both convolution
//! gradients. An op describes its problem as
//! `out[b, m, n] = Σ_k A(b, m, k) · B(b, k, n)`, where m, n and k may each
//! be several named axes (a convolution's n is (oy, ox)), by giving index
//! expressions for A, B and the output; the template supplies the loops.

use super::ctx::{Coords, KernelCtx, Value};
use super::kir::{call, cast, f32c, int, load, select, var, AssignOp, CTy, KExpr, KStmt, LoopHint};
use super::templates::{block_idx, ceil_div, thread_idx};
use super::Target;
use crate::ir::NodeId;

/// One axis of m, n or k: its name in the generated code and its size.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    pub name: &'static str,
    pub size: usize,
}

pub fn axis(name: &'static str, size: usize) -> Axis {
    Axis { name, size }
}

/// Sizes of a batched product.
#[derive(Clone, Debug)]
pub struct GemmShape {
    pub batch: usize,
    pub m: Vec<Axis>,
    pub n: Vec<Axis>,
    pub k: Vec<Axis>,
}

fn total(axes: &[Axis]) -> usize {
    axes.iter().map(|a| a.size).product()
}

/// How the CPU schedule walks a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuOrder {
    /// k outer, a row of outputs inner: for B contiguous along the last n axis
    /// (matmul, convolution, its input gradient).
    RowUpdate,
    /// One output at a time, a vectorised sum over the last k axis: for A and
    /// B both contiguous along k (x @ Wᵀ, the weight gradient).
    DotProduct,
}

/// Index expressions of a contraction. Expressions must be pure (no loads
/// in emitted statements), because the template evaluates them only under
/// bounds checks; integer index statements (`k.index`) are fine.
pub trait GemmOperands {
    /// A(b, m, k), including any zero padding.
    fn a(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], kk: &[KExpr]) -> KExpr;
    /// B(b, k, n), including any zero padding.
    fn b(&self, k: &mut KernelCtx, b: &KExpr, kk: &[KExpr], n: &[KExpr]) -> KExpr;
    /// Coordinates of out[b, m, n] in the anchor node's shape.
    fn out(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], n: &[KExpr]) -> Coords;
    fn cpu_order(&self) -> CpuOrder;
}

// GPU tile: 64×64 outputs per 256-thread block, each thread 4×4, K in steps of 16.
const TILE: usize = 64;
const TILE_K: usize = 16;
const THREADS: usize = 256;
const MICRO: usize = 4;

// CPU: rows of outputs in chunks of this many columns.
const CPU_COLS: usize = 64;
/// Longer sums than this accumulate in double on the CPU. Vectorised sums
/// keep per-lane partial sums, which already shortens the error's chains.
const CPU_DOUBLE_ACC_K: usize = 1 << 16;

pub fn emit(k: &mut KernelCtx, anchor: NodeId, shape: GemmShape, ops: &dyn GemmOperands) {
    match (k.target, ops.cpu_order()) {
        (Target::Gpu, _) => emit_gpu(k, anchor, &shape, ops),
        (Target::Cpu, CpuOrder::RowUpdate) => emit_cpu_rows(k, anchor, &shape, ops),
        (Target::Cpu, CpuOrder::DotProduct) => emit_cpu_dots(k, anchor, &shape, ops),
    }
}

/// The per-axis indices of a flat index over `axes` (named after them).
fn split(k: &mut KernelCtx, flat: KExpr, axes: &[Axis]) -> Vec<KExpr> {
    if let [only] = axes {
        return vec![k.index(only.name, flat)];
    }
    let sizes: Vec<usize> = axes.iter().map(|a| a.size).collect();
    let coords = Coords::from_flat(flat, &sizes).axes;
    axes.iter().zip(coords).map(|(a, c)| k.index(a.name, c)).collect()
}

fn emit_gpu(k: &mut KernelCtx, anchor: NodeId, s: &GemmShape, ops: &dyn GemmOperands) {
    let (m, n, kt) = (total(&s.m), total(&s.n), total(&s.k));
    k.cooperative = true;
    k.block = [THREADS as u32, 1, 1];
    k.grid = [ceil_div(n, TILE) as u32, ceil_div(m, TILE) as u32, s.batch as u32];
    let (m_total, n_total, k_total) = (int(m as i64), int(n as i64), int(kt as i64));
    let b = if s.batch == 1 {
        int(0)
    } else {
        k.constant("b", CTy::I32, block_idx('z'))
    };
    let m0 = k.constant("m0", CTy::I32, block_idx('y') * TILE as i64);
    let n0 = k.constant("n0", CTy::I32, block_idx('x') * TILE as i64);
    let tx = k.constant("tx", CTy::I32, thread_idx('x').modulo(int(16)));
    let ty = k.constant("ty", CTy::I32, thread_idx('x') / 16);
    // A is stored [k][m] with one pad column so the transposing stores do
    // not collide on a shared-memory bank.
    let a_stride = TILE as i64 + 1;
    k.emit(KStmt::Shared {
        ty: CTy::F32,
        name: "As".into(),
        len: TILE_K * (TILE + 1),
    });
    k.emit(KStmt::Shared {
        ty: CTy::F32,
        name: "Bs".into(),
        len: TILE_K * TILE,
    });
    k.emit(KStmt::Array {
        ty: CTy::F32,
        name: "acc".into(),
        len: MICRO * MICRO,
    });
    k.emit(counted(
        "r",
        MICRO * MICRO,
        LoopHint::Unroll,
        vec![set(load("acc", var("r")), f32c(0.0))],
    ));

    // Each thread stages 4 elements of A and 4 of B per tile. Threads walk A
    // along k and B along n, the contiguous axes of most operands.
    k.push_scope();
    let e = k.constant("e", CTy::I32, thread_idx('x') + var("l") * THREADS as i64);
    let am = k.index("am", m0.clone() + e.clone() / TILE_K as i64);
    let ak = k.index("ak", var("k0") + e.clone().modulo(int(TILE_K as i64)));
    let (mi, ki) = (split(k, am.clone(), &s.m), split(k, ak.clone(), &s.k));
    let a_val = ops.a(k, &b, &mi, &ki);
    let a_in = am.lt(m_total.clone()).and(ak.lt(k_total.clone()));
    let a_slot = e.clone().modulo(int(TILE_K as i64)) * a_stride + e.clone() / TILE_K as i64;
    k.assign(load("As", a_slot), AssignOp::Set, select(a_in, a_val, f32c(0.0)));
    let bk = k.index("bk", var("k0") + e.clone() / TILE as i64);
    let bn = k.index("bn", n0.clone() + e.clone().modulo(int(TILE as i64)));
    let (ki, ni) = (split(k, bk.clone(), &s.k), split(k, bn.clone(), &s.n));
    let b_val = ops.b(k, &b, &ki, &ni);
    let b_in = bk.lt(k_total.clone()).and(bn.lt(n_total.clone()));
    k.assign(load("Bs", e), AssignOp::Set, select(b_in, b_val, f32c(0.0)));
    let loads = k.pop_scope();

    let product = vec![
        KStmt::Array {
            ty: CTy::F32,
            name: "a".into(),
            len: MICRO,
        },
        KStmt::Array {
            ty: CTy::F32,
            name: "bv".into(),
            len: MICRO,
        },
        counted(
            "r",
            MICRO,
            LoopHint::Unroll,
            vec![
                set(
                    load("a", var("r")),
                    load("As", var("kk") * a_stride + ty.clone() + var("r") * 16),
                ),
                set(
                    load("bv", var("r")),
                    load("Bs", var("kk") * TILE as i64 + tx.clone() + var("r") * 16),
                ),
            ],
        ),
        counted(
            "r",
            MICRO * MICRO,
            LoopHint::Unroll,
            vec![KStmt::Assign {
                target: load("acc", var("r")),
                op: AssignOp::Add,
                value: load("a", var("r") / MICRO as i64) * load("bv", var("r").modulo(int(MICRO as i64))),
            }],
        ),
    ];
    let tile = vec![
        counted("l", TILE * TILE_K / THREADS, LoopHint::NoUnroll, loads),
        KStmt::SyncThreads,
        counted("kk", TILE_K, LoopHint::Unroll, product),
        KStmt::SyncThreads,
    ];
    k.emit(KStmt::For {
        var: "k0".into(),
        start: int(0),
        end: k_total,
        step: int(TILE_K as i64),
        body: tile,
        hint: LoopHint::Compiler,
    });

    // Epilogue: each thread's 4×4 outputs, strided by 16 so that a warp's
    // stores are contiguous.
    k.push_scope();
    let gm = k.constant("gm", CTy::I32, m0 + ty + var("r") / MICRO as i64 * 16);
    let gn = k.constant("gn", CTy::I32, n0 + tx + var("r").modulo(int(MICRO as i64)) * 16);
    k.push_scope();
    k.bind(anchor, Value::f32(load("acc", var("r"))));
    let (mi, ni) = (split(k, gm.clone(), &s.m), split(k, gn.clone(), &s.n));
    let at = ops.out(k, &b, &mi, &ni);
    k.store_root(&at);
    let store = k.pop_scope();
    k.emit(KStmt::If {
        cond: gm.lt(m_total).and(gn.lt(n_total)),
        then: store,
        otherwise: vec![],
    });
    let epilogue = k.pop_scope();
    k.emit(counted("r", MICRO * MICRO, LoopHint::Unroll, epilogue));
}

/// One block per (m, batch); returns (batch index, m indices).
fn cpu_block(k: &mut KernelCtx, s: &GemmShape) -> (KExpr, Vec<KExpr>) {
    k.block = [1, 1, 1];
    k.grid = [total(&s.m) as u32, s.batch as u32, 1];
    let b = if s.batch == 1 {
        int(0)
    } else {
        k.constant("b", CTy::I32, block_idx('y'))
    };
    let m = match s.m.as_slice() {
        [only] => vec![k.constant(only.name, CTy::I32, block_idx('x'))],
        axes => split(k, block_idx('x'), axes),
    };
    (b, m)
}

fn acc_type(s: &GemmShape) -> CTy {
    if total(&s.k) > CPU_DOUBLE_ACC_K {
        CTy::F64
    } else {
        CTy::F32
    }
}

/// Runs `inner` (given the loop variables) inside nested loops over `axes`;
/// an axis of size 1 needs no loop, its index is 0.
fn nest(k: &mut KernelCtx, axes: &[Axis], inner: impl FnOnce(&mut KernelCtx, Vec<KExpr>)) {
    let looped: Vec<&Axis> = axes.iter().filter(|a| a.size != 1).collect();
    for _ in &looped {
        k.push_scope();
    }
    inner(
        k,
        axes.iter()
            .map(|a| if a.size == 1 { int(0) } else { var(a.name) })
            .collect(),
    );
    for a in looped.iter().rev() {
        let body = k.pop_scope();
        k.emit(counted(a.name, a.size, LoopHint::Compiler, body));
    }
}

fn emit_cpu_rows(k: &mut KernelCtx, anchor: NodeId, s: &GemmShape, ops: &dyn GemmOperands) {
    let (b, m) = cpu_block(k, s);
    let acc_ty = acc_type(s);
    let (outer, last) = s.n.split_at(s.n.len() - 1);
    let last = last[0];
    let cols = CPU_COLS.min(last.size);
    nest(k, outer, |k, outer_vars| {
        k.push_scope();
        let chunked = last.size > cols;
        let base = if chunked {
            var(format!("{}0", last.name))
        } else {
            int(0)
        };
        let width = if last.size % cols == 0 {
            int(cols as i64)
        } else {
            k.constant(
                "width",
                CTy::I32,
                call("min", vec![int(cols as i64), int(last.size as i64) - base.clone()]),
            )
        };
        let columns = |body| KStmt::For {
            var: "j".into(),
            start: int(0),
            end: width.clone(),
            step: int(1),
            body,
            hint: LoopHint::NoUnroll,
        };
        k.emit(KStmt::Array {
            ty: acc_ty,
            name: "acc".into(),
            len: cols,
        });
        k.emit(columns(vec![set(load("acc", var("j")), f32c(0.0))]));
        // k outer, columns inner: the inner loop walks B along n, which the
        // C++ compiler vectorises when B is contiguous there.
        nest(k, &s.k, |k, kvars| {
            let a = ops.a(k, &b, &m, &kvars);
            let a = k.name_value(Value::f32(a)).expr;
            k.push_scope();
            let mut nvars = outer_vars.clone();
            nvars.push(k.index(last.name, base.clone() + var("j")));
            let bv = ops.b(k, &b, &kvars, &nvars);
            let product = if acc_ty == CTy::F64 {
                cast(CTy::F64, a) * bv
            } else {
                a * bv
            };
            k.assign(load("acc", var("j")), AssignOp::Add, product);
            let update = k.pop_scope();
            k.emit(columns(update));
        });
        k.push_scope();
        let mut nvars = outer_vars.clone();
        nvars.push(k.index(last.name, base.clone() + var("j")));
        let acc = load("acc", var("j"));
        k.bind(
            anchor,
            Value::f32(if acc_ty == CTy::F64 { cast(CTy::F32, acc) } else { acc }),
        );
        let at = ops.out(k, &b, &m, &nvars);
        k.store_root(&at);
        let store = k.pop_scope();
        k.emit(columns(store));
        let chunk = k.pop_scope();
        if chunked {
            k.emit(KStmt::For {
                var: format!("{}0", last.name),
                start: int(0),
                end: int(last.size as i64),
                step: int(cols as i64),
                body: chunk,
                hint: LoopHint::Compiler,
            });
        } else {
            chunk.into_iter().for_each(|st| k.emit(st));
        }
    });
}

/// Outputs summed together in one pass over k by the CPU dot-product order:
/// the trailing n axes, while their product stays this small. Each element of
/// A is then read once for all of them (a convolution's weight gradient sums
/// all 3×3 taps of a channel together).
const CPU_DOT_BLOCK: usize = 32;

fn emit_cpu_dots(k: &mut KernelCtx, anchor: NodeId, s: &GemmShape, ops: &dyn GemmOperands) {
    let (b, m) = cpu_block(k, s);
    let acc_ty = acc_type(s);
    let (k_outer, k_last) = s.k.split_at(s.k.len() - 1);
    let k_last = k_last[0];
    let mut split = s.n.len();
    while split > 0 && total(&s.n[split - 1..]) <= CPU_DOT_BLOCK {
        split -= 1;
    }
    if split == s.n.len() {
        return emit_cpu_dot_each(k, anchor, s, ops, (b, m));
    }
    let (n_outer, n_block) = s.n.split_at(split);
    let width = total(n_block);
    let slot =
        |vars: &[KExpr]| Coords::from_axes(vars.to_vec()).linear(&n_block.iter().map(|a| a.size).collect::<Vec<_>>());
    nest(k, n_outer, |k, outer_n| {
        k.emit(KStmt::Array {
            ty: acc_ty,
            name: "acc".into(),
            len: width,
        });
        k.emit(counted(
            "j",
            width,
            LoopHint::NoUnroll,
            vec![set(load("acc", var("j")), f32c(0.0))],
        ));
        nest(k, k_outer, |k, outer_k| {
            k.push_scope();
            let mut kvars = outer_k;
            kvars.push(var(k_last.name));
            let a = ops.a(k, &b, &m, &kvars);
            let a = k.name_value(Value::f32(a)).expr;
            nest(k, n_block, |k, block_n| {
                let nvars: Vec<KExpr> = outer_n.iter().chain(&block_n).cloned().collect();
                let product = a.clone() * ops.b(k, &b, &kvars, &nvars);
                let product = if acc_ty == CTy::F64 {
                    cast(CTy::F64, product)
                } else {
                    product
                };
                k.assign(load("acc", slot(&block_n)), AssignOp::Add, product);
            });
            let body = k.pop_scope();
            let hint = LoopHint::VectorizeSum {
                var: "acc".into(),
                len: Some(width),
            };
            k.emit(counted(k_last.name, k_last.size, hint, body));
        });
        nest(k, n_block, |k, block_n| {
            let acc = load("acc", slot(&block_n));
            k.bind(
                anchor,
                Value::f32(if acc_ty == CTy::F64 { cast(CTy::F32, acc) } else { acc }),
            );
            let nvars: Vec<KExpr> = outer_n.iter().chain(&block_n).cloned().collect();
            let at = ops.out(k, &b, &m, &nvars);
            k.store_root(&at);
        });
    });
}

/// The dot-product order one output at a time, into a scalar (when no
/// trailing n axes are small enough to sum together).
fn emit_cpu_dot_each(
    k: &mut KernelCtx,
    anchor: NodeId,
    s: &GemmShape,
    ops: &dyn GemmOperands,
    (b, m): (KExpr, Vec<KExpr>),
) {
    let acc_ty = acc_type(s);
    let (k_outer, k_last) = s.k.split_at(s.k.len() - 1);
    let k_last = k_last[0];
    nest(k, &s.n, |k, nvars| {
        let acc = k.mutable("acc", acc_ty, f32c(0.0));
        let KExpr::Var(acc_name) = &acc else {
            unreachable!("mutable returns a variable")
        };
        let acc_name = acc_name.clone();
        nest(k, k_outer, |k, outer_k| {
            k.push_scope();
            let mut kvars = outer_k;
            kvars.push(var(k_last.name));
            let product = ops.a(k, &b, &m, &kvars) * ops.b(k, &b, &kvars, &nvars);
            let product = if acc_ty == CTy::F64 {
                cast(CTy::F64, product)
            } else {
                product
            };
            k.assign(acc.clone(), AssignOp::Add, product);
            let body = k.pop_scope();
            let hint = LoopHint::VectorizeSum {
                var: acc_name.clone(),
                len: None,
            };
            k.emit(counted(k_last.name, k_last.size, hint, body));
        });
        k.bind(
            anchor,
            Value::f32(if acc_ty == CTy::F64 {
                cast(CTy::F32, acc.clone())
            } else {
                acc.clone()
            }),
        );
        let at = ops.out(k, &b, &m, &nvars);
        k.store_root(&at);
    });
}

fn set(target: KExpr, value: KExpr) -> KStmt {
    KStmt::Assign {
        target,
        op: AssignOp::Set,
        value,
    }
}

fn counted(var_name: &str, n: usize, hint: LoopHint, body: Vec<KStmt>) -> KStmt {
    KStmt::For {
        var: var_name.into(),
        start: int(0),
        end: int(n as i64),
        step: int(1),
        body,
        hint,
    }
}
