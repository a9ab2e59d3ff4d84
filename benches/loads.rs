//! What one load costs on this device, by the kind of memory and of address: the measurements
//! the kernels' load patterns rest on (see the header of `shaders/conv.wgsl`). A driver probe,
//! not a kernel bench: `cargo bench --bench loads` prints ns per load of 8 lanes (one SIMD vector
//! of llvmpipe's 256-bit build), the loop alone first. `shaders/probe_loads.wgsl` has the kinds.

use std::time::Instant;

use tailor::gpu::shaders;
use tailor::Gpu;

const KINDS: &[(u32, &str)] = &[
    (0, "no load (the loop alone)"),
    (1, "storage f32, same address in every lane"),
    (2, "storage f32, an address per lane"),
    (3, "storage vec4, an address per lane"),
    (8, "storage vec4, an address per lane, rows 4 KiB apart"),
    (4, "uniform f32, an address per lane"),
    (5, "uniform vec4, an address per lane"),
    (6, "workgroup f32, an address per lane"),
    (7, "texture texel (vec4), one per lane"),
];

/// What every invocation's sum must be after `k` loads of kind `mode` (every value loaded is 1).
fn expected(mode: u32, k: u32) -> f32 {
    match mode {
        0 => (k * (k - 1) / 2) as f32,
        3 | 5 | 7 | 8 => 4.0 * k as f32,
        _ => k as f32,
    }
}

fn main() -> tailor::Result<()> {
    // `cargo bench` passes --bench; under `cargo test` this is a quick check of the sums.
    let full = std::env::args().any(|a| a == "--bench");
    let gpu = Gpu::new()?;
    println!("device: {}", gpu.describe());
    let d = &gpu.device;
    let (groups, k, stride) = if full { (256u32, 4096u32, 1024u32) } else { (4, 64, 1024) };
    // Four times what the f32 kinds read, for the vec4 view of the same buffer.
    let n = 4 * (groups * stride + k * 8 + 64) as usize;
    let x = gpu.upload("x", &vec![1.0f32; n])?;
    let y = gpu.zeros("y", (groups * 64) as usize)?;
    let u4 = gpu.uniform("u4", &[1.0f32; 16384]);
    let params = gpu.uniform("params", &[k, stride, 4095u32, 0u32]);
    let tex = d.create_texture(&wgpu::TextureDescriptor {
        label: Some("texels"),
        size: wgpu::Extent3d { width: 1024, height: 256, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    gpu.queue.write_texture(
        tex.as_image_copy(),
        bytemuck::cast_slice(&vec![1.0f32; 1024 * 256 * 4]),
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(1024 * 16), rows_per_image: None },
        wgpu::Extent3d { width: 1024, height: 256, depth_or_array_layers: 1 },
    );
    let view = tex.create_view(&Default::default());
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(shaders::PROBE_LOADS.name),
        source: wgpu::ShaderSource::Wgsl(shaders::PROBE_LOADS.source.into()),
    });
    if full {
        println!("| load | ns per 8-lane load | less the loop |");
        println!("| --- | --- | --- |");
    }
    // Every kind binds everything (each pipeline's derived layout names all six bindings).
    let resources = [
        params.as_entire_binding(),
        x.as_entire_binding(),
        y.as_entire_binding(),
        x.as_entire_binding(),
        u4.as_entire_binding(),
        wgpu::BindingResource::TextureView(&view),
    ];
    let entries: Vec<_> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
        .collect();
    let mut loop_ns = 0.0;
    for &(mode, what) in KINDS {
        let constants = [("MODE", mode as f64)];
        let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("probe_loads"),
            layout: None,
            module: &module,
            entry_point: Some("probe"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        let mut best = f64::MAX;
        for _ in 0..if full { 5 } else { 1 } {
            let mut enc = d.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups, 1, 1);
            }
            let t = Instant::now();
            gpu.queue.submit([enc.finish()]);
            gpu.wait()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let sums: Vec<f32> = gpu.read(&y, (groups * 64) as usize)?;
        let want = expected(mode, k);
        if let Some(bad) = sums.iter().find(|&&s| s != want) {
            panic!("{what}: an invocation summed {bad}, not {want}");
        }
        // groups * 64 invocations * k loads = groups * 8 vectors of 8 lanes * k.
        let ns = best * 1e9 / (groups as f64 * 8.0 * k as f64);
        if !full {
            println!("{what}: sums right");
        } else if mode == 0 {
            loop_ns = ns;
            println!("| {what} | {ns:.2} | - |");
        } else {
            println!("| {what} | {ns:.2} | {:.2} |", ns - loop_ns);
        }
    }
    gpu.check_alive()
}
