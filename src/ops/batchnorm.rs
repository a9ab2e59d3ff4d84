//! 2-D batch normalisation (NCHW f32) as PyTorch's `nn.BatchNorm2d` computes it, with an optional
//! fused ReLU: training forward (batch statistics, saved mean/invstd, running statistics moved
//! with the unbiased variance), eval forward (running statistics), recompute from saved
//! statistics, and training backward (ReLU mask recomputed from x, so y need not be kept).
//!
//! A channel of at most [`FUSED_MAX`] elements (n·h·w), or of any size when there are at least
//! [`FUSED_MIN_CHANNELS`] channels, is done by one workgroup in one kernel (reduce, then apply,
//! reading its data again, mostly from cache); otherwise in two: per-chunk partial reductions into
//! scratch, then a pass that combines its channel's partials and applies. Threads stream their
//! units one at a time (on llvmpipe a register array of them lives in memory and costs more than a
//! second read), and reductions use subgroups where the device has them. Activations with h·w divisible by 4 are moved as
//! vec4 (about 4x faster on llvmpipe).
//!
//! A batch bound in chunks (`*_chunks`, see [`Act::images`]) always takes the two-pass path: each
//! chunk's partials go to their own part of scratch, and each chunk's apply pass combines all of
//! them, so the statistics are over the whole batch.

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use super::Act;
use crate::error::{Error, Result};
use crate::gpu::{BatchnormEntry, BufRange, Dispatch, Gpu, Kernel, Launch};

/// Threads per workgroup and units of 4 elements per thread and batch. Small workgroups win on
/// llvmpipe: a workgroup's invocations run as WG/8 SIMD fibers that every barrier switches, and
/// a thread streams any number of units at no extra cost.
const BIG_WG: usize = 32;
const BIG_ITEMS: usize = 32;
/// Threads that step through memory side by side (llvmpipe's SIMD width; the `LANES` constant).
const LANES: usize = 8;
/// Batches per chunk (about): fewer, bigger chunks mean fewer workgroup reductions and partials.
const BATCHES: usize = 4;
/// Largest channel (n·h·w elements) always done by one workgroup in one dispatch (statistics,
/// then the apply pass re-reading its units, mostly from cache): the channels the two-pass plan
/// would give one chunk anyway.
pub const FUSED_MAX: usize = 4 * BIG_WG * BIG_ITEMS * BATCHES;
/// Bigger channels are fused too when there are at least this many of them: enough workgroups
/// to keep every core busy. Fewer, bigger channels take the two-pass path, several workgroups
/// a channel.
pub const FUSED_MIN_CHANNELS: usize = 16;

/// A batch norm over `c` channels of `n` images of `h`×`w`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub eps: f32,
    pub momentum: f32,
    pub relu: bool,
}

/// Threads per workgroup of the fused plan (one workgroup per channel). On a CPU device
/// (llvmpipe) one SIMD fiber: a workgroup's fibers run one after another on one core, so more of
/// them only add idle steps and barriers where a channel is short. Measured on lavapipe:
/// DenseNet-121's batch norms at batch 8 (7×7 to 56² images, 392 to 25088 elements a channel)
/// took 25–40% less time with 8 threads than with 32, DenseNet-BC's at batch 64 0–8% less.
/// Elsewhere 32, whose fibers run side by side.
fn fused_wg(gpu: &Gpu) -> usize {
    if gpu.plans_for_cpu() {
        LANES
    } else {
        BIG_WG
    }
}

/// How the kernels cover a channel: threads, units per thread and batch, batches per chunk,
/// chunks.
#[derive(Clone, Copy, Debug)]
struct Plan {
    wg: usize,
    items: usize,
    batches: usize,
    chunks: usize,
}

impl BnShape {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1.
    pub fn new(n: usize, c: usize, h: usize, w: usize, relu: bool) -> Self {
        BnShape { n, c, h, w, eps: 1e-5, momentum: 0.1, relu }
    }

