//! `cifar10`: CIFAR-10 (Krizhevsky 2009, "Learning multiple layers of features from tiny
//! images"): 50000 training and 10000 test images, 32x32 RGB, 10 classes, from the official
//! binary version (`cifar-10-batches-bin/`: `data_batch_1.bin` .. `data_batch_5.bin` for
//! training, `test_batch.bin` for testing; each record 1 label byte and 3072 pixel bytes, CHW),
//! read by `clbench::data::cifar`.
//!
//! Folder: `dir`, else `$CLBENCH_CIFAR10`, else `data/cifar-10-batches-bin`. When files are
//! missing, the official archive is downloaded, MD5-checked and unpacked there, unless
//! `download: false` or `--offline`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use clbench::data::cifar::{load_cifar, CifarSpec};
use clbench::data::registry::{
    params_from, resolve_with, DatasetRegistration, DatasetShape, LoadOptions,
};
use clbench::data::{resolve_dir, DataError, Dataset};
use clbench::core::ParamSpec;

/// Environment variable naming the folder of the CIFAR-10 files.
pub const ENV: &str = "CLBENCH_CIFAR10";
/// The folder used when nothing else names one.
pub const DEFAULT_DIR: &str = "data/cifar-10-batches-bin";

/// The files, the archive and its MD5.
pub const CIFAR10: CifarSpec = CifarSpec {
    name: "cifar10",
    title: "CIFAR-10",
    env: ENV,
    folder: "cifar-10-batches-bin",
    train_files: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test_files: &["test_batch.bin"],
    labels: &[("label", 10)],
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder holding the six `.bin` files; else `$CLBENCH_CIFAR10`; else
    /// `data/cifar-10-batches-bin`.
    pub dir: Option<PathBuf>,
    /// Download and unpack the official archive when files are missing (MD5-checked).
    pub download: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: None,
            download: true,
        }
    }
}

/// 32x32 RGB, 10 classes.
pub const SHAPE: DatasetShape = DatasetShape {
    channels: 3,
    rows: 32,
    cols: 32,
    classes: 10,
};

/// Loads CIFAR-10 for resolved parameters.
pub fn load(params: &serde_json::Value, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let config: Config = params_from("cifar10", params)?;
    let dir = resolve_dir(config.dir.as_deref(), ENV, Path::new(DEFAULT_DIR));
    load_cifar(&CIFAR10, &dir, 0, config.download && !opts.offline)
}

inventory::submit! {
    DatasetRegistration {
        name: "cifar10",
        summary: "CIFAR-10 tiny images, binary version: 50000/10000 train/test, 32x32 RGB, 10 classes",
        params: &[
            ParamSpec::new("dir", "folder of data_batch_1..5.bin and test_batch.bin (default: $CLBENCH_CIFAR10, else data/cifar-10-batches-bin)"),
            ParamSpec::new("download", "download and unpack cifar-10-binary.tar.gz when files are missing, MD5-checked (default true)"),
        ],
        resolve: resolve_with::<Config>,
        shape: |_| SHAPE,
        load,
    }
}
