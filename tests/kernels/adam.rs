use tailor::ops::adam::{self as ad, AdamBuffers, AdamConfig, AdamRange};

use crate::common::*;

/// Several steps of two parameter groups (odd offsets and lengths) in one buffer set, with the
/// dispatches built once and only the gradients and the hyperparameter buffer rewritten.
fn check_steps(cfg: AdamConfig, seed: u64) {
    check_steps_on(&gpu(), cfg, seed, false);
}

/// [`check_steps`] on `g`; `split`: the buffers are larger than `g` binds, so ranges are
/// updated in pieces.
fn check_steps_on(g: &tailor::gpu::Gpu, cfg: AdamConfig, seed: u64, split: bool) {
    let mut rng = Rng::new(seed);
    let n = 1501;
    let ranges =
        [AdamRange { offset: 3, len: 517 }, AdamRange { offset: 700, len: 777 }, AdamRange { offset: 1500, len: 1 }];
    let mut p = rng.vec(n, -1.0, 1.0);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let (bp, bg, bm, bv) = (up(g, &p), g.zeros("g", n).unwrap(), up(g, &m), up(g, &v));
    let hyper = ad::hyper_buffer(g).unwrap();
    let b = AdamBuffers { hyper: &hyper, param: &bp, grad: &bg, m: &bm, v: &bv };
    let d: Vec<_> = ranges.iter().flat_map(|&r| ad::adam_step(g, r, b).unwrap()).collect();
    assert_eq!(d.len() > ranges.len(), split, "{} dispatches for {} ranges", d.len(), ranges.len());
    for t in 1..=5u32 {
        let lr = 1e-2 * (1.0 - 0.1 * t as f64);
        let grad = rng.vec(n, -1.0, 1.0);
        g.write(&bg, &f32s(&grad));
        ad::write_hyper(g, &hyper, &ad::hyper_for_step(t, lr, &cfg).unwrap());
        g.run(&d).unwrap();
        for r in ranges {
            let s = r.offset..r.offset + r.len;
            let (ps, ms, vs) = (&mut p[s.clone()], &mut m[s.clone()], &mut v[s.clone()]);
            ad::adam_step_ref(ps, &grad[s.clone()], ms, vs, t, lr, &cfg);
        }
        let what = format!("{cfg:?} step {t}");
        assert_close(&format!("{what} p"), &read(g, &bp, n), &p, 1e-6, 1e-6);
        assert_close(&format!("{what} m"), &read(g, &bm, n), &m, 1e-7, 1e-5);
        assert_close(&format!("{what} v"), &read(g, &bv, n), &v, 1e-8, 1e-5);
    }
}

#[test]
pub(crate) fn adam_matches_reference_over_steps() {
    check_steps(AdamConfig::adam(), 21);
}

#[test]
fn adam_with_coupled_weight_decay_matches_reference() {
    check_steps(AdamConfig { weight_decay: 0.05, ..AdamConfig::adam() }, 22);
}

#[test]
fn adamw_matches_reference_over_steps() {
    check_steps(AdamConfig { weight_decay: 0.05, ..AdamConfig::adamw() }, 23);
}

#[test]
fn adamw_in_pieces_when_the_buffers_exceed_one_binding() {
    // 1 KiB bindings: 256 elements; the ranges are 517 and 777 long and start unaligned.
    let g = limited_gpu(1024);
    check_steps_on(&g, AdamConfig { weight_decay: 0.05, ..AdamConfig::adamw() }, 24, true);
}

#[test]
fn adam_reference_follows_torch() {
    // At t = 1, m̂/sqrt(v̂) = g/|g|: every parameter moves by lr·sign(g) (up to eps).
    let lr = 1e-3;
    let g = [0.5, -2.0, 0.25];
    let mut p = [1.0, 1.0, 1.0];
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    ad::adam_step_ref(&mut p, &g, &mut m, &mut v, 1, lr, &AdamConfig::adam());
    assert_close("adam t=1", &p, &[1.0 - lr, 1.0 + lr, 1.0 - lr], 1e-9, 0.0);
    // AdamW decays first: p·(1 − lr·wd), then the same step.
    let mut p = [1.0, 1.0, 1.0];
    let (mut m, mut v) = ([0.0; 3], [0.0; 3]);
    let cfg = AdamConfig::adamw();
    ad::adam_step_ref(&mut p, &g, &mut m, &mut v, 1, lr, &cfg);
    let d = 1.0 - lr * cfg.weight_decay;
    assert_close("adamw t=1", &p, &[d - lr, d + lr, d - lr], 1e-9, 0.0);

    let h = ad::hyper_for_step(3, 1e-3, &cfg).unwrap();
    assert!((h.step_size as f64 - 1e-3 / (1.0 - 0.9f64.powi(3))).abs() < 1e-9);
    assert!((h.bc2_sqrt as f64 - (1.0 - 0.999f64.powi(3)).sqrt()).abs() < 1e-8);
    assert_eq!((h.decoupled, h.step), (1, 3));
    assert!(ad::hyper_for_step(0, 1e-3, &cfg).is_err());
    assert!(ad::hyper_for_step(1, 1e-3, &AdamConfig { beta2: 1.0, ..cfg }).is_err());
    assert!(ad::hyper_for_step(1, f64::NAN, &cfg).is_err());
}

#[test]
fn adam_range_outside_buffers_is_an_error() {
    let g = gpu();
    let (a, b, c, d) =
        (g.zeros("p", 10).unwrap(), g.zeros("g", 10).unwrap(), g.zeros("m", 10).unwrap(), g.zeros("v", 9).unwrap());
    let hyper = ad::hyper_buffer(&g).unwrap();
    let bufs = AdamBuffers { hyper: &hyper, param: &a, grad: &b, m: &c, v: &d };
    let e = ad::adam_step(&g, AdamRange { offset: 2, len: 8 }, bufs).err().expect("accepted");
    assert!(matches!(e, tailor::Error::Shape { .. }), "{e}");
    assert_eq!(ad::adam_step(&g, AdamRange { offset: 2, len: 7 }, bufs).unwrap().len(), 1);
    assert!(ad::adam_step(&g, AdamRange { offset: 9, len: 0 }, bufs).unwrap().is_empty());
}
