//! Models, losses and optimisers.

pub mod arch;
pub mod checkpoint;
pub mod densenet;
pub mod embedder;
pub mod model;
pub mod optim;
pub mod predict;
pub mod tagger;
pub mod train;
pub mod weights;
