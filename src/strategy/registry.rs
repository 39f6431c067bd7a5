//! The strategy registry: every `strategies/*.rs` submits one [`Registration`] with `inventory`.
//!
//! An entry is plain data (name, summary, paper, parameter docs and two constructor functions),
//! so it can live in a `static`. Listings are sorted by name (inventory gives no order); two
//! entries with one name are an error reported when the registry is built.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{de::DeserializeOwned, Serialize};
use tch::Device;

use super::Strategy;

/// What a strategy file registers.
pub struct Registration {
    /// The name used in experiment files (`strategies: - name: ewc`).
    pub name: &'static str,
    /// One line: what the method does.
    pub summary: &'static str,
    /// The paper it follows, or "" for baselines.
    pub paper: &'static str,
    /// `(parameter, meaning)` for each parameter, in display order.
    pub params: &'static [(&'static str, &'static str)],
    /// Validates parameters from YAML (strict: unknown keys are errors that list the known ones)
    /// and returns them resolved, defaults filled in. Use [`resolve_with`].
    pub resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
    /// Builds the strategy from parameters that `resolve` returned.
    pub build: fn(&serde_json::Value, &BuildContext) -> Result<Box<dyn Strategy>>,
}

inventory::collect!(Registration);

/// What a strategy may know when it is built, besides its parameters.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub device: Device,
    pub num_tasks: usize,
    /// The job's seed, for strategies that draw random numbers (e.g. a sampled Fisher).
    pub seed: u64,
}

/// `resolve` for any serde config type with defaults: strict parsing, then back to JSON.
pub fn resolve_with<C: DeserializeOwned + Serialize>(
    params: &serde_yaml::Mapping,
) -> Result<serde_json::Value, String> {
    let config: C = serde_yaml::from_value(serde_yaml::Value::Mapping(params.clone()))
        .map_err(|e| e.to_string())?;
    serde_json::to_value(config).map_err(|e| e.to_string())
}

/// Reads resolved parameters back into a strategy's config type.
pub fn config_from<C: DeserializeOwned>(params: &serde_json::Value) -> Result<C> {
    Ok(serde_json::from_value(params.clone())?)
}

/// The registered strategies, by name.
pub struct Registry {
    entries: BTreeMap<&'static str, &'static Registration>,
}

impl Registry {
    /// Collects every registration; a name registered twice is an error naming it.
    pub fn load() -> Result<Registry> {
        let mut entries = BTreeMap::new();
        for reg in inventory::iter::<Registration> {
            if entries.insert(reg.name, reg).is_some() {
                bail!(
                    "strategy `{}` is registered twice; rename one of them",
                    reg.name
                );
            }
        }
        Ok(Registry { entries })
    }

    pub fn get(&self, name: &str) -> Option<&'static Registration> {
        self.entries.get(name).copied()
    }

    /// All entries, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static Registration> + '_ {
        self.entries.values().copied()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.keys().copied().collect()
    }

    /// The message for a name that is not registered: a suggestion and the known names.
    pub fn unknown_name_message(&self, name: &str) -> String {
        let mut msg = format!("unknown strategy `{name}`");
        let closest = self
            .names()
            .into_iter()
            .map(|known| (strsim::levenshtein(name, known), known))
            .min();
        if let Some((distance, known)) = closest {
            if distance <= 2.max(name.len() / 3) {
                msg.push_str(&format!("; did you mean `{known}`?"));
            }
        }
        msg.push_str(&format!(
            " The registered strategies are: {}",
            self.names().join(", ")
        ));
        msg
    }
}
