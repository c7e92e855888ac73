//! One matrix-product template for every contraction: matmul, convolution
//! (as an implicit GEMM over im2col indices) and both convolution
//! gradients. An op describes its problem as
//! `out[b, m, n] = Σ_k A(b, m, k) · B(b, k, n)` by giving index expressions
//! for A, B and the output; the template supplies the loop schedule.

use super::ctx::{Coords, KernelCtx, Value};
use super::kir::{call, cast, f32c, int, load, select, var, AssignOp, CTy, KExpr, KStmt, Unroll};
use super::templates::{block_idx, ceil_div, thread_idx};
use super::Target;
use crate::ir::NodeId;

/// Sizes of a batched product.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Index expressions of a contraction. Expressions must be pure (no
/// statements), because the template evaluates them only under bounds checks.
pub trait GemmOperands {
    /// A(b, m, k), including any zero padding.
    fn a(&self, k: &mut KernelCtx, b: &KExpr, m: &KExpr, kk: &KExpr) -> KExpr;
    /// B(b, k, n), including any zero padding.
    fn b(&self, k: &mut KernelCtx, b: &KExpr, kk: &KExpr, n: &KExpr) -> KExpr;
    /// Coordinates of out[b, m, n] in the anchor node's shape.
    fn out(&self, k: &mut KernelCtx, b: &KExpr, m: &KExpr, n: &KExpr) -> Coords;
}

// GPU tile: 64×64 outputs per 256-thread block, each thread 4×4, K in steps of 16.
const TILE: usize = 64;
const TILE_K: usize = 16;
const THREADS: usize = 256;
const MICRO: usize = 4;

// CPU: one row of outputs per block, in chunks of this many columns.
const CPU_COLS: usize = 64;
/// Longer sums than this accumulate in double on the CPU.
const CPU_DOUBLE_ACC_K: usize = 4096;

pub fn emit(k: &mut KernelCtx, anchor: NodeId, shape: GemmShape, ops: &dyn GemmOperands) {
    match k.target {
        Target::Gpu => emit_gpu(k, anchor, shape, ops),
        Target::Cpu => emit_cpu(k, anchor, shape, ops),
    }
}

fn emit_gpu(k: &mut KernelCtx, anchor: NodeId, s: GemmShape, ops: &dyn GemmOperands) {
    k.cooperative = true;
    k.block = [THREADS as u32, 1, 1];
    k.grid = [ceil_div(s.n, TILE) as u32, ceil_div(s.m, TILE) as u32, s.batch as u32];
    let (m_total, n_total, k_total) = (int(s.m as i64), int(s.n as i64), int(s.k as i64));
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
    k.emit(for_loop(
        "r",
        MICRO * MICRO,
        Unroll::Full,
        vec![set(load("acc", var("r")), f32c(0.0))],
    ));

    // Each thread stages 4 elements of A and 4 of B per tile. Threads walk A
    // along k and B along n, the contiguous axes of most operands.
    k.push_scope();
    let e = k.constant("e", CTy::I32, thread_idx('x') + var("l") * THREADS as i64);
    let am = k.index("am", m0.clone() + e.clone() / TILE_K as i64);
    let ak = k.index("ak", var("k0") + e.clone().modulo(int(TILE_K as i64)));
    let a_val = ops.a(k, &b, &am, &ak);
    let a_in = am.lt(m_total.clone()).and(ak.lt(k_total.clone()));
    let a_slot = e.clone().modulo(int(TILE_K as i64)) * a_stride + e.clone() / TILE_K as i64;
    k.assign(load("As", a_slot), AssignOp::Set, select(a_in, a_val, f32c(0.0)));
    let bk = k.index("bk", var("k0") + e.clone() / TILE as i64);
    let bn = k.index("bn", n0.clone() + e.clone().modulo(int(TILE as i64)));
    let b_val = ops.b(k, &b, &bk, &bn);
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
        for_loop(
            "r",
            MICRO,
            Unroll::Full,
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
        for_loop(
            "r",
            MICRO * MICRO,
            Unroll::Full,
            vec![KStmt::Assign {
                target: load("acc", var("r")),
                op: AssignOp::Add,
                value: load("a", var("r") / MICRO as i64) * load("bv", var("r").modulo(int(MICRO as i64))),
            }],
        ),
    ];
    let tile = vec![
        for_loop("l", TILE * TILE_K / THREADS, Unroll::Full, loads),
        KStmt::SyncThreads,
        for_loop("kk", TILE_K, Unroll::Full, product),
        KStmt::SyncThreads,
    ];
    k.emit(KStmt::For {
        var: "k0".into(),
        start: int(0),
        end: k_total,
        step: int(TILE_K as i64),
        body: tile,
        unroll: Unroll::Compiler,
    });

    // Epilogue: each thread's 4×4 outputs, strided by 16 so that a warp's
    // stores are contiguous.
    k.push_scope();
    let gm = k.constant("gm", CTy::I32, m0 + ty + var("r") / MICRO as i64 * 16);
    let gn = k.constant("gn", CTy::I32, n0 + tx + var("r").modulo(int(MICRO as i64)) * 16);
    k.push_scope();
    k.bind(anchor, Value::f32(load("acc", var("r"))));
    let at = ops.out(k, &b, &gm, &gn);
    k.store_root(&at);
    let store = k.pop_scope();
    k.emit(KStmt::If {
        cond: gm.lt(m_total).and(gn.lt(n_total)),
        then: store,
        otherwise: vec![],
    });
    let epilogue = k.pop_scope();
    k.emit(for_loop("r", MICRO * MICRO, Unroll::Full, epilogue));
}

