//! Exact k nearest neighbours: for each query row of `[Q, D]`, the `k` gallery rows of `[G, D]`
//! nearest by Euclidean distance `d = sqrt(max(‖q‖² + ‖g‖² − 2 q·g, 1e-12))` (the definition of
//! the fixtures' README), ascending, **ties broken by the lower gallery index**.
//!
//! On the GPU the products `q·gᵀ` go through [`gemm`](super::gemm) one gallery chunk at a time;
//! `shaders/knn.wgsl` turns them into distances and keeps a running top-k per query, merged with
//! each chunk by an exact radix select on the distances' f32 bits (which order as unsigned
//! integers for d ≥ 0) and the gallery index, then sorts the final list once (see the shader
//! for why). So any gallery size works (chunks bind at most [`Gpu::max_binding`] bytes; queries
//! go in blocks the same way) and any `k` from 1 to G, with the same cost per candidate.
//!
//! Options ([`SearchOptions`]):
//! - leave-one-out ([`Exclude`]): a query never returns its own gallery item;
//! - groups: a `u32` group per query and per gallery item; only same-group items are candidates
//!   (per-vertical search).
//!
//! When a query has fewer than `k` candidates, the rest of its row is [`NO_NEIGHBOUR`] with
//! distance `+inf`.
//!
//! Equal gallery rows get bit-identical distances (a tie, then, broken by index): norms come from
//! one kernel for queries and gallery, and every chunk runs the same GEMM entry point (chunks
//! and the gallery's padded row count are multiples of 4 and every window starts 16-byte
//! aligned, so no chunk takes another load path).
//!
//! [`knn_ref`] is the CPU reference: f64, plain loops, the same tie rule.

use bytemuck::{Pod, Zeroable};

use super::gemm::{self, GemmShape, MatrixLayout};
use crate::error::{Error, Result};
use crate::gpu::{ceil_div, grid, BufRange, Dispatch, Gpu, KnnEntry, Launch};

const OP: &str = "knn";
/// The key of a non-candidate and the index of an empty slot, on the GPU.
const NONE: u32 = u32::MAX;

/// The index of an empty slot in a row of [`Neighbours`] (its distance is `+inf`).
pub const NO_NEIGHBOUR: u32 = u32::MAX;

/// Queries per block unless [`SearchOptions::query_block`] says otherwise.
pub const DEFAULT_QUERY_BLOCK: usize = 1024;
/// Bytes of the products of one block and one chunk the default chunk size aims at: large
/// enough that the GEMM and the selection have work, small enough for a CPU device's memory.
const DEFAULT_KEYS_BYTES: usize = 32 << 20;

/// Which gallery item a query may not return (leave-one-out evaluation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exclude<'a> {
    /// Every gallery item is a candidate.
    #[default]
    Nothing,
    /// Query `i` is gallery item `offset + i` (queries are a slice of the gallery).
    Offset(usize),
    /// Query `i` is gallery item `own[i]`, or none.
    PerQuery(&'a [Option<usize>]),
}

/// How to search.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchOptions<'a> {
    pub exclude: Exclude<'a>,
    /// One group per query: only gallery items of the same group are candidates. The gallery's
    /// groups come with the gallery ([`GpuGallery::new`], or the `gallery_groups` of [`knn`]);
    /// both or neither must be given.
    pub query_groups: Option<&'a [u32]>,
    /// Gallery items per chunk at most (rounded up to a multiple of 4); `None`: chosen from the
    /// device's binding limit. Smaller chunks change nothing in the results (tests force them).
    pub chunk: Option<usize>,
    /// Queries per block at most; `None`: [`DEFAULT_QUERY_BLOCK`].
    pub query_block: Option<usize>,
}

/// Per query, `k` gallery indices and distances, nearest first: row `q` is
/// `indices[q·k..(q+1)·k]`. Slots past a query's candidates are [`NO_NEIGHBOUR`] at `+inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours<D = f32> {
    pub queries: usize,
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<D>,
}

