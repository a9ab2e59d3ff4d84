use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::shaders::Shader;
use super::Kernel;
use crate::error::{Error, Result};

/// How to pick an adapter. `Default` reads `TAILOR_ADAPTER` and `TAILOR_BACKEND`.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// `vulkan`, `metal`, `dx12` or `gl`; all of them when `None`.
    pub backend: Option<String>,
}

impl GpuOptions {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        GpuOptions { adapter: var("TAILOR_ADAPTER"), backend: var("TAILOR_BACKEND") }
    }
}

/// The features tailor uses when the adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SUBGROUP
        | wgpu::Features::SHADER_F16
        | wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
}

fn parse_backends(name: Option<&str>) -> Result<wgpu::Backends> {
    Ok(match name.map(|s| s.to_ascii_lowercase()) {
        None => wgpu::Backends::all(),
        Some(s) => match s.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown backend '{other}' (TAILOR_BACKEND / --backend): use vulkan, metal, dx12 or gl"
                )))
            }
        },
    })
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The fewest subgroup lanes tailor's convolution and GEMM kernels work with: they share loads
/// across lanes 0..8 with `subgroupBroadcast`.
pub const MIN_SUBGROUP_LANES: u32 = 8;

/// Whether a device with `features` and `info` has the subgroups tailor's kernels need.
pub fn has_training_subgroups(features: wgpu::Features, info: &wgpu::AdapterInfo) -> bool {
    features.contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= MIN_SUBGROUP_LANES
}

/// Why tailor cannot train on `adapter`, or `None` when it can.
pub fn unusable_reason(adapter: &wgpu::Adapter) -> Option<String> {
    let info = adapter.get_info();
    if !adapter.features().contains(wgpu::Features::SUBGROUP) {
        let on = if info.backend == wgpu::Backend::Gl { " (wgpu offers none on GL)" } else { "" };
        return Some(format!(
            "it has no subgroup operations{on}, and tailor's convolution and GEMM kernels need subgroups of at \
             least {MIN_SUBGROUP_LANES} lanes"
        ));
    }
    if !has_training_subgroups(adapter.features(), &info) {
        return Some(format!(
            "its subgroups can be {} lanes wide, and tailor's convolution and GEMM kernels need at least \
             {MIN_SUBGROUP_LANES}",
            info.subgroup_min_size
        ));
    }
    super::limits_shortfall(&adapter.limits())
}

/// Every adapter the backends can see, in the order tailor prefers them.
pub fn list_adapters(backend: Option<&str>) -> Result<Vec<wgpu::Adapter>> {
    let inst = instance(parse_backends(backend)?);
    let mut adapters = pollster::block_on(inst.enumerate_adapters(parse_backends(backend)?));
    adapters.sort_by_cached_key(|a| (unusable_reason(a).is_some(), rank(&a.get_info())));
    Ok(adapters)
}

/// Discrete before integrated before virtual before CPU; Vulkan/Metal/DX12 before GL. (Adapters
/// tailor cannot train on come after all of them.)
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = if info.backend == wgpu::Backend::Gl { 1 } else { 0 };
    (kind, api)
}

/// `TAILOR_MAX_BINDING` (bytes; 0 or unset: the device's limit), see [`Gpu::set_binding_limit`].
fn binding_limit_from_env() -> Result<u64> {
    match std::env::var("TAILOR_MAX_BINDING") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| Error::Invalid(format!("TAILOR_MAX_BINDING must be a number of bytes, not '{v}'"))),
        _ => Ok(0),
    }
}

fn request(
    adapter: &wgpu::Adapter,
    label: &str,
    features: wgpu::Features,
    limits: &wgpu::Limits,
) -> Result<(wgpu::Device, wgpu::Queue)> {
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some(label),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| Error::RequestDevice { adapter: adapter.get_info().name, msg: e.to_string() })
}

