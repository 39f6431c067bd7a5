//! Reports from odd data: results whose every stored number a chart or table reads holds NaN,
//! +inf, -inf, negative, zero or constant values. `write_report` must finish within seconds
//! (plotters' tick computation over an infinite range never does), without a panic, write every
//! chart as a non-empty SVG and PNG, and say in the charts how many values it left out.

use std::{
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use clbench::report::write_report;
use clbench::results::{CurvePoint, ImportanceSummary, JobResult, Metrics, Provenance, Timings};
use serde_json::{json, Value};

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// How long one report may take; a debug build writes this one in about a second.
const LIMIT: Duration = Duration::from_secs(20);

use clbench::report::CHARTS;

/// Where a result's numbers come from: `values`, cycled from `k` (so no two jobs are alike);
/// with `mixed`, only some numbers of its curve are odd, the others ordinary.
#[derive(Clone, Copy)]
struct Odd {
    values: &'static [f64],
    mixed: bool,
}

/// NaN, infinite, negative, zero and huge values, among ordinary ones.
const MIXED: Odd = Odd {
    values: &[NAN, INF, -INF, -0.5, 0.0, 1.0, 1e300, -f64::MAX, f64::MAX],
    mixed: true,
};

/// Nothing finite at all.
const NOTHING_FINITE: Odd = Odd {
    values: &[NAN, INF, -INF],
    mixed: false,
};

/// A job result of `strategy` with `params` and `seed` whose accuracy matrix is `accuracy`;
/// every other stored number a chart or table reads comes from `odd`.
fn result(
    strategy: &str,
    params: Value,
    seed: u64,
    accuracy: Vec<Vec<f64>>,
    odd: Odd,
    k: usize,
) -> JobResult {
    let pick = |i: usize| odd.values[(i + k) % odd.values.len()];
    let curve = (0..12)
        .map(|i| {
            let odd_here = !odd.mixed || i % 3 == k % 3;
            CurvePoint {
                task: i / 4,
                epoch: i % 4,
                step: 10 * (i + 1),
                task_loss: if odd_here {
                    pick(i)
                } else {
                    0.5 / (i + 1) as f64
                },
                penalty: if odd_here { pick(i + 1) } else { 0.25 },
                validation_loss: Some(pick(i + 2)),
                lr: Some(pick(i + 3)),
            }
        })
        .collect();
    let quantiles: Vec<(&str, Vec<f64>)> = if !odd.mixed {
        vec![("trunk.0.weight", (0..7).map(pick).collect())]
    } else if k.is_multiple_of(2) {
        // SI with a negative damping: its importances are negative, none a log axis can show.
        vec![
            (
                "trunk.0.weight",
                vec![-3.0, -1.0, -0.5, -0.1, -0.1, -0.1, -0.1],
            ),
            ("trunk.0.bias", vec![NAN; 7]),
        ]
    } else {
        vec![
            (
                "trunk.0.weight",
                vec![-3.0, -1.0, 0.0, 1e-3, 2.0, INF, 1e300],
            ),
            // Constant.
            ("head.weight", vec![0.25; 7]),
        ]
    };
    let importance = (0..3)
        .flat_map(|task| {
            quantiles.iter().map(move |(param, q)| ImportanceSummary {
                task,
                param: param.to_string(),
                count: 10,
                zeros: 1,
                quantiles: q.clone(),
            })
        })
        .collect();
    JobResult {
        format_version: clbench::results::FORMAT_VERSION,
        id: format!(
            "{strategy}-{}-seed{seed}",
            clbench::report::summary::params_label(&params)
        ),
        resumed_after_task: None,
        experiment: "odd".into(),
        strategy: strategy.into(),
        params,
        seed,
        metrics: Metrics::from_matrix(&accuracy),
        initial_accuracy: Some(vec![pick(0), 0.1, pick(2)]),
        chance_accuracy: Some(vec![0.5, pick(1), 0.5]),
        test_accuracy: None,
        accuracy,
        curve,
        timings: Timings {
            total_s: pick(0),
            train_s: pick(1),
            after_task_s: pick(2),
            eval_s: pick(3),
            samples_per_s: pick(4),
            selection_s: pick(5),
        },
        cost: None,
        device: "cpu".into(),
        provenance: Provenance {
            clbench_version: "test".into(),
            git_revision: "test".into(),
            torch_version: "test".into(),
            tch_version: "test".into(),
            hostname: "test".into(),
            finished_at_unix: 1_700_000_000,
        },
        config: json!({}),
        importance,
        // Gated layers: one as recorded, one with no units and one holding more than it has
        // (malformed), which the capacity chart leaves out and says so.
        continual: Vec::new(),
        capacity: (0..3)
            .flat_map(|task| {
                [("trunk.0", 3, 4), ("trunk.1", 1, 0), ("trunk.2", 9, 2)].map(
                    |(layer, held, units)| clbench::results::CapacityPoint {
                        task,
                        layer: layer.into(),
                        held,
                        units,
                    },
                )
            })
            .collect(),
        settings: json!({}),
    }
}

/// A 3×3 matrix whose entries are `cell(i, j)`.
fn matrix(cell: impl Fn(usize, usize) -> f64) -> Vec<Vec<f64>> {
    (0..3)
        .map(|i| (0..3).map(|j| cell(i, j)).collect())
        .collect()
}

/// An ordinary accuracy matrix, but for `cell` at (2, 0): the last row's first task, which ACC,
/// BWT and forgetting all read.
fn ordinary_but(cell: f64) -> Vec<Vec<f64>> {
    matrix(|i, j| {
        if (i, j) == (2, 0) {
            cell
        } else {
            0.6 + 0.05 * (i + j) as f64
        }
    })
}

/// Results of naive, joint, a configuration of constant accuracies and two swept strategies (si
/// over negative values, so on a linear axis; ewc over positive ones, on a log axis), two seeds
/// each but for one configuration of ewc: accuracies, curves, importances and timings holding
/// NaN, ±inf, negative, zero, huge and constant values.
fn odd_results() -> Vec<JobResult> {
    let mut out = Vec::new();
    for seed in [1u64, 2] {
        let huge = if seed == 1 { 1e300 } else { -1e300 };
        let s = seed as usize;
        let jobs = [
            // ACC and BWT +inf, forgetting -inf; NaN elsewhere.
            (
                "naive",
                json!({}),
                matrix(|i, j| {
                    if (i, j) == (2, 0) {
                        INF
                    } else if i < j {
                        NAN
                    } else {
                        0.5
                    }
                }),
            ),
            ("joint", json!({}), matrix(|_, _| 0.9)),
            ("constant", json!({}), matrix(|_, _| 0.0)),
            // Seeds a world apart: finite means, infinite spread.
            ("si", json!({"xi": -1.0}), ordinary_but(huge)),
            ("si", json!({"xi": 0.0}), ordinary_but(NAN)),
            (
                "si",
                json!({"xi": 1.0}),
                matrix(|i, j| -0.25 * (i + j + s) as f64),
            ),
            ("ewc", json!({"lambda": 100.0}), ordinary_but(-INF)),
            ("ewc", json!({"lambda": 1e4}), ordinary_but(0.75)),
        ];
        for (k, (strategy, params, accuracy)) in jobs.into_iter().enumerate() {
            out.push(result(strategy, params, seed, accuracy, MIXED, k + s));
        }
    }
    // One seed: an infinite ACC with no interval around it.
    out.push(result(
        "ewc",
        json!({"lambda": 1.0}),
        1,
        ordinary_but(INF),
        MIXED,
        0,
    ));
    // A truncated result: rows shorter than the tasks, the last one empty.
    let ragged = vec![vec![0.5, 0.1, 0.1], vec![0.4], vec![]];
    out.push(result("truncated", json!({}), 1, ragged, MIXED, 1));
    out
}

/// Results where no stored number is finite.
fn nothing_finite() -> Vec<JobResult> {
    let values = NOTHING_FINITE.values;
    let mut out = Vec::new();
    for seed in [1u64, 2] {
        for (k, (strategy, params)) in [
            ("naive", json!({})),
            ("joint", json!({})),
            ("si", json!({"xi": -1.0})),
            ("si", json!({"xi": 1.0})),
        ]
        .into_iter()
        .enumerate()
        {
            let accuracy = matrix(|i, j| values[(i + j + k + seed as usize) % values.len()]);
            out.push(result(strategy, params, seed, accuracy, NOTHING_FINITE, k));
        }
    }
    out
}

/// [`odd_results`] plus search runs of a holdout selection for `mas`, whose validation and
/// test matrices hold odd values too.
fn odd_results_with_search() -> Vec<JobResult> {
    let mut out = odd_results();
    for seed in [1, 2] {
        for (k, lambda) in [0.1, 1.0, 10.0].into_iter().enumerate() {
            let validation = matrix(|i, j| [NAN, 0.5, INF][(i + j + k) % 3]);
            let mut r = result("mas", json!({"lambda": lambda}), seed, validation, MIXED, k);
            r.id = format!("{}-search", r.id);
            r.settings = json!({"phase": "search"});
            r.test_accuracy = Some(matrix(|i, j| [-INF, 0.4, -0.1][(i + j + k) % 3]));
            out.push(r);
        }
        out.push(result(
            "mas",
            json!({"lambda": 1.0}),
            seed,
            matrix(|_, _| 0.8),
            MIXED,
            0,
        ));
    }
    out
}

/// Writes the report of `results` into `dir` on another thread; panics when it fails, panics or
/// takes longer than [`LIMIT`]. Returns the printed tables and how long it took.
fn report_in_time(dir: &Path, results: Vec<JobResult>) -> (String, Duration) {
    let (send, receive) = mpsc::channel();
    let out = dir.to_path_buf();
    let start = Instant::now();
    std::thread::spawn(move || {
        let text = write_report(&out, &results, None, None).map_err(|e| format!("{e:#}"));
        let _ = send.send(text);
    });
    match receive.recv_timeout(LIMIT) {
        Ok(Ok(text)) => (text, start.elapsed()),
        Ok(Err(e)) => panic!("write_report failed: {e}"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("write_report still busy after {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("write_report panicked"),
    }
}

fn check_charts(dir: &Path) {
    for chart in CHARTS {
        for ext in ["svg", "png"] {
            let path = dir.join(format!("{chart}.{ext}"));
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            assert!(size > 0, "{} missing or empty", path.display());
        }
    }
    for file in ["summary.csv", "best.md", "index.html", "README.md"] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
}

/// The length of the longest run of digits in `text`.
fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// The text of `<chart>.svg`.
fn svg(dir: &Path, chart: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{chart}.svg"))).unwrap()
}

#[test]
fn a_report_of_nan_infinite_and_negative_values_finishes_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (text, took) = report_in_time(dir.path(), odd_results());
    eprintln!("report of odd values written in {took:?}");
    check_charts(dir.path());
    // Every chart that has something it cannot show says how much it left out.
    // The heatmap shows odd cells as such (checked below) rather than leaving them out.
    for chart in CHARTS.iter().filter(|c| **c != "accuracy") {
        assert!(
            svg(dir.path(), chart).contains("left out"),
            "{chart}.svg says nothing left out"
        );
    }
    // Tables print odd numbers readably rather than failing.
    assert!(text.contains("NaN") || text.contains("inf"), "{text}");
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv.lines().count() == odd_results().len() + 1, "{csv}");
    assert!(csv.contains("NaN") && csv.contains("inf"), "{csv}");
    // An absurd value is printed in powers of ten, not as hundreds of digits.
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    for (name, text) in [
        ("tables", &text),
        ("summary.csv", &csv),
        ("README.md", &readme),
    ] {
        assert!(
            longest_digit_run(text) < 40,
            "{name} prints a huge number in full:\n{text}"
        );
    }
    let heatmap = svg(dir.path(), "accuracy");
    assert!(
        heatmap.contains("NaN") && heatmap.contains("inf"),
        "the heatmap prints odd cells"
    );
}

#[test]
fn a_report_with_odd_search_runs_finishes_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, took) = report_in_time(dir.path(), odd_results_with_search());
    eprintln!("report with odd search runs written in {took:?}");
    check_charts(dir.path());
    assert!(svg(dir.path(), "sensitivity").contains("left out"));
}

