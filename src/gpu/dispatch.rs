use std::sync::Arc;

use super::shaders::Shader;
use super::Gpu;
use crate::error::Result;

/// The most workgroups one dimension of a dispatch may have on every backend.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// One recorded kernel launch: a pipeline, its bound buffers and a grid. Built once (bind groups
/// included) and replayed every step.
pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
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

/// What a kernel launch needs: the shader entry point, its pipeline constants, its parameter
/// block (bound at 0) and its storage buffers (bound at 1, 2, … in order).
pub struct Launch<'a> {
    pub shader: Shader,
    pub entry: &'a str,
    pub constants: &'a [(&'a str, f64)],
    pub params: &'a [u8],
    pub buffers: &'a [&'a wgpu::Buffer],
    pub workgroups: [u32; 3],
}

impl Gpu {
    /// Builds a [`Dispatch`]: the cached pipeline, a uniform buffer with the parameters and the
    /// bind group, all validated inside an error scope.
    pub fn dispatch(&self, l: Launch<'_>) -> Result<Dispatch> {
        let pipeline = self.pipeline(l.shader, l.entry, l.constants)?;
        let label = format!("{}::{}", l.shader.name, l.entry);
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
                entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
            }
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        Ok(Dispatch { label, pipeline, bind_group, workgroups: l.workgroups })
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
