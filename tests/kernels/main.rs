//! Every WGSL kernel against its CPU reference, on random inputs and awkward shapes, plus
//! finite-difference checks of every backward reference. One binary: one device for all.

mod adam;
mod common;
mod elementwise;
mod loss;
mod shaders;
mod weights;
