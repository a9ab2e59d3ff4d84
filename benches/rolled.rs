//! The rolled-loop experiment (issue #22): tailor's kernels unroll their register tiles by hand
//! (templates stamp every accumulator out) because wgpu's loop bounding — a counter naga adds to
//! every loop so that no shader can hang the GPU — keeps drivers from unrolling loops
//! themselves. `create_shader_module_trusted` can turn only that off. Does a rolled register
//! tile then compile and run as fast as the unrolled one?
//!
//! One register-tiled GEMM (C = A·B, M = N = K = 512; each invocation a 4×4 tile, K in steps of
//! 4), from one template in two forms: `unrolled` (16 accumulators and every FMA written out,
//! as the kernels are) and `rolled` (an array of accumulators and `for` loops over the tile);
//! each compiled with wgpu's checks as usual and with loop bounding off. Reported: the time to
//! the first finished dispatch (lavapipe compiles a pipeline then) and the median of 7 runs.
//! `cargo bench --bench rolled`; under `cargo test` it checks the four results once, small.

use std::time::Instant;

use tailor::gpu::template::expand_with;
use tailor::Gpu;

const TEMPLATE: &str = r#"
override WG: u32 = 64;
struct P { m: u32, n: u32, k: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tiles_n = p.n / {{t}}u;
    let t = gid.x;
    if (t >= (p.m / {{t}}u) * tiles_n) { return; }
    let r0 = (t / tiles_n) * {{t}}u;
    let c0 = (t % tiles_n) * {{t}}u;
#if form == rolled
    var acc: array<f32, {{tt}}>;
    for (var k = 0u; k < p.k; k += 1u) {
        var av: array<f32, {{t}}>;
        var bv: array<f32, {{t}}>;
        for (var i = 0u; i < {{t}}u; i += 1u) {
            av[i] = a[(r0 + i) * p.k + k];
            bv[i] = b[k * p.n + c0 + i];
        }
        for (var i = 0u; i < {{t}}u; i += 1u) {
            for (var j = 0u; j < {{t}}u; j += 1u) {
                acc[i * {{t}}u + j] = fma(av[i], bv[j], acc[i * {{t}}u + j]);
            }
        }
    }
    for (var i = 0u; i < {{t}}u; i += 1u) {
        for (var j = 0u; j < {{t}}u; j += 1u) {
            c[(r0 + i) * p.n + c0 + j] = acc[i * {{t}}u + j];
        }
    }
#else
#for i in 0..{{t}}
#for j in 0..{{t}}
    var acc_{{i}}_{{j}} = 0.0;
#end
#end
    for (var k = 0u; k < p.k; k += 1u) {
#for i in 0..{{t}}
        let a{{i}} = a[(r0 + {{i}}u) * p.k + k];
        let b{{i}} = b[k * p.n + c0 + {{i}}u];
#end
#for i in 0..{{t}}
#for j in 0..{{t}}
        acc_{{i}}_{{j}} = fma(a{{i}}, b{{j}}, acc_{{i}}_{{j}});
#end
#end
    }
#for i in 0..{{t}}
#for j in 0..{{t}}
    c[(r0 + {{i}}u) * p.n + c0 + {{j}}u] = acc_{{i}}_{{j}};
#end
#end
#end
}
"#;

struct Run {
    first_s: f64,
    median_s: f64,
    out: Vec<f32>,
}

fn run(gpu: &Gpu, form: &str, tile: usize, bounded: bool, n: usize, reps: usize) -> Run {
    let (t, tt) = (tile.to_string(), (tile * tile).to_string());
    let source = expand_with(TEMPLATE, &[("form", form), ("t", &t), ("tt", &tt)]).expect("template");
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(form),
        source: wgpu::ShaderSource::Wgsl(std::borrow::Cow::Owned(source)),
    };
    let d = &gpu.device;
    let module = if bounded {
        d.create_shader_module(desc)
    } else {
        // SAFETY: every loop of the template has a bound (k < p.k, i/j < 4), so no invocation
        // can loop forever; only loop bounding is off, every other check stays on.
        let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
        unsafe { d.create_shader_module_trusted(desc, checks) }
    };
    let first = Instant::now();
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(form),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7919) % 17) as f32 / 17.0 - 0.5).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 104729) % 13) as f32 / 13.0 - 0.5).collect();
    let params = [n as u32, n as u32, n as u32, 0];
    let pb = gpu.uniform("p", &params);
    let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
    let cb = gpu.zeros("c", n * n).unwrap();
    let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: pb.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: ab.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: bb.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: cb.as_entire_binding() },
        ],
    });
    let groups = ((n / tile) * (n / tile)).div_ceil(64) as u32;
    let dispatch = || {
        let mut enc = d.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait().unwrap();
    };
    dispatch();
    let first_s = first.elapsed().as_secs_f64();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            dispatch();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Run { first_s, median_s: times[times.len() / 2], out: gpu.read(&cb, n * n).unwrap() }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let gpu = Gpu::new().expect("no GPU adapter");
    let (n, reps) = if full { (512, 7) } else { (64, 1) };
    println!("device: {}; GEMM {n}×{n}×{n}", gpu.describe());
    println!("| register tile | form | loop bounding | first dispatch (compile + run) | median run | GFLOP/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut reference: Option<Vec<f32>> = None;
    for tile in [4, 8] {
        for form in ["unrolled", "rolled"] {
            for bounded in [true, false] {
                let r = run(&gpu, form, tile, bounded, n, reps);
                let gflops = 2.0 * (n * n * n) as f64 / r.median_s / 1e9;
                let on = if bounded { "on (wgpu's default)" } else { "off (trusted module)" };
                println!("| {tile}×{tile} | {form} | {on} | {:.3} s | {:.4} s | {gflops:.1} |", r.first_s, r.median_s);
                // The same sums in the same order: every form and tile gives the same bits.
                match &reference {
                    None => reference = Some(r.out),
                    Some(want) => {
                        assert!(want == &r.out, "{tile}×{tile} {form} (bounded {bounded}) computes other values")
                    }
                }
            }
        }
    }
}
