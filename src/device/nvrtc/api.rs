//! The NVRTC C API: its functions resolved from the opened library, and one
//! program's create, compile, read and destroy.

use super::{Image, NvrtcError, Target, PROGRAM_NAME};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

const NVRTC_SUCCESS: c_int = 0;
const NVRTC_ERROR_COMPILATION: c_int = 6;

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
pub(super) struct Api {
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
    pub(super) version: (i32, i32),
    pub(super) path: PathBuf,
    pub(super) compilations: AtomicU64,
    // Last, and never used directly: it keeps the function pointers above valid.
    _library: libloading::Library,
}

impl Api {
    pub(super) fn new(library: libloading::Library, path: PathBuf) -> Result<Api, NvrtcError> {
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

    pub(super) fn run(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        target: Target,
        argv: &[String],
    ) -> Result<(Image, String), NvrtcError> {
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
            (self.create_program)(
                &mut raw,
                c_source.as_ptr(),
                c_name.as_ptr(),
                header_count,
                text_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            )
        };
        self.check("nvrtcCreateProgram", code, String::new())?;
        let program = ProgramGuard { api: self, raw };

        self.compilations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `program.raw` is a live program; the option array holds
        // `option_count` NUL-terminated strings that outlive the call.
        let code = unsafe { (self.compile_program)(program.raw, option_count, option_ptrs.as_ptr()) };
        let log = program.bytes(self.get_log_size, self.get_log, "nvrtcGetProgramLog")?;
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
        self.check("nvrtcCompileProgram", code, log.clone())?;

        let image = match target {
            Target::Ptx { .. } => {
                let ptx = program.bytes(self.get_ptx_size, self.get_ptx, "nvrtcGetPTX")?;
                Image::Ptx(String::from_utf8_lossy(trim_nul(&ptx)).into_owned())
            }
            Target::Cubin { .. } => {
                Image::Cubin(program.bytes(self.get_cubin_size, self.get_cubin, "nvrtcGetCUBIN")?)
            }
        };
        Ok((image, log))
    }
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

/// Destroys the program on every path out of [`Api::run`].
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
