//! Run-time compilation of CUDA C through NVRTC, to PTX or CUBIN.
//!
//! The library is opened by absolute path (see [`NvrtcSearch`]) and every NVRTC
//! function is resolved from that handle, not through cudarc's loader: cudarc
//! dlopens a fixed list of names starting with the unversioned `libnvrtc.so`,
//! so on a machine with a system CUDA it could silently compile with a
//! different NVRTC than the one found here, and it panics when a library or
//! symbol is missing. Return codes are read as plain integers for the same
//! reason: a newer NVRTC may return a code that cudarc's enum does not list.
//! The library is still opened `RTLD_GLOBAL`, so code that does go through
//! cudarc's `nvrtc` module finds this copy by its SONAME.
//!
//! Every compile gets `--std=c++17` and `-default-device` (functions without an
//! execution-space annotation are device functions, so generated helpers need
//! no `__device__`); CUBIN compiles also get `--ptxas-options=-v`, whose report
//! becomes [`KernelResources`]. Caller options come last, so they can override
//! these (NVRTC then warns in the log).

mod api;
mod report;
mod search;
#[cfg(test)]
mod tests;

pub use report::{parse_ptxas_report, ptx_isa_version, KernelResources};
pub use search::{Location, NvrtcSearch};

use crate::device::cache::DiskCache;
use api::Api;
use search::{location_name, open_location};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The file name the pinned NVRTC wheel installs, also the library's SONAME.
pub const LIBRARY_FILE: &str = "libnvrtc.so.12";

/// Where `scripts/setup.sh` installs the library, relative to the checkout.
pub const CHECKOUT_LIB_DIR: &str = ".nvrtc/nvidia/cuda_nvrtc/lib";

/// Where the same script puts `cuda_fp16.h`/`cuda_bf16.h`, relative to the checkout.
const CHECKOUT_INCLUDE_DIR: &str = ".nvrtc/nvidia/cuda_runtime/include";

/// The name NVRTC reports diagnostics against (`netc_kernels.cu(12): error: ...`);
/// [`NvrtcError::save_failure`] writes the source under the same name so the
/// line numbers in the log point into that file.
pub const PROGRAM_NAME: &str = "netc_kernels.cu";

const SETUP_HINT: &str = "run scripts/setup.sh, or set NETC_NVRTC to libnvrtc.so.12 or the folder that holds it";

/// Bumped whenever what a cache entry holds, or how it is keyed, changes.
const CACHE_FORMAT: &[u8] = b"netc-nvrtc-1";

#[derive(Clone, Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error("NVRTC ({LIBRARY_FILE}) not found; looked at:\n{}\n{SETUP_HINT}", list(.tried))]
    NotFound { tried: Vec<String> },
    #[error("{path} is not a usable NVRTC: missing symbol {symbol} ({reason}); {SETUP_HINT}")]
    Symbol {
        path: String,
        symbol: &'static str,
        reason: String,
    },
    #[error("{call} failed with NVRTC error {code} ({message}){}", detail(.log))]
    Api {
        call: &'static str,
        code: i32,
        message: String,
        log: String,
    },
    #[error("CUDA C compilation for {target} failed:\n{log}")]
    Compile {
        log: String,
        target: Target,
        /// The program's source text (named `source` would make it the error's cause).
        program: String,
        headers: Vec<(String, String)>,
        options: Vec<String>,
    },
    #[error("invalid NVRTC input: {0}")]
    InvalidInput(String),
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n")
}

fn detail(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", log.trim())
    }
}

impl NvrtcError {
    /// For a compile error, writes the failing program where a person can
    /// reproduce it: `DIR/nvrtc-failure-<hash>/netc_kernels.cu`, the in-memory
    /// headers next to it under their include names, and `nvrtc.log` with the
    /// target, the options and NVRTC's log. Returns the source file's path, or
    /// `None` for errors that are not compile errors.
    pub fn save_failure(&self, dir: &Path) -> io::Result<Option<PathBuf>> {
        let NvrtcError::Compile {
            log,
            target,
            program,
            headers,
            options,
        } = self
        else {
            return Ok(None);
        };
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let key = DiskCache::key(&[program.as_bytes(), log.as_bytes()]);
        let folder = dir.join(format!("nvrtc-failure-{}", &key[..12]));
        std::fs::create_dir_all(&folder)?;
        let mut notes = String::new();
        for (name, text) in &header_refs {
            match safe_relative(name) {
                Some(rel) => {
                    let path = folder.join(rel);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(path, text)?;
                }
                None => notes.push_str(&format!("# header {name:?} not written: unsafe name\n")),
            }
        }
        let source_path = folder.join(PROGRAM_NAME);
        std::fs::write(&source_path, program)?;
        let report = format!("# target: {target}\n# options: {}\n{notes}\n{log}", options.join(" "));
        std::fs::write(folder.join("nvrtc.log"), report)?;
        Ok(Some(source_path))
    }
}

