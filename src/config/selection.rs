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
//! - `continual`: De Lange et al.'s framework ("A continual learning survey", TPAMI 2021):
//!   inside every run, task by task, a learning rate is chosen by fine-tuning on the new task and
//!   the method's strengths are decayed until the new task is learnt well enough, both judged on
//!   the new task's held-out data only (see [`Continual`] and `runner::continual`). No search
//!   runs: every grid point is a starting strength, run on `seeds` and reported on the test set.

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
    /// continual: the learning rates of the maximal-plasticity search (default CLsurvey's
    /// `1e-2, 5e-3, 1e-3, 5e-4, 1e-4`).
    #[serde(default)]
    pub lr_grid: Option<Vec<f64>>,
    /// continual: the accepted drop p below the fine-tuned accuracy (default 0.2).
    #[serde(default)]
    pub drop_margin: Option<f64>,
    /// continual: the factor a rejected strength is multiplied by (default 0.5).
    #[serde(default)]
    pub decay: Option<f64>,
    /// continual: trainings of the method per task at most (default 10).
    #[serde(default)]
    pub max_attempts: Option<usize>,
    /// continual: whether a task starts from the strengths the previous task ended with
    /// (CLsurvey, the default) or from the configured ones (FACIL).
    #[serde(default)]
    pub carry_over: Option<bool>,
    /// continual: whether the method is trained once more after a search that accepted nothing,
    /// at the strengths decayed once more (FACIL), instead of keeping the last attempt (CLsurvey,
    /// the default).
    #[serde(default)]
    pub retrain: Option<bool>,
    /// continual: the learning rates searched after the first task: `all` of the grid (CLsurvey,
    /// the default) or `below_first`, the three largest below the first task's (FACIL).
    #[serde(default)]
    pub later_lrs: Option<LaterLrs>,
}

/// Which learning rates `continual` searches on the tasks after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaterLrs {
    /// The whole grid, on every task (CLsurvey).
    All,
    /// The three largest rates of the grid below the first task's choice (FACIL's
    /// `gridsearch.py`, `lr_searches` 3); the first task's own rate when none is below it.
    BelowFirst,
}

/// The settings of `selection: continual`, recorded in every job's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continual {
    /// The validation split every task's choice is judged on.
    pub holdout: Holdout,
    pub lr_grid: Vec<f64>,
    pub drop_margin: f64,
    pub decay: f64,
    pub max_attempts: usize,
    pub carry_over: bool,
    pub retrain: bool,
    pub later_lrs: LaterLrs,
}

/// CLsurvey's `--lr_grid` default (`src/framework/main.py`).
pub const CLSURVEY_LR_GRID: [f64; 5] = [1e-2, 5e-3, 1e-3, 5e-4, 1e-4];

impl Continual {
    /// The learning rates searched on `task`, given the first task's choice (none yet on the
    /// first task).
    pub fn lrs_for(&self, task: usize, first_choice: Option<f64>) -> Vec<f64> {
        match (self.later_lrs, task, first_choice) {
            (LaterLrs::BelowFirst, t, Some(first)) if t > 0 => {
                let mut below: Vec<f64> = self
                    .lr_grid
                    .iter()
                    .copied()
                    .filter(|&lr| lr < first)
                    .collect();
                below.sort_by(|a, b| b.total_cmp(a));
                below.truncate(3);
                if below.is_empty() {
                    vec![first]
                } else {
                    below
                }
            }
            _ => self.lr_grid.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMode {
    Fixed,
    Holdout,
    FirstTasks,
    TestOracle,
    Continual,
}

impl SelectionMode {
    /// The mode as written in the YAML.
    pub fn name(&self) -> &'static str {
        match self {
            SelectionMode::Fixed => "fixed",
            SelectionMode::Holdout => "holdout",
            SelectionMode::FirstTasks => "first_tasks",
            SelectionMode::TestOracle => "test_oracle",
            SelectionMode::Continual => "continual",
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
    Continual(Continual),
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
            Selection::Continual(_) => SelectionMode::Continual,
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
            Selection::Continual(c) => format!(
                "chosen continually, task by task, on the new task's held-out data only ({}% of each class's \
                 training samples, split seed {}): learning rate by fine-tuning, strengths decayed by {} until \
                 within {}% of it, at most {} attempts{}{}",
                c.holdout.fraction * 100.0,
                c.holdout.seed,
                c.decay,
                c.drop_margin * 100.0,
                c.max_attempts,
                if c.carry_over { ", carried over" } else { ", reset each task" },
                if c.retrain { ", retrained after a failed search" } else { "" },
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
            Selection::Continual(_) => "continual",
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
            Selection::Continual(c) => View {
                holdout: Some(c.holdout),
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
