//! Pooling and channel copies, NCHW f32, matching PyTorch: max pooling (first maximum of a
//! window wins), average pooling (floor mode, `count_include_pad = true`), global average pooling
//! (`adaptive_avg_pool2d(x, 1)` flattened to [n, c]) and channel copies between views
//! (explicit concatenation, or slicing a gradient out of a concatenated one).
//!
//! Every backward is a gather over input elements, so no two invocations write the same dx.

use bytemuck::{Pod, Zeroable};

use super::Act;
use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, Gpu, Launch, PoolEntry};

const WG: u32 = 256;
/// Windows of one max-pool backward tile held in workgroup memory (mirrors pool.wgsl).
const MAX_WINDOWS: usize = 1024;

/// A pooling over [n, c, h, w] with a square `k`×`k` window, `stride` and zero `pad` on every
/// side. The output is [n, c, out_h, out_w] with PyTorch's floor rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolShape {
    /// The checked shape.
    pub fn new(n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Result<Self> {
        let s = PoolShape { n, c, h, w, k, stride, pad };
        s.validate("pool")?;
        Ok(s)
    }

    /// PyTorch's rules: a non-empty input, k ≥ 1, stride ≥ 1, pad ≤ k/2 (so no window is all
    /// padding) and a window no larger than the padded input.
    pub fn validate(&self, op: &str) -> Result<()> {
        let PoolShape { n, c, h, w, k, stride, pad } = *self;
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::shape(op, format!("empty input [{n}, {c}, {h}, {w}]")));
        }
        if k == 0 || stride == 0 {
            return Err(Error::shape(op, format!("kernel {k} and stride {stride} must be at least 1")));
        }
        if 2 * pad > k {
            return Err(Error::shape(op, format!("padding {pad} must be at most half the kernel size {k}")));
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            return Err(Error::shape(op, format!("kernel {k} is larger than the padded input {h}×{w} (pad {pad})")));
        }
        check_u32(op, n * c * h * w)
    }

    /// (h + 2·pad − k) / stride + 1, rounded down.
    /// Whether the dedicated 2×2 average-pooling entries apply: window 2, stride 2, no padding
    /// and an even width (rows of pairs load and store as aligned vec2s).
    pub fn is_2x2_even(&self) -> bool {
        self.k == 2 && self.stride == 2 && self.pad == 0 && self.w % 2 == 0
    }

    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn in_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    pub fn out_len(&self) -> usize {
        self.n * self.c * self.out_h() * self.out_w()
    }
}

fn check_u32(op: &str, len: usize) -> Result<()> {
    if len > u32::MAX as usize {
        return Err(Error::shape(op, format!("{len} elements do not fit 32-bit indexing")));
    }
    Ok(())
}

/// A view of `c` channels of `n` images of `plane` elements must lie inside its buffer.
fn check_view(op: &str, name: &str, a: &Act, n: usize, c: usize, plane: usize) -> Result<()> {
    a.check(op, name, n, c, plane)
}

/// One dispatch may not bind a buffer twice (read and write views of one buffer would race).
fn check_distinct(op: &str, bufs: &[BufRange]) -> Result<()> {
    super::check_distinct(op, bufs)
}

/// Mirrors `Params` of pool.wgsl: views (offset, total channels) in binding order 1, 2, 3.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) oh: u32,
    pub(crate) ow: u32,
    pub(crate) k: u32,
    pub(crate) s: u32,
    pub(crate) pad: u32,
    pub(crate) acc: u32,
    pub(crate) views: [[u32; 2]; 3],
}

impl Params {
    fn pool(s: &PoolShape, views: &[Act], accumulate: bool) -> Self {
        let mut p = Params {
            n: s.n as u32,
            c: s.c as u32,
            h: s.h as u32,
            w: s.w as u32,
            oh: s.out_h() as u32,
            ow: s.out_w() as u32,
            k: s.k as u32,
            s: s.stride as u32,
            pad: s.pad as u32,
            acc: accumulate as u32,
            ..Default::default()
        };
        for (v, a) in p.views.iter_mut().zip(views) {
            *v = [a.c_off, a.c_total];
        }
        p
    }
}

struct Kernel<'a> {
    entry: PoolEntry,
    constants: &'a [(&'a str, f64)],
    params: Params,
    views: &'a [Act<'a>],
    workgroups: [u32; 3],
}

fn launch(gpu: &Gpu, k: Kernel) -> Result<Vec<Dispatch>> {
    let buffers: Vec<BufRange> = k.views.iter().map(|a| a.buf).collect();
    check_distinct(k.entry.name(), &buffers)?;
    Ok(vec![gpu.dispatch(Launch {
        entry: k.entry.into(),
        constants: k.constants,
        params: bytemuck::bytes_of(&k.params),
        buffers: &buffers,
        workgroups: k.workgroups,
    })?])
}

