use crate::common::*;
use tailor::ops::pool::{self, PoolShape, ViewRef};
use tailor::ops::Act;

/// Channels `off..off + c` of a buffer with `tot` channels per image.
#[derive(Clone, Copy, Debug)]
struct Lay {
    off: usize,
    tot: usize,
}

fn whole(c: usize) -> Lay {
    Lay { off: 0, tot: c }
}

fn view(l: Lay) -> ViewRef {
    ViewRef { c_off: l.off, c_total: l.tot }
}

fn act(b: &wgpu::Buffer, l: Lay) -> Act<'_> {
    Act::slice(b, l.off, l.tot)
}

/// A buffer of `n` images laid out as `l` with `dense` [n, c, plane] in the view and random
/// values in the other channels (which the kernels must leave alone).
fn place(rng: &mut Rng, n: usize, c: usize, plane: usize, dense: &[f64], l: Lay) -> Vec<f64> {
    let mut full = rng.vec(n * l.tot * plane, -1.0, 1.0);
    pool::copy_channels_ref(n, c, plane, dense, view(whole(c)), &mut full, view(l), false);
    full
}

/// What the whole output buffer must hold after a kernel writes `result` into view `l`.
fn expect(old: &[f64], n: usize, c: usize, plane: usize, result: &[f64], l: Lay, acc: bool) -> Vec<f64> {
    let mut want = old.to_vec();
    pool::copy_channels_ref(n, c, plane, result, view(whole(c)), &mut want, view(l), acc);
    want
}

/// Runs a kernel writing view `lo` of a fresh random buffer, with and without accumulation
/// (`acc = None`: a forward, which only overwrites), and checks the whole buffer.
#[allow(clippy::too_many_arguments)]
fn check_output(
    what: &str,
    rng: &mut Rng,
    n: usize,
    c: usize,
    plane: usize,
    lo: Lay,
    want: &[f64],
    tol: f64,
    accumulates: bool,
    build: impl Fn(&wgpu::Buffer, bool) -> Vec<tailor::gpu::Dispatch>,
) {
    let g = gpu();
    let modes: &[bool] = if accumulates { &[false, true] } else { &[false] };
    for &acc in modes {
        let old = rng.vec(n * lo.tot * plane, -1.0, 1.0);
        let b = up(&g, &old);
        let got = run_read(&g, &build(&b, acc), &b, old.len());
        let full = expect(&old, n, c, plane, want, lo, acc);
        assert_close(&format!("{what} (accumulate {acc})"), &got, &full, tol, tol);
    }
}

struct Case {
    s: PoolShape,
    x: Lay, // layout of x (and dx)
    y: Lay, // layout of y (and dy)
}

fn case(n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize, x: Lay, y: Lay) -> Case {
    Case { s: PoolShape::new(n, c, h, w, k, stride, pad).unwrap(), x, y }
}

/// Batch 1 and 3, channels 3, 13 and 76, odd and DenseNet sizes, channel-slice views, windows
/// that overlap (k > stride), tile (k = stride), leave gaps (k < stride) and hang over the edge.
fn cases(max: bool) -> Vec<Case> {
    let mut v = vec![
        case(1, 3, 112, 112, 3, 2, 1, whole(3), whole(3)),
        case(2, 13, 17, 15, 3, 2, 1, Lay { off: 5, tot: 20 }, Lay { off: 2, tot: 16 }),
        case(1, 76, 7, 9, 2, 2, 0, Lay { off: 10, tot: 90 }, whole(76)),
        case(3, 3, 9, 7, 3, 1, 1, whole(3), Lay { off: 1, tot: 5 }),
        case(1, 13, 15, 17, 5, 3, 2, Lay { off: 0, tot: 14 }, Lay { off: 12, tot: 25 }),
        case(2, 3, 56, 56, 2, 2, 0, Lay { off: 3, tot: 6 }, Lay { off: 3, tot: 6 }),
        case(1, 3, 9, 9, 2, 3, 0, whole(3), whole(3)),
        case(1, 13, 17, 17, 4, 2, 2, whole(13), whole(13)),
        case(1, 76, 56, 56, 2, 2, 0, Lay { off: 40, tot: 128 }, Lay { off: 4, tot: 80 }),
        // the 2×2 entries: odd height (its last row is in no window), 7×7 output, tiny planes
        case(1, 13, 7, 10, 2, 2, 0, Lay { off: 1, tot: 15 }, Lay { off: 1, tot: 14 }),
        case(2, 5, 14, 14, 2, 2, 0, whole(5), whole(5)),
        case(3, 3, 3, 2, 2, 2, 0, whole(3), Lay { off: 1, tot: 4 }),
    ];
    if max {
        v.push(case(1, 3, 33, 40, 7, 1, 3, whole(3), whole(3)));
        v.push(case(1, 3, 56, 56, 3, 2, 1, whole(3), whole(3)));
    }
    v
}