    /// Elements per channel, n·h·w.
    pub fn m(&self) -> usize {
        self.n * self.h * self.w
    }

    fn hw(&self) -> usize {
        self.h * self.w
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("batch_norm", msg));
        if self.n == 0 || self.c == 0 || self.h == 0 || self.w == 0 {
            return bad(format!("empty tensor {}x{}x{}x{}", self.n, self.c, self.h, self.w));
        }
        // Counts are carried as f32 in the kernels: keep them exact.
        if self.m() >= 1 << 24 {
            return bad(format!("{} elements per channel; at most {} are supported", self.m(), (1 << 24) - 1));
        }
        if self.c > crate::gpu::MAX_GROUPS_PER_DIM as usize {
            return bad(format!("{} channels; at most {} are supported", self.c, crate::gpu::MAX_GROUPS_PER_DIM));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be positive, not {}", self.eps));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1], not {}", self.momentum));
        }
        Ok(())
    }

    fn plan(&self, gpu: &Gpu) -> Plan {
        let units = self.m().div_ceil(4);
        if self.fused() {
            // The run length is a runtime count of ITEMS-unit batches rather than a new ITEMS,
            // so that every image size shares the same pipelines (one compile each).
            let wg = fused_wg(gpu);
            Plan { wg, items: BIG_ITEMS, batches: units.div_ceil(wg * BIG_ITEMS), chunks: 1 }
        } else {
            self.two_pass_plan()
        }
    }

    /// The plan of the partial and apply passes.
    fn two_pass_plan(&self) -> Plan {
        let total = self.m().div_ceil(4).div_ceil(BIG_WG * BIG_ITEMS);
        let chunks = total.div_ceil(BATCHES);
        Plan { wg: BIG_WG, items: BIG_ITEMS, batches: total.div_ceil(chunks), chunks }
    }

    /// The same batch norm over `n` images (one batch chunk).
    fn images(&self, n: usize) -> Self {
        BnShape { n, ..*self }
    }

    /// One workgroup per channel, in one dispatch.
    fn fused(&self) -> bool {
        self.m() <= FUSED_MAX || self.c >= FUSED_MIN_CHANNELS
    }

    fn vec4(&self) -> bool {
        self.hw() % 4 == 0
    }
}

/// f32 elements of scratch [`forward_train`] needs (0: the buffer is not used).
pub fn forward_train_scratch_len(s: &BnShape) -> usize {
    chunks_scratch_len(s, std::slice::from_ref(&(0..s.n)))
}

/// f32 elements of scratch [`backward`] needs (0: the buffer is not used).
pub fn backward_scratch_len(s: &BnShape) -> usize {
    chunks_scratch_len(s, std::slice::from_ref(&(0..s.n)))
}

/// f32 elements of scratch [`forward_train_chunks`] and [`backward_chunks`] need with the batch
/// cut into `chunks`: three per partial (count, and mean and M2 or Σdy and Σdy·x̂).
pub fn chunks_scratch_len(s: &BnShape, chunks: &[Range<usize>]) -> usize {
    if chunks.len() == 1 && s.fused() {
        return 0;
    }
    3 * s.c * chunks.iter().map(|r| s.images(r.len()).two_pass_plan().chunks).sum::<usize>()
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) hw: u32,
    pub(crate) m: u32,
    pub(crate) x_off: u32,
    pub(crate) x_tot: u32,
    pub(crate) o_off: u32,
    pub(crate) o_tot: u32,
    pub(crate) dy_off: u32,
    pub(crate) dy_tot: u32,
    pub(crate) chunks: u32,
    pub(crate) accumulate: u32,
    pub(crate) step_img: u32,
    pub(crate) step_pix: u32,
    pub(crate) relu: u32,
    pub(crate) use_var: u32,
    pub(crate) eps: f32,
    pub(crate) momentum: f32,
    pub(crate) batches: u32,
    pub(crate) one: f32,
    pub(crate) _pad4: u32,
    pub(crate) part_base: u32,
    pub(crate) parts: u32,
    pub(crate) save: u32,
    pub(crate) m_total: u32,
    pub(crate) steps: u32,
    pub(crate) _pad: [u32; 2],
}

