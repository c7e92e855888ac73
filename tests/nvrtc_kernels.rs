//! Every generated kernel (forward, backward and optimizer; both
//! schedules) compiles under NVRTC to PTX for compute_80 and compute_90,
//! and to CUBIN for sm_90, where ptxas reports no spills.

mod common;

use common::nvrtc::nvrtc_or_skip;
use common::programs;
use netc::codegen::Target;
use netc::device::nvrtc::Target as Arch;
use netc::exec::NETC_CUH;

#[test]
fn every_kernel_compiles_without_spills() {
    let Some(nvrtc) = nvrtc_or_skip() else { return };
    let mut kernels = 0;
    for target in [Target::Gpu, Target::Cpu] {
        for (name, program) in programs::all(target) {
            let source = program.source();
            for arch in [
                Arch::Ptx { compute: 80 },
                Arch::Ptx { compute: 90 },
                Arch::Cubin { sm: 90 },
            ] {
                let compiled = nvrtc
                    .compile(&source, &[("netc.cuh", NETC_CUH)], arch, &[])
                    .unwrap_or_else(|e| panic!("{name} ({} schedule, {arch:?}): {e}\n{source}", target.name()));
                if let Arch::Cubin { .. } = arch {
                    assert_eq!(
                        compiled.resources.len(),
                        program.kernels.len(),
                        "{name}: ptxas reported every kernel"
                    );
                    for r in &compiled.resources {
                        assert!(r.registers > 0, "{name}: {} uses no registers?", r.name);
                        assert_eq!(
                            (r.spill_stores_bytes, r.spill_loads_bytes),
                            (0, 0),
                            "{name}: kernel {} spills",
                            r.name
                        );
                    }
                }
            }
            kernels += program.kernels.len();
        }
    }
    eprintln!("{kernels} kernels compiled for compute_80, compute_90 and sm_90");
}
