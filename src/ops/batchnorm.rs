//! 2-D batch normalisation (NCHW f32) as PyTorch's `nn.BatchNorm2d` computes it, with an optional
//! fused ReLU: training forward (batch statistics, saved mean/invstd, running statistics moved
//! with the unbiased variance), eval forward (running statistics), recompute from saved
//! statistics, and training backward (ReLU mask recomputed from x, so y need not be kept).
//!
//! A channel of at most [`FUSED_MAX`] elements (n·h·w) is done in one kernel with its values in
//! registers; a bigger one in two: per-chunk partial reductions into scratch, then a pass that
//! combines its channel's partials and applies. Activations with h·w divisible by 4 are moved as
//! vec4 (about 4x faster on llvmpipe).

use bytemuck::{Pod, Zeroable};

use super::Act;
use crate::error::{Error, Result};
use crate::gpu::{shaders, Dispatch, Gpu, Launch};

/// Largest channel (n·h·w elements) normalised by one workgroup in one pass.
pub const FUSED_MAX: usize = 4 * 256 * 8;
/// Threads per workgroup and units of 4 elements per thread and batch in multi-chunk passes.
const BIG_WG: usize = 256;
const BIG_ITEMS: usize = 4;
/// Batches per chunk (about): fewer, bigger chunks mean fewer workgroup reductions, which cost
/// a lot on llvmpipe (every barrier switches all the workgroup's SIMD fibers).
const BATCHES: usize = 4;

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

    fn plan(&self) -> Plan {
        let units = self.m().div_ceil(4);
        if self.fused() {
            let wg = if units <= 64 * 8 { 64 } else { BIG_WG };
            let items = units.div_ceil(wg).next_power_of_two();
            Plan { wg, items, batches: 1, chunks: 1 }
        } else {
            let total = units.div_ceil(BIG_WG * BIG_ITEMS);
            let chunks = total.div_ceil(BATCHES);
            Plan { wg: BIG_WG, items: BIG_ITEMS, batches: total.div_ceil(chunks), chunks }
        }
    }

    /// One workgroup per channel, in one pass.
    fn fused(&self) -> bool {
        self.m() <= FUSED_MAX
    }

    fn vec4(&self) -> bool {
        self.hw() % 4 == 0
    }
}

/// f32 elements of scratch [`forward_train`] needs (0: the buffer is not used).
pub fn forward_train_scratch_len(s: &BnShape) -> usize {
    if s.fused() {
        0
    } else {
        2 * s.c * s.plan().chunks
    }
}

/// f32 elements of scratch [`backward`] needs (0: the buffer is not used).
pub fn backward_scratch_len(s: &BnShape) -> usize {
    forward_train_scratch_len(s)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    x_off: u32,
    x_tot: u32,
    o_off: u32,
    o_tot: u32,
    dy_off: u32,
    dy_tot: u32,
    chunks: u32,
    accumulate: u32,
    step_img: u32,
    step_pix: u32,
    relu: u32,
    use_var: u32,
    eps: f32,
    momentum: f32,
    batches: u32,
    bstep_img: u32,
    bstep_pix: u32,
    _pad: [u32; 3],
}

fn params(s: &BnShape, plan: Plan, x: Act, out: Act) -> Params {
    let (step, bstep) = (4 * plan.wg, 4 * plan.wg * plan.items);
    Params {
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
        bstep_img: (bstep / s.hw()) as u32,
        bstep_pix: (bstep % s.hw()) as u32,
        relu: s.relu as u32,
        eps: s.eps,
        momentum: s.momentum,
        ..Default::default()
    }
}

fn check_act(s: &BnShape, name: &str, a: Act) -> Result<()> {
    a.check("batch_norm", name, s.n, s.c, s.hw())
}

fn check_len(name: &str, buf: &wgpu::Buffer, len: usize) -> Result<()> {
    super::check_len("batch_norm", name, buf, len)
}

fn check_distinct(bufs: &[&wgpu::Buffer]) -> Result<()> {
    super::check_distinct("batch_norm", bufs)
}

