//! The host shim: runs netc's generated CUDA C on the CPU.
//!
//! The very CUDA C text NVRTC compiles is compiled here by the system C++
//! compiler against `runtime/netc_host.h`, with a little glue appended (one
//! exported entry point per kernel), into one shared object per model, cached
//! by content. The heavy machinery, a persistent thread pool and fibers, lives
//! in a separate runtime object (`runtime/netc_host_rt.cpp`) built once per
//! compiler and cached too; both sources are embedded in the binary.
//!
//! Execution: a barrier-free kernel runs as a plain loop over blocks and
//! threads, the kernel inlined into it, blocks spread over the pool
//! (`NETC_THREADS` threads, default: the available cores). A cooperative
//! kernel runs every CUDA thread of a block as a fiber on the OS thread that
//! runs the block; `__syncthreads()` and warp operations switch fibers
//! (a hand-written x86-64 switch; ucontext elsewhere, or with
//! `NETC_HOST_FIBERS=ucontext`). Blocks run in parallel, so `__shared__`
//! variables are per OS thread (`static thread_local`).
//!
//! What generated code may rely on (see `netc_host.h` for the full list):
//! - kernels `extern "C" __global__ void [__launch_bounds__(N)] name(...)`,
//!   parameters as in [`HostKernelSig`]; the glue checks the kernel's exact
//!   parameter types at compile time. A launch with more threads per block
//!   than `__launch_bounds__` allows is refused, as CUDA refuses it.
//! - `__device__` (functions and globals), `__host__`, `__forceinline__`,
//!   `__noinline__`, `__constant__` (an ordinary global on the host).
//! - `__shared__` arrays declared in a kernel or device function (no
//!   `extern __shared__`); `__syncthreads`, `__syncwarp`, `__shfl{,_up,_down,
//!   _xor}_sync` on any type of up to 8 bytes, with CUDA's `width` semantics;
//!   masks must name every lane of the warp.
//! - every thread of a block must reach every `__syncthreads()` (every lane
//!   of a warp every warp operation): a thread that returns early while
//!   others wait is reported as a deadlock, although GPUs tolerate it.
//!   Fibers switch only there: a thread that spins on memory another thread
//!   of its block is to write, without a barrier in between, hangs.
//! - atomics: `atomicAdd` (int, unsigned, unsigned long long, float, double),
//!   `atomicMax`/`atomicMin` (int, unsigned), `atomicExch` (int, float),
//!   `atomicCAS` (int, unsigned, unsigned long long); relaxed, as on the GPU.
//! - math: the float and double versions of exp exp2 log log2 sqrt rsqrt
//!   tanh erf fabs pow log1p expm1 floor ceil trunc round fma sin cos fmax
//!   fmin, the float-suffixed names (`expf`...), `__expf __logf __fdividef`
//!   (exact on the host), CUDA's `min`/`max` overloads, `abs`, the bit casts
//!   `__int_as_float __float_as_int __uint_as_float __float_as_uint
//!   __longlong_as_double __double_as_longlong`, `__ldg`, `warpSize`.
//!   Contraction into FMAs is on, as in CUDA; results still differ from the
//!   GPU in the last bits.
//! - identifiers starting with `netc_host_` are reserved.
//!
//! Measured on the development machine (2-core AMD EPYC shared with other
//! engineers' builds, load 2–3, g++ 12.2, `cargo bench --bench host_shim`;
//! expect a few tens of percent of noise):
//!
//! | what | time |
//! |---|---|
//! | tiled matmul 256³, 16×16 tiles (cooperative), 2 threads | 49 ms |
//! | row softmax 256×1000, shuffles + shared memory, 2 threads | 17 ms |
//! | elementwise 10M (barrier-free), 2 threads | 25–28 ms |
//! | the same as a plain Rust loop, 1 thread | 62 ms |
//! | launch overhead (one element) | 0.4 µs |
//! | fiber switch at a barrier or shuffle, per CUDA thread | 9–15 ns |
//! | compile, small model (3 kernels), cold | 250–330 ms |
//! | compile, one elementwise kernel, cold | 110 ms |
//! | compile, cached | 0.1 ms |
//! | runtime object, cold (once per compiler and CPU) | 1.3 s |

