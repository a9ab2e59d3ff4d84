use tailor::ops::embed::{self as em, EmbedLoss, EmbedLossBuffers, EmbedShape};

use crate::common::*;

const KINDS: [EmbedLoss; 3] =
    [EmbedLoss::TripletBatchHard { margin: 0.2 }, EmbedLoss::TripletBatchAll { margin: 0.2 }, EmbedLoss::DistillL2];

/// Rows of unit length (what the normalised head gives), rounded to f32.
fn unit_rows(rng: &mut Rng, s: EmbedShape) -> Vec<f64> {
    let z = rng.vec(s.len(), -1.0, 1.0);
    f64s(&f32s(&em::normalize_ref(s, &z)))
}

/// Runs the GPU normalisation; returns e.
fn gpu_normalize(s: EmbedShape, z: &[f64]) -> Vec<f64> {
    let g = gpu();
    let (bz, be) = (up(&g, z), g.upload("e", &vec![7.0f32; s.len()]).unwrap());
    run_read(&g, &em::normalize_forward(&g, s, &bz, &be).unwrap(), &be, s.len())
}

/// Runs the GPU normalisation backward into `dz` holding `old`; returns dz.
fn gpu_normalize_backward(s: EmbedShape, z: &[f64], de: &[f64], old: &[f64], accumulate: bool) -> Vec<f64> {
    let g = gpu();
    let (bz, bde, bdz) = (up(&g, z), up(&g, de), up(&g, old));
    run_read(&g, &em::normalize_backward(&g, s, &bz, &bde, &bdz, accumulate).unwrap(), &bdz, s.len())
}

/// Runs the GPU loss with garbage in every output and in the scratch (the kernels must
/// overwrite what they read); returns (loss, grad).
fn gpu_loss(kind: EmbedLoss, s: EmbedShape, e: &[f64], labels: &[u32], teacher: &[f64]) -> (f64, Vec<f64>) {
    let g = gpu();
    let emb = up(&g, e);
    let targets = match kind {
        EmbedLoss::DistillL2 => up(&g, teacher),
        _ => g.upload("labels", labels).unwrap(),
    };
    let grad = g.upload("grad", &vec![7.0f32; s.len()]).unwrap();
    let loss = g.upload("loss", &[7.0f32]).unwrap();
    let scratch = g.upload("scratch", &vec![7.0f32; em::embed_loss_scratch_len(kind, s)]).unwrap();
    let b = EmbedLossBuffers {
        embeddings: (&emb).into(),
        targets: (&targets).into(),
        grad: (&grad).into(),
        loss: (&loss).into(),
        scratch: (&scratch).into(),
    };
    let d = em::embed_loss(&g, kind, s, b).unwrap();
    let l = run_read(&g, &d, &loss, 1)[0];
    (l, read(&g, &grad, s.len()))
}

/// Labels of several patterns: some without a positive, every one equal (no negatives), all
/// distinct (no positives), and P×K blocks.
fn label_patterns(rng: &mut Rng, b: usize) -> Vec<(&'static str, Vec<u32>)> {
    let mut random: Vec<u32> = (0..b).map(|_| rng.below(b.div_ceil(3) + 1) as u32).collect();
    if b > 2 {
        random[b - 1] = 1000; // a label no other sample has
    }
    vec![
        ("random", random),
        ("all equal", vec![5; b]),
        ("all distinct", (0..b as u32).collect()),
        ("blocks of 4", (0..b as u32).map(|i| i / 4).collect()),
    ]
}

fn check_case(what: &str, kind: EmbedLoss, s: EmbedShape, e: &[f64], labels: &[u32], teacher: &[f64]) {
    let (l, gr) = gpu_loss(kind, s, e, labels, teacher);
    let want = em::embed_loss_ref(kind, s, e, labels, teacher);
    assert_close(&format!("{what} loss"), &[l], &[want], 1e-6, 1e-5);
    let gwant = em::embed_loss_grad_ref(kind, s, e, labels, teacher);
    // The triplet gradients divide by distances computed from a Gram matrix in f32
    // (‖e_i‖² + ‖e_j‖² − 2·e_i·e_j loses digits for close pairs): the worst case here, 64 unit
    // vectors in 3 dimensions, is 1.2e-5 of the largest element on lavapipe, hence 2e-5.
    assert_close_scaled(&format!("{what} grad"), &gr, &gwant, 2e-5);
}

