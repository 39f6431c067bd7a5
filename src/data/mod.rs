//! Datasets as plain bytes, and the tensors jobs build from them.
//!
//! In: files in a folder (the IDX files of MNIST and Fashion-MNIST, read by [`idx`]; the binary
//! record files of CIFAR-10 and CIFAR-100, read by [`cifar`]), fetched when missing and allowed
//! through [`download`], or a [`SyntheticSpec`] ([`synthetic`]). Out: a [`Dataset`], two
//! [`Split`]s of `u8` pixels and labels with no tensors inside, so it is `Send + Sync` and one copy
//! is shared by every worker through an `Arc`. A job builds its own tensors from it with
//! [`Split::images_tensor`] and [`Split::labels_tensor`], on its own device.
//!
//! Which datasets exist is the plugins' business: each `datasets/*.rs` registers a
//! [`DatasetRegistration`] (see [`registry`]) that resolves its YAML parameters, states its
//! [`DatasetShape`] without reading files, and loads through the readers here.
//!
//! This module must not hold tensors, keep global state or know about tasks and scenarios:
//! scenarios pick sample indices (for example with [`Split::indices_of_classes`]) and transform
//! the tensors they get back. Every failure is a [`DataError`] whose message names the dataset,
//! the file or folder at fault and says what to do about it; the messages are complete on their
//! own (they carry the underlying I/O or gzip error as text rather than as a chained source), so
//! printing an error chain shows each cause once.

pub mod cifar;
pub mod download;
pub mod idx;
pub mod mnist;
pub mod registry;
pub mod synthetic;
pub mod transform;

use std::{
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
};

use tch::{Device, Kind, Tensor};

pub use mnist::load_mnist;
pub use registry::{DatasetRegistration, DatasetRegistry, DatasetShape, LoadOptions};
pub use synthetic::{synthetic, SyntheticSpec};

/// Environment variable naming the folder that holds the MNIST files, used when the experiment
/// does not set `dataset.dir`.
pub const DATA_ENV: &str = "CLBENCH_DATA";

/// Folder used when neither the experiment nor [`DATA_ENV`] names one, relative to the current
/// directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Most labels a [`Split`] may have: labels are `u8`.
pub const MAX_CLASSES: usize = 256;

