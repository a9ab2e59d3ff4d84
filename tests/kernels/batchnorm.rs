use crate::common::*;
use tailor::gpu::Gpu;
use tailor::ops::batchnorm::{self as bn, BnShape};
use tailor::ops::Act;

/// A channel view in a bigger buffer: channels `off..off + c` of `tot` per image.
#[derive(Clone, Copy)]
struct View {
    off: usize,
    tot: usize,
}

const WHOLE: View = View { off: 0, tot: 0 };

impl View {
    fn tot(self, s: &BnShape) -> usize {
        if self.tot == 0 {
            s.c
        } else {
            self.tot
        }
    }
    /// The dense tensor `t` placed in a buffer whose other channels hold `fill`.
    fn embed(self, s: &BnShape, t: &[f64], fill: &[f64]) -> Vec<f64> {
        let (tot, hw) = (self.tot(s), s.h * s.w);
        let mut out = fill.to_vec();
        for img in 0..s.n {
            let (src, dst) = ((img * s.c) * hw, (img * tot + self.off) * hw);
            out[dst..dst + s.c * hw].copy_from_slice(&t[src..src + s.c * hw]);
        }
        out
    }
    fn extract(self, s: &BnShape, buf: &[f64]) -> Vec<f64> {
        let (tot, hw) = (self.tot(s), s.h * s.w);
        (0..s.n).flat_map(|img| buf[(img * tot + self.off) * hw..][..s.c * hw].to_vec()).collect()
    }
    fn len(self, s: &BnShape) -> usize {
        s.n * self.tot(s) * s.h * s.w
    }
    fn act<'a>(self, s: &BnShape, buf: &'a wgpu::Buffer) -> Act<'a> {
        Act::slice(buf, self.off, self.tot(s))
    }
}

struct Inputs {
    x: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    rmean: Vec<f64>,
    rvar: Vec<f64>,
}

/// x with a per-channel offset far from 0 (so a naive E[x²]−E[x]² would lose digits).
fn inputs(s: &BnShape, rng: &mut Rng) -> Inputs {
    let hw = s.h * s.w;
    let shift = rng.vec(s.c, -4.0, 4.0);
    let scale = rng.vec(s.c, 0.2, 2.0);
    let x = (0..s.n * s.c * hw).map(|i| (shift[(i / hw) % s.c] + scale[(i / hw) % s.c] * rng.normal()) as f32 as f64);
    Inputs {
        x: x.collect(),
        gamma: rng.vec(s.c, -1.5, 1.5),
        beta: rng.vec(s.c, -0.5, 0.5),
        rmean: rng.vec(s.c, -1.0, 1.0),
        rvar: rng.vec(s.c, 0.5, 2.0),
    }
}

fn scratch(g: &Gpu, len: usize) -> wgpu::Buffer {
    g.zeros("scratch", len).unwrap()
}

/// Channel counts 3, 13, 76, batch 1, odd spatial sizes (scalar path), sizes divisible by 4
/// (vec4 path), one-workgroup (fused) channels small and big, and multi-chunk channels.
fn shapes(relu: bool) -> Vec<BnShape> {
    [
        (1, 3, 7, 7),
        (2, 13, 9, 11),
        (4, 76, 5, 5),
        (2, 64, 56, 56),
        (1, 3, 4, 4),
        (2, 3, 131, 97),
        (2, 8, 68, 68),
        (4, 3, 112, 112),
        // Over FUSED_MAX with FUSED_MIN_CHANNELS channels: one workgroup per big channel (vec4
        // and scalar); the 3-channel shapes above take the two-pass path.
        (2, 16, 96, 100),
        (1, 17, 131, 129),
    ]
    .into_iter()
    .map(|(n, c, h, w)| BnShape::new(n, c, h, w, relu))
    .collect()
}

fn views(i: usize) -> (View, View) {
    match i % 3 {
        0 => (WHOLE, WHOLE),
        1 => (View { off: 2, tot: 0 }, View { off: 0, tot: 0 }),
        _ => (View { off: 0, tot: 0 }, View { off: 1, tot: 0 }),
    }
}

