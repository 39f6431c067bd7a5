//! The binary end to end on tiny synthetic experiments: the files it writes, reproducibility,
//! and the errors promised for bad input.

mod common;

use std::{path::Path, process::Command};

fn clbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(args)
        .output()
        .expect("running clbench")
}

fn write_experiment(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const STRATEGIES: &str =
    "  - name: naive\n  - name: l2\n    lambda: [0.5, 5.0]\n  - name: ewc\n    lambda: 100.0\n";

#[test]
fn a_synthetic_experiment_runs_end_to_end_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_experiment(
        dir.path(),
        "e2e",
        &common::synthetic_yaml("e2e", dir.path(), STRATEGIES),
    );
    let out = clbench(&[&file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for label in ["naive", "l2 lambda=0.5", "l2 lambda=5.0", "ewc"] {
        assert!(stdout.contains(label), "table lacks {label}:\n{stdout}");
    }
    let folder = dir.path().join("e2e");
    for file in [
        "summary.csv",
        "avg_accuracy.png",
        "avg_accuracy.svg",
        "experiment.yaml",
    ] {
        let len = std::fs::metadata(folder.join(file))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 0, "{file} missing or empty");
    }
    let csv = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 4 * 2,
        "a header and a row per job:\n{csv}"
    );
    let jobs: Vec<_> = std::fs::read_dir(folder.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(jobs.len(), 8);
    for path in jobs {
        let result: clbench::results::JobResult =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(result.accuracy.len(), 3);
        assert!(result.accuracy.iter().all(|row| row.len() == 3));
        assert!(result
            .accuracy
            .iter()
            .flatten()
            .all(|a| (0.0..=1.0).contains(a)));
        assert!(!result.provenance.git_revision.is_empty());
        assert_eq!(result.provenance.torch_version, "2.11.0");
        assert_eq!(result.config["name"], "e2e");
        assert!(
            result.metrics.acc > 0.5,
            "{}: ACC {}",
            result.id,
            result.metrics.acc
        );
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&format!("seed{}", result.seed)));
    }
    let png = std::fs::read(folder.join("avg_accuracy.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
}

#[test]
fn the_same_file_and_seeds_give_the_same_accuracy_matrices() {
    let dir = tempfile::tempdir().unwrap();
    let matrices = |sub: &str| {
        let out_dir = dir.path().join(sub);
        let file = write_experiment(
            dir.path(),
            sub,
            &common::synthetic_yaml("repro", &out_dir, STRATEGIES),
        );
        let out = clbench(&["run", &file, "--quiet"]);
        assert!(out.status.success(), "{}", stderr(&out));
        clbench::report::load_results(&out_dir.join("repro"))
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(matrices("a"), matrices("b"));
}

#[test]
fn a_diverging_job_is_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml(
        "diverge",
        dir.path(),
        "  - name: naive\n  - name: l2\n    lambda: 100000.0\n",
    )
    .replace("optimizer: adam\n  lr: 0.01", "optimizer: sgd\n  lr: 1.0")
    .replace("seeds: [1, 2]", "seeds: [1]");
    let file = write_experiment(dir.path(), "diverge", &text);
    let out = clbench(&[&file]);
    assert!(
        !out.status.success(),
        "a diverged job must set the exit code"
    );
    let err = stderr(&out);
    assert!(
        err.contains("l2_lambda=100000.0_seed1") && err.contains("diverged"),
        "{err}"
    );
    assert!(err.contains("lower the learning rate"), "{err}");
    let jobs = dir.path().join("diverge/jobs");
    assert_eq!(
        common::job_files(&jobs, "naive_seed1").len(),
        1,
        "naive's result must be written"
    );
    assert!(common::job_files(&jobs, "l2_lambda=100000.0_seed1").is_empty());
}

#[test]
fn zero_workers_or_a_shard_past_its_count_is_refused_before_planning() {
    for args in [
        vec!["run", "x.yaml", "--workers", "0"],
        vec!["run", "x.yaml", "--shard", "3/2"],
    ] {
        let out = clbench(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("invalid value") && !err.contains("panicked"),
            "{err}"
        );
    }
}

/// A network too large for memory is the job's failure, with its message, not an abort of the
/// whole run: the other jobs' results are written. (Widths have no upper bound in their range:
/// what fits depends on the machine.)
#[test]
fn a_network_too_large_to_build_fails_its_job_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml("huge", dir.path(), "  - name: naive\n")
        .replace("seeds: [1, 2]", "seeds: [1]");
    // Two model sizes in one folder: the small run first, then the huge one next to it.
    let small = write_experiment(dir.path(), "small", &text);
    assert!(clbench(&[&small]).status.success());
    let huge = write_experiment(
        dir.path(),
        "huge",
        &text.replace("hidden: [32]", "hidden: [2000000000]"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_clbench"))
        .arg(&huge)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FAILED") && err.contains("does not fit in memory; make the model smaller"),
        "{err}"
    );
    assert!(!err.contains("stack backtrace"), "{err}");
    // The earlier, small run's result is untouched.
    let jobs = dir.path().join("huge/jobs");
    assert_eq!(common::job_files(&jobs, "naive_seed1").len(), 1);
}

#[test]
fn strategies_lists_every_registered_strategy_with_its_parameters() {
    let out = clbench(&["strategies"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "naive",
        "l2",
        "ewc",
        "lambda",
        "fisher",
        "merge",
        "Kirkpatrick",
        // A parameter left out of the resolved defaults is listed without an empty `=`.
        "schedule: cumulative",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
        assert!(!text.contains(" = :"), "an empty default:\n{text}");
    }
}

/// Runs a broken variant of the synthetic experiment and returns its error text.
fn error_for(edit: impl Fn(String) -> String) -> (String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = edit(common::synthetic_yaml("bad", dir.path(), STRATEGIES));
    let file = write_experiment(dir.path(), "bad", &text);
    let out = clbench(&[&file]);
    assert!(!out.status.success(), "bad input must fail");
    assert!(
        !dir.path().join("bad").exists(),
        "nothing may be written for bad input"
    );
    (stderr(&out), dir.keep())
}

#[test]
fn an_unknown_key_names_the_file_line_and_the_allowed_keys() {
    let (err, _) = error_for(|t| t.replace("  batch_size: 16", "  batchsize: 16"));
    assert!(err.contains("bad.yaml:14:3"), "{err}");
    assert!(
        err.contains("unknown field `batchsize`") && err.contains("batch_size"),
        "{err}"
    );
}

#[test]
fn an_unknown_strategy_lists_the_registered_ones() {
    let (err, _) = error_for(|t| t.replace("name: ewc", "name: ewcc"));
    assert!(err.contains("bad.yaml:24:5"), "{err}");
    assert!(
        err.contains("unknown strategy `ewcc`") && err.contains("did you mean `ewc`"),
        "{err}"
    );
    assert!(err.contains("naive") && err.contains("l2"), "{err}");
}

#[test]
fn a_wrong_type_names_the_line_and_what_was_expected() {
    let (err, _) = error_for(|t| t.replace("lr: 0.01", "lr: fast"));
    assert!(err.contains("bad.yaml:13:"), "{err}");
    assert!(
        err.contains("training.lr") && err.contains("invalid type"),
        "{err}"
    );
    let (err, _) = error_for(|t| t.replace("mode: task", "mode: tasks"));
    assert!(
        err.contains("bad.yaml:7:") && err.contains("`task`, `domain`, `class`"),
        "{err}"
    );
}

#[test]
fn a_bad_strategy_parameter_names_its_line_and_the_known_ones() {
    let (err, _) = error_for(|t| t.replace("    lambda: 100.0", "    lamda: 100.0"));
    assert!(err.contains("bad.yaml:25:5"), "{err}");
    assert!(
        err.contains("unknown field `lamda`") && err.contains("fisher"),
        "{err}"
    );
    let (err, _) =
        error_for(|t| t.replace("    lambda: 100.0", "    lambda: 100.0\n    merge: median"));
    assert!(
        err.contains("bad.yaml:26:5") && err.contains("`mean`, `sum`, `separate`"),
        "{err}"
    );
    let (err, _) = error_for(|t| t.replace("lambda: [0.5, 5.0]", "lambda: [0.5, strong]"));
    assert!(
        err.contains("bad.yaml:23:5") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn a_rerun_skips_finished_jobs_and_a_changed_setting_reruns_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml("resume", dir.path(), "  - name: naive\n  - name: l2\n");
    let file = write_experiment(dir.path(), "resume", &text);
    let out = clbench(&[&file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs = dir.path().join("resume/jobs");
    let [job] = common::job_files(&jobs, "naive_seed1").try_into().unwrap();
    let first = std::fs::read_to_string(&job).unwrap();

    let out = clbench(&[&file]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("skipping 4 finished job(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&job).unwrap(),
        first,
        "a finished result was rewritten"
    );

    let dry = clbench(&["run", &file, "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("4 jobs, 0 to run, 4 finished"));

    std::fs::write(&file, text.replace("lr: 0.01", "lr: 0.02")).unwrap();
    let out = clbench(&[&file]);
    assert!(out.status.success());
    assert!(!stderr(&out).contains("skipping"), "{}", stderr(&out));
    // A changed setting is another job (its id's hash differs): it runs, and the result of the
    // old settings is left as it was.
    let after = common::job_files(&jobs, "naive_seed1");
    assert_eq!(after.len(), 2, "a changed setting must rerun: {after:?}");
    assert_eq!(std::fs::read_to_string(&job).unwrap(), first);
}

#[test]
fn results_saved_under_the_old_ids_are_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml("migrate", dir.path(), "  - name: naive\n  - name: l2\n");
    let file = write_experiment(dir.path(), "migrate", &text);
    let out = clbench(&[&file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let registry = clbench::strategy::Registry::load().unwrap();
    let plan = clbench::config::Plan::from_file(std::path::Path::new(&file), &registry).unwrap();
    let jobs = dir.path().join("migrate/jobs");
    // Turn every result back into what the earlier clbench wrote: old id, old settings.
    let mut accuracies = Vec::new();
    for job in &plan.jobs {
        let (old_id, old_settings) = job
            .legacy
            .clone()
            .expect("an MLP job has a legacy identity");
        assert!(!old_id.contains('-'), "{old_id}");
        let path = jobs.join(format!("{}.json", job.id));
        let mut result: clbench::results::JobResult =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        accuracies.push(result.accuracy.clone());
        result.id = old_id.clone();
        result.settings = old_settings;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(
            jobs.join(format!("{old_id}.json")),
            serde_json::to_string(&result).unwrap(),
        )
        .unwrap();
    }
    let out = clbench(&[&file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipping 4 finished job(s)"),
        "{}",
        stderr(&out)
    );
    for (job, accuracy) in plan.jobs.iter().zip(accuracies) {
        let (old_id, _) = job.legacy.as_ref().unwrap();
        assert!(!jobs.join(format!("{old_id}.json")).exists());
        let result: clbench::results::JobResult = serde_json::from_str(
            &std::fs::read_to_string(jobs.join(format!("{}.json", job.id))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (result.id.as_str(), &result.accuracy),
            (job.id.as_str(), &accuracy)
        );
        assert_eq!(result.settings, job.settings);
    }
    // A result under another label with the same hash (the label's rules changed) is found by
    // its hash and settings, and renamed.
    let id = &plan.jobs[0].id;
    let hash = id.rsplit_once('-').unwrap().1;
    let relabelled = jobs.join(format!("older_label_seed1-{hash}.json"));
    std::fs::rename(jobs.join(format!("{id}.json")), &relabelled).unwrap();
    let out = clbench(&[&file]);
    assert!(
        stderr(&out).contains("skipping 4 finished job(s)"),
        "{}",
        stderr(&out)
    );
    assert!(!relabelled.exists() && jobs.join(format!("{id}.json")).exists());
}

#[test]
fn every_shipped_experiment_file_plans_without_reading_data() {
    let registry = clbench::strategy::Registry::load().unwrap();
    let files = common::shipped_experiments();
    assert!(files.len() >= 12, "{files:?}");
    for file in files {
        let plan =
            clbench::config::Plan::from_file(&file, &registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.jobs.is_empty(), "{}", file.display());
    }
}

#[test]
fn with_draw_per_seed_the_runner_gives_each_seed_its_own_tasks() {
    // The untrained network's accuracy on every task (the row evaluated before task 1) depends
    // only on the seed's initialisation and on the tasks: equal for two strategies that share
    // their tasks, different when the tasks differ.
    let initial = |draw_per_seed: bool| {
        let dir = tempfile::tempdir().unwrap();
        let scenario = format!(
            "  kind: permuted\n  mode: domain\n  num_tasks: 3\n  draw_per_seed: {draw_per_seed}\n"
        );
        let text = common::synthetic_yaml("draws", dir.path(), "  - name: naive\n  - name: l2\n")
            .replace(
                "  kind: split\n  mode: task\n  tasks: [[0, 1], [2, 3], [4, 5]]\n",
                &scenario,
            );
        let file = write_experiment(dir.path(), "draws", &text);
        let out = clbench(&[&file]);
        assert!(out.status.success(), "{}", stderr(&out));
        let jobs = dir.path().join("draws/jobs");
        let read = |label: &str| {
            let files = common::job_files(&jobs, label);
            let result = clbench::results::read_job_result(&files[0]).unwrap();
            assert!(
                !result.trained_once_at_end(),
                "{label} trained task by task"
            );
            result.initial_accuracy.unwrap()
        };
        (read("naive_seed1"), read("l2_seed1"), read("naive_seed2"))
    };
    let (shared, shared_l2, shared_seed2) = initial(false);
    let (own, own_l2, _) = initial(true);
    assert_eq!(own, own_l2, "the strategies of one seed see the same tasks");
    assert_eq!(shared, shared_l2);
    assert_ne!(own, shared, "seed 1 drew its own permutations");
    assert_ne!(shared, shared_seed2, "the seeds' initialisations differ");
}
