//! The dataset registry: every `datasets/*.rs` submits one [`DatasetRegistration`] with
//! `inventory`.
//!
//! An entry is plain data (name, summary, parameter docs and three functions), so it can live in
//! a `static`. `resolve` turns the YAML parameters of `dataset:` (everything but `name`) into
//! resolved JSON, strictly; `shape` tells, from resolved parameters alone and without reading a
//! file, the channels, image size and classes that `load` will give, so a plan is validated
//! before any data is read; `load` reads (or builds) the data. The generic
//! [`crate::core::Registry`] sorts, rejects duplicate names and suggests close ones.

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset};
pub use crate::core::registry::{config_from, resolve_with};

/// What a dataset gives, known without loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetShape {
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    /// Labels are `0..classes`.
    pub classes: usize,
}

impl DatasetShape {
    /// Input features per image, `channels * rows * cols`.
    pub fn pixels(&self) -> usize {
        self.channels * self.rows * self.cols
    }
}

/// How a dataset may be loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Forbid downloads, whatever the dataset's `download` parameter says (`--offline`).
    pub offline: bool,
}

/// What a dataset file registers.
pub struct DatasetRegistration {
    /// The name used in experiment files (`dataset: {name: cifar10}`).
    pub name: &'static str,
    /// One line: what the data is.
    pub summary: &'static str,
    /// Each parameter's name, allowed range and meaning, in display order; the plan checks
    /// every resolved value against its range before anything runs.
    pub params: &'static [crate::core::ParamSpec],
    /// Validates the parameters from YAML (strict: unknown keys are errors that list the known
    /// ones) and returns them resolved, defaults filled in. Usually [`resolve_with`].
    pub resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
    /// The shape `load` gives for parameters that `resolve` returned; reads no file.
    pub shape: fn(&serde_json::Value) -> DatasetShape,
    /// Loads the dataset for parameters that `resolve` returned.
    pub load: fn(&serde_json::Value, &LoadOptions) -> Result<Dataset, DataError>,
}

inventory::collect!(DatasetRegistration);

impl crate::core::Plugin for DatasetRegistration {
    const KIND: &'static str = "dataset";
    const KIND_PLURAL: &'static str = "datasets";
    fn name(&self) -> &'static str {
        self.name
    }
}

/// The registered datasets, by name.
pub type DatasetRegistry = crate::core::Registry<DatasetRegistration>;

/// Reads resolved parameters back into a plugin's config type for `load`; a failure (only
/// possible for JSON that `resolve` did not produce) is a [`DataError::Params`] naming the
/// dataset.
pub fn params_from<C: serde::de::DeserializeOwned>(
    dataset: &'static str,
    params: &serde_json::Value,
) -> Result<C, DataError> {
    serde_json::from_value(params.clone()).map_err(|e| DataError::Params {
        dataset,
        problem: e.to_string(),
    })
}
