//! clbench's numbers beside published ones: for each strategy, the best configuration of its grid
//! (highest mean ACC over seeds) against the paper's figure, with the agreement criterion the
//! project uses: within the larger of 3 points and two standard errors of clbench's mean.
//! A best value at either end of its swept grid is flagged: the optimum may lie beyond it, so the
//! row is a lower bound on what the strategy can do until the grid is widened.

use crate::config::Reference;

use super::chart::sweeps;
use super::md_cell;
use super::summary::{number, signed, Group};

/// Which end of its swept grid the best value sits at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridEdge {
    /// The smallest value swept.
    Bottom,
    /// The largest value swept.
    Top,
}

/// Said under a comparison that flags a row, in Markdown and HTML alike.
pub const EDGE_NOTE: &str = "\"top of its grid\" or \"bottom of its grid\": the best value is the \
largest or smallest one swept, so the optimum may lie beyond it; widen that strategy's grid before \
reading the row as its best.";

/// One strategy's line of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub strategy: String,
    /// The chosen configuration's label.
    pub best: String,
    /// Mean ACC over seeds, in percent.
    pub acc_percent: f64,
    /// Standard error of that mean, in percent.
    pub se_percent: f64,
    pub seeds: usize,
    pub published: Option<f64>,
    /// Set when the chosen value of the strategy's swept parameter is at an end of its grid.
    pub edge: Option<GridEdge>,
}

impl Row {
    /// `|published - measured| <= max(3, 2 SE)`; `None` without a published figure or without
    /// a finite measured ACC (nothing to agree or disagree with).
    pub fn agrees(&self) -> Option<bool> {
        let measured = Some(self.acc_percent).filter(|a| a.is_finite())?;
        let tolerance = (2.0 * self.se_percent).max(3.0);
        self.published.map(|p| (p - measured).abs() <= tolerance)
    }
}

/// The best configuration of each strategy, in the order strategies first appear in `groups`.
/// Grid edges are read from the sweeps of `swept` (the search runs' groups under a selection
/// that searches, else `groups` itself), matched by strategy and parameters.
pub fn best_per_strategy(
    groups: &[Group],
    swept: &[Group],
    reference: Option<&Reference>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    // Each row's group index, to find its place in the strategy's sweep afterwards.
    let mut chosen: Vec<usize> = Vec::new();
    for (index, g) in groups.iter().enumerate() {
        let row = Row {
            strategy: g.strategy.clone(),
            best: g.label.clone(),
            acc_percent: 100.0 * g.acc.mean,
            se_percent: 100.0 * g.acc.std / (g.acc.n as f64).sqrt(),
            seeds: g.acc.n,
            published: reference.and_then(|r| r.acc_percent.get(&g.strategy).copied()),
            edge: None,
        };
        match rows.iter().position(|r| r.strategy == g.strategy) {
            // A NaN ACC ranks lowest: any number replaces it, it replaces none.
            Some(i)
                if rows[i].acc_percent < row.acc_percent
                    || (rows[i].acc_percent.is_nan() && !row.acc_percent.is_nan()) =>
            {
                rows[i] = row;
                chosen[i] = index;
            }
            Some(_) => {}
            None => {
                rows.push(row);
                chosen.push(index);
            }
        }
    }
    let same = |point: usize, c: usize| {
        swept[point].strategy == groups[c].strategy && swept[point].params == groups[c].params
    };
    for sweep in sweeps(swept) {
        // The sweep the chosen configuration belongs to, if any.
        let Some(i) = rows.iter().zip(&chosen).position(|(r, &c)| {
            r.strategy == sweep.strategy && sweep.points.iter().any(|p| same(p.group, c))
        }) else {
            continue;
        };
        let (first, last) = (&sweep.points[0], &sweep.points[sweep.points.len() - 1]);
        rows[i].edge = if same(first.group, chosen[i]) {
            Some(GridEdge::Bottom)
        } else if same(last.group, chosen[i]) {
            Some(GridEdge::Top)
        } else {
            None
        };
    }
    rows
}

/// The columns of the comparison, in the order [`cells`] gives them.
pub const HEADER: [&str; 7] = [
    "strategy",
    "best configuration",
    "clbench ACC % (mean ± SE)",
    "seeds",
    "published ACC %",
    "difference",
    "within max(3, 2 SE)",
];

/// One row of the comparison as text cells ("—" where there is no published figure).
pub fn cells(row: &Row) -> Vec<String> {
    let (published, diff, ok) = match (row.published, row.agrees()) {
        (Some(p), Some(ok)) => (
            number(p, 2),
            signed(row.acc_percent - p, 2),
            // Which side it misses on matters: above is a stronger tuning, below a weaker method.
            match (ok, row.acc_percent > p) {
                (true, _) => "yes",
                (false, true) => "no (above)",
                (false, false) => "no (below)",
            }
            .to_string(),
        ),
        _ => ("—".into(), "—".into(), "—".into()),
    };
    let best = match row.edge {
        None => row.best.clone(),
        Some(GridEdge::Bottom) => format!("{} (bottom of its grid)", row.best),
        Some(GridEdge::Top) => format!("{} (top of its grid)", row.best),
    };
    vec![
        format!("{}{}", row.strategy, super::summary::role(&row.strategy)),
        best,
        format!(
            "{} ± {}",
            number(row.acc_percent, 2),
            number(row.se_percent, 2)
        ),
        row.seeds.to_string(),
        published,
        diff,
        ok,
    ]
}

