//! NVRTC end to end: PTX and CUBIN for the kinds of kernels netc generates,
//! the ptxas resource report, compile errors, the disk cache, and (only where
//! a GPU is present) running the kernels through the CUDA driver.

#[path = "common/nvrtc.rs"]
mod common_nvrtc;

use common_nvrtc::nvrtc_or_skip;
use netc::device::cache::DiskCache;
use netc::device::cuda::{CudaDevice, CudaError, KernelArg, LaunchDims};
use netc::device::nvrtc::{ptx_isa_version, Image, Nvrtc, NvrtcError, NvrtcSearch, Target};
use std::path::PathBuf;
use std::process::Command;

/// Stands in for the runtime header the code generator ships. Note there is no
/// `__device__` on `netc_relu`: NVRTC runs with `-default-device`.
const HEADER: &str = r#"#pragma once
#define NETC_INF __int_as_float(0x7f800000)
#define NETC_TILE 16
inline float netc_relu(float x) { return x > 0.0f ? x : 0.0f; }
"#;

const KERNELS: &str = r#"#include "netc.cuh"

extern "C" __global__ void netc_add_relu(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = netc_relu(a[i] + b[i]);
}

// C[m,n] = A[m,k] * B[k,n], row-major, one 16x16 tile of C per block.
extern "C" __global__ void netc_matmul(const float* A, const float* B, float* C, int m, int n, int k) {
    __shared__ float As[NETC_TILE][NETC_TILE];
    __shared__ float Bs[NETC_TILE][NETC_TILE];
    int row = blockIdx.y * NETC_TILE + threadIdx.y;
    int col = blockIdx.x * NETC_TILE + threadIdx.x;
    float acc = 0.0f;
    for (int t = 0; t < k; t += NETC_TILE) {
        As[threadIdx.y][threadIdx.x] = (row < m && t + threadIdx.x < k) ? A[row * k + t + threadIdx.x] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (col < n && t + threadIdx.y < k) ? B[(t + threadIdx.y) * n + col] : 0.0f;
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < NETC_TILE; ++i) acc += As[threadIdx.y][i] * Bs[i][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) C[row * n + col] = acc;
}

// One warp per row: out[r] = max over the row, combined with shuffles.
extern "C" __global__ void netc_row_max(const float* x, float* out, int rows, int cols) {
    int row = blockIdx.x;
    if (row >= rows) return;
    float best = -NETC_INF;
    for (int c = threadIdx.x; c < cols; c += 32) best = fmaxf(best, x[row * cols + c]);
    for (int offset = 16; offset > 0; offset /= 2)
        best = fmaxf(best, __shfl_down_sync(0xffffffffu, best, offset));
    if (threadIdx.x == 0) out[row] = best;
}
"#;

const KERNEL_NAMES: [&str; 3] = ["netc_add_relu", "netc_matmul", "netc_row_max"];

fn headers() -> [(&'static str, &'static str); 1] {
    [("netc.cuh", HEADER)]
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netc-nvrtc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn compiles_ptx_that_a_cuda_12_9_driver_accepts() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    assert_eq!(nvrtc.version().0, 12, "netc pins NVRTC 12.x: {nvrtc:?}");
    for compute in [80, 90] {
        let compiled = nvrtc
            .compile(KERNELS, &headers(), Target::Ptx { compute }, &[])
            .unwrap();
        let ptx = compiled.ptx().unwrap();
        assert!(ptx.contains(&format!(".target sm_{compute}")), "{ptx}");
        for name in KERNEL_NAMES {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
        }
        let isa = ptx_isa_version(ptx).unwrap();
        assert!(isa <= (8, 8), "PTX ISA {isa:?} is newer than CUDA 12.9 accepts");
        assert!(compiled.resources.is_empty());
        assert!(!compiled.from_cache);
    }
}

