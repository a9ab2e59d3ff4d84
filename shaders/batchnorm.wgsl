// Batch normalisation of NCHW f32 channel views (training and eval), with an optional fused ReLU.
//
// Layout: workgroup (wid.x = chunk, wid.y = channel). A channel's m = n·hw elements, in (image,
// pixel) order, are cut into units of 4 consecutive elements; a chunk is WG·ITEMS units, and
// thread t owns units t, t + WG, … of it, so neighbouring lanes touch neighbouring memory and
// every per-channel value is a workgroup-uniform load. `*_v` entry points bind activations as
// vec4 (hw % 4 == 0: a unit never straddles two planes and is 16-byte aligned), `*_s` ones as
// scalars; on llvmpipe a vec4 load costs about what a scalar one does, so `_v` is ~4x faster.
//
// A chunk is `batches` batches of WG·ITEMS units; a batch is loaded into registers at once.
// A channel that fits one batch is done in one pass with its values held in registers
// (`*_fused`). Bigger channels: `*_partial` writes one partial reduction per chunk to scratch,
// then `*_apply` re-combines the few partials of its channel (a short uniform loop, cheaper on
// llvmpipe than another tree of barriers) in every workgroup, and applies.
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
    step_img: u32,   // (4·WG) / hw: how far one stride of WG units moves in (image, pixel)
    step_pix: u32,   // (4·WG) % hw
    relu: u32,
    use_var: u32,    // normalize: stat_b holds a variance (eval) instead of invstd
    eps: f32,
    momentum: f32,
    batches: u32,    // batches per chunk
    bstep_img: u32,  // (4·WG·ITEMS) / hw: how far one batch moves
    bstep_pix: u32,  // (4·WG·ITEMS) % hw
    part_base: u32,  // partials of earlier batch chunks: this dispatch's first partial per channel
    parts: u32,      // partials per channel over every batch chunk
    save: u32,       // this dispatch writes the statistics, running statistics or dγ/dβ (first chunk)
    m_total: u32,    // elements per channel over every batch chunk
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;    // threads per workgroup, a power of two <= MAX_WG
override ITEMS: u32 = 4;   // units per thread, <= MAX_ITEMS

const MAX_WG: u32 = 256;
const MAX_ITEMS: u32 = 8;

alias Units = array<vec4<f32>, MAX_ITEMS>;

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

// ---- Walking a chunk -------------------------------------------------------------------------

struct Walk {
    ch: u32,
    chunk: u32,
    t: u32,
    u0: u32,         // this thread's first unit (of the batch) within the channel
    q: vec2<u32>,    // its (image, pixel)
}

// The first batch of the workgroup's chunk.
fn walk(wid: vec3<u32>, lid: vec3<u32>) -> Walk {
    let u0 = wid.x * p.batches * WG * ITEMS + lid.x;
    let e = 4u * u0;
    return Walk(wid.y, wid.x, lid.x, u0, vec2<u32>(e / p.hw, e % p.hw));
}

// The next batch, without dividing.
fn next_batch(w: Walk) -> Walk {
    var q = vec2<u32>(w.q.x + p.bstep_img, w.q.y + p.bstep_pix);
    if (q.y >= p.hw) {
        q = vec2<u32>(q.x + 1u, q.y - p.hw);
    }
    return Walk(w.ch, w.chunk, w.t, w.u0 + WG * ITEMS, q);
}

// First element of the thread's j-th unit.
fn elem(w: Walk, j: u32) -> u32 {
    return 4u * (w.u0 + j * WG);
}

// Moves an (image, pixel) position on by WG units without dividing.
fn advance(q: vec2<u32>) -> vec2<u32> {
    var r = vec2<u32>(q.x + p.step_img, q.y + p.step_pix);
    if (r.y >= p.hw) {
        r = vec2<u32>(r.x + 1u, r.y - p.hw);
    }
    return r;
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

// ---- Loads and stores (absent elements read as 0 and are never written) ----------------------

fn load_x_v(w: Walk) -> Units {
    var r: Units;
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        if (elem(w, j) < p.m) {
            r[j] = x_v[addr(q, p.x_off, p.x_tot, w.ch) / 4u];
        }
        q = advance(q);
    }
    return r;
}