impl<D: Copy> Neighbours<D> {
    /// Query `q`'s gallery indices, `k` of them, padding included.
    pub fn indices_of(&self, q: usize) -> &[u32] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }
    pub fn distances_of(&self, q: usize) -> &[D] {
        &self.distances[q * self.k..(q + 1) * self.k]
    }
    /// Query `q`'s neighbours as (gallery index, distance), padding left out.
    pub fn row(&self, q: usize) -> impl Iterator<Item = (usize, D)> + '_ {
        let (i, d) = (self.indices_of(q), self.distances_of(q));
        i.iter().zip(d).take_while(|(&i, _)| i != NO_NEIGHBOUR).map(|(&i, &d)| (i as usize, d))
    }
}

/// How a search is cut: `q_block` queries at a time against `chunk` gallery items at a time,
/// lists of `stride` entries per query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnnPlan {
    pub q_block: usize,
    pub chunk: usize,
    pub stride: usize,
    /// Gallery chunks per block.
    pub chunks: usize,
    /// Query blocks.
    pub blocks: usize,
}

/// Start alignment of every window a kernel binds, in bytes: at least the device's, and 16 so
/// that the element offset of every gallery chunk is a multiple of 4 (one GEMM load path).
fn window_align(gpu: &Gpu) -> u64 {
    gpu.binding_alignment().max(16)
}

/// Chooses block and chunk sizes for `queries × gallery` rows of `dim` and `k` neighbours, so
/// that every binding fits [`Gpu::max_binding`].
pub fn plan(gpu: &Gpu, queries: usize, gallery: usize, dim: usize, k: usize, opts: &SearchOptions) -> Result<KnnPlan> {
    let limit = gpu.max_binding() as usize;
    let align = window_align(gpu) as usize;
    let stride = k.max(1).next_power_of_two();
    let gpad = gallery.max(1).next_multiple_of(4);
    let too_large = |tensor: String, bytes: usize| Error::TooLarge { tensor, bytes: bytes as u64, limit: limit as u64 };
    // Four gallery rows (the smallest chunk) must fit one window.
    if 4 * dim * 4 + align > limit {
        return Err(too_large(format!("a chunk of 4 gallery rows of dimension {dim}"), 4 * dim * 4 + align));
    }
    if stride * 8 > limit {
        return Err(too_large(format!("a list of {k} neighbours"), stride * 8));
    }
    // The distance kernel's grid has one query per workgroup row: at most 65535.
    let mut q_block = opts.query_block.unwrap_or(DEFAULT_QUERY_BLOCK).clamp(1, queries.max(1)).min(65535);
    q_block = q_block.min(limit / (stride * 8)).min(limit / (dim * 4)).min(limit / 16).max(1);
    let want = match opts.chunk {
        Some(c) => c.max(1).next_multiple_of(4),
        None => (DEFAULT_KEYS_BYTES / 4 / q_block).max(4) / 4 * 4,
    };
    // GEMM grid x: 256 columns per workgroup at most 65535 times.
    let fit = [limit / (q_block * 4), (limit - align) / (dim * 4), (limit - align) / 4, 65535 * 256];
    let chunk = fit.iter().fold(want.min(gpad), |c, &f| c.min(f / 4 * 4));
    Ok(KnnPlan { q_block, chunk, stride, chunks: gpad.div_ceil(chunk), blocks: queries.div_ceil(q_block) })
}

/// Elements `first..first + len` (4 bytes each) of `buf` as a binding that starts on a
/// [`window_align`] boundary: the range and the element offset of `first` inside it.
fn window<'a>(gpu: &Gpu, buf: &'a wgpu::Buffer, first: usize, len: usize) -> (BufRange<'a>, usize) {
    let align = window_align(gpu);
    let start = (first as u64 * 4) / align * align;
    let end = (first + len) as u64 * 4;
    (BufRange { buf, offset: start, size: end - start }, (first as u64 * 4 - start) as usize / 4)
}

fn check_finite(what: &str, data: &[f32], dim: usize) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::Invalid(format!(
            "{what} row {} holds a non-finite value ({}): embeddings must be finite numbers; check the model's output",
            i / dim,
            data[i]
        ))),
        None => Ok(()),
    }
}

