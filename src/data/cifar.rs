//! Datasets in the binary format of Krizhevsky's CIFAR distribution: CIFAR-10 and CIFAR-100.
//!
//! In: a [`CifarSpec`] (which dataset: its files, label bytes, environment variable, archive and
//! checksum) and a folder holding its record files. Out: a [`Dataset`] of 32x32 RGB images in
//! CHW order, or a [`DataError`] naming the dataset, the file at fault and what to do.
//!
//! A file is a sequence of records, each `label_bytes` label bytes then 3072 pixel bytes: 1024
//! red, 1024 green, 1024 blue, each row-major, which is already the CHW order of a [`Split`], so
//! pixels are copied byte for byte. CIFAR-10 has one label byte (0..=9); CIFAR-100 two, coarse
//! (0..=19) then fine (0..=99), and the spec's caller picks which becomes the label. The official
//! files hold 10000 (CIFAR-10) or 50000/10000 (CIFAR-100) records, but any whole number of
//! records is accepted; a partial record (a truncated file, or records of another length), an
//! empty file or a label out of range is an error. Missing files are fetched, when the caller
//! allows it, by downloading the official `.tar.gz` (MD5-checked) and unpacking the needed files
//! into the folder, each written atomically; the archive itself is not kept.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;

use super::{download, DataError, Dataset, Split};

/// Pixel bytes per record: 3 channels of 32x32.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;
/// The official archives are about 170 MB (CIFAR-10) and 160 MB (CIFAR-100).
const MAX_ARCHIVE_BYTES: u64 = 256 << 20;
/// No file of the archives is larger than CIFAR-100's `train.bin` (about 154 MB).
const MAX_MEMBER_BYTES: u64 = 200 << 20;

/// One dataset in the CIFAR binary format.
#[derive(Debug, Clone, Copy)]
pub struct CifarSpec {
    /// The registered name, given to [`Dataset::name`]: `"cifar10"`.
    pub name: &'static str,
    /// The name in messages: `"CIFAR-10"`.
    pub title: &'static str,
    /// The environment variable naming its folder: `"CLBENCH_CIFAR10"`.
    pub env: &'static str,
    /// The folder the archive unpacks to, e.g. `"cifar-10-batches-bin"`.
    pub folder: &'static str,
    /// The files whose records, in this order, make the training split.
    pub train_files: &'static [&'static str],
    /// The files whose records, in this order, make the test split.
    pub test_files: &'static [&'static str],
    /// The label bytes opening each record, with each one's name in messages and its number of
    /// classes: `[("label", 10)]`, or `[("coarse label", 20), ("fine label", 100)]`.
    pub labels: &'static [(&'static str, usize)],
    /// The official archive.
    pub url: &'static str,
    /// Its MD5, lowercase hex.
    pub md5: &'static str,
}

impl CifarSpec {
    /// Bytes per record: the label bytes and the pixels.
    pub fn record_len(&self) -> usize {
        self.labels.len() + CIFAR_PIXELS
    }

    fn files(&self) -> impl Iterator<Item = &'static str> {
        self.train_files
            .iter()
            .chain(self.test_files.iter())
            .copied()
    }

    fn archive_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }

    fn refetch_hint(&self) -> String {
        format!(
            "re-download it or delete it so clbench fetches it again (or point {} / dataset.dir \
             at a folder holding the {} binary files)",
            self.env, self.title
        )
    }

    fn missing_hint(&self) -> String {
        format!(
            "put {} there (the files of {}/ in {}), set {} or dataset.dir to a folder that holds \
             them, or let clbench download and unpack the archive (dataset.download: true, no \
             --offline)",
            self.files().collect::<Vec<_>>().join(", "),
            self.folder,
            self.url,
            self.env
        )
    }

    fn download_hint(&self, dir: &Path) -> String {
        format!(
            "download {} by hand, unpack it and put the files of its {}/ folder in {} (or set {} \
             or dataset.dir to a folder that holds them)",
            self.url,
            self.folder,
            dir.display(),
            self.env
        )
    }
}

/// Whether `dir` holds every file of `spec`.
pub fn holds_files(spec: &CifarSpec, dir: &Path) -> bool {
    spec.files().all(|f| dir.join(f).is_file())
}

/// Loads `spec` from `dir`, with label byte `label` (an index into `spec.labels`) as the label;
/// first downloads and unpacks the archive into `dir` if files are missing and
/// `allow_download`.
pub fn load_cifar(
    spec: &CifarSpec,
    dir: &Path,
    label: usize,
    allow_download: bool,
) -> Result<Dataset, DataError> {
    let missing: Vec<&str> = spec.files().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        if !allow_download {
            return Err(DataError::Missing {
                dataset: spec.title,
                dir: dir.to_path_buf(),
                files: missing.iter().map(|f| f.to_string()).collect(),
                fix: spec.missing_hint(),
            });
        }
        download_and_unpack(spec, dir, &missing)?;
    }
    let split = |files: &[&str]| -> Result<Split, DataError> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for file in files {
            let path = dir.join(file);
            let bytes = fs::read(&path).map_err(|err| DataError::Read {
                dataset: spec.title,
                path: path.clone(),
                err,
                fix: spec.refetch_hint(),
            })?;
            parse_records(spec, &bytes, label, &path, &mut images, &mut labels)?;
        }
        Ok(Split {
            images,
            labels,
            channels: 3,
            rows: 32,
            cols: 32,
            classes: spec.labels[label].1,
        })
    };
    Ok(Dataset {
        name: spec.name.to_string(),
        train: split(spec.train_files)?,
        test: split(spec.test_files)?,
        source: dir.display().to_string(),
    })
}