fn widen(v: View, s: &BnShape, extra: usize) -> View {
    if v.off == 0 && v.tot == 0 {
        v
    } else {
        View { off: v.off, tot: if v.tot == 0 { s.c + extra } else { v.tot } }
    }
}

#[test]
pub(crate) fn forward_train_matches_reference() {
    forward_train_check(&gpu());
}

/// Batch norm planned as for a GPU: workgroups of several subgroups (on lavapipe, four 8-lane
/// fibers) whose partial sums meet in workgroup memory.
#[test]
fn forward_train_with_gpu_plans_matches_reference() {
    forward_train_check(&gpu_planned());
}

fn forward_train_check(g: &Gpu) {
    let mut rng = Rng::new(11);
    for relu in [false, true] {
        for (i, s) in shapes(relu).iter().enumerate() {
            let (vx, vy) = views(i);
            let (vx, vy) = (widen(vx, s, 5), widen(vy, s, 3));
            let inp = inputs(s, &mut rng);
            let bx = up(g, &vx.embed(s, &inp.x, &rng.vec(vx.len(s), -9.0, 9.0)));
            let fill_y = rng.vec(vy.len(s), -9.0, 9.0);
            let by = up(g, &fill_y);
            let (bg, bb) = (up(g, &inp.gamma), up(g, &inp.beta));
            let (brm, brv) = (up(g, &inp.rmean), up(g, &inp.rvar));
            let (bm, bi) = (g.zeros("m", s.c).unwrap(), g.zeros("i", s.c).unwrap());
            let sc = scratch(g, bn::forward_train_scratch_len(s));
            let d =
                bn::forward_train(g, s, vx.act(s, &bx), &bg, &bb, vy.act(s, &by), &bm, &bi, &brm, &brv, &sc).unwrap();
            let y = run_read(g, &d, &by, vy.len(s));
            let want = bn::forward_train_ref(s, &inp.x, &inp.gamma, &inp.beta, &inp.rmean, &inp.rvar);
            let what = format!("{s:?}");
            assert_close(&format!("y {what}"), &y, &vy.embed(s, &want.y, &fill_y), 2e-5, 2e-5);
            assert_close(&format!("save_mean {what}"), &read(g, &bm, s.c), &want.save_mean, 2e-6, 2e-6);
            assert_close(&format!("save_invstd {what}"), &read(g, &bi, s.c), &want.save_invstd, 0.0, 1e-5);
            assert_close(&format!("running_mean {what}"), &read(g, &brm, s.c), &want.running_mean, 1e-6, 1e-6);
            assert_close(&format!("running_var {what}"), &read(g, &brv, s.c), &want.running_var, 1e-6, 1e-5);
        }
    }
}

#[test]
fn eval_and_normalize_match_reference() {
    let g = gpu();
    let mut rng = Rng::new(12);
    for relu in [false, true] {
        for (i, s) in shapes(relu).iter().enumerate().filter(|(i, _)| i % 2 == relu as usize || *i >= 5) {
            let (vx, vy) = views(i + 1);
            let (vx, vy) = (widen(vx, s, 4), widen(vy, s, 2));
            let inp = inputs(s, &mut rng);
            let bx = up(&g, &vx.embed(s, &inp.x, &rng.vec(vx.len(s), -9.0, 9.0)));
            let fill_y = rng.vec(vy.len(s), -9.0, 9.0);
            let (bg, bb) = (up(&g, &inp.gamma), up(&g, &inp.beta));
            let (brm, brv) = (up(&g, &inp.rmean), up(&g, &inp.rvar));
            let by = up(&g, &fill_y);
            let d = bn::forward_eval(&g, s, vx.act(s, &bx), &bg, &bb, &brm, &brv, vy.act(s, &by)).unwrap();
            let want = bn::forward_eval_ref(s, &inp.x, &inp.gamma, &inp.beta, &inp.rmean, &inp.rvar);
            assert_close(
                &format!("eval {s:?}"),
                &run_read(&g, &d, &by, vy.len(s)),
                &vy.embed(s, &want, &fill_y),
                2e-5,
                2e-5,
            );

            // Statistics as a training forward saves them; running statistics stay untouched.
            let mean = rng.vec(s.c, -4.0, 4.0);
            let invstd = rng.vec(s.c, 0.5, 3.0);
            let (bm, bi) = (up(&g, &mean), up(&g, &invstd));
            let by = up(&g, &fill_y);
            let d = bn::normalize(&g, s, vx.act(s, &bx), &bg, &bb, &bm, &bi, vy.act(s, &by)).unwrap();
            let want = bn::normalize_ref(s, &inp.x, &inp.gamma, &inp.beta, &mean, &invstd);
            assert_close(
                &format!("normalize {s:?}"),
                &run_read(&g, &d, &by, vy.len(s)),
                &vy.embed(s, &want, &fill_y),
                2e-5,
                2e-5,
            );
        }
    }
}

