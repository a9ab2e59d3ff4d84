use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::entries::{BatchnormEntry, EntryPoint};
use super::shaders::{self, Shader};
use super::{Gpu, PipelineSpec};
use crate::error::{Error, Result};

/// The most workgroups one dimension of a dispatch may have on every backend.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// One recorded kernel launch: a pipeline, its bound buffers and a grid. Built once (bind groups
/// included) and replayed every step.
pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// How to build the same pipeline on another device (see [`Gpu::precompile`]).
    pub spec: Arc<PipelineSpec>,
    /// Bytes of device buffers the builder created for this dispatch alone (a zero bias, a
    /// transposed copy of weights), which live as long as it: counted in memory reports.
    pub owned_bytes: u64,
}

/// A grid of `groups` workgroups laid over x (then y when x would exceed the limit).
/// Shaders recover the flat workgroup index as `wid.x + wid.y * nwg.x`.
pub fn grid(groups: u32) -> [u32; 3] {
    let groups = groups.max(1);
    if groups <= MAX_GROUPS_PER_DIM {
        [groups, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}

/// `n.div_ceil(d)` as u32, for grid arithmetic.
pub fn ceil_div(n: usize, d: usize) -> u32 {
    n.div_ceil(d) as u32
}

/// The bytes one storage binding covers: `size` bytes of `buf` from byte `offset`. Buffers may
/// be larger than a binding can be (a pool buffer holds many tensors over a step, a tensor may
/// be bound one batch chunk at a time), so a dispatch binds exactly the bytes it uses.
#[derive(Clone, Copy, Debug)]
pub struct BufRange<'a> {
    pub buf: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> BufRange<'a> {
    /// The first `size` bytes of `buf`.
    pub fn prefix(buf: &'a wgpu::Buffer, size: u64) -> Self {
        BufRange { buf, offset: 0, size }
    }

    /// `size` bytes from `offset` within this range.
    pub fn sub(self, offset: u64, size: u64) -> Self {
        BufRange { buf: self.buf, offset: self.offset + offset, size }
    }

    fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buf,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }
}

impl<'a> From<&'a wgpu::Buffer> for BufRange<'a> {
    /// The whole buffer.
    fn from(buf: &'a wgpu::Buffer) -> Self {
        BufRange { buf, offset: 0, size: buf.size() }
    }
}

/// The code a launch runs: an entry point of the typed table (so a launch cannot name a
/// misspelt entry, or one of another shader) and the module compiled for it, which is the entry
/// point's own shader or a variant of it with the same entry points (batch norm without
/// subgroups). Made from any entry enum with `.into()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    entry: EntryPoint,
    shader: Shader,
}

impl Kernel {
    /// A batch norm entry point in [`shaders::batchnorm_without_subgroups`].
    pub fn batchnorm_without_subgroups(entry: BatchnormEntry) -> Kernel {
        Kernel { entry: entry.into(), shader: shaders::batchnorm_without_subgroups() }
    }

    pub fn entry(self) -> EntryPoint {
        self.entry
    }

    /// The module the pipeline is compiled from.
    pub fn shader(self) -> Shader {
        self.shader
    }

    /// `shader::entry`, as pipelines and dispatches are labelled.
    pub fn label(self) -> String {
        format!("{}::{}", self.shader.name, self.entry.name())
    }
}

impl<E: Into<EntryPoint>> From<E> for Kernel {
    fn from(entry: E) -> Kernel {
        let entry = entry.into();
        Kernel { entry, shader: entry.shader() }
    }
}

thread_local! {
    /// Where [`record_entries`] collects the entry points dispatched on this thread.
    static RECORDING: RefCell<Option<BTreeSet<EntryPoint>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, the entry points of every [`Gpu::dispatch`] built on
/// this thread meanwhile (whatever the device): for the test that every entry point is run by
/// some kernel test. Outside it a dispatch pays one thread-local check.
pub fn record_entries<R>(f: impl FnOnce() -> R) -> (R, BTreeSet<EntryPoint>) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(BTreeSet::new()));
    // Puts back an enclosing recording, with what this one saw added, even if `f` panics.
    struct Restore(Option<BTreeSet<EntryPoint>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            RECORDING.with(|r| {
                let mut r = r.borrow_mut();
                *r = match (outer, r.take()) {
                    (Some(mut o), Some(inner)) => {
                        o.extend(inner);
                        Some(o)
                    }
                    (o, _) => o,
                };
            });
        }
    }
    let restore = Restore(outer);
    let out = f();
    let seen = RECORDING.with(|r| r.borrow().clone().unwrap_or_default());
    drop(restore);
    (out, seen)
}

/// What a kernel launch needs: the shader entry point, its pipeline constants, its parameter
/// block (bound at 0) and its storage buffer ranges (bound at 1, 2, … in order).
pub struct Launch<'a> {
    pub entry: Kernel,
    pub constants: &'a [(&'a str, f64)],
    pub params: &'a [u8],
    pub buffers: &'a [BufRange<'a>],
    pub workgroups: [u32; 3],
}

impl Gpu {
    /// Builds a [`Dispatch`]: the cached pipeline, a uniform buffer with the parameters and the
    /// bind group, all validated inside an error scope.
    pub fn dispatch(&self, l: Launch<'_>) -> Result<Dispatch> {
        let label = l.entry.label();
        // The one place every binding passes: callers split their work so that none exceeds the
        // limit (which tests may lower, see `Gpu::set_binding_limit`); this catches any that does not.
        let limit = self.max_binding();
        if l.buffers.iter().any(|b| b.size == 0) {
            return Err(Error::Invalid(format!("{label}: a storage binding of 0 bytes")));
        }
        if let Some(b) = l.buffers.iter().find(|b| b.size > limit) {
            let tensor = format!("a buffer bound by {label}");
            return Err(Error::TooLarge { tensor, bytes: b.size, limit });
        }
        let pipeline = self.pipeline(l.entry, l.constants)?;
        let bind_group = self.scoped(&label, || {
            let params = (!l.params.is_empty()).then(|| {
                use wgpu::util::DeviceExt;
                self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(&label),
                    contents: l.params,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
            });
            let mut entries = Vec::with_capacity(l.buffers.len() + 1);
            if let Some(p) = &params {
                entries.push(wgpu::BindGroupEntry { binding: 0, resource: p.as_entire_binding() });
            }
            for (i, b) in l.buffers.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() });
            }
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        let spec = Arc::new(PipelineSpec {
            kernel: l.entry,
            constants: l.constants.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            params_len: l.params.len(),
            storage: l.buffers.len(),
        });
        RECORDING.with(|r| {
            if let Some(seen) = r.borrow_mut().as_mut() {
                seen.insert(l.entry.entry());
            }
        });
        Ok(Dispatch { label, pipeline, bind_group, workgroups: l.workgroups, spec, owned_bytes: 0 })
    }

    /// Records `dispatches` into one compute pass.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
        self.record_lists(enc, &[dispatches]);
    }

    /// Records several dispatch lists, in order, into one compute pass.
    pub fn record_lists(&self, enc: &mut wgpu::CommandEncoder, lists: &[&[Dispatch]]) {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tailor"), timestamp_writes: None });
        for d in lists.iter().flat_map(|l| l.iter()) {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
    }

    /// Runs `dispatches` in one submission and waits for them.
    pub fn run(&self, dispatches: &[Dispatch]) -> Result<()> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        self.record(&mut enc, dispatches);
        self.queue.submit([enc.finish()]);
        self.wait()
    }
}
