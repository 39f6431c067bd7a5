//! Datasets in the IDX format of Yann LeCun's MNIST distribution: MNIST and Fashion-MNIST.
//!
//! In: an [`IdxSpec`] (which dataset: its name, environment variable, mirrors and checksums)
//! and a folder holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each gzipped (`.gz`, preferred when
//! both forms are present) or raw. Out: a [`Dataset`] of 28x28 single-channel images with 10
//! classes, or a [`DataError`] naming the dataset, the file at fault and what to do.
//!
//! Nothing is trusted: each file must carry the right magic number (0x00000803 images,
//! 0x00000801 labels), 28x28 images, exactly as many bytes as its header announces (a truncated
//! file or trailing bytes are errors), labels 0..=9, and as many labels as its images file has
//! images. Missing files are fetched from the spec's mirrors (MD5-checked) only when the caller
//! allows it; otherwise they are reported, with where to put them. Pixels are kept byte for byte
//! in file order.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;

use super::{download, DataError, Dataset, Split};

/// The four files, without the `.gz` extension: train images, train labels, test images, test
/// labels.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IDX_ROWS: usize = 28;
const IDX_COLS: usize = 28;
/// Labels are 0..=9.
pub const IDX_CLASSES: usize = 10;
/// The largest file (Fashion-MNIST's training images) is about 26 MiB gzipped.
const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;

/// One dataset in the IDX format.
#[derive(Debug, Clone, Copy)]
pub struct IdxSpec {
    /// The registered name, given to [`Dataset::name`]: `"mnist"`.
    pub name: &'static str,
    /// The name in messages: `"MNIST"`.
    pub title: &'static str,
    /// The environment variable naming its folder: `"CLBENCH_DATA"`.
    pub env: &'static str,
    /// Base URLs tried in order; each file is fetched as `<mirror><stem>.gz`.
    pub mirrors: &'static [&'static str],
    /// The MD5 of each `.gz` file, by file name.
    pub md5: [(&'static str, &'static str); 4],
}

impl IdxSpec {
    /// What to do about a damaged or foreign file; ends most of its [`DataError`] messages.
    fn refetch_hint(&self) -> String {
        format!(
            "re-download it or delete it so clbench fetches it again (or point {} / dataset.dir \
             at a folder holding the four {} files)",
            self.env, self.title
        )
    }

    fn missing_hint(&self) -> String {
        format!(
            "put the four {title} files there (gzipped .gz or uncompressed, from {mirror}), set \
             {env} or dataset.dir to a folder that holds them, or let clbench download them \
             (dataset.download: true, no --offline)",
            title = self.title,
            env = self.env,
            mirror = self.mirrors.first().copied().unwrap_or("its website"),
        )
    }

    fn download_hint(&self, dir: &Path) -> String {
        format!(
            "download it by hand and put it in {} (gzipped or not), or set {} or dataset.dir to \
             a folder that holds the four {} files",
            dir.display(),
            self.env,
            self.title
        )
    }
}

/// Whether `dir` holds all four files (gzipped or raw).
pub fn holds_files(dir: &Path) -> bool {
    IDX_FILES.iter().all(|stem| locate(dir, stem).is_some())
}

/// Loads the dataset `spec` from `dir`, first downloading missing files into it if
/// `allow_download`.
pub fn load_idx(spec: &IdxSpec, dir: &Path, allow_download: bool) -> Result<Dataset, DataError> {
    let missing: Vec<&str> = IDX_FILES
        .into_iter()
        .filter(|stem| locate(dir, stem).is_none())
        .collect();
    if !missing.is_empty() {
        if !allow_download {
            return Err(DataError::Missing {
                dataset: spec.title,
                dir: dir.to_path_buf(),
                files: missing.iter().map(|stem| format!("{stem}[.gz]")).collect(),
                fix: spec.missing_hint(),
            });
        }
        download_missing(spec, dir, &missing)?;
    }
    // Every file exists now; one that vanished since fails to read, naming its path.
    let [train_images, train_labels, test_images, test_labels] =
        IDX_FILES.map(|stem| locate(dir, stem).unwrap_or_else(|| dir.join(stem)));
    Ok(Dataset {
        name: spec.name.to_string(),
        train: load_split(spec, train_images, train_labels)?,
        test: load_split(spec, test_images, test_labels)?,
        source: dir.display().to_string(),
    })
}

/// Downloads `<stem>.gz` into `dir` (created if needed) for each of `stems`, trying the mirrors
/// in order; only a file with the spec's MD5 is stored (atomically).
fn download_missing(spec: &IdxSpec, dir: &Path, stems: &[&str]) -> Result<(), DataError> {
    for stem in stems {
        let file = format!("{stem}.gz");
        let expected = spec
            .md5
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, sum)| *sum);
        let Some(expected) = expected else {
            // IDX_FILES and every spec's md5 list agree (a unit test checks it).
            unreachable!("{file} has no checksum in the {} spec", spec.title);
        };
        let dest = dir.join(&file);
        let urls: Vec<String> = spec.mirrors.iter().map(|m| format!("{m}{file}")).collect();
        download::try_mirrors(&urls, MAX_DOWNLOAD_BYTES, |bytes| {
            download::verify_and_store(bytes, expected, &dest)
        })
        .map_err(|attempts| DataError::Download {
            dataset: spec.title,
            file: file.clone(),
            dir: dir.to_path_buf(),
            attempts,
            fix: spec.download_hint(dir),
        })?;
    }
    Ok(())
}

