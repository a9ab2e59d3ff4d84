// Pooling and channel copies over NCHW f32 views, matching PyTorch (floor mode; average pooling
// with count_include_pad = true). A view is the channel range off.. of a buffer holding tot
// channels per image; binding k's view is (off_k, tot_k).
//
// Bindings (the same access in every entry point):
//   1 (read)       the input: x, or dy for the average/global backward, or the copy source
//   2 (read_write) the output: y, dx or the copy destination
//   3 (read)       dy of max-pool backward (which also reads x at 1)
// Flat grids: index = global x + global y * (num_workgroups.x * WG), see gpu::grid.

struct Params {
    n: u32,
    c: u32,
    h: u32,     // input height (copy: pixels per channel, with w = 1)
    w: u32,
    oh: u32,    // output height
    ow: u32,
    k: u32,
    s: u32,
    pad: u32,
    acc: u32,   // 1: the output is added to, 0: overwritten
    off1: u32,
    tot1: u32,
    off2: u32,
    tot2: u32,
    off3: u32,
    tot3: u32,
}

override WG: u32 = 256;
// Workgroup of the 2×2 average-pooling entries: WX output columns by WY rows.
override WX: u32 = 8;
override WY: u32 = 8;
// Max-pool backward input tile; one invocation per input pixel of the tile.
override TX: u32 = 16;
override TY: u32 = 16;

// Mirrors MAX_WINDOWS in src/ops/pool.rs, which picks a tile whose windows fit.
const MAX_WINDOWS: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
// vec4 aliases of 1 and 2 for planes whose size is a multiple of 4 (then every plane of every
// view starts 16-byte aligned); an entry point uses either these or the scalar ones.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
// vec2 aliases for the 2×2 average pooling of even-width planes (every row pair starts 8-byte
// aligned).
@group(0) @binding(1) var<storage, read> src2: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dst2: array<vec2<f32>>;

var<workgroup> win_idx: array<i32, MAX_WINDOWS>;
var<workgroup> win_dy: array<f32, MAX_WINDOWS>;

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

// Start of plane (img, ch) of a view with `plane` elements per channel.
fn base(img: u32, ch: u32, off: u32, tot: u32, plane: u32) -> u32 {
    return (img * tot + off + ch) * plane;
}

// The element a lane owns in a flat grid over n·c planes of `size` elements: its index `r` in
// plane (img, ch); `ok` is false past the grid's end.
struct Elem {
    ok: bool,
    r: u32,
    img: u32,
    ch: u32,
}

fn elem_at(gid: vec3<u32>, nwg: vec3<u32>, size: u32) -> Elem {
    let i = global_index(gid, nwg);
    let plane = i / size;
    return Elem(i < p.n * p.c * size, i % size, plane / p.c, plane % p.c);
}

// Average pooling 2×2 / stride 2 / no padding over even widths (DenseNet's transitions), one
// lane per 2×2 block: the generic entries spend a dozen per-lane integer divisions on every
// element, these two per block (`block_at`; rows past one grid dimension continue in z, see
// ops::pool::per_block). The sums run in the generic entries' order, so the results are
// bit-identical to theirs.
// The block (column gid.x, row `by` of `rows` per plane) of image `img`, channel `ch` a lane
// owns; `ok` is false past the grid's end.
struct Block {
    ok: bool,
    bx: u32,
    by: u32,
    img: u32,
    ch: u32,
}

fn block_at(gid: vec3<u32>, nwg: vec3<u32>, cols: u32, rows: u32) -> Block {
    let row = gid.y + gid.z * nwg.y * WY; // plane · rows + by
    let plane = row / rows;
    return Block(gid.x < cols && row < p.n * p.c * rows, gid.x, row % rows, plane / p.c, plane % p.c);
}

@compute @workgroup_size(WX, WY)
fn avg_forward_2x2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = block_at(gid, nwg, p.ow, p.oh);
    if (!b.ok) {
        return;
    }
    // vec2 index of input pixel (2·by, 2·bx)
    let i = base(b.img, b.ch, p.off1, p.tot1, p.h * p.w) / 2u + b.by * p.w + b.bx;
    let top = src2[i];
    let bottom = src2[i + p.w / 2u];
    var sum = 0.0;
    sum += top.x;
    sum += top.y;
    sum += bottom.x;
    sum += bottom.y;
    dst[base(b.img, b.ch, p.off2, p.tot2, p.oh * p.ow) + b.by * p.ow + b.bx] = sum / 4.0;
}

fn store2(o: u32, v: vec2<f32>) {
    var r = v;
    if (p.acc != 0u) {
        r += dst2[o];
    }
    dst2[o] = r;
}

