//! Leaf types every stage may use (the full module lands with the model refactor).

pub mod registry;

pub use registry::{Plugin, Registry};
