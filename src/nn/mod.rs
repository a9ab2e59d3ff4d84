//! Models, losses and optimisers.

pub mod densenet;
