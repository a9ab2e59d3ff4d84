// Batch normalisation of NCHW f32 channel views (training and eval), with an optional fused ReLU.
//
// Layout: workgroup (wid.x = chunk, wid.y = channel). A channel's m = n·hw elements, in (image,
// pixel) order, are cut into units of 4 consecutive elements; a chunk is WG·steps() units
// (steps() ≤ batches·ITEMS per thread), each group of LANES threads owning a contiguous run of
// them (see `start`), and every per-channel value is a workgroup-uniform load. `*_v` entry points
// bind activations as vec4 (hw % 4 == 0: a unit never straddles two planes and is 16-byte
// aligned), `*_s` ones as scalars; on llvmpipe a vec4 load costs about what a scalar one does,
// so `_v` is ~4x faster. Each load or store whose address differs per lane is a loop over the
// lanes there, so the kernels count them: forward 1 + 2 per unit, recompute 2, backward 2 + 4
// (x, dy; x, dy, dx read, dx write).
//
// `*_fused`: one workgroup per channel reduces its units, then streams them again to apply (the
// second read mostly hits the cache). Otherwise `*_partial` writes one partial reduction per
// chunk to scratch, then `*_apply` re-combines the few partials of its channel (a short uniform
// loop) in every workgroup, and applies.
//
// A batch too large for one binding is bound in batch chunks (images n0..n1, one dispatch
// each): every chunk's `*_partial` writes its partials after those of the chunks before it
// (`part_base`), and every chunk's `*_apply` combines all `parts` of them; only the first chunk
// (`save`) writes the per-channel results. Partials carry their element count, so chunks of any
// size combine.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,          // n·hw, elements per channel
    x_off: u32,      // x view: channel offset and channels per image
    x_tot: u32,
    o_off: u32,      // output view (y or dx)
    o_tot: u32,
    dy_off: u32,
    dy_tot: u32,
    chunks: u32,     // chunks per channel
    accumulate: u32, // dx += result instead of dx = result
    step_img: u32,   // (4·LANES) / hw: how far one step of LANES units moves in (image, pixel)
    step_pix: u32,   // (4·LANES) % hw
    relu: u32,
    use_var: u32,    // normalize: stat_b holds a variance (eval) instead of invstd
    eps: f32,
    momentum: f32,
    batches: u32,    // batches per chunk
    one: f32,        // 1.0: see two_sum
    _pad4: u32,
    part_base: u32,  // partials of earlier batch chunks: this dispatch's first partial per channel
    parts: u32,      // partials per channel over every batch chunk
    save: u32,       // this dispatch writes the statistics, running statistics or dγ/dβ (first chunk)
    m_total: u32,    // elements per channel over every batch chunk
    steps: u32,      // units per thread and chunk: batches·ITEMS, or fewer when one chunk covers all
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;    // threads per workgroup, a power of two <= MAX_WG
override ITEMS: u32 = 4;   // units per thread and batch
override LANES: u32 = 8;  // threads that step together (llvmpipe's SIMD width), divides WG
override SG: u32 = 1;      // subgroup size (1: no subgroups), a power of two <= WG

const MAX_WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x_s: array<f32>;
@group(0) @binding(1) var<storage, read> x_v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out_s: array<f32>;
@group(0) @binding(2) var<storage, read_write> out_v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> part_out: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
// mean and invstd (or running mean and variance); written by forward training, read elsewhere.
@group(0) @binding(5) var<storage, read_write> stat_a: array<f32>;
@group(0) @binding(6) var<storage, read_write> stat_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> run_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> dy_s: array<f32>;
@group(0) @binding(7) var<storage, read_write> dy_v: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> run_var: array<f32>;
@group(0) @binding(8) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(9) var<storage, read_write> part9: array<f32>;
@group(0) @binding(9) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(10) var<storage, read_write> part10: array<f32>;

var<workgroup> red_a: array<f32, MAX_WG>;
var<workgroup> red_b: array<f32, MAX_WG>;
var<workgroup> red_c: array<f32, MAX_WG>;
var<workgroup> red_d: array<f32, MAX_WG>;

// ---- Walking a chunk -------------------------------------------------------------------------

// A thread's place in its chunk: its current unit's (image, pixel) and first element. A thread
// streams its units one at a time (load, use, store): holding a batch of them in a register
// array cost ~4x more on llvmpipe than loading them twice (the array lives in memory there).
struct Cursor {
    q: vec2<u32>,
    e: u32,   // first element of the unit within the channel (>= m: past the end)
    ch: u32,
}