fn check_pool(op: &str, s: &PoolShape, input: (&str, &Act), output: (&str, &Act)) -> Result<()> {
    s.validate(op)?;
    check_view(op, input.0, input.1, s.n, s.c, s.h * s.w)?;
    check_view(op, output.0, output.1, s.n, s.c, s.out_h() * s.out_w())
}

/// y = max over each window of x (padding never wins).
pub fn max_forward(gpu: &Gpu, s: &PoolShape, x: Act, y: Act) -> Result<Vec<Dispatch>> {
    pooled_forward(gpu, PoolEntry::MaxForward, s, x, y)
}

/// y = mean over each window of x, padding counted as zeros in a window of k² elements.
pub fn avg_forward(gpu: &Gpu, s: &PoolShape, x: Act, y: Act) -> Result<Vec<Dispatch>> {
    pooled_forward(gpu, PoolEntry::AvgForward, s, x, y)
}

fn pooled_forward(gpu: &Gpu, entry: PoolEntry, s: &PoolShape, x: Act, y: Act) -> Result<Vec<Dispatch>> {
    check_pool(entry.name(), s, ("x", &x), ("y", &y))?;
    if entry == PoolEntry::AvgForward && s.is_2x2_even() {
        return per_block(gpu, PoolEntry::AvgForward2x2, s, &[x, y], false, (s.out_w(), s.out_h()));
    }
    launch(
        gpu,
        Kernel {
            entry,
            constants: &[("WG", WG as f64)],
            params: Params::pool(s, &[x, y], false),
            views: &[x, y],
            workgroups: grid(ceil_div(s.out_len(), WG as usize)),
        },
    )
}

/// Workgroup of the entries with one lane per 2×2 block (columns, rows of blocks).
const WXY: [(&str, f64); 2] = [("WX", 8.0), ("WY", 8.0)];

/// An entry with one lane per 2×2 block, over `blocks` = (columns, rows) of blocks per plane:
/// rows of every plane past the 65535-group limit of one dimension continue in z (the shader's
/// `block_at`).
fn per_block(
    gpu: &Gpu,
    entry: PoolEntry,
    s: &PoolShape,
    views: &[Act],
    accumulate: bool,
    blocks: (usize, usize),
) -> Result<Vec<Dispatch>> {
    let [y, z, _] = grid(ceil_div(s.n * s.c * blocks.1, WXY[1].1 as usize));
    let workgroups = [ceil_div(blocks.0, WXY[0].1 as usize), y, z];
    launch(gpu, Kernel { entry, constants: &WXY, params: Params::pool(s, views, accumulate), views, workgroups })
}

/// Windows of one axis that touch a run of `t` input pixels, at most.
fn windows_per_tile(t: usize, s: &PoolShape) -> usize {
    (t + s.k - 2) / s.stride + 1
}

/// The square input tile of max-pool backward: as large as the image needs (up to 16×16), and
/// small enough that the windows touching it fit the workgroup arrays.
fn max_backward_tile(s: &PoolShape) -> Result<usize> {
    let want = s.h.max(s.w).next_power_of_two().clamp(4, 16);
    let mut t = want;
    while t >= 1 {
        if windows_per_tile(t, s).min(s.out_h()) * windows_per_tile(t, s).min(s.out_w()) <= MAX_WINDOWS {
            return Ok(t);
        }
        t /= 2;
    }
    Err(Error::shape("max_backward", format!("kernel {} with stride {} is too large", s.k, s.stride)))
}

/// dx (+)= the gradient of max pooling: each dy goes to its window's first maximum of x.
pub fn max_backward(gpu: &Gpu, s: &PoolShape, x: Act, dy: Act, dx: Act, accumulate: bool) -> Result<Vec<Dispatch>> {
    check_pool("max_backward", s, ("x", &x), ("dy", &dy))?;
    check_view("max_backward", "dx", &dx, s.n, s.c, s.h * s.w)?;
    if s.k == 3 && s.stride == 2 && s.pad == 1 {
        return per_block(
            gpu,
            PoolEntry::MaxBackward3s2,
            s,
            &[x, dx, dy],
            accumulate,
            (s.w.div_ceil(2), s.h.div_ceil(2)),
        );
    }
    let t = max_backward_tile(s)?;
    let tiles = s.h.div_ceil(t) * s.w.div_ceil(t);
    launch(
        gpu,
        Kernel {
            entry: PoolEntry::MaxBackward,
            constants: &[("TX", t as f64), ("TY", t as f64)],
            params: Params::pool(s, &[x, dx, dy], accumulate),
            views: &[x, dx, dy],
            workgroups: grid((s.n * s.c * tiles) as u32),
        },
    )
}

