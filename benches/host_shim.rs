//! Host shim timings: the kernels of tests/host_shim.rs at their reported
//! sizes, launch overhead, and the per-model compile, cold and cached.
//! `cargo bench --bench host_shim`; `NETC_THREADS` sets the pool size.

#[path = "../tests/host_shim/kernels.rs"]
mod kernels;

use criterion::{criterion_group, criterion_main, Criterion};
use kernels::*;
use netc::device::cache::DiskCache;
use netc::device::cpu::{HostArg, HostModule};
use std::ffi::c_void;
use std::time::Duration;

fn out<T>(v: &mut [T]) -> HostArg {
    HostArg::Ptr(v.as_mut_ptr() as *mut c_void)
}

fn inp<T>(v: &[T]) -> HostArg {
    HostArg::Ptr(v.as_ptr() as *mut c_void)
}

fn cache() -> DiskCache {
    DiskCache::new(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-shim-bench-cache"))
}

fn module(body: &str, sig: netc::device::cpu::HostKernelSig) -> HostModule {
    let source = format!("#include \"netc.cuh\"\n{body}");
    HostModule::compile(&source, &[("netc.cuh", NETC_CUH)], &[sig], Some(&cache())).unwrap_or_else(|e| panic!("{e}"))
}

fn max_error(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f32::max)
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_shim");
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    let mm = module(MATMUL, matmul_sig());
    let threads = mm.threads();
    let size = 256usize;
    let a = values(size * size, 1);
    let b = values(size * size, 2);
    let mut c_out = vec![0f32; size * size];
    let grid = [(size / 16) as u32, (size / 16) as u32, 1];
    let dims = HostArg::I32(size as i32);
    let run_mm = |c_out: &mut [f32]| unsafe {
        mm.launch(0, grid, [16, 16, 1], &[out(c_out), inp(&a), inp(&b), dims, dims, dims])
            .unwrap()
    };
    run_mm(&mut c_out);
    assert!(max_error(&c_out, &matmul_ref(&a, &b, size, size, size)) < 1e-5);
    g.bench_function(format!("matmul 256^3 cooperative, {threads} threads"), |bench| {
        bench.iter(|| run_mm(&mut c_out))
    });

    let sm = module(SOFTMAX, softmax_sig());
    let (rows, cols) = (256usize, 1000usize);
    let x = values(rows * cols, 3);
    let mut y = vec![0f32; rows * cols];
    let run_sm = |y: &mut [f32]| unsafe {
        sm.launch(
            0,
            [rows as u32, 1, 1],
            [256, 1, 1],
            &[out(y), inp(&x), HostArg::I32(cols as i32)],
        )
        .unwrap()
    };
    run_sm(&mut y);
    assert!(max_error(&y, &softmax_ref(&x, cols)) < 1e-5);
    g.bench_function(format!("softmax 256x1000 shuffles, {threads} threads"), |bench| {
        bench.iter(|| run_sm(&mut y))
    });

    let ew = module(ELEMENTWISE, elementwise_sig());
    let n = 10_000_000usize;
    let x = values(n, 4);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 1000).collect();
    let mut y = vec![0f32; n];
    let run_ew = |y: &mut [f32], n: usize| unsafe {
        ew.launch(
            0,
            [n.div_ceil(256) as u32, 1, 1],
            [256, 1, 1],
            &[out(y), inp(&x), inp(&labels), HostArg::I32(n as i32), HostArg::F32(1.5)],
        )
        .unwrap()
    };
    run_ew(&mut y, n);
    assert!(max_error(&y, &elementwise_ref(&x, &labels, 1.5)) < 1e-6);
    g.bench_function(format!("elementwise 10M barrier-free, {threads} threads"), |bench| {
        bench.iter(|| run_ew(&mut y, n))
    });
    // The same computation as a plain Rust loop on one thread, for scale.
    g.bench_function("elementwise 10M, plain Rust loop, 1 thread", |bench| {
        bench.iter(|| elementwise_ref(&x, &labels, 1.5))
    });
    // Small enough to run on the calling thread, and just big enough to wake the pool.
    g.bench_function("elementwise 1 element (launch overhead)", |bench| {
        bench.iter(|| run_ew(&mut y, 1))
    });
    g.bench_function("elementwise 65536 (pool wake-up)", |bench| {
        bench.iter(|| run_ew(&mut y, 65536))
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_shim_compile");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // A small model: three kernels, one of them cooperative.
    let source = format!("#include \"netc.cuh\"\n{ELEMENTWISE}\n{MATMUL}\n{SOFTMAX}");
    let sigs = [elementwise_sig(), matmul_sig(), softmax_sig()];
    let headers = [("netc.cuh", NETC_CUH)];
    let cache = cache();
    // Loads the runtime, so that only the model is timed below.
    HostModule::compile(&source, &headers, &sigs, Some(&cache)).unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("small model, cold (no cache)", |bench| {
        bench.iter(|| HostModule::compile(&source, &headers, &sigs, None).unwrap())
    });
    g.bench_function("small model, cached", |bench| {
        bench.iter(|| {
            let m = HostModule::compile(&source, &headers, &sigs, Some(&cache)).unwrap();
            assert!(m.cache_hit());
        })
    });
    g.finish();
}

criterion_group!(benches, kernels, compile);
criterion_main!(benches);
