// netc_host.h: what CUDA provides to a kernel, for running the same CUDA C
// text on the CPU. `netc.cuh` includes this header when it is not compiled by
// NVRTC; the model's translation unit is then compiled by the system C++
// compiler into a shared object.
//
// The header includes no system header at all: parsing <cmath>, <atomic> and
// friends cost most of the per-model compile time. Everything heavy (thread
// pool, fibers) lives in the runtime object built from netc_host_rt.cpp,
// reached through the function table `netc_host_rt_api`.
//
// Identifiers starting with `netc_host_` are reserved for this header and the
// glue netc appends to the translation unit.
#ifndef NETC_HOST_H
#define NETC_HOST_H

// ---------------------------------------------------------------------------
// ABI shared by per-model objects and the runtime object. Both are compiled
// from this same text, and both cache keys include it.

#define NETC_HOST_ABI 1

#define NETC_HOST_OK 0
#define NETC_HOST_DEADLOCK 1
#define NETC_HOST_FAULT 2
#define NETC_HOST_RESOURCE 3

// Warp operations, in the PTX `shfl.sync` terms: `lane_arg` is `b`, `clamp`
// is `c` (segment mask in bits 8..12, clamp lane in bits 0..4).
#define NETC_HOST_WARP_SYNC 0
#define NETC_HOST_SHFL_IDX 1
#define NETC_HOST_SHFL_UP 2
#define NETC_HOST_SHFL_DOWN 3
#define NETC_HOST_SHFL_BFLY 4

extern "C" {

struct netc_host_dim3 {
    unsigned x, y, z;
};

// Opaque per-block state of the runtime, handed to the model with each block
// so that barriers need no thread-local lookup in the runtime.
struct netc_host_block;

// Runs blocks [first, end) of a barrier-free kernel, all threads of each.
typedef void (*netc_host_flat_fn)(void* ctx, unsigned long long first, unsigned long long end,
                                  struct netc_host_block* rt);
// Prepares the calling OS thread for block `block` of a cooperative kernel.
typedef void (*netc_host_setup_fn)(void* ctx, unsigned long long block, struct netc_host_block* rt);
// Body of one CUDA thread (linear index in its block) of a cooperative kernel.
typedef void (*netc_host_thread_fn)(void* ctx, unsigned thread);

struct netc_host_launch {
    unsigned grid[3], block[3];
    unsigned long long blocks;
    unsigned threads;  // per block
    void* ctx;
    netc_host_flat_fn flat;  // set for barrier-free kernels
    netc_host_setup_fn setup;  // these two for cooperative kernels
    netc_host_thread_fn thread;
};

struct netc_host_rt_api {
    unsigned abi;
    // Runs a launch to completion; NETC_HOST_OK or an error code with a
    // message in `err`.
    int (*launch)(const struct netc_host_launch* launch, char* err, unsigned long errlen);
    void (*sync_block)(struct netc_host_block* rt);
    // Every warp operation: deposits `value`, waits for the warp, returns the
    // value of the source lane (`value` itself for NETC_HOST_WARP_SYNC).
    unsigned long long (*warp)(struct netc_host_block* rt, unsigned mask, unsigned long long value,
                               unsigned op, unsigned lane_arg, unsigned clamp);
};

}  // extern "C"

#ifndef NETC_HOST_RUNTIME

// ---------------------------------------------------------------------------
// Per-OS-thread view of the CUDA thread being run. Fibers of one block share
// an OS thread, so every operation that switches fibers saves `tid` on the
// fiber's own stack and restores it when the fiber resumes.

struct netc_host_state {
    netc_host_dim3 tid, bid, bdim, gdim;
    netc_host_block* rt;
};

// Not `static`: GCC must assume calls into the runtime can reach these
// through the exported entry points, so it never caches them across a switch.
__attribute__((visibility("hidden"))) thread_local netc_host_state netc_host_ts;
__attribute__((visibility("hidden"))) const netc_host_rt_api* netc_host_rt;

#define threadIdx (static_cast<const netc_host_dim3&>(netc_host_ts.tid))
#define blockIdx (static_cast<const netc_host_dim3&>(netc_host_ts.bid))
#define blockDim (static_cast<const netc_host_dim3&>(netc_host_ts.bdim))
#define gridDim (static_cast<const netc_host_dim3&>(netc_host_ts.gdim))
constexpr int warpSize = 32;

