//! Strided, batched matrix multiply: for each batch b, `C_b = alpha · A_b · B_b (+ C_b)`.
//!
//! Every matrix is a [`MatrixLayout`] over a flat f32 buffer (element offset, row, column and
//! batch strides), so transposes, NCHW channel slices and per-image batches need no copies. A
//! 1×1 convolution forward over N images, for example, is `batch = N`,
//! `A = weight [Cout, Cin]` (batch stride 0), `B = x_n` (row stride HW, offset c_off·HW, batch
//! stride c_total·HW) and `C = y_n`.
//!
//! A C batch stride of 0 with `batch > 1` means the products of all batches are summed into the
//! one C (a weight gradient summed over images). Split-K ([`gemm_split`]) cuts the reduction
//! (K, and the batch when it is summed) into slices whose partial products go to a scratch
//! buffer ([`gemm_scratch_len`]) and are then added up in parallel: it keeps every core busy
//! when K is much larger than M×N.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, GemmEntry, Gpu, Launch, MAX_GROUPS_PER_DIM};

const OP: &str = "gemm";
const WG_REDUCE: u32 = 256;

/// Where the elements of a (batch of) matrices live in a flat buffer: element `(b, i, j)` is at
/// `offset + b·batch_stride + i·row_stride + j·col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixLayout {
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    pub batch_stride: usize,
}

impl MatrixLayout {
    /// Dense row-major `rows × cols` matrices, one after the other.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        MatrixLayout { offset: 0, row_stride: cols, col_stride: 1, batch_stride: rows * cols }
    }
    /// The transpose of a dense row-major `cols × rows` matrix, seen as `rows × cols`.
    pub fn transposed(rows: usize, cols: usize) -> Self {
        MatrixLayout::row_major(cols, rows).t()
    }
    /// The same elements seen transposed (rows and columns swapped).
    pub fn t(self) -> Self {
        MatrixLayout { row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
    pub fn with_offset(self, offset: usize) -> Self {
        MatrixLayout { offset, ..self }
    }
    pub fn with_batch_stride(self, batch_stride: usize) -> Self {
        MatrixLayout { batch_stride, ..self }
    }
    /// The flat index of element `(b, i, j)`.
    pub fn index(&self, b: usize, i: usize, j: usize) -> usize {
        self.offset + b * self.batch_stride + i * self.row_stride + j * self.col_stride
    }
    /// The largest flat index touched by `batch` matrices of `rows × cols`.
    fn last(&self, batch: usize, rows: usize, cols: usize) -> usize {
        self.index(batch - 1, rows - 1, cols - 1)
    }
    /// Whether vec4 loads along the unit-stride dimension stay aligned: `along_cols` means
    /// column stride 1 (rows contiguous), otherwise row stride 1.
    fn vec4_ok(&self, batch: usize, along_cols: bool) -> bool {
        let (unit, other) =
            if along_cols { (self.col_stride, self.row_stride) } else { (self.row_stride, self.col_stride) };
        unit == 1 && self.offset % 4 == 0 && other % 4 == 0 && (batch == 1 || self.batch_stride % 4 == 0)
    }
}

/// A batched product: A is `m × k`, B is `k × n`, C is `m × n`, `batch` of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub a: MatrixLayout,
    pub b: MatrixLayout,
    pub c: MatrixLayout,
}

impl GemmShape {
    /// Checks the sizes (all at least 1) and that every index fits in 32 bits.
    pub fn new(
        m: usize,
        n: usize,
        k: usize,
        batch: usize,
        a: MatrixLayout,
        b: MatrixLayout,
        c: MatrixLayout,
    ) -> Result<Self> {
        let s = GemmShape { m, n, k, batch, a, b, c };
        s.validate()?;
        Ok(s)
    }

    /// Dense row-major A, B and C, each `batch` deep.
    pub fn dense(m: usize, n: usize, k: usize, batch: usize) -> Result<Self> {
        GemmShape::new(
            m,
            n,
            k,
            batch,
            MatrixLayout::row_major(m, k),
            MatrixLayout::row_major(k, n),
            MatrixLayout::row_major(m, n),
        )
    }