#[test]
pub(crate) fn normalize_matches_reference() {
    let mut rng = Rng::new(40);
    for (batch, dim) in [(1, 1), (2, 3), (5, 17), (3, 130), (64, 128), (300, 8), (2, 1000)] {
        let s = EmbedShape::new(batch, dim).unwrap();
        let mut z = rng.vec(s.len(), -3.0, 3.0);
        // A zero row and one whose norm is below the eps: both are divided by 1e-12.
        if batch >= 2 {
            z[..dim].iter_mut().for_each(|v| *v = 0.0);
            z[dim..2 * dim].iter_mut().for_each(|v| *v = (*v * 1e-14) as f32 as f64);
        }
        let what = format!("normalize {s:?}");
        let e = gpu_normalize(s, &z);
        assert_close(&format!("{what} e"), &e, &em::normalize_ref(s, &z), 1e-7, 1e-6);
        let de = rng.vec(s.len(), -1.0, 1.0);
        let old = rng.vec(s.len(), -1.0, 1.0);
        let want = em::normalize_backward_ref(s, &z, &de);
        let dz = gpu_normalize_backward(s, &z, &de, &old, false);
        // The clamped rows' gradient is de·1e12: compared relative to each element.
        assert_close(&format!("{what} dz"), &dz, &want, 1e-6, 1e-5);
        let dz = gpu_normalize_backward(s, &z, &de, &old, true);
        let acc: Vec<f64> = want.iter().zip(&old).map(|(a, o)| a + o).collect();
        assert_close(&format!("{what} dz accumulate"), &dz, &acc, 1e-6, 1e-5);
    }
}

#[test]
fn normalize_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(41);
    let s = EmbedShape::new(3, 5).unwrap();
    let z = rng.vec(s.len(), -2.0, 2.0);
    let de = rng.vec(s.len(), -1.0, 1.0);
    let fd = finite_diff(&z, 1e-6, |z| dot(&em::normalize_ref(s, z), &de));
    assert_close("normalize fd", &em::normalize_backward_ref(s, &z, &de), &fd, 1e-8, 1e-6);
    // Rows of norm below 1e-12 are divided by 1e-12: steps small enough to stay there.
    let tiny: Vec<f64> = z.iter().map(|v| v * 1e-14).collect();
    let fd = finite_diff(&tiny, 1e-16, |z| dot(&em::normalize_ref(s, z), &de));
    assert_close("normalize fd (clamped)", &em::normalize_backward_ref(s, &tiny, &de), &fd, 0.0, 1e-6);
}

#[test]
pub(crate) fn embedding_losses_match_reference() {
    let mut rng = Rng::new(42);
    for batch in [1, 2, 3, 8, 37, 64] {
        for dim in [1, 3, 17, 130] {
            let s = EmbedShape::new(batch, dim).unwrap();
            let e = unit_rows(&mut rng, s);
            let teacher = unit_rows(&mut rng, s);
            for (pattern, labels) in label_patterns(&mut rng, batch) {
                for kind in KINDS {
                    if kind == EmbedLoss::DistillL2 && pattern != "random" {
                        continue; // labels do not matter to it
                    }
                    check_case(&format!("{kind:?} [{batch},{dim}] {pattern}"), kind, s, &e, &labels, &teacher);
                }
            }
        }
    }
}

/// Embeddings that are not unit length, a margin of 0 and a large margin.
#[test]
pub(crate) fn triplet_losses_match_reference_off_the_sphere_and_at_other_margins() {
    let mut rng = Rng::new(43);
    let s = EmbedShape::new(24, 17).unwrap();
    let e = rng.vec(s.len(), -2.0, 2.0);
    let labels: Vec<u32> = (0..24).map(|i| (i % 5) as u32).collect();
    for margin in [0.0f32, 0.2, 5.0] {
        for kind in [EmbedLoss::TripletBatchHard { margin }, EmbedLoss::TripletBatchAll { margin }] {
            check_case(&format!("{kind:?} raw"), kind, s, &e, &labels, &[]);
        }
    }
}