// Kernels are inlined into the per-block loop (barrier-free) or the fiber
// body (cooperative), which is where the host speed comes from.
#define __global__ inline __attribute__((always_inline))
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
// Constant memory is an ordinary global: kernels only read it.
#define __constant__
#define __launch_bounds__(...)
// One block runs on one OS thread at a time, and blocks of a launch run on
// several OS threads at once: shared memory is per OS thread.
#define __shared__ static thread_local

// ---------------------------------------------------------------------------
// Barriers and warp operations.

static inline void __syncthreads() {
    const netc_host_dim3 t = netc_host_ts.tid;
    netc_host_rt->sync_block(netc_host_ts.rt);
    netc_host_ts.tid = t;
}

static inline unsigned long long netc_host_warp(unsigned mask, unsigned long long v, unsigned op,
                                                unsigned lane_arg, unsigned clamp) {
    const netc_host_dim3 t = netc_host_ts.tid;
    const unsigned long long r = netc_host_rt->warp(netc_host_ts.rt, mask, v, op, lane_arg, clamp);
    netc_host_ts.tid = t;
    return r;
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    netc_host_warp(mask, 0, NETC_HOST_WARP_SYNC, 0, 0x1f);
}

template <class T>
static inline unsigned long long netc_host_to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long r = 0;
    __builtin_memcpy(&r, &v, sizeof(T));
    return r;
}

template <class T>
static inline T netc_host_from_bits(unsigned long long r) {
    T v;
    __builtin_memcpy(&v, &r, sizeof(T));
    return v;
}

// The clamp operands are those CUDA's own intrinsics pass to shfl.sync.
template <class T>
static inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
    return netc_host_from_bits<T>(netc_host_warp(mask, netc_host_to_bits(var), NETC_HOST_SHFL_IDX,
                                                 (unsigned)src_lane, ((warpSize - width) << 8) | 0x1f));
}

template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return netc_host_from_bits<T>(netc_host_warp(mask, netc_host_to_bits(var), NETC_HOST_SHFL_UP,
                                                 delta, (warpSize - width) << 8));
}

template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return netc_host_from_bits<T>(netc_host_warp(mask, netc_host_to_bits(var), NETC_HOST_SHFL_DOWN,
                                                 delta, ((warpSize - width) << 8) | 0x1f));
}

template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
    return netc_host_from_bits<T>(netc_host_warp(mask, netc_host_to_bits(var), NETC_HOST_SHFL_BFLY,
                                                 (unsigned)lane_mask, ((warpSize - width) << 8) | 0x1f));
}

// ---------------------------------------------------------------------------
// Atomics. CUDA's are relaxed; blocks of one launch run on several OS threads.

static inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

template <class T, class F>
static inline T netc_host_atomic_update(T* p, F f) {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T next = f(old);
    // The generic builtin compares bytes, so a NaN already stored cannot spin forever.
    while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        next = f(old);
    }
    return old;
}

static inline float atomicAdd(float* p, float v) {
    return netc_host_atomic_update(p, [v](float o) { return o + v; });
}
static inline double atomicAdd(double* p, double v) {
    return netc_host_atomic_update(p, [v](double o) { return o + v; });
}
static inline int atomicMax(int* p, int v) {
    return netc_host_atomic_update(p, [v](int o) { return o > v ? o : v; });
}
static inline unsigned atomicMax(unsigned* p, unsigned v) {
    return netc_host_atomic_update(p, [v](unsigned o) { return o > v ? o : v; });
}
static inline int atomicMin(int* p, int v) {
    return netc_host_atomic_update(p, [v](int o) { return o < v ? o : v; });
}
static inline unsigned atomicMin(unsigned* p, unsigned v) {
    return netc_host_atomic_update(p, [v](unsigned o) { return o < v ? o : v; });
}
static inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline float atomicExch(float* p, float v) {
    float old;
    __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
    return old;
}
template <class T>
static inline T netc_host_cas(T* p, T compare, T v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
static inline int atomicCAS(int* p, int compare, int v) { return netc_host_cas(p, compare, v); }
static inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned v) {
    return netc_host_cas(p, compare, v);
}
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long compare,
                                           unsigned long long v) {
    return netc_host_cas(p, compare, v);
}

// ---------------------------------------------------------------------------
// Loads and bit casts.

template <class T>
static inline T __ldg(const T* p) { return *p; }

