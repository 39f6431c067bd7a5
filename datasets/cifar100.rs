//! `cifar100`: CIFAR-100 (Krizhevsky 2009, "Learning multiple layers of features from tiny
//! images"): 50000 training and 10000 test images, 32x32 RGB, 100 fine classes grouped into 20
//! coarse superclasses, from the official binary version (`cifar-100-binary/`: `train.bin`,
//! `test.bin`; each record 1 coarse label byte, 1 fine label byte and 3072 pixel bytes, CHW),
//! read by `clbench::data::cifar`.
//!
//! `labels: fine` (default, 100 classes) or `labels: coarse` (20 classes) picks the label.
//! Folder: `dir`, else `$CLBENCH_CIFAR100`, else `data/cifar-100-binary`. When files are
//! missing, the official archive is downloaded, MD5-checked and unpacked there, unless
//! `download: false` or `--offline`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use clbench::data::cifar::{load_cifar, CifarSpec};
use clbench::data::registry::{
    config_from, params_from, resolve_with, DatasetRegistration, DatasetShape, LoadOptions,
};
use clbench::data::{resolve_dir, DataError, Dataset};
use clbench::core::ParamSpec;

/// Environment variable naming the folder of the CIFAR-100 files.
pub const ENV: &str = "CLBENCH_CIFAR100";
/// The folder used when nothing else names one.
pub const DEFAULT_DIR: &str = "data/cifar-100-binary";

/// The files, the two label bytes, the archive and its MD5.
pub const CIFAR100: CifarSpec = CifarSpec {
    name: "cifar100",
    title: "CIFAR-100",
    env: ENV,
    folder: "cifar-100-binary",
    train_files: &["train.bin"],
    test_files: &["test.bin"],
    labels: &[("coarse label", 20), ("fine label", 100)],
    url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5: "03b5dce01913d631647c71ecec9e9cb8",
};

/// Which of a record's two labels is the label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labels {
    /// The 100 classes.
    #[default]
    Fine,
    /// The 20 superclasses.
    Coarse,
}

impl Labels {
    /// The index of this label byte in a record, and its number of classes.
    fn byte_and_classes(self) -> (usize, usize) {
        match self {
            Labels::Coarse => (0, 20),
            Labels::Fine => (1, 100),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder holding `train.bin` and `test.bin`; else `$CLBENCH_CIFAR100`; else
    /// `data/cifar-100-binary`.
    pub dir: Option<PathBuf>,
    /// Download and unpack the official archive when files are missing (MD5-checked).
    pub download: bool,
    /// `fine` (100 classes) or `coarse` (20 superclasses).
    pub labels: Labels,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: None,
            download: true,
            labels: Labels::Fine,
        }
    }
}

/// 32x32 RGB, 100 or 20 classes by `labels`.
pub fn shape(params: &serde_json::Value) -> DatasetShape {
    let labels = config_from::<Config>(params).map_or(Labels::Fine, |c| c.labels);
    DatasetShape {
        channels: 3,
        rows: 32,
        cols: 32,
        classes: labels.byte_and_classes().1,
    }
}

/// Loads CIFAR-100 for resolved parameters.
pub fn load(params: &serde_json::Value, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let config: Config = params_from("cifar100", params)?;
    let dir = resolve_dir(config.dir.as_deref(), ENV, Path::new(DEFAULT_DIR));
    let (byte, _) = config.labels.byte_and_classes();
    load_cifar(&CIFAR100, &dir, byte, config.download && !opts.offline)
}

inventory::submit! {
    DatasetRegistration {
        name: "cifar100",
        summary: "CIFAR-100 tiny images, binary version: 50000/10000 train/test, 32x32 RGB, 100 fine or 20 coarse classes",
        params: &[
            ParamSpec::new("dir", "folder of train.bin and test.bin (default: $CLBENCH_CIFAR100, else data/cifar-100-binary)"),
            ParamSpec::new("download", "download and unpack cifar-100-binary.tar.gz when files are missing, MD5-checked (default true)"),
            ParamSpec::new("labels", "fine (100 classes, default) or coarse (20 superclasses)"),
        ],
        resolve: resolve_with::<Config>,
        shape,
        load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_labels_have_20_classes() {
        let mut yaml = serde_yaml::Mapping::new();
        yaml.insert("labels".into(), "coarse".into());
        let params = resolve_with::<Config>(&yaml).unwrap();
        assert_eq!(shape(&params).classes, 20);
        let params = resolve_with::<Config>(&serde_yaml::Mapping::new()).unwrap();
        assert_eq!(shape(&params).classes, 100);
        yaml.insert("labels".into(), "medium".into());
        let err = resolve_with::<Config>(&yaml).unwrap_err();
        assert!(err.contains("fine") && err.contains("coarse"), "{err}");
    }
}
