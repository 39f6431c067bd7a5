//! Fetching dataset files over HTTP: mirrors tried in order, bodies checked before use.
//!
//! In: the URLs of one file (mirrors, in order), a size limit and what to do with a body
//! (`accept`: check its MD5 and store it, or unpack it). Out: `Ok` once one mirror's body was
//! accepted, or every URL tried with its error, for the caller's [`DataError`] (which names the
//! file and where to put it by hand).
//!
//! Mirrors are tried with connect and read timeouts. A download counts only if its MD5 matches
//! the published value ([`verify`]); it is then written atomically by
//! [`crate::results::write_atomic`] (temp file in the same folder, fsync, rename), so a folder
//! never holds a partial file under a real name. This is the only part of clbench that touches
//! the network, and only when the caller allows it.

use std::{io::Read, path::Path, time::Duration};

use md5::{Digest, Md5};

use super::DataError;
use crate::results::write_atomic;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for any single read; a slow but moving download is not cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries `urls` in order until `accept` takes one's body (of at most `max_bytes`); returns
/// each failed attempt's error, URL first, if none did.
pub(crate) fn try_mirrors(
    urls: &[String],
    max_bytes: u64,
    mut accept: impl FnMut(&[u8]) -> Result<(), DataError>,
) -> Result<(), Vec<String>> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    let mut attempts = Vec::new();
    for url in urls {
        eprintln!("clbench: downloading {url}");
        let stored =
            fetch(&agent, url, max_bytes).and_then(|bytes| accept(&bytes).map_err(stored_err));
        match stored {
            Ok(()) => return Ok(()),
            // ureq's errors already start with the URL; ours do not.
            Err(err) if err.contains(url.as_str()) => attempts.push(err),
            Err(err) => attempts.push(format!("{url}: {err}")),
        }
    }
    Err(attempts)
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
fn fetch(agent: &ureq::Agent, url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    let response = agent.get(url).call().map_err(|err| err.to_string())?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("reading the body: {err}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "body larger than {max_bytes} bytes, not the expected file"
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

/// Checks that the MD5 of `bytes` is `expected_md5` (lowercase hex); `path` names the download
/// in the [`DataError::Checksum`] otherwise.
pub(crate) fn verify(bytes: &[u8], expected_md5: &str, path: &Path) -> Result<(), DataError> {
    let actual = md5_hex(bytes);
    if actual != expected_md5 {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected_md5.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Writes `bytes` to `dest` atomically if their MD5 is `expected_md5` (lowercase hex); otherwise
/// writes nothing and returns [`DataError::Checksum`].
pub(crate) fn verify_and_store(
    bytes: &[u8],
    expected_md5: &str,
    dest: &Path,
) -> Result<(), DataError> {
    verify(bytes, expected_md5, dest)?;
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
    fn every_idx_file_has_a_checksum() {
        for spec in [super::super::mnist::MNIST] {
            for stem in super::super::idx::IDX_FILES {
                assert!(spec
                    .md5
                    .iter()
                    .any(|(name, _)| *name == format!("{stem}.gz")));
            }
        }
    }
}
