//! Crash safety: the binary killed with SIGKILL at several points and restarted finishes with
//! the results of an uninterrupted run, and no file under the report folder is ever truncated
//! or unparsable. And shards: N processes with `--shard i/N` together give the whole grid.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::Instant,
};

const STRATEGIES: &str =
    "  - name: naive\n  - name: l2\n    lambda: [0.5, 5.0]\n  - name: ewc\n    lambda: [10.0, 100.0]\n";

fn clbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
}

/// A synthetic grid of 10 jobs long enough to be killed in the middle (a few seconds).
fn experiment(dir: &Path, name: &str) -> String {
    let text = common::synthetic_yaml(name, dir, STRATEGIES).replace("epochs: 2", "epochs: 6");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Starts `clbench -q FILE` with its output discarded (to be killed).
fn spawn_quiet(file: &str) -> std::process::Child {
    clbench()
        .args(["-q", file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every file under `folder` that is JSON parses as a job result, and no temp file is left.
fn assert_intact(folder: &Path) {
    for entry in std::fs::read_dir(folder.join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap();
            serde_json::from_str::<clbench::results::JobResult>(&text)
                .unwrap_or_else(|e| panic!("{name} is truncated or unparsable: {e}"));
        }
    }
}

#[test]
fn a_run_killed_at_several_points_resumes_to_the_uninterrupted_results() {
    let dir = tempfile::tempdir().unwrap();
    let reference_dir = dir.path().join("reference");
    std::fs::create_dir_all(&reference_dir).unwrap();
    let file = experiment(&reference_dir, "crash");
    let started = Instant::now();
    let out = clbench().args(["-q", &file]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = started.elapsed();
    let reference = common::accuracy_matrices(&reference_dir.join("crash"));
    assert_eq!(reference.len(), 10);

    let killed_dir = dir.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let file = experiment(&killed_dir, "crash");
    let folder = killed_dir.join("crash");
    // Kill at 20%, 45% and 70% of an uninterrupted run's time, checking the folder each time.
    let mut kills = 0;
    for fraction in [0.2, 0.45, 0.7] {
        let mut child = spawn_quiet(&file);
        sleep(full.mul_f64(fraction));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        child.wait().unwrap();
        if folder.join("jobs").exists() {
            assert_intact(&folder);
        }
    }
    assert!(
        kills >= 2,
        "the run finished before it could be killed twice; make the grid longer"
    );
    let out = clbench().args(["-q", &file]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_intact(&folder);
    let leftovers: Vec<_> = std::fs::read_dir(folder.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    assert_eq!(
        common::accuracy_matrices(&folder),
        reference,
        "resumed results differ from an uninterrupted run"
    );
}

#[test]
fn shards_together_run_the_whole_grid_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path(), "shards");
    let mut ids = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = clbench()
            .args(["run", &file, "--quiet", "--shard", &shard])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("shard {i}/3")));
        ids = common::accuracy_matrices(&dir.path().join("shards"))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    }
    assert_eq!(ids.len(), 10, "{ids:?}");
    let out = clbench()
        .args(["report", &dir.path().join("shards").to_string_lossy()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join("shards/index.html").exists());
    let bad = clbench()
        .args(["run", &file, "--shard", "3/3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a shard"));
}

/// The checkpoint's finished-task count, if a readable checkpoint is there.
fn tasks_checkpointed(path: &Path, settings: &serde_json::Value) -> Option<usize> {
    clbench::runner::checkpoint::load(path, settings)
        .ok()
        .flatten()
        .map(|c| c.progress.tasks_done())
}

#[test]
fn a_job_killed_inside_resumes_from_its_last_finished_task() {
    // One job of four tasks, each long enough to be killed in.
    let strategies = "  - name: ewc\n    lambda: 100.0\n    merge: separate\n";
    let text = |dir: &Path| {
        common::synthetic_yaml("inside", dir, strategies)
            .replace("seeds: [1, 2]", "seeds: [1]")
            .replace("epochs: 2", "epochs: 60")
            .replace(
                "tasks: [[0, 1], [2, 3], [4, 5]]",
                "tasks: [[0, 1], [2, 3], [4, 5], [6, 7]]",
            )
    };
    let dir = tempfile::tempdir().unwrap();
    let write = |sub: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("inside.yaml");
        std::fs::write(&path, text(&d)).unwrap();
        (path.to_string_lossy().into_owned(), d.join("inside"))
    };
    let (file, folder) = write("reference");
    let out = clbench().args(["-q", &file]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = common::accuracy_matrices(&folder);

    let (file, folder) = write("killed");
    let plan = common::plan_from(&text(folder.parent().unwrap()));
    let job = &plan.jobs[0];
    let ckpt = clbench::runner::checkpoint::path(&folder, &job.id);
    // Kill as soon as the checkpoint after task 1, then after task 2, is on disk: each kill
    // lands inside the next task.
    for wanted in [1, 2] {
        let mut child = spawn_quiet(&file);
        let started = Instant::now();
        while tasks_checkpointed(&ckpt, &job.settings) < Some(wanted) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended before its checkpoint after task {wanted} was seen"
            );
            assert!(
                started.elapsed().as_secs() < 120,
                "no checkpoint after task {wanted}"
            );
            sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_intact(&folder);
        assert_eq!(
            tasks_checkpointed(&ckpt, &job.settings),
            Some(wanted),
            "the checkpoint must survive the kill intact"
        );
    }
    let out = clbench().arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resumed from its checkpoint after task 2/4"),
        "{stderr}"
    );
    assert!(!ckpt.exists(), "the checkpoint outlived the finished job");
    let result = &clbench::report::load_results(&folder).unwrap()[0];
    assert_eq!(result.resumed_after_task, Some(2));
    assert_eq!(
        common::accuracy_matrices(&folder),
        reference,
        "the resumed job's accuracy matrix differs from an uninterrupted run"
    );
}
