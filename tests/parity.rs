//! End-to-end parity with PyTorch (`../shared/fixtures/densenet_tiny.*`, see its README): the
//! same weights in give the same logits, losses, gradients and Adam/AdamW steps out.

mod fixture;

use std::sync::Arc;

use tailor::graph::LossKind;
use tailor::nn::checkpoint::StateDict;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::{OptimizerConfig, OptimizerKind};
use tailor::nn::predict::Predictor;
use tailor::nn::train::{Targets, TrainConfig, Trainer};
use tailor::nn::weights::{class_weights, Weighting};
use tailor::Gpu;

use fixture::{assert_close, gpu, load, max_abs, Fixture};

fn config() -> DenseNetConfig {
    let mut c = DenseNetConfig::densenet121(5);
    c.growth_rate = 8;
    c.block_config = vec![2, 2];
    c.num_init_features = 16;
    c.bn_size = 2;
    c
}

fn model(g: &Arc<Gpu>, f: &Fixture, memory_efficient: bool) -> Model {
    let mut c = config();
    c.memory_efficient = memory_efficient;
    let mut m = Model::new(g.clone(), c, 0).unwrap();
    m.load_state_dict(&f.init).unwrap();
    m
}

fn weights(f: &Fixture, scheme: &str) -> Vec<f32> {
    let w = match scheme {
        "nw" => Weighting::Nw,
        "ifw" => Weighting::Ifw,
        _ => Weighting::Iew { beta: 0.99 },
    };
    let got = class_weights(&[600, 150, 40, 9, 3], w, None).unwrap();
    let got: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    assert_close(&format!("weights.{scheme}"), &got, f.get(&format!("weights.{scheme}")), 1e-7);
    got
}

fn trainer(g: &Arc<Gpu>, f: &Fixture, kind: &str, scheme: &str, opt: OptimizerKind, me: bool) -> Trainer {
    accumulating_trainer(g, f, kind, scheme, opt, me, 1)
}

fn accumulating_trainer(
    g: &Arc<Gpu>,
    f: &Fixture,
    kind: &str,
    scheme: &str,
    opt: OptimizerKind,
    me: bool,
    accumulate: usize,
) -> Trainer {
    Trainer::new(model(g, f, me), train_config(f, kind, scheme, opt, accumulate)).unwrap()
}

fn train_config(f: &Fixture, kind: &str, scheme: &str, opt: OptimizerKind, accumulate: usize) -> TrainConfig {
    let loss = if kind == "softmax" { LossKind::Softmax { gamma: 0.0 } } else { LossKind::Sigmoid { gamma: 0.0 } };
    let optimizer = OptimizerConfig {
        kind: opt,
        weight_decay: if opt == OptimizerKind::AdamW { 1e-2 } else { 0.0 },
        ..OptimizerConfig::default()
    };
    let class_weights = weights(f, scheme);
    TrainConfig { batch: 4, height: 32, width: 32, loss, class_weights, optimizer, accumulate }
}

/// Queues one step; returns the losses of earlier steps that finished meanwhile.
fn step(t: &mut Trainer, f: &Fixture, kind: &str) -> Vec<(u64, f32)> {
    let input = f.get("input").to_vec();
    if kind == "softmax" {
        let y: Vec<u32> = f.get("target_single").iter().map(|&v| v as u32).collect();
        t.step(&input, Targets::Classes(&y)).unwrap()
    } else {
        t.step(&input, Targets::Multi(f.get("target_multi"))).unwrap()
    }
}

#[test]
fn eval_logits_match_pytorch() {
    eval_parity(&gpu(), &load("densenet_tiny"));
}

#[test]
fn train_logits_losses_and_gradients_match_pytorch() {
    train_parity(&gpu(), &load("densenet_tiny"));
}

#[test]
fn three_adam_and_adamw_steps_match_pytorch() {
    adam_parity(&gpu(), &load("densenet_tiny"));
}

