use std::sync::Arc;

use super::shaders::Shader;
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

/// What a kernel launch needs: the shader entry point, its pipeline constants, its parameter
/// block (bound at 0) and its storage buffer ranges (bound at 1, 2, … in order).
pub struct Launch<'a> {
    pub shader: Shader,
    pub entry: &'a str,
    pub constants: &'a [(&'a str, f64)],
    pub params: &'a [u8],
    pub buffers: &'a [BufRange<'a>],
    pub workgroups: [u32; 3],
}

impl Gpu {
    /// Builds a [`Dispatch`]: the cached pipeline, a uniform buffer with the parameters and the
    /// bind group, all validated inside an error scope.
    pub fn dispatch(&self, l: Launch<'_>) -> Result<Dispatch> {
        let label = format!("{}::{}", l.shader.name, l.entry);
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
        let pipeline = self.pipeline(l.shader, l.entry, l.constants)?;
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
            shader: l.shader,
            entry: l.entry.to_string(),
            constants: l.constants.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            params_len: l.params.len(),
            storage: l.buffers.len(),
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
