//! Leaf types every stage may use, and that depend on no stage: named parameter tensors, saved
//! state for checkpoints, atomic writes, the generic plugin registry and the parameter ranges plugins
//! declare.
//!
//! Nothing here imports a stage of the pipeline (config, model, strategy, train, runner,
//! results, report), so a type two stages share lives here instead of making them import each
//! other.

pub mod atomic;
pub mod clip;
pub mod param_spec;
pub mod params;
pub mod registry;
pub mod spans;
pub mod state;

pub use clip::GradientClip;
pub use param_spec::{ParamSpec, Range};
pub use params::ParamMap;
pub use registry::{Plugin, Registry};
pub use spans::row_spans;
pub use state::SavedState;
