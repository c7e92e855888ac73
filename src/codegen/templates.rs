//! Loop skeletons shared by the lowerings: one output per thread on the GPU,
//! chunks of outputs per block on the CPU.

use super::ctx::{Coords, KernelCtx};
use super::kir::{call, int, var, CTy, KExpr, KStmt, LoopHint};
use super::Target;

/// Threads per block of the GPU's one-output-per-thread schedules.
pub const GPU_BLOCK: usize = 256;

/// Roughly how many element-operations one CPU block does: large enough to
/// amortise the launch of a block, small enough to balance over cores.
const CPU_WORK_PER_BLOCK: usize = 1 << 15;

pub fn block_idx(axis: char) -> KExpr {
    var(format!("blockIdx.{axis}"))
}

pub fn thread_idx(axis: char) -> KExpr {
    var(format!("threadIdx.{axis}"))
}

pub fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b.max(1))
}

/// Runs `body` once per index in `0..n`, with `work` operations per index
/// (used to size CPU chunks). The body receives the index expression.
pub fn for_each_output(k: &mut KernelCtx, n: usize, work: usize, body: impl FnOnce(&mut KernelCtx, KExpr)) {
    match k.target {
        Target::Gpu => {
            let threads = GPU_BLOCK.min(n.next_power_of_two()).max(32);
            k.block = [threads as u32, 1, 1];
            k.grid = [ceil_div(n, threads) as u32, 1, 1];
            let i = k.constant("i", CTy::I32, block_idx('x') * var("blockDim.x") + thread_idx('x'));
            k.emit(KStmt::If {
                cond: i.clone().ge(int(n as i64)),
                then: vec![KStmt::Return],
                otherwise: vec![],
            });
            body(k, i);
        }
        Target::Cpu => {
            let chunk = (CPU_WORK_PER_BLOCK / work.max(1)).clamp(1, n.max(1));
            k.block = [1, 1, 1];
            k.grid = [ceil_div(n, chunk) as u32, 1, 1];
            let begin = k.constant("begin", CTy::I32, block_idx('x') * chunk as i64);
            let end = if chunk >= n {
                int(n as i64)
            } else {
                k.constant(
                    "end",
                    CTy::I32,
                    call("min", vec![begin.clone() + chunk as i64, int(n as i64)]),
                )
            };
            k.push_scope();
            body(k, var("i"));
            let stmts = k.pop_scope();
            k.emit(KStmt::For {
                var: "i".into(),
                start: begin,
                end,
                step: int(1),
                body: stmts,
                hint: LoopHint::Compiler,
            });
        }
    }
}

/// A kernel whose root is elementwise: one output element per index.
pub fn elementwise(k: &mut KernelCtx) {
    let shape = k.dims(k.root);
    let n = shape.iter().product();
    for_each_output(k, n, 1, |k, i| k.store_root(&Coords::from_flat(i, &shape)));
}
