// Adam / AdamW step over elements offset..offset+len of flat p, g, m, v buffers (one dispatch per
// parameter group), exactly as torch.optim.Adam / AdamW (foreach=False) order the arithmetic:
//   AdamW: p *= 1 − lr·wd;   Adam: g += wd·p
//   m += (1 − β1)·(g − m);   v = β2·v + (1 − β2)·g²
//   p −= step_size · m / (sqrt(v) / bc2_sqrt + eps),  step_size = lr / (1 − β1^t)
// The hyperparameters live in a storage buffer the host rewrites every step (the step number and
// the learning rate change, the dispatch does not).

struct AdamParams {
    offset: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

// Mirrors ops::adam::AdamHyper.
struct AdamHyper {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: u32,
    step_size: f32,      // lr / (1 − β1^t), from f64 on the host
    bc2_sqrt: f32,       // sqrt(1 − β2^t), from f64 on the host
    decay: f32,          // AdamW: 1 − lr·wd, from f64 on the host
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    step: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<storage, read> hyper: AdamHyper;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m1: array<f32>;
@group(0) @binding(5) var<storage, read_write> m2: array<f32>;

@compute @workgroup_size(WG)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= ap.len) { return; }
    let i = ap.offset + k;
    let h = hyper;
    var p = param[i];
    var g = grad[i];
    if (h.decoupled != 0u) {
        p *= h.decay;
    } else {
        g += h.weight_decay * p;
    }
    let m0 = m1[i];
    let m = m0 + h.one_minus_beta1 * (g - m0);
    let v = h.beta2 * m2[i] + h.one_minus_beta2 * g * g;
    m1[i] = m;
    m2[i] = v;
    let denom = sqrt(v) / h.bc2_sqrt + h.eps;
    param[i] = p - h.step_size * (m / denom);
}
