//! Convolution tile sizes chosen per shape and per device: a few candidates timed once on the
//! device, the fastest cached on disk.
//!
//! The convolution kernels' tile and workgroup sizes are pipeline constants ([`Tiles`]). Which is
//! fastest depends on the shape (a 3×3 with 12 output channels wants 12-row tiles, a
//! backward-weight GEMM with 60 columns narrow ones) and on the device, so for each (pass, shape)
//! of a step, [`tiles`] times up to [`MAX_CANDIDATES`] candidates on temporary buffers
//! (nothing the step computes is touched), keeps the fastest and stores it in
//! `$XDG_CACHE_HOME/tailor/tiles.json` (else `~/.cache/tailor/tiles.json`; `TAILOR_TUNE_CACHE`
//! names another file), keyed by adapter (name, driver, backend) and shape. Later runs read it
//! and time nothing.
//!
//! Tuning is bounded: candidates are timed on a copy of the shape with fewer images (about
//! [`PROXY_FLOPS`] of work), shapes under [`MIN_FLOPS`] keep the heuristic, and once a process
//! has spent `TAILOR_TUNE_BUDGET` seconds (default 2) tuning, the remaining shapes keep the
//! heuristic for this run (uncached, so a later run tunes them). `TAILOR_TUNE=off` (or
//! [`set_mode`]) uses the heuristic everywhere and neither reads nor writes the cache. By
//! default ([`Mode::Auto`]) nothing is tuned on lavapipe, where each candidate costs seconds of
//! LLVM on a cold machine; `TAILOR_TUNE=on` tunes there too.
//!
//! The choice never changes results: every tile shape sums each output's terms in the same
//! order, and the backward-weight split of the reduction depends on the shape only.
//!
//! Tuning is a phase of its own, before lowering: the executor lists every (pass, shape) of
//! its graph and calls [`table`] once, on one thread, which does all the cache reading, timing
//! and writing; lowering then only looks tiles up in the [`TileTable`] it returns (no lock,
//! no timing, no environment, no files). The dependency goes one way: this module builds its
//! candidates' dispatches with `ops::conv`'s `*_tiled` builders, which take tiles as
//! arguments, and `ops::conv` knows nothing of tuning.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conv::{self, fit_tm, fit_wg, Conv2dShape, TileTable, Tiles};
use super::Act;
use crate::error::Result;
use crate::gpu::{shaders, Dispatch, Gpu};

pub use super::conv::Pass;

/// The pass's name in cache keys.
fn pass_name(pass: Pass) -> &'static str {
    match pass {
        Pass::Forward => "fwd",
        Pass::BackwardData => "bwd-data",
        Pass::BackwardWeight => "bwd-weight",
    }
}

/// Whether [`tiles`] times candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The heuristic choice, no timing, no cache (deterministic runs, tests).
    Off,
    /// Cached choices; shapes not in the cache are timed (within the budget) and added.
    On,
    /// On, except on drivers that compile each pipeline at its first dispatch (lavapipe): there
    /// every candidate is seconds of LLVM on a cold machine, more than tuning wins, and the
    /// heuristic tiles were measured on lavapipe in the first place.
    Auto,
}

/// At most this many candidates are timed per (pass, shape): each new tile shape is a pipeline
/// to compile (about 0.1 s on lavapipe).
pub const MAX_CANDIDATES: usize = 4;
/// Work of the proxy shape the candidates are timed on, in flops.
pub const PROXY_FLOPS: f64 = 60e6;
/// Shapes with less work than this keep the heuristic: a wrong choice costs little there.
pub const MIN_FLOPS: f64 = 20e6;
const DEFAULT_BUDGET_S: f64 = 2.0;
/// Timed runs per candidate (after one warm-up); the best counts.
const ROUNDS: usize = 3;
/// Bumped when the cache format changes; entries also carry a hash of the kernels' source.
const FORMAT: u32 = 1;

static MODE: AtomicU8 = AtomicU8::new(0); // 0: read TAILOR_TUNE, 1: off, 2: on, 3: auto
static LOOKUPS: AtomicU64 = AtomicU64::new(0);

/// Overrides `TAILOR_TUNE` for this process.
pub fn set_mode(m: Mode) {
    let v = match m {
        Mode::Off => 1,
        Mode::On => 2,
        Mode::Auto => 3,
    };
    MODE.store(v, Ordering::Relaxed);
}

