//! Models, losses and optimisers.

pub mod checkpoint;
pub mod densenet;
pub mod model;
pub mod optim;
// pub mod predict; (enabled when the kernels land)
// pub mod train;
