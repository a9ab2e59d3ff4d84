//! tailor: train DenseNet image classifiers with class-balanced losses on any Vulkan, Metal or
//! DX12 GPU, with hand-written WGSL kernels.

pub mod cli;
pub mod data;
pub mod error;
pub mod gpu;
pub mod metrics;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod ops;
pub mod rng;
pub mod run;
pub mod search;
pub mod setting;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub mod graph;
pub mod nn;