fn load_x_s(w: Walk) -> Units {
    var r: Units;
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        var c = q;
        for (var k = 0u; k < 4u; k++) {
            if (elem(w, j) + k < p.m) {
                r[j][k] = x_s[addr(c, p.x_off, p.x_tot, w.ch)];
            }
            c = next_pixel(c);
        }
        q = advance(q);
    }
    return r;
}

fn load_dy_v(w: Walk) -> Units {
    var r: Units;
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        if (elem(w, j) < p.m) {
            r[j] = dy_v[addr(q, p.dy_off, p.dy_tot, w.ch) / 4u];
        }
        q = advance(q);
    }
    return r;
}

fn load_dy_s(w: Walk) -> Units {
    var r: Units;
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        var c = q;
        for (var k = 0u; k < 4u; k++) {
            if (elem(w, j) + k < p.m) {
                r[j][k] = dy_s[addr(c, p.dy_off, p.dy_tot, w.ch)];
            }
            c = next_pixel(c);
        }
        q = advance(q);
    }
    return r;
}

fn store_v(w: Walk, v: Units) {
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        if (elem(w, j) < p.m) {
            let i = addr(q, p.o_off, p.o_tot, w.ch) / 4u;
            var r = v[j];
            if (p.accumulate != 0u) {
                r += out_v[i];
            }
            out_v[i] = r;
        }
        q = advance(q);
    }
}

fn store_s(w: Walk, v: Units) {
    var q = w.q;
    for (var j = 0u; j < ITEMS; j++) {
        var c = q;
        for (var k = 0u; k < 4u; k++) {
            if (elem(w, j) + k < p.m) {
                let i = addr(c, p.o_off, p.o_tot, w.ch);
                var r = v[j][k];
                if (p.accumulate != 0u) {
                    r += out_s[i];
                }
                out_s[i] = r;
            }
            c = next_pixel(c);
        }
        q = advance(q);
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

fn reduce_stats(t: u32, s: Stats) -> Stats {
    red_a[t] = s.n;
    red_b[t] = s.mean;
    red_c[t] = s.m2;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (t < h) {
            let r = chan(Stats(red_a[t], red_b[t], red_c[t]), Stats(red_a[t + h], red_b[t + h], red_c[t + h]));
            red_a[t] = r.n;
            red_b[t] = r.mean;
            red_c[t] = r.m2;
        }
        workgroupBarrier();
    }
    let r = Stats(red_a[0], red_b[0], red_c[0]);
    workgroupBarrier(); // the arrays may be reused right after
    return r;
}

fn reduce_sum2(t: u32, s: vec2<f32>) -> vec2<f32> {
    red_a[t] = s.x;
    red_b[t] = s.y;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (t < h) {
            red_a[t] += red_a[t + h];
            red_b[t] += red_b[t + h];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red_a[0], red_b[0]);
    workgroupBarrier();
    return r;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Two-pass statistics of the thread's own units (held in registers).
fn local_stats(w: Walk, xs: Units) -> Stats {
    var cnt = 0.0;
    var s = vec4<f32>(0.0);
    for (var j = 0u; j < ITEMS; j++) {
        cnt += hsum(unit_mask(elem(w, j)));
        s += xs[j];
    }
    if (cnt == 0.0) {
        return Stats(0.0, 0.0, 0.0);
    }
    let mean = hsum(s) / cnt;
    var q = vec4<f32>(0.0);
    for (var j = 0u; j < ITEMS; j++) {
        let d = (xs[j] - mean) * unit_mask(elem(w, j));
        q += d * d;
    }
    return Stats(cnt, mean, hsum(q));
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

fn normalized(xs: Units, mean: f32, invstd: f32, ch: u32) -> Units {
    var ys: Units;
    let scale = gamma[ch] * invstd;
    let shift = beta[ch];
    for (var j = 0u; j < ITEMS; j++) {
        ys[j] = activate(affine(xs[j], mean, scale, shift));
    }
    return ys;
}

// Saves mean and invstd and moves the running statistics (unbiased variance, as PyTorch does).
// Returns invstd.
fn finish_stats(w: Walk, s: Stats) -> f32 {
    let var_b = s.m2 / s.n;
    let invstd = 1.0 / sqrt(var_b + p.eps);
    if (w.t == 0u && w.chunk == 0u && p.save != 0u) {
        stat_a[w.ch] = s.mean;
        stat_b[w.ch] = invstd;
        let mom = p.momentum;
        run_mean[w.ch] = (1.0 - mom) * run_mean[w.ch] + mom * s.mean;
        run_var[w.ch] = (1.0 - mom) * run_var[w.ch] + mom * (s.m2 / (s.n - 1.0));
    }
    return invstd;
}

fn fwd_fused(w: Walk, xs: Units) -> Units {
    let s = reduce_stats(w.t, local_stats(w, xs));
    return normalized(xs, s.mean, finish_stats(w, s), w.ch);
}

@compute @workgroup_size(WG)
fn fwd_fused_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = walk(wid, lid);
    store_v(w, fwd_fused(w, load_x_v(w)));
}

@compute @workgroup_size(WG)
fn fwd_fused_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = walk(wid, lid);
    store_s(w, fwd_fused(w, load_x_s(w)));
}

// Partial k of a channel over all batch chunks is at 3·(ch·parts + k).
fn part_index(ch: u32, k: u32) -> u32 {
    return 3u * (ch * p.parts + k);
}

fn put_partial(w: Walk, v: vec3<f32>) {
    if (w.t == 0u) {
        let i = part_index(w.ch, p.part_base + w.chunk);
        part_out[i] = v.x;
        part_out[i + 1u] = v.y;
        part_out[i + 2u] = v.z;
    }
}

@compute @workgroup_size(WG)
fn fwd_partial_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = Stats(0.0, 0.0, 0.0);
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        s = chan(s, local_stats(w, load_x_v(w)));
        w = next_batch(w);
    }
    s = reduce_stats(lid.x, s);
    put_partial(w, vec3<f32>(s.n, s.mean, s.m2));
}

