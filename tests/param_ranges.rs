//! Parameter ranges: every value outside what a plugin or section allows is an error that names
//! the file, line and column, the parameter, the value and the range, when the plan is built
//! (before any data is read or any job trains). The contract tests iterate the registries, so a
//! plugin file dropped into `strategies/`, `models/` or `datasets/` is covered here unedited.

mod common;

use std::path::Path;

use clbench::config::Plan;
use clbench::core::param_spec::{check_ranges, Bound, Range};
use clbench::core::ParamSpec;
use clbench::data::DatasetRegistry;
use clbench::model::ModelRegistry;
use clbench::strategy::Registry;

/// The plan error for `text`, which must be rejected, as the CLI prints it.
fn plan_error(text: &str) -> String {
    let registry = Registry::load().unwrap();
    match Plan::from_str(text, Path::new("bad.yaml"), &registry) {
        Ok(plan) => panic!("accepted, with {} jobs:\n{text}", plan.jobs.len()),
        Err(e) => e.to_string(),
    }
}

/// The synthetic experiment of `tests/common` with one strategy entry.
fn with_strategy(entry: &str) -> String {
    common::synthetic_yaml("ranges", Path::new("/nonexistent"), entry)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in\n{text}"))
        + 1
}

/// Asserts `err` is located at the line of `needle` and contains every one of `parts`.
fn assert_located(err: &str, text: &str, needle: &str, parts: &[&str]) {
    let line = line_of(text, needle);
    assert!(
        err.starts_with(&format!("bad.yaml:{line}:")),
        "not at line {line}: {err}"
    );
    for part in parts {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}

/// Asserts that a file with the single strategy entry `entry` is refused at the line holding
/// `needle`, with every one of `parts` in the message.
fn assert_entry_refused(entry: &str, needle: &str, parts: &[&str]) {
    let text = with_strategy(entry);
    assert_located(&plan_error(&text), &text, needle, parts);
}

// The table of issue 14: each input that was accepted (or failed only after training started)
// is now a located error at plan time, one test a row.

#[test]
fn a_negative_ewc_lambda_is_refused() {
    assert_entry_refused(
        "  - name: ewc\n    lambda: -5\n",
        "lambda: -5",
        &["strategy `ewc`", "`lambda` is -5", "a finite number >= 0"],
    );
}

#[test]
fn a_negative_si_xi_is_refused() {
    assert_entry_refused(
        "  - name: si\n    xi: -1\n",
        "xi: -1",
        &["`xi` is -1", "a finite number > 0"],
    );
}

#[test]
fn zero_draws_of_a_sampled_fisher_are_refused() {
    assert_entry_refused(
        "  - name: ewc\n    fisher: sampled\n    draws: 0\n",
        "draws: 0",
        &["`draws` is 0", "a whole number >= 1"],
    );
}

#[test]
fn a_negative_online_ewc_gamma_is_refused() {
    assert_entry_refused(
        "  - name: online_ewc\n    gamma: -0.5\n",
        "gamma: -0.5",
        &["`gamma` is -0.5", "a number in [0, 1]"],
    );
}

#[test]
fn a_zero_lwf_temperature_is_refused() {
    assert_entry_refused(
        "  - name: lwf\n    temperature: 0\n",
        "temperature: 0",
        &["`temperature` is 0", "a finite number > 0"],
    );
}

#[test]
fn a_zero_sample_cap_is_refused() {
    assert_entry_refused(
        "  - name: ewc\n    max_samples: 0\n",
        "max_samples: 0",
        &["`max_samples` is 0", "a whole number >= 1"],
    );
}

#[test]
fn nan_and_infinite_strengths_are_refused() {
    for value in [".nan", ".inf", "-.inf"] {
        assert_entry_refused(
            &format!("  - name: l2\n    lambda: {value}\n"),
            "lambda: ",
            &["strategy `l2`", "`lambda` is", "give a finite number"],
        );
    }
    // In a grid, the one bad point is named.
    assert_entry_refused(
        "  - name: l2\n    lambda: [1.0, .nan]\n",
        "lambda: [1.0, .nan]",
        &["`lambda` is NaN"],
    );
}

#[test]
fn eleven_synthetic_classes_plan_and_a_task_beyond_them_is_refused() {
    // `classes: 11` is valid (the scenario uses 0..=5); a task naming class 11 is not.
    let base = with_strategy("  - name: naive\n")
        .replace("synthetic: {seed: 3,", "synthetic: {classes: 11, seed: 3,");
    let plan = common::plan_from(&base);
    assert_eq!(plan.jobs.len(), 2);
    // And it trains (the issue saw a panic here once).
    let (result, _) = common::run_first_job(&base);
    assert_eq!(result.accuracy.len(), 3);
    let text = base.replace("[4, 5]]", "[4, 11]]");
    assert_located(
        &plan_error(&text),
        &text,
        "tasks:",
        &["class 11", "11 classes"],
    );
    let text = base.replace("classes: 11,", "classes: 300,");
    assert_located(
        &plan_error(&text),
        &text,
        "classes: 300",
        &["classes", "300"],
    );
}

// The framework's sections.

#[test]
fn training_scenario_and_runner_numbers_are_located() {
    let base = with_strategy("  - name: naive\n");
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "lr: 0.01",
            "lr: -0.01",
            "lr: -0.01",
            &["training.lr is -0.01", "> 0"],
        ),
        ("lr: 0.01", "lr: .nan", "lr: .nan", &["training.lr is NaN"]),
        (
            "lr: 0.01",
            "lr: 0.01\n  momentum: 1.0",
            "momentum: 1.0",
            &["training.momentum is 1", "[0, 1)"],
        ),
        (
            "lr: 0.01",
            "lr: 0.01\n  betas: [0.9, 1.5]",
            "betas:",
            &["training.betas[1] is 1.5"],
        ),
        (
            "batch_size: 16",
            "batch_size: 0",
            "batch_size: 0",
            &["training.batch_size is 0", "a whole number >= 1"],
        ),
        (
            "epochs: 2",
            "epochs: 0",
            "epochs: 0",
            &["training.epochs is 0"],
        ),
        (
            "lr: 0.01",
            "lr: 0.01\n  clip_grad_norm: -1",
            "clip_grad_norm",
            &["training.clip_grad_norm is -1"],
        ),
        (
            "lr: 0.01",
            "lr: 0.01\n  lr_plateau: {patience: 5, factor: 0.5, min_lr: 1e-4}",
            "lr_plateau",
            &["training.lr_plateau.factor is 0.5", "> 1"],
        ),
        (
            "devices: [cpu]",
            "devices: [cpu]\n  threads_per_worker: 0",
            "threads_per_worker",
            &["runner.threads_per_worker is 0"],
        ),
        (
            "tasks: [[0, 1], [2, 3], [4, 5]]",
            "tasks: [[0, 1], [], [4, 5]]",
            "tasks:",
            &["scenario.tasks[1] is empty"],
        ),
    ];
    for (from, to, needle, parts) in cases {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{from} not in the base file");
        assert_located(&plan_error(&text), &text, needle, parts);
    }
    let permuted = base.replace(
        "kind: split\n  mode: task\n  tasks: [[0, 1], [2, 3], [4, 5]]",
        "kind: permuted\n  mode: domain\n  num_tasks: 100000000",
    );
    assert_located(
        &plan_error(&permuted),
        &permuted,
        "num_tasks",
        &["scenario.num_tasks is 100000000", "[1, 10000]"],
    );
    let rotated = base.replace(
        "kind: split\n  mode: task\n  tasks: [[0, 1], [2, 3], [4, 5]]",
        "kind: rotated\n  mode: domain\n  angles: [0, .nan]",
    );
    assert_located(
        &plan_error(&rotated),
        &rotated,
        "angles",
        &["scenario.angles[1] is NaN"],
    );
    // A strategy entry's own training settings get the same ranges.
    let text = with_strategy("  - name: naive\n    training: {lr: 0}\n");
    assert_located(
        &plan_error(&text),
        &text,
        "training: {lr: 0}",
        &["strategy `naive`", "training.lr is 0"],
    );
}

