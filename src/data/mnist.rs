//! MNIST from the four IDX files of Yann LeCun's distribution.
//!
//! In: a folder holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, preferred when
//! both forms are present) or raw. Out: a [`Dataset`] named `"mnist"`, or a [`DataError`] naming
//! the file at fault and what to do.
//!
//! Nothing is trusted: each file must carry the right magic number (0x00000803 images,
//! 0x00000801 labels), 28x28 images, exactly as many bytes as its header announces (a truncated
//! file or trailing bytes are errors), labels 0..=9, and as many labels as its images file has
//! images. Missing files are fetched through [`super::download`] only when the caller allows it;
//! otherwise they are reported, with where to put them. This module writes nothing itself.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;

use super::{download, DataError, Dataset, Split};

/// The four files, without the `.gz` extension: train images, train labels, test images, test
/// labels.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const MNIST_ROWS: usize = 28;
const MNIST_COLS: usize = 28;

/// Loads MNIST from `dir`, first downloading missing files into it if `allow_download`.
pub fn load_mnist(dir: &Path, allow_download: bool) -> Result<Dataset, DataError> {
    let missing: Vec<&str> = MNIST_FILES
        .into_iter()
        .filter(|stem| locate(dir, stem).is_none())
        .collect();
    if !missing.is_empty() {
        if !allow_download {
            return Err(DataError::Missing {
                dir: dir.to_path_buf(),
                files: missing.iter().map(|stem| format!("{stem}[.gz]")).collect(),
            });
        }
        download::download_missing(dir, &missing)?;
    }
    // Every file exists now; one that vanished since fails to read, naming its path.
    let [train_images, train_labels, test_images, test_labels] =
        MNIST_FILES.map(|stem| locate(dir, stem).unwrap_or_else(|| dir.join(stem)));
    Ok(Dataset {
        name: "mnist".to_string(),
        train: load_split(train_images, train_labels)?,
        test: load_split(test_images, test_labels)?,
        source: dir.display().to_string(),
    })
}

/// The path of `stem.gz` in `dir` if it exists, else of `stem` if it exists.
fn locate(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|path| path.is_file())
}

fn load_split(images_path: PathBuf, labels_path: PathBuf) -> Result<Split, DataError> {
    let images = parse_images(read_maybe_gz(&images_path)?, &images_path)?;
    let labels = parse_labels(read_maybe_gz(&labels_path)?, &labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path,
            labels: labels_path,
            n_images: images.count,
            n_labels: labels.len(),
        });
    }
    Ok(Split {
        images: images.pixels,
        labels,
        rows: images.rows,
        cols: images.cols,
    })
}

/// The file's bytes, decompressed if its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = fs::read(path).map_err(|err| DataError::Read {
        path: path.to_path_buf(),
        err,
    })?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        gunzip(&bytes).map_err(|err| DataError::Gzip {
            path: path.to_path_buf(),
            err,
        })
    } else {
        Ok(bytes)
    }
}

fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // MNIST compresses about 5:1; the guess only saves reallocations.
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(5));
    GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// The content of an IDX3 images file.
struct IdxImages {
    count: usize,
    rows: usize,
    cols: usize,
    /// `count * rows * cols` bytes.
    pixels: Vec<u8>,
}

/// Parses an IDX3 `u8` images file of 28x28 images; `path` only names the file in errors.
fn parse_images(mut bytes: Vec<u8>, path: &Path) -> Result<IdxImages, DataError> {
    let bad = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let header = read_header::<4>(&bytes, IMAGES_MAGIC, "images", path)?;
    let [_, count, rows, cols] = header.map(|v| v as usize);
    if (rows, cols) != (MNIST_ROWS, MNIST_COLS) {
        return Err(bad(format!(
            "images are {rows}x{cols} but MNIST images are {MNIST_ROWS}x{MNIST_COLS}"
        )));
    }
    let expected = count * rows * cols;
    let what = format!("{count} images of {rows}x{cols} ({expected} bytes)");
    check_payload(bytes.len() - 16, expected, &what, 16).map_err(bad)?;
    bytes.drain(..16);
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes,
    })
}

/// Parses an IDX1 `u8` labels file with labels 0..=9; `path` only names the file in errors.
fn parse_labels(mut bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    let bad = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let [_, count] = read_header::<2>(&bytes, LABELS_MAGIC, "labels", path)?.map(|v| v as usize);
    check_payload(
        bytes.len() - 8,
        count,
        &format!("{count} labels ({count} bytes)"),
        8,
    )
    .map_err(bad)?;
    bytes.drain(..8);
    if let Some(i) = bytes.iter().position(|&label| label > 9) {
        return Err(bad(format!(
            "label {} at index {i} is outside 0..=9",
            bytes[i]
        )));
    }
    Ok(bytes)
}

