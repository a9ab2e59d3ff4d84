// 2-D convolution (NCHW activations, OIHW weights) as register-tiled implicit GEMM.
//
// Each GEMM puts one matrix dimension on the lanes (pixels or weight columns: TN <= 4
// consecutive columns per invocation, held as a vec4) and the other on the workgroup (TM <= 16
// channels per invocation, the same for every lane). Storage loads are the cost on llvmpipe:
// every one is a per-lane loop with a bounds check, even when all lanes read the same address.
// So the channel operand, which all lanes need, is not loaded by every lane: in a block of 8
// K steps, lane i of each subgroup loads the TM values of step i and subgroupBroadcast hands
// them to the others. Per K step an invocation then loads TN + TM/8 values for TM*TN FMAs.
// This needs subgroups of at least 8 invocations (the builders check).
//
// The register tile, the block of 8 steps and the epilogue are written out with guards on the
// override constants instead of loops over TM, TN and the steps: wgpu bounds every loop with an
// extra iteration counter, which stops the driver from unrolling it, and an accumulator array
// indexed inside a loop that is not unrolled lives in memory instead of registers.
//
// No loop bound or early return depends on the lane (subgroupBroadcast needs all lanes); rows
// and columns out of range are clamped for loads and only the final stores are guarded. The
// flat workgroup index is wid.x + wid.y * nwg.x (see gpu::grid); where the grid overshoots,
// the spare workgroups recompute the last tile and store nothing.

struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    p: u32, // output height
    q: u32, // output width
    accumulate: u32, // backward data: 1 = dx += result
    a_off: u32, // channel view of the input-side tensor (x or dx): first channel
    a_tot: u32, // ... and channels per image of its buffer
    b_off: u32, // channel view of the output-side tensor (y or dy)
    b_tot: u32,
    splits: u32, // backward weight: number of slices of the n*p*q reduction
    split_len: u32, // ... and the length of each
    len: u32, // reduce: elements of one partial result
    _pad: u32,
}

override WG: u32 = 64u; // invocations per workgroup
override TM: u32 = 16u; // channels per invocation (workgroup-uniform), 1..=16
override TN: u32 = 4u; // consecutive columns per invocation, 1..=4
override STRIDED: bool = false; // backward data: stride > 1 (taps may miss the output grid)
// Row-window kernels: the K loop ends in a block of at most 4 channels (K channels % 8 in
// 1..=4), so the block4 path is compiled (a second copy of the loop body: seconds of LLVM).
override SHORT_K: bool = true;
override RWG: u32 = 256u; // reductions: invocations per workgroup, a power of two <= 256

const MAX_TM: u32 = 16u;
const MAX_RWG: u32 = 256u;
const LANE4 = vec4<u32>(0u, 1u, 2u, 3u);

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>; // x, dy (backward data) or partials
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // y, dx, partials, dweight, dbias
@group(0) @binding(3) var<storage, read> wt: array<f32>; // weight, or dy (backward weight)
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// The same buffer as `src` seen as vec4s, for the row-window entry points that load four
// consecutive pixels at a time (one per-lane load instead of four). No entry point uses both.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
// `dst` as vec4s, for the entry points whose tiles store four consecutive pixels (store_tile4).
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

var<workgroup> red: array<f32, MAX_RWG>;

alias Acc = array<vec4<f32>, MAX_TM>;
alias Row = array<f32, MAX_TM>;
alias X8 = array<vec4<f32>, 8>;

// Flat workgroup index: grids wider than 65535 workgroups wrap into y (see gpu::grid).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Flat invocation index of a grid with one invocation per element, wrapped the same way.
fn global_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The tile a workgroup owns: channel block fastest, so consecutive workgroups (run back to back
// on one core) share the same columns of the lane-side operand while it is in cache.
struct Tile {
    m0: u32, // first channel
    cols: vec4<u32>, // this invocation's columns (the first TN count)
    extra: u32, // what is left of the flat index (the split, for backward weight)
}

fn tile(f: u32, lid: u32, rows: u32, ncols: u32, extra: u32) -> Tile {
    let mblocks = (rows + TM - 1u) / TM;
    let nblocks = (ncols + WG * TN - 1u) / (WG * TN);
    let fc = min(f, mblocks * nblocks * extra - 1u);
    let nb = (fc / mblocks) % nblocks;
    return Tile((fc % mblocks) * TM, (nb * WG + lid) * TN + LANE4, fc / (mblocks * nblocks));
}

// Where row m of the channel operand starts: rows past the end are clamped to the last one.
struct Rows {
    m0: u32,
    last: u32,
    stride: u32,
}

fn row_off(r: Rows, m: u32) -> u32 {
    return min(r.m0 + m, r.last) * r.stride;
}

// This lane's K step of the channel operand: wt[base + row m] for the TM rows (0 if !valid).
fn load_rows(r: Rows, base: u32, valid: bool) -> Row {
    var w: Row;
    w[0] = select(0.0, wt[base + row_off(r, 0u)], valid);
    if (TM > 1u) { w[1] = select(0.0, wt[base + row_off(r, 1u)], valid); }
    if (TM > 2u) { w[2] = select(0.0, wt[base + row_off(r, 2u)], valid); }
    if (TM > 3u) { w[3] = select(0.0, wt[base + row_off(r, 3u)], valid); }
    if (TM > 4u) { w[4] = select(0.0, wt[base + row_off(r, 4u)], valid); }
    if (TM > 5u) { w[5] = select(0.0, wt[base + row_off(r, 5u)], valid); }
    if (TM > 6u) { w[6] = select(0.0, wt[base + row_off(r, 6u)], valid); }
    if (TM > 7u) { w[7] = select(0.0, wt[base + row_off(r, 7u)], valid); }
    if (TM > 8u) { w[8] = select(0.0, wt[base + row_off(r, 8u)], valid); }
    if (TM > 9u) { w[9] = select(0.0, wt[base + row_off(r, 9u)], valid); }
    if (TM > 10u) { w[10] = select(0.0, wt[base + row_off(r, 10u)], valid); }
    if (TM > 11u) { w[11] = select(0.0, wt[base + row_off(r, 11u)], valid); }
    if (TM > 12u) { w[12] = select(0.0, wt[base + row_off(r, 12u)], valid); }
    if (TM > 13u) { w[13] = select(0.0, wt[base + row_off(r, 13u)], valid); }
    if (TM > 14u) { w[14] = select(0.0, wt[base + row_off(r, 14u)], valid); }
    if (TM > 15u) { w[15] = select(0.0, wt[base + row_off(r, 15u)], valid); }
    return w;
}

// acc[m] += (row m at step u, from lane u) * xs[u] for 8 K steps.
fn block8(acc: ptr<function, Acc>, w: Row, xs: X8) {
    // k-step 0
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 0u)), xs[0], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 0u)), xs[0], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 0u)), xs[0], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 0u)), xs[0], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 0u)), xs[0], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 0u)), xs[0], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 0u)), xs[0], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 0u)), xs[0], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 0u)), xs[0], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 0u)), xs[0], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 0u)), xs[0], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 0u)), xs[0], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 0u)), xs[0], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 0u)), xs[0], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 0u)), xs[0], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 0u)), xs[0], (*acc)[15]); }
    // k-step 1
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 1u)), xs[1], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 1u)), xs[1], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 1u)), xs[1], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 1u)), xs[1], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 1u)), xs[1], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 1u)), xs[1], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 1u)), xs[1], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 1u)), xs[1], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 1u)), xs[1], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 1u)), xs[1], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 1u)), xs[1], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 1u)), xs[1], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 1u)), xs[1], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 1u)), xs[1], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 1u)), xs[1], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 1u)), xs[1], (*acc)[15]); }
    // k-step 2
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 2u)), xs[2], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 2u)), xs[2], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 2u)), xs[2], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 2u)), xs[2], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 2u)), xs[2], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 2u)), xs[2], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 2u)), xs[2], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 2u)), xs[2], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 2u)), xs[2], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 2u)), xs[2], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 2u)), xs[2], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 2u)), xs[2], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 2u)), xs[2], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 2u)), xs[2], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 2u)), xs[2], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 2u)), xs[2], (*acc)[15]); }
    // k-step 3
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 3u)), xs[3], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 3u)), xs[3], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 3u)), xs[3], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 3u)), xs[3], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 3u)), xs[3], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 3u)), xs[3], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 3u)), xs[3], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 3u)), xs[3], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 3u)), xs[3], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 3u)), xs[3], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 3u)), xs[3], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 3u)), xs[3], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 3u)), xs[3], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 3u)), xs[3], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 3u)), xs[3], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 3u)), xs[3], (*acc)[15]); }
    // k-step 4
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 4u)), xs[4], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 4u)), xs[4], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 4u)), xs[4], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 4u)), xs[4], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 4u)), xs[4], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 4u)), xs[4], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 4u)), xs[4], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 4u)), xs[4], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 4u)), xs[4], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 4u)), xs[4], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 4u)), xs[4], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 4u)), xs[4], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 4u)), xs[4], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 4u)), xs[4], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 4u)), xs[4], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 4u)), xs[4], (*acc)[15]); }
    // k-step 5
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 5u)), xs[5], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 5u)), xs[5], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 5u)), xs[5], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 5u)), xs[5], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 5u)), xs[5], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 5u)), xs[5], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 5u)), xs[5], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 5u)), xs[5], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 5u)), xs[5], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 5u)), xs[5], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 5u)), xs[5], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 5u)), xs[5], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 5u)), xs[5], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 5u)), xs[5], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 5u)), xs[5], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 5u)), xs[5], (*acc)[15]); }
    // k-step 6
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 6u)), xs[6], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 6u)), xs[6], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 6u)), xs[6], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 6u)), xs[6], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 6u)), xs[6], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 6u)), xs[6], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 6u)), xs[6], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 6u)), xs[6], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 6u)), xs[6], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 6u)), xs[6], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 6u)), xs[6], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 6u)), xs[6], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 6u)), xs[6], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 6u)), xs[6], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 6u)), xs[6], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 6u)), xs[6], (*acc)[15]); }
    // k-step 7
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 7u)), xs[7], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 7u)), xs[7], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 7u)), xs[7], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 7u)), xs[7], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 7u)), xs[7], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 7u)), xs[7], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 7u)), xs[7], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 7u)), xs[7], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 7u)), xs[7], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 7u)), xs[7], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 7u)), xs[7], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 7u)), xs[7], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 7u)), xs[7], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 7u)), xs[7], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 7u)), xs[7], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 7u)), xs[7], (*acc)[15]); }
}