#[test]
fn triplet_losses_without_valid_triplets_are_zero() {
    let mut rng = Rng::new(44);
    let hard = EmbedLoss::TripletBatchHard { margin: 0.2 };
    let all = EmbedLoss::TripletBatchAll { margin: 0.2 };
    // Batch 1, one label everywhere (no negatives), every label distinct (no positives).
    let s1 = EmbedShape::new(1, 3).unwrap();
    let s8 = EmbedShape::new(8, 3).unwrap();
    let cases = [
        ("batch 1", s1, unit_rows(&mut rng, s1), vec![0u32]),
        ("every label equal", s8, unit_rows(&mut rng, s8), vec![3; 8]),
        ("no positive", s8, unit_rows(&mut rng, s8), (0..8).collect()),
    ];
    // No triplet above the margin: two tight clusters far apart.
    let (s, mut far) = (EmbedShape::new(6, 2).unwrap(), Vec::new());
    for i in 0..6 {
        let (c, j) = (if i < 3 { 1.0 } else { -1.0 }, i as f64 * 1e-3);
        far.extend([c, j]);
    }
    let far = f64s(&f32s(&far));
    let cases = cases.into_iter().chain([("clusters beyond the margin", s, far, vec![0, 0, 0, 1, 1, 1])]);
    for (what, s, e, labels) in cases {
        for kind in [hard, all] {
            let (l, gr) = gpu_loss(kind, s, &e, &labels, &[]);
            assert_eq!(em::embed_loss_ref(kind, s, &e, &labels, &[]), 0.0, "{what} {kind:?} reference");
            assert_eq!(l, 0.0, "{what} {kind:?} loss");
            assert!(gr.iter().all(|&v| v == 0.0), "{what} {kind:?} gradient {gr:?}");
        }
    }
}

/// Exact ties in the batch-hard max and min go to the lowest index, on the GPU as in the
/// reference; an anchor whose label no other sample has is left out of the mean.
#[test]
fn batch_hard_ties_go_to_the_lowest_index() {
    let s = EmbedShape::new(6, 2).unwrap();
    // Anchor 0 at (1, 0); its positives 1 and 2 coincide, as do the negatives 3 and 4; sample 5
    // has a label of its own.
    let e = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, -0.6, 0.8, -0.6, 0.8, 0.0, -1.0];
    let e = f64s(&f32s(&e));
    let labels = [0, 0, 0, 1, 1, 9];
    let mined = em::hard_mining_ref(s, &e, &labels);
    assert_eq!(mined[0], Some((1, 5)), "anchor 0: farthest positive 1 (tied with 2), nearest negative 5");
    assert_eq!(mined[1], Some((0, 3)), "anchor 1: positive 0 (2 coincides with it), negatives 3 and 4 tie, 3 wins");
    assert_eq!(mined[3], Some((4, 1)), "anchor 3: its only positive 4; negatives 1 and 2 tie, 1 wins");
    assert_eq!(mined[5].map(|m| m.0), None, "a label with no positive is no anchor");
    for margin in [0.2f32, 3.0] {
        let kind = EmbedLoss::TripletBatchHard { margin };
        // The gradient goes to the winners only (samples 1 and 2, or 3 and 4, would get other
        // gradients had the GPU picked the other of a tied pair); with margin 3 every anchor
        // is active.
        check_case(&format!("ties {kind:?}"), kind, s, &e, &labels, &[]);
    }
}

