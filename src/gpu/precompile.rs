//! Compiling a step's pipelines in parallel on drivers that compile at first dispatch.
//!
//! Mesa's lavapipe (llvmpipe) turns a compute pipeline into machine code with LLVM only when it
//! is first dispatched, on the queue's single thread: from 0.03 s for an element-wise kernel to
//! several seconds for a convolution with a large register tile on this project's 2-core
//! machine, so a cold first step compiled its 27–40 pipelines one after another on one core
//! (W1: 14.9 s, against 8.7–9.2 s precompiled on two).
//! Two facts make that parallel: a dispatch of zero workgroups compiles the pipeline just the
//! same, and llvmpipe keeps what it compiled in Mesa's on-disk shader cache, which every device
//! of the machine reads (this process's included). So [`Gpu::precompile`] opens a few more
//! devices on the same adapter, one per core, and each compiles a share of the pipelines with
//! empty dispatches on its own queue thread; the step's device then finds every one in the cache.
//! When the cache already has them this costs a few milliseconds per pipeline.
//!
//! Nothing here affects results: the extra devices run no work and share no memory with the
//! step's device. Any failure just leaves the compilation to the first step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Dispatch, EntryPoint, Gpu, Kernel};

/// How far a [`Gpu::precompile`] has got, for a progress display (see [`Gpu::on_precompile`]).
/// Reported once before the first pipeline (`done` 0), after each one, and once more at the end
/// (`finished`). Reports come from the compiling threads, so a hook must be thread-safe.
#[derive(Clone, Debug)]
pub struct PrecompileProgress {
    /// Pipelines in this batch.
    pub total: usize,
    /// Pipelines dealt with so far (compiled, or left to the step's device).
    pub done: usize,
    /// Seconds since this batch began.
    pub elapsed: f64,
    /// Whether this is the last report of the batch.
    pub finished: bool,
}

/// A hook given [`PrecompileProgress`] reports.
pub type PrecompileHook = Arc<dyn Fn(&PrecompileProgress) + Send + Sync>;

/// What another device needs to build the same pipeline as a [`Dispatch`]: the entry point and
/// constants, and the bindings' shape (a uniform block of `params_len` bytes at 0 when non-zero,
/// then `storage` storage buffers at 1, 2, …).
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    pub kernel: Kernel,
    pub constants: Vec<(String, f64)>,
    pub params_len: usize,
    pub storage: usize,
}

impl PipelineSpec {
    /// `shader::entry NAME=value …`
    pub fn label(&self) -> String {
        let c: Vec<String> = self.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {}", self.kernel.label(), c.join(" ")).trim_end().to_string()
    }

    /// A rough relative compile time: LLVM's time grows with the register tile (TM × TN
    /// accumulators per invocation) of the convolution kernels (1 to 6 s each on lavapipe);
    /// the GEMM, whose accumulators are separate variables, compiles in under a second whatever
    /// its tile (0.6-0.8 s on a busy host, its `_c4` entries included since their store loop is
    /// kept rolled), and everything else is small. (Sorting by this puts the slow ones first; on
    /// W1 the schedule it gives ends within 6% of the total compile time over two cores.)
    pub fn compile_cost(&self) -> f64 {
        let get = |k: &str| self.constants.iter().find(|(n, _)| n == k).map(|c| c.1);
        match (get("TM"), get("TN")) {
            (Some(_), Some(_)) if matches!(self.kernel.entry(), EntryPoint::Gemm(_)) => 1.0,
            (Some(m), Some(n)) => 1.0 + m * n / 8.0,
            _ => 1.0,
        }
    }
}

/// Bytes of each stand-in storage buffer: more than any binding's minimum size in `shaders/`.
const DUMMY_BYTES: u64 = 4096;

