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
}