fn emit_cpu(k: &mut KernelCtx, anchor: NodeId, s: GemmShape, ops: &dyn GemmOperands) {
    k.block = [1, 1, 1];
    k.grid = [s.m as u32, s.batch as u32, 1];
    let acc_ty = if s.k > CPU_DOUBLE_ACC_K { CTy::F64 } else { CTy::F32 };
    let b = if s.batch == 1 {
        int(0)
    } else {
        k.constant("b", CTy::I32, block_idx('y'))
    };
    let m = k.constant("m", CTy::I32, block_idx('x'));
    let cols = CPU_COLS.min(s.n);
    k.push_scope();
    let width = if s.n % cols == 0 {
        int(cols as i64)
    } else {
        k.constant(
            "width",
            CTy::I32,
            call("min", vec![int(cols as i64), int(s.n as i64) - var("n0")]),
        )
    };
    let columns = |body| KStmt::For {
        var: "j".into(),
        start: int(0),
        end: width.clone(),
        step: int(1),
        body,
        unroll: Unroll::Never,
    };
    k.emit(KStmt::Array {
        ty: acc_ty,
        name: "acc".into(),
        len: cols,
    });
    k.emit(columns(vec![set(load("acc", var("j")), f32c(0.0))]));
    // k outer, columns inner: the inner loop walks B along n, which the
    // C++ compiler vectorises when B is contiguous there.
    k.push_scope();
    let a = ops.a(k, &b, &m, &var("kk"));
    let a = k.name_value(Value::f32(a)).expr;
    k.push_scope();
    let n = k.index("n", var("n0") + var("j"));
    let bv = ops.b(k, &b, &var("kk"), &n);
    let product = if acc_ty == CTy::F64 {
        cast(CTy::F64, a) * bv
    } else {
        a * bv
    };
    k.assign(load("acc", var("j")), AssignOp::Add, product);
    let update = k.pop_scope();
    k.emit(columns(update));
    let inner = k.pop_scope();
    k.emit(KStmt::For {
        var: "kk".into(),
        start: int(0),
        end: int(s.k as i64),
        step: int(1),
        body: inner,
        unroll: Unroll::Compiler,
    });
    k.push_scope();
    let n = k.index("n", var("n0") + var("j"));
    let acc = load("acc", var("j"));
    k.bind(
        anchor,
        Value::f32(if acc_ty == CTy::F64 { cast(CTy::F32, acc) } else { acc }),
    );
    let at = ops.out(k, &b, &m, &n);
    k.store_root(&at);
    let store = k.pop_scope();
    k.emit(columns(store));
    let chunk = k.pop_scope();
    k.emit(KStmt::For {
        var: "n0".into(),
        start: int(0),
        end: int(s.n as i64),
        step: int(cols as i64),
        body: chunk,
        unroll: Unroll::Compiler,
    });
}

fn set(target: KExpr, value: KExpr) -> KStmt {
    KStmt::Assign {
        target,
        op: AssignOp::Set,
        value,
    }
}

fn for_loop(var_name: &str, n: usize, unroll: Unroll, body: Vec<KStmt>) -> KStmt {
    KStmt::For {
        var: var_name.into(),
        start: int(0),
        end: int(n as i64),
        step: int(1),
        body,
        unroll,
    }
}
