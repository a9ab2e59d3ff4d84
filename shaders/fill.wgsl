// Fills: zeroing a channel view of an NCHW buffer (gradient storage that is accumulated into).

override WG: u32 = 256;

// Flat workgroup index: grids wider than 65535 workgroups wrap into y (see gpu::grid).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Flat invocation index of a grid with one invocation per element, wrapped the same way.
fn global_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Zero-fill of an NCHW channel view: channels c_off..c_off+c of a buffer with c_total channels.
struct FillParams {
    n: u32,       // images
    c: u32,       // channels in the view
    hw: u32,      // pixels per channel
    c_off: u32,
    c_total: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> fp: FillParams;
@group(0) @binding(1) var<storage, read_write> fill_out: array<f32>;

@compute @workgroup_size(WG)
fn fill_zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    let per_image = fp.c * fp.hw;
    if (i >= fp.n * per_image) { return; }
    let img = i / per_image;
    let r = i % per_image;
    fill_out[img * fp.c_total * fp.hw + fp.c_off * fp.hw + r] = 0.0;
}