// The TN columns of `src` at `i`: one per-lane load each.
fn gather(i: vec4<u32>) -> vec4<f32> {
    var v = vec4(0.0);
    v.x = src[i.x];
    if (TN > 1u) { v.y = src[i.y]; }
    if (TN > 2u) { v.z = src[i.z]; }
    if (TN > 3u) { v.w = src[i.w]; }
    return v;
}

// The lane operand at K step k < kend of a column matrix with element (k, col) at
// off[col] + k * stride; 0 where !ok or past the end.
fn col_at(off: vec4<u32>, stride: u32, k: u32, kend: u32, ok: vec4<bool>) -> vec4<f32> {
    let v = gather(off + min(k, kend - 1u) * stride);
    return select(vec4(0.0), v, ok & vec4(k < kend));
}

fn cols8(off: vec4<u32>, stride: u32, k0: u32, kend: u32, ok: vec4<bool>) -> X8 {
    return X8(col_at(off, stride, k0, kend, ok), col_at(off, stride, k0 + 1u, kend, ok),
              col_at(off, stride, k0 + 2u, kend, ok), col_at(off, stride, k0 + 3u, kend, ok),
              col_at(off, stride, k0 + 4u, kend, ok), col_at(off, stride, k0 + 5u, kend, ok),
              col_at(off, stride, k0 + 6u, kend, ok), col_at(off, stride, k0 + 7u, kend, ok));
}

// K steps k0..k0+8 of a GEMM whose channel operand row m, step k is at wt[k * kstride + kbase
// + row m] and whose column operand is cols8's.
fn gemm_block(acc: ptr<function, Acc>, r: Rows, l8: u32, k0: u32, kend: u32, kstride: u32, kbase: u32,
              off: vec4<u32>, stride: u32, ok: vec4<bool>) {
    let kl = k0 + l8;
    let w = load_rows(r, min(kl, kend - 1u) * kstride + kbase, kl < kend);
    block8(acc, w, cols8(off, stride, k0, kend, ok));
}

// Where a tile goes: dst[col[t] + row * stride] for valid columns and rows < rows.
struct Out {
    col: vec4<u32>,
    ok: vec4<bool>,
    row0: u32,
    rows: u32,
    stride: u32,
    add: bool, // add to what is there
}

fn put(i: u32, v: f32, add: bool) {
    var s = v;
    if (add) {
        s += dst[i];
    }
    dst[i] = s;
}

fn store_row(o: Out, m: u32, v: vec4<f32>) {
    let row = o.row0 + m;
    if (row >= o.rows) {
        return;
    }
    let i = o.col + vec4(row * o.stride);
    if (o.ok.x) { put(i.x, v.x, o.add); }
    if (TN > 1u && o.ok.y) { put(i.y, v.y, o.add); }
    if (TN > 2u && o.ok.z) { put(i.z, v.z, o.add); }
    if (TN > 3u && o.ok.w) { put(i.w, v.w, o.add); }
}

// store_tile for tiles whose four columns are one aligned vec4 of dst, all four valid or none
// (rows of a multiple of 4 pixels, o.col.x a multiple of 4): one per-lane store per row instead
// of four, and one load when adding. The same sums as store_tile (a copy of it: one entry point
// may name dst or dst4 but not both).
fn store_row4(o: Out, m: u32, v: vec4<f32>) {
    let row = o.row0 + m;
    if (row >= o.rows || !o.ok.x) {
        return;
    }
    let i = (o.col.x + row * o.stride) / 4u;
    var s = v;
    if (o.add) {
        s += dst4[i];
    }
    dst4[i] = s;
}

fn store_tile4(acc: ptr<function, Acc>, o: Out) {
    store_row4(o, 0u, (*acc)[0]);
    if (TM > 1u) { store_row4(o, 1u, (*acc)[1]); }
    if (TM > 2u) { store_row4(o, 2u, (*acc)[2]); }
    if (TM > 3u) { store_row4(o, 3u, (*acc)[3]); }
    if (TM > 4u) { store_row4(o, 4u, (*acc)[4]); }
    if (TM > 5u) { store_row4(o, 5u, (*acc)[5]); }
    if (TM > 6u) { store_row4(o, 6u, (*acc)[6]); }
    if (TM > 7u) { store_row4(o, 7u, (*acc)[7]); }
    if (TM > 8u) { store_row4(o, 8u, (*acc)[8]); }
    if (TM > 9u) { store_row4(o, 9u, (*acc)[9]); }
    if (TM > 10u) { store_row4(o, 10u, (*acc)[10]); }
    if (TM > 11u) { store_row4(o, 11u, (*acc)[11]); }
    if (TM > 12u) { store_row4(o, 12u, (*acc)[12]); }
    if (TM > 13u) { store_row4(o, 13u, (*acc)[13]); }
    if (TM > 14u) { store_row4(o, 14u, (*acc)[14]); }
    if (TM > 15u) { store_row4(o, 15u, (*acc)[15]); }
}

fn store_tile(acc: ptr<function, Acc>, o: Out) {
    store_row(o, 0u, (*acc)[0]);
    if (TM > 1u) { store_row(o, 1u, (*acc)[1]); }
    if (TM > 2u) { store_row(o, 2u, (*acc)[2]); }
    if (TM > 3u) { store_row(o, 3u, (*acc)[3]); }
    if (TM > 4u) { store_row(o, 4u, (*acc)[4]); }
    if (TM > 5u) { store_row(o, 5u, (*acc)[5]); }
    if (TM > 6u) { store_row(o, 6u, (*acc)[6]); }
    if (TM > 7u) { store_row(o, 7u, (*acc)[7]); }
    if (TM > 8u) { store_row(o, 8u, (*acc)[8]); }
    if (TM > 9u) { store_row(o, 9u, (*acc)[9]); }
    if (TM > 10u) { store_row(o, 10u, (*acc)[10]); }
    if (TM > 11u) { store_row(o, 11u, (*acc)[11]); }
    if (TM > 12u) { store_row(o, 12u, (*acc)[12]); }
    if (TM > 13u) { store_row(o, 13u, (*acc)[13]); }
    if (TM > 14u) { store_row(o, 14u, (*acc)[14]); }
    if (TM > 15u) { store_row(o, 15u, (*acc)[15]); }
}

// ---------------------------------------------------------------------------------------------
// Forward: y[n, co, oh, ow] = b[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] x[n, ci, oh*s-pad+ky, ...]
// GEMM rows = output channels, columns = output pixels n*p*q (lanes), K = cin*kh*kw, walked
// tap by tap (outside) and channel by channel (inside) so the im2col index math and padding
// test happen once per tap.

fn forward_body(f: u32, lid: u32, sid: u32, init: Acc) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let npix = p.n * pq;
    let tl = tile(f, lid, p.cout, npix, 1u);
    let rows = Rows(tl.m0, p.cout - 1u, p.cin * kk);
    let l8 = sid & 7u;

    let g = min(tl.cols, vec4(npix - 1u));
    let img = g / pq;
    let r = g % pq;
    let xbase = (img * p.a_tot + p.a_off) * hw;

    var acc = init;
    let oy = vec4<i32>((r / p.q) * p.stride) - i32(p.pad);
    let ox = vec4<i32>((r % p.q) * p.stride) - i32(p.pad);
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            let iy = oy + i32(ky);
            let ix = ox + i32(kx);
            let ok = (iy >= vec4(0)) & (iy < vec4(i32(p.h))) & (ix >= vec4(0)) & (ix < vec4(i32(p.w)));
            let off = select(vec4(0u), xbase + vec4<u32>(iy) * p.w + vec4<u32>(ix), ok);
            for (var k0 = 0u; k0 < p.cin; k0 += 8u) {
                gemm_block(&acc, rows, l8, k0, p.cin, kk, ky * p.kw + kx, off, hw, ok);
            }
        }
    }
    let ycol = (img * p.b_tot + p.b_off) * pq + r;
    store_tile(&acc, Out(ycol, tl.cols < vec4(npix), tl.m0, p.cout, pq, false));
}

// Forward with K = cin*kh*kw walked as one index, for few input channels (the stem: 3), where
// blocks of 8 channels per tap would be mostly empty. (ci, ky, kx) are counted without
// division; the weights of a row are contiguous along K.
fn next_tap(c: vec3<u32>) -> vec3<u32> {
    var n = c;
    n.z += 1u;
    let wx = n.z == p.kw;
    n.z = select(n.z, 0u, wx);
    n.y += u32(wx);
    let wy = n.y == p.kh;
    n.y = select(n.y, 0u, wy);
    n.x += u32(wy);
    return n;
}

fn x_tap(c: vec3<u32>, xbase: vec4<u32>, oy: vec4<i32>, ox: vec4<i32>, valid: bool) -> vec4<f32> {
    let iy = oy + i32(c.y);
    let ix = ox + i32(c.z);
    let ok = (iy >= vec4(0)) & (iy < vec4(i32(p.h))) & (ix >= vec4(0)) & (ix < vec4(i32(p.w))) & vec4(valid);
    let off = select(vec4(0u), xbase + c.x * p.h * p.w + vec4<u32>(iy) * p.w + vec4<u32>(ix), ok);
    return select(vec4(0.0), gather(off), ok);
}

