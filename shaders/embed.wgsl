// Embedding models (Song et al. 2017): the L2-normalised head and the embedding losses, on
// embeddings E [B, D] (row-major).
//
// - l2n_forward / l2n_backward: e = z / max(‖z‖, 1e-12) per row (F.normalize), and
//   dz (+)= (dy − [‖z‖ ≥ 1e-12]·e·(e·dy)) / max(‖z‖, 1e-12). TPR lanes per row.
// - Triplet losses (Hermans et al. 2017) in passes over B×B matrices kept in one scratch buffer
//   (element offsets in the parameters): the Gram matrix G = E·Eᵀ (a GEMM, built in Rust) →
//   pair_dist (d_ij = sqrt(max(G_ii + G_jj − 2·G_ij, 1e-12))) → mining (hard_mine per anchor,
//   or all_count per (anchor, other) pair) → *_finish (one workgroup: the loss and its
//   normaliser into the scratch's tail) → *_coef (A_ij = dL/dd_ij / (2·d_ij), 0 where the clamp
//   is active) → pair_mat (M = 2·(diag(rowsum S) − S), S = A + Aᵀ) → dE = M·E (a GEMM) and
//   loss_sum (the loss into its 1-element buffer).
// - distill_rows / loss_sum: mean_b Σ_k (e_bk − t_bk)² and its gradient 2·(e − t)/B.
//
// Ties in the batch-hard mining go to the lowest index (strict comparisons in index order).

struct Params {
    batch: u32,
    dim: u32,
    margin: f32,
    accumulate: u32, // l2n_backward: 1 = dz += result, 0 = dz = result
    // Element offsets in the scratch buffer: Gram matrix, distances, coefficients (batch-all:
    // the signed triplet counts first), the matrix M, the mining results, and the tail
    // [count, 1/count, loss].
    g: u32,
    d: u32,
    a: u32,
    m: u32,
    work: u32,
    tail: u32,
    // loss_sum: loss = Σ_{i < count} sread[first + i] / divisor
    count: u32,
    first: u32,
    divisor: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;
// Threads per row (row kernels), a power of two dividing WG.
override TPR: u32 = 1;

// F.normalize's eps, and the clamp of the squared distance.
const NORM_EPS: f32 = 1e-12;
const DIST_EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
// Binding 1 is written: the normalised rows or the input gradient (`out`), the scratch matrices
// (`sc`), or the 1-element loss (`loss_out`).
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> sc: array<f32>;
@group(0) @binding(1) var<storage, read_write> loss_out: array<f32>;
// Binding 2 is read: z or E (`xin`), the labels, or the scratch (`sread`, loss_sum).
@group(0) @binding(2) var<storage, read> xin: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> sread: array<f32>;
// Binding 3 is read: the upstream gradient or the teacher embeddings.
@group(0) @binding(3) var<storage, read> yin: array<f32>;
// Binding 4 is written: distill_rows' per-row partial losses.
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

// Flat workgroup index: grids wider than 65535 workgroups wrap into y (see gpu::grid).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Flat invocation index of a grid with one invocation per element, wrapped the same way.
fn global_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The scratch of the sums (a kernel that needs more declares its own).
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

// Sum of v over the whole workgroup: a tree, halving the live threads each step.
fn group_sum(li: u32, v: f32) -> f32 {
    workgroupBarrier();
    red_f[li] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (li < k) { red_f[li] += red_f[li + k]; }
        workgroupBarrier();
    }
    return red_f[0];
}

// group_sum of counts.
fn group_sum_u(li: u32, v: u32) -> u32 {
    workgroupBarrier();
    red_u[li] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (li < k) { red_u[li] += red_u[li + k]; }
        workgroupBarrier();
    }
    return red_u[0];
}

// Sum of v over the TPR lanes of each row group (lane = li % TPR); every lane gets its row's total.
fn row_sum(li: u32, lane: u32, v: f32) -> f32 {
    workgroupBarrier(); // earlier readers of red_f are done
    red_f[li] = v;
    workgroupBarrier();
    for (var k = TPR / 2u; k > 0u; k = k / 2u) {
        if (lane < k) { red_f[li] += red_f[li + k]; }
        workgroupBarrier();
    }
    return red_f[li - lane];
}

@compute @workgroup_size(WG)
fn l2n_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + li / TPR;
    let lane = li % TPR;
    let live = row < p.batch;
    let base = row * p.dim;
    var ss = 0.0;
    if (live) {
        for (var k = lane; k < p.dim; k += TPR) {
            let v = xin[base + k];
            ss += v * v;
        }
    }
    let m = max(sqrt(row_sum(li, lane, ss)), NORM_EPS);
    if (!live) { return; }
    for (var k = lane; k < p.dim; k += TPR) { out[base + k] = xin[base + k] / m; }
}

