//! A small safe layer over cudarc's driver API: one device, one stream, byte
//! buffers, modules from PTX or CUBIN, kernel launches.
//!
//! cudarc panics when `libcuda` is absent or lacks a symbol it needs, so the
//! library's presence is checked before the first driver call. Everything runs
//! on the context's default stream, in issue order; cudarc's cross-stream event
//! tracking is switched off because a single stream never needs it and it
//! costs two events per allocation.

use crate::device::nvrtc::Image;
use cudarc::driver::result::DriverError;
use cudarc::driver::sys::{CUevent_flags, CUfunction_attribute, CUresult};
use cudarc::driver::{self as cu, PushKernelArg};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver found (libcuda.so.1); kernels can only run on the host")]
    NoDriver,
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    #[error("CUDA device {ordinal} does not exist ({count} device(s) present)")]
    NoSuchOrdinal { ordinal: usize, count: usize },
    #[error("{op} failed: {code:?}")]
    Driver { op: &'static str, code: CUresult },
    #[error("kernel `{name}` is not in the loaded module")]
    NoSuchKernel { name: String },
    #[error("{0}")]
    Invalid(String),
}

/// Maps a cudarc error to ours. The code's enum name is printed rather than
/// `cuGetErrorString`'s text, which would be one more driver call that can fail.
fn driver(op: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |e| CudaError::Driver { op, code: e.0 }
}

/// Plain numeric types whose bytes can be copied to and from the device as they
/// are (no padding, every bit pattern valid).
pub trait Scalar: Copy + Default + private::Sealed + 'static {}

mod private {
    pub trait Sealed {}
}

macro_rules! scalars {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl Scalar for $t {}
    )*};
}
scalars!(u8, i32, u32, i64, u64, f32, f64);

fn as_bytes<T: Scalar>(data: &[T]) -> &[u8] {
    // SAFETY: `Scalar` types have no padding; any initialised value is valid bytes.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), std::mem::size_of_val(data)) }
}

fn as_bytes_mut<T: Scalar>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: as above, and every bit pattern is a valid `Scalar`, so writes
    // through the byte view cannot create an invalid value.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast(), std::mem::size_of_val(data)) }
}

pub struct CudaDevice {
    ctx: Arc<cu::CudaContext>,
    stream: Arc<cu::CudaStream>,
    name: String,
    compute_capability: (i32, i32),
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ctx.ordinal())
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

/// Device memory of a fixed byte length, zeroed when allocated.
pub struct DeviceBuffer {
    slice: cu::CudaSlice<u8>,
    len: usize,
}

impl DeviceBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A loaded module; kernels fetched from it keep it loaded.
pub struct CudaModule {
    module: Arc<cu::CudaModule>,
}

#[derive(Clone)]
pub struct Kernel {
    name: String,
    function: cu::CudaFunction,
}

/// What the driver reports for a loaded kernel (the device-side counterpart of
/// NVRTC's `KernelResources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAttributes {
    pub registers: i32,
    pub static_shared_bytes: i32,
    pub local_bytes: i32,
    pub max_threads_per_block: i32,
}

impl Kernel {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn attributes(&self) -> Result<KernelAttributes, CudaError> {
        let get = |attr: CUfunction_attribute, op| self.function.get_attribute(attr).map_err(driver(op));
        Ok(KernelAttributes {
            registers: get(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_NUM_REGS,
                "cuFuncGetAttribute(NUM_REGS)",
            )?,
            static_shared_bytes: get(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                "cuFuncGetAttribute(SHARED_SIZE_BYTES)",
            )?,
            local_bytes: get(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES,
                "cuFuncGetAttribute(LOCAL_SIZE_BYTES)",
            )?,
            max_threads_per_block: get(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
                "cuFuncGetAttribute(MAX_THREADS_PER_BLOCK)",
            )?,
        })
    }
}

impl CudaModule {
    pub fn kernel(&self, name: &str) -> Result<Kernel, CudaError> {
        if name.contains('\0') {
            return Err(CudaError::Invalid(format!("kernel name {name:?} contains a NUL byte")));
        }
        match self.module.load_function(name) {
            Ok(function) => Ok(Kernel {
                name: name.to_string(),
                function,
            }),
            Err(DriverError(CUresult::CUDA_ERROR_NOT_FOUND)) => Err(CudaError::NoSuchKernel { name: name.to_string() }),
            Err(e) => Err(driver("cuModuleGetFunction")(e)),
        }
    }
}