static inline float __int_as_float(int v) { return netc_host_from_bits<float>((unsigned)v); }
static inline int __float_as_int(float v) { return (int)netc_host_to_bits(v); }
static inline float __uint_as_float(unsigned v) { return netc_host_from_bits<float>(v); }
static inline unsigned __float_as_uint(float v) { return (unsigned)netc_host_to_bits(v); }
static inline double __longlong_as_double(long long v) {
    return netc_host_from_bits<double>((unsigned long long)v);
}
static inline long long __double_as_longlong(double v) { return (long long)netc_host_to_bits(v); }

// ---------------------------------------------------------------------------
// Math. The C library's functions, declared here rather than through
// <math.h>; GCC knows them as built-ins and inlines the simple ones.

extern "C" {
float expf(float) noexcept;
float exp2f(float) noexcept;
float logf(float) noexcept;
float log2f(float) noexcept;
float sqrtf(float) noexcept;
float tanhf(float) noexcept;
float erff(float) noexcept;
float fabsf(float) noexcept;
float powf(float, float) noexcept;
float log1pf(float) noexcept;
float expm1f(float) noexcept;
float floorf(float) noexcept;
float ceilf(float) noexcept;
float truncf(float) noexcept;
float roundf(float) noexcept;
float fmaf(float, float, float) noexcept;
float sinf(float) noexcept;
float cosf(float) noexcept;
double exp(double) noexcept;
double exp2(double) noexcept;
double log(double) noexcept;
double log2(double) noexcept;
double sqrt(double) noexcept;
double tanh(double) noexcept;
double erf(double) noexcept;
double fabs(double) noexcept;
double pow(double, double) noexcept;
double log1p(double) noexcept;
double expm1(double) noexcept;
double floor(double) noexcept;
double ceil(double) noexcept;
double trunc(double) noexcept;
double round(double) noexcept;
double fma(double, double, double) noexcept;
double sin(double) noexcept;
double cos(double) noexcept;
}

// fmax/fmin are inline so that relu-like code does not pay a library call;
// like CUDA's, they return the other operand when one is NaN.
static inline float fmaxf(float a, float b) { return a != a ? b : (b != b ? a : (a > b ? a : b)); }
static inline float fminf(float a, float b) { return a != a ? b : (b != b ? a : (a < b ? a : b)); }
static inline double fmax(double a, double b) { return a != a ? b : (b != b ? a : (a > b ? a : b)); }
static inline double fmin(double a, double b) { return a != a ? b : (b != b ? a : (a < b ? a : b)); }

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// The GPU's fast approximations; the host uses the exact functions.
static inline float __expf(float x) { return expf(x); }
static inline float __logf(float x) { return logf(x); }
static inline float __fdividef(float a, float b) { return a / b; }

// CUDA's C++ overloads: the double-named functions called on floats stay in
// single precision.
static inline float exp(float x) { return expf(x); }
static inline float exp2(float x) { return exp2f(x); }
static inline float log(float x) { return logf(x); }
static inline float log2(float x) { return log2f(x); }
static inline float sqrt(float x) { return sqrtf(x); }
static inline float rsqrt(float x) { return rsqrtf(x); }
static inline float tanh(float x) { return tanhf(x); }
static inline float erf(float x) { return erff(x); }
static inline float fabs(float x) { return fabsf(x); }
static inline float pow(float a, float b) { return powf(a, b); }
static inline float log1p(float x) { return log1pf(x); }
static inline float expm1(float x) { return expm1f(x); }
static inline float floor(float x) { return floorf(x); }
static inline float ceil(float x) { return ceilf(x); }
static inline float trunc(float x) { return truncf(x); }
static inline float round(float x) { return roundf(x); }
static inline float fma(float a, float b, float c) { return fmaf(a, b, c); }
static inline float sin(float x) { return sinf(x); }
static inline float cos(float x) { return cosf(x); }
static inline float fmax(float a, float b) { return fmaxf(a, b); }
static inline float fmin(float a, float b) { return fminf(a, b); }

static inline int abs(int a) { return a < 0 ? -a : a; }
static inline long long abs(long long a) { return a < 0 ? -a : a; }