/// The path of `stem.gz` in `dir` if it exists, else of `stem` if it exists.
fn locate(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|path| path.is_file())
}

fn load_split(
    spec: &IdxSpec,
    images_path: PathBuf,
    labels_path: PathBuf,
) -> Result<Split, DataError> {
    let images = parse_images(read_maybe_gz(spec, &images_path)?, spec, &images_path)?;
    let labels = parse_labels(read_maybe_gz(spec, &labels_path)?, spec, &labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            dataset: spec.title,
            images: images_path,
            labels: labels_path,
            n_images: images.count,
            n_labels: labels.len(),
        });
    }
    Ok(Split {
        images: images.pixels,
        labels,
        channels: 1,
        rows: images.rows,
        cols: images.cols,
        classes: IDX_CLASSES,
    })
}

/// The file's bytes, decompressed if its name ends in `.gz`.
fn read_maybe_gz(spec: &IdxSpec, path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = fs::read(path).map_err(|err| DataError::Read {
        dataset: spec.title,
        path: path.to_path_buf(),
        err,
        fix: spec.refetch_hint(),
    })?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        gunzip(&bytes).map_err(|err| DataError::Gzip {
            dataset: spec.title,
            path: path.to_path_buf(),
            err,
            fix: spec.refetch_hint(),
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

/// A format error about `path`, ending with the spec's refetch hint.
fn format_error(spec: &IdxSpec, path: &Path, problem: String) -> DataError {
    DataError::Format {
        dataset: spec.title,
        path: path.to_path_buf(),
        problem,
        fix: spec.refetch_hint(),
    }
}

/// Parses an IDX3 `u8` images file of 28x28 images; `path` only names the file in errors.
fn parse_images(mut bytes: Vec<u8>, spec: &IdxSpec, path: &Path) -> Result<IdxImages, DataError> {
    let bad = |problem: String| format_error(spec, path, problem);
    let header = read_header::<4>(&bytes, IMAGES_MAGIC, "images").map_err(bad)?;
    let [_, count, rows, cols] = header.map(|v| v as usize);
    if (rows, cols) != (IDX_ROWS, IDX_COLS) {
        return Err(bad(format!(
            "images are {rows}x{cols} but {} images are {IDX_ROWS}x{IDX_COLS}",
            spec.title
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
fn parse_labels(mut bytes: Vec<u8>, spec: &IdxSpec, path: &Path) -> Result<Vec<u8>, DataError> {
    let bad = |problem: String| format_error(spec, path, problem);
    let [_, count] = read_header::<2>(&bytes, LABELS_MAGIC, "labels")
        .map_err(bad)?
        .map(|v| v as usize);
    check_payload(
        bytes.len() - 8,
        count,
        &format!("{count} labels ({count} bytes)"),
        8,
    )
    .map_err(bad)?;
    bytes.drain(..8);
    if let Some(i) = bytes
        .iter()
        .position(|&label| usize::from(label) >= IDX_CLASSES)
    {
        return Err(bad(format!(
            "label {} at index {i} is outside 0..=9",
            bytes[i]
        )));
    }
    Ok(bytes)
}

/// The `N` big-endian `u32`s opening an IDX file, the first being the checked magic number.
fn read_header<const N: usize>(bytes: &[u8], magic: u32, what: &str) -> Result<[u32; N], String> {
    if bytes.len() < 4 * N {
        return Err(format!(
            "{} bytes is too short for the {}-byte header of an IDX {what} file",
            bytes.len(),
            4 * N
        ));
    }
    let mut header = [0u32; N];
    for (value, chunk) in header.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    if header[0] != magic {
        let gzipped = if bytes.starts_with(&[0x1f, 0x8b]) {
            " (it looks gzipped: name it with a .gz extension)"
        } else {
            ""
        };
        return Err(format!(
            "wrong magic number 0x{:08x}, an IDX {what} file starts with 0x{magic:08x}{gzipped}",
            header[0]
        ));
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

    const SPEC: IdxSpec = crate::data::mnist::MNIST;

    fn parse_images(bytes: Vec<u8>, path: &Path) -> Result<IdxImages, DataError> {
        super::parse_images(bytes, &SPEC, path)
    }

    fn parse_labels(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
        super::parse_labels(bytes, &SPEC, path)
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
        assert_eq!(read_maybe_gz(&SPEC, &dir.path().join("a")).unwrap(), raw);
        assert_eq!(read_maybe_gz(&SPEC, &dir.path().join("b.gz")).unwrap(), raw);
        // Both forms present: the .gz one wins.
        fs::write(dir.path().join("b"), b"ignored").unwrap();
        assert_eq!(locate(dir.path(), "b").unwrap(), dir.path().join("b.gz"));
        assert_eq!(locate(dir.path(), "a").unwrap(), dir.path().join("a"));
        assert!(locate(dir.path(), "c").is_none());
    }
}
