//! The kernels, one module per op family. Each module holds, side by side:
//! - the shape rules of the op (a small `Copy` struct and its output shape),
//! - the GPU side: functions that build the op's [`Dispatch`](crate::gpu::Dispatch)es once,
//!   from buffers, for the executor to replay (`forward`, `backward_*`),
//! - the CPU reference: plain loops over `f64` (`forward_ref`, `backward_*_ref`), the
//!   ground truth the kernel tests compare the WGSL kernels against.
//!
//! Conventions shared by every kernel:
//! - activations are NCHW f32; an [`Act`] view lets a kernel read or write a channel range of a
//!   larger buffer (a dense block's shared buffer) without copies;
//! - backward kernels that produce an input gradient take `accumulate`: when true they add to
//!   what is there (a dense block's channels get gradient from every later layer);
//! - parameters go in a uniform block at binding 0, storage buffers at bindings 1, 2, …; a
//!   binding number means the same access (read or read_write) in every entry point of a file;
//! - a kernel that needs temporary storage says how much with a `*_scratch_len` function and
//!   takes the buffer as an argument, so the planner can account for it.

pub mod adam;
pub mod batchnorm;
pub mod conv;
pub mod elementwise;

use crate::error::{Error, Result};

/// Checks that `buf` holds `len` f32 and that `len` fits 32-bit indexing.
pub fn check_len(op: &str, name: &str, buf: &wgpu::Buffer, len: usize) -> Result<()> {
    if len > u32::MAX as usize {
        return Err(Error::shape(op, format!("{name}: {len} elements do not fit 32-bit indexing")));
    }
    if buf.size() < (len * 4) as u64 {
        return Err(Error::shape(op, format!("{name}: its buffer holds {} bytes but needs {}", buf.size(), len * 4)));
    }
    Ok(())
}

/// One dispatch may not bind a buffer twice (a read and a write view of one buffer would race).
pub fn check_distinct(op: &str, bufs: &[&wgpu::Buffer]) -> Result<()> {
    for (i, a) in bufs.iter().enumerate() {
        if bufs[..i].contains(a) {
            return Err(Error::shape(op, "the same buffer is passed for two arguments"));
        }
    }
    Ok(())
}
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod tune;

/// A view of an NCHW activation: `channels` channels starting at channel `c_off` of a buffer
/// that holds `c_total` channels per image. A whole tensor is `c_off = 0, c_total = channels`.
#[derive(Clone, Copy, Debug)]
pub struct Act<'a> {
    pub buf: &'a wgpu::Buffer,
    pub c_off: u32,
    pub c_total: u32,
}

impl<'a> Act<'a> {
    /// Checks that `channels` channels of `n` images of `pixels` pixels fit this view and its
    /// buffer, within 32-bit indexing.
    pub fn check(&self, op: &str, name: &str, n: usize, channels: usize, pixels: usize) -> Result<()> {
        let (off, tot) = (self.c_off as usize, self.c_total as usize);
        if off + channels > tot {
            return Err(Error::shape(
                op,
                format!("{name}: channels {off}..{} of a {tot}-channel buffer", off + channels),
            ));
        }
        check_len(op, name, self.buf, n * tot * pixels)
    }

    /// The whole buffer as a tensor of `channels` channels.
    pub fn whole(buf: &'a wgpu::Buffer, channels: usize) -> Self {
        Act { buf, c_off: 0, c_total: channels as u32 }
    }
    /// Channels `c_off..` of a buffer with `c_total` channels per image.
    pub fn slice(buf: &'a wgpu::Buffer, c_off: usize, c_total: usize) -> Self {
        Act { buf, c_off: c_off as u32, c_total: c_total as u32 }
    }
}
