//! Where kernels run: NVRTC and the CUDA driver, or the host shim on the CPU.

pub mod cache;
pub mod cpu;
pub mod cuda;
pub mod nvrtc;