// Thread t of the chunk's WG threads: its group of LANES threads (t / LANES, one SIMD fiber on
// llvmpipe) owns a contiguous run of steps()·LANES units, and the group's lanes take neighbouring
// units of it, LANES units a step. llvmpipe runs a barrier-free workgroup one fiber after another,
// so each fiber streams one contiguous range (hardware prefetch works) instead of every fiber
// striding through the whole chunk.
fn start(wid: vec3<u32>, lid: vec3<u32>) -> Cursor {
    let u = wid.x * steps() * WG + (lid.x / LANES) * steps() * LANES + lid.x % LANES;
    let e = 4u * u;
    return Cursor(vec2<u32>(e / p.hw, e % p.hw), e, wid.y);
}

// Units per thread and chunk: batches·ITEMS, except that a channel done by one chunk stops at
// ceil(units / WG) (a short channel, e.g. 7×7 at batch 8, needs 13 of 32 steps; the rest would
// only mask).
fn steps() -> u32 {
    return p.steps;
}

// The thread's next unit, LANES units on, without dividing.
fn step(c: Cursor) -> Cursor {
    var r = vec2<u32>(c.q.x + p.step_img, c.q.y + p.step_pix);
    if (r.y >= p.hw) {
        r = vec2<u32>(r.x + 1u, r.y - p.hw);
    }
    return Cursor(r, c.e + 4u * LANES, c.ch);
}

fn next_pixel(q: vec2<u32>) -> vec2<u32> {
    if (q.y + 1u == p.hw) {
        return vec2<u32>(q.x + 1u, 0u);
    }
    return vec2<u32>(q.x, q.y + 1u);
}

fn addr(q: vec2<u32>, off: u32, tot: u32, ch: u32) -> u32 {
    return (q.x * tot + off + ch) * p.hw + q.y;
}

// 1 for the unit's elements that exist (the channel's last unit may be partial).
fn unit_mask(e: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.m));
}

// ---- Loads and stores of one unit (absent elements read as 0 and are never written) -----------
// The `_v` forms need the unit to exist (c.e < m); the `_s` ones check each element.

fn ld_x_v(c: Cursor) -> vec4<f32> {
    return x_v[addr(c.q, p.x_off, p.x_tot, c.ch) / 4u];
}

fn ld_x_s(c: Cursor) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    var q = c.q;
    for (var k = 0u; k < 4u; k++) {
        if (c.e + k < p.m) {
            r[k] = x_s[addr(q, p.x_off, p.x_tot, c.ch)];
        }
        q = next_pixel(q);
    }
    return r;
}

fn ld_dy_v(c: Cursor) -> vec4<f32> {
    return dy_v[addr(c.q, p.dy_off, p.dy_tot, c.ch) / 4u];
}

fn ld_dy_s(c: Cursor) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    var q = c.q;
    for (var k = 0u; k < 4u; k++) {
        if (c.e + k < p.m) {
            r[k] = dy_s[addr(q, p.dy_off, p.dy_tot, c.ch)];
        }
        q = next_pixel(q);
    }
    return r;
}

fn st_v(c: Cursor, v: vec4<f32>) {
    let i = addr(c.q, p.o_off, p.o_tot, c.ch) / 4u;
    var r = v;
    if (p.accumulate != 0u) {
        r += out_v[i];
    }
    out_v[i] = r;
}

fn st_s(c: Cursor, v: vec4<f32>) {
    var q = c.q;
    for (var k = 0u; k < 4u; k++) {
        if (c.e + k < p.m) {
            let i = addr(q, p.o_off, p.o_tot, c.ch);
            var r = v[k];
            if (p.accumulate != 0u) {
                r += out_s[i];
            }
            out_s[i] = r;
        }
        q = next_pixel(q);
    }
}

// ---- Reductions --------------------------------------------------------------------------------

// Count, mean and sum of squared deviations: combined with Chan's formula, which stays accurate
// where E[x²] − E[x]² would cancel.
struct Stats {
    n: f32,
    mean: f32,
    m2: f32,
}

fn chan(a: Stats, b: Stats) -> Stats {
    let n = a.n + b.n;
    if (n == 0.0) {
        return a;
    }
    let d = b.mean - a.mean;
    let fb = b.n / n;
    return Stats(n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb);
}

