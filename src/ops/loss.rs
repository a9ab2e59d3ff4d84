//! Class-balanced losses (Cui et al. 2019) of logits `[B, C]`: softmax cross-entropy with class-id
//! targets and sigmoid binary cross-entropy with multi-label targets, each optionally focal
//! (γ > 0; γ = 0 is the plain loss). One builder per kind computes the loss value (a 1-element
//! buffer) and overwrites the gradient w.r.t. the logits, times `scale`.
//!
//! Reductions (eq. 3 of the paper, a weighted mean; independent of how the weights are scaled):
//! - softmax: `Σ_b w[y_b]·(1−p_y)^γ·(−log p_y) / Σ_b w[y_b]` (= `F.cross_entropy(z, y, weight=w)`
//!   at γ = 0); rows with a class id `≥ C` are ignored (weight 0);
//! - sigmoid: `mean_b Σ_c w_c·FL(z_bc, y_bc) / Σ_c w_c`, with
//!   `FL = y·(1−p)^γ·(−log p) + (1−y)·p^γ·(−log(1−p))` (= BCE at γ = 0).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, Gpu, Launch, LossEntry};

const WG: u32 = 256;
/// Elements of a row each thread handles before rows get more threads.
const PER_THREAD: usize = 8;

/// The loss family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy; targets are class ids (u32, `[B]`).
    Softmax,
    /// Sigmoid binary cross-entropy; targets are 0/1 labels (f32, `[B, C]`).
    Sigmoid,
}

/// Logits `[batch, classes]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossShape {
    pub batch: usize,
    pub classes: usize,
}

impl LossShape {
    pub fn new(batch: usize, classes: usize) -> Result<Self> {
        if batch == 0 || classes == 0 {
            return Err(Error::shape("loss", format!("logits [{batch}, {classes}] are empty")));
        }
        if batch.checked_mul(classes).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::shape("loss", format!("logits [{batch}, {classes}] have more than 2^32 elements")));
        }
        Ok(LossShape { batch, classes })
    }

    pub fn len(&self) -> usize {
        self.batch * self.classes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Focusing parameter γ ≥ 0 (0: plain loss) and the factor applied to the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossOpts {
    pub gamma: f32,
    pub scale: f32,
}

impl Default for LossOpts {
    fn default() -> Self {
        LossOpts { gamma: 0.0, scale: 1.0 }
    }
}

/// The buffers a loss reads and writes. `targets`: u32 class ids `[B]` (softmax) or f32 0/1
/// labels `[B, C]` (sigmoid); `grad` `[B, C]` is overwritten; `loss` holds one f32;
/// `scratch` holds [`loss_scratch_len`] f32.
#[derive(Clone, Copy)]
pub struct LossBuffers<'a> {
    pub logits: BufRange<'a>,
    pub targets: BufRange<'a>,
    pub weights: BufRange<'a>,
    pub grad: BufRange<'a>,
    pub loss: BufRange<'a>,
    pub scratch: BufRange<'a>,
}

/// f32 elements of scratch a loss needs: the normaliser and one partial loss per row.
pub fn loss_scratch_len(s: LossShape) -> usize {
    s.batch + 1
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) batch: u32,
    pub(crate) classes: u32,
    pub(crate) gamma: f32,
    pub(crate) scale: f32,
}

fn check_buffers(kind: LossKind, s: LossShape, o: LossOpts, b: &LossBuffers) -> Result<()> {
    if !(o.gamma >= 0.0 && o.gamma.is_finite()) {
        return Err(Error::shape("loss", format!("the focal γ must be finite and ≥ 0, got {}", o.gamma)));
    }
    if !o.scale.is_finite() {
        return Err(Error::shape("loss", format!("the gradient scale must be finite, got {}", o.scale)));
    }
    let targets = match kind {
        LossKind::Softmax => s.batch,
        LossKind::Sigmoid => s.len(),
    };
    let need = [
        ("logits", b.logits, s.len()),
        ("targets", b.targets, targets),
        ("weights", b.weights, s.classes),
        ("grad", b.grad, s.len()),
        ("loss", b.loss, 1),
        ("scratch", b.scratch, loss_scratch_len(s)),
    ];
    for (name, buf, len) in need {
        if buf.size < 4 * len as u64 {
            return Err(Error::shape(
                "loss",
                format!(
                    "{name} buffer range has {} bytes, logits [{}, {}] need {}",
                    buf.size,
                    s.batch,
                    s.classes,
                    4 * len
                ),
            ));
        }
    }
    Ok(())
}

/// Threads per row: enough that each handles about `PER_THREAD` classes (a power of two ≤ WG).
fn threads_per_row(classes: usize) -> u32 {
    (classes.div_ceil(PER_THREAD).next_power_of_two() as u32).min(WG)
}

fn launch(gpu: &Gpu, entry: LossEntry, tpr: u32, p: &Params, buffers: &[BufRange], groups: u32) -> Result<Dispatch> {
    gpu.dispatch(Launch {
        entry: entry.into(),
        constants: &[("WG", WG as f64), ("TPR", tpr as f64)],
        params: bytemuck::bytes_of(p),
        buffers,
        workgroups: grid(groups),
    })
}

