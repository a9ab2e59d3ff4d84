//! The device layer: adapter choice, buffers, shader modules and a cache of compute pipelines.
//! Everything above it records work as a list of [`Dispatch`]es and submits it in one go.

mod buffer;
mod device;
mod devices;
mod dispatch;
/// Generated: see its module docs and `gpu::template`.
#[rustfmt::skip]
mod entries;
#[cfg(test)]
mod mirror;
mod needs;
mod precompile;
pub mod shaders;
pub mod template;

pub use buffer::host_available;
pub use device::*;
pub use devices::{open_devices, select_adapters, DeviceSelection};
pub use dispatch::*;
pub use entries::*;
pub use needs::{kernel_needs, limits_shortfall, KernelNeeds};
pub use precompile::{PipelineSpec, PrecompileHook, PrecompileProgress};
