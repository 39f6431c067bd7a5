//! Paired comparisons of the summary's configurations on final ACC: each against naive and
//! against the best configuration of the table, by the paired t-test and the Wilcoxon
//! signed-rank test ([`significance`](super::significance)), Holm-corrected across the rows of
//! each column, with the mean difference and its 95% confidence interval.
//!
//! Two configurations are paired by seed: the same seed gives both the same initialisation,
//! data order and tasks, so the per-seed differences remove most of the seed-to-seed spread.
//! Only the seeds both ran count.

use super::md_cell;
use super::significance::{holm, paired, PairedComparison};
use super::summary::{signed, Group};

/// Said under every comparison table, in Markdown, HTML and the console alike.
pub const NOTE: &str = "Final ACC paired by seed over the seeds both configurations ran; Δ is \
the mean of (row − reference) in points of accuracy with its 95% confidence interval (Student t); \
p-values are two-sided, Holm-corrected across the rows of each column (raw p in parentheses). \
The best configuration is the one with the highest mean ACC, joint (the upper bound) left out. \
With n seeds the Wilcoxon test cannot go below p = 2/2^n (0.25 for 3 seeds, 0.0625 for 5): \
there, 'not significant' is a statement about the number of seeds.";

/// One row against one reference configuration.
#[derive(Debug, Clone)]
pub struct Versus {
    pub comparison: PairedComparison,
    /// Holm-adjusted p of the t-test and of the Wilcoxon test, across the column.
    pub t_holm: Option<f64>,
    pub wilcoxon_holm: Option<f64>,
}

/// One configuration's comparisons.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    /// Against naive (`None` for naive itself, or without common seeds).
    pub vs_naive: Option<Versus>,
    /// Against the best configuration (`None` for the best itself).
    pub vs_best: Option<Versus>,
}

/// The comparisons of a table of configurations.
#[derive(Debug, Clone)]
pub struct Comparisons {
    /// Labels of the two references, when the table has them.
    pub naive: Option<String>,
    pub best: Option<String>,
    pub rows: Vec<Row>,
}

