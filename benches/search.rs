//! Nearest-neighbour search speed: queries/s of exact k-NN on the GPU (`ops::knn`), 1,000
//! queries against galleries of 10,000 and 100,000 random unit vectors (D = 128, k = 10), the
//! gallery uploaded once (as `GpuGallery`) and searched again and again. Before timing, a few
//! queries are checked against the CPU reference. `scripts/search_numpy.py` is numpy's brute
//! force on the same sizes.
//!
//! `cargo bench --bench search` (`TAILOR_BENCH_REPS`: timed searches per size, default 3). Under
//! `cargo test` (no `--bench`) it is a smoke run on small sizes.

use std::time::Instant;

use tailor::ops::knn::{self, GpuGallery, SearchOptions};
use tailor::rng::Rng;
use tailor::Gpu;

const DIM: usize = 128;
const K: usize = 10;

fn unit_vectors(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let row: Vec<f64> = (0..DIM).map(|_| rng.normal()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.extend(row.iter().map(|x| (x / norm) as f32));
    }
    v
}

/// User + system CPU seconds of this process (lavapipe's threads included), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (queries, sizes): (usize, &[usize]) = if bench { (1000, &[10_000, 100_000]) } else { (50, &[2_000]) };
    let reps: usize = std::env::var("TAILOR_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let gpu = Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
    println!("nearest-neighbour search on {}", gpu.describe());
    println!("load average before: {}", load_average());
    let mut rng = Rng::new(0);
    let opts = SearchOptions::default();
    for &g in sizes {
        let gallery = unit_vectors(&mut rng, g);
        let q = unit_vectors(&mut rng, queries);
        let t = Instant::now();
        let on_gpu = GpuGallery::new(&gpu, &gallery, DIM, None).unwrap();
        let upload = t.elapsed().as_secs_f64();
        let plan = knn::plan(&gpu, queries, g, DIM, K, &opts).unwrap();
        // The first search compiles the pipelines; its results are checked on a few queries.
        let t = Instant::now();
        let got = on_gpu.search(&gpu, &q, K, &opts).unwrap();
        let first = t.elapsed().as_secs_f64();
        let checked = 5;
        let want = knn::knn_ref(&q[..checked * DIM], &gallery, DIM, K, None, &opts).unwrap();
        for r in 0..checked {
            assert_eq!(
                got.indices_of(r),
                want.indices_of(r),
                "query {r}: the GPU's neighbours differ from the reference"
            );
            for (&d, &w) in got.distances_of(r).iter().zip(want.distances_of(r)) {
                assert!((d as f64 - w).abs() <= 1e-5 * w + 1e-6, "query {r}: distance {d} vs {w}");
            }
        }
        let mut times = Vec::new();
        let cpu0 = cpu_seconds();
        for _ in 0..reps {
            let t = Instant::now();
            std::hint::black_box(on_gpu.search(&gpu, &q, K, &opts).unwrap());
            times.push(t.elapsed().as_secs_f64());
        }
        let cpu = (cpu_seconds() - cpu0) / reps as f64;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{queries} queries x {g} gallery, D={DIM}, k={K}: {:.1} ms median of {reps} ({:.0} queries/s; min {:.1} ms, \
             max {:.1} ms), {:.2} CPU-s per search; first search {:.2} s, upload {:.2} s; {} chunks of {}; \
             {checked} queries match the CPU reference",
            median * 1e3,
            queries as f64 / median,
            times[0] * 1e3,
            times[times.len() - 1] * 1e3,
            cpu,
            first,
            upload,
            plan.chunks,
            plan.chunk,
        );
    }
    println!("load average after: {}", load_average());
}