// min/max: CUDA's overload set, mixed signedness included, so that a call
// that resolves (or is ambiguous) under NVRTC does the same here.
#define NETC_HOST_MINMAX(R, A, B)                                       \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
NETC_HOST_MINMAX(int, int, int)
NETC_HOST_MINMAX(unsigned, unsigned, unsigned)
NETC_HOST_MINMAX(unsigned, int, unsigned)
NETC_HOST_MINMAX(unsigned, unsigned, int)
NETC_HOST_MINMAX(long, long, long)
NETC_HOST_MINMAX(unsigned long, unsigned long, unsigned long)
NETC_HOST_MINMAX(unsigned long, long, unsigned long)
NETC_HOST_MINMAX(unsigned long, unsigned long, long)
NETC_HOST_MINMAX(long long, long long, long long)
NETC_HOST_MINMAX(unsigned long long, unsigned long long, unsigned long long)
NETC_HOST_MINMAX(unsigned long long, long long, unsigned long long)
NETC_HOST_MINMAX(unsigned long long, unsigned long long, long long)
#undef NETC_HOST_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin((double)a, b); }
static inline double max(float a, double b) { return fmax((double)a, b); }
static inline double min(double a, float b) { return fmin(a, (double)b); }
static inline double max(double a, float b) { return fmax(a, (double)b); }

// ---------------------------------------------------------------------------
// Used by the glue netc appends after the kernels.

#define NETC_HOST_EXPORT extern "C" __attribute__((visibility("default")))

template <class A, class B>
struct netc_host_same {
    enum { value = 0 };
};
template <class A>
struct netc_host_same<A, A> {
    enum { value = 1 };
};

struct netc_host_dims {
    unsigned grid[3];
    unsigned block[3];
};

static inline netc_host_dims netc_host_make_dims(const unsigned* grid, const unsigned* block) {
    return netc_host_dims{{grid[0], grid[1], grid[2]}, {block[0], block[1], block[2]}};
}

static inline void netc_host_enter_block(const netc_host_dims& d, unsigned long long b, netc_host_block* rt) {
    netc_host_ts.rt = rt;
    netc_host_ts.gdim = netc_host_dim3{d.grid[0], d.grid[1], d.grid[2]};
    netc_host_ts.bdim = netc_host_dim3{d.block[0], d.block[1], d.block[2]};
    const unsigned long long gxy = (unsigned long long)d.grid[0] * d.grid[1];
    netc_host_ts.bid = netc_host_dim3{(unsigned)(b % d.grid[0]), (unsigned)(b / d.grid[0] % d.grid[1]),
                                      (unsigned)(b / gxy)};
}

static inline void netc_host_enter_thread(unsigned t) {
    const unsigned bx = netc_host_ts.bdim.x, by = netc_host_ts.bdim.y;
    netc_host_ts.tid = netc_host_dim3{t % bx, t / bx % by, t / (bx * by)};
}

template <class Body>
static inline void netc_host_run_flat(const netc_host_dims& d, unsigned long long first, unsigned long long end,
                                      netc_host_block* rt, Body body) {
    for (unsigned long long b = first; b < end; ++b) {
        netc_host_enter_block(d, b, rt);
        for (unsigned z = 0; z < d.block[2]; ++z)
            for (unsigned y = 0; y < d.block[1]; ++y)
                for (unsigned x = 0; x < d.block[0]; ++x) {
                    netc_host_ts.tid = netc_host_dim3{x, y, z};
                    body();
                }
    }
}

static inline netc_host_launch netc_host_describe(const netc_host_dims& d, void* ctx) {
    netc_host_launch l = {};
    for (int i = 0; i < 3; ++i) {
        l.grid[i] = d.grid[i];
        l.block[i] = d.block[i];
    }
    l.blocks = (unsigned long long)d.grid[0] * d.grid[1] * d.grid[2];
    l.threads = d.block[0] * d.block[1] * d.block[2];
    l.ctx = ctx;
    return l;
}

static inline int netc_host_launch_flat(const netc_host_dims& d, void* ctx, netc_host_flat_fn flat, char* err,
                                        unsigned long errlen) {
    netc_host_launch l = netc_host_describe(d, ctx);
    l.flat = flat;
    return netc_host_rt->launch(&l, err, errlen);
}

static inline int netc_host_launch_coop(const netc_host_dims& d, void* ctx, netc_host_setup_fn setup,
                                        netc_host_thread_fn thread, char* err, unsigned long errlen) {
    netc_host_launch l = netc_host_describe(d, ctx);
    l.setup = setup;
    l.thread = thread;
    return netc_host_rt->launch(&l, err, errlen);
}

NETC_HOST_EXPORT int netc_host_module_init(const netc_host_rt_api* api) {
    if (api->abi != NETC_HOST_ABI) return 1;
    netc_host_rt = api;
    return 0;
}

#endif  // NETC_HOST_RUNTIME
#endif  // NETC_HOST_H
