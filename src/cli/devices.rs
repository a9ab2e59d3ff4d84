use crate::error::Result;
use crate::gpu::{list_adapters, unusable_reason};

/// The optional features tailor can use, by the names `tailor devices` prints.
const FEATURES: &[(&str, wgpu::Features)] = &[
    ("subgroups", wgpu::Features::SUBGROUP),
    ("shader-f16", wgpu::Features::SHADER_F16),
    ("timestamp-query", wgpu::Features::TIMESTAMP_QUERY),
    ("timestamp-query-inside-passes", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
];

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &super::Cli, args: &Args) -> Result<()> {
    let adapters = list_adapters(cli.backend.as_deref())?;
    let mut out = Vec::new();
    for a in &adapters {
        let i = a.get_info();
        let l = a.limits();
        let f = a.features();
        let optional: Vec<&str> = FEATURES.iter().filter(|(_, x)| f.contains(*x)).map(|(n, _)| *n).collect();
        out.push(serde_json::json!({
            "name": i.name, "backend": format!("{:?}", i.backend), "type": format!("{:?}", i.device_type),
            "driver": i.driver, "driver_info": i.driver_info,
            "limits": {
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                "max_compute_workgroup_size_x": l.max_compute_workgroup_size_x,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                "min_subgroup_size": a.get_info().subgroup_min_size,
                "max_subgroup_size": a.get_info().subgroup_max_size,
            },
            "optional_features": optional,
            "usable": unusable_reason(a).is_none(),
            "unusable_reason": unusable_reason(a),
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
        return Ok(());
    }
    if out.is_empty() {
        println!("no adapters found; on Debian run scripts/install-lavapipe.sh to install lavapipe");
    }
    for (n, d) in out.iter().enumerate() {
        println!(
            "[{n}] {}  ({}, {})",
            d["name"].as_str().unwrap_or(""),
            d["backend"].as_str().unwrap_or(""),
            d["type"].as_str().unwrap_or("")
        );
        if let Some(why) = d["unusable_reason"].as_str() {
            println!("    cannot train with tailor: {why}");
        }
        println!("    driver: {} {}", d["driver"].as_str().unwrap_or(""), d["driver_info"].as_str().unwrap_or(""));
        for (k, v) in d["limits"].as_object().into_iter().flatten() {
            println!("    {k}: {v}");
        }
        let feats: Vec<&str> =
            d["optional_features"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        println!("    optional features: {}", if feats.is_empty() { "none".to_string() } else { feats.join(", ") });
    }
    Ok(())
}