#[test]
fn cubin_comes_with_a_per_kernel_resource_report() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let compiled = nvrtc
        .compile(KERNELS, &headers(), Target::Cubin { sm: 90 }, &[])
        .unwrap();
    assert!(compiled.cubin().unwrap().starts_with(b"\x7fELF"));
    let mut names: Vec<&str> = compiled.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, KERNEL_NAMES, "log:\n{}", compiled.log);
    for r in &compiled.resources {
        assert!(r.registers > 0, "{r:?}");
        assert_eq!(
            (r.spill_stores_bytes, r.spill_loads_bytes, r.stack_bytes),
            (0, 0, 0),
            "{r:?}"
        );
    }
    let matmul = compiled.resources_of("netc_matmul").unwrap();
    assert_eq!(matmul.shared_bytes, 2 * 16 * 16 * 4);
    assert!(matmul.barriers >= 1, "{matmul:?}");
    assert_eq!(compiled.resources_of("netc_add_relu").unwrap().shared_bytes, 0);
}

#[test]
fn register_pressure_shows_up_as_spills() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let source = r#"extern "C" __global__ void netc_spill(float* io, int n) {
    float v[96];
    for (int i = 0; i < 96; ++i) v[i] = io[(i * 131 + threadIdx.x) % n];
    float s = 0.0f;
    for (int j = 0; j < 96; ++j) for (int i = 0; i < 96; ++i) s += v[i] * v[(i + j) % 96];
    io[threadIdx.x] = s;
}"#;
    let options = ["--maxrregcount=24".to_string()];
    let compiled = nvrtc.compile(source, &[], Target::Cubin { sm: 90 }, &options).unwrap();
    let r = compiled.resources_of("netc_spill").unwrap();
    assert!(r.registers <= 24, "{r:?}");
    assert!(r.stack_bytes > 0 || r.spill_stores_bytes > 0, "{r:?}\n{}", compiled.log);
}