impl Gpu {
    /// Whether the driver compiles pipelines with LLVM at their first dispatch, on one thread,
    /// into Mesa's disk cache: lavapipe (llvmpipe).
    pub fn compiles_at_first_dispatch(&self) -> bool {
        let name = format!("{} {}", self.info.name, self.info.driver).to_ascii_lowercase();
        self.info.backend == wgpu::Backend::Vulkan
            && self.info.device_type == wgpu::DeviceType::Cpu
            && name.contains("llvmpipe")
    }

    /// Whether [`Gpu::precompile`] does anything: on lavapipe, unless Mesa's disk cache is off
    /// (`MESA_SHADER_CACHE_DISABLE`) or `TAILOR_PRECOMPILE=off`.
    pub fn precompile_enabled(&self) -> bool {
        let env = |k: &str, values: &[&str]| {
            std::env::var(k).is_ok_and(|v| values.contains(&v.trim().to_ascii_lowercase().as_str()))
        };
        self.compiles_at_first_dispatch()
            && !env("MESA_SHADER_CACHE_DISABLE", &["1", "true", "yes"])
            && !env("TAILOR_PRECOMPILE", &["0", "off", "false", "no"])
            && mesa_cache_writable()
    }

    /// Compiles the pipelines of `dispatches` on extra devices in parallel (see the module
    /// docs) when [`Gpu::precompile_enabled`]; returns how many it compiled.
    pub fn precompile<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> usize {
        if !self.precompile_enabled() {
            return 0;
        }
        let mut specs: Vec<&PipelineSpec> = Vec::new();
        for d in dispatches {
            if !specs.contains(&&*d.spec) {
                specs.push(&d.spec);
            }
        }
        self.precompile_specs(&specs)
    }

