//! Execution: a specialised graph compiled for a device, with its buffers.
//! `Executable` is what `netc eval`, `netc run` and the tests drive: write
//! the leaves, run every kernel in order, read any buffer back.

pub mod bind;

use crate::codegen::ctx::CodegenError;
use crate::codegen::kir::CTy;
use crate::codegen::{generate, Program, Target};
use crate::device::cache::DiskCache;
use crate::device::cpu::{CType, HostArg, HostError, HostKernelSig, HostModule, HostParam};
use crate::device::cuda::{self, CudaDevice, CudaError, DeviceBuffer, KernelArg, LaunchDims};
use crate::device::nvrtc::{Nvrtc, NvrtcError, Target as NvrtcTarget};
use crate::diag::SourceFile;
use crate::ir::{fmt_shape, Graph, NodeId};
use crate::passes::fusion::Fusion;
use crate::passes::plan::BufferPlan;
use crate::tensor::{DType, Tensor};
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Arc;

/// The runtime header every generated program includes.
pub const NETC_CUH: &str = include_str!("../../runtime/netc.cuh");

/// Where kernels run.
#[derive(Clone, Debug)]
pub enum Device {
    /// The host shim: the CUDA C compiled by the system C++ compiler.
    Cpu,
    Cuda(Arc<CudaDevice>),
}

/// `--device auto|cuda|cpu`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cuda,
    Cpu,
}

