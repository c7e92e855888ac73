// netc_host_rt.cpp: the runtime behind netc_host.h. Built once per compiler
// and cached, then shared by every model object in the process.
//
// Barrier-free kernels: blocks are spread over a persistent thread pool and
// each runs as a plain loop inside the model object.
// Cooperative kernels: each CUDA thread of a block is a fiber on the OS
// thread that runs the block; barriers and warp operations switch fibers.
#define NETC_HOST_RUNTIME
#include "netc_host.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || !defined(__ELF__) || defined(NETC_HOST_UCONTEXT)
#define NETC_HOST_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxWarps = kMaxThreadsPerBlock / 32;
constexpr size_t kStackBytes = 128 * 1024;
// Launches smaller than this run on the calling thread: waking the pool costs
// more than the work.

// ---------------------------------------------------------------------------
// Context switch. Every fiber starts in fiber_main(its Fiber).

void fiber_main(void* fiber);

#ifndef NETC_HOST_USE_UCONTEXT

// Saves the callee-saved registers on the current stack, stores the stack
// pointer in *from and resumes the stack `to`. MXCSR and the x87 control word
// are not switched: kernels never change rounding modes.
extern "C" void netc_host_switch(void** from, void* to);
// First code a fiber runs: calls fiber_main(r12) and never returns.
extern "C" void netc_host_fiber_boot();
asm(R"(
    .text
    .globl netc_host_switch
    .hidden netc_host_switch
    .type netc_host_switch,@function
    .p2align 4
netc_host_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size netc_host_switch,.-netc_host_switch

    .globl netc_host_fiber_boot
    .hidden netc_host_fiber_boot
    .type netc_host_fiber_boot,@function
    .p2align 4
netc_host_fiber_boot:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size netc_host_fiber_boot,.-netc_host_fiber_boot
)");

struct Context {
    void* sp = nullptr;
};

void context_init(Context& c, char* /*stack_bottom*/, char* stack_top, void* arg) {
    // After the six pops and the `ret` into netc_host_fiber_boot, %rsp must be
    // 16-byte aligned so that its `call` enters fiber_main with the ABI's alignment.
    auto* sp = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15)) - 9;
    sp[0] = nullptr;                                           // r15
    sp[1] = nullptr;                                           // r14
    sp[2] = reinterpret_cast<void*>(&fiber_main);              // r13
    sp[3] = arg;                                               // r12
    sp[4] = nullptr;                                           // rbx
    sp[5] = nullptr;                                           // rbp
    sp[6] = reinterpret_cast<void*>(&netc_host_fiber_boot);    // return address
    c.sp = sp;
}

inline void context_switch(Context& from, Context& to) { netc_host_switch(&from.sp, to.sp); }

#else

struct Context {
    ucontext_t uc;
    bool made = false;
};

// makecontext passes int arguments only: the pointer travels in two halves.
void ucontext_boot(unsigned hi, unsigned lo) {
    fiber_main(reinterpret_cast<void*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}

void context_init(Context& c, char* stack_bottom, char* stack_top, void* arg) {
    // getcontext costs a system call; a fiber's context is fetched once and
    // only re-made for later blocks.
    if (!c.made) {
        getcontext(&c.uc);
        c.made = true;
    }
    c.uc.uc_stack.ss_sp = stack_bottom;
    c.uc.uc_stack.ss_size = size_t(stack_top - stack_bottom);
    c.uc.uc_link = nullptr;
    const auto p = reinterpret_cast<uintptr_t>(arg);
    makecontext(&c.uc, reinterpret_cast<void (*)()>(&ucontext_boot), 2, unsigned(p >> 32), unsigned(p));
}

inline void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }

#endif

// ---------------------------------------------------------------------------
// One launch, shared by the OS threads that work on it.

struct Launch {
    netc_host_launch desc;
    unsigned long long chunk;
    std::atomic<unsigned long long> next{0};
    std::atomic<int> status{NETC_HOST_OK};
    std::mutex err_mu;
    char message[512] = {};

    void fail(int code, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (status.load(std::memory_order_relaxed) != NETC_HOST_OK) return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        status.store(code, std::memory_order_relaxed);
    }
};

enum FiberState : unsigned char { kReady, kAtBlockBarrier, kAtWarpSync, kDone };

struct Coop;

struct Fiber {
    Context ctx;
    Coop* coop;
    unsigned index;
    FiberState state;
    unsigned char parity;  // which of the warp's two exchange buffers it uses next
};

}  // namespace

// The handle the model passes back with every barrier; `coop` is null while a
// barrier-free kernel runs, which is how misuse is detected.
struct netc_host_block {
    Launch* launch;
    Coop* coop;
};

