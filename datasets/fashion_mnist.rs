//! `fashion_mnist`: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a novel image
//! dataset for benchmarking machine learning algorithms"): Zalando's article images, a drop-in
//! replacement for MNIST with the same format and shape: 60000 training and 10000 test images,
//! 28x28 greyscale, 10 classes (T-shirt/top, trouser, pullover, dress, coat, sandal, shirt,
//! sneaker, bag, ankle boot), read by the same IDX reader (`clbench::data::idx`).
//!
//! Folder: `dir`, else `$CLBENCH_FASHION_MNIST`, else `/usr/share/datasets/fashion-mnist` if it
//! holds the four files (Debian's package `dataset-fashion-mnist`), else `data/fashion-mnist`.
//! Missing files are downloaded from the dataset's public mirror, MD5-checked against
//! torchvision's sums, unless `download: false` or `--offline`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use clbench::data::idx::{holds_files, load_idx, IdxSpec};
use clbench::data::registry::{
    params_from, resolve_with, DatasetRegistration, DatasetShape, LoadOptions,
};
use clbench::data::{resolve_dir, DataError, Dataset};
use clbench::core::ParamSpec;

/// Environment variable naming the folder of the Fashion-MNIST files.
pub const ENV: &str = "CLBENCH_FASHION_MNIST";
/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The folder used when nothing else names one (and the system copy is absent).
pub const DEFAULT_DIR: &str = "data/fashion-mnist";

/// The mirror and torchvision's MD5s of the four `.gz` files.
pub const FASHION_MNIST: IdxSpec = IdxSpec {
    name: "fashion_mnist",
    title: "Fashion-MNIST",
    env: ENV,
    mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    md5: [
        (
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ],
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder holding the four IDX files (gzipped or raw); else `$CLBENCH_FASHION_MNIST`; else
    /// the system copy; else `data/fashion-mnist`.
    pub dir: Option<PathBuf>,
    /// Fetch missing files from the public mirror (MD5-checked).
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

/// 28x28 greyscale, 10 classes, as MNIST.
pub const SHAPE: DatasetShape = DatasetShape {
    channels: 1,
    rows: 28,
    cols: 28,
    classes: 10,
};

/// The folder to read: `configured`, else `$CLBENCH_FASHION_MNIST`, else [`SYSTEM_DIR`] if it
/// holds the files, else [`DEFAULT_DIR`].
pub fn folder(configured: Option<&Path>) -> PathBuf {
    let system = Path::new(SYSTEM_DIR);
    let fallback = if holds_files(system) {
        system
    } else {
        Path::new(DEFAULT_DIR)
    };
    resolve_dir(configured, ENV, fallback)
}

/// Loads Fashion-MNIST for resolved parameters.
pub fn load(params: &serde_json::Value, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let config: Config = params_from("fashion_mnist", params)?;
    load_idx(
        &FASHION_MNIST,
        &folder(config.dir.as_deref()),
        config.download && !opts.offline,
    )
}

inventory::submit! {
    DatasetRegistration {
        name: "fashion_mnist",
        summary: "Fashion-MNIST article images: 60000/10000 train/test, 28x28 greyscale, 10 classes (MNIST's format)",
        params: &[
            ParamSpec::new("dir", "folder of the four IDX files, .gz or raw (default: $CLBENCH_FASHION_MNIST, else /usr/share/datasets/fashion-mnist if it holds them, else data/fashion-mnist)"),
            ParamSpec::new("download", "fetch missing files from the public mirror, MD5-checked (default true)"),
        ],
        resolve: resolve_with::<Config>,
        shape: |_| SHAPE,
        load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_checksum() {
        for stem in clbench::data::idx::IDX_FILES {
            let file = format!("{stem}.gz");
            assert!(FASHION_MNIST.md5.iter().any(|(name, _)| *name == file));
        }
    }

    #[test]
    fn configured_folder_wins() {
        assert_eq!(folder(Some(Path::new("x/y"))), Path::new("x/y"));
    }
}
