//! Reports, from results only (never trains): the summary table, `summary.csv`, `best.md`, the
//! charts (each an SVG and a PNG, one file per chart function) and the pages that gather them,
//! `index.html` (self-contained) and `README.md`. Colours follow the configurations of
//! [`summary::group`] across every chart.

pub mod between;
pub mod capacity;
pub mod chart;
pub mod comparison;
pub mod continual;
pub mod cost;
pub mod cost_chart;
pub mod curves;
pub mod final_metrics;
pub mod forgetting;
pub mod heatmap;
pub mod html;
pub mod importance;
pub mod reference;
pub mod significance;
pub mod summary;

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{ExperimentFile, Selection};
use crate::results::JobResult;

/// Escapes `|` for a Markdown table cell.
fn md_cell(cell: &str) -> String {
    cell.replace('|', "\\|")
}

/// Reads every `jobs/*.json` under an experiment's folder, sorted by id.
pub fn load_results(out_dir: &Path) -> Result<Vec<JobResult>> {
    let jobs = out_dir.join("jobs");
    let mut results = Vec::new();
    for entry in std::fs::read_dir(&jobs).with_context(|| format!("reading {}", jobs.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            results.push(crate::results::read_job_result(&path)?);
        }
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(results)
}

/// The experiment file saved beside the results (`experiment.yaml`), when there is one.
pub fn load_experiment(out_dir: &Path) -> Result<Option<ExperimentFile>> {
    let path = out_dir.join("experiment.yaml");
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a clbench experiment file", path.display()))?;
    crate::results::check_format(&path, &value, "saved experiment")?;
    let experiment = serde_json::from_value(value).with_context(|| {
        format!(
            "{}: not a clbench experiment file; restore it or rerun the experiment",
            path.display()
        )
    })?;
    Ok(Some(experiment))
}

/// How the reported configurations were chosen: `selection` (the plan's label), or, when the
/// caller has no plan, guessed from the results: by search runs if the results hold some, else
/// best-of-grid on test data whenever a strategy has more than one configuration.
fn selection_label(selection: Option<&str>, groups: &[summary::Group], searched: bool) -> String {
    match selection {
        Some(s) => s.to_string(),
        None if searched => "chosen by search runs (see experiment.yaml)".into(),
        None => {
            let swept = groups
                .iter()
                .enumerate()
                .any(|(k, g)| groups[..k].iter().any(|o| o.strategy == g.strategy));
            if swept {
                Selection::TestOracle.label()
            } else {
                Selection::Fixed.label()
            }
        }
    }
}

/// The groups the sensitivity chart shows: every grid point. Under a selection that searches,
/// the search runs; with `acc` their test ACC and `selection_acc` the validation ACC the
/// choice read, when they recorded a test matrix (holdout); otherwise their own scores.
fn sweep_groups(search: &[JobResult], reported: &[summary::Group]) -> Vec<summary::Group> {
    if search.is_empty() {
        return reported.to_vec();
    }
    let on_selection_data = summary::group(search);
    if search.iter().any(|r| r.test_accuracy.is_none()) {
        return on_selection_data;
    }
    let on_test: Vec<JobResult> = search
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.accuracy = r.test_accuracy.clone().unwrap_or_default();
            r
        })
        .collect();
    let mut groups = summary::group(&on_test);
    for g in &mut groups {
        g.selection_acc = on_selection_data
            .iter()
            .find(|v| v.label == g.label)
            .map(|v| v.acc);
    }
    groups
}

/// The charts [`write_report`] draws, each as `<name>.svg` and `<name>.png` (a chart with nothing
/// to show, e.g. importances of methods without one, is left out).
pub const CHARTS: [&str; 9] = [
    "accuracy",
    "avg_accuracy",
    "capacity",
    "cost",
    "curves",
    "final_metrics",
    "forgetting",
    "importance",
    "sensitivity",
];