namespace {

// Cooperative state of the block an OS thread is running.
struct Coop {
    netc_host_block handle;
    void* ctx;
    netc_host_thread_fn thread_fn;
    unsigned long long block;
    unsigned n;
    unsigned cur;
    unsigned done;
    unsigned at_block_barrier;
    unsigned at_warp_sync[kMaxWarps];
    unsigned warp_lanes[kMaxWarps];
    unsigned long long exchange[kMaxWarps][2][32];
    Context main;
    Fiber* fibers;
};

// Fiber stacks of one OS thread, reused across blocks and launches.
struct Stacks {
    char* base = nullptr;
    size_t bytes = 0;
    unsigned count = 0;
    size_t stride = 0;

    ~Stacks() {
        if (base) munmap(base, bytes);
    }

    size_t guard = 0;

    // Lowest usable byte of stack i, above its guard page.
    char* bottom(unsigned i) const { return base + stride * i + guard; }
    // Top of stack i. Tops are staggered by a cache line per fiber so that
    // the hot frames of consecutive fibers do not all fall in one cache set.
    char* top(unsigned i) const { return base + stride * (i + 1) - size_t(i % 64) * 64; }

    bool reserve(unsigned n) {
        if (n <= count) return true;
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        const size_t stride_new = kStackBytes + page;
        const size_t bytes_new = stride_new * n;
        void* p = mmap(nullptr, bytes_new, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED) return false;
        if (base) munmap(base, bytes);
        base = static_cast<char*>(p);
        bytes = bytes_new;
        stride = stride_new;
        guard = page;
        count = n;
        // A guard page below each stack turns an overflow into a fault rather
        // than silent corruption of the neighbouring fiber. Guards split the
        // mapping; if the kernel's map limit is reached, run without them.
        for (unsigned i = 0; i < n; ++i) {
            if (mprotect(base + stride * i, guard, PROT_NONE) != 0) break;
        }
        return true;
    }
};

struct ThreadState {
    Stacks stacks;
    std::vector<Fiber> fibers;
    Coop* coop = nullptr;

    ~ThreadState() { delete coop; }

    bool prepare(unsigned n) {
        if (!coop) {
            coop = new (std::nothrow) Coop();
            if (!coop) return false;
        }
        if (!stacks.reserve(n)) return false;
        if (fibers.size() < n) {
            try {
                // Never reallocated afterwards: a ucontext_t points into
                // itself and must not move once fetched.
                fibers.reserve(kMaxThreadsPerBlock);
                fibers.resize(n);
            } catch (...) {
                return false;
            }
        }
        coop->fibers = fibers.data();
        return true;
    }
};

thread_local ThreadState t_state;

// Switches from fiber `from` (whose state is already updated) to the next
// ready fiber after it in round-robin order, or back to the block's main
// context when none is ready: either all are done, or the block deadlocked.
inline __attribute__((always_inline)) void schedule(Coop* c, Fiber* from) {
    const unsigned n = c->n;
    unsigned j = from->index;
    for (unsigned k = 0; k < n; ++k) {
        j = j + 1 == n ? 0 : j + 1;
        if (c->fibers[j].state == kReady) {
            if (j == from->index) return;
            c->cur = j;
            context_switch(from->ctx, c->fibers[j].ctx);
            return;
        }
    }
    context_switch(from->ctx, c->main);
}

void fiber_main(void* arg) {
    Fiber* f = static_cast<Fiber*>(arg);
    Coop* c = f->coop;
    c->thread_fn(c->ctx, f->index);
    f->state = kDone;
    ++c->done;
    schedule(c, f);
    // A finished fiber is never scheduled again.
    __builtin_unreachable();
}

// "(x, y, z)" of a linear index within `dims`.
struct Index3 {
    char text[48];
    Index3(unsigned long long linear, const unsigned* dims) {
        snprintf(text, sizeof text, "(%llu, %llu, %llu)", linear % dims[0], linear / dims[0] % dims[1],
                 linear / (1ull * dims[0] * dims[1]));
    }
};

void report_deadlock(Launch& l, const Coop& c) {
    unsigned at_block = 0, at_warp = 0;
    unsigned first_block = 0, first_warp = 0;
    for (unsigned i = 0; i < c.n; ++i) {
        if (c.fibers[i].state == kAtBlockBarrier) {
            if (at_block++ == 0) first_block = i;
        } else if (c.fibers[i].state == kAtWarpSync) {
            if (at_warp++ == 0) first_warp = i;
        }
    }
    const unsigned* bd = l.desc.block;
    char waiting[192];
    if (at_block > 0 && at_warp > 0) {
        snprintf(waiting, sizeof waiting,
                 "%u at __syncthreads() (first: thread %s), %u at a warp operation (first: thread %s)", at_block,
                 Index3(first_block, bd).text, at_warp, Index3(first_warp, bd).text);
    } else if (at_block > 0) {
        snprintf(waiting, sizeof waiting, "%u at __syncthreads() (first: thread %s)", at_block,
                 Index3(first_block, bd).text);
    } else {
        snprintf(waiting, sizeof waiting, "%u at a warp operation (first: thread %s)", at_warp,
                 Index3(first_warp, bd).text);
    }
    l.fail(NETC_HOST_DEADLOCK,
           "block %s of %u threads cannot proceed: %s, %u returned; every thread of the block (of the warp, "
           "for warp operations) must reach the same barrier",
           Index3(c.block, l.desc.grid).text, c.n, waiting, c.done);
}

void run_coop_block(Launch& l, unsigned long long block) {
    ThreadState& ts = t_state;
    const unsigned n = l.desc.threads;
    if (!ts.prepare(n)) {
        l.fail(NETC_HOST_RESOURCE, "out of memory for %u fiber stacks of %zu bytes", n, kStackBytes);
        return;
    }
    Coop* c = ts.coop;
    c->handle.launch = &l;
    c->handle.coop = c;
    c->ctx = l.desc.ctx;
    c->thread_fn = l.desc.thread;
    c->block = block;
    c->n = n;
    c->cur = 0;
    c->done = 0;
    c->at_block_barrier = 0;
    const unsigned warps = (n + 31) / 32;
    for (unsigned w = 0; w < warps; ++w) {
        c->at_warp_sync[w] = 0;
        c->warp_lanes[w] = std::min(32u, n - w * 32);
    }
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = c->fibers[i];
        f.coop = c;
        f.index = i;
        f.state = kReady;
        f.parity = 0;
        context_init(f.ctx, ts.stacks.bottom(i), ts.stacks.top(i), &f);
    }
    l.desc.setup(l.desc.ctx, block, &c->handle);
    context_switch(c->main, c->fibers[0].ctx);
    if (c->done != n) report_deadlock(l, *c);
}

