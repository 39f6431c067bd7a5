//! The strategy registry: every `strategies/*.rs` submits one [`Registration`] with `inventory`.
//!
//! An entry is plain data (name, summary, paper, parameter docs and two constructor functions),
//! so it can live in a `static`. The generic [`crate::core::Registry`] sorts, rejects duplicate
//! names and suggests close ones.

use anyhow::Result;
use tch::Device;

use super::Strategy;
pub use crate::core::registry::{config_from, resolve_with};

/// What a strategy file registers.
pub struct Registration {
    /// The name used in experiment files (`strategies: - name: ewc`).
    pub name: &'static str,
    /// One line: what the method does.
    pub summary: &'static str,
    /// The paper it follows, or "" for baselines.
    pub paper: &'static str,
    /// Each parameter's name, allowed range and meaning, in display order; the plan checks
    /// every resolved value against its range before anything runs.
    pub params: &'static [crate::core::ParamSpec],
    /// What the method needs of the network (most need nothing: `&[]`); the plan refuses a
    /// model that cannot give it, at the model's line, before anything runs.
    pub requires: &'static [Requirement],
    /// Validates parameters from YAML (strict: unknown keys are errors that list the known ones)
    /// and returns them resolved, defaults filled in. Use [`resolve_with`].
    pub resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
    /// Builds the strategy from parameters that `resolve` returned.
    pub build: fn(&serde_json::Value, &BuildContext) -> Result<Box<dyn Strategy>>,
}

inventory::collect!(Registration);

impl crate::core::Plugin for Registration {
    const KIND: &'static str = "strategy";
    const KIND_PLURAL: &'static str = "strategies";
    fn name(&self) -> &'static str {
        self.name
    }
}

/// Something a method needs of the network beyond a forward and backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// It gates hidden units and conditions weights by unit ([`Strategy::unit_gates`]): the
    /// hidden layers must form a chain (see `model::gating`).
    UnitGates,
}

/// What a strategy may know when it is built, besides its parameters.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub device: Device,
    pub num_tasks: usize,
    /// The job's seed, for strategies that draw random numbers (e.g. a sampled Fisher).
    pub seed: u64,
    /// How the training loop clips the gradients it applies, for strategies that integrate
    /// them (SI's `gradient: total` sees the clipped gradient, as the optimizer does).
    pub clip: crate::core::GradientClip,
}

/// The registered strategies, by name.
pub type Registry = crate::core::Registry<Registration>;
