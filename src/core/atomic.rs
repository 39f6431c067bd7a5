//! Atomic writes: a reader sees the old file or the new one, never a half-written one.
//!
//! A file is written to `.<name>.<host>.<pid>.tmp` beside it, synced and renamed. A process
//! killed in between leaves the temp file; [`is_stale_temp`] recognises the ones whose writer is
//! gone, so a rerun removes them without touching the temp files of other processes writing to
//! the same folder (Slurm shards on other machines, or on this one).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;

fn host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().replace(['.', '/'], "_"))
        .unwrap_or_else(|_| "host".into())
}

/// The temp file `path` is written through, in the same folder (so the rename is atomic).
pub fn temp_path(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    Ok(dir.join(format!(".{name}.{}.{}.tmp", host(), std::process::id())))
}

/// Whether the file named `name` is a temp file of [`temp_path`] whose writer, a process on
/// this host, is no longer running.
pub fn is_stale_temp(name: &str) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = stem.rsplitn(3, '.');
    let (Some(pid), Some(host_name)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host_name == host() && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Writes `bytes` to `path` through a temp file in the same folder, flushed and then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = fs::File::create(tmp)?;
        file.write_all(bytes)?;
        Ok(())
    })
}

/// Writes `path` atomically with `write`, which fills the temp file it is given (for writers
/// that take a path, like safetensors'); the file is then synced and renamed over `path`, or
/// removed if anything failed.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    write_through(path, temp_path(path)?, write)
}

/// [`write_atomic_with`] for writers that choose the format by the file's extension (plotters'
/// bitmap backend): the temp file ends in `path`'s extension too (`.x.png.<host>.<pid>.tmp.png`).
pub fn write_atomic_keeping_extension(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp = temp_path(path)?.into_os_string();
    if let Some(ext) = path.extension() {
        tmp.push(".");
        tmp.push(ext);
    }
    write_through(path, PathBuf::from(tmp), write)
}

fn write_through(
    path: &Path,
    tmp: PathBuf,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = tmp.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))?;
    let result = (|| -> anyhow::Result<()> {
        write(&tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| {
        format!(
            "writing {} (nothing half-written is left; is the disk full or the folder read-only?)",
            path.display()
        )
    })
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temp_files_of_finished_processes_on_this_host_are_stale() {
        let ours = temp_path(Path::new("/x/job.json")).unwrap();
        let ours = ours.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!is_stale_temp(&ours), "this process is running");
        // A pid above the kernel's limit (2^22) is never running.
        let gone = format!(".job.json.{}.4999999.tmp", host());
        assert!(is_stale_temp(&gone));
        assert!(!is_stale_temp(".job.json.some-other-machine.4999999.tmp"));
        assert!(!is_stale_temp("job.json"));
        assert!(!is_stale_temp(".job.json.tmp"));
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        std::fs::write(&path, b"old").unwrap();
        for keep_extension in [false, true] {
            let failing = |tmp: &Path| -> anyhow::Result<()> {
                if keep_extension {
                    assert_eq!(tmp.extension().unwrap(), "png", "{}", tmp.display());
                }
                fs::write(tmp, b"half")?;
                anyhow::bail!("disk full")
            };
            let err = if keep_extension {
                write_atomic_keeping_extension(&path, failing)
            } else {
                write_atomic_with(&path, failing)
            }
            .unwrap_err();
            assert!(
                format!("{err:#}").contains(&path.display().to_string()),
                "{err:#}"
            );
            assert_eq!(fs::read(&path).unwrap(), b"old");
            let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
            assert_eq!(left.len(), 1, "a temp file was left: {left:?}");
        }
    }
}