fn build(gpu: &Gpu, kind: LossKind, s: LossShape, o: LossOpts, b: LossBuffers) -> Result<Vec<Dispatch>> {
    check_buffers(kind, s, o, &b)?;
    let p = Params { batch: s.batch as u32, classes: s.classes as u32, gamma: o.gamma, scale: o.scale };
    let tpr = threads_per_row(s.classes);
    let row_groups = ceil_div(s.batch, (WG / tpr) as usize);
    let rows = [b.weights, b.scratch, b.targets, b.logits, b.grad];
    let mut out = Vec::with_capacity(3);
    let entry = match kind {
        LossKind::Softmax => {
            out.push(launch(gpu, LossEntry::SoftmaxNorm, 1, &p, &[b.weights, b.scratch, b.targets], 1)?);
            LossEntry::SoftmaxRows
        }
        LossKind::Sigmoid => LossEntry::SigmoidRows,
    };
    out.push(launch(gpu, entry, tpr, &p, &rows, row_groups)?);
    out.push(launch(gpu, LossEntry::LossFinish, 1, &p, &[b.scratch, b.loss], 1)?);
    Ok(out)
}

/// Class-balanced (focal) softmax cross-entropy: loss value and `grad = scale·dL/dlogits`.
pub fn softmax_loss(gpu: &Gpu, s: LossShape, o: LossOpts, b: LossBuffers) -> Result<Vec<Dispatch>> {
    build(gpu, LossKind::Softmax, s, o, b)
}

/// Class-balanced (focal) sigmoid binary cross-entropy: loss value and `grad = scale·dL/dlogits`.
pub fn sigmoid_loss(gpu: &Gpu, s: LossShape, o: LossOpts, b: LossBuffers) -> Result<Vec<Dispatch>> {
    build(gpu, LossKind::Sigmoid, s, o, b)
}

/// [`softmax_loss`] or [`sigmoid_loss`] by `kind`.
pub fn loss(gpu: &Gpu, kind: LossKind, s: LossShape, o: LossOpts, b: LossBuffers) -> Result<Vec<Dispatch>> {
    build(gpu, kind, s, o, b)
}

fn log_softmax_row(z: &[f64]) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// Softmax (focal) loss value; class ids `≥ C` are ignored.
pub fn softmax_loss_ref(s: LossShape, logits: &[f64], targets: &[u32], w: &[f64], gamma: f64) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for b in 0..s.batch {
        let y = targets[b] as usize;
        if y >= s.classes {
            continue;
        }
        let logp = log_softmax_row(&logits[b * s.classes..(b + 1) * s.classes])[y];
        num += w[y] * (1.0 - logp.exp()).powf(gamma) * -logp;
        den += w[y];
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// `scale · d softmax_loss_ref / d logits`.
pub fn softmax_loss_grad_ref(
    s: LossShape,
    logits: &[f64],
    targets: &[u32],
    w: &[f64],
    gamma: f64,
    scale: f64,
) -> Vec<f64> {
    let den: f64 = targets.iter().filter(|&&y| (y as usize) < s.classes).map(|&y| w[y as usize]).sum();
    let mut g = vec![0.0; s.len()];
    for b in 0..s.batch {
        let y = targets[b] as usize;
        if y >= s.classes {
            continue;
        }
        let logp = log_softmax_row(&logits[b * s.classes..(b + 1) * s.classes]);
        let (py, ell) = (logp[y].exp(), -logp[y]);
        let q = 1.0 - py;
        // d/dp [−(1−p)^γ log p] · p, written so that q = 0 stays finite.
        let a = if gamma == 0.0 { 1.0 } else { q.powf(gamma) + gamma * py * ell * q.powf(gamma - 1.0) };
        for c in 0..s.classes {
            let delta = if c == y { 1.0 } else { 0.0 };
            g[b * s.classes + c] = scale * w[y] * a * (logp[c].exp() - delta) / den;
        }
    }
    g
}

/// Sigmoid (focal) loss value for targets in [0, 1].
pub fn sigmoid_loss_ref(s: LossShape, logits: &[f64], targets: &[f64], w: &[f64], gamma: f64) -> f64 {
    let wsum: f64 = w[..s.classes].iter().sum();
    let mut total = 0.0;
    for b in 0..s.batch {
        let mut row = 0.0;
        for c in 0..s.classes {
            let (z, y) = (logits[b * s.classes + c], targets[b * s.classes + c]);
            let p = 1.0 / (1.0 + (-z).exp());
            let (nlp, nlq) = (softplus(-z), softplus(z));
            row += w[c] * (y * (1.0 - p).powf(gamma) * nlp + (1.0 - y) * p.powf(gamma) * nlq);
        }
        total += row / wsum;
    }
    total / s.batch as f64
}

/// `scale · d sigmoid_loss_ref / d logits`.
pub fn sigmoid_loss_grad_ref(
    s: LossShape,
    logits: &[f64],
    targets: &[f64],
    w: &[f64],
    gamma: f64,
    scale: f64,
) -> Vec<f64> {
    let wsum: f64 = w[..s.classes].iter().sum();
    let mut g = vec![0.0; s.len()];
    for (i, gi) in g.iter_mut().enumerate() {
        let c = i % s.classes;
        let (z, y) = (logits[i], targets[i]);
        let p = 1.0 / (1.0 + (-z).exp());
        let q = 1.0 - p;
        let (nlp, nlq) = (softplus(-z), softplus(z));
        let pos = q.powf(gamma) * (gamma * p * nlp + q);
        let neg = p.powf(gamma) * (gamma * q * nlq + p);
        *gi = scale * w[c] * ((1.0 - y) * neg - y * pos) / (wsum * s.batch as f64);
    }
    g
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}
