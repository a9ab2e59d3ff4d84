// A driver probe, not a kernel: what one load costs, by the kind of memory and address, so that
// kernel designs rest on measurements (benches/loads.rs; benches/README.md has the figures).
// Every invocation runs p.k / 4 iterations of four loads of kind MODE and sums what it loads,
// with the loop bound from a uniform (as in the kernels). MODE 0 loads nothing: the loop alone.
// Every buffer and texel holds 1.0, so each sum is known (the bench checks it).

struct Params {
    k: u32, // loads per invocation
    stride: u32, // elements between the regions of consecutive workgroups
    mask: u32, // 4096 - 1: the index mask of the uniform array (vec4s) and the workgroup array
    _pad: u32,
}

override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> u4: array<vec4<f32>, 4096>;
@group(0) @binding(5) var tex: texture_2d<f32>;

var<workgroup> shared_x: array<f32, 4096>;

// Texel i of the 1024 x 256 texture (shifts, not a division by its width).
fn texel(i: u32) -> vec4<f32> {
    return textureLoad(tex, vec2(i & 1023u, (i >> 10u) & 255u), 0);
}

fn sum4(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

@compute @workgroup_size(64)
fn probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % 8u;
    if (MODE == 6u) {
        for (var i = lid; i < 4096u; i += 64u) {
            shared_x[i] = 1.0;
        }
        workgroupBarrier();
    }
    let base = wid.x * p.stride;
    var a = vec4(0.0);
    for (var k = 0u; k < p.k; k += 4u) {
        // Four loads 8 elements apart, so that the 8 lanes of a SIMD vector read 32 consecutive.
        let o = base + k * 8u + lane;
        let m = p.mask;
        switch MODE {
            case 0u: { a += vec4(f32(k), f32(k + 1u), f32(k + 2u), f32(k + 3u)); }
            // Storage, the same address in every lane (it depends only on the loop counter).
            case 1u: { a += vec4(x[k * 8u], x[k * 8u + 8u], x[k * 8u + 16u], x[k * 8u + 24u]); }
            // Storage, one address per lane.
            case 2u: { a += vec4(x[o], x[o + 8u], x[o + 16u], x[o + 24u]); }
            case 3u: { a += vec4(sum4(x4[o]), sum4(x4[o + 8u]), sum4(x4[o + 16u]), sum4(x4[o + 24u])); }
            // Storage vec4, an address per lane, the four loads p.stride floats apart (rows of a
            // matrix, as a GEMM walks K), the next iteration on 4 vec4s further.
            case 8u: {
                let r = wid.x * 32u + k * 4u + lane;
                let s4 = p.stride / 4u;
                a += vec4(sum4(x4[r]), sum4(x4[r + s4]), sum4(x4[r + 2u * s4]), sum4(x4[r + 3u * s4]));
            }
            // Uniform buffer (64 KiB), one address per lane.
            case 4u: {
                let mf = 4u * m + 3u; // the uniform array as f32s
                let i = o & mf;
                let j = (o + 8u) & mf;
                let l = (o + 16u) & mf;
                let n = (o + 24u) & mf;
                a += vec4(u4[i / 4u][i % 4u], u4[j / 4u][j % 4u], u4[l / 4u][l % 4u], u4[n / 4u][n % 4u]);
            }
            case 5u: {
                a += vec4(sum4(u4[o & m]), sum4(u4[(o + 8u) & m]), sum4(u4[(o + 16u) & m]), sum4(u4[(o + 24u) & m]));
            }
            // Workgroup memory, one address per lane.
            case 6u: { a += vec4(shared_x[o & m], shared_x[(o + 8u) & m], shared_x[(o + 16u) & m], shared_x[(o + 24u) & m]); }
            // A sampled texture's texels (vec4), one per lane.
            case 7u: { a += vec4(sum4(texel(o)), sum4(texel(o + 8u)), sum4(texel(o + 16u)), sum4(texel(o + 24u))); }
            default: {}
        }
    }
    y[wid.x * 64u + lid] = sum4(a);
}