#[test]
fn transform_settings_are_located_at_their_key() {
    let base = with_strategy("  - name: naive\n");
    let text = base.replace(
        "model:\n",
        "transforms:\n  normalize: {mean: [0.1], std: [0.0]}\nmodel:\n",
    );
    assert_located(
        &plan_error(&text),
        &text,
        "normalize:",
        &["transforms.normalize.std[0] is 0"],
    );
    let text = base.replace("model:\n", "transforms:\n  pad: 1000\nmodel:\n");
    assert_located(
        &plan_error(&text),
        &text,
        "pad: 1000",
        &["transforms.pad is 1000"],
    );
}

#[test]
fn an_empty_or_enormous_grid_is_refused_before_it_is_expanded() {
    let text = with_strategy("  - name: l2\n    lambda: []\n");
    assert_located(
        &plan_error(&text),
        &text,
        "lambda: []",
        &["`lambda` is an empty list"],
    );
    let axis = |n: usize| {
        (0..n)
            .map(|i| format!("{}.0", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // 1000 x 1000 points x 2 seeds: refused from the lists' lengths, in milliseconds.
    let text = with_strategy(&format!(
        "  - name: ewc\n    lambda: [{}]\n    max_samples: [{}]\n",
        axis(1000),
        (1..=1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let started = std::time::Instant::now();
    let err = plan_error(&text);
    assert!(err.contains("1000000 points"), "{err}");
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

// Contracts over the registries.

/// A value just outside `range`, or `None` for a range without a bound to step over.
fn outside(range: &Range) -> Option<f64> {
    match *range {
        Range::Any => None,
        Range::Count => Some(0.0),
        Range::Number { min, max } => match (min, max) {
            (Bound::Inclusive(m), _) => Some(m - 1.0),
            (Bound::Exclusive(m), _) => Some(m),
            (Bound::Unbounded, Bound::Inclusive(m)) => Some(m + 1.0),
            (Bound::Unbounded, Bound::Exclusive(m)) => Some(m),
            (Bound::Unbounded, Bound::Unbounded) => Some(f64::NAN),
        },
    }
}

/// `value` as YAML for parameter `spec`: a list when its default is one (widths), a whole
/// number for a count.
fn yaml_value(value: f64, default: Option<&serde_json::Value>) -> String {
    let number = if value.fract() == 0.0 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    };
    match default {
        Some(serde_json::Value::Array(_)) => format!("[{number}]"),
        _ => number,
    }
}

/// Every plugin's defaults lie within its own declared ranges, and every declared parameter is
/// one its config accepts.
fn check_defaults(kind: &str, name: &str, specs: &[ParamSpec], resolve: ResolveFn) {
    let defaults = resolve(&serde_yaml::Mapping::new())
        .unwrap_or_else(|e| panic!("{kind} `{name}`: its defaults do not resolve: {e}"));
    if let Err(e) = check_ranges(specs, &defaults) {
        panic!("{kind} `{name}`: a default is outside its declared range: {e}");
    }
    for spec in specs {
        if defaults.get(spec.name).is_none() {
            // Declared but left out of the resolved form at its default: the config must still
            // accept the key (with its default's value, which is all we know here only for
            // keys that are in `defaults`), so at least check it is not unknown.
            let mut m = serde_yaml::Mapping::new();
            m.insert(spec.name.into(), serde_yaml::Value::Null);
            if let Err(e) = resolve(&m) {
                assert!(
                    !e.contains("unknown field"),
                    "{kind} `{name}` declares `{}`, which its config does not know: {e}",
                    spec.name
                );
            }
        }
    }
}

type ResolveFn = fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>;

/// One plugin's contract: its defaults are in range, and a value just outside each declared
/// range, written by `file_with(param, value)` into an experiment, is refused at its line with
/// `<kind> `<name>``, the parameter and (when `range_in_message`) the range. Returns how many
/// ranges it stepped over.
fn check_plugin(
    kind: &str,
    name: &str,
    specs: &[ParamSpec],
    resolve: ResolveFn,
    file_with: impl Fn(&str, &str) -> String,
    range_in_message: bool,
) -> usize {
    check_defaults(kind, name, specs, resolve);
    let defaults = resolve(&serde_yaml::Mapping::new()).unwrap();
    let mut checked = 0;
    for spec in specs {
        let Some(bad) = outside(&spec.range) else {
            continue;
        };
        let value = yaml_value(bad, defaults.get(spec.name));
        let text = file_with(spec.name, &value);
        let range = spec.range.to_string();
        let mut parts = vec![format!("{kind} `{name}`"), spec.name.to_string()];
        if range_in_message {
            parts.push(format!("`{}`", spec.name));
            parts.push(range);
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        assert_located(
            &plan_error(&text),
            &text,
            &format!("{}: {value}", spec.name),
            &parts,
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_strategy_parameter_out_of_range_is_a_located_error() {
    let checked: usize = Registry::load()
        .unwrap()
        .iter()
        .map(|reg| {
            check_plugin(
                "strategy",
                reg.name,
                reg.params,
                reg.resolve,
                |param, value| {
                    with_strategy(&format!("  - name: {}\n    {param}: {value}\n", reg.name))
                },
                true,
            )
        })
        .sum();
    assert!(checked >= 15, "only {checked} ranged strategy parameters");
}

#[test]
fn every_model_parameter_out_of_range_is_a_located_error() {
    let checked: usize = ModelRegistry::load()
        .unwrap()
        .iter()
        .map(|reg| {
            check_plugin(
                "model",
                reg.name,
                reg.params,
                reg.resolve,
                |param, value| {
                    with_strategy("  - name: naive\n").replace(
                        "model:\n  hidden: [32]",
                        &format!("model:\n  name: {}\n  {param}: {value}", reg.name),
                    )
                },
                true,
            )
        })
        .sum();
    assert!(checked >= 12, "only {checked} ranged model parameters");
}

#[test]
fn every_dataset_parameter_out_of_range_is_a_located_error() {
    let checked: usize = DatasetRegistry::load()
        .unwrap()
        .iter()
        .map(|reg| {
            // A dataset may check a value itself before the declared ranges are consulted
            // (synthetic's spec does); either way the error names the parameter where it is.
            check_plugin(
                "dataset",
                reg.name,
                reg.params,
                reg.resolve,
                |param, value| {
                    with_strategy("  - name: naive\n").replace(
                        "dataset:\n  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
                        &format!("dataset:\n  name: {}\n  {param}: {value}", reg.name),
                    )
                },
                false,
            )
        })
        .sum();
    assert!(checked >= 7, "only {checked} ranged dataset parameters");
}