fn forward_flat_body(f: u32, lid: u32, sid: u32, init: Acc) {
    let pq = p.p * p.q;
    let npix = p.n * pq;
    let kend = p.cin * p.kh * p.kw;
    let tl = tile(f, lid, p.cout, npix, 1u);
    let rows = Rows(tl.m0, p.cout - 1u, kend);
    let l8 = sid & 7u;

    let g = min(tl.cols, vec4(npix - 1u));
    let img = g / pq;
    let r = g % pq;
    let xbase = (img * p.a_tot + p.a_off) * p.h * p.w;
    let oy = vec4<i32>((r / p.q) * p.stride) - i32(p.pad);
    let ox = vec4<i32>((r % p.q) * p.stride) - i32(p.pad);

    var acc = init;
    var c = vec3(0u);
    for (var k0 = 0u; k0 < kend; k0 += 8u) {
        let kl = k0 + l8;
        let w = load_rows(rows, min(kl, kend - 1u), kl < kend);
        var xs: X8;
        xs[0] = x_tap(c, xbase, oy, ox, k0 < kend);
        c = next_tap(c);
        xs[1] = x_tap(c, xbase, oy, ox, k0 + 1u < kend);
        c = next_tap(c);
        xs[2] = x_tap(c, xbase, oy, ox, k0 + 2u < kend);
        c = next_tap(c);
        xs[3] = x_tap(c, xbase, oy, ox, k0 + 3u < kend);
        c = next_tap(c);
        xs[4] = x_tap(c, xbase, oy, ox, k0 + 4u < kend);
        c = next_tap(c);
        xs[5] = x_tap(c, xbase, oy, ox, k0 + 5u < kend);
        c = next_tap(c);
        xs[6] = x_tap(c, xbase, oy, ox, k0 + 6u < kend);
        c = next_tap(c);
        xs[7] = x_tap(c, xbase, oy, ox, k0 + 7u < kend);
        c = next_tap(c);
        block8(&acc, w, xs);
    }
    let ycol = (img * p.b_tot + p.b_off) * pq + r;
    store_tile(&acc, Out(ycol, tl.cols < vec4(npix), tl.m0, p.cout, pq, false));
}

// The bias of the TM rows of workgroup f's tile, as a body over ncols columns cuts the tiles.
fn bias_init(f: u32, ncols: u32) -> Acc {
    let m0 = tile(f, 0u, p.cout, ncols, 1u).m0;
    var b: Acc;
    for (var m = 0u; m < TM; m++) {
        b[m] = vec4(bias[min(m0 + m, p.cout - 1u)]);
    }
    return b;
}

// ---------------------------------------------------------------------------------------------
// Forward of a 3x3, stride 1, pad 1 convolution (p = h, q = w): out[n, m, y, x] = init[m] +
// sum_{k, ky, kx} W(m, k, ky, kx) in[n, k, y + ky - 1, x + kx - 1]. An invocation owns TN
// consecutive pixels of one output row (rows are cut into ceil(w / TN) segments; the columns of
// the GEMM are segments * TN). Per (k, ky) it loads the TN + 2 input pixels
// in[.., y + ky - 1, x0 - 1 .. x0 + TN] once and uses them for all three kx taps: TN + 2 loads
// for 3 K steps instead of 3 * TN (and with TN = 4 on rows of whole vec4s, 3 vec4 loads: see
// x_win4; with 8 pixels per lane, conv3_body_v8). The weights are shared as elsewhere (block8,
// lane l loading input channel k0 + l's), read from a transposed copy where a lane's TM rows are
// TQ vec4s (w_rows). The body, shared with the backward data, is below the latter's helpers.

struct Conv3 {
    nrows: u32, // output channels of this convolution (GEMM rows)
    kch: u32, // input channels (K / 9)
    in_off: u32, // channel view of the input
    in_tot: u32,
    out_off: u32, // ... and of the output
    out_tot: u32,
    add: bool,
}

// The weights of these kernels, transposed by weights_3x3_t so that the TM rows of a K step
// are TQ consecutive vec4s, one per-lane load per 4 rows instead of one per row (6 to 20% faster
// on lavapipe, except conv3_body_v8 with 16-row tiles, see forward_3x3_v8_oihw):
// wt4[(mb * cin * 9 + k) * TQ + j] holds rows mb * TM + 4j .. 4j + 4 of K step k = ci * 9 + tap
// (0 for rows past TM or past cout).
@group(0) @binding(3) var<storage, read> wt4: array<vec4<f32>>;
override TQ: u32 = (TM + 3u) / 4u;

// load_rows from the transposed weights at vec4 `base`.
fn load_rows_t(base: u32, valid: bool) -> Row {
    var w: Row;
    let a = select(vec4(0.0), wt4[base], vec4(valid));
    w[0] = a.x;
    w[1] = a.y;
    w[2] = a.z;
    w[3] = a.w;
    if (TM > 4u) {
        let b = select(vec4(0.0), wt4[base + 1u], vec4(valid));
        w[4] = b.x;
        w[5] = b.y;
        w[6] = b.z;
        w[7] = b.w;
    }
    if (TM > 8u) {
        let b = select(vec4(0.0), wt4[base + 2u], vec4(valid));
        w[8] = b.x;
        w[9] = b.y;
        w[10] = b.z;
        w[11] = b.w;
    }
    if (TM > 12u) {
        let b = select(vec4(0.0), wt4[base + 3u], vec4(valid));
        w[12] = b.x;
        w[13] = b.y;
        w[14] = b.z;
        w[15] = b.w;
    }
    return w;
}

// The weights of input channel ci, tap t for the TM rows of the tile at m0 (0 where !valid):
// transposed (wt4), or straight from the OIHW weights (wt; no entry point reads both).
fn w_rows(m0: u32, ci: u32, t: u32, valid: bool) -> Row {
    return load_rows_t(((m0 / TM) * p.cin * 9u + ci * 9u + t) * TQ, valid);
}

fn w_rows_oihw(m0: u32, ci: u32, t: u32, valid: bool) -> Row {
    return load_rows(Rows(m0, p.cout - 1u, p.cin * 9u), ci * 9u + t, valid);
}

// dst = the transposed weights of wt4 from the OIHW weights in src, one invocation per element
// (p.len = ceil(cout / TM) * cin * 9 * TQ * 4).
@compute @workgroup_size(RWG)
fn weights_3x3_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * RWG;
    if (i >= p.len) {
        return;
    }
    let kk = p.cin * 9u;
    let m = i % (TQ * 4u);
    let k = (i / (TQ * 4u)) % kk;
    let row = (i / (TQ * 4u * kk)) * TM + m;
    let ok = (m < TM) & (row < p.cout);
    dst[i] = select(0.0, src[select(0u, row * kk + k, ok)], ok);
}

// TN + 2 consecutive input values of one row (the rest 0): a = e0..e3, b = e4, e5.
struct Win {
    a: vec4<f32>,
    b: vec2<f32>,
}

// The columns x0 - 1 .. x0 + 5 of a lane's window (clamped into the row) and whether each is
// inside the image, computed once per lane.
struct WinCols {
    a: vec4<u32>,
    b: vec2<u32>,
    a_ok: vec4<bool>,
    b_ok: vec2<bool>,
}

fn win_cols(x0: u32) -> WinCols {
    let ia = vec4(i32(x0) - 1) + vec4(0, 1, 2, 3);
    let ib = vec2(i32(x0) + 3) + vec2(0, 1);
    let wa = vec4(i32(p.w));
    let wb = vec2(i32(p.w));
    let a_ok = (ia >= vec4(0)) & (ia < wa);
    let b_ok = (ib >= vec2(0)) & (ib < wb);
    return WinCols(select(vec4(0u), vec4<u32>(ia), a_ok), select(vec2(0u), vec2<u32>(ib), b_ok), a_ok, b_ok);
}

// in[row at off, column i], 0 where !ok.
fn x_at(off: u32, i: u32, ok: bool) -> f32 {
    return select(0.0, src[select(0u, off + i, ok)], ok);
}

fn x_win(off: u32, c: WinCols, ok: bool) -> Win {
    var v = Win(vec4(0.0), vec2(0.0));
    v.a.x = x_at(off, c.a.x, ok & c.a_ok.x);
    v.a.y = x_at(off, c.a.y, ok & c.a_ok.y);
    v.a.z = x_at(off, c.a.z, ok & c.a_ok.z);
    if (TN > 1u) { v.a.w = x_at(off, c.a.w, ok & c.a_ok.w); }
    if (TN > 2u) { v.b.x = x_at(off, c.b.x, ok & c.b_ok.x); }
    if (TN > 3u) { v.b.y = x_at(off, c.b.y, ok & c.b_ok.y); }
    return v;
}

// The TN columns that tap kx multiplies: e[kx .. kx + TN].
fn win_tap(v: Win, kx: u32) -> vec4<f32> {
    let t1 = vec4(v.a.yzw, v.b.x);
    let t2 = vec4(v.a.zw, v.b);
    return select(select(t2, t1, kx == 1u), v.a, kx == 0u);
}

// x_win for TN = 4 and rows of a multiple of 4 pixels, through the vec4 view: the window's
// middle four pixels x0 .. x0 + 4 are one aligned vec4 (one per-lane load instead of four),
// its ends the last and first elements of the vec4s either side (0 past the row's edges).
fn x_win4(off: u32, edges: vec2<bool>, ok: bool) -> Win {
    let q = off / 4u;
    let mid = select(vec4(0.0), src4[select(0u, q, ok)], vec4(ok));
    let l = ok & edges.x;
    let r = ok & edges.y;
    let e0 = select(0.0, src4[select(0u, q - 1u, l)].w, l);
    let e5 = select(0.0, src4[select(0u, q + 1u, r)].x, r);
    return Win(vec4(e0, mid.xyz), vec2(mid.w, e5));
}

// ---------------------------------------------------------------------------------------------
// Backward data: dx[n, ci, iy, ix] (+)= sum_{co, ky, kx} w[co, ci, ky, kx] dy[n, co, oy, ox]
// over the taps with iy + pad - ky = oy * stride (and the same for x); the others are masked.
// GEMM rows = input channels, columns = input pixels n*h*w (lanes), K = cout*kh*kw.

