//! `selection: continual` (De Lange et al.'s framework, `runner::continual`): its plan-time
//! checks; the acceptance rule, decay, carry-over and retraining as the job records them; the
//! rollback (a kept training equals the fixed job at its rate and strength, so neither the
//! fine-tunes nor the rejected attempts left a trace); and the honesty of the choice (shuffled
//! test labels change no choice).

mod common;

use std::path::Path;

use clbench::config::{Plan, Selection};
use clbench::results::{ContinualChoice, ContinualOutcome, JobResult};
use clbench::strategy::Registry;

/// The synthetic experiment of `common::synthetic_yaml` with its `selection:` line replaced.
fn yaml(out: &Path, strategies: &str, selection: &str) -> String {
    common::synthetic_yaml("continual", out, strategies)
        .replace("selection: {mode: test_oracle}", selection)
}

fn plan_error(text: &str) -> String {
    let registry = Registry::load().unwrap();
    match Plan::from_str(text, Path::new("sel.yaml"), &registry) {
        Ok(_) => panic!("planned:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A strength so large that the method cannot learn the new task: every attempt is rejected.
const FROZEN_L2: &str = "  - name: l2\n    lambda: 1.0e9\n";

/// `selection: continual` with one learning rate (so the fixed job to compare with is known),
/// every attempt held to the fine-tuned accuracy itself.
fn strict(extra: &str) -> String {
    format!(
        "selection: {{mode: continual, validation_fraction: 0.2, lr_grid: [0.01], drop_margin: 0.0{extra}}}"
    )
}

#[test]
fn continual_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    for (selection, expected) in [
        ("{mode: continual, drop_margin: 1.5}", "drop_margin"),
        ("{mode: continual, decay: 1.0}", "decay"),
        ("{mode: continual, lr_grid: []}", "lr_grid"),
        ("{mode: continual, lr_grid: [0.1, -1.0]}", "lr_grid"),
        ("{mode: continual, max_attempts: 0}", "max_attempts"),
        ("{mode: holdout, drop_margin: 0.2}", "mode: continual"),
        ("{mode: continual, search_seeds: [0]}", "search_seeds"),
    ] {
        let text = yaml(dir.path(), FROZEN_L2, &format!("selection: {selection}"));
        let message = plan_error(&text);
        assert!(
            message.contains(expected) && message.contains("sel.yaml:"),
            "{selection}: {message}"
        );
    }
    let registry = Registry::load().unwrap();
    let text = yaml(dir.path(), FROZEN_L2, "selection: {mode: continual}");
    let plan = Plan::from_str(&text, Path::new("sel.yaml"), &registry).unwrap();
    let Selection::Continual(c) = &plan.selection else {
        panic!("not continual: {:?}", plan.selection)
    };
    // CLsurvey's defaults (src/framework/main.py).
    assert_eq!(c.lr_grid, vec![1e-2, 5e-3, 1e-3, 5e-4, 1e-4]);
    assert_eq!((c.drop_margin, c.decay, c.max_attempts), (0.2, 0.5, 10));
    assert!(c.carry_over && !c.retrain);
    // The settings are part of every job's identity, and no job searches.
    assert!(plan
        .jobs
        .iter()
        .all(|j| j.settings.get("continual").is_some()));
    assert!(!plan.searches());
}

/// Checks the record of every task against the rule: an attempt is accepted exactly when its
/// held-out accuracy reaches `(1 - p) A_ft`, A_ft is the best fine-tune and its rate the one
/// chosen.
fn check_rule(choices: &[ContinualChoice], drop_margin: f64) {
    for c in choices {
        let best = c
            .lr_search
            .iter()
            .map(|s| s.accuracy)
            .fold(f64::MIN, f64::max);
        assert_eq!(c.ft_accuracy, best);
        let first_best = c.lr_search.iter().find(|s| s.accuracy == best).unwrap();
        assert_eq!(c.lr, first_best.lr);
        match c.threshold {
            None => assert_eq!(c.outcome, ContinualOutcome::NotDecayed),
            Some(threshold) => {
                assert!((threshold - (1.0 - drop_margin) * best).abs() < 1e-12);
                for a in &c.attempts {
                    if c.outcome != ContinualOutcome::Retrained {
                        assert_eq!(a.accepted, a.accuracy >= threshold, "{c:?}");
                    }
                }
            }
        }
    }
}

fn run(text: &str) -> JobResult {
    common::run_first_job(text).0
}

#[test]
fn a_rejected_strength_decays_and_the_last_attempt_is_the_fixed_job_at_its_strength() {
    let dir = tempfile::tempdir().unwrap();
    let continual = run(&yaml(dir.path(), FROZEN_L2, &strict(", max_attempts: 2")));
    check_rule(&continual.continual, 0.0);
    assert_eq!(continual.continual.len(), 3);
    assert_eq!(continual.continual[0].outcome, ContinualOutcome::NotDecayed);
    let second = &continual.continual[1];
    assert_eq!(second.outcome, ContinualOutcome::KeptLast, "{second:?}");
    let tried: Vec<f64> = second
        .attempts
        .iter()
        .map(|a| a.strengths["lambda"])
        .collect();
    assert_eq!(tried, vec![1e9, 5e8]);
    assert_eq!(second.strengths["lambda"], 5e8);
    // CLsurvey carries the strength decayed once more after the last failed attempt.
    assert_eq!(second.carried["lambda"], 2.5e8);
    assert_eq!(
        continual.continual[2].attempts[0].strengths["lambda"],
        2.5e8
    );

    // Rollback: on two tasks, the continual job kept the second attempt (5e8) of task 2 after
    // one fine-tune and a rejected attempt at 1e9, all from the task's start;
    // the fixed job at 5e8 and the same rate (the strength does nothing on task 1, which has no
    // penalty) must give the same numbers, bit for bit.
    let two_tasks = |text: String| text.replace("[[0, 1], [2, 3], [4, 5]]", "[[0, 1], [2, 3]]");
    let continual = run(&two_tasks(yaml(
        dir.path(),
        FROZEN_L2,
        &strict(", max_attempts: 2"),
    )));
    let fixed = run(&two_tasks(yaml(
        dir.path(),
        "  - name: l2\n    lambda: 5.0e8\n",
        "selection: {mode: holdout, validation_fraction: 0.2}",
    )));
    assert_eq!(continual.continual[1].strengths["lambda"], 5e8);
    assert_eq!(continual.accuracy, fixed.accuracy);
    assert_eq!(continual.curve.len(), fixed.curve.len());
    for (a, b) in continual.curve.iter().zip(&fixed.curve) {
        assert_eq!((a.task_loss, a.step), (b.task_loss, b.step));
    }
}

#[test]
fn an_accepted_attempt_after_the_fine_tunes_is_the_fixed_job() {
    let dir = tempfile::tempdir().unwrap();
    // Everything is accepted (drop margin 1: threshold 0), after three fine-tunes per task at
    // other rates than the one kept: they must leave no trace.
    let entry = "  - name: ewc\n    lambda: 100.0\n";
    let continual = run(&yaml(
        dir.path(),
        entry,
        "selection: {mode: continual, validation_fraction: 0.2, lr_grid: [0.01, 0.5, 0.0001], drop_margin: 1.0}",
    ));
    check_rule(&continual.continual, 1.0);
    assert!(
        continual.continual.iter().all(|c| c.lr == 0.01),
        "{:?}",
        continual.continual
    );
    let fixed = run(&yaml(
        dir.path(),
        entry,
        "selection: {mode: holdout, validation_fraction: 0.2}",
    ));
    assert_eq!(continual.accuracy, fixed.accuracy);
    assert!(continual.timings.selection_s > 0.0);
}

#[test]
fn carry_over_starts_the_next_task_from_the_decayed_strength_and_reset_from_the_configured() {
    let dir = tempfile::tempdir().unwrap();
    let starts = |extra: &str| -> Vec<f64> {
        run(&yaml(dir.path(), FROZEN_L2, &strict(extra)))
            .continual
            .iter()
            .skip(1)
            .map(|c| c.attempts[0].strengths["lambda"])
            .collect()
    };
    assert_eq!(starts(", max_attempts: 2"), vec![1e9, 2.5e8]);
    assert_eq!(
        starts(", max_attempts: 2, carry_over: false"),
        vec![1e9, 1e9]
    );
}

#[test]
fn retrain_trains_once_more_at_the_strength_never_tried() {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml(
        dir.path(),
        FROZEN_L2,
        &strict(", max_attempts: 2, retrain: true, carry_over: false"),
    );
    let result = run(&text);
    let second = &result.continual[1];
    assert_eq!(second.outcome, ContinualOutcome::Retrained);
    let tried: Vec<f64> = second
        .attempts
        .iter()
        .map(|a| a.strengths["lambda"])
        .collect();
    assert_eq!(tried, vec![1e9, 5e8, 2.5e8]);
    assert_eq!(second.strengths["lambda"], 2.5e8);
}

#[test]
fn a_method_without_strengths_gets_the_learning_rate_search_only() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(&yaml(
        dir.path(),
        "  - name: naive\n",
        "selection: {mode: continual, validation_fraction: 0.2, lr_grid: [0.01, 0.001]}",
    ));
    assert!(result
        .continual
        .iter()
        .all(|c| c.outcome == ContinualOutcome::NotDecayed
            && c.attempts.len() == 1
            && c.lr_search.len() == 2
            && c.strengths.is_empty()));
}

#[test]
fn facil_searches_the_three_largest_rates_below_the_first_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let result = run(&yaml(
        dir.path(),
        "  - name: naive\n",
        "selection: {mode: continual, validation_fraction: 0.2, later_lrs: below_first, \
         lr_grid: [0.5, 0.05, 0.01, 0.005, 0.001, 0.0005]}",
    ));
    let first = result.continual[0].lr;
    for c in &result.continual[1..] {
        let lrs: Vec<f64> = c.lr_search.iter().map(|s| s.lr).collect();
        let mut expected: Vec<f64> = [0.5, 0.05, 0.01, 0.005, 0.001, 0.0005]
            .into_iter()
            .filter(|&lr| lr < first)
            .take(3)
            .collect();
        if expected.is_empty() {
            expected = vec![first];
        }
        assert_eq!(lrs, expected);
    }
}

