//! `clbench slurm` on a real Slurm: a synthetic grid of 8 jobs submitted as an array of 4
//! tasks, each running its shard into one results folder, then `clbench report` over the lot;
//! and the same grid as a `--dynamic` array of 3 tasks, each taking unclaimed jobs until none is
//! left, the last one building the report.
//!
//! Needs a running Slurm (`sudo bash scripts/slurm-localhost start` gives a one-node one on
//! this machine; `.ci/run` starts it). Under CI a missing Slurm fails the test; elsewhere the
//! test says why it skips.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const STRATEGIES: &str =
    "  - name: naive\n  - name: l2\n    lambda: [0.5, 5.0]\n  - name: ewc\n    lambda: 100.0\n";

fn clbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
}

fn slurm_is_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| {
            o.status.success() && {
                let states = String::from_utf8_lossy(&o.stdout);
                states.contains("idle") || states.contains("mixed") || states.contains("alloc")
            }
        })
        .unwrap_or(false)
}

fn squeue_has(id: &str) -> bool {
    let out = Command::new("squeue")
        .args(["-h", "-j", id, "-o", "%i %T"])
        .output()
        .expect("squeue");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn text_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_grid_runs_as_a_slurm_array_and_the_report_merges_the_shards() {
    let Some((dir, yaml)) = synthetic_grid_under_slurm(
        "a_grid_runs_as_a_slurm_array_and_the_report_merges_the_shards",
        "array",
    ) else {
        return;
    };
    let id = submit(
        dir.path(),
        &yaml,
        &["--tasks", "4"],
        "8 jobs in 4 array tasks",
    );
    let folder = dir.path().join("array");
    let script = text_of(&folder.join("slurm/array.sbatch"));
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert!(script.contains("--shard"), "{script}");
    wait_for(&id);

    // Each array task ran its own shard and said so in its log.
    for i in 0..4 {
        let log = folder.join(format!("slurm/{id}_{i}.out"));
        let text = text_of(&log);
        assert!(
            text.contains(&format!("shard {i}/4: 2 jobs run")),
            "{}:\n{text}",
            log.display()
        );
    }
    let results = clbench::report::load_results(&folder).unwrap();
    assert_eq!(results.len(), 8, "every job has exactly one result");

    let out = clbench()
        .args(["report", &folder.to_string_lossy()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for name in ["naive", "l2 lambda=0.5", "l2 lambda=5.0", "ewc"] {
        assert!(
            table.contains(name),
            "{name} missing from the merged report:\n{table}"
        );
    }
    assert!(folder.join("index.html").exists());
    assert!(folder.join("summary.csv").exists());
}

#[test]
fn a_dynamic_array_runs_every_job_once_and_its_last_task_builds_the_report() {
    let Some((dir, yaml)) = synthetic_grid_under_slurm(
        "a_dynamic_array_runs_every_job_once_and_its_last_task_builds_the_report",
        "dynamic",
    ) else {
        return;
    };
    let id = submit(
        dir.path(),
        &yaml,
        &["--tasks", "3", "--dynamic"],
        "8 jobs in 3 array tasks",
    );
    let folder = dir.path().join("dynamic");
    let script = text_of(&folder.join("slurm/dynamic.sbatch"));
    assert!(script.contains("#SBATCH --array=0-2"), "{script}");
    assert!(!script.contains("--shard"), "{script}");
    wait_for(&id);

    // Every task says how many jobs it ran; together they ran each of the 8 exactly once.
    let mut ran = 0;
    for i in 0..3 {
        let log = folder.join(format!("slurm/{id}_{i}.out"));
        let text = text_of(&log);
        let count: usize = text
            .lines()
            .find(|l| l.contains(" jobs run ("))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no job count in\n{text}", log.display()));
        ran += count;
    }
    assert_eq!(ran, 8, "the tasks ran {ran} jobs between them, not 8");
    let results = clbench::report::load_results(&folder).unwrap();
    assert_eq!(results.len(), 8, "every job has exactly one result");
    assert!(
        folder.join("index.html").exists(),
        "the task that finished last builds the report"
    );
    assert!(folder.join("summary.csv").exists());
}

/// A temporary folder holding the synthetic grid `name.yaml`, or `None` (the test `test` said
/// why it skips) when no Slurm is running.
fn synthetic_grid_under_slurm(test: &str, name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if !slurm_is_up() {
        let why = "no Slurm is running here (sinfo shows no usable node); start one with \
                   `sudo bash scripts/slurm-localhost start`";
        common::skip(test, why);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&yaml, common::synthetic_yaml(name, dir.path(), STRATEGIES)).unwrap();
    Some((dir, yaml))
}

/// Writes and submits the sbatch script of `yaml` with `args`, checks the plan's line and
/// returns the array's job id.
fn submit(dir: &Path, yaml: &Path, args: &[&str], plan_line: &str) -> String {
    let out = clbench()
        .current_dir(dir)
        .args(["slurm", &yaml.to_string_lossy(), "--submit"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(plan_line), "{stdout}");
    stdout
        .split("submitted job array ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no job id in {stdout}"))
        .trim()
        .to_string()
}

/// Waits (at most 10 minutes) until job array `id` has left the queue.
fn wait_for(id: &str) {
    let started = Instant::now();
    while squeue_has(id) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "job array {id} still queued or running after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
