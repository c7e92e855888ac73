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

/// Kept across runs under target/, so the runtime object is built once.
fn cache() -> &'static DiskCache {
    static CACHE: OnceLock<DiskCache> = OnceLock::new();
    CACHE.get_or_init(|| DiskCache::new(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-shim-cache")))
}

/// A fresh folder for one test.
fn temp_dir(label: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("host-shim-{label}-{}", std::process::id()));
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
            sig("indices_coop", vec![ptr(CType::I32), ptr(CType::I32)], true),
        ],
    );
    // Large enough for the thread pool, odd sizes in every dimension.
    for (grid, block) in [([40, 9, 10], [8, 4, 3]), ([3, 5, 7], [5, 3, 2]), ([1, 1, 1], [1, 1, 1])] {
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
        assert_close(&c, &matmul_ref(&a, &b, m, k, n), 1e-5, &format!("matmul {m}x{k}x{n}"));
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
        assert_close(&y, &softmax_ref(&x, cols), 1e-5, &format!("softmax, {threads} threads"));
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

#[test]
fn shuffle_semantics_follow_cuda() {
    let m = compile(
        r#"
extern "C" __global__ void shuffles(float* f, int* iv, double* dv) {
    const int t = threadIdx.x;
    const float v = (float)(t * 10 + 1);
    float* r = f + t * 8;
    r[0] = __shfl_down_sync(0xffffffffu, v, 1);
    r[1] = __shfl_up_sync(0xffffffffu, v, 2, 8);
    r[2] = __shfl_xor_sync(0xffffffffu, v, 5);
    r[3] = __shfl_sync(0xffffffffu, v, 35);
    r[4] = __shfl_sync(0xffffffffu, v, 3, 8);
    r[5] = __shfl_xor_sync(0xffffffffu, v, 12, 8);
    r[6] = __shfl_down_sync(0xffffffffu, v, 3, 16);
    r[7] = __shfl_up_sync(0xffffffffu, v, 1);
    iv[t] = __shfl_xor_sync(0xffffffffu, t * 3 - 50, 1);
    dv[t] = __shfl_down_sync(0xffffffffu, (double)t + 0.25, 2);
}
"#,
        &[sig(
            "shuffles",
            vec![ptr(CType::F32), ptr(CType::I32), ptr(CType::F64)],
            true,
        )],
    );
    let threads = 64usize;
    let mut f = vec![f32::NAN; threads * 8];
    let mut iv = vec![0i32; threads];
    let mut dv = vec![f64::NAN; threads];
    unsafe {
        m.launch(
            0,
            [1, 1, 1],
            [threads as u32, 1, 1],
            &[out(&mut f), out(&mut iv), out(&mut dv)],
        )
    }
    .unwrap();
    // Straight from the CUDA programming guide: a source outside the lane's
    // `width`-segment yields the lane's own value, except that xor may reach
    // into earlier segments.
    let v = |t: usize| (t * 10 + 1) as f32;
    for t in 0..threads {
        let (l, base) = (t % 32, t - t % 32);
        let seg8 = l & !7;
        let want = [
            if l < 31 { v(t + 1) } else { v(t) },
            if l - seg8 >= 2 { v(t - 2) } else { v(t) },
            v(base + (l ^ 5)),
            v(base + 3),
            v(base + seg8 + 3),
            if (l ^ 12) <= seg8 + 7 { v(base + (l ^ 12)) } else { v(t) },
            if l % 16 + 3 < 16 { v(t + 3) } else { v(t) },
            if l >= 1 { v(t - 1) } else { v(t) },
        ];
        assert_eq!(f[t * 8..t * 8 + 8], want, "thread {t}");
        assert_eq!(iv[t], ((base + (l ^ 1)) * 3) as i32 - 50, "int, thread {t}");
        let dsrc = if l + 2 < 32 { t + 2 } else { t };
        assert_eq!(dv[t], dsrc as f64 + 0.25, "double, thread {t}");
    }
}

#[test]
fn butterfly_reductions_and_syncwarp() {
    let m = compile(
        r#"
extern "C" __global__ void butterfly(float* out, int width) {
    float v = (float)(threadIdx.x + 1);
    for (int o = width / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, width);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

extern "C" __global__ void neighbours(int* out) {
    __shared__ int s[1024];
    s[threadIdx.x] = threadIdx.x * 2;
    __syncwarp();
    out[threadIdx.x] = s[(threadIdx.x & ~31u) + ((threadIdx.x + 1) & 31u)];
}
"#,
        &[
            sig("butterfly", vec![ptr(CType::F32), scalar(CType::I32)], true),
            sig("neighbours", vec![ptr(CType::I32)], true),
        ],
    );
    // The 48-thread block ends in a half warp, reduced in 16-lane segments.
    for (blocks, threads, width) in [(3usize, 1024usize, 32usize), (5, 48, 16), (2, 96, 8)] {
        let mut y = vec![f32::NAN; blocks * threads];
        unsafe {
            m.launch(
                0,
                [blocks as u32, 1, 1],
                [threads as u32, 1, 1],
                &[out(&mut y), HostArg::I32(width as i32)],
            )
        }
        .unwrap();
        for (i, &got) in y.iter().enumerate() {
            let t = i % threads;
            let first = t - t % width;
            let want: usize = (first + 1..=first + width).sum();
            assert_eq!(got, want as f32, "{threads} threads, width {width}, thread {t}");
        }
    }
    let mut n = vec![0i32; 64];
    unsafe { m.launch(1, [1, 1, 1], [64, 1, 1], &[out(&mut n)]) }.unwrap();
    for (t, &got) in n.iter().enumerate() {
        let src = (t & !31) + ((t + 1) & 31);
        assert_eq!(got, 2 * src as i32, "thread {t}");
    }
}

const MISUSE: &str = r#"
extern "C" __global__ void divergent_barrier(int* out) {
    if (threadIdx.x < 128) __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

extern "C" __global__ void divergent_shuffle(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x % 32 < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

extern "C" __global__ void barrier_when_barrier_free(int* out) {
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

extern "C" __global__ void partial_mask(int* out) {
    out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, (int)threadIdx.x, 1);
}

extern "C" __global__ void fine(int* out) {
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = 7;
}
"#;

#[test]
fn deadlocks_and_misuse_are_errors_not_hangs() {
    let names = [
        "divergent_barrier",
        "divergent_shuffle",
        "barrier_when_barrier_free",
        "partial_mask",
        "fine",
    ];
    let sigs: Vec<HostKernelSig> = names
        .iter()
        .map(|n| sig(n, vec![ptr(CType::I32)], *n != "barrier_when_barrier_free"))
        .collect();
    let m = compile(MISUSE, &sigs);
    let (blocks, threads) = (64usize, 256usize);
    let mut buf = vec![0i32; blocks * threads];
    let run =
        |k: usize, buf: &mut [i32]| unsafe { m.launch(k, [blocks as u32, 1, 1], [threads as u32, 1, 1], &[out(buf)]) };
    match run(0, &mut buf) {
        Err(HostError::Deadlock { kernel, detail }) => {
            assert_eq!(kernel, "divergent_barrier");
            assert!(
                detail.contains("128 at __syncthreads()") && detail.contains("128 returned"),
                "{detail}"
            );
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
    match run(1, &mut buf) {
        Err(HostError::Deadlock { detail, .. }) => {
            assert!(detail.contains("at a warp operation"), "{detail}")
        }
        other => panic!("expected a deadlock, got {other:?}"),
    }
    match run(2, &mut buf) {
        Err(HostError::Kernel { detail, .. }) => {
            assert!(detail.contains("barrier-free"), "{detail}")
        }
        other => panic!("expected a misuse error, got {other:?}"),
    }
    match unsafe { m.launch(3, [1, 1, 1], [32, 1, 1], &[out(&mut buf)]) } {
        Err(HostError::Kernel { detail, .. }) => {
            assert!(detail.contains("0x0000ffff"), "{detail}")
        }
        other => panic!("expected a mask error, got {other:?}"),
    }
    // The abandoned fibers leave nothing behind.
    assert_eq!(m.kernel_index("fine"), Some(4));
    assert_eq!(m.kernel_index("missing"), None);
    run(4, &mut buf).unwrap();
    assert!(buf.iter().all(|&v| v == 7));
}

#[test]
fn math_builtins_match_rust() {
    type F = fn(f32, f32) -> f32;
    let nan = "__int_as_float(0x7fc00000)";
    let cases: Vec<(String, F)> = vec![
        ("expf(b)".into(), |_, b| b.exp()),
        ("exp2f(b)".into(), |_, b| b.exp2()),
        ("logf(a)".into(), |a, _| a.ln()),
        ("log2f(a)".into(), |a, _| a.log2()),
        ("sqrtf(a)".into(), |a, _| a.sqrt()),
        ("rsqrtf(a)".into(), |a, _| 1.0 / a.sqrt()),
        ("tanhf(b)".into(), |_, b| b.tanh()),
        ("erff(b)".into(), |_, b| erf(f64::from(b)) as f32),
        ("fabsf(b)".into(), |_, b| b.abs()),
        ("powf(a, b)".into(), |a, b| a.powf(b)),
        ("log1pf(a)".into(), |a, _| a.ln_1p()),
        ("expm1f(b)".into(), |_, b| b.exp_m1()),
        ("floorf(b * 3.0f)".into(), |_, b| (b * 3.0).floor()),
        ("ceilf(b * 3.0f)".into(), |_, b| (b * 3.0).ceil()),
        ("truncf(b * 3.0f)".into(), |_, b| (b * 3.0).trunc()),
        ("roundf(b * 3.0f)".into(), |_, b| (b * 3.0).round()),
        ("fmaf(a, b, 0.5f)".into(), |a, b| a.mul_add(b, 0.5)),
        ("sinf(b)".into(), |_, b| b.sin()),
        ("cosf(b)".into(), |_, b| b.cos()),
        ("fmaxf(a, b)".into(), |a, b| a.max(b)),
        ("fminf(a, b)".into(), |a, b| a.min(b)),
        (format!("fmaxf({nan}, a)"), |a, _| a),
        (format!("fminf(b, {nan})"), |_, b| b),
        ("__expf(b)".into(), |_, b| b.exp()),
        ("__logf(a)".into(), |a, _| a.ln()),
        ("__fdividef(a, b)".into(), |a, b| a / b),
        ("exp(b)".into(), |_, b| b.exp()),
        ("sqrt(a)".into(), |a, _| a.sqrt()),
        ("pow(a, b)".into(), |a, b| a.powf(b)),
        ("tanh(b)".into(), |_, b| b.tanh()),
        ("erf(b)".into(), |_, b| erf(f64::from(b)) as f32),
        ("fabs(b)".into(), |_, b| b.abs()),
        ("log(a)".into(), |a, _| a.ln()),
        ("log1p(a)".into(), |a, _| a.ln_1p()),
        ("fmax(a, b)".into(), |a, b| a.max(b)),
        ("min(a, b)".into(), |a, b| a.min(b)),
        ("max(a, b)".into(), |a, b| a.max(b)),
    ];
    let n = 1000;
    let x: Vec<f32> = values(n, 7).iter().map(|v| 1.55 + 1.5 * v).collect();
    let exprs: Vec<&str> = cases.iter().map(|(e, _)| e.as_str()).collect();
    let y = run_math_cases(CType::F32, &exprs, &x, f32::NAN);
    for (i, &a) in x.iter().enumerate() {
        for (c, (expr, f)) in cases.iter().enumerate() {
            let (got, want) = (y[i * cases.len() + c], f(a, a - 1.5));
            assert!(
                (got - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "{expr} at a = {a}: got {got}, want {want}"
            );
        }
    }
}

#[test]
fn double_math_builtins_match_rust() {
    type F = fn(f64, f64) -> f64;
    let cases: Vec<(&str, F)> = vec![
        ("exp(b)", |_, b| b.exp()),
        ("exp2(b)", |_, b| b.exp2()),
        ("log(a)", |a, _| a.ln()),
        ("log2(a)", |a, _| a.log2()),
        ("sqrt(a)", |a, _| a.sqrt()),
        ("rsqrt(a)", |a, _| 1.0 / a.sqrt()),
        ("tanh(b)", |_, b| b.tanh()),
        ("erf(b)", |_, b| erf(b)),
        ("fabs(b)", |_, b| b.abs()),
        ("pow(a, b)", |a, b| a.powf(b)),
        ("log1p(a)", |a, _| a.ln_1p()),
        ("expm1(b)", |_, b| b.exp_m1()),
        ("floor(b * 3.0)", |_, b| (b * 3.0).floor()),
        ("ceil(b * 3.0)", |_, b| (b * 3.0).ceil()),
        ("trunc(b * 3.0)", |_, b| (b * 3.0).trunc()),
        ("round(b * 3.0)", |_, b| (b * 3.0).round()),
        ("fma(a, b, 0.5)", |a, b| a.mul_add(b, 0.5)),
        ("sin(b)", |_, b| b.sin()),
        ("cos(b)", |_, b| b.cos()),
        ("fmax(a, b)", |a, b| a.max(b)),
        ("fmin(a, b)", |a, b| a.min(b)),
        ("fmax(__longlong_as_double(0x7ff8000000000000LL), a)", |a, _| a),
        ("min(a, b)", |a, b| a.min(b)),
        ("max(a, b)", |a, b| a.max(b)),
    ];
    let n = 500;
    let x: Vec<f64> = values(n, 8).iter().map(|&v| 1.55 + 1.5 * f64::from(v)).collect();
    let exprs: Vec<&str> = cases.iter().map(|(e, _)| *e).collect();
    let y = run_math_cases(CType::F64, &exprs, &x, f64::NAN);
    for (i, &a) in x.iter().enumerate() {
        for (c, (expr, f)) in cases.iter().enumerate() {
            let (got, want) = (y[i * cases.len() + c], f(a, a - 1.5));
            assert!(
                (got - want).abs() <= 1e-13 * (1.0 + want.abs()),
                "{expr} at a = {a}: got {got}, want {want}"
            );
        }
    }
}

/// Evaluates each C expression of `a = x[i]` and `b = a - 1.5` in one
/// kernel of the given element type; output `i * exprs.len() + c` is
/// expression `c` at `x[i]`. `fill` marks outputs the kernel never wrote.
fn run_math_cases<T: Copy>(ty: CType, exprs: &[&str], x: &[T], fill: T) -> Vec<T> {
    let (c_type, one_and_half) = match ty {
        CType::F32 => ("float", "1.5f"),
        _ => ("double", "1.5"),
    };
    let body: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("    o[{i}] = {e};\n"))
        .collect();
    let src = format!(
        "extern \"C\" __global__ void math_{c_type}({c_type}* out, const {c_type}* x, int n) {{\n    \
         int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i >= n) return;\n    \
         {c_type} a = x[i], b = a - {one_and_half};\n    {c_type}* o = out + (long long)i * {};\n{body}}}\n",
        exprs.len()
    );
    let m = compile(
        &src,
        &[sig(
            &format!("math_{c_type}"),
            vec![ptr(ty), cptr(ty), scalar(CType::I32)],
            false,
        )],
    );
    let mut y = vec![fill; x.len() * exprs.len()];
    let blocks = x.len().div_ceil(256) as u32;
    unsafe {
        m.launch(
            0,
            [blocks, 1, 1],
            [256, 1, 1],
            &[out(&mut y), inp(x), HostArg::I32(x.len() as i32)],
        )
    }
    .unwrap();
    y
}

/// erf by its Taylor series, exact to ~1e-14 for |x| ≤ 3 (Rust has no erf).
fn erf(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn integer_builtins_overloads_and_bit_casts() {
    let exprs: [(&str, i64); 26] = [
        ("min(3, -4)", -4),
        ("max(3, -4)", 3),
        // Mixed signedness compares as unsigned, as in CUDA.
        ("min(m1, two)", 2),
        ("max(m1, two)", u32::MAX as i64),
        ("min(-5LL, 7LL)", -5),
        ("max((long long)m1 * 3000000000LL, 2LL)", 2),
        ("min(7u, 9u)", 7),
        ("max(-1LL, 0ull)", -1),
        ("abs(m1 * 5)", 5),
        ("abs(-9000000000LL)", 9_000_000_000),
        ("__float_as_int(1.0f)", 0x3f80_0000),
        ("__float_as_uint(-0.0f)", 0x8000_0000),
        ("__double_as_longlong(1.0)", 0x3ff0_0000_0000_0000),
        ("(long long)(__int_as_float(0x40000000) * 10)", 20),
        ("(long long)(__uint_as_float(0x3f000000u) * 10)", 5),
        ("(long long)(__longlong_as_double(0x4000000000000000LL) * 10)", 20),
        ("(long long)(max(1.5f, 2.5) * 10)", 25),
        ("(long long)(min(2.5, 1.5f) * 10)", 15),
        ("0xffffffffu * two", 0xffff_fffe),
        ("__ldg(x)", 42),
        ("warpSize", 32),
        // The float overloads of the double-named functions stay in float.
        ("sizeof(exp(1.0f))", 4),
        ("sizeof(pow(2.0f, 3.0f))", 4),
        ("sizeof(exp(1.0))", 8),
        ("sizeof(min(1.0f, 2.0))", 8),
        ("sizeof(max(1.0f, 2.0f))", 4),
    ];
    let body: String = exprs
        .iter()
        .enumerate()
        .map(|(i, (e, _))| format!("    o[{i}] = (long long)({e});\n"))
        .collect();
    let m = compile(
        &format!(
            "extern \"C\" __global__ void ints(long long* o, const long long* x, int m1, unsigned int two) {{\n{body}}}\n"
        ),
        &[sig(
            "ints",
            vec![
                ptr(CType::I64),
                cptr(CType::I64),
                scalar(CType::I32),
                scalar(CType::U32),
            ],
            false,
        )],
    );
    let mut o = vec![0i64; exprs.len()];
    let x = [42i64];
    unsafe {
        m.launch(
            0,
            [1, 1, 1],
            [1, 1, 1],
            &[out(&mut o), inp(&x), HostArg::I32(-1), HostArg::U32(2)],
        )
    }
    .unwrap();
    for (i, (e, want)) in exprs.iter().enumerate() {
        assert_eq!(o[i], *want, "{e}");
    }
}

#[test]
fn function_and_variable_qualifiers() {
    let m = compile(
        r#"
__constant__ float weights[4] = {0.5f, -1.0f, 2.0f, 0.25f};
__device__ int calls;

__device__ __noinline__ float dot4(const float* v) {
    float s = 0.0f;
    for (int i = 0; i < 4; ++i) s += weights[i] * v[i];
    return s;
}

static __host__ __device__ __forceinline__ float twice(float v) { return 2.0f * v; }

extern "C" __global__ void qualified(float* out, const float* x) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = twice(dot4(x + 4 * i));
    atomicAdd(&calls, 1);
}

extern "C" __global__ void read_calls(int* count) { *count = atomicExch(&calls, 0); }
"#,
        &[
            sig("qualified", vec![ptr(CType::F32), cptr(CType::F32)], false),
            sig("read_calls", vec![ptr(CType::I32)], false),
        ],
    );
    let n = 64;
    let x = values(4 * n, 12);
    let mut y = vec![f32::NAN; n];
    let mut count = -1i32;
    unsafe {
        m.launch(0, [2, 1, 1], [32, 1, 1], &[out(&mut y), inp(&x)]).unwrap();
        m.launch(
            1,
            [1, 1, 1],
            [1, 1, 1],
            &[HostArg::Ptr(&mut count as *mut i32 as *mut c_void)],
        )
        .unwrap();
    }
    let w = [0.5f32, -1.0, 2.0, 0.25];
    let want: Vec<f32> = x
        .chunks(4)
        .map(|v| 2.0 * v.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    assert_close(&y, &want, 1e-6, "qualified");
    // A `__device__` variable is one global shared by all blocks.
    assert_eq!(count, n as i32);
}

#[test]
fn compile_errors_carry_the_log() {
    let err = try_compile(
        "extern \"C\" __global__ void broken(int* out) { out[0] = no_such_name; }",
        &[sig("broken", vec![ptr(CType::I32)], false)],
    )
    .err();
    let Some(HostError::Compile {
        source_path,
        log_path,
        log_head,
        ..
    }) = &err
    else {
        panic!("expected a compile error, got {err:?}");
    };
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("no_such_name"), "{log}");
    assert!(log_head.contains("no_such_name"), "{log_head}");
    let source = std::fs::read_to_string(source_path).unwrap();
    assert!(source.contains("void broken(") && source.contains("netc_host_entry_broken"));
    let shown = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(shown.contains(&log_path.display().to_string()) && shown.contains("no_such_name"));
    if let Some(dir) = source_path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_signature_that_disagrees_with_the_kernel_does_not_compile() {
    let body = "extern \"C\" __global__ void scale(float* out, int n) { out[0] = n; }";
    for (params, why) in [
        (vec![ptr(CType::F32), scalar(CType::F32)], "float for int"),
        (vec![cptr(CType::F32), scalar(CType::I32)], "const pointer"),
        (vec![ptr(CType::F32)], "missing parameter"),
    ] {
        match try_compile(body, &[sig("scale", params, false)]) {
            Err(HostError::Compile {
                log_head, source_path, ..
            }) => {
                assert!(log_head.contains("parameters differ"), "{why}: {log_head}");
                if let Some(dir) = source_path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            other => panic!("{why}: expected a compile error, got {:?}", other.err()),
        }
    }
}

#[test]
fn bad_launches_are_refused() {
    let m = compile(ELEMENTWISE, &[elementwise_sig()]);
    let mut y = vec![0f32; 4];
    let x = vec![0f32; 4];
    let l = vec![0i64; 4];
    let good = [out(&mut y), inp(&x), inp(&l), HostArg::I32(4), HostArg::F32(1.0)];
    let launch = |index, grid, block, args: &[HostArg]| unsafe { m.launch(index, grid, block, args) };
    let refused = |r: Result<(), HostError>, what: &str| match r {
        Err(HostError::BadLaunch { reason, .. }) => reason,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    refused(launch(0, [1, 1, 1], [4, 1, 1], &good[..4]), "too few arguments");
    let mut wrong = good;
    wrong[3] = HostArg::F32(4.0);
    let reason = refused(launch(0, [1, 1, 1], [4, 1, 1], &wrong), "float for int");
    assert!(reason.contains("argument 3"), "{reason}");
    wrong = good;
    wrong[0] = HostArg::I64(0);
    refused(launch(0, [1, 1, 1], [4, 1, 1], &wrong), "scalar for pointer");
    refused(launch(1, [1, 1, 1], [4, 1, 1], &good), "no such kernel");
    refused(launch(0, [0, 1, 1], [4, 1, 1], &good), "empty grid");
    let reason = refused(launch(0, [1, 1, 1], [512, 1, 1], &good), "over the launch bounds");
    assert!(reason.contains("__launch_bounds__"), "{reason}");
    launch(0, [1, 1, 1], [4, 1, 1], &good).unwrap();
    assert_eq!(y, [1.0; 4]);
}

#[test]
fn header_names_must_be_plain() {
    for name in ["../x.h", "netc_host.h", "", "dir/x.h"] {
        let r = HostModule::compile("", &[(name, "")], &[], Some(cache()));
        assert!(matches!(r, Err(HostError::Invalid(_))), "{name:?}");
    }
}

#[test]
fn a_missing_compiler_is_reported_with_a_hint() {
    match HostToolchain::with_compiler("/nonexistent/netc-test-c++") {
        Err(e @ HostError::CompilerNotFound { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("/nonexistent/netc-test-c++") && shown.contains("NETC_CXX"),
                "{shown}"
            );
        }
        other => panic!("expected CompilerNotFound, got {other:?}"),
    }
}

#[test]
fn the_cache_hits_and_rebuilds_corrupt_entries() {
    let dir = temp_dir("cache-test");
    let cache = DiskCache::new(&dir);
    // A comment makes the text, and so the key, unique to this test.
    let source = format!("#include \"netc.cuh\"\n// cache test\n{ELEMENTWISE}");
    let headers = [("netc.cuh", NETC_CUH)];
    let sigs = [elementwise_sig()];
    let check = |m: &HostModule| {
        let x = values(1000, 9);
        let l = vec![3i64; 1000];
        let mut y = vec![f32::NAN; 1000];
        unsafe {
            m.launch(
                0,
                [4, 1, 1],
                [256, 1, 1],
                &[out(&mut y), inp(&x), inp(&l), HostArg::I32(1000), HostArg::F32(2.0)],
            )
        }
        .unwrap();
        assert_close(&y, &elementwise_ref(&x, &l, 2.0), 1e-6, "cached module");
    };
    let first = HostModule::compile(&source, &headers, &sigs, Some(&cache)).unwrap();
    assert!(!first.cache_hit());
    assert!(first.path().starts_with(&dir));
    check(&first);
    let path = first.path().to_path_buf();
    drop(first);
    let second = HostModule::compile(&source, &headers, &sigs, Some(&cache)).unwrap();
    assert!(second.cache_hit());
    assert_eq!(second.path(), path);
    check(&second);
    drop(second);
    std::fs::write(&path, b"not an ELF object").unwrap();
    let third = HostModule::compile(&source, &headers, &sigs, Some(&cache)).unwrap();
    assert!(!third.cache_hit(), "a corrupt entry must be rebuilt");
    check(&third);
    drop(third);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_cache_compiles_afresh_every_time() {
    let source = format!("#include \"netc.cuh\"\n{ELEMENTWISE}");
    for _ in 0..2 {
        let m = HostModule::compile(&source, &[("netc.cuh", NETC_CUH)], &[elementwise_sig()], None).unwrap();
        assert!(!m.cache_hit());
        assert!(!m.path().starts_with(cache().dir()));
        let mut y = vec![0f32; 1];
        unsafe {
            m.launch(
                0,
                [1, 1, 1],
                [1, 1, 1],
                &[
                    out(&mut y),
                    inp(&[1f32]),
                    inp(&[0i64]),
                    HostArg::I32(1),
                    HostArg::F32(1.0),
                ],
            )
        }
        .unwrap();
        assert_eq!(y[0], 1.0 + (-1f32).exp());
    }
}

#[test]
fn launches_from_several_threads_at_once() {
    let mm = compile(MATMUL, &[matmul_sig()]);
    let (m, k, n) = (48, 40, 56);
    let a = values(m * k, 10);
    let b = values(k * n, 11);
    let want = matmul_ref(&a, &b, m, k, n);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
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
                    assert_close(&c, &want, 1e-5, "concurrent matmul");
                }
            });
        }
    });
}

/// The portable ucontext fibers and `NETC_THREADS`, in a child process since
/// both are fixed when the runtime is loaded.
#[test]
fn ucontext_fibers_and_thread_count_in_a_child_process() {
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "child_with_ucontext_and_three_threads"])
        .env("NETC_HOST_FIBERS", "ucontext")
        .env("NETC_THREADS", "3")
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "child: {}\n{}{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
}

#[test]
#[ignore = "run by ucontext_fibers_and_thread_count_in_a_child_process"]
fn child_with_ucontext_and_three_threads() {
    let mm = compile(MATMUL, &[matmul_sig()]);
    assert_eq!(mm.threads(), 3);
    tiled_matmul_with_shared_memory_and_barriers();
    row_softmax_with_shuffles_and_shared_memory();
    butterfly_reductions_and_syncwarp();
    deadlocks_and_misuse_are_errors_not_hangs();
}
