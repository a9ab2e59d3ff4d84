use tailor::nn::weights as cw;
use tailor::ops::loss::{self as ls, LossBuffers, LossKind, LossOpts, LossShape};

use crate::common::*;
use crate::weights::Fixture;

/// Targets of either kind: class ids for softmax, 0/1 labels for sigmoid.
enum Targets {
    Ids(Vec<u32>),
    Multi(Vec<f64>),
}

fn loss_ref(s: LossShape, z: &[f64], t: &Targets, w: &[f64], gamma: f64) -> f64 {
    match t {
        Targets::Ids(y) => ls::softmax_loss_ref(s, z, y, w, gamma),
        Targets::Multi(y) => ls::sigmoid_loss_ref(s, z, y, w, gamma),
    }
}

fn grad_ref(s: LossShape, z: &[f64], t: &Targets, w: &[f64], gamma: f64, scale: f64) -> Vec<f64> {
    match t {
        Targets::Ids(y) => ls::softmax_loss_grad_ref(s, z, y, w, gamma, scale),
        Targets::Multi(y) => ls::sigmoid_loss_grad_ref(s, z, y, w, gamma, scale),
    }
}

/// Runs the GPU loss; returns (loss, grad).
fn run_gpu(s: LossShape, z: &[f64], t: &Targets, w: &[f64], o: LossOpts) -> (f64, Vec<f64>) {
    let g = gpu();
    let logits = up(&g, z);
    let (kind, targets) = match t {
        Targets::Ids(y) => (LossKind::Softmax, g.upload("targets", y).unwrap()),
        Targets::Multi(y) => (LossKind::Sigmoid, up(&g, y)),
    };
    let weights = up(&g, w);
    // Garbage in the outputs: the kernels must overwrite, not accumulate.
    let grad = g.upload("grad", &vec![7.0f32; s.len()]).unwrap();
    let loss = g.upload("loss", &[7.0f32]).unwrap();
    let scratch = g.upload("scratch", &vec![7.0f32; ls::loss_scratch_len(s)]).unwrap();
    let b = LossBuffers {
        logits: (&logits).into(),
        targets: (&targets).into(),
        weights: (&weights).into(),
        grad: (&grad).into(),
        loss: (&loss).into(),
        scratch: (&scratch).into(),
    };
    let d = ls::loss(&g, kind, s, o, b).unwrap();
    let l = run_read(&g, &d, &loss, 1)[0];
    (l, read(&g, &grad, s.len()))
}

fn random_case(rng: &mut Rng, s: LossShape, kind: LossKind) -> (Vec<f64>, Targets, Vec<f64>) {
    let mut z = rng.vec(s.len(), -4.0, 4.0);
    // A confident row (stability of log-sum-exp and softplus far from 0).
    for v in z.iter_mut().take(s.classes) {
        *v = (*v * 20.0) as f32 as f64; // what the GPU sees
    }
    let w = cw::renormalise(&rng.vec(s.classes, 0.05, 1.0), 1.0);
    let t = match kind {
        LossKind::Softmax => {
            let mut y: Vec<u32> = (0..s.batch).map(|_| rng.below(s.classes) as u32).collect();
            if s.batch > 2 {
                y[1] = s.classes as u32 + 3; // ignored row
            }
            Targets::Ids(y)
        }
        LossKind::Sigmoid => Targets::Multi((0..s.len()).map(|_| (rng.uniform() < 0.3) as u8 as f64).collect()),
    };
    (z, t, w)
}

#[test]
fn losses_match_reference() {
    let mut rng = Rng::new(11);
    let shapes = [(1, 3), (4, 5), (37, 13), (5, 76), (3, 1000), (300, 3)];
    for (batch, classes) in shapes {
        let s = LossShape::new(batch, classes).unwrap();
        for kind in [LossKind::Softmax, LossKind::Sigmoid] {
            let (z, t, w) = random_case(&mut rng, s, kind);
            for (gamma, scale) in [(0.0f32, 1.0f32), (2.0, 0.25), (0.5, 1.0)] {
                let what = format!("{kind:?} [{batch},{classes}] γ={gamma} scale={scale}");
                let (l, gr) = run_gpu(s, &z, &t, &w, LossOpts { gamma, scale });
                let want = loss_ref(s, &z, &t, &w, gamma as f64);
                assert_close(&format!("{what} loss"), &[l], &[want], 1e-6, 1e-5);
                let gwant = grad_ref(s, &z, &t, &w, gamma as f64, scale as f64);
                assert_close_scaled(&format!("{what} grad"), &gr, &gwant, 2e-6);
            }
        }
    }
}