// A workgroup's reduction: subgroupAdd within each subgroup of SG lanes (lanes k·SG.. of the
// workgroup; SG is the device's one subgroup size), one barrier, then every thread combines the
// WG/SG subgroup results in a workgroup-uniform loop (cheap on llvmpipe, where every barrier
// switches all of the workgroup's SIMD fibers: a tree over 256 threads took 9 of them).
// Without subgroups the host passes SG = 1 and uses the template's variant without the subgroupAdd
// call (a module that names it does not compile there).
fn sg_add(v: vec4<f32>) -> vec4<f32> {
    if (SG == 1u) {
        return v;
    }
    return subgroupAdd(v);
}

// Each kernel reduces once, so the arrays are not reused and need no closing barrier.
fn reduce_stats(t: u32, s: Stats) -> Stats {
    // Within a subgroup: counts and sums first, then the deviations from the subgroup's mean.
    let a = sg_add(vec4<f32>(s.n, s.n * s.mean, 0.0, 0.0));
    let mean = select(0.0, a.y / a.x, a.x > 0.0);
    let d = s.mean - mean;
    let m2 = sg_add(vec4<f32>(s.m2 + s.n * d * d, 0.0, 0.0, 0.0)).x;
    if (t % SG == 0u) {
        red_a[t / SG] = a.x;
        red_b[t / SG] = mean;
        red_c[t / SG] = m2;
    }
    workgroupBarrier();
    var r = Stats(0.0, 0.0, 0.0);
    for (var k = 0u; k < WG / SG; k++) {
        r = chan(r, Stats(red_a[k], red_b[k], red_c[k]));
    }
    return r;
}

// ---- Compensated sums (backward) ---------------------------------------------------------------
//
// Backward's Σ dy' and Σ dy'·x̂ are often sums of thousands of terms that nearly cancel: dβ of a
// batch norm whose output only feeds other batch norms is exactly 0, and Adam turns whatever
// rounding is left into updates of up to lr. So these sums carry their rounding error along
// (TwoSum / Kahan) and are exact to about one rounding of the result. `p.one` (1.0, from the
// uniform block) keeps the shader compiler from simplifying (a + b) − a to b, which would
// throw the error terms away.

// s + e == a + b exactly (Knuth's TwoSum).
fn two_sum(a: vec4<f32>, b: vec4<f32>) -> array<vec4<f32>, 2> {
    let s = (a + b) * p.one;
    let bb = (s - a) * p.one;
    return array<vec4<f32>, 2>(s, (a - (s - bb)) + (b - bb));
}

// A running sum and its error.
struct Comp {
    s: vec4<f32>,
    e: vec4<f32>,
}

fn comp_add(c: Comp, v: vec4<f32>) -> Comp {
    let r = two_sum(c.s, v);
    return Comp(r[0], c.e + r[1]);
}

// The four lanes of a compensated sum as one (sum, error) pair.
fn comp_hsum(c: Comp) -> vec2<f32> {
    let a = two_sum(vec4<f32>(c.s.x, c.s.z, 0.0, 0.0), vec4<f32>(c.s.y, c.s.w, 0.0, 0.0));
    let b = two_sum(vec4<f32>(a[0].x), vec4<f32>(a[0].y));
    return vec2<f32>(b[0].x, b[1].x + a[1].x + a[1].y + hsum(c.e));
}