/// The honesty test: the same MNIST-format data twice, the second with its test labels
/// shuffled. Every choice (rates, fine-tuned accuracies, attempts, strengths) is the same bit
/// for bit, while the test accuracies the report shows change: no choice read a test label.
#[test]
fn shuffling_the_test_labels_changes_no_continual_choice() {
    use rand::{seq::SliceRandom, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let data = clbench::data::synthetic(&clbench::data::SyntheticSpec {
        seed: 5,
        train_per_class: 40,
        test_per_class: 30,
        noise: 0.9,
        ..Default::default()
    })
    .unwrap();
    let mut shuffled = data.test.labels.clone();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    let mut outcomes = Vec::new();
    for (name, labels) in [("plain", &data.test.labels), ("shuffled", &shuffled)] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        common::write_idx(&folder, "train", &data.train, &data.train.labels);
        common::write_idx(&folder, "t10k", &data.test, labels);
        let text = yaml(
            dir.path(),
            "  - name: ewc\n    lambda: 1.0e4\n",
            "selection: {mode: continual, validation_fraction: 0.2, lr_grid: [0.05, 0.01, 0.001], drop_margin: 0.05, max_attempts: 3}",
        )
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!("  name: mnist\n  dir: {}\n  download: false", folder.display()),
        );
        outcomes.push(run(&text));
    }
    let (plain, shuffled) = (&outcomes[0], &outcomes[1]);
    let searched: Vec<f64> = plain
        .continual
        .iter()
        .flat_map(|c| c.lr_search.iter().map(|s| s.accuracy))
        .collect();
    assert!(
        searched.iter().any(|a| (a - searched[0]).abs() > 1e-9),
        "every fine-tune scored the same: {searched:?}"
    );
    let choices = |r: &JobResult| -> Vec<ContinualChoice> {
        r.continual
            .iter()
            .map(|c| ContinualChoice {
                search_s: 0.0,
                ..c.clone()
            })
            .collect()
    };
    assert_eq!(choices(plain), choices(shuffled));
    assert_ne!(plain.accuracy, shuffled.accuracy);
}

