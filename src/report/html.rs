//! The experiment's pages: `index.html`, self-contained (the SVG charts' text inlined, inline
//! CSS, no scripts, fonts or anything else fetched), and `README.md` with the same tables and
//! links to the PNG charts, for code-hosting sites. Both are built from the groups, the results'
//! provenance and the files already in the folder (charts, `experiment.yaml`); nothing is
//! recomputed from training.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::md_cell;
use super::reference::Row;
use super::summary::{number, role, Best, FamilyTable, Group, Stat};
use crate::config::Reference;
use crate::results::JobResult;

/// A chart of the report: file name without extension, title, what it shows.
pub struct Chart {
    pub base: &'static str,
    pub title: &'static str,
    pub about: &'static str,
}

/// Every chart the report may write, in the order the pages show them.
pub const CHARTS: [Chart; 9] = [
    Chart {
        base: "final_metrics",
        title: "Final ACC, BWT and forgetting",
        about: "Per configuration, mean over seeds with 95% confidence bars; in the ACC panel, lines at the joint (upper bound) and naive (lower bound) ACC when the experiment has them.",
    },
    Chart {
        base: "forgetting",
        title: "Accuracy on each task as later tasks are trained",
        about: "A panel per task j: its test accuracy after training each task i ≥ j, mean over seeds with a shaded 95% confidence band. A falling line is forgetting.",
    },
    Chart {
        base: "accuracy",
        title: "Accuracy matrices",
        about: "A panel per configuration: test accuracy (%) on task j (columns) after training task i (rows), mean over seeds. Below the diagonal is what was kept, above it what was not yet learned.",
    },
    Chart {
        base: "avg_accuracy",
        title: "Average accuracy on the tasks seen so far",
        about: "After each task, the mean test accuracy on tasks 1..t, mean over seeds with a shaded 95% confidence band.",
    },
    Chart {
        base: "sensitivity",
        title: "Sensitivity to the swept strength",
        about: "Final ACC (left) and BWT (right) against each swept parameter, mean with 95% confidence bars, each point in its configuration's colour; the ring marks the best test ACC. Under holdout selection the points are the search runs' test ACC, the dashed line their validation ACC, and the square the value the validation chose.",
    },
    Chart {
        base: "cost",
        title: "Accuracy against cost",
        about: "Final ACC (mean over seeds with 95% confidence bars) against the total time per job (mean over seeds; log scale when the times span more than a factor of 10), a labelled point per configuration; the black step line is the Pareto front, the configurations that no other beats on both ACC and time: the best ACC reachable within a time budget.",
    },
    Chart {
        base: "curves",
        title: "Training curves",
        about: "Mean task loss (log scale) and mean penalty per epoch against the global step, for the smallest seed of each configuration; grey lines mark the ends of tasks.",
    },
    Chart {
        base: "capacity",
        title: "Units held by the tasks",
        about: "For methods that gate hidden units (HAT): per gated layer, the share of its units whose largest gate over the tasks trained so far is at least 0.5, after each task (HAT's compression analysis); what is left is free for later tasks. Smallest seed of each configuration.",
    },
    Chart {
        base: "importance",
        title: "Importance distributions",
        about: "For methods that weight their penalty by an importance (EWC family: Fisher; SI, MAS: Omega): per parameter tensor, a box per task after which it was measured (darker: later), on a log axis; box: quartiles, whiskers: 10th and 90th percentiles, bar: median, dots: smallest and largest non-zero value. Smallest seed of each configuration.",
    },
];

/// The glossary: the accuracy matrix, then every metric of the family's table.
fn glossary() -> Vec<(&'static str, String)> {
    let mut terms = vec![(
        "R[i][j]",
        "the test accuracy on task j after training task i, for T tasks".to_string(),
    )];
    for m in crate::results::metrics::METRICS {
        let direction = if m.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        terms.push((m.name, format!("{} ({direction})", m.definition)));
    }
    terms
}

const CI_NOTE: &str = "Mean ± half-width of the 95% confidence interval over seeds, t_{0.975, n−1} · s / √n (the mean alone for one seed); ACC in %, BWT and forgetting in points of accuracy. Best per column (highest ACC, highest BWT, lowest forgetting) in bold.";

