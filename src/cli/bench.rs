//! `tailor bench`: the training-step workloads of the benchmarks (W1, W2 or your own shape),
//! timed on the device: time to the first finished step (pipeline compilation included), the
//! median step, images/s, the planner's device memory, peak RSS and a per-kernel breakdown.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::graph::exec::mib;
use crate::graph::LossKind;
use crate::nn::densenet::DenseNetConfig;
use crate::nn::model::Model;
use crate::nn::optim::OptimizerConfig;
use crate::nn::train::{NodeTime, Targets, TrainConfig, Trainer};
use crate::rng::Rng;

#[derive(clap::Args)]
pub struct Args {
    /// w1: DenseNet-BC k=12 (6,6,6), batch 64 × 3×32×32; w2: DenseNet-121, batch 8 × 3×224×224.
    #[arg(long, default_value = "w1")]
    workload: String,
    /// Override the architecture (densenet121/161/169/201, densenet-bc).
    #[arg(long)]
    arch: Option<String>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per step (gradient accumulation): the batch is cut into this many.
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Data parallel over several devices with equal shares (as `tailor train --devices`):
    /// reports the gradient exchange's share of a step.
    #[arg(long)]
    devices: Option<String>,
    #[arg(long)]
    image_size: Option<usize>,
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Timed steps after warm-up (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Keep every dense layer's first BN-ReLU output instead of recomputing it in backward.
    #[arg(long)]
    no_memory_efficient: bool,
    /// List the slowest nodes of a step (each timed on its own, best of 3) with their shapes and
    /// GFLOP/s, and the time per convolution kind and shape; `--per-node 40` lists 40.
    #[arg(long, num_args = 0..=1, default_missing_value = "25")]
    per_node: Option<usize>,
    /// Skip the per-kernel breakdown.
    #[arg(long)]
    no_breakdown: bool,
    /// List the compute pipelines the run created (entry point and constants)
    #[arg(long)]
    list_pipelines: bool,
    /// Only plan the step and print the device memory it needs (no binding limit, nothing allocated).
    #[arg(long)]
    plan_only: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Peak resident set size of this process in bytes (Linux), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes of the largest tensor of the training graph.
fn largest_tensor(model: &Model, cfg: &TrainConfig) -> Result<u64> {
    let mut g = crate::graph::Graph::new();
    let built = model.net.build(&mut g, cfg.micro_batch()?, cfg.height, cfg.width, true)?;
    let _ = built;
    Ok(g.tensors.iter().filter(|t| t.view.is_none()).map(|t| t.numel() as u64 * 4).max().unwrap_or(0))
}

pub fn run(cli: &super::Cli, a: &Args) -> Result<()> {
    let t0 = Instant::now();
    let (arch, batch, size) = match a.workload.to_ascii_lowercase().as_str() {
        "w1" => ("densenet-bc", 64, 32),
        "w2" => ("densenet121", 8, 224),
        w => {
            return Err(Error::Invalid(format!(
                "--workload '{w}': use w1 or w2 (and --arch, --batch-size, --image-size for other shapes)"
            )))
        }
    };
    if a.steps == 0 {
        return Err(Error::Invalid("--steps 0: give at least one timed step".into()));
    }
    let arch = a.arch.clone().unwrap_or(arch.to_string());
    let batch = a.batch_size.unwrap_or(batch);
    let size = a.image_size.unwrap_or(size);
    let mut config = DenseNetConfig::preset(&arch, a.classes, 3)?;
    config.memory_efficient = !a.no_memory_efficient;
    let gpus = match &a.devices {
        Some(sel) => crate::gpu::open_devices(&cli.gpu_options(), &sel.parse()?)?,
        None => vec![cli.open_gpu()?],
    };
    let gpu = gpus[0].clone();
    let model = Model::new(gpu.clone(), config, 0)?;
    let params = model.net.num_params();
    // The peers' loss: weighted sigmoid BCE with weights 0.5 + 0.1·c, Adam lr 1e-3.
    let w: Vec<f32> = (0..a.classes).map(|c| 0.5 + 0.1 * c as f32).collect();
    let cfg = TrainConfig {
        batch,
        height: size,
        width: size,
        loss: LossKind::Sigmoid { gamma: 0.0 },
        class_weights: w,
        optimizer: OptimizerConfig::default(),
        accumulate: a.accumulate,
    };
    if a.plan_only {
        let m = Trainer::estimate_memory(&model, &cfg)?;
        let limit = gpu.max_binding();
        let largest = largest_tensor(&model, &cfg)?;
        if a.json {
            let v = serde_json::json!({
                "arch": arch, "batch": batch, "image_size": size, "total_bytes": m.total(),
                "params_and_state_bytes": m.params_and_state, "param_grads_bytes": m.param_grads,
                "activations_pool_bytes": m.activations_pool, "activations_unshared_bytes": m.activations_unshared,
                "io_bytes": m.io, "scratch_bytes": m.scratch, "largest_tensor_bytes": largest,
                "max_binding_bytes": limit, "chunked": largest > limit,
            });
            println!("{v}");
            return Ok(());
        }
        println!("{arch}, batch {batch}, {size}×{size}: {m}");
        if largest > limit {
            println!("its largest tensor ({}) exceeds this device's binding limit ({}): it runs with batches bound in chunks", mib(largest), mib(limit));
        }
        return Ok(());
    }
    let t_build = Instant::now();
    let before_build = t_build.duration_since(t0).as_secs_f64();
    let shares = crate::nn::train::shares_from_speeds(batch, a.accumulate, &vec![1.0; gpus.len()])?;
    let mut trainer = Trainer::new_data_parallel(model, cfg, &gpus[1..], &shares)?;
    let build = t_build.elapsed().as_secs_f64();
    let memory = trainer.memory();
    if !a.json {
        eprintln!(
            "{} on {}: {params} parameters, {} dispatches per step, {} compute pipelines",
            arch,
            gpu.describe(),
            trainer.dispatch_count(),
            gpu.pipeline_count()
        );
        eprintln!("device memory (planned): {memory}");
    }
    let mut rng = Rng::new(1);
    let images: Vec<f32> = (0..batch * 3 * size * size).map(|_| rng.normal() as f32).collect();
    let targets: Vec<f32> = (0..batch * a.classes).map(|_| (rng.uniform() < 0.3) as u8 as f32).collect();
    let mut cpu_times = Vec::new();
    let mut step = |t: &mut Trainer| -> Result<f64> {
        let (s, c) = (Instant::now(), cpu_seconds());
        t.step(&images, Targets::Multi(&targets))?;
        t.finish()?;
        cpu_times.push(cpu_seconds() - c);
        Ok(s.elapsed().as_secs_f64())
    };
    let first_step = step(&mut trainer)?;
    let first = t0.elapsed().as_secs_f64();
    for _ in 0..a.warmup {
        step(&mut trainer)?;
    }
    let mut times = Vec::new();
    let exchanged = trainer.exchange_seconds();
    for _ in 0..a.steps.max(1) {
        times.push(step(&mut trainer)?);
    }
    let exchange = (trainer.exchange_seconds() - exchanged) / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    // CPU time of the timed steps (lavapipe's threads included): steadier than wall-clock time
    // on a shared machine; divided by the cores it estimates an idle machine's step.
    let mut cpu = cpu_times[cpu_times.len() - times.len()..].to_vec();
    cpu.sort_by(f64::total_cmp);
    let median_cpu = cpu[cpu.len() / 2];
    let breakdown = if a.no_breakdown { Vec::new() } else { trainer.profile()? };
    let nodes = match a.per_node {
        Some(_) => trainer.profile_nodes(3)?,
        None => Vec::new(),
    };
    let rss = peak_rss();
    let total: f64 = breakdown.iter().map(|b| b.1).sum();
    if a.json {
        let kernels: Vec<_> = breakdown
            .iter()
            .map(|(k, s, f)| serde_json::json!({"kind": k, "seconds": s, "share": s / total, "gflops": f / s / 1e9}))
            .collect();
        let out = serde_json::json!({
            "workload": a.workload, "arch": arch, "batch": batch, "image_size": size, "device": gpu.describe(),
            "parameters": params, "first_step_s": first, "startup_s": {"device_and_model": before_build, "build": build, "first_step": first_step}, "pipelines": gpu.pipeline_count(), "dispatches_per_step": trainer.dispatch_count(), "median_step_s": median, "steps_s": times,
            "accumulate": a.accumulate, "devices": trainer.replicas(), "shares": trainer.shares(), "exchange_s_per_step": exchange,
            "median_step_cpu_s": median_cpu, "images_per_s": batch as f64 / median, "device_memory_bytes": memory.total(),
            "memory": memory, "peak_rss_bytes": rss, "kernels": kernels,
            "pipeline_labels": gpu.pipeline_labels(),
        });
        let mut out = out;
        if a.per_node.is_some() {
            out["nodes"] = nodes
                .iter()
                .map(|n| serde_json::json!({"name": n.name, "kind": n.kind, "op": n.op, "seconds": n.seconds, "flops": n.flops}))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("| metric | value |\n| --- | --- |");
    println!("| workload | {} ({arch}, batch {batch}, {size}×{size}) |", a.workload);
    println!("| first finished step (incl. compilation) | {first:.2} s |");
    println!(
        "| of which: device and model / plan, tune, build, precompile / first step | {before_build:.2} / {build:.2} / {first_step:.2} s |"
    );
    println!("| pipelines compiled | {} |", gpu.pipeline_count());
    println!("| median step ({} steps) | {median:.3} s |", times.len());
    println!("| median step CPU time (all threads) | {median_cpu:.3} s |");
    println!("| images/s | {:.1} |", batch as f64 / median);
    if a.accumulate > 1 {
        println!("| micro-batches per step | {} of {} images |", a.accumulate, batch / a.accumulate);
    }
    if trainer.replicas() > 1 {
        println!("| devices (images per step each) | {} ({:?}) |", trainer.replicas(), trainer.shares());
        println!("| gradient exchange per step | {:.3} s ({:.1}%) |", exchange, 100.0 * exchange / median);
    }
    println!("| device memory (planner) | {} |", mib(memory.total()));
    println!("| peak RSS | {} |", rss.map(mib).unwrap_or_else(|| "unknown".into()));
    if !breakdown.is_empty() {
        println!("\n| kernel | time | share | GFLOP/s |\n| --- | --- | --- | --- |");
        for (k, s, f) in &breakdown {
            let gf = if *f > 0.0 { format!("{:.1}", f / s / 1e9) } else { "-".into() };
            println!("| {k} | {:.1} ms | {:.1}% | {gf} |", s * 1e3, 100.0 * s / total);
        }
        println!("(each kernel family timed in submissions of its own: {:.3} s in all)", total);
    }
    if let Some(count) = a.per_node {
        print_nodes(&nodes, count);
    }
    if a.list_pipelines {
        println!("\n| compute pipeline (shader::entry constants) |\n| --- |");
        for l in gpu.pipeline_labels() {
            println!("| {l} |");
        }
    }
    Ok(())
}

/// User + system CPU time of this process (all threads, lavapipe's included), from /proc; 0
/// where unknown.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The `count` slowest nodes, then the time per convolution kind and shape (summed over the
/// nodes that share it: a dense block's 3×3 layers all have one shape).
fn print_nodes(nodes: &[NodeTime], count: usize) {
    let total: f64 = nodes.iter().map(|n| n.seconds).sum();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| nodes[b].seconds.total_cmp(&nodes[a].seconds));
    let gf = |s: f64, f: f64| if f > 0.0 { format!("{:.1}", f / s / 1e9) } else { "-".into() };
    println!("\n| node | op and inputs | time | share | GFLOP/s |\n| --- | --- | --- | --- | --- |");
    for &i in order.iter().take(count) {
        let n = &nodes[i];
        let (s, f) = (n.seconds, n.flops);
        println!("| {} | {} | {:.2} ms | {:.1}% | {} |", n.name, n.op, s * 1e3, 100.0 * s / total, gf(s, f));
    }
    let mut by_shape: Vec<(String, usize, f64, f64)> = Vec::new();
    for n in nodes.iter().filter(|n| n.kind.starts_with("conv")) {
        let key = format!("{}: {}", n.kind, n.op);
        match by_shape.iter_mut().find(|e| e.0 == key) {
            Some(e) => {
                e.1 += 1;
                e.2 += n.seconds;
                e.3 += n.flops;
            }
            None => by_shape.push((key, 1, n.seconds, n.flops)),
        }
    }
    by_shape.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("\n| convolution kind and shape | nodes | time | share | GFLOP/s |\n| --- | --- | --- | --- | --- |");
    for (key, count, s, f) in &by_shape {
        println!("| {key} | {count} | {:.2} ms | {:.1}% | {} |", s * 1e3, 100.0 * s / total, gf(*s, *f));
    }
    println!("(each node timed in a submission of its own, best of 3: {:.3} s in all)", total);
}
