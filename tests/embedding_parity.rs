//! End-to-end parity of an embedding model with PyTorch (`../shared/fixtures/embedding_tiny.*`,
//! see its README): a torchvision DenseNet whose classifier Linear (16 outputs) is the embedding
//! head, L2-normalised, trained with the batch-hard and batch-all triplet losses and with L2
//! distillation. The same weights in give the same embeddings, losses, gradients and three Adam
//! steps out.

mod fixture;

use std::sync::Arc;

use tailor::graph::LossKind;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::OptimizerConfig;
use tailor::nn::predict::Predictor;
use tailor::nn::train::{Targets, TrainConfig, Trainer};
use tailor::Gpu;

use fixture::{assert_close, gpu, load, max_abs, Fixture};

const CASES: [&str; 3] = ["triplet_batch_hard", "triplet_batch_all", "distill_l2"];

// Tolerances, each a little above what tailor reaches on lavapipe (2-core Xeon, Mesa 25.0)
// against the float64 dump, with lavapipe's own kernel plans and with GPU plans (measured values
// as "own / GPU plans"), next to what PyTorch's own float32 run reaches (the fixtures' README):
// - embeddings (unit length), eval and train: measured 1.5e-7 and 5.3e-7 / 4.8e-7 absolute;
const EMBEDDING_ATOL: f64 = 1e-6;
// - losses: measured 9.3e-7 / 7.5e-7 relative (PyTorch 1.5e-7): the triplet losses are
//   differences of distances between unit vectors computed through a float32 Gram matrix, after
//   the DenseNet's own float32 rounding (1.2e-7 for the distillation loss);
const LOSS_RTOL: f64 = 2e-6;
// - gradients: measured 6.7e-5 / 8.9e-5 of each tensor's largest (PyTorch 1.4e-4);
const GRAD_TOL: f64 = 1.2e-4;
// - 3 Adam steps: losses measured 2.3e-5 / 2.1e-5 relative (the batch-hard loss at step 3,
//   after Adam has made lr-sized updates out of rounding noise in near-zero gradients),
//   parameters 1.3e-3 / 1.5e-3 (PyTorch 1.8e-3), running statistics 1.8e-4 / 1.8e-4 (PyTorch
//   1.9e-4). Every element is compared, those with near-zero gradients included.
const STEP_LOSS_RTOL: f64 = 5e-5;
const PARAM_ATOL: f64 = 1.8e-3;
const STATS_ATOL: f64 = 2.5e-4;

/// `torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16,
/// bn_size=2, num_classes=16)` with the normalised embedding head.
fn config() -> DenseNetConfig {
    let mut c = DenseNetConfig::densenet121(16);
    c.growth_rate = 8;
    c.block_config = vec![2, 2];
    c.num_init_features = 16;
    c.bn_size = 2;
    c.l2_normalize = true;
    c
}

fn model(g: &Arc<Gpu>, f: &Fixture) -> Model {
    let mut m = Model::new(g.clone(), config(), 0).unwrap();
    m.load_state_dict(&f.init).unwrap();
    m
}

fn loss_kind(case: &str) -> LossKind {
    match case {
        "triplet_batch_hard" => LossKind::TripletBatchHard { margin: 0.2 },
        "triplet_batch_all" => LossKind::TripletBatchAll { margin: 0.2 },
        _ => LossKind::DistillL2,
    }
}

fn trainer(g: &Arc<Gpu>, f: &Fixture, case: &str) -> Trainer {
    let cfg = TrainConfig {
        batch: 8,
        height: 32,
        width: 32,
        loss: loss_kind(case),
        class_weights: Vec::new(),
        optimizer: OptimizerConfig::default(),
        accumulate: 1,
    };
    Trainer::new(model(g, f), cfg).unwrap()
}

fn step(t: &mut Trainer, f: &Fixture, case: &str) -> Vec<(u64, f32)> {
    let input = f.get("input").to_vec();
    if case == "distill_l2" {
        t.step(&input, Targets::Embeddings(f.get("teacher"))).unwrap()
    } else {
        t.step(&input, Targets::Classes(&f.labels("labels"))).unwrap()
    }
}

#[test]
fn eval_embeddings_match_pytorch() {
    eval_parity(&gpu(), &load("embedding_tiny"));
}

#[test]
fn train_embeddings_losses_and_gradients_match_pytorch() {
    train_parity(&gpu(), &load("embedding_tiny"));
}

#[test]
fn three_adam_steps_match_pytorch() {
    adam_parity(&gpu(), &load("embedding_tiny"));
}

/// The same parity with kernels planned as for a GPU (`Gpu::set_gpu_plans`): the DenseNet in
/// front of the head runs the batch norms and 1×1 GEMMs a real GPU gets.
#[test]
fn parity_holds_with_kernels_planned_for_a_gpu() {
    let (g, f) = (gpu(), load("embedding_tiny"));
    g.set_gpu_plans(true);
    eval_parity(&g, &f);
    train_parity(&g, &f);
    adam_parity(&g, &f);
}

