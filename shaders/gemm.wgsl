// Strided, batched GEMM: C_b = alpha · A_b · B_b (+ C_b), every matrix addressed as
// off + batch·bs + row·rs + col·cs, so transposes and NCHW channel slices cost nothing.
//
// Why this shape (lavapipe/llvmpipe, Mesa 25, where an invocation is one SIMD lane of 8): every
// storage load whose address depends on the workgroup or invocation id is a loop over the 8 lanes
// with a bounds check per lane, so the cost is the number of load instructions, and a vec4 load
// costs about as much as a scalar one. Hence:
// - each workgroup owns TM rows of C and each lane TN adjacent columns (a TM×TN register tile);
// - A is the same for every lane: the 8 lanes of a subgroup each load a different vec4 of it
//   (row l at k..k+3, or four rows at one k) and share them with subgroupBroadcast, one load
//   instead of eight;
// - B is loaded as vec4 where the layout allows, and the reduction runs in steps of four;
// - the accumulators are separate variables (llvmpipe keeps arrays in memory even when every
//   index is constant), and the tile-size branches are constant after specialisation.
//
// Grid: x = column tiles (WG·TN columns), y = row tiles (TM rows), z = slices; tile() takes x
// and y in row-tile-first order. Slice z covers batches g·b_chunk.. and
// reduction indices s·k_chunk.. (g = z / k_splits, s = z % k_splits). When there is one slice per
// output matrix the result goes to C with alpha/accumulate; otherwise (split-K, or a sum over the
// batch when C has batch stride 0) binding 1 is a scratch buffer of raw partial sums, one M×N
// matrix per slice, which gemm_reduce then folds into C.

struct Mat {
    off: u32,
    rs: u32,
    cs: u32,
    bs: u32,
}

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a: Mat,
    b: Mat,
    c: Mat,
    alpha: f32,
    accumulate: u32,
    k_chunk: u32,
    k_splits: u32,
    b_chunk: u32,
    slices_per_out: u32, // gemm_reduce: partial matrices summed into one output matrix
    out_count: u32,      // gemm_reduce: output matrices
    // Always 0. Added to the epilogue's row bound so that LLVM cannot bound the row loop and
    // unroll it TM times: unrolled, the _c4 stores (a per-lane loop each on llvmpipe) took LLVM
    // 2.9 s per pipeline instead of 0.7 s.
    zero: u32,
}

override WG: u32 = 64;
override TM: u32 = 16; // 8 or 16 rows per workgroup
override TN: u32 = 4;  // 4 or 8 columns per lane
override WG_REDUCE: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
// C as vec4s, for the _c4 entry points (no entry point uses both).
@group(0) @binding(1) var<storage, read_write> c4: array<vec4<f32>>;
// A and B, read one float at a time (any strides) or four at a time (unit stride, aligned).
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
// gemm_reduce reads the partial sums here.
@group(0) @binding(2) var<storage, read> parts: array<f32>;

// The accumulators: row i, columns 4q..4q+3 of the lane's tile. Separate variables, not an
// array: llvmpipe keeps arrays in memory even when every index is constant.
var<private> acc0_0: vec4<f32>;
var<private> acc0_1: vec4<f32>;
var<private> acc1_0: vec4<f32>;
var<private> acc1_1: vec4<f32>;
var<private> acc2_0: vec4<f32>;
var<private> acc2_1: vec4<f32>;
var<private> acc3_0: vec4<f32>;
var<private> acc3_1: vec4<f32>;
var<private> acc4_0: vec4<f32>;
var<private> acc4_1: vec4<f32>;
var<private> acc5_0: vec4<f32>;
var<private> acc5_1: vec4<f32>;
var<private> acc6_0: vec4<f32>;
var<private> acc6_1: vec4<f32>;
var<private> acc7_0: vec4<f32>;
var<private> acc7_1: vec4<f32>;
var<private> acc8_0: vec4<f32>;
var<private> acc8_1: vec4<f32>;
var<private> acc9_0: vec4<f32>;
var<private> acc9_1: vec4<f32>;
var<private> acc10_0: vec4<f32>;
var<private> acc10_1: vec4<f32>;
var<private> acc11_0: vec4<f32>;
var<private> acc11_1: vec4<f32>;
var<private> acc12_0: vec4<f32>;
var<private> acc12_1: vec4<f32>;
var<private> acc13_0: vec4<f32>;
var<private> acc13_1: vec4<f32>;
var<private> acc14_0: vec4<f32>;
var<private> acc14_1: vec4<f32>;
var<private> acc15_0: vec4<f32>;
var<private> acc15_1: vec4<f32>;

