//! 2-D convolution (NCHW activations, OIHW weights, square stride and padding), forward and
//! backward, as register-tiled implicit GEMMs (see `shaders/conv.wgsl`).
//!
//! - forward: rows = output channels, columns = output pixels `n·p·q`, K = `c_in·kh·kw`;
//! - backward data: rows = input channels, columns = input pixels `n·h·w`, K = `c_out·kh·kw`;
//! - backward weight: rows = output channels, columns = `c_in·kh·kw`, K = `n·p·q`, split into
//!   slices whose partial sums go to a scratch buffer and are then added up in parallel; 1×1
//!   stride-1 unpadded ones on images of 4 pixels or more run as `ops::gemm`'s split-K product
//!   with the images summed instead ([`pointwise_gemm_weight`]).
//!
//! The forward and backward data of 1×1 stride-1 unpadded convolutions (most of DenseNet) run as
//! `ops::gemm` ([`pointwise_gemm_config`]; a bias is added by a second dispatch), and so does
//! their backward weight on images of 4 pixels or more; on smaller ones it takes the conv
//! kernel's entry point without im2col index math (`backward_weight_1x1`). The
//! forward of 3×3 stride-1 pad-1 convolutions loads each input row window once for the three
//! horizontal taps, 8 pixels per lane on 4-aligned rows (`forward_3x3_v8`, see
//! [`row_window_forward`]); their backward data does the same with dy's row windows
//! (`backward_data_3x3_v8`, see [`row_window_backward_data`]), and their backward weight with
//! x's, one input channel's 9 taps per lane (`backward_weight_3x3`, see
//! [`row_window_backward_weight`]). The kernels need subgroups of at least 8 invocations
//! (`wgpu::Features::SUBGROUP`; lavapipe has 8).
//!
//! Tile sizes ([`Tiles`]) are arguments: the `*_tiled` builders take them, and the executor
//! looks them up in the [`TileTable`] it got from `ops::tune` before lowering. This module
//! never tunes, times or reads the tile cache (`ops::tune` depends on it, not the other way
//! round); [`forward`], [`backward_data`] and [`backward_weight`] use the heuristic
//! ([`Tiles::heuristic`]), for tests and benches.

use std::collections::HashMap;
use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use super::gemm::{self, GemmConfig, GemmShape, MatrixLayout};
use super::Act;
use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, ConvEntry, Dispatch, Gpu, Launch, MAX_GROUPS_PER_DIM};

/// Shape of a convolution: input `n × c_in × h × w`, weight `c_out × c_in × kh × kw`, the same
/// stride and zero padding along both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

const OP: &str = "conv2d";

impl Conv2dShape {
    /// Output height, PyTorch's rule: (h + 2·pad − kh) / stride + 1.
    pub fn p(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width.
    pub fn q(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.p() * self.q()
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }
    /// Multiply-adds ×2 of one pass (forward, backward data and backward weight all do this many).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.p() * self.q()) as f64 * (self.c_out * self.c_in * self.kh * self.kw) as f64
    }
    /// 1×1, stride 1, no padding: a plain GEMM.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// 3×3, stride 1, padding 1 (output the size of the input): the row-window kernels.
    pub fn is_3x3_same(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.stride == 1 && self.pad == 1
    }

    /// Checks that the shape makes sense and that its indices fit the kernels' 32-bit arithmetic.
    pub fn validate(&self) -> Result<()> {
        let s = self;
        let dims = [("n", s.n), ("c_in", s.c_in), ("h", s.h), ("w", s.w), ("c_out", s.c_out)];
        let dims = dims.into_iter().chain([("kh", s.kh), ("kw", s.kw), ("stride", s.stride)]);
        for (name, v) in dims {
            if v == 0 {
                return Err(Error::shape(OP, format!("{name} is 0 in {s:?}")));
            }
        }
        if s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw {
            return Err(Error::shape(
                OP,
                format!("the {}x{} kernel is larger than the padded {}x{} input", s.kh, s.kw, s.h, s.w),
            ));
        }
        if s.c_out > 65535 {
            return Err(Error::shape(OP, format!("c_out {} exceeds 65535", s.c_out)));
        }
        let biggest = [s.x_len(), s.y_len(), s.weight_len(), backward_weight_scratch_len(s)];
        if biggest.iter().any(|&v| v >= 1 << 31) {
            return Err(Error::shape(OP, format!("{s:?} has tensors of 2^31 or more elements")));
        }
        Ok(())
    }
}

/// The three kernels of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    Forward,
    BackwardData,
    BackwardWeight,
}

/// Register-tile sizes: `tm` channels × `tn` columns per invocation, `wg` invocations per
/// workgroup. [`Tiles::heuristic`] is the default choice; `ops::tune` times a few candidates
/// per shape on the device and caches the fastest. The results do not depend on the tiles:
/// every output sums its K terms in the same order whatever the tile shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiles {
    pub wg: u32,
    pub tm: u32,
    pub tn: u32,
}

const MAX_TM: u32 = 16;
const MAX_TN: u32 = 4;
const RWG: u32 = 256;

/// The register-tile height for `rows` rows: all of them when they fit (c_out = 12 in a DenseNet
/// 3×3 would leave a quarter of a 16-row tile idle), else 16, 12 or 8, whichever wastes the least
/// work per load (the TM rows of one K step cost TM/8 loads per lane, the TN columns TN loads).
pub fn fit_tm(rows: usize, tn: u32) -> u32 {
    if rows <= MAX_TM as usize {
        return rows.max(1) as u32;
    }
    let score = |tm: u32| {
        let used = rows as f64 / (rows.div_ceil(tm as usize) * tm as usize) as f64;
        used * (tm * tn) as f64 / (tn as f64 + tm as f64 / 8.0)
    };
    [16, 12, 8].into_iter().max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(MAX_TM)
}

