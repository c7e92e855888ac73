//! Kernels shared by the host shim's tests and benchmark, with the plain Rust
//! computations they are checked against.

use netc::device::cpu::{CType, HostKernelSig, HostParam};

/// What netc's own `netc.cuh` does on the host.
pub const NETC_CUH: &str = "#ifndef __CUDACC_RTC__\n#include \"netc_host.h\"\n#endif\n";

pub fn ptr(elem: CType) -> HostParam {
    HostParam::Ptr { elem, is_const: false }
}

pub fn cptr(elem: CType) -> HostParam {
    HostParam::Ptr { elem, is_const: true }
}

pub fn scalar(t: CType) -> HostParam {
    HostParam::Scalar(t)
}

pub fn sig(name: &str, params: Vec<HostParam>, cooperative: bool) -> HostKernelSig {
    HostKernelSig {
        name: name.to_string(),
        params,
        cooperative,
    }
}

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub const ELEMENTWISE: &str = r#"
extern "C" __global__ void __launch_bounds__(256) axpy_relu(float* __restrict__ out,
        const float* __restrict__ x, const long long* __restrict__ labels, int n, float alpha) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = alpha * fmaxf(x[i], 0.0f) + expf(-fabsf(x[i])) + (float)(labels[i] & 7);
    }
}
"#;

pub fn elementwise_sig() -> HostKernelSig {
    sig(
        "axpy_relu",
        vec![
            ptr(CType::F32),
            cptr(CType::F32),
            cptr(CType::I64),
            scalar(CType::I32),
            scalar(CType::F32),
        ],
        false,
    )
}

pub fn elementwise_ref(x: &[f32], labels: &[i64], alpha: f32) -> Vec<f32> {
    x.iter()
        .zip(labels)
        .map(|(&x, &l)| alpha * x.max(0.0) + (-x.abs()).exp() + (l & 7) as f32)
        .collect()
}

/// C[m×n] = A[m×k] · B[k×n] with 16×16 tiles in shared memory; block (16, 16),
/// grid (⌈n/16⌉, ⌈m/16⌉).
pub const MATMUL: &str = r#"
#define TILE 16
extern "C" __global__ void __launch_bounds__(256) matmul(float* __restrict__ c,
        const float* __restrict__ a, const float* __restrict__ b, int m, int k, int n) {
    __shared__ float as[TILE][TILE];
    __shared__ float bs[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty;
    const int col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int t = 0; t < k; t += TILE) {
        as[ty][tx] = (row < m && t + tx < k) ? a[row * k + t + tx] : 0.0f;
        bs[ty][tx] = (col < n && t + ty < k) ? b[(t + ty) * n + col] : 0.0f;
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < TILE; ++i) acc += as[ty][i] * bs[i][tx];
        __syncthreads();
    }
    if (row < m && col < n) c[row * n + col] = acc;
}
"#;

pub fn matmul_sig() -> HostKernelSig {
    sig(
        "matmul",
        vec![
            ptr(CType::F32),
            cptr(CType::F32),
            cptr(CType::F32),
            scalar(CType::I32),
            scalar(CType::I32),
            scalar(CType::I32),
        ],
        true,
    )
}

pub fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                acc += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
            }
            c[i * n + j] = acc as f32;
        }
    }
    c
}

/// Softmax of each row, one block per row: warp shuffles reduce within a warp,
/// shared memory across warps.
pub const SOFTMAX: &str = r#"
__device__ __forceinline__ float warp_max(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void __launch_bounds__(256) softmax_rows(float* __restrict__ y,
        const float* __restrict__ x, int cols) {
    __shared__ float red[32];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    const int lane = threadIdx.x % warpSize, warp = threadIdx.x / warpSize;
    const int warps = blockDim.x / warpSize;
    const float neg_inf = -__int_as_float(0x7f800000);

    float m = neg_inf;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
    m = warp_max(m);
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = warp_max(lane < warps ? red[lane] : neg_inf);
    __syncthreads();

    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
    s = warp_sum(s);
    if (lane == 0) red[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = warp_sum(lane < warps ? red[lane] : 0.0f);
        if (lane == 0) red[0] = s;
    }
    __syncthreads();
    const float inv = 1.0f / red[0];
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = expf(row[c] - m) * inv;
}
"#;

pub fn softmax_sig() -> HostKernelSig {
    sig(
        "softmax_rows",
        vec![ptr(CType::F32), cptr(CType::F32), scalar(CType::I32)],
        true,
    )
}

pub fn softmax_ref(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let s: f64 = row.iter().map(|&v| f64::from((v - m).exp())).sum();
            row.iter()
                .map(move |&v| (f64::from((v - m).exp()) / s) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}