fn eval_parity(g: &Arc<Gpu>, f: &Fixture) {
    let m = model(g, f);
    let p = Predictor::new(&m, 8, 32, 32).unwrap();
    assert_eq!(p.classes, 16, "the predictor returns the 16-dimensional embedding");
    let e = p.logits(f.get("input")).unwrap();
    let err = assert_close("embedding.eval", &e, f.get("embedding.eval"), EMBEDDING_ATOL);
    for row in e.chunks(16) {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-6, "an embedding of norm {n}");
    }
    eprintln!("embedding.eval: max abs error {err:.2e}");
}

fn train_parity(g: &Arc<Gpu>, f: &Fixture) {
    for case in CASES {
        let mut t = trainer(g, f, case);
        let mut losses = step(&mut t, f, case);
        losses.extend(t.finish().unwrap());
        let e_err = assert_close(
            &format!("embedding.train ({case})"),
            &t.last_logits().unwrap(),
            f.get("embedding.train"),
            EMBEDDING_ATOL,
        );
        let want = f.get(&format!("loss.{case}"))[0] as f64;
        let got = losses[0].1 as f64;
        let rel = (got - want).abs() / want.abs();
        assert!(rel <= LOSS_RTOL, "loss {case}: {got} vs PyTorch {want} ({rel:.2e} relative)");
        let mut grad_err = 0.0f64;
        for p in t.model.net.params.clone().iter().filter(|p| p.trainable) {
            let want = f.get(&format!("grad.{case}.{}", p.name));
            let got = t.grad(&p.name).unwrap();
            let scale = max_abs(want).max(1e-12);
            let err = assert_close(&format!("grad {} ({case})", p.name), &got, want, GRAD_TOL * scale);
            grad_err = grad_err.max(err / scale);
        }
        eprintln!(
            "{case}: embedding.train {e_err:.2e}, loss {rel:.2e} relative, gradients {grad_err:.2e} of the largest"
        );
    }
}

fn adam_parity(g: &Arc<Gpu>, f: &Fixture) {
    for case in CASES {
        let mut t = trainer(g, f, case);
        let mut done = Vec::new();
        for _ in 0..3 {
            done.extend(step(&mut t, f, case));
        }
        done.extend(t.finish().unwrap());
        let steps: Vec<u64> = done.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [1, 2, 3], "every step's loss is reported once, in order");
        let want = f.get(&format!("losses.{case}.adam"));
        let mut loss_err = 0.0f64;
        for (s, (&(_, a), &b)) in done.iter().zip(want).enumerate() {
            let rel = ((a - b) as f64).abs() / (b as f64).abs();
            assert!(rel <= STEP_LOSS_RTOL, "{case} loss at step {}: {a} vs PyTorch {b}", s + 1);
            loss_err = loss_err.max(rel);
        }
        let sd = t.model.state_dict().unwrap();
        let (mut param_err, mut stats_err) = (0.0f64, 0.0f64);
        for p in &t.model.net.params {
            let want = f.get(&format!("after.{case}.adam.{}", p.name));
            let got = &sd.tensors[&p.name].1;
            let what = format!("{} after 3 steps of {case}", p.name);
            if p.trainable {
                param_err = param_err.max(assert_close(&what, got, want, PARAM_ATOL));
            } else {
                stats_err = stats_err.max(assert_close(&what, got, want, STATS_ATOL));
            }
        }
        assert_eq!(t.model.batches_tracked, 3);
        eprintln!("{case} after 3 Adam steps: losses {loss_err:.2e} relative, parameters {param_err:.2e}, running statistics {stats_err:.2e}");
    }
}

/// Targets of the wrong kind, class weights for a loss that weighs no classes, and teacher
/// embeddings of the wrong size are typed errors, not panics.
#[test]
fn mismatched_targets_and_weights_are_refused() {
    let (g, f) = (gpu(), load("embedding_tiny"));
    let cfg = |loss, class_weights| TrainConfig {
        batch: 8,
        height: 32,
        width: 32,
        loss,
        class_weights,
        optimizer: OptimizerConfig::default(),
        accumulate: 1,
    };
    let e = Trainer::new(model(&g, &f), cfg(LossKind::DistillL2, vec![1.0; 16])).err().unwrap();
    assert!(matches!(e, tailor::Error::Shape { .. }), "{e}");
    let mut t = Trainer::new(model(&g, &f), cfg(LossKind::DistillL2, Vec::new())).unwrap();
    let input = f.get("input").to_vec();
    let e = t.step(&input, Targets::Classes(&f.labels("labels"))).err().unwrap();
    assert!(matches!(e, tailor::Error::Invalid(_)), "{e}");
    let e = t.step(&input, Targets::Embeddings(&[0.0; 8])).err().unwrap();
    assert!(matches!(e, tailor::Error::Shape { .. }), "{e}");
    let mut t = trainer(&g, &f, "triplet_batch_all");
    let e = t.step(&input, Targets::Embeddings(f.get("teacher"))).err().unwrap();
    assert!(matches!(e, tailor::Error::Invalid(_)), "{e}");
    let e = t.step(&input, Targets::Multi(&[0.0; 128])).err().unwrap();
    assert!(matches!(e, tailor::Error::Invalid(_)), "{e}");
    assert_eq!(t.step, 0, "no refused step was taken");
}
