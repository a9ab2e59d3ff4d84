//! Elementwise ops on flat buffers: ReLU (standalone; inside DenseNet it is fused into batch norm),
//! and the scaled sum that accumulates gradients over micro-batches.

use bytemuck::{Pod, Zeroable};

use super::Act;
use crate::error::Result;
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, ElementwiseEntry, FillEntry, Gpu, Launch};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) accumulate: u32,
    pub(crate) alpha: f32,
    pub(crate) _pad: u32,
}

fn launch(
    gpu: &Gpu,
    entry: ElementwiseEntry,
    n: usize,
    accumulate: bool,
    buffers: &[BufRange],
) -> Result<Vec<Dispatch>> {
    launch_scaled(gpu, entry, n, accumulate, 1.0, buffers)
}

fn launch_scaled(
    gpu: &Gpu,
    entry: ElementwiseEntry,
    n: usize,
    accumulate: bool,
    alpha: f32,
    buffers: &[BufRange],
) -> Result<Vec<Dispatch>> {
    for b in buffers {
        super::check_len(entry.name(), "buffer", *b, n)?;
    }
    let params = Params { n: n as u32, accumulate: accumulate as u32, alpha, _pad: 0 };
    Ok(vec![gpu.dispatch(Launch {
        entry: entry.into(),
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers,
        workgroups: grid(ceil_div(n, WG as usize)),
    })?])
}

/// y = max(x, 0) over `n` elements.
pub fn relu_forward<'a>(
    gpu: &Gpu,
    x: impl Into<BufRange<'a>>,
    y: impl Into<BufRange<'a>>,
    n: usize,
) -> Result<Vec<Dispatch>> {
    launch(gpu, ElementwiseEntry::ReluForward, n, false, &[x.into(), y.into()])
}

/// dx (+)= dy · [x > 0] over `n` elements.
pub fn relu_backward<'a>(
    gpu: &Gpu,
    x: impl Into<BufRange<'a>>,
    dy: impl Into<BufRange<'a>>,
    dx: impl Into<BufRange<'a>>,
    n: usize,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    launch(gpu, ElementwiseEntry::ReluBackward, n, accumulate, &[x.into(), dx.into(), dy.into()])
}

/// y = alpha·x, or y += alpha·x with `accumulate`, over `n` elements. (With alpha a power of
/// two the products are exact: summing gradients of micro-batches scaled by 1/N this way equals
/// backpropagating each micro-batch's loss divided by N.) Ranges larger than one binding are
/// done in pieces that each fit one.
pub fn scale_add<'a>(
    gpu: &Gpu,
    x: impl Into<BufRange<'a>>,
    y: impl Into<BufRange<'a>>,
    n: usize,
    alpha: f32,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    if !alpha.is_finite() {
        return Err(crate::error::Error::shape("scale_add", format!("the factor must be finite, got {alpha}")));
    }
    let (x, y) = (x.into(), y.into());
    super::check_distinct("scale_add", &[x, y])?;
    for b in [x, y] {
        super::check_len("scale_add", "buffer", b, n)?;
    }
    // Pieces start at multiples of the binding alignment from x's and y's offsets (which are
    // aligned, as every range the executor and the arena hand out).
    let align = (gpu.binding_alignment() / 4).max(1) as usize;
    let piece = ((gpu.max_binding() / 4) as usize / align * align).max(align);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = piece.min(n - start);
        let at = |r: BufRange<'a>| r.sub(start as u64 * 4, len as u64 * 4);
        out.extend(launch_scaled(gpu, ElementwiseEntry::ScaleAdd, len, accumulate, alpha, &[at(x), at(y)])?);
        start += piece;
    }
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct FillParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) hw: u32,
    pub(crate) c_off: u32,
    pub(crate) c_total: u32,
    pub(crate) _pad: [u32; 3],
}

/// Zeroes `c` channels of `n` images of `hw` pixels in the view `x`.
pub fn fill_zero(gpu: &Gpu, n: usize, c: usize, hw: usize, x: Act) -> Result<Vec<Dispatch>> {
    let params =
        FillParams { n: n as u32, c: c as u32, hw: hw as u32, c_off: x.c_off, c_total: x.c_total, _pad: [0; 3] };
    Ok(vec![gpu.dispatch(Launch {
        entry: FillEntry::FillZero.into(),
        constants: &[("WG", WG as f64)],
        params: bytemuck::bytes_of(&params),
        buffers: &[x.buf],
        workgroups: grid(ceil_div(n * c * hw, WG as usize)),
    })?])
}

pub fn relu_forward_ref(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

pub fn relu_backward_ref(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter().zip(dy).map(|(&v, &g)| if v > 0.0 { g } else { 0.0 }).collect()
}

/// `alpha·x (+ y with accumulate)`, in f64.
pub fn scale_add_ref(x: &[f64], y: &[f64], alpha: f64, accumulate: bool) -> Vec<f64> {
    x.iter().zip(y).map(|(&a, &b)| alpha * a + if accumulate { b } else { 0.0 }).collect()
}