// Eight rows of A at k..k+3, the same in every lane.
struct Rows8 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
}

struct ATile {
    lo: Rows8,
    hi: Rows8,
}

// B at rows k+kk (x: the lane's columns 0..3, y: its columns 4..7).
struct BTile {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    y0: vec4<f32>,
    y1: vec4<f32>,
    y2: vec4<f32>,
    y3: vec4<f32>,
}

// Where a lane works: its rows m0.., its first column n0 and its lane in the subgroup (mod 8).
struct Tile {
    m0: u32,
    n0: u32,
    sl: u32,
}

struct Range {
    b0: u32,
    b1: u32,
    k0: u32,
    k1: u32,
}

// Workgroups run roughly in order of x + y·nwg.x, so the row tile is taken as the fastest part
// of that index: the nwg.y row tiles of one column block run back to back and share its B
// columns while they are in cache, instead of every row tile streaming all of B.
fn tile(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, sid: u32) -> Tile {
    let f = wid.x + wid.y * nwg.x;
    return Tile((f % nwg.y) * TM, ((f / nwg.y) * WG + lid.x) * TN, sid & 7u);
}

fn slice_range(z: u32) -> Range {
    let g = z / p.k_splits;
    let s = z % p.k_splits;
    let b0 = g * p.b_chunk;
    let k0 = s * p.k_chunk;
    return Range(b0, min(p.batch, b0 + p.b_chunk), k0, min(p.k, k0 + p.k_chunk));
}

fn clear() {
    acc0_0 = vec4(0.0);
    acc0_1 = vec4(0.0);
    acc1_0 = vec4(0.0);
    acc1_1 = vec4(0.0);
    acc2_0 = vec4(0.0);
    acc2_1 = vec4(0.0);
    acc3_0 = vec4(0.0);
    acc3_1 = vec4(0.0);
    acc4_0 = vec4(0.0);
    acc4_1 = vec4(0.0);
    acc5_0 = vec4(0.0);
    acc5_1 = vec4(0.0);
    acc6_0 = vec4(0.0);
    acc6_1 = vec4(0.0);
    acc7_0 = vec4(0.0);
    acc7_1 = vec4(0.0);
    acc8_0 = vec4(0.0);
    acc8_1 = vec4(0.0);
    acc9_0 = vec4(0.0);
    acc9_1 = vec4(0.0);
    acc10_0 = vec4(0.0);
    acc10_1 = vec4(0.0);
    acc11_0 = vec4(0.0);
    acc11_1 = vec4(0.0);
    acc12_0 = vec4(0.0);
    acc12_1 = vec4(0.0);
    acc13_0 = vec4(0.0);
    acc13_1 = vec4(0.0);
    acc14_0 = vec4(0.0);
    acc14_1 = vec4(0.0);
    acc15_0 = vec4(0.0);
    acc15_1 = vec4(0.0);
}

// Lane l holds row l at k..k+3; every lane gets all eight.
fn rows_k4(s: vec4<f32>) -> Rows8 {
    return Rows8(subgroupBroadcast(s, 0u), subgroupBroadcast(s, 1u), subgroupBroadcast(s, 2u), subgroupBroadcast(s, 3u), subgroupBroadcast(s, 4u), subgroupBroadcast(s, 5u), subgroupBroadcast(s, 6u), subgroupBroadcast(s, 7u));
}

// Lane l holds rows 4·(l&1)..+3 at k + l/2; every lane gets all eight rows at k..k+3.
fn rows_m4(s: vec4<f32>) -> Rows8 {
    let l0 = subgroupBroadcast(s, 0u);
    let l1 = subgroupBroadcast(s, 1u);
    let l2 = subgroupBroadcast(s, 2u);
    let l3 = subgroupBroadcast(s, 3u);
    let l4 = subgroupBroadcast(s, 4u);
    let l5 = subgroupBroadcast(s, 5u);
    let l6 = subgroupBroadcast(s, 6u);
    let l7 = subgroupBroadcast(s, 7u);
    return Rows8(
        vec4(l0.x, l2.x, l4.x, l6.x),
        vec4(l0.y, l2.y, l4.y, l6.y),
        vec4(l0.z, l2.z, l4.z, l6.z),
        vec4(l0.w, l2.w, l4.w, l6.w),
        vec4(l1.x, l3.x, l5.x, l7.x),
        vec4(l1.y, l3.y, l5.y, l7.y),
        vec4(l1.z, l3.z, l5.z, l7.z),
        vec4(l1.w, l3.w, l5.w, l7.w),
    );
}

