//! Every WGSL kernel against its CPU reference, on random inputs and awkward shapes, plus
//! finite-difference checks of every backward reference. One binary: one device for all.

mod common;
mod elementwise;
mod gemm;
mod linear;
mod shaders;