/// Checks a search's inputs: returns the query count and each query's own gallery index
/// ([`NONE`] for none).
fn check_search(
    queries: &[f32],
    gallery_len: usize,
    dim: usize,
    k: usize,
    gallery_groups: Option<usize>,
    opts: &SearchOptions,
) -> Result<(usize, Vec<u32>)> {
    if dim == 0 {
        return Err(Error::shape(OP, "the embedding dimension is 0"));
    }
    if queries.len() % dim != 0 {
        return Err(Error::shape(OP, format!("{} query values are not rows of dimension {dim}", queries.len())));
    }
    let nq = queries.len() / dim;
    if gallery_len == 0 {
        return Err(Error::shape(OP, "the gallery is empty: there is nothing to search"));
    }
    if gallery_len >= NONE as usize {
        return Err(Error::shape(OP, format!("a gallery of {gallery_len} items: gallery indices must fit in 32 bits")));
    }
    if k == 0 || k > gallery_len {
        return Err(Error::shape(OP, format!("k = {k}: it must be 1 to the gallery's {gallery_len} items")));
    }
    let own: Vec<u32> = match opts.exclude {
        Exclude::Nothing => vec![NONE; nq],
        Exclude::Offset(o) => {
            if o + nq > gallery_len {
                return Err(Error::shape(
                    OP,
                    format!(
                        "leave-one-out: queries are gallery items {o}..{}, but the gallery has {gallery_len}",
                        o + nq
                    ),
                ));
            }
            (o..o + nq).map(|i| i as u32).collect()
        }
        Exclude::PerQuery(own) => {
            if own.len() != nq {
                return Err(Error::shape(OP, format!("{} own-item indices for {nq} queries", own.len())));
            }
            if let Some(i) = own.iter().flatten().find(|&&i| i >= gallery_len) {
                return Err(Error::shape(
                    OP,
                    format!("own-item index {i} is outside the gallery's {gallery_len} items"),
                ));
            }
            own.iter().map(|o| o.map_or(NONE, |i| i as u32)).collect()
        }
    };
    match (opts.query_groups, gallery_groups) {
        (None, None) => {}
        (Some(q), Some(g)) => {
            if q.len() != nq || g != gallery_len {
                return Err(Error::shape(
                    OP,
                    format!("{} query groups for {nq} queries, {g} gallery groups for {gallery_len} items", q.len()),
                ));
            }
        }
        (Some(_), None) => return Err(Error::shape(OP, "query groups are given but the gallery has no groups")),
        (None, Some(_)) => return Err(Error::shape(OP, "the gallery has groups but the queries have none")),
    }
    check_finite("query", queries, dim)?;
    Ok((nq, own))
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct NormParams {
    pub(crate) rows: u32,
    pub(crate) dim: u32,
    pub(crate) x_off: u32,
    pub(crate) out_off: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct KeyParams {
    pub(crate) queries: u32,
    pub(crate) cols: u32,
    pub(crate) count: u32,
    pub(crate) first: u32,
    pub(crate) gn_off: u32,
    pub(crate) gg_off: u32,
    pub(crate) groups: u32,
    pub(crate) _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SelectParams {
    pub(crate) k: u32,
    pub(crate) stride: u32,
    pub(crate) cols: u32,
    pub(crate) count: u32,
    pub(crate) first: u32,
    pub(crate) prev: u32,
    pub(crate) _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SortParams {
    pub(crate) stride: u32,
    pub(crate) _pad: [u32; 3],
}

/// Threads per workgroup: one SIMD fiber's worth of lanes on a CPU device (a workgroup runs on
/// one core there, and the queries spread over the cores), more on a GPU.
fn wg(gpu: &Gpu) -> u32 {
    if gpu.plans_for_cpu() {
        64
    } else {
        256
    }
}

/// `‖x_r‖²` of `rows` rows of `dim` starting at element `x_off` of the binding `x`, into `out`
/// from element `out_off`.
fn sq_norms(
    gpu: &Gpu,
    rows: usize,
    dim: usize,
    (x, x_off): (BufRange, usize),
    (out, out_off): (BufRange, usize),
) -> Result<Dispatch> {
    super::check_len(OP, "rows", x, x_off + rows * dim)?;
    super::check_len(OP, "norms", out, out_off + rows)?;
    let p = NormParams { rows: rows as u32, dim: dim as u32, x_off: x_off as u32, out_off: out_off as u32 };
    let wg = wg(gpu);
    gpu.dispatch(Launch {
        entry: KnnEntry::SqNorms.into(),
        constants: &[("WG", wg as f64)],
        params: bytemuck::bytes_of(&p),
        buffers: &[out, x],
        workgroups: grid(ceil_div(rows, wg as usize)),
    })
}

/// A gallery on the device: its rows (padded with zero rows to a multiple of 4), their squared
/// norms and, optionally, their groups. Upload it once and search it many times.
pub struct GpuGallery {
    rows: wgpu::Buffer,
    norms: wgpu::Buffer,
    groups: Option<wgpu::Buffer>,
    len: usize,
    dim: usize,
}

impl GpuGallery {
    /// Uploads `data` (`[G, dim]`, row-major, finite) and computes its norms on the device.
    pub fn new(gpu: &Gpu, data: &[f32], dim: usize, groups: Option<&[u32]>) -> Result<Self> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(Error::shape(OP, format!("{} gallery values are not rows of dimension {dim}", data.len())));
        }
        let len = data.len() / dim;
        if len == 0 {
            return Err(Error::shape(OP, "the gallery is empty: there is nothing to search"));
        }
        if len >= NONE as usize {
            return Err(Error::shape(OP, format!("a gallery of {len} items: gallery indices must fit in 32 bits")));
        }
        if let Some(g) = groups {
            if g.len() != len {
                return Err(Error::shape(OP, format!("{} gallery groups for {len} gallery items", g.len())));
            }
        }
        check_finite("gallery", data, dim)?;
        let gpad = len.next_multiple_of(4);
        let bytes = (gpad * dim * 4) as u64;
        gpu.check_size("the gallery", bytes)?;
        gpu.check_host_memory("the gallery", bytes)?;
        let mut padded = data.to_vec();
        padded.resize(gpad * dim, 0.0);
        let rows = gpu.upload("knn gallery", &padded)?;
        drop(padded);
        let norms = gpu.zeros("knn gallery norms", gpad)?;
        let groups = groups.map(|g| gpu.upload("knn gallery groups", g)).transpose()?;
        // Norms in pieces whose windows fit one binding.
        let align = window_align(gpu) as usize;
        let per = (gpu.max_binding() as usize).saturating_sub(align) / (dim * 4) / 4 * 4;
        if per == 0 {
            let tensor = format!("a gallery row of dimension {dim}");
            return Err(Error::TooLarge { tensor, bytes: (dim * 4) as u64, limit: gpu.max_binding() });
        }
        let mut d = Vec::new();
        for r0 in (0..gpad).step_by(per) {
            let n = per.min(gpad - r0);
            d.push(sq_norms(gpu, n, dim, window(gpu, &rows, r0 * dim, n * dim), window(gpu, &norms, r0, n))?);
        }
        gpu.run(&d)?;
        Ok(GpuGallery { rows, norms, groups, len, dim })
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The `k` nearest gallery items of each query row of `queries` (`[Q, dim]`).
    pub fn search(&self, gpu: &Gpu, queries: &[f32], k: usize, opts: &SearchOptions) -> Result<Neighbours> {
        let (nq, own) = check_search(queries, self.len, self.dim, k, self.groups.as_ref().map(|_| self.len), opts)?;
        let plan = plan(gpu, nq, self.len, self.dim, k, opts)?;
        let (indices, distances) = (Vec::with_capacity(nq * k), Vec::with_capacity(nq * k));
        let mut out = Neighbours { queries: nq, k, indices, distances };
        if nq == 0 {
            return Ok(out);
        }
        let bufs = Buffers::new(gpu, &plan, self.dim)?;
        let mut full: Option<Vec<Dispatch>> = None;
        for b in 0..plan.blocks {
            let q0 = b * plan.q_block;
            let nb = plan.q_block.min(nq - q0);
            gpu.write(&bufs.queries, &queries[q0 * self.dim..(q0 + nb) * self.dim]);
            gpu.write(&bufs.own, &own[q0..q0 + nb]);
            if let Some(g) = opts.query_groups {
                gpu.write(&bufs.qgroups, &g[q0..q0 + nb]);
            }
            let last;
            let d = if nb == plan.q_block {
                if full.is_none() {
                    full = Some(self.dispatches(gpu, &plan, &bufs, nb, k)?);
                }
                full.as_deref().unwrap()
            } else {
                last = self.dispatches(gpu, &plan, &bufs, nb, k)?;
                &last
            };
            gpu.run(d)?;
            let list = &bufs.lists[(plan.chunks - 1) % 2];
            let pairs: Vec<u32> = gpu.read(list, nb * plan.stride * 2)?;
            for q in 0..nb {
                for e in pairs[q * plan.stride * 2..].chunks_exact(2).take(k) {
                    let (key, idx) = (e[0], e[1]);
                    if key == NONE {
                        out.indices.push(NO_NEIGHBOUR);
                        out.distances.push(f32::INFINITY);
                    } else {
                        out.indices.push(idx);
                        out.distances.push(f32::from_bits(key));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The dispatches of one block of `nb` queries: their norms, then per chunk the products,
    /// the distances and the merge into the running list, then the sort.
    fn dispatches(&self, gpu: &Gpu, plan: &KnnPlan, bufs: &Buffers, nb: usize, k: usize) -> Result<Vec<Dispatch>> {
        let dim = self.dim;
        let wg = wg(gpu);
        let gpad = self.len.next_multiple_of(4);
        let q_rows = BufRange::prefix(&bufs.queries, (nb * dim * 4) as u64);
        let qn = BufRange::prefix(&bufs.qnorms, nb as u64 * 4);
        let mut d = vec![sq_norms(gpu, nb, dim, (q_rows, 0), (qn, 0))?];
        for c in 0..plan.chunks {
            let c0 = c * plan.chunk;
            let cols = plan.chunk.min(gpad - c0);
            let count = plan.chunk.min(self.len - c0);
            let (g_rows, g_off) = window(gpu, &self.rows, c0 * dim, cols * dim);
            let keys = BufRange::prefix(&bufs.keys, (nb * cols * 4) as u64);
            // B = the chunk's rows seen as [dim, cols]: element (e, j) at g_off + e + j·dim.
            let b = MatrixLayout { offset: g_off, row_stride: 1, col_stride: dim, batch_stride: 0 };
            let shape = GemmShape::new(
                nb,
                cols,
                dim,
                1,
                MatrixLayout::row_major(nb, dim),
                b,
                MatrixLayout::row_major(nb, cols),
            )?;
            d.extend(gemm::gemm(gpu, &shape, q_rows, g_rows, keys, false, 1.0)?);
            let (gn, gn_off) = window(gpu, &self.norms, c0, cols);
            let (gg, gg_off) = match &self.groups {
                Some(g) => window(gpu, g, c0, count),
                None => (BufRange::from(&bufs.dummy), 0),
            };
            let kp = KeyParams {
                queries: nb as u32,
                cols: cols as u32,
                count: count as u32,
                first: c0 as u32,
                gn_off: gn_off as u32,
                gg_off: gg_off as u32,
                groups: self.groups.is_some() as u32,
                _pad: 0,
            };
            let own = BufRange::prefix(&bufs.own, nb as u64 * 4);
            let qg = BufRange::prefix(&bufs.qgroups, nb as u64 * 4);
            d.push(gpu.dispatch(Launch {
                entry: KnnEntry::KnnKeys.into(),
                constants: &[("WG", 256.0)],
                params: bytemuck::bytes_of(&kp),
                buffers: &[keys, qn, gn, own, qg, gg],
                workgroups: [ceil_div(cols, 256), nb as u32, 1],
            })?);
            let list_bytes = (nb * plan.stride * 8) as u64;
            let sp = SelectParams {
                k: k as u32,
                stride: plan.stride as u32,
                cols: cols as u32,
                count: count as u32,
                first: c0 as u32,
                prev: (c > 0) as u32,
                _pad: [0; 2],
            };
            d.push(gpu.dispatch(Launch {
                entry: KnnEntry::KnnSelect.into(),
                constants: &[("WG", wg as f64)],
                params: bytemuck::bytes_of(&sp),
                buffers: &[
                    BufRange::prefix(&bufs.lists[c % 2], list_bytes),
                    keys,
                    BufRange::prefix(&bufs.lists[(c + 1) % 2], list_bytes),
                ],
                workgroups: grid(nb as u32),
            })?);
        }
        if plan.stride > 1 {
            let list = &bufs.lists[(plan.chunks - 1) % 2];
            let p = SortParams { stride: plan.stride as u32, _pad: [0; 3] };
            d.push(gpu.dispatch(Launch {
                entry: KnnEntry::KnnSort.into(),
                constants: &[("WG", wg as f64)],
                params: bytemuck::bytes_of(&p),
                buffers: &[BufRange::prefix(list, (nb * plan.stride * 8) as u64)],
                workgroups: grid(nb as u32),
            })?);
        }
        Ok(d)
    }
}

/// The device buffers of one search, sized for a block: its queries, their norms, own-item
/// indices and groups, the products of one chunk, and the two running lists.
struct Buffers {
    queries: wgpu::Buffer,
    qnorms: wgpu::Buffer,
    own: wgpu::Buffer,
    qgroups: wgpu::Buffer,
    keys: wgpu::Buffer,
    lists: [wgpu::Buffer; 2],
    /// Bound in place of the gallery's groups when it has none.
    dummy: wgpu::Buffer,
}

impl Buffers {
    fn new(gpu: &Gpu, plan: &KnnPlan, dim: usize) -> Result<Self> {
        let qb = plan.q_block;
        let sizes = [qb * dim, qb, qb, qb, qb * plan.chunk, qb * plan.stride * 2, qb * plan.stride * 2];
        gpu.check_host_memory("a nearest-neighbour search", sizes.iter().map(|&s| s as u64 * 4).sum())?;
        Ok(Buffers {
            queries: gpu.zeros("knn queries", qb * dim)?,
            qnorms: gpu.zeros("knn query norms", qb)?,
            own: gpu.zeros("knn own items", qb)?,
            qgroups: gpu.zeros("knn query groups", qb)?,
            keys: gpu.zeros("knn products", qb * plan.chunk)?,
            lists: [gpu.zeros("knn list a", qb * plan.stride * 2)?, gpu.zeros("knn list b", qb * plan.stride * 2)?],
            dummy: gpu.zeros("knn no groups", 1)?,
        })
    }
}

/// Uploads `gallery` (`[G, dim]`) and searches it: see [`GpuGallery`].
pub fn knn(
    gpu: &Gpu,
    queries: &[f32],
    gallery: &[f32],
    dim: usize,
    k: usize,
    gallery_groups: Option<&[u32]>,
    opts: &SearchOptions,
) -> Result<Neighbours> {
    // The cheap checks before the upload, with the gallery's own length.
    if dim > 0 && gallery.len() % dim == 0 {
        check_search(queries, gallery.len() / dim, dim, k, gallery_groups.map(<[u32]>::len), opts)?;
    }
    GpuGallery::new(gpu, gallery, dim, gallery_groups)?.search(gpu, queries, k, opts)
}

/// CPU reference of [`knn`]: distances in f64 from the f32 inputs, every candidate sorted by
/// (distance, gallery index).
pub fn knn_ref(
    queries: &[f32],
    gallery: &[f32],
    dim: usize,
    k: usize,
    gallery_groups: Option<&[u32]>,
    opts: &SearchOptions,
) -> Result<Neighbours<f64>> {
    if dim == 0 || gallery.len() % dim != 0 {
        return Err(Error::shape(OP, format!("{} gallery values are not rows of dimension {dim}", gallery.len())));
    }
    let g = gallery.len() / dim;
    let (nq, own) = check_search(queries, g, dim, k, gallery_groups.map(<[u32]>::len), opts)?;
    check_finite("gallery", gallery, dim)?;
    let sq = |r: &[f32]| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
    let gn: Vec<f64> = gallery.chunks_exact(dim).map(sq).collect();
    let mut out = Neighbours { queries: nq, k, indices: Vec::with_capacity(nq * k), distances: Vec::new() };
    for (q, qr) in queries.chunks_exact(dim).enumerate() {
        let qn = sq(qr);
        let mut cands: Vec<(f64, u32)> = (0..g)
            .filter(|&j| own[q] != j as u32)
            .filter(|&j| opts.query_groups.zip(gallery_groups).is_none_or(|(qg, gg)| qg[q] == gg[j]))
            .map(|j| {
                let gr = &gallery[j * dim..(j + 1) * dim];
                let dot: f64 = qr.iter().zip(gr).map(|(&a, &b)| a as f64 * b as f64).sum();
                ((qn + gn[j] - 2.0 * dot).max(1e-12).sqrt(), j as u32)
            })
            .collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        cands.resize(k, (f64::INFINITY, NO_NEIGHBOUR));
        for (d, j) in cands.into_iter().take(k) {
            out.indices.push(j);
            out.distances.push(d);
        }
    }
    Ok(out)
}