void run_flat_blocks(Launch& l, unsigned long long first, unsigned long long end) {
    netc_host_block handle = {&l, nullptr};
    l.desc.flat(l.desc.ctx, first, end, &handle);
}

// Claims chunks of blocks until none are left or the launch has failed.
void work(Launch& l) {
    const unsigned long long blocks = l.desc.blocks;
    while (l.status.load(std::memory_order_relaxed) == NETC_HOST_OK) {
        const unsigned long long first = l.next.fetch_add(l.chunk, std::memory_order_relaxed);
        if (first >= blocks) return;
        const unsigned long long end = std::min(blocks, first + l.chunk);
        if (l.desc.flat) {
            run_flat_blocks(l, first, end);
        } else {
            for (unsigned long long b = first; b < end && l.status.load(std::memory_order_relaxed) == NETC_HOST_OK;
                 ++b)
                run_coop_block(l, b);
        }
    }
}

// ---------------------------------------------------------------------------
// Thread pool: `workers` OS threads plus the launching thread. One launch at
// a time; a second launching thread waits for the first to finish.

class Pool {
public:
    // Starts as many of `workers` as the system allows; size() tells how many.
    explicit Pool(unsigned workers) {
        for (unsigned i = 0; i < workers; ++i) {
            try {
                threads_.emplace_back([this] { loop(); });
            } catch (...) {
                break;
            }
        }
    }

    unsigned size() const { return unsigned(threads_.size()) + 1; }

    void run(Launch& l) {
        std::lock_guard<std::mutex> launch_lock(launch_mu_);
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_ = &l;
            ++generation_;
        }
        wake_.notify_all();
        work(l);
        // Every block is claimed. Wait only for the workers that joined: one
        // the OS has not scheduled yet (a busy machine) must not hold up the
        // launch, and finds no job when it wakes.
        std::unique_lock<std::mutex> lock(mu_);
        job_ = nullptr;
        idle_.wait(lock, [this] { return active_ == 0; });
    }

private:
    void loop() {
        unsigned long long seen = 0;
        for (;;) {
            Launch* l;
            {
                std::unique_lock<std::mutex> lock(mu_);
                wake_.wait(lock, [&] { return generation_ != seen && job_ != nullptr; });
                seen = generation_;
                l = job_;
                ++active_;
            }
            work(*l);
            std::lock_guard<std::mutex> lock(mu_);
            if (--active_ == 0) idle_.notify_one();
        }
    }

    std::mutex launch_mu_;
    std::mutex mu_;
    std::condition_variable wake_, idle_;
    Launch* job_ = nullptr;
    unsigned long long generation_ = 0;
    unsigned active_ = 0;
    std::vector<std::thread> threads_;
};

// Never destroyed: workers block forever and die with the process, which
// spares any ordering problem with static destructors at exit.
Pool* g_pool = nullptr;

