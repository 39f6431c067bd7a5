//! The part of a scenario one job sees, for model selection: a stratified validation split held
//! out of every task's training data, evaluation on it instead of the test set, and a range of
//! the tasks (the first tasks choose, the remaining ones report).

use anyhow::{bail, Result};
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Scenario;
use crate::data::Split;

/// A validation split: `fraction` of every class's training samples, drawn from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    pub fraction: f64,
    pub seed: u64,
}

/// What a job is scored on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evaluate {
    #[default]
    Test,
    /// The held-out training samples (the search runs of `holdout` selection).
    Validation,
}

/// Which part of the experiment's scenario a job sees. The default is all of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Samples held out of training (and, with [`Evaluate::Validation`], scored instead of the
    /// test set).
    pub holdout: Option<Holdout>,
    pub evaluate: Evaluate,
    /// Only the tasks `start..end`, in order.
    pub tasks: Option<(usize, usize)>,
}

/// Which training samples a [`Holdout`] keeps out: per class, `round(fraction * n_c)` samples
/// (at least one, and one fewer than the class has), chosen by shuffling the class's samples
/// with a stream seeded by `seed` alone. The split is of the dataset, not of a task, so in
/// permuted and rotated scenarios an image held out of one task is held out of every task
/// (otherwise a validation image of one task would be trained on, permuted, in another).
pub fn holdout_mask(train: &Split, holdout: Holdout) -> Vec<bool> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); train.classes.max(1)];
    for (i, &label) in train.labels.iter().enumerate() {
        if let Some(members) = by_class.get_mut(usize::from(label)) {
            members.push(i);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(holdout.seed);
    let mut held = vec![false; train.len()];
    for members in &mut by_class {
        members.shuffle(&mut rng);
        let n = members.len();
        if n < 2 {
            continue;
        }
        let k = ((holdout.fraction * n as f64).round() as usize).clamp(1, n - 1);
        for &i in &members[..k] {
            held[i] = true;
        }
    }
    held
}

impl Scenario {
    /// The scenario as `view` shows it: tasks outside its range dropped, held-out samples moved
    /// from each task's training indices to its validation indices, and evaluation on them if
    /// asked. Output columns are unchanged, so a view trains the same network shape.
    pub fn view(&self, train: &Split, view: &View) -> Result<Scenario> {
        let mut out = self.clone();
        if let Some((start, end)) = view.tasks {
            if start >= end || end > self.tasks.len() {
                bail!(
                    "tasks {start}..{end} are not a range of the scenario's {} tasks",
                    self.tasks.len()
                );
            }
            out.tasks = self.tasks[start..end].to_vec();
        }
        if let Some(holdout) = view.holdout {
            let held = holdout_mask(train, holdout);
            for (t, plan) in out.tasks.iter_mut().enumerate() {
                let (validation, kept): (Vec<i64>, Vec<i64>) =
                    plan.train_indices.iter().partition(|&&i| held[i as usize]);
                if kept.is_empty() || validation.is_empty() {
                    bail!(
                        "task {t}: holding out a fraction {} of {} training samples leaves none to \
                         train on or none to validate on; choose a fraction between 0 and 1",
                        holdout.fraction,
                        plan.train_indices.len()
                    );
                }
                plan.train_indices = kept;
                plan.validation_indices = validation;
            }
        }
        if view.evaluate == Evaluate::Validation && view.holdout.is_none() {
            bail!("evaluation on validation data needs a holdout");
        }
        out.evaluate = view.evaluate;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Heads, Mode};

    /// 3 classes with 10, 20 and 31 samples, labels interleaved.
    fn split() -> Split {
        let mut labels = Vec::new();
        for (class, n) in [(0u8, 10), (1, 20), (2, 31)] {
            labels.extend(std::iter::repeat_n(class, n));
        }
        labels.reverse();
        Split {
            images: vec![0; labels.len() * 4],
            labels,
            channels: 1,
            rows: 2,
            cols: 2,
            classes: 3,
        }
    }

    #[test]
    fn the_holdout_is_stratified_seeded_and_disjoint_from_training() {
        let train = split();
        let h = Holdout {
            fraction: 0.1,
            seed: 4,
        };
        let held = holdout_mask(&train, h);
        let per_class = |mask: &[bool]| {
            let mut counts = [0; 3];
            for (i, &m) in mask.iter().enumerate() {
                if m {
                    counts[train.labels[i] as usize] += 1;
                }
            }
            counts
        };
        // round(0.1 * n): 1, 2 and 3 samples.
        assert_eq!(per_class(&held), [1, 2, 3]);
        assert_eq!(held, holdout_mask(&train, h), "same seed, same split");
        assert_ne!(held, holdout_mask(&train, Holdout { seed: 5, ..h }));

        let scenario = Scenario::split(
            &train,
            &train,
            &[vec![0, 1], vec![2]],
            Mode::Task,
            Heads::Multi,
        )
        .unwrap();
        let view = scenario
            .view(
                &train,
                &View {
                    holdout: Some(h),
                    evaluate: Evaluate::Validation,
                    tasks: None,
                },
            )
            .unwrap();
        for (before, after) in scenario.tasks.iter().zip(&view.tasks) {
            let mut all: Vec<i64> = after
                .train_indices
                .iter()
                .chain(&after.validation_indices)
                .copied()
                .collect();
            all.sort();
            let mut original = before.train_indices.clone();
            original.sort();
            assert_eq!(
                all, original,
                "train and validation partition the task's samples"
            );
            assert!(after.validation_indices.iter().all(|&i| held[i as usize]));
            assert!(after.train_indices.iter().all(|&i| !held[i as usize]));
        }
        assert_eq!(view.evaluate, Evaluate::Validation);
    }

    #[test]
    fn a_task_range_keeps_the_columns_and_bad_views_are_errors() {
        let train = split();
        let scenario = Scenario::split(
            &train,
            &train,
            &[vec![0], vec![1], vec![2]],
            Mode::Class,
            Heads::Single,
        )
        .unwrap();
        let later = scenario
            .view(
                &train,
                &View {
                    tasks: Some((1, 3)),
                    ..View::default()
                },
            )
            .unwrap();
        assert_eq!(later.tasks.len(), 2);
        assert_eq!(later.tasks[0].columns, scenario.tasks[1].columns);
        assert_eq!(later.outputs, scenario.outputs);
        for bad in [
            View {
                tasks: Some((2, 2)),
                ..View::default()
            },
            View {
                tasks: Some((0, 4)),
                ..View::default()
            },
            View {
                evaluate: Evaluate::Validation,
                ..View::default()
            },
            View {
                holdout: Some(Holdout {
                    fraction: 0.1,
                    seed: 0,
                }),
                ..View::default()
            },
        ] {
            // A class of 10 samples at fraction 0.1 still trains on 9: only the first three fail.
            let result = scenario.view(&train, &bad);
            if bad.holdout.is_some() {
                assert!(result.is_ok());
            } else {
                assert!(result.is_err(), "{bad:?}");
            }
        }
    }
}
