use crate::common::*;
use tailor::ops::gemm::{self as gm, GemmConfig, GemmShape, MatrixLayout as L};

const GENERAL: GemmConfig = GemmConfig { wg: 64, tm: 16, tn: 4, vec4: false };
const SMALL: GemmConfig = GemmConfig { wg: 8, tm: 8, tn: 8, vec4: false };
const SMALL_V4: GemmConfig = GemmConfig { wg: 16, tm: 8, tn: 8, vec4: true };

/// Runs one GEMM on random buffers (with slack around the matrices, which must stay untouched)
/// and compares the whole C buffer with the reference.
fn check(what: &str, s: &GemmShape, cfg: &GemmConfig, accumulate: bool, alpha: f64, splits: usize, rng: &mut Rng) {
    let g = gpu();
    let a = rng.vec(s.a_len() + 3, -1.0, 1.0);
    let b = rng.vec(s.b_len() + 5, -1.0, 1.0);
    let c0 = rng.vec(s.c_len() + 7, -1.0, 1.0);
    let (ba, bb, bc) = (up(&g, &a), up(&g, &b), up(&g, &c0));
    let d = if splits > 1 {
        let scratch = g.zeros("scratch", gm::gemm_scratch_len(s, splits)).unwrap();
        gm::gemm_split(&g, s, &ba, &bb, &bc, accumulate, alpha as f32, cfg, splits, &scratch).unwrap()
    } else {
        gm::gemm_with(&g, s, &ba, &bb, &bc, accumulate, alpha as f32, cfg).unwrap()
    };
    let got = run_read(&g, &d, &bc, c0.len());
    let mut want = c0.clone();
    gm::gemm_ref(s, &a, &b, &mut want, accumulate, alpha);
    let depth = (s.k * if s.sums_batches() { s.batch } else { 1 }) as f64;
    assert_close(&format!("{what} {s:?} {cfg:?} splits {splits}"), &got, &want, 2e-7 * depth + 1e-6, 1e-6);
}

fn dense(m: usize, n: usize, k: usize, batch: usize) -> GemmShape {
    GemmShape::dense(m, n, k, batch).unwrap()
}

#[test]
fn dense_shapes_match_reference() {
    let mut rng = Rng::new(10);
    for (m, n, k, batch) in
        [(1, 1, 1, 1), (13, 77, 5, 1), (5, 13, 77, 1), (33, 70, 19, 2), (64, 256, 32, 1), (17, 9, 6, 3)]
    {
        let s = dense(m, n, k, batch);
        for cfg in [GemmConfig::default(), GENERAL, SMALL, SMALL_V4] {
            check("dense", &s, &cfg, false, 1.0, 1, &mut rng);
        }
    }
}

#[test]
fn accumulate_and_alpha() {
    let mut rng = Rng::new(11);
    // n = 77: C one float at a time; n = 76: as vec4s (with the default tiles).
    for n in [77, 76] {
        let s = dense(13, n, 5, 2);
        for cfg in [GemmConfig::default(), GENERAL] {
            check("accumulate", &s, &cfg, true, 1.0, 1, &mut rng);
            check("alpha", &s, &cfg, false, -0.37, 1, &mut rng);
            check("accumulate alpha", &s, &cfg, true, 2.5, 1, &mut rng);
        }
    }
}

#[test]
fn transposed_layouts() {
    let mut rng = Rng::new(12);
    let (m, n, k) = (19, 45, 23);
    for (ta, tb, tc) in
        [(true, false, false), (false, true, false), (true, true, false), (false, false, true), (true, true, true)]
    {
        let a = if ta { L::transposed(m, k) } else { L::row_major(m, k) };
        let b = if tb { L::transposed(k, n) } else { L::row_major(k, n) };
        let c = if tc { L::transposed(m, n) } else { L::row_major(m, n) };
        let s = GemmShape::new(m, n, k, 2, a, b, c).unwrap();
        for cfg in [GemmConfig::default(), SMALL] {
            check("transposed", &s, &cfg, true, 0.5, 1, &mut rng);
        }
    }
}

