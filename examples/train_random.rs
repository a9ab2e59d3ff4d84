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

fn main() -> std::process::ExitCode {
    // tailor's errors say what went wrong and what to do: print them as such (Display).
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> tailor::Result<()> {
    let gpu = tailor::Gpu::new()?;
    println!("device: {}", gpu.describe());

    // A small DenseNet-BC for 32×32 RGB images and 5 classes with a long-tailed label count.
    let (classes, batch, size) = (5, 16, 32);
    let model = Model::new(gpu.clone(), DenseNetConfig::small(12, &[4, 4, 4], 3, classes), 42)?;
    let counts = [400, 200, 100, 50, 25];
    let weights = class_weights(&counts, Weighting::Iew { beta: 0.99 }, None)?;
    println!("IEW class weights: {weights:.4?}");

    let config = TrainConfig {
        batch,
        height: size,
        width: size,
        loss: LossKind::Softmax { gamma: 0.0 },
        class_weights: weights.iter().map(|&w| w as f32).collect(),
        optimizer: OptimizerConfig { kind: OptimizerKind::AdamW, lr: 3e-3, weight_decay: 1e-4, ..Default::default() },
        accumulate: 1,
    };
    let mut trainer = Trainer::new(model, config)?;
    println!("planned device memory: {}", trainer.memory());

    // Random images whose class is written into their mean, so there is something to learn,
    // with labels drawn as long-tailed as the counts (the weights make up for it).
    let mut rng = Rng::new(7);
    let total = counts.iter().sum::<u64>() as usize;
    let draw = |rng: &mut Rng| {
        let mut r = rng.below(total) as u64;
        counts
            .iter()
            .position(|&n| {
                if r < n {
                    true
                } else {
                    r -= n;
                    false
                }
            })
            .unwrap() as u32
    };
    let images_of = |rng: &mut Rng, labels: &[u32]| -> Vec<f32> {
        labels
            .iter()
            .flat_map(|&l| {
                (0..3 * size * size).map(|_| (rng.normal() * 0.5) as f32 + l as f32 * 0.5).collect::<Vec<_>>()
            })
            .collect()
    };
    for _ in 0..60 {
        let labels: Vec<u32> = (0..batch).map(|_| draw(&mut rng)).collect();
        let images = images_of(&mut rng, &labels);
        for (step, loss) in trainer.step(&images, Targets::Classes(&labels))? {
            println!("step {step:>3}  loss {loss:.4}");
        }
    }
    for (step, loss) in trainer.finish()? {
        println!("step {step:>3}  loss {loss:.4}");
    }

    // Inference shares the trained weights on the device.
    let predictor = Predictor::new(&trainer.model, batch, size, size)?;
    // A fresh batch with every class equally often, the rare ones included.
    let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
    let images = images_of(&mut rng, &labels);
    let logits = predictor.logits(&images)?;
    let correct = logits
        .chunks(classes)
        .zip(&labels)
        .filter(|(row, &l)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap();
            best == l as usize
        })
        .count();
    println!("accuracy on a fresh batch of every class alike: {correct}/{batch} (chance: 1 in {classes})");
    Ok(())
}
