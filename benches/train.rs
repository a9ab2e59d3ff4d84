//! Criterion benches of whole training steps (forward, loss, backward, Adam), the workloads of
//! `tailor bench`: W1 (DenseNet-BC k=12, batch 64 × 32²) by default, W2 (DenseNet-121, batch
//! 8 × 224²) with `TAILOR_BENCH_W2=1`. Small sample counts: a step takes seconds on lavapipe.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tailor::graph::LossKind;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::OptimizerConfig;
use tailor::nn::train::{Targets, TrainConfig, Trainer};
use tailor::rng::Rng;
use tailor::Gpu;

fn workload(c: &mut Criterion, name: &str, arch: &str, batch: usize, size: usize) {
    // Under `cargo test` (a smoke run, no --bench) conv tiles are the heuristic's: nothing is
    // timed and the user's tile cache stays untouched. `cargo bench` uses tuned tiles.
    if !std::env::args().any(|a| a == "--bench") {
        tailor::ops::tune::set_mode(tailor::ops::tune::Mode::Off);
    }
    let gpu = Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
    let classes = 10;
    let model = Model::new(gpu, DenseNetConfig::preset(arch, classes, 3).unwrap(), 0).unwrap();
    let config = TrainConfig {
        batch,
        height: size,
        width: size,
        loss: LossKind::Sigmoid { gamma: 0.0 },
        class_weights: (0..classes).map(|c| 0.5 + 0.1 * c as f32).collect(),
        optimizer: OptimizerConfig::default(),
        accumulate: 1,
    };
    let mut trainer = Trainer::new(model, config).unwrap();
    let mut rng = Rng::new(1);
    let images: Vec<f32> = (0..batch * 3 * size * size).map(|_| rng.normal() as f32).collect();
    let targets: Vec<f32> = (0..batch * classes).map(|_| (rng.uniform() < 0.3) as u8 as f32).collect();
    let mut step = || {
        trainer.step(&images, Targets::Multi(&targets)).unwrap();
        trainer.finish().unwrap();
    };
    step(); // compiles every pipeline
    let mut group = c.benchmark_group("train step");
    group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(name, |b| b.iter(&mut step));
    group.finish();
}

fn benches(c: &mut Criterion) {
    workload(c, "W1 densenet-bc b64 32x32", "densenet-bc", 64, 32);
    if std::env::var("TAILOR_BENCH_W2").is_ok_and(|v| v == "1") {
        workload(c, "W2 densenet121 b8 224x224", "densenet121", 8, 224);
    }
}

criterion_group!(train, benches);
criterion_main!(train);