/// One split (train or test) of a dataset of images with labels `0..classes`.
///
/// Invariants (checked by the loaders, assumed by the methods): `images.len() == len() *
/// channels * rows * cols`, `1 <= classes <= 256` ([`MAX_CLASSES`]) and every label is below
/// `classes`.
#[derive(Clone, PartialEq, Eq)]
pub struct Split {
    /// Pixels 0..=255, one image after the other, each in CHW order (channel-major, then
    /// row-major): `len() * channels * rows * cols` bytes.
    pub images: Vec<u8>,
    /// One label `0..classes` per image.
    pub labels: Vec<u8>,
    /// Colour channels per image: 1 for greyscale, 3 for RGB.
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    /// How many classes the dataset has (whether or not this split holds each of them).
    pub classes: usize,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes (input features) per image, `channels * rows * cols`.
    pub fn pixels(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// Channels, rows, columns and classes.
    pub fn shape(&self) -> DatasetShape {
        DatasetShape {
            channels: self.channels,
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        }
    }

    /// Indices of the samples whose label is in `classes`, ascending.
    pub fn indices_of_classes(&self, classes: &[u8]) -> Vec<i64> {
        let mut wanted = [false; 256];
        for &c in classes {
            wanted[usize::from(c)] = true;
        }
        self.labels
            .iter()
            .enumerate()
            .filter(|&(_, &label)| wanted[usize::from(label)])
            .map(|(i, _)| i as i64)
            .collect()
    }

    /// The images at `indices`, in that order, as a Float tensor `[n, channels * rows * cols]`
    /// in [0, 1], each row one image in CHW order (view it as `[n, channels, rows, cols]`, see
    /// [`to_chw_shape`]).
    ///
    /// The bytes are gathered on the host and moved to `device` as `u8` (a quarter of the
    /// transfer), then converted there. Panics if an index is out of range.
    pub fn images_tensor(&self, indices: &[i64], device: Device) -> Tensor {
        let pixels = self.pixels();
        let mut bytes = Vec::with_capacity(indices.len() * pixels);
        for &i in indices {
            let start = self.checked_index(i) * pixels;
            bytes.extend_from_slice(&self.images[start..start + pixels]);
        }
        Self::unit_floats(&bytes, indices.len(), pixels, device)
    }

    /// As [`images_tensor`](Split::images_tensor), each image's values reordered by `perm`
    /// (value `k` of a row is the image's value `perm[k]`): `images_tensor(..).index_select(1,
    /// perm)`, equal to it, but reordered as bytes while they are gathered: 0.10 s for MNIST's
    /// 60 000 training images against 0.09 s + 0.11 s for the images and their column gather
    /// (2 threads, memory already touched), 20 times over for permuted MNIST. Panics if an
    /// index or a value of `perm` is out of range.
    pub fn permuted_images_tensor(&self, indices: &[i64], perm: &[i64], device: Device) -> Tensor {
        let pixels = self.pixels();
        assert_eq!(perm.len(), pixels, "a permutation of {pixels} values");
        let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
        let mut bytes = Vec::with_capacity(indices.len() * pixels);
        for &i in indices {
            let start = self.checked_index(i) * pixels;
            let image = &self.images[start..start + pixels];
            bytes.extend(perm.iter().map(|&p| image[p]));
        }
        Self::unit_floats(&bytes, indices.len(), pixels, device)
    }

    /// `n` rows of `pixels` bytes as Float values in [0, 1] on `device`: moved as `u8` (a
    /// quarter of the transfer), converted there, divided in place (one Float tensor allocated,
    /// not two).
    fn unit_floats(bytes: &[u8], n: usize, pixels: usize, device: Device) -> Tensor {
        let mut x = Tensor::from_slice(bytes)
            .view([n as i64, pixels as i64])
            .to_device(device)
            .to_kind(Kind::Float);
        let _ = x.g_div_scalar_(255.0);
        x
    }

    /// The labels at `indices`, in that order, as an Int64 tensor `[n]`. Panics if an index is
    /// out of range.
    pub fn labels_tensor(&self, indices: &[i64], device: Device) -> Tensor {
        let labels: Vec<i64> = indices
            .iter()
            .map(|&i| i64::from(self.labels[self.checked_index(i)]))
            .collect();
        Tensor::from_slice(&labels).to_device(device)
    }

    /// How many samples each label `0..classes` has (a vector of length `classes`).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[usize::from(label)] += 1;
        }
        counts
    }

    fn checked_index(&self, i: i64) -> usize {
        match usize::try_from(i) {
            Ok(i) if i < self.len() => i,
            _ => panic!(
                "sample index {i} out of range for a split of {} samples",
                self.len()
            ),
        }
    }
}

/// Shows the shape, not the megabytes of pixels.
impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len())
            .field("channels", &self.channels)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("classes", &self.classes)
            .finish()
    }
}

/// A named dataset: a train and a test split, plus where it came from (for reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The registered name: `"mnist"`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`,
    /// `"synthetic"`.
    pub name: String,
    pub train: Split,
    pub test: Split,
    /// Where the data came from: the folder it was read from, or `"synthetic seed 3 (…)"`.
    pub source: String,
}

/// Reshapes a batch of flat single-channel images `[N, rows * cols]` to `[N, 1, rows, cols]`
/// for conv models. Panics on another shape.
pub fn to_image_shape(x: &Tensor, rows: usize, cols: usize) -> Tensor {
    to_chw_shape(x, 1, rows, cols)
}

/// Reshapes a batch of flat images `[N, channels * rows * cols]` (as [`Split::images_tensor`]
/// gives them) to `[N, channels, rows, cols]`. Panics on another shape.
pub fn to_chw_shape(x: &Tensor, channels: usize, rows: usize, cols: usize) -> Tensor {
    let size = x.size();
    assert!(
        size.len() == 2 && size[1] == (channels * rows * cols) as i64,
        "to_chw_shape: expected [N, {}] for {channels}x{rows}x{cols} images, got {size:?}",
        channels * rows * cols
    );
    x.reshape([size[0], channels as i64, rows as i64, cols as i64])
}

/// Where the project's machines keep MNIST, relative to a checkout (the repository's root, where
/// `cargo run` and `cargo test` run): found without any variable set.
pub const SHARED_DATA_DIR: &str = "../shared/data/mnist";