@compute @workgroup_size(WG)
fn fwd_partial_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = Stats(0.0, 0.0, 0.0);
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        s = chan(s, local_stats(w, load_x_s(w)));
        w = next_batch(w);
    }
    s = reduce_stats(lid.x, s);
    put_partial(w, vec3<f32>(s.n, s.mean, s.m2));
}

// The channel's statistics from its chunks' partials; saves them (first chunk) and returns
// (mean, invstd).
fn fwd_combine(w: Walk) -> vec2<f32> {
    var s = Stats(0.0, 0.0, 0.0);
    for (var k = 0u; k < p.parts; k++) {
        let i = part_index(w.ch, k);
        s = chan(s, Stats(part9[i], part9[i + 1u], part9[i + 2u]));
    }
    return vec2<f32>(s.mean, finish_stats(w, s));
}

@compute @workgroup_size(WG)
fn fwd_apply_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    let st = fwd_combine(w);
    for (var b = 0u; b < p.batches; b++) {
        store_v(w, normalized(load_x_v(w), st.x, st.y, w.ch));
        w = next_batch(w);
    }
}

@compute @workgroup_size(WG)
fn fwd_apply_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    let st = fwd_combine(w);
    for (var b = 0u; b < p.batches; b++) {
        store_s(w, normalized(load_x_s(w), st.x, st.y, w.ch));
        w = next_batch(w);
    }
}

// y from given statistics: saved mean/invstd (recompute) or running mean/variance (eval).
fn normalize(w: Walk, xs: Units) -> Units {
    var invstd = stat_b[w.ch];
    if (p.use_var != 0u) {
        invstd = 1.0 / sqrt(invstd + p.eps);
    }
    return normalized(xs, stat_a[w.ch], invstd, w.ch);
}

@compute @workgroup_size(WG)
fn normalize_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        store_v(w, normalize(w, load_x_v(w)));
        w = next_batch(w);
    }
}

@compute @workgroup_size(WG)
fn normalize_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        store_s(w, normalize(w, load_x_s(w)));
        w = next_batch(w);
    }
}

// ---- Backward ----------------------------------------------------------------------------------

// dy masked by the ReLU, the mask recomputed from x and the saved statistics.
fn masked(w: Walk, xs: Units, dy: Units) -> Units {
    if (p.relu == 0u) {
        return dy;
    }
    let mean = stat_a[w.ch];
    let scale = gamma[w.ch] * stat_b[w.ch];
    let shift = beta[w.ch];
    var r: Units;
    for (var j = 0u; j < ITEMS; j++) {
        r[j] = select(vec4<f32>(0.0), dy[j], affine(xs[j], mean, scale, shift) > vec4<f32>(0.0));
    }
    return r;
}