#[test]
pub(crate) fn normalize_reproduces_forward_train_exactly() {
    let g = gpu();
    let mut rng = Rng::new(13);
    for s in [BnShape::new(2, 13, 9, 11, true), BnShape::new(2, 8, 68, 68, true)] {
        let inp = inputs(&s, &mut rng);
        let len = inp.x.len();
        let bx = up(&g, &inp.x);
        let (bg, bb) = (up(&g, &inp.gamma), up(&g, &inp.beta));
        let (brm, brv) = (up(&g, &inp.rmean), up(&g, &inp.rvar));
        let (bm, bi) = (g.zeros("m", s.c).unwrap(), g.zeros("i", s.c).unwrap());
        let (by, br) = (g.zeros("y", len).unwrap(), g.zeros("r", len).unwrap());
        let sc = scratch(&g, bn::forward_train_scratch_len(&s));
        let x = Act::whole(&bx, s.c);
        let mut d = bn::forward_train(&g, &s, x, &bg, &bb, Act::whole(&by, s.c), &bm, &bi, &brm, &brv, &sc).unwrap();
        d.extend(bn::normalize(&g, &s, x, &bg, &bb, &bm, &bi, Act::whole(&br, s.c)).unwrap());
        let y = run_read(&g, &d, &by, len);
        assert_close("recomputed y", &read(&g, &br, len), &y, 0.0, 0.0);
    }
}

/// dy that is 0 where y is within `margin` of the ReLU kink, so that f32 rounding of the
/// recomputed mask cannot matter there.
fn upstream(s: &BnShape, inp: &Inputs, rng: &mut Rng, margin: f64) -> Vec<f64> {
    let zeros = vec![0.0; s.c];
    let pre = bn::forward_train_ref(&BnShape { relu: false, ..*s }, &inp.x, &inp.gamma, &inp.beta, &zeros, &zeros).y;
    pre.iter().map(|&y| if s.relu && y.abs() < margin { 0.0 } else { rng.range(-1.0, 1.0) as f32 as f64 }).collect()
}

#[test]
pub(crate) fn backward_matches_reference() {
    backward_check(&gpu());
}

#[test]
fn backward_with_gpu_plans_matches_reference() {
    backward_check(&gpu_planned());
}