fn a_row(t: Tile, slot: u32) -> u32 {
    return min(t.m0 + 8u * slot + t.sl, p.m - 1u);
}

// A with any strides: lane l reads its row's four k with scalar loads.
fn a_any(t: Tile, bi: u32, k: u32, valid: u32) -> ATile {
    let base = p.a.off + bi * p.a.bs;
    let ks = vec4(min(k, p.k - 1u), min(k + 1u, p.k - 1u), min(k + 2u, p.k - 1u), min(k + 3u, p.k - 1u)) * p.a.cs;
    let r0 = base + a_row(t, 0u) * p.a.rs;
    let s0 = mask4(vec4(a[r0 + ks.x], a[r0 + ks.y], a[r0 + ks.z], a[r0 + ks.w]), valid);
    var s1 = vec4(0.0);
    if (TM > 8u) {
        let r1 = base + a_row(t, 1u) * p.a.rs;
        s1 = mask4(vec4(a[r1 + ks.x], a[r1 + ks.y], a[r1 + ks.z], a[r1 + ks.w]), valid);
    }
    return ATile(rows_k4(s0), rows_k4(s1));
}

// A rows contiguous along k: lane l reads row l's k..k+3 as one vec4.
fn a_k4(t: Tile, bi: u32, k: u32, valid: u32) -> ATile {
    let base = p.a.off + bi * p.a.bs + k;
    let s0 = mask4(a4[(base + a_row(t, 0u) * p.a.rs) / 4u], valid);
    var s1 = vec4(0.0);
    if (TM > 8u) { s1 = mask4(a4[(base + a_row(t, 1u) * p.a.rs) / 4u], valid); }
    return ATile(rows_k4(s0), rows_k4(s1));
}

// A columns contiguous along m: lane l reads rows 4·(l&1)..+3 at k + l/2 as one vec4.
fn a_m4(t: Tile, bi: u32, k: u32, valid: u32) -> ATile {
    let kk = t.sl >> 1u;
    let base = p.a.off + bi * p.a.bs + min(k + kk, p.k - 1u) * p.a.cs;
    let last = (p.m - 1u) & ~3u;
    let h = 4u * (t.sl & 1u);
    let z = vec4(0.0);
    let s0 = select(z, a4[(base + min(t.m0 + h, last)) / 4u], kk < valid);
    var s1 = z;
    if (TM > 8u) { s1 = select(z, a4[(base + min(t.m0 + 8u + h, last)) / 4u], kk < valid); }
    return ATile(rows_m4(s0), rows_m4(s1));
}

fn b_rows(k: u32) -> vec4<u32> {
    let last = p.k - 1u;
    return vec4(min(k, last), min(k + 1u, last), min(k + 2u, last), min(k + 3u, last));
}

fn b_cols(n: u32) -> vec4<u32> {
    let last = p.n - 1u;
    return vec4(min(n, last), min(n + 1u, last), min(n + 2u, last), min(n + 3u, last));
}

fn b_any_group(base: u32, r: u32, cs: vec4<u32>) -> vec4<f32> {
    let o = base + r * p.b.rs;
    return vec4(b[o + cs.x], b[o + cs.y], b[o + cs.z], b[o + cs.w]);
}

// B with any strides: scalar loads.
fn b_any(t: Tile, bi: u32, k: u32, valid: u32) -> BTile {
    let base = p.b.off + bi * p.b.bs;
    let kr = b_rows(k);
    let c0 = b_cols(t.n0) * p.b.cs;
    let x0 = b_any_group(base, kr.x, c0);
    let x1 = b_any_group(base, kr.y, c0);
    let x2 = b_any_group(base, kr.z, c0);
    let x3 = b_any_group(base, kr.w, c0);
    var y0 = vec4(0.0);
    var y1 = vec4(0.0);
    var y2 = vec4(0.0);
    var y3 = vec4(0.0);
    if (TN > 4u) {
        let c1 = b_cols(t.n0 + 4u) * p.b.cs;
        y0 = b_any_group(base, kr.x, c1);
        y1 = b_any_group(base, kr.y, c1);
        y2 = b_any_group(base, kr.z, c1);
        y3 = b_any_group(base, kr.w, c1);
    }
    return mask_b(BTile(x0, x1, x2, x3, y0, y1, y2, y3), valid);
}

