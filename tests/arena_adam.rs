//! One Adam dispatch per parameter group over the arena computes bit for bit what one dispatch
//! per parameter tensor computes (the path this replaced), for Adam and for AdamW with a group
//! that skips weight decay.

use std::sync::atomic::Ordering;

use tailor::graph::LossKind;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::{OptimizerConfig, OptimizerKind};
use tailor::nn::train::{Targets, TrainConfig, Trainer, PER_TENSOR_ADAM};

/// Weights, optimiser moments and dispatches per step.
type Trained = (Vec<(String, Vec<f32>)>, Vec<tailor::nn::train::Moments>, usize);

fn train(per_tensor: bool, optimizer: OptimizerConfig) -> Trained {
    PER_TENSOR_ADAM.store(per_tensor, Ordering::Relaxed);
    let gpu = tailor::Gpu::new().expect("no GPU adapter");
    let model = Model::new(gpu, DenseNetConfig::small(6, &[2, 2], 3, 4), 7).unwrap();
    let config = TrainConfig {
        batch: 3,
        height: 12,
        width: 12,
        loss: LossKind::Softmax { gamma: 0.0 },
        class_weights: vec![1.0; 4],
        optimizer,
    };
    let mut t = Trainer::new(model, config).unwrap();
    PER_TENSOR_ADAM.store(false, Ordering::Relaxed);
    let dispatches = t.dispatch_count();
    let mut rng = 1u64;
    for _ in 0..4 {
        let images: Vec<f32> = (0..3 * 3 * 12 * 12)
            .map(|_| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        t.step(&images, Targets::Classes(&[0, 3, 1])).unwrap();
    }
    t.finish().unwrap();
    let sd = t.model.state_dict().unwrap();
    let weights = sd.tensors.into_iter().map(|(k, (_, v))| (k, v)).collect();
    (weights, t.optimizer_state().unwrap(), dispatches)
}

#[test]
fn grouped_adam_is_bit_identical_to_per_tensor_adam() {
    let adamw = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        weight_decay: 0.05,
        no_decay_bn_bias: true,
        ..Default::default()
    };
    for opt in [OptimizerConfig { lr: 1e-2, ..Default::default() }, adamw] {
        let (w1, m1, d1) = train(false, opt.clone());
        let (w2, m2, d2) = train(true, opt.clone());
        assert!(d2 > d1 + 10, "per tensor {d2} dispatches, grouped {d1}");
        assert_eq!(w1.len(), w2.len());
        for ((n1, a), (n2, b)) in w1.iter().zip(&w2) {
            assert_eq!(n1, n2);
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{opt:?}: '{n1}' differs");
        }
        for ((n1, ma, va), (_, mb, vb)) in m1.iter().zip(&m2) {
            let same = ma.iter().chain(va).zip(mb.iter().chain(vb)).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{opt:?}: moments of '{n1}' differ");
        }
    }
}