int launch(const netc_host_launch* desc, char* err, unsigned long errlen) {
    Launch l;
    l.desc = *desc;
    const bool coop = desc->flat == nullptr;
    const unsigned workers = g_pool->size();
    // Several chunks per thread balance uneven blocks; cooperative blocks are
    // heavy enough to be claimed one at a time.
    l.chunk = coop ? 1 : std::max(1ull, desc->blocks / (8ull * workers));
    // A block's weight is unknown here: CPU schedules put thousands of
    // element-operations in one single-thread block. So every launch of more
    // than one block is spread over the pool.
    const bool inline_run = workers == 1 || desc->blocks == 1;
    if (inline_run) {
        work(l);
    } else {
        g_pool->run(l);
    }
    const int status = l.status.load(std::memory_order_relaxed);
    if (status != NETC_HOST_OK && errlen > 0) snprintf(err, errlen, "%s", l.message);
    return status;
}

void sync_block(netc_host_block* rt) {
    Coop* c = rt->coop;
    if (!c) {
        rt->launch->fail(NETC_HOST_FAULT,
                         "__syncthreads() in a kernel launched as barrier-free; launch it as cooperative");
        return;
    }
    Fiber* f = &c->fibers[c->cur];
    f->state = kAtBlockBarrier;
    if (++c->at_block_barrier == c->n) {
        c->at_block_barrier = 0;
        for (unsigned i = 0; i < c->n; ++i) c->fibers[i].state = kReady;
    }
    schedule(c, f);
}

// Source lane of a shuffle, exactly as PTX's shfl.sync defines it; `lane`
// itself when the source is out of the segment.
unsigned shuffle_source(unsigned op, unsigned lane, unsigned b, unsigned c) {
    const int bval = int(b & 31);
    const int cval = int(c & 31);
    const int segmask = int((c >> 8) & 31);
    const int l = int(lane);
    const int max_lane = (l & segmask) | (cval & ~segmask);
    const int min_lane = l & segmask;
    int j;
    bool ok;
    switch (op) {
        case NETC_HOST_SHFL_UP:
            j = l - bval;
            ok = j >= max_lane;
            break;
        case NETC_HOST_SHFL_DOWN:
            j = l + bval;
            ok = j <= max_lane;
            break;
        case NETC_HOST_SHFL_BFLY:
            j = l ^ bval;
            ok = j <= max_lane;
            break;
        default:
            j = min_lane | (bval & ~segmask);
            ok = j <= max_lane;
            break;
    }
    return ok ? unsigned(j) : lane;
}

unsigned long long warp_op(netc_host_block* rt, unsigned mask, unsigned long long value, unsigned op,
                           unsigned lane_arg, unsigned clamp) {
    Coop* c = rt->coop;
    if (!c) {
        rt->launch->fail(NETC_HOST_FAULT,
                         "a warp operation (__syncwarp or __shfl_*_sync) in a kernel launched as barrier-free; "
                         "launch it as cooperative");
        return value;
    }
    Fiber* f = &c->fibers[c->cur];
    const unsigned lane = f->index & 31;
    const unsigned w = f->index >> 5;
    const unsigned lanes = c->warp_lanes[w];
    const unsigned present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    if ((mask & present) != present) {
        rt->launch->fail(NETC_HOST_FAULT,
                         "warp operation with mask 0x%08x in warp %u of block %s: the host shim supports only "
                         "masks naming every lane of the warp",
                         mask, w, Index3(c->block, rt->launch->desc.grid).text);
    }
    const unsigned par = f->parity;
    // Two buffers alternate: a lane can only write the other one again after
    // the whole warp passed the next sync, i.e. after every lane read this one.
    f->parity = par ^ 1;
    c->exchange[w][par][lane] = value;
    f->state = kAtWarpSync;
    if (++c->at_warp_sync[w] == lanes) {
        c->at_warp_sync[w] = 0;
        Fiber* first = &c->fibers[w * 32];
        for (unsigned i = 0; i < lanes; ++i) first[i].state = kReady;
    }
    schedule(c, f);
    if (op == NETC_HOST_WARP_SYNC) return value;
    const unsigned src = shuffle_source(op, lane, lane_arg, clamp);
    return src < lanes ? c->exchange[w][par][src] : value;
}

const netc_host_rt_api g_api = {NETC_HOST_ABI, &launch, &sync_block, &warp_op};

}  // namespace

// Creates the pool (`threads` OS threads in all, the launching one included)
// and returns the table models call through; null when out of memory.
extern "C" __attribute__((visibility("default"))) const netc_host_rt_api* netc_host_rt_init(unsigned threads) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    if (!g_pool) g_pool = new (std::nothrow) Pool(threads > 0 ? threads - 1 : 0);
    return g_pool ? &g_api : nullptr;
}

// Number of OS threads of the pool, the launching one included.
extern "C" __attribute__((visibility("default"))) unsigned netc_host_rt_threads() {
    return g_pool ? g_pool->size() : 0;
}
