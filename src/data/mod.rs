//! Datasets as plain bytes, and the tensors jobs build from them.
//!
//! In: a folder holding the four MNIST IDX files ([`load_mnist`], which may fetch missing ones
//! through [`download`]) or a [`SyntheticSpec`] ([`synthetic`]). Out: a [`Dataset`], two
//! [`Split`]s of `u8` pixels and labels with no tensors inside, so it is `Send + Sync` and one copy
//! is shared by every worker through an `Arc`. A job builds its own tensors from it with
//! [`Split::images_tensor`] and [`Split::labels_tensor`], on its own device.
//!
//! This module must not hold tensors, keep global state or know about tasks and scenarios:
//! scenarios pick sample indices (for example with [`Split::indices_of_classes`]) and transform
//! the tensors they get back. Every failure is a [`DataError`] whose message names the file or
//! folder at fault and says what to do about it; the messages are complete on their own (they
//! carry the underlying I/O or gzip error as text rather than as a chained source), so printing
//! an error chain shows each cause once.

pub mod download;
pub mod mnist;
pub mod synthetic;
pub mod transform;

use std::{
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
};

use tch::{Device, Kind, Tensor};

pub use mnist::load_mnist;
pub use synthetic::{synthetic, SyntheticSpec};

/// Environment variable naming the folder that holds the MNIST files, used when the experiment
/// does not set `dataset.dir`.
pub const DATA_ENV: &str = "CLBENCH_DATA";

/// Folder used when neither the experiment nor [`DATA_ENV`] names one, relative to the current
/// directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// What to do about a damaged or foreign data file; ends most [`DataError`] messages.
const REFETCH_HINT: &str = "re-download it or delete it so clbench fetches it again (or point \
                            CLBENCH_DATA / dataset.dir at a folder holding the four MNIST files)";

/// One split (train or test) of a dataset of single-channel images with labels 0..=9.
///
/// Invariants (checked by the loaders, assumed by the methods): `images.len() == labels.len() *
/// rows * cols` and every label is at most 9.
#[derive(Clone, PartialEq, Eq)]
pub struct Split {
    /// Pixels 0..=255, row-major, one image after the other: `len() * rows * cols` bytes.
    pub images: Vec<u8>,
    /// One label 0..=9 per image.
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image, `rows * cols`.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
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

    /// The images at `indices`, in that order, as a Float tensor `[n, rows * cols]` in [0, 1].
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
        Tensor::from_slice(&bytes)
            .view([indices.len() as i64, pixels as i64])
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0
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

    /// How many samples each label 0..=9 has.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
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
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

/// A named dataset: a train and a test split, plus where it came from (for reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// `"mnist"` or `"synthetic"`.
    pub name: String,
    pub train: Split,
    pub test: Split,
    /// Where the data came from: the folder it was read from, or `"synthetic seed 3 (…)"`.
    pub source: String,
}

/// Reshapes a batch of flat images `[N, rows * cols]` to `[N, 1, rows, cols]` for conv models.
pub fn to_image_shape(x: &Tensor, rows: usize, cols: usize) -> Tensor {
    let size = x.size();
    assert!(
        size.len() == 2 && size[1] == (rows * cols) as i64,
        "to_image_shape: expected [N, {}] for {rows}x{cols} images, got {size:?}",
        rows * cols
    );
    x.reshape([size[0], 1, rows as i64, cols as i64])
}

/// The folder to read MNIST from: `configured` (the experiment's `dataset.dir`) if given, else
/// the [`DATA_ENV`] environment variable if set and not empty, else [`DEFAULT_DATA_DIR`].
pub fn resolve_data_dir(configured: Option<&Path>) -> PathBuf {
    resolve_data_dir_with(configured, std::env::var_os(DATA_ENV))
}

/// [`resolve_data_dir`] with the environment value passed in, so tests need not set variables.
fn resolve_data_dir_with(configured: Option<&Path>, env: Option<OsString>) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    match env {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// Why a dataset could not be loaded, fetched or built. Each message names the file or folder
/// at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{}: cannot read it: {err}; check that it is a readable file, or {REFETCH_HINT}",
        path.display()
    )]
    Read { path: PathBuf, err: std::io::Error },

    #[error("{}: not a valid gzip file ({err}); {REFETCH_HINT}", path.display())]
    Gzip { path: PathBuf, err: std::io::Error },

    /// The file decodes but is not what its name promises (magic, dimensions, length, labels).
    #[error("{}: {problem}; {REFETCH_HINT}", path.display())]
    Format { path: PathBuf, problem: String },

    #[error(
        "{} holds {n_images} images but {} holds {n_labels} labels; the two files do not belong \
         together: re-download both, or delete them so clbench fetches them again",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },

    #[error(
        "MNIST files missing from {}: {}; put the four MNIST files there (gzipped .gz or \
         uncompressed), set CLBENCH_DATA or dataset.dir to a folder that holds them, or let \
         clbench download them (dataset.download: true, no --offline)",
        dir.display(),
        files.join(", ")
    )]
    Missing { dir: PathBuf, files: Vec<String> },

    #[error(
        "could not download {file} from any mirror ({}); download it by hand and put it in {} \
         (gzipped or not), or set CLBENCH_DATA or dataset.dir to a folder that holds the four \
         MNIST files",
        attempts.join("; "),
        dir.display()
    )]
    Download {
        file: String,
        dir: PathBuf,
        attempts: Vec<String>,
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

    #[error("synthetic dataset: {field} {problem}")]
    InvalidSpec {
        field: &'static str,
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Split {
        // Three 2x2 images: labels 3, 1, 3.
        Split {
            images: vec![0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0],
            labels: vec![3, 1, 3],
            rows: 2,
            cols: 2,
        }
    }

    #[test]
    fn split_accessors() {
        let s = tiny();
        assert_eq!((s.len(), s.is_empty(), s.pixels()), (3, false, 4));
        assert_eq!(s.indices_of_classes(&[3]), vec![0, 2]);
        assert_eq!(s.indices_of_classes(&[1, 3]), vec![0, 1, 2]);
        assert!(s.indices_of_classes(&[7]).is_empty());
        let mut expected = [0; 10];
        expected[1] = 1;
        expected[3] = 2;
        assert_eq!(s.class_counts(), expected);
        assert_eq!(format!("{s:?}"), "Split { len: 3, rows: 2, cols: 2 }");
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
    #[should_panic(expected = "sample index 3 out of range")]
    fn out_of_range_index_panics() {
        let _ = tiny().labels_tensor(&[3], Device::Cpu);
    }

    #[test]
    fn data_dir_precedence() {
        let yaml = Path::new("from/yaml");
        let env = || Some(OsString::from("from/env"));
        assert_eq!(resolve_data_dir_with(Some(yaml), env()), yaml);
        assert_eq!(resolve_data_dir_with(None, env()), Path::new("from/env"));
        assert_eq!(
            resolve_data_dir_with(None, Some(OsString::new())),
            Path::new("data")
        );
        assert_eq!(resolve_data_dir_with(None, None), Path::new("data"));
    }
}