/// The same parity with a device that binds at most 24 KiB per storage binding: the input
/// (12 KiB per image) and the stem's outputs (16 KiB per image) are bound in batch chunks of
/// two and one images, so every chunked path (batch norm statistics and gradients over chunks,
/// weight gradients over chunks, per-image ops) is checked against PyTorch, at the same
/// tolerances.
#[test]
fn parity_holds_with_batches_bound_in_chunks() {
    let (g, f) = (gpu(), load("densenet_tiny"));
    let whole = trainer(&g, &f, "softmax", "nw", OptimizerKind::Adam, false).dispatch_count();
    g.set_binding_limit(Some(24 << 10));
    let chunked = trainer(&g, &f, "softmax", "nw", OptimizerKind::Adam, false).dispatch_count();
    assert!(chunked > whole, "a 24 KiB binding limit splits batches ({chunked} vs {whole} dispatches)");
    eval_parity(&g, &f);
    train_parity(&g, &f);
    adam_parity(&g, &f);
    accumulation_parity(&g, &f);
}

/// The same parity with kernels planned as for a GPU (`Gpu::set_gpu_plans`): batch norms in
/// workgroups of several subgroups that combine their sums through workgroup memory, 1×1
/// GEMMs in workgroups of 16 to 64 lanes, the paths a real GPU takes and lavapipe otherwise
/// never runs. The pipelines must differ, or this would test nothing new.
#[test]
fn parity_holds_with_kernels_planned_for_a_gpu() {
    let (g, f) = (gpu(), load("densenet_tiny"));
    let _cpu = trainer(&g, &f, "softmax", "nw", OptimizerKind::Adam, false);
    let cpu_pipelines = g.pipeline_count();
    g.set_gpu_plans(true);
    let _gpu = trainer(&g, &f, "softmax", "nw", OptimizerKind::Adam, false);
    if g.info.device_type == wgpu::DeviceType::Cpu {
        assert!(g.pipeline_count() > cpu_pipelines, "GPU plans built no pipeline of their own");
    }
    eval_parity(&g, &f);
    train_parity(&g, &f);
    adam_parity(&g, &f);
    accumulation_parity(&g, &f);
}

fn eval_parity(g: &Arc<Gpu>, f: &Fixture) {
    let m = model(g, f, true);
    let p = Predictor::new(&m, 4, 32, 32).unwrap();
    let logits = p.logits(f.get("input")).unwrap();
    assert_close("logits.eval", &logits, f.get("logits.eval"), 1e-4);
}

fn train_parity(g: &Arc<Gpu>, f: &Fixture) {
    for me in [true, false] {
        for kind in ["sigmoid", "softmax"] {
            for scheme in ["nw", "ifw", "iew"] {
                let case = format!("{kind}.{scheme} (memory-efficient {me})");
                let mut t = trainer(g, f, kind, scheme, OptimizerKind::Adam, me);
                let mut losses = step(&mut t, f, kind);
                losses.extend(t.finish().unwrap());
                assert_close(&format!("logits.train {case}"), &t.last_logits().unwrap(), f.get("logits.train"), 1e-4);
                let want = f.get(&format!("loss.{kind}.{scheme}"))[0] as f64;
                let got = losses[0].1 as f64;
                assert!((got - want).abs() <= 1e-5 * want.abs(), "loss {case}: {got} vs PyTorch {want}");
                for p in t.model.net.params.clone().iter().filter(|p| p.trainable) {
                    let want = f.get(&format!("grad.{kind}.{scheme}.{}", p.name));
                    let got = t.grad(&p.name).unwrap();
                    assert_close(&format!("grad {} {case}", p.name), &got, want, 1e-3 * max_abs(want).max(1e-12));
                }
            }
        }
    }
}