mod glue;
mod toolchain;

pub use toolchain::HostToolchain;

use crate::device::cache::DiskCache;
use libloading::Library;
use std::ffi::{c_char, c_ulong, c_void, CStr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Scalar types of kernel parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CType {
    F32,
    F64,
    I32,
    I64,
    U32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostParam {
    Ptr { elem: CType, is_const: bool },
    Scalar(CType),
}

/// A kernel's parameters as its CUDA C declares them (`__restrict__` aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKernelSig {
    pub name: String,
    pub params: Vec<HostParam>,
    /// Uses `__syncthreads()`, warp operations or `__shared__` memory.
    pub cooperative: bool,
}

/// One launch argument. Pointers are host memory the kernel may read and write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HostArg {
    Ptr(*mut c_void),
    F32(f32),
    F64(f64),
    I32(i32),
    I64(i64),
    U32(u32),
}

#[derive(Debug, Error)]
pub enum HostError {
    #[error(
        "no C++ compiler found (tried {tried}); install one (Debian/Ubuntu: `apt install g++`) \
         or point NETC_CXX at a C++17 compiler"
    )]
    CompilerNotFound { tried: String },
    #[error(
        "the C++ compiler rejected the host {what}; source: {}, full log: {}\n{log_head}",
        source_path.display(),
        log_path.display()
    )]
    Compile {
        what: String,
        source_path: PathBuf,
        log_path: PathBuf,
        log_head: String,
    },
    #[error("cannot load {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("invalid host module description: {0}")]
    Invalid(String),
    #[error("bad launch of kernel `{kernel}`: {reason}")]
    BadLaunch { kernel: String, reason: String },
    #[error("kernel `{kernel}` deadlocked: {detail}")]
    Deadlock { kernel: String, detail: String },
    #[error("kernel `{kernel}` failed: {detail}")]
    Kernel { kernel: String, detail: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("invalid {var}={value:?}: {reason}")]
    Config {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// `int netc_host_entry_<name>(void* const* args, const unsigned* grid,
/// const unsigned* block, char* err, unsigned long errlen)`, from netc_host.h.
type Entry = unsafe extern "C" fn(*const *mut c_void, *const u32, *const u32, *mut c_char, c_ulong) -> i32;
type ModuleInit = unsafe extern "C" fn(*const c_void) -> i32;

// Return codes of an entry point (NETC_HOST_* in netc_host.h).
const RC_OK: i32 = 0;
const RC_DEADLOCK: i32 = 1;

struct Kernel {
    sig: HostKernelSig,
    entry: Entry,
    max_threads: Option<u32>,
}

/// A loaded model object with its entry points resolved.
pub struct HostModule {
    kernels: Vec<Kernel>,
    path: PathBuf,
    cache_hit: bool,
    compile_time: Duration,
    threads: usize,
    // Last, so the entry points above never outlive the object.
    _lib: Library,
}

impl std::fmt::Debug for HostModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostModule")
            .field("path", &self.path)
            .field("kernels", &self.kernels.iter().map(|k| &k.sig.name).collect::<Vec<_>>())
            .field("cache_hit", &self.cache_hit)
            .finish()
    }
}

/// Storage for one argument; the entry point reads it through a typed pointer.
#[repr(C)]
union Slot {
    ptr: *mut c_void,
    f32: f32,
    f64: f64,
    i32: i32,
    i64: i64,
    u32: u32,
}

impl HostModule {
    /// Compiles `source` (plus `headers`, written next to it: `("netc.cuh",
    /// text)`) into one shared object, or takes it from `cache`; `None`
    /// compiles afresh in a temporary folder. The compiler is `$NETC_CXX`,
    /// else `c++`, `g++` or `clang++`.
    pub fn compile(
        source: &str,
        headers: &[(&str, &str)],
        kernels: &[HostKernelSig],
        cache: Option<&DiskCache>,
    ) -> Result<HostModule, HostError> {
        let toolchain = HostToolchain::detect()?;
        Self::compile_with(&toolchain, source, headers, kernels, cache)
    }