fn backward_check(g: &Gpu) {
    let mut rng = Rng::new(14);
    for relu in [false, true] {
        for (i, s) in shapes(relu).iter().enumerate() {
            let accumulate = (i + relu as usize) % 2 == 1;
            let (vx, vdy) = views(i);
            let vdx = if accumulate { View { off: 3, tot: s.c + 4 } } else { views(i + 2).0 };
            let (vx, vdy, vdx) = (widen(vx, s, 2), widen(vdy, s, 5), widen(vdx, s, 3));
            let inp = inputs(s, &mut rng);
            let dy = upstream(s, &inp, &mut rng, 1e-3);
            let stats = bn::forward_train_ref(s, &inp.x, &inp.gamma, &inp.beta, &inp.rmean, &inp.rvar);
            let bx = up(g, &vx.embed(s, &inp.x, &rng.vec(vx.len(s), -9.0, 9.0)));
            let bdy = up(g, &vdy.embed(s, &dy, &rng.vec(vdy.len(s), -9.0, 9.0)));
            let old_dx = rng.vec(vdx.len(s), -1.0, 1.0);
            let bdx = up(g, &old_dx);
            let (bg, bb) = (up(g, &inp.gamma), up(g, &inp.beta));
            let (bm, bi) = (up(g, &stats.save_mean), up(g, &stats.save_invstd));
            let (bdg, bdb) = (up(g, &vec![7.0; s.c]), up(g, &vec![7.0; s.c]));
            let sc = scratch(g, bn::backward_scratch_len(s));
            let d = bn::backward(
                g,
                s,
                vx.act(s, &bx),
                vdy.act(s, &bdy),
                &bg,
                &bb,
                &bm,
                &bi,
                vdx.act(s, &bdx),
                &bdg,
                &bdb,
                accumulate,
                &sc,
            )
            .unwrap();
            let dx = run_read(g, &d, &bdx, vdx.len(s));
            let (want_dx, want_dg, want_db) = bn::backward_ref(s, &inp.x, &dy, &inp.gamma, &inp.beta);
            let what = format!("{s:?} accumulate {accumulate}");
            assert_close_scaled(&format!("dgamma {what}"), &read(g, &bdg, s.c), &want_dg, 1e-5);
            assert_close_scaled(&format!("dbeta {what}"), &read(g, &bdb, s.c), &want_db, 1e-5);
            let want = if accumulate {
                let added = vdx.embed(s, &want_dx, &vec![0.0; old_dx.len()]);
                added.iter().zip(&old_dx).map(|(a, o)| a + o).collect()
            } else {
                vdx.embed(s, &want_dx, &old_dx)
            };
            assert_close_scaled(&format!("dx (view) {what}"), &vdx.extract(s, &dx), &vdx.extract(s, &want), 2e-5);
            assert_close(&format!("dx (all) {what}"), &dx, &want, 1e-4, 1e-4);
        }
    }
}

/// Inputs where every pre-activation is at least `margin` from the ReLU kink.
fn inputs_off_kink(s: &BnShape, rng: &mut Rng, margin: f64) -> Inputs {
    loop {
        let inp = inputs(s, rng);
        let zeros = vec![0.0; s.c];
        let pre =
            bn::forward_train_ref(&BnShape { relu: false, ..*s }, &inp.x, &inp.gamma, &inp.beta, &zeros, &zeros).y;
        if pre.iter().all(|y| y.abs() > margin) {
            return inp;
        }
    }
}

#[test]
fn backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(15);
    for relu in [false, true] {
        let s = BnShape::new(2, 3, 3, 2, relu);
        let inp = inputs_off_kink(&s, &mut rng, 0.02);
        let dy = rng.vec(inp.x.len(), -1.0, 1.0);
        let zeros = vec![0.0; s.c];
        let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&bn::forward_train_ref(&s, x, g, b, &zeros, &zeros).y, &dy);
        let (dx, dg, db) = bn::backward_ref(&s, &inp.x, &dy, &inp.gamma, &inp.beta);
        let fx = finite_diff(&inp.x, 1e-6, |x| loss(x, &inp.gamma, &inp.beta));
        let fg = finite_diff(&inp.gamma, 1e-6, |g| loss(&inp.x, g, &inp.beta));
        let fb = finite_diff(&inp.beta, 1e-6, |b| loss(&inp.x, &inp.gamma, b));
        assert_close(&format!("fd dx relu {relu}"), &dx, &fx, 1e-6, 1e-5);
        assert_close(&format!("fd dgamma relu {relu}"), &dg, &fg, 1e-6, 1e-5);
        assert_close(&format!("fd dbeta relu {relu}"), &db, &fb, 1e-6, 1e-5);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let b = g.zeros("b", 1000).unwrap();
    let b2 = g.zeros("b2", 1000).unwrap();
    let p: Vec<_> = (0..6).map(|_| g.zeros("p", 8).unwrap()).collect();
    let fwd =
        |s: &BnShape, x: Act, y: Act| bn::forward_train(&g, s, x, &p[0], &p[1], y, &p[2], &p[3], &p[4], &p[5], &b2);
    // A view that runs past its buffer's channels, an empty shape, one value per channel.
    assert!(fwd(&BnShape::new(1, 4, 3, 3, false), Act::slice(&b, 2, 5), Act::whole(&b2, 4)).is_err());
    assert!(fwd(&BnShape::new(0, 4, 3, 3, false), Act::whole(&b, 4), Act::whole(&b2, 4)).is_err());
    assert!(fwd(&BnShape::new(1, 4, 1, 1, false), Act::whole(&b, 4), Act::whole(&b2, 4)).is_err());
    // Too small a buffer, and the same buffer twice.
    assert!(fwd(&BnShape::new(4, 4, 9, 9, false), Act::whole(&b, 4), Act::whole(&b2, 4)).is_err());
    assert!(fwd(&BnShape::new(1, 4, 3, 3, false), Act::whole(&b, 4), Act::slice(&b, 0, 4)).is_err());
    let s = BnShape { eps: 0.0, ..BnShape::new(1, 4, 3, 3, false) };
    assert!(bn::normalize(&g, &s, Act::whole(&b, 4), &p[0], &p[1], &p[2], &p[3], Act::whole(&b2, 4)).is_err());
}

