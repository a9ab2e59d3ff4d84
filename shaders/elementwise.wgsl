// Elementwise kernels over flat f32 buffers: ReLU forward and backward, and out (+)= alpha·x
// (gradient accumulation over micro-batches).
// Grid: flat index = global x + global y * (num_workgroups.x * WG), so more than 65535
// workgroups fit (see gpu::grid).

struct Params {
    n: u32,
    accumulate: u32, // 1 = out += result, 0 = out = result
    alpha: f32,      // scale_add's factor
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// Flat workgroup index: grids wider than 65535 workgroups wrap into y (see gpu::grid).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Flat invocation index of a grid with one invocation per element, wrapped the same way.
fn global_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = max(x[i], 0.0);
}

// dx = dy where x > 0 (PyTorch's convention: the gradient at exactly 0 is 0).
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    if (i >= p.n) { return; }
    var g = select(0.0, dy[i], x[i] > 0.0);
    if (p.accumulate != 0u) { g += out[i]; }
    out[i] = g;
}


// out = alpha·x, or out += alpha·x with accumulate.
@compute @workgroup_size(WG)
fn scale_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    if (i >= p.n) { return; }
    var v = p.alpha * x[i];
    if (p.accumulate != 0u) { v += out[i]; }
    out[i] = v;
}