    pub fn validate(&self) -> Result<()> {
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "m, n, k and batch must be at least 1 (got {}×{}×{}, batch {})",
                    self.m, self.n, self.k, self.batch
                ),
            ));
        }
        for (name, last) in [("A", self.a_len()), ("B", self.b_len()), ("C", self.c_len())] {
            if last > u32::MAX as usize {
                return Err(Error::shape(OP, format!("{name} spans {last} elements, more than 32-bit indices reach")));
            }
        }
        Ok(())
    }

    /// True when the batch products are summed into one C (C batch stride 0, batch > 1).
    pub fn sums_batches(&self) -> bool {
        self.batch > 1 && self.c.batch_stride == 0
    }

    /// How many f32 elements A's buffer must hold at least.
    pub fn a_len(&self) -> usize {
        self.a.last(self.batch, self.m, self.k) + 1
    }
    pub fn b_len(&self) -> usize {
        self.b.last(self.batch, self.k, self.n) + 1
    }
    pub fn c_len(&self) -> usize {
        self.c.last(self.out_count(), self.m, self.n) + 1
    }
    fn out_count(&self) -> usize {
        if self.sums_batches() {
            1
        } else {
            self.batch
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.batch) as f64
    }
}

/// Tile and workgroup sizes: each invocation computes `tm × tn` outputs (tm ∈ {8, 16},
/// tn ∈ {4, 8}), `wg` invocations share their `tm` rows. `vec4` allows the vec4 loads where the
/// layouts permit them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmConfig {
    pub wg: u32,
    pub tm: u32,
    pub tn: u32,
    pub vec4: bool,
}

impl Default for GemmConfig {
    /// The fastest measured on lavapipe (see benches/kernels.rs).
    fn default() -> Self {
        GemmConfig { wg: 64, tm: 16, tn: 4, vec4: true }
    }
}