#[test]
pub(crate) fn gamma_zero_is_plain_cross_entropy() {
    let mut rng = Rng::new(12);
    let s = LossShape::new(6, 7).unwrap();
    let z = rng.vec(s.len(), -3.0, 3.0);
    let w = rng.vec(7, 0.1, 1.0);
    let y: Vec<u32> = (0..6).map(|_| rng.below(7) as u32).collect();
    let yt: Vec<f64> = (0..s.len()).map(|_| (rng.uniform() < 0.5) as u8 as f64).collect();
    // F.cross_entropy(z, y, weight=w) and the weighted mean BCE, written out.
    let (mut num, mut den) = (0.0, 0.0);
    for b in 0..6 {
        let row = &z[b * 7..b * 7 + 7];
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        num += w[y[b] as usize] * (lse - row[y[b] as usize]);
        den += w[y[b] as usize];
    }
    let ce = num / den;
    let mut bce = 0.0;
    for b in 0..6 {
        for c in 0..7 {
            let p = 1.0 / (1.0 + (-z[b * 7 + c]).exp());
            let yv = yt[b * 7 + c];
            bce -= w[c] * (yv * p.ln() + (1.0 - yv) * (1.0 - p).ln()) / w.iter().sum::<f64>();
        }
    }
    bce /= 6.0;
    assert_close("softmax ref γ=0", &[ls::softmax_loss_ref(s, &z, &y, &w, 0.0)], &[ce], 0.0, 1e-12);
    assert_close("sigmoid ref γ=0", &[ls::sigmoid_loss_ref(s, &z, &yt, &w, 0.0)], &[bce], 0.0, 1e-12);
    let o = LossOpts::default();
    assert_close("softmax gpu γ=0", &[run_gpu(s, &z, &Targets::Ids(y), &w, o).0], &[ce], 0.0, 1e-5);
    assert_close("sigmoid gpu γ=0", &[run_gpu(s, &z, &Targets::Multi(yt), &w, o).0], &[bce], 0.0, 1e-5);
}

#[test]
fn loss_gradient_references_match_finite_differences() {
    let mut rng = Rng::new(13);
    let s = LossShape::new(4, 5).unwrap();
    for kind in [LossKind::Softmax, LossKind::Sigmoid] {
        let (z, t, w) = random_case(&mut rng, s, kind);
        let z: Vec<f64> = z.iter().map(|v| v.clamp(-6.0, 6.0)).collect();
        for gamma in [0.0, 2.0, 0.5] {
            let fd = finite_diff(&z, 1e-6, |x| loss_ref(s, x, &t, &w, gamma));
            let what = format!("{kind:?} γ={gamma} fd");
            assert_close(&what, &grad_ref(s, &z, &t, &w, gamma, 1.0), &fd, 1e-8, 1e-6);
            let half: Vec<f64> = fd.iter().map(|v| 0.5 * v).collect();
            assert_close(&format!("{what} scaled"), &grad_ref(s, &z, &t, &w, gamma, 0.5), &half, 1e-8, 1e-6);
        }
    }
}

#[test]
fn losses_match_pytorch_fixture() {
    let fx = Fixture::load();
    let z = fx.tensor("logits.train");
    let s = LossShape::new(4, 5).unwrap();
    let multi = Targets::Multi(fx.tensor("target_multi"));
    let single = Targets::Ids(fx.tensor("target_single").iter().map(|&v| v as u32).collect());
    for name in ["nw", "ifw", "iew"] {
        let w = cw::class_weights(&fx.counts(), fx.weighting(name), None).unwrap();
        for (kind, t) in [("softmax", &single), ("sigmoid", &multi)] {
            let want = fx.tensor(&format!("loss.{kind}.{name}"))[0];
            let exact = fx.config["cases"][format!("{kind}.{name}")]["loss"].as_f64().unwrap();
            let reference = loss_ref(s, &z, t, &w, 0.0);
            let (gpu_loss, _) = run_gpu(s, &z, t, &w, LossOpts::default());
            eprintln!(
                "loss.{kind}.{name}: torch {exact:.9} | ref rel {:.1e} | gpu {gpu_loss:.9} rel {:.1e}",
                (reference - exact).abs() / exact,
                (gpu_loss - exact).abs() / exact
            );
            assert_close(&format!("ref loss.{kind}.{name}"), &[reference], &[want], 0.0, 1e-5);
            assert_close(&format!("gpu loss.{kind}.{name}"), &[gpu_loss], &[want], 0.0, 1e-5);
        }
    }
}

#[test]
fn bad_shapes_and_options_are_errors() {
    let g = gpu();
    assert!(LossShape::new(0, 5).is_err());
    assert!(LossShape::new(3, 0).is_err());
    let s = LossShape::new(4, 5).unwrap();
    let small = g.zeros("small", 3).unwrap();
    let big = g.zeros("big", 64).unwrap();
    let (b2, b3, b4, b5) =
        (g.zeros("b", 64).unwrap(), g.zeros("c", 64).unwrap(), g.zeros("d", 64).unwrap(), g.zeros("e", 64).unwrap());
    let [logits, targets, weights, grad, loss, scratch] = [&big, &b2, &b3, &b4, &b5, &small].map(Into::into);
    let b = LossBuffers { logits, targets, weights, grad, loss, scratch };
    let e = ls::softmax_loss(&g, s, LossOpts::default(), b).err().expect("small scratch accepted");
    assert!(matches!(e, tailor::Error::Shape { .. }), "{e}");
    let other = g.zeros("s", 64).unwrap();
    let b = LossBuffers { scratch: (&big).into(), logits: (&other).into(), ..b };
    assert!(ls::sigmoid_loss(&g, s, LossOpts::default(), b).is_ok());
    assert!(ls::sigmoid_loss(&g, s, LossOpts { gamma: -1.0, scale: 1.0 }, b).is_err());
}