// Rows of blocks cover ceil(h / 2) so that an odd height's last row (in no window) gets zeros.
@compute @workgroup_size(WX, WY)
fn avg_backward_2x2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = block_at(gid, nwg, p.ow, (p.h + 1u) / 2u);
    if (!b.ok) {
        return;
    }
    var g = 0.0;
    if (b.by < p.oh) {
        g += src[base(b.img, b.ch, p.off1, p.tot1, p.oh * p.ow) + b.by * p.ow + b.bx] / 4.0;
    }
    let o = base(b.img, b.ch, p.off2, p.tot2, p.h * p.w) / 2u + b.by * p.w + b.bx;
    store2(o, vec2(g));
    if (2u * b.by + 1u < p.h) {
        store2(o + p.w / 2u, vec2(g));
    }
}

// Max pooling 3×3 / stride 2 / padding 1 (the ImageNet stem), backward: one lane per 2×2 block
// of input pixels (2·by.., 2·bx..), which only windows by..by+1 × bx..bx+1 contain. The lane
// loads the 5×5 input region those windows span once, finds each window's maximum by
// `window_max`'s rule and gathers dy in row-major window order as `max_backward` does: the same
// results, without workgroup memory, barriers or per-pixel divisions (`block_at`).
@compute @workgroup_size(WX, WY)
fn max_backward_3s2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = block_at(gid, nwg, (p.w + 1u) / 2u, (p.h + 1u) / 2u);
    if (!b.ok) {
        return;
    }
    let xb = base(b.img, b.ch, p.off1, p.tot1, p.h * p.w);
    let gb = base(b.img, b.ch, p.off3, p.tot3, p.oh * p.ow);
    let y0 = i32(2u * b.by) - 1;
    let x0 = i32(2u * b.bx) - 1;
    var v: array<f32, 25>;
    for (var r = 0; r < 5; r++) {
        for (var c = 0; c < 5; c++) {
            let y = y0 + r;
            let x = x0 + c;
            var val = 0.0;
            if (y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w)) {
                val = src[xb + u32(y * i32(p.w) + x)];
            }
            v[r * 5 + c] = val;
        }
    }
    // Window (by + wy, bx + wx) covers region rows 2·wy.., columns 2·wx..: its winner (a
    // region index, -1 if none) and dy.
    var win: array<i32, 4>;
    var g: array<f32, 4>;
    for (var wy = 0; wy < 2; wy++) {
        for (var wx = 0; wx < 2; wx++) {
            let oy = i32(b.by) + wy;
            let ox = i32(b.bx) + wx;
            var best = Best(0.0, -1);
            var gv = 0.0;
            if (oy < i32(p.oh) && ox < i32(p.ow)) {
                gv = grad[gb + u32(oy * i32(p.ow) + ox)];
                for (var r = 2 * wy; r < 2 * wy + 3; r++) {
                    for (var c = 2 * wx; c < 2 * wx + 3; c++) {
                        let y = y0 + r;
                        let x = x0 + c;
                        if (y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w)) {
                            let val = v[r * 5 + c];
                            if (best.i < 0 || val > best.v || is_nan(val)) {
                                best = Best(val, r * 5 + c);
                            }
                        }
                    }
                }
            }
            win[wy * 2 + wx] = best.i;
            g[wy * 2 + wx] = gv;
        }
    }
    let ob = base(b.img, b.ch, p.off2, p.tot2, p.h * p.w);
    for (var py = 1; py < 3; py++) {
        for (var px = 1; px < 3; px++) {
            let y = y0 + py;
            let x = x0 + px;
            if (y < i32(p.h) && x < i32(p.w)) {
                var sum = 0.0;
                for (var k = 0; k < 4; k++) {
                    if (win[k] == py * 5 + px) {
                        sum += g[k];
                    }
                }
                store(ob + u32(y * i32(p.w) + x), sum);
            }
        }
    }
}

// By the bits: drivers may compile `v != v` as an ordered comparison (false for NaN).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

struct Best {
    v: f32,
    i: i32, // plane-local index y * w + x
}

