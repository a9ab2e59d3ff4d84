//! Embedding models (Song et al. 2017, "Learning Unified Embedding for Apparel Recognition"):
//! the L2-normalised head and the losses that train it, on embeddings `E [B, D]`.
//!
//! - [`normalize_forward`] / [`normalize_backward`]: `e = z / max(‖z‖, 1e-12)` per row
//!   (`F.normalize`) and its gradient.
//! - [`embed_loss`], each building the loss value (a 1-element buffer) and overwriting the
//!   gradient w.r.t. `E`, as the class-balanced losses of [`super::loss`] do:
//!   - [`EmbedLoss::TripletBatchHard`] (Hermans et al. 2017): for each anchor `a` with at least one
//!     positive (same label, `j ≠ a`) and one negative, `relu(max_p d_ap − min_n d_an + margin)`;
//!     the mean over those anchors (0 when there are none). Ties in the max and the min go to the
//!     lowest index.
//!   - [`EmbedLoss::TripletBatchAll`]: `relu(d_ap − d_an + margin)` over every `(a, p, n)`,
//!     `a ≠ p`; the sum divided by the number of triplets whose term is above 0 (0 when none is).
//!   - [`EmbedLoss::DistillL2`]: `mean_b Σ_k (e_bk − t_bk)²` towards teacher embeddings `t`.
//!
//!   with `d_ij = sqrt(max(‖e_i‖² + ‖e_j‖² − 2·e_i·e_j, 1e-12))`.
//!
//! The triplet losses go through the GEMM kernel twice: the Gram matrix `G = E·Eᵀ` gives the
//! distances, the mining kernels write `dL/dd`, and with `A_ij = dL/dd_ij / (2·d_ij)` (0 where the
//! clamp is active) and `S = A + Aᵀ`, the gradient is `dE = M·E` with
//! `M = 2·(diag(rowsum S) − S)`. Every B×B matrix lives in one scratch buffer
//! ([`embed_loss_scratch_len`]); the triplet losses hold `~4·B²` floats there.

use bytemuck::{Pod, Zeroable};

use super::gemm::{self, GemmShape, MatrixLayout as L};
use super::{check_distinct, check_len};
use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, EmbedEntry, Gpu, Launch};

const WG: u32 = 256;
/// Elements of a row each thread handles before rows get more threads.
const PER_THREAD: usize = 8;
/// `F.normalize`'s eps: rows with a smaller norm are divided by it instead.
pub const NORM_EPS: f64 = 1e-12;
/// The squared distances are clamped to at least this before the square root.
pub const DIST_EPS: f64 = 1e-12;

/// Embeddings `[batch, dim]`, row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedShape {
    pub batch: usize,
    pub dim: usize,
}

impl EmbedShape {
    pub fn new(batch: usize, dim: usize) -> Result<Self> {
        if batch == 0 || dim == 0 {
            return Err(Error::shape("embedding", format!("embeddings [{batch}, {dim}] are empty")));
        }
        let fits = |n: Option<usize>| n.is_some_and(|n| n <= u32::MAX as usize);
        if !fits(batch.checked_mul(dim)) || !fits(batch.checked_mul(batch)) {
            return Err(Error::shape(
                "embedding",
                format!("embeddings [{batch}, {dim}] (or their {batch}×{batch} pairs) exceed 32-bit indexing"),
            ));
        }
        Ok(EmbedShape { batch, dim })
    }