/// Three steps of each optimiser: losses within 1e-4 relative, running statistics within 2e-4,
/// parameters within 1e-3. (PyTorch's own float32 run is 7e-5 from these float64 dumps in the
/// running statistics, which see the lr-sized updates Adam makes of near-zero gradients' rounding
/// noise; another summation order, e.g. lavapipe with 16-lane subgroups, reaches 1.2e-4.)
fn adam_parity(g: &Arc<Gpu>, f: &Fixture) {
    for kind in ["sigmoid", "softmax"] {
        for (opt, oname) in [(OptimizerKind::Adam, "adam"), (OptimizerKind::AdamW, "adamw")] {
            let case = format!("{kind}.iew.{oname}");
            let mut t = trainer(g, f, kind, "iew", opt, true);
            let mut done = Vec::new();
            for _ in 0..3 {
                done.extend(step(&mut t, f, kind));
            }
            done.extend(t.finish().unwrap());
            let steps: Vec<u64> = done.iter().map(|(s, _)| *s).collect();
            assert_eq!(steps, [1, 2, 3], "every step's loss is reported once, in order");
            let losses: Vec<f32> = done.into_iter().map(|(_, l)| l).collect();
            let after = |name: &str| f.get(&format!("after.{case}.{name}"));
            let grad = |name: &str| f.get(&format!("grad.{kind}.iew.{name}"));
            assert_three_steps(&t, &case, (&losses, f.get(&format!("losses.{case}"))), &after, &grad, 2e-4);
            assert_eq!(t.model.batches_tracked, 3);
        }
    }
}

/// Gradient accumulation against `densenet_tiny_accum2` (see the fixtures' README): the batch of
/// 4 as two micro-batches of 2, each with its own batch-norm statistics and half its loss, the
/// gradients summed, one Adam step. The first step's summed gradients, the three steps' losses
/// and the state after them, at the tolerances of the unaccumulated tests; the running
/// statistics are updated per micro-batch (6 after 3 steps). Also: the step really splits
/// (its gradients differ from the whole batch's), and a batch not divisible is refused.
#[test]
fn accumulating_two_micro_batches_matches_pytorch() {
    let (g, f) = (gpu(), load("densenet_tiny"));
    accumulation_parity(&g, &f);
    let model = model(&g, &f, true);
    let cfg = TrainConfig {
        batch: 4,
        height: 32,
        width: 32,
        loss: tailor::graph::LossKind::Softmax { gamma: 0.0 },
        class_weights: vec![1.0; 5],
        optimizer: OptimizerConfig::default(),
        accumulate: 3,
    };
    let err = Trainer::new(model, cfg).err().expect("4 images cannot be cut into 3 equal micro-batches");
    assert!(matches!(err, tailor::Error::Shape { .. }), "{err}");
}

fn accumulation_parity(g: &Arc<Gpu>, f: &Fixture) {
    let a = load("densenet_tiny_accum2");
    for kind in ["sigmoid", "softmax"] {
        let case = format!("{kind}.iew (2 micro-batches)");
        let mut t = accumulating_trainer(g, f, kind, "iew", OptimizerKind::Adam, true, 2);
        let mut done = step(&mut t, f, kind);
        done.extend(t.finish().unwrap());
        for p in t.model.net.params.clone().iter().filter(|p| p.trainable) {
            let want = a.get(&format!("accum2.grad.{kind}.iew.{}", p.name));
            let got = t.grad(&p.name).unwrap();
            assert_close(&format!("grad {} {case}", p.name), &got, want, 1e-3 * max_abs(want).max(1e-12));
        }
        let whole = f.get(&format!("grad.{kind}.iew.features.conv0.weight"));
        let split = a.get(&format!("accum2.grad.{kind}.iew.features.conv0.weight"));
        assert!(
            whole.iter().zip(split).any(|(x, y)| ((x - y).abs() as f64) > 1e-3 * max_abs(split)),
            "the fixture tells the two apart"
        );
        for _ in 0..2 {
            done.extend(step(&mut t, f, kind));
        }
        done.extend(t.finish().unwrap());
        let losses: Vec<f32> = done.iter().map(|(_, l)| *l).collect();
        let want = a.get(&format!("accum2.losses.{kind}.iew.adam"));
        let after = |name: &str| a.get(&format!("accum2.after.{kind}.iew.adam.{name}"));
        let grad = |name: &str| a.get(&format!("accum2.grad.{kind}.iew.{name}"));
        // Running statistics within 3e-4, not adam_parity's 2e-4: the softmax case's
        // norm0.bias[15] has a reference gradient of −2.1e-17 (rounding noise), which Adam turns
        // into a ±lr step, and six running-statistics updates instead of three carry it into the
        // running means of the stem's channel 15 (2.1e-4 from PyTorch on lavapipe; every other
        // statistic within 6.1e-5).
        assert_three_steps(&t, &case, (&losses, want), &after, &grad, 3e-4);
        assert_eq!(t.model.batches_tracked, 6, "running statistics updated once per micro-batch");
    }
}