/// The `N` big-endian `u32`s opening an IDX file, the first being the checked magic number.
fn read_header<const N: usize>(
    bytes: &[u8],
    magic: u32,
    what: &str,
    path: &Path,
) -> Result<[u32; N], DataError> {
    let bad = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    if bytes.len() < 4 * N {
        return Err(bad(format!(
            "{} bytes is too short for the {}-byte header of an IDX {what} file",
            bytes.len(),
            4 * N
        )));
    }
    let mut header = [0u32; N];
    for (value, chunk) in header.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = u32::from_be_bytes(chunk.try_into().expect("chunks of 4"));
    }
    if header[0] != magic {
        let gzipped = if bytes.starts_with(&[0x1f, 0x8b]) {
            " (it looks gzipped: name it with a .gz extension)"
        } else {
            ""
        };
        return Err(bad(format!(
            "wrong magic number 0x{:08x}, an IDX {what} file starts with 0x{magic:08x}{gzipped}",
            header[0]
        )));
    }
    Ok(header)
}

/// Checks that exactly `expected` bytes follow the `header_len`-byte header.
fn check_payload(
    actual: usize,
    expected: usize,
    what: &str,
    header_len: usize,
) -> Result<(), String> {
    if actual < expected {
        Err(format!(
            "truncated: header says {what} but the file holds {actual} bytes after its \
             {header_len}-byte header"
        ))
    } else if actual > expected {
        Err(format!(
            "{} bytes of trailing data after the {what} its header announces",
            actual - expected
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{write::GzEncoder, Compression};

    use super::*;

    fn images_idx(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    fn labels_idx(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for v in [LABELS_MAGIC, labels.len() as u32] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(labels);
        bytes
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn problem(err: DataError) -> String {
        match err {
            DataError::Format { problem, .. } => problem,
            other => panic!("expected a format error, got {other}"),
        }
    }

    const P: &str = "mem.idx";

    #[test]
    fn parses_images_and_labels() {
        let pixels: Vec<u8> = (0..2 * 784).map(|i| (i % 256) as u8).collect();
        let images = parse_images(images_idx(2, 28, 28, &pixels), Path::new(P)).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (2, 28, 28));
        assert_eq!(images.pixels, pixels);
        assert_eq!(
            parse_labels(labels_idx(&[0, 9, 4]), Path::new(P)).unwrap(),
            [0, 9, 4]
        );
    }

    #[test]
    fn rejects_malformed_idx() {
        let p = Path::new(P);
        let full = images_idx(2, 28, 28, &[0; 2 * 784]);
        let short = problem(parse_images(full[..100].to_vec(), p).err().unwrap());
        assert!(short.starts_with("truncated: header says 2 images of 28x28 (1568 bytes)"));
        assert!(short.contains("holds 84 bytes"), "{short}");
        let mut long = full.clone();
        long.push(7);
        assert!(problem(parse_images(long, p).err().unwrap()).starts_with("1 bytes of trailing"));
        let dims = problem(
            parse_images(images_idx(1, 32, 32, &[0; 1024]), p)
                .err()
                .unwrap(),
        );
        assert!(dims.contains("32x32"), "{dims}");
        let magic = problem(parse_images(labels_idx(&[1; 20]), p).err().unwrap());
        assert!(magic.contains("wrong magic number 0x00000801"), "{magic}");
        let zipped = problem(parse_images(gz(&full), p).err().unwrap());
        assert!(zipped.contains("looks gzipped"), "{zipped}");
        assert!(problem(parse_images(vec![0; 5], p).err().unwrap()).contains("too short"));
        let label = problem(parse_labels(labels_idx(&[1, 10]), p).unwrap_err());
        assert_eq!(label, "label 10 at index 1 is outside 0..=9");
        let mut labels = labels_idx(&[1, 2]);
        labels.pop();
        assert!(problem(parse_labels(labels, p).unwrap_err()).starts_with("truncated"));
    }

    #[test]
    fn reads_raw_and_gzipped_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = labels_idx(&[5, 6]);
        fs::write(dir.path().join("a"), &raw).unwrap();
        fs::write(dir.path().join("b.gz"), gz(&raw)).unwrap();
        assert_eq!(read_maybe_gz(&dir.path().join("a")).unwrap(), raw);
        assert_eq!(read_maybe_gz(&dir.path().join("b.gz")).unwrap(), raw);
        // Both forms present: the .gz one wins.
        fs::write(dir.path().join("b"), b"ignored").unwrap();
        assert_eq!(locate(dir.path(), "b").unwrap(), dir.path().join("b.gz"));
        assert_eq!(locate(dir.path(), "a").unwrap(), dir.path().join("a"));
        assert!(locate(dir.path(), "c").is_none());
    }
}