// (Σ dy', Σ dy'·(x − mean)) over the workgroup, each given per thread as (sum, error): one
// barrier, then every thread adds the WG pairs in the same order (a workgroup-uniform loop).
fn reduce_comp2(t: u32, b: vec2<f32>, g: vec2<f32>) -> vec2<f32> {
    red_a[t] = b.x;
    red_b[t] = b.y;
    red_c[t] = g.x;
    red_d[t] = g.y;
    workgroupBarrier();
    var r = Comp(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k = 0u; k < WG; k++) {
        r = comp_add(r, vec4<f32>(red_a[k], red_c[k], 0.0, 0.0));
        r.e += vec4<f32>(red_b[k], red_d[k], 0.0, 0.0);
    }
    return (r.s + r.e).xy;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// A thread's statistics are streamed as sums of x − k and (x − k)² (k: the channel's first
// value in this dispatch, a workgroup-uniform load): shifted by a value of the data, the sums
// do not cancel the way raw E[x²] − E[x]² would, and need no division per unit.
struct Shifted {
    k: f32,
    cnt: f32,
    s: vec4<f32>,
    q: vec4<f32>,
}

fn shifted_add(a: Shifted, x: vec4<f32>, mask: vec4<f32>) -> Shifted {
    let d = (x - a.k) * mask;
    return Shifted(a.k, a.cnt + hsum(mask), a.s + d, a.q + d * d);
}

// Sums of the same shift add up.
fn shifted_merge(a: Shifted, b: Shifted) -> Shifted {
    return Shifted(a.k, a.cnt + b.cnt, a.s + b.s, a.q + b.q);
}

// Every BLOCK units a thread adds its block's sums into its running total: two-level summation,
// whose rounding grows with BLOCK + units/BLOCK instead of with a thread's hundreds of units.
const BLOCK: u32 = 8u;

fn block_end(j: u32) -> bool {
    return j % BLOCK == BLOCK - 1u;
}

fn shifted_stats(a: Shifted) -> Stats {
    if (a.cnt == 0.0) {
        return Stats(0.0, 0.0, 0.0);
    }
    let s = hsum(a.s);
    let d = s / a.cnt;
    return Stats(a.cnt, a.k + d, max(hsum(a.q) - s * d, 0.0));
}

// ---- Forward -----------------------------------------------------------------------------------

// The one place y is computed, shared by training, recompute and backward's ReLU mask, so that
// the mask agrees with the y forward produced.
fn affine(x: vec4<f32>, mean: f32, scale: f32, shift: f32) -> vec4<f32> {
    return (x - mean) * scale + shift;
}

fn activate(y: vec4<f32>) -> vec4<f32> {
    if (p.relu != 0u) {
        return max(y, vec4<f32>(0.0));
    }
    return y;
}

// (mean, γ·invstd, β) of a channel.
struct Affine {
    mean: f32,
    scale: f32,
    shift: f32,
}

fn affine_of(ch: u32, mean: f32, invstd: f32) -> Affine {
    return Affine(mean, gamma[ch] * invstd, beta[ch]);
}

fn y_of(a: Affine, x: vec4<f32>) -> vec4<f32> {
    return activate(affine(x, a.mean, a.scale, a.shift));
}

// Saves mean and invstd and moves the running statistics (unbiased variance, as PyTorch does).
// Returns invstd.
fn finish_stats(wid: vec3<u32>, t: u32, s: Stats) -> f32 {
    let var_b = s.m2 / s.n;
    let invstd = 1.0 / sqrt(var_b + p.eps);
    let ch = wid.y;
    if (t == 0u && wid.x == 0u && p.save != 0u) {
        stat_a[ch] = s.mean;
        stat_b[ch] = invstd;
        let mom = p.momentum;
        run_mean[ch] = (1.0 - mom) * run_mean[ch] + mom * s.mean;
        run_var[ch] = (1.0 - mom) * run_var[ch] + mom * (s.m2 / (s.n - 1.0));
    }
    return invstd;
}

// Partial k of a channel over all batch chunks is at 3·(ch·parts + k).
fn part_index(ch: u32, k: u32) -> u32 {
    return 3u * (ch * p.parts + k);
}

fn put_partial(wid: vec3<u32>, t: u32, v: vec3<f32>) {
    if (t == 0u) {
        let i = part_index(wid.y, p.part_base + wid.x);
        part_out[i] = v.x;
        part_out[i + 1u] = v.y;
        part_out[i + 2u] = v.z;
    }
}

// The channel's affine map from its chunks' partials; saves the statistics (first chunk).
fn fwd_combine(wid: vec3<u32>, t: u32) -> Affine {
    var s = Stats(0.0, 0.0, 0.0);
    for (var k = 0u; k < p.parts; k++) {
        let i = part_index(wid.y, k);
        s = chan(s, Stats(part9[i], part9[i + 1u], part9[i + 2u]));
    }
    return affine_of(wid.y, s.mean, finish_stats(wid, t, s));
}

// y from given statistics: saved mean/invstd (recompute) or running mean/variance (eval).
fn given_affine(ch: u32) -> Affine {
    var invstd = stat_b[ch];
    if (p.use_var != 0u) {
        invstd = 1.0 / sqrt(invstd + p.eps);
    }
    return affine_of(ch, stat_a[ch], invstd);
}

// The passes and entry points, over vec4 (`_v`) and scalar (`_s`) units (see the top): the
// `_v` ones skip a unit past the end, the `_s` ones mask each element.
// The thread's shifted sums over its units of the chunk.
fn x_stats_v(c0: Cursor) -> Stats {
    let k = x_v[addr(vec2<u32>(0u), p.x_off, p.x_tot, c0.ch) / 4u].x;
    let zero = Shifted(k, 0.0, vec4<f32>(0.0), vec4<f32>(0.0));
    var a = zero;
    var t = zero;
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        if (c.e < p.m) {
            a = shifted_add(a, ld_x_v(c), vec4<f32>(1.0));
        }
        if (block_end(j)) {
            t = shifted_merge(t, a);
            a = zero;
        }
        c = step(c);
    }
    return shifted_stats(shifted_merge(t, a));
}

