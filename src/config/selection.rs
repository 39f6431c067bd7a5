//! How each strategy's configuration is chosen from its grid (`selection:`), and the choice
//! itself, which reads only the scores the mode allows (never the test set, except under
//! `test_oracle`, which says so on every table).
//!
//! - `fixed`: no choice; every strategy entry states one setting (a paper's reproduction).
//! - `holdout` (the default when a grid has more than one point): a stratified, seeded
//!   validation split of each task's training data is held out of training in every run. Search
//!   runs on `search_seeds` score each grid point on it; the configuration with the highest mean
//!   final validation ACC is then run on `seeds` (disjoint from the search seeds) and reported on
//!   the test set.
//! - `first_tasks`: search runs see only the first `tasks` tasks; the chosen configuration runs on
//!   the remaining tasks, which alone are reported (Chaudhry et al.'s A-GEM protocol).
//! - `test_oracle`: every grid point on every seed, the best by test ACC: what most papers'
//!   code does, kept for comparison and labelled "selected on test data (optimistic)".

use serde::{Deserialize, Serialize};

use crate::scenario::{Evaluate, Holdout, View};

/// `selection:` as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionSection {
    /// `fixed`, `holdout`, `first_tasks` or `test_oracle`; default: `holdout` when a strategy's
    /// grid has more than one point, else `fixed`.
    #[serde(default)]
    pub mode: Option<SelectionMode>,
    /// holdout: the fraction of every class's training samples held out (default 0.1).
    #[serde(default)]
    pub validation_fraction: Option<f64>,
    /// holdout: the seed of the split, shared by every job (default 0).
    #[serde(default)]
    pub split_seed: Option<u64>,
    /// holdout and first_tasks: the seeds of the search runs, disjoint from `seeds`
    /// (default `[0]`).
    #[serde(default)]
    pub search_seeds: Option<Vec<u64>>,
    /// first_tasks: how many leading tasks the configuration is chosen on.
    #[serde(default)]
    pub tasks: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMode {
    Fixed,
    Holdout,
    FirstTasks,
    TestOracle,
}

impl SelectionMode {
    /// The mode as written in the YAML.
    pub fn name(&self) -> &'static str {
        match self {
            SelectionMode::Fixed => "fixed",
            SelectionMode::Holdout => "holdout",
            SelectionMode::FirstTasks => "first_tasks",
            SelectionMode::TestOracle => "test_oracle",
        }
    }
}

/// The resolved selection of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    Fixed,
    TestOracle,
    Holdout {
        holdout: Holdout,
        search_seeds: Vec<u64>,
    },
    FirstTasks {
        tasks: usize,
        search_seeds: Vec<u64>,
    },
}

/// The default validation fraction.
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.1;

impl Selection {
    /// The mode this selection resolved from.
    pub fn mode(&self) -> SelectionMode {
        match self {
            Selection::Fixed => SelectionMode::Fixed,
            Selection::TestOracle => SelectionMode::TestOracle,
            Selection::Holdout { .. } => SelectionMode::Holdout,
            Selection::FirstTasks { .. } => SelectionMode::FirstTasks,
        }
    }

    /// How the reported configurations were chosen, for every table, chart and CSV.
    pub fn label(&self) -> String {
        match self {
            Selection::Fixed => "fixed by the experiment file (no selection)".into(),
            Selection::TestOracle => "selected on test data (optimistic)".into(),
            Selection::Holdout {
                holdout,
                search_seeds,
            } => format!(
                "chosen on validation data ({}% of each class's training samples held out, split seed {}; search seeds {})",
                holdout.fraction * 100.0,
                holdout.seed,
                seeds_text(search_seeds)
            ),
            Selection::FirstTasks {
                tasks,
                search_seeds,
            } => format!(
                "chosen on the first {tasks} task(s) (search seeds {}), reported on the remaining tasks",
                seeds_text(search_seeds)
            ),
        }
    }

    /// The short tag of the label, for CSV columns and chart captions.
    pub fn tag(&self) -> &'static str {
        match self {
            Selection::Fixed => "fixed",
            Selection::TestOracle => "test_oracle (optimistic)",
            Selection::Holdout { .. } => "holdout",
            Selection::FirstTasks { .. } => "first_tasks",
        }
    }

    /// The seeds of the search runs (none for fixed and test_oracle).
    pub fn search_seeds(&self) -> &[u64] {
        match self {
            Selection::Holdout { search_seeds, .. }
            | Selection::FirstTasks { search_seeds, .. } => search_seeds,
            _ => &[],
        }
    }

    /// Whether the mode chooses by search runs (holdout, first_tasks); whether any entry has a
    /// grid to choose from is [`Plan::searches`](super::Plan::searches).
    pub fn searches(&self) -> bool {
        !self.search_seeds().is_empty()
    }

    /// What a search run sees, of a scenario with `num_tasks` tasks.
    pub fn search_view(&self) -> View {
        match self {
            Selection::Holdout { holdout, .. } => View {
                holdout: Some(*holdout),
                evaluate: Evaluate::Validation,
                tasks: None,
            },
            Selection::FirstTasks { tasks, .. } => View {
                tasks: Some((0, *tasks)),
                ..View::default()
            },
            _ => View::default(),
        }
    }

    /// What a reported run sees: the same training data as the search (holdout), or the tasks
    /// the search did not see (first_tasks).
    pub fn report_view(&self, num_tasks: usize) -> View {
        match self {
            Selection::Holdout { holdout, .. } => View {
                holdout: Some(*holdout),
                ..View::default()
            },
            Selection::FirstTasks { tasks, .. } => View {
                tasks: Some((*tasks, num_tasks)),
                ..View::default()
            },
            _ => View::default(),
        }
    }
}