// PyTorch's rule: the first maximum in row-major window order wins (strict >), a NaN wins, and
// padding never does. The clamped loop bounds visit exactly the in-image part of the window.
fn window_max(xb: u32, oy: u32, ox: u32) -> Best {
    let y0 = i32(oy * p.s) - i32(p.pad);
    let x0 = i32(ox * p.s) - i32(p.pad);
    let y1 = min(y0 + i32(p.k), i32(p.h));
    let x1 = min(x0 + i32(p.k), i32(p.w));
    var b = Best(0.0, -1);
    for (var y = max(y0, 0); y < y1; y++) {
        for (var x = max(x0, 0); x < x1; x++) {
            let idx = y * i32(p.w) + x;
            let v = src[xb + u32(idx)];
            if (b.i < 0 || v > b.v || is_nan(v)) {
                b = Best(v, idx);
            }
        }
    }
    return b;
}

// First window (along one axis) whose span o*s-pad .. o*s-pad+k-1 reaches coordinate `lo`.
fn first_window(lo: i32) -> i32 {
    let a = lo + i32(p.pad) - i32(p.k) + 1;
    if (a <= 0) {
        return 0;
    }
    return (a + i32(p.s) - 1) / i32(p.s);
}

// Last window (of `count`) that starts at or before coordinate `hi` (hi + pad >= 0).
fn last_window(hi: i32, count: u32) -> i32 {
    return min((hi + i32(p.pad)) / i32(p.s), i32(count) - 1);
}

// count_include_pad: the window clipped to the padded image, as PyTorch divides.
fn avg_divisor(oy: i32, ox: i32) -> f32 {
    let y0 = oy * i32(p.s) - i32(p.pad);
    let x0 = ox * i32(p.s) - i32(p.pad);
    let hy = min(y0 + i32(p.k), i32(p.h + p.pad)) - y0;
    let hx = min(x0 + i32(p.k), i32(p.w + p.pad)) - x0;
    return f32(hy * hx);
}

fn store(o: u32, v: f32) {
    var r = v;
    if (p.acc != 0u) {
        r += dst[o];
    }
    dst[o] = r;
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let e = elem_at(gid, nwg, ohw);
    if (!e.ok) {
        return;
    }
    let b = window_max(base(e.img, e.ch, p.off1, p.tot1, p.h * p.w), e.r / p.ow, e.r % p.ow);
    dst[base(e.img, e.ch, p.off2, p.tot2, ohw) + e.r] = b.v;
}

// One workgroup per (plane, input tile). The argmax and dy of every window touching the tile
// are computed once into workgroup memory; then each input pixel gathers dy from the windows
// whose argmax it is, so no two invocations write the same dx and no atomics are needed.
@compute @workgroup_size(TX, TY)
fn max_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = group_index(wid, nwg);
    let tiles_x = (p.w + TX - 1u) / TX;
    let tiles = tiles_x * ((p.h + TY - 1u) / TY);
    if (g >= p.n * p.c * tiles) {
        return;
    }
    let plane = g / tiles;
    let t = g % tiles;
    let img = plane / p.c;
    let ch = plane % p.c;
    let ty0 = i32((t / tiles_x) * TY);
    let tx0 = i32((t % tiles_x) * TX);
    let wy0 = first_window(ty0);
    let wx0 = first_window(tx0);
    let nwy = max(last_window(ty0 + i32(TY) - 1, p.oh) - wy0 + 1, 0);
    let nwx = max(last_window(tx0 + i32(TX) - 1, p.ow) - wx0 + 1, 0);
    let xb = base(img, ch, p.off1, p.tot1, p.h * p.w);
    let gb = base(img, ch, p.off3, p.tot3, p.oh * p.ow);
    for (var j = i32(li); j < nwx * nwy; j += i32(TX * TY)) {
        let oy = u32(wy0 + j / nwx);
        let ox = u32(wx0 + j % nwx);
        win_idx[j] = window_max(xb, oy, ox).i;
        win_dy[j] = grad[gb + oy * p.ow + ox];
    }
    workgroupBarrier();
    let y = ty0 + i32(lid.y);
    let x = tx0 + i32(lid.x);
    if (y >= i32(p.h) || x >= i32(p.w)) {
        return;
    }
    let me = y * i32(p.w) + x;
    // Windows in row-major order, the order in which PyTorch's backward adds them up.
    var sum = 0.0;
    let ox0 = first_window(x);
    let ox1 = last_window(x, p.ow);
    for (var oy = first_window(y); oy <= last_window(y, p.oh); oy++) {
        for (var ox = ox0; ox <= ox1; ox++) {
            let j = (oy - wy0) * nwx + (ox - wx0);
            if (win_idx[j] == me) {
                sum += win_dy[j];
            }
        }
    }
    store(base(img, ch, p.off2, p.tot2, p.h * p.w) + u32(me), sum);
}