/// The workgroup size (8, 16 or 32 invocations) whose `wg·tn`-column tiles cover `cols` columns
/// with the least padding; the larger on a tie.
pub fn fit_wg(cols: usize, tn: u32) -> u32 {
    let waste = |wg: u32| cols.div_ceil((wg * tn) as usize) * (wg * tn) as usize - cols;
    [32, 16, 8].into_iter().min_by_key(|&wg| waste(wg)).unwrap_or(32)
}

impl Tiles {
    /// The heuristic tiles of `pass` on `s` (what the tuner's `Mode::Off` uses, and what a
    /// [`TileTable`] gives for shapes it does not name).
    pub fn heuristic(pass: Pass, s: &Conv2dShape) -> Tiles {
        match pass {
            Pass::Forward => Tiles::forward(s),
            Pass::BackwardData => Tiles::backward_data(s),
            Pass::BackwardWeight => Tiles::backward_weight(s),
        }
    }
    /// Rows are output channels, columns output pixels (many).
    pub fn forward(s: &Conv2dShape) -> Tiles {
        if row_window_forward(s) && s.w % 4 == 0 {
            // forward_3x3_v8: 8 pixels per lane.
            Tiles { wg: 32, tm: fit_tm(s.c_out, 8), tn: 8 }
        } else {
            Tiles::pixel_columns(s.c_out, row_window_forward(s))
        }
    }
    /// Rows are input channels, columns input pixels (many).
    pub fn backward_data(s: &Conv2dShape) -> Tiles {
        if row_window_backward_data(s) && s.w % 4 == 0 {
            // backward_data_3x3_v8: 8 pixels per lane, at most 8 channels per tile: lavapipe's
            // LLVM compiles it in 4.6 s with 8, 8.7 s with 12 and 12 s with 16 (one pipeline,
            // but a cold first step waits for it) for 15-20% more speed (the tuner, where it
            // runs, may still pick 16).
            Tiles { wg: 32, tm: fit_tm(s.c_in, 8).min(8), tn: 8 }
        } else {
            Tiles::pixel_columns(s.c_in, row_window_backward_data(s))
        }
    }
    /// Rows are output channels, columns c_in·kh·kw: as few as 24 in a DenseNet-BC, so the tile
    /// width follows the column count instead of leaving most lanes idle.
    /// The row-window 3×3 kernel (`row_window_backward_weight`) takes one input channel per
    /// lane and all the output channels in one tile up to 16, else tiles of 8 (which measured
    /// 4-15% faster than 16 with 32 output channels).
    pub fn backward_weight(s: &Conv2dShape) -> Tiles {
        if row_window_backward_weight(s) {
            let tm = if s.c_out <= 16 {
                s.c_out as u32
            } else {
                let waste = |tm: u32| s.c_out.div_ceil(tm as usize) * tm as usize - s.c_out;
                [8, 12, 16].into_iter().min_by_key(|&tm| waste(tm)).unwrap_or(8)
            };
            return Tiles { wg: fit_wg(s.c_in, 1), tm, tn: 4 };
        }
        let cols = s.c_in * s.kh * s.kw;
        let tn = 2;
        Tiles { wg: fit_wg(cols, tn), tm: fit_tm(s.c_out, tn), tn }
    }
    /// Every column is a gather of its own, and two per invocation measured faster on lavapipe;
    /// the row-window 3×3 kernels (`window`) take four pixels of a row per invocation. (1×1
    /// convolutions run as the GEMM, whose tiles are its own.)
    fn pixel_columns(rows: usize, window: bool) -> Tiles {
        if window {
            Tiles { wg: 32, tm: fit_tm(rows, 4), tn: 4 }
        } else {
            Tiles { wg: 32, tm: fit_tm(rows, 2), tn: 2 }
        }
    }
    pub fn check(&self) -> Result<()> {
        // Lanes 0..8 of every subgroup broadcast the channel operand: whole groups of 8 lanes.
        let wg_ok = (8..=1024).contains(&self.wg) && self.wg % 8 == 0;
        let ok = (1..=MAX_TM).contains(&self.tm) && (1..=MAX_TN).contains(&self.tn) && wg_ok;
        if ok {
            Ok(())
        } else {
            Err(Error::shape(
                OP,
                format!("tiles {self:?}: need 1 <= tm <= {MAX_TM}, 1 <= tn <= {MAX_TN}, wg a multiple of 8 <= 1024"),
            ))
        }
    }
    /// [`Tiles::check`], and the 8 pixels per lane that `forward_3x3_v8` takes where the forward
    /// of `s` runs as it (rows of a multiple of 4 pixels).
    pub fn check_forward(&self, s: &Conv2dShape) -> Result<()> {
        if self.tn == 8 && row_window_forward(s) && s.w % 4 == 0 {
            Tiles { tn: 4, ..*self }.check()
        } else {
            self.check()
        }
    }
    /// [`Tiles::check`], and the 8 pixels per lane that `backward_data_3x3_v8` takes where the
    /// backward data of `s` runs as it (rows of a multiple of 4 pixels).
    pub fn check_backward_data(&self, s: &Conv2dShape) -> Result<()> {
        if self.tn == 8 && row_window_backward_data(s) && s.w % 4 == 0 {
            Tiles { tn: 4, ..*self }.check()
        } else {
            self.check()
        }
    }
    /// Whether the kernels of `pass` on `s` take these tiles: [`Tiles::check_forward`],
    /// [`Tiles::check_backward_data`] or [`Tiles::check`].
    pub fn check_pass(&self, pass: Pass, s: &Conv2dShape) -> Result<()> {
        match pass {
            Pass::Forward => self.check_forward(s),
            Pass::BackwardData => self.check_backward_data(s),
            Pass::BackwardWeight => self.check(),
        }
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("WG", self.wg as f64), ("TM", self.tm as f64), ("TN", self.tn as f64)]
    }
    fn groups(&self, rows: usize, cols: usize) -> usize {
        rows.div_ceil(self.tm as usize) * cols.div_ceil((self.wg * self.tn) as usize)
    }
    /// The columns of the row-window kernels: every image row cut into segments of `tn` pixels.
    fn row_columns(&self, s: &Conv2dShape) -> usize {
        s.n * s.h * s.w.div_ceil(self.tn as usize) * self.tn as usize
    }
}

