//! Exact nearest neighbours on the GPU against the f64 reference.
//!
//! How results are compared: the GPU computes distances in f32, so two candidates whose true
//! distances differ by less than f32's rounding may come out in either order. Each GPU distance
//! must be within `tol` of its item's f64 distance, where
//! `tol(q, j) = 1e-5·d + (D + 4)·ε₃₂·(‖q‖² + ‖g_j‖²) / (d_gpu + d)` bounds the error of
//! `‖q‖² + ‖g‖² − 2q·g` in f32 carried through the square root (ε₃₂ = 2⁻²³). Indices must
//! equal the reference's position by position, except where the two items at a position have
//! f64 distances within `tol` of each other (a near-tie). Exact ties (equal rows, or integer
//! data whose f32 arithmetic is exact) leave no such room: there the indices must match exactly.
//! Each GPU row must also be sorted by (its own distance, index), free of duplicates, and hold
//! only candidates.

use crate::common::*;
use tailor::ops::knn::{self, Exclude, GpuGallery, Neighbours, SearchOptions, NO_NEIGHBOUR};
use tailor::Error;

fn data(rng: &mut Rng, rows: usize, dim: usize) -> Vec<f32> {
    f32s(&rng.vec(rows * dim, -1.0, 1.0))
}

fn sq(r: &[f32]) -> f64 {
    r.iter().map(|&v| v as f64 * v as f64).sum()
}

fn dist64(q: &[f32], g: &[f32]) -> f64 {
    let dot: f64 = q.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
    (sq(q) + sq(g) - 2.0 * dot).max(1e-12).sqrt()
}

struct Case<'a> {
    queries: &'a [f32],
    gallery: &'a [f32],
    dim: usize,
    k: usize,
    gallery_groups: Option<&'a [u32]>,
    opts: SearchOptions<'a>,
}

impl Case<'_> {
    fn own(&self, q: usize) -> Option<usize> {
        match self.opts.exclude {
            Exclude::Nothing => None,
            Exclude::Offset(o) => Some(o + q),
            Exclude::PerQuery(v) => v[q],
        }
    }
    fn candidate(&self, q: usize, j: usize) -> bool {
        self.own(q) != Some(j) && self.opts.query_groups.zip(self.gallery_groups).is_none_or(|(qg, gg)| qg[q] == gg[j])
    }
    fn row(&self, data: &[f32], i: usize) -> Vec<f32> {
        data[i * self.dim..(i + 1) * self.dim].to_vec()
    }
    fn tol(&self, q: usize, j: usize, d_gpu: f64) -> f64 {
        let (qr, gr) = (self.row(self.queries, q), self.row(self.gallery, j));
        let d = dist64(&qr, &gr);
        1e-5 * d + (self.dim + 4) as f64 * f32::EPSILON as f64 * (sq(&qr) + sq(&gr)) / (d_gpu + d)
    }

    /// Runs the GPU search and the reference and compares them as the module docs say; returns
    /// the GPU result.
    fn check(&self, what: &str) -> Neighbours {
        self.check_on(&gpu(), what)
    }

    fn check_on(&self, g: &tailor::Gpu, what: &str) -> Neighbours {
        let got = knn::knn(g, self.queries, self.gallery, self.dim, self.k, self.gallery_groups, &self.opts)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = knn::knn_ref(self.queries, self.gallery, self.dim, self.k, self.gallery_groups, &self.opts).unwrap();
        assert_eq!((got.queries, got.k), (want.queries, want.k), "{what}");
        for q in 0..got.queries {
            let (gi, gd) = (got.indices_of(q), got.distances_of(q));
            let (wi, wd) = (want.indices_of(q), want.distances_of(q));
            let at = |p: usize| format!("{what}: query {q}, position {p}: got {gi:?} {gd:?}, want {wi:?} {wd:?}");
            for p in 0..self.k {
                if wi[p] == NO_NEIGHBOUR {
                    assert!(gi[p] == NO_NEIGHBOUR && gd[p] == f32::INFINITY, "{}", at(p));
                    continue;
                }
                let j = gi[p] as usize;
                assert!(gi[p] != NO_NEIGHBOUR && self.candidate(q, j), "{}", at(p));
                assert!(!gi[..p].contains(&gi[p]), "{} (a duplicate)", at(p));
                if p > 0 {
                    assert!((gd[p - 1], gi[p - 1]) < (gd[p], gi[p]), "{} (not sorted)", at(p));
                }
                let dg = gd[p] as f64;
                let d = dist64(&self.row(self.queries, q), &self.row(self.gallery, j));
                let tol = self.tol(q, j, dg);
                assert!((dg - d).abs() <= tol, "{} (distance {dg} vs {d}, tol {tol})", at(p));
                if gi[p] != wi[p] {
                    let r = wi[p] as usize;
                    let slack = tol + self.tol(q, r, wd[p]);
                    assert!((d - wd[p]).abs() <= slack, "{} (not a near-tie: slack {slack})", at(p));
                }
            }
        }
        got
    }
}