fn launch(gpu: &Gpu, s: &BnShape, plan: Plan, entry: &str, p: &Params, buffers: &[&wgpu::Buffer]) -> Result<Dispatch> {
    let entry = format!("{entry}_{}", if s.vec4() { "v" } else { "s" });
    gpu.dispatch(Launch {
        shader: shaders::BATCHNORM,
        entry: &entry,
        constants: &[("WG", plan.wg as f64), ("ITEMS", plan.items as f64)],
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
pub fn forward_train(
    gpu: &Gpu,
    s: &BnShape,
    x: Act,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: Act,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    s.validate()?;
    if s.m() < 2 {
        return Err(Error::shape("batch_norm", "training needs more than one value per channel (n·h·w >= 2)"));
    }
    check_act(s, "x", x)?;
    check_act(s, "y", y)?;
    for (name, b) in [("gamma", gamma), ("beta", beta), ("save_mean", save_mean), ("save_invstd", save_invstd)] {
        check_len(name, b, s.c)?;
    }
    check_len("running_mean", running_mean, s.c)?;
    check_len("running_var", running_var, s.c)?;
    let plan = s.plan();
    let p = params(s, plan, x, y);
    let stats = [gamma, beta, save_mean, save_invstd, running_mean, running_var];
    if s.fused() {
        let bufs = [&[x.buf, y.buf][..], &stats].concat();
        check_distinct(&bufs)?;
        return Ok(vec![launch(gpu, s, plan, "fwd_fused", &p, &bufs)?]);
    }
    check_len("scratch", scratch, forward_train_scratch_len(s))?;
    let bufs = [&[x.buf, y.buf][..], &stats, &[scratch]].concat();
    check_distinct(&bufs)?;
    Ok(vec![launch(gpu, s, plan, "fwd_partial", &p, &[x.buf, scratch])?, launch(gpu, s, plan, "fwd_apply", &p, &bufs)?])
}

/// Eval forward: y = γ·(x−running_mean)/√(running_var + eps) + β, then ReLU if `s.relu`.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval(
    gpu: &Gpu,
    s: &BnShape,
    x: Act,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
    y: Act,
) -> Result<Vec<Dispatch>> {
    apply_stats(gpu, s, x, gamma, beta, running_mean, running_var, y, true)
}

/// y from saved statistics (mean, invstd), leaving running statistics alone: the recompute of a
/// memory-efficient dense layer's BN-ReLU in backward. Bit-identical to `forward_train`'s y.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    gpu: &Gpu,
    s: &BnShape,
    x: Act,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    mean: &wgpu::Buffer,
    invstd: &wgpu::Buffer,
    y: Act,
) -> Result<Vec<Dispatch>> {
    apply_stats(gpu, s, x, gamma, beta, mean, invstd, y, false)
}

#[allow(clippy::too_many_arguments)]
fn apply_stats(
    gpu: &Gpu,
    s: &BnShape,
    x: Act,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: Act,
    use_var: bool,
) -> Result<Vec<Dispatch>> {
    s.validate()?;
    check_act(s, "x", x)?;
    check_act(s, "y", y)?;
    for (name, buf) in [("gamma", gamma), ("beta", beta), ("mean", a), ("var/invstd", b)] {
        check_len(name, buf, s.c)?;
    }
    let plan = s.plan();
    let p = Params { use_var: use_var as u32, ..params(s, plan, x, y) };
    let bufs = [x.buf, y.buf, gamma, beta, a, b];
    check_distinct(&bufs)?;
    Ok(vec![launch(gpu, s, plan, "normalize", &p, &bufs)?])
}

/// Training backward. With dy' = dy masked by the ReLU (mask recomputed from x and the saved
/// statistics) and x̂ = (x−mean)·invstd: dβ = Σ dy', dγ = Σ dy'·x̂ (overwritten), and
/// dx = γ·invstd/m·(m·dy' − dβ − x̂·dγ), written or, with `accumulate`, added to dx.
/// `scratch` holds [`backward_scratch_len`] f32.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    s: &BnShape,
    x: Act,
    dy: Act,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    save_mean: &wgpu::Buffer,
    save_invstd: &wgpu::Buffer,
    dx: Act,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    accumulate: bool,
    scratch: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    s.validate()?;
    check_act(s, "x", x)?;
    check_act(s, "dy", dy)?;
    check_act(s, "dx", dx)?;
    for (name, b) in [("gamma", gamma), ("beta", beta), ("save_mean", save_mean), ("save_invstd", save_invstd)] {
        check_len(name, b, s.c)?;
    }
    check_len("dgamma", dgamma, s.c)?;
    check_len("dbeta", dbeta, s.c)?;
    let plan = s.plan();
    let p = Params { dy_off: dy.c_off, dy_tot: dy.c_total, accumulate: accumulate as u32, ..params(s, plan, x, dx) };
    let common = [x.buf, dx.buf, gamma, beta, save_mean, save_invstd, dy.buf, dgamma, dbeta];
    if s.fused() {
        check_distinct(&common)?;
        return Ok(vec![launch(gpu, s, plan, "bwd_fused", &p, &common)?]);
    }
    check_len("scratch", scratch, backward_scratch_len(s))?;
    let bufs = [&common[..], &[scratch]].concat();
    check_distinct(&bufs)?;
    Ok(vec![
        launch(gpu, s, plan, "bwd_partial", &p, &[x.buf, scratch, gamma, beta, save_mean, save_invstd, dy.buf])?,
        launch(gpu, s, plan, "bwd_apply", &p, &bufs)?,
    ])
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
