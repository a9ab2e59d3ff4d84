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
            shaders::ALL.iter().any(|s| s.name == name),
            "{name} is in shaders/ but not registered in src/gpu/shaders.rs"
        );
    }
    assert_eq!(files.len(), shaders::ALL.len(), "a registered shader has no file");
}

/// The batch norm shader for devices without subgroups validates without the capability.
#[test]
fn batchnorm_without_subgroups_validates() {
    let src = tailor::ops::batchnorm::shader_without_subgroups().source;
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SUBGROUP;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
}