fn params(s: &BnShape, plan: Plan, x: Act, out: Act) -> Params {
    let step = 4 * LANES;
    // Every chunk but a lone one runs batches·ITEMS steps (their units start at fixed strides);
    // a lone chunk stops once its threads have covered the channel.
    let full = plan.batches * plan.items;
    let steps = if plan.chunks == 1 { s.m().div_ceil(4).div_ceil(plan.wg).min(full) } else { full };
    Params {
        steps: steps as u32,
        n: s.n as u32,
        c: s.c as u32,
        hw: s.hw() as u32,
        m: s.m() as u32,
        x_off: x.c_off,
        x_tot: x.c_total,
        o_off: out.c_off,
        o_tot: out.c_total,
        chunks: plan.chunks as u32,
        batches: plan.batches as u32,
        step_img: (step / s.hw()) as u32,
        step_pix: (step % s.hw()) as u32,
        relu: s.relu as u32,
        eps: s.eps,
        momentum: s.momentum,
        parts: plan.chunks as u32,
        save: 1,
        m_total: s.m() as u32,
        one: 1.0,
        ..Default::default()
    }
}

fn check_act(s: &BnShape, name: &str, a: Act) -> Result<()> {
    a.check("batch_norm", name, s.n, s.c, s.hw())
}

fn check_len(name: &str, buf: BufRange, len: usize) -> Result<()> {
    super::check_len("batch_norm", name, buf, len)
}

fn check_distinct(bufs: &[BufRange]) -> Result<()> {
    super::check_distinct("batch_norm", bufs)
}

/// The subgroup size the reductions use: the device's one size when it has subgroups of a fixed
/// size that divides `wg`, else 1 (no subgroup operations).
fn subgroup_size(gpu: &Gpu, wg: usize) -> usize {
    let (lo, hi) = (gpu.info.subgroup_min_size as usize, gpu.info.subgroup_max_size as usize);
    let fixed = gpu.features.contains(wgpu::Features::SUBGROUP) && lo == hi && lo.is_power_of_two();
    if fixed && lo <= wg {
        lo
    } else {
        1
    }
}

/// The batch norm kernels, each as a scalar and a vec4 entry point (`_s`, `_v`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    FwdFused,
    FwdPartial,
    FwdApply,
    Normalize,
    BwdFused,
    BwdPartial,
    BwdApply,
}

impl Step {
    fn entry(self, vec4: bool) -> BatchnormEntry {
        use BatchnormEntry::*;
        let (v, s) = match self {
            Step::FwdFused => (FwdFusedV, FwdFusedS),
            Step::FwdPartial => (FwdPartialV, FwdPartialS),
            Step::FwdApply => (FwdApplyV, FwdApplyS),
            Step::Normalize => (NormalizeV, NormalizeS),
            Step::BwdFused => (BwdFusedV, BwdFusedS),
            Step::BwdPartial => (BwdPartialV, BwdPartialS),
            Step::BwdApply => (BwdApplyV, BwdApplyS),
        };
        if vec4 {
            v
        } else {
            s
        }
    }
}

fn launch(gpu: &Gpu, s: &BnShape, plan: Plan, step: Step, p: &Params, buffers: &[BufRange]) -> Result<Dispatch> {
    let entry = step.entry(s.vec4());
    let sg = subgroup_size(gpu, plan.wg);
    gpu.dispatch(Launch {
        entry: if sg > 1 { entry.into() } else { Kernel::batchnorm_without_subgroups(entry) },
        constants: &[("WG", plan.wg as f64), ("ITEMS", plan.items as f64), ("LANES", LANES as f64), ("SG", sg as f64)],
        params: bytemuck::bytes_of(p),
        buffers,
        workgroups: [plan.chunks as u32, s.c as u32, 1],
    })
}

