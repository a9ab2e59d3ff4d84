// 2-D convolution (NCHW activations, OIHW weights) as register-tiled implicit GEMM.
//
// Every GEMM here puts one matrix dimension on the lanes (pixels or weight columns, TN per
// invocation) and the other (channels, TM per invocation) on the workgroup: the channel block
// comes from the workgroup id alone, so its operand loads are workgroup-uniform. On llvmpipe a
// uniform load is one scalar load broadcast to the 8 lanes while a per-lane load is a gather,
// so each gathered value feeds TM FMAs and each uniform one feeds TN. Nothing returns early and
// no loop bound depends on the lane, so the uniform loads stay outside divergent control flow;
// out-of-range rows and columns are clamped for loads and only the final stores are guarded.
//
// The flat workgroup index is wid.x + wid.y * nwg.x (see gpu::grid); where the grid overshoots,
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
override TM: u32 = 16u; // channels per invocation (workgroup-uniform), at most MAX_TM
override TN: u32 = 2u; // columns per invocation (one per lane stride), at most MAX_TN
override RWG: u32 = 256u; // reductions: invocations per workgroup, at most MAX_RWG

const MAX_TM: u32 = 32u;
const MAX_TN: u32 = 8u;
const MAX_RWG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>; // x, dy (backward data) or partials
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // y, dx, partials, dweight, dbias
@group(0) @binding(3) var<storage, read> wt: array<f32>; // weight, or dy (backward weight)
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> red: array<f32, MAX_RWG>;

fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The tile a workgroup owns: channel block fastest, so consecutive workgroups (run back to back
// on one core) share the same columns of the lane-side operand while it is in cache.
struct Tile {
    m0: u32, // first channel
    col0: u32, // this invocation's first column; its others follow at strides of WG
    extra: u32, // what is left of the flat index (the split, for backward weight)
}

fn tile(f: u32, lid: u32, rows: u32, cols: u32, extra: u32) -> Tile {
    let mblocks = (rows + TM - 1u) / TM;
    let nblocks = (cols + WG * TN - 1u) / (WG * TN);
    let fc = min(f, mblocks * nblocks * extra - 1u);
    let mb = fc % mblocks;
    let nb = (fc / mblocks) % nblocks;
    return Tile(mb * TM, nb * WG * TN + lid, fc / (mblocks * nblocks));
}

// ---------------------------------------------------------------------------------------------
// Forward: y[n, co, oh, ow] = b[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] x[n, ci, oh*s-pad+ky, ...]
// GEMM rows = output channels (uniform), columns = output pixels n*p*q (lanes), K = cin*kh*kw.

fn forward_body(f: u32, lid: u32, b: array<f32, MAX_TM>, pointwise: bool) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let npix = p.n * pq;
    let tl = tile(f, lid, p.cout, npix, 1u);

    var wrow: array<u32, MAX_TM>;
    for (var m = 0u; m < TM; m++) {
        wrow[m] = min(tl.m0 + m, p.cout - 1u) * p.cin * kk;
    }
    var xbase: array<u32, MAX_TN>; // image start of the view in x
    var oy: array<i32, MAX_TN>;
    var ox: array<i32, MAX_TN>;
    var ybase: array<u32, MAX_TN>;
    for (var t = 0u; t < TN; t++) {
        let g = min(tl.col0 + t * WG, npix - 1u);
        let img = g / pq;
        let r = g % pq;
        xbase[t] = (img * p.a_tot + p.a_off) * hw;
        ybase[t] = (img * p.b_tot + p.b_off) * pq + r;
        oy[t] = i32((r / p.q) * p.stride) - i32(p.pad);
        ox[t] = i32((r % p.q) * p.stride) - i32(p.pad);
    }

    var acc: array<f32, 256>; // MAX_TM * MAX_TN, [m * MAX_TN + t]
    var xv: array<f32, MAX_TN>;
    if (pointwise) {
        // 1x1, stride 1, pad 0: x is already the column matrix.
        var off: array<u32, MAX_TN>;
        for (var t = 0u; t < TN; t++) {
            off[t] = xbase[t] + u32(oy[t]) * p.w + u32(ox[t]);
        }
        for (var ci = 0u; ci < p.cin; ci++) {
            for (var t = 0u; t < TN; t++) {
                xv[t] = src[off[t] + ci * hw];
            }
            for (var m = 0u; m < TM; m++) {
                let wv = wt[wrow[m] + ci];
                for (var t = 0u; t < TN; t++) {
                    acc[m * MAX_TN + t] = fma(wv, xv[t], acc[m * MAX_TN + t]);
                }
            }
        }
    } else {
        // Taps outside, channels inside: the im2col index math and padding test happen once
        // per tap and are amortised over cin.
        var off: array<u32, MAX_TN>;
        var ok: array<bool, MAX_TN>;
        for (var tap = 0u; tap < kk; tap++) {
            let ky = i32(tap / p.kw);
            let kx = i32(tap % p.kw);
            for (var t = 0u; t < TN; t++) {
                let iy = oy[t] + ky;
                let ix = ox[t] + kx;
                ok[t] = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
                off[t] = select(0u, xbase[t] + u32(iy) * p.w + u32(ix), ok[t]);
            }
            for (var ci = 0u; ci < p.cin; ci++) {
                for (var t = 0u; t < TN; t++) {
                    xv[t] = select(0.0, src[off[t] + ci * hw], ok[t]);
                }
                let wk = ci * kk + tap;
                for (var m = 0u; m < TM; m++) {
                    let wv = wt[wrow[m] + wk];
                    for (var t = 0u; t < TN; t++) {
                        acc[m * MAX_TN + t] = fma(wv, xv[t], acc[m * MAX_TN + t]);
                    }
                }
            }
        }
    }

    for (var t = 0u; t < TN; t++) {
        let g = tl.col0 + t * WG;
        for (var m = 0u; m < TM; m++) {
            let co = tl.m0 + m;
            if (g < npix && co < p.cout) {
                dst[ybase[t] + co * pq] = acc[m * MAX_TN + t] + b[m];
            }
        }
    }
}

