//! The system C++ compiler, the build of shared objects through the disk
//! cache, and the process-wide runtime object.

use super::HostError;
use crate::device::cache::DiskCache;
use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
use libloading::Library;
use std::ffi::{c_void, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

pub(super) const HEADER_NAME: &str = "netc_host.h";
pub(super) const HEADER: &str = include_str!("../../../runtime/netc_host.h");
const RUNTIME_SOURCE: &str = include_str!("../../../runtime/netc_host_rt.cpp");

/// Lines of the compiler log quoted in a compile error.
const LOG_HEAD_LINES: usize = 20;

/// A C++ compiler and what identifies its output: cache keys include both.
#[derive(Clone, Debug)]
pub struct HostToolchain {
    cxx: PathBuf,
    version: String,
    cpu: Option<String>,
}

impl HostToolchain {
    /// `$NETC_CXX`, else the first of `c++`, `g++`, `clang++` that runs.
    /// Remembered for the process once found.
    pub fn detect() -> Result<HostToolchain, HostError> {
        static FOUND: Mutex<Option<(Option<OsString>, HostToolchain)>> = Mutex::new(None);
        let wanted = std::env::var_os("NETC_CXX");
        let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((var, tc)) = found.as_ref() {
            if *var == wanted {
                return Ok(tc.clone());
            }
        }
        let tc = match &wanted {
            Some(cxx) => HostToolchain::with_compiler(cxx)?,
            None => ["c++", "g++", "clang++"]
                .iter()
                .find_map(|c| HostToolchain::with_compiler(c).ok())
                .ok_or_else(|| HostError::CompilerNotFound {
                    tried: "c++, g++, clang++".to_string(),
                })?,
        };
        *found = Some((wanted, tc.clone()));
        Ok(tc)
    }

    /// A given compiler (a path, or a name looked up in `PATH`).
    pub fn with_compiler(cxx: impl Into<PathBuf>) -> Result<HostToolchain, HostError> {
        let cxx = cxx.into();
        let not_found = || HostError::CompilerNotFound {
            tried: cxx.display().to_string(),
        };
        let out = Command::new(&cxx).arg("--version").output().map_err(|_| not_found())?;
        if !out.status.success() {
            return Err(not_found());
        }
        Ok(HostToolchain {
            version: String::from_utf8_lossy(&out.stdout).into_owned(),
            cpu: cpu_identity(),
            cxx,
        })
    }

    /// Flags for a model object. `-march=native` only where the CPU can be
    /// identified, since the CPU then becomes part of the cache key.
    pub(super) fn model_flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = [
            "-O3",
            "-std=c++17",
            "-fPIC",
            "-shared",
            "-Wno-unknown-pragmas",
            // CUDA sets no errno, and without errno sqrtf is one instruction.
            "-fno-math-errno",
            // CUDA contracts a*b+c into FMAs by default; ISO C++ mode would not.
            "-ffp-contract=fast",
            "-fvisibility=hidden",
            "-fno-exceptions",
            "-fno-rtti",
            // `#pragma omp simd` (NETC_SIMD_SUM) without the OpenMP runtime.
            "-fopenmp-simd",
        ]
        .map(String::from)
        .to_vec();
        if self.cpu.is_some() {
            flags.push("-march=native".to_string());
        }
        // No TLS descriptors (`-mtls-dialect=gnu2`), though they are faster:
        // once a process has loaded about ten models, glibc before 2.39 serves
        // their thread-locals through `_dl_tlsdesc_dynamic`, which clobbers
        // vector registers (glibc bug 31372) and corrupted launch arguments.
        // Extra flags, last so they win: `-g -O0` to debug a kernel, say.
        if let Ok(extra) = std::env::var("NETC_HOST_CXXFLAGS") {
            flags.extend(extra.split_whitespace().map(String::from));
        }
        flags
    }

    fn key_parts(&self) -> Vec<&[u8]> {
        vec![
            self.cxx.as_os_str().as_encoded_bytes(),
            self.version.as_bytes(),
            self.cpu.as_deref().unwrap_or("").as_bytes(),
        ]
    }
}

/// The lines of /proc/cpuinfo that decide what `-march=native` selects.
fn cpu_identity() -> Option<String> {
    static CPU: OnceLock<Option<String>> = OnceLock::new();
    CPU.get_or_init(|| {
        let info = fs::read_to_string("/proc/cpuinfo").ok()?;
        let first = info.split("\n\n").next()?;
        let keys = [
            "vendor_id",
            "cpu family",
            "model",
            "model name",
            "flags",
            "CPU implementer",
            "CPU architecture",
            "CPU variant",
            "CPU part",
            "Features",
        ];
        let id: Vec<&str> = first
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| keys.contains(&k.trim())))
            .collect();
        (!id.is_empty()).then(|| id.join("\n"))
    })
    .clone()
}

