//! `mnist`: MNIST handwritten digits (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based
//! learning applied to document recognition"): 60000 training and 10000 test images, 28x28
//! greyscale, 10 classes, from the four IDX files (read by `clbench::data::idx`).
//!
//! Folder: `dir`, else `$CLBENCH_DATA`, else `data/` or `../shared/data/mnist`, whichever holds
//! the files (see `clbench::data::resolve_data_dir`). Missing files are downloaded from the
//! mirrors torchvision uses into that folder (`data/` when neither holds them), MD5-checked,
//! unless `download: false` or `--offline`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use clbench::data::registry::{
    params_from, resolve_with, DatasetRegistration, DatasetShape, LoadOptions,
};
use clbench::data::{load_mnist, resolve_data_dir, DataError, Dataset};
use clbench::core::ParamSpec;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder holding the four IDX files (gzipped or raw); else `$CLBENCH_DATA`; else `data/`
    /// or `../shared/data/mnist`, whichever holds them.
    pub dir: Option<PathBuf>,
    /// Fetch missing files from the public mirrors (MD5-checked).
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

/// 28x28 greyscale, 10 classes.
pub const SHAPE: DatasetShape = DatasetShape {
    channels: 1,
    rows: 28,
    cols: 28,
    classes: 10,
};

/// Loads MNIST for resolved parameters.
pub fn load(params: &serde_json::Value, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let config: Config = params_from("mnist", params)?;
    let dir = resolve_data_dir(config.dir.as_deref());
    load_mnist(&dir, config.download && !opts.offline)
}

inventory::submit! {
    DatasetRegistration {
        name: "mnist",
        summary: "MNIST handwritten digits: 60000/10000 train/test images, 28x28 greyscale, 10 classes",
        params: &[
            ParamSpec::new("dir", "folder of the four IDX files, .gz or raw (default: $CLBENCH_DATA, else data/ or ../shared/data/mnist if it holds them, else data/)"),
            ParamSpec::new("download", "fetch missing files from the public mirrors, MD5-checked (default true)"),
        ],
        resolve: resolve_with::<Config>,
        shape: |_| SHAPE,
        load,
    }
}