/// dx (+)= the gradient of average pooling: each input gathers dy / k² from its windows.
pub fn avg_backward(gpu: &Gpu, s: &PoolShape, dy: Act, dx: Act, accumulate: bool) -> Result<Vec<Dispatch>> {
    check_pool("avg_backward", s, ("dx", &dx), ("dy", &dy))?;
    if s.is_2x2_even() {
        return per_block(gpu, PoolEntry::AvgBackward2x2, s, &[dy, dx], accumulate, (s.out_w(), s.h.div_ceil(2)));
    }
    launch(
        gpu,
        Kernel {
            entry: PoolEntry::AvgBackward,
            constants: &[("WG", WG as f64)],
            params: Params::pool(s, &[dy, dx], accumulate),
            views: &[dy, dx],
            workgroups: grid(ceil_div(s.in_len(), WG as usize)),
        },
    )
}

fn plane_params(n: usize, c: usize, hw: usize, views: &[Act], accumulate: bool) -> Params {
    let s = PoolShape { n, c, h: hw, w: 1, k: 1, stride: 1, pad: 0 };
    Params::pool(&s, views, accumulate)
}

fn check_planes(op: &str, n: usize, c: usize, hw: usize) -> Result<()> {
    if n == 0 || c == 0 || hw == 0 {
        return Err(Error::shape(op, format!("empty tensor: {n} images, {c} channels, {hw} pixels")));
    }
    check_u32(op, n * c * hw)
}

/// y[n, c] = mean of each h·w plane of x: one workgroup per plane, a tree reduction.
/// `y` is a view with one element per channel (usually `Act::whole(buf, c)`).
pub fn global_avg_forward(gpu: &Gpu, n: usize, c: usize, hw: usize, x: Act, y: Act) -> Result<Vec<Dispatch>> {
    let op = "global_avg_forward";
    check_planes(op, n, c, hw)?;
    check_view(op, "x", &x, n, c, hw)?;
    check_view(op, "y", &y, n, c, 1)?;
    // Enough invocations for the plane: 49 pixels do not need 256 of them.
    let vec4 = hw % 4 == 0;
    let loads = if vec4 { hw / 4 } else { hw };
    let wg = loads.next_power_of_two().clamp(32, WG as usize);
    let params = plane_params(n, c, hw, &[x, y], false);
    launch(
        gpu,
        Kernel {
            entry: if vec4 { PoolEntry::GlobalAvgForward4 } else { PoolEntry::GlobalAvgForward },
            constants: &[("WG", wg as f64)],
            params,
            views: &[x, y],
            workgroups: grid((n * c) as u32),
        },
    )
}

/// dx (+)= dy[n, c] / (h·w) at every pixel of the plane.
pub fn global_avg_backward(
    gpu: &Gpu,
    n: usize,
    c: usize,
    hw: usize,
    dy: Act,
    dx: Act,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let op = "global_avg_backward";
    check_planes(op, n, c, hw)?;
    check_view(op, "dy", &dy, n, c, 1)?;
    check_view(op, "dx", &dx, n, c, hw)?;
    launch(
        gpu,
        Kernel {
            entry: PoolEntry::GlobalAvgBackward,
            constants: &[("WG", WG as f64)],
            params: plane_params(n, c, hw, &[dy, dx], accumulate),
            views: &[dy, dx],
            workgroups: grid(ceil_div(n * c * hw, WG as usize)),
        },
    )
}

/// dst (+)= src over `c` channels of `n` images of `hw` pixels, between views of two buffers.
pub fn copy_channels(
    gpu: &Gpu,
    n: usize,
    c: usize,
    hw: usize,
    src: Act,
    dst: Act,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let op = "copy_channels";
    check_planes(op, n, c, hw)?;
    check_view(op, "src", &src, n, c, hw)?;
    check_view(op, "dst", &dst, n, c, hw)?;
    // Whole planes of 4k pixels keep every view 16-byte aligned: copy vec4s.
    let (entry, unit) = if hw % 4 == 0 { (PoolEntry::CopyChannels4, hw / 4) } else { (PoolEntry::CopyChannels, hw) };
    launch(
        gpu,
        Kernel {
            entry,
            constants: &[("WG", WG as f64)],
            params: plane_params(n, c, unit, &[src, dst], accumulate),
            views: &[src, dst],
            workgroups: grid(ceil_div(n * c * unit, WG as usize)),
        },
    )
}

// ---- CPU references (f64, dense [n, c, h, w] tensors) ----

/// The in-image part of window (oy, ox): rows y0..y1, columns x0..x1, and its start with padding.
fn window(s: &PoolShape, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
    let y0 = (oy * s.stride).saturating_sub(s.pad);
    let x0 = (ox * s.stride).saturating_sub(s.pad);
    let y1 = (oy * s.stride + s.k - s.pad).min(s.h);
    let x1 = (ox * s.stride + s.k - s.pad).min(s.w);
    (y0, y1, x0, x1)
}