// With n = ‖z‖ and m = max(n, eps): e = z/m, and the clamp passes the gradient where n ≥ eps
// (PyTorch's clamp_min), so dz = dy/m − [n ≥ eps]·e·(e·dy)/m.
@compute @workgroup_size(WG)
fn l2n_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + li / TPR;
    let lane = li % TPR;
    let live = row < p.batch;
    let base = row * p.dim;
    var ss = 0.0;
    if (live) {
        for (var k = lane; k < p.dim; k += TPR) {
            let v = xin[base + k];
            ss += v * v;
        }
    }
    let n = sqrt(row_sum(li, lane, ss));
    let m = max(n, NORM_EPS);
    var ed = 0.0;
    if (live) {
        for (var k = lane; k < p.dim; k += TPR) { ed += (xin[base + k] / m) * yin[base + k]; }
    }
    let dot = select(0.0, row_sum(li, lane, ed), n >= NORM_EPS);
    if (!live) { return; }
    for (var k = lane; k < p.dim; k += TPR) {
        var g = (yin[base + k] - (xin[base + k] / m) * dot) / m;
        if (p.accumulate != 0u) { g += out[base + k]; }
        out[base + k] = g;
    }
}

// Σ_k (e_bk − t_bk)² per row into partials[b], and the gradient 2·(e − t)/B (overwritten).
@compute @workgroup_size(WG)
fn distill_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + li / TPR;
    let lane = li % TPR;
    let live = row < p.batch;
    let base = row * p.dim;
    let gs = 2.0 / f32(p.batch);
    var acc = 0.0;
    if (live) {
        for (var k = lane; k < p.dim; k += TPR) {
            let diff = xin[base + k] - yin[base + k];
            acc += diff * diff;
            out[base + k] = gs * diff;
        }
    }
    let total = row_sum(li, lane, acc);
    if (live && lane == 0u) { partials[row] = total; }
}

// ‖e_i‖² + ‖e_j‖² − 2·e_i·e_j from the Gram matrix.
fn sq_dist(i: u32, j: u32) -> f32 {
    let b = p.batch;
    return sc[p.g + i * b + i] + sc[p.g + j * b + j] - 2.0 * sc[p.g + i * b + j];
}

@compute @workgroup_size(WG)
fn pair_dist(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = global_index(gid, nwg);
    if (idx >= p.batch * p.batch) { return; }
    sc[p.d + idx] = sqrt(max(sq_dist(idx / p.batch, idx % p.batch), DIST_EPS));
}

// dL/dd_ij / (2·d_ij) for cell idx = (i, j) given w = dL/dd_ij: sqrt's derivative, and 0 where
// max(·, 1e-12) clamps the squared distance (PyTorch's clamp passes the gradient where x ≥ min).
fn coef(idx: u32, w: f32) -> f32 {
    if (w == 0.0 || sq_dist(idx / p.batch, idx % p.batch) < DIST_EPS) { return 0.0; }
    return w / (2.0 * sc[p.d + idx]);
}

// The tail: the number of terms the loss averages over, its inverse (0 when there are none) and
// the loss (total / count, 0 when there are none).
fn write_tail(n: u32, total: f32) {
    sc[p.tail] = f32(n);
    sc[p.tail + 1u] = select(0.0, 1.0 / f32(n), n > 0u);
    sc[p.tail + 2u] = select(0.0, total / f32(n), n > 0u);
}

// Batch-hard mining, one thread per anchor a: the farthest positive (same label, j ≠ a) and the
// nearest negative, each the lowest index among equals. Writes [d_ap − d_an + margin, valid,
// p, n] (indices as f32, exact below 2^24) at work + 4a; valid = 0 without a positive or a
// negative.
@compute @workgroup_size(WG)
fn hard_mine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = global_index(gid, nwg);
    let b = p.batch;
    if (a >= b) { return; }
    let la = labels[a];
    var ip = b;
    var in_ = b;
    var dp = 0.0;
    var dn = 0.0;
    for (var j = 0u; j < b; j++) {
        let d = sc[p.d + a * b + j];
        if (labels[j] == la) {
            if (j != a && (ip == b || d > dp)) {
                dp = d;
                ip = j;
            }
        } else if (in_ == b || d < dn) {
            dn = d;
            in_ = j;
        }
    }
    let valid = ip < b && in_ < b;
    let r = p.work + 4u * a;
    sc[r] = select(0.0, dp - dn + p.margin, valid);
    sc[r + 1u] = select(0.0, 1.0, valid);
    sc[r + 2u] = f32(ip);
    sc[r + 3u] = f32(in_);
}

