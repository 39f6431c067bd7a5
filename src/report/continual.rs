//! The table of what `selection: continual` chose: per configuration and task, each seed's
//! learning rate, kept strengths and number of attempts, and the fine-tuned accuracy the
//! attempts were held to. Empty when no result was selected continually.

use super::summary::Group;
use crate::results::{ContinualChoice, ContinualOutcome};

/// The table's header.
pub const HEADER: [&str; 7] = [
    "configuration",
    "task",
    "learning rate",
    "strengths kept",
    "attempts",
    "A_ft % (mean)",
    "outcome",
];

/// What the table's columns mean.
pub const NOTE: &str = "Per configuration and task, each seed's choice, in seed order (a value \
shared by several seeds written once with ×n): the learning rate the fine-tuning search chose, the \
strengths of the model kept, the method's trainings at that rate (attempts), and A_ft, the best \
fine-tuned accuracy on the task's held-out data. Outcome counts the seeds whose attempt was \
accepted (within the drop margin of A_ft), kept as the last of the allowed attempts, retrained \
after a failed search, or not decayed (the first task, or a method without strengths). Only the \
new task's held-out data took part in any choice.";

/// The rows of the table, one per configuration and task; empty without continual results.
pub fn rows(groups: &[Group]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for g in groups {
        let mut seeds: Vec<&(u64, Vec<ContinualChoice>)> = g.continual.iter().collect();
        seeds.sort_by_key(|(seed, _)| *seed);
        let tasks = seeds.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        for t in 0..tasks {
            let choices: Vec<&ContinualChoice> = seeds
                .iter()
                .filter_map(|(_, c)| c.iter().find(|c| c.task == t))
                .collect();
            if choices.is_empty() {
                continue;
            }
            let lrs = runs(choices.iter().map(|c| number(c.lr)));
            let strengths = runs(choices.iter().map(|c| strengths_text(c)));
            let attempts = runs(choices.iter().map(|c| c.attempts.len().to_string()));
            let ft = choices.iter().map(|c| c.ft_accuracy).sum::<f64>() / choices.len() as f64;
            rows.push(vec![
                g.label.clone(),
                (t + 1).to_string(),
                lrs,
                strengths,
                attempts,
                format!("{:.2}", ft * 100.0),
                outcomes(&choices),
            ]);
        }
    }
    rows
}

/// `lambda=1e4 c=0.5`, or "—" for a method without strengths.
fn strengths_text(choice: &ContinualChoice) -> String {
    if choice.strengths.is_empty() {
        return "—".into();
    }
    choice
        .strengths
        .iter()
        .map(|(k, v)| format!("{k}={}", number(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A number as short as it reads exactly enough: `0.001`, `1e4`, `2.5`.
fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        let text = format!("{x:e}");
        text.replace("e-0", "e-")
    } else {
        format!("{}", (x * 1e6).round() / 1e6)
    }
}

/// Values in order, consecutive repeats written once with `×n`: `1e-3 ×3, 5e-4, 1e-3`.
fn runs(values: impl Iterator<Item = String>) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for v in values {
        match out.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => out.push((v, 1)),
        }
    }
    out.iter()
        .map(|(v, n)| match n {
            1 => v.clone(),
            n => format!("{v} ×{n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcomes(choices: &[&ContinualChoice]) -> String {
    let count = |o: ContinualOutcome| choices.iter().filter(|c| c.outcome == o).count();
    [
        (ContinualOutcome::Accepted, "accepted"),
        (ContinualOutcome::KeptLast, "kept last"),
        (ContinualOutcome::Retrained, "retrained"),
        (ContinualOutcome::NotDecayed, "not decayed"),
    ]
    .iter()
    .filter(|(o, _)| count(*o) > 0)
    .map(|(o, name)| format!("{name} {}", count(*o)))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_values_are_written_once_with_their_count() {
        let values = ["a", "a", "a", "b", "a"].map(String::from);
        assert_eq!(runs(values.into_iter()), "a ×3, b, a");
    }

    #[test]
    fn numbers_read_short() {
        assert_eq!(number(0.001), "0.001");
        assert_eq!(number(0.0005), "5e-4");
        assert_eq!(number(10000.0), "1e4");
        assert_eq!(number(2.5), "2.5");
    }
}