/// Writes `summary.csv`, `best.md`, the charts, `index.html` and `README.md` for `results` into
/// `out_dir`; returns the tables as text. Search runs of a selection (their settings say so)
/// feed the sensitivity chart and the grid-edge flags only; every table reports the other runs.
pub fn write_report(
    out_dir: &Path,
    results: &[JobResult],
    experiment: Option<&ExperimentFile>,
    selection: Option<&str>,
) -> Result<String> {
    let (search, reported): (Vec<JobResult>, Vec<JobResult>) =
        results.iter().cloned().partition(summary::is_search);
    let groups = summary::group(&reported);
    let swept = sweep_groups(&search, &groups);
    let selection_text = selection_label(selection, &groups, !search.is_empty());
    let reference = experiment.and_then(|e| e.reference.as_ref());
    crate::results::write_atomic(
        &out_dir.join("summary.csv"),
        summary::csv(results, &selection_text).as_bytes(),
    )?;
    let note = selection_text.as_str();
    chart::average_accuracy(&groups, &out_dir.join("avg_accuracy"), note)?;
    chart::sensitivity(&swept, &out_dir.join("sensitivity"), note)?;
    heatmap::accuracy_matrices(&groups, &out_dir.join("accuracy"), note)?;
    forgetting::per_task(&groups, &out_dir.join("forgetting"), note)?;
    final_metrics::final_metrics(&groups, &out_dir.join("final_metrics"), note)?;
    curves::training_curves(&groups, &out_dir.join("curves"), note)?;
    importance::importance_distributions(&groups, &out_dir.join("importance"), note)?;
    capacity::units_held(&groups, &out_dir.join("capacity"), note)?;
    cost_chart::acc_against_time(&groups, &out_dir.join("cost"), note)?;
    let best_rows = reference::best_per_strategy(&groups, &swept, reference);
    let best = reference::markdown(&best_rows, reference);
    let comparisons = comparison::Comparisons::of(&groups);
    let best_md = format!("Configurations {selection_text}.\n\n{best}");
    let best_md = if comparisons.is_empty() {
        best_md
    } else {
        format!(
            "{best_md}\n## Paired comparisons\n\n{}",
            comparisons.markdown()
        )
    };
    crate::results::write_atomic(&out_dir.join("best.md"), best_md.as_bytes())?;
    let experiment_text = match std::fs::read_to_string(out_dir.join("experiment.yaml")) {
        Ok(text) => Some(text),
        Err(_) => experiment.map(serde_yaml::to_string).transpose()?,
    };
    let name = experiment
        .map(|e| e.name.clone())
        .or_else(|| results.first().map(|r| r.experiment.clone()))
        .unwrap_or_else(|| out_dir.display().to_string());
    let page = html::Page {
        name: &name,
        groups: &groups,
        results,
        best_rows: &best_rows,
        comparisons: &comparisons,
        selection: &selection_text,
        search_runs: search.len(),
        reference,
        experiment: experiment_text,
    };
    html::write_html(&page, out_dir)?;
    html::write_readme(&page, out_dir)?;
    let family = summary::family_table(&groups);
    let family = if family.is_empty() {
        family
    } else {
        format!("\nMore metrics (points of accuracy; ρ a ratio):\n{family}")
    };
    let paired = comparisons.text();
    let paired = if paired.is_empty() {
        paired
    } else {
        format!(
            "\nPaired comparisons on final ACC (Holm-corrected p, raw in parentheses):\n{paired}"
        )
    };
    Ok(format!(
        "Configurations {selection_text}.\n{}{family}{}\n\nChosen configuration of each strategy (final ACC, ± one standard error):\n{best}{paired}",
        summary::table(&groups),
        summary::trained_once_note(&groups)
            .map(|n| format!("{}\n{n}", summary::PLUS_MINUS_NOTE))
            .unwrap_or_else(|| summary::PLUS_MINUS_NOTE.to_string())
    ))
}