/// Forward + backward time of a DenseNet-121 block-1-sized batch norm (cargo test -- --ignored).
#[test]
#[ignore]
fn bench_forward_backward() {
    let g = gpu();
    let s = BnShape::new(8, 256, 56, 56, true);
    let len = s.n * s.c * s.h * s.w;
    let mut rng = Rng::new(16);
    let x = up(&g, &rng.vec(len, -2.0, 2.0));
    let dy = up(&g, &rng.vec(len, -1.0, 1.0));
    let (y, dx) = (g.zeros("y", len).unwrap(), g.zeros("dx", len).unwrap());
    let p: Vec<_> = (0..8).map(|_| g.upload("p", &vec![1.0f32; s.c]).unwrap()).collect();
    let sc = scratch(&g, bn::forward_train_scratch_len(&s).max(bn::backward_scratch_len(&s)));
    let a = |b| Act::whole(b, s.c);
    let fwd = bn::forward_train(&g, &s, a(&x), &p[0], &p[1], a(&y), &p[2], &p[3], &p[4], &p[5], &sc).unwrap();
    let bwd =
        bn::backward(&g, &s, a(&x), a(&dy), &p[0], &p[1], &p[2], &p[3], a(&dx), &p[6], &p[7], false, &sc).unwrap();
    let norm = bn::normalize(&g, &s, a(&x), &p[0], &p[1], &p[2], &p[3], a(&y)).unwrap();
    // Bytes each must move at least: forward reads x twice and writes y; backward reads x and
    // dy twice and writes dx; normalize reads x and writes y.
    let mb = (len * 4) as f64 / 1e6;
    // The best of a few runs: the machine is shared, so the minimum is the meaningful number.
    let time = |d: &[tailor::gpu::Dispatch]| {
        g.run(d).unwrap();
        (0..10)
            .map(|_| {
                let t = std::time::Instant::now();
                g.run(d).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::MAX, f64::min)
    };
    for (name, d, traffic) in [("forward_train", &fwd, 3.0), ("backward", &bwd, 5.0), ("normalize", &norm, 2.0)] {
        let ms = time(d);
        eprintln!("{name} {s:?}: {ms:.1} ms, {:.2} GB/s", traffic * mb / ms);
        for k in d.iter() {
            eprintln!("  {}: {:.1} ms", k.label, time(std::slice::from_ref(k)));
        }
    }
}

/// Shapes whose per-image bytes are multiples of 256 (so any offset alignment allows chunks of
/// one image), run with a binding limit of `k` images: vec4 and scalar paths, chunks of one and
/// of several workgroup chunks per channel, batches that do not divide evenly.
fn chunked_cases(relu: bool) -> Vec<(BnShape, u64)> {
    [((7, 4, 8, 8), 3), ((5, 64, 9, 7), 2), ((5, 2, 64, 64), 2)]
        .into_iter()
        .map(|((n, c, h, w), k)| (BnShape::new(n, c, h, w, relu), k))
        .collect()
}

fn image_bytes(s: &BnShape) -> u64 {
    (s.c * s.h * s.w * 4) as u64
}

#[test]
fn forward_train_in_batch_chunks_matches_reference() {
    let mut rng = Rng::new(21);
    for relu in [false, true] {
        for (s, k) in chunked_cases(relu) {
            let g = limited_gpu(k * image_bytes(&s));
            let chunks = cut(&g, s.n, &[image_bytes(&s)]);
            let inp = inputs(&s, &mut rng);
            let (bx, by) = (up(&g, &inp.x), g.zeros("y", inp.x.len()).unwrap());
            let [bg, bb, brm, brv] = [&inp.gamma, &inp.beta, &inp.rmean, &inp.rvar].map(|v| up(&g, v));
            let (bm, bi) = (g.zeros("m", s.c).unwrap(), g.zeros("i", s.c).unwrap());
            let sc = scratch(&g, bn::chunks_scratch_len(&s, &chunks));
            let stats = [&bg, &bb, &bm, &bi, &brm, &brv].map(Into::into);
            let (x, y) = (Act::whole(&bx, s.c), Act::whole(&by, s.c));
            let d = bn::forward_train_chunks(&g, &s, &chunks, x, y, stats, &sc).unwrap();
            let got = run_read(&g, &d, &by, inp.x.len());
            let want = bn::forward_train_ref(&s, &inp.x, &inp.gamma, &inp.beta, &inp.rmean, &inp.rvar);
            let what = format!("{s:?} in chunks {chunks:?}");
            assert_close(&format!("y {what}"), &got, &want.y, 2e-5, 2e-5);
            assert_close(&format!("save_mean {what}"), &read(&g, &bm, s.c), &want.save_mean, 2e-6, 2e-6);
            assert_close(&format!("save_invstd {what}"), &read(&g, &bi, s.c), &want.save_invstd, 0.0, 1e-5);
            assert_close(&format!("running_mean {what}"), &read(&g, &brm, s.c), &want.running_mean, 1e-6, 1e-6);
            assert_close(&format!("running_var {what}"), &read(&g, &brv, s.c), &want.running_var, 1e-6, 1e-5);
        }
    }
}

#[test]
fn backward_in_batch_chunks_matches_reference() {
    let mut rng = Rng::new(22);
    for relu in [false, true] {
        for (i, (s, k)) in chunked_cases(relu).into_iter().enumerate() {
            let accumulate = i % 2 == 1;
            let g = limited_gpu(k * image_bytes(&s));
            let chunks = cut(&g, s.n, &[image_bytes(&s)]);
            let inp = inputs(&s, &mut rng);
            let dy = upstream(&s, &inp, &mut rng, 1e-3);
            let f = bn::forward_train_ref(&s, &inp.x, &inp.gamma, &inp.beta, &inp.rmean, &inp.rvar);
            let old_dx = rng.vec(inp.x.len(), -1.0, 1.0);
            let [bx, bdy, bdx] = [&inp.x, &dy, &old_dx].map(|v| up(&g, v));
            let [bg, bb, bm, bi] = [&inp.gamma, &inp.beta, &f.save_mean, &f.save_invstd].map(|v| up(&g, v));
            let (bdg, bdb) = (up(&g, &vec![7.0; s.c]), up(&g, &vec![7.0; s.c]));
            let sc = scratch(&g, bn::chunks_scratch_len(&s, &chunks));
            let acts = [&bx, &bdy, &bdx].map(|b| Act::whole(b, s.c));
            let stats = [&bg, &bb, &bm, &bi].map(Into::into);
            let d = bn::backward_chunks(&g, &s, &chunks, acts, stats, [(&bdg).into(), (&bdb).into()], accumulate, &sc)
                .unwrap();
            let dx = run_read(&g, &d, &bdx, inp.x.len());
            let (want_dx, want_dg, want_db) = bn::backward_ref(&s, &inp.x, &dy, &inp.gamma, &inp.beta);
            let want_dx: Vec<f64> =
                if accumulate { want_dx.iter().zip(&old_dx).map(|(a, o)| a + o).collect() } else { want_dx };
            let what = format!("{s:?} accumulate {accumulate} in chunks {chunks:?}");
            assert_close_scaled(&format!("dgamma {what}"), &read(&g, &bdg, s.c), &want_dg, 1e-5);
            assert_close_scaled(&format!("dbeta {what}"), &read(&g, &bdb, s.c), &want_db, 1e-5);
            assert_close(&format!("dx {what}"), &dx, &want_dx, 1e-4, 1e-4);
        }
    }
}