fn bias_tile(f: u32) -> array<f32, MAX_TM> {
    let m0 = tile(f, 0u, p.cout, p.n * p.p * p.q, 1u).m0;
    var b: array<f32, MAX_TM>;
    for (var m = 0u; m < TM; m++) {
        b[m] = bias[min(m0 + m, p.cout - 1u)];
    }
    return b;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    forward_body(flat(wid, nwg), lid, array<f32, MAX_TM>(), false);
}

@compute @workgroup_size(WG)
fn forward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let f = flat(wid, nwg);
    forward_body(f, lid, bias_tile(f), false);
}

@compute @workgroup_size(WG)
fn forward_1x1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    forward_body(flat(wid, nwg), lid, array<f32, MAX_TM>(), true);
}

@compute @workgroup_size(WG)
fn forward_1x1_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let f = flat(wid, nwg);
    forward_body(f, lid, bias_tile(f), true);
}

// ---------------------------------------------------------------------------------------------
// Backward data: dx[n, ci, iy, ix] (+)= sum_{co, ky, kx} w[co, ci, ky, kx] dy[n, co, oy, ox]
// over the taps with iy + pad - ky = oy * stride (and the same for x).
// GEMM rows = input channels (uniform), columns = input pixels n*h*w (lanes), K = cout*kh*kw.

