//! Convolution tile sizes chosen per shape and per device: a few candidates timed once on the
//! device, the fastest cached on disk.
//!
//! The convolution kernels' tile and workgroup sizes are pipeline constants ([`Tiles`]). Which is
//! fastest depends on the shape (a 3×3 with 12 output channels wants 12-row tiles, a
//! backward-weight GEMM with 60 columns narrow ones) and on the device, so for each (pass, shape)
//! the executor meets, [`tiles`] times up to [`MAX_CANDIDATES`] candidates on temporary buffers
//! (nothing the step computes is touched), keeps the fastest and stores it in
//! `$XDG_CACHE_HOME/tailor/tiles.json` (else `~/.cache/tailor/tiles.json`; `TAILOR_TUNE_CACHE`
//! names another file), keyed by adapter (name, driver, backend) and shape. Later runs read it
//! and time nothing.
//!
//! Tuning is bounded: candidates are timed on a copy of the shape with fewer images (about
//! [`PROXY_FLOPS`] of work), shapes under [`MIN_FLOPS`] keep the heuristic, and once a process
//! has spent `TAILOR_TUNE_BUDGET` seconds (default 4) tuning, the remaining shapes keep the
//! heuristic for this run (uncached, so a later run tunes them). `TAILOR_TUNE=off` (or
//! [`set_mode`]) uses the heuristic everywhere and neither reads nor writes the cache.
//!
//! The choice never changes results: every tile shape sums each output's terms in the same
//! order, and the backward-weight split of the reduction depends on the shape only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conv::{self, fit_tm, fit_wg, Conv2dShape, Tiles};
use super::Act;
use crate::error::Result;
use crate::gpu::{shaders, Dispatch, Gpu};

/// The three kernels of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    Forward,
    BackwardData,
    BackwardWeight,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::BackwardData => "bwd-data",
            Pass::BackwardWeight => "bwd-weight",
        }
    }
}

/// Whether [`tiles`] times candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The heuristic choice, no timing, no cache (deterministic runs, tests).
    Off,
    /// Cached choices; shapes not in the cache are timed (within the budget) and added.
    On,
}

/// At most this many candidates are timed per (pass, shape): each new tile shape is a pipeline
/// to compile (about 0.1 s on lavapipe).
pub const MAX_CANDIDATES: usize = 4;
/// Work of the proxy shape the candidates are timed on, in flops.
pub const PROXY_FLOPS: f64 = 60e6;
/// Shapes with less work than this keep the heuristic: a wrong choice costs little there.
pub const MIN_FLOPS: f64 = 20e6;
const DEFAULT_BUDGET_S: f64 = 4.0;
/// Bumped when the cache format changes; entries also carry a hash of the kernels' source.
const FORMAT: u32 = 1;

static MODE: AtomicU8 = AtomicU8::new(0); // 0: read TAILOR_TUNE, 1: off, 2: on

/// Overrides `TAILOR_TUNE` for this process.
pub fn set_mode(m: Mode) {
    MODE.store(if m == Mode::Off { 1 } else { 2 }, Ordering::Relaxed);
}

/// The mode in force: [`set_mode`]'s, else `TAILOR_TUNE` (`off`, `0`, `false` or `no` turn
/// tuning off), else on.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Off,
        2 => Mode::On,
        _ => match std::env::var("TAILOR_TUNE").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => Mode::Off,
            _ => Mode::On,
        },
    }
}

/// The heuristic tiles of a pass (what [`Mode::Off`] uses).
pub fn heuristic(pass: Pass, s: &Conv2dShape) -> Tiles {
    match pass {
        Pass::Forward => Tiles::forward(s),
        Pass::BackwardData => Tiles::backward_data(s),
        Pass::BackwardWeight => Tiles::backward_weight(s),
    }
}