/// Plane-local index of the first maximum of window (oy, ox) of `plane`, as PyTorch picks it.
fn argmax_ref(s: &PoolShape, plane: &[f64], oy: usize, ox: usize) -> usize {
    let (y0, y1, x0, x1) = window(s, oy, ox);
    let mut best: Option<(f64, usize)> = None;
    for y in y0..y1 {
        for x in x0..x1 {
            let v = plane[y * s.w + x];
            if best.is_none_or(|(b, _)| v > b || v.is_nan()) {
                best = Some((v, y * s.w + x));
            }
        }
    }
    best.expect("a window always holds an input pixel").1
}

/// PyTorch's divisor with count_include_pad: the window clipped to the padded input.
fn divisor_ref(s: &PoolShape, oy: usize, ox: usize) -> f64 {
    let (ys, xs) = (oy * s.stride, ox * s.stride); // window start in padded coordinates
    let hy = (ys + s.k).min(s.h + 2 * s.pad) - ys;
    let hx = (xs + s.k).min(s.w + 2 * s.pad) - xs;
    (hy * hx) as f64
}

/// Calls f(plane, oy, ox, output index) for every output element, in order.
fn for_each_output(s: &PoolShape, mut f: impl FnMut(usize, usize, usize, usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    for plane in 0..s.n * s.c {
        for oy in 0..oh {
            for ox in 0..ow {
                f(plane, oy, ox, (plane * oh + oy) * ow + ox);
            }
        }
    }
}

pub fn max_forward_ref(s: &PoolShape, x: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    let mut y = vec![0.0; s.out_len()];
    for_each_output(s, |plane, oy, ox, o| {
        let p = &x[plane * hw..(plane + 1) * hw];
        y[o] = p[argmax_ref(s, p, oy, ox)];
    });
    y
}

pub fn max_backward_ref(s: &PoolShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    let mut dx = vec![0.0; s.in_len()];
    for_each_output(s, |plane, oy, ox, o| {
        let i = argmax_ref(s, &x[plane * hw..(plane + 1) * hw], oy, ox);
        dx[plane * hw + i] += dy[o];
    });
    dx
}

pub fn avg_forward_ref(s: &PoolShape, x: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    let mut y = vec![0.0; s.out_len()];
    for_each_output(s, |plane, oy, ox, o| {
        let (y0, y1, x0, x1) = window(s, oy, ox);
        let mut sum = 0.0;
        for yy in y0..y1 {
            for xx in x0..x1 {
                sum += x[plane * hw + yy * s.w + xx];
            }
        }
        y[o] = sum / divisor_ref(s, oy, ox);
    });
    y
}

pub fn avg_backward_ref(s: &PoolShape, dy: &[f64]) -> Vec<f64> {
    let hw = s.h * s.w;
    let mut dx = vec![0.0; s.in_len()];
    for_each_output(s, |plane, oy, ox, o| {
        let (y0, y1, x0, x1) = window(s, oy, ox);
        let g = dy[o] / divisor_ref(s, oy, ox);
        for yy in y0..y1 {
            for xx in x0..x1 {
                dx[plane * hw + yy * s.w + xx] += g;
            }
        }
    });
    dx
}

/// [n, c, hw] → [n, c] means.
pub fn global_avg_forward_ref(n: usize, c: usize, hw: usize, x: &[f64]) -> Vec<f64> {
    (0..n * c).map(|p| x[p * hw..(p + 1) * hw].iter().sum::<f64>() / hw as f64).collect()
}

pub fn global_avg_backward_ref(n: usize, c: usize, hw: usize, dy: &[f64]) -> Vec<f64> {
    (0..n * c * hw).map(|i| dy[i / hw] / hw as f64).collect()
}

/// A CPU channel view: a slice of `c_total` channels per image, viewed from channel `c_off`.
#[derive(Clone, Copy, Debug)]
pub struct ViewRef {
    pub c_off: usize,
    pub c_total: usize,
}

/// dst (+)= src over `c` channels of `n` images of `hw` pixels, between views.
#[allow(clippy::too_many_arguments)]
pub fn copy_channels_ref(
    n: usize,
    c: usize,
    hw: usize,
    src: &[f64],
    sv: ViewRef,
    dst: &mut [f64],
    dv: ViewRef,
    accumulate: bool,
) {
    for img in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                let v = src[(img * sv.c_total + sv.c_off + ch) * hw + p];
                let o = &mut dst[(img * dv.c_total + dv.c_off + ch) * hw + p];
                *o = if accumulate { *o + v } else { v };
            }
        }
    }
}