    /// Has `hook` told how each later [`Gpu::precompile`] is getting on (replacing any earlier
    /// hook): on lavapipe a cold start compiles for seconds to tens of seconds, which an app or
    /// the CLI can show as progress. Nothing is reported where nothing is precompiled.
    pub fn on_precompile(&self, hook: impl Fn(&PrecompileProgress) + Send + Sync + 'static) {
        *self.precompile_hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// [`Gpu::precompile`] for pipelines given by their specs (whatever the driver).
    pub fn precompile_specs(&self, specs: &[&PipelineSpec]) -> usize {
        if specs.is_empty() {
            return 0;
        }
        // Longest first, so that the biggest kernels (seconds each) do not start last.
        let mut specs = specs.to_vec();
        specs.sort_by(|a, b| b.compile_cost().total_cmp(&a.compile_cost()));
        let want = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(specs.len());
        // The extra devices are opened once and kept: the tuner precompiles its candidates too.
        let mut workers = self.precompilers.lock().unwrap_or_else(|e| e.into_inner());
        while workers.len() < want {
            match Worker::open(self) {
                Some(w) => workers.push(w),
                None => break,
            }
        }
        let log = std::env::var("TAILOR_PRECOMPILE_LOG").is_ok_and(|v| !matches!(v.trim(), "" | "0"));
        let hook = self.precompile_hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let start = std::time::Instant::now();
        let handled = AtomicUsize::new(0);
        let report = |done: usize, finished: bool| {
            if let Some(h) = &hook {
                h(&PrecompileProgress { total: specs.len(), done, elapsed: start.elapsed().as_secs_f64(), finished });
            }
        };
        report(0, false);
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for w in workers.iter_mut().take(want) {
                let (next, done, specs, handled, report) = (&next, &done, &specs, &handled, &report);
                scope.spawn(move || {
                    // Each worker takes the next pipeline not yet taken, so slow ones balance out.
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(spec) = specs.get(i) else { break };
                        let t = std::time::Instant::now();
                        let compiled = w.compile(spec);
                        report(handled.fetch_add(1, Ordering::Relaxed) + 1, false);
                        match compiled {
                            None => break,
                            Some(false) => continue,
                            Some(true) if log => {
                                let secs = t.elapsed().as_secs_f64();
                                eprintln!("precompiled {} in {secs:.2} s", spec.label());
                            }
                            Some(true) => {}
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        report(handled.into_inner(), true);
        done.into_inner()
    }
}

/// Whether Mesa can keep compiled shaders on disk (its cache folder exists or can be created,
/// and takes files): without that, precompiling would only compile everything twice.
fn mesa_cache_writable() -> bool {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    let dir = match (var("MESA_SHADER_CACHE_DIR"), var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(d), _, _) => d,
        (None, Some(x), _) => x,
        (None, None, Some(h)) => h.join(".cache"),
        _ => return false,
    };
    let probe = dir.join(format!(".tailor-probe-{}", std::process::id()));
    let ok = std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A device of its own, used only to compile.
pub(super) struct Worker {
    device: wgpu::Device,
    queue: wgpu::Queue,
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    uniform: wgpu::Buffer,
    storage: Vec<wgpu::Buffer>,
}

impl Worker {
    fn open(gpu: &Gpu) -> Option<Worker> {
        let (device, queue) = gpu.request_device("tailor precompile").ok()?;
        // Never panic on a stray error: a failed compile here only means the step compiles it.
        device.on_uncaptured_error(Arc::new(|_| {}));
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("precompile stand-in"),
                size: DUMMY_BYTES,
                usage,
                mapped_at_creation: false,
            })
        };
        let uniform = buffer(wgpu::BufferUsages::UNIFORM);
        let storage = (0..16).map(|_| buffer(wgpu::BufferUsages::STORAGE)).collect();
        Some(Worker { device, queue, modules: Default::default(), uniform, storage })
    }

    /// Builds `spec`'s pipeline exactly as [`Gpu::pipeline`] does (so the driver's cache key is
    /// the same) and dispatches it over zero workgroups: Some(true) when done, Some(false) when
    /// this worker cannot stand in for it (the step then compiles it), None if the device failed.
    fn compile(&mut self, spec: &PipelineSpec) -> Option<bool> {
        if spec.storage > self.storage.len() || spec.params_len as u64 > DUMMY_BYTES {
            return Some(false);
        }
        let module = self
            .modules
            .entry(spec.kernel.shader().name)
            .or_insert_with(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(spec.kernel.shader().name),
                    source: wgpu::ShaderSource::Wgsl(spec.kernel.shader().source.into()),
                })
            })
            .clone();
        let constants: Vec<(&str, f64)> = spec.constants.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.kernel.entry().name()),
            layout: None,
            module: &module,
            entry_point: Some(spec.kernel.entry().name()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let mut entries = Vec::new();
        if spec.params_len > 0 {
            let size = wgpu::BufferSize::new((spec.params_len as u64).next_multiple_of(16));
            let b = wgpu::BufferBinding { buffer: &self.uniform, offset: 0, size };
            entries.push(wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(b) });
        }
        for (i, b) in self.storage.iter().take(spec.storage).enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if pollster::block_on(scope.pop()).is_some() {
            return Some(false);
        }
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(0, 0, 0);
        }
        self.queue.submit([enc.finish()]);
        self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: None }).ok().map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{ConvEntry, GemmEntry};

    fn spec(entry: impl Into<Kernel>, tiles: &[(&str, f64)]) -> PipelineSpec {
        let constants = tiles.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        PipelineSpec { kernel: entry.into(), constants, params_len: 16, storage: 2 }
    }

    #[test]
    fn large_convolution_tiles_compile_first() {
        let big = spec(ConvEntry::Forward, &[("TM", 16.0), ("TN", 8.0)]);
        let mid = spec(ConvEntry::Forward, &[("TM", 8.0), ("TN", 4.0)]);
        let gemm = spec(GemmEntry::GemmGg, &[("TM", 16.0), ("TN", 4.0)]);
        let small = spec(ConvEntry::ReduceSplits, &[("RWG", 256.0)]);
        assert!(big.compile_cost() > mid.compile_cost());
        assert!(mid.compile_cost() > gemm.compile_cost());
        assert_eq!(gemm.compile_cost(), small.compile_cost());
    }
}
