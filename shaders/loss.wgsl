// Class-balanced losses of logits z [B, C] with per-class weights w [C], value and gradient in
// one go (Cui et al. 2019, eq. 3 and its focal variant; gamma = 0 is the plain loss):
//   softmax: L = Σ_b w[y_b]·(1 − p_y)^γ·(−log p_y) / Σ_b w[y_b]     (class ids y_b; y_b ≥ C is ignored)
//   sigmoid: L = mean_b Σ_c w_c·FL(z_bc, y_bc) / Σ_c w_c,
//            FL = y·(1 − p)^γ·(−log p) + (1 − y)·p^γ·(−log(1 − p))  (= BCE at γ = 0)
// and dL/dz · scale. Passes: [softmax_norm] → *_rows (TPR threads per row) → loss_finish, with
// per-row partial losses in `scratch[1 + b]` (already divided by the normaliser) and the softmax
// normaliser Σ_b w[y_b] in `scratch[0]`.

struct LossParams {
    batch: u32,
    classes: u32,
    gamma: f32,
    scale: f32, // multiplies the gradient (gradient accumulation)
}

override WG: u32 = 256;
// Threads per row, a power of two dividing WG.
override TPR: u32 = 1;

const NEG_BIG: f32 = -3.4028235e38;

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;
// Softmax: class ids. Sigmoid: the f32 bits of the 0/1 targets [B, C].
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

// loss_finish binds the partials and the 1-element loss at 1 and 2 (same access modes as above).
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss_out: array<f32>;

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

// row_lse reduces (max, r) pairs: the maxima in red_f, the r here.
var<workgroup> sh_r: array<f32, WG>;

// log(1 + r). Vulkan's log() only promises an absolute error of 2^-21 for arguments in
// [0.5, 2] (lavapipe uses that), too coarse when the result is small, so there we sum
// 2·atanh(u) = log((1 + u)/(1 − u)) with u = r/(2 + r), |u| ≤ 1/3 (terms to u^15: < 2^-24).
fn log1p(r: f32) -> f32 {
    if (r < -0.5 || r > 1.0) { return log(1.0 + r); }
    let u = r / (2.0 + r);
    let u2 = u * u;
    var s = 1.0 / 15.0;
    s = s * u2 + 1.0 / 13.0;
    s = s * u2 + 1.0 / 11.0;
    s = s * u2 + 1.0 / 9.0;
    s = s * u2 + 1.0 / 7.0;
    s = s * u2 + 1.0 / 5.0;
    s = s * u2 + 1.0 / 3.0;
    s = s * u2 + 1.0;
    return 2.0 * u * s;
}

// log(x) for x in (0, 1], accurate near 1 too.
fn log_unit(x: f32) -> f32 {
    if (x >= 0.5) { return log1p(x - 1.0); }
    return log(x);
}

// exp(x) − 1, accurate near 0 where exp(x) − 1 cancels (Taylor to x^8/8! for |x| < 0.5).
fn expm1(x: f32) -> f32 {
    if (abs(x) >= 0.5) { return exp(x) - 1.0; }
    var s = 1.0 / 40320.0;
    s = s * x + 1.0 / 5040.0;
    s = s * x + 1.0 / 720.0;
    s = s * x + 1.0 / 120.0;
    s = s * x + 1.0 / 24.0;
    s = s * x + 1.0 / 6.0;
    s = s * x + 0.5;
    s = s * x + 1.0;
    return x * s;
}

// log(1 + e^x) without overflow.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p(exp(-abs(x)));
}

fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

// x^g for x in [0, 1], with 0^0 = 1 (pow(0, 0) is undefined in WGSL) and the digits of x near 1.
fn powg(x: f32, g: f32) -> f32 {
    if (g == 0.0) { return 1.0; }
    if (x <= 0.0) { return 0.0; }
    return exp(g * log_unit(x));
}

// Softmax rows are summarised as (m, r): the max and r = Σ_{c ≠ argmax} exp(z_c − m), so that
// log Σ exp(z − m) = log1p(r) keeps its digits when one class dominates (p_y near 1), and
// z − m − log1p(r) loses nothing to the magnitude of m (log-softmax as torch computes it).
fn lse_push(mr: vec2<f32>, z: f32) -> vec2<f32> {
    if (z > mr.x) { return vec2(z, (mr.y + 1.0) * exp(mr.x - z)); }
    return vec2(mr.x, mr.y + exp(z - mr.x));
}

fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (a.x >= b.x) { return vec2(a.x, a.y + (b.y + 1.0) * exp(b.x - a.x)); }
    return vec2(b.x, b.y + (a.y + 1.0) * exp(a.x - b.x));
}