/// Training forward: batch mean and biased variance per channel, y = γ·(x−mean)·invstd + β
/// (then ReLU if `s.relu`), saves mean and invstd = 1/√(var + eps), and moves `running_mean` and
/// `running_var` by `s.momentum` towards the mean and the unbiased variance. `scratch` holds
/// [`forward_train_scratch_len`] f32.
#[allow(clippy::too_many_arguments)]
pub fn forward_train<'a>(
    gpu: &Gpu,
    s: &BnShape,
    x: Act<'a>,
    gamma: impl Into<BufRange<'a>>,
    beta: impl Into<BufRange<'a>>,
    y: Act<'a>,
    save_mean: impl Into<BufRange<'a>>,
    save_invstd: impl Into<BufRange<'a>>,
    running_mean: impl Into<BufRange<'a>>,
    running_var: impl Into<BufRange<'a>>,
    scratch: &'a wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let stats =
        [gamma.into(), beta.into(), save_mean.into(), save_invstd.into(), running_mean.into(), running_var.into()];
    forward_train_chunks(gpu, s, std::slice::from_ref(&(0..s.n)), x, y, stats, scratch)
}

/// [`forward_train`] with the batch bound in `chunks` (consecutive image ranges covering
/// `0..s.n`), `stats` = [gamma, beta, save_mean, save_invstd, running_mean, running_var] and
/// `scratch` of [`chunks_scratch_len`] f32.
pub fn forward_train_chunks<'a>(
    gpu: &Gpu,
    s: &BnShape,
    chunks: &[Range<usize>],
    x: Act<'a>,
    y: Act<'a>,
    stats: [BufRange<'a>; 6],
    scratch: &'a wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    s.validate()?;
    super::check_chunks("batch_norm", chunks, s.n)?;
    if s.m() < 2 {
        return Err(Error::shape("batch_norm", "training needs more than one value per channel (n·h·w >= 2)"));
    }
    check_act(s, "x", x)?;
    check_act(s, "y", y)?;
    let names = ["gamma", "beta", "save_mean", "save_invstd", "running_mean", "running_var"];
    for (name, b) in names.into_iter().zip(stats) {
        check_len(name, b, s.c)?;
    }
    if chunks.len() == 1 && s.fused() {
        let plan = s.plan(gpu);
        let bufs = [&[x.buf, y.buf][..], &stats].concat();
        check_distinct(&bufs)?;
        return Ok(vec![launch(gpu, s, plan, Step::FwdFused, &params(s, plan, x, y), &bufs)?]);
    }
    let scratch = scratch_range(s, chunks, scratch)?;
    check_distinct(&[&[x.buf, y.buf][..], &stats, &[scratch]].concat())?;
    let passes = two_pass(s, chunks, x, y);
    let mut out = Vec::with_capacity(2 * passes.len());
    for (sc, plan, p, x, _) in &passes {
        out.push(launch(gpu, sc, *plan, Step::FwdPartial, p, &[x.buf, scratch])?);
    }
    for (sc, plan, p, x, y) in &passes {
        out.push(launch(gpu, sc, *plan, Step::FwdApply, p, &[&[x.buf, y.buf][..], &stats, &[scratch]].concat())?);
    }
    Ok(out)
}

/// The scratch range the two-pass kernels of `chunks` use, checked.
fn scratch_range<'a>(s: &BnShape, chunks: &[Range<usize>], scratch: &'a wgpu::Buffer) -> Result<BufRange<'a>> {
    let len = chunks_scratch_len(s, chunks);
    check_len("scratch", scratch.into(), len)?;
    Ok(BufRange::prefix(scratch, len as u64 * 4))
}

/// One batch chunk of a two-pass kernel: its shape, plan, parameters and views.
type Pass<'a> = (BnShape, Plan, Params, Act<'a>, Act<'a>);

