//! The peak resident memory of a job, from Linux's `/proc/self/status`.
//!
//! `VmHWM` (the resident high-water mark) is per process and only grows, and a process may run
//! several jobs at once (`runner.workers` threads). So a job resets the mark at its start, by
//! writing `5` to `/proc/self/clear_refs`, only when no other job of the process is running, and
//! counts the jobs whose runs overlap its own: with one, the peak read at its end covers its own
//! lifetime (still the whole process's memory: the dataset and libtorch count in it); with more,
//! the others' memory is in it too. Reads nothing but `/proc`; elsewhere every number is `None`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::results::Cost;

/// Jobs of this process running now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Jobs of this process started so far.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// A job's memory watch, from [`start`](Self::start) to [`finish`](Self::finish); dropping it
/// (a failed job) takes the job out of the running count too.
pub struct MemoryWatch {
    running_at_start: usize,
    started_before: u64,
    peak_since_start: bool,
    start_rss_bytes: Option<u64>,
}

impl MemoryWatch {
    /// Registers a job as running; resets the peak when it is the only one.
    pub fn start() -> MemoryWatch {
        let running_at_start = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        let started_before = STARTED.fetch_add(1, Ordering::SeqCst) + 1;
        let peak_since_start = running_at_start == 1 && reset_peak();
        MemoryWatch {
            running_at_start,
            started_before,
            peak_since_start,
            start_rss_bytes: status_bytes("VmRSS"),
        }
    }

    /// The memory half of the job's [`Cost`] (`state_bytes` left `None`).
    pub fn finish(self) -> Cost {
        let started_during = STARTED.load(Ordering::SeqCst) - self.started_before;
        Cost {
            peak_rss_bytes: status_bytes("VmHWM"),
            start_rss_bytes: self.start_rss_bytes,
            // Jobs started during this one find it running, so they never reset the mark.
            peak_since_start: self.peak_since_start,
            jobs_overlapping: self.running_at_start + started_during as usize,
            state_bytes: None,
        }
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resets the process's `VmHWM` to its current resident size; false where it cannot.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `kB` line of `/proc/self/status` (`VmHWM`, `VmRSS`), in bytes.
pub fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kb(&status, key)
}

fn parse_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_to_bytes() {
        let status = "Name:\tx\nVmHWM:\t  218208 kB\nVmRSS:\t   13572 kB\n";
        assert_eq!(parse_kb(status, "VmHWM"), Some(218_208 * 1024));
        assert_eq!(parse_kb(status, "VmRSS"), Some(13_572 * 1024));
        assert_eq!(parse_kb(status, "VmPeak"), None);
    }

    #[test]
    fn a_job_alone_resets_the_peak_and_counts_itself() {
        let cost = MemoryWatch::start().finish();
        if cfg!(target_os = "linux") {
            let peak = cost.peak_rss_bytes.expect("VmHWM on Linux");
            assert!(peak >= cost.start_rss_bytes.unwrap() / 2, "{cost:?}");
        }
        // Other unit tests of this binary may run a job at the same time.
        assert!(cost.jobs_overlapping >= 1);
    }
}
