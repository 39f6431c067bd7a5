//! Checkpoints within a job: for every registered strategy, a job interrupted in the middle of
//! a task and resumed from its checkpoint ends with the accuracy matrix, training curve and
//! weights of an uninterrupted run, bit for bit; with Adam carried across tasks, and with SGD
//! with momentum.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use clbench::runner::{checkpoint, JobEvent};
use clbench::strategy::Registry;

/// Parameters that make a strategy's state matter; a registered strategy not listed here (a
/// file dropped into strategies/) is tested with its defaults.
const STRATEGIES: &[(&str, &str)] = &[
    ("naive", ""),
    ("joint", ""),
    ("l2", "    lambda: 5.0\n"),
    ("ewc", "    lambda: 100.0\n    merge: separate\n"),
    (
        "ewc",
        "    lambda: 100.0\n    merge: mean\n    fisher: sampled\n",
    ),
    ("online_ewc", "    lambda: 100.0\n    gamma: 0.9\n"),
    ("si", "    c: 1.0\n"),
    ("mas", "    lambda: 1.0\n"),
    ("lwf", "    alpha: 1.0\n    weighting: by_task\n"),
];

struct Run {
    result: clbench::results::JobResult,
    weights: Vec<f32>,
}

/// Runs the single job of `text`, checkpointing to `ckpt` if given; `stop_in_task` panics (as
/// a kill would stop it) on the first pass of that task, after the previous task's checkpoint.
fn run(text: &str, ckpt: Option<&Path>, stop_in_task: Option<usize>) -> Option<Run> {
    let on_event = |event: JobEvent| {
        if let (JobEvent::Epoch { task, .. }, Some(stop)) = (event, stop_in_task) {
            if task == stop {
                panic!("simulated kill in task {task}");
            }
        }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        common::run_first_job_with(text, ckpt, &on_event)
    }));
    let (result, model) = outcome.ok()?;
    Some(Run {
        result,
        weights: common::flat_weights(&model),
    })
}

/// Whether a strategy that saves no state must still be resumable (the listed ones all save).
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Checkpoint,
    /// A checkpoint if the strategy saves its state, else a clean restart.
    EitherWay,
}

fn check_resume(strategy: &str, params: &str, training: (&str, &str), expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!("  - name: {strategy}\n{params}");
    let text = common::synthetic_yaml("ckpt", dir.path(), &entry)
        .replace("seeds: [1, 2]", "seeds: [4]")
        .replace(training.0, training.1);
    let label = format!("{strategy} {} ({})", params.trim(), training.1.trim());
    let reference = run(&text, None, None).unwrap();

    let ckpt = dir.path().join("job.safetensors");
    assert!(
        run(&text, Some(&ckpt), Some(2)).is_none(),
        "{label}: not interrupted"
    );
    let saved = checkpoint::load(&ckpt, &reference.result.settings).unwrap();
    if saved.is_none() && expect == Expect::EitherWay {
        // No saved state: the job restarts from its first task and ends the same.
        let restarted = run(&text, Some(&ckpt), None).unwrap();
        assert_eq!(restarted.result.resumed_after_task, None, "{label}");
        assert_eq!(
            restarted.result.accuracy, reference.result.accuracy,
            "{label}"
        );
        assert_eq!(restarted.weights, reference.weights, "{label}: weights");
        return;
    }
    let saved = saved.unwrap_or_else(|| panic!("{label}: no checkpoint after task 2"));
    assert_eq!(saved.progress.tasks_done(), 2, "{label}");

    let resumed = run(&text, Some(&ckpt), None).unwrap();
    assert_eq!(resumed.result.resumed_after_task, Some(2), "{label}");
    assert_eq!(
        resumed.result.accuracy, reference.result.accuracy,
        "{label}: accuracy matrix"
    );
    let losses = |r: &Run| -> Vec<(f64, f64)> {
        r.result
            .curve
            .iter()
            .map(|p| (p.task_loss, p.penalty))
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&reference), "{label}: curve");
    assert_eq!(resumed.weights, reference.weights, "{label}: weights");
}

#[test]
fn every_strategy_resumed_mid_job_ends_like_an_uninterrupted_run() {
    // Four tasks, so that the resumed part still has a checkpoint to write.
    let four_tasks = (
        "tasks: [[0, 1], [2, 3], [4, 5]]",
        "tasks: [[0, 1], [2, 3], [4, 5], [6, 7]]",
    );
    for (strategy, params) in STRATEGIES {
        check_resume(strategy, params, four_tasks, Expect::Checkpoint);
    }
    let registry = Registry::load().unwrap();
    for name in registry.names() {
        if !STRATEGIES.iter().any(|(s, _)| *s == name) {
            check_resume(name, "", four_tasks, Expect::EitherWay);
        }
    }
}

#[test]
fn a_model_with_batch_norm_and_dropout_resumes_exactly() {
    // Running statistics are buffers in the checkpoint; dropout masks come from the job's
    // stream, whose position the checkpoint keeps.
    let conv = (
        "model:\n  hidden: [32]",
        "model: {name: conv, channels: [4], kernel: 3, hidden: [16], batch_norm: true, dropout: 0.5}",
    );
    check_resume("ewc", "    lambda: 100.0\n", conv, Expect::Checkpoint);
}

#[test]
fn sgd_with_momentum_resumes_exactly() {
    let sgd = (
        "optimizer: adam\n  lr: 0.01",
        "optimizer: sgd\n  lr: 0.05\n  momentum: 0.9",
    );
    check_resume("ewc", "    lambda: 100.0\n", sgd, Expect::Checkpoint);
}

#[test]
fn a_checkpoint_of_other_settings_is_ignored_and_a_corrupt_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("job.safetensors");
    let text = common::synthetic_yaml("ckpt", dir.path(), "  - name: l2\n    lambda: 1.0\n")
        .replace("seeds: [1, 2]", "seeds: [4]");
    assert!(run(&text, Some(&ckpt), Some(1)).is_none());
    let reference = run(&text, None, None).unwrap();
    // Another lambda: the checkpoint is not this job's, so the run starts from task 0.
    let other = text.replace("lambda: 1.0", "lambda: 2.0");
    let fresh = run(&other, Some(&ckpt), None).unwrap();
    assert_eq!(fresh.result.resumed_after_task, None);
    assert_ne!(fresh.result.accuracy, reference.result.accuracy);

    std::fs::write(&ckpt, b"not a safetensors file").unwrap();
    let plan = common::plan_from(&text);
    let err = match checkpoint::load(&ckpt, &plan.jobs[0].settings) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a corrupt checkpoint loaded"),
    };
    assert!(
        err.contains("job.safetensors") && err.contains("delete it"),
        "{err}"
    );
}

#[test]
fn a_continually_selected_job_resumes_from_its_carried_strength() {
    // Every attempt of l2 at 1e9 is rejected, so the third task starts from a strength the
    // second one decayed: the resumed job must find it in the checkpoint.
    check_resume(
        "l2",
        "    lambda: 1.0e9\n",
        (
            "selection: {mode: test_oracle}",
            "selection: {mode: continual, validation_fraction: 0.2, lr_grid: [0.01, 0.001], drop_margin: 0.0, max_attempts: 2}",
        ),
        Expect::Checkpoint,
    );
}