/// The two-pass kernels' chunks: each chunk's partials follow the earlier chunks' (`part_base`),
/// every apply pass combines all `parts`, and only the first chunk saves per-channel results.
fn two_pass<'a>(s: &BnShape, chunks: &[Range<usize>], x: Act<'a>, out: Act<'a>) -> Vec<Pass<'a>> {
    let parts = chunks.iter().map(|r| s.images(r.len()).two_pass_plan().chunks).sum::<usize>();
    let mut base = 0;
    let mut passes = Vec::with_capacity(chunks.len());
    for r in chunks {
        let sc = s.images(r.len());
        let plan = sc.two_pass_plan();
        let (x, out) = (x.images(r.clone(), s.hw()), out.images(r.clone(), s.hw()));
        let p = Params {
            part_base: base as u32,
            parts: parts as u32,
            save: (r.start == 0) as u32,
            m_total: s.m() as u32,
            ..params(&sc, plan, x, out)
        };
        passes.push((sc, plan, p, x, out));
        base += plan.chunks;
    }
    passes
}

/// Eval forward: y = γ·(x−running_mean)/√(running_var + eps) + β, then ReLU if `s.relu`.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval<'a>(
    gpu: &Gpu,
    s: &BnShape,
    x: Act<'a>,
    gamma: impl Into<BufRange<'a>>,
    beta: impl Into<BufRange<'a>>,
    running_mean: impl Into<BufRange<'a>>,
    running_var: impl Into<BufRange<'a>>,
    y: Act<'a>,
) -> Result<Vec<Dispatch>> {
    let stats = [gamma.into(), beta.into(), running_mean.into(), running_var.into()];
    apply_stats(gpu, s, x, stats, y, true)
}

/// y from saved statistics (mean, invstd), leaving running statistics alone: the recompute of a
/// memory-efficient dense layer's BN-ReLU in backward. Bit-identical to `forward_train`'s y.
#[allow(clippy::too_many_arguments)]
pub fn normalize<'a>(
    gpu: &Gpu,
    s: &BnShape,
    x: Act<'a>,
    gamma: impl Into<BufRange<'a>>,
    beta: impl Into<BufRange<'a>>,
    mean: impl Into<BufRange<'a>>,
    invstd: impl Into<BufRange<'a>>,
    y: Act<'a>,
) -> Result<Vec<Dispatch>> {
    apply_stats(gpu, s, x, [gamma.into(), beta.into(), mean.into(), invstd.into()], y, false)
}

/// `stats`: gamma, beta, then mean and variance (`use_var`) or invstd.
fn apply_stats(gpu: &Gpu, s: &BnShape, x: Act, stats: [BufRange; 4], y: Act, use_var: bool) -> Result<Vec<Dispatch>> {
    s.validate()?;
    check_act(s, "x", x)?;
    check_act(s, "y", y)?;
    for (name, buf) in ["gamma", "beta", "mean", "var/invstd"].into_iter().zip(stats) {
        check_len(name, buf, s.c)?;
    }
    let plan = s.plan(gpu);
    let p = Params { use_var: use_var as u32, ..params(s, plan, x, y) };
    let bufs = [&[x.buf, y.buf][..], &stats].concat();
    check_distinct(&bufs)?;
    Ok(vec![launch(gpu, s, plan, Step::Normalize, &p, &bufs)?])
}

/// Training backward. With dy' = dy masked by the ReLU (mask recomputed from x and the saved
/// statistics) and x̂ = (x−mean)·invstd: dβ = Σ dy', dγ = Σ dy'·x̂ (overwritten), and
/// dx = γ·invstd/m·(m·dy' − dβ − x̂·dγ), written or, with `accumulate`, added to dx.
/// `scratch` holds [`backward_scratch_len`] f32.
#[allow(clippy::too_many_arguments)]
pub fn backward<'a>(
    gpu: &Gpu,
    s: &BnShape,
    x: Act<'a>,
    dy: Act<'a>,
    gamma: impl Into<BufRange<'a>>,
    beta: impl Into<BufRange<'a>>,
    save_mean: impl Into<BufRange<'a>>,
    save_invstd: impl Into<BufRange<'a>>,
    dx: Act<'a>,
    dgamma: impl Into<BufRange<'a>>,
    dbeta: impl Into<BufRange<'a>>,
    accumulate: bool,
    scratch: &'a wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let stats = [gamma.into(), beta.into(), save_mean.into(), save_invstd.into()];
    backward_chunks(
        gpu,
        s,
        std::slice::from_ref(&(0..s.n)),
        [x, dy, dx],
        stats,
        [dgamma.into(), dbeta.into()],
        accumulate,
        scratch,
    )
}