// B rows contiguous along n: each row's four columns are one vec4.
fn b_n4(t: Tile, bi: u32, k: u32, valid: u32) -> BTile {
    let kr = (p.b.off + bi * p.b.bs + b_rows(k) * p.b.rs) / 4u;
    let last = (p.n - 1u) & ~3u;
    let g0 = min(t.n0, last) / 4u;
    let x0 = b4[kr.x + g0];
    let x1 = b4[kr.y + g0];
    let x2 = b4[kr.z + g0];
    let x3 = b4[kr.w + g0];
    var y0 = vec4(0.0);
    var y1 = vec4(0.0);
    var y2 = vec4(0.0);
    var y3 = vec4(0.0);
    if (TN > 4u) {
        let g1 = min(t.n0 + 4u, last) / 4u;
        y0 = b4[kr.x + g1];
        y1 = b4[kr.y + g1];
        y2 = b4[kr.z + g1];
        y3 = b4[kr.w + g1];
    }
    return mask_b(BTile(x0, x1, x2, x3, y0, y1, y2, y3), valid);
}

// B columns contiguous along k: each column's k..k+3 is one vec4; transposed in registers.
fn b_k4(t: Tile, bi: u32, k: u32, valid: u32) -> BTile {
    let base = (p.b.off + bi * p.b.bs + k) / 4u;
    let cs = p.b.cs / 4u;
    let c0 = b_cols(t.n0);
    let u0 = mask4(b4[base + c0.x * cs], valid);
    let u1 = mask4(b4[base + c0.y * cs], valid);
    let u2 = mask4(b4[base + c0.z * cs], valid);
    let u3 = mask4(b4[base + c0.w * cs], valid);
    var v0 = vec4(0.0);
    var v1 = vec4(0.0);
    var v2 = vec4(0.0);
    var v3 = vec4(0.0);
    if (TN > 4u) {
        let c1 = b_cols(t.n0 + 4u);
        v0 = mask4(b4[base + c1.x * cs], valid);
        v1 = mask4(b4[base + c1.y * cs], valid);
        v2 = mask4(b4[base + c1.z * cs], valid);
        v3 = mask4(b4[base + c1.w * cs], valid);
    }
    return BTile(
        vec4(u0.x, u1.x, u2.x, u3.x),
        vec4(u0.y, u1.y, u2.y, u3.y),
        vec4(u0.z, u1.z, u2.z, u3.z),
        vec4(u0.w, u1.w, u2.w, u3.w),
        vec4(v0.x, v1.x, v2.x, v3.x),
        vec4(v0.y, v1.y, v2.y, v3.y),
        vec4(v0.z, v1.z, v2.z, v3.z),
        vec4(v0.w, v1.w, v2.w, v3.w),
    );
}

// The K tail: reduction steps kk >= valid read zeros in both operands (whatever lies in memory
// there, even NaN, contributes exactly 0).
fn mask4(v: vec4<f32>, valid: u32) -> vec4<f32> {
    return select(vec4(0.0), v, vec4(0u, 1u, 2u, 3u) < vec4(valid));
}

fn mask_b(t: BTile, valid: u32) -> BTile {
    let z = vec4(0.0);
    return BTile(t.x0, select(z, t.x1, valid > 1u), select(z, t.x2, valid > 2u), select(z, t.x3, valid > 3u),
                 t.y0, select(z, t.y1, valid > 1u), select(z, t.y2, valid > 2u), select(z, t.y3, valid > 3u));
}

fn row4(acc: ptr<private, vec4<f32>>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) {
    *acc = fma(vec4(a.w), b3, fma(vec4(a.z), b2, fma(vec4(a.y), b1, fma(vec4(a.x), b0, *acc))));
}

