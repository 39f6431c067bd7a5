//! Claims: several `clbench run` processes (on one machine or on several over a shared folder)
//! share one results folder without running a job twice.
//!
//! Contract:
//! - Before a job starts, its runner *claims* it: `<experiment>/claims/<job id>.claim` is created
//!   without overwriting (a fully written temp file hard-linked to that name, which fails if the
//!   name exists; `create_new` where the file system has no hard links). The file holds the
//!   claimant's [`Owner`] as JSON: host, boot id, process id and that process's start time, the
//!   claim's start time and its lease. Its modification time is the heartbeat: the owner touches
//!   it every lease/3 while the job runs.
//! - A claim is *live* while its owner runs: on the same host (same host name and boot id) while
//!   the process with that id exists, is not a zombie and started at the recorded time (so a
//!   reused pid does not keep a claim alive); elsewhere, or where `/proc` cannot tell, while its
//!   heartbeat is younger than its lease. A claim that cannot be read (truncated, hand-edited)
//!   has no owner to ask and is live until its modification time plus the lease. A live claim
//!   makes [`Claims::acquire`] answer [`Acquired::Busy`]; the caller skips the job.
//! - A claim that is not live is *stale* and is taken over, race-free: the taker first makes the
//!   job's takeover lock (`<id>.takeover`, created like a claim; one left by a dead process is
//!   stale like a claim and removed), then, only if the claim is still the very file it judged
//!   stale, renames it to a name unique to itself and removes it, drops the lock, and claims the
//!   job as above, where it can still lose to a third process. Two processes taking over one
//!   stale claim never both win.
//! - [`Claim`] is the held claim; dropping it (the job's result written, or the job failed or
//!   panicked) stops its heartbeat and removes the file if it is still the one this process
//!   created, so a failed job is retried by a later run and a claim taken over from us is left
//!   to its new owner.
//!
//! The claim says nothing about a job's result: a caller that wins a claim must check again
//! that the job has no result (another process may have written it and released its claim just
//! before), and resumes from the job's checkpoint as always. Nothing here trains, and nothing
//! read from a claim file can panic.
//!
//! The lease is [`DEFAULT_LEASE`], or `$CLBENCH_CLAIM_LEASE_S` seconds; it only matters for
//! claims whose owner cannot be asked (another host), and must exceed the longest stall of a
//! running process (a heartbeat is at most lease/3 late in a healthy one). Clocks of hosts that
//! share a folder are assumed to agree to well within a lease.

use std::{
    fmt,
    fs::{self, File, Metadata, OpenOptions},
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How long a claim of a process that cannot be asked stays live without a heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(180);

/// The environment variable that overrides [`DEFAULT_LEASE`], in whole seconds.
pub const LEASE_VARIABLE: &str = "CLBENCH_CLAIM_LEASE_S";

/// The folder of an experiment's claims.
pub fn dir(out_dir: &Path) -> PathBuf {
    out_dir.join("claims")
}

/// Where the claim of job `id` of the experiment in `out_dir` lives.
pub fn path(out_dir: &Path, id: &str) -> PathBuf {
    dir(out_dir).join(format!("{id}.claim"))
}

/// Who holds a claim: what its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`, where there is one: a host name alone may be shared by
    /// containers on several machines, and a pid of an earlier boot means nothing.
    pub boot_id: Option<String>,
    pub pid: u32,
    /// The process's start time in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub pid_start: Option<u64>,
    /// When the claim was made, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// The lease, in seconds, measured from the file's modification time (the heartbeat).
    pub lease_s: u64,
}

impl Owner {
    /// This process, with `lease`.
    pub fn this_process(lease: Duration) -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "host".into()),
            boot_id: boot_id(),
            pid,
            pid_start: process_start(pid),
            started_unix: unix_now(),
            lease_s: lease.as_secs().max(1),
        }
    }

    /// Whether `self` runs on the same machine, in the same boot, as `other`, so that its pid can
    /// be looked up in this `/proc`.
    fn same_machine(&self, other: &Owner) -> bool {
        self.host == other.host && self.boot_id.is_some() && self.boot_id == other.boot_id
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ago = unix_now().saturating_sub(self.started_unix);
        write!(
            f,
            "process {} on {}, claimed {ago} s ago",
            self.pid, self.host
        )
    }
}