    pub fn len(&self) -> usize {
        self.batch * self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An embedding loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EmbedLoss {
    /// Batch-hard triplet loss; targets are labels (u32, `[B]`).
    TripletBatchHard { margin: f32 },
    /// Batch-all triplet loss; targets are labels (u32, `[B]`).
    TripletBatchAll { margin: f32 },
    /// Squared L2 distance to teacher embeddings (f32, `[B, D]`), summed over D, mean over B.
    DistillL2,
}

impl EmbedLoss {
    /// Elements of the targets buffer for `s`.
    pub fn target_len(&self, s: EmbedShape) -> usize {
        match self {
            EmbedLoss::DistillL2 => s.len(),
            _ => s.batch,
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            EmbedLoss::TripletBatchHard { margin } | EmbedLoss::TripletBatchAll { margin }
                if !(margin.is_finite() && margin >= 0.0) =>
            {
                Err(Error::shape("triplet loss", format!("the margin must be finite and ≥ 0, got {margin}")))
            }
            _ => Ok(()),
        }
    }
}

/// The buffers an embedding loss reads and writes. `targets`: u32 labels `[B]` (triplets) or
/// f32 teacher embeddings `[B, D]` (distillation); `grad` `[B, D]` is overwritten; `loss` holds
/// one f32; `scratch` holds [`embed_loss_scratch_len`] f32.
#[derive(Clone, Copy)]
pub struct EmbedLossBuffers<'a> {
    pub embeddings: BufRange<'a>,
    pub targets: BufRange<'a>,
    pub grad: BufRange<'a>,
    pub loss: BufRange<'a>,
    pub scratch: BufRange<'a>,
}

/// Where each part lives in the scratch buffer (element offsets, multiples of 4 so that the
/// GEMMs can use vec4 accesses).
#[derive(Clone, Copy, Debug)]
struct Layout {
    g: usize,
    d: usize,
    a: usize,
    m: usize,
    work: usize,
    tail: usize,
    len: usize,
}

fn layout(kind: EmbedLoss, s: EmbedShape) -> Layout {
    let bb = (s.batch * s.batch).next_multiple_of(4);
    let work = match kind {
        // [d_ap − d_an + margin, valid, p, n] per anchor
        EmbedLoss::TripletBatchHard { .. } => (4 * s.batch).next_multiple_of(4),
        // Σ h per (anchor, positive)
        EmbedLoss::TripletBatchAll { .. } => bb,
        // one partial loss per row
        EmbedLoss::DistillL2 => {
            let b = s.batch.next_multiple_of(4);
            return Layout { g: 0, d: 0, a: 0, m: 0, work: 0, tail: b, len: b };
        }
    };
    let (g, d, a, m) = (0, bb, 2 * bb, 3 * bb);
    let tail = 4 * bb + work;
    Layout { g, d, a, m, work: 4 * bb, tail, len: tail + 4 }
}

/// f32 elements of scratch an embedding loss needs.
pub fn embed_loss_scratch_len(kind: EmbedLoss, s: EmbedShape) -> usize {
    layout(kind, s).len
}

/// Mirrors `Params` in `shaders/embed.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub(crate) batch: u32,
    pub(crate) dim: u32,
    pub(crate) margin: f32,
    pub(crate) accumulate: u32,
    pub(crate) g: u32,
    pub(crate) d: u32,
    pub(crate) a: u32,
    pub(crate) m: u32,
    pub(crate) work: u32,
    pub(crate) tail: u32,
    pub(crate) count: u32,
    pub(crate) first: u32,
    pub(crate) divisor: f32,
    pub(crate) _pad: [u32; 3],
}

impl Params {
    fn new(s: EmbedShape, lay: Option<Layout>) -> Self {
        let mut p = Params { batch: s.batch as u32, dim: s.dim as u32, divisor: 1.0, ..Default::default() };
        if let Some(l) = lay {
            [p.g, p.d, p.a, p.m, p.work, p.tail] = [l.g, l.d, l.a, l.m, l.work, l.tail].map(|v| v as u32);
        }
        p
    }
}

/// Threads per row: enough that each handles about `PER_THREAD` elements (a power of two ≤ WG).
fn threads_per_row(dim: usize) -> u32 {
    (dim.div_ceil(PER_THREAD).next_power_of_two() as u32).min(WG)
}

fn launch(
    gpu: &Gpu,
    entry: EmbedEntry,
    tpr: u32,
    p: &Params,
    buffers: &[BufRange],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    gpu.dispatch(Launch {
        entry: entry.into(),
        constants: &[("WG", WG as f64), ("TPR", tpr as f64)],
        params: bytemuck::bytes_of(p),
        buffers,
        workgroups,
    })
}

/// The grid of a row kernel: `WG / tpr` rows per workgroup.
fn row_grid(s: EmbedShape, tpr: u32) -> [u32; 3] {
    grid(ceil_div(s.batch, (WG / tpr) as usize))
}

/// `e = z / max(‖z‖, 1e-12)` for each row of `z` `[B, D]`.
pub fn normalize_forward<'a>(
    gpu: &Gpu,
    s: EmbedShape,
    z: impl Into<BufRange<'a>>,
    e: impl Into<BufRange<'a>>,
) -> Result<Vec<Dispatch>> {
    let (z, e) = (z.into(), e.into());
    check_len("l2 normalize", "z", z, s.len())?;
    check_len("l2 normalize", "e", e, s.len())?;
    check_distinct("l2 normalize", &[z, e])?;
    let tpr = threads_per_row(s.dim);
    Ok(vec![launch(gpu, EmbedEntry::L2nForward, tpr, &Params::new(s, None), &[e, z], row_grid(s, tpr))?])
}