/// The comparison as a Markdown table.
pub fn markdown(rows: &[Row], reference: Option<&Reference>) -> String {
    let mut out = String::new();
    if let Some(r) = reference {
        out.push_str(&format!("Published figures: {}\n\n", r.source.trim()));
    }
    out.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(HEADER.len())));
    for row in rows {
        let cells: Vec<String> = cells(row).iter().map(|c| md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if rows.iter().any(|r| r.edge.is_some()) {
        out.push_str(&format!("\n{EDGE_NOTE}\n"));
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_uses_the_larger_of_three_points_and_two_standard_errors() {
        let row = |acc, se| Row {
            strategy: "ewc".into(),
            best: "ewc".into(),
            acc_percent: acc,
            se_percent: se,
            seeds: 5,
            published: Some(90.0),
            edge: None,
        };
        assert_eq!(row(87.5, 0.1).agrees(), Some(true));
        assert_eq!(row(86.5, 0.1).agrees(), Some(false));
        assert_eq!(row(85.0, 2.6).agrees(), Some(true));
        assert_eq!(cells(&row(86.5, 0.1))[6], "no (below)");
        assert_eq!(cells(&row(93.5, 0.1))[6], "no (above)");
        assert_eq!(cells(&row(92.5, 0.1))[6], "yes");
    }

    #[test]
    fn a_nan_acc_neither_agrees_nor_is_chosen() {
        let row = Row {
            strategy: "ewc".into(),
            best: "ewc".into(),
            acc_percent: f64::NAN,
            se_percent: f64::NAN,
            seeds: 2,
            published: Some(90.0),
            edge: None,
        };
        assert_eq!(row.agrees(), None);
        assert_eq!(cells(&row)[2..], ["NaN ± NaN", "2", "—", "—", "—"]);
        use serde_json::json;
        let groups = vec![
            group("si", json!({"c": 1.0}), f64::NAN),
            group("si", json!({"c": 10.0}), 0.6),
            group("si", json!({"c": 100.0}), f64::NAN),
        ];
        let rows = best_per_strategy(&groups, &groups, None);
        assert_eq!(rows[0].best, groups[1].label);
        assert_eq!(rows[0].edge, None);
    }

    /// A group of `strategy` with parameters `params` and final ACC `acc` over one seed.
    fn group(strategy: &str, params: serde_json::Value, acc: f64) -> Group {
        let label = format!("{strategy} {params}");
        crate::report::summary::test_group(&label, strategy, params, &[(1, acc)])
    }

    #[test]
    fn a_best_value_at_either_end_of_its_grid_is_flagged() {
        use serde_json::json;
        // The groups arrive in the file's order, not sorted by value.
        let groups = vec![
            group("naive", json!({}), 0.5),
            group("si", json!({"c": 10.0}), 0.62),
            group("si", json!({"c": 1.0}), 0.60),
            group("si", json!({"c": 1000.0}), 0.67),
            group("si", json!({"c": 100.0}), 0.63),
            group("ewc", json!({"lambda": 1e3}), 0.70),
            group("ewc", json!({"lambda": 1e4}), 0.80),
            group("ewc", json!({"lambda": 1e5}), 0.75),
            group("mas", json!({"lambda": 0.1}), 0.90),
            group("mas", json!({"lambda": 1.0}), 0.85),
        ];
        let rows = best_per_strategy(&groups, &groups, None);
        let edge = |name: &str| rows.iter().find(|r| r.strategy == name).unwrap().edge;
        assert_eq!(edge("naive"), None);
        assert_eq!(edge("si"), Some(GridEdge::Top));
        assert_eq!(edge("ewc"), None);
        assert_eq!(edge("mas"), Some(GridEdge::Bottom));
        let si = rows.iter().find(|r| r.strategy == "si").unwrap();
        assert!(
            cells(si)[1].ends_with("(top of its grid)"),
            "{:?}",
            cells(si)
        );
        assert!(markdown(&rows, None).contains(EDGE_NOTE));
        let middle_only = best_per_strategy(&groups[5..8], &groups[5..8], None);
        assert!(!markdown(&middle_only, None).contains(EDGE_NOTE));
    }

    #[test]
    fn a_strategy_run_in_two_variants_gives_one_sweep_per_variant() {
        use serde_json::json;
        let groups = vec![
            group("si", json!({"c": 1.0}), 0.60),
            group("si", json!({"c": 1.0, "gradient": "total"}), 0.62),
            group("si", json!({"c": 10.0}), 0.70),
            group("si", json!({"c": 10.0, "gradient": "total"}), 0.66),
            group("si", json!({"c": 100.0, "gradient": "total"}), 0.64),
        ];
        let found = sweeps(&groups);
        let values = |i: usize| -> Vec<f64> { found[i].points.iter().map(|p| p.value).collect() };
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].name(), values(0)), ("si".into(), vec![1.0, 10.0]));
        assert_eq!(
            (found[1].name(), values(1)),
            ("si gradient=total".into(), vec![1.0, 10.0, 100.0])
        );
        // The best si is c = 10 without `gradient`, the top of its own sweep; the other sweep's
        // best (10 of 1, 10, 100) is inside its grid but is not the row's.
        let rows = best_per_strategy(&groups, &groups, None);
        assert_eq!(rows[0].best, groups[2].label);
        assert_eq!(rows[0].edge, Some(GridEdge::Top));
    }
}
