//! clbench's numbers beside published ones: for each strategy, the best configuration of its grid
//! (highest mean ACC over seeds) against the paper's figure, with the agreement criterion the
//! project uses: within the larger of 3 points and two standard errors of clbench's mean.

use crate::config::Reference;

use super::summary::Group;

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
}

impl Row {
    /// `|published - measured| <= max(3, 2 SE)`; `None` without a published figure.
    pub fn agrees(&self) -> Option<bool> {
        self.published
            .map(|p| (p - self.acc_percent).abs() <= (2.0 * self.se_percent).max(3.0))
    }
}

/// The best configuration of each strategy, in the order strategies first appear in `groups`.
pub fn best_per_strategy(groups: &[Group], reference: Option<&Reference>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for g in groups {
        let row = Row {
            strategy: g.strategy.clone(),
            best: g.label.clone(),
            acc_percent: 100.0 * g.acc.mean,
            se_percent: 100.0 * g.acc.std / (g.acc.n as f64).sqrt(),
            seeds: g.acc.n,
            published: reference.and_then(|r| r.acc_percent.get(&g.strategy).copied()),
        };
        match rows.iter_mut().find(|r| r.strategy == g.strategy) {
            Some(existing) if existing.acc_percent < row.acc_percent => *existing = row,
            Some(_) => {}
            None => rows.push(row),
        }
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
            format!("{p:.2}"),
            format!("{:+.2}", row.acc_percent - p),
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
    vec![
        format!("{}{}", row.strategy, super::summary::role(&row.strategy)),
        row.best.clone(),
        format!("{:.2} ± {:.2}", row.acc_percent, row.se_percent),
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
        out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
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
        };
        assert_eq!(row(87.5, 0.1).agrees(), Some(true));
        assert_eq!(row(86.5, 0.1).agrees(), Some(false));
        assert_eq!(row(85.0, 2.6).agrees(), Some(true));
        assert_eq!(cells(&row(86.5, 0.1))[6], "no (below)");
        assert_eq!(cells(&row(93.5, 0.1))[6], "no (above)");
        assert_eq!(cells(&row(92.5, 0.1))[6], "yes");
    }
}
