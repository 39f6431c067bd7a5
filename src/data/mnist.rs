//! MNIST (LeCun et al. 1998): 70000 handwritten digits, 28x28 greyscale, 10 classes, in the IDX
//! format read by [`super::idx`].
//!
//! In: a folder holding the four IDX files (gzipped or raw). Out: a [`Dataset`] named `"mnist"`,
//! or a [`DataError`] naming the file at fault and what to do. Missing files are fetched from
//! the mirrors torchvision uses, MD5-checked against torchvision's sums, only when the caller
//! allows it.

use std::path::Path;

use super::idx::{load_idx, IdxSpec, IDX_FILES};
use super::{DataError, Dataset, DATA_ENV};

/// The four files, without the `.gz` extension: train images, train labels, test images, test
/// labels.
pub const MNIST_FILES: [&str; 4] = IDX_FILES;

/// MNIST's mirrors and checksums (torchvision's).
pub const MNIST: IdxSpec = IdxSpec {
    name: "mnist",
    title: "MNIST",
    env: DATA_ENV,
    mirrors: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    md5: [
        (
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ],
};

/// Loads MNIST from `dir`, first downloading missing files into it if `allow_download`.
pub fn load_mnist(dir: &Path, allow_download: bool) -> Result<Dataset, DataError> {
    load_idx(&MNIST, dir, allow_download)
}