/// The tiles of every convolution a step runs, chosen before lowering (by `ops::tune`, or
/// named by a test): lowering only looks them up, so it never times, reads the environment or
/// writes files. Shapes it does not name get [`Tiles::heuristic`]. Keys are the shapes the
/// kernels are built for: a batch chunk's own `n` for the forward and backward data, the whole
/// batch for the backward weight (whose chunks share one set of tiles).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TileTable {
    tiles: HashMap<(Pass, Conv2dShape), Tiles>,
}

impl TileTable {
    /// An empty table: the heuristic everywhere.
    pub fn new() -> TileTable {
        TileTable::default()
    }

    /// Names the tiles of `pass` on `s`; refused (a shape error naming the tiles) where the
    /// kernels do not take them.
    pub fn insert(&mut self, pass: Pass, s: &Conv2dShape, t: Tiles) -> Result<()> {
        t.check_pass(pass, s)?;
        self.tiles.insert((pass, *s), t);
        Ok(())
    }

    /// The tiles of `pass` on `s`: the named ones, else the heuristic.
    pub fn get(&self, pass: Pass, s: &Conv2dShape) -> Tiles {
        self.tiles.get(&(pass, *s)).copied().unwrap_or_else(|| Tiles::heuristic(pass, s))
    }

    /// How many (pass, shape) pairs the table names.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) cin: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) cout: u32,
    pub(crate) kh: u32,
    pub(crate) kw: u32,
    pub(crate) stride: u32,
    pub(crate) pad: u32,
    pub(crate) p: u32,
    pub(crate) q: u32,
    pub(crate) accumulate: u32,
    pub(crate) a_off: u32,
    pub(crate) a_tot: u32,
    pub(crate) b_off: u32,
    pub(crate) b_tot: u32,
    pub(crate) splits: u32,
    pub(crate) split_len: u32,
    pub(crate) len: u32,
    pub(crate) _pad: u32,
}

/// `a` is the input-side tensor (x or dx), `b` the output-side one (y or dy).
fn params(s: &Conv2dShape, a: &Act, b: &Act) -> Params {
    Params {
        n: s.n as u32,
        cin: s.c_in as u32,
        h: s.h as u32,
        w: s.w as u32,
        cout: s.c_out as u32,
        kh: s.kh as u32,
        kw: s.kw as u32,
        stride: s.stride as u32,
        pad: s.pad as u32,
        p: s.p() as u32,
        q: s.q() as u32,
        a_off: a.c_off,
        a_tot: a.c_total,
        b_off: b.c_off,
        b_tot: b.c_total,
        ..Default::default()
    }
}

/// Checks that a view of `channels` channels of `pixels` pixels per image fits its buffer.
fn check_act(name: &str, a: &Act, n: usize, channels: usize, pixels: usize) -> Result<()> {
    a.check(OP, name, n, channels, pixels)
}

fn check_buf(name: &str, buf: BufRange, len: usize) -> Result<()> {
    super::check_len(OP, name, buf, len)
}

fn launch(
    gpu: &Gpu,
    entry: ConvEntry,
    constants: &[(&str, f64)],
    p: &Params,
    buffers: &[BufRange],
    groups: usize,
) -> Result<Dispatch> {
    gpu.dispatch(Launch {
        entry: entry.into(),
        constants,
        params: bytemuck::bytes_of(p),
        buffers,
        workgroups: grid(groups as u32),
    })
}

/// The kernels share loads across a subgroup with `subgroupBroadcast` from lanes 0..8.
fn check_subgroups(gpu: &Gpu) -> Result<()> {
    if crate::gpu::has_training_subgroups(gpu.features, &gpu.info) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "conv2d needs subgroups of at least 8 invocations, which {} does not offer",
        gpu.describe()
    )))
}

/// The row-window kernels' SHORT_K: whether their K loop over `k_channels` channels ends in a
/// block of at most 4 (then walked as one, instead of a block of 8 half empty: DenseNet-BC's
/// 12-channel dy in backward data is 8 + 4). Elsewhere the pipeline leaves that path out.
fn short_k(k_channels: usize) -> (&'static str, f64) {
    ("SHORT_K", (1..=4).contains(&(k_channels % 8)) as u8 as f64)
}