/// A live claim of someone else: its owner if the file says, and how old its heartbeat is.
#[derive(Debug, Clone)]
pub struct Holder {
    pub owner: Option<Owner>,
    pub heartbeat_age: Duration,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "{owner}"),
            None => write!(
                f,
                "an unreadable claim touched {} s ago",
                self.heartbeat_age.as_secs()
            ),
        }
    }
}

/// What [`Claims::acquire`] got.
#[derive(Debug)]
pub enum Acquired {
    /// The job is ours until the claim is dropped.
    Mine(Claim),
    /// Another process holds a live claim on the job.
    Busy(Holder),
}

/// The claims of one experiment folder, as this process makes and judges them.
#[derive(Debug, Clone)]
pub struct Claims {
    dir: PathBuf,
    lease: Duration,
    me: Owner,
}

impl Claims {
    /// The claims of the experiment in `out_dir`, with the lease of `$CLBENCH_CLAIM_LEASE_S` or
    /// [`DEFAULT_LEASE`].
    pub fn new(out_dir: &Path) -> Result<Claims> {
        let lease = match std::env::var(LEASE_VARIABLE) {
            Err(_) => DEFAULT_LEASE,
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => anyhow::bail!(
                    "${LEASE_VARIABLE} is `{text}`; give the claims' lease in whole seconds (at least 1), or unset it for {} s",
                    DEFAULT_LEASE.as_secs()
                ),
            },
        };
        Ok(Claims::with_lease(out_dir, lease))
    }

    /// The claims of the experiment in `out_dir` with `lease` (at least a second).
    pub fn with_lease(out_dir: &Path, lease: Duration) -> Claims {
        let lease = lease.max(Duration::from_secs(1));
        Claims {
            dir: dir(out_dir),
            lease,
            me: Owner::this_process(lease),
        }
    }

    /// The folder the claims live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Claims job `id`: [`Acquired::Mine`] if no live claim is there (a stale one is taken
    /// over), [`Acquired::Busy`] with its holder if one is. An error only when the folder cannot
    /// be written.
    pub fn acquire(&self, id: &str) -> Result<Acquired> {
        let path = self.dir.join(format!("{id}.claim"));
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // Each round wins, finds a live claim, or removes a stale claim (or waits for whoever is
        // removing it); a few rounds settle any race short of a stream of processes dying.
        let mut last = None;
        for _ in 0..50 {
            if let Some(claim) = self.create(id, &path)? {
                return Ok(Acquired::Mine(claim));
            }
            let Some(meta) = metadata(&path)? else {
                continue; // released (or taken over) in between: try again
            };
            let holder = self.holder_of(&path, &meta);
            if self.is_live(&holder) {
                return Ok(Acquired::Busy(holder));
            }
            self.take_over(id, &path, &meta)?;
            last = Some(holder);
        }
        // Claims kept appearing and going stale: leave the job to whoever holds it now.
        Ok(Acquired::Busy(last.unwrap_or(Holder {
            owner: None,
            heartbeat_age: Duration::ZERO,
        })))
    }

    /// The holder of a live claim on job `id`, if there is one (for `--dry-run` and the report).
    pub fn live_holder(&self, id: &str) -> Option<Holder> {
        let path = self.dir.join(format!("{id}.claim"));
        let meta = metadata(&path).ok()??;
        let holder = self.holder_of(&path, &meta);
        self.is_live(&holder).then_some(holder)
    }

    /// Whether a claim with `holder` is live (see the module's contract).
    fn is_live(&self, holder: &Holder) -> bool {
        let lease = holder
            .owner
            .as_ref()
            .map_or(self.lease, |o| Duration::from_secs(o.lease_s));
        if let Some(owner) = &holder.owner {
            if owner.same_machine(&self.me) {
                if let Some(alive) = process_alive(owner.pid, owner.pid_start) {
                    return alive;
                }
            }
        }
        holder.heartbeat_age < lease
    }

    fn holder_of(&self, path: &Path, meta: &Metadata) -> Holder {
        let heartbeat_age = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::ZERO);
        let owner = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Owner>(&bytes).ok());
        Holder {
            owner,
            heartbeat_age,
        }
    }

    /// Creates the claim file at `path` if no file is there: `Some` when this call made it.
    fn create(&self, id: &str, path: &Path) -> Result<Option<Claim>> {
        let me = Owner {
            started_unix: unix_now(),
            ..self.me.clone()
        };
        Ok(self
            .create_new(id, path, &me)?
            .map(|file| Claim::start(path.to_path_buf(), file, self.lease)))
    }

    /// Creates `path` holding `owner` if no file is there, never overwriting one: a fully written
    /// temp file hard-linked to `path`. `Some` (the file, open for writing) when this call made it.
    fn create_new(&self, id: &str, path: &Path, owner: &Owner) -> Result<Option<File>> {
        let mut bytes = serde_json::to_vec_pretty(owner)?;
        bytes.push(b'\n');
        let tmp = self.unique(id, "new");
        let written = (|| -> std::io::Result<File> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok(file)
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("writing {}", tmp.display()));
            }
        };
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Some(file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
            // A file system without hard links: create the name itself. A reader that sees it
            // half-written finds no owner, and a fresh file is live for a lease anyway.
            Err(_) => {
                let mut file = match OpenOptions::new().write(true).create_new(true).open(path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", path.display()))
                    }
                };
                file.write_all(&bytes)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(Some(file))
            }
        }
    }

    /// Removes the stale claim at `path` (the file `judged` describes), holding the job's
    /// takeover lock (`<id>.takeover`, made like a claim) so that no two processes move claims
    /// of one job at once: under it, the claim is removed only if it is still that file and
    /// still stale, renamed first to a name only this call uses. Returns without removing
    /// anything when another process holds the lock (after a short wait) or got there first; the
    /// caller looks again. A lock left by a process that died is removed like a stale claim.
    fn take_over(&self, id: &str, path: &Path, judged: &Metadata) -> Result<()> {
        let lock = self.dir.join(format!("{id}.takeover"));
        let Some(_file) = self.create_new(id, &lock, &self.me)? else {
            if let Some(meta) = metadata(&lock)? {
                if self.is_live(&self.holder_of(&lock, &meta)) {
                    std::thread::sleep(Duration::from_millis(10));
                } else {
                    let _ = fs::remove_file(&lock);
                }
            }
            return Ok(());
        };
        let result = (|| -> Result<()> {
            let Some(now) = metadata(path)? else {
                return Ok(()); // released or taken over in between
            };
            if identity(&now) != identity(judged) || self.is_live(&self.holder_of(path, &now)) {
                return Ok(());
            }
            let aside = self.unique(id, "stale");
            match fs::rename(path, &aside) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(e).with_context(|| format!("moving aside {}", path.display()));
                }
            }
            if metadata(&aside)?.is_some_and(|m| identity(&m) != identity(judged)) {
                // Only an owner whose lease ran out while it ran can have released the stale
                // claim and let a fresh one in since we looked: put that one back.
                let _ = fs::hard_link(&aside, path);
            }
            let _ = fs::remove_file(&aside);
            Ok(())
        })();
        let _ = fs::remove_file(&lock);
        result
    }

    /// A file name in the claims folder that no other process or call uses, in the temp-file
    /// form a later run on this host removes once this process is gone.
    fn unique(&self, id: &str, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = self.dir.join(format!("{id}.{what}-{n}"));
        crate::core::atomic::temp_path(&name).unwrap_or(name)
    }
}

