//! Helpers shared by the kernel tests: one device, uploads, comparisons, finite differences.
#![allow(dead_code)]

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tailor::gpu::{Dispatch, Gpu};
pub use tailor::rng::Rng;

/// The device every test uses (lavapipe on CI), opened once per test binary.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        // Heuristic conv tiles (tests that want others name them): nothing is timed or cached.
        tailor::ops::tune::set_mode(tailor::ops::tune::Mode::Off);
        let g = Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
        eprintln!("kernel tests on {}", g.describe());
        g
    })
    .clone()
}

/// A second device that plans kernels as for a GPU (`Gpu::set_gpu_plans`), so that lavapipe
/// runs the workgroup shapes a real GPU gets.
pub fn gpu_planned() -> Arc<Gpu> {
    static PLANNED: OnceLock<Arc<Gpu>> = OnceLock::new();
    PLANNED
        .get_or_init(|| {
            let g = gpu();
            let p = Gpu::open(g.adapter.clone()).expect("a second device");
            p.set_gpu_plans(true);
            p
        })
        .clone()
}

/// A second device whose binding limit is lowered to `limit` bytes, to force batch chunks. The
/// guard keeps other tests from changing the limit while one uses it.
pub fn limited_gpu(limit: u64) -> MutexGuard<'static, Arc<Gpu>> {
    static LIMITED: OnceLock<Mutex<Arc<Gpu>>> = OnceLock::new();
    let m = LIMITED.get_or_init(|| Mutex::new(Gpu::new().expect("no GPU adapter")));
    let g = m.lock().unwrap_or_else(|e| e.into_inner());
    g.set_binding_limit(Some(limit));
    g
}

/// The batch chunks `tailor` cuts `n` images into on `g` (one image of each tensor is
/// `image_bytes[i]` bytes); asserts that there are 2 to 4 of them and that they are uneven.
pub fn cut(g: &Gpu, n: usize, image_bytes: &[u64]) -> Vec<Range<usize>> {
    let c = tailor::ops::batch_chunks(n, image_bytes, g.max_binding(), g.binding_alignment()).unwrap();
    assert!((2..=4).contains(&c.len()) && c[c.len() - 1].len() < c[0].len(), "chunks {c:?}");
    c
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Uploads f64 values as an f32 storage buffer.
pub fn up(g: &Gpu, v: &[f64]) -> wgpu::Buffer {
    g.upload("test", &f32s(v)).unwrap()
}

/// `parts` in one buffer as the parameter arena lays tensors out: each at a multiple of the
/// binding alignment, with junk before, between and after them. Returns the buffer and each
/// part's byte offset.
pub fn packed(g: &Gpu, parts: &[&[f64]]) -> (wgpu::Buffer, Vec<u64>) {
    let align = (g.binding_alignment() / 4).max(1) as usize;
    let mut all = vec![7.0; align];
    let mut offsets = Vec::new();
    for p in parts {
        offsets.push(all.len() as u64 * 4);
        all.extend_from_slice(p);
        all.resize(all.len().next_multiple_of(align) + align, -7.0);
    }
    (up(g, &all), offsets)
}

/// `len` f32 values of `buf` from byte `offset`.
pub fn read_at(g: &Gpu, buf: &wgpu::Buffer, offset: u64, len: usize) -> Vec<f64> {
    f64s(&g.read_at::<f32>(buf, offset, len).unwrap())
}

/// Runs the dispatches and reads `len` f32 values of `buf`.
pub fn run_read(g: &Gpu, d: &[Dispatch], buf: &wgpu::Buffer, len: usize) -> Vec<f64> {
    g.run(d).unwrap();
    read(g, buf, len)
}

pub fn read(g: &Gpu, buf: &wgpu::Buffer, len: usize) -> Vec<f64> {
    f64s(&g.read::<f32>(buf, len).unwrap())
}

/// Asserts |got - want| <= atol + rtol·|want| elementwise, and reports the worst element.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}[{i}] = {g} is not finite (reference {w})");
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!("{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol})", got[i], want[i]);
    }
}

/// Asserts closeness relative to the largest magnitude of the reference (for sums of many terms).
pub fn assert_close_scaled(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    assert_close(what, got, want, tol * scale, 0.0);
}

/// Central finite differences of a scalar function at `x`, in f64.
pub fn finite_diff(x: &[f64], eps: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + eps;
            let up = f(&x);
            x[i] = orig - eps;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

/// Σ a·b, the scalar that turns an output and an upstream gradient into a loss for
/// finite-difference checks: d/dx Σ dy·f(x) is what backward(dy) must return.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