// The row group's (max, log Σ exp(z − max)) from each lane's (m, r).
fn row_lse(li: u32, lane: u32, mr: vec2<f32>) -> vec2<f32> {
    workgroupBarrier();
    red_f[li] = mr.x;
    sh_r[li] = mr.y;
    workgroupBarrier();
    for (var k = TPR / 2u; k > 0u; k = k / 2u) {
        if (lane < k) {
            let c = lse_merge(vec2(red_f[li], sh_r[li]), vec2(red_f[li + k], sh_r[li + k]));
            red_f[li] = c.x;
            sh_r[li] = c.y;
        }
        workgroupBarrier();
    }
    return vec2(red_f[li - lane], log1p(sh_r[li - lane]));
}

// scratch[0] = Σ_b w[y_b] over the labelled rows. One workgroup.
@compute @workgroup_size(WG)
fn softmax_norm(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var b = li; b < p.batch; b += WG) {
        let y = targets[b];
        if (y < p.classes) { acc += weights[y]; }
    }
    let total = group_sum(li, acc);
    if (li == 0u) { scratch[0] = total; }
}

@compute @workgroup_size(WG)
fn softmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + li / TPR;
    let lane = li % TPR;
    let live = row < p.batch;
    let nc = p.classes;
    let base = row * nc;
    // Online max and sum of exponentials: one read of the row for the log-sum-exp. A lane with
    // no classes holds (NEG_BIG, 0), which the merge weighs exp(NEG_BIG − m) = 0.
    var mr = vec2(NEG_BIG, 0.0);
    if (live) {
        for (var c = lane; c < nc; c += TPR) { mr = lse_push(mr, logits[base + c]); }
    }
    let ml = row_lse(li, lane, mr);
    if (!live) { return; }

    let y = targets[row];
    let norm = scratch[0];
    let inv_w = select(0.0, 1.0 / norm, norm > 0.0);
    var gf = 0.0;
    var q = 0.0;
    var row_loss = 0.0;
    if (y < nc) {
        let wy = weights[y];
        let ell = max(ml.y - (logits[base + y] - ml.x), 0.0); // −log p_y
        let py = exp(-ell);
        q = -expm1(-ell); // 1 − p_y
        let qg = powg(q, p.gamma);
        // d/dz_c [(1−p_y)^γ·ℓ] = A·(p_c − δ_yc) with A = q^γ·(1 + γ·p_y·ℓ/q); ℓ/q → 1 as q → 0.
        let r = select(1.0, ell / q, q > 0.0);
        gf = p.scale * wy * qg * (1.0 + p.gamma * py * r) * inv_w;
        row_loss = wy * qg * ell * inv_w;
    }
    // p_y − 1 = −q, which keeps its digits when p_y is close to 1.
    for (var c = lane; c < nc; c += TPR) {
        let pc = exp(logits[base + c] - ml.x - ml.y);
        grad[base + c] = gf * select(pc, -q, c == y);
    }
    if (lane == 0u) { scratch[1u + row] = row_loss; }
}

@compute @workgroup_size(WG)
fn sigmoid_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = group_index(wid, nwg) * (WG / TPR) + li / TPR;
    let lane = li % TPR;
    let live = row < p.batch;
    let nc = p.classes;
    let base = row * nc;
    let g = p.gamma;

    // Σ_c w_c first, so the gradient can be written in the same pass as the loss.
    var sw = 0.0;
    if (live) {
        for (var c = lane; c < nc; c += TPR) { sw += weights[c]; }
    }
    let wsum = row_sum(li, lane, sw);
    let inv = 1.0 / (wsum * f32(p.batch));

    var acc = 0.0;
    if (live) {
        let gf = p.scale * inv;
        for (var c = lane; c < nc; c += TPR) {
            let z = logits[base + c];
            let y = bitcast<f32>(targets[base + c]);
            let w = weights[c];
            let nlp = softplus(-z); // −log p
            let nlq = softplus(z);  // −log(1 − p)
            let pp = sigmoid(z);
            let pq = sigmoid(-z);
            let mp = exp(-g * nlq); // (1 − p)^γ
            let mq = exp(-g * nlp); // p^γ
            acc += w * (y * mp * nlp + (1.0 - y) * mq * nlq);
            let d = (1.0 - y) * mq * (g * pq * nlq + pp) - y * mp * (g * pp * nlp + pq);
            grad[base + c] = gf * w * d;
        }
    }
    let total = row_sum(li, lane, acc);
    if (live && lane == 0u) { scratch[1u + row] = total * inv; }
}

// loss[0] = Σ_b partials[1 + b]. One workgroup.
@compute @workgroup_size(WG)
fn loss_finish(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var b = li; b < p.batch; b += WG) { acc += partials[1u + b]; }
    let total = group_sum(li, acc);
    if (li == 0u) { loss_out[0] = total; }
}
