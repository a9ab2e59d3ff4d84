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
//! - kernels bind byte ranges ([`BufRange`]), not whole buffers: a pool buffer may hold several
//!   tensors over a step and be larger than one binding can be. A batch larger than a binding
//!   runs in batch chunks ([`batch_chunks`], [`Act::images`]); ops that reduce over the batch
//!   take the chunk list (`*_chunks`) and combine their partial results across chunks.

pub mod adam;
pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod embed;

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::BufRange;

/// Checks that `buf` (the range a kernel binds) holds `len` f32 and that `len` fits 32-bit
/// indexing.
pub fn check_len<'a>(op: &str, name: &str, buf: impl Into<BufRange<'a>>, len: usize) -> Result<()> {
    let size = buf.into().size;
    if len > u32::MAX as usize {
        return Err(Error::shape(op, format!("{name}: {len} elements do not fit 32-bit indexing")));
    }
    if size < (len * 4) as u64 {
        return Err(Error::shape(op, format!("{name}: its buffer range holds {size} bytes but needs {}", len * 4)));
    }
    Ok(())
}

/// One dispatch may not bind overlapping bytes twice (a read and a write view of the same bytes
/// would race). Disjoint ranges of one buffer are fine: the parameters of the arena (see
/// [`crate::graph::store`]) are bound side by side, all read-only.
pub fn check_distinct(op: &str, bufs: &[BufRange]) -> Result<()> {
    let overlap =
        |a: &BufRange, b: &BufRange| a.buf == b.buf && a.offset < b.offset + b.size && b.offset < a.offset + a.size;
    for (i, a) in bufs.iter().enumerate() {
        if bufs[..i].iter().any(|b| overlap(a, b)) {
            return Err(Error::shape(op, "the same buffer range is passed for two arguments"));
        }
    }
    Ok(())
}

/// Images per batch chunk must be a multiple of this so that every chunk starts on a multiple
/// of `align` bytes in each tensor (one image of tensor i is `image_bytes[i]` bytes).
pub fn chunk_step(image_bytes: &[u64], align: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    image_bytes.iter().fold(1, |l, &b| {
        let s = align / gcd(align, b);
        l / gcd(l, s) * s
    })
}

/// Cuts a batch of `n` images into consecutive chunks that each bind at most `limit` bytes of
/// every tensor (one image of tensor i is `image_bytes[i]` bytes) and start on a multiple of
/// `align` bytes: as many images per chunk as fit, a multiple of [`chunk_step`], the last chunk
/// taking what is left. `None` when not even one step of images fits.
pub fn batch_chunks(n: usize, image_bytes: &[u64], limit: u64, align: u64) -> Option<Vec<Range<usize>>> {
    let step = chunk_step(image_bytes, align);
    let fit = image_bytes.iter().map(|&b| limit / b.max(1)).min().unwrap_or(u64::MAX) / step * step;
    let k = usize::try_from(fit).unwrap_or(usize::MAX).min(n.max(1));
    (k > 0).then(|| (0..n).step_by(k).map(|a| a..(a + k).min(n)).collect())
}

/// Checks that `chunks` are consecutive, non-empty image ranges covering `0..n`.
pub fn check_chunks(op: &str, chunks: &[Range<usize>], n: usize) -> Result<()> {
    let mut next = 0;
    for r in chunks {
        if r.start != next || r.end <= r.start {
            return Err(Error::shape(op, format!("batch chunks {chunks:?} do not cut 0..{n} into consecutive ranges")));
        }
        next = r.end;
    }
    if next != n {
        return Err(Error::shape(op, format!("batch chunks {chunks:?} do not cover 0..{n}")));
    }
    Ok(())
}
pub mod gemm;
pub mod knn;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod tune;

/// A view of an NCHW activation: `channels` channels starting at channel `c_off` of a buffer
/// range that holds `c_total` channels per image. A whole tensor is `c_off = 0, c_total = channels`.
/// With the batch outermost, images `n0..n1` are one contiguous range ([`Act::images`]).
#[derive(Clone, Copy, Debug)]
pub struct Act<'a> {
    pub buf: BufRange<'a>,
    pub c_off: u32,
    pub c_total: u32,
}

impl<'a> Act<'a> {
    /// Checks that `channels` channels of `n` images of `pixels` pixels fit this view and its
    /// buffer range, within 32-bit indexing.
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

    /// The whole buffer (or range) as a tensor of `channels` channels.
    pub fn whole(buf: impl Into<BufRange<'a>>, channels: usize) -> Self {
        Act { buf: buf.into(), c_off: 0, c_total: channels as u32 }
    }
    /// Channels `c_off..` of a buffer (or range) with `c_total` channels per image.
    pub fn slice(buf: impl Into<BufRange<'a>>, c_off: usize, c_total: usize) -> Self {
        Act { buf: buf.into(), c_off: c_off as u32, c_total: c_total as u32 }
    }
    /// The same view of images `images` only (of `pixels` pixels each): the byte range a batch
    /// chunk binds.
    pub fn images(self, images: Range<usize>, pixels: usize) -> Self {
        let per = self.c_total as u64 * pixels as u64 * 4;
        Act { buf: self.buf.sub(images.start as u64 * per, images.len() as u64 * per), ..self }
    }
}