#[test]
fn the_report_tables_every_task_choice_and_names_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml(
        dir.path(),
        &format!("  - name: naive\n{FROZEN_L2}"),
        &strict(", max_attempts: 2"),
    );
    let file = dir.path().join("continual.yaml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(["run", "--quiet", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folder = dir.path().join("continual");
    for page in ["index.html", "README.md"] {
        let text = std::fs::read_to_string(folder.join(page)).unwrap();
        assert!(
            text.contains("Continual selection: the choice on each task"),
            "{page}"
        );
        // l2's second task: two attempts, 1e9 rejected, 5e8 kept as the last.
        assert!(text.contains("lambda=5e8"), "{page}");
        assert!(text.contains("kept last 2"), "{page}");
        assert!(text.contains("chosen continually, task by task"), "{page}");
    }
    let csv = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    assert!(csv.contains("continual"), "{csv}");
}

#[test]
fn compare_pairs_each_strategy_of_two_folders_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let strategies = format!("  - name: naive\n{FROZEN_L2}");
    let run_named = |name: &str, selection: &str| {
        let text = yaml(dir.path(), &strategies, selection)
            .replace("name: continual\n", &format!("name: {name}\n"));
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clbench"))
            .args(["run", "--quiet", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.path().join(name)
    };
    let a = run_named(
        "held",
        "selection: {mode: holdout, validation_fraction: 0.2}",
    );
    let b = run_named("chosen", &strict(", max_attempts: 2"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(["compare", a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("B = chosen: configurations chosen continually"),
        "{text}"
    );
    for strategy in ["| naive |", "| l2 |"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(strategy))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains("(n=2)"), "{row}");
    }
}

/// The other half of the honesty test: two datasets that differ only in the held-out images of
/// the first task's classes (inverted in the second). The first task's choice sees them (its
/// recorded fine-tuned accuracy changes), but nothing after it may: every later choice and the
/// whole accuracy matrix stay the same, bit for bit, so no later task's choice read an earlier
/// task's held-out data.
#[test]
fn an_earlier_tasks_held_out_data_changes_no_later_choice() {
    let dir = tempfile::tempdir().unwrap();
    let data = clbench::data::synthetic(&clbench::data::SyntheticSpec {
        seed: 5,
        train_per_class: 40,
        test_per_class: 30,
        noise: 0.9,
        ..Default::default()
    })
    .unwrap();
    let holdout = clbench::scenario::Holdout {
        fraction: 0.2,
        seed: 0,
    };
    let held = clbench::scenario::holdout_mask(&data.train, holdout);
    let mut altered = data.train.clone();
    let size = altered.channels * altered.rows * altered.cols;
    let mut changed = 0;
    for (i, (&h, &label)) in held.iter().zip(&data.train.labels).enumerate() {
        if h && label < 2 {
            for p in &mut altered.images[i * size..(i + 1) * size] {
                *p = 255 - *p;
            }
            changed += 1;
        }
    }
    assert!(changed > 0);
    let mut outcomes = Vec::new();
    for (name, train) in [("plain", &data.train), ("altered", &altered)] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        common::write_idx(&folder, "train", train, &train.labels);
        common::write_idx(&folder, "t10k", &data.test, &data.test.labels);
        // One rate, so the first task's choice cannot change what is trained after it; a
        // strength strong enough that later tasks decay (and read their own data again).
        let text = yaml(
            dir.path(),
            "  - name: l2\n    lambda: 1.0e4\n",
            "selection: {mode: continual, validation_fraction: 0.2, lr_grid: [0.01], max_attempts: 3}",
        )
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!(
                "  name: mnist\n  dir: {}\n  download: false",
                folder.display()
            ),
        );
        outcomes.push(run(&text));
    }
    let (plain, altered) = (&outcomes[0], &outcomes[1]);
    assert_ne!(
        plain.continual[0].ft_accuracy,
        altered.continual[0].ft_accuracy
    );
    let later = |r: &JobResult| -> Vec<ContinualChoice> {
        r.continual[1..]
            .iter()
            .map(|c| ContinualChoice {
                search_s: 0.0,
                ..c.clone()
            })
            .collect()
    };
    assert!(
        later(plain).iter().any(|c| c.attempts.len() > 1),
        "{:?}",
        later(plain)
    );
    assert_eq!(later(plain), later(altered));
    assert_eq!(plain.accuracy, altered.accuracy);
}
