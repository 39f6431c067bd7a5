//! `hat_cifar`: CIFAR-10 and CIFAR-100 as one dataset of 110 classes, for the 10-task CIFAR
//! protocol of HAT (Serra et al. 2018; joansj/hat `src/dataloaders/cifar.py`): five tasks of two
//! CIFAR-10 classes and five of twenty CIFAR-100 classes.
//!
//! Labels 0-9 are CIFAR-10's, 10-109 CIFAR-100's fine labels plus 10; training and test splits
//! are each CIFAR-10's followed by CIFAR-100's. Both are read (and downloaded when missing) as
//! the `cifar10` and `cifar100` datasets are, from their own folders.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use clbench::data::cifar::load_cifar;
use clbench::data::registry::{params_from, resolve_with, DatasetRegistration, DatasetShape, LoadOptions};
use clbench::data::{resolve_dir, DataError, Dataset, Split};

use super::{cifar10, cifar100};
use clbench::core::ParamSpec;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// CIFAR-10's folder (as `cifar10`'s `dir`).
    pub cifar10_dir: Option<PathBuf>,
    /// CIFAR-100's folder (as `cifar100`'s `dir`).
    pub cifar100_dir: Option<PathBuf>,
    /// Download and unpack the official archives when files are missing (MD5-checked).
    pub download: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cifar10_dir: None,
            cifar100_dir: None,
            download: true,
        }
    }
}

pub fn shape(_: &serde_json::Value) -> DatasetShape {
    DatasetShape {
        channels: 3,
        rows: 32,
        cols: 32,
        classes: 110,
    }
}

/// `a` then `b` with `b`'s labels moved up by `a.classes`.
fn concat(a: Split, b: Split) -> Split {
    let offset = a.classes as u8;
    let mut images = a.images;
    images.extend_from_slice(&b.images);
    let mut labels = a.labels;
    labels.extend(b.labels.iter().map(|&l| l + offset));
    Split {
        images,
        labels,
        channels: a.channels,
        rows: a.rows,
        cols: a.cols,
        classes: a.classes + b.classes,
    }
}

pub fn load(params: &serde_json::Value, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let config: Config = params_from("hat_cifar", params)?;
    let download = config.download && !opts.offline;
    let dir10 = resolve_dir(
        config.cifar10_dir.as_deref(),
        cifar10::ENV,
        Path::new(cifar10::DEFAULT_DIR),
    );
    let dir100 = resolve_dir(
        config.cifar100_dir.as_deref(),
        cifar100::ENV,
        Path::new(cifar100::DEFAULT_DIR),
    );
    let c10 = load_cifar(&cifar10::CIFAR10, &dir10, 0, download)?;
    // The fine label is the second label byte of a CIFAR-100 record.
    let c100 = load_cifar(&cifar100::CIFAR100, &dir100, 1, download)?;
    Ok(Dataset {
        name: "hat_cifar".into(),
        train: concat(c10.train, c100.train),
        test: concat(c10.test, c100.test),
        source: format!("{} + {}", c10.source, c100.source),
    })
}

inventory::submit! {
    DatasetRegistration {
        name: "hat_cifar",
        summary: "CIFAR-10 (labels 0-9) and CIFAR-100 fine (labels 10-109) as one dataset, for HAT's 10-task CIFAR protocol",
        params: &[
            ParamSpec::new("cifar10_dir", "CIFAR-10's folder (default: $CLBENCH_CIFAR10, else data/cifar-10-batches-bin)"),
            ParamSpec::new("cifar100_dir", "CIFAR-100's folder (default: $CLBENCH_CIFAR100, else data/cifar-100-binary)"),
            ParamSpec::new("download", "download the official archives when files are missing, MD5-checked (default true)"),
        ],
        resolve: resolve_with::<Config>,
        shape,
        load,
    }
}