#[test]
fn a_broken_kernel_is_a_compile_error_pointing_at_its_line() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let source = "#include \"netc.cuh\"\n\nextern \"C\" __global__ void netc_bad(float* o) {\n    o[0] = netc_undefined_thing;\n}\n";
    let err = nvrtc
        .compile(source, &headers(), Target::Ptx { compute: 80 }, &[])
        .unwrap_err();
    let NvrtcError::Compile { log, options, .. } = &err else {
        panic!("expected a compile error, got {err}");
    };
    assert!(log.contains("netc_kernels.cu(4): error"), "{log}");
    assert!(log.contains("netc_undefined_thing"), "{log}");
    assert!(options.iter().any(|o| o == "--gpu-architecture=compute_80"));

    let dir = temp_dir("failure");
    let saved = err.save_failure(&dir).unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), source);
    let folder = saved.parent().unwrap();
    assert_eq!(std::fs::read_to_string(folder.join("netc.cuh")).unwrap(), HEADER);
    assert!(std::fs::read_to_string(folder.join("nvrtc.log"))
        .unwrap()
        .contains("netc_kernels.cu(4): error"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_option_is_an_api_error_with_nvrtcs_reason() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let err = nvrtc
        .compile(KERNELS, &headers(), Target::Cubin { sm: 9999 }, &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            NvrtcError::Api {
                call: "nvrtcCompileProgram",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--gpu-architecture"), "{err}");
}

#[test]
fn the_cache_serves_identical_bytes_without_calling_nvrtc() {
    if nvrtc_or_skip().is_none() {
        return;
    }
    // A handle of its own, so compiles by tests running in parallel do not
    // move its counter.
    let nvrtc = Nvrtc::load_from(&NvrtcSearch::from_env()).unwrap();
    let dir = temp_dir("cache");
    let cache = DiskCache::new(&dir);
    let target = Target::Cubin { sm: 90 };

    let cold = nvrtc
        .compile_cached(Some(&cache), KERNELS, &headers(), target, &[])
        .unwrap();
    assert!(!cold.from_cache);
    assert_eq!(nvrtc.compilations(), 1);

    let warm = nvrtc
        .compile_cached(Some(&cache), KERNELS, &headers(), target, &[])
        .unwrap();
    assert!(warm.from_cache);
    assert_eq!(nvrtc.compilations(), 1, "a cache hit must not run NVRTC");
    assert_eq!(warm.image, cold.image);
    assert_eq!(warm.resources, cold.resources);
    assert_eq!(warm.log, cold.log);
    eprintln!(
        "3 kernels to {target}: NVRTC {:?}, cache hit {:?}",
        cold.elapsed, warm.elapsed
    );

    // Anything that changes the output changes the key.
    let other_header = [("netc.cuh", "#pragma once\n#define NETC_TILE 16\n#define NETC_INF __int_as_float(0x7f800000)\ninline float netc_relu(float x) { return fmaxf(x, 0.0f); }\n")];
    let variants = [
        nvrtc.compile_cached(Some(&cache), KERNELS, &other_header, target, &[]),
        nvrtc.compile_cached(Some(&cache), KERNELS, &headers(), target, &["-lineinfo".into()]),
        nvrtc.compile_cached(Some(&cache), KERNELS, &headers(), Target::Ptx { compute: 90 }, &[]),
    ];
    for v in variants {
        assert!(!v.unwrap().from_cache);
    }
    assert_eq!(nvrtc.compilations(), 4);

    // A damaged entry is rebuilt, not loaded.
    let key = nvrtc.cache_key(KERNELS, &headers(), target, &[]);
    let entry = cache.entry_path(&key, "cubin");
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&entry, bytes).unwrap();
    let rebuilt = nvrtc
        .compile_cached(Some(&cache), KERNELS, &headers(), target, &[])
        .unwrap();
    assert!(!rebuilt.from_cache);
    assert_eq!(nvrtc.compilations(), 5);
    assert_eq!(rebuilt.image, cold.image);
    assert!(
        nvrtc
            .compile_cached(Some(&cache), KERNELS, &headers(), target, &[])
            .unwrap()
            .from_cache
    );

    // Without a cache every call compiles.
    assert!(
        !nvrtc
            .compile_cached(None, KERNELS, &headers(), target, &[])
            .unwrap()
            .from_cache
    );
    assert_eq!(nvrtc.compilations(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

const CHILD_ENV: &str = "NETC_NVRTC_TEST_CHILD";

/// `NETC_NVRTC` pointing nowhere must give a not-found error naming the path
/// and the remedy. A child process, because `Nvrtc::load` reads the
/// environment once per process.
#[test]
fn a_bogus_netc_nvrtc_is_reported_not_replaced() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "bogus_netc_nvrtc_child", "--ignored", "--nocapture"])
        .env("NETC_NVRTC", "/nonexistent/netc-nvrtc")
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child did not run:\n{text}");
}

#[test]
#[ignore = "helper process for a_bogus_netc_nvrtc_is_reported_not_replaced"]
fn bogus_netc_nvrtc_child() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run by a_bogus_netc_nvrtc_is_reported_not_replaced only"
    );
    let err = Nvrtc::load().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NvrtcError::NotFound { .. }), "{text}");
    assert!(text.contains("/nonexistent/netc-nvrtc: no such file"), "{text}");
    assert!(
        text.contains("scripts/setup.sh") && text.contains("NETC_NVRTC"),
        "{text}"
    );
    // The failure is remembered, not retried with another library.
    assert!(Nvrtc::load().is_err());
}

