//! The IDX loaders (MNIST, Fashion-MNIST) against the real files and against damaged ones. No
//! network: every case that could download passes `allow_download = false` or `offline`.

mod common;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use clbench::data::{load_mnist, DataError, LoadOptions, DATA_ENV};
use flate2::{write::GzEncoder, Compression};
use md5::{Digest, Md5};
use tch::{Device, Kind};

const TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

/// `CLBENCH_DATA` if set, else the shared copy next to the checkout.
fn mnist_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
    }
}

#[test]
fn real_mnist_has_the_known_class_counts() {
    let dir = mnist_dir();
    if !dir.is_dir() {
        common::skip(
            "real_mnist_has_the_known_class_counts",
            &format!(
                "no MNIST folder at {}; set {DATA_ENV} to a folder holding the four files",
                dir.display()
            ),
        );
        return;
    }
    let data = load_mnist(&dir, false).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(data.name, "mnist");
    assert_eq!((data.train.rows, data.train.cols), (28, 28));
    assert_eq!((data.train.channels, data.train.classes), (1, 10));
    assert_eq!(data.train.class_counts(), TRAIN_COUNTS);
    assert_eq!(data.test.class_counts(), TEST_COUNTS);

    let all: Vec<i64> = (0..data.train.len() as i64).collect();
    let x = data.train.images_tensor(&all, Device::Cpu);
    assert_eq!((x.size(), x.kind()), (vec![60000, 784], Kind::Float));
    let (min, max) = (x.min().double_value(&[]), x.max().double_value(&[]));
    assert_eq!((min, max), (0.0, 1.0));
    let y = data.train.labels_tensor(&all, Device::Cpu);
    assert_eq!((y.size(), y.kind()), (vec![60000], Kind::Int64));
    let zeros = data.test.indices_of_classes(&[0]);
    assert_eq!(zeros.len(), TEST_COUNTS[0]);
    let y0 = data.test.labels_tensor(&zeros, Device::Cpu);
    assert_eq!(y0.eq(0).all().int64_value(&[]), 1);

    // Bit-identical to the loader before channels and classes were added: these MD5s were
    // computed with that code, over the same bytes in the same order.
    assert_eq!(
        md5_hex(&data.train.images),
        "6510e85a72c3e9475c492d559d3770d2"
    );
    assert_eq!(
        md5_hex(&data.train.labels),
        "e86ee40d66677c011a9abda399ec8c4d"
    );
    assert_eq!(
        md5_hex(&data.test.images),
        "240610fa99e73bfa49df8e7fc24d3206"
    );
    assert_eq!(
        md5_hex(&data.test.labels),
        "073c3904dfbd3e141ff8aa01cfde6b15"
    );
    let x = data.test.images_tensor(&[0, 5, 9999], Device::Cpu);
    let floats: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
    let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    assert_eq!(md5_hex(&bytes), "2ba0a15a5148e0d1608c88e46e74f321");
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The system copy of Fashion-MNIST (Debian's `dataset-fashion-mnist`), through its plugin.
#[test]
fn real_fashion_mnist_loads_from_the_system_copy() {
    let dir = Path::new(clbench::datasets::fashion_mnist::SYSTEM_DIR);
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        common::skip(
            "real_fashion_mnist_loads_from_the_system_copy",
            &format!(
                "no Fashion-MNIST at {}; install the Debian package dataset-fashion-mnist",
                dir.display()
            ),
        );
        return;
    }
    let reg = clbench::data::DatasetRegistry::load()
        .unwrap()
        .get("fashion_mnist")
        .unwrap();
    let mut yaml = serde_yaml::Mapping::new();
    yaml.insert("dir".into(), dir.display().to_string().into());
    let params = (reg.resolve)(&yaml).unwrap();
    let data =
        (reg.load)(&params, &LoadOptions { offline: true }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.name, "fashion_mnist");
    for (split, n) in [(&data.train, 60000), (&data.test, 10000)] {
        assert_eq!(split.len(), n);
        assert_eq!(
            (split.channels, split.rows, split.cols, split.classes),
            (1, 28, 28, 10)
        );
        // Fashion-MNIST is balanced: every class has a tenth of the split.
        assert_eq!(split.class_counts(), vec![n / 10; 10]);
    }
}

// ---- damaged inputs, written as tiny fake IDX files in a temp folder ----

fn images_idx(magic: u32, count: u32, pixels: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [magic, count, 28, 28] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.resize(16 + pixels, 128);
    bytes
}

fn labels_idx(count: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [0x801, count] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend((0..count).map(|i| (i % 10) as u8));
    bytes
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A folder holding a valid tiny MNIST: 3 train and 2 test samples, train raw, test gzipped.
fn tiny_mnist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: Vec<u8>| fs::write(dir.path().join(name), bytes).unwrap();
    put("train-images-idx3-ubyte", images_idx(0x803, 3, 3 * 784));
    put("train-labels-idx1-ubyte", labels_idx(3));
    put(
        "t10k-images-idx3-ubyte.gz",
        gz(&images_idx(0x803, 2, 2 * 784)),
    );
    put("t10k-labels-idx1-ubyte.gz", gz(&labels_idx(2)));
    dir
}

/// Loads `dir` expecting an error whose message names `file` and says what to do.
fn expect_error(dir: &Path, file: &str, hint: &str) -> DataError {
    let err = load_mnist(dir, false).expect_err("loading damaged data must fail");
    let msg = err.to_string();
    assert!(msg.contains(file), "message does not name {file}: {msg}");
    assert!(msg.contains(hint), "message lacks the hint {hint:?}: {msg}");
    err
}

#[test]
fn tiny_valid_folder_loads() {
    let dir = tiny_mnist();
    let data = load_mnist(dir.path(), false).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (3, 2));
    assert_eq!(data.train.labels, [0, 1, 2]);
    assert_eq!(data.source, dir.path().display().to_string());
}