fn backward_data_body(f: u32, lid: u32, pointwise: bool) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let npix = p.n * hw;
    let tl = tile(f, lid, p.cin, npix, 1u);
    let wstep = p.cin * kk; // from one output channel's weights to the next

    var wcol: array<u32, MAX_TM>;
    for (var m = 0u; m < TM; m++) {
        wcol[m] = min(tl.m0 + m, p.cin - 1u) * kk;
    }
    var dybase: array<u32, MAX_TN>;
    var iy: array<i32, MAX_TN>;
    var ix: array<i32, MAX_TN>;
    var dxbase: array<u32, MAX_TN>;
    for (var t = 0u; t < TN; t++) {
        let g = min(tl.col0 + t * WG, npix - 1u);
        let img = g / hw;
        let r = g % hw;
        dybase[t] = (img * p.b_tot + p.b_off) * pq;
        dxbase[t] = (img * p.a_tot + p.a_off) * hw + r;
        iy[t] = i32(r / p.w) + i32(p.pad);
        ix[t] = i32(r % p.w) + i32(p.pad);
    }

    var acc: array<f32, 256>;
    var dv: array<f32, MAX_TN>;
    if (pointwise) {
        var off: array<u32, MAX_TN>;
        for (var t = 0u; t < TN; t++) {
            off[t] = dybase[t] + u32(iy[t]) * p.q + u32(ix[t]);
        }
        for (var co = 0u; co < p.cout; co++) {
            for (var t = 0u; t < TN; t++) {
                dv[t] = src[off[t] + co * pq];
            }
            for (var m = 0u; m < TM; m++) {
                let wv = wt[co * wstep + wcol[m]];
                for (var t = 0u; t < TN; t++) {
                    acc[m * MAX_TN + t] = fma(wv, dv[t], acc[m * MAX_TN + t]);
                }
            }
        }
    } else {
        var off: array<u32, MAX_TN>;
        var ok: array<bool, MAX_TN>;
        let s = i32(p.stride);
        for (var tap = 0u; tap < kk; tap++) {
            let ky = i32(tap / p.kw);
            let kx = i32(tap % p.kw);
            for (var t = 0u; t < TN; t++) {
                // The output pixel this tap reads from, if the tap lands on one.
                let ty = iy[t] - ky;
                let tx = ix[t] - kx;
                let oyy = ty / s;
                let oxx = tx / s;
                ok[t] = ty >= 0 && tx >= 0 && oyy * s == ty && oxx * s == tx && oyy < i32(p.p) && oxx < i32(p.q);
                off[t] = select(0u, dybase[t] + u32(oyy) * p.q + u32(oxx), ok[t]);
            }
            for (var co = 0u; co < p.cout; co++) {
                for (var t = 0u; t < TN; t++) {
                    dv[t] = select(0.0, src[off[t] + co * pq], ok[t]);
                }
                let wk = co * wstep + tap;
                for (var m = 0u; m < TM; m++) {
                    let wv = wt[wk + wcol[m]];
                    for (var t = 0u; t < TN; t++) {
                        acc[m * MAX_TN + t] = fma(wv, dv[t], acc[m * MAX_TN + t]);
                    }
                }
            }
        }
    }

    for (var t = 0u; t < TN; t++) {
        let g = tl.col0 + t * WG;
        for (var m = 0u; m < TM; m++) {
            let ci = tl.m0 + m;
            if (g < npix && ci < p.cin) {
                let i = dxbase[t] + ci * hw;
                var v = acc[m * MAX_TN + t];
                if (p.accumulate != 0u) {
                    v += dst[i];
                }
                dst[i] = v;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward_data(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    backward_data_body(flat(wid, nwg), lid, false);
}

@compute @workgroup_size(WG)
fn backward_data_1x1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    backward_data_body(flat(wid, nwg), lid, true);
}

// ---------------------------------------------------------------------------------------------
// Backward weight, split-K: partial[s, co, j] = sum over slice s of the n*p*q output pixels of
// dy[n, co, oy, ox] * x[n, ci, oy*stride-pad+ky, ox*stride-pad+kx], with j = (ci, ky, kx).
// GEMM rows = output channels (uniform: dy loads are scalar), columns = cin*kh*kw (lanes).
// The pixel counters are uniform, so walking them costs no per-lane work.

fn backward_weight_body(f: u32, lid: u32, pointwise: bool) {
    let pq = p.p * p.q;
    let hw = p.h * p.w;
    let kk = p.kh * p.kw;
    let cols = p.cin * kk;
    let tl = tile(f, lid, p.cout, cols, p.splits);

    var dyrow: array<u32, MAX_TM>;
    for (var m = 0u; m < TM; m++) {
        dyrow[m] = (p.b_off + min(tl.m0 + m, p.cout - 1u)) * pq;
    }
    var xoff: array<u32, MAX_TN>; // channel start within an image of x
    var ky: array<i32, MAX_TN>;
    var kx: array<i32, MAX_TN>;
    for (var t = 0u; t < TN; t++) {
        let j = min(tl.col0 + t * WG, cols - 1u);
        let tap = j % kk;
        xoff[t] = (p.a_off + j / kk) * hw;
        ky[t] = i32(tap / p.kw) - i32(p.pad);
        kx[t] = i32(tap % p.kw) - i32(p.pad);
    }

    let total = p.n * pq;
    let r0 = min(tl.extra * p.split_len, total);
    let r1 = min(r0 + p.split_len, total);
    var img = r0 / pq;
    var pix = r0 % pq;
    var acc: array<f32, 256>;
    var xv: array<f32, MAX_TN>;
    if (pointwise) {
        for (var r = r0; r < r1; r++) {
            let xb = img * p.a_tot * hw + pix;
            for (var t = 0u; t < TN; t++) {
                xv[t] = src[xb + xoff[t]];
            }
            let db = img * p.b_tot * pq + pix;
            for (var m = 0u; m < TM; m++) {
                let dv = wt[db + dyrow[m]];
                for (var t = 0u; t < TN; t++) {
                    acc[m * MAX_TN + t] = fma(dv, xv[t], acc[m * MAX_TN + t]);
                }
            }
            pix += 1u;
            if (pix == pq) {
                pix = 0u;
                img += 1u;
            }
        }
    } else {
        var oy = pix / p.q;
        var ox = pix % p.q;
        for (var r = r0; r < r1; r++) {
            let xb = img * p.a_tot * hw;
            let y0 = i32(oy * p.stride);
            let x0 = i32(ox * p.stride);
            for (var t = 0u; t < TN; t++) {
                let yy = y0 + ky[t];
                let xx = x0 + kx[t];
                let ok = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
                let i = select(0u, xb + xoff[t] + u32(yy) * p.w + u32(xx), ok);
                xv[t] = select(0.0, src[i], ok);
            }
            let db = img * p.b_tot * pq + oy * p.q + ox;
            for (var m = 0u; m < TM; m++) {
                let dv = wt[db + dyrow[m]];
                for (var t = 0u; t < TN; t++) {
                    acc[m * MAX_TN + t] = fma(dv, xv[t], acc[m * MAX_TN + t]);
                }
            }
            ox += 1u;
            if (ox == p.q) {
                ox = 0u;
                oy += 1u;
                if (oy == p.p) {
                    oy = 0u;
                    img += 1u;
                }
            }
        }
    }

    for (var t = 0u; t < TN; t++) {
        let j = tl.col0 + t * WG;
        for (var m = 0u; m < TM; m++) {
            let co = tl.m0 + m;
            if (j < cols && co < p.cout) {
                dst[(tl.extra * p.cout + co) * cols + j] = acc[m * MAX_TN + t];
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    backward_weight_body(flat(wid, nwg), lid, false);
}

@compute @workgroup_size(WG)
fn backward_weight_1x1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    backward_weight_body(flat(wid, nwg), lid, true);
}

// dweight[i] = sum_s partial[s, i]: one invocation per weight, over the few (<= 64) slices.
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
    dst[i] = s;
}

// dbias[co] = sum over n, oy, ox of dy: one workgroup per channel, strided partial sums, then a
// tree in workgroup memory.
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
        dst[co] = red[0];
    }
}