/// Two replicas on two devices (here the same adapter opened twice) compute what two
/// micro-batches compute on one device (`--accumulate 2`): the same losses and weights, bit for
/// bit, for both losses with AdamW; the replicas' weights stay identical (checksums). The
/// running statistics are each replica's own (its share only, as in PyTorch's
/// DistributedDataParallel). Uneven shares (3 + 1) keep the replicas identical too.
#[test]
fn two_devices_compute_what_two_micro_batches_compute() {
    let (g, f) = (gpu(), load("densenet_tiny"));
    let peer = Gpu::open(g.adapter.clone()).unwrap();
    for kind in ["sigmoid", "softmax"] {
        let mut one = accumulating_trainer(&g, &f, kind, "iew", OptimizerKind::AdamW, true, 2);
        let cfg = train_config(&f, kind, "iew", OptimizerKind::AdamW, 1);
        let mut two =
            Trainer::new_data_parallel(model(&g, &f, true), cfg, std::slice::from_ref(&peer), &[2, 2]).unwrap();
        assert_eq!((two.replicas(), two.shares()), (2, vec![2, 2]));
        let (mut l1, mut l2) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            l1.extend(step(&mut one, &f, kind));
            l2.extend(step(&mut two, &f, kind));
        }
        l1.extend(one.finish().unwrap());
        l2.extend(two.finish().unwrap());
        assert_eq!(l1, l2, "{kind}: the same losses");
        let (a, b) = (one.model.state_dict().unwrap(), two.model.state_dict().unwrap());
        for p in one.model.net.params.iter().filter(|p| p.trainable) {
            assert!(a.tensors[&p.name] == b.tensors[&p.name], "{kind}: '{}' differs", p.name);
        }
        two.check_replicas().unwrap();
        assert!(two.exchange_seconds() > 0.0);
        assert_eq!((one.model.batches_tracked, two.model.batches_tracked), (6, 3));
    }
    let cfg = train_config(&f, "softmax", "iew", OptimizerKind::Adam, 1);
    let mut uneven =
        Trainer::new_data_parallel(model(&g, &f, true), cfg.clone(), std::slice::from_ref(&peer), &[3, 1]).unwrap();
    let mut losses = Vec::new();
    for _ in 0..2 {
        losses.extend(step(&mut uneven, &f, "softmax"));
    }
    losses.extend(uneven.finish().unwrap());
    assert!(losses.iter().all(|(_, l)| l.is_finite()) && losses.len() == 2, "{losses:?}");
    uneven.check_replicas().unwrap();
    // Shares by measured speed: every device gets whole micro-batches, together the batch.
    let speeds = tailor::nn::train::measure_speeds(&config(), &cfg, &[g.clone(), peer.clone()]).unwrap();
    assert!(speeds.iter().all(|s| s.is_finite() && *s > 0.0), "{speeds:?}");
    let shares = tailor::nn::train::shares_from_speeds(4, 1, &speeds).unwrap();
    assert_eq!(shares.iter().sum::<usize>(), 4, "{shares:?} from {speeds:?}");
    let err = Trainer::new_data_parallel(model(&g, &f, true), cfg, &[peer], &[3, 2]).err().expect("shares must sum");
    assert!(err.to_string().contains("sum to the batch of 4"), "{err}");
}