/// A folder under the system temp dir, removed on drop unless kept.
pub(super) struct BuildDir {
    path: PathBuf,
    keep: bool,
}

impl BuildDir {
    fn new(label: &str) -> Result<BuildDir, HostError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "netc-host-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).map_err(|e| io_error(format!("creating {}", path.display()), e))?;
        Ok(BuildDir { path, keep: false })
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn io_error(context: String, source: io::Error) -> HostError {
    HostError::Io { context, source }
}

/// What to compile into one shared object.
pub(super) struct BuildJob<'a> {
    /// Says what failed in a compile error ("runtime", "module").
    pub what: &'a str,
    pub main_name: &'a str,
    pub main_text: &'a str,
    /// Written next to the main file; found by `#include "name"`.
    pub headers: Vec<(&'a str, &'a str)>,
    pub flags: Vec<String>,
    /// Passed after the source file, for the linker.
    pub libs: &'a [&'a str],
}

pub(super) struct Built {
    pub path: PathBuf,
    pub cache_hit: bool,
    /// Holds an uncached object until it is loaded.
    pub _dir: Option<BuildDir>,
}

impl BuildJob<'_> {
    fn key(&self, tc: &HostToolchain) -> String {
        let mut parts: Vec<&[u8]> = vec![b"netc-host-object-v1", self.what.as_bytes()];
        parts.extend(tc.key_parts());
        parts.extend(self.flags.iter().map(|f| f.as_bytes()));
        parts.extend(self.libs.iter().map(|l| l.as_bytes()));
        parts.push(self.main_name.as_bytes());
        parts.push(self.main_text.as_bytes());
        for (name, text) in &self.headers {
            parts.push(name.as_bytes());
            parts.push(text.as_bytes());
        }
        DiskCache::key(&parts)
    }

    /// The object from the cache, else compiled (and stored when there is a cache).
    pub(super) fn run(&self, tc: &HostToolchain, cache: Option<&DiskCache>) -> Result<Built, HostError> {
        let key = self.key(tc);
        if let Some(path) = cache.and_then(|c| c.get_file(&key, "so")) {
            return Ok(Built {
                path,
                cache_hit: true,
                _dir: None,
            });
        }
        let mut dir = BuildDir::new(self.what)?;
        let write = |name: &str, text: &str| {
            let path = dir.path.join(name);
            fs::write(&path, text).map_err(|e| io_error(format!("writing {}", path.display()), e))
        };
        for (name, text) in &self.headers {
            write(name, text)?;
        }
        write(self.main_name, self.main_text)?;
        let object = dir.path.join("out.so");
        let output = Command::new(&tc.cxx)
            .args(&self.flags)
            .arg("-I")
            .arg(&dir.path)
            .arg("-o")
            .arg(&object)
            .arg(dir.path.join(self.main_name))
            .args(self.libs)
            .output()
            .map_err(|_| HostError::CompilerNotFound {
                tried: tc.cxx.display().to_string(),
            })?;
        if !output.status.success() {
            let mut log = String::from_utf8_lossy(&output.stderr).into_owned();
            log.push_str(&String::from_utf8_lossy(&output.stdout));
            let log_path = dir.path.join("compile.log");
            write("compile.log", &log)?;
            dir.keep = true;
            let log_head: Vec<&str> = log.lines().take(LOG_HEAD_LINES).collect();
            return Err(HostError::Compile {
                what: self.what.to_string(),
                source_path: dir.path.join(self.main_name),
                log_path,
                log_head: log_head.join("\n"),
            });
        }
        match cache {
            Some(cache) => {
                let path = cache
                    .put_file(&key, "so", &object)
                    .map_err(|e| io_error(format!("storing in the cache at {}", cache.dir().display()), e))?;
                Ok(Built {
                    path,
                    cache_hit: false,
                    _dir: None,
                })
            }
            None => Ok(Built {
                path: object,
                cache_hit: false,
                _dir: Some(dir),
            }),
        }
    }
}