/// `dz (+)= d e / d z · de` for `e = z / max(‖z‖, 1e-12)`: with `n = ‖z‖`, `m = max(n, eps)`,
/// `dz = (de − [n ≥ eps]·e·(e·de)) / m` (the clamp passes the gradient where `n ≥ eps`, as
/// PyTorch's `clamp_min` does).
pub fn normalize_backward<'a>(
    gpu: &Gpu,
    s: EmbedShape,
    z: impl Into<BufRange<'a>>,
    de: impl Into<BufRange<'a>>,
    dz: impl Into<BufRange<'a>>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (z, de, dz) = (z.into(), de.into(), dz.into());
    for (name, b) in [("z", z), ("de", de), ("dz", dz)] {
        check_len("l2 normalize backward", name, b, s.len())?;
    }
    check_distinct("l2 normalize backward", &[z, de, dz])?;
    let tpr = threads_per_row(s.dim);
    let p = Params { accumulate: accumulate as u32, ..Params::new(s, None) };
    Ok(vec![launch(gpu, EmbedEntry::L2nBackward, tpr, &p, &[dz, z, de], row_grid(s, tpr))?])
}

fn check_buffers(gpu: &Gpu, kind: EmbedLoss, s: EmbedShape, b: &EmbedLossBuffers) -> Result<()> {
    kind.check()?;
    let op = "embedding loss";
    let scratch = embed_loss_scratch_len(kind, s);
    check_len(op, "embeddings", b.embeddings, s.len())?;
    check_len(op, "targets", b.targets, kind.target_len(s))?;
    check_len(op, "grad", b.grad, s.len())?;
    check_len(op, "loss", b.loss, 1)?;
    check_len(op, "scratch", b.scratch, scratch)?;
    check_distinct(op, &[b.embeddings, b.targets, b.grad, b.loss, b.scratch])?;
    let bytes = scratch as u64 * 4;
    if bytes > gpu.max_binding() {
        let tensor = format!("the {}×{} pair matrices of the {kind:?} loss (batch {})", s.batch, s.batch, s.batch);
        return Err(Error::TooLarge { tensor, bytes, limit: gpu.max_binding() });
    }
    Ok(())
}

/// The loss value and `grad = dL/dE` of `kind` (see the module documentation).
pub fn embed_loss(gpu: &Gpu, kind: EmbedLoss, s: EmbedShape, b: EmbedLossBuffers) -> Result<Vec<Dispatch>> {
    check_buffers(gpu, kind, s, &b)?;
    let lay = layout(kind, s);
    let scratch = b.scratch.sub(0, lay.len as u64 * 4);
    let margin = match kind {
        EmbedLoss::TripletBatchHard { margin } | EmbedLoss::TripletBatchAll { margin } => margin,
        EmbedLoss::DistillL2 => {
            let tpr = threads_per_row(s.dim);
            let p = Params::new(s, Some(lay));
            let fin = Params { count: s.batch as u32, first: 0, divisor: s.batch as f32, ..p };
            return Ok(vec![
                launch(
                    gpu,
                    EmbedEntry::DistillRows,
                    tpr,
                    &p,
                    &[b.grad, b.embeddings, b.targets, scratch],
                    row_grid(s, tpr),
                )?,
                launch(gpu, EmbedEntry::LossSum, 1, &fin, &[b.loss, scratch], [1, 1, 1])?,
            ]);
        }
    };
    let (n, d) = (s.batch, s.dim);
    let p = Params { margin, ..Params::new(s, Some(lay)) };
    let cells = grid(ceil_div(n * n, WG as usize));
    let anchors = grid(ceil_div(n, WG as usize));
    let cell = |entry: EmbedEntry, bufs: &[BufRange], groups: [u32; 3]| launch(gpu, entry, 1, &p, bufs, groups);
    // G = E·Eᵀ: A = E, B = Eᵀ (E read transposed), C = G.
    let gram =
        GemmShape::new(n, n, d, 1, L::row_major(n, d), L::transposed(d, n), L::row_major(n, n).with_offset(lay.g))?;
    let mut out = gemm::gemm(gpu, &gram, b.embeddings, b.embeddings, scratch, false, 1.0)?;
    out.push(cell(EmbedEntry::PairDist, &[scratch], cells)?);
    let (mine, finish, coef) = match kind {
        EmbedLoss::TripletBatchHard { .. } => {
            ((EmbedEntry::HardMine, anchors), EmbedEntry::HardFinish, EmbedEntry::HardCoef)
        }
        _ => ((EmbedEntry::AllCount, cells), EmbedEntry::AllFinish, EmbedEntry::AllCoef),
    };
    out.push(cell(mine.0, &[scratch, b.targets], mine.1)?);
    out.push(cell(finish, &[scratch], [1, 1, 1])?);
    out.push(cell(coef, &[scratch], cells)?);
    out.push(cell(EmbedEntry::PairMat, &[scratch], anchors)?);
    // dE = M·E: A = M [B, B], B = E, C = dE.
    let grad =
        GemmShape::new(n, d, n, 1, L::row_major(n, n).with_offset(lay.m), L::row_major(n, d), L::row_major(n, d))?;
    out.extend(gemm::gemm(gpu, &grad, scratch, b.embeddings, b.grad, false, 1.0)?);
    let fin = Params { count: 1, first: lay.tail as u32 + 2, divisor: 1.0, ..p };
    out.push(launch(gpu, EmbedEntry::LossSum, 1, &fin, &[b.loss, scratch], [1, 1, 1])?);
    Ok(out)
}

