//! What an app embedding tailor writes: build a DenseNet, train a few steps on random data with
//! class-balanced weights, then predict — the public `tailor::` API only, no CLI.
//!
//! cargo run --release --example train_random

use tailor::graph::LossKind;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::{OptimizerConfig, OptimizerKind};
use tailor::nn::predict::Predictor;
use tailor::nn::train::{Targets, TrainConfig, Trainer};
use tailor::nn::weights::{class_weights, Weighting};
use tailor::rng::Rng;

fn main() -> tailor::Result<()> {
    let gpu = tailor::Gpu::new()?;
    println!("device: {}", gpu.describe());

    // A small DenseNet-BC for 32×32 RGB images and 5 classes with a long-tailed label count.
    let (classes, batch, size) = (5, 16, 32);
    let model = Model::new(gpu.clone(), DenseNetConfig::small(12, &[4, 4, 4], 3, classes), 42)?;
    let counts = [600, 150, 40, 9, 3];
    let weights = class_weights(&counts, Weighting::Iew { beta: 0.99 }, None)?;
    println!("IEW class weights: {weights:.4?}");

    let config = TrainConfig {
        batch,
        height: size,
        width: size,
        loss: LossKind::Softmax { gamma: 0.0 },
        class_weights: weights.iter().map(|&w| w as f32).collect(),
        optimizer: OptimizerConfig { kind: OptimizerKind::AdamW, weight_decay: 1e-4, ..Default::default() },
    };
    let mut trainer = Trainer::new(model, config)?;
    println!("planned device memory: {}", trainer.memory());

    // Random images whose class is written into their mean, so there is something to learn.
    let mut rng = Rng::new(7);
    let batch_of = |rng: &mut Rng| {
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
        let images: Vec<f32> = labels
            .iter()
            .flat_map(|&l| {
                (0..3 * size * size).map(|_| (rng.normal() * 0.5) as f32 + l as f32 * 0.5).collect::<Vec<_>>()
            })
            .collect();
        (images, labels)
    };
    for _ in 0..20 {
        let (images, labels) = batch_of(&mut rng);
        for (step, loss) in trainer.step(&images, Targets::Classes(&labels))? {
            println!("step {step:>3}  loss {loss:.4}");
        }
    }
    for (step, loss) in trainer.finish()? {
        println!("step {step:>3}  loss {loss:.4}");
    }

    // Inference shares the trained weights on the device.
    let predictor = Predictor::new(&trainer.model, batch, size, size)?;
    let (images, labels) = batch_of(&mut rng);
    let logits = predictor.logits(&images)?;
    let correct = logits
        .chunks(classes)
        .zip(&labels)
        .filter(|(row, &l)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap();
            best == l as usize
        })
        .count();
    println!("accuracy on a fresh random batch: {correct}/{batch}");
    Ok(())
}