fn y_pass_v(c0: Cursor, a: Affine) {
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        if (c.e < p.m) {
            st_v(c, y_of(a, ld_x_v(c)));
        }
        c = step(c);
    }
}

// One workgroup per channel: statistics, then y (x is read twice).
@compute @workgroup_size(WG)
fn fwd_fused_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let s = reduce_stats(lid.x, x_stats_v(c));
    y_pass_v(c, affine_of(c.ch, s.mean, finish_stats(wid, lid.x, s)));
}

@compute @workgroup_size(WG)
fn fwd_partial_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = reduce_stats(lid.x, x_stats_v(start(wid, lid)));
    put_partial(wid, lid.x, vec3<f32>(s.n, s.mean, s.m2));
}

@compute @workgroup_size(WG)
fn fwd_apply_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    y_pass_v(start(wid, lid), fwd_combine(wid, lid.x));
}

@compute @workgroup_size(WG)
fn normalize_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    y_pass_v(start(wid, lid), given_affine(wid.y));
}

// The thread's shifted sums over its units of the chunk.
fn x_stats_s(c0: Cursor) -> Stats {
    let k = x_s[addr(vec2<u32>(0u), p.x_off, p.x_tot, c0.ch)];
    let zero = Shifted(k, 0.0, vec4<f32>(0.0), vec4<f32>(0.0));
    var a = zero;
    var t = zero;
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        a = shifted_add(a, ld_x_s(c), unit_mask(c.e));
        if (block_end(j)) {
            t = shifted_merge(t, a);
            a = zero;
        }
        c = step(c);
    }
    return shifted_stats(shifted_merge(t, a));
}

fn y_pass_s(c0: Cursor, a: Affine) {
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        st_s(c, y_of(a, ld_x_s(c)));
        c = step(c);
    }
}

// One workgroup per channel: statistics, then y (x is read twice).
@compute @workgroup_size(WG)
fn fwd_fused_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let s = reduce_stats(lid.x, x_stats_s(c));
    y_pass_s(c, affine_of(c.ch, s.mean, finish_stats(wid, lid.x, s)));
}

@compute @workgroup_size(WG)
fn fwd_partial_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = reduce_stats(lid.x, x_stats_s(start(wid, lid)));
    put_partial(wid, lid.x, vec3<f32>(s.n, s.mean, s.m2));
}

@compute @workgroup_size(WG)
fn fwd_apply_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    y_pass_s(start(wid, lid), fwd_combine(wid, lid.x));
}

@compute @workgroup_size(WG)
fn normalize_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    y_pass_s(start(wid, lid), given_affine(wid.y));
}

// ---- Backward ----------------------------------------------------------------------------------

// What backward needs of a channel's saved statistics, loaded once (workgroup-uniform).
struct Saved {
    a: Affine,
    invstd: f32,
}

fn saved(ch: u32) -> Saved {
    let invstd = stat_b[ch];
    return Saved(affine_of(ch, stat_a[ch], invstd), invstd);
}

// dy masked by the ReLU, the mask recomputed from x and the saved statistics.
fn masked(sv: Saved, x: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
    if (p.relu == 0u) {
        return dy;
    }
    return select(vec4<f32>(0.0), dy, affine(x, sv.a.mean, sv.a.scale, sv.a.shift) > vec4<f32>(0.0));
}

// Per-thread compensated (Σ dy', Σ dy'·(x − mean)) as vec4 lanes.
struct Sums {
    b: Comp,
    g: Comp,
}

fn sums_add(s: Sums, sv: Saved, x: vec4<f32>, dy: vec4<f32>) -> Sums {
    let d = masked(sv, x, dy);
    return Sums(comp_add(s.b, d), comp_add(s.g, d * (x - sv.a.mean)));
}