fn backward_data_body(f: u32, lid: u32, sid: u32) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let npix = p.n * hw;
    let tl = tile(f, lid, p.cin, npix, 1u);
    let rows = Rows(tl.m0, p.cin - 1u, kk);
    let wstep = p.cin * kk; // from one output channel's weights to the next
    let l8 = sid & 7u;

    let g = min(tl.cols, vec4(npix - 1u));
    let img = g / hw;
    let r = g % hw;
    let dybase = (img * p.b_tot + p.b_off) * pq;
    var acc: Acc;
    let iy = vec4<i32>(r / p.w) + i32(p.pad);
    let ix = vec4<i32>(r % p.w) + i32(p.pad);
    let s = vec4(i32(p.stride));
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            // The output pixel this tap reads from, if the tap lands on one.
            let ty = iy - i32(ky);
            let tx = ix - i32(kx);
            var oy = ty;
            var ox = tx;
            var ok = (ty >= vec4(0)) & (tx >= vec4(0));
            if (STRIDED) {
                oy = ty / s;
                ox = tx / s;
                ok &= (oy * s == ty) & (ox * s == tx);
            }
            ok &= (oy < vec4(i32(p.p))) & (ox < vec4(i32(p.q)));
            let off = select(vec4(0u), dybase + vec4<u32>(oy) * p.q + vec4<u32>(ox), ok);
            for (var k0 = 0u; k0 < p.cout; k0 += 8u) {
                gemm_block(&acc, rows, l8, k0, p.cout, wstep, ky * p.kw + kx, off, pq, ok);
            }
        }
    }
    let dxcol = (img * p.a_tot + p.a_off) * hw + r;
    store_tile(&acc, Out(dxcol, tl.cols < vec4(npix), tl.m0, p.cin, hw, p.accumulate != 0u));
}

// Backward data at stride 1 with K = (tap, co) walked as one index, in blocks of 8 steps that
// run across taps: with few output channels (12 in a DenseNet-BC 3x3) blocks of 8 channels per
// tap would be a quarter empty. Per column, a bit mask of the taps that land on the output grid
// and the dy offset of tap (0, 0) are computed once; per step the tap moves every column by the
// same (uniform) shift, so there is no im2col division or bounds test in the K loop. The terms
// are summed in the same order as backward_data's (tap, then channel).
fn next_k(c: vec4<u32>) -> vec4<u32> {
    // (co, tap, ky, kx)
    var n = c;
    n.x += 1u;
    let wrap = n.x == p.cout;
    n.x = select(n.x, 0u, wrap);
    n.y += u32(wrap);
    n.w += u32(wrap);
    let wx = n.w == p.kw;
    n.w = select(n.w, 0u, wx);
    n.z += u32(wx);
    return n;
}

fn dy_tap(c: vec4<u32>, base: vec4<u32>, mask: vec4<u32>, pq: u32, valid: bool) -> vec4<f32> {
    let ok = ((mask >> vec4(c.y)) & vec4(1u)) != vec4(0u);
    let off = select(vec4(0u), base + vec4(c.x * pq - (c.z * p.q + c.w)), ok);
    return select(vec4(0.0), gather(off), ok & vec4(valid));
}

fn backward_data_flat_body(f: u32, lid: u32, sid: u32) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let npix = p.n * hw;
    let kend = p.cout * kk;
    let tl = tile(f, lid, p.cin, npix, 1u);
    let rows = Rows(tl.m0, p.cin - 1u, kk);
    let l8 = sid & 7u;

    let g = min(tl.cols, vec4(npix - 1u));
    let img = g / hw;
    let r = g % hw;
    // Tap (ky, kx) reads dy at (iy + pad - ky, ix + pad - kx).
    let ty = vec4<i32>(r / p.w) + i32(p.pad);
    let tx = vec4<i32>(r % p.w) + i32(p.pad);
    var mask = vec4(0u);
    for (var t = 0u; t < kk; t++) {
        let oy = ty - i32(t / p.kw);
        let ox = tx - i32(t % p.kw);
        let ok = (oy >= vec4(0)) & (ox >= vec4(0)) & (oy < vec4(i32(p.p))) & (ox < vec4(i32(p.q)));
        mask |= select(vec4(0u), vec4(1u << t), ok);
    }
    // Where tap (0, 0) would read; only taps in the mask are ever loaded.
    let base = (img * p.b_tot + p.b_off) * pq + vec4<u32>(ty) * p.q + vec4<u32>(tx);

    var acc: Acc;
    var c = vec4(0u);
    for (var k0 = 0u; k0 < kend; k0 += 8u) {
        let kl = min(k0 + l8, kend - 1u);
        let w = load_rows(rows, (kl % p.cout) * p.cin * kk + kl / p.cout, k0 + l8 < kend);
        var xs: X8;
        xs[0] = dy_tap(c, base, mask, pq, k0 < kend);
        c = next_k(c);
        xs[1] = dy_tap(c, base, mask, pq, k0 + 1u < kend);
        c = next_k(c);
        xs[2] = dy_tap(c, base, mask, pq, k0 + 2u < kend);
        c = next_k(c);
        xs[3] = dy_tap(c, base, mask, pq, k0 + 3u < kend);
        c = next_k(c);
        xs[4] = dy_tap(c, base, mask, pq, k0 + 4u < kend);
        c = next_k(c);
        xs[5] = dy_tap(c, base, mask, pq, k0 + 5u < kend);
        c = next_k(c);
        xs[6] = dy_tap(c, base, mask, pq, k0 + 6u < kend);
        c = next_k(c);
        xs[7] = dy_tap(c, base, mask, pq, k0 + 7u < kend);
        c = next_k(c);
        block8(&acc, w, xs);
    }
    let dxcol = (img * p.a_tot + p.a_off) * hw + r;
    store_tile(&acc, Out(dxcol, tl.cols < vec4(npix), tl.m0, p.cin, hw, p.accumulate != 0u));
}

// ---------------------------------------------------------------------------------------------
// Backward data of a 3x3, stride 1, pad 1 convolution (p = h, q = w), the transpose of the
// row-window forward above: dx[n, ci, y, x] (+)= sum_{ky, co, kx} w[co, ci, ky, kx]
// dy[n, co, y + 1 - ky, x + 1 - kx]. An invocation owns TN consecutive pixels of one dx row and
// the TM channels of its workgroup. Per (ky, co) it loads the dy row window
// dy[n, co, y + 1 - ky, x0 - 1 .. x0 + TN] once and uses it for the three kx taps (pixel x0 + j,
// tap kx reads window element j + 2 - kx); the weights are shared as elsewhere (block8, lane l
// loading output channel k0 + l's). backward_data_3x3_v8 owns 8 pixels (two vec4 accumulators,
// rows of a multiple of 4 pixels): per (ky, 8 output channels) 32 window loads and 3 * TM weight
// loads per lane for 3 * 8 * TM * 8 FMAs, about twice forward_3x3_v4's FMAs per load. K is walked
// as ky, then blocks of 8 output channels (the last one as a block of 4 when at most 4 are left:
// 12 = 8 + 4 in DenseNet-BC, so no lane's broadcast is wasted), then kx, then channel, whatever
// the tiles, so results do not depend on them. (Weights read by every lane at the same address
// measured slower: llvmpipe's uniform storage loads still cost about half a per-lane load.)

alias X4 = array<vec4<f32>, 4>;

// block8 for K steps 0..4 (lanes 0..4 hold the rows): the last, short block of a K loop.
fn block4(acc: ptr<function, Acc>, w: Row, xs: X4) {
    // k-step 0
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 0u)), xs[0], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 0u)), xs[0], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 0u)), xs[0], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 0u)), xs[0], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 0u)), xs[0], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 0u)), xs[0], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 0u)), xs[0], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 0u)), xs[0], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 0u)), xs[0], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 0u)), xs[0], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 0u)), xs[0], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 0u)), xs[0], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 0u)), xs[0], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 0u)), xs[0], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 0u)), xs[0], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 0u)), xs[0], (*acc)[15]); }
    // k-step 1
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 1u)), xs[1], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 1u)), xs[1], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 1u)), xs[1], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 1u)), xs[1], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 1u)), xs[1], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 1u)), xs[1], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 1u)), xs[1], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 1u)), xs[1], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 1u)), xs[1], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 1u)), xs[1], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 1u)), xs[1], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 1u)), xs[1], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 1u)), xs[1], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 1u)), xs[1], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 1u)), xs[1], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 1u)), xs[1], (*acc)[15]); }
    // k-step 2
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 2u)), xs[2], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 2u)), xs[2], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 2u)), xs[2], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 2u)), xs[2], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 2u)), xs[2], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 2u)), xs[2], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 2u)), xs[2], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 2u)), xs[2], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 2u)), xs[2], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 2u)), xs[2], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 2u)), xs[2], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 2u)), xs[2], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 2u)), xs[2], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 2u)), xs[2], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 2u)), xs[2], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 2u)), xs[2], (*acc)[15]); }
    // k-step 3
    (*acc)[0] = fma(vec4(subgroupBroadcast(w[0], 3u)), xs[3], (*acc)[0]);
    if (TM > 1u) { (*acc)[1] = fma(vec4(subgroupBroadcast(w[1], 3u)), xs[3], (*acc)[1]); }
    if (TM > 2u) { (*acc)[2] = fma(vec4(subgroupBroadcast(w[2], 3u)), xs[3], (*acc)[2]); }
    if (TM > 3u) { (*acc)[3] = fma(vec4(subgroupBroadcast(w[3], 3u)), xs[3], (*acc)[3]); }
    if (TM > 4u) { (*acc)[4] = fma(vec4(subgroupBroadcast(w[4], 3u)), xs[3], (*acc)[4]); }
    if (TM > 5u) { (*acc)[5] = fma(vec4(subgroupBroadcast(w[5], 3u)), xs[3], (*acc)[5]); }
    if (TM > 6u) { (*acc)[6] = fma(vec4(subgroupBroadcast(w[6], 3u)), xs[3], (*acc)[6]); }
    if (TM > 7u) { (*acc)[7] = fma(vec4(subgroupBroadcast(w[7], 3u)), xs[3], (*acc)[7]); }
    if (TM > 8u) { (*acc)[8] = fma(vec4(subgroupBroadcast(w[8], 3u)), xs[3], (*acc)[8]); }
    if (TM > 9u) { (*acc)[9] = fma(vec4(subgroupBroadcast(w[9], 3u)), xs[3], (*acc)[9]); }
    if (TM > 10u) { (*acc)[10] = fma(vec4(subgroupBroadcast(w[10], 3u)), xs[3], (*acc)[10]); }
    if (TM > 11u) { (*acc)[11] = fma(vec4(subgroupBroadcast(w[11], 3u)), xs[3], (*acc)[11]); }
    if (TM > 12u) { (*acc)[12] = fma(vec4(subgroupBroadcast(w[12], 3u)), xs[3], (*acc)[12]); }
    if (TM > 13u) { (*acc)[13] = fma(vec4(subgroupBroadcast(w[13], 3u)), xs[3], (*acc)[13]); }
    if (TM > 14u) { (*acc)[14] = fma(vec4(subgroupBroadcast(w[14], 3u)), xs[3], (*acc)[14]); }
    if (TM > 15u) { (*acc)[15] = fma(vec4(subgroupBroadcast(w[15], 3u)), xs[3], (*acc)[15]); }
}