/// The candidates timed for a pass: the heuristic first, then a few neighbours (other column
/// widths, the other tile height), at most [`MAX_CANDIDATES`], all valid for the shape.
pub fn candidates(pass: Pass, s: &Conv2dShape) -> Vec<Tiles> {
    let h = heuristic(pass, s);
    let mut v = vec![h];
    let (rows, alt_tm) = match pass {
        Pass::Forward | Pass::BackwardWeight => (s.c_out, 16),
        Pass::BackwardData => (s.c_in, 16),
    };
    let mut push = |t: Tiles| {
        if !v.contains(&t) && t.check().is_ok() && v.len() < MAX_CANDIDATES {
            v.push(t);
        }
    };
    match pass {
        Pass::Forward | Pass::BackwardData => {
            let vec4 = s.is_pointwise() && (s.h * s.w) % 4 == 0;
            if vec4 {
                push(Tiles { wg: 16, tm: h.tm, tn: 4 });
                push(Tiles { wg: 32, tm: fit_tm(rows, 2), tn: 2 });
            } else {
                push(Tiles { wg: 16, tm: h.tm, tn: 2 });
                push(Tiles { wg: 64, tm: fit_tm(rows, 4), tn: 4 });
            }
        }
        Pass::BackwardWeight => {
            let cols = s.c_in * s.kh * s.kw;
            push(Tiles { wg: fit_wg(cols, 1), tm: h.tm, tn: 1 });
            push(Tiles { wg: fit_wg(cols, 4), tm: fit_tm(rows, 4), tn: 4 });
        }
    }
    // A full 16-row tile instead of a fitted one (fewer workgroups, more FMAs per load).
    if rows > 16 && h.tm != alt_tm {
        push(Tiles { tm: alt_tm, ..h });
    }
    v
}

