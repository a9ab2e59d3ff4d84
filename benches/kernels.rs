//! Kernel benchmarks: GFLOP/s of the WGSL kernels next to the CPU's own SGEMM measured in the
//! same run (so the ratio means something on a shared machine).
//!
//! `cargo bench --bench kernels` (criterion, small sample counts) ends with a plain table, one
//! line per benchmark. `TAILOR_BENCH_VARIANTS=1` also times the GEMM tile variants,
//! `TAILOR_BENCH_W1=1` every convolution shape of the W1 workload.
//! To add a kernel: build its `Vec<Dispatch>` once and call [`Bench::gpu`] with its flop count.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tailor::gpu::{Dispatch, Gpu};
use tailor::ops::batchnorm::{self as bn, BnShape};
use tailor::ops::conv::{self, Conv2dShape, Pass};
use tailor::ops::gemm::{self, GemmConfig, GemmShape};
use tailor::ops::tune;
use tailor::ops::Act;

const CPU_THREADS: &str = "2";

struct Row {
    name: String,
    ms: f64,
    gflops: f64,
    cpu_gflops: f64,
}

/// User + system CPU time of this process (all threads, lavapipe's included), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

struct Bench {
    crit: Criterion,
    /// false: plain timings only for the next measurements (the long tail of conv shapes).
    use_criterion: bool,
    gpu: std::sync::Arc<Gpu>,
    table: Vec<Row>,
}

impl Bench {
    /// Times `dispatches` replayed `reps` times in one submission; criterion reports
    /// elements/s = flop/s, and the table gets a manually timed GFLOP/s.
    fn gpu(&mut self, name: &str, dispatches: &[Dispatch], flops: f64) {
        self.gpu_reps(name, dispatches, flops, reps_for(flops));
    }

    /// [`Bench::gpu`] with `reps` replays per submission.
    fn gpu_reps(&mut self, name: &str, dispatches: &[Dispatch], flops: f64, reps: usize) {
        let gpu = self.gpu.clone();
        let run = |n: usize| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            for _ in 0..n {
                gpu.record(&mut enc, dispatches);
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait().unwrap();
        };
        run(1);
        self.measure(name, flops, reps, run);
    }

    fn cpu(&mut self, name: &str, flops: f64, f: impl FnMut()) {
        let mut f = f;
        f();
        self.measure(name, flops, 1, |n| (0..n).for_each(|_| f()));
    }

    /// Criterion over one call of `run(reps)`, then a plain timing of a few calls for the table.
    fn measure(&mut self, name: &str, flops: f64, reps: usize, mut run: impl FnMut(usize)) {
        if !quick() && self.use_criterion {
            let mut group = self.crit.benchmark_group("kernels");
            group.throughput(Throughput::Elements((flops * reps as f64) as u64));
            group.bench_function(name, |b| b.iter(|| run(reps)));
            group.finish();
        }
        let calls = if quick() { 2 } else { 5 };
        let (t, cpu0) = (Instant::now(), cpu_seconds());
        for _ in 0..calls {
            run(reps);
        }
        let runs = (calls * reps) as f64;
        let secs = t.elapsed().as_secs_f64() / runs;
        let cpu = (cpu_seconds() - cpu0) / runs;
        self.table.push(Row {
            name: name.to_string(),
            ms: secs * 1e3,
            gflops: flops / secs / 1e9,
            cpu_gflops: flops / cpu / 1e9,
        });
    }

    fn print_table(&self) {
        println!("\n{:<44} {:>10} {:>10} {:>16}", "benchmark", "ms/run", "GFLOP/s", "GFLOP/cpu-second");
        for r in &self.table {
            println!("{:<44} {:>10.3} {:>10.2} {:>16.2}", r.name, r.ms, r.gflops, r.cpu_gflops);
        }
        println!("(GFLOP per CPU-second of this process: on a machine shared with other jobs it is the fairer");
        println!(" comparison; times {CPU_THREADS} cores it estimates the GFLOP/s of an idle machine)");
    }
}

/// Enough replays per submission that one sample is about 0.1 s of work at 10 GFLOP/s.
fn reps_for(flops: f64) -> usize {
    ((1e9 / flops) as usize).clamp(1, 1000)
}

/// `TAILOR_BENCH_QUICK=1`: only the plain timings (for tuning runs).
fn quick() -> bool {
    std::env::var("TAILOR_BENCH_QUICK").is_ok_and(|s| s == "1")
}

fn filled(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}