// 10 consecutive dy values of a row, x0 - 1 .. x0 + 9 (0 outside the image): e0, a, b, e9.
struct Win10 {
    e0: f32,
    a: vec4<f32>,
    b: vec4<f32>,
    e9: f32,
}

// off = the row's start + x0 (a multiple of 4); edges = (x0 > 0, x0 + 4 < w, x0 + 8 < w).
fn dy_win10(off: u32, edges: vec3<bool>, ok: bool) -> Win10 {
    let q = off / 4u;
    let a = select(vec4(0.0), src4[select(0u, q, ok)], vec4(ok));
    let bo = ok & edges.y;
    let b = select(vec4(0.0), src4[select(0u, q + 1u, bo)], vec4(bo));
    let l = ok & edges.x;
    let r = ok & edges.z;
    let e0 = select(0.0, src4[select(0u, q - 1u, l)].w, l);
    let e9 = select(0.0, src4[select(0u, q + 2u, r)].x, r);
    return Win10(e0, a, b, e9);
}

// Pixels 0..4 and 4..8 of window elements t .. t + 8.
fn tap10_lo(v: Win10, t: u32) -> vec4<f32> {
    return select(select(vec4(v.a.yzw, v.b.x), v.a, t == 1u), vec4(v.e0, v.a.xyz), t == 0u);
}

fn tap10_hi(v: Win10, t: u32) -> vec4<f32> {
    return select(select(vec4(v.b.yzw, v.e9), v.b, t == 1u), vec4(v.a.w, v.b.xyz), t == 0u);
}

// The weights of output channel co, tap t for the TM input-channel rows of the tile at m0
// (backward data reads the OIHW weights as their transpose).
fn w_rows_bwd(m0: u32, co: u32, t: u32, valid: bool) -> Row {
    return load_rows(Rows(m0, p.cin - 1u, 9u), co * p.cin * 9u + t, valid);
}

