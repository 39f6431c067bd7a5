//! Selection modes end to end: plan-time checks of `selection:`, a holdout search whose choice
//! follows the validation scores and whose reported runs never train on the held-out samples,
//! first_tasks reporting only the remaining tasks, and every table saying how the
//! configurations were chosen.

mod common;

use std::path::Path;
use std::process::Command;

use clbench::config::{Phase, Plan, Selection};
use clbench::results::{metrics::acc, JobResult};
use clbench::strategy::Registry;

/// The synthetic experiment of `common::synthetic_yaml` with its `selection:` line replaced.
fn yaml(name: &str, out: &Path, strategies: &str, selection: &str) -> String {
    common::synthetic_yaml(name, out, strategies)
        .replace("selection: {mode: test_oracle}", selection)
}

fn plan_error(text: &str) -> String {
    let registry = Registry::load().unwrap();
    match Plan::from_str(text, Path::new("sel.yaml"), &registry) {
        Ok(_) => panic!("planned:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const GRID: &str = "  - name: naive\n  - name: l2\n    lambda: [0.01, 100.0]\n";

#[test]
fn a_grid_defaults_to_holdout_and_a_single_setting_to_fixed() {
    let dir = Path::new("/nonexistent");
    let plan = common::plan_from(&yaml("s", dir, GRID, ""));
    assert_eq!(
        plan.selection.mode(),
        clbench::config::selection::SelectionMode::Holdout
    );
    // Search runs for the swept entry only (2 points x search seed 0), naive's runs directly.
    let search: Vec<_> = plan
        .jobs
        .iter()
        .filter(|j| j.phase == Phase::Search)
        .collect();
    assert_eq!(search.len(), 2);
    assert!(search.iter().all(|j| j.seed == 0 && j.strategy == "l2"));
    let naive: Vec<_> = plan.jobs.iter().filter(|j| j.strategy == "naive").collect();
    assert_eq!(naive.len(), 2);
    assert!(naive
        .iter()
        .all(|j| j.phase == Phase::Report && j.view.holdout.is_some()));
    // Holdout runs see other data than full-data runs, so they have other ids.
    let oracle = common::plan_from(&yaml("s", dir, GRID, "selection: {mode: test_oracle}"));
    let oracle_naive = oracle.jobs.iter().find(|j| j.strategy == "naive").unwrap();
    assert_ne!(naive[0].id, oracle_naive.id);
    assert_eq!(oracle.jobs.len(), 2 + 2 * 2);

    let single = common::plan_from(&yaml("s", dir, "  - name: naive\n  - name: l2\n", ""));
    assert_eq!(single.selection, Selection::Fixed);
    assert!(single
        .jobs
        .iter()
        .all(|j| j.phase == Phase::Report && j.view.holdout.is_none()));
}

#[test]
fn bad_selections_are_located_errors() {
    let dir = Path::new("/nonexistent");
    for (selection, expected) in [
        (
            "selection: {mode: fixed}",
            "selection: fixed runs one setting per strategy",
        ),
        (
            "selection: {mode: holdout, search_seeds: [2, 5]}",
            "search seed 2 is also a report seed",
        ),
        (
            "selection: {mode: holdout, search_seeds: []}",
            "search_seeds is empty",
        ),
        (
            "selection: {mode: holdout, validation_fraction: 1.0}",
            "validation_fraction must be between 0 and 1",
        ),
        (
            "selection: {mode: holdout, validation_fraction: .nan}",
            "validation_fraction must be between 0 and 1",
        ),
        (
            "selection: {mode: first_tasks}",
            "first_tasks needs `tasks`",
        ),
        (
            "selection: {mode: first_tasks, tasks: 3}",
            "between 1 and 2",
        ),
        (
            "selection: {mode: test_oracle, validation_fraction: 0.2}",
            "applies to modes holdout and continual only",
        ),
        (
            "selection: {mode: fixed, tasks: 1}",
            "applies to mode: first_tasks only",
        ),
        ("selection: {mode: best}", "unknown variant `best`"),
        ("selection: {mdoe: holdout}", "unknown field `mdoe`"),
    ] {
        let text = yaml("s", dir, GRID, selection);
        let message = plan_error(&text);
        assert!(message.contains(expected), "{selection}: {message}");
        assert!(
            !message.contains("  "),
            "{selection}: a run of spaces: {message}"
        );
        // Every message names the file and a line.
        assert!(message.starts_with("sel.yaml:"), "{selection}: {message}");
        let line: usize = message.split(':').nth(1).unwrap().parse().unwrap_or(0);
        assert!(line > 0, "{selection}: {message}");
    }
}

fn clbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(args)
        .output()
        .expect("running clbench")
}

/// Writes `text` to `<dir>/<name>.yaml`, runs it quietly and checks that it succeeded; returns
/// the file.
fn run_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).unwrap();
    let out = clbench(&["run", "--quiet", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

fn results(folder: &Path) -> Vec<JobResult> {
    clbench::report::load_results(folder).unwrap()
}

#[test]
fn holdout_chooses_on_validation_and_reports_on_test() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny and a huge L2 strength: far apart on validation data.
    let text = yaml(
        "hold",
        dir.path(),
        GRID,
        "selection: {mode: holdout, validation_fraction: 0.25, search_seeds: [7]}",
    );
    let file = run_file(dir.path(), "hold", &text);
    let folder = dir.path().join("hold");
    let all = results(&folder);
    let is_search = |r: &JobResult| r.settings.get("phase").is_some();
    let search: Vec<&JobResult> = all.iter().filter(|r| is_search(r)).collect();
    let reported: Vec<&JobResult> = all.iter().filter(|r| !is_search(r)).collect();
    assert_eq!(search.len(), 2, "two grid points on one search seed");
    assert!(search
        .iter()
        .all(|r| r.seed == 7 && r.test_accuracy.is_some()));
    // naive and the chosen l2 on the report seeds 1 and 2.
    assert_eq!(reported.len(), 4);
    assert!(reported.iter().all(|r| [1, 2].contains(&r.seed)));
    // The choice is the best validation ACC; the test matrices recorded beside it differ.
    let best = search
        .iter()
        .max_by(|a, b| acc(&a.accuracy).total_cmp(&acc(&b.accuracy)))
        .unwrap();
    let chosen: Vec<&&JobResult> = reported.iter().filter(|r| r.strategy == "l2").collect();
    assert!(
        chosen.iter().all(|r| r.params == best.params),
        "{:?} vs {:?}",
        chosen[0].params,
        best.params
    );
    for r in &search {
        let test = r.test_accuracy.as_ref().unwrap();
        assert_eq!(
            (test.len(), test[0].len()),
            (3, 3),
            "a test matrix beside the validation one"
        );
    }
    // Reported runs trained without the held-out quarter: their view records the holdout.
    assert!(reported
        .iter()
        .all(|r| r.settings["view"]["holdout"]["fraction"] == 0.25));

    // Every table says how the configurations were chosen.
    let best_md = std::fs::read_to_string(folder.join("best.md")).unwrap();
    assert!(
        best_md.contains("chosen on validation data (25%"),
        "{best_md}"
    );
    let csv = std::fs::read_to_string(folder.join("summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",selection,"));
    assert_eq!(
        csv.matches("search run (scored on the selection data; not reported)")
            .count(),
        2
    );
    let readme = std::fs::read_to_string(folder.join("README.md")).unwrap();
    assert!(
        readme.contains("**Configurations chosen on validation data"),
        "{readme}"
    );
    let svg = std::fs::read_to_string(folder.join("sensitivity.svg")).unwrap();
    assert!(
        svg.contains("square: chosen on validation"),
        "sensitivity chart lacks the marks"
    );
    // The summary table holds only the reported runs: one l2 configuration.
    let html = std::fs::read_to_string(folder.join("index.html")).unwrap();
    let other = if best.params["lambda"] == 100.0 {
        "lambda=0.01"
    } else {
        "lambda=100.0"
    };
    let summary =
        &html[html.find("<h2>Summary").unwrap()..html.find("<h2>Chosen configuration").unwrap()];
    assert!(
        !summary.contains(other),
        "the unchosen value is in the summary:\n{summary}"
    );

    // The choice reads validation scores only: rewrite the saved search results so that the
    // point not chosen wins on validation and loses on test, and a rerun must choose it.
    let unchosen = search.iter().find(|r| r.params != best.params).unwrap();
    for r in &search {
        let mut edited = (*r).clone();
        let (validation, test) = if r.id == unchosen.id {
            (1.0, 0.0)
        } else {
            (0.0, 1.0)
        };
        edited.accuracy = vec![vec![validation; 3]; 3];
        edited.test_accuracy = Some(vec![vec![test; 3]; 3]);
        let path = folder.join("jobs").join(format!("{}.json", r.id));
        std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    }
    let rerun = clbench(&["run", "--quiet", file.to_str().unwrap()]);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let now = results(&folder);
    let reported_l2 = now
        .iter()
        .filter(|r| r.strategy == "l2" && r.settings.get("phase").is_none())
        .filter(|r| r.params == unchosen.params)
        .count();
    assert_eq!(
        reported_l2, 2,
        "the validation winner ran on both report seeds"
    );
    let old_choice = if unchosen.params["lambda"] == 100.0 {
        "lambda=0.01"
    } else {
        "lambda=100.0"
    };
    let readme = std::fs::read_to_string(folder.join("README.md")).unwrap();
    let summary_now = &readme[..readme.find("## Chosen configuration").unwrap()];
    assert!(
        !summary_now.contains(old_choice),
        "the old choice is still reported:\n{summary_now}"
    );
    let best_md = std::fs::read_to_string(folder.join("best.md")).unwrap();

    // A rerun finds everything finished; `clbench report` rebuilds the same tables.
    let again = clbench(&["run", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("skipping 2 finished job(s)")
            && stderr.contains("skipping 4 finished job(s)"),
        "{stderr}"
    );
    let rebuilt = clbench(&["report", folder.to_str().unwrap()]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("best.md")).unwrap(),
        best_md
    );
}

#[test]
fn first_tasks_reports_only_the_remaining_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let text = yaml(
        "first",
        dir.path(),
        GRID,
        "selection: {mode: first_tasks, tasks: 1}",
    );
    run_file(dir.path(), "first", &text);
    let all = results(&dir.path().join("first"));
    for r in &all {
        let searched = r.settings.get("phase").is_some();
        // The scenario has 3 tasks: the search sees the first, the report the other two.
        let tasks = if searched { 1 } else { 2 };
        assert_eq!(r.accuracy.len(), tasks, "{}", r.id);
        assert!(r.accuracy.iter().all(|row| row.len() == tasks), "{}", r.id);
    }
    assert_eq!(
        all.iter()
            .filter(|r| r.settings.get("phase").is_some())
            .count(),
        2
    );
    let best_md = std::fs::read_to_string(dir.path().join("first/best.md")).unwrap();
    assert!(
        best_md.contains("chosen on the first 1 task(s)"),
        "{best_md}"
    );
}

/// A job id without its settings hash: `l2_lambda=30.0_seed0`.
fn label(id: &str) -> String {
    id.rsplit_once('-')
        .map_or(id, |(label, _)| label)
        .to_string()
}

/// The acceptance test of honest selection: the same MNIST-format data twice, the second copy
/// with its test labels shuffled. Every search run scores the same on validation data, bit for
/// bit, so every chosen configuration is the same, while the test accuracies (which the report
/// shows) change: the choice never read a test label.
#[test]
fn shuffling_the_test_labels_leaves_every_choice_unchanged() {
    use rand::{seq::SliceRandom, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    // Noisy enough that the grid points score apart on validation data.
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
    assert_ne!(shuffled, data.test.labels);
    let mut outcomes = Vec::new();
    for (name, test_labels) in [("plain", &data.test.labels), ("shuffled", &shuffled)] {
        let folder = dir.path().join(format!("{name}-data"));
        std::fs::create_dir_all(&folder).unwrap();
        common::write_idx(&folder, "train", &data.train, &data.train.labels);
        common::write_idx(&folder, "t10k", &data.test, test_labels);
        let strategies = "  - name: naive\n  - name: l2\n    lambda: [0.0, 30.0, 3000.0]\n  - name: ewc\n    lambda: [1.0, 1.0e5]\n";
        let text = yaml(
            name,
            dir.path(),
            strategies,
            "selection: {mode: holdout, validation_fraction: 0.2, search_seeds: [0]}",
        )
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!(
                "  name: mnist\n  dir: {}\n  download: false",
                folder.display()
            ),
        )
        .replace("seeds: [1, 2]", "seeds: [1]");
        run_file(dir.path(), name, &text);
        outcomes.push(results(&dir.path().join(name)));
    }
    let is_search = |r: &&JobResult| r.settings.get("phase").is_some();
    let searches = |all: &[JobResult]| -> Vec<(String, Vec<Vec<f64>>)> {
        all.iter()
            .filter(is_search)
            .map(|r| (label(&r.id), r.accuracy.clone()))
            .collect()
    };
    let chosen = |all: &[JobResult]| -> Vec<(String, serde_json::Value)> {
        all.iter()
            .filter(|r| !is_search(r))
            .map(|r| (r.strategy.clone(), r.params.clone()))
            .collect()
    };
    let (plain, shuffled) = (&outcomes[0], &outcomes[1]);
    // Validation scores identical, run for run (the ids' hashes differ: the data folder is one
    // of a job's settings); their spread shows the choice had something to choose.
    assert_eq!(searches(plain), searches(shuffled));
    let scores: Vec<f64> = searches(plain).iter().map(|(_, m)| acc(m)).collect();
    assert!(
        scores.iter().any(|s| (s - scores[0]).abs() > 1e-9),
        "every grid point scored the same: {scores:?}"
    );
    assert_eq!(chosen(plain), chosen(shuffled));
    // What the report shows did change.
    let test_acc = |all: &[JobResult]| -> Vec<f64> {
        all.iter()
            .filter(|r| !is_search(r))
            .map(|r| acc(&r.accuracy))
            .collect()
    };
    assert_ne!(test_acc(plain), test_acc(shuffled));
}
