//! Results that last, and bad files on disk: a job result of an older format loads with its
//! metrics recomputed from the stored matrix; one of a newer format, a truncated or hand-edited
//! one, or a saved experiment of a newer format is an error that names the file and what to do,
//! before any training; a write that fails (here: a file-size limit, as a full disk or a quota
//! gives) names the path and leaves no half-written file.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn clbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-job synthetic experiment writing under `dir`; returns the file.
fn experiment(dir: &Path) -> PathBuf {
    let text = format!(
        "name: rf
dataset: {{name: synthetic, seed: 3, train_per_class: 20, test_per_class: 10}}
scenario: {{kind: split, mode: task, tasks: [[0, 1], [2, 3]]}}
model: {{hidden: [8]}}
training: {{optimizer: adam, lr: 0.01, batch_size: 16, epochs: 1}}
seeds: [1]
runner: {{devices: [cpu], checkpoints: false}}
strategies:
  - name: naive
output: {}
",
        dir.display()
    );
    let file = dir.join("rf.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs the experiment once and returns (experiment file, results folder, the job's file).
fn finished_run() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path());
    let out = clbench().arg("run").arg(&file).arg("-q").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = dir.path().join("rf");
    let job = std::fs::read_dir(folder.join("jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    (dir, file, folder, job)
}

/// Asserts `out` failed with a message (no panic) containing every one of `parts`.
fn assert_refused(out: &Output, parts: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for part in parts {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[test]
fn results_carry_the_format_version_and_the_saved_experiment_too() {
    let (_dir, _, folder, job) = finished_run();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&job).unwrap()).unwrap();
    assert_eq!(value["format_version"], clbench::results::FORMAT_VERSION);
    let saved = std::fs::read_to_string(folder.join("experiment.yaml")).unwrap();
    assert!(
        saved.contains(&format!(
            "format_version: {}",
            clbench::results::FORMAT_VERSION
        )),
        "{saved}"
    );
}

#[test]
fn a_result_of_the_unnumbered_format_loads_with_its_metrics_recomputed() {
    let (_dir, _, folder, job) = finished_run();
    // As clbench wrote results before formats were numbered and before the metric family:
    // no version, no initial or chance accuracies, and (here) stale stored metrics.
    edit_json(&job, |v| {
        let m = v.as_object_mut().unwrap();
        m.remove("format_version");
        m.remove("initial_accuracy");
        m.remove("chance_accuracy");
        m.insert(
            "accuracy".into(),
            serde_json::json!([[0.9, 0.5], [0.6, 0.8]]),
        );
        m.insert(
            "metrics".into(),
            serde_json::json!({"acc": 0.123, "bwt": 0.5, "forgetting": 0.0}),
        );
    });
    let out = clbench().arg("report").arg(&folder).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    let row = csv.lines().nth(1).unwrap();
    // ACC = (0.6 + 0.8) / 2, BWT = 0.6 - 0.9, forgetting = 0.9 - 0.6, from the matrix; FWT
    // needs the initial accuracies, which the old file lacks, so it is empty.
    assert!(
        row.contains(",0.700000,-0.300000,0.300000,,"),
        "metrics not recomputed: {row}"
    );
    let loaded = clbench::report::load_results(&folder).unwrap();
    assert_eq!(loaded[0].format_version, 1);
}

#[test]
fn a_result_of_a_newer_format_is_refused_with_who_wrote_it() {
    let (_dir, file, folder, job) = finished_run();
    edit_json(&job, |v| v["format_version"] = serde_json::json!(99));
    let before = std::fs::read(&job).unwrap();
    let out = clbench().arg("report").arg(&folder).output().unwrap();
    let name = job.display().to_string();
    let refusal = [
        name.as_str(),
        "format 99",
        concat!("written by clbench ", env!("CARGO_PKG_VERSION")),
        "reads formats up to 2",
    ];
    assert_refused(&out, &refusal);
    // A run stops before any training and leaves the file as it was.
    let out = clbench().arg("run").arg(&file).output().unwrap();
    assert_refused(&out, &refusal);
    assert!(!stderr(&out).contains("trained"), "{}", stderr(&out));
    let out = clbench()
        .arg("run")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_refused(&out, &refusal);
    assert_eq!(std::fs::read(&job).unwrap(), before);
}

#[test]
fn a_truncated_or_hand_edited_result_stops_the_run_before_training() {
    let (_dir, file, folder, job) = finished_run();
    let good = std::fs::read(&job).unwrap();
    let truncated = good[..good.len() / 2].to_vec();
    let name = job.display().to_string();
    for broken in [
        truncated,
        String::from_utf8(good.clone())
            .unwrap()
            .replacen("\"accuracy\": [", "\"accuracy\": \"high\", \"was\": [", 1)
            .into_bytes(),
    ] {
        std::fs::write(&job, &broken).unwrap();
        for args in [vec!["run"], vec!["run", "--dry-run"]] {
            let out = clbench().args(&args).arg(&file).output().unwrap();
            assert_refused(
                &out,
                &[&name, "not a readable clbench job result", "delete it"],
            );
            assert!(!stderr(&out).contains("trained"), "{}", stderr(&out));
        }
        let out = clbench().arg("report").arg(&folder).output().unwrap();
        assert_refused(&out, &[&name, "delete it"]);
        assert_eq!(std::fs::read(&job).unwrap(), broken, "the file was touched");
    }
}

#[test]
fn a_saved_experiment_of_a_newer_format_is_refused() {
    let (_dir, file, folder, _) = finished_run();
    let saved = folder.join("experiment.yaml");
    let text = std::fs::read_to_string(&saved)
        .unwrap()
        .replace("format_version: 2", "format_version: 7");
    std::fs::write(&saved, &text).unwrap();
    let name = saved.display().to_string();
    for args in [
        vec!["report", folder.to_str().unwrap()],
        vec!["run", file.to_str().unwrap()],
    ] {
        let out = clbench().args(&args).output().unwrap();
        assert_refused(&out, &[&name, "saved experiment of format 7"]);
    }
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
}

/// A file-size limit makes every write beyond it fail with EFBIG, as a full disk or a quota
/// does with ENOSPC (a read-only folder cannot be had as root, which these machines run as).
/// The shell ignores SIGXFSZ, and clbench inherits that, so the write fails instead of killing
/// the process.
#[test]
fn a_failing_write_names_the_path_and_leaves_no_half_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(dir.path());
    // 2 KiB: enough for experiment.yaml, not for the job's result.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 2; exec '{}' run '{}'",
            env!("CARGO_BIN_EXE_clbench"),
            file.display()
        ))
        .output()
        .unwrap();
    let jobs = dir.path().join("rf").join("jobs");
    assert_refused(
        &out,
        &[
            &format!("writing {}", jobs.display()),
            "nothing half-written is left",
        ],
    );
    let left: Vec<_> = std::fs::read_dir(&jobs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in jobs/: {left:?}");
    // Charts fail likewise, one at a time, and leave none half-written.
    let charts: Vec<_> = std::fs::read_dir(dir.path().join("rf"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg" || e == "png"))
        .collect();
    assert!(charts.is_empty(), "{charts:?}");
}

/// Seeded corruptions of a real job result (truncation, flipped bytes, deleted or retyped
/// fields, ragged matrices): each reads as a result whose matrices fit together, or is an error
/// that names the file and says what to do; none panics.
#[test]
fn corrupted_results_are_errors_naming_the_file_never_panics() {
    use rand::{seq::SliceRandom, Rng, SeedableRng};
    let (_dir, _, _, job) = finished_run();
    let good = std::fs::read(&job).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let name = job.display().to_string();
    let (mut read, mut refused) = (0, 0);
    for _ in 0..300 {
        let bytes = match rng.gen_range(0..4) {
            0 => good[..rng.gen_range(0..good.len())].to_vec(),
            1 => {
                let mut b = good.clone();
                for _ in 0..rng.gen_range(1..5) {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.gen();
                }
                b
            }
            2 => {
                let mut v = value.clone();
                let key = keys.choose(&mut rng).unwrap();
                let replacement = [
                    serde_json::Value::Null,
                    serde_json::json!("text"),
                    serde_json::json!(-1),
                    serde_json::json!([]),
                    serde_json::json!({}),
                ]
                .choose(&mut rng)
                .unwrap()
                .clone();
                if rng.gen() {
                    v.as_object_mut().unwrap().remove(key);
                } else {
                    v[key.as_str()] = replacement;
                }
                serde_json::to_vec(&v).unwrap()
            }
            _ => {
                let mut v = value.clone();
                let ragged = [
                    serde_json::json!([[0.5], [0.1, 0.2, 0.3]]),
                    serde_json::json!([]),
                    serde_json::json!([[]]),
                    serde_json::json!([[0.5, 0.5]]),
                ]
                .choose(&mut rng)
                .unwrap()
                .clone();
                let field = ["accuracy", "initial_accuracy", "test_accuracy"]
                    .choose(&mut rng)
                    .unwrap();
                v[*field] = if *field == "initial_accuracy" {
                    serde_json::json!([0.5, 0.5, 0.5])
                } else {
                    ragged
                };
                serde_json::to_vec(&v).unwrap()
            }
        };
        std::fs::write(&job, &bytes).unwrap();
        match std::panic::catch_unwind(|| clbench::results::read_job_result(&job)) {
            Err(_) => panic!(
                "reading a corrupted result panicked:\n{}",
                String::from_utf8_lossy(&bytes)
            ),
            Ok(Ok(result)) => {
                read += 1;
                result.check_shapes().unwrap();
            }
            Ok(Err(e)) => {
                refused += 1;
                let message = format!("{e:#}");
                assert!(message.contains(&name), "{message}");
                assert!(
                    message.contains("delete it") || message.contains("restore"),
                    "{message}"
                );
            }
        }
    }
    assert!(refused > 150 && read > 0, "{read} read, {refused} refused");
}