fn cpu_sgemm(b: &mut Bench, n: usize) {
    let (x, y) = (filled(n * n, 1), filled(n * n, 2));
    let mut z = vec![0.0f32; n * n];
    let flops = 2.0 * (n * n * n) as f64;
    b.cpu(&format!("cpu sgemm {n}^3 ({CPU_THREADS} threads)"), flops, || unsafe {
        matrixmultiply::sgemm(
            n,
            n,
            n,
            1.0,
            x.as_ptr(),
            n as isize,
            1,
            y.as_ptr(),
            n as isize,
            1,
            0.0,
            z.as_mut_ptr(),
            n as isize,
            1,
        )
    });
}

fn gpu_gemm(b: &mut Bench, name: &str, shape: &GemmShape, cfg: &GemmConfig) {
    let g = b.gpu.clone();
    let a = g.upload("a", &filled(shape.a_len(), 1)).unwrap();
    let bb = g.upload("b", &filled(shape.b_len(), 2)).unwrap();
    let c = g.zeros("c", shape.c_len()).unwrap();
    let d = gemm::gemm_with(&g, shape, &a, &bb, &c, false, 1.0, cfg).unwrap();
    b.gpu(name, &d, shape.flops());
}

fn variants() -> Vec<GemmConfig> {
    let mut v = vec![GemmConfig::default()];
    if std::env::var("TAILOR_BENCH_VARIANTS").is_ok_and(|s| s == "1") {
        for (wg, tm, tn, vec4) in [
            (64, 16, 4, false),
            (64, 8, 4, true),
            (64, 8, 8, true),
            (64, 16, 8, true),
            (32, 16, 4, true),
            (128, 16, 4, true),
        ] {
            v.push(GemmConfig { wg, tm, tn, vec4 });
        }
    }
    v
}

/// Every distinct convolution of torchvision's DenseNet-121 at batch `n` (224×224 input).
fn densenet121_convs(n: usize) -> Vec<(String, Conv2dShape)> {
    let conv = |c_in, h, c_out, k, stride, pad| Conv2dShape { n, c_in, h, w: h, c_out, kh: k, kw: k, stride, pad };
    let mut v = vec![("stem 7x7/2 3->64 @224".to_string(), conv(3, 224, 64, 7, 2, 3))];
    let (mut c, mut h) = (64, 56);
    for (b, layers) in [6usize, 12, 24, 16].into_iter().enumerate() {
        for l in 0..layers {
            let cin = c + 32 * l;
            v.push((format!("b{} 1x1 {cin}->128 @{h}", b + 1), conv(cin, h, 128, 1, 1, 0)));
        }
        v.push((format!("b{} 3x3 128->32 @{h}", b + 1), conv(128, h, 32, 3, 1, 1)));
        c += 32 * layers;
        if b < 3 {
            v.push((format!("t{} 1x1 {c}->{} @{h}", b + 1, c / 2), conv(c, h, c / 2, 1, 1, 0)));
            c /= 2;
            h /= 2;
        }
    }
    v
}

/// Every distinct convolution of W1 (DenseNet-BC k=12, blocks 6,6,6, bottleneck 48, compression
/// 0.5) at batch `n`, 32×32 input: narrow shapes, 12-channel 3×3s and short 1×1 reductions.
fn w1_convs(n: usize) -> Vec<(String, Conv2dShape)> {
    let conv = |c_in, h, c_out, k, pad| Conv2dShape { n, c_in, h, w: h, c_out, kh: k, kw: k, stride: 1, pad };
    let mut v = vec![("w1 stem 3x3 3->24 @32".to_string(), conv(3, 32, 24, 3, 1))];
    let (mut c, mut h) = (24, 32);
    for b in 0..3 {
        for l in 0..6 {
            let cin = c + 12 * l;
            v.push((format!("w1 b{} 1x1 {cin}->48 @{h}", b + 1), conv(cin, h, 48, 1, 0)));
        }
        v.push((format!("w1 b{} 3x3 48->12 @{h}", b + 1), conv(48, h, 12, 3, 1)));
        c += 72;
        if b < 2 {
            v.push((format!("w1 t{} 1x1 {c}->{} @{h}", b + 1, c / 2), conv(c, h, c / 2, 1, 0)));
            c /= 2;
            h /= 2;
        }
    }
    v
}

