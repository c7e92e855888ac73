// netc.cuh: device helpers that generated kernels call. The same text is
// compiled by NVRTC (which ships no headers at all) and, on the CPU, by the
// system C++ compiler against the host shim.
#pragma once

#ifndef __CUDACC_RTC__
#include "netc_host.h"
#endif

// Marks a loop that sums into `acc` as safe to vectorise (reassociate) on the
// host, where the CPU schedules use it; the GPU schedules never emit it.
#ifdef __CUDACC_RTC__
#define NETC_SIMD_SUM(acc)
#else
#define NETC_PRAGMA(text) _Pragma(#text)
#define NETC_SIMD_SUM(acc) NETC_PRAGMA(omp simd reduction(+ : acc))
#endif

__device__ __forceinline__ float netc_sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

// murmur3's 32-bit finaliser; with netc_uniform it must match
// `ir::expr::uniform` in the compiler bit for bit.
__device__ __forceinline__ unsigned int netc_fmix32(unsigned int h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

// A uniform number in [0, 1) from (seed, salt, element index): counter
// based, so a dropout mask is recomputed in the backward pass, not stored.
__device__ __forceinline__ float netc_uniform(long long seed, unsigned int salt, unsigned int index) {
    const unsigned long long s = (unsigned long long)seed;
    const unsigned int key = netc_fmix32((unsigned int)s ^ netc_fmix32((unsigned int)(s >> 32) + salt * 0x9e3779b9u));
    const unsigned int h = netc_fmix32(netc_fmix32(index ^ key) + key);
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ float netc_warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

__device__ __forceinline__ float netc_warp_max(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// Block-wide reductions for blocks of whole warps. Every thread returns the
// result. `scratch` is __shared__ with room for 32 values; the leading
// barrier lets callers reuse it back to back.
__device__ __forceinline__ float netc_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = (blockDim.x + 31) >> 5;
    v = netc_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return netc_warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

__device__ __forceinline__ float netc_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = (blockDim.x + 31) >> 5;
    v = netc_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return netc_warp_max(lane < warps ? scratch[lane] : __int_as_float(0xff800000));
}

// Index of the block-wide maximum; ties go to the smaller index, as
// torch.argmax picks the first maximum.
__device__ __forceinline__ void netc_argmax_pair(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

__device__ __forceinline__ int netc_block_argmax(float v, int i, float* scratch, int* scratch_index) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = (blockDim.x + 31) >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        netc_argmax_pair(v, i, __shfl_xor_sync(0xffffffffu, v, offset), __shfl_xor_sync(0xffffffffu, i, offset));
    }
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = v;
        scratch_index[warp] = i;
    }
    __syncthreads();
    v = lane < warps ? scratch[lane] : __int_as_float(0xff800000);
    i = lane < warps ? scratch_index[lane] : 0x7fffffff;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        netc_argmax_pair(v, i, __shfl_xor_sync(0xffffffffu, v, offset), __shfl_xor_sync(0xffffffffu, i, offset));
    }
    return i;
}