fn run_max(rng: &mut Rng, cs: &Case, x: &[f64]) {
    let g = gpu();
    let s = cs.s;
    let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
    let bx = up(&g, &place(rng, s.n, s.c, hw, x, cs.x));
    let tag = format!("max {s:?}");
    let y = pool::max_forward_ref(&s, x);
    check_output(&format!("{tag} forward"), rng, s.n, s.c, ohw, cs.y, &y, 0.0, false, |b, _| {
        pool::max_forward(&g, &s, act(&bx, cs.x), act(b, cs.y)).unwrap()
    });
    let dy = rng.vec(s.out_len(), -1.0, 1.0);
    let bdy = up(&g, &place(rng, s.n, s.c, ohw, &dy, cs.y));
    let dx = pool::max_backward_ref(&s, x, &dy);
    check_output(&format!("{tag} backward"), rng, s.n, s.c, hw, cs.x, &dx, 1e-6, true, |b, acc| {
        pool::max_backward(&g, &s, act(&bx, cs.x), act(&bdy, cs.y), act(b, cs.x), acc).unwrap()
    });
}

#[test]
fn max_pool_matches_reference() {
    let mut rng = Rng::new(11);
    for cs in cases(true) {
        let x = rng.vec(cs.s.in_len(), -1.0, 1.0);
        run_max(&mut rng, &cs, &x);
    }
}

/// Few distinct values: most windows hold several maxima, and forward and backward must both
/// pick the first in row-major order, as PyTorch does (also for all-equal and negative planes).
#[test]
fn max_pool_ties_pick_the_first_maximum() {
    let mut rng = Rng::new(12);
    for cs in cases(true) {
        let x: Vec<f64> = (0..cs.s.in_len()).map(|_| rng.below(3) as f64 - 2.0).collect();
        run_max(&mut rng, &cs, &x);
    }
    let cs = case(2, 3, 9, 11, 3, 2, 1, whole(3), whole(3));
    run_max(&mut rng, &cs, &vec![-0.5; cs.s.in_len()]);
}