// A_ij: anchor i's loss term, when above 0, pulls on d(i, p_i) with 1/count and on d(i, n_i)
// with −1/count (relu passes the gradient where its input is > 0).
@compute @workgroup_size(WG)
fn hard_coef(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = global_index(gid, nwg);
    if (idx >= p.batch * p.batch) { return; }
    let i = idx / p.batch;
    let j = idx % p.batch;
    let r = p.work + 4u * i;
    var w = 0.0;
    if (sc[r + 1u] > 0.0 && sc[r] > 0.0) {
        let inv = sc[p.tail + 1u];
        if (j == u32(sc[r + 2u])) { w = inv; }
        if (j == u32(sc[r + 3u])) { w = -inv; }
    }
    sc[p.a + idx] = coef(idx, w);
}

// Batch-all counts, one thread per (anchor a, other j): for a positive j (same label, j ≠ a),
// the number of negatives n with h = d_aj − d_an + margin > 0 (at a + idx) and Σ h over them
// (at work + idx); for a negative j, minus the number of positives p with d_ap − d_aj + margin
// > 0. Both sides evaluate each h with the same operations, so they count the same triplets.
@compute @workgroup_size(WG)
fn all_count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = global_index(gid, nwg);
    let b = p.batch;
    if (idx >= b * b) { return; }
    let a = idx / b;
    let j = idx % b;
    let la = labels[a];
    let row = p.d + a * b;
    let daj = sc[row + j];
    var cnt = 0u;
    var s = 0.0;
    var sign = 0.0;
    if (j != a && labels[j] == la) {
        sign = 1.0;
        for (var n = 0u; n < b; n++) {
            if (labels[n] != la) {
                let h = daj - sc[row + n] + p.margin;
                if (h > 0.0) {
                    cnt += 1u;
                    s += h;
                }
            }
        }
    } else if (labels[j] != la) {
        sign = -1.0;
        for (var q = 0u; q < b; q++) {
            if (q != a && labels[q] == la) {
                let h = sc[row + q] - daj + p.margin;
                if (h > 0.0) { cnt += 1u; }
            }
        }
    }
    sc[p.a + idx] = sign * f32(cnt);
    sc[p.work + idx] = s;
}

// The loss and its normaliser into the tail, one workgroup: hard_finish, the mean of
// relu(d_ap − d_an + margin) over the valid anchors (flag c = valid); all_finish, Σ h over the
// triplets with h > 0 divided by their number (c = the signed count of (a, j)).
@compute @workgroup_size(WG)
fn hard_finish(@builtin(local_invocation_index) li: u32) {
    var n = 0u;
    var s = 0.0;
    for (var t = li; t < p.batch; t += WG) {
        let c = sc[p.work + 4u * t + 1u];
        if (c > 0.0) {
            n += 1u;
            s += max(sc[p.work + 4u * t], 0.0);
        }
    }
    let total = group_sum(li, s);
    let count = group_sum_u(li, n);
    if (li == 0u) { write_tail(count, total); }
}

@compute @workgroup_size(WG)
fn all_finish(@builtin(local_invocation_index) li: u32) {
    var n = 0u;
    var s = 0.0;
    for (var t = li; t < p.batch * p.batch; t += WG) {
        let c = sc[p.a + t];
        if (c > 0.0) {
            n += u32(c);
            s += sc[p.work + t];
        }
    }
    let total = group_sum(li, s);
    let count = group_sum_u(li, n);
    if (li == 0u) { write_tail(count, total); }
}

// A_ij from the signed counts, in place: dL/dd_ij = count_ij / N for a positive j and
// −count_ij / N for a negative one.
@compute @workgroup_size(WG)
fn all_coef(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = global_index(gid, nwg);
    if (idx >= p.batch * p.batch) { return; }
    sc[p.a + idx] = coef(idx, sc[p.a + idx] * sc[p.tail + 1u]);
}

// M = 2·(diag(rowsum S) − S) with S = A + Aᵀ, one thread per row: then dE = M·E.
@compute @workgroup_size(WG)
fn pair_mat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    let b = p.batch;
    if (i >= b) { return; }
    var r = 0.0;
    for (var k = 0u; k < b; k++) { r += sc[p.a + i * b + k] + sc[p.a + k * b + i]; }
    for (var j = 0u; j < b; j++) {
        let s = sc[p.a + i * b + j] + sc[p.a + j * b + i];
        sc[p.m + i * b + j] = 2.0 * (select(0.0, r, i == j) - s);
    }
}

// loss[0] = Σ_{i < count} sread[first + i] / divisor. One workgroup.
@compute @workgroup_size(WG)
fn loss_sum(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < p.count; i += WG) { acc += sread[p.first + i]; }
    let total = group_sum(li, acc);
    if (li == 0u) { loss_out[0] = total / p.divisor; }
}
