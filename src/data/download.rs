//! Fetching missing MNIST files from the mirrors torchvision uses.
//!
//! In: a folder and the stems of the missing files (names from [`super::mnist::MNIST_FILES`]).
//! Out: each file's `.gz` in that folder, byte for byte the one torchvision knows, or a
//! [`DataError`] naming the file, every mirror tried with its error, and where to put the file by
//! hand.
//!
//! Mirrors are tried in [`MIRRORS`] order with connect and read timeouts. A download counts only
//! if its MD5 matches torchvision's value; it is then written atomically by
//! [`crate::results::write_atomic`] (temp file in the same folder, fsync, rename), so the folder
//! never holds a partial file under a real name. This is the only part of clbench that touches
//! the network, and only when the caller allows it.

use std::{io::Read, path::Path, time::Duration};

use md5::{Digest, Md5};

use super::DataError;
use crate::results::write_atomic;

/// Base URLs tried in order; each file is fetched as `<mirror><stem>.gz`.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// torchvision's MD5 of each `.gz` file.
pub const MD5_SUMS: [(&str, &str); 4] = [
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
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for any single read; a slow but moving download is not cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest file is under 10 MiB; a longer body is not MNIST.
const MAX_BYTES: u64 = 64 << 20;

/// Downloads `<stem>.gz` into `dir` (created if needed) for each of `stems`.
pub fn download_missing(dir: &Path, stems: &[&str]) -> Result<(), DataError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    'files: for stem in stems {
        let file = format!("{stem}.gz");
        let expected = MD5_SUMS
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, sum)| *sum)
            .unwrap_or_else(|| panic!("{file} is not an MNIST file"));
        let dest = dir.join(&file);
        let mut attempts = Vec::new();
        for mirror in MIRRORS {
            let url = format!("{mirror}{file}");
            eprintln!("clbench: downloading {url}");
            let stored = fetch(&agent, &url)
                .and_then(|bytes| verify_and_store(&bytes, expected, &dest).map_err(stored_err));
            match stored {
                Ok(()) => continue 'files,
                // ureq's errors already start with the URL; ours do not.
                Err(err) if err.contains(&url) => attempts.push(err),
                Err(err) => attempts.push(format!("{url}: {err}")),
            }
        }
        return Err(DataError::Download {
            file,
            dir: dir.to_path_buf(),
            attempts,
        });
    }
    Ok(())
}

/// A checksum mismatch says what was wrong with this mirror's copy; other store errors are kept
/// whole.
fn stored_err(err: DataError) -> String {
    match err {
        DataError::Checksum {
            expected, actual, ..
        } => {
            format!("MD5 {actual} differs from the expected {expected}")
        }
        other => other.to_string(),
    }
}

/// The body of `url`, or why it could not be had.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let response = agent.get(url).call().map_err(|err| err.to_string())?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("reading the body: {err}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "body larger than {MAX_BYTES} bytes, not an MNIST file"
        ));
    }
    Ok(bytes)
}

/// Lowercase hex MD5 of `bytes`.
fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `dest` atomically if their MD5 is `expected_md5` (lowercase hex); otherwise
/// writes nothing and returns [`DataError::Checksum`].
pub(crate) fn verify_and_store(
    bytes: &[u8],
    expected_md5: &str,
    dest: &Path,
) -> Result<(), DataError> {
    let actual = md5_hex(bytes);
    if actual != expected_md5 {
        return Err(DataError::Checksum {
            path: dest.to_path_buf(),
            expected: expected_md5.to_string(),
            actual,
        });
    }
    write_atomic(dest, bytes).map_err(|err| DataError::Write {
        path: dest.to_path_buf(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn md5_matches_known_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn stores_only_verified_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.gz");
        let err = verify_and_store(b"abc", "00000000000000000000000000000000", &dest).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("x.gz") && msg.contains("900150983cd24fb0d6963f7d28e17f72"),
            "{msg}"
        );
        assert!(!dest.exists());

        verify_and_store(b"abc", "900150983cd24fb0d6963f7d28e17f72", &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"abc");
        // Overwrites in place and leaves no temp file behind.
        verify_and_store(b"", "d41d8cd98f00b204e9800998ecf8427e", &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.gz"]);
    }

    #[test]
    fn failed_write_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("blocker"),
            b"a file where a folder should be",
        )
        .unwrap();
        let dest = dir.path().join("blocker").join("x.gz");
        let err = verify_and_store(b"abc", "900150983cd24fb0d6963f7d28e17f72", &dest).unwrap_err();
        assert!(matches!(err, DataError::Write { .. }));
        let msg = err.to_string();
        assert!(msg.contains("blocker") && msg.contains("writable"), "{msg}");
    }

    #[test]
    fn every_mnist_file_has_a_checksum() {
        for stem in super::super::mnist::MNIST_FILES {
            assert!(MD5_SUMS
                .iter()
                .any(|(name, _)| *name == format!("{stem}.gz")));
        }
    }
}
