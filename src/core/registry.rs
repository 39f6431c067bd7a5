//! One registry for every kind of plugin (strategies, models, datasets).
//!
//! A plugin file submits a plain-data registration with [`inventory`]; [`Registry::load`]
//! collects every registration of one kind, sorted by name (inventory gives no order), and fails
//! on a name registered twice. An unknown name gets a "did you mean" suggestion and the list of
//! known names.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// What a registration of any plugin kind offers the registry.
pub trait Plugin: Sync + 'static {
    /// The kind, for messages: `"strategy"`, `"model"`, `"dataset"`.
    const KIND: &'static str;
    /// The plural, for messages: `"strategies"`.
    const KIND_PLURAL: &'static str;

    /// The name used in experiment files.
    fn name(&self) -> &'static str;
}

/// The registered plugins of one kind, by name.
pub struct Registry<T: Plugin> {
    entries: BTreeMap<&'static str, &'static T>,
}

impl<T: Plugin + inventory::Collect> Registry<T> {
    /// Collects every registration of this kind; a name registered twice is an error naming it.
    pub fn load() -> Result<Registry<T>> {
        Registry::from_entries(inventory::iter::<T>)
    }
}

impl<T: Plugin> Registry<T> {
    /// A registry of the given entries; a name given twice is an error naming it.
    pub fn from_entries(entries: impl IntoIterator<Item = &'static T>) -> Result<Registry<T>> {
        let mut map = BTreeMap::new();
        for entry in entries {
            if map.insert(entry.name(), entry).is_some() {
                bail!(
                    "{} `{}` is registered twice; rename one of them",
                    T::KIND,
                    entry.name()
                );
            }
        }
        Ok(Registry { entries: map })
    }

    pub fn get(&self, name: &str) -> Option<&'static T> {
        self.entries.get(name).copied()
    }

    /// All entries, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static T> + '_ {
        self.entries.values().copied()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.keys().copied().collect()
    }

    /// The entry called `name`, or the message of [`unknown_name_message`](Self::unknown_name_message).
    pub fn lookup(&self, name: &str) -> Result<&'static T, String> {
        self.get(name).ok_or_else(|| self.unknown_name_message(name))
    }

    /// The message for a name that is not registered: a suggestion and the known names.
    pub fn unknown_name_message(&self, name: &str) -> String {
        let mut msg = format!("unknown {} `{name}`", T::KIND);
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
            " The registered {} are: {}",
            T::KIND_PLURAL,
            self.names().join(", ")
        ));
        msg
    }
}

/// `resolve` for any serde config type with defaults: strict parsing, then back to JSON.
pub fn resolve_with<C: serde::de::DeserializeOwned + serde::Serialize>(
    params: &serde_yaml::Mapping,
) -> Result<serde_json::Value, String> {
    let config: C = serde_yaml::from_value(serde_yaml::Value::Mapping(params.clone()))
        .map_err(|e| e.to_string())?;
    serde_json::to_value(config).map_err(|e| e.to_string())
}

/// Reads resolved parameters back into a plugin's config type.
pub fn config_from<C: serde::de::DeserializeOwned>(params: &serde_json::Value) -> Result<C> {
    Ok(serde_json::from_value(params.clone())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str);
    impl Plugin for Fake {
        const KIND: &'static str = "widget";
        const KIND_PLURAL: &'static str = "widgets";
        fn name(&self) -> &'static str {
            self.0
        }
    }
    static A: Fake = Fake("alpha");
    static B: Fake = Fake("beta");
    static B2: Fake = Fake("beta");

    #[test]
    fn sorted_duplicates_rejected_and_suggestions() {
        let r = Registry::from_entries([&B, &A]).unwrap();
        assert_eq!(r.names(), ["alpha", "beta"]);
        let e = Registry::from_entries([&B, &B2]).err().unwrap().to_string();
        assert_eq!(e, "widget `beta` is registered twice; rename one of them");
        assert_eq!(
            r.unknown_name_message("bata"),
            "unknown widget `bata`; did you mean `beta`? The registered widgets are: alpha, beta"
        );
        assert_eq!(
            r.lookup("zzzzzzzz").err().unwrap(),
            "unknown widget `zzzzzzzz` The registered widgets are: alpha, beta"
        );
    }
}