/// Whether the forward of `s` runs as `forward_3x3` (`forward_3x3_v4` / `_v8` with 4 / 8 pixels
/// per lane on rows of a multiple of 4 pixels: the same sums in the same order): a 3×3 stride-1
/// pad-1 convolution whose lanes load each input row window once for the three horizontal taps,
/// with the weights transposed first so that a lane loads 4 rows per vec4 (`weights_3x3_t`;
/// `forward_3x3_v8_oihw` with 16-row tiles reads them as they are). The 8-pixel kernel, the
/// heuristic on 4-aligned rows, does about twice `_v4`'s FMAs per load: 29-32 GFLOP/s against
/// 20-24 on DenseNet's shapes on lavapipe (`forward` was about 10% slower than `_v4`). (With fewer than 8
/// input channels its blocks of 8 channels per row would be mostly empty; `forward_flat` walks
/// (channel, tap) as one index instead.) By shape only, so results never depend on tuning.
pub fn row_window_forward(s: &Conv2dShape) -> bool {
    s.is_3x3_same() && s.c_in >= 8
}

/// Whether the backward data of `s` runs as `backward_data_3x3` (`_v4` / `_v8` with 4 / 8 pixels
/// per lane on rows of a multiple of 4 pixels: the same sums in the same order): every 3×3
/// stride-1 pad-1 convolution. A lane loads each dy row window once per (output channel, ky)
/// for the three kx taps and shares the weights by subgroup broadcast, the last block of output
/// channels taking 4 when at most 4 are left, so DenseNet-BC's 12-channel dy wastes nothing
/// (`backward_data_flat`, used before, loads 4 values per 32 FMAs). By shape only, so results
/// never depend on tuning.
pub fn row_window_backward_data(s: &Conv2dShape) -> bool {
    s.is_3x3_same()
}

/// Whether the backward weight of `s` runs as `backward_weight_3x3` (`_v4` on rows of a
/// multiple of 4 pixels: the same sums in the same order): a 3×3 stride-1 pad-1 convolution,
/// each lane one input channel's 9 taps, loading its x row windows once for the three
/// horizontal taps of 8 pixels and sharing dy by subgroup broadcast: 12 + TM loads for
/// 72·TM FMAs (`backward_weight` gathers every (channel, tap) column: 8·TN + TM for 8·TN·TM).
/// About 1.7-2× `backward_weight` on DenseNet's shapes on lavapipe (W1 32²: 25 → 45 GFLOP/s).
/// The reduction's slices are whole 8-pixel row segments. With fewer than 8 input channels
/// most lanes would idle (the stem's 3: 4.4 → 5.6 ms on W1), so those keep `backward_weight`.
/// By shape only, so results never depend on tuning.
pub fn row_window_backward_weight(s: &Conv2dShape) -> bool {
    s.is_3x3_same() && s.c_in >= 8
}

/// The GEMM tiles of a 1×1 convolution run as `ops::gemm`: 16 rows, 4 columns per lane, and
/// as many lanes as fit the images (see [`pointwise_gemm_config`]).
const GEMM: GemmConfig = GemmConfig { wg: 64, tm: 16, tn: 4, vec4: true };

/// Lanes of the 1×1 forward and backward-data GEMMs on a CPU device (one SIMD fiber), for
/// images of up to 65535 column tiles of 32 pixels (wider workgroups above that).
const GEMM_WG_CPU: u32 = 8;

/// Whether the forward (without bias) and backward data of `s` run as the batched strided GEMM,
/// one product per image (see [`pointwise_gemm_config`]).
pub fn pointwise_gemm(s: &Conv2dShape) -> bool {
    s.is_pointwise()
}

/// The GEMM tiles of the forward and backward data of a 1×1 convolution `s` (every one: they
/// run as the GEMM). `gemm.wgsl` loads the weights as vec4s and reaches 1.5–2× the conv
/// kernels' rate on DenseNet's 1×1 shapes (7×7 and 14×14 images included), and compiles in a
/// fraction of their time on lavapipe. Its column tiles stop at image boundaries, so the
/// workgroup is the widest of 64, 32, 16 or 8 lanes whose tiles leave at most an eighth of the
/// image's columns empty, else the one that leaves fewest. On a CPU device (llvmpipe) 8 lanes,
/// one SIMD fiber (`GEMM_WG_CPU`), wider only where an image's tiles would overflow a grid
/// dimension: a workgroup's fibers run one after another there and share nothing (A reaches
/// each fiber through its own subgroup broadcasts), so wider workgroups only cost an extra
/// pipeline each, 1.5-4 s of LLVM on a cold start. The choice depends on the device type and
/// shape only, and the lanes' sums do not depend on it, so results are the same whatever it is.
pub fn pointwise_gemm_config(gpu: &Gpu, s: &Conv2dShape) -> Option<GemmConfig> {
    if !s.is_pointwise() {
        return None;
    }
    let hw = s.h * s.w;
    if gpu.plans_for_cpu() {
        // Wider only where an image's column tiles would not fit one grid dimension.
        let fits = |wg: u32| hw.div_ceil((wg * GEMM.tn) as usize) <= MAX_GROUPS_PER_DIM as usize;
        let wg = [GEMM_WG_CPU, 16, 32].into_iter().find(|&wg| fits(wg)).unwrap_or(64);
        return Some(GemmConfig { wg, ..GEMM });
    }
    let waste = |wg: u32| {
        let cols = (wg * GEMM.tn) as usize;
        hw.div_ceil(cols) * cols - hw
    };
    const LANES: [u32; 4] = [64, 32, 16, 8];
    let wg = LANES.into_iter().find(|&wg| waste(wg) <= hw / 8);
    let wg = wg.unwrap_or_else(|| LANES.into_iter().min_by_key(|&wg| waste(wg)).unwrap_or(64));
    Some(GemmConfig { wg, ..GEMM })
}

