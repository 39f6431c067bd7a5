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

impl Pair {
    fn new(strategy: &str, a: &Group, b: &Group) -> Pair {
        Pair {
            strategy: strategy.to_string(),
            a: a.clone(),
            b: b.clone(),
            versus: None,
        }
    }
}

/// A configuration's categorical settings (text and true/false), as `key=value` words: what
/// names a variant of a strategy across selection modes.
fn variant(group: &Group) -> String {
    let Some(params) = group.params.as_object() else {
        return String::new();
    };
    let mut words: Vec<String> = params
        .iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::String(text) => Some(format!("{key}={text}")),
            serde_json::Value::Bool(flag) => Some(format!("{key}={flag}")),
            _ => None,
        })
        .collect();
    words.sort();
    words.join(" ")
}

/// Pairs the configurations of a strategy reported several times in a folder by [`variant`].
fn pair_variants(
    strategy: &str,
    in_a: &[Group],
    in_b: &[Group],
    pairs: &mut Vec<Pair>,
    left_out: &mut Vec<String>,
) {
    let mut variants: Vec<String> = in_a.iter().chain(in_b).map(variant).collect();
    variants.sort();
    variants.dedup();
    // The words every variant shares name none of them: the table shows the rest.
    let shared: Vec<&str> = variants[0]
        .split(' ')
        .filter(|word| variants.iter().all(|v| v.split(' ').any(|w| w == *word)))
        .collect();
    for name in &variants {
        let with = |groups: &[Group]| -> Vec<Group> {
            groups
                .iter()
                .filter(|g| variant(g) == *name)
                .cloned()
                .collect()
        };
        let own: Vec<&str> = name.split(' ').filter(|w| !shared.contains(w)).collect();
        let shown = [strategy]
            .into_iter()
            .chain(own)
            .collect::<Vec<_>>()
            .join(" ");
        match (with(in_a).as_slice(), with(in_b).as_slice()) {
            ([ga], [gb]) => pairs.push(Pair::new(&shown, ga, gb)),
            ([], _) => left_out.push(format!("{shown}: not in the first folder")),
            (_, []) => left_out.push(format!("{shown}: not in the second folder")),
            _ => left_out.push(format!(
                "{shown}: several configurations of this variant reported in a folder"
            )),
        }
    }
}

/// The strategies of two folders, B against A.
pub struct Between {
    pub pairs: Vec<Pair>,
    /// Strategies not compared, with why.
    pub left_out: Vec<String>,
}

impl Between {
    /// Pairs each strategy's reported configuration in `a` with its configuration in `b`. A
    /// strategy reported in several configurations in a folder (imm's `merge: mean` and `mode`)
    /// is paired variant by variant, a variant being its text and true/false settings: the
    /// numbers (strengths, rates) are what selection chooses, so they may differ between the
    /// folders. A variant found more than once in a folder, or in one folder only, is left out
    /// (which one to compare would be a guess).
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
            let (in_a, in_b) = (of(a), of(b));
            match (in_a.as_slice(), in_b.as_slice()) {
                ([ga], [gb]) => pairs.push(Pair::new(strategy, ga, gb)),
                (_, []) => left_out.push(format!("{strategy}: not in the second folder")),
                _ => pair_variants(strategy, &in_a, &in_b, &mut pairs, &mut left_out),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::test_group;
    use serde_json::json;

    fn imm(merge: &str, lambda: f64, accs: &[(u64, f64)]) -> Group {
        let params = json!({"merge": merge, "transfer": "l2", "lambda": lambda});
        test_group(&format!("imm merge={merge}"), "imm", params, accs)
    }

    #[test]
    fn a_strategy_reported_twice_is_paired_variant_by_variant() {
        // Folder A chose lambda 1e-4 and 1e-2, folder B started both at 1e-4: the merges pair,
        // the numbers do not decide the pairing.
        let a = vec![
            imm("mean", 1e-4, &[(1, 0.90), (2, 0.92)]),
            imm("mode", 1e-2, &[(1, 0.95), (2, 0.97)]),
            test_group("naive", "naive", json!({}), &[(1, 0.8), (2, 0.8)]),
        ];
        let b = vec![
            imm("mode", 1e-4, &[(1, 0.94), (2, 0.95)]),
            imm("mean", 1e-4, &[(1, 0.88), (2, 0.89)]),
        ];
        let between = Between::of_groups(&a, &b);
        let names: Vec<&str> = between.pairs.iter().map(|p| p.strategy.as_str()).collect();
        assert_eq!(names, ["imm merge=mean", "imm merge=mode"]);
        let mean = between.pairs[0].versus.as_ref().unwrap();
        // (0.88 - 0.90 + 0.89 - 0.92) / 2
        assert!((mean.comparison.mean_diff + 0.025).abs() < 1e-12);
        assert_eq!(between.left_out, ["naive: not in the second folder"]);
    }

    #[test]
    fn a_variant_found_twice_in_a_folder_is_left_out_not_guessed() {
        let a = vec![
            imm("mean", 1e-4, &[(1, 0.90)]),
            imm("mean", 1e-2, &[(1, 0.91)]),
        ];
        let b = vec![
            imm("mean", 1e-4, &[(1, 0.88)]),
            imm("mode", 1e-4, &[(1, 0.9)]),
        ];
        let between = Between::of_groups(&a, &b);
        assert!(between.pairs.is_empty());
        assert_eq!(
            between.left_out,
            [
                "imm merge=mean: several configurations of this variant reported in a folder",
                "imm merge=mode: not in the first folder"
            ]
        );
    }
}
