//! `clbench compare A B`: the same strategies in two results folders (two selection modes, two
//! protocols of one benchmark), paired by seed. For each strategy reported in both, its
//! configuration in B against its configuration in A on final ACC: the mean difference with its
//! 95% interval, the paired t-test and the Wilcoxon test, Holm-corrected across strategies.

use super::comparison::{compare, versus_cells, with_holm, Versus, NOTE};
use super::md_cell;
use super::summary::Group;

/// One strategy's comparison.
pub struct Pair {
    pub strategy: String,
    /// The configuration compared in each folder.
    pub a: Group,
    pub b: Group,
    /// B against A; `None` without common seeds.
    pub versus: Option<Versus>,
}

/// The strategies of two folders, B against A.
pub struct Between {
    pub pairs: Vec<Pair>,
    /// Strategies not compared, with why.
    pub left_out: Vec<String>,
}

impl Between {
    /// Pairs each strategy's reported configuration in `a` with its configuration in `b`; a
    /// strategy with several reported configurations in a folder is left out (which one to
    /// compare would be a guess).
    pub fn of_groups(a: &[Group], b: &[Group]) -> Between {
        let mut strategies: Vec<&str> = a.iter().map(|g| g.strategy.as_str()).collect();
        strategies.dedup();
        let mut pairs = Vec::new();
        let mut left_out = Vec::new();
        for strategy in strategies {
            let of = |groups: &[Group]| -> Vec<Group> {
                groups
                    .iter()
                    .filter(|g| g.strategy == strategy)
                    .cloned()
                    .collect()
            };
            match (of(a).as_slice(), of(b).as_slice()) {
                ([ga], [gb]) => pairs.push(Pair {
                    strategy: strategy.to_string(),
                    a: ga.clone(),
                    b: gb.clone(),
                    versus: None,
                }),
                (_, []) => left_out.push(format!("{strategy}: not in the second folder")),
                _ => left_out.push(format!(
                    "{strategy}: several configurations reported in a folder"
                )),
            }
        }
        let raw = pairs.iter().map(|p| compare(&p.b, &p.a)).collect();
        for (pair, versus) in pairs.iter_mut().zip(with_holm(raw)) {
            pair.versus = versus;
        }
        Between { pairs, left_out }
    }

    /// The table as Markdown, `a_name` and `b_name` naming the folders.
    pub fn markdown(&self, a_name: &str, b_name: &str) -> String {
        let head = [
            "strategy".to_string(),
            format!("{a_name}: configuration"),
            format!("{a_name}: ACC %"),
            format!("{b_name}: configuration"),
            format!("{b_name}: ACC %"),
            format!("Δ ACC {b_name} − {a_name} (points)"),
            "t-test p".into(),
            "Wilcoxon p".into(),
        ];
        let mut out = format!(
            "| {} |\n|{}\n",
            head.join(" | "),
            " --- |".repeat(head.len())
        );
        for p in &self.pairs {
            let acc = |g: &Group| {
                let se = g.acc.std / (g.acc.n.max(1) as f64).sqrt();
                format!("{:.2} ± {:.2}", 100.0 * g.acc.mean, 100.0 * se)
            };
            let mut cells = vec![
                p.strategy.clone(),
                p.a.label.clone(),
                acc(&p.a),
                p.b.label.clone(),
                acc(&p.b),
            ];
            cells.extend(versus_cells(p.versus.as_ref()));
            let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push_str(&format!(
            "\nACC ± one standard error over seeds. {}\n",
            NOTE.replace(
                " The best configuration is the one with the highest mean ACC, joint (the upper bound) left out.",
                ""
            )
        ));
        if !self.left_out.is_empty() {
            out.push_str(&format!("\nNot compared: {}.\n", self.left_out.join("; ")));
        }
        out
    }
}
