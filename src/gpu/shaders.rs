//! Every WGSL file of `shaders/`, embedded in the binary. One file per op family.

/// A WGSL source file, by the name of its file under `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! shaders {
    ($($id:ident => $file:literal),* $(,)?) => {
        $(pub const $id: Shader = Shader { name: $file, source: include_str!(concat!("../../shaders/", $file)) };)*
        /// All shaders, for the validation test and for warming the pipeline cache.
        pub const ALL: &[Shader] = &[$($id),*];
    };
}

shaders! {
    CONV => "conv.wgsl",
    BATCHNORM => "batchnorm.wgsl",
    ELEMENTWISE => "elementwise.wgsl",
    GEMM => "gemm.wgsl",
    FILL => "fill.wgsl",
    POOL => "pool.wgsl",
    LOSS => "loss.wgsl",
    ADAM => "adam.wgsl",
    EMBED => "embed.wgsl",
    KNN => "knn.wgsl",
}

/// Not a kernel: the driver probe of `benches/loads.rs` (outside [`ALL`], so it neither sets the
/// limits the kernels need nor warms any cache).
pub const PROBE_LOADS: Shader =
    Shader { name: "probe_loads.wgsl", source: include_str!("../../shaders/probe_loads.wgsl") };
/// The shaders of `shaders/` that are not kernels.
pub const PROBES: &[Shader] = &[PROBE_LOADS];

/// batchnorm.wgsl without its one subgroup operation, for devices without subgroups (SG = 1 never
/// reaches it, but a module that names it does not compile there): the template's variant
/// `subgroups = no`, with the same entry points (see [`crate::gpu::Kernel::batchnorm_without_subgroups`]).
pub fn batchnorm_without_subgroups() -> Shader {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let source = SOURCE.get_or_init(|| {
        // The template is checked by gpu::template's tests, which expand it on every run.
        super::template::expand_with(super::template::BATCHNORM_TEMPLATE, &[("subgroups", "no")])
            .expect("shaders/templates/batchnorm.wgsl.tmpl expands (tested in gpu::template)")
    });
    Shader { name: "batchnorm.wgsl (no subgroups)", source }
}