#[test]
pub(crate) fn max_pool_first_maximum_by_hand() {
    // One 2×2 window holding three equal maxima: the first (top right) takes the gradient.
    let s = PoolShape::new(1, 1, 2, 2, 2, 2, 0).unwrap();
    let x = [0.0, 5.0, 5.0, 5.0];
    assert_eq!(pool::max_backward_ref(&s, &x, &[1.0]), vec![0.0, 1.0, 0.0, 0.0]);
    // 3×3/2 pad 1 on 3×3: windows overlap on row and column 1; the centre wins all four.
    let s = PoolShape::new(1, 1, 3, 3, 3, 2, 1).unwrap();
    let x = [0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(pool::max_backward_ref(&s, &x, &[1.0, 2.0, 3.0, 4.0])[4], 10.0);
    let g = gpu();
    let (bx, bdy, bdx) = (up(&g, &x), up(&g, &[1.0, 2.0, 3.0, 4.0]), g.zeros("dx", 9).unwrap());
    let d = pool::max_backward(&g, &s, Act::whole(&bx, 1), Act::whole(&bdy, 1), Act::whole(&bdx, 1), false).unwrap();
    assert_eq!(run_read(&g, &d, &bdx, 9), vec![0.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]);
}

/// More than 65535 (plane, tile) workgroups: the flat workgroup index over a 2D grid.
#[test]
pub(crate) fn max_pool_backward_past_the_grid_limit() {
    let mut rng = Rng::new(13);
    let cs = case(1, 66_000, 2, 3, 2, 1, 0, whole(66_000), whole(66_000));
    let x = rng.vec(cs.s.in_len(), -1.0, 1.0);
    run_max(&mut rng, &cs, &x);
}

fn run_avg(rng: &mut Rng, cs: &Case) {
    let g = gpu();
    let s = cs.s;
    let (hw, ohw) = (s.h * s.w, s.out_h() * s.out_w());
    let x = rng.vec(s.in_len(), -1.0, 1.0);
    let bx = up(&g, &place(rng, s.n, s.c, hw, &x, cs.x));
    let tag = format!("avg {s:?}");
    let y = pool::avg_forward_ref(&s, &x);
    check_output(&format!("{tag} forward"), rng, s.n, s.c, ohw, cs.y, &y, 1e-6, false, |b, _| {
        pool::avg_forward(&g, &s, act(&bx, cs.x), act(b, cs.y)).unwrap()
    });
    let dy = rng.vec(s.out_len(), -1.0, 1.0);
    let bdy = up(&g, &place(rng, s.n, s.c, ohw, &dy, cs.y));
    let dx = pool::avg_backward_ref(&s, &dy);
    check_output(&format!("{tag} backward"), rng, s.n, s.c, hw, cs.x, &dx, 1e-6, true, |b, acc| {
        pool::avg_backward(&g, &s, act(&bdy, cs.y), act(b, cs.x), acc).unwrap()
    });
}

#[test]
pub(crate) fn avg_pool_matches_reference() {
    let mut rng = Rng::new(14);
    for cs in cases(false) {
        run_avg(&mut rng, &cs);
    }
}

/// The 2×2 entries with more than 65535 × 8 rows of blocks: rows continue along z.
#[test]
pub(crate) fn avg_pool_2x2_past_the_grid_limit() {
    let mut rng = Rng::new(15);
    let c = 530_000;
    run_avg(&mut rng, &case(1, c, 3, 2, 2, 2, 0, whole(c), whole(c)));
}

#[test]
pub(crate) fn global_avg_pool_matches_reference() {
    let g = gpu();
    let mut rng = Rng::new(15);
    // Planes 7×7 to 56×56, odd and multiple-of-4 sizes (the vec4 path), and more planes than
    // one grid dimension holds.
    let cases = [
        (1, 3, 7 * 7, Lay { off: 1, tot: 4 }, whole(3)),
        (2, 13, 9 * 9, whole(13), Lay { off: 3, tot: 20 }),
        (1, 76, 56 * 56, Lay { off: 4, tot: 80 }, Lay { off: 0, tot: 77 }),
        (3, 13, 15 * 17, Lay { off: 2, tot: 15 }, whole(13)),
        (2, 76, 8 * 8, whole(76), whole(76)),
        (1, 3, 28 * 28, whole(3), whole(3)),
        (1, 66_000, 2 * 2, whole(66_000), whole(66_000)),
        (1, 66_000, 1, whole(66_000), whole(66_000)),
    ];
    for (n, c, hw, lx, ly) in cases {
        let x = rng.vec(n * c * hw, -1.0, 1.0);
        let bx = up(&g, &place(&mut rng, n, c, hw, &x, lx));
        let y = pool::global_avg_forward_ref(n, c, hw, &x);
        let tag = format!("global avg n {n} c {c} hw {hw}");
        check_output(&format!("{tag} forward"), &mut rng, n, c, 1, ly, &y, 1e-6, false, |b, _| {
            pool::global_avg_forward(&g, n, c, hw, act(&bx, lx), act(b, ly)).unwrap()
        });
        let dy = rng.vec(n * c, -1.0, 1.0);
        let bdy = up(&g, &place(&mut rng, n, c, 1, &dy, ly));
        let dx = pool::global_avg_backward_ref(n, c, hw, &dy);
        check_output(&format!("{tag} backward"), &mut rng, n, c, hw, lx, &dx, 1e-7, true, |b, acc| {
            pool::global_avg_backward(&g, n, c, hw, act(&bdy, ly), act(b, lx), acc).unwrap()
        });
    }
}

#[test]
pub(crate) fn copy_channels_matches_reference() {
    let g = gpu();
    let mut rng = Rng::new(16);
    // Concatenation into a wider buffer and gradient slicing out of one; hw % 4 == 0 takes vec4s.
    let cases = [
        (1, 3, 49, whole(3), Lay { off: 5, tot: 8 }),
        (2, 13, 56 * 56, Lay { off: 7, tot: 20 }, Lay { off: 0, tot: 13 }),
        (2, 76, 7 * 7, Lay { off: 0, tot: 100 }, Lay { off: 24, tot: 100 }),
        (3, 13, 6, Lay { off: 1, tot: 14 }, Lay { off: 2, tot: 15 }),
        (1, 76, 28 * 28, whole(76), Lay { off: 64, tot: 140 }),
    ];
    for (n, c, hw, ls, ld) in cases {
        let x = rng.vec(n * c * hw, -1.0, 1.0);
        let bs = up(&g, &place(&mut rng, n, c, hw, &x, ls));
        let tag = format!("copy_channels n {n} c {c} hw {hw} {ls:?} → {ld:?}");
        check_output(&tag, &mut rng, n, c, hw, ld, &x, 1e-7, true, |b, acc| {
            pool::copy_channels(&g, n, c, hw, act(&bs, ls), act(b, ld), acc).unwrap()
        });
    }
}

/// Distinct values, at least 0.01 apart, so that a 1e-4 step never changes a window's argmax.
fn distinct(rng: &mut Rng, len: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..len).map(|i| i as f64 * 0.01 - 0.3).collect();
    rng.shuffle(&mut v);
    v
}