fn plain<'a>(queries: &'a [f32], gallery: &'a [f32], dim: usize, k: usize) -> Case<'a> {
    Case { queries, gallery, dim, k, gallery_groups: None, opts: SearchOptions::default() }
}

#[test]
fn knn_awkward_shapes_match_reference() {
    let mut rng = Rng::new(41);
    // (queries, gallery, dim, k): single rows, dimension 1, odd and vec4 dimensions, k = 1 and
    // k = G, galleries that are no multiple of 4 or of any chunk.
    for (nq, ng, dim, k) in
        [(1, 1, 1, 1), (1, 7, 1, 7), (5, 13, 3, 1), (9, 37, 5, 37), (17, 101, 33, 10), (6, 70, 16, 9), (3, 250, 7, 64)]
    {
        let (q, g) = (data(&mut rng, nq, dim), data(&mut rng, ng, dim));
        for (chunk, block) in [(None, None), (Some(4), None), (Some(13), Some(4)), (Some(36), Some(1))] {
            let mut c = plain(&q, &g, dim, k);
            c.opts.chunk = chunk;
            c.opts.query_block = block;
            c.check(&format!("Q={nq} G={ng} D={dim} k={k} chunk {chunk:?} block {block:?}"));
        }
    }
}

/// Workgroups of 256 (a GPU's plan) instead of lavapipe's 64.
#[test]
fn knn_gpu_plans_match_reference() {
    let mut rng = Rng::new(49);
    let (dim, g) = (7, data(&mut rng, 700, 7));
    let q = data(&mut rng, 5, dim);
    let planned = gpu_planned();
    for (k, chunk) in [(1, Some(100)), (10, None), (300, Some(256)), (700, Some(128))] {
        let mut c = plain(&q, &g, dim, k);
        c.opts.chunk = chunk;
        c.check_on(&planned, &format!("GPU plans, k={k}"));
    }
}

#[test]
fn knn_large_k_over_many_chunks() {
    let mut rng = Rng::new(42);
    let (dim, ng) = (8, 601);
    let (q, g) = (data(&mut rng, 7, dim), data(&mut rng, ng, dim));
    // k = G (a list of 1024 slots), k in the hundreds, chunks of 64 and 100.
    for (k, chunk) in [(601, 64), (300, 100), (129, 64), (2, 64)] {
        let mut c = plain(&q, &g, dim, k);
        c.opts.chunk = Some(chunk);
        let plan = knn::plan(&gpu(), 7, ng, dim, k, &c.opts).unwrap();
        assert!(plan.chunks >= 7, "{plan:?}");
        c.check(&format!("k={k} chunk {chunk}"));
    }
}

