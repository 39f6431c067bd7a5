//! What happens between passes over a task when validation data are held out: HAT's
//! learning-rate decay on a validation-loss plateau, and early stopping that restores the
//! best-validation weights (joansj/hat `src/approaches/sgd.py` and the others: after each epoch,
//! a better validation loss keeps the weights and resets the patience; otherwise the patience
//! runs down, and at zero the learning rate is divided by `factor`, training stops once it falls
//! below `min_lr`, and the best weights are put back at the end of the task).
//!
//! Both are off by default. The state lives within one task (each task starts at the configured
//! learning rate, as HAT's code does), so checkpoints between tasks need none of it.

use serde::{Deserialize, Serialize};

/// `lr_plateau:` in `training:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plateau {
    /// Passes without a better validation loss before the learning rate is divided.
    pub patience: usize,
    /// The divisor (HAT's `lr_factor`, 3).
    pub factor: f64,
    /// Training of the task stops once the learning rate falls below this (HAT's `lr_min`);
    /// 0 never stops (UCL's trainers, whose `break` is commented out).
    pub min_lr: f64,
    /// A fresh optimizer at each cut, as the HAT code's `_get_optimizer(lr)`: Adam's moments (or
    /// SGD's momentum) start again. Off by default and then left out of the settings.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart_optimizer: bool,
    /// The validation loss watched: `ce`, the default (left out of the settings), or
    /// `criterion`, the method's whole training loss on the held-out data in eval mode (its
    /// `task_loss` and penalty), as the HAT and UCL trainers' `eval` computes it.
    #[serde(default, skip_serializing_if = "Watched::is_ce")]
    pub watch: Watched,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which loss on held-out data the plateau schedule and early stopping watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watched {
    /// The masked cross-entropy alone.
    #[default]
    Ce,
    /// The method's whole criterion: its task loss (distillation, HAT's regularizer) plus its
    /// penalty.
    Criterion,
}

impl Watched {
    fn is_ce(&self) -> bool {
        *self == Watched::Ce
    }
}

/// `early_stopping:` in `training:`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Stop the task after this many passes without a better validation loss (none: never
    /// stop early, only restore).
    #[serde(default)]
    pub patience: Option<usize>,
    /// Put back the weights of the pass with the best validation loss at the end of the task.
    #[serde(default = "yes")]
    pub restore_best: bool,
}

fn yes() -> bool {
    true
}

/// What to do after a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// The validation loss improved: keep these weights as the best.
    Improved,
    /// No improvement; go on at the same learning rate.
    Continue,
    /// No improvement for `patience` passes: go on at this learning rate.
    Decay(f64),
    /// Stop training this task.
    Stop,
}

/// One task's schedule: the best validation loss so far and the patience left.
#[derive(Debug, Clone)]
pub struct Watch {
    plateau: Option<Plateau>,
    early: Option<EarlyStopping>,
    lr: f64,
    best: f64,
    /// Passes since the best, for early stopping.
    since_best: usize,
    /// HAT's patience counter, for the plateau.
    patience_left: usize,
}

impl Watch {
    /// A fresh task at learning rate `lr`.
    pub fn new(lr: f64, plateau: Option<Plateau>, early: Option<EarlyStopping>) -> Watch {
        Watch {
            plateau,
            early,
            lr,
            best: f64::INFINITY,
            since_best: 0,
            patience_left: plateau.map_or(0, |p| p.patience),
        }
    }

    /// The schedule's decision after a pass whose validation loss is `loss` (a NaN never
    /// improves).
    pub fn after_pass(&mut self, loss: f64) -> Action {
        if loss < self.best {
            self.best = loss;
            self.since_best = 0;
            if let Some(p) = self.plateau {
                self.patience_left = p.patience;
            }
            return Action::Improved;
        }
        self.since_best += 1;
        if let Some(patience) = self.early.and_then(|e| e.patience) {
            if self.since_best >= patience {
                return Action::Stop;
            }
        }
        let Some(p) = self.plateau else {
            return Action::Continue;
        };
        self.patience_left = self.patience_left.saturating_sub(1);
        if self.patience_left > 0 {
            return Action::Continue;
        }
        self.lr /= p.factor;
        if self.lr < p.min_lr {
            return Action::Stop;
        }
        self.patience_left = p.patience;
        Action::Decay(self.lr)
    }

    /// Whether the best weights are put back at the end of the task.
    pub fn restores_best(&self) -> bool {
        self.early.is_some_and(|e| e.restore_best)
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plateau_schedule_on_a_hand_made_sequence_of_losses() {
        // HAT's settings: patience 2, factor 3, stop below 0.01, from lr 0.05.
        let plateau = Plateau {
            patience: 2,
            factor: 3.0,
            min_lr: 0.01,
            restart_optimizer: false,
            watch: Watched::Ce,
        };
        let mut w = Watch::new(0.05, Some(plateau), None);
        let actions: Vec<Action> = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.75]
            .into_iter()
            .map(|loss| w.after_pass(loss))
            .collect();
        assert_eq!(
            actions,
            vec![
                Action::Improved,          // 1.0
                Action::Improved,          // 0.8
                Action::Continue,          // 0.9: patience 2 -> 1
                Action::Decay(0.05 / 3.0), // 0.85: patience 0: lr / 3, patience back to 2
                Action::Improved,          // 0.7
                Action::Continue,          // 0.75: patience 2 -> 1
                Action::Stop,              // 0.75: lr / 3 = 0.0056 is below 0.01
            ]
        );
        // A NaN validation loss never counts as an improvement.
        let mut w = Watch::new(0.05, None, None);
        assert_eq!(w.after_pass(f64::NAN), Action::Continue);
    }

    #[test]
    fn early_stopping_counts_passes_since_the_best() {
        let early = EarlyStopping {
            patience: Some(2),
            restore_best: true,
        };
        let mut w = Watch::new(0.1, None, Some(early));
        assert_eq!(w.after_pass(0.5), Action::Improved);
        assert_eq!(w.after_pass(0.6), Action::Continue);
        assert_eq!(w.after_pass(0.4), Action::Improved);
        assert_eq!(w.after_pass(0.45), Action::Continue);
        assert_eq!(w.after_pass(0.41), Action::Stop);
        assert!(w.restores_best());
        assert_eq!(w.lr(), 0.1);
    }
}