// Four reduction steps of the TM × TN tile.
fn rank4(at: ATile, bt: BTile) {
    row4(&acc0_0, at.lo.r0, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc0_1, at.lo.r0, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc1_0, at.lo.r1, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc1_1, at.lo.r1, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc2_0, at.lo.r2, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc2_1, at.lo.r2, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc3_0, at.lo.r3, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc3_1, at.lo.r3, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc4_0, at.lo.r4, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc4_1, at.lo.r4, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc5_0, at.lo.r5, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc5_1, at.lo.r5, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc6_0, at.lo.r6, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc6_1, at.lo.r6, bt.y0, bt.y1, bt.y2, bt.y3); }
    row4(&acc7_0, at.lo.r7, bt.x0, bt.x1, bt.x2, bt.x3);
    if (TN > 4u) { row4(&acc7_1, at.lo.r7, bt.y0, bt.y1, bt.y2, bt.y3); }
    if (TM > 8u) {
        row4(&acc8_0, at.hi.r0, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc8_1, at.hi.r0, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc9_0, at.hi.r1, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc9_1, at.hi.r1, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc10_0, at.hi.r2, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc10_1, at.hi.r2, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc11_0, at.hi.r3, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc11_1, at.hi.r3, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc12_0, at.hi.r4, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc12_1, at.hi.r4, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc13_0, at.hi.r5, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc13_1, at.hi.r5, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc14_0, at.hi.r6, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc14_1, at.hi.r6, bt.y0, bt.y1, bt.y2, bt.y3); }
        row4(&acc15_0, at.hi.r7, bt.x0, bt.x1, bt.x2, bt.x3);
        if (TN > 4u) { row4(&acc15_1, at.hi.r7, bt.y0, bt.y1, bt.y2, bt.y3); }
    }
}

fn store4(z: u32, m: u32, n: u32, v: vec4<f32>) {
    let base = p.c.off + z * p.c.bs + m * p.c.rs;
    for (var t = 0u; t < 4u; t++) {
        if (n + t < p.n) {
            let idx = base + (n + t) * p.c.cs;
            var r = p.alpha * v[t];
            if (p.accumulate != 0u) { r += c[idx]; }
            c[idx] = r;
        }
    }
}

// store4 where the four columns are one aligned vec4 of C (n and p.n multiples of 4).
fn store4_c4(z: u32, m: u32, n: u32, v: vec4<f32>) {
    if (n < p.n) {
        let idx = (p.c.off + z * p.c.bs + m * p.c.rs + n) / 4u;
        var r = p.alpha * v;
        if (p.accumulate != 0u) { r += c4[idx]; }
        c4[idx] = r;
    }
}

// The tile goes through a function-local array so that the store loop can run over a runtime
// row count instead of being unrolled TM·TN/4 times (smaller code, much faster to compile; the
// vec4 store also needs an upper bound LLVM cannot see, Params.zero).
fn tile_array() -> array<vec4<f32>, 32> {
    return array<vec4<f32>, 32>(
        acc0_0, acc0_1,
        acc1_0, acc1_1,
        acc2_0, acc2_1,
        acc3_0, acc3_1,
        acc4_0, acc4_1,
        acc5_0, acc5_1,
        acc6_0, acc6_1,
        acc7_0, acc7_1,
        acc8_0, acc8_1,
        acc9_0, acc9_1,
        acc10_0, acc10_1,
        acc11_0, acc11_1,
        acc12_0, acc12_1,
        acc13_0, acc13_1,
        acc14_0, acc14_1,
        acc15_0, acc15_1,
    );
}

// The tile's stores, C one float at a time or (store_c4) as vec4s: two functions since one
// entry point may name c or c4 but not both (store_c4's row bound: see Params.zero).
fn store(t: Tile, z: u32) {
    var tile = tile_array();
    let rows = min(TM, p.m - t.m0);
    for (var i = 0u; i < rows; i++) {
        store4(z, t.m0 + i, t.n0, tile[2u * i]);
        if (TN > 4u) { store4(z, t.m0 + i, t.n0 + 4u, tile[2u * i + 1u]); }
    }
}

fn store_c4(t: Tile, z: u32) {
    var tile = tile_array();
    let rows = min(TM + p.zero, p.m - t.m0);
    for (var i = 0u; i < rows; i++) {
        store4_c4(z, t.m0 + i, t.n0, tile[2u * i]);
        if (TN > 4u) { store4_c4(z, t.m0 + i, t.n0 + 4u, tile[2u * i + 1u]); }
    }
}