// ---- CPU references (f64) ----

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `e = z / max(‖z‖, 1e-12)` per row.
pub fn normalize_ref(s: EmbedShape, z: &[f64]) -> Vec<f64> {
    z.chunks(s.dim)
        .flat_map(|row| {
            let m = norm(row).max(NORM_EPS);
            row.iter().map(move |v| v / m)
        })
        .collect()
}

/// The gradient w.r.t. `z` of `Σ de·normalize(z)`.
pub fn normalize_backward_ref(s: EmbedShape, z: &[f64], de: &[f64]) -> Vec<f64> {
    let mut dz = vec![0.0; s.len()];
    for b in 0..s.batch {
        let r = b * s.dim..(b + 1) * s.dim;
        let (row, g) = (&z[r.clone()], &de[r.clone()]);
        let n = norm(row);
        let m = n.max(NORM_EPS);
        let dot: f64 = if n >= NORM_EPS { row.iter().zip(g).map(|(z, g)| z / m * g).sum() } else { 0.0 };
        for (k, out) in dz[r].iter_mut().enumerate() {
            *out = (g[k] - row[k] / m * dot) / m;
        }
    }
    dz
}

fn sq_dist(s: EmbedShape, e: &[f64], i: usize, j: usize) -> f64 {
    let (a, b) = (&e[i * s.dim..(i + 1) * s.dim], &e[j * s.dim..(j + 1) * s.dim]);
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
    sq(a) + sq(b) - 2.0 * dot
}

/// `d_ij = sqrt(max(‖e_i‖² + ‖e_j‖² − 2·e_i·e_j, 1e-12))`, `[B, B]`.
pub fn distances_ref(s: EmbedShape, e: &[f64]) -> Vec<f64> {
    let n = s.batch;
    (0..n * n).map(|idx| sq_dist(s, e, idx / n, idx % n).max(DIST_EPS).sqrt()).collect()
}

/// Batch-hard mining: for each anchor with a positive and a negative, the farthest positive and
/// the nearest negative, each the lowest index among equals; `None` for the other anchors.
pub fn hard_mining_ref(s: EmbedShape, e: &[f64], labels: &[u32]) -> Vec<Option<(usize, usize)>> {
    let n = s.batch;
    let d = distances_ref(s, e);
    (0..n)
        .map(|a| {
            let (mut pos, mut neg): (Option<usize>, Option<usize>) = (None, None);
            for j in 0..n {
                let dj = d[a * n + j];
                if labels[j] == labels[a] {
                    if j != a && pos.is_none_or(|p| dj > d[a * n + p]) {
                        pos = Some(j);
                    }
                } else if neg.is_none_or(|q| dj < d[a * n + q]) {
                    neg = Some(j);
                }
            }
            pos.zip(neg)
        })
        .collect()
}

/// The loss and `W = dL/dd` `[B, B]` of a triplet loss.
fn triplet_terms(s: EmbedShape, e: &[f64], labels: &[u32], margin: f64, all: bool) -> (f64, Vec<f64>) {
    let n = s.batch;
    let d = distances_ref(s, e);
    let mut w = vec![0.0; n * n];
    let (mut total, mut count) = (0.0, 0usize);
    if all {
        for a in 0..n {
            for p in (0..n).filter(|&p| p != a && labels[p] == labels[a]) {
                for q in (0..n).filter(|&q| labels[q] != labels[a]) {
                    let h = d[a * n + p] - d[a * n + q] + margin;
                    if h > 0.0 {
                        total += h;
                        count += 1;
                        w[a * n + p] += 1.0;
                        w[a * n + q] -= 1.0;
                    }
                }
            }
        }
    } else {
        let mined = hard_mining_ref(s, e, labels);
        for (a, m) in mined.iter().enumerate() {
            let Some((p, q)) = *m else { continue };
            count += 1;
            let h = d[a * n + p] - d[a * n + q] + margin;
            if h > 0.0 {
                total += h;
                w[a * n + p] += 1.0;
                w[a * n + q] -= 1.0;
            }
        }
    }
    if count == 0 {
        return (0.0, vec![0.0; n * n]);
    }
    let c = count as f64;
    (total / c, w.into_iter().map(|v| v / c).collect())
}