/// Integer data: every product, sum and norm is exact in f32, so equal distances are exact ties
/// on both sides and the indices must match the reference exactly (lower index first).
#[test]
fn knn_exact_ties_go_to_the_lower_index() {
    let mut rng = Rng::new(43);
    let dim = 3;
    let ints = |rng: &mut Rng, n: usize| (0..n * dim).map(|_| rng.below(5) as f32 - 2.0).collect::<Vec<f32>>();
    let (q, g) = (ints(&mut rng, 11), ints(&mut rng, 90));
    for (k, chunk) in [(1, Some(4)), (5, Some(8)), (30, None), (90, Some(12))] {
        let mut c = plain(&q, &g, dim, k);
        c.opts.chunk = chunk;
        let got = c.check(&format!("integer ties k={k}"));
        let want = knn::knn_ref(&q, &g, dim, k, None, &c.opts).unwrap();
        assert_eq!(got.indices, want.indices, "k={k}");
        // Many equal distances per row: the test means something.
        let ties = (0..11).filter(|&r| want.distances_of(r).windows(2).any(|w| w[0] == w[1])).count();
        assert!(k == 1 || ties >= 5, "k={k}: {ties} rows with ties");
    }
}

/// Duplicate gallery rows of random data, in different chunks: bit-identical distances, and the
/// lower index first.
#[test]
fn knn_duplicate_rows_tie_exactly_across_chunks() {
    let mut rng = Rng::new(44);
    for dim in [5, 16] {
        let mut g = data(&mut rng, 60, dim);
        let copies = [(3, 17), (3, 59), (10, 11), (40, 5), (22, 23)];
        for (src, dst) in copies {
            let row = g[src * dim..(src + 1) * dim].to_vec();
            g[dst * dim..(dst + 1) * dim].copy_from_slice(&row);
        }
        // Queries: some of the duplicated rows themselves (distance at the 1e-6 floor) and others.
        let mut q = data(&mut rng, 6, dim);
        q[..dim].copy_from_slice(&g[3 * dim..4 * dim]);
        let mut c = plain(&q, &g, dim, 60);
        c.opts.chunk = Some(8);
        let got = c.check(&format!("duplicates D={dim}"));
        for r in 0..6 {
            let (i, d) = (got.indices_of(r), got.distances_of(r));
            let pos = |x: u32| i.iter().position(|&v| v == x).unwrap();
            for (src, dst) in copies {
                let (a, b) = (src.min(dst) as u32, src.max(dst) as u32);
                let (a, b) = if src == 3 { (3, b) } else { (a, b) };
                assert_eq!(d[pos(a)].to_bits(), d[pos(b)].to_bits(), "D={dim} query {r}: rows {a} and {b}");
                assert!(pos(a) < pos(b), "D={dim} query {r}: row {a} must come before its copy {b}");
            }
        }
        assert_eq!(got.distances_of(0)[0], 1e-6);
        assert_eq!(&got.indices_of(0)[..3], &[3, 17, 59]);
    }
}

#[test]
fn knn_leave_one_out() {
    let mut rng = Rng::new(45);
    let dim = 6;
    let mut g = data(&mut rng, 50, dim);
    // Item 7 has a copy at 30: leaving 7 out, its nearest is the copy at the distance floor.
    let row = g[7 * dim..8 * dim].to_vec();
    g[30 * dim..31 * dim].copy_from_slice(&row);
    let mut c = plain(&g, &g, dim, 10);
    c.opts.exclude = Exclude::Offset(0);
    c.opts.chunk = Some(12);
    let got = c.check("every item against the others");
    assert_eq!((got.indices_of(7)[0], got.distances_of(7)[0]), (30, 1e-6));
    assert_eq!(got.indices_of(30)[0], 7);
    // k = G: the last slot of every row is empty.
    let mut c = plain(&g, &g, dim, 50);
    c.opts.exclude = Exclude::Offset(0);
    let got = c.check("k = G");
    assert!((0..50).all(|r| got.indices_of(r)[49] == NO_NEIGHBOUR && got.row(r).count() == 49));
    // Queries that are gallery items 20..32.
    let q = g[20 * dim..32 * dim].to_vec();
    let mut c = plain(&q, &g, dim, 5);
    c.opts.exclude = Exclude::Offset(20);
    c.opts.query_block = Some(5);
    c.check("a slice of the gallery");
    // Per query, some without an item of their own.
    let own: Vec<Option<usize>> = (0..12).map(|i| (i % 3 != 0).then_some(20 + i)).collect();
    let mut c = plain(&q, &g, dim, 5);
    c.opts.exclude = Exclude::PerQuery(&own);
    c.opts.chunk = Some(8);
    let got = c.check("per-query own items");
    assert_eq!(got.indices_of(0)[0], 20, "query 0 has no own item and is item 20");
    assert_ne!(got.indices_of(1)[0], 21);
}