    /// [`HostModule::compile`] with a given compiler.
    pub fn compile_with(
        toolchain: &HostToolchain,
        source: &str,
        headers: &[(&str, &str)],
        kernels: &[HostKernelSig],
        cache: Option<&DiskCache>,
    ) -> Result<HostModule, HostError> {
        let start = Instant::now();
        glue::validate(kernels)?;
        const MAIN: &str = "module.cpp";
        for (name, _) in headers {
            let plain =
                !name.is_empty() && !name.contains(['/', '\\']) && *name != "." && *name != ".." && *name != MAIN;
            if !plain || *name == toolchain::HEADER_NAME {
                return Err(HostError::Invalid(format!(
                    "header name {name:?} must be a plain file name other than {} and {MAIN}",
                    toolchain::HEADER_NAME
                )));
            }
        }
        let runtime = toolchain::runtime(toolchain, cache)?;
        let text = format!("{source}\n{}", glue::generate(kernels));
        let mut all_headers = vec![(toolchain::HEADER_NAME, toolchain::HEADER)];
        all_headers.extend_from_slice(headers);
        let built = toolchain::BuildJob {
            what: "module",
            main_name: MAIN,
            main_text: &text,
            headers: all_headers,
            flags: toolchain.model_flags(),
            libs: &["-lm"],
        }
        .run(toolchain, cache)?;
        let lib = toolchain::open(&built.path)?;
        let load_error = |reason: String| HostError::Load {
            path: built.path.clone(),
            reason,
        };
        // SAFETY: the symbols have these types in netc_host.h and the glue.
        unsafe {
            let init: ModuleInit = *lib
                .get::<ModuleInit>(b"netc_host_module_init\0")
                .map_err(|e| load_error(e.to_string()))?;
            if init(runtime.api) != 0 {
                return Err(load_error("the object was built for another runtime ABI".to_string()));
            }
        }
        let mut loaded = Vec::with_capacity(kernels.len());
        for sig in kernels {
            let symbol = glue::entry_symbol(&sig.name);
            // SAFETY: as above.
            let entry: Entry = unsafe {
                *lib.get::<Entry>(symbol.as_bytes())
                    .map_err(|e| load_error(e.to_string()))?
            };
            loaded.push(Kernel {
                sig: sig.clone(),
                entry,
                max_threads: glue::launch_bounds(source, &sig.name),
            });
        }
        Ok(HostModule {
            kernels: loaded,
            path: built.path,
            cache_hit: built.cache_hit,
            compile_time: start.elapsed(),
            threads: runtime.threads,
            _lib: lib,
        })
    }

    /// Position of a kernel in the list given to `compile`.
    pub fn kernel_index(&self, name: &str) -> Option<usize> {
        self.kernels.iter().position(|k| k.sig.name == name)
    }

    /// Whether the object came from the disk cache.
    pub fn cache_hit(&self) -> bool {
        self.cache_hit
    }

