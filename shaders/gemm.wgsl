// Strided, batched GEMM: C_b = alpha · A_b · B_b (+ C_b), every matrix addressed as
// off + batch·bs + row·rs + col·cs, so transposes and NCHW channel slices cost nothing.
//
// Why this shape of kernel (lavapipe/llvmpipe, where an invocation is one SIMD lane): a storage
// load whose address is the same for every lane is one scalar load, while a per-lane address is a
// gather, several times dearer. So each workgroup owns TM rows of C (the A operand is read at
// lane-uniform addresses) and each lane owns TN columns (B is the only gathered operand): one
// gather feeds TM FMAs. The loops over TM and TN have constant bounds after specialisation and
// are unrolled, so the register arrays become plain registers.
//
// Grid: x = column tiles, y = row tiles, z = slices. Slice z covers batches g·b_chunk.. and
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
    _pad: u32,
}

override WG: u32 = 64;
override TM: u32 = 16;
override TN: u32 = 4;
override WG_REDUCE: u32 = 256;

const MAX_TM: u32 = 32u;
const MAX_TN: u32 = 16u;
const MAX_ACC: u32 = 128u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
// The vec4 entry point reads the same bindings four floats at a time.
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
// gemm_reduce reads the partial sums here.
@group(0) @binding(2) var<storage, read> parts: array<f32>;

var<private> acc: array<f32, MAX_ACC>;

struct Range {
    b0: u32,
    b1: u32,
    k0: u32,
    k1: u32,
}

fn slice_range(z: u32) -> Range {
    let g = z / p.k_splits;
    let s = z % p.k_splits;
    let b0 = g * p.b_chunk;
    let k0 = s * p.k_chunk;
    return Range(b0, min(p.batch, b0 + p.b_chunk), k0, min(p.k, k0 + p.k_chunk));
}

fn store_tile(z: u32, m0: u32, cols: array<u32, MAX_TN>) {
    let cbase = p.c.off + z * p.c.bs;
    for (var i = 0u; i < TM; i++) {
        let m = m0 + i;
        if (m >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            let n = cols[j];
            if (n < p.n) {
                let idx = cbase + m * p.c.rs + n * p.c.cs;
                var v = p.alpha * acc[i * TN + j];
                if (p.accumulate != 0u) { v += c[idx]; }
                c[idx] = v;
            }
        }
    }
}

fn clear_acc() {
    for (var i = 0u; i < TM * TN; i++) { acc[i] = 0.0; }
}

// Any strides: scalar loads, A at lane-uniform addresses, B gathered.
@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wid.y * TM;
    var cols: array<u32, MAX_TN>;
    var boff: array<u32, MAX_TN>;
    for (var j = 0u; j < TN; j++) {
        cols[j] = wid.x * WG * TN + j * WG + lid.x;
        // Out-of-range lanes read a valid column and never store.
        boff[j] = min(cols[j], p.n - 1u) * p.b.cs;
    }
    var aoff: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) { aoff[i] = min(m0 + i, p.m - 1u) * p.a.rs; }
    clear_acc();
    let r = slice_range(wid.z);
    for (var bi = r.b0; bi < r.b1; bi++) {
        let abase = p.a.off + bi * p.a.bs;
        let bbase = p.b.off + bi * p.b.bs;
        for (var k = r.k0; k < r.k1; k++) {
            let ak = abase + k * p.a.cs;
            let bk = bbase + k * p.b.rs;
            var bv: array<f32, MAX_TN>;
            for (var j = 0u; j < TN; j++) { bv[j] = b[bk + boff[j]]; }
            for (var i = 0u; i < TM; i++) {
                let av = a[ak + aoff[i]];
                for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(av, bv[j], acc[i * TN + j]); }
            }
        }
    }
    store_tile(wid.z, m0, cols);
}

// Unit column strides and offsets/strides that are multiples of 4: A rows and B rows are read
// as vec4 (A along k at lane-uniform addresses, B along n per lane; each lane owns TN/4 groups
// of 4 adjacent columns). k_chunk is a multiple of 4, so vec4 steps stay aligned; the K tail
// picks components.
@compute @workgroup_size(WG)
fn gemm_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wid.y * TM;
    let groups = TN / 4u;
    var cols: array<u32, MAX_TN>;
    var boff: array<u32, MAX_TN>;
    for (var g = 0u; g < groups; g++) {
        let n = wid.x * WG * TN + (g * WG + lid.x) * 4u;
        for (var t = 0u; t < 4u; t++) { cols[g * 4u + t] = n + t; }
        boff[g] = min(n, (p.n - 1u) & ~3u) / 4u;
    }
    var aoff: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) { aoff[i] = min(m0 + i, p.m - 1u) * p.a.rs / 4u; }
    clear_acc();
    let r = slice_range(wid.z);
    for (var bi = r.b0; bi < r.b1; bi++) {
        let abase = (p.a.off + bi * p.a.bs) / 4u;
        let bbase = (p.b.off + bi * p.b.bs) / 4u;
        let brs = p.b.rs / 4u;
        var k = r.k0;
        for (; k + 4u <= r.k1; k += 4u) {
            let ak = abase + k / 4u;
            let bk = bbase + k * brs;
            var bv: array<vec4<f32>, 16>;
            for (var q = 0u; q < 4u; q++) {
                for (var g = 0u; g < groups; g++) { bv[q * 4u + g] = b4[bk + q * brs + boff[g]]; }
            }
            for (var i = 0u; i < TM; i++) {
                let av = a4[ak + aoff[i]];
                for (var q = 0u; q < 4u; q++) {
                    for (var g = 0u; g < groups; g++) {
                        let o = i * TN + g * 4u;
                        let v = fma(vec4(av[q]), bv[q * 4u + g],
                                    vec4(acc[o], acc[o + 1u], acc[o + 2u], acc[o + 3u]));
                        acc[o] = v.x;
                        acc[o + 1u] = v.y;
                        acc[o + 2u] = v.z;
                        acc[o + 3u] = v.w;
                    }
                }
            }
        }
        for (; k < r.k1; k++) {
            let bk = bbase + k * brs;
            for (var i = 0u; i < TM; i++) {
                let av = a4[abase + k / 4u + aoff[i]][k % 4u];
                for (var g = 0u; g < groups; g++) {
                    let bv = b4[bk + boff[g]];
                    for (var t = 0u; t < 4u; t++) {
                        let o = i * TN + g * 4u + t;
                        acc[o] = fma(av, bv[t], acc[o]);
                    }
                }
            }
        }
    }
    store_tile(wid.z, m0, cols);
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