#[test]
fn backward_references_match_finite_differences() {
    let mut rng = Rng::new(17);
    let shapes = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2), (2, 3, 0)];
    for (k, stride, pad) in shapes {
        let s = PoolShape::new(2, 3, 7, 6, k, stride, pad).unwrap();
        let dy = rng.vec(s.out_len(), -1.0, 1.0);
        let x = distinct(&mut rng, s.in_len());
        let fd = finite_diff(&x, 1e-4, |x| dot(&pool::max_forward_ref(&s, x), &dy));
        assert_close(&format!("max fd {s:?}"), &pool::max_backward_ref(&s, &x, &dy), &fd, 1e-8, 1e-8);
        let x = rng.vec(s.in_len(), -1.0, 1.0);
        let fd = finite_diff(&x, 1e-4, |x| dot(&pool::avg_forward_ref(&s, x), &dy));
        assert_close(&format!("avg fd {s:?}"), &pool::avg_backward_ref(&s, &dy), &fd, 1e-8, 1e-8);
    }
    let (n, c, hw) = (2, 3, 13);
    let x = rng.vec(n * c * hw, -1.0, 1.0);
    let dy = rng.vec(n * c, -1.0, 1.0);
    let fd = finite_diff(&x, 1e-4, |x| dot(&pool::global_avg_forward_ref(n, c, hw, x), &dy));
    assert_close("global avg fd", &pool::global_avg_backward_ref(n, c, hw, &dy), &fd, 1e-8, 1e-8);
}

#[test]
fn shapes_follow_pytorch_and_bad_ones_are_refused() {
    let s = PoolShape::new(1, 64, 112, 112, 3, 2, 1).unwrap();
    assert_eq!((s.out_h(), s.out_w()), (56, 56));
    let s = PoolShape::new(1, 1, 7, 9, 2, 2, 0).unwrap();
    assert_eq!((s.out_h(), s.out_w()), (3, 4));
    let s = PoolShape::new(1, 1, 9, 9, 2, 3, 0).unwrap();
    assert_eq!((s.out_h(), s.out_w()), (3, 3));
    assert!(PoolShape::new(1, 1, 8, 8, 3, 2, 2).is_err(), "pad over half the kernel");
    assert!(PoolShape::new(1, 1, 2, 8, 5, 1, 1).is_err(), "window over the padded input");
    assert!(PoolShape::new(1, 1, 8, 8, 3, 0, 1).is_err(), "stride 0");
    assert!(PoolShape::new(1, 1, 8, 8, 0, 1, 0).is_err(), "kernel 0");
    assert!(PoolShape::new(0, 1, 8, 8, 2, 2, 0).is_err(), "empty batch");

    let g = gpu();
    let s = PoolShape::new(1, 4, 8, 8, 2, 2, 0).unwrap();
    let (a, b) = (g.zeros("a", 8 * 64).unwrap(), g.zeros("b", 4 * 16).unwrap());
    // A view past its channel count, a buffer too small for its view, one buffer twice.
    assert!(pool::max_forward(&g, &s, Act::slice(&a, 6, 8), Act::whole(&b, 4)).is_err());
    assert!(pool::avg_forward(&g, &s, Act::whole(&a, 4), Act::whole(&b, 8)).is_err());
    assert!(pool::max_forward(&g, &s, Act::slice(&a, 0, 8), Act::slice(&a, 4, 8)).is_err());
    assert!(pool::copy_channels(&g, 1, 4, 64, Act::slice(&a, 0, 8), Act::slice(&a, 4, 8), false).is_err());
    assert!(pool::max_forward(&g, &s, Act::slice(&a, 4, 8), Act::whole(&b, 4)).is_ok());
    // A window too large for the backward's workgroup arrays is refused, not run.
    let s = PoolShape::new(1, 1, 80, 80, 40, 1, 0).unwrap();
    let (x, y) = (g.zeros("x", 6400).unwrap(), g.zeros("y", 41 * 41).unwrap());
    let dx = g.zeros("dx", 6400).unwrap();
    assert!(pool::max_backward(&g, &s, Act::whole(&x, 1), Act::whole(&y, 1), Act::whole(&dx, 1), false).is_err());
}