/// The folder to read MNIST from: `configured` (the experiment's `dataset.dir`) if given, else
/// the [`DATA_ENV`] environment variable if set and not empty, else [`DEFAULT_DATA_DIR`] if it
/// holds the training images, else [`SHARED_DATA_DIR`] if that does, else
/// [`DEFAULT_DATA_DIR`] (where a download puts them).
pub fn resolve_data_dir(configured: Option<&Path>) -> PathBuf {
    let found = [DEFAULT_DATA_DIR, SHARED_DATA_DIR]
        .into_iter()
        .map(Path::new)
        .find(|dir| holds_mnist(dir))
        .unwrap_or(Path::new(DEFAULT_DATA_DIR));
    resolve_dir(configured, DATA_ENV, found)
}

/// Whether `dir` holds MNIST's training images, raw or gzipped (the other three files are
/// checked, with a message, when they are read).
fn holds_mnist(dir: &Path) -> bool {
    let images = idx::IDX_FILES[0];
    dir.join(images).is_file() || dir.join(format!("{images}.gz")).is_file()
}

/// The folder of a dataset: `configured` if given, else the environment variable `env` if set
/// and not empty, else `fallback`.
pub fn resolve_dir(configured: Option<&Path>, env: &str, fallback: &Path) -> PathBuf {
    resolve_dir_with(configured, std::env::var_os(env), fallback)
}

/// [`resolve_dir`] with the environment value passed in, so tests need not set variables.
fn resolve_dir_with(configured: Option<&Path>, env: Option<OsString>, fallback: &Path) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    match env {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => fallback.to_path_buf(),
    }
}