/// The tiles for `pass` on shape `s` on this device: cached, tuned now, or the heuristic.
/// Never fails: anything that goes wrong while tuning falls back to the heuristic.
pub fn tiles(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> Tiles {
    let h = heuristic(pass, s);
    if mode() == Mode::Off || s.validate().is_err() || s.flops() < MIN_FLOPS {
        return h;
    }
    let key = entry_key(gpu, pass, s);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.loaded {
        cache.load();
    }
    if let Some(t) = cache.entries.get(&key).and_then(|e| e.tiles()) {
        return t;
    }
    if cache.spent >= budget() {
        return h;
    }
    let start = Instant::now();
    let choice = tune(gpu, pass, s);
    cache.spent += start.elapsed();
    match choice {
        Some(t) => {
            cache.entries.insert(key, Entry(t.wg, t.tm, t.tn));
            cache.save();
            t
        }
        None => h,
    }
}

/// Seconds of tuning per process (`TAILOR_TUNE_BUDGET`, default 4).
fn budget() -> Duration {
    let s = std::env::var("TAILOR_TUNE_BUDGET").ok().and_then(|v| v.trim().parse::<f64>().ok());
    Duration::from_secs_f64(s.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(DEFAULT_BUDGET_S))
}

/// Times every candidate on a proxy of `s` and returns the fastest; the heuristic unless another
/// beats it by 5% (timings on a shared machine are noisy). None if nothing could be timed.
fn tune(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> Option<Tiles> {
    let cands = candidates(pass, s);
    if cands.len() < 2 {
        return cands.first().copied();
    }
    let proxy = proxy(s);
    let bufs = Buffers::new(gpu, &proxy).ok()?;
    let mut best: Option<(Tiles, f64)> = None;
    let mut heuristic_time = None;
    for (i, &t) in cands.iter().enumerate() {
        let Ok(secs) = time(gpu, pass, &proxy, &bufs, t) else { continue };
        if i == 0 {
            heuristic_time = Some(secs);
        }
        if best.is_none_or(|(_, b)| secs < b) {
            best = Some((t, secs));
        }
    }
    let (t, secs) = best?;
    match heuristic_time {
        Some(h) if secs > 0.95 * h => Some(cands[0]),
        _ => Some(t),
    }
}

/// `s` with as few images as give about [`PROXY_FLOPS`] of work (at least one, at most all):
/// columns and channels, which the tiles are about, stay as they are.
fn proxy(s: &Conv2dShape) -> Conv2dShape {
    let per_image = s.flops() / s.n as f64;
    let n = ((PROXY_FLOPS / per_image).ceil() as usize).clamp(1, s.n);
    Conv2dShape { n, ..*s }
}

struct Buffers {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    w: wgpu::Buffer,
    dw: wgpu::Buffer,
    scratch: wgpu::Buffer,
}

impl Buffers {
    fn new(gpu: &Gpu, s: &Conv2dShape) -> Result<Buffers> {
        Ok(Buffers {
            x: gpu.zeros("tune x", s.x_len())?,
            y: gpu.zeros("tune y", s.y_len())?,
            w: gpu.zeros("tune w", s.weight_len())?,
            dw: gpu.zeros("tune dw", s.weight_len())?,
            scratch: gpu.zeros("tune scratch", conv::backward_weight_scratch_len(s))?,
        })
    }
}

/// The dispatches of `pass` with tiles `t` on the tuning buffers.
fn build(gpu: &Gpu, pass: Pass, s: &Conv2dShape, b: &Buffers, t: Tiles) -> Result<Vec<Dispatch>> {
    let (x, y) = (Act::whole(&b.x, s.c_in), Act::whole(&b.y, s.c_out));
    match pass {
        Pass::Forward => conv::forward_tiled(gpu, s, x, &b.w, None, y, t),
        Pass::BackwardData => conv::backward_data_tiled(gpu, s, y, &b.w, x, false, t),
        Pass::BackwardWeight => conv::backward_weight_tiled(gpu, s, x, y, &b.dw, None, &b.scratch, t),
    }
}

/// Seconds of one run: a warm-up, then the best of two.
fn time(gpu: &Gpu, pass: Pass, s: &Conv2dShape, b: &Buffers, t: Tiles) -> Result<f64> {
    let d = build(gpu, pass, s, b, t)?;
    gpu.run(&d)?;
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        let start = Instant::now();
        gpu.run(&d)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// The cache key: adapter, pass and the full shape.
fn entry_key(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> String {
    let i = &gpu.info;
    format!(
        "{} | {} | {} | {:?} | {} n{} c{} {}x{} -> {} k{}x{} s{} p{}",
        i.name,
        i.driver,
        i.driver_info,
        i.backend,
        pass.name(),
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.kh,
        s.kw,
        s.stride,
        s.pad
    )
}

/// A cached choice: (wg, tm, tn).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Entry(u32, u32, u32);

impl Entry {
    fn tiles(self) -> Option<Tiles> {
        let t = Tiles { wg: self.0, tm: self.1, tn: self.2 };
        t.check().ok().map(|_| t)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    format: u32,
    /// Hash of the convolution kernels' source: choices made for other kernels are dropped.
    kernels: String,
    entries: BTreeMap<String, Entry>,
}

struct Cache {
    loaded: bool,
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    spent: Duration,
}

static CACHE: Mutex<Cache> =
    Mutex::new(Cache { loaded: false, path: None, entries: BTreeMap::new(), spent: Duration::ZERO });

/// Where the cache lives: `TAILOR_TUNE_CACHE`, else `$XDG_CACHE_HOME/tailor/tiles.json`, else
/// `$HOME/.cache/tailor/tiles.json`; None if none of them is set.
pub fn cache_path() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("TAILOR_TUNE_CACHE") {
        return Some(p);
    }
    let dir = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))?;
    Some(dir.join("tailor").join("tiles.json"))
}

/// FNV-1a of the convolution shader's source, as hex.
fn kernels_hash() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in shaders::CONV.source.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

impl Cache {
    /// Reads the cache file; a missing, unreadable, corrupt or outdated one counts as empty
    /// (and is rewritten at the next save).
    fn load(&mut self) {
        self.loaded = true;
        self.path = cache_path();
        let Some(text) = self.path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else { return };
        if let Ok(f) = serde_json::from_str::<CacheFile>(&text) {
            if f.format == FORMAT && f.kernels == kernels_hash() {
                self.entries = f.entries;
            }
        }
    }

    /// Writes the cache atomically (a temporary file renamed over the old one); failures are
    /// ignored: the cache only saves time.
    fn save(&self) {
        let Some(path) = &self.path else { return };
        let f = CacheFile { format: FORMAT, kernels: kernels_hash(), entries: self.entries.clone() };
        let Ok(text) = serde_json::to_string_pretty(&f) else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
