//! Kernel benchmarks: GFLOP/s of the WGSL kernels next to the CPU's own SGEMM measured in the
//! same run (so the ratio means something on a shared machine).
//!
//! `cargo bench --bench kernels` (criterion, small sample counts) ends with a plain table, one
//! line per benchmark. `TAILOR_BENCH_VARIANTS=1` also times the GEMM tile variants.
//! To add a kernel: build its `Vec<Dispatch>` once and call [`Bench::gpu`] with its flop count.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tailor::gpu::{Dispatch, Gpu};
use tailor::ops::gemm::{self, GemmConfig, GemmShape};

const CPU_THREADS: &str = "2";

struct Bench {
    crit: Criterion,
    gpu: std::sync::Arc<Gpu>,
    table: Vec<(String, f64, f64)>,
}

impl Bench {
    /// Times `dispatches` replayed `reps` times in one submission; criterion reports
    /// elements/s = flop/s, and the table gets a manually timed GFLOP/s.
    fn gpu(&mut self, name: &str, dispatches: &[Dispatch], flops: f64) {
        let reps = reps_for(flops);
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
        if !quick() {
            let mut group = self.crit.benchmark_group("kernels");
            group.throughput(Throughput::Elements((flops * reps as f64) as u64));
            group.bench_function(name, |b| b.iter(|| run(reps)));
            group.finish();
        }
        let calls = if quick() { 2 } else { 5 };
        let t = Instant::now();
        for _ in 0..calls {
            run(reps);
        }
        let secs = t.elapsed().as_secs_f64() / (calls * reps) as f64;
        self.table.push((name.to_string(), secs * 1e3, flops / secs / 1e9));
    }

    fn print_table(&self) {
        println!("\n{:<44} {:>12} {:>10}", "benchmark", "ms/run", "GFLOP/s");
        for (name, ms, gflops) in &self.table {
            println!("{name:<44} {ms:>12.3} {gflops:>10.2}");
        }
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
    let mut b = Bench { crit, gpu, table: Vec::new() };
    let n = std::env::var("TAILOR_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    cpu_sgemm(&mut b, n);
    let shape = GemmShape::dense(n, n, n, 1).unwrap();
    for cfg in variants() {
        let name = format!("gpu gemm {n}^3 wg{} {}x{}{}", cfg.wg, cfg.tm, cfg.tn, if cfg.vec4 { " vec4" } else { "" });
        gpu_gemm(&mut b, &name, &shape, &cfg);
    }
    cpu_sgemm(&mut b, n);
    b.crit.final_summary();
    b.print_table();
}