/// `dL/dE` from `W = dL/dd`: `∂d_ij/∂e_i = (e_i − e_j)/d_ij` where the clamp is inactive.
fn grad_from_w(s: EmbedShape, e: &[f64], w: &[f64]) -> Vec<f64> {
    let (n, dim) = (s.batch, s.dim);
    let mut g = vec![0.0; s.len()];
    for i in 0..n {
        for j in 0..n {
            let wij = w[i * n + j];
            let sq = sq_dist(s, e, i, j);
            if wij == 0.0 || sq < DIST_EPS {
                continue;
            }
            let d = sq.sqrt();
            for k in 0..dim {
                let diff = e[i * dim + k] - e[j * dim + k];
                g[i * dim + k] += wij * diff / d;
                g[j * dim + k] -= wij * diff / d;
            }
        }
    }
    g
}

/// The batch-hard triplet loss of embeddings `e` with `labels`.
pub fn triplet_batch_hard_ref(s: EmbedShape, e: &[f64], labels: &[u32], margin: f64) -> f64 {
    triplet_terms(s, e, labels, margin, false).0
}

/// `d triplet_batch_hard_ref / d e`.
pub fn triplet_batch_hard_grad_ref(s: EmbedShape, e: &[f64], labels: &[u32], margin: f64) -> Vec<f64> {
    grad_from_w(s, e, &triplet_terms(s, e, labels, margin, false).1)
}

/// The batch-all triplet loss of embeddings `e` with `labels`.
pub fn triplet_batch_all_ref(s: EmbedShape, e: &[f64], labels: &[u32], margin: f64) -> f64 {
    triplet_terms(s, e, labels, margin, true).0
}

/// `d triplet_batch_all_ref / d e`.
pub fn triplet_batch_all_grad_ref(s: EmbedShape, e: &[f64], labels: &[u32], margin: f64) -> Vec<f64> {
    grad_from_w(s, e, &triplet_terms(s, e, labels, margin, true).1)
}

/// `mean_b Σ_k (e_bk − t_bk)²`.
pub fn distill_l2_ref(s: EmbedShape, e: &[f64], t: &[f64]) -> f64 {
    e.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / s.batch as f64
}

/// `d distill_l2_ref / d e = 2·(e − t)/B`.
pub fn distill_l2_grad_ref(s: EmbedShape, e: &[f64], t: &[f64]) -> Vec<f64> {
    e.iter().zip(t).map(|(a, b)| 2.0 * (a - b) / s.batch as f64).collect()
}

/// [`triplet_batch_hard_ref`], [`triplet_batch_all_ref`] or [`distill_l2_ref`] by `kind`; `labels`
/// for the triplets, `teacher` for distillation.
pub fn embed_loss_ref(kind: EmbedLoss, s: EmbedShape, e: &[f64], labels: &[u32], teacher: &[f64]) -> f64 {
    match kind {
        EmbedLoss::TripletBatchHard { margin } => triplet_batch_hard_ref(s, e, labels, margin as f64),
        EmbedLoss::TripletBatchAll { margin } => triplet_batch_all_ref(s, e, labels, margin as f64),
        EmbedLoss::DistillL2 => distill_l2_ref(s, e, teacher),
    }
}

/// The gradient of [`embed_loss_ref`] w.r.t. `e`.
pub fn embed_loss_grad_ref(kind: EmbedLoss, s: EmbedShape, e: &[f64], labels: &[u32], teacher: &[f64]) -> Vec<f64> {
    match kind {
        EmbedLoss::TripletBatchHard { margin } => triplet_batch_hard_grad_ref(s, e, labels, margin as f64),
        EmbedLoss::TripletBatchAll { margin } => triplet_batch_all_grad_ref(s, e, labels, margin as f64),
        EmbedLoss::DistillL2 => distill_l2_grad_ref(s, e, teacher),
    }
}