#[test]
fn knn_groups_and_short_rows() {
    let mut rng = Rng::new(46);
    let dim = 9;
    let (q, g) = (data(&mut rng, 20, dim), data(&mut rng, 83, dim));
    // Group 3 has 2 gallery items, group 4 none.
    let mut gg: Vec<u32> = (0..83).map(|i| (i % 3) as u32).collect();
    gg[10] = 3;
    gg[77] = 3;
    let qg: Vec<u32> = (0..20).map(|i| (i % 5) as u32).collect();
    for (k, chunk) in [(5, Some(8)), (40, None), (83, Some(20))] {
        let mut c = plain(&q, &g, dim, k);
        c.gallery_groups = Some(&gg);
        c.opts.query_groups = Some(&qg);
        c.opts.chunk = chunk;
        let got = c.check(&format!("groups k={k}"));
        let mut three: Vec<usize> = got.row(3).map(|(i, _)| i).collect();
        three.sort();
        assert_eq!(three, [10, 77]);
        assert_eq!(got.row(4).count(), 0);
        assert!(got.distances_of(4).iter().all(|&d| d == f32::INFINITY));
    }
    // Groups and leave-one-out together.
    let mut c = plain(&g, &g, dim, 30);
    c.gallery_groups = Some(&gg);
    c.opts.query_groups = Some(&gg);
    c.opts.exclude = Exclude::Offset(0);
    c.opts.chunk = Some(16);
    let got = c.check("groups, leave-one-out");
    assert_eq!(got.row(10).map(|(i, _)| i).collect::<Vec<_>>(), [77]);
}

/// A binding limit of a few KiB: the gallery is bound a window at a time (unaligned chunk starts
/// inside aligned windows) and queries go in blocks.
#[test]
fn knn_windows_under_a_small_binding_limit() {
    let mut rng = Rng::new(47);
    let dim = 12;
    let (q, g) = (data(&mut rng, 40, dim), data(&mut rng, 500, dim));
    let limited = limited_gpu(8192);
    let opts = SearchOptions::default();
    let plan = knn::plan(&limited, 40, 500, dim, 20, &opts).unwrap();
    assert!(plan.chunks >= 3 && plan.blocks >= 2, "{plan:?}");
    let got = knn::knn(&limited, &q, &g, dim, 20, None, &opts).unwrap();
    drop(limited);
    let on_full = knn::knn(&gpu(), &q, &g, dim, 20, None, &opts).unwrap();
    // Cut differently, the same products and the same selection: bit-identical results.
    assert_eq!(got, on_full);
    plain(&q, &g, dim, 20).check("full binding limit");
}

#[test]
fn knn_gallery_searched_twice() {
    let mut rng = Rng::new(48);
    let dim = 4;
    let g = data(&mut rng, 33, dim);
    let gpu = gpu();
    let gallery = GpuGallery::new(&gpu, &g, dim, None).unwrap();
    for n in [1, 8] {
        let q = data(&mut rng, n, dim);
        let got = gallery.search(&gpu, &q, 3, &SearchOptions::default()).unwrap();
        assert_eq!(got, knn::knn(&gpu, &q, &g, dim, 3, None, &SearchOptions::default()).unwrap());
        plain(&q, &g, dim, 3).check("reused gallery");
    }
    let none = gallery.search(&gpu, &[], 3, &SearchOptions::default()).unwrap();
    assert_eq!((none.queries, none.indices.len()), (0, 0));
}

