//! The host shim against plain Rust computations: every kernel here is CUDA C
//! as netc's generator writes it, compiled by the system C++ compiler.

#[path = "host_shim/kernels.rs"]
mod kernels;

use kernels::*;
use netc::device::cache::DiskCache;
use netc::device::cpu::{CType, HostArg, HostError, HostKernelSig, HostModule, HostToolchain};
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One cache per test process, so the runtime object is built at most once.
fn cache() -> &'static DiskCache {
    static CACHE: OnceLock<DiskCache> = OnceLock::new();
    CACHE.get_or_init(|| DiskCache::new(temp_dir("cache")))
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netc-host-shim-test-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn try_compile(body: &str, kernels: &[HostKernelSig]) -> Result<HostModule, HostError> {
    let source = format!("#include \"netc.cuh\"\n{body}");
    HostModule::compile(&source, &[("netc.cuh", NETC_CUH)], kernels, Some(cache()))
}

fn compile(body: &str, kernels: &[HostKernelSig]) -> HostModule {
    try_compile(body, kernels).unwrap_or_else(|e| panic!("{e}"))
}

fn out<T>(v: &mut [T]) -> HostArg {
    HostArg::Ptr(v.as_mut_ptr() as *mut c_void)
}

fn inp<T>(v: &[T]) -> HostArg {
    HostArg::Ptr(v.as_ptr() as *mut c_void)
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w} (error {err})"
        );
    }
}

fn blocks_for(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block) as u32
}

#[test]
fn elementwise_over_ten_million_elements() {
    let m = compile(ELEMENTWISE, &[elementwise_sig()]);
    let n = 10_000_000;
    let x = values(n, 1);
    let labels: Vec<i64> = (0..n as i64).map(|i| i * 7919 % 1000).collect();
    let mut y = vec![f32::NAN; n];
    unsafe {
        m.launch(
            0,
            [blocks_for(n, 256), 1, 1],
            [256, 1, 1],
            &[
                out(&mut y),
                inp(&x),
                inp(&labels),
                HostArg::I32(n as i32),
                HostArg::F32(1.5),
            ],
        )
    }
    .unwrap();
    assert_close(&y, &elementwise_ref(&x, &labels, 1.5), 1e-6, "axpy_relu");
}

/// Every thread records its indices, before and after a barrier in the
/// cooperative variant (a fiber switch must not leak another fiber's indices).
const INDICES: &str = r#"
__device__ __forceinline__ long long record_base() {
    long long b = blockIdx.x + (long long)gridDim.x * (blockIdx.y + (long long)gridDim.y * blockIdx.z);
    long long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return (b * (blockDim.x * blockDim.y * blockDim.z) + t) * 8;
}

__device__ __forceinline__ void record(int* out, long long r) {
    out[r + 0] = threadIdx.x; out[r + 1] = threadIdx.y; out[r + 2] = threadIdx.z;
    out[r + 3] = blockIdx.x;  out[r + 4] = blockIdx.y;  out[r + 5] = blockIdx.z;
    out[r + 6] = blockDim.x * 10000 + blockDim.y * 100 + blockDim.z;
    out[r + 7] = gridDim.x * 10000 + gridDim.y * 100 + gridDim.z;
}

extern "C" __global__ void indices_flat(int* out) {
    record(out, record_base());
}

extern "C" __global__ void indices_coop(int* out, int* after) {
    __shared__ int arrived;
    if (threadIdx.x + threadIdx.y + threadIdx.z == 0) arrived = 0;
    __syncthreads();
    atomicAdd(&arrived, 1);
    record(out, record_base());
    __syncthreads();
    record(after, record_base());
    if (arrived != (int)(blockDim.x * blockDim.y * blockDim.z)) after[record_base()] = -1;
}
"#;