fn sums_zero() -> Sums {
    let z = Comp(vec4<f32>(0.0), vec4<f32>(0.0));
    return Sums(z, z);
}

// The thread's (Σ dy', Σ dy'·x̂) as (sum, error) pairs, reduced over the workgroup.
fn bwd_reduce(t: u32, s: Sums, sv: Saved) -> vec2<f32> {
    let r = reduce_comp2(t, comp_hsum(s.b), comp_hsum(s.g));
    return vec2<f32>(r.x, r.y * sv.invstd);
}

// dx = γ·invstd·(dy' − dβ/m − x̂·dγ/m), from masked dy' and the channel's (dβ, dγ).
struct Dx {
    kb: f32,
    kg: f32,
}

fn dx_of(sv: Saved, sums: vec2<f32>) -> Dx {
    let inv_m = 1.0 / f32(p.m_total);
    return Dx(sums.x * inv_m, sums.y * inv_m * sv.invstd);
}

fn dx_unit(sv: Saved, k: Dx, x: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
    return sv.a.scale * (masked(sv, x, dy) - k.kb - (x - sv.a.mean) * k.kg);
}

fn put_dparams(wid: vec3<u32>, t: u32, sums: vec2<f32>) {
    if (t == 0u && wid.x == 0u && p.save != 0u) {
        dbeta[wid.y] = sums.x;
        dgamma[wid.y] = sums.y;
    }
}

// The channel's (dβ, dγ) from its chunks' partials, saved by the first chunk.
fn bwd_combine(wid: vec3<u32>, t: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < p.parts; k++) {
        let i = part_index(wid.y, k);
        s += vec2<f32>(part10[i], part10[i + 1u]);
    }
    put_dparams(wid, t, s);
    return s;
}

fn bwd_sums_v(t: u32, c0: Cursor, sv: Saved) -> vec2<f32> {
    var s = sums_zero();
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        if (c.e < p.m) {
            s = sums_add(s, sv, ld_x_v(c), ld_dy_v(c));
        }
        c = step(c);
    }
    return bwd_reduce(t, s, sv);
}

fn dx_pass_v(c0: Cursor, sv: Saved, k: Dx) {
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        if (c.e < p.m) {
            st_v(c, dx_unit(sv, k, ld_x_v(c), ld_dy_v(c)));
        }
        c = step(c);
    }
}

// One workgroup per channel: the sums, then dx (x and dy are read twice).
@compute @workgroup_size(WG)
fn bwd_fused_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let sv = saved(c.ch);
    let sums = bwd_sums_v(lid.x, c, sv);
    put_dparams(wid, lid.x, sums);
    dx_pass_v(c, sv, dx_of(sv, sums));
}

@compute @workgroup_size(WG)
fn bwd_partial_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    put_partial(wid, lid.x, vec3<f32>(bwd_sums_v(lid.x, c, saved(c.ch)), 0.0));
}

@compute @workgroup_size(WG)
fn bwd_apply_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let sv = saved(c.ch);
    dx_pass_v(c, sv, dx_of(sv, bwd_combine(wid, lid.x)));
}

fn bwd_sums_s(t: u32, c0: Cursor, sv: Saved) -> vec2<f32> {
    var s = sums_zero();
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        s = sums_add(s, sv, ld_x_s(c), ld_dy_s(c));
        c = step(c);
    }
    return bwd_reduce(t, s, sv);
}

fn dx_pass_s(c0: Cursor, sv: Saved, k: Dx) {
    var c = c0;
    for (var j = 0u; j < steps(); j++) {
        st_s(c, dx_unit(sv, k, ld_x_s(c), ld_dy_s(c)));
        c = step(c);
    }
}

// One workgroup per channel: the sums, then dx (x and dy are read twice).
@compute @workgroup_size(WG)
fn bwd_fused_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let sv = saved(c.ch);
    let sums = bwd_sums_s(lid.x, c, sv);
    put_dparams(wid, lid.x, sums);
    dx_pass_s(c, sv, dx_of(sv, sums));
}

@compute @workgroup_size(WG)
fn bwd_partial_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    put_partial(wid, lid.x, vec3<f32>(bwd_sums_s(lid.x, c, saved(c.ch)), 0.0));
}

@compute @workgroup_size(WG)
fn bwd_apply_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = start(wid, lid);
    let sv = saved(c.ch);
    dx_pass_s(c, sv, dx_of(sv, bwd_combine(wid, lid.x)));
}

