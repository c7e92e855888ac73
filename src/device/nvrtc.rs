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

use crate::device::cache::DiskCache;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

const NVRTC_SUCCESS: c_int = 0;
const NVRTC_ERROR_COMPILATION: c_int = 6;

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

/// One kernel's line in ptxas's `-v` report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub barriers: u32,
    pub spill_stores_bytes: u64,
    pub spill_loads_bytes: u64,
    /// Static shared memory; dynamic shared memory is chosen at launch.
    pub shared_bytes: u64,
    pub stack_bytes: u64,
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

/// The PTX ISA version from a PTX file's `.version` directive.
pub fn ptx_isa_version(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx.lines().map(str::trim).find(|l| l.starts_with(".version"))?;
    let (major, minor) = line[".version".len()..].trim().split_once('.')?;
    Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
}

/// Parses ptxas's `-v` report as NVRTC puts it in the program log. Entries
/// follow ptxas's order (not source order); device functions that were not
/// inlined have properties lines too, but only entry functions are reported.
pub fn parse_ptxas_report(log: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    let mut current: Option<usize> = None;
    let mut properties_of_current = false;
    for line in log.lines() {
        if let Some(name) = quoted_after(line, "Compiling entry function '") {
            kernels.push(KernelResources {
                name: name.to_string(),
                ..KernelResources::default()
            });
            current = Some(kernels.len() - 1);
            properties_of_current = false;
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            properties_of_current = current.is_some_and(|i| kernels[i].name == rest.trim());
        } else if line.contains("bytes stack frame") {
            if let (true, Some(i)) = (properties_of_current, current) {
                let k = &mut kernels[i];
                k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_stores_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
            }
        } else if line.contains("Used ") && line.contains(" registers") {
            if let Some(i) = current {
                let k = &mut kernels[i];
                k.registers = number_before(line, "registers").unwrap_or(0) as u32;
                k.barriers = number_before(line, "barriers").unwrap_or(0) as u32;
                k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    kernels
}

fn quoted_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    let rest = &line[start..];
    Some(&rest[..rest.find('\'')?])
}

/// The integer just before `label`, as in `"... 24 registers"`.
fn number_before(line: &str, label: &str) -> Option<u64> {
    let head = line[..line.find(label)?].trim_end();
    head.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// One place to try to open NVRTC from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An absolute or relative file path, opened only if it exists.
    File(PathBuf),
    /// A bare name for the dynamic loader's own search (`LD_LIBRARY_PATH`, ld.so.cache).
    System(String),
}

fn location_name(location: &Location) -> String {
    match location {
        Location::File(path) => path.display().to_string(),
        Location::System(name) => name.clone(),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::System(name) => write!(f, "{name} (system library search)"),
        }
    }
}

/// The ordered list of places NVRTC is looked for; building it reads nothing
/// global, so the order can be tested.
#[derive(Clone, Debug)]
pub struct NvrtcSearch {
    locations: Vec<Location>,
}

impl NvrtcSearch {
    /// The search the process uses: `$NETC_NVRTC`, else this checkout's
    /// `.nvrtc/`, else a `.nvrtc/` next to or above the executable, else the
    /// system's library search.
    pub fn from_env() -> NvrtcSearch {
        let explicit = std::env::var_os("NETC_NVRTC");
        let exe = std::env::current_exe().ok();
        NvrtcSearch::new(
            explicit.as_deref(),
            Path::new(env!("CARGO_MANIFEST_DIR")),
            exe.as_deref(),
        )
    }

    /// `explicit` (a library file or a folder holding it) is the only place
    /// searched when set and non-empty: a user who names a library should get
    /// an error when it is not there, not a different NVRTC.
    pub fn new(explicit: Option<&OsStr>, checkout: &Path, exe: Option<&Path>) -> NvrtcSearch {
        if let Some(explicit) = explicit.filter(|e| !e.is_empty()) {
            let path = PathBuf::from(explicit);
            let file = if path.is_dir() { path.join(LIBRARY_FILE) } else { path };
            return NvrtcSearch {
                locations: vec![Location::File(file)],
            };
        }
        let mut locations = vec![Location::File(checkout.join(CHECKOUT_LIB_DIR).join(LIBRARY_FILE))];
        // A binary carried to another machine, or installed, finds a `.nvrtc/`
        // that travelled with it, or the library itself next to it.
        if let Some(exe_dir) = exe.and_then(Path::parent) {
            locations.push(Location::File(exe_dir.join(LIBRARY_FILE)));
            for dir in exe_dir.ancestors() {
                locations.push(Location::File(dir.join(CHECKOUT_LIB_DIR).join(LIBRARY_FILE)));
            }
        }
        // The pinned major version first, then cudarc's own list of names.
        let mut names = vec![LIBRARY_FILE.to_string()];
        names.extend(cudarc::get_lib_name_candidates("nvrtc"));
        locations.extend(names.into_iter().map(Location::System));
        let mut unique = Vec::with_capacity(locations.len());
        for location in locations {
            if !unique.contains(&location) {
                unique.push(location);
            }
        }
        NvrtcSearch { locations: unique }
    }

    pub fn locations(&self) -> &[Location] {
        &self.locations
    }
}

type Program = *mut c_void;
type GetErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type CreateProgramFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type DestroyProgramFn = unsafe extern "C" fn(*mut Program) -> c_int;
type CompileProgramFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type GetSizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetBytesFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;

/// The NVRTC functions netc calls, resolved from one library handle.
struct Api {
    get_error_string: GetErrorStringFn,
    create_program: CreateProgramFn,
    destroy_program: DestroyProgramFn,
    compile_program: CompileProgramFn,
    get_ptx_size: GetSizeFn,
    get_ptx: GetBytesFn,
    get_cubin_size: GetSizeFn,
    get_cubin: GetBytesFn,
    get_log_size: GetSizeFn,
    get_log: GetBytesFn,
    version: (i32, i32),
    path: PathBuf,
    compilations: AtomicU64,
    // Last, and never used directly: it keeps the function pointers above valid.
    _library: libloading::Library,
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
        let (image, log) = self.run(source, headers, target, &argv)?;
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

    fn run(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
        argv: &[String],
    ) -> Result<(Image, String), NvrtcError> {
        let api = &*self.api;
        let c_source = c_string(source, "source")?;
        let c_name = c_string(PROGRAM_NAME, "program name")?;
        let c_header_texts = headers
            .iter()
            .map(|(name, text)| c_string(text, &format!("header {name:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let c_header_names = headers
            .iter()
            .map(|(name, _)| c_string(name, "header name"))
            .collect::<Result<Vec<_>, _>>()?;
        let c_options = argv
            .iter()
            .map(|o| c_string(o, "option"))
            .collect::<Result<Vec<_>, _>>()?;
        let text_ptrs: Vec<*const c_char> = c_header_texts.iter().map(|c| c.as_ptr()).collect();
        let name_ptrs: Vec<*const c_char> = c_header_names.iter().map(|c| c.as_ptr()).collect();
        let option_ptrs: Vec<*const c_char> = c_options.iter().map(|c| c.as_ptr()).collect();
        let header_count = count(headers.len(), "headers")?;
        let option_count = count(argv.len(), "options")?;

        let mut raw: Program = std::ptr::null_mut();
        // SAFETY: every pointer refers to a NUL-terminated string (or an array
        // of them, `header_count` long) that outlives the call; NVRTC copies them.
        let code = unsafe {
            (api.create_program)(
                &mut raw,
                c_source.as_ptr(),
                c_name.as_ptr(),
                header_count,
                text_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            )
        };
        api.check("nvrtcCreateProgram", code, String::new())?;
        let program = ProgramGuard { api, raw };

        api.compilations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `program.raw` is a live program; the option array holds
        // `option_count` NUL-terminated strings that outlive the call.
        let code = unsafe { (api.compile_program)(program.raw, option_count, option_ptrs.as_ptr()) };
        let log = program.bytes(api.get_log_size, api.get_log, "nvrtcGetProgramLog")?;
        let log = String::from_utf8_lossy(trim_nul(&log)).into_owned();
        if code == NVRTC_ERROR_COMPILATION {
            return Err(NvrtcError::Compile {
                log,
                target,
                program: source.to_string(),
                headers: headers.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
                options: argv.to_vec(),
            });
        }
        api.check("nvrtcCompileProgram", code, log.clone())?;

        let image = match target {
            Target::Ptx { .. } => {
                let ptx = program.bytes(api.get_ptx_size, api.get_ptx, "nvrtcGetPTX")?;
                Image::Ptx(String::from_utf8_lossy(trim_nul(&ptx)).into_owned())
            }
            Target::Cubin { .. } => Image::Cubin(program.bytes(api.get_cubin_size, api.get_cubin, "nvrtcGetCUBIN")?),
        };
        Ok((image, log))
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

fn c_string(text: &str, what: &str) -> Result<CString, NvrtcError> {
    CString::new(text)
        .map_err(|e| NvrtcError::InvalidInput(format!("{what} contains a NUL byte at {}", e.nul_position())))
}

fn count(n: usize, what: &str) -> Result<c_int, NvrtcError> {
    c_int::try_from(n).map_err(|_| NvrtcError::InvalidInput(format!("too many {what}: {n}")))
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Destroys the program on every path out of [`Nvrtc::run`].
struct ProgramGuard<'a> {
    api: &'a Api,
    raw: Program,
}

impl ProgramGuard<'_> {
    fn bytes(&self, size_fn: GetSizeFn, get_fn: GetBytesFn, call: &'static str) -> Result<Vec<u8>, NvrtcError> {
        let mut size = 0usize;
        // SAFETY: `self.raw` is a live program and `size` a valid out-pointer.
        let code = unsafe { size_fn(self.raw, &mut size) };
        self.api.check(call, code, String::new())?;
        let mut buf = vec![0u8; size];
        if size > 0 {
            // SAFETY: `buf` has exactly the size NVRTC reported for this output.
            let code = unsafe { get_fn(self.raw, buf.as_mut_ptr().cast()) };
            self.api.check(call, code, String::new())?;
        }
        Ok(buf)
    }
}

impl Drop for ProgramGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from nvrtcCreateProgram and is destroyed only here.
        // A failure leaks the program; there is nothing better to do in a drop.
        unsafe {
            (self.api.destroy_program)(&mut self.raw);
        }
    }
}

impl Api {
    fn new(library: libloading::Library, path: PathBuf) -> Result<Api, NvrtcError> {
        let shown = path.display().to_string();
        let version: VersionFn = symbol(&library, &shown, "nvrtcVersion")?;
        let mut api = Api {
            get_error_string: symbol(&library, &shown, "nvrtcGetErrorString")?,
            create_program: symbol(&library, &shown, "nvrtcCreateProgram")?,
            destroy_program: symbol(&library, &shown, "nvrtcDestroyProgram")?,
            compile_program: symbol(&library, &shown, "nvrtcCompileProgram")?,
            get_ptx_size: symbol(&library, &shown, "nvrtcGetPTXSize")?,
            get_ptx: symbol(&library, &shown, "nvrtcGetPTX")?,
            get_cubin_size: symbol(&library, &shown, "nvrtcGetCUBINSize")?,
            get_cubin: symbol(&library, &shown, "nvrtcGetCUBIN")?,
            get_log_size: symbol(&library, &shown, "nvrtcGetProgramLogSize")?,
            get_log: symbol(&library, &shown, "nvrtcGetProgramLog")?,
            version: (0, 0),
            path,
            compilations: AtomicU64::new(0),
            _library: library,
        };
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        let code = unsafe { version(&mut major, &mut minor) };
        api.check("nvrtcVersion", code, String::new())?;
        api.version = (major, minor);
        Ok(api)
    }

    fn check(&self, call: &'static str, code: c_int, log: String) -> Result<(), NvrtcError> {
        if code == NVRTC_SUCCESS {
            return Ok(());
        }
        Err(NvrtcError::Api {
            call,
            code,
            message: self.error_string(code),
            log,
        })
    }

    fn error_string(&self, code: c_int) -> String {
        // SAFETY: nvrtcGetErrorString accepts any code and returns a static
        // string (or NULL, handled below).
        let text = unsafe { (self.get_error_string)(code) };
        if text.is_null() {
            return format!("unknown NVRTC error {code}");
        }
        // SAFETY: non-null, NUL-terminated, static storage owned by NVRTC.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

fn symbol<T: Copy>(library: &libloading::Library, path: &str, name: &'static str) -> Result<T, NvrtcError> {
    // SAFETY: `T` is the function-pointer type of NVRTC's documented C
    // signature for `name`; the pointer is used only while `library` lives
    // (both are kept together in `Api`).
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| NvrtcError::Symbol {
            path: path.to_string(),
            symbol: name,
            reason: e.to_string(),
        })
}

fn open_location(location: &Location) -> Result<(libloading::Library, PathBuf), String> {
    match location {
        Location::File(path) => {
            if !path.is_file() {
                return Err("no such file".to_string());
            }
            // dlopen treats a name with a slash as a path and one without as a
            // search name; keep a relative path a path.
            let path = if path.is_relative() {
                Path::new(".").join(path)
            } else {
                path.clone()
            };
            let name = path.to_str().ok_or_else(|| "path is not valid UTF-8".to_string())?;
            open_library(name).map(|lib| (lib, path.clone()))
        }
        Location::System(name) => open_library(name).map(|lib| (lib, PathBuf::from(name))),
    }
}

#[cfg(unix)]
fn open_library(name: &str) -> Result<libloading::Library, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading NVRTC runs its initialisers, which have no
    // preconditions; RTLD_NOW surfaces missing dependencies here rather than
    // at a later call, and RTLD_GLOBAL lets cudarc's by-name dlopen find it.
    unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) }
        .map(libloading::Library::from)
        .map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn open_library(name: &str) -> Result<libloading::Library, String> {
    // SAFETY: as above; the platform loader has no global/local distinction.
    unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'spill' for 'sm_90'
ptxas info    : Function properties for spill
ptxas         .     136 bytes stack frame, 168 bytes spill stores, 160 bytes spill loads
ptxas info    : Used 24 registers, used 0 barriers, 136 bytes cumulative stack size
ptxas info    : Compile time = 14.983 ms
ptxas info    : Function properties for helper
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function 'tile' for 'sm_80'
ptxas info    : Function properties for tile
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 14 registers, used 1 barriers, 1024 bytes smem, 360 bytes cmem[0]
";

    #[test]
    fn parses_the_ptxas_report_per_entry_function() {
        let kernels = parse_ptxas_report(REPORT);
        assert_eq!(
            kernels,
            vec![
                KernelResources {
                    name: "spill".into(),
                    registers: 24,
                    barriers: 0,
                    spill_stores_bytes: 168,
                    spill_loads_bytes: 160,
                    shared_bytes: 0,
                    stack_bytes: 136,
                },
                KernelResources {
                    name: "tile".into(),
                    registers: 14,
                    barriers: 1,
                    spill_stores_bytes: 0,
                    spill_loads_bytes: 0,
                    shared_bytes: 1024,
                    stack_bytes: 0,
                },
            ]
        );
    }

    #[test]
    fn reads_the_ptx_isa_version() {
        let ptx = "//\n// Generated by NVIDIA NVVM Compiler\n\n.version 8.8\n.target sm_90\n";
        assert_eq!(ptx_isa_version(ptx), Some((8, 8)));
        assert_eq!(ptx_isa_version(".target sm_90\n"), None);
    }

    #[test]
    fn an_explicit_library_is_the_only_place_searched() {
        let search = NvrtcSearch::new(
            Some(OsStr::new("/no/such/libnvrtc.so.12")),
            Path::new("/repo"),
            Some(Path::new("/repo/target/debug/netc")),
        );
        assert_eq!(search.locations(), [Location::File("/no/such/libnvrtc.so.12".into())]);
        let dir = std::env::temp_dir();
        let search = NvrtcSearch::new(Some(dir.as_os_str()), Path::new("/repo"), None);
        assert_eq!(search.locations(), [Location::File(dir.join(LIBRARY_FILE))]);
    }

    #[test]
    fn the_default_search_tries_the_checkout_then_the_executable_then_the_system() {
        let search = NvrtcSearch::new(
            Some(OsStr::new("")),
            Path::new("/repo"),
            Some(Path::new("/carried/bin/netc")),
        );
        let locations = search.locations();
        let lib = |dir: &str| Location::File(Path::new(dir).join(LIBRARY_FILE));
        assert_eq!(locations[0], lib("/repo/.nvrtc/nvidia/cuda_nvrtc/lib"));
        assert_eq!(locations[1], lib("/carried/bin"));
        assert_eq!(locations[2], lib("/carried/bin/.nvrtc/nvidia/cuda_nvrtc/lib"));
        assert_eq!(locations[3], lib("/carried/.nvrtc/nvidia/cuda_nvrtc/lib"));
        assert_eq!(locations[4], lib("/.nvrtc/nvidia/cuda_nvrtc/lib"));
        assert_eq!(locations[5], Location::System(LIBRARY_FILE.into()));
        assert!(locations[6..].contains(&Location::System("libnvrtc.so".into())));
        assert_eq!(
            locations
                .iter()
                .filter(|l| **l == Location::System(LIBRARY_FILE.into()))
                .count(),
            1
        );
    }

    #[test]
    fn a_missing_explicit_library_is_a_not_found_error_with_the_hint() {
        let search = NvrtcSearch::new(
            Some(OsStr::new("/no/such/dir/libnvrtc.so.12")),
            Path::new("/repo"),
            None,
        );
        let err = Nvrtc::load_from(&search).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NvrtcError::NotFound { .. }), "{text}");
        assert!(text.contains("/no/such/dir/libnvrtc.so.12: no such file"), "{text}");
        assert!(
            text.contains("scripts/setup.sh") && text.contains("NETC_NVRTC"),
            "{text}"
        );
    }

    #[test]
    fn a_library_without_nvrtc_symbols_is_rejected_without_panicking() {
        let search = NvrtcSearch {
            locations: vec![Location::System("libc.so.6".into())],
        };
        let err = Nvrtc::load_from(&search).unwrap_err();
        assert!(
            matches!(
                err,
                NvrtcError::Symbol {
                    symbol: "nvrtcVersion",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn saves_a_compile_failure_with_its_headers_and_log() {
        let dir = std::env::temp_dir().join(format!("netc-nvrtc-failure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = NvrtcError::Compile {
            log: "netc_kernels.cu(2): error: oops".into(),
            target: Target::Ptx { compute: 80 },
            program: "#include \"rt/netc.cuh\"\nbroken\n".into(),
            headers: vec![
                ("rt/netc.cuh".into(), "#pragma once\n".into()),
                ("../escape.h".into(), "x".into()),
            ],
            options: vec!["--std=c++17".into()],
        };
        let path = err.save_failure(&dir).unwrap().unwrap();
        assert_eq!(path.file_name(), Some(OsStr::new(PROGRAM_NAME)));
        let folder = path.parent().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#include \"rt/netc.cuh\"\nbroken\n"
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("rt/netc.cuh")).unwrap(),
            "#pragma once\n"
        );
        let log = std::fs::read_to_string(folder.join("nvrtc.log")).unwrap();
        assert!(log.contains("--std=c++17") && log.contains("error: oops"), "{log}");
        assert!(log.contains("../escape.h"), "{log}");
        assert!(!dir.join("escape.h").exists());
        let not_compile = NvrtcError::InvalidInput("x".into());
        assert_eq!(not_compile.save_failure(&dir).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