/// Max pooling forward and backward over 7 images in channel views, with a binding limit of
/// 8 KiB: the input buffers (4 KiB per image) are bound two images at a time, in chunks 0..2,
/// 2..4, 4..6, 6..7.
#[test]
fn max_pool_in_batch_chunks_matches_reference() {
    let s = PoolShape::new(7, 3, 16, 16, 3, 2, 1).unwrap();
    let (lx, ly) = (Lay { off: 1, tot: 4 }, Lay { off: 0, tot: 4 });
    let (hw, oo) = (s.h * s.w, s.out_h() * s.out_w());
    let g = limited_gpu(8 << 10);
    let chunks = cut(&g, s.n, &[(lx.tot * hw * 4) as u64, (ly.tot * oo * 4) as u64]);
    let mut rng = Rng::new(41);
    let (x, dy) = (rng.vec(s.in_len(), -1.0, 1.0), rng.vec(s.out_len(), -1.0, 1.0));
    let (bx, bdy) = (up(&g, &place(&mut rng, s.n, s.c, hw, &x, lx)), up(&g, &place(&mut rng, s.n, s.c, oo, &dy, ly)));
    let (old_y, old_dx) = (rng.vec(s.n * ly.tot * oo, -1.0, 1.0), rng.vec(s.n * lx.tot * hw, -1.0, 1.0));
    let (by, bdx) = (up(&g, &old_y), up(&g, &old_dx));
    let mut d = Vec::new();
    for r in &chunks {
        let sc = PoolShape { n: r.len(), ..s };
        let [x, dx] = [&bx, &bdx].map(|b| act(b, lx).images(r.clone(), hw));
        let [y, dy] = [&by, &bdy].map(|b| act(b, ly).images(r.clone(), oo));
        d.extend(pool::max_forward(&g, &sc, x, y).unwrap());
        d.extend(pool::max_backward(&g, &sc, x, dy, dx, true).unwrap());
    }
    g.run(&d).unwrap();
    let what = format!("{s:?} in chunks {chunks:?}");
    let want_y = expect(&old_y, s.n, s.c, oo, &pool::max_forward_ref(&s, &x), ly, false);
    assert_close(&format!("max forward {what}"), &read(&g, &by, old_y.len()), &want_y, 1e-6, 1e-6);
    let want_dx = expect(&old_dx, s.n, s.c, hw, &pool::max_backward_ref(&s, &x, &dy), lx, true);
    assert_close(&format!("max backward {what}"), &read(&g, &bdx, old_dx.len()), &want_dx, 1e-6, 1e-6);
}

/// A NaN in a window wins it (the last NaN, as PyTorch's `val > max || isnan(val)`), in the
/// generic backward and in the 3×3 / stride 2 / padding 1 one.
#[test]
fn max_pool_backward_routes_gradients_to_nans() {
    let g = gpu();
    let mut rng = Rng::new(16);
    for s in [
        PoolShape::new(1, 2, 8, 7, 2, 2, 0).unwrap(),
        PoolShape::new(2, 3, 9, 11, 3, 3, 1).unwrap(),
        PoolShape::new(2, 3, 9, 11, 3, 2, 1).unwrap(),
    ] {
        let mut x = rng.vec(s.in_len(), -1.0, 1.0);
        for i in (0..x.len()).step_by(7) {
            x[i] = f64::NAN;
        }
        let dy = rng.vec(s.out_len(), -1.0, 1.0);
        let want = pool::max_backward_ref(&s, &x, &dy);
        let (bx, bdy, bdx) = (up(&g, &x), up(&g, &dy), g.zeros("dx", s.in_len()).unwrap());
        let d = pool::max_backward(&g, &s, Act::whole(&bx, s.c), Act::whole(&bdy, s.c), Act::whole(&bdx, s.c), false)
            .unwrap();
        assert_close(&format!("NaN max backward {s:?}"), &run_read(&g, &d, &bdx, s.in_len()), &want, 1e-6, 1e-6);
    }
}