impl Comparisons {
    /// Compares every group of `groups` with naive (the first naive configuration) and with the
    /// best non-joint configuration by mean ACC.
    pub fn of(groups: &[Group]) -> Comparisons {
        let naive = groups.iter().position(|g| g.strategy == "naive");
        let best = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.strategy != "joint" && g.acc.mean.is_finite())
            .max_by(|a, b| a.1.acc.mean.total_cmp(&b.1.acc.mean))
            .map(|(k, _)| k);
        let against = |reference: Option<usize>| -> Vec<Option<Versus>> {
            with_holm(
                (0..groups.len())
                    .map(|k| {
                        let r = reference.filter(|&r| r != k)?;
                        compare(&groups[k], &groups[r])
                    })
                    .collect(),
            )
        };
        let vs_naive = against(naive);
        let vs_best = against(best);
        let rows = groups
            .iter()
            .zip(vs_naive.into_iter().zip(vs_best))
            .map(|(g, (vs_naive, vs_best))| Row {
                label: g.label.clone(),
                vs_naive,
                vs_best,
            })
            .collect();
        Comparisons {
            naive: naive.map(|k| groups[k].label.clone()),
            best: best.map(|k| groups[k].label.clone()),
            rows,
        }
    }

    /// The table's header: the row label, then three cells per reference present.
    pub fn header(&self) -> Vec<String> {
        let mut head = vec!["configuration".to_string()];
        for reference in [&self.naive, &self.best].into_iter().flatten() {
            head.push(format!("Δ ACC vs {reference} (points)"));
            head.push(format!("t-test p vs {reference}"));
            head.push(format!("Wilcoxon p vs {reference}"));
        }
        head
    }

    /// Each row's cells, matching [`header`](Self::header).
    pub fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|row| {
                let mut cells = vec![row.label.clone()];
                for (reference, versus) in
                    [(&self.naive, &row.vs_naive), (&self.best, &row.vs_best)]
                {
                    if reference.is_some() {
                        cells.extend(versus_cells(versus.as_ref()));
                    }
                }
                cells
            })
            .collect()
    }

    /// Whether there is anything to compare (a reference and another row with common seeds).
    pub fn is_empty(&self) -> bool {
        self.rows
            .iter()
            .all(|r| r.vs_naive.is_none() && r.vs_best.is_none())
    }

    /// A Markdown table with the note under it; empty when there is nothing to compare.
    pub fn markdown(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let head = self.header();
        let mut out = format!(
            "| {} |\n|{}\n",
            head.join(" | "),
            " --- |".repeat(head.len())
        );
        for cells in self.cells() {
            let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push_str(&format!("\n{NOTE}\n"));
        out
    }

    /// The table as aligned text for the console; empty when there is nothing to compare.
    pub fn text(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let rows: Vec<Vec<String>> = std::iter::once(self.header()).chain(self.cells()).collect();
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, &w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// `a` against `b` on the seeds both ran; `None` without a common seed.
/// Each comparison with its p-values Holm-adjusted across the list (the rows of one column).
pub(super) fn with_holm(raw: Vec<Option<PairedComparison>>) -> Vec<Option<Versus>> {
    let adjust = |p: Vec<Option<f64>>| -> Vec<Option<f64>> {
        let present: Vec<f64> = p.iter().flatten().copied().collect();
        let mut adjusted = holm(&present).into_iter();
        p.iter().map(|v| v.and_then(|_| adjusted.next())).collect()
    };
    let t = adjust(
        raw.iter()
            .map(|c| c.as_ref()?.t_test.as_ref().map(|t| t.p_value))
            .collect(),
    );
    let w = adjust(
        raw.iter()
            .map(|c| c.as_ref()?.wilcoxon.as_ref().map(|t| t.p_value))
            .collect(),
    );
    raw.into_iter()
        .zip(t.into_iter().zip(w))
        .map(|(c, (t_holm, wilcoxon_holm))| {
            c.map(|comparison| Versus {
                comparison,
                t_holm,
                wilcoxon_holm,
            })
        })
        .collect()
}

/// `a` against `b`, paired by the seeds both ran.
pub(super) fn compare(a: &Group, b: &Group) -> Option<PairedComparison> {
    let (x, y): (Vec<f64>, Vec<f64>) = a
        .acc_by_seed
        .iter()
        .filter_map(|&(seed, acc)| {
            let other = b.acc_by_seed.iter().find(|(s, _)| *s == seed)?.1;
            Some((acc, other))
        })
        .unzip();
    paired(&x, &y).ok()
}

/// Δ with its interval, then the t-test's and the Wilcoxon test's p (Holm, raw in parentheses).
pub(super) fn versus_cells(versus: Option<&Versus>) -> [String; 3] {
    let Some(v) = versus else {
        return ["—".into(), "—".into(), "—".into()];
    };
    let c = &v.comparison;
    let delta = match c.ci95 {
        Some((lo, hi)) => format!(
            "{} [{}, {}] (n={})",
            signed(100.0 * c.mean_diff, 2),
            signed(100.0 * lo, 2),
            signed(100.0 * hi, 2),
            c.n
        ),
        None => format!("{} (n={})", signed(100.0 * c.mean_diff, 2), c.n),
    };
    let p = |adjusted: Option<f64>, raw: Option<f64>| match (adjusted, raw) {
        (Some(a), Some(r)) => format!("{} ({})", format_p(a), format_p(r)),
        _ => "—".into(),
    };
    [
        delta,
        p(v.t_holm, c.t_test.as_ref().map(|t| t.p_value)),
        p(v.wilcoxon_holm, c.wilcoxon.as_ref().map(|t| t.p_value)),
    ]
}

/// A p-value to three significant places, `<0.0001` below that.
fn format_p(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else if p < 0.01 {
        format!("{p:.4}")
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(strategy: &str, accs: &[(u64, f64)]) -> Group {
        crate::report::summary::test_group(strategy, strategy, serde_json::json!({}), accs)
    }

    #[test]
    fn rows_are_paired_by_seed_and_holm_corrected_per_column() {
        // naive and two regularizers on seeds 1..5; `ewc` lacks seed 5, so it pairs on four.
        let groups = vec![
            group("ewc", &[(1, 0.90), (2, 0.92), (3, 0.91), (4, 0.95)]),
            group(
                "joint",
                &[(1, 0.99), (2, 0.99), (3, 0.98), (4, 0.99), (5, 0.99)],
            ),
            group(
                "naive",
                &[(1, 0.80), (2, 0.79), (3, 0.83), (4, 0.81), (5, 0.78)],
            ),
            group(
                "si",
                &[(1, 0.93), (2, 0.94), (3, 0.92), (4, 0.96), (5, 0.90)],
            ),
        ];
        let c = Comparisons::of(&groups);
        assert_eq!(c.naive.as_deref(), Some("naive"));
        // joint is the upper bound, not a contender: si is the best.
        assert_eq!(c.best.as_deref(), Some("si"));
        let ewc = c.rows[0].vs_naive.as_ref().unwrap();
        assert_eq!(ewc.comparison.n, 4);
        // ewc - naive on seeds 1..4: 0.10, 0.13, 0.08, 0.14.
        assert!((ewc.comparison.mean_diff - 0.1125).abs() < 1e-12);
        assert!(
            c.rows[2].vs_naive.is_none(),
            "naive is not compared with itself"
        );
        assert!(c.rows[3].vs_best.is_none(), "nor the best with itself");
        // Holm over the three t-tests against naive (ewc, joint, si): the smallest raw p is
        // multiplied by 3, the adjusted values never fall in sorted order, none exceeds 1.
        let raw: Vec<f64> = [0, 1, 3]
            .iter()
            .map(|&k| {
                c.rows[k]
                    .vs_naive
                    .as_ref()
                    .unwrap()
                    .comparison
                    .t_test
                    .as_ref()
                    .unwrap()
                    .p_value
            })
            .collect();
        let adjusted: Vec<f64> = [0, 1, 3]
            .iter()
            .map(|&k| c.rows[k].vs_naive.as_ref().unwrap().t_holm.unwrap())
            .collect();
        assert_eq!(adjusted, holm(&raw));
        let smallest = raw.iter().copied().fold(f64::INFINITY, f64::min);
        let k = raw.iter().position(|&p| p == smallest).unwrap();
        assert!((adjusted[k] - 3.0 * smallest).abs() < 1e-15);
        let table = c.markdown();
        assert!(table.contains("Δ ACC vs naive (points)"), "{table}");
        assert!(table.contains("+11.25 ["), "{table}");
        assert!(c.text().lines().count() == 5, "{}", c.text());
    }

    #[test]
    fn one_seed_gives_a_difference_without_tests() {
        let groups = vec![group("naive", &[(1, 0.8)]), group("si", &[(1, 0.9)])];
        let c = Comparisons::of(&groups);
        let v = c.rows[1].vs_naive.as_ref().unwrap();
        assert_eq!(v.comparison.n, 1);
        assert!(v.comparison.t_test.is_none() && v.t_holm.is_none());
        let cells = c.cells();
        assert_eq!(cells[1][1], "+10.00 (n=1)");
        assert_eq!(cells[1][2], "—");
    }

    #[test]
    fn a_table_without_naive_compares_with_the_best_only() {
        let groups = vec![
            group("ewc", &[(1, 0.90), (2, 0.92)]),
            group("si", &[(1, 0.93), (2, 0.94)]),
        ];
        let c = Comparisons::of(&groups);
        assert!(c.naive.is_none());
        assert_eq!(c.header().len(), 4);
        assert!(Comparisons::of(&[]).is_empty());
    }
}