// One K loop per pair of operand layouts (any / vec4 along k / vec4 along m or n), each walking
// its slice in steps of four, and two entry points per pair: C stored one float at a time
// (gemm_<a><b>) or as vec4s (gemm_<a><b>_c4: C has unit column stride, n and every offset and
// stride a multiple of 4; one per-lane store instead of four, and one load when accumulating).

fn mul_gg(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_any(t, bi, k, valid), b_any(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_gg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gg(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_gg_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gg(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_gn(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_any(t, bi, k, valid), b_n4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_gn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gn(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_gn_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gn(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_gk(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_any(t, bi, k, valid), b_k4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_gk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gk(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_gk_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_gk(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_kg(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_k4(t, bi, k, valid), b_any(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_kg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kg(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_kg_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kg(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_kn(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_k4(t, bi, k, valid), b_n4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_kn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kn(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_kn_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kn(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_kk(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_k4(t, bi, k, valid), b_k4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_kk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kk(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_kk_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_kk(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_mg(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_m4(t, bi, k, valid), b_any(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_mg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mg(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_mg_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mg(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_mn(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_m4(t, bi, k, valid), b_n4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_mn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mn(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_mn_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mn(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

fn mul_mk(t: Tile, r: Range) {
    clear();
    for (var bi = r.b0; bi < r.b1; bi++) {
        for (var k = r.k0; k < r.k1; k += 4u) {
            let valid = min(4u, r.k1 - k);
            rank4(a_m4(t, bi, k, valid), b_k4(t, bi, k, valid));
        }
    }
}

@compute @workgroup_size(WG)
fn gemm_mk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mk(t, slice_range(wid.z));
    store(t, wid.z);
}

@compute @workgroup_size(WG)
fn gemm_mk_c4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let t = tile(wid, nwg, lid, sid);
    mul_mk(t, slice_range(wid.z));
    store_c4(t, wid.z);
}

// C[o] = alpha · Σ_s parts[o·slices_per_out + s] (+ C[o]): one lane per output element, over a
// handful of slices.
@compute @workgroup_size(WG_REDUCE)
fn gemm_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_REDUCE;
    let mn = p.m * p.n;
    if (e >= mn * p.out_count) { return; }
    let ob = e / mn;
    let rem = e % mn;
    let m = rem / p.n;
    let n = rem % p.n;
    var s = 0.0;
    let first = ob * p.slices_per_out;
    for (var z = first; z < first + p.slices_per_out; z++) { s += parts[z * mn + rem]; }
    let idx = p.c.off + ob * p.c.bs + m * p.c.rs + n * p.c.cs;
    var v = p.alpha * s;
    if (p.accumulate != 0u) { v += c[idx]; }
    c[idx] = v;
}

// C[z, m, n] += bias[a.off + m·a.rs + n·a.cs] over `batch` m × n matrices: a stride of 0
// broadcasts the bias (a Linear's along the rows, a convolution's along the pixels). The bias
// is read through binding 2. One lane per element.
@compute @workgroup_size(WG_REDUCE)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_REDUCE;
    let mn = p.m * p.n;
    if (e >= mn * p.batch) { return; }
    let m = (e % mn) / p.n;
    let n = e % p.n;
    let idx = p.c.off + (e / mn) * p.c.bs + m * p.c.rs + n * p.c.cs;
    c[idx] = c[idx] + parts[p.a.off + m * p.a.rs + n * p.a.cs];
}

var<workgroup> red: array<f32, WG_REDUCE>;

// C[n] = alpha · Σ_m A[m, n] (+ C[n]): one workgroup per column, a strided partial sum per lane,
// then a tree in workgroup memory. C's element n is at c.off + n·c.cs.
@compute @workgroup_size(WG_REDUCE)
fn col_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) t: u32) {
    let n = wid.x + wid.y * nwg.x;
    let col = min(n, p.n - 1u);
    var s = 0.0;
    for (var m = t; m < p.m; m += WG_REDUCE) { s += parts[p.a.off + m * p.a.rs + col * p.a.cs]; }
    red[t] = s;
    workgroupBarrier();
    for (var h = WG_REDUCE / 2u; h > 0u; h >>= 1u) {
        if (t < h) { red[t] += red[t + h]; }
        workgroupBarrier();
    }
    if (t == 0u && n < p.n) {
        let idx = p.c.off + n * p.c.cs;
        var v = p.alpha * red[0];
        if (p.accumulate != 0u) { v += c[idx]; }
        c[idx] = v;
    }
}