/// Appends the records of one file (`bytes`, read from `path`) to `images` and `labels`, taking
/// label byte `label` as the label; every label byte is checked against its range.
pub fn parse_records(
    spec: &CifarSpec,
    bytes: &[u8],
    label: usize,
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    let bad = |problem: String| DataError::Format {
        dataset: spec.title,
        path: path.to_path_buf(),
        problem,
        fix: spec.refetch_hint(),
    };
    let record = spec.record_len();
    let label_bytes = spec.labels.len();
    if bytes.is_empty() {
        return Err(bad("the file is empty, it holds no records".into()));
    }
    if !bytes.len().is_multiple_of(record) {
        let other = if label_bytes == 1 {
            (CIFAR_PIXELS + 2, "CIFAR-100 (2 label bytes)")
        } else {
            (CIFAR_PIXELS + 1, "CIFAR-10 (1 label byte)")
        };
        let looks_like = if bytes.len().is_multiple_of(other.0) {
            format!(
                "; its length is a whole number of {}-byte records, as in {}: is it that \
                 dataset's file?",
                other.0, other.1
            )
        } else {
            String::new()
        };
        return Err(bad(format!(
            "truncated or not a {} file: its {} bytes are {} whole records of {record} bytes \
             ({label_bytes} label byte{} + {CIFAR_PIXELS} pixel bytes) and {} bytes over{looks_like}",
            spec.title,
            bytes.len(),
            bytes.len() / record,
            if label_bytes == 1 { "" } else { "s" },
            bytes.len() % record
        )));
    }
    let count = bytes.len() / record;
    images.reserve(count * CIFAR_PIXELS);
    labels.reserve(count);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (&value, &(name, classes)) in rec.iter().zip(spec.labels) {
            if usize::from(value) >= classes {
                return Err(bad(format!(
                    "{name} {value} of record {i} (byte offset {}) is outside 0..={}",
                    i * record,
                    classes - 1
                )));
            }
        }
        labels.push(rec[label]);
        images.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}

/// Downloads the archive of `spec`, checks its MD5 and unpacks the files `wanted` into `dir`.
fn download_and_unpack(spec: &CifarSpec, dir: &Path, wanted: &[&str]) -> Result<(), DataError> {
    let archive = dir.join(spec.archive_name());
    download::try_mirrors(&[spec.url.to_string()], MAX_ARCHIVE_BYTES, |bytes| {
        download::verify(bytes, spec.md5, &archive)?;
        unpack(spec, bytes, dir, wanted)
    })
    .map_err(|attempts| DataError::Download {
        dataset: spec.title,
        file: spec.archive_name().to_string(),
        dir: dir.to_path_buf(),
        attempts,
        fix: spec.download_hint(dir),
    })
}

/// Writes each file of `wanted` found in the gzipped tar `archive` (under any folder, matched
/// by file name) into `dir`, atomically; a wanted file the archive lacks is an error. Names in
/// the archive are never used as paths, so an entry cannot write outside `dir`.
pub(crate) fn unpack(
    spec: &CifarSpec,
    archive: &[u8],
    dir: &Path,
    wanted: &[&str],
) -> Result<(), DataError> {
    let bad = |problem: String| DataError::Archive {
        dataset: spec.title,
        archive: spec.archive_name().to_string(),
        problem,
        fix: spec.download_hint(dir),
    };
    let mut found: Vec<&str> = Vec::new();
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a gzipped tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("damaged archive: {e}")))?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let Some(&file) = name.and_then(|n| wanted.iter().find(|w| **w == n)) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .take(MAX_MEMBER_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("damaged archive member {file}: {e}")))?;
        let dest: PathBuf = dir.join(file);
        crate::results::write_atomic(&dest, &bytes)
            .map_err(|err| DataError::Write { path: dest, err })?;
        found.push(file);
    }
    let lacking: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !found.contains(w))
        .collect();
    if !lacking.is_empty() {
        return Err(bad(format!("the archive lacks {}", lacking.join(", "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SPEC: CifarSpec = CifarSpec {
        name: "cifar10",
        title: "CIFAR-10",
        env: "CLBENCH_CIFAR10",
        folder: "cifar-10-batches-bin",
        train_files: &["a.bin"],
        test_files: &["b.bin"],
        labels: &[("label", 10)],
        url: "https://example.invalid/cifar-10-binary.tar.gz",
        md5: "",
    };

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *bytes).unwrap();
        }
        let mut gz = builder.into_inner().unwrap();
        gz.flush().unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn unpacks_wanted_members_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_gz(&[
            ("cifar-10-batches-bin/a.bin", b"AAA"),
            ("cifar-10-batches-bin/readme.html", b"x"),
            ("cifar-10-batches-bin/b.bin", b"BB"),
        ]);
        unpack(&SPEC, &archive, dir.path(), &["a.bin", "b.bin"]).unwrap();
        assert_eq!(fs::read(dir.path().join("a.bin")).unwrap(), b"AAA");
        assert_eq!(fs::read(dir.path().join("b.bin")).unwrap(), b"BB");
        assert!(!dir.path().join("readme.html").exists());

        let err = unpack(&SPEC, &archive, dir.path(), &["a.bin", "c.bin"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cifar-10-binary.tar.gz") && msg.contains("lacks c.bin"),
            "{msg}"
        );
        let err = unpack(&SPEC, b"not an archive", dir.path(), &["a.bin"]).unwrap_err();
        assert!(matches!(err, DataError::Archive { .. }), "{err}");
    }
}
