//! Claims across processes: two `clbench run` started together on one results folder run every
//! job exactly once between them and end with a single run's results; a job claimed by a live
//! process is left to it (and shown by `--dry-run`), and the report waits for it.

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use clbench::runner::claim::{Acquired, Claims};

const STRATEGIES: &str = "  - name: naive\n  - name: l2\n    lambda: [0.5, 5.0]\n";

fn clbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
}

/// Writes the experiment `name` (6 synthetic jobs of `epochs` passes) under `dir`; returns the
/// file and the job ids of its plan.
fn experiment(dir: &Path, name: &str, epochs: usize) -> (String, BTreeSet<String>) {
    let text = common::synthetic_yaml(name, dir, STRATEGIES)
        .replace("epochs: 2", &format!("epochs: {epochs}"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, &text).unwrap();
    let ids = common::plan_from(&text)
        .jobs
        .iter()
        .map(|j| j.id.clone())
        .collect();
    (path.to_string_lossy().into_owned(), ids)
}

fn succeeded(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The ids a run's progress lines (stderr, not a terminal) say it trained: `[k/n] <id>: ACC ...`.
fn trained(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("] ")?;
            let (id, tail) = rest.split_once(": ")?;
            tail.starts_with("ACC ").then(|| id.to_string())
        })
        .collect()
}

/// The files left in the experiment's claims folder.
fn claims_left(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder.join("claims"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_processes_on_one_folder_run_every_job_once_and_match_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    std::fs::create_dir_all(&single).unwrap();
    let (file, ids) = experiment(&single, "shared", 2);
    assert_eq!(ids.len(), 6);
    succeeded(&clbench().args(["-q", &file]).output().unwrap());
    let reference = common::accuracy_matrices(&single.join("shared"));

    let together = dir.path().join("together");
    std::fs::create_dir_all(&together).unwrap();
    let (file, _) = experiment(&together, "shared", 2);
    // One worker each, so that the two interleave on the grid.
    let spawn = || {
        clbench()
            .args(["run", &file, "--workers", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ((a_out, a_err), (b_out, b_err)) = (succeeded(&a), succeeded(&b));
    let (ran_a, ran_b) = (trained(&a_err), trained(&b_err));
    let both = format!("A:\n{a_out}{a_err}\nB:\n{b_out}{b_err}");
    assert!(ran_a.is_disjoint(&ran_b), "a job ran twice\n{both}");
    let ran: BTreeSet<String> = ran_a.union(&ran_b).cloned().collect();
    assert_eq!(ran, ids, "not every job ran\n{both}");
    assert!(
        !ran_a.is_empty() && !ran_b.is_empty(),
        "one process ran the whole grid: nothing was shared\n{both}"
    );
    let folder = together.join("shared");
    let files = std::fs::read_dir(folder.join("jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(files, 6);
    assert_eq!(
        common::accuracy_matrices(&folder),
        reference,
        "results differ from a single run's"
    );
    assert!(
        claims_left(&folder).is_empty(),
        "{:?}",
        claims_left(&folder)
    );
    // Whoever finished last built the report over every job.
    let summary = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    for id in &ids {
        assert!(summary.contains(id.as_str()), "{id} not in summary.csv");
    }
}

#[test]
fn a_job_claimed_by_a_live_process_is_left_to_it_and_the_report_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (file, ids) = experiment(dir.path(), "held", 2);
    let folder = dir.path().join("held");
    let held = ids.iter().next().unwrap().clone();
    let dead = ids.iter().nth(1).unwrap().clone();
    // This test process holds one job; a process that is gone (a pid above the kernel's limit)
    // left a claim on another.
    let claims = Claims::with_lease(&folder, Duration::from_secs(60));
    let Acquired::Mine(claim) = claims.acquire(&held).unwrap() else {
        panic!("no claim")
    };
    let mut gone: serde_json::Value =
        serde_json::from_slice(&std::fs::read(claim.path()).unwrap()).unwrap();
    gone["pid"] = 4_999_999.into();
    std::fs::write(
        clbench::runner::claim::path(&folder, &dead),
        serde_json::to_vec(&gone).unwrap(),
    )
    .unwrap();

    let dry = succeeded(
        &clbench()
            .args(["run", &file, "--dry-run"])
            .output()
            .unwrap(),
    )
    .0;
    let line = dry.lines().find(|l| l.starts_with(held.as_str())).unwrap();
    assert!(line.contains("running elsewhere"), "{dry}");
    assert!(line.contains(&std::process::id().to_string()), "{dry}");
    assert!(
        dry.contains("6 jobs, 5 to run, 0 finished, 1 running elsewhere"),
        "{dry}"
    );

    let (out, err) = succeeded(&clbench().arg(&file).output().unwrap());
    let ran = trained(&err);
    assert_eq!(ran.len(), 5, "{err}");
    assert!(!ran.contains(&held) && ran.contains(&dead), "{err}");
    assert!(out.contains("1 left to other processes"), "{out}");
    assert!(
        out.contains("1 job(s) still run in other processes"),
        "{out}"
    );
    assert!(out.contains(&held), "{out}");
    assert!(
        !folder.join("summary.csv").exists(),
        "a report was built without the held job"
    );

    // The holder lets go (its job failed, say): the next run runs that job and builds the report.
    drop(claim);
    let (out, err) = succeeded(&clbench().arg(&file).output().unwrap());
    assert_eq!(trained(&err), BTreeSet::from([held]), "{err}");
    assert!(out.contains("5 skipped as finished"), "{out}");
    assert!(folder.join("summary.csv").exists());
    assert!(
        claims_left(&folder).is_empty(),
        "{:?}",
        claims_left(&folder)
    );
}