/// A header name usable as a path under the failure folder: relative, no `..`.
fn safe_relative(name: &str) -> Option<&Path> {
    let path = Path::new(name);
    let ok = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(path)
}

/// What to compile to. PTX is JIT-compiled by the driver for whatever GPU loads
/// it (any GPU of that compute capability or newer); CUBIN is native code for
/// exactly one architecture and carries the ptxas resource report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Ptx { compute: u32 },
    Cubin { sm: u32 },
}

impl Target {
    /// Native code for a device of compute capability `major.minor`.
    pub fn cubin_for(major: i32, minor: i32) -> Target {
        Target::Cubin {
            sm: (major.max(0) * 10 + minor.max(0)) as u32,
        }
    }

    fn arch_option(self) -> String {
        match self {
            Target::Ptx { compute } => format!("--gpu-architecture=compute_{compute}"),
            Target::Cubin { sm } => format!("--gpu-architecture=sm_{sm}"),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Target::Ptx { .. } => "ptx",
            Target::Cubin { .. } => "cubin",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ptx { compute } => write!(f, "PTX compute_{compute}"),
            Target::Cubin { sm } => write!(f, "CUBIN sm_{sm}"),
        }
    }
}

/// A compiled program, ready for `cuModuleLoadData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// PTX text, without NVRTC's trailing NUL.
    Ptx(String),
    Cubin(Vec<u8>),
}

impl Image {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Image::Ptx(text) => text.as_bytes(),
            Image::Cubin(bytes) => bytes,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Compiled {
    pub target: Target,
    pub image: Image,
    /// NVRTC's program log: warnings, and for CUBIN the ptxas report.
    pub log: String,
    /// One entry per kernel (`__global__` function), CUBIN only.
    pub resources: Vec<KernelResources>,
    pub nvrtc_version: (i32, i32),
    /// True when the image came from the disk cache and NVRTC was not called.
    pub from_cache: bool,
    /// Time spent in NVRTC, or in reading the cache entry on a hit.
    pub elapsed: Duration,
}

impl Compiled {
    pub fn ptx(&self) -> Option<&str> {
        match &self.image {
            Image::Ptx(text) => Some(text),
            Image::Cubin(_) => None,
        }
    }

    pub fn cubin(&self) -> Option<&[u8]> {
        match &self.image {
            Image::Cubin(bytes) => Some(bytes),
            Image::Ptx(_) => None,
        }
    }

    pub fn resources_of(&self, kernel: &str) -> Option<&KernelResources> {
        self.resources.iter().find(|r| r.name == kernel)
    }
}

/// A loaded NVRTC. Cheap to clone; safe to use from several threads (NVRTC
/// compiles distinct programs concurrently).
#[derive(Clone)]
pub struct Nvrtc {
    api: Arc<Api>,
}

impl fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvrtc")
            .field("version", &self.api.version)
            .field("path", &self.api.path)
            .finish()
    }
}

