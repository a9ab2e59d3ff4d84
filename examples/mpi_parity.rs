//! Two MPI ranks train the PyTorch fixture's DenseNet together and match the gradient
//! accumulation dump (`../shared/fixtures/densenet_tiny_accum2`, see its README): the batch of 4
//! as rank 0's rows 0–1 and rank 1's rows 2–3, their gradients summed over the ranks, three
//! Adam steps. Rank 0 checks the first step's gradients, the three losses and the weights after
//! them at the tolerances of `tests/parity.rs`, checks that they equal, bit for bit, what
//! `--accumulate 2` computes on one device, and that both ranks hold the same weights.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_parity
//! mpirun -np 2 target/release/examples/mpi_parity
//! ```
//! (As root, OpenMPI also wants `--allow-run-as-root`; on a machine with fewer cores than ranks,
//! `--oversubscribe`.) `TAILOR_FIXTURES` names the fixtures folder. Exit code 0: all matched.

use std::path::PathBuf;
use std::sync::Arc;

use tailor::graph::LossKind;
use tailor::mpi::Mpi;
use tailor::nn::checkpoint::StateDict;
use tailor::nn::densenet::DenseNetConfig;
use tailor::nn::model::Model;
use tailor::nn::optim::OptimizerConfig;
use tailor::nn::train::{Collective, Targets, TrainConfig, Trainer};
use tailor::nn::weights::{class_weights, Weighting};
use tailor::Gpu;

fn fixture(name: &str) -> StateDict {
    let dir = std::env::var("TAILOR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    StateDict::load(&dir.join(format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn get<'a>(sd: &'a StateDict, k: &str) -> &'a [f32] {
    &sd.tensors.get(k).unwrap_or_else(|| panic!("fixture has no '{k}'")).1
}

fn trainer(gpu: &Arc<Gpu>, f: &StateDict, kind: &str, batch: usize, accumulate: usize) -> Trainer {
    let mut c = DenseNetConfig::densenet121(5);
    (c.growth_rate, c.block_config, c.num_init_features, c.bn_size) = (8, vec![2, 2], 16, 2);
    let mut init = StateDict::default();
    for (k, v) in &f.tensors {
        if let Some(n) = k.strip_prefix("init.") {
            init.tensors.insert(n.to_string(), v.clone());
        }
    }
    let mut model = Model::new(gpu.clone(), c, 0).unwrap();
    model.load_state_dict(&init).unwrap();
    let loss = if kind == "softmax" { LossKind::Softmax { gamma: 0.0 } } else { LossKind::Sigmoid { gamma: 0.0 } };
    let w = class_weights(&[600, 150, 40, 9, 3], Weighting::Iew { beta: 0.99 }, None).unwrap();
    let config = TrainConfig {
        batch,
        height: 32,
        width: 32,
        loss,
        class_weights: w.iter().map(|&v| v as f32).collect(),
        optimizer: OptimizerConfig::default(),
        accumulate,
    };
    Trainer::new(model, config).unwrap()
}

fn step(t: &mut Trainer, f: &StateDict, kind: &str) -> Vec<(u64, f32)> {
    let input = get(f, "input");
    if kind == "softmax" {
        let y: Vec<u32> = get(f, "target_single").iter().map(|&v| v as u32).collect();
        t.step(input, Targets::Classes(&y)).unwrap()
    } else {
        t.step(input, Targets::Multi(get(f, "target_multi"))).unwrap()
    }
}

fn check(cond: bool, what: String, failures: &mut Vec<String>) {
    if !cond {
        failures.push(what);
    }
}

fn main() {
    tailor::ops::tune::set_mode(tailor::ops::tune::Mode::Off);
    let mpi = Arc::new(Mpi::init().expect("MPI"));
    let (rank, size) = (mpi.rank(), mpi.size());
    if size != 2 {
        eprintln!("run with 2 ranks (mpirun -np 2), not {size}");
        mpi.abort(2)
    }
    let (f, a) = (fixture("densenet_tiny"), fixture("densenet_tiny_accum2"));
    let gpu = Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
    let mut failures = Vec::new();
    for kind in ["sigmoid", "softmax"] {
        let mut t = trainer(&gpu, &f, kind, 2, 1);
        t.join(mpi.clone()).unwrap();
        let mut losses = step(&mut t, &f, kind);
        losses.extend(t.finish().unwrap());
        let grads: Vec<(String, Vec<f32>)> = t
            .model
            .net
            .params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| (p.name.clone(), t.grad(&p.name).unwrap()))
            .collect();
        for _ in 0..2 {
            losses.extend(step(&mut t, &f, kind));
        }
        losses.extend(t.finish().unwrap());
        let checksum = t.check_replicas();
        check(checksum.is_ok(), format!("{kind}: the ranks' weights differ: {checksum:?}"), &mut failures);
        if rank != 0 {
            continue;
        }
        for (name, g) in &grads {
            let want = get(&a, &format!("accum2.grad.{kind}.iew.{name}"));
            let tol = 1e-3 * want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let ok = g.iter().zip(want).all(|(x, y)| (x - y).abs() <= tol);
            check(ok, format!("{kind}: gradient of {name} differs from PyTorch's"), &mut failures);
        }
        let want = get(&a, &format!("accum2.losses.{kind}.iew.adam"));
        check(losses.len() == 3, format!("{kind}: {} losses for 3 steps", losses.len()), &mut failures);
        for ((s, l), w) in losses.iter().zip(want) {
            check(
                (l - w).abs() <= 1e-4 * w.abs(),
                format!("{kind}: loss at step {s}: {l} vs PyTorch {w}"),
                &mut failures,
            );
        }
        let sd = t.model.state_dict().unwrap();
        for p in t.model.net.params.iter().filter(|p| p.trainable) {
            let want = get(&a, &format!("accum2.after.{kind}.iew.adam.{}", p.name));
            let grad = get(&a, &format!("accum2.grad.{kind}.iew.{}", p.name));
            let got = &sd.tensors[&p.name].1;
            // As tests/parity.rs: elements whose reference gradient is rounding noise are skipped.
            let ok = got.iter().zip(want).zip(grad).all(|((x, y), g)| g.abs() < 1e-6 || (x - y).abs() <= 1e-3);
            check(ok, format!("{kind}: {} after 3 steps differs from PyTorch's", p.name), &mut failures);
        }
        // The same as two micro-batches on one device, bit for bit.
        let mut one = trainer(&gpu, &f, kind, 4, 2);
        let mut l1 = Vec::new();
        for _ in 0..3 {
            l1.extend(step(&mut one, &f, kind));
        }
        l1.extend(one.finish().unwrap());
        check(l1 == losses, format!("{kind}: losses {losses:?} vs --accumulate 2's {l1:?}"), &mut failures);
        let sd1 = one.model.state_dict().unwrap();
        for p in t.model.net.params.iter().filter(|p| p.trainable) {
            let same = sd.tensors[&p.name] == sd1.tensors[&p.name];
            check(same, format!("{kind}: {} differs from --accumulate 2's", p.name), &mut failures);
        }
        println!("{kind}: 2 ranks, losses {:?}", losses.iter().map(|(_, l)| *l).collect::<Vec<_>>());
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("rank {rank}: {f}");
        }
        mpi.abort(1)
    }
    if rank == 0 {
        println!("2 ranks match the accumulation fixture and --accumulate 2 on one device");
    }
}