fn check_indices(rec: &[i32], grid: [u32; 3], block: [u32; 3], what: &str) {
    let threads = (block[0] * block[1] * block[2]) as usize;
    let mut i = 0;
    for bz in 0..grid[2] {
        for by in 0..grid[1] {
            for bx in 0..grid[0] {
                for tz in 0..block[2] {
                    for ty in 0..block[1] {
                        for tx in 0..block[0] {
                            let want = [
                                tx,
                                ty,
                                tz,
                                bx,
                                by,
                                bz,
                                block[0] * 10000 + block[1] * 100 + block[2],
                                grid[0] * 10000 + grid[1] * 100 + grid[2],
                            ]
                            .map(|v| v as i32);
                            assert_eq!(
                                rec[i * 8..i * 8 + 8],
                                want,
                                "{what}: record {i} (of {threads} per block)"
                            );
                            i += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(i * 8, rec.len());
}

#[test]
fn three_dimensional_grids_and_blocks() {
    let m = compile(
        INDICES,
        &[
            sig("indices_flat", vec![ptr(CType::I32)], false),
            sig(
                "indices_coop",
                vec![ptr(CType::I32), ptr(CType::I32)],
                true,
            ),
        ],
    );
    // Large enough for the thread pool, odd sizes in every dimension.
    for (grid, block) in [
        ([40, 9, 10], [8, 4, 3]),
        ([3, 5, 7], [5, 3, 2]),
        ([1, 1, 1], [1, 1, 1]),
    ] {
        let total = (grid.iter().product::<u32>() * block.iter().product::<u32>()) as usize;
        let mut a = vec![-7; total * 8];
        unsafe { m.launch(0, grid, block, &[out(&mut a)]) }.unwrap();
        check_indices(&a, grid, block, "flat");
        let mut before = vec![-7; total * 8];
        let mut after = vec![-7; total * 8];
        unsafe { m.launch(1, grid, block, &[out(&mut before), out(&mut after)]) }.unwrap();
        check_indices(&before, grid, block, "cooperative, before the barrier");
        check_indices(&after, grid, block, "cooperative, after the barrier");
    }
}

#[test]
fn tiled_matmul_with_shared_memory_and_barriers() {
    let mm = compile(MATMUL, &[matmul_sig()]);
    for (m, k, n) in [(67, 45, 93), (16, 16, 16), (1, 33, 5)] {
        let a = values(m * k, 2);
        let b = values(k * n, 3);
        let mut c = vec![f32::NAN; m * n];
        unsafe {
            mm.launch(
                0,
                [blocks_for(n, 16), blocks_for(m, 16), 1],
                [16, 16, 1],
                &[
                    out(&mut c),
                    inp(&a),
                    inp(&b),
                    HostArg::I32(m as i32),
                    HostArg::I32(k as i32),
                    HostArg::I32(n as i32),
                ],
            )
        }
        .unwrap();
        assert_close(
            &c,
            &matmul_ref(&a, &b, m, k, n),
            1e-5,
            &format!("matmul {m}x{k}x{n}"),
        );
    }
}

#[test]
fn row_softmax_with_shuffles_and_shared_memory() {
    let m = compile(SOFTMAX, &[softmax_sig()]);
    let (rows, cols) = (256, 1000);
    let x: Vec<f32> = values(rows * cols, 4).iter().map(|v| v * 8.0).collect();
    for threads in [256, 96, 32] {
        let mut y = vec![f32::NAN; rows * cols];
        unsafe {
            m.launch(
                0,
                [rows as u32, 1, 1],
                [threads, 1, 1],
                &[out(&mut y), inp(&x), HostArg::I32(cols as i32)],
            )
        }
        .unwrap();
        assert_close(
            &y,
            &softmax_ref(&x, cols),
            1e-5,
            &format!("softmax, {threads} threads"),
        );
    }
}

/// Reductions over all 1024 threads of a block: the largest block CUDA allows.
#[test]
fn block_of_1024_threads_reduces_through_shared_memory() {
    let m = compile(
        r#"
extern "C" __global__ void block_sum(double* out, const float* x, int n) {
    __shared__ double part[1024];
    double s = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) s += x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}
"#,
        &[sig(
            "block_sum",
            vec![ptr(CType::F64), cptr(CType::F32), scalar(CType::I32)],
            true,
        )],
    );
    let n = 1 << 20;
    let x = values(n, 5);
    let blocks = 8;
    let mut partial = vec![f64::NAN; blocks];
    unsafe {
        m.launch(
            0,
            [blocks as u32, 1, 1],
            [1024, 1, 1],
            &[out(&mut partial), inp(&x), HostArg::I32(n as i32)],
        )
    }
    .unwrap();
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let got: f64 = partial.iter().sum();
    assert!((got - want).abs() < 1e-9, "sum {got}, want {want}");
}

#[test]
fn atomics_accumulate_across_blocks() {
    let m = compile(
        r#"
extern "C" __global__ void __launch_bounds__(256) accumulate(int* hist, float* fsum, double* dsum, int* imax,
        const float* x, const long long* labels, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&hist[labels[i]], 1);
    atomicAdd(fsum, x[i]);
    atomicAdd(dsum, (double)x[i]);
    atomicMax(imax, (int)(x[i] * 1000000.0f));
}

// Per-block partial sums in shared memory, then one atomic per block.
extern "C" __global__ void __launch_bounds__(256) block_then_atomic(float* total, const float* x, int n) {
    __shared__ float part[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    part[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(total, part[0]);
}
"#,
        &[
            sig(
                "accumulate",
                vec![
                    ptr(CType::I32),
                    ptr(CType::F32),
                    ptr(CType::F64),
                    ptr(CType::I32),
                    cptr(CType::F32),
                    cptr(CType::I64),
                    scalar(CType::I32),
                ],
                false,
            ),
            sig(
                "block_then_atomic",
                vec![ptr(CType::F32), cptr(CType::F32), scalar(CType::I32)],
                true,
            ),
        ],
    );
    let n = 1_000_003;
    let x = values(n, 6);
    let labels: Vec<i64> = (0..n as i64).map(|i| (i * i + 3) % 97).collect();
    let mut hist = vec![0i32; 97];
    let mut fsum = 0.0f32;
    let mut dsum = 0.0f64;
    let mut imax = i32::MIN;
    unsafe {
        m.launch(
            0,
            [blocks_for(n, 256), 1, 1],
            [256, 1, 1],
            &[
                out(&mut hist),
                HostArg::Ptr(&mut fsum as *mut f32 as *mut c_void),
                HostArg::Ptr(&mut dsum as *mut f64 as *mut c_void),
                HostArg::Ptr(&mut imax as *mut i32 as *mut c_void),
                inp(&x),
                inp(&labels),
                HostArg::I32(n as i32),
            ],
        )
    }
    .unwrap();
    let mut want_hist = vec![0i32; 97];
    for &l in &labels {
        want_hist[l as usize] += 1;
    }
    assert_eq!(hist, want_hist);
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let abs_sum: f64 = x.iter().map(|&v| f64::from(v.abs())).sum();
    assert!((dsum - want).abs() < 1e-9 * abs_sum, "double sum {dsum} vs {want}");
    // f32 accumulation in any order: error bounded by n·ε·Σ|x|.
    assert!(
        (f64::from(fsum) - want).abs() < 1e-3 * abs_sum,
        "float sum {fsum} vs {want}"
    );
    let want_max = x.iter().map(|&v| (v * 1e6) as i32).max();
    assert_eq!(Some(imax), want_max);

    let mut total = 0.0f32;
    unsafe {
        m.launch(
            1,
            [blocks_for(n, 256), 1, 1],
            [256, 1, 1],
            &[
                HostArg::Ptr(&mut total as *mut f32 as *mut c_void),
                inp(&x),
                HostArg::I32(n as i32),
            ],
        )
    }
    .unwrap();
    assert!(
        (f64::from(total) - want).abs() < 1e-4 * abs_sum,
        "block sums {total} vs {want}"
    );
}

#[test]
fn the_other_atomics() {
    // Parameters are never `unsigned long long*`, so that one arrives as `long long*`.
    let m = compile(
        r#"
extern "C" __global__ void others(unsigned int* u, long long* ull_bits, int* i, float* exch_f, int* olds,
        float* olds_f, int n) {
    unsigned long long* ull = (unsigned long long*)ull_bits;
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    atomicAdd(&u[0], 3u);
    atomicMax(&u[1], (unsigned)(t * 7 % 1001));
    atomicMin(&u[2], (unsigned)(t * 7 % 1001 + 5));
    atomicAdd(&ull[0], 1ull << 33);
    atomicMin(&i[0], -(t * 13 % 977));
    olds[t] = atomicExch(&i[1], t);
    olds_f[t] = atomicExch(exch_f, (float)t);
    // Counters built on compare-and-swap.
    int seen = i[2];
    for (;;) { int prev = atomicCAS(&i[2], seen, seen + 1); if (prev == seen) break; seen = prev; }
    unsigned su = u[3];
    for (;;) { unsigned prev = atomicCAS(&u[3], su, su + 2u); if (prev == su) break; su = prev; }
    unsigned long long sl = ull[1];
    for (;;) { unsigned long long prev = atomicCAS(&ull[1], sl, sl + 5ull); if (prev == sl) break; sl = prev; }
}
"#,
        &[sig(
            "others",
            vec![
                ptr(CType::U32),
                ptr(CType::I64),
                ptr(CType::I32),
                ptr(CType::F32),
                ptr(CType::I32),
                ptr(CType::F32),
                scalar(CType::I32),
            ],
            false,
        )],
    );
    let n = 100_000usize;
    let mut u = [0u32, 0, u32::MAX, 0];
    let mut ull = [0i64, 0];
    let mut i = [0i32, -1, 0];
    let mut exch_f = -1.0f32;
    let mut olds = vec![0i32; n];
    let mut olds_f = vec![0f32; n];
    unsafe {
        m.launch(
            0,
            [blocks_for(n, 128), 1, 1],
            [128, 1, 1],
            &[
                out(&mut u),
                out(&mut ull),
                out(&mut i),
                HostArg::Ptr(&mut exch_f as *mut f32 as *mut c_void),
                out(&mut olds),
                out(&mut olds_f),
                HostArg::I32(n as i32),
            ],
        )
    }
    .unwrap();
    assert_eq!(u[0], 3 * n as u32);
    assert_eq!(u[1], (0..n).map(|t| (t * 7 % 1001) as u32).max().unwrap());
    assert_eq!(u[2], 5);
    assert_eq!(u[3], 2 * n as u32);
    assert_eq!(ull[0] as u64, (n as u64) << 33);
    assert_eq!(ull[1], 5 * n as i64);
    assert_eq!(i[0], -976);
    assert_eq!(i[2], n as i32);
    // Exchanges form one chain: the initial value and every id appear once.
    let mut chain: Vec<i32> = olds.clone();
    chain.push(i[1]);
    chain.sort_unstable();
    let want: Vec<i32> = (-1..n as i32).collect();
    assert_eq!(chain, want);
    let mut chain_f: Vec<i64> = olds_f.iter().map(|&v| v as i64).collect();
    chain_f.push(exch_f as i64);
    chain_f.sort_unstable();
    assert_eq!(chain_f, (-1..n as i64).collect::<Vec<_>>());
}