/// Forward and both backwards of one convolution shape.
fn gpu_conv(b: &mut Bench, name: &str, s: &Conv2dShape) {
    let g = b.gpu.clone();
    let buf = |len: usize, seed: u32| g.upload("bench", &filled(len, seed)).unwrap();
    let (x, w, dy) = (buf(s.x_len(), 1), buf(s.weight_len(), 2), buf(s.y_len(), 3));
    let (y, dx, dw) = (buf(s.y_len(), 4), buf(s.x_len(), 5), buf(s.weight_len(), 6));
    let scratch = g.zeros("scratch", conv::backward_weight_scratch_len(s)).unwrap();
    let whole = |bf, c| Act::whole(bf, c);
    // The executor's tiles: tuned (or cached) under `cargo bench`, the heuristic's otherwise.
    let tiles = tune::table(&g, [Pass::Forward, Pass::BackwardData, Pass::BackwardWeight].map(|p| (p, *s)));
    let (tf, td, tw) =
        (tiles.get(Pass::Forward, s), tiles.get(Pass::BackwardData, s), tiles.get(Pass::BackwardWeight, s));
    let fwd = conv::forward_tiled(&g, s, whole(&x, s.c_in), &w, None, whole(&y, s.c_out), tf).unwrap();
    let bwd_d = conv::backward_data_tiled(&g, s, whole(&dy, s.c_out), &w, whole(&dx, s.c_in), false, td).unwrap();
    let bwd_w =
        conv::backward_weight_tiled(&g, s, whole(&x, s.c_in), whole(&dy, s.c_out), &dw, None, &scratch, tw).unwrap();
    b.gpu(&format!("conv fwd   {name}"), &fwd, s.flops());
    b.gpu(&format!("conv bwd-d {name}"), &bwd_d, s.flops());
    b.gpu(&format!("conv bwd-w {name}"), &bwd_w, s.flops());
}

/// Batch norm shapes of W1 (DenseNet-BC k=12, batch 64 at 32²/16²/8²) and W2 (DenseNet-121, batch
/// 8 at 56²..7²): training forward, backward (ReLU, accumulating into a channel slice, as a dense
/// layer's BN does) and recompute. The rate column is elements (n·c·h·w) per second, not flops.
fn bn_shapes() -> Vec<(String, BnShape, usize)> {
    let mut v = Vec::new();
    for (n, c, h, tot) in [
        (64, 48, 32, 96),
        (64, 96, 16, 192),
        (64, 96, 8, 132),
        (8, 128, 56, 256),
        (8, 256, 28, 512),
        (8, 512, 14, 1024),
        (8, 512, 7, 1024),
    ] {
        v.push((format!("{n}x{c}x{h}x{h} of {tot}"), BnShape::new(n, c, h, h, true), tot));
    }
    v
}

fn gpu_bn(b: &mut Bench, name: &str, s: &BnShape, tot: usize) {
    let g = b.gpu.clone();
    let buf = |len: usize, seed: u32| g.upload("bench", &filled(len, seed)).unwrap();
    let big = s.n * tot * s.h * s.w;
    let (x, dy, y, dx) = (buf(big, 1), buf(big, 2), buf(big, 3), buf(big, 4));
    let pc = |seed| buf(s.c, seed);
    let (gamma, beta, mean, invstd, rm, rv, dg, db) =
        (pc(5), pc(6), pc(7), g.upload("i", &vec![1.0f32; s.c]).unwrap(), pc(9), pc(10), pc(11), pc(12));
    let scratch = g.zeros("scratch", bn::forward_train_scratch_len(s).max(bn::backward_scratch_len(s)).max(1)).unwrap();
    let act = |bf| Act::slice(bf, tot - s.c, tot);
    let elems = (s.n * s.c * s.h * s.w) as f64;
    // About 0.1 s per submission, enough to time the small shapes.
    let reps = ((3e7 / elems) as usize).clamp(4, 100);
    let fwd = bn::forward_train(&g, s, act(&x), &gamma, &beta, act(&y), &mean, &invstd, &rm, &rv, &scratch).unwrap();
    b.gpu_reps(&format!("bn fwd   {name}"), &fwd, elems, reps);
    if fwd.len() == 2 {
        b.gpu_reps(&format!("bn fwdP  {name}"), &fwd[..1], elems, reps);
    }
    let bwd = bn::backward(&g, s, act(&x), act(&dy), &gamma, &beta, &mean, &invstd, act(&dx), &dg, &db, true, &scratch)
        .unwrap();
    b.gpu_reps(&format!("bn bwd   {name}"), &bwd, elems, reps);
    let rec = bn::normalize(&g, s, act(&x), &gamma, &beta, &mean, &invstd, act(&y)).unwrap();
    b.gpu_reps(&format!("bn recmp {name}"), &rec, elems, reps);
}