impl Device {
    /// Picks a device. `auto` falls back to the CPU, calling `notice` with a
    /// one-line reason; `cuda` without a usable GPU is an error.
    pub fn select(choice: DeviceChoice, notice: impl FnOnce(&str)) -> Result<Device, ExecError> {
        match choice {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => Ok(Device::Cuda(Arc::new(CudaDevice::new(0)?))),
            DeviceChoice::Auto => match CudaDevice::new(0) {
                Ok(d) => Ok(Device::Cuda(Arc::new(d))),
                Err(e) => {
                    notice(&format!("no usable CUDA GPU ({e}); running on the cpu device"));
                    Ok(Device::Cpu)
                }
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu (host shim)".into(),
            Device::Cuda(d) => {
                let (major, minor) = d.compute_capability();
                format!("cuda:{} ({}, sm_{major}{minor})", d.ordinal(), d.name())
            }
        }
    }

    /// The schedule this device runs best.
    pub fn default_target(&self) -> Target {
        match self {
            Device::Cpu => Target::Cpu,
            Device::Cuda(_) => Target::Gpu,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("host shim: {0}")]
    Host(#[from] HostError),
    #[error("NVRTC: {error}{}", saved.as_ref().map(|p| format!("\n  the failing source and log are saved in {}", p.display())).unwrap_or_default())]
    Nvrtc {
        error: Box<NvrtcError>,
        saved: Option<PathBuf>,
    },
    #[error("CUDA: {0}")]
    Cuda(#[from] CudaError),
    #[error("{what} `{name}` should be {expected}, got {got}")]
    Mismatch {
        what: &'static str,
        name: String,
        expected: String,
        got: String,
    },
    #[error("`{0}` is not stored in a buffer (it was fused into the kernels that use it)")]
    NotStored(String),
}

/// Compilation settings.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Compiled code is cached here; `None` compiles afresh (`--no-cache`).
    pub cache: Option<DiskCache>,
    /// Forces a schedule (tests run the GPU schedules on the host shim).
    pub target: Option<Target>,
    /// Lets kernel comments cite source lines.
    pub source: Option<SourceFile>,
}

enum Backend {
    Host {
        module: HostModule,
        buffers: Vec<Vec<u64>>,
    },
    Cuda {
        device: Arc<CudaDevice>,
        kernels: Vec<cuda::Kernel>,
        buffers: Vec<DeviceBuffer>,
    },
}

pub struct Executable {
    pub graph: Graph,
    pub fusion: Fusion,
    pub program: Program,
    pub plan: BufferPlan,
    backend: Backend,
    /// Seconds spent in each kernel over all runs, when profiling.
    pub profile: Option<Vec<f64>>,
}

impl Executable {
    /// Compiles a specialised graph so that every node in `required` ends
    /// up in a buffer.
    pub fn new(graph: Graph, required: &[NodeId], device: &Device, options: &Options) -> Result<Executable, ExecError> {
        let fusion = Fusion::new(&graph, required);
        let target = options.target.unwrap_or_else(|| device.default_target());
        let program = generate(&graph, &fusion, target, options.source.as_ref())?;
        let plan = BufferPlan::new(&graph, &fusion, &program.launches, required);
        let backend = match device {
            Device::Cpu => {
                let sigs: Vec<HostKernelSig> = program.kernels.iter().map(host_signature).collect();
                let module = HostModule::compile(
                    &program.source(),
                    &[("netc.cuh", NETC_CUH)],
                    &sigs,
                    options.cache.as_ref(),
                )?;
                let buffers = plan.slots.iter().map(|s| vec![0u64; s.bytes.div_ceil(8)]).collect();
                Backend::Host { module, buffers }
            }
            Device::Cuda(dev) => {
                let (major, minor) = dev.compute_capability();
                let nvrtc = Nvrtc::load().map_err(|error| ExecError::Nvrtc {
                    error: Box::new(error),
                    saved: None,
                })?;
                let source = program.source();
                let compiled = nvrtc
                    .compile_cached(
                        options.cache.as_ref(),
                        &source,
                        &[("netc.cuh", NETC_CUH)],
                        NvrtcTarget::cubin_for(major, minor),
                        &[],
                    )
                    .map_err(|error| {
                        let saved = error.save_failure(&std::env::temp_dir()).ok().flatten();
                        ExecError::Nvrtc {
                            error: Box::new(error),
                            saved,
                        }
                    })?;
                let module = dev.load_module(&compiled.image)?;
                let kernels = program
                    .kernels
                    .iter()
                    .map(|k| module.kernel(&k.name))
                    .collect::<Result<Vec<_>, _>>()?;
                let buffers = plan
                    .slots
                    .iter()
                    .map(|s| dev.alloc(s.bytes))
                    .collect::<Result<Vec<_>, _>>()?;
                Backend::Cuda {
                    device: dev.clone(),
                    kernels,
                    buffers,
                }
            }
        };
        let profile = std::env::var_os("NETC_PROFILE").map(|_| vec![0.0; program.kernels.len()]);
        Ok(Executable {
            graph,
            fusion,
            program,
            plan,
            backend,
            profile,
        })
    }

    fn slot(&self, node: NodeId) -> Result<usize, ExecError> {
        self.plan
            .slot_of
            .get(&node)
            .copied()
            .ok_or_else(|| ExecError::NotStored(self.graph.node(node).origin.name.clone()))
    }

    /// Copies a tensor into a node's buffer, converting floats to the node's dtype.
    pub fn write(&mut self, node: NodeId, t: &Tensor) -> Result<(), ExecError> {
        let ty = self.graph.ty(node);
        let name = self.graph.node(node).origin.name.clone();
        let dims = ty.dims().unwrap_or_default();
        if t.shape != dims {
            return Err(ExecError::Mismatch {
                what: "tensor",
                name,
                expected: fmt_shape(&ty.shape),
                got: format!("{:?}", t.shape),
            });
        }
        let converted = match (ty.dtype, t.dtype()) {
            (DType::F32, DType::F32 | DType::F64) => t.cast(DType::F32),
            (DType::I64, DType::I64) => t.clone(),
            (want, got) => {
                return Err(ExecError::Mismatch {
                    what: "tensor",
                    name,
                    expected: format!("dtype {want}"),
                    got: format!("dtype {got}"),
                });
            }
        };
        let bytes = converted.to_le_bytes();
        let slot = self.slot(node)?;
        match &mut self.backend {
            Backend::Host { buffers, .. } => {
                let dst = &mut buffers[slot];
                for (word, chunk) in dst.iter_mut().zip(bytes.chunks(8)) {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    *word = u64::from_le_bytes(w);
                }
            }
            Backend::Cuda { device, buffers, .. } => {
                let buf = &mut buffers[slot];
                let mut padded = bytes;
                padded.resize(buf.len(), 0);
                device.write(buf, &padded)?;
            }
        }
        Ok(())
    }

    /// A node's value, read back from its buffer.
    pub fn read(&self, node: NodeId) -> Result<Tensor, ExecError> {
        let ty = self.graph.ty(node);
        let dims = ty.dims().unwrap_or_default();
        let n: usize = dims.iter().product();
        let len = n * ty.dtype.size_bytes();
        let slot = self.slot(node)?;
        let bytes: Vec<u8> = match &self.backend {
            Backend::Host { buffers, .. } => buffers[slot].iter().flat_map(|w| w.to_le_bytes()).take(len).collect(),
            Backend::Cuda { device, buffers, .. } => {
                let mut b: Vec<u8> = device.read(&buffers[slot])?;
                b.truncate(len);
                b
            }
        };
        Tensor::from_le_bytes(ty.dtype, dims, &bytes)
            .ok_or_else(|| ExecError::NotStored(self.graph.node(node).origin.name.clone()))
    }

    /// Runs every kernel once, in order, and waits for them.
    pub fn run(&mut self) -> Result<(), ExecError> {
        match &mut self.backend {
            Backend::Host { module, buffers } => {
                let ptrs: Vec<*mut c_void> = buffers.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
                for (launch, kernel) in self.program.launches.iter().zip(&self.program.kernels) {
                    let args: Vec<HostArg> = launch
                        .buffers
                        .iter()
                        .map(|b| HostArg::Ptr(ptrs[self.plan.slot_of[b]]))
                        .collect();
                    let started = std::time::Instant::now();
                    // SAFETY: every buffer is sized by the plan for the node it
                    // holds, which is the extent the generated kernel indexes;
                    // nothing else touches the buffers during the launch.
                    unsafe { module.launch(launch.kernel, kernel.grid, kernel.block, &args)? };
                    if let Some(p) = self.profile.as_mut() {
                        p[launch.kernel] += started.elapsed().as_secs_f64();
                    }
                }
            }
            Backend::Cuda {
                device,
                kernels,
                buffers,
            } => {
                for (launch, kernel) in self.program.launches.iter().zip(&self.program.kernels) {
                    let args: Vec<KernelArg> = launch
                        .buffers
                        .iter()
                        .map(|b| KernelArg::Buffer(&buffers[self.plan.slot_of[b]]))
                        .collect();
                    let dims = LaunchDims {
                        grid: kernel.grid,
                        block: kernel.block,
                        shared_bytes: 0,
                    };
                    match self.profile.as_mut() {
                        // Timed launches wait for each kernel: profiling only.
                        Some(p) => {
                            p[launch.kernel] +=
                                f64::from(device.launch_timed(&kernels[launch.kernel], dims, &args)?) / 1e3
                        }
                        None => device.launch(&kernels[launch.kernel], dims, &args)?,
                    }
                }
                device.synchronize()?;
            }
        }
        Ok(())
    }

    /// Exchanges the buffers of two nodes: how a training step makes updated
    /// parameters current without copying them.
    pub fn swap(&mut self, a: NodeId, b: NodeId) -> Result<(), ExecError> {
        let (sa, sb) = (self.slot(a)?, self.slot(b)?);
        match &mut self.backend {
            Backend::Host { buffers, .. } => buffers.swap(sa, sb),
            Backend::Cuda { buffers, .. } => buffers.swap(sa, sb),
        }
        Ok(())
    }

    /// Starts recording the time of every kernel (also set by `NETC_PROFILE`).
    pub fn enable_profile(&mut self) {
        self.profile = Some(vec![0.0; self.program.kernels.len()]);
    }

    /// The kernels that took longest, with their share of the time, when profiling.
    pub fn profile_report(&self, top: usize) -> Option<String> {
        let p = self.profile.as_ref()?;
        let total: f64 = p.iter().sum::<f64>().max(1e-12);
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let lines: Vec<String> = order
            .iter()
            .take(top)
            .map(|&k| {
                format!(
                    "  {:>8.3} s {:>5.1}%  {}",
                    p[k],
                    100.0 * p[k] / total,
                    self.program.kernels[k].name
                )
            })
            .collect();
        Some(format!(
            "kernel time {total:.3} s over {} kernels:\n{}",
            p.len(),
            lines.join("\n")
        ))
    }

    /// Whether the host shim's object came from the cache (`None` on CUDA).
    pub fn host_cache_hit(&self) -> Option<bool> {
        match &self.backend {
            Backend::Host { module, .. } => Some(module.cache_hit()),
            Backend::Cuda { .. } => None,
        }
    }
}

fn host_signature(k: &crate::codegen::kir::Kernel) -> HostKernelSig {
    let params = k
        .params
        .iter()
        .map(|p| HostParam::Ptr {
            elem: match p.ty {
                CTy::F32 => CType::F32,
                CTy::F64 => CType::F64,
                CTy::I32 | CTy::Bool => CType::I32,
                CTy::I64 => CType::I64,
                CTy::U32 => CType::U32,
            },
            is_const: p.is_const,
        })
        .collect();
    HostKernelSig {
        name: k.name.clone(),
        params,
        cooperative: k.cooperative,
    }
}