/// Why a dataset could not be loaded, fetched or built. Each message starts with the dataset,
/// names the file or folder at fault and ends with what to do (`fix`, written by the loader that
/// knows the dataset's folders, environment variable and download).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{dataset}: {}: cannot read it: {err}; check that it is a readable file, or {fix}",
        path.display()
    )]
    Read {
        dataset: &'static str,
        path: PathBuf,
        err: std::io::Error,
        fix: String,
    },

    #[error("{dataset}: {}: not a valid gzip file ({err}); {fix}", path.display())]
    Gzip {
        dataset: &'static str,
        path: PathBuf,
        err: std::io::Error,
        fix: String,
    },

    /// The file reads but is not what its name promises (magic, dimensions, length, labels).
    #[error("{dataset}: {}: {problem}; {fix}", path.display())]
    Format {
        dataset: &'static str,
        path: PathBuf,
        problem: String,
        fix: String,
    },

    #[error(
        "{dataset}: {} holds {n_images} images but {} holds {n_labels} labels; the two files do \
         not belong together: re-download both, or delete them so clbench fetches them again",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        dataset: &'static str,
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },

    /// `fix` says where to put the files and how to let clbench download them.
    #[error(
        "{dataset} files missing from {}: {}; {fix}",
        dir.display(),
        files.join(", ")
    )]
    Missing {
        dataset: &'static str,
        dir: PathBuf,
        files: Vec<String>,
        fix: String,
    },

    #[error(
        "{dataset}: could not download {file} from any mirror ({}); {fix}",
        attempts.join("; ")
    )]
    Download {
        dataset: &'static str,
        file: String,
        dir: PathBuf,
        attempts: Vec<String>,
        fix: String,
    },

    #[error(
        "{}: MD5 {actual} differs from the expected {expected}; the download is damaged or not \
         the original file: try again, or fetch it by hand",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// Storing a verified download failed; `err` (from [`crate::results::write_atomic`]) names
    /// the file.
    #[error("{err:#}; check that the folder is writable and has room")]
    Write { path: PathBuf, err: anyhow::Error },

    /// A downloaded archive could not be unpacked, or lacks a file it should hold.
    #[error("{dataset}: {archive}: {problem}; {fix}")]
    Archive {
        dataset: &'static str,
        archive: String,
        problem: String,
        fix: String,
    },

    /// Parameters that did not come from the dataset's `resolve`.
    #[error(
        "dataset {dataset}: invalid parameters ({problem}); give them in the experiment's \
         `dataset:` section, where they are checked"
    )]
    Params {
        dataset: &'static str,
        problem: String,
    },

    #[error("synthetic dataset: {field} {problem}")]
    InvalidSpec {
        field: &'static str,
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_holds_mnist_when_its_training_images_are_there_raw_or_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!holds_mnist(dir.path()));
        std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), b"").unwrap();
        assert!(holds_mnist(dir.path()));
        let raw = tempfile::tempdir().unwrap();
        std::fs::write(raw.path().join("train-images-idx3-ubyte"), b"").unwrap();
        assert!(holds_mnist(raw.path()));
        // A configured folder wins over any found one.
        assert_eq!(resolve_data_dir(Some(raw.path())), raw.path());
    }

    fn tiny() -> Split {
        // Three 2x2 greyscale images: labels 3, 1, 3.
        Split {
            images: vec![0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0],
            labels: vec![3, 1, 3],
            channels: 1,
            rows: 2,
            cols: 2,
            classes: 10,
        }
    }

    #[test]
    fn split_accessors() {
        let s = tiny();
        assert_eq!((s.len(), s.is_empty(), s.pixels()), (3, false, 4));
        assert_eq!(s.indices_of_classes(&[3]), vec![0, 2]);
        assert_eq!(s.indices_of_classes(&[1, 3]), vec![0, 1, 2]);
        assert!(s.indices_of_classes(&[7]).is_empty());
        let mut expected = vec![0; 10];
        expected[1] = 1;
        expected[3] = 2;
        assert_eq!(s.class_counts(), expected);
        assert_eq!(
            format!("{s:?}"),
            "Split { len: 3, channels: 1, rows: 2, cols: 2, classes: 10 }"
        );
    }

    #[test]
    fn tensors_follow_the_indices() {
        let s = tiny();
        let x = s.images_tensor(&[2, 0], Device::Cpu);
        assert_eq!((x.size(), x.kind()), (vec![2, 4], Kind::Float));
        let got: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
        let want = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.2, 0.4];
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{got:?}"
        );
        let y = s.labels_tensor(&[2, 1], Device::Cpu);
        assert_eq!((y.size(), y.kind()), (vec![2], Kind::Int64));
        assert_eq!(Vec::<i64>::try_from(y).unwrap(), [3, 1]);
        let empty = s.images_tensor(&[], Device::Cpu);
        assert_eq!(empty.size(), [0, 4]);
        assert_eq!(to_image_shape(&x, 2, 2).size(), [2, 1, 2, 2]);
    }

    #[test]
    fn permuted_images_equal_a_column_gather_of_the_images() {
        let s = tiny();
        let perm = [3i64, 0, 2, 1];
        let gathered = s
            .images_tensor(&[2, 0, 1], Device::Cpu)
            .index_select(1, &Tensor::from_slice(&perm));
        let permuted = s.permuted_images_tensor(&[2, 0, 1], &perm, Device::Cpu);
        assert!(permuted.equal(&gathered), "{permuted} vs {gathered}");
        let empty = s.permuted_images_tensor(&[], &perm, Device::Cpu);
        assert_eq!(empty.size(), [0, 4]);
    }

    #[test]
    fn colour_images_are_chw_rows() {
        // Two 3-channel 1x2 images; 200 classes, so counts have 200 entries.
        let s = Split {
            images: (0..12).collect(),
            labels: vec![199, 0],
            channels: 3,
            rows: 1,
            cols: 2,
            classes: 200,
        };
        assert_eq!(s.pixels(), 6);
        let counts = s.class_counts();
        assert_eq!((counts.len(), counts[0], counts[199]), (200, 1, 1));
        let x = s.images_tensor(&[1], Device::Cpu);
        let chw = to_chw_shape(&x, 3, 1, 2);
        assert_eq!(chw.size(), [1, 3, 1, 2]);
        // Channel 2 of image 1 holds bytes 10 and 11.
        let blue: Vec<f32> = Vec::try_from(chw.get(0).get(2).flatten(0, -1) * 255.0).unwrap();
        assert_eq!(
            blue.iter().map(|v| v.round()).collect::<Vec<_>>(),
            [10.0, 11.0]
        );
    }

    #[test]
    #[should_panic(expected = "sample index 3 out of range")]
    fn out_of_range_index_panics() {
        let _ = tiny().labels_tensor(&[3], Device::Cpu);
    }

    #[test]
    fn data_dir_precedence() {
        let yaml = Path::new("from/yaml");
        let data = Path::new("data");
        let env = || Some(OsString::from("from/env"));
        assert_eq!(resolve_dir_with(Some(yaml), env(), data), yaml);
        assert_eq!(resolve_dir_with(None, env(), data), Path::new("from/env"));
        assert_eq!(
            resolve_dir_with(None, Some(OsString::new()), data),
            Path::new("data")
        );
        assert_eq!(resolve_dir_with(None, None, data), Path::new("data"));
    }
}