    /// Time `compile` took, cache lookup and loading included.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Path of the loaded object (a cache entry when compiled with a cache).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// OS threads that run blocks, the launching one included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs kernel `index` over `grid` × `block` to completion.
    ///
    /// # Safety
    /// Every pointer argument must be valid for all the reads and writes the
    /// kernel makes through it, and no other thread may access that memory
    /// during the launch.
    pub unsafe fn launch(
        &self,
        index: usize,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[HostArg],
    ) -> Result<(), HostError> {
        let Some(kernel) = self.kernels.get(index) else {
            return Err(HostError::BadLaunch {
                kernel: format!("#{index}"),
                reason: format!("the module has {} kernels", self.kernels.len()),
            });
        };
        let name = &kernel.sig.name;
        let bad = |reason: String| HostError::BadLaunch {
            kernel: name.clone(),
            reason,
        };
        check_dims(grid, block, kernel.max_threads).map_err(bad)?;
        if args.len() != kernel.sig.params.len() {
            return Err(bad(format!(
                "{} arguments given, the kernel takes {}",
                args.len(),
                kernel.sig.params.len()
            )));
        }
        let mut slots = Vec::with_capacity(args.len());
        for (i, (param, arg)) in kernel.sig.params.iter().zip(args).enumerate() {
            let slot = match (param, *arg) {
                (HostParam::Ptr { .. }, HostArg::Ptr(ptr)) => Slot { ptr },
                (HostParam::Scalar(CType::F32), HostArg::F32(f32)) => Slot { f32 },
                (HostParam::Scalar(CType::F64), HostArg::F64(f64)) => Slot { f64 },
                (HostParam::Scalar(CType::I32), HostArg::I32(i32)) => Slot { i32 },
                (HostParam::Scalar(CType::I64), HostArg::I64(i64)) => Slot { i64 },
                (HostParam::Scalar(CType::U32), HostArg::U32(u32)) => Slot { u32 },
                (param, arg) => return Err(bad(format!("argument {i} is {arg:?}, the parameter is {param:?}"))),
            };
            slots.push(slot);
        }
        let ptrs: Vec<*mut c_void> = slots.iter_mut().map(|s| s as *mut Slot as *mut c_void).collect();
        let mut err: [c_char; 512] = [0; 512];
        // SAFETY: the arguments match the entry's parameter types (checked
        // above); the pointers' validity is the caller's promise.
        let rc = unsafe {
            (kernel.entry)(
                ptrs.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                err.as_mut_ptr(),
                err.len() as c_ulong,
            )
        };
        if rc == RC_OK {
            return Ok(());
        }
        // SAFETY: the runtime always NUL-terminates the message within `err`.
        let detail = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        let kernel = name.clone();
        Err(match rc {
            RC_DEADLOCK => HostError::Deadlock { kernel, detail },
            _ => HostError::Kernel { kernel, detail },
        })
    }
}

/// CUDA's launch limits, so that what runs here also launches on a GPU.
fn check_dims(grid: [u32; 3], block: [u32; 3], max_threads: Option<u32>) -> Result<(), String> {
    if grid.contains(&0) || block.contains(&0) {
        return Err(format!(
            "empty grid {grid:?} or block {block:?}: every dimension must be at least 1"
        ));
    }
    if grid[0] > i32::MAX as u32 || grid[1] > 65535 || grid[2] > 65535 {
        return Err(format!("grid {grid:?} exceeds CUDA's limits (2³¹-1, 65535, 65535)"));
    }
    if block[0] > 1024 || block[1] > 1024 || block[2] > 64 {
        return Err(format!("block {block:?} exceeds CUDA's limits (1024, 1024, 64)"));
    }
    let threads = block[0] * block[1] * block[2];
    let limit = max_threads.unwrap_or(1024).min(1024);
    if threads > limit {
        return Err(format!(
            "block {block:?} has {threads} threads, more than the kernel's limit of {limit}{}",
            if max_threads.is_some() {
                " (its __launch_bounds__)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_limits_follow_cuda() {
        assert!(check_dims([1, 1, 1], [1024, 1, 1], None).is_ok());
        assert!(check_dims([u32::MAX / 2, 65535, 65535], [32, 32, 1], None).is_ok());
        assert!(check_dims([0, 1, 1], [1, 1, 1], None).is_err());
        assert!(check_dims([1, 65536, 1], [1, 1, 1], None).is_err());
        assert!(check_dims([1, 1, 1], [1, 1, 65], None).is_err());
        assert!(check_dims([1, 1, 1], [64, 32, 1], None).is_err());
        assert!(check_dims([1, 1, 1], [256, 1, 1], Some(256)).is_ok());
        assert!(check_dims([1, 1, 1], [16, 32, 1], Some(256)).is_err());
    }
}
