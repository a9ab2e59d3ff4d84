//! Models, losses and optimisers.

pub mod checkpoint;
pub mod densenet;
pub mod model;
pub mod weights;