impl Nvrtc {
    /// The process-wide NVRTC from [`NvrtcSearch::from_env`]; the search runs
    /// once, and its outcome (library or error) is reused by later calls.
    pub fn load() -> Result<Nvrtc, NvrtcError> {
        static DEFAULT: OnceLock<Result<Nvrtc, NvrtcError>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| Nvrtc::load_from(&NvrtcSearch::from_env()))
            .clone()
    }

    /// Opens the first location that exists and loads, uncached. A library
    /// that opens but lacks an NVRTC function is an error, not skipped.
    pub fn load_from(search: &NvrtcSearch) -> Result<Nvrtc, NvrtcError> {
        let mut tried = Vec::new();
        let mut system_names = Vec::new();
        for location in search.locations() {
            match open_location(location) {
                Ok((library, path)) => return Api::new(library, path).map(Nvrtc::from_api),
                Err(_) if matches!(location, Location::System(_)) => system_names.push(location_name(location)),
                Err(reason) => tried.push(format!("{location}: {reason}")),
            }
        }
        // The loader's message is the same for every name; one line says it.
        if !system_names.is_empty() {
            tried.push(format!(
                "the system library search (LD_LIBRARY_PATH, ld.so.cache) for {}: none could be opened",
                system_names.join(", ")
            ));
        }
        Err(NvrtcError::NotFound { tried })
    }

    fn from_api(api: Api) -> Nvrtc {
        Nvrtc { api: Arc::new(api) }
    }

    pub fn version(&self) -> (i32, i32) {
        self.api.version
    }

    /// The file the library was opened from (or the bare name the system search resolved).
    pub fn library_path(&self) -> &Path {
        &self.api.path
    }

    /// `cuda_fp16.h`/`cuda_bf16.h` live here when NVRTC came from a `.nvrtc/`
    /// install. NVRTC has no built-in headers; a program that includes these
    /// needs `-I<this>` in its options (which also keys the cache).
    pub fn cuda_include_dir(&self) -> Option<PathBuf> {
        let lib_dir = self.api.path.parent()?;
        // .../nvidia/cuda_nvrtc/lib -> .../nvidia/cuda_runtime/include
        let nvidia = lib_dir.parent()?.parent()?;
        let dir = nvidia.join("cuda_runtime").join("include");
        if dir.join("cuda_fp16.h").is_file() {
            return Some(dir);
        }
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKOUT_INCLUDE_DIR);
        checkout.join("cuda_fp16.h").is_file().then_some(checkout)
    }

    /// How many times this handle (and its clones) has run NVRTC's compiler.
    pub fn compilations(&self) -> u64 {
        self.api.compilations.load(Ordering::Relaxed)
    }

    /// The full option list a compile passes to NVRTC, caller options last.
    pub fn options_for(target: Target, options: &[String]) -> Vec<String> {
        let mut all = vec![
            target.arch_option(),
            "--std=c++17".to_string(),
            "-default-device".to_string(),
        ];
        if matches!(target, Target::Cubin { .. }) {
            all.push("--ptxas-options=-v".to_string());
        }
        all.extend(options.iter().cloned());
        all
    }

    /// Compiles one program. `headers` are `(include name, text)` pairs served
    /// to `#include "name"` from memory. A source error is
    /// [`NvrtcError::Compile`] carrying NVRTC's log.
    pub fn compile(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
        options: &[String],
    ) -> Result<Compiled, NvrtcError> {
        let start = Instant::now();
        let argv = Nvrtc::options_for(target, options);
        let (image, log) = self.api.run(source, headers, target, &argv)?;
        Ok(Compiled {
            target,
            resources: parse_resources(target, &log),
            image,
            log,
            nvrtc_version: self.version(),
            from_cache: false,
            elapsed: start.elapsed(),
        })
    }

    /// [`Nvrtc::compile`] through the disk cache. The key covers the source,
    /// the headers, the full option list, the target and the NVRTC version; a
    /// hit does not call NVRTC. A corrupt entry is dropped by the cache and
    /// rebuilt. Failing to write the cache does not fail the compile.
    pub fn compile_cached(
        &self,
        cache: Option<&DiskCache>,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
        options: &[String],
    ) -> Result<Compiled, NvrtcError> {
        let Some(cache) = cache else {
            return self.compile(source, headers, target, options);
        };
        let start = Instant::now();
        let key = self.cache_key(source, headers, target, options);
        let ext = target.extension();
        if let Some(image) = read_cached(cache, &key, target) {
            // The log is written before the image, so an intact image with a
            // missing log means the log alone was damaged: recompile.
            if let Some(log) = cache.get(&key, "log") {
                let log = String::from_utf8_lossy(&log).into_owned();
                return Ok(Compiled {
                    target,
                    resources: parse_resources(target, &log),
                    image,
                    log,
                    nvrtc_version: self.version(),
                    from_cache: true,
                    elapsed: start.elapsed(),
                });
            }
        }
        let compiled = self.compile(source, headers, target, options)?;
        if cache.put(&key, "log", compiled.log.as_bytes()).is_ok() {
            let _ = cache.put(&key, ext, compiled.image.bytes());
        }
        Ok(compiled)
    }

    /// The cache key [`Nvrtc::compile_cached`] uses.
    pub fn cache_key(&self, source: &str, headers: &[(&str, &str)], target: Target, options: &[String]) -> String {
        let (major, minor) = self.version();
        let version = format!("{major}.{minor}");
        let target_tag = target.to_string();
        let argv = Nvrtc::options_for(target, options);
        let header_count = headers.len().to_le_bytes();
        let option_count = argv.len().to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![
            CACHE_FORMAT,
            version.as_bytes(),
            target_tag.as_bytes(),
            source.as_bytes(),
            &header_count,
        ];
        for (name, text) in headers {
            parts.push(name.as_bytes());
            parts.push(text.as_bytes());
        }
        parts.push(&option_count);
        parts.extend(argv.iter().map(|o| o.as_bytes()));
        DiskCache::key(&parts)
    }
}

fn parse_resources(target: Target, log: &str) -> Vec<KernelResources> {
    match target {
        Target::Cubin { .. } => parse_ptxas_report(log),
        Target::Ptx { .. } => Vec::new(),
    }
}

fn read_cached(cache: &DiskCache, key: &str, target: Target) -> Option<Image> {
    let bytes = cache.get(key, target.extension())?;
    Some(match target {
        Target::Ptx { .. } => Image::Ptx(String::from_utf8(bytes).ok()?),
        Target::Cubin { .. } => Image::Cubin(bytes),
    })
}
