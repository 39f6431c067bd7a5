//! `synthetic`: a small, seeded, clearly separable stand-in for MNIST, for tests and quick runs
//! (built by `clbench::data::synthetic`, which documents how).
//!
//! Parameters are the fields of [`SyntheticSpec`], given directly in `dataset:`
//! (`dataset: {name: synthetic, seed: 3}`) or, as older experiment files do, nested under
//! `synthetic:` (`dataset: {name: synthetic, synthetic: {seed: 3}}`); both resolve to the same
//! parameters, so they give the same data and the same jobs. Out-of-range values are errors at
//! plan time.

use clbench::data::registry::{
    config_from, params_from, DatasetRegistration, DatasetShape, LoadOptions,
};
use clbench::data::{synthetic, DataError, Dataset, SyntheticSpec};
use clbench::core::{ParamSpec, Range};

/// Strict parsing of either form, then [`SyntheticSpec::validate`].
pub fn resolve(params: &serde_yaml::Mapping) -> Result<serde_json::Value, String> {
    let spec: SyntheticSpec = match params.get("synthetic") {
        Some(_) if params.len() > 1 => {
            return Err(
                "give the synthetic settings either directly in `dataset:` or nested under \
                 `synthetic:` (the older form), not both"
                    .into(),
            )
        }
        Some(serde_yaml::Value::Null) => SyntheticSpec::default(),
        Some(nested) => serde_yaml::from_value(nested.clone()).map_err(|e| e.to_string())?,
        None => serde_yaml::from_value(serde_yaml::Value::Mapping(params.clone()))
            .map_err(|e| e.to_string())?,
    };
    spec.validate().map_err(|e| match e {
        DataError::InvalidSpec { field, problem } => format!("{field} {problem}"),
        other => other.to_string(),
    })?;
    serde_json::to_value(spec).map_err(|e| e.to_string())
}

/// The spec's channels, size and classes.
pub fn shape(params: &serde_json::Value) -> DatasetShape {
    let spec = config_from::<SyntheticSpec>(params).unwrap_or_default();
    DatasetShape {
        channels: spec.channels,
        rows: spec.rows,
        cols: spec.cols,
        classes: spec.classes,
    }
}

/// Builds the dataset for resolved parameters (the network is never used).
pub fn load(params: &serde_json::Value, _: &LoadOptions) -> Result<Dataset, DataError> {
    synthetic(&params_from::<SyntheticSpec>("synthetic", params)?)
}

inventory::submit! {
    DatasetRegistration {
        name: "synthetic",
        summary: "seeded, linearly separable noisy class prototypes (no files; for tests and quick runs)",
        params: &[
            ParamSpec::new("seed", "seeds prototypes, noise and shuffling (default 0)"),
            ParamSpec::new("train_per_class", "training samples per class (default 200)").range(Range::Count),
            ParamSpec::new("test_per_class", "test samples per class (default 50)").range(Range::Count),
            ParamSpec::new("classes", "number of classes, 1..=256 (default 10)").range(Range::between(1.0, 256.0)),
            ParamSpec::new("channels", "colour channels per image (default 1)").range(Range::Count),
            ParamSpec::new("rows", "image height (default 28)").range(Range::Count),
            ParamSpec::new("cols", "image width (default 28)").range(Range::Count),
            ParamSpec::new("noise", "per-pixel Gaussian noise sd as a fraction of 0..=255 (default 0.25)").range(Range::non_negative()),
        ],
        resolve,
        shape,
        load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> serde_yaml::Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn nested_and_flat_forms_resolve_alike() {
        let flat = resolve(&mapping("seed: 7\ntrain_per_class: 600\n")).unwrap();
        let nested = resolve(&mapping("synthetic: {seed: 7, train_per_class: 600}\n")).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(
            resolve(&mapping("synthetic: null\n")).unwrap(),
            resolve(&serde_yaml::Mapping::new()).unwrap()
        );
        let both = resolve(&mapping("seed: 1\nsynthetic: {seed: 7}\n")).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let unknown = resolve(&mapping("sed: 1\n")).unwrap_err();
        assert!(unknown.contains("unknown field `sed`"), "{unknown}");
        assert_eq!(
            resolve(&mapping("classes: 300\n")).unwrap_err(),
            "classes is 300, must be 1..=256"
        );
    }
}