/// The GEMM tiles of a 1×1 backward weight (see [`pointwise_gemm_weight`]): one subgroup of 8
/// lanes × 4 columns per workgroup, since C is only c_out × c_in (48 × 24..120 in a DenseNet-BC):
/// 256-column tiles would leave most lanes idle. Measured on lavapipe against 16 and 32 lanes,
/// 8-row tiles and 8 columns per lane, this is the fastest on every DenseNet shape.
const GEMM_BW: GemmConfig = GemmConfig { wg: 8, tm: 16, tn: 4, vec4: true };

/// Work items (tiles × slices) the split of a 1×1 backward weight aims at: a few per core, so
/// that the reduction over n·h·w keeps every core busy when C has only a few tiles. More slices
/// cost partial sums to write and add up: on lavapipe 4 to 16 slices of a 48 × 96 C run alike,
/// 64 about 25% slower at 8×8 images.
const GEMM_BW_ITEMS: usize = 32;

/// Whether the backward weight of `s` runs as the batched strided GEMM with split-K
/// ([`gemm::gemm_split`]): dW = Σ_n dy_n · x_nᵀ, the images summed (C batch stride 0). The conv
/// kernel gathers every x column on its own; the GEMM loads dy and x as vec4s along the
/// pixels (`gemm_kk`). On lavapipe it measured about 2× the conv kernel's rate on every
/// DenseNet-BC 1×1 shape of W1 (32² to 8² images) and 3 to 4.5× on DenseNet-121's at batch 8
/// (56² to 7² images, these through scalar loads), and is still ahead down to 2×2 images. With one pixel per image (a Linear layer) each reduction step of four would be 3/4
/// padding: the conv kernel is faster there (as it is where the GEMM's grid, one workgroup per
/// 32 input channels along x, would be too wide). By shape only, so results never depend on
/// tuning.
pub fn pointwise_gemm_weight(s: &Conv2dShape) -> bool {
    let col_tiles = s.c_in.div_ceil((GEMM_BW.wg * GEMM_BW.tn) as usize);
    s.is_pointwise() && s.h * s.w >= 4 && col_tiles <= MAX_GROUPS_PER_DIM as usize
}

/// The product and split count of [`pointwise_gemm_weight`] for the images of one chunk of
/// `s` (`s.n` of them), given the `channels × h·w` layouts of x and dy: C = dW [c_out × c_in],
/// A = dy_n [c_out × h·w], B = x_nᵀ [h·w × c_in]. The split depends on the sizes only, not on
/// the views, so [`backward_weight_chunks_scratch_len`] gets the same one from dense layouts.
fn weight_gemm(s: &Conv2dShape, x: MatrixLayout, dy: MatrixLayout) -> (GemmShape, usize) {
    let c = MatrixLayout::row_major(s.c_out, s.c_in).with_batch_stride(0);
    let g = GemmShape { m: s.c_out, n: s.c_in, k: s.h * s.w, batch: s.n, a: dy, b: x.t(), c };
    (g, gemm::suggest_splits(&g, &GEMM_BW, GEMM_BW_ITEMS))
}

/// Layout of an NCHW channel view as a batch of `channels × pixels` matrices.
fn act_layout(a: &Act, pixels: usize) -> MatrixLayout {
    let p = pixels;
    MatrixLayout { offset: a.c_off as usize * p, row_stride: p, col_stride: 1, batch_stride: a.c_total as usize * p }
}

/// y = conv(x, weight) + bias. `x` views `c_in` channels, `y` `c_out` channels (both may be
/// channel slices of larger buffers); `weight` is OIHW, `bias` has `c_out` values. Heuristic
/// tiles ([`forward_tiled`] takes others).
pub fn forward<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: Act,
    weight: impl Into<BufRange<'a>>,
    bias: Option<BufRange<'a>>,
    y: Act,
) -> Result<Vec<Dispatch>> {
    forward_tiled(gpu, s, x, weight, bias, y, Tiles::heuristic(Pass::Forward, s))
}