type PipelineKey = (&'static str, String, Vec<(String, u64)>);

/// A pipeline being compiled or compiled. Each key has its own lock, so threads compile
/// different pipelines at once while a second request for the same one waits for the first.
type PipelineSlot = Arc<Mutex<Option<Arc<wgpu::ComputePipeline>>>>;

/// An open device with its queue, limits and caches. Cheap to share behind an `Arc`.
pub struct Gpu {
    /// The adapter the device was opened on (more devices can be opened on it).
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, PipelineSlot>>,
    lost: Arc<Mutex<Option<String>>>,
    /// A lower per-binding limit than the device's, in bytes (0: none); see [`Gpu::set_binding_limit`].
    binding_limit: AtomicU64,
    /// Plan kernels as for a GPU even on a CPU device; see [`Gpu::set_gpu_plans`].
    gpu_plans: AtomicBool,
    /// Extra devices that compile pipelines ahead of the first dispatch (see [`Gpu::precompile`]).
    pub(super) precompilers: Mutex<Vec<super::precompile::Worker>>,
    /// Told how a precompile is getting on (see [`Gpu::on_precompile`]).
    pub(super) precompile_hook: Mutex<Option<super::precompile::PrecompileHook>>,
}

impl Gpu {
    /// Opens the adapter chosen by `TAILOR_ADAPTER` / `TAILOR_BACKEND`, or the best one.
    pub fn new() -> Result<Arc<Gpu>> {
        Gpu::with_options(&GpuOptions::from_env())
    }

    pub fn with_options(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let adapters = list_adapters(opts.backend.as_deref())?;
        let adapter = match &opts.adapter {
            Some(want) => {
                let w = want.to_lowercase();
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&w)).ok_or_else(|| {
                    Error::NoAdapter(format!(
                        " whose name contains '{want}' (found: {})",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ))
                })?
            }
            None => adapters.into_iter().next().ok_or_else(|| {
                Error::NoAdapter(match &opts.backend {
                    Some(b) => format!(" for backend '{b}'"),
                    None => String::new(),
                })
            })?,
        };
        Gpu::open(adapter)
    }

    /// Opens a device on `adapter` with its full limits and the optional features tailor uses.
    pub fn open(adapter: wgpu::Adapter) -> Result<Arc<Gpu>> {
        let info = adapter.get_info();
        let features = adapter.features() & wanted_features();
        let limits = adapter.limits();
        let (device, queue) = request(&adapter, "tailor", features, &limits)?;
        let lost = Arc::new(Mutex::new(None));
        let lost2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lost2.lock().unwrap() = Some(format!("{reason:?}: {msg}"));
        });
        // Errors are caught by error scopes where we create things; anything else that slips
        // through is remembered and reported at the next submission instead of panicking.
        let lost3 = lost.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            let mut l = lost3.lock().unwrap();
            if l.is_none() {
                *l = Some(format!("uncaptured GPU error: {e}"));
            }
        }));
        Ok(Arc::new(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            lost,
            binding_limit: AtomicU64::new(binding_limit_from_env()?),
            gpu_plans: AtomicBool::new(false),
            precompilers: Mutex::new(Vec::new()),
            precompile_hook: Mutex::new(None),
        }))
    }

    /// Another device on the same adapter with the same features and limits.
    pub fn request_device(&self, label: &str) -> Result<(wgpu::Device, wgpu::Queue)> {
        request(&self.adapter, label, self.features, &self.limits)
    }

    /// A short description: name, backend and driver.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, {} {})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver, self.info.driver_info
        )
    }

    /// Fails if the device was lost or an uncaptured error happened since the last check.
    pub fn check_alive(&self) -> Result<()> {
        match self.lost.lock().unwrap().take() {
            Some(msg) => Err(Error::DeviceLost(msg)),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they catch
    /// into errors that name `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o {
            let _ = e;
            return Err(Error::OutOfMemory { what: what.to_string() });
        }
        if let Some(e) = v {
            return Err(Error::Validation { what: what.to_string(), msg: e.to_string() });
        }
        Ok(out)
    }

    fn module(&self, shader: Shader) -> Result<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(shader.name) {
            return Ok(m.clone());
        }
        let m = self.scoped(&format!("shader {}", shader.name), || {
            self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
            })
        })?;
        modules.insert(shader.name, m.clone());
        Ok(m)
    }

    /// The compute pipeline for `kernel` with the given pipeline constants (tile and
    /// workgroup sizes), created on first use and cached for the life of the device.
    pub fn pipeline(&self, kernel: Kernel, constants: &[(&str, f64)]) -> Result<Arc<wgpu::ComputePipeline>> {
        let (shader, entry) = (kernel.shader(), kernel.entry().name());
        let mut sorted: Vec<(String, u64)> = constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect();
        sorted.sort();
        let key = (shader.name, entry.to_string(), sorted);
        let slot = self.pipelines.lock().unwrap().entry(key).or_default().clone();
        let mut slot = slot.lock().unwrap();
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let module = self.module(shader)?;
        let label = kernel.label();
        let pipeline = self.scoped(&label, || {
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        let pipeline = Arc::new(pipeline);
        *slot = Some(pipeline.clone());
        Ok(pipeline)
    }

    /// Every pipeline created so far, as `shader::entry NAME=value …`, sorted (for reports).
    pub fn pipeline_labels(&self) -> Vec<String> {
        let pipelines = self.pipelines.lock().unwrap();
        let mut v: Vec<String> = pipelines
            .iter()
            .filter(|(_, s)| s.lock().unwrap().is_some())
            .map(|((shader, entry, consts), _)| {
                let c: Vec<String> = consts.iter().map(|(k, v)| format!("{k}={}", f64::from_bits(*v))).collect();
                format!("{shader}::{entry} {}", c.join(" ")).trim_end().to_string()
            })
            .collect();
        v.sort();
        v
    }

    /// How many pipelines have been compiled so far (for reports).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().unwrap().values().filter(|s| s.lock().unwrap().is_some()).count()
    }

    /// The largest buffer one storage binding may cover, in bytes: the device's limit, or a lower
    /// one set with [`Gpu::set_binding_limit`] or `TAILOR_MAX_BINDING`.
    pub fn max_binding(&self) -> u64 {
        let device = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        match self.binding_limit.load(Ordering::Relaxed) {
            0 => device,
            l => l.min(device),
        }
    }

    /// The largest buffer the device can create, in bytes.
    pub fn max_buffer(&self) -> u64 {
        self.limits.max_buffer_size
    }

    /// Byte offsets of storage bindings must be multiples of this.
    pub fn binding_alignment(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// Binds at most `bytes` per storage binding from now on (`None`: the device's limit), as
    /// if the device had that limit: executables built afterwards split their batches into
    /// more chunks. For tests of the chunked paths on small models.
    pub fn set_binding_limit(&self, bytes: Option<u64>) {
        self.binding_limit.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether kernels are planned for a CPU device (llvmpipe: one SIMD fiber per workgroup,
    /// fibers run one after another): true on a CPU adapter unless [`Gpu::set_gpu_plans`].
    /// Only workgroup widths depend on it, never what a kernel computes.
    pub fn plans_for_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu && !self.gpu_plans.load(Ordering::Relaxed)
    }

    /// Plans kernels from now on as for a GPU (wider workgroups of several subgroups) even on a
    /// CPU device, so that lavapipe runs the code paths a real GPU takes: for tests. Executables
    /// built afterwards use the GPU plans.
    pub fn set_gpu_plans(&self, on: bool) {
        self.gpu_plans.store(on, Ordering::Relaxed);
    }
}