#[test]
fn a_report_of_ordinary_values_says_nothing_was_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let ordinary: Vec<JobResult> = odd_results()
        .into_iter()
        .map(|mut r| {
            r.accuracy = matrix(|i, j| 0.5 + 0.1 * (i + j) as f64 / 4.0 + 0.01 * r.seed as f64);
            // The untrained row too: FWT reads it, and the final-metrics chart draws FWT.
            r.initial_accuracy = Some(vec![0.1; r.accuracy.len()]);
            for (i, p) in r.curve.iter_mut().enumerate() {
                p.task_loss = 1.0 / (i + 1) as f64;
                p.penalty = 0.1 * i as f64;
            }
            for s in &mut r.importance {
                s.quantiles = vec![1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0];
            }
            r.capacity.retain(|c| c.units > 0 && c.held <= c.units);
            // The cost chart reads the total time.
            r.timings.total_s = 10.0 + r.seed as f64;
            r
        })
        .collect();
    report_in_time(dir.path(), ordinary);
    check_charts(dir.path());
    for chart in CHARTS {
        assert!(!svg(dir.path(), chart).contains("left out"), "{chart}.svg");
    }
}

/// Draws one chart of the groups of `results` into `dir` on another thread, within [`LIMIT`];
/// `Err` says how it failed.
fn chart_in_time(
    dir: &Path,
    name: &'static str,
    results: &[JobResult],
) -> Result<Duration, String> {
    use clbench::report::{
        capacity, chart, cost_chart, curves, final_metrics, forgetting, heatmap, importance,
        summary,
    };
    let groups = summary::group(results);
    let base = dir.join(name);
    let (send, receive) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let done = match name {
            "avg_accuracy" => chart::average_accuracy(&groups, &base, "odd"),
            "sensitivity" => chart::sensitivity(&groups, &base, "odd"),
            "accuracy" => heatmap::accuracy_matrices(&groups, &base, "odd"),
            "forgetting" => forgetting::per_task(&groups, &base, "odd"),
            "final_metrics" => final_metrics::final_metrics(&groups, &base, "odd"),
            "curves" => curves::training_curves(&groups, &base, "odd"),
            "importance" => importance::importance_distributions(&groups, &base, "odd"),
            "capacity" => capacity::units_held(&groups, &base, "odd"),
            "cost" => cost_chart::acc_against_time(&groups, &base, "odd"),
            _ => unreachable!(),
        };
        let _ = send.send(done.map_err(|e| format!("{e:#}")));
    });
    match receive.recv_timeout(LIMIT) {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(format!("failed: {e}")),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("still busy after {LIMIT:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".into()),
    }
}

#[test]
fn every_chart_alone_copes_with_odd_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for (scenario, results) in [("odd", odd_results()), ("nothing finite", nothing_finite())] {
        for name in CHARTS {
            let outcome = chart_in_time(dir.path(), name, &results);
            eprintln!("{scenario}: {name}: {outcome:?}");
            if let Err(e) = outcome {
                failed.push(format!("{scenario}: {name} {e}"));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_report_of_nothing_finite_finishes_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, took) = report_in_time(dir.path(), nothing_finite());
    eprintln!("report of nothing finite written in {took:?}");
    check_charts(dir.path());
}