/// The triplet losses at B = 64, D = 128 (their flops: the two GEMMs, Gram matrix and gradient;
/// the distance, mining and coefficient passes are bandwidth-bound, batch-all's O(B³)).
fn gpu_triplet(b: &mut Bench) {
    use tailor::ops::embed::{self as em, EmbedLoss, EmbedLossBuffers, EmbedShape};
    let g = b.gpu.clone();
    let s = EmbedShape::new(64, 128).unwrap();
    let emb = g.upload("e", &filled(s.len(), 1)).unwrap();
    let labels: Vec<u32> = (0..64).map(|i| i / 4).collect(); // P = 16 labels × K = 4
    let targets = g.upload("labels", &labels).unwrap();
    let (grad, loss) = (g.zeros("grad", s.len()).unwrap(), g.zeros("loss", 1).unwrap());
    for (name, kind) in [
        ("triplet batch-hard B64 D128", EmbedLoss::TripletBatchHard { margin: 0.2 }),
        ("triplet batch-all  B64 D128", EmbedLoss::TripletBatchAll { margin: 0.2 }),
    ] {
        let scratch = g.zeros("scratch", em::embed_loss_scratch_len(kind, s)).unwrap();
        let bufs = EmbedLossBuffers {
            embeddings: (&emb).into(),
            targets: (&targets).into(),
            grad: (&grad).into(),
            loss: (&loss).into(),
            scratch: (&scratch).into(),
        };
        let d = em::embed_loss(&g, kind, s, bufs).unwrap();
        b.gpu_reps(name, &d, 4.0 * (s.batch * s.batch * s.dim) as f64, 20);
    }
}

fn main() {
    // matrixmultiply reads its thread count once, at the first call.
    std::env::set_var("MATMUL_NUM_THREADS", CPU_THREADS);
    std::env::set_var("RAYON_NUM_THREADS", CPU_THREADS);
    let gpu = Gpu::new().expect("no GPU adapter");
    eprintln!("benchmarking on {}", gpu.describe());
    let crit = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut b = Bench { crit, use_criterion: true, gpu, table: Vec::new() };
    // `cargo bench` passes --bench; under `cargo test` this binary is a quick smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    if !full {
        // A smoke run: heuristic conv tiles, nothing timed or cached.
        tailor::ops::tune::set_mode(tailor::ops::tune::Mode::Off);
    }
    // `TAILOR_BENCH_ONLY=bn` / `=embed`: the batch norm or the triplet loss rows only.
    if std::env::var("TAILOR_BENCH_ONLY").is_ok_and(|s| s == "bn") {
        for (name, s, tot) in bn_shapes() {
            gpu_bn(&mut b, &name, &s, tot);
        }
        b.print_table();
        return;
    }
    if std::env::var("TAILOR_BENCH_ONLY").is_ok_and(|s| s == "embed") {
        gpu_triplet(&mut b);
        b.print_table();
        return;
    }
    let n = std::env::var("TAILOR_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    cpu_sgemm(&mut b, n);
    let shape = GemmShape::dense(n, n, n, 1).unwrap();
    for cfg in variants() {
        let name = format!("gpu gemm {n}^3 wg{} {}x{}{}", cfg.wg, cfg.tm, cfg.tn, if cfg.vec4 { " vec4" } else { "" });
        gpu_gemm(&mut b, &name, &shape, &cfg);
    }
    let convs = densenet121_convs(8);
    let representative = ["stem", "b1 1x1 64->128", "b1 3x3", "t1 ", "b3 1x1 512->128", "b4 3x3"];
    for (name, s) in &convs {
        b.use_criterion = representative.iter().any(|r| name.starts_with(r));
        if full || name.starts_with("b1 3x3") {
            gpu_conv(&mut b, name, s);
        }
    }
    // TAILOR_BENCH_W1=1: W1's shapes too (plain timings).
    if std::env::var("TAILOR_BENCH_W1").is_ok_and(|s| s == "1") {
        b.use_criterion = false;
        for (name, s) in &w1_convs(64) {
            gpu_conv(&mut b, name, s);
        }
    }
    b.use_criterion = true;
    for (name, s, tot) in bn_shapes() {
        gpu_bn(&mut b, &name, &s, tot);
    }
    gpu_triplet(&mut b);
    cpu_sgemm(&mut b, n);
    b.crit.final_summary();
    b.print_table();
}