#[test]
pub(crate) fn every_operand_layout_path() {
    let mut rng = Rng::new(17);
    let (m, n, k, batch) = (20, 36, 22, 2);
    // A read along k (padded rows), along m (stored transposed), or with scalar loads.
    let a_layouts = [
        L { offset: 4, row_stride: 24, col_stride: 1, batch_stride: 24 * m + 4 },
        L { offset: 4, row_stride: 1, col_stride: m, batch_stride: m * k + 4 },
        L { offset: 1, row_stride: 23, col_stride: 1, batch_stride: 23 * m + 1 },
    ];
    let b_layouts = [
        L { offset: 8, row_stride: 40, col_stride: 1, batch_stride: 40 * k + 8 },
        L { offset: 8, row_stride: 1, col_stride: 24, batch_stride: 24 * n + 8 },
        L { offset: 3, row_stride: 1, col_stride: 23, batch_stride: 23 * n + 3 },
    ];
    // C written as aligned vec4s (n = 36, offset 4) or one float at a time (offset 1).
    let c_layouts = [L::row_major(m, n).with_offset(4), L::row_major(m, n).with_offset(1)];
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in a_layouts.into_iter().enumerate() {
        for (j, b) in b_layouts.into_iter().enumerate() {
            for (h, c) in c_layouts.into_iter().enumerate() {
                let s = GemmShape::new(m, n, k, batch, a, b, c).unwrap();
                // The 8×8 tile on the diagonal only: each pipeline costs a second to compile.
                let small = i == j && h == 0;
                let cfgs = if small { vec![GemmConfig::default(), SMALL_V4] } else { vec![GemmConfig::default()] };
                for cfg in cfgs {
                    seen.insert(gm::entry(&s, &cfg));
                    check("layout path", &s, &cfg, true, 1.5, 1, &mut rng);
                }
            }
        }
    }
    assert_eq!(seen.len(), 18, "entry points covered: {seen:?}");
    assert!(seen.iter().filter(|e| e.name().ends_with("_c4")).count() == 9, "vec4 C entry points: {seen:?}");
}

#[test]
fn batch_strides_and_offsets() {
    let mut rng = Rng::new(13);
    // Shared A (batch stride 0), B batches with gaps, C with an offset and padded rows.
    let (m, n, k, batch) = (7, 29, 12, 3);
    let a = L::row_major(m, k).with_batch_stride(0).with_offset(4);
    let b = L::row_major(k, n).with_batch_stride(k * n + 8).with_offset(8);
    let c = L { offset: 3, row_stride: n + 2, col_stride: 1, batch_stride: m * (n + 2) + 1 };
    let s = GemmShape::new(m, n, k, batch, a, b, c).unwrap();
    for cfg in [GemmConfig::default(), GENERAL, SMALL_V4] {
        check("strided", &s, &cfg, false, 1.0, 1, &mut rng);
    }
    // The same with vec4-friendly strides (the columns of B stay aligned).
    let (n4, b4) = (32, L::row_major(k, 32).with_batch_stride(k * 32 + 8).with_offset(8));
    let c4 = L { row_stride: n4 + 2, batch_stride: m * (n4 + 2) + 1, ..c };
    let s = GemmShape::new(m, n4, k, batch, a, b4, c4).unwrap();
    for cfg in [GemmConfig::default(), SMALL_V4] {
        check("strided vec4", &s, &cfg, true, 1.0, 1, &mut rng);
    }
    // Misaligned offsets force the general path even when vec4 is allowed.
    let s = GemmShape::new(m, n4, k, batch, a.with_offset(1), b4.with_offset(3), c4).unwrap();
    check("misaligned", &s, &GemmConfig::default(), true, 1.0, 1, &mut rng);
}