/// [`forward`] with explicit tile sizes (from a [`TileTable`], or a tuning candidate).
pub fn forward_tiled<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: Act,
    weight: impl Into<BufRange<'a>>,
    bias: Option<BufRange<'a>>,
    y: Act,
    t: Tiles,
) -> Result<Vec<Dispatch>> {
    let weight = weight.into();
    s.validate()?;
    t.check_forward(s)?;
    check_subgroups(gpu)?;
    check_act("x", &x, s.n, s.c_in, s.h * s.w)?;
    check_act("y", &y, s.n, s.c_out, s.p() * s.q())?;
    check_buf("weight", weight, s.weight_len())?;
    if let Some(b) = bias {
        check_buf("bias", b, s.c_out)?;
    }
    if let Some(cfg) = pointwise_gemm_config(gpu, s) {
        let hw = s.h * s.w;
        let w = MatrixLayout::row_major(s.c_out, s.c_in).with_batch_stride(0);
        let g = GemmShape::new(s.c_out, hw, s.c_in, s.n, w, act_layout(&x, hw), act_layout(&y, hw))?;
        let mut d = gemm::gemm_with(gpu, &g, weight, x.buf, y.buf, false, 1.0, &cfg)?;
        if let Some(b) = bias {
            // One bias per channel: a row of each image's channels × pixels matrix.
            let per_row = MatrixLayout { offset: 0, row_stride: 1, col_stride: 0, batch_stride: 0 };
            d.push(gemm::add_bias(gpu, s.n, s.c_out, hw, (b, per_row), (y.buf, g.c))?);
        }
        return Ok(d);
    }
    let p = params(s, &x, &y);
    let mut groups = t.groups(s.c_out, s.n * s.p() * s.q());
    let entry = if row_window_forward(s) {
        groups = t.groups(s.c_out, t.row_columns(s));
        // Rows of whole vec4s: the window's middle pixels as vec4 loads (the same sums). With
        // 16-row tiles, 8 pixels per lane measured faster reading the OIHW weights.
        if t.tn == 8 && s.w % 4 == 0 && t.tm > 12 {
            ConvEntry::Forward3x3V8Oihw
        } else if t.tn == 8 && s.w % 4 == 0 {
            ConvEntry::Forward3x3V8
        } else if t.tn == 4 && s.w % 4 == 0 {
            ConvEntry::Forward3x3V4
        } else {
            ConvEntry::Forward3x3
        }
    } else if s.c_in < 8 {
        // Blocks of 8 channels per tap would be mostly empty: walk (channel, tap) as one index.
        ConvEntry::ForwardFlat
    } else {
        ConvEntry::Forward
    };
    // One entry point per kind, always with a bias: zeros stand in for a missing one.
    let zeros;
    let (bias, bias_bytes) = match bias {
        Some(b) => (b, 0),
        None => {
            zeros = gpu.zeros("conv2d zero bias", s.c_out)?;
            (BufRange::from(&zeros), zeros.size())
        }
    };
    let mut c = t.constants();
    if row_window_forward(s) {
        c.push(short_k(s.c_in));
    }
    let transposed = row_window_forward(s) && entry != ConvEntry::Forward3x3V8Oihw;
    if !transposed {
        let mut d = launch(gpu, entry, &c, &p, &[x.buf, y.buf, weight, bias], groups)?;
        d.owned_bytes = bias_bytes;
        return Ok(vec![d]);
    }
    // The other row-window kernels read the weights transposed, each K step's TM rows as vec4s
    // (`weights_3x3_t`, one per-lane load per 4 rows): a buffer of this dispatch list's own,
    // rewritten at every run (the weights change between runs).
    let len = s.c_out.div_ceil(t.tm as usize) * s.c_in * 9 * t.tm.next_multiple_of(4) as usize;
    let wt = gpu.zeros("conv2d 3x3 weights", len)?;
    let tc = [("TM", t.tm as f64), ("RWG", RWG as f64)];
    let tp = Params { len: len as u32, ..p };
    let mut transpose =
        launch(gpu, ConvEntry::Weights3x3T, &tc, &tp, &[weight, (&wt).into()], len.div_ceil(RWG as usize))?;
    transpose.owned_bytes = wt.size();
    let mut d = launch(gpu, entry, &c, &p, &[x.buf, y.buf, (&wt).into(), bias], groups)?;
    d.owned_bytes = bias_bytes;
    Ok(vec![transpose, d])
}

/// dx (+)= the gradient of the convolution with respect to its input, given `dy`. Heuristic
/// tiles ([`backward_data_tiled`] takes others).
pub fn backward_data<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    dy: Act,
    weight: impl Into<BufRange<'a>>,
    dx: Act,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    backward_data_tiled(gpu, s, dy, weight, dx, accumulate, Tiles::heuristic(Pass::BackwardData, s))
}

/// [`backward_data`] with explicit tile sizes (from a [`TileTable`], or a tuning candidate).
pub fn backward_data_tiled<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    dy: Act,
    weight: impl Into<BufRange<'a>>,
    dx: Act,
    accumulate: bool,
    t: Tiles,
) -> Result<Vec<Dispatch>> {
    let weight = weight.into();
    s.validate()?;
    t.check_backward_data(s)?;
    // 8 pixels per lane: only backward_data_3x3_v8 (two vec4s of a row per lane).
    let v8 = row_window_backward_data(s) && t.tn == 8 && s.w % 4 == 0;
    check_subgroups(gpu)?;
    check_act("dy", &dy, s.n, s.c_out, s.p() * s.q())?;
    check_act("dx", &dx, s.n, s.c_in, s.h * s.w)?;
    check_buf("weight", weight, s.weight_len())?;
    if let Some(cfg) = pointwise_gemm_config(gpu, s) {
        // dx = wᵀ · dy per image.
        let hw = s.h * s.w;
        let w = MatrixLayout::transposed(s.c_in, s.c_out).with_batch_stride(0);
        let g = GemmShape::new(s.c_in, hw, s.c_out, s.n, w, act_layout(&dy, hw), act_layout(&dx, hw))?;
        return gemm::gemm_with(gpu, &g, weight, dy.buf, dx.buf, accumulate, 1.0, &cfg);
    }
    let p = Params { accumulate: accumulate as u32, ..params(s, &dx, &dy) };
    let mut groups = t.groups(s.c_in, s.n * s.h * s.w);
    let entry = if row_window_backward_data(s) {
        groups = t.groups(s.c_in, t.row_columns(s));
        // Rows of whole vec4s: the window's middle pixels as vec4 loads (the same sums).
        if v8 {
            ConvEntry::BackwardData3x3V8
        } else if t.tn == 4 && s.w % 4 == 0 {
            ConvEntry::BackwardData3x3V4
        } else {
            ConvEntry::BackwardData3x3
        }
    } else if s.stride == 1 && s.c_out % 8 != 0 && s.kh * s.kw <= 32 {
        // Blocks of 8 output channels per tap would be partly empty: walk (tap, channel) as one
        // index (a tap mask per column, 32 bits).
        ConvEntry::BackwardDataFlat
    } else {
        ConvEntry::BackwardData
    };
    let mut c = t.constants();
    c.push(("STRIDED", (s.stride > 1) as u8 as f64));
    if matches!(entry, ConvEntry::BackwardData3x3 | ConvEntry::BackwardData3x3V4 | ConvEntry::BackwardData3x3V8) {
        c.push(short_k(s.c_out));
    }
    Ok(vec![launch(gpu, entry, &c, &p, &[dy.buf, dx.buf, weight], groups)?])
}