/// Opens a shared object with every symbol bound now, so that a missing one
/// fails here rather than in the middle of a kernel.
pub(super) fn open(path: &Path) -> Result<Library, HostError> {
    // SAFETY: the objects netc loads are its own, built from the runtime and
    // model sources; their initialisers only set up the thread pool.
    let lib = unsafe { UnixLibrary::open(Some(path.as_os_str()), RTLD_NOW | RTLD_LOCAL) };
    lib.map(Library::from).map_err(|e| HostError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The loaded runtime object: thread pool and fibers, shared by all models.
pub(super) struct Runtime {
    pub api: *const c_void,
    pub threads: usize,
    _lib: Library,
}

// SAFETY: `api` points at an immutable table inside the runtime object, which
// is never unloaded; the runtime serialises launches internally.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

/// `NETC_THREADS` if set (a positive count), else the available cores.
pub(super) fn pool_threads(var: Option<&str>) -> Result<usize, HostError> {
    match var {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(n),
            _ => Err(HostError::Config {
                var: "NETC_THREADS",
                value: v.to_string(),
                reason: "expected a thread count from 1 to 4096",
            }),
        },
        None => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
    }
}

/// `NETC_HOST_FIBERS`: `asm` (the default on x86-64, a hand-written switch)
/// or `ucontext` (the portable fallback, forced for testing it).
fn fiber_flags(var: Option<&str>) -> Result<Vec<String>, HostError> {
    match var {
        None | Some("asm") => Ok(vec![]),
        Some("ucontext") => Ok(vec!["-DNETC_HOST_UCONTEXT".to_string()]),
        Some(v) => Err(HostError::Config {
            var: "NETC_HOST_FIBERS",
            value: v.to_string(),
            reason: "expected `asm` or `ucontext`",
        }),
    }
}

/// The process's runtime, built (or fetched from the cache) and loaded on
/// first use by whichever toolchain and cache come first. A failure is not
/// remembered, so a later call can succeed.
pub(super) fn runtime(tc: &HostToolchain, cache: Option<&DiskCache>) -> Result<&'static Runtime, HostError> {
    static RUNTIME: Mutex<Option<&'static Runtime>> = Mutex::new(None);
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(rt) = *slot {
        return Ok(rt);
    }
    let threads = pool_threads(std::env::var("NETC_THREADS").ok().as_deref())?;
    let mut flags: Vec<String> = [
        "-O2",
        "-std=c++17",
        "-fPIC",
        "-shared",
        "-pthread",
        "-fvisibility=hidden",
    ]
    .map(String::from)
    .to_vec();
    flags.extend(fiber_flags(std::env::var("NETC_HOST_FIBERS").ok().as_deref())?);
    let built = BuildJob {
        what: "runtime",
        main_name: "netc_host_rt.cpp",
        main_text: RUNTIME_SOURCE,
        headers: vec![(HEADER_NAME, HEADER)],
        flags,
        libs: &[],
    }
    .run(tc, cache)?;
    let lib = open(&built.path)?;
    type Init = unsafe extern "C" fn(u32) -> *const c_void;
    type Threads = unsafe extern "C" fn() -> u32;
    let load_error = |reason: String| HostError::Load {
        path: built.path.clone(),
        reason,
    };
    // SAFETY: the symbols have these types in netc_host_rt.cpp.
    let (api, actual) = unsafe {
        let init: Init = *lib
            .get::<Init>(b"netc_host_rt_init\0")
            .map_err(|e| load_error(e.to_string()))?;
        let count: Threads = *lib
            .get::<Threads>(b"netc_host_rt_threads\0")
            .map_err(|e| load_error(e.to_string()))?;
        let requested = u32::try_from(threads).unwrap_or(u32::MAX);
        (init(requested), count())
    };
    if api.is_null() {
        return Err(load_error("out of memory starting the thread pool".to_string()));
    }
    let rt: &'static Runtime = Box::leak(Box::new(Runtime {
        api,
        threads: actual as usize,
        _lib: lib,
    }));
    *slot = Some(rt);
    Ok(rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_parse_or_fail_cleanly() {
        assert_eq!(pool_threads(Some(" 3 ")).ok(), Some(3));
        assert!(pool_threads(None).is_ok_and(|n| n >= 1));
        for bad in ["0", "-1", "many", "5000", ""] {
            assert!(
                matches!(pool_threads(Some(bad)), Err(HostError::Config { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fiber_backends_are_named() {
        assert_eq!(fiber_flags(None).ok(), Some(vec![]));
        assert_eq!(
            fiber_flags(Some("ucontext")).ok(),
            Some(vec!["-DNETC_HOST_UCONTEXT".to_string()])
        );
        assert!(matches!(fiber_flags(Some("threads")), Err(HostError::Config { .. })));
    }
}