/// Three optimiser steps against PyTorch's: the losses (ours, the fixture's) within 1e-4
/// relative; the state after them (`after(name)`) with running statistics within `stats_tol` and
/// parameters within 1e-3. `grad(name)` is the first step's reference gradient: Adam turns
/// rounding noise in near-zero gradients into updates of up to lr per step (see the fixtures'
/// README), so elements whose reference gradient is below 1e-6 in magnitude are skipped.
fn assert_three_steps<'f>(
    t: &Trainer,
    case: &str,
    (losses, want): (&[f32], &[f32]),
    after: &dyn Fn(&str) -> &'f [f32],
    grad: &dyn Fn(&str) -> &'f [f32],
    stats_tol: f64,
) {
    assert_eq!(losses.len(), 3, "{case}: a loss per step");
    for (s, (&a, &b)) in losses.iter().zip(want).enumerate() {
        assert!(((a - b) as f64).abs() <= 1e-4 * (b as f64).abs(), "{case} loss at step {}: {a} vs PyTorch {b}", s + 1);
    }
    let sd = t.model.state_dict().unwrap();
    for p in &t.model.net.params {
        let reference = after(&p.name);
        let got = &sd.tensors[&p.name].1;
        if !p.trainable {
            assert_close(&format!("{} after {case}", p.name), got, reference, stats_tol);
            continue;
        }
        for (i, ((&a, &b), &gr)) in got.iter().zip(reference).zip(grad(&p.name)).enumerate() {
            if gr.abs() >= 1e-6 {
                assert!(((a - b) as f64).abs() <= 1e-3, "{}[{i}] after {case}: {a} vs PyTorch {b}", p.name);
            }
        }
    }
}

#[test]
fn resuming_from_saved_weights_and_optimizer_state_is_exact() {
    let (g, f) = (gpu(), load("densenet_tiny"));
    let dir = std::env::temp_dir().join(format!("tailor-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Uninterrupted: three AdamW steps.
    let mut a = trainer(&g, &f, "sigmoid", "iew", OptimizerKind::AdamW, true);
    let mut la = Vec::new();
    for _ in 0..3 {
        la.extend(step(&mut a, &f, "sigmoid"));
    }
    la.extend(a.finish().unwrap());
    // Interrupted after two steps, saved, and resumed in a fresh trainer.
    let mut b = trainer(&g, &f, "sigmoid", "iew", OptimizerKind::AdamW, true);
    for _ in 0..2 {
        step(&mut b, &f, "sigmoid");
    }
    b.finish().unwrap();
    b.model.state_dict().unwrap().save(&dir.join("model.safetensors")).unwrap();
    b.save_optimizer(&dir.join("optimizer.safetensors")).unwrap();
    let mut c = trainer(&g, &f, "sigmoid", "iew", OptimizerKind::AdamW, true);
    c.model.load_state_dict(&StateDict::load(&dir.join("model.safetensors")).unwrap()).unwrap();
    c.load_optimizer(&dir.join("optimizer.safetensors")).unwrap();
    assert_eq!(c.model.batches_tracked, 2);
    let mut lc = step(&mut c, &f, "sigmoid");
    lc.extend(c.finish().unwrap());
    assert_eq!(lc, vec![la[2]], "the resumed third step has the same loss");
    let (sa, sc) = (a.model.state_dict().unwrap(), c.model.state_dict().unwrap());
    assert_eq!(sa.tensors, sc.tensors, "the resumed run ends with the same weights, bit for bit");
    std::fs::remove_dir_all(&dir).unwrap();
}