#[test]
fn split_k_and_batch_sums() {
    let mut rng = Rng::new(14);
    let s = dense(5, 7, 1001, 1);
    for splits in [2, 7, 64] {
        check("split-k", &s, &GemmConfig::default(), true, 0.75, splits, &mut rng);
    }
    check("split-k general", &s, &GENERAL, false, 1.0, 5, &mut rng);
    // n = 8: the partial sums written as vec4s.
    let s = dense(5, 8, 1001, 1);
    assert!(gm::entry(&s, &GemmConfig::default()).name().ends_with("_c4"));
    for splits in [1, 7] {
        check("split-k vec4 C", &s, &GemmConfig::default(), true, 0.75, splits, &mut rng);
    }
    let s = dense(6, 11, 301, 3);
    check("split-k batched", &s, &SMALL_V4, true, 1.0, 4, &mut rng);
    // C batch stride 0: Σ_b A_b·B_b (a weight gradient over images), direct and split.
    let (m, n, k, batch) = (9, 13, 50, 5);
    let s = GemmShape::new(
        m,
        n,
        k,
        batch,
        L::row_major(m, k),
        L::transposed(k, n),
        L::row_major(m, n).with_batch_stride(0),
    )
    .unwrap();
    assert!(s.sums_batches());
    for splits in [1, 3, 5, 12] {
        check("batch sum", &s, &GemmConfig::default(), true, 1.0, splits, &mut rng);
    }
}

#[test]
fn one_by_one_convolution_on_channel_slices() {
    let mut rng = Rng::new(15);
    // y[:, 5..5+cout] of a 90-channel buffer = W · x[:, 13..13+cin] of a 40-channel buffer.
    let (n_img, hw, cin, cout) = (3, 7 * 5, 13, 76);
    let (x_off, x_total, y_off, y_total) = (13, 40, 5, 90);
    let w = L::row_major(cout, cin).with_batch_stride(0);
    let x = L { offset: x_off * hw, row_stride: hw, col_stride: 1, batch_stride: x_total * hw };
    let y = L { offset: y_off * hw, row_stride: hw, col_stride: 1, batch_stride: y_total * hw };
    let s = GemmShape::new(cout, hw, cin, n_img, w, x, y).unwrap();
    for cfg in [GemmConfig::default(), GENERAL] {
        check("1x1 conv", &s, &cfg, false, 1.0, 1, &mut rng);
        check("1x1 conv accumulate", &s, &cfg, true, 1.0, 1, &mut rng);
    }
    // Its weight gradient: dW[cout, cin] = Σ_n dy_n · x_nᵀ, a reduction over n and hw.
    let dy = L { offset: y_off * hw, row_stride: hw, col_stride: 1, batch_stride: y_total * hw };
    let xt = L { offset: x_off * hw, row_stride: 1, col_stride: hw, batch_stride: x_total * hw };
    let dw = L::row_major(cout, cin).with_batch_stride(0);
    let s = GemmShape::new(cout, cin, hw, n_img, dy, xt, dw).unwrap();
    check("1x1 conv dW", &s, &GemmConfig::default(), true, 1.0, 1, &mut rng);
    check("1x1 conv dW split", &s, &GemmConfig::default(), false, 1.0, 6, &mut rng);
}

#[test]
fn random_shapes() {
    let mut rng = Rng::new(16);
    for _ in 0..12 {
        let (m, n, k, batch) = (1 + rng.below(40), 1 + rng.below(90), 1 + rng.below(40), 1 + rng.below(3));
        let s = dense(m, n, k, batch);
        let cfg = if rng.below(2) == 0 { GemmConfig::default() } else { SMALL };
        check("random", &s, &cfg, rng.below(2) == 1, 1.0, 1 + rng.below(3), &mut rng);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    assert!(GemmShape::dense(0, 3, 3, 1).is_err());
    let s = dense(4, 4, 4, 1);
    let small = g.zeros("small", 10).unwrap();
    let ok = g.zeros("ok", 16).unwrap();
    assert!(gm::gemm(&g, &s, &small, &ok, &ok, false, 1.0).is_err());
    let bad = GemmConfig { tm: 40, ..GemmConfig::default() };
    assert!(gm::gemm_with(&g, &s, &ok, &ok, &ok, false, 1.0, &bad).is_err());
}