/// The mode in force: [`set_mode`]'s, else `TAILOR_TUNE` (`off`, `0`, `false` or `no`: off;
/// `on`, `1`, `true` or `yes`: on), else auto.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Off,
        2 => Mode::On,
        3 => Mode::Auto,
        _ => match std::env::var("TAILOR_TUNE").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => Mode::Off,
            Ok(v) if matches!(v.as_str(), "on" | "1" | "true" | "yes") => Mode::On,
            _ => Mode::Auto,
        },
    }
}

/// Whether [`tiles`] tunes on `gpu` (see [`Mode::Auto`]).
pub fn tunes_on(gpu: &Gpu) -> bool {
    match mode() {
        Mode::Off => false,
        Mode::On => true,
        Mode::Auto => !gpu.compiles_at_first_dispatch(),
    }
}

/// The heuristic tiles of a pass (what [`Mode::Off`] uses): [`Tiles::heuristic`].
pub fn heuristic(pass: Pass, s: &Conv2dShape) -> Tiles {
    Tiles::heuristic(pass, s)
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
        if !v.contains(&t) && valid(pass, s, t) && v.len() < MAX_CANDIDATES {
            v.push(t);
        }
    };
    match pass {
        Pass::Forward | Pass::BackwardData if h.tn == 8 => {
            // forward_3x3_v8 / backward_data_3x3_v8 (8 pixels per lane), and 4 per lane.
            push(Tiles { wg: 16, ..h });
            push(Tiles { wg: 32, tm: fit_tm(rows, 4), tn: 4 });
        }
        Pass::Forward | Pass::BackwardData => {
            push(Tiles { wg: 16, tm: h.tm, tn: 2 });
            push(Tiles { wg: 64, tm: fit_tm(rows, 4), tn: 4 });
        }
        Pass::BackwardWeight if conv::row_window_backward_weight(s) => {
            // backward_weight_3x3: other workgroup widths and tile heights (TN is unused).
            push(Tiles { wg: if h.wg == 32 { 16 } else { 32 }, ..h });
            push(Tiles { tm: if h.tm > 8 { 8 } else { rows.min(16) as u32 }, ..h });
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

/// Whether the kernels of `pass` on `s` take tiles `t`.
pub fn valid(pass: Pass, s: &Conv2dShape, t: Tiles) -> bool {
    t.check_pass(pass, s).is_ok()
}

/// The tuning phase: the tiles of every (pass, shape) in `passes` on this device, each
/// [`tiles`]' choice, one after the other on the calling thread. Never fails (see [`tiles`]).
pub fn table(gpu: &Gpu, passes: impl IntoIterator<Item = (Pass, Conv2dShape)>) -> TileTable {
    let mut table = TileTable::new();
    for (pass, s) in passes {
        // Only tiles the kernels refuse are refused; the table then gives the heuristic, which
        // is what `tiles` chose (it never returns other invalid tiles), and lowering reports
        // the error with the node's name.
        let _ = table.insert(pass, &s, tiles(gpu, pass, &s));
    }
    table
}

/// How many times [`tiles`] has been asked for a (pass, shape) in this process: a test can
/// check that building a step from a given [`TileTable`] consults the tuner for nothing.
pub fn lookups() -> u64 {
    LOOKUPS.load(Ordering::Relaxed)
}

/// The tiles for `pass` on shape `s` on this device: cached, tuned now, or the heuristic.
/// Never fails: anything that goes wrong while tuning falls back to the heuristic.
pub fn tiles(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> Tiles {
    LOOKUPS.fetch_add(1, Ordering::Relaxed);
    let h = heuristic(pass, s);
    // (Where a pass runs as the GEMM kernel, conv tiles do not matter.)
    let gemm = match pass {
        Pass::BackwardWeight => conv::pointwise_gemm_weight(s),
        Pass::Forward | Pass::BackwardData => conv::pointwise_gemm(s),
    };
    if !tunes_on(gpu) || gemm || s.validate().is_err() || s.flops() < MIN_FLOPS {
        return h;
    }
    let key = entry_key(gpu, pass, s);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.loaded {
        *cache = Cache::load(cache_path());
    }
    if let Some(t) = cache.entries.get(&key).and_then(|e| e.tiles(pass, s)) {
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

/// Seconds of tuning per process (`TAILOR_TUNE_BUDGET`, default 2).
fn budget() -> Duration {
    let s = std::env::var("TAILOR_TUNE_BUDGET").ok().and_then(|v| v.trim().parse::<f64>().ok());
    Duration::from_secs_f64(s.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(DEFAULT_BUDGET_S))
}

/// Times every candidate on a proxy of `s` and returns the fastest; the heuristic unless another
/// beats it by 10% (timings on a shared machine are noisy, and every other choice is one more
/// pipeline to compile at start-up). None if nothing could be timed.
fn tune(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> Option<Tiles> {
    let cands = candidates(pass, s);
    if cands.len() < 2 {
        return cands.first().copied();
    }
    let proxy = proxy(s);
    let bufs = Buffers::new(gpu, &proxy).ok()?;
    // Build every candidate, compile them (in parallel where the driver compiles at first
    // dispatch), warm them, then time them in turns, so that a burst of other work on a shared
    // machine hits them all alike; each keeps its best time.
    let mut runs: Vec<(usize, Vec<Dispatch>, f64)> = Vec::new();
    for (i, &t) in cands.iter().enumerate() {
        if let Ok(d) = build(gpu, pass, &proxy, &bufs, t) {
            runs.push((i, d, f64::INFINITY));
        }
    }
    gpu.precompile(runs.iter().flat_map(|r| r.1.iter()));
    runs.retain(|r| gpu.run(&r.1).is_ok());
    for _ in 0..ROUNDS {
        for (_, d, best) in runs.iter_mut() {
            let start = Instant::now();
            if gpu.run(d).is_ok() {
                *best = best.min(start.elapsed().as_secs_f64());
            }
        }
    }
    let (i, _, secs) = runs.iter().filter(|r| r.2.is_finite()).min_by(|a, b| a.2.total_cmp(&b.2))?;
    match runs.iter().find(|r| r.0 == 0) {
        Some((_, _, h)) if *secs > 0.9 * h => Some(cands[0]),
        _ => Some(cands[*i]),
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

/// The cache key: adapter, pass and the full shape.
fn entry_key(gpu: &Gpu, pass: Pass, s: &Conv2dShape) -> String {
    let i = &gpu.info;
    format!(
        "{} | {} | {} | {:?} | {} n{} c{} {}x{} -> {} k{}x{} s{} p{}",
        i.name,
        i.driver,
        i.driver_info,
        i.backend,
        pass_name(pass),
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
    fn tiles(self, pass: Pass, s: &Conv2dShape) -> Option<Tiles> {
        let t = Tiles { wg: self.0, tm: self.1, tn: self.2 };
        valid(pass, s, t).then_some(t)
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
    fn load(path: Option<PathBuf>) -> Cache {
        let mut c = Cache { loaded: true, path, entries: BTreeMap::new(), spent: Duration::ZERO };
        let Some(text) = c.path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else { return c };
        if let Ok(f) = serde_json::from_str::<CacheFile>(&text) {
            if f.format == FORMAT && f.kernels == kernels_hash() {
                c.entries = f.entries;
            }
        }
        c
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tailor-tune-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("tailor").join("tiles.json")
    }

    #[test]
    fn cache_round_trips_and_ignores_bad_files() {
        let path = temp("roundtrip");
        let s3 = Conv2dShape { n: 1, c_in: 48, h: 8, w: 8, c_out: 12, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (fwd, bwd) = (Pass::Forward, Pass::BackwardData);
        let mut c = Cache::load(Some(path.clone()));
        assert!(c.entries.is_empty());
        c.entries.insert("k".into(), Entry(32, 12, 2));
        c.save(); // creates the folder
        let back = Cache::load(Some(path.clone()));
        assert_eq!(back.entries.get("k").and_then(|e| e.tiles(fwd, &s3)), Some(Tiles { wg: 32, tm: 12, tn: 2 }));
        // Corrupt, truncated, from another format or other kernels: ignored, then rewritten.
        for bad in [
            "{ not json".to_string(),
            String::new(),
            format!(
                r#"{{"format": {}, "kernels": "{}", "entries": {{"k": [32, 12, 2]}}}}"#,
                FORMAT + 1,
                kernels_hash()
            ),
            format!(r#"{{"format": {FORMAT}, "kernels": "0", "entries": {{"k": [32, 12, 2]}}}}"#),
        ] {
            std::fs::write(&path, bad).unwrap();
            let mut c = Cache::load(Some(path.clone()));
            assert!(c.entries.is_empty());
            c.entries.insert("j".into(), Entry(16, 16, 4));
            c.save();
            assert_eq!(Cache::load(Some(path.clone())).entries.len(), 1);
        }
        // An entry with impossible tiles is not used.
        assert_eq!(Entry(12, 17, 2).tiles(fwd, &s3), None);
        assert_eq!(Entry(4, 8, 2).tiles(fwd, &s3), None);
        // 8 pixels per lane: only the forward and backward data of a 3x3 stride-1 pad-1 on
        // 4-aligned rows.
        assert_eq!(Entry(32, 16, 8).tiles(fwd, &s3), Some(Tiles { wg: 32, tm: 16, tn: 8 }));
        assert_eq!(Entry(32, 16, 8).tiles(fwd, &Conv2dShape { w: 7, ..s3 }), None);
        assert_eq!(Entry(32, 16, 8).tiles(Pass::BackwardWeight, &s3), None);
        assert_eq!(Entry(32, 16, 8).tiles(bwd, &s3), Some(Tiles { wg: 32, tm: 16, tn: 8 }));
        assert_eq!(Entry(32, 16, 8).tiles(bwd, &Conv2dShape { w: 7, ..s3 }), None);
        let _ = std::fs::remove_dir_all(path.parent().and_then(|p| p.parent()).unwrap());
    }

    /// The path every GPU takes by default, run on whatever adapter there is (lavapipe on CI):
    /// the candidates are built, timed and the fastest cached on disk; the next call reads the
    /// cache and times nothing. (No other test in this binary tunes, so the mode and the
    /// cache can be set here.)
    #[test]
    fn tuning_times_candidates_and_caches_the_choice() {
        let gpu = Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh");
        set_mode(Mode::On);
        let path = temp("tune");
        *CACHE.lock().unwrap() = Cache::load(Some(path.clone()));
        // A 3x3 stride-2 convolution: its weight gradient runs the generic kernel, whose
        // candidates are quick to compile.
        let s = Conv2dShape { n: 16, c_in: 32, h: 33, w: 33, c_out: 24, kh: 3, kw: 3, stride: 2, pad: 1 };
        let pass = Pass::BackwardWeight;
        assert!(s.flops() >= MIN_FLOPS && candidates(pass, &s).len() > 1);
        let t = tiles(&gpu, pass, &s);
        assert!(candidates(pass, &s).contains(&t), "{t:?}");
        let spent = CACHE.lock().unwrap().spent;
        assert!(spent > Duration::ZERO, "nothing was timed");
        let file = Cache::load(Some(path.clone()));
        let cached = file.entries.get(&entry_key(&gpu, pass, &s)).and_then(|e| e.tiles(pass, &s));
        assert_eq!(cached, Some(t), "the choice is on disk");
        assert_eq!(tiles(&gpu, pass, &s), t);
        assert_eq!(CACHE.lock().unwrap().spent, spent, "a cached choice is not timed again");
        // The tuning phase's table holds the same choice (and the heuristic for other shapes).
        let table = table(&gpu, [(pass, s)]);
        assert_eq!((table.len(), table.get(pass, &s)), (1, t));
        let other = Conv2dShape { c_out: 20, ..s };
        assert_eq!(table.get(pass, &other), heuristic(pass, &other));
        assert_eq!(CACHE.lock().unwrap().spent, spent);
        let _ = std::fs::remove_dir_all(path.parent().and_then(|p| p.parent()).unwrap());
    }

    #[test]
    fn candidates_are_valid_and_start_with_the_heuristic() {
        let shapes = [
            Conv2dShape { n: 64, c_in: 48, h: 32, w: 32, c_out: 12, kh: 3, kw: 3, stride: 1, pad: 1 },
            Conv2dShape { n: 64, c_in: 84, h: 32, w: 32, c_out: 48, kh: 1, kw: 1, stride: 1, pad: 0 },
            Conv2dShape { n: 8, c_in: 3, h: 224, w: 224, c_out: 64, kh: 7, kw: 7, stride: 2, pad: 3 },
            Conv2dShape { n: 1, c_in: 13, h: 7, w: 5, c_out: 76, kh: 1, kw: 1, stride: 1, pad: 0 },
        ];
        for s in &shapes {
            for pass in [Pass::Forward, Pass::BackwardData, Pass::BackwardWeight] {
                let c = candidates(pass, s);
                assert_eq!(c[0], heuristic(pass, s));
                assert!(c.len() <= MAX_CANDIDATES);
                assert!(c.iter().all(|&t| valid(pass, s, t)), "{pass:?} {s:?}: {c:?}");
            }
        }
        // c_out = 12: one 12-row tile instead of three quarters of a 16-row one, 8 pixels a lane.
        assert_eq!(heuristic(Pass::Forward, &shapes[0]), Tiles { wg: 32, tm: 12, tn: 8 });
        assert_eq!(proxy(&shapes[0]).n, 6);
    }
}