#[test]
fn truncated_images_file() {
    let dir = tiny_mnist();
    let path = dir.path().join("train-images-idx3-ubyte");
    fs::write(&path, &images_idx(0x803, 3, 3 * 784)[..1000]).unwrap();
    let err = expect_error(dir.path(), "train-images-idx3-ubyte", "re-download it");
    let msg = err.to_string();
    assert!(
        msg.contains("truncated: header says 3 images of 28x28 (2352 bytes)"),
        "{msg}"
    );
    assert!(msg.contains("984 bytes"), "{msg}");
}

#[test]
fn trailing_bytes_in_images_file() {
    let dir = tiny_mnist();
    let mut bytes = images_idx(0x803, 3, 3 * 784);
    bytes.extend_from_slice(b"junk");
    fs::write(dir.path().join("train-images-idx3-ubyte"), bytes).unwrap();
    let err = expect_error(dir.path(), "train-images-idx3-ubyte", "re-download it");
    assert!(
        err.to_string().contains("4 bytes of trailing data"),
        "{err}"
    );
}

#[test]
fn wrong_magic_number() {
    let dir = tiny_mnist();
    fs::write(
        dir.path().join("t10k-images-idx3-ubyte.gz"),
        gz(&images_idx(0x802, 2, 2 * 784)),
    )
    .unwrap();
    let err = expect_error(dir.path(), "t10k-images-idx3-ubyte.gz", "re-download it");
    assert!(
        err.to_string().contains("wrong magic number 0x00000802"),
        "{err}"
    );
}

#[test]
fn image_and_label_counts_disagree() {
    let dir = tiny_mnist();
    fs::write(dir.path().join("train-labels-idx1-ubyte"), labels_idx(4)).unwrap();
    let err = expect_error(dir.path(), "train-labels-idx1-ubyte", "re-download both");
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_images: 3,
                n_labels: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn corrupt_gzip() {
    let dir = tiny_mnist();
    let mut bytes = gz(&labels_idx(2));
    let mid = bytes.len() / 2;
    bytes[mid..].fill(0xAB);
    fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), bytes).unwrap();
    let err = expect_error(dir.path(), "t10k-labels-idx1-ubyte.gz", "re-download it");
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");

    fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        b"not gzip at all",
    )
    .unwrap();
    let err = expect_error(
        dir.path(),
        "t10k-labels-idx1-ubyte.gz",
        "not a valid gzip file",
    );
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
}

#[test]
fn missing_files_without_download() {
    let dir = tiny_mnist();
    fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let err = expect_error(
        dir.path(),
        "train-labels-idx1-ubyte",
        "CLBENCH_DATA or dataset.dir",
    );
    let msg = err.to_string();
    assert!(
        msg.contains("t10k-images-idx3-ubyte") && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
    assert!(
        !msg.contains("t10k-labels"),
        "lists only the missing files: {msg}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = load_mnist(&empty.path().join("nowhere"), false).unwrap_err();
    assert!(
        matches!(&err, DataError::Missing { files, .. } if files.len() == 4),
        "{err}"
    );
}