/// Runs the three kernels on a GPU, from PTX and from CUBIN, against CPU
/// references. Skips (successfully) where no CUDA driver or device exists,
/// which is every build machine; it is the check to run on a GPU machine.
#[test]
fn runs_the_kernels_on_a_gpu_when_present() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let device = match CudaDevice::new(0) {
        Ok(device) => device,
        Err(e @ (CudaError::NoDriver | CudaError::NoDevice(_))) => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let (major, minor) = device.compute_capability();
    eprintln!("running on {} (sm_{major}{minor})", device.name());
    let targets = [
        Target::Ptx {
            compute: (major * 10 + minor).min(90) as u32,
        },
        Target::cubin_for(major, minor),
    ];
    for target in targets {
        let compiled = nvrtc.compile(KERNELS, &headers(), target, &[]).unwrap();
        let module = device.load_module(&compiled.image).unwrap();
        check_add_relu(&device, &module.kernel("netc_add_relu").unwrap());
        check_matmul(&device, &module.kernel("netc_matmul").unwrap());
        check_row_max(&device, &module.kernel("netc_row_max").unwrap());
        assert!(matches!(
            module.kernel("netc_missing"),
            Err(CudaError::NoSuchKernel { .. })
        ));
        if let Image::Cubin(_) = compiled.image {
            let attrs = module.kernel("netc_matmul").unwrap().attributes().unwrap();
            let report = compiled.resources_of("netc_matmul").unwrap();
            assert_eq!(attrs.registers as u32, report.registers);
            assert_eq!(attrs.static_shared_bytes as u64, report.shared_bytes);
        }
    }
}

fn check_add_relu(device: &CudaDevice, kernel: &netc::device::cuda::Kernel) {
    let n = 10_000usize;
    let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 0.5).collect();
    let da = device.upload(&a).unwrap();
    let db = device.upload(&b).unwrap();
    let out = device.alloc(n * 4).unwrap();
    let dims = LaunchDims {
        grid: [n.div_ceil(256) as u32, 1, 1],
        block: [256, 1, 1],
        shared_bytes: 0,
    };
    let ms = device
        .launch_timed(
            kernel,
            dims,
            &[
                KernelArg::Buffer(&da),
                KernelArg::Buffer(&db),
                KernelArg::Buffer(&out),
                KernelArg::I32(n as i32),
            ],
        )
        .unwrap();
    assert!(ms >= 0.0);
    let got: Vec<f32> = device.read(&out).unwrap();
    for i in 0..n {
        assert_eq!(got[i], (a[i] + b[i]).max(0.0), "at {i}");
    }
}

fn check_matmul(device: &CudaDevice, kernel: &netc::device::cuda::Kernel) {
    let (m, n, k) = (37usize, 45usize, 29usize);
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.25).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
    let (da, db) = (device.upload(&a).unwrap(), device.upload(&b).unwrap());
    let out = device.alloc(m * n * 4).unwrap();
    let dims = LaunchDims {
        grid: [n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1],
        block: [16, 16, 1],
        shared_bytes: 0,
    };
    device
        .launch(
            kernel,
            dims,
            &[
                KernelArg::Buffer(&da),
                KernelArg::Buffer(&db),
                KernelArg::Buffer(&out),
                KernelArg::I32(m as i32),
                KernelArg::I32(n as i32),
                KernelArg::I32(k as i32),
            ],
        )
        .unwrap();
    let got: Vec<f32> = device.read(&out).unwrap();
    for r in 0..m {
        for c in 0..n {
            let want: f32 = (0..k).map(|i| a[r * k + i] * b[i * n + c]).sum();
            assert!((got[r * n + c] - want).abs() < 1e-4, "at ({r},{c})");
        }
    }
}

fn check_row_max(device: &CudaDevice, kernel: &netc::device::cuda::Kernel) {
    let (rows, cols) = (19usize, 1000usize);
    let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1009) as f32 - 500.0).collect();
    let dx = device.upload(&x).unwrap();
    let out = device.alloc(rows * 4).unwrap();
    let dims = LaunchDims {
        grid: [rows as u32, 1, 1],
        block: [32, 1, 1],
        shared_bytes: 0,
    };
    device
        .launch(
            kernel,
            dims,
            &[
                KernelArg::Buffer(&dx),
                KernelArg::Buffer(&out),
                KernelArg::I32(rows as i32),
                KernelArg::I32(cols as i32),
            ],
        )
        .unwrap();
    let got: Vec<f32> = device.read(&out).unwrap();
    for r in 0..rows {
        let want = x[r * cols..(r + 1) * cols]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        assert_eq!(got[r], want, "row {r}");
    }
}