/// One kernel parameter, in the order of the kernel's signature. A buffer is
/// passed as its device pointer (`float*` and the like).
#[derive(Clone, Copy)]
pub enum KernelArg<'a> {
    Buffer(&'a DeviceBuffer),
    F32(f32),
    F64(f64),
    I32(i32),
    I64(i64),
    U32(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory (`extern __shared__`) per block.
    pub shared_bytes: u32,
}

/// Above this much dynamic shared memory a kernel must opt in explicitly.
const DEFAULT_DYNAMIC_SHARED_LIMIT: u32 = 48 * 1024;

impl CudaDevice {
    /// Number of CUDA devices; `Err(NoDriver)` without a driver.
    pub fn count() -> Result<usize, CudaError> {
        init_driver()?;
        let count = cu::result::device::get_count().map_err(driver("cuDeviceGetCount"))?;
        Ok(count.max(0) as usize)
    }

    pub fn new(ordinal: usize) -> Result<CudaDevice, CudaError> {
        let count = CudaDevice::count()?;
        if count == 0 {
            return Err(CudaError::NoDevice("the CUDA driver reports no device".to_string()));
        }
        if ordinal >= count {
            return Err(CudaError::NoSuchOrdinal { ordinal, count });
        }
        let ctx = cu::CudaContext::new(ordinal).map_err(driver("creating a CUDA context"))?;
        // SAFETY: no buffer exists yet, and everything is issued on one stream,
        // so there is no cross-stream use for the events to order.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(driver("cuDeviceGetName"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(driver("cuDeviceGetAttribute(COMPUTE_CAPABILITY)"))?;
        Ok(CudaDevice {
            ctx,
            stream,
            name,
            compute_capability,
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)`, e.g. `(9, 0)` for an H100/H200.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// `(free, total)` device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize), CudaError> {
        self.ctx.mem_get_info().map_err(driver("cuMemGetInfo"))
    }

    /// Loads PTX (JIT-compiled by the driver for this device) or a CUBIN.
    pub fn load_module(&self, image: &Image) -> Result<CudaModule, CudaError> {
        let bytes = match image {
            Image::Ptx(text) => {
                if text.contains('\0') {
                    return Err(CudaError::Invalid("PTX contains a NUL byte".to_string()));
                }
                // cuModuleLoadData reads PTX as a C string.
                let mut bytes = Vec::with_capacity(text.len() + 1);
                bytes.extend_from_slice(text.as_bytes());
                bytes.push(0);
                bytes
            }
            Image::Cubin(bytes) => bytes.clone(),
        };
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(bytes))
            .map_err(driver("cuModuleLoadData"))?;
        Ok(CudaModule { module })
    }

    /// A zeroed buffer of `bytes` bytes.
    pub fn alloc(&self, bytes: usize) -> Result<DeviceBuffer, CudaError> {
        // cuMemAlloc rejects zero bytes; an empty tensor still gets a valid pointer.
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(driver("cuMemAlloc"))?;
        Ok(DeviceBuffer { slice, len: bytes })
    }

    /// A new buffer holding `data`.
    pub fn upload<T: Scalar>(&self, data: &[T]) -> Result<DeviceBuffer, CudaError> {
        let mut buffer = self.alloc(std::mem::size_of_val(data))?;
        self.write(&mut buffer, data)?;
        Ok(buffer)
    }

    /// Overwrites the whole buffer; `data` must be exactly its size.
    pub fn write<T: Scalar>(&self, buffer: &mut DeviceBuffer, data: &[T]) -> Result<(), CudaError> {
        let bytes = as_bytes(data);
        if bytes.len() != buffer.len {
            return Err(CudaError::Invalid(format!(
                "writing {} bytes into a buffer of {} bytes",
                bytes.len(),
                buffer.len
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut view = buffer.slice.slice_mut(..bytes.len());
        self.stream
            .memcpy_htod(bytes, &mut view)
            .map_err(driver("cuMemcpyHtoD"))
    }

    /// The whole buffer as `T`s; its size must be a multiple of `T`'s.
    /// Waits for all work issued before it.
    pub fn read<T: Scalar>(&self, buffer: &DeviceBuffer) -> Result<Vec<T>, CudaError> {
        let size = std::mem::size_of::<T>();
        if buffer.len % size != 0 {
            return Err(CudaError::Invalid(format!(
                "reading a buffer of {} bytes as elements of {size} bytes",
                buffer.len
            )));
        }
        let mut out = vec![T::default(); buffer.len / size];
        if buffer.len > 0 {
            let view = buffer.slice.slice(..buffer.len);
            self.stream
                .memcpy_dtoh(&view, as_bytes_mut(&mut out))
                .map_err(driver("cuMemcpyDtoH"))?;
            self.synchronize()?;
        }
        Ok(out)
    }

    /// Copies all of `src` into `dst`; the sizes must match.
    pub fn copy(&self, src: &DeviceBuffer, dst: &mut DeviceBuffer) -> Result<(), CudaError> {
        if src.len != dst.len {
            return Err(CudaError::Invalid(format!(
                "copying a buffer of {} bytes into one of {} bytes",
                src.len, dst.len
            )));
        }
        if src.len == 0 {
            return Ok(());
        }
        let from = src.slice.slice(..src.len);
        let mut to = dst.slice.slice_mut(..dst.len);
        self.stream.memcpy_dtod(&from, &mut to).map_err(driver("cuMemcpyDtoD"))
    }

    pub fn zero(&self, buffer: &mut DeviceBuffer) -> Result<(), CudaError> {
        self.stream
            .memset_zeros(&mut buffer.slice)
            .map_err(driver("cuMemsetD8"))
    }

    /// Queues a launch; it runs asynchronously. Errors inside the kernel
    /// surface at the next synchronizing call.
    pub fn launch(&self, kernel: &Kernel, dims: LaunchDims, args: &[KernelArg<'_>]) -> Result<(), CudaError> {
        self.launch_inner(kernel, dims, args, false).map(|_| ())
    }

    /// Launches and waits; returns the kernel's time in milliseconds, measured
    /// with events around it on the stream.
    pub fn launch_timed(&self, kernel: &Kernel, dims: LaunchDims, args: &[KernelArg<'_>]) -> Result<f32, CudaError> {
        match self.launch_inner(kernel, dims, args, true)? {
            Some((start, end)) => start.elapsed_ms(&end).map_err(driver("cuEventElapsedTime")),
            None => Err(CudaError::Invalid("the driver recorded no timing events".to_string())),
        }
    }

    fn launch_inner(
        &self,
        kernel: &Kernel,
        dims: LaunchDims,
        args: &[KernelArg<'_>],
        timed: bool,
    ) -> Result<Option<(cu::CudaEvent, cu::CudaEvent)>, CudaError> {
        check_dims(&kernel.name, dims)?;
        if dims.shared_bytes > DEFAULT_DYNAMIC_SHARED_LIMIT {
            // cudarc does not make the context current for this call.
            self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
            kernel
                .function
                .set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dims.shared_bytes as i32,
                )
                .map_err(driver("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)"))?;
        }
        let mut builder = self.stream.launch_builder(&kernel.function);
        for arg in args {
            match arg {
                KernelArg::Buffer(buffer) => builder.arg(&buffer.slice),
                KernelArg::F32(v) => builder.arg(v),
                KernelArg::F64(v) => builder.arg(v),
                KernelArg::I32(v) => builder.arg(v),
                KernelArg::I64(v) => builder.arg(v),
                KernelArg::U32(v) => builder.arg(v),
            };
        }
        if timed {
            builder.record_kernel_launch(CUevent_flags::CU_EVENT_DEFAULT);
        }
        let config = cu::LaunchConfig {
            grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
            block_dim: (dims.block[0], dims.block[1], dims.block[2]),
            shared_mem_bytes: dims.shared_bytes,
        };
        // SAFETY: the argument list is built from the kernel's signature by
        // the caller (the code generator emits both); every buffer and scalar
        // it points to outlives the launch call, which copies the values.
        unsafe { builder.launch(config) }.map_err(driver("cuLaunchKernel"))
    }

    /// Waits for all queued work; reports errors from earlier asynchronous work.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver("cuStreamSynchronize"))?;
        self.ctx
            .check_err()
            .map_err(driver("an earlier asynchronous operation"))
    }
}

fn check_dims(name: &str, dims: LaunchDims) -> Result<(), CudaError> {
    if dims.grid.contains(&0) || dims.block.contains(&0) {
        return Err(CudaError::Invalid(format!(
            "launching `{name}` with an empty grid {:?} or block {:?}",
            dims.grid, dims.block
        )));
    }
    let threads: u64 = dims.block.iter().map(|&d| u64::from(d)).product();
    if threads > 1024 {
        return Err(CudaError::Invalid(format!(
            "launching `{name}` with {threads} threads per block (at most 1024)"
        )));
    }
    Ok(())
}

/// Initialises the driver if its library is present.
fn init_driver() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    match cu::result::init() {
        Ok(()) => Ok(()),
        Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => Err(CudaError::NoDevice(
            "the CUDA driver found no CUDA-capable device".to_string(),
        )),
        Err(e) => Err(driver("cuInit")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const CHILD_ENV: &str = "NETC_FAKE_CUDA_EXPECT";

    #[test]
    fn launch_dims_are_checked_before_the_driver_sees_them() {
        let dims = |grid, block| LaunchDims {
            grid,
            block,
            shared_bytes: 0,
        };
        assert!(check_dims("k", dims([1, 1, 1], [1024, 1, 1])).is_ok());
        assert!(check_dims("k", dims([0, 1, 1], [32, 1, 1])).is_err());
        assert!(check_dims("k", dims([1, 1, 1], [32, 0, 1])).is_err());
        let err = check_dims("k", dims([1, 1, 1], [32, 32, 2])).unwrap_err();
        assert!(err.to_string().contains("2048 threads"), "{err}");
    }

    #[test]
    fn scalar_bytes_round_trip() {
        let mut values = [1.5f32, -2.0];
        assert_eq!(
            as_bytes(&values),
            [&1.5f32.to_ne_bytes()[..], &(-2.0f32).to_ne_bytes()].concat()
        );
        as_bytes_mut(&mut values)[..4].copy_from_slice(&3.0f32.to_ne_bytes());
        assert_eq!(values, [3.0, -2.0]);
    }

    /// On a machine without libcuda (this project's build machines) the
    /// constructor must answer `NoDriver`; with a driver it must not panic.
    #[test]
    fn new_reports_a_missing_driver_as_an_error() {
        // SAFETY: only probes for the library.
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        match CudaDevice::new(0) {
            Err(CudaError::NoDriver) => assert!(!present),
            Err(e) => assert!(present, "driver absent but got {e}"),
            Ok(device) => assert!(present && !device.name().is_empty()),
        }
    }

    /// A fake `libcuda` whose `cuInit` fails with CUDA_ERROR_NO_DEVICE (or
    /// succeeds and reports zero devices) must give `NoDevice`, not a panic.
    /// Runs in a child process because the loader path and cudarc's
    /// once-loaded library are per process.
    #[test]
    fn a_driver_without_devices_is_a_no_device_error() {
        let Some(lib_dir) = build_fake_libcuda() else {
            return;
        };
        for mode in ["init_fails", "zero_devices"] {
            let exe = std::env::current_exe().unwrap();
            let output = Command::new(exe)
                .args([
                    "--exact",
                    "device::cuda::tests::fake_driver_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("LD_LIBRARY_PATH", &lib_dir)
                .env("FAKE_CUDA_MODE", mode)
                .env(CHILD_ENV, "NoDevice")
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(output.status.success(), "mode {mode}:\n{text}");
            assert!(text.contains("1 passed"), "mode {mode}: the child did not run:\n{text}");
            assert!(
                text.contains("fake driver gave: no CUDA device"),
                "mode {mode}:\n{text}"
            );
        }
    }

    /// Run only by `a_driver_without_devices_is_a_no_device_error`, in a
    /// process whose library path holds the fake driver.
    #[test]
    #[ignore = "helper process for a_driver_without_devices_is_a_no_device_error"]
    fn fake_driver_child() {
        let Ok(expected) = std::env::var(CHILD_ENV) else {
            panic!("run by a_driver_without_devices_is_a_no_device_error only");
        };
        let err = CudaDevice::new(0).unwrap_err();
        println!("fake driver gave: {err}");
        assert_eq!(expected, "NoDevice");
        assert!(matches!(err, CudaError::NoDevice(_)), "{err}");
    }

    fn build_fake_libcuda() -> Option<PathBuf> {
        let dir = std::env::temp_dir().join(format!("netc-fake-cuda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("fake_cuda.c");
        std::fs::write(
            &source,
            r#"#include <stdlib.h>
#include <string.h>
static int zero_devices(void) {
    const char *mode = getenv("FAKE_CUDA_MODE");
    return mode && strcmp(mode, "zero_devices") == 0;
}
int cuInit(unsigned flags) { (void)flags; return zero_devices() ? 0 : 100; }
int cuDeviceGetCount(int *count) { *count = 0; return 0; }
"#,
        )
        .unwrap();
        let lib = dir.join("libcuda.so.1");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(&lib)
            .arg(&source)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => {
                let message = format!("skipped: cannot build a fake libcuda with cc ({other:?})");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
                eprintln!("{message}");
                return None;
            }
        }
        // cudarc tries the unversioned name first; a real driver's
        // development symlink elsewhere on the path must not win.
        std::fs::copy(&lib, dir.join("libcuda.so")).unwrap();
        Some(dir.as_path().to_path_buf()).filter(|d| Path::exists(d))
    }
}