/// How many slices the n·p·q reduction of the weight gradient is cut into: enough workgroups
/// to keep every core busy, while each slice stays long enough to amortise its setup.
/// The count depends on the shape only, never on the tiles (they are tuned per device): two
/// devices or two cached tile choices sum the same slices and get bit-identical gradients.
fn splits(s: &Conv2dShape) -> (usize, usize) {
    let cols = s.c_in * s.kh * s.kw;
    let tiles = s.c_out.div_ceil(16) * cols.div_ceil(if cols <= 64 { 64 } else { 256 });
    let total = s.n * s.p() * s.q();
    let want = 64usize.div_ceil(tiles).clamp(1, 64);
    let count = want.min(total.div_ceil(256)).max(1);
    let len = total.div_ceil(count);
    (total.div_ceil(len), len)
}

/// f32 elements of scratch that [`backward_weight`] needs for its partial sums.
pub fn backward_weight_scratch_len(s: &Conv2dShape) -> usize {
    backward_weight_chunks_scratch_len(s, std::slice::from_ref(&(0..s.n)))
}

/// f32 elements of scratch that [`backward_weight_chunks`] needs: the slices of its largest chunk.
pub fn backward_weight_chunks_scratch_len(s: &Conv2dShape, chunks: &[Range<usize>]) -> usize {
    let per_chunk = |r: &Range<usize>| {
        let sc = Conv2dShape { n: r.len(), ..*s };
        if pointwise_gemm_weight(s) {
            let hw = s.h * s.w;
            let (g, splits) =
                weight_gemm(&sc, MatrixLayout::row_major(s.c_in, hw), MatrixLayout::row_major(s.c_out, hw));
            gemm::gemm_scratch_len(&g, splits)
        } else {
            splits(&sc).0 * s.weight_len()
        }
    };
    chunks.iter().map(per_chunk).max().unwrap_or(0)
}

/// dweight = the gradient with respect to the weight (overwritten), and dbias = the per-channel
/// sum of dy when given. `scratch` holds [`backward_weight_scratch_len`] floats. Heuristic
/// tiles ([`backward_weight_tiled`] takes others).
pub fn backward_weight<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: Act,
    dy: Act,
    dweight: impl Into<BufRange<'a>>,
    dbias: Option<BufRange<'a>>,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    backward_weight_chunks(gpu, s, std::slice::from_ref(&(0..s.n)), x, dy, dweight, dbias, scratch)
}

/// [`backward_weight`] with the batch bound in `chunks` (consecutive image ranges covering
/// `0..s.n`, see [`Act::images`]): each chunk writes its slices of partial sums to scratch and
/// adds them to dweight (the first chunk overwrites), so scratch holds one chunk's slices:
/// [`backward_weight_chunks_scratch_len`] floats. Heuristic tiles
/// ([`backward_weight_chunks_tiled`] takes others).
#[allow(clippy::too_many_arguments)]
pub fn backward_weight_chunks<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    chunks: &[Range<usize>],
    x: Act,
    dy: Act,
    dweight: impl Into<BufRange<'a>>,
    dbias: Option<BufRange<'a>>,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let t = Tiles::heuristic(Pass::BackwardWeight, s);
    backward_weight_chunks_tiled(gpu, s, chunks, x, dy, dweight, dbias, scratch, t)
}

/// [`backward_weight`] with explicit tile sizes (from a [`TileTable`], or a tuning candidate).
#[allow(clippy::too_many_arguments)]
pub fn backward_weight_tiled<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    x: Act,
    dy: Act,
    dweight: impl Into<BufRange<'a>>,
    dbias: Option<BufRange<'a>>,
    scratch: &wgpu::Buffer,
    t: Tiles,
) -> Result<Vec<Dispatch>> {
    backward_weight_chunks_tiled(gpu, s, std::slice::from_ref(&(0..s.n)), x, dy, dweight, dbias, scratch, t)
}