impl GemmConfig {
    fn check(&self, gpu: &Gpu) -> Result<()> {
        let ok = (1..=256).contains(&self.wg) && matches!(self.tm, 8 | 16) && matches!(self.tn, 4 | 8);
        if !ok {
            return Err(Error::shape(OP, format!("bad tile config {self:?}: tm must be 8 or 16, tn 4 or 8")));
        }
        // Subgroups of at least 8 lanes share the rows of A.
        if !crate::gpu::has_training_subgroups(gpu.features, &gpu.info) {
            return Err(Error::Invalid(format!(
                "the GEMM kernels need subgroups of at least 8 lanes, which {} does not offer",
                gpu.info.name
            )));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Mat {
    pub(crate) off: u32,
    pub(crate) rs: u32,
    pub(crate) cs: u32,
    pub(crate) bs: u32,
}

impl From<MatrixLayout> for Mat {
    fn from(l: MatrixLayout) -> Self {
        Mat { off: l.offset as u32, rs: l.row_stride as u32, cs: l.col_stride as u32, bs: l.batch_stride as u32 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) batch: u32,
    pub(crate) a: Mat,
    pub(crate) b: Mat,
    pub(crate) c: Mat,
    pub(crate) alpha: f32,
    pub(crate) accumulate: u32,
    pub(crate) k_chunk: u32,
    pub(crate) k_splits: u32,
    pub(crate) b_chunk: u32,
    pub(crate) slices_per_out: u32,
    pub(crate) out_count: u32,
    /// Always 0: an upper bound the shader compiler cannot see through (see gemm.wgsl).
    pub(crate) zero: u32,
}

/// How the reduction is cut: slice `z` covers batches `g·b_chunk..` (g = z / k_splits) and
/// reduction indices `s·k_chunk..` (s = z % k_splits).
#[derive(Clone, Copy, Debug)]
struct Plan {
    k_chunk: usize,
    k_splits: usize,
    b_chunk: usize,
    slices: usize,
    slices_per_out: usize,
}

fn k_plan(k: usize, splits: usize) -> (usize, usize) {
    // Chunks are multiples of 4 so that vec4 steps stay aligned.
    let chunk = k.div_ceil(splits.max(1)).next_multiple_of(4);
    (chunk, k.div_ceil(chunk))
}

fn plan(s: &GemmShape, splits: usize) -> Plan {
    let splits = splits.max(1);
    if s.sums_batches() {
        if splits <= s.batch {
            let b_chunk = s.batch.div_ceil(splits);
            let groups = s.batch.div_ceil(b_chunk);
            let (k_chunk, _) = k_plan(s.k, 1);
            return Plan { k_chunk, k_splits: 1, b_chunk, slices: groups, slices_per_out: groups };
        }
        let (k_chunk, k_splits) = k_plan(s.k, splits.div_ceil(s.batch));
        let slices = s.batch * k_splits;
        return Plan { k_chunk, k_splits, b_chunk: 1, slices, slices_per_out: slices };
    }
    let (k_chunk, k_splits) = k_plan(s.k, splits);
    Plan { k_chunk, k_splits, b_chunk: 1, slices: s.batch * k_splits, slices_per_out: k_splits }
}

/// Scratch elements [`gemm_split`] needs for `splits` slices per output matrix (0 when the
/// plan ends up with one slice per output and writes C directly).
pub fn gemm_scratch_len(shape: &GemmShape, splits: usize) -> usize {
    let p = plan(shape, splits);
    if p.slices_per_out == 1 {
        0
    } else {
        p.slices * shape.m * shape.n
    }
}

/// A split count that keeps the machine busy for tall-skinny reductions: enough slices that
/// the number of (tile, slice) work items reaches `target_items`, each slice keeping at least
/// 256 reduction steps.
pub fn suggest_splits(shape: &GemmShape, cfg: &GemmConfig, target_items: usize) -> usize {
    let tiles = shape.m.div_ceil(cfg.tm as usize) * shape.n.div_ceil((cfg.wg * cfg.tn) as usize) * shape.out_count();
    let depth = shape.k * if shape.sums_batches() { shape.batch } else { 1 };
    let want = target_items.div_ceil(tiles.max(1));
    want.min(depth / 256).clamp(1, 1024)
}

fn check_buffer(name: &str, buf: BufRange, need: usize) -> Result<()> {
    super::check_len(OP, name, buf, need)
}

/// `C = alpha · A·B (+ C)` with the default tiles and no split.
pub fn gemm<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    a: impl Into<BufRange<'a>>,
    b: impl Into<BufRange<'a>>,
    c: impl Into<BufRange<'a>>,
    accumulate: bool,
    alpha: f32,
) -> Result<Vec<Dispatch>> {
    gemm_with(gpu, shape, a.into(), b.into(), c.into(), accumulate, alpha, &GemmConfig::default())
}

/// [`gemm`] with explicit tile sizes.
pub fn gemm_with<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    a: impl Into<BufRange<'a>>,
    b: impl Into<BufRange<'a>>,
    c: impl Into<BufRange<'a>>,
    accumulate: bool,
    alpha: f32,
    cfg: &GemmConfig,
) -> Result<Vec<Dispatch>> {
    build(gpu, shape, [a.into(), b.into(), c.into()], accumulate, alpha, cfg, 1, None)
}

/// Split-K: the reduction is cut into `splits` slices per output matrix, whose partial
/// products go to `scratch` (at least [`gemm_scratch_len`] elements) and are then summed into
/// C by a second, parallel pass.
pub fn gemm_split<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    a: impl Into<BufRange<'a>>,
    b: impl Into<BufRange<'a>>,
    c: impl Into<BufRange<'a>>,
    accumulate: bool,
    alpha: f32,
    cfg: &GemmConfig,
    splits: usize,
    scratch: impl Into<BufRange<'a>>,
) -> Result<Vec<Dispatch>> {
    build(gpu, shape, [a.into(), b.into(), c.into()], accumulate, alpha, cfg, splits, Some(scratch.into()))
}

fn build<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    [a, b, c]: [BufRange<'a>; 3],
    accumulate: bool,
    alpha: f32,
    cfg: &GemmConfig,
    splits: usize,
    scratch: Option<BufRange<'a>>,
) -> Result<Vec<Dispatch>> {
    shape.validate()?;
    cfg.check(gpu)?;
    check_buffer("A", a, shape.a_len())?;
    check_buffer("B", b, shape.b_len())?;
    check_buffer("C", c, shape.c_len())?;
    let plan = plan(shape, splits);
    if plan.slices_per_out == 1 {
        return Ok(vec![product(gpu, shape, plan, [a, b, c], shape.c, accumulate, alpha, cfg)?]);
    }
    let scratch = scratch.ok_or_else(|| Error::shape(OP, "split-K needs a scratch buffer"))?;
    let len = plan.slices * shape.m * shape.n;
    check_buffer("split-K scratch", scratch, len)?;
    let parts = MatrixLayout::row_major(shape.m, shape.n);
    Ok(vec![
        product(gpu, shape, plan, [a, b, scratch], parts, false, 1.0, cfg)?,
        reduce(gpu, shape, plan, scratch, c, accumulate, alpha)?,
    ])
}

fn params(shape: &GemmShape, plan: Plan, c: MatrixLayout, accumulate: bool, alpha: f32) -> Params {
    Params {
        m: shape.m as u32,
        n: shape.n as u32,
        k: shape.k as u32,
        batch: shape.batch as u32,
        a: shape.a.into(),
        b: shape.b.into(),
        c: c.into(),
        alpha,
        accumulate: accumulate as u32,
        k_chunk: plan.k_chunk as u32,
        k_splits: plan.k_splits as u32,
        b_chunk: plan.b_chunk as u32,
        slices_per_out: plan.slices_per_out as u32,
        out_count: shape.out_count() as u32,
        zero: 0,
    }
}

/// The entry point [`gemm`] uses for these layouts (for tests and reports): `gemm_<a><b>`, with A read as `k` (vec4 along
/// k), `m` (vec4 along m) or `g` (scalar loads, any strides), and B as `n`, `k` or `g`; `_c4` when
/// C is written as aligned vec4s (see [`c_vec4_ok`]).
pub fn entry(shape: &GemmShape, cfg: &GemmConfig) -> GemmEntry {
    entry_for(shape, &shape.c, shape.out_count(), cfg)
}

/// Whether the product can write C (laid out as `c`, `outputs` matrices) four columns at a time:
/// unit column stride, `n` and every offset and stride a multiple of 4, so that each lane's
/// columns are one aligned vec4 inside C (and inside its binding, which ends at C's last element).
pub fn c_vec4_ok(shape: &GemmShape, c: &MatrixLayout, outputs: usize, cfg: &GemmConfig) -> bool {
    cfg.vec4 && cfg.tn % 4 == 0 && shape.n % 4 == 0 && c.vec4_ok(outputs, true)
}

fn entry_for(shape: &GemmShape, c: &MatrixLayout, outputs: usize, cfg: &GemmConfig) -> GemmEntry {
    let (a, b, n) = (&shape.a, &shape.b, shape.batch);
    let a_mode = match () {
        _ if cfg.vec4 && a.vec4_ok(n, true) => 0,
        _ if cfg.vec4 && a.vec4_ok(n, false) => 1,
        _ => 2,
    };
    let b_mode = match () {
        _ if cfg.vec4 && b.vec4_ok(n, true) => 0,
        _ if cfg.vec4 && b.vec4_ok(n, false) => 1,
        _ => 2,
    };
    use GemmEntry::*;
    const ENTRIES: [[[GemmEntry; 3]; 3]; 2] = [
        [[GemmKn, GemmKk, GemmKg], [GemmMn, GemmMk, GemmMg], [GemmGn, GemmGk, GemmGg]],
        [[GemmKnC4, GemmKkC4, GemmKgC4], [GemmMnC4, GemmMkC4, GemmMgC4], [GemmGnC4, GemmGkC4, GemmGgC4]],
    ];
    ENTRIES[c_vec4_ok(shape, c, outputs, cfg) as usize][a_mode][b_mode]
}

fn product<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    plan: Plan,
    [a, b, c]: [BufRange<'a>; 3],
    c_layout: MatrixLayout,
    accumulate: bool,
    alpha: f32,
    cfg: &GemmConfig,
) -> Result<Dispatch> {
    let groups =
        [ceil_div(shape.n, (cfg.wg * cfg.tn) as usize), ceil_div(shape.m, cfg.tm as usize), plan.slices as u32];
    if groups.iter().any(|&g| g > MAX_GROUPS_PER_DIM) {
        return Err(Error::shape(OP, format!("grid {groups:?} exceeds {MAX_GROUPS_PER_DIM} workgroups per dimension")));
    }
    let p = params(shape, plan, c_layout, accumulate, alpha);
    gpu.dispatch(Launch {
        entry: entry_for(shape, &c_layout, plan.slices, cfg).into(),
        constants: &[("WG", cfg.wg as f64), ("TM", cfg.tm as f64), ("TN", cfg.tn as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[c, a, b],
        workgroups: groups,
    })
}

fn reduce<'a>(
    gpu: &Gpu,
    shape: &GemmShape,
    plan: Plan,
    scratch: BufRange<'a>,
    c: BufRange<'a>,
    accumulate: bool,
    alpha: f32,
) -> Result<Dispatch> {
    let p = params(shape, plan, shape.c, accumulate, alpha);
    let outputs = shape.out_count() * shape.m * shape.n;
    gpu.dispatch(Launch {
        entry: GemmEntry::GemmReduce.into(),
        constants: &[("WG_REDUCE", WG_REDUCE as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[c, scratch],
        workgroups: grid(ceil_div(outputs, WG_REDUCE as usize)),
    })
}

/// `C[z, i, j] += bias[i·row_stride + j·col_stride]` for the `batch` matrices `m × n` of `c`,
/// the bias laid out by `bias.1` (its batch stride unused): a stride of 0 broadcasts it, so a
/// Linear's bias (one per column) has row stride 0 and a convolution's (one per channel, the
/// rows of an image's `channels × pixels` matrix) column stride 0.
pub fn add_bias(
    gpu: &Gpu,
    batch: usize,
    m: usize,
    n: usize,
    bias: (BufRange, MatrixLayout),
    c: (BufRange, MatrixLayout),
) -> Result<Dispatch> {
    let b = MatrixLayout { batch_stride: 0, ..bias.1 };
    let shape = GemmShape::new(m, n, 1, batch, b, MatrixLayout::row_major(1, n), c.1)?;
    if shape.sums_batches() {
        return Err(Error::shape(OP, "add_bias needs a C batch stride (each of the batch matrices gets the bias)"));
    }
    check_buffer("bias", bias.0, b.last(1, m, n) + 1)?;
    check_buffer("C", c.0, shape.c_len())?;
    let p = params(&shape, plan(&shape, 1), c.1, true, 1.0);
    gpu.dispatch(Launch {
        entry: GemmEntry::AddBias.into(),
        constants: &[("WG_REDUCE", WG_REDUCE as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[c.0, bias.0],
        workgroups: grid(ceil_div(batch * m * n, WG_REDUCE as usize)),
    })
}

/// `out[j] = alpha · Σ_i A[i, j] (+ out[j])` over the `m × n` matrix `a`: one workgroup per
/// column with a tree reduction (out element j at `out.offset + j·out.col_stride`).
pub fn col_sum(
    gpu: &Gpu,
    m: usize,
    n: usize,
    a: (BufRange, MatrixLayout),
    out: (BufRange, MatrixLayout),
    accumulate: bool,
    alpha: f32,
) -> Result<Dispatch> {
    let shape = GemmShape::new(m, n, 1, 1, a.1, MatrixLayout::row_major(1, n), out.1)?;
    check_buffer("A", a.0, a.1.last(1, m, n) + 1)?;
    check_buffer("out", out.0, out.1.last(1, 1, n) + 1)?;
    let p = params(&shape, plan(&shape, 1), out.1, accumulate, alpha);
    gpu.dispatch(Launch {
        entry: GemmEntry::ColSum.into(),
        constants: &[("WG_REDUCE", WG_REDUCE as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[out.0, a.0],
        workgroups: grid(n as u32),
    })
}

/// CPU reference over whole buffers: updates the C elements of `c` in place.
pub fn gemm_ref(shape: &GemmShape, a: &[f64], b: &[f64], c: &mut [f64], accumulate: bool, alpha: f64) {
    let (s, sum) = (shape, shape.sums_batches());
    let mut out = vec![0.0; s.out_count() * s.m * s.n];
    for bi in 0..s.batch {
        let ob = if sum { 0 } else { bi };
        for i in 0..s.m {
            for j in 0..s.n {
                let dot: f64 = (0..s.k).map(|k| a[s.a.index(bi, i, k)] * b[s.b.index(bi, k, j)]).sum();
                out[(ob * s.m + i) * s.n + j] += dot;
            }
        }
    }
    for ob in 0..s.out_count() {
        for i in 0..s.m {
            for j in 0..s.n {
                let idx = s.c.index(ob, i, j);
                let v = alpha * out[(ob * s.m + i) * s.n + j];
                c[idx] = if accumulate { c[idx] + v } else { v };
            }
        }
    }
}