#[test]
fn knn_bad_inputs_are_errors() {
    let g = gpu();
    let (q, gal) = (vec![0.5f32; 6], vec![0.25f32; 12]);
    let o = SearchOptions::default();
    let shape = |r: tailor::Result<Neighbours>| assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    shape(knn::knn(&g, &q, &gal, 3, 0, None, &o));
    shape(knn::knn(&g, &q, &gal, 3, 5, None, &o));
    shape(knn::knn(&g, &q, &[], 3, 1, None, &o));
    shape(knn::knn(&g, &q[..5], &gal, 3, 1, None, &o));
    shape(knn::knn(&g, &q, &gal, 0, 1, None, &o));
    shape(knn::knn(&g, &q, &gal, 3, 1, Some(&[0, 1, 2, 3]), &o));
    let qg = [0u32, 1];
    shape(knn::knn(&g, &q, &gal, 3, 1, None, &SearchOptions { query_groups: Some(&qg), ..o }));
    shape(knn::knn(&g, &q, &gal, 3, 1, Some(&[0, 1, 2]), &SearchOptions { query_groups: Some(&qg), ..o }));
    shape(knn::knn(&g, &q, &gal, 3, 1, None, &SearchOptions { exclude: Exclude::Offset(3), ..o }));
    shape(knn::knn(&g, &q, &gal, 3, 1, None, &SearchOptions { exclude: Exclude::PerQuery(&[Some(4), None]), ..o }));
    let mut nan = q.clone();
    nan[4] = f32::NAN;
    assert!(matches!(knn::knn(&g, &nan, &gal, 3, 1, None, &o), Err(Error::Invalid(_))));
    assert!(matches!(knn::knn(&g, &q, &[f32::INFINITY; 3], 3, 1, None, &o), Err(Error::Invalid(_))));
    assert!(matches!(knn::knn_ref(&q, &gal, 3, 5, None, &o), Err(Error::Shape { .. })));
}

/// An index file searched on the GPU: hits name the rows' files and labels; an empty index, other
/// query dimensions and another model's fingerprint are their own errors.
#[test]
pub(crate) fn index_search_and_its_errors() {
    use tailor::search::{Index, IndexError};
    let mut rng = Rng::new(50);
    let dim = 6;
    let emb = data(&mut rng, 25, dim);
    let files: Vec<String> = (0..25).map(|i| format!("img{i:02}.jpg")).collect();
    let labels: Vec<String> = (0..25).map(|i| ["top", "shoe"][i % 2].to_string()).collect();
    let index = Index::new(emb.clone(), dim, files, Some(labels), "model-a").unwrap();
    let g = gpu();
    let q = data(&mut rng, 3, dim);
    let hits = index.search(&g, &q, dim, 4).unwrap();
    let want = knn::knn(&g, &q, &emb, dim, 4, None, &SearchOptions::default()).unwrap();
    assert_eq!(hits.len(), 3);
    for (r, row) in hits.iter().enumerate() {
        let got: Vec<(usize, f32)> = row.iter().map(|h| (h.index, h.distance)).collect();
        assert_eq!(got, want.row(r).collect::<Vec<_>>());
        assert!(row.iter().all(|h| h.path == format!("img{:02}.jpg", h.index)));
        assert!(row.iter().all(|h| h.label == Some(["top", "shoe"][h.index % 2])));
    }
    // k past the index's size: every row, nearest first.
    assert_eq!(index.search(&g, &q[..dim], dim, 100).unwrap()[0].len(), 25);
    let problem = |e: tailor::Error| match e {
        tailor::Error::Index { problem, .. } => problem,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        problem(index.search(&g, &q[..4], 4, 1).unwrap_err()),
        IndexError::Dim { index: 6, query: 4, .. }
    ));
    let empty = Index::new(vec![], dim, vec![], None, "model-a").unwrap();
    assert_eq!(problem(empty.search(&g, &q, dim, 1).unwrap_err()), IndexError::Empty);
    assert!(matches!(problem(index.check_model("model-b").unwrap_err()), IndexError::OtherModel { .. }));
    assert!(matches!(index.search(&g, &q[..5], dim, 1), Err(Error::Shape { .. })));
}