/// A claim this process holds: its heartbeat runs until it is dropped, which removes it.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    file: Arc<File>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Claim {
    fn start(path: PathBuf, file: File, lease: Duration) -> Claim {
        let file = Arc::new(file);
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = (lease / 3).max(Duration::from_millis(10));
        let heartbeat = {
            let (file, path) = (file.clone(), path.clone());
            std::thread::Builder::new()
                .name("claim-heartbeat".into())
                .spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(beat) {
                        if !holds(&path, &file) {
                            eprintln!(
                                "clbench: the claim {} was taken over by another process \
                                 (this one missed its lease); both may finish the job, with \
                                 the same result",
                                path.display()
                            );
                            return;
                        }
                        // A failed touch is retried at the next beat.
                        let _ = file.set_modified(SystemTime::now());
                    }
                })
                .ok()
        };
        Claim {
            path,
            file,
            stop: Some(stop),
            heartbeat,
        }
    }

    /// Where the claim lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
        // Only our own file: a claim taken over from us belongs to its new owner.
        if holds(&self.path, &self.file) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether the file at `path` is `file` (the same inode).
fn holds(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => identity(&a) == identity(&b),
        _ => false,
    }
}

/// The metadata of `path`, `None` if it is not there.
fn metadata(path: &Path) -> Result<Option<Metadata>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(unix)]
fn identity(meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(meta: &Metadata) -> (u64, u64) {
    let created = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    (meta.len(), created)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn boot_id() -> Option<String> {
    let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

/// The state and start time (field 3 and 22) of process `pid` from `/proc/<pid>/stat`.
fn stat_fields(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), where `/proc` says.
pub fn process_start(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&text).map(|(_, start)| start)
}

/// Whether process `pid`, started at `start` if that is known, runs on this machine: `None`
/// where `/proc` cannot tell (no `/proc`).
pub fn process_alive(pid: u32, start: Option<u64>) -> Option<bool> {
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => match stat_fields(&text) {
            // A zombie has finished; a pid of another start time was reused.
            Some((state, now)) => {
                Some(!matches!(state, 'Z' | 'X') && start.is_none_or(|s| s == now))
            }
            None => Some(true),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Some(false),
        // There but unreadable (another user's, under a hardened /proc): running.
        Err(_) => Some(Path::new(&format!("/proc/{pid}")).exists()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    const LEASE: Duration = Duration::from_secs(60);

    fn write_claim(path: &Path, bytes: &[u8], age: Duration) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn owner_json(owner: &Owner) -> Vec<u8> {
        serde_json::to_vec(owner).unwrap()
    }

    fn mine(a: Acquired) -> Claim {
        match a {
            Acquired::Mine(c) => c,
            Acquired::Busy(h) => panic!("busy: {h}"),
        }
    }

    fn busy(a: Acquired) -> Holder {
        match a {
            Acquired::Busy(h) => h,
            Acquired::Mine(c) => panic!("won {}", c.path().display()),
        }
    }

    #[test]
    fn a_claim_is_made_skipped_while_held_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), LEASE);
        let claim = mine(claims.acquire("job-1").unwrap());
        assert_eq!(claim.path(), path(dir.path(), "job-1"));
        let owner: Owner = serde_json::from_slice(&fs::read(claim.path()).unwrap()).unwrap();
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.pid_start, process_start(std::process::id()));
        assert_eq!(owner.lease_s, 60);
        // Another process's view (another `Claims`) and this one's alike: the job is taken.
        let holder = busy(
            Claims::with_lease(dir.path(), LEASE)
                .acquire("job-1")
                .unwrap(),
        );
        assert_eq!(holder.owner.as_ref(), Some(&owner));
        assert!(
            holder.to_string().contains(&owner.pid.to_string()),
            "{holder}"
        );
        assert!(claims.live_holder("job-1").is_some());
        // Other jobs are free.
        let other = mine(claims.acquire("job-2").unwrap());
        drop(claim);
        assert!(!path(dir.path(), "job-1").exists());
        assert!(claims.live_holder("job-1").is_none());
        let again = mine(claims.acquire("job-1").unwrap());
        drop((again, other));
        let left: Vec<_> = fs::read_dir(claims.dir()).unwrap().flatten().collect();
        assert!(left.is_empty(), "files left: {left:?}");
    }

    #[test]
    fn a_claim_of_a_dead_process_on_this_host_is_taken_over_even_within_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), LEASE);
        if claims.me.boot_id.is_none() {
            return; // no /proc: only leases decide, tested below
        }
        let p = path(dir.path(), "job");
        // A pid above the kernel's limit (2^22) never runs.
        let dead = Owner {
            pid: 4_999_999,
            ..claims.me.clone()
        };
        write_claim(&p, &owner_json(&dead), Duration::ZERO);
        assert!(claims.live_holder("job").is_none());
        let claim = mine(claims.acquire("job").unwrap());
        let now: Owner = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
        drop(claim);
        // This pid, but another start time: the pid was reused, the claimant is gone.
        let reused = Owner {
            pid_start: claims.me.pid_start.map(|s| s + 1),
            ..claims.me.clone()
        };
        write_claim(&p, &owner_json(&reused), Duration::ZERO);
        drop(mine(claims.acquire("job").unwrap()));
        // The same process, same start time: live however old its heartbeat.
        write_claim(&p, &owner_json(&claims.me), 10 * LEASE);
        busy(claims.acquire("job").unwrap());
    }

    #[test]
    fn a_claim_of_another_host_is_live_until_its_lease_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), LEASE);
        let p = path(dir.path(), "job");
        let far = Owner {
            host: "another-machine".into(),
            boot_id: Some("another-boot".into()),
            pid: std::process::id(),
            lease_s: 30,
            ..claims.me.clone()
        };
        // Its own lease (30 s) counts, not ours.
        write_claim(&p, &owner_json(&far), Duration::from_secs(20));
        let holder = busy(claims.acquire("job").unwrap());
        assert_eq!(holder.owner.unwrap().host, "another-machine");
        write_claim(&p, &owner_json(&far), Duration::from_secs(40));
        drop(mine(claims.acquire("job").unwrap()));
        // The same host name from another boot (or machine): the pid means nothing here.
        let rebooted = Owner {
            boot_id: Some("an-earlier-boot".into()),
            ..claims.me.clone()
        };
        write_claim(&p, &owner_json(&rebooted), Duration::from_secs(5));
        busy(claims.acquire("job").unwrap());
        write_claim(&p, &owner_json(&rebooted), 2 * LEASE);
        drop(mine(claims.acquire("job").unwrap()));
    }

    #[test]
    fn an_unreadable_claim_is_live_until_its_mtime_plus_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), LEASE);
        let p = path(dir.path(), "job");
        let full = owner_json(&claims.me);
        for bytes in [
            &full[..full.len() / 2],
            b"",
            b"\xff\xfe not json",
            b"{\"pid\": -1}",
        ] {
            write_claim(&p, bytes, Duration::from_secs(1));
            let holder = busy(claims.acquire("job").unwrap());
            assert!(holder.owner.is_none());
            assert!(holder.to_string().contains("unreadable"), "{holder}");
            write_claim(&p, bytes, LEASE + Duration::from_secs(1));
            drop(mine(claims.acquire("job").unwrap()));
        }
    }

    #[test]
    fn of_threads_racing_for_one_claim_exactly_one_wins_fresh_or_stale() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), LEASE);
        let dead = Owner {
            host: "another-machine".into(),
            ..claims.me.clone()
        };
        for round in 0..30 {
            let id = format!("job{round}");
            if round % 2 == 1 {
                write_claim(&path(dir.path(), &id), &owner_json(&dead), 2 * LEASE);
            }
            let threads = 8;
            let barrier = Barrier::new(threads);
            let outcomes: Vec<Acquired> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let claims = Claims::with_lease(dir.path(), LEASE);
                            barrier.wait();
                            claims.acquire(&id).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won = outcomes
                .iter()
                .filter(|a| matches!(a, Acquired::Mine(_)))
                .count();
            assert_eq!(won, 1, "round {round}: {won} winners");
            drop(outcomes);
            assert!(!path(dir.path(), &id).exists());
        }
        let left: Vec<_> = fs::read_dir(claims.dir()).unwrap().flatten().collect();
        assert!(left.is_empty(), "files left: {left:?}");
    }

    #[test]
    fn a_held_claim_beats_and_dropping_it_spares_a_claim_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::with_lease(dir.path(), Duration::from_secs(1));
        let claim = mine(claims.acquire("job").unwrap());
        let p = claim.path().to_path_buf();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(100))
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let age = SystemTime::now()
            .duration_since(fs::metadata(&p).unwrap().modified().unwrap())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(1), "no heartbeat: {age:?}");
        // Someone took the claim over (our lease ran out): it stays theirs.
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"theirs").unwrap();
        drop(claim);
        assert_eq!(fs::read(&p).unwrap(), b"theirs");
    }

    #[test]
    fn stat_lines_are_read_past_odd_command_names() {
        let line = "123 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(stat_fields(line), Some(('S', 987654)));
        assert_eq!(stat_fields("123 (x"), None);
        assert_eq!(stat_fields("123 (x) Z 1 2"), None);
        if cfg!(target_os = "linux") {
            assert_eq!(process_alive(4_999_999, None), Some(false));
        }
        if let Some(start) = process_start(std::process::id()) {
            assert_eq!(process_alive(std::process::id(), Some(start)), Some(true));
            assert_eq!(
                process_alive(std::process::id(), Some(start + 1)),
                Some(false)
            );
        }
    }
}
