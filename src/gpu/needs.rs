//! What tailor's kernels ask of a device's limits, read off the shaders themselves with naga, so
//! that `tailor devices` and the default adapter choice can say which adapters cannot run them
//! (instead of a pipeline failing to build halfway into planning a step).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::shaders;

/// The most any of tailor's compute kernels needs of one device limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelNeeds {
    /// Distinct storage-buffer bindings of one entry point (batch norm's backward binds the most).
    pub storage_buffers: u32,
    /// Bytes of workgroup memory of one entry point, with every override at its default.
    pub workgroup_bytes: u32,
    /// Invocations of one workgroup: the planners never pick more (`MAX_WG` in the shaders).
    pub invocations: u32,
    /// The entry points that need the most storage buffers and workgroup memory, for messages.
    pub storage_entry: String,
    pub workgroup_entry: String,
}

/// The largest workgroup any planner picks (the shaders' `MAX_WG` / `MAX_RWG` / `WG_REDUCE`).
pub const MAX_WORKGROUP_INVOCATIONS: u32 = 256;

/// [`KernelNeeds`] of every shader in `shaders/`, worked out once per process.
pub fn kernel_needs() -> &'static KernelNeeds {
    static NEEDS: OnceLock<KernelNeeds> = OnceLock::new();
    NEEDS.get_or_init(|| needs_of(shaders::ALL))
}

/// [`KernelNeeds`] of some shaders. A shader that does not parse or validate counts for nothing
/// here (the shader tests fail on it).
pub fn needs_of(all: &[shaders::Shader]) -> KernelNeeds {
    let mut n = KernelNeeds {
        storage_buffers: 0,
        workgroup_bytes: 0,
        invocations: MAX_WORKGROUP_INVOCATIONS,
        storage_entry: String::new(),
        workgroup_entry: String::new(),
    };
    for shader in all {
        let Ok(module) = naga::front::wgsl::parse_str(shader.source) else { continue };
        let flags = naga::valid::ValidationFlags::all();
        let Ok(info) = naga::valid::Validator::new(flags, naga::valid::Capabilities::all()).validate(&module) else {
            continue;
        };
        // Overrides at their defaults, so that arrays sized by one (`array<f32, WG>`) have a size.
        let Ok((module, info)) =
            naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
        else {
            continue;
        };
        let mut layouter = naga::proc::Layouter::default();
        if layouter.update(module.to_ctx()).is_err() {
            continue;
        }
        for (i, ep) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let mut storage = BTreeSet::new();
            let mut bytes = 0u32;
            for (handle, var) in module.global_variables.iter() {
                if uses[handle].is_empty() {
                    continue;
                }
                match var.space {
                    // Several views of one binding (`x_s`, `x_v`) are one buffer.
                    naga::AddressSpace::Storage { .. } => {
                        if let Some(b) = &var.binding {
                            storage.insert((b.group, b.binding));
                        }
                    }
                    naga::AddressSpace::WorkGroup => bytes += layouter[var.ty].size,
                    _ => {}
                }
            }
            let entry = format!("{}::{}", shader.name, ep.name);
            if storage.len() as u32 > n.storage_buffers {
                n.storage_buffers = storage.len() as u32;
                n.storage_entry = entry.clone();
            }
            if bytes > n.workgroup_bytes {
                n.workgroup_bytes = bytes;
                n.workgroup_entry = entry;
            }
        }
    }
    n
}

/// Why a device with `limits` cannot run tailor's kernels, or `None` when it can.
pub fn limits_shortfall(limits: &wgpu::Limits) -> Option<String> {
    let n = kernel_needs();
    if limits.max_storage_buffers_per_shader_stage < n.storage_buffers {
        return Some(format!(
            "it allows {} storage buffers per kernel, and tailor's kernels bind up to {} ({})",
            limits.max_storage_buffers_per_shader_stage, n.storage_buffers, n.storage_entry
        ));
    }
    if limits.max_compute_workgroup_storage_size < n.workgroup_bytes {
        return Some(format!(
            "it allows {} bytes of workgroup memory, and tailor's kernels use up to {} ({})",
            limits.max_compute_workgroup_storage_size, n.workgroup_bytes, n.workgroup_entry
        ));
    }
    let lanes = limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x);
    if lanes < n.invocations {
        return Some(format!(
            "its workgroups can have {lanes} invocations, and tailor's kernels use up to {}",
            n.invocations
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_are_read_off_the_shaders() {
        let n = kernel_needs();
        // Batch norm's backward apply binds x, dx, γ, β, mean, invstd, dy, and its partial sums
        // at 8, 9 and 10.
        assert_eq!((n.storage_buffers, n.storage_entry.as_str()), (10, "batchnorm.wgsl::bwd_apply_v"), "{n:?}");
        // Max pooling's backward: 1024 window indices and 1024 gradients.
        assert_eq!((n.workgroup_bytes, n.workgroup_entry.as_str()), (8192, "pool.wgsl::max_backward"), "{n:?}");
        // One shader alone needs only its own.
        let adam = needs_of(&[shaders::ADAM]);
        assert_eq!((adam.storage_buffers, adam.workgroup_bytes), (5, 0), "{adam:?}");
        let loss = needs_of(&[shaders::LOSS]);
        assert_eq!(loss.workgroup_bytes, 2 * 256 * 4, "arrays sized by the WG override: {loss:?}");
    }

    #[test]
    fn short_limits_are_named() {
        let full = wgpu::Limits::default();
        assert_eq!(limits_shortfall(&wgpu::Limits { max_storage_buffers_per_shader_stage: 10, ..full.clone() }), None);
        let few = limits_shortfall(&wgpu::Limits { max_storage_buffers_per_shader_stage: 8, ..full.clone() });
        assert!(few.unwrap().contains("allows 8 storage buffers per kernel"));
        let small = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 16,
            max_compute_workgroup_storage_size: 4096,
            ..full.clone()
        };
        assert!(limits_shortfall(&small).unwrap().contains("4096 bytes of workgroup memory"));
        let narrow = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 16,
            max_compute_invocations_per_workgroup: 128,
            ..full
        };
        assert!(limits_shortfall(&narrow).unwrap().contains("128 invocations"));
    }
}