@compute @workgroup_size(WG)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ohw = p.oh * p.ow;
    let e = elem_at(gid, nwg, ohw);
    if (!e.ok) {
        return;
    }
    let xb = base(e.img, e.ch, p.off1, p.tot1, p.h * p.w);
    let oy = i32(e.r / p.ow);
    let ox = i32(e.r % p.ow);
    let y0 = oy * i32(p.s) - i32(p.pad);
    let x0 = ox * i32(p.s) - i32(p.pad);
    let y1 = min(y0 + i32(p.k), i32(p.h));
    let x1 = min(x0 + i32(p.k), i32(p.w));
    var sum = 0.0;
    for (var y = max(y0, 0); y < y1; y++) {
        for (var x = max(x0, 0); x < x1; x++) {
            sum += src[xb + u32(y * i32(p.w) + x)];
        }
    }
    dst[base(e.img, e.ch, p.off2, p.tot2, ohw) + e.r] = sum / avg_divisor(oy, ox);
}

// One invocation per input pixel, gathering dy / divisor over the windows that contain it.
@compute @workgroup_size(WG)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hw = p.h * p.w;
    let e = elem_at(gid, nwg, hw);
    if (!e.ok) {
        return;
    }
    let gb = base(e.img, e.ch, p.off1, p.tot1, p.oh * p.ow);
    let y = i32(e.r / p.w);
    let x = i32(e.r % p.w);
    var sum = 0.0;
    let ox0 = first_window(x);
    let ox1 = last_window(x, p.ow);
    for (var oy = first_window(y); oy <= last_window(y, p.oh); oy++) {
        for (var ox = ox0; ox <= ox1; ox++) {
            sum += src[gb + u32(oy * i32(p.ow) + ox)] / avg_divisor(oy, ox);
        }
    }
    store(base(e.img, e.ch, p.off2, p.tot2, hw) + e.r, sum);
}

// One workgroup per (image, channel) plane.
@compute @workgroup_size(WG)
fn global_avg_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane = group_index(wid, nwg);
    if (plane >= p.n * p.c) {
        return;
    }
    let hw = p.h * p.w;
    let img = plane / p.c;
    let ch = plane % p.c;
    let xb = base(img, ch, p.off1, p.tot1, hw);
    var s = 0.0;
    for (var i = li; i < hw; i += WG) {
        s += src[xb + i];
    }
    let total = group_sum(li, s);
    if (li == 0u) {
        dst[img * p.tot2 + p.off2 + ch] = total / f32(hw);
    }
}

// As global_avg_forward for planes of a multiple of 4 pixels: a quarter of the loads.
@compute @workgroup_size(WG)
fn global_avg_forward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane = group_index(wid, nwg);
    if (plane >= p.n * p.c) {
        return;
    }
    let hw = p.h * p.w;
    let img = plane / p.c;
    let ch = plane % p.c;
    let xb = base(img, ch, p.off1, p.tot1, hw / 4u);
    var s = vec4<f32>(0.0);
    for (var i = li; i < hw / 4u; i += WG) {
        s += src4[xb + i];
    }
    let total = group_sum(li, (s.x + s.y) + (s.z + s.w));
    if (li == 0u) {
        dst[img * p.tot2 + p.off2 + ch] = total / f32(hw);
    }
}

// dx (+)= dy / (h·w), broadcast over the plane; dy is [n, c] (a view with one pixel per channel).
@compute @workgroup_size(WG)
fn global_avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let hw = p.h * p.w;
    let e = elem_at(gid, nwg, hw);
    if (!e.ok) {
        return;
    }
    let g = src[e.img * p.tot1 + p.off1 + e.ch] / f32(hw);
    store(base(e.img, e.ch, p.off2, p.tot2, hw) + e.r, g);
}

// dst view (+)= src view, c channels of h pixels (w = 1).
@compute @workgroup_size(WG)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    let per_image = p.c * p.h;
    if (i >= p.n * per_image) {
        return;
    }
    let img = i / per_image;
    let r = i % per_image;
    store((img * p.tot2 + p.off2) * p.h + r, src[(img * p.tot1 + p.off1) * p.h + r]);
}

// As copy_channels with h counted in vec4s (planes of a multiple of 4 pixels).
@compute @workgroup_size(WG)
fn copy_channels4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = global_index(gid, nwg);
    let per_image = p.c * p.h;
    if (i >= p.n * per_image) {
        return;
    }
    let img = i / per_image;
    let r = i % per_image;
    let o = (img * p.tot2 + p.off2) * p.h + r;
    var v = src4[(img * p.tot1 + p.off1) * p.h + r];
    if (p.acc != 0u) {
        v += dst4[o];
    }
    dst4[o] = v;
}
