//! Every `shaders/*.wgsl` file parses and validates with naga, and is registered in the crate.

use tailor::gpu::shaders;

#[test]
fn every_shader_file_parses_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "wgsl"));
    files.sort();
    assert!(!files.is_empty());
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            shaders::ALL.iter().chain(shaders::PROBES).any(|s| s.name == name),
            "{name} is in shaders/ but not registered in src/gpu/shaders.rs"
        );
    }
    assert_eq!(files.len(), shaders::ALL.len() + shaders::PROBES.len(), "a registered shader has no file");
}

/// The batch norm shader for devices without subgroups validates without the capability.
#[test]
fn batchnorm_without_subgroups_validates() {
    let src = shaders::batchnorm_without_subgroups().source;
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SUBGROUP;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
}

/// Each dispatch records how to rebuild its pipeline elsewhere, and on drivers that compile at
/// first dispatch (lavapipe) `precompile` builds every distinct pipeline on extra devices; the
/// dispatches then run as before.
#[test]
fn precompile_builds_each_distinct_pipeline_once() {
    use tailor::gpu::PoolEntry;
    use tailor::ops::pool::{self, PoolShape};
    use tailor::ops::Act;
    let g = crate::common::gpu();
    let s = PoolShape::new(2, 3, 6, 8, 2, 2, 0).unwrap();
    let x = crate::common::up(&g, &(0..s.in_len()).map(|i| i as f64).collect::<Vec<_>>());
    let y = g.zeros("y", s.out_len()).unwrap();
    let dx = g.zeros("dx", s.in_len()).unwrap();
    let mut d = pool::avg_forward(&g, &s, Act::whole(&x, 3), Act::whole(&y, 3)).unwrap();
    d.extend(pool::avg_backward(&g, &s, Act::whole(&y, 3), Act::whole(&dx, 3), false).unwrap());
    d.extend(pool::avg_forward(&g, &s, Act::whole(&x, 3), Act::whole(&y, 3)).unwrap());
    assert_eq!(d.len(), 3);
    assert_eq!((d[0].spec.kernel, d[0].spec.storage), (PoolEntry::AvgForward2x2.into(), 2));
    assert_eq!(d[0].spec.params_len % 16, 0);
    assert!(d[0].spec.constants.iter().any(|(k, _)| k == "WX"));
    assert_eq!(d[0].spec, d[2].spec);
    let n = g.precompile(&d);
    assert_eq!(n, if g.precompile_enabled() { 2 } else { 0 });
    let y = crate::common::run_read(&g, &d, &y, s.out_len());
    assert_eq!(y[0], (0.0 + 1.0 + 8.0 + 9.0) / 4.0);
    // Batch norm's backward binds 9 storage buffers; a wrong binding count compiles nothing.
    let bn = |storage| tailor::gpu::PipelineSpec {
        kernel: tailor::gpu::BatchnormEntry::BwdFusedV.into(),
        constants: vec![("WG".into(), 32.0), ("ITEMS".into(), 4.0), ("LANES".into(), 8.0), ("SG".into(), 8.0)],
        params_len: 112,
        storage,
    };
    assert_eq!(g.precompile_specs(&[&bn(9)]), 1);
    assert_eq!(g.precompile_specs(&[&bn(4)]), 0);
}

/// `Gpu::on_precompile` hears each batch begin, each pipeline dealt with (compiled or not) and
/// the end, and nothing when there is nothing to compile.
#[test]
pub(crate) fn precompile_reports_progress() {
    use std::sync::{Arc, Mutex};
    use tailor::ops::pool::{self, PoolShape};
    use tailor::ops::Act;
    // A device of its own: the shared one's hook would also hear the other tests.
    let g = tailor::Gpu::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<tailor::gpu::PrecompileProgress>::new()));
    let log = seen.clone();
    g.on_precompile(move |p| log.lock().unwrap().push(p.clone()));
    let s = PoolShape::new(1, 5, 7, 9, 2, 2, 0).unwrap();
    let (x, y) = (g.zeros("x", s.in_len()).unwrap(), g.zeros("y", s.out_len()).unwrap());
    let d = pool::avg_forward(&g, &s, Act::whole(&x, 5), Act::whole(&y, 5)).unwrap();
    // A spec with the wrong number of bindings, which no worker can build.
    let bad = tailor::gpu::PipelineSpec { storage: 1, ..(*d[0].spec).clone() };
    assert_eq!(g.precompile_specs(&[&d[0].spec, &bad]), 1);
    let r = seen.lock().unwrap().clone();
    assert_eq!(r.len(), 4, "{r:?}");
    assert_eq!((r[0].total, r[0].done, r[0].finished), (2, 0, false));
    // The two workers may report in either order.
    let mut middle: Vec<usize> = r[1..3].iter().map(|p| p.done).collect();
    middle.sort();
    assert_eq!(middle, [1, 2]);
    assert!(r[1..3].iter().all(|p| !p.finished && p.total == 2));
    assert_eq!((r[3].done, r[3].finished), (2, true));
    assert!(r.iter().all(|p| p.elapsed >= 0.0 && p.elapsed <= r[3].elapsed));
    assert_eq!(g.precompile_specs(&[]), 0);
    assert_eq!(seen.lock().unwrap().len(), 4);
}