/// [`backward_weight_chunks`] with explicit tile sizes, the same for every chunk (what the
/// executor runs, with the tiles its [`TileTable`] names for the whole batch's shape `s`).
#[allow(clippy::too_many_arguments)]
pub fn backward_weight_chunks_tiled<'a>(
    gpu: &Gpu,
    s: &Conv2dShape,
    chunks: &[Range<usize>],
    x: Act,
    dy: Act,
    dweight: impl Into<BufRange<'a>>,
    dbias: Option<BufRange<'a>>,
    scratch: &wgpu::Buffer,
    t: Tiles,
) -> Result<Vec<Dispatch>> {
    let dweight = dweight.into();
    s.validate()?;
    t.check()?;
    check_subgroups(gpu)?;
    super::check_chunks(OP, chunks, s.n)?;
    check_act("x", &x, s.n, s.c_in, s.h * s.w)?;
    check_act("dy", &dy, s.n, s.c_out, s.p() * s.q())?;
    check_buf("dweight", dweight, s.weight_len())?;
    let scratch_len = backward_weight_chunks_scratch_len(s, chunks);
    check_buf("scratch", scratch.into(), scratch_len)?;
    let scratch = BufRange::prefix(scratch, scratch_len as u64 * 4);
    let mut out = Vec::new();
    if pointwise_gemm_weight(s) {
        let hw = s.h * s.w;
        for r in chunks {
            let sc = Conv2dShape { n: r.len(), ..*s };
            let (x, dy) = (x.images(r.clone(), hw), dy.images(r.clone(), hw));
            let (g, splits) = weight_gemm(&sc, act_layout(&x, hw), act_layout(&dy, hw));
            // Later chunks add to what the first wrote.
            let acc = r.start > 0;
            out.extend(gemm::gemm_split(gpu, &g, dy.buf, x.buf, dweight, acc, 1.0, &GEMM_BW, splits, scratch)?);
            if let Some(db) = dbias {
                check_buf("dbias", db, s.c_out)?;
                out.push(launch_bias_grad(gpu, &Params { accumulate: acc as u32, ..params(&sc, &x, &dy) }, dy, db)?);
            }
        }
        return Ok(out);
    }
    let row_window = row_window_backward_weight(s);
    let entry = if row_window && s.w % 4 == 0 {
        ConvEntry::BackwardWeight3x3V4
    } else if row_window {
        ConvEntry::BackwardWeight3x3
    } else if s.is_pointwise() {
        ConvEntry::BackwardWeight1x1
    } else {
        ConvEntry::BackwardWeight
    };
    // backward_weight_3x3 stores 3 taps per vec4: TN = 4 whatever the tiles.
    let consts = if row_window { Tiles { tn: 4, ..t }.constants() } else { t.constants() };
    let reduce_groups = ceil_div(s.weight_len(), RWG as usize) as usize;
    for r in chunks {
        let sc = Conv2dShape { n: r.len(), ..*s };
        let (x, dy) = (x.images(r.clone(), s.h * s.w), dy.images(r.clone(), s.p() * s.q()));
        let (mut count, mut len) = splits(&sc);
        let mut groups = t.groups(s.c_out, s.c_in * s.kh * s.kw) * count;
        if row_window {
            // Slices of whole 8-pixel row segments, no more than splits' (scratch holds those).
            let segs = sc.n * s.h * s.w.div_ceil(8);
            len = segs.div_ceil(count);
            count = segs.div_ceil(len);
            groups = s.c_out.div_ceil(t.tm as usize) * s.c_in.div_ceil(t.wg as usize) * count;
        }
        let p = Params {
            splits: count as u32,
            split_len: len as u32,
            len: s.weight_len() as u32,
            accumulate: (r.start > 0) as u32,
            ..params(&sc, &x, &dy)
        };
        out.push(launch(gpu, entry, &consts, &p, &[x.buf, scratch, dy.buf], groups)?);
        let reduce = [scratch, dweight];
        out.push(launch(gpu, ConvEntry::ReduceSplits, &[("RWG", RWG as f64)], &p, &reduce, reduce_groups)?);
        if let Some(db) = dbias {
            check_buf("dbias", db, s.c_out)?;
            out.push(launch_bias_grad(gpu, &p, dy, db)?);
        }
    }
    Ok(out)
}

/// dbias (+)= the per-channel sum of one batch chunk of dy.
fn launch_bias_grad(gpu: &Gpu, p: &Params, dy: Act, db: BufRange) -> Result<Dispatch> {
    gpu.dispatch(Launch {
        entry: ConvEntry::BiasGrad.into(),
        constants: &[("RWG", RWG as f64)],
        params: bytemuck::bytes_of(p),
        buffers: &[dy.buf, db],
        workgroups: [p.cout, 1, 1],
    })
}

// ---------------------------------------------------------------------------------------------
// CPU references: dense NCHW tensors (no channel views), f64.

fn xi(s: &Conv2dShape, n: usize, c: usize, y: usize, x: usize) -> usize {
    ((n * s.c_in + c) * s.h + y) * s.w + x
}
fn yi(s: &Conv2dShape, n: usize, c: usize, y: usize, x: usize) -> usize {
    ((n * s.c_out + c) * s.p() + y) * s.q() + x
}
fn wi(s: &Conv2dShape, o: usize, c: usize, ky: usize, kx: usize) -> usize {
    ((o * s.c_in + c) * s.kh + ky) * s.kw + kx
}

/// Calls `f(n, co, oy, ox, ci, iy, ix, ky, kx)` for every (output, tap) pair that reads an
/// in-bounds input pixel.
fn each_tap(s: &Conv2dShape, mut f: impl FnMut([usize; 9])) {
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..s.p() {
                for ox in 0..s.q() {
                    for ci in 0..s.c_in {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                                let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                    f([n, co, oy, ox, ci, iy as usize, ix as usize, ky, kx]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn forward_ref(s: &Conv2dShape, x: &[f64], weight: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; s.y_len()];
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[i / (s.p() * s.q()) % s.c_out];
        }
    }
    each_tap(s, |[n, co, oy, ox, ci, iy, ix, ky, kx]| {
        y[yi(s, n, co, oy, ox)] += weight[wi(s, co, ci, ky, kx)] * x[xi(s, n, ci, iy, ix)];
    });
    y
}

pub fn backward_data_ref(s: &Conv2dShape, dy: &[f64], weight: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.x_len()];
    each_tap(s, |[n, co, oy, ox, ci, iy, ix, ky, kx]| {
        dx[xi(s, n, ci, iy, ix)] += weight[wi(s, co, ci, ky, kx)] * dy[yi(s, n, co, oy, ox)];
    });
    dx
}

pub fn backward_weight_ref(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.weight_len()];
    each_tap(s, |[n, co, oy, ox, ci, iy, ix, ky, kx]| {
        dw[wi(s, co, ci, ky, kx)] += x[xi(s, n, ci, iy, ix)] * dy[yi(s, n, co, oy, ox)];
    });
    dw
}

pub fn backward_bias_ref(s: &Conv2dShape, dy: &[f64]) -> Vec<f64> {
    let mut db = vec![0.0; s.c_out];
    for (i, v) in dy.iter().enumerate() {
        db[i / (s.p() * s.q()) % s.c_out] += v;
    }
    db
}