fn seeds_text(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One search run's outcome as the choice sees it: which grid point of which entry, and its
/// selection score (final ACC on the validation data, or on the first tasks). Nothing else of
/// the run reaches [`choose`], so no test figure can.
#[derive(Debug, Clone)]
pub struct SearchScore {
    pub entry: usize,
    /// The grid point's resolved parameters.
    pub params: serde_json::Value,
    pub seed: u64,
    pub score: f64,
}

/// For each entry, the grid point with the highest mean score over the search seeds; ties go
/// to the point that comes first in `points` (the file's grid order). A point missing a seed's
/// score is not chosen while another has them all. Returns `(entry, params)` per entry that has
/// points.
pub fn choose(
    points: &[(usize, serde_json::Value)],
    scores: &[SearchScore],
    search_seeds: &[u64],
) -> Vec<(usize, serde_json::Value, f64)> {
    let mut chosen: Vec<(usize, serde_json::Value, f64)> = Vec::new();
    for (entry, params) in points {
        let mine: Vec<f64> = search_seeds
            .iter()
            .filter_map(|seed| {
                scores
                    .iter()
                    .find(|s| s.entry == *entry && &s.params == params && s.seed == *seed)
                    .map(|s| s.score)
            })
            .filter(|s| s.is_finite())
            .collect();
        if mine.len() < search_seeds.len() {
            continue;
        }
        let mean = mine.iter().sum::<f64>() / mine.len().max(1) as f64;
        match chosen.iter_mut().find(|(e, _, _)| e == entry) {
            Some(best) if mean > best.2 => *best = (*entry, params.clone(), mean),
            Some(_) => {}
            None => chosen.push((*entry, params.clone(), mean)),
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_choice_is_the_best_mean_over_search_seeds_first_on_ties() {
        let points = vec![
            (0, json!({"lambda": 1.0})),
            (0, json!({"lambda": 10.0})),
            (0, json!({"lambda": 100.0})),
            (1, json!({"c": 0.1})),
            (1, json!({"c": 1.0})),
        ];
        let score = |entry, params: serde_json::Value, seed, score| SearchScore {
            entry,
            params,
            seed,
            score,
        };
        let scores = vec![
            score(0, json!({"lambda": 1.0}), 0, 0.80),
            score(0, json!({"lambda": 1.0}), 9, 0.90), // mean 0.85
            score(0, json!({"lambda": 10.0}), 0, 0.95),
            score(0, json!({"lambda": 10.0}), 9, 0.77), // mean 0.86: chosen
            score(0, json!({"lambda": 100.0}), 0, 0.99), // one seed only: not chosen
            score(1, json!({"c": 0.1}), 0, 0.7),
            score(1, json!({"c": 0.1}), 9, 0.7),
            score(1, json!({"c": 1.0}), 0, 0.7),
            score(1, json!({"c": 1.0}), 9, 0.7), // a tie: the first point wins
        ];
        let chosen = choose(&points, &scores, &[0, 9]);
        assert_eq!(chosen.len(), 2);
        assert_eq!(chosen[0].1, json!({"lambda": 10.0}));
        assert!((chosen[0].2 - 0.86).abs() < 1e-12);
        assert_eq!(chosen[1].1, json!({"c": 0.1}));
    }

    #[test]
    fn labels_say_how_the_configuration_was_chosen() {
        assert_eq!(
            Selection::TestOracle.label(),
            "selected on test data (optimistic)"
        );
        let holdout = Selection::Holdout {
            holdout: Holdout {
                fraction: 0.1,
                seed: 0,
            },
            search_seeds: vec![0],
        };
        assert!(holdout
            .label()
            .starts_with("chosen on validation data (10%"));
        assert_eq!(holdout.search_view().evaluate, Evaluate::Validation);
        assert_eq!(holdout.report_view(5).evaluate, Evaluate::Test);
        let first = Selection::FirstTasks {
            tasks: 3,
            search_seeds: vec![0],
        };
        assert_eq!(first.search_view().tasks, Some((0, 3)));
        assert_eq!(first.report_view(20).tasks, Some((3, 20)));
    }
}