const FAMILY_NOTE: &str = "Recomputed from the stored accuracy matrices; ↑ higher is better, ↓ lower is better, best per column in bold; — where a result lacks the metric's inputs (FWT needs the untrained network's row, which results written before it was recorded lack; intransigence and ρ need a joint run of the same seed). Definitions under Metrics.";

/// Everything the pages show.
pub struct Page<'a> {
    pub name: &'a str,
    pub groups: &'a [Group],
    pub results: &'a [JobResult],
    pub best_rows: &'a [Row],
    /// Each configuration against naive and against the best, paired by seed.
    pub comparisons: &'a super::comparison::Comparisons,
    /// How the reported configurations were chosen (every table and chart says it).
    pub selection: &'a str,
    /// Search runs behind the choice (in the sensitivity chart, not in the tables).
    pub search_runs: usize,
    pub reference: Option<&'a Reference>,
    /// The resolved experiment file's text.
    pub experiment: Option<String>,
}

/// One table cell, escaped, in bold when it is the best of its column.
fn td(cell: &str, bold: bool) -> String {
    if bold {
        format!("<td><b>{}</b></td>", escape(cell))
    } else {
        format!("<td>{}</td>", escape(cell))
    }
}

/// Said after the selection label when search runs chose the configurations.
fn search_note(search_runs: usize) -> String {
    if search_runs == 0 {
        String::new()
    } else {
        format!(" The {search_runs} search runs behind the choice are in the sensitivity chart and summary.csv, not in these tables.")
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One summary row's cells: label, seeds, ACC, BWT, forgetting, wall time; with the bold flags.
fn summary_cells(g: &Group, k: usize, best: &Best) -> (Vec<String>, [bool; 3]) {
    let cells = vec![
        format!("{}{}", g.label, role(&g.strategy)),
        g.acc.n.to_string(),
        g.acc.format(100.0, 2),
        g.sequential_cell(|| g.bwt.format_signed(100.0, 2)),
        g.sequential_cell(|| g.forgetting.format(100.0, 2)),
        number(g.wall_s.mean, 1),
    ];
    let flags = [
        best.acc.contains(&k),
        best.bwt.contains(&k),
        best.forgetting.contains(&k),
    ];
    (cells, flags)
}

const SUMMARY_HEAD: [&str; 6] = [
    "configuration",
    "seeds",
    "ACC %",
    "BWT (points)",
    "forgetting (points)",
    "wall s per job",
];

/// The cost table (time, peak memory, strategy state beside ACC) as an HTML section.
fn cost_html(groups: &[Group]) -> String {
    let mut h = String::from("<h3>Cost</h3>\n<table>\n<thead><tr><th>configuration</th>");
    for head in super::cost::HEAD {
        let _ = write!(h, "<th>{}</th>", escape(head));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for g in groups {
        let _ = write!(h, "<tr><td>{}</td>", escape(&g.label));
        for cell in super::cost::cells(g) {
            h.push_str(&td(&cell, false));
        }
        h.push_str("</tr>\n");
    }
    let _ = writeln!(
        h,
        "</tbody>\n</table>\n<p class=\"note\">{} The chart <a href=\"#cost\">Accuracy against cost</a> draws ACC against total time.</p>",
        escape(super::cost::NOTE)
    );
    h
}

/// The cost table as a Markdown section.
fn cost_markdown(groups: &[Group]) -> String {
    let mut m = format!(
        "### Cost\n\n| configuration | {} |\n|{}\n",
        super::cost::HEAD.join(" | "),
        " --- |".repeat(super::cost::HEAD.len() + 1)
    );
    for g in groups {
        let cells: Vec<String> = super::cost::cells(g).iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(m, "| {} | {} |", md_cell(&g.label), cells.join(" | "));
    }
    let _ = writeln!(m, "\n{}\n", super::cost::NOTE);
    m
}

/// The machine, versions and times, as (what, value) lines.
fn provenance(results: &[JobResult]) -> Vec<(&'static str, String)> {
    let distinct = |f: &dyn Fn(&JobResult) -> String| {
        let mut v: Vec<String> = results.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    let total: f64 = results.iter().map(|r| r.timings.total_s).sum();
    let mean = total / results.len().max(1) as f64;
    let start = results
        .iter()
        .map(|r| r.provenance.finished_at_unix as f64 - r.timings.total_s)
        .fold(f64::INFINITY, f64::min);
    let end = results
        .iter()
        .map(|r| r.provenance.finished_at_unix)
        .max()
        .unwrap_or(0);
    let samples = Stat::of(
        &results
            .iter()
            .map(|r| r.timings.samples_per_s)
            .collect::<Vec<_>>(),
    );
    vec![
        ("host", distinct(&|r| r.provenance.hostname.clone())),
        ("device", distinct(&|r| r.device.clone())),
        (
            "clbench",
            distinct(&|r| r.provenance.clbench_version.clone()),
        ),
        (
            "git revision",
            distinct(&|r| r.provenance.git_revision.clone()),
        ),
        (
            "libtorch",
            distinct(&|r| r.provenance.torch_version.clone()),
        ),
        ("tch", distinct(&|r| r.provenance.tch_version.clone())),
        ("jobs", results.len().to_string()),
        (
            "wall time of the jobs",
            format!(
                "{} s in all, {} s per job on average",
                number(total, 1),
                number(mean, 1)
            ),
        ),
        (
            "from first start to last finish",
            if start.is_finite() {
                format!("{} s, finished {}", number(end as f64 - start, 1), utc(end))
            } else {
                "—".into()
            },
        ),
        (
            "training speed",
            format!("{} samples/s per job on average", number(samples.mean, 0)),
        ),
    ]
}

/// A Unix time as `YYYY-MM-DD hh:mm:ss UTC` (days to civil date after H. Hinnant).
fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An SVG file's text ready to inline: the XML declaration dropped, scaled to the page width.
fn inline_svg(text: &str) -> String {
    let start = text.find("<svg").unwrap_or(0);
    text[start..].replacen("<svg ", "<svg style=\"max-width:100%;height:auto\" ", 1)
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:2em auto;max-width:1280px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}td.text{text-align:left}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em;border-radius:2px}
figure{margin:1.2em 0}figcaption{color:#555;font-size:.92em;max-width:60em}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow-x:auto;font-size:.88em}
.note{color:#555;font-size:.9em}dt{font-weight:bold}dd{margin:0 0 .5em 1.5em}";

/// Writes `index.html` into `out_dir`; the charts must already be there.
pub fn write_html(page: &Page, out_dir: &Path) -> Result<()> {
    let mut h = String::new();
    let name = escape(page.name);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>clbench: {name}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n<h1>{name}</h1>\n<p class=\"note\">Continual-learning benchmark report written by clbench from the saved results in this folder ({} jobs, {} configurations). Rebuild with <code>clbench report &lt;this folder&gt;</code>.</p>\n",
        page.results.len(),
        page.groups.len()
    );
    let _ = writeln!(
        h,
        "<h2>Summary</h2>\n<p><b>Configurations {}.</b>{}</p>",
        escape(page.selection),
        search_note(page.search_runs)
    );
    h.push_str("<table>\n<thead><tr>");
    for head in SUMMARY_HEAD {
        let _ = write!(h, "<th>{}</th>", escape(head));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    let best = Best::of(page.groups);
    for (k, g) in page.groups.iter().enumerate() {
        let (cells, flags) = summary_cells(g, k, &best);
        let c = super::chart::color(k);
        let _ = write!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:#{:02x}{:02x}{:02x}\"></span>{}</td>",
            c.0,
            c.1,
            c.2,
            escape(&cells[0])
        );
        for (i, cell) in cells.iter().enumerate().skip(1) {
            h.push_str(&td(cell, (2..5).contains(&i) && flags[i - 2]));
        }
        h.push_str("</tr>\n");
    }
    let _ = writeln!(
        h,
        "</tbody>\n</table>\n<p class=\"note\">{}</p>",
        escape(CI_NOTE)
    );
    if let Some(note) = crate::report::summary::trained_once_note(page.groups) {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(&note));
    }
    let family = FamilyTable::of(page.groups);
    if !family.is_empty() {
        h.push_str("<h3>More metrics</h3>\n<table>\n<thead><tr><th>configuration</th>");
        for head in &family.head {
            let _ = write!(h, "<th>{}</th>", escape(head));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for (g, row) in page.groups.iter().zip(&family.rows) {
            let _ = write!(h, "<tr><td>{}</td>", escape(&g.label));
            for (cell, bold) in row {
                h.push_str(&td(cell, *bold));
            }
            h.push_str("</tr>\n");
        }
        let _ = writeln!(
            h,
            "</tbody>\n</table>\n<p class=\"note\">{}</p>",
            escape(FAMILY_NOTE)
        );
    }
    h.push_str(&cost_html(page.groups));

    h.push_str("<h2>Chosen configuration of each strategy</h2>\n");
    if let Some(r) = page.reference {
        let _ = writeln!(h, "<p>Published figures: {}</p>", escape(r.source.trim()));
    }
    h.push_str("<table>\n<thead><tr>");
    for head in super::reference::HEADER {
        let _ = write!(h, "<th>{}</th>", escape(head));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in page.best_rows {
        h.push_str("<tr>");
        for (i, cell) in super::reference::cells(row).iter().enumerate() {
            let class = if i == 1 { " class=\"text\"" } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", escape(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n<p class=\"note\">Among the reported configurations of each strategy, the one with the highest mean ACC; SE is the standard error of that mean.</p>\n");
    if page.best_rows.iter().any(|r| r.edge.is_some()) {
        let _ = writeln!(
            h,
            "<p class=\"note\">{}</p>",
            escape(super::reference::EDGE_NOTE)
        );
    }

    let continual = super::continual::rows(page.groups);
    if !continual.is_empty() {
        h.push_str("<h2>Continual selection: the choice on each task</h2>\n<table>\n<thead><tr>");
        for head in super::continual::HEADER {
            let _ = write!(h, "<th>{}</th>", escape(head));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for row in &continual {
            h.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if i == 0 { " class=\"text\"" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", escape(cell));
            }
            h.push_str("</tr>\n");
        }
        let _ = writeln!(
            h,
            "</tbody>\n</table>\n<p class=\"note\">{} Configurations {}.</p>",
            escape(super::continual::NOTE),
            escape(page.selection)
        );
    }

    if !page.comparisons.is_empty() {
        h.push_str("<h2>Paired comparisons</h2>\n<table>\n<thead><tr>");
        for head in page.comparisons.header() {
            let _ = write!(h, "<th>{}</th>", escape(&head));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for cells in page.comparisons.cells() {
            h.push_str("<tr>");
            for cell in cells {
                let _ = write!(h, "<td>{}</td>", escape(&cell));
            }
            h.push_str("</tr>\n");
        }
        let _ = writeln!(
            h,
            "</tbody>\n</table>\n<p class=\"note\">{}</p>",
            escape(super::comparison::NOTE)
        );
    }

    h.push_str("<h2>Charts</h2>\n");
    for chart in &CHARTS {
        let path = out_dir.join(format!("{}.svg", chart.base));
        if !path.exists() {
            continue;
        }
        let svg = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let _ = write!(
            h,
            "<figure id=\"{}\">\n<h3>{}</h3>\n{}\n<figcaption>{} Configurations {}. (<code>{}.svg</code>, <code>{}.png</code>)</figcaption>\n</figure>\n",
            chart.base,
            escape(chart.title),
            inline_svg(&svg),
            escape(chart.about),
            escape(page.selection),
            chart.base,
            chart.base
        );
    }

    h.push_str("<h2>Metrics</h2>\n<dl>\n");
    for (term, meaning) in glossary() {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(&meaning));
    }
    h.push_str("</dl>\n");

    h.push_str("<h2>Experiment</h2>\n");
    match &page.experiment {
        Some(text) => {
            let _ = writeln!(
                h,
                "<p class=\"note\">As resolved (defaults filled in), from <code>experiment.yaml</code>.</p>\n<pre>{}</pre>",
                escape(text)
            );
        }
        None => h.push_str("<p>No <code>experiment.yaml</code> in this folder.</p>\n"),
    }

    h.push_str("<h2>Machine, versions and time</h2>\n<table>\n<tbody>\n");
    for (what, value) in provenance(page.results) {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"text\">{}</td></tr>",
            escape(what),
            escape(&value)
        );
    }
    h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    crate::results::write_atomic(&out_dir.join("index.html"), h.as_bytes())?;
    Ok(())
}

/// Writes `README.md` into `out_dir`: the tables in Markdown and the PNG charts.
pub fn write_readme(page: &Page, out_dir: &Path) -> Result<()> {
    let mut m = format!(
        "# {}\n\nclbench report from the saved results in this folder ({} jobs, {} configurations). The same report with inline charts: [`index.html`](index.html); rebuild both with `clbench report <this folder>`.\n\n## Summary\n\n",
        page.name,
        page.results.len(),
        page.groups.len()
    );
    let _ = writeln!(
        m,
        "**Configurations {}.**{}\n",
        md_cell(page.selection),
        search_note(page.search_runs)
    );
    let _ = writeln!(m, "| {} |", SUMMARY_HEAD.join(" | "));
    let _ = writeln!(m, "|{}", " --- |".repeat(SUMMARY_HEAD.len()));
    let best = Best::of(page.groups);
    for (k, g) in page.groups.iter().enumerate() {
        let (cells, flags) = summary_cells(g, k, &best);
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if (2..5).contains(&i) && flags[i - 2] {
                    format!("**{}**", md_cell(c))
                } else {
                    md_cell(c)
                }
            })
            .collect();
        let _ = writeln!(m, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(m, "\n{CI_NOTE}\n");
    if let Some(note) = crate::report::summary::trained_once_note(page.groups) {
        let _ = writeln!(m, "{}\n", md_cell(&note));
    }
    let family = FamilyTable::of(page.groups);
    if !family.is_empty() {
        let _ = writeln!(
            m,
            "### More metrics\n\n| configuration | {} |",
            family.head.join(" | ")
        );
        let _ = writeln!(m, "|{}", " --- |".repeat(family.head.len() + 1));
        for (g, row) in page.groups.iter().zip(&family.rows) {
            let cells: Vec<String> = row
                .iter()
                .map(|(c, bold)| {
                    if *bold {
                        format!("**{}**", md_cell(c))
                    } else {
                        md_cell(c)
                    }
                })
                .collect();
            let _ = writeln!(m, "| {} | {} |", md_cell(&g.label), cells.join(" | "));
        }
        let _ = writeln!(m, "\n{FAMILY_NOTE}\n");
    }
    m.push_str(&cost_markdown(page.groups));
    m.push_str("## Chosen configuration of each strategy\n\n");
    m.push_str(&super::reference::markdown(page.best_rows, page.reference));
    let continual = super::continual::rows(page.groups);
    if !continual.is_empty() {
        m.push_str("\n## Continual selection: the choice on each task\n\n");
        let _ = writeln!(m, "| {} |", super::continual::HEADER.join(" | "));
        let _ = writeln!(m, "|{}", " --- |".repeat(super::continual::HEADER.len()));
        for row in &continual {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(m, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(
            m,
            "\n{} Configurations {}.",
            super::continual::NOTE,
            md_cell(page.selection)
        );
    }
    if !page.comparisons.is_empty() {
        m.push_str("\n## Paired comparisons\n\n");
        m.push_str(&page.comparisons.markdown());
    }
    m.push_str("\n## Charts\n\n");
    for chart in &CHARTS {
        if !out_dir.join(format!("{}.png", chart.base)).exists() {
            continue;
        }
        let _ = writeln!(
            m,
            "### {}\n\n{} Configurations {}.\n\n[![{}]({}.png)]({}.png) ([SVG]({}.svg))\n",
            chart.title,
            chart.about,
            page.selection,
            chart.title,
            chart.base,
            chart.base,
            chart.base
        );
    }
    m.push_str("## Metrics\n\n");
    for (term, meaning) in glossary() {
        let _ = writeln!(m, "- **{term}**: {meaning}.");
    }
    m.push_str("\n## Experiment\n\nAs resolved, in [`experiment.yaml`](experiment.yaml); per-job results in `jobs/`, one row per job in [`summary.csv`](summary.csv).\n\n## Machine, versions and time\n\n| what | value |\n| --- | --- |\n");
    for (what, value) in provenance(page.results) {
        let _ = writeln!(m, "| {what} | {} |", md_cell(&value));
    }
    crate::results::write_atomic(&out_dir.join("README.md"), m.as_bytes())?;
    Ok(())
}