// The thread's (Σ dy', Σ dy'·x̂) from masked dy'.
fn bwd_sums(w: Walk, xs: Units, dys: Units) -> vec2<f32> {
    let mean = stat_a[w.ch];
    var sb = vec4<f32>(0.0);
    var sg = vec4<f32>(0.0);
    for (var j = 0u; j < ITEMS; j++) {
        sb += dys[j];
        sg += dys[j] * (xs[j] - mean);
    }
    return vec2<f32>(hsum(sb), hsum(sg) * stat_b[w.ch]);
}

// dx = γ·invstd·(dy' − dβ/m − x̂·dγ/m), from masked dy' and the channel's (dβ, dγ).
fn bwd_dx(w: Walk, xs: Units, dys: Units, sums: vec2<f32>) -> Units {
    let mean = stat_a[w.ch];
    let invstd = stat_b[w.ch];
    let scale = gamma[w.ch] * invstd;
    let inv_m = 1.0 / f32(p.m_total);
    let kb = sums.x * inv_m;
    let kg = sums.y * inv_m * invstd;
    var dx: Units;
    for (var j = 0u; j < ITEMS; j++) {
        dx[j] = scale * (dys[j] - kb - (xs[j] - mean) * kg);
    }
    return dx;
}

fn put_dparams(w: Walk, sums: vec2<f32>) {
    if (w.t == 0u && w.chunk == 0u && p.save != 0u) {
        dbeta[w.ch] = sums.x;
        dgamma[w.ch] = sums.y;
    }
}

fn bwd_fused(w: Walk, xs: Units, dy: Units) -> Units {
    let dys = masked(w, xs, dy);
    let sums = reduce_sum2(w.t, bwd_sums(w, xs, dys));
    put_dparams(w, sums);
    return bwd_dx(w, xs, dys, sums);
}

@compute @workgroup_size(WG)
fn bwd_fused_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = walk(wid, lid);
    store_v(w, bwd_fused(w, load_x_v(w), load_dy_v(w)));
}

@compute @workgroup_size(WG)
fn bwd_fused_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = walk(wid, lid);
    store_s(w, bwd_fused(w, load_x_s(w), load_dy_s(w)));
}

@compute @workgroup_size(WG)
fn bwd_partial_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = vec2<f32>(0.0);
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        let xs = load_x_v(w);
        s += bwd_sums(w, xs, masked(w, xs, load_dy_v(w)));
        w = next_batch(w);
    }
    put_partial(w, vec3<f32>(reduce_sum2(lid.x, s), 0.0));
}

@compute @workgroup_size(WG)
fn bwd_partial_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = vec2<f32>(0.0);
    var w = walk(wid, lid);
    for (var b = 0u; b < p.batches; b++) {
        let xs = load_x_s(w);
        s += bwd_sums(w, xs, masked(w, xs, load_dy_s(w)));
        w = next_batch(w);
    }
    put_partial(w, vec3<f32>(reduce_sum2(lid.x, s), 0.0));
}

// The channel's (dβ, dγ) from its chunks' partials, saved by the first chunk.
fn bwd_combine(w: Walk) -> vec2<f32> {
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < p.parts; k++) {
        let i = part_index(w.ch, k);
        s += vec2<f32>(part10[i], part10[i + 1u]);
    }
    put_dparams(w, s);
    return s;
}

@compute @workgroup_size(WG)
fn bwd_apply_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    let sums = bwd_combine(w);
    for (var b = 0u; b < p.batches; b++) {
        let xs = load_x_v(w);
        store_v(w, bwd_dx(w, xs, masked(w, xs, load_dy_v(w)), sums));
        w = next_batch(w);
    }
}

@compute @workgroup_size(WG)
fn bwd_apply_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var w = walk(wid, lid);
    let sums = bwd_combine(w);
    for (var b = 0u; b < p.batches; b++) {
        let xs = load_x_s(w);
        store_s(w, bwd_dx(w, xs, masked(w, xs, load_dy_s(w)), sums));
        w = next_batch(w);
    }
}