/// [`backward`] with the batch bound in `chunks` (consecutive image ranges covering `0..s.n`):
/// `acts` = [x, dy, dx], `stats` = [gamma, beta, save_mean, save_invstd], `dparams` = [dgamma,
/// dbeta], `scratch` of [`chunks_scratch_len`] f32.
#[allow(clippy::too_many_arguments)]
pub fn backward_chunks<'a>(
    gpu: &Gpu,
    s: &BnShape,
    chunks: &[Range<usize>],
    [x, dy, dx]: [Act<'a>; 3],
    stats: [BufRange<'a>; 4],
    dparams: [BufRange<'a>; 2],
    accumulate: bool,
    scratch: &'a wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    s.validate()?;
    super::check_chunks("batch_norm", chunks, s.n)?;
    check_act(s, "x", x)?;
    check_act(s, "dy", dy)?;
    check_act(s, "dx", dx)?;
    let names = ["gamma", "beta", "save_mean", "save_invstd", "dgamma", "dbeta"];
    for (name, b) in names.into_iter().zip(stats.into_iter().chain(dparams)) {
        check_len(name, b, s.c)?;
    }
    // Bindings 1..=9: x, dx, gamma, beta, save_mean, save_invstd, dy, dgamma, dbeta.
    let common = |x: Act<'a>, dy: Act<'a>, dx: Act<'a>| [&[x.buf, dx.buf][..], &stats, &[dy.buf], &dparams].concat();
    let with_dy =
        |p: Params, dy: Act| Params { dy_off: dy.c_off, dy_tot: dy.c_total, accumulate: accumulate as u32, ..p };
    if chunks.len() == 1 && s.fused() {
        let plan = s.plan(gpu);
        let bufs = common(x, dy, dx);
        check_distinct(&bufs)?;
        return Ok(vec![launch(gpu, s, plan, Step::BwdFused, &with_dy(params(s, plan, x, dx), dy), &bufs)?]);
    }
    let scratch = scratch_range(s, chunks, scratch)?;
    check_distinct(&[&common(x, dy, dx)[..], &[scratch]].concat())?;
    let passes = two_pass(s, chunks, x, dx);
    let dys: Vec<Act> = chunks.iter().map(|r| dy.images(r.clone(), s.hw())).collect();
    let mut out = Vec::with_capacity(2 * passes.len());
    for ((sc, plan, p, x, _), dy) in passes.iter().zip(&dys) {
        let bufs = [&[x.buf, scratch][..], &stats, &[dy.buf]].concat();
        out.push(launch(gpu, sc, *plan, Step::BwdPartial, &with_dy(*p, *dy), &bufs)?);
    }
    for ((sc, plan, p, x, dx), dy) in passes.iter().zip(&dys) {
        let bufs = [&common(*x, *dy, *dx)[..], &[scratch]].concat();
        out.push(launch(gpu, sc, *plan, Step::BwdApply, &with_dy(*p, *dy), &bufs)?);
    }
    Ok(out)
}

// ---- CPU references (f64, dense NCHW tensors of exactly c channels) ----

/// Batch statistics and their derived outputs, as the reference forward produces them.
#[derive(Clone, Debug)]
pub struct TrainRef {
    pub y: Vec<f64>,
    pub save_mean: Vec<f64>,
    pub save_invstd: Vec<f64>,
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
}

fn idx(s: &BnShape, img: usize, ch: usize, p: usize) -> usize {
    (img * s.c + ch) * s.hw() + p
}

fn channel(s: &BnShape, x: &[f64], ch: usize) -> Vec<f64> {
    (0..s.n).flat_map(|img| (0..s.hw()).map(move |p| (img, p))).map(|(img, p)| x[idx(s, img, ch, p)]).collect()
}

fn bn_apply(s: &BnShape, x: &[f64], gamma: &[f64], beta: &[f64], mean: &[f64], invstd: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for img in 0..s.n {
        for ch in 0..s.c {
            for p in 0..s.hw() {
                let i = idx(s, img, ch, p);
                let v = gamma[ch] * (x[i] - mean[ch]) * invstd[ch] + beta[ch];
                y[i] = if s.relu { v.max(0.0) } else { v };
            }
        }
    }
    y
}

/// Training forward reference; `running_*` are the statistics before the step.
pub fn forward_train_ref(
    s: &BnShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> TrainRef {
    let m = s.m() as f64;
    let (eps, mom) = (s.eps as f64, s.momentum as f64);
    let mut r = TrainRef {
        y: vec![],
        save_mean: vec![0.0; s.c],
        save_invstd: vec![0.0; s.c],
        running_mean: running_mean.to_vec(),
        running_var: running_var.to_vec(),
    };
    for ch in 0..s.c {
        let v = channel(s, x, ch);
        let mean = v.iter().sum::<f64>() / m;
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / m;
        r.save_mean[ch] = mean;
        r.save_invstd[ch] = 1.0 / (var + eps).sqrt();
        r.running_mean[ch] = (1.0 - mom) * running_mean[ch] + mom * mean;
        r.running_var[ch] = (1.0 - mom) * running_var[ch] + mom * var * m / (m - 1.0);
    }
    r.y = bn_apply(s, x, gamma, beta, &r.save_mean, &r.save_invstd);
    r
}

/// Eval forward reference.
pub fn forward_eval_ref(
    s: &BnShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> Vec<f64> {
    let invstd: Vec<f64> = running_var.iter().map(|v| 1.0 / (v + s.eps as f64).sqrt()).collect();
    bn_apply(s, x, gamma, beta, running_mean, &invstd)
}

/// Reference of [`normalize`]: y from given mean and invstd.
pub fn normalize_ref(s: &BnShape, x: &[f64], gamma: &[f64], beta: &[f64], mean: &[f64], invstd: &[f64]) -> Vec<f64> {
    bn_apply(s, x, gamma, beta, mean, invstd)
}

/// Training backward reference: (dx, dgamma, dbeta), with batch statistics recomputed from x.
pub fn backward_ref(s: &BnShape, x: &[f64], dy: &[f64], gamma: &[f64], beta: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let zeros = vec![0.0; s.c];
    let f = forward_train_ref(s, x, gamma, beta, &zeros, &zeros);
    let m = s.m() as f64;
    let mut dx = vec![0.0; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0.0; s.c], vec![0.0; s.c]);
    let xhat = |i: usize, ch: usize| (x[i] - f.save_mean[ch]) * f.save_invstd[ch];
    let masked = |i: usize, ch: usize| if !s.relu || gamma[ch] * xhat(i, ch) + beta[ch] > 0.0 { dy[i] } else { 0.0 };
    for ch in 0..s.c {
        for img in 0..s.n {
            for p in 0..s.hw() {
                let i = idx(s, img, ch, p);
                dbeta[ch] += masked(i, ch);
                dgamma[ch] += masked(i, ch) * xhat(i, ch);
            }
        }
        for img in 0..s.n {
            for p in 0..s.hw() {
                let i = idx(s, img, ch, p);
                let g = m * masked(i, ch) - dbeta[ch] - xhat(i, ch) * dgamma[ch];
                dx[i] = gamma[ch] * f.save_invstd[ch] / m * g;
            }
        }
    }
    (dx, dgamma, dbeta)
}
