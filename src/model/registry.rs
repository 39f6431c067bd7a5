//! The model registry: every `models/*.rs` submits one [`ModelRegistration`] with `inventory`.

use anyhow::Result;

use super::{BuiltBackbone, InputShape, LayerBuilder};

/// A model plugin's constructor: resolved parameters, the input shape and a layer builder in;
/// the backbone and its feature width out.
pub type BuildFn = fn(&serde_json::Value, InputShape, &mut LayerBuilder) -> Result<BuiltBackbone>;

/// What a model file registers.
pub struct ModelRegistration {
    /// The name used in experiment files (`model: {name: conv}`).
    pub name: &'static str,
    /// One line: what the network is.
    pub summary: &'static str,
    /// Where the architecture comes from, or "".
    pub paper: &'static str,
    /// Each parameter's name, allowed range and meaning, in display order; the plan checks
    /// every resolved value against its range before anything runs.
    pub params: &'static [crate::core::ParamSpec],
    /// Validates parameters from YAML (strict) and returns them resolved, defaults filled in.
    /// Use [`crate::core::registry::resolve_with`].
    pub resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
    /// Checks resolved parameters against an input shape before any data is loaded (e.g. that
    /// the convolutions leave at least one pixel); the message says what to change.
    pub check: fn(&serde_json::Value, InputShape) -> Result<(), String>,
    pub build: BuildFn,
}

inventory::collect!(ModelRegistration);

impl crate::core::Plugin for ModelRegistration {
    const KIND: &'static str = "model";
    const KIND_PLURAL: &'static str = "models";
    fn name(&self) -> &'static str {
        self.name
    }
}

/// The registered models, by name.
pub type ModelRegistry = crate::core::Registry<ModelRegistration>;