#[test]
fn embedding_loss_references_match_finite_differences() {
    let mut rng = Rng::new(45);
    let s = EmbedShape::new(7, 3).unwrap();
    let labels = [0, 0, 1, 1, 1, 2, 3];
    let e = unit_rows(&mut rng, s);
    let teacher = unit_rows(&mut rng, s);
    for kind in [
        EmbedLoss::TripletBatchHard { margin: 0.5 },
        EmbedLoss::TripletBatchAll { margin: 0.5 },
        EmbedLoss::TripletBatchAll { margin: 0.1 },
        EmbedLoss::DistillL2,
    ] {
        let fd = finite_diff(&e, 1e-6, |x| em::embed_loss_ref(kind, s, x, &labels, &teacher));
        let grad = em::embed_loss_grad_ref(kind, s, &e, &labels, &teacher);
        assert!(grad.iter().any(|&v| v != 0.0), "{kind:?}: a case with a gradient");
        assert_close(&format!("{kind:?} fd"), &grad, &fd, 1e-8, 1e-6);
    }
}

#[test]
pub(crate) fn embedding_bad_shapes_and_options_are_errors() {
    let g = gpu();
    assert!(matches!(EmbedShape::new(0, 3), Err(tailor::Error::Shape { .. })));
    assert!(matches!(EmbedShape::new(3, 0), Err(tailor::Error::Shape { .. })));
    assert!(matches!(EmbedShape::new(70_000, 1), Err(tailor::Error::Shape { .. })));
    let s = EmbedShape::new(4, 5).unwrap();
    let bufs: Vec<_> = (0..5).map(|i| g.zeros(&format!("b{i}"), 256).unwrap()).collect();
    let small = g.zeros("small", 3).unwrap();
    let b = EmbedLossBuffers {
        embeddings: (&bufs[0]).into(),
        targets: (&bufs[1]).into(),
        grad: (&bufs[2]).into(),
        loss: (&bufs[3]).into(),
        scratch: (&bufs[4]).into(),
    };
    let hard = EmbedLoss::TripletBatchHard { margin: 0.2 };
    assert!(em::embed_loss(&g, hard, s, b).is_ok());
    let e = em::embed_loss(&g, hard, s, EmbedLossBuffers { scratch: (&small).into(), ..b }).err().unwrap();
    assert!(matches!(e, tailor::Error::Shape { .. }), "{e}");
    let e = em::embed_loss(&g, hard, s, EmbedLossBuffers { grad: (&bufs[0]).into(), ..b }).err().unwrap();
    assert!(matches!(e, tailor::Error::Shape { .. }), "the same buffer twice: {e}");
    let bad = EmbedLoss::TripletBatchAll { margin: -0.1 };
    assert!(matches!(em::embed_loss(&g, bad, s, b), Err(tailor::Error::Shape { .. })));
    let nan = EmbedLoss::TripletBatchHard { margin: f32::NAN };
    assert!(matches!(em::embed_loss(&g, nan, s, b), Err(tailor::Error::Shape { .. })));
    assert!(em::normalize_forward(&g, s, &small, &bufs[1]).is_err());
    assert!(em::normalize_forward(&g, s, &bufs[1], &bufs[1]).is_err());
}

/// The B×B matrices must fit one binding: a batch whose matrices do not is refused by name.
#[test]
fn triplet_pair_matrices_larger_than_a_binding_are_refused() {
    let g = limited_gpu(64 << 10);
    let kind = EmbedLoss::TripletBatchAll { margin: 0.2 };
    let s = EmbedShape::new(128, 4).unwrap();
    let len = em::embed_loss_scratch_len(kind, s);
    assert!(len * 4 > 64 << 10);
    let bufs: Vec<_> = (0..4).map(|i| g.zeros(&format!("b{i}"), 1024).unwrap()).collect();
    let scratch = g.zeros("scratch", len).unwrap();
    let b = EmbedLossBuffers {
        embeddings: (&bufs[0]).into(),
        targets: (&bufs[1]).into(),
        grad: (&bufs[2]).into(),
        loss: (&bufs[3]).into(),
        scratch: (&scratch).into(),
    };
    let e = em::embed_loss(&g, kind, s, b).err().unwrap();
    assert!(matches!(e, tailor::Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("batch 128"), "{e}");
}
