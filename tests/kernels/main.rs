//! Every WGSL kernel against its CPU reference, on random inputs and awkward shapes, plus
//! finite-difference checks of every backward reference. One binary: one device for all.

mod adam;
mod batchnorm;
mod common;
mod conv;
mod coverage;
mod elementwise;
mod embed;
mod gemm;
mod knn;
mod linear;
mod loss;
mod pool;
mod shaders;
mod weights;