// The row-window bodies, written once for the forward (conv3_body: rows = output channels, K =
// input channels, tap kx reads window element kx) and the backward data (backward_data_3x3_body:
// rows = input channels, K = output channels, element 2 - kx). K is walked as ky, then blocks of
// 8 channels (the last one as a block of 4 when at most 4 are left and the pipeline sets SHORT_K:
// 12 = 8 + 4 output channels in DenseNet-BC's backward data, so no lane's broadcast is wasted),
// then kx, then channel, whatever the tiles. Variants: any width; _v4, TN = 4 on rows of a multiple of 4 pixels (x_win4); _v8, 8
// pixels per invocation (TN = 8, rows of a multiple of 4 pixels): per (ky, 8 channels) a lane
// loads the windows x0 - 1 .. x0 + 9 of its 8 channels as two aligned vec4s and two end pixels
// (dy_win10: 32 per-lane loads) and its channel's 3 * TM weights, for 3 * 8 * TM * 8 FMAs, about
// twice _v4's FMAs per load; pixels 0..4 and 4..8 keep an accumulator each (window elements
// e .. e + 4 and 4 + e .. 8 + e: tap10_lo / _hi), and the second vec4 of a row's last segment may
// lie past its end (w % 8 == 4): loaded as 0 and not stored. _v8_oihw, forward only: _v8 reading
// the weights straight from OIHW (w_rows_oihw), with 16-row tiles about 7% faster than the
// transposed ones on lavapipe (with 12, 8% slower). Every variant of a pass sums the same terms
// in the same order.
fn conv3_body(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + TN - 1u) / TN; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * TN, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / TN;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * TN;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let wc = win_cols(x0);

    var acc = init;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win, 4>;
                v[0] = x_win(rowoff + min(k0 + 0u, c.kch - 1u) * hw, wc, rowok & (k0 + 0u < c.kch));
                v[1] = x_win(rowoff + min(k0 + 1u, c.kch - 1u) * hw, wc, rowok & (k0 + 1u < c.kch));
                v[2] = x_win(rowoff + min(k0 + 2u, c.kch - 1u) * hw, wc, rowok & (k0 + 2u < c.kch));
                v[3] = x_win(rowoff + min(k0 + 3u, c.kch - 1u) * hw, wc, rowok & (k0 + 3u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block4(&acc, w, X4(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block4(&acc, w, X4(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u)));
            } else {
                var v: array<Win, 8>;
                v[0] = x_win(rowoff + min(k0 + 0u, c.kch - 1u) * hw, wc, rowok & (k0 + 0u < c.kch));
                v[1] = x_win(rowoff + min(k0 + 1u, c.kch - 1u) * hw, wc, rowok & (k0 + 1u < c.kch));
                v[2] = x_win(rowoff + min(k0 + 2u, c.kch - 1u) * hw, wc, rowok & (k0 + 2u < c.kch));
                v[3] = x_win(rowoff + min(k0 + 3u, c.kch - 1u) * hw, wc, rowok & (k0 + 3u < c.kch));
                v[4] = x_win(rowoff + min(k0 + 4u, c.kch - 1u) * hw, wc, rowok & (k0 + 4u < c.kch));
                v[5] = x_win(rowoff + min(k0 + 5u, c.kch - 1u) * hw, wc, rowok & (k0 + 5u < c.kch));
                v[6] = x_win(rowoff + min(k0 + 6u, c.kch - 1u) * hw, wc, rowok & (k0 + 6u < c.kch));
                v[7] = x_win(rowoff + min(k0 + 7u, c.kch - 1u) * hw, wc, rowok & (k0 + 7u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block8(&acc, w, X8(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u), win_tap(v[4], 0u), win_tap(v[5], 0u), win_tap(v[6], 0u), win_tap(v[7], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u), win_tap(v[4], 1u), win_tap(v[5], 1u), win_tap(v[6], 1u), win_tap(v[7], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block8(&acc, w, X8(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u), win_tap(v[4], 2u), win_tap(v[5], 2u), win_tap(v[6], 2u), win_tap(v[7], 2u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
}

fn conv3_body_v4(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + TN - 1u) / TN; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * TN, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / TN;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * TN;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let edges = vec2(x0 > 0u, x0 + 4u < p.w);

    var acc = init;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w + x0;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win, 4>;
                v[0] = x_win4(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = x_win4(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = x_win4(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = x_win4(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block4(&acc, w, X4(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block4(&acc, w, X4(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u)));
            } else {
                var v: array<Win, 8>;
                v[0] = x_win4(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = x_win4(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = x_win4(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = x_win4(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                v[4] = x_win4(rowoff + min(k0 + 4u, c.kch - 1u) * hw, edges, rowok & (k0 + 4u < c.kch));
                v[5] = x_win4(rowoff + min(k0 + 5u, c.kch - 1u) * hw, edges, rowok & (k0 + 5u < c.kch));
                v[6] = x_win4(rowoff + min(k0 + 6u, c.kch - 1u) * hw, edges, rowok & (k0 + 6u < c.kch));
                v[7] = x_win4(rowoff + min(k0 + 7u, c.kch - 1u) * hw, edges, rowok & (k0 + 7u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block8(&acc, w, X8(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u), win_tap(v[4], 0u), win_tap(v[5], 0u), win_tap(v[6], 0u), win_tap(v[7], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u), win_tap(v[4], 1u), win_tap(v[5], 1u), win_tap(v[6], 1u), win_tap(v[7], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block8(&acc, w, X8(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u), win_tap(v[4], 2u), win_tap(v[5], 2u), win_tap(v[6], 2u), win_tap(v[7], 2u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile4(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
}

fn conv3_body_v8(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + 8u - 1u) / 8u; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * 8u, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / 8u;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * 8u;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let edges = vec3(x0 > 0u, x0 + 4u < p.w, x0 + 8u < p.w);

    var acc = init;
    var hi = init; // pixels 4..8
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w + x0;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win10, 4>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block4(&acc, w, X4(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u)));
                block4(&hi, w, X4(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u)));
                block4(&hi, w, X4(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block4(&acc, w, X4(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u)));
                block4(&hi, w, X4(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u)));
            } else {
                var v: array<Win10, 8>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                v[4] = dy_win10(rowoff + min(k0 + 4u, c.kch - 1u) * hw, edges, rowok & (k0 + 4u < c.kch));
                v[5] = dy_win10(rowoff + min(k0 + 5u, c.kch - 1u) * hw, edges, rowok & (k0 + 5u < c.kch));
                v[6] = dy_win10(rowoff + min(k0 + 6u, c.kch - 1u) * hw, edges, rowok & (k0 + 6u < c.kch));
                v[7] = dy_win10(rowoff + min(k0 + 7u, c.kch - 1u) * hw, edges, rowok & (k0 + 7u < c.kch));
                w = w_rows(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block8(&acc, w, X8(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u), tap10_lo(v[4], 0u), tap10_lo(v[5], 0u), tap10_lo(v[6], 0u), tap10_lo(v[7], 0u)));
                block8(&hi, w, X8(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u), tap10_hi(v[4], 0u), tap10_hi(v[5], 0u), tap10_hi(v[6], 0u), tap10_hi(v[7], 0u)));
                w = w_rows(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u), tap10_lo(v[4], 1u), tap10_lo(v[5], 1u), tap10_lo(v[6], 1u), tap10_lo(v[7], 1u)));
                block8(&hi, w, X8(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u), tap10_hi(v[4], 1u), tap10_hi(v[5], 1u), tap10_hi(v[6], 1u), tap10_hi(v[7], 1u)));
                w = w_rows(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block8(&acc, w, X8(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u), tap10_lo(v[4], 2u), tap10_lo(v[5], 2u), tap10_lo(v[6], 2u), tap10_lo(v[7], 2u)));
                block8(&hi, w, X8(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u), tap10_hi(v[4], 2u), tap10_hi(v[5], 2u), tap10_hi(v[6], 2u), tap10_hi(v[7], 2u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile4(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
    let ok_hi = (vec4(sg) < vec4(nseg)) & (vec4(x0 + 4u) + LANE4 < vec4(p.w));
    store_tile4(&hi, Out(col + vec4(4u), ok_hi, tl.m0, c.nrows, hw, c.add));
}

fn conv3_body_v8_oihw(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + 8u - 1u) / 8u; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * 8u, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / 8u;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * 8u;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let edges = vec3(x0 > 0u, x0 + 4u < p.w, x0 + 8u < p.w);

    var acc = init;
    var hi = init; // pixels 4..8
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w + x0;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win10, 4>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block4(&acc, w, X4(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u)));
                block4(&hi, w, X4(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u)));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u)));
                block4(&hi, w, X4(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u)));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block4(&acc, w, X4(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u)));
                block4(&hi, w, X4(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u)));
            } else {
                var v: array<Win10, 8>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                v[4] = dy_win10(rowoff + min(k0 + 4u, c.kch - 1u) * hw, edges, rowok & (k0 + 4u < c.kch));
                v[5] = dy_win10(rowoff + min(k0 + 5u, c.kch - 1u) * hw, edges, rowok & (k0 + 5u < c.kch));
                v[6] = dy_win10(rowoff + min(k0 + 6u, c.kch - 1u) * hw, edges, rowok & (k0 + 6u < c.kch));
                v[7] = dy_win10(rowoff + min(k0 + 7u, c.kch - 1u) * hw, edges, rowok & (k0 + 7u < c.kch));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 0..
                block8(&acc, w, X8(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u), tap10_lo(v[4], 0u), tap10_lo(v[5], 0u), tap10_lo(v[6], 0u), tap10_lo(v[7], 0u)));
                block8(&hi, w, X8(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u), tap10_hi(v[4], 0u), tap10_hi(v[5], 0u), tap10_hi(v[6], 0u), tap10_hi(v[7], 0u)));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u), tap10_lo(v[4], 1u), tap10_lo(v[5], 1u), tap10_lo(v[6], 1u), tap10_lo(v[7], 1u)));
                block8(&hi, w, X8(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u), tap10_hi(v[4], 1u), tap10_hi(v[5], 1u), tap10_hi(v[6], 1u), tap10_hi(v[7], 1u)));
                w = w_rows_oihw(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 2..
                block8(&acc, w, X8(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u), tap10_lo(v[4], 2u), tap10_lo(v[5], 2u), tap10_lo(v[6], 2u), tap10_lo(v[7], 2u)));
                block8(&hi, w, X8(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u), tap10_hi(v[4], 2u), tap10_hi(v[5], 2u), tap10_hi(v[6], 2u), tap10_hi(v[7], 2u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile4(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
    let ok_hi = (vec4(sg) < vec4(nseg)) & (vec4(x0 + 4u) + LANE4 < vec4(p.w));
    store_tile4(&hi, Out(col + vec4(4u), ok_hi, tl.m0, c.nrows, hw, c.add));
}

fn backward_data_3x3_body(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + TN - 1u) / TN; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * TN, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / TN;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * TN;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let wc = win_cols(x0);

    var acc = init;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + 1u) - i32(ky); // tap ky reads dy row y + 1 - ky
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win, 4>;
                v[0] = x_win(rowoff + min(k0 + 0u, c.kch - 1u) * hw, wc, rowok & (k0 + 0u < c.kch));
                v[1] = x_win(rowoff + min(k0 + 1u, c.kch - 1u) * hw, wc, rowok & (k0 + 1u < c.kch));
                v[2] = x_win(rowoff + min(k0 + 2u, c.kch - 1u) * hw, wc, rowok & (k0 + 2u < c.kch));
                v[3] = x_win(rowoff + min(k0 + 3u, c.kch - 1u) * hw, wc, rowok & (k0 + 3u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block4(&acc, w, X4(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block4(&acc, w, X4(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u)));
            } else {
                var v: array<Win, 8>;
                v[0] = x_win(rowoff + min(k0 + 0u, c.kch - 1u) * hw, wc, rowok & (k0 + 0u < c.kch));
                v[1] = x_win(rowoff + min(k0 + 1u, c.kch - 1u) * hw, wc, rowok & (k0 + 1u < c.kch));
                v[2] = x_win(rowoff + min(k0 + 2u, c.kch - 1u) * hw, wc, rowok & (k0 + 2u < c.kch));
                v[3] = x_win(rowoff + min(k0 + 3u, c.kch - 1u) * hw, wc, rowok & (k0 + 3u < c.kch));
                v[4] = x_win(rowoff + min(k0 + 4u, c.kch - 1u) * hw, wc, rowok & (k0 + 4u < c.kch));
                v[5] = x_win(rowoff + min(k0 + 5u, c.kch - 1u) * hw, wc, rowok & (k0 + 5u < c.kch));
                v[6] = x_win(rowoff + min(k0 + 6u, c.kch - 1u) * hw, wc, rowok & (k0 + 6u < c.kch));
                v[7] = x_win(rowoff + min(k0 + 7u, c.kch - 1u) * hw, wc, rowok & (k0 + 7u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block8(&acc, w, X8(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u), win_tap(v[4], 2u), win_tap(v[5], 2u), win_tap(v[6], 2u), win_tap(v[7], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u), win_tap(v[4], 1u), win_tap(v[5], 1u), win_tap(v[6], 1u), win_tap(v[7], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block8(&acc, w, X8(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u), win_tap(v[4], 0u), win_tap(v[5], 0u), win_tap(v[6], 0u), win_tap(v[7], 0u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
}

fn backward_data_3x3_body_v4(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + TN - 1u) / TN; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * TN, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / TN;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * TN;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let edges = vec2(x0 > 0u, x0 + 4u < p.w);

    var acc = init;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + 1u) - i32(ky); // tap ky reads dy row y + 1 - ky
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w + x0;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win, 4>;
                v[0] = x_win4(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = x_win4(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = x_win4(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = x_win4(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block4(&acc, w, X4(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block4(&acc, w, X4(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u)));
            } else {
                var v: array<Win, 8>;
                v[0] = x_win4(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = x_win4(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = x_win4(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = x_win4(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                v[4] = x_win4(rowoff + min(k0 + 4u, c.kch - 1u) * hw, edges, rowok & (k0 + 4u < c.kch));
                v[5] = x_win4(rowoff + min(k0 + 5u, c.kch - 1u) * hw, edges, rowok & (k0 + 5u < c.kch));
                v[6] = x_win4(rowoff + min(k0 + 6u, c.kch - 1u) * hw, edges, rowok & (k0 + 6u < c.kch));
                v[7] = x_win4(rowoff + min(k0 + 7u, c.kch - 1u) * hw, edges, rowok & (k0 + 7u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block8(&acc, w, X8(win_tap(v[0], 2u), win_tap(v[1], 2u), win_tap(v[2], 2u), win_tap(v[3], 2u), win_tap(v[4], 2u), win_tap(v[5], 2u), win_tap(v[6], 2u), win_tap(v[7], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(win_tap(v[0], 1u), win_tap(v[1], 1u), win_tap(v[2], 1u), win_tap(v[3], 1u), win_tap(v[4], 1u), win_tap(v[5], 1u), win_tap(v[6], 1u), win_tap(v[7], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block8(&acc, w, X8(win_tap(v[0], 0u), win_tap(v[1], 0u), win_tap(v[2], 0u), win_tap(v[3], 0u), win_tap(v[4], 0u), win_tap(v[5], 0u), win_tap(v[6], 0u), win_tap(v[7], 0u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile4(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
}

fn backward_data_3x3_body_v8(f: u32, lid: u32, sid: u32, init: Acc, c: Conv3) {
    let segs = (p.w + 8u - 1u) / 8u; // per row
    let nseg = p.n * p.h * segs;
    let hw = p.h * p.w;
    let tl = tile(f, lid, c.nrows, nseg * 8u, 1u);
    let l8 = sid & 7u;

    let sg = tl.cols.x / 8u;
    let s = min(sg, nseg - 1u);
    let img = s / (p.h * segs);
    let y = (s / segs) % p.h;
    let x0 = (s % segs) * 8u;
    let inbase = (img * c.in_tot + c.in_off) * hw;
    let edges = vec3(x0 > 0u, x0 + 4u < p.w, x0 + 8u < p.w);

    var acc = init;
    var hi = init; // pixels 4..8
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + 1u) - i32(ky); // tap ky reads dy row y + 1 - ky
        let rowok = (iy >= 0) & (iy < i32(p.h));
        let rowoff = inbase + select(0u, u32(iy), rowok) * p.w + x0;
        for (var k0 = 0u; k0 < c.kch; k0 += 8u) {
            // This lane's weights: channel k0 + l8, taps (ky, 0..3).
            let kl = k0 + l8;
            let ci = min(kl, c.kch - 1u);
            let wok = kl < c.kch;
            var w: Row;
            if (SHORT_K && c.kch - k0 <= 4u) {
                var v: array<Win10, 4>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block4(&acc, w, X4(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u)));
                block4(&hi, w, X4(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block4(&acc, w, X4(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u)));
                block4(&hi, w, X4(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block4(&acc, w, X4(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u)));
                block4(&hi, w, X4(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u)));
            } else {
                var v: array<Win10, 8>;
                v[0] = dy_win10(rowoff + min(k0 + 0u, c.kch - 1u) * hw, edges, rowok & (k0 + 0u < c.kch));
                v[1] = dy_win10(rowoff + min(k0 + 1u, c.kch - 1u) * hw, edges, rowok & (k0 + 1u < c.kch));
                v[2] = dy_win10(rowoff + min(k0 + 2u, c.kch - 1u) * hw, edges, rowok & (k0 + 2u < c.kch));
                v[3] = dy_win10(rowoff + min(k0 + 3u, c.kch - 1u) * hw, edges, rowok & (k0 + 3u < c.kch));
                v[4] = dy_win10(rowoff + min(k0 + 4u, c.kch - 1u) * hw, edges, rowok & (k0 + 4u < c.kch));
                v[5] = dy_win10(rowoff + min(k0 + 5u, c.kch - 1u) * hw, edges, rowok & (k0 + 5u < c.kch));
                v[6] = dy_win10(rowoff + min(k0 + 6u, c.kch - 1u) * hw, edges, rowok & (k0 + 6u < c.kch));
                v[7] = dy_win10(rowoff + min(k0 + 7u, c.kch - 1u) * hw, edges, rowok & (k0 + 7u < c.kch));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 0u, wok); // kx = 0: window elements 2..
                block8(&acc, w, X8(tap10_lo(v[0], 2u), tap10_lo(v[1], 2u), tap10_lo(v[2], 2u), tap10_lo(v[3], 2u), tap10_lo(v[4], 2u), tap10_lo(v[5], 2u), tap10_lo(v[6], 2u), tap10_lo(v[7], 2u)));
                block8(&hi, w, X8(tap10_hi(v[0], 2u), tap10_hi(v[1], 2u), tap10_hi(v[2], 2u), tap10_hi(v[3], 2u), tap10_hi(v[4], 2u), tap10_hi(v[5], 2u), tap10_hi(v[6], 2u), tap10_hi(v[7], 2u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 1u, wok); // kx = 1: window elements 1..
                block8(&acc, w, X8(tap10_lo(v[0], 1u), tap10_lo(v[1], 1u), tap10_lo(v[2], 1u), tap10_lo(v[3], 1u), tap10_lo(v[4], 1u), tap10_lo(v[5], 1u), tap10_lo(v[6], 1u), tap10_lo(v[7], 1u)));
                block8(&hi, w, X8(tap10_hi(v[0], 1u), tap10_hi(v[1], 1u), tap10_hi(v[2], 1u), tap10_hi(v[3], 1u), tap10_hi(v[4], 1u), tap10_hi(v[5], 1u), tap10_hi(v[6], 1u), tap10_hi(v[7], 1u)));
                w = w_rows_bwd(tl.m0, ci, ky * 3u + 2u, wok); // kx = 2: window elements 0..
                block8(&acc, w, X8(tap10_lo(v[0], 0u), tap10_lo(v[1], 0u), tap10_lo(v[2], 0u), tap10_lo(v[3], 0u), tap10_lo(v[4], 0u), tap10_lo(v[5], 0u), tap10_lo(v[6], 0u), tap10_lo(v[7], 0u)));
                block8(&hi, w, X8(tap10_hi(v[0], 0u), tap10_hi(v[1], 0u), tap10_hi(v[2], 0u), tap10_hi(v[3], 0u), tap10_hi(v[4], 0u), tap10_hi(v[5], 0u), tap10_hi(v[6], 0u), tap10_hi(v[7], 0u)));
            }
        }
    }
    let col = (img * c.out_tot + c.out_off) * hw + y * p.w + x0 + LANE4;
    let ok = (vec4(sg) < vec4(nseg)) & (vec4(x0) + LANE4 < vec4(p.w));
    store_tile4(&acc, Out(col, ok, tl.m0, c.nrows, hw, c.add));
    let ok_hi = (vec4(sg) < vec4(nseg)) & (vec4(x0 + 4u) + LANE4 < vec4(p.w));
    store_tile4(&hi, Out(col + vec4(4u), ok_hi, tl.m0, c.nrows, hw, c.add));
}

// ---------------------------------------------------------------------------------------------
// Backward weight, split-K: partial[s, co, j] = sum over slice s of the n*p*q output pixels of
// dy[n, co, oy, ox] * x[n, ci, oy*stride-pad+ky, ox*stride-pad+kx], with j = (ci, ky, kx).
// GEMM rows = output channels (dy), columns = cin*kh*kw (lanes), K = output pixels.

// Output pixel counters (image, oy, ox), advanced without branches.
fn advance(c: vec3<u32>) -> vec3<u32> {
    var n = c;
    n.z += 1u;
    let wx = n.z == p.q;
    n.z = select(n.z, 0u, wx);
    n.y += u32(wx);
    let wy = n.y == p.p;
    n.y = select(n.y, 0u, wy);
    n.x += u32(wy);
    return n;
}

// The x values the columns multiply at output pixel c (0 where the tap is padding or !valid).
fn x_cols(c: vec3<u32>, xoff: vec4<u32>, ky: vec4<i32>, kx: vec4<i32>, valid: bool, pointwise: bool) -> vec4<f32> {
    let base = min(c.x, p.n - 1u) * p.a_tot * p.h * p.w;
    if (pointwise) {
        return select(vec4(0.0), gather(xoff + (base + c.y * p.w + c.z)), vec4(valid));
    }
    let yy = vec4(i32(c.y * p.stride)) + ky;
    let xx = vec4(i32(c.z * p.stride)) + kx;
    let ok = (yy >= vec4(0)) & (yy < vec4(i32(p.h))) & (xx >= vec4(0)) & (xx < vec4(i32(p.w))) & vec4(valid);
    let i = select(vec4(0u), xoff + base + vec4<u32>(yy) * p.w + vec4<u32>(xx), ok);
    return select(vec4(0.0), gather(i), ok);
}

fn backward_weight_body(f: u32, lid: u32, sid: u32, pointwise: bool) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let ncols = p.cin * kk;
    let tl = tile(f, lid, p.cout, ncols, p.splits);
    let rows = Rows(tl.m0, p.cout - 1u, pq);
    let l8 = sid & 7u;

    let j = min(tl.cols, vec4(ncols - 1u));
    let tap = j % kk;
    let xoff = (p.a_off + j / kk) * hw;
    let ky = vec4<i32>(tap / p.kw) - i32(p.pad);
    let kx = vec4<i32>(tap % p.kw) - i32(p.pad);

    let total = p.n * pq;
    let r0 = min(tl.extra * p.split_len, total);
    let r1 = min(r0 + p.split_len, total);
    // This lane's output pixel for the dy loads, and the block's first one for the x loads.
    var img_l = (r0 + l8) / pq;
    var pix_l = (r0 + l8) % pq;
    var c = vec3(r0 / pq, (r0 % pq) / p.q, (r0 % pq) % p.q);
    var acc: Acc;
    for (var k0 = r0; k0 < r1; k0 += 8u) {
        let dyb = (min(img_l, p.n - 1u) * p.b_tot + p.b_off) * pq + pix_l;
        let w = load_rows(rows, dyb, k0 + l8 < r1);
        var xs: X8;
        xs[0] = x_cols(c, xoff, ky, kx, k0 < r1, pointwise);
        c = advance(c);
        xs[1] = x_cols(c, xoff, ky, kx, k0 + 1u < r1, pointwise);
        c = advance(c);
        xs[2] = x_cols(c, xoff, ky, kx, k0 + 2u < r1, pointwise);
        c = advance(c);
        xs[3] = x_cols(c, xoff, ky, kx, k0 + 3u < r1, pointwise);
        c = advance(c);
        xs[4] = x_cols(c, xoff, ky, kx, k0 + 4u < r1, pointwise);
        c = advance(c);
        xs[5] = x_cols(c, xoff, ky, kx, k0 + 5u < r1, pointwise);
        c = advance(c);
        xs[6] = x_cols(c, xoff, ky, kx, k0 + 6u < r1, pointwise);
        c = advance(c);
        xs[7] = x_cols(c, xoff, ky, kx, k0 + 7u < r1, pointwise);
        c = advance(c);
        block8(&acc, w, xs);
        pix_l += 8u;
        while (pix_l >= pq) {
            pix_l -= pq;
            img_l += 1u;
        }
    }
    let col = tl.extra * p.cout * ncols + tl.cols;
    store_tile(&acc, Out(col, tl.cols < vec4(ncols), tl.m0, p.cout, ncols, false));
}

// Backward weight of a 3x3, stride 1, pad 1 convolution with row windows: an invocation owns
// one input channel ci (lanes: consecutive channels) and the TM output channels of its
// workgroup, all 9 taps (acc[ky][m] holds taps kx = 0..3 as .xyz). The n*h rows of the image are
// cut into segments of 8 pixels, and the segments into slices (p.splits of p.split_len, the
// shape's choice). Per segment a lane loads dy of pixel x0 + l8 for the TM rows (shared by
// subgroupBroadcast, block8) and its channel's three x row windows x0 - 1 .. x0 + 9 (as two
// vec4s and two ends on rows of a multiple of 4 pixels): 12 + TM loads for 8 * 9 * TM FMAs,
// where backward_weight's gathers load 8 * TN + TM per 8 * TN * TM. Every weight sums its slice's
// pixels in order (segment by segment, pixel by pixel), whatever the tiles.

// 10 values of x row window x0 - 1 .. x0 + 9 at `row` (the row's start, 0 if !ok), one load
// each (rows of any width).
fn x_at10(row: u32, c: i32, ok: bool) -> f32 {
    let v = ok & (c >= 0) & (c < i32(p.w));
    return select(0.0, src[select(0u, row + u32(c), v)], v);
}

fn x_win10(row: u32, x0: u32, ok: bool) -> Win10 {
    let c = i32(x0) - 1;
    let a = vec4(x_at10(row, c + 1, ok), x_at10(row, c + 2, ok), x_at10(row, c + 3, ok), x_at10(row, c + 4, ok));
    let b = vec4(x_at10(row, c + 5, ok), x_at10(row, c + 6, ok), x_at10(row, c + 7, ok), x_at10(row, c + 8, ok));
    return Win10(x_at10(row, c, ok), a, b, x_at10(row, c + 9, ok));
}

// Channel base xb's window of row y + ky - 1 for the segment at x0: one load per value, or
// (backward_weight_3x3_v4, rows of a multiple of 4 pixels) two vec4s and two ends.
fn bw_win(xb: u32, y: u32, ky: u32, x0: u32) -> Win10 {
    let iy = i32(y + ky) - 1;
    let ok = (iy >= 0) & (iy < i32(p.h));
    return x_win10(xb + select(0u, u32(iy), ok) * p.w, x0, ok);
}

fn bw_win4(xb: u32, y: u32, ky: u32, x0: u32, edges: vec3<bool>) -> Win10 {
    let iy = i32(y + ky) - 1;
    let ok = (iy >= 0) & (iy < i32(p.h));
    return dy_win10(xb + select(0u, u32(iy), ok) * p.w + x0, edges, ok);
}

// The 8 pixels' x values for the three kx taps: (e[u], e[u + 1], e[u + 2]) for pixel u.
fn bw_taps(v: Win10) -> X8 {
    return X8(vec4(v.e0, v.a.xy, 0.0), vec4(v.a.xyz, 0.0), vec4(v.a.yzw, 0.0), vec4(v.a.zw, v.b.x, 0.0),
              vec4(v.a.w, v.b.xy, 0.0), vec4(v.b.xyz, 0.0), vec4(v.b.yzw, 0.0), vec4(v.b.zw, v.e9, 0.0));
}

fn backward_weight_3x3_body(f: u32, lid: u32, sid: u32) {
    let hw = p.h * p.w;
    let segs = (p.w + 7u) / 8u; // per row
    let mblocks = (p.cout + TM - 1u) / TM;
    let nblocks = (p.cin + WG - 1u) / WG;
    let fc = min(f, mblocks * nblocks * p.splits - 1u);
    let m0 = (fc % mblocks) * TM;
    let ci_l = ((fc / mblocks) % nblocks) * WG + lid;
    let split = fc / (mblocks * nblocks);
    let ci = min(ci_l, p.cin - 1u);
    let rows = Rows(m0, p.cout - 1u, hw);
    let l8 = sid & 7u;

    let total = p.n * p.h * segs;
    let s0 = min(split * p.split_len, total);
    let s1 = min(s0 + p.split_len, total);
    // The segment's image, row and first pixel, advanced without divisions.
    var sx = s0 % segs;
    var y = (s0 / segs) % p.h;
    var img = s0 / (segs * p.h);
    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    for (var sg = s0; sg < s1; sg++) {
        let x0 = sx * 8u;
        let im = min(img, p.n - 1u);
        let dyb = (im * p.b_tot + p.b_off) * hw + y * p.w + min(x0 + l8, p.w - 1u);
        let w = load_rows(rows, dyb, x0 + l8 < p.w);
        let xb = (im * p.a_tot + p.a_off + ci) * hw;
        block8(&acc0, w, bw_taps(bw_win(xb, y, 0u, x0)));
        block8(&acc1, w, bw_taps(bw_win(xb, y, 1u, x0)));
        block8(&acc2, w, bw_taps(bw_win(xb, y, 2u, x0)));
        sx += 1u;
        if (sx == segs) {
            sx = 0u;
            y += 1u;
            if (y == p.h) {
                y = 0u;
                img += 1u;
            }
        }
    }
    // partial[split, co, ci * 9 + ky * 3 + kx]
    let ncols = p.cin * 9u;
    let col = split * p.cout * ncols + ci_l * 9u + LANE4;
    let ok = vec4(ci_l < p.cin) & (LANE4 < vec4(3u));
    store_tile(&acc0, Out(col, ok, m0, p.cout, ncols, false));
    store_tile(&acc1, Out(col + vec4(3u), ok, m0, p.cout, ncols, false));
    store_tile(&acc2, Out(col + vec4(6u), ok, m0, p.cout, ncols, false));
}

// backward_weight_3x3 on rows of a multiple of 4 pixels (bw_win4): the same sums in the same order.
fn backward_weight_3x3_body_v4(f: u32, lid: u32, sid: u32) {
    let hw = p.h * p.w;
    let segs = (p.w + 7u) / 8u; // per row
    let mblocks = (p.cout + TM - 1u) / TM;
    let nblocks = (p.cin + WG - 1u) / WG;
    let fc = min(f, mblocks * nblocks * p.splits - 1u);
    let m0 = (fc % mblocks) * TM;
    let ci_l = ((fc / mblocks) % nblocks) * WG + lid;
    let split = fc / (mblocks * nblocks);
    let ci = min(ci_l, p.cin - 1u);
    let rows = Rows(m0, p.cout - 1u, hw);
    let l8 = sid & 7u;

    let total = p.n * p.h * segs;
    let s0 = min(split * p.split_len, total);
    let s1 = min(s0 + p.split_len, total);
    // The segment's image, row and first pixel, advanced without divisions.
    var sx = s0 % segs;
    var y = (s0 / segs) % p.h;
    var img = s0 / (segs * p.h);
    var acc0: Acc;
    var acc1: Acc;
    var acc2: Acc;
    for (var sg = s0; sg < s1; sg++) {
        let x0 = sx * 8u;
        let im = min(img, p.n - 1u);
        let dyb = (im * p.b_tot + p.b_off) * hw + y * p.w + min(x0 + l8, p.w - 1u);
        let w = load_rows(rows, dyb, x0 + l8 < p.w);
        let xb = (im * p.a_tot + p.a_off + ci) * hw;
        let edges = vec3(x0 > 0u, x0 + 4u < p.w, x0 + 8u < p.w);
        block8(&acc0, w, bw_taps(bw_win4(xb, y, 0u, x0, edges)));
        block8(&acc1, w, bw_taps(bw_win4(xb, y, 1u, x0, edges)));
        block8(&acc2, w, bw_taps(bw_win4(xb, y, 2u, x0, edges)));
        sx += 1u;
        if (sx == segs) {
            sx = 0u;
            y += 1u;
            if (y == p.h) {
                y = 0u;
                img += 1u;
            }
        }
    }
    // partial[split, co, ci * 9 + ky * 3 + kx]
    let ncols = p.cin * 9u;
    let col = split * p.cout * ncols + ci_l * 9u + LANE4;
    let ok = vec4(ci_l < p.cin) & (LANE4 < vec4(3u));
    store_tile(&acc0, Out(col, ok, m0, p.cout, ncols, false));
    store_tile(&acc1, Out(col + vec4(3u), ok, m0, p.cout, ncols, false));
    store_tile(&acc2, Out(col + vec4(6u), ok, m0, p.cout, ncols, false));
}

// ---------------------------------------------------------------------------------------------
// The GEMM entry points: workgroup f = group_index(wid, nwg) owns one tile of its body. Every forward
// adds a bias (the builder binds zeros when there is none), for the rows of the tile as its body
// cuts the columns. Variants of one op sum the same terms in the same order, in other tiles.

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    forward_body(f, lid, sid, bias_init(f, p.n * p.p * p.q));
}

@compute @workgroup_size(WG)
fn forward_flat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    forward_flat_body(f, lid, sid, bias_init(f, p.n * p.p * p.q));
}

@compute @workgroup_size(WG)
fn forward_3x3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    conv3_body(f, lid, sid, bias_init(f, p.n * p.h * ((p.w + TN - 1u) / TN) * TN), Conv3(p.cout, p.cin, p.a_off, p.a_tot, p.b_off, p.b_tot, false));
}

@compute @workgroup_size(WG)
fn forward_3x3_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    conv3_body_v4(f, lid, sid, bias_init(f, p.n * p.h * ((p.w + TN - 1u) / TN) * TN), Conv3(p.cout, p.cin, p.a_off, p.a_tot, p.b_off, p.b_tot, false));
}

@compute @workgroup_size(WG)
fn forward_3x3_v8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    conv3_body_v8(f, lid, sid, bias_init(f, p.n * p.h * ((p.w + 7u) / 8u) * 8u), Conv3(p.cout, p.cin, p.a_off, p.a_tot, p.b_off, p.b_tot, false));
}

@compute @workgroup_size(WG)
fn forward_3x3_v8_oihw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    conv3_body_v8_oihw(f, lid, sid, bias_init(f, p.n * p.h * ((p.w + 7u) / 8u) * 8u), Conv3(p.cout, p.cin, p.a_off, p.a_tot, p.b_off, p.b_tot, false));
}

@compute @workgroup_size(WG)
fn backward_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_data_body(f, lid, sid);
}

@compute @workgroup_size(WG)
fn backward_data_flat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_data_flat_body(f, lid, sid);
}

@compute @workgroup_size(WG)
fn backward_data_3x3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_data_3x3_body(f, lid, sid, Acc(), Conv3(p.cin, p.cout, p.b_off, p.b_tot, p.a_off, p.a_tot, p.accumulate != 0u));
}

@compute @workgroup_size(WG)
fn backward_data_3x3_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_data_3x3_body_v4(f, lid, sid, Acc(), Conv3(p.cin, p.cout, p.b_off, p.b_tot, p.a_off, p.a_tot, p.accumulate != 0u));
}

@compute @workgroup_size(WG)
fn backward_data_3x3_v8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_data_3x3_body_v8(f, lid, sid, Acc(), Conv3(p.cin, p.cout, p.b_off, p.b_tot, p.a_off, p.a_tot, p.accumulate != 0u));
}

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_weight_body(f, lid, sid, false);
}

@compute @workgroup_size(WG)
fn backward_weight_1x1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_weight_body(f, lid, sid, true);
}

@compute @workgroup_size(WG)
fn backward_weight_3x3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_weight_3x3_body(f, lid, sid);
}

@compute @workgroup_size(WG)
fn backward_weight_3x3_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32) {
    let f = group_index(wid, nwg);
    backward_weight_3x3_body_v4(f, lid, sid);
}

// dweight[i] (+)= sum_s partial[s, i]: one invocation per weight, over the few (<= 64) slices.
// Later batch chunks add to what the first wrote.
@compute @workgroup_size(RWG)
fn reduce_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * RWG;
    if (i >= p.len) {
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < p.splits; k++) {
        s += src[k * p.len + i];
    }
    put(i, s, p.accumulate != 0u);
}

// dbias[co] (+)= sum over n, oy, ox of dy: one workgroup per channel, strided partial sums, then
// a tree in workgroup memory. Later batch chunks add to what the first wrote.
@compute @workgroup_size(RWG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let co = wid.x;
    let pq = p.p * p.q;
    var s = 0.0;
    for (var img = 0u; img < p.n; img++) {
        let base = (img * p.b_tot + p.b_off + co) * pq;
        for (var i = lid; i < pq; i += RWG) {
            s += src[base + i];
        }
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = RWG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        put(co, red[0], p.accumulate != 0u);
    }
}
