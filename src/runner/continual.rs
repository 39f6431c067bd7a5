//! `selection: continual`: De Lange et al.'s continual hyperparameter framework ("A continual
//! learning survey: Defying forgetting in classification tasks", TPAMI 2021), run inside a job,
//! task by task, reading nothing but the new task's own held-out data.
//!
//! Ported from Mattdl/CLsurvey 1599657 (`src/framework/framework_train.py`, defaults in
//! `src/framework/main.py`, the search in `src/framework/lr_grid_train.py`), with FACIL's
//! variants (mmasana/FACIL e09d2c8, `src/gridsearch.py`) as settings. For each task t:
//!
//! 1. **Maximal-plasticity search.** From the task's starting state, the network is fine-tuned
//!    on task t (no method: plain cross-entropy) at each learning rate of `lr_grid`; the best
//!    held-out accuracy on task t is A_ft and its rate (the first on ties) is chosen.
//! 2. **Stability decay.** The method is trained on task t at that rate from the same starting
//!    state with its strengths H. It is accepted when its held-out accuracy on task t is at
//!    least `(1 - drop_margin) * A_ft`; otherwise H is decayed and the method tried again from
//!    the same starting state, up to `max_attempts` trainings. A method with several strengths
//!    (its registration marks them, see `ParamSpec::strength`) decays one at a time, the others
//!    put back, then all together, as CLsurvey's `hyperparamDecay` does ([`StrengthSchedule`]).
//!
//! Every training (fine-tune or attempt) starts from the same state: the network's weights and
//! buffers, the optimizer's state, the method's saved state and the shuffling RNG's position,
//! all restored from a [`Snapshot`] taken when the task began; so an attempt's training leaves
//! no trace in the next, and the kept one is the run a fixed job at its rate and strengths
//! would have made.
//!
//! Where the two reference implementations differ:
//! - **The first task.** CLsurvey selects nothing there: by default every method starts from
//!   one shared model trained on it (an SI model, `first_task_basemodel_dump`). FACIL searches
//!   the learning rate there and skips the strength search. clbench does as FACIL: the rate is
//!   searched, and the method trains once at it (its penalty is zero on the first task, so there
//!   is nothing to decay), so the method's own state of the first task (SI's path integral,
//!   HAT's masks) is its own.
//! - **Later learning rates.** `later_lrs: all` (CLsurvey) searches the whole grid on every
//!   task; `below_first` (FACIL) only the three largest rates below the first task's.
//! - **Carry-over.** With `carry_over: true` (CLsurvey) the next task starts from the strengths
//!   this one ended with; with `false` (FACIL) from the configured ones.
//! - **After the last failed attempt.** CLsurvey keeps the last attempt's model and carries
//!   the strengths decayed once more (never tried); with `retrain: true` FACIL's choice is made:
//!   the method is trained once more from the task's start at those strengths and that model
//!   is kept. (FACIL retrains after every search; after an accepted one that retraining is the
//!   accepted attempt itself, bit for bit, so it is not repeated.)
//! - **A method without strengths** (naive, joint, frozen, restart; CLsurvey's IMM and joint)
//!   gets the learning-rate search only.
//!
//! The fine-tunes start from the task's starting optimizer state when it holds only the
//! network's parameters (the method's own parameters, e.g. HAT's embeddings, are not trained by
//! a fine-tune); otherwise from a fresh optimizer.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand_chacha::ChaCha8Rng;

use crate::config::selection::Continual;
use crate::model::Net;
use crate::results::{Attempt, ContinualChoice, ContinualOutcome, CurvePoint, LrScore};
use crate::strategy::{ParamMap, SavedState, Strategy, TaskData};
use crate::train::Trainer;

use super::job::TaskRun;

/// The method whose strengths are decayed.
pub(super) struct Method<'a> {
    /// The job's resolved parameters (the configured strengths among them).
    pub params: &'a serde_json::Value,
    /// The names of the method's strengths (empty: no stability decay).
    pub strengths: &'a [&'static str],
    /// Builds the method afresh with other parameters, attached as the job's was.
    pub rebuild: &'a dyn Fn(&serde_json::Value) -> Result<Box<dyn Strategy>>,
}

/// What the choice on one task produced.
pub(super) struct Choice {
    pub record: ContinualChoice,
    /// The kept training's curve.
    pub points: Vec<CurvePoint>,
    /// Seconds spent on the fine-tunes and the trainings not kept.
    pub selection_s: f64,
}

/// Chooses the learning rate and strengths of the task `run` trains, and leaves the network,
/// trainer, RNG and `strategy` as the kept training left them (the task's `finish` is the
/// caller's). `earlier` holds the choices of the tasks before.
#[allow(clippy::too_many_arguments)]
pub(super) fn choose(
    run: &TaskRun,
    method: &Method,
    settings: &Continual,
    strategy: &mut Box<dyn Strategy>,
    trainer: &mut Trainer,
    rng: &mut ChaCha8Rng,
    held_out: &TaskData,
    earlier: &[ContinualChoice],
) -> Result<Choice> {
    let started = Instant::now();
    let t = run.task();
    if held_out.x.size()[0] == 0 {
        bail!(
            "selection: continual judges task {t} on its held-out data, but the validation split left it none; \
             raise selection.validation_fraction"
        );
    }
    let decays = t > 0 && !method.strengths.is_empty();
    let snapshot = Snapshot::take(run.model, trainer, strategy.as_ref(), rng, decays)?;

    let lrs = settings.lrs_for(t, earlier.first().map(|c| c.lr));
    let mut lr_search = Vec::with_capacity(lrs.len());
    for &lr in &lrs {
        snapshot.restore_for_fine_tune(run.model, trainer, rng)?;
        trainer.set_lr(lr);
        run.train(&mut FineTune, trainer, rng)?;
        let accuracy = run.held_out_accuracy(&mut FineTune, held_out)?;
        lr_search.push(LrScore { lr, accuracy });
    }
    let best = lr_search
        .iter()
        .fold(None::<&LrScore>, |best, s| match best {
            Some(b) if b.accuracy >= s.accuracy => Some(b),
            _ => Some(s),
        })
        .expect("the grid has at least one rate");
    let (lr, ft_accuracy) = (best.lr, best.accuracy);

    let configured = configured_strengths(method)?;
    let start = match (settings.carry_over, earlier.last()) {
        (true, Some(previous)) if !previous.carried.is_empty() => previous.carried.clone(),
        _ => configured,
    };
    let mut attempts = Vec::new();
    let mut kept_time = 0.0;
    let mut train_at = |strategy: &mut dyn Strategy,
                        trainer: &mut Trainer,
                        rng: &mut ChaCha8Rng,
                        strengths: &BTreeMap<String, f64>|
     -> Result<(Vec<CurvePoint>, f64)> {
        let tick = Instant::now();
        trainer.set_lr(lr);
        let points = run.train(strategy, trainer, rng)?;
        let accuracy = run.held_out_accuracy(strategy, held_out)?;
        kept_time = tick.elapsed().as_secs_f64();
        attempts.push(Attempt {
            strengths: strengths.clone(),
            accuracy,
            accepted: false,
        });
        Ok((points, accuracy))
    };

    let (points, outcome, strengths, carried, threshold) = if !decays {
        snapshot.restore(run.model, trainer, &strategy.parameters(), rng)?;
        let (points, _) = train_at(strategy.as_mut(), trainer, rng, &start)?;
        (
            points,
            ContinualOutcome::NotDecayed,
            start.clone(),
            start,
            None,
        )
    } else {
        let threshold = (1.0 - settings.drop_margin) * ft_accuracy;
        let mut schedule = StrengthSchedule::new(start, settings.decay);
        let mut kept = None;
        for attempt in 0..settings.max_attempts {
            let tried = schedule.current().clone();
            let mut candidate = snapshot.rebuild(method, &tried, run.model, trainer, rng)?;
            let (points, accuracy) = train_at(candidate.as_mut(), trainer, rng, &tried)?;
            if accuracy >= threshold {
                kept = Some((candidate, points, ContinualOutcome::Accepted, tried.clone()));
                schedule.accept();
                break;
            }
            schedule.decay();
            if attempt + 1 == settings.max_attempts {
                kept = Some((candidate, points, ContinualOutcome::KeptLast, tried));
            }
        }
        let (mut candidate, mut points, mut outcome, mut used) =
            kept.expect("max_attempts >= 1 makes at least one attempt");
        if outcome == ContinualOutcome::KeptLast && settings.retrain {
            used = schedule.current().clone();
            candidate = snapshot.rebuild(method, &used, run.model, trainer, rng)?;
            (points, _) = train_at(candidate.as_mut(), trainer, rng, &used)?;
            outcome = ContinualOutcome::Retrained;
        }
        *strategy = candidate;
        let carried = schedule.current().clone();
        (points, outcome, used, carried, Some(threshold))
    };
    if let Some(last) = attempts.last_mut() {
        last.accepted = outcome == ContinualOutcome::Accepted;
    }
    let search_s = started.elapsed().as_secs_f64();
    Ok(Choice {
        record: ContinualChoice {
            task: t,
            lr_search,
            lr,
            ft_accuracy,
            threshold,
            attempts,
            outcome,
            strengths,
            carried,
            search_s,
        },
        points,
        selection_s: (search_s - kept_time).max(0.0),
    })
}

/// The configured value of each of the method's strengths.
fn configured_strengths(method: &Method) -> Result<BTreeMap<String, f64>> {
    method
        .strengths
        .iter()
        .map(|&name| {
            let value = method.params.get(name).and_then(|v| v.as_f64()).ok_or_else(|| {
                anyhow!("selection: continual decays `{name}`, but its resolved value is not a number")
            })?;
            Ok((name.to_string(), value))
        })
        .collect()
}

/// The strategy of a fine-tune: plain cross-entropy on the new task, no hooks.
struct FineTune;

impl Strategy for FineTune {}

/// The state a task's trainings all start from.
struct Snapshot {
    /// The network's parameters and buffers, copied.
    weights: ParamMap,
    /// The optimizer's state, copied (empty before the first task).
    optimizer: SavedState,
    /// The method's saved state, copied, when attempts rebuild it.
    strategy: Option<SavedState>,
    rng_word_pos: u128,
    global_step: usize,
    samples_seen: usize,
}

impl Snapshot {
    fn take(
        model: &Net,
        trainer: &Trainer,
        strategy: &dyn Strategy,
        rng: &ChaCha8Rng,
        with_strategy: bool,
    ) -> Result<Snapshot> {
        let mut weights = model.params();
        weights.extend(model.buffers());
        let strategy = match with_strategy {
            false => None,
            true => Some(strategy.save_state().ok_or_else(|| {
                anyhow!(
                    "selection: continual retrains the method from each task's start, but this strategy \
                     cannot save its state; choose another selection mode for it"
                )
            })?.deep_copy()),
        };
        Ok(Snapshot {
            weights: tch::no_grad(|| crate::core::params::snapshot(&weights)),
            optimizer: trainer.optimizer_state().deep_copy(),
            strategy,
            rng_word_pos: rng.get_word_pos(),
            global_step: trainer.global_step,
            samples_seen: trainer.samples_seen,
        })
    }

    /// Puts the network, trainer and RNG back as they were, the optimizer built for the
    /// network and `own`, the method's own parameters.
    fn restore(
        &self,
        model: &Net,
        trainer: &mut Trainer,
        own: &ParamMap,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        self.restore_weights(model, trainer, rng)?;
        trainer
            .load_optimizer_state(model, own, self.optimizer.deep_copy())
            .context("selection: continual puts the task's starting optimizer state back")
    }

    /// [`restore`](Self::restore) for a fine-tune, which trains the network alone: a starting
    /// optimizer state that holds the method's own parameters too gives way to a fresh one.
    fn restore_for_fine_tune(
        &self,
        model: &Net,
        trainer: &mut Trainer,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        self.restore_weights(model, trainer, rng)?;
        let own = ParamMap::new();
        if trainer
            .load_optimizer_state(model, &own, self.optimizer.deep_copy())
            .is_err()
        {
            trainer.reset_optimizer();
        }
        Ok(())
    }

    fn restore_weights(
        &self,
        model: &Net,
        trainer: &mut Trainer,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        let mut weights = model.params();
        weights.extend(model.buffers());
        tch::no_grad(|| -> Result<()> {
            for (name, value) in &self.weights {
                let target = weights
                    .get(name)
                    .ok_or_else(|| anyhow!("the network lost `{name}` during the task"))?;
                target.shallow_clone().copy_(value);
            }
            Ok(())
        })?;
        model.set_gates(None)?;
        trainer.global_step = self.global_step;
        trainer.samples_seen = self.samples_seen;
        rng.set_word_pos(self.rng_word_pos);
        Ok(())
    }

    /// The method rebuilt at `strengths` with its state as the task began, and everything else
    /// restored for it.
    fn rebuild(
        &self,
        method: &Method,
        strengths: &BTreeMap<String, f64>,
        model: &Net,
        trainer: &mut Trainer,
        rng: &mut ChaCha8Rng,
    ) -> Result<Box<dyn Strategy>> {
        let mut params = method.params.clone();
        for (name, value) in strengths {
            params[name.as_str()] = serde_json::json!(value);
        }
        let mut strategy = (method.rebuild)(&params)?;
        if let Some(state) = &self.strategy {
            strategy.load_state(state.deep_copy(), model.device())?;
        }
        self.restore(model, trainer, &strategy.parameters(), rng)?;
        Ok(strategy)
    }
}

/// CLsurvey's decay of a method's strengths (`HyperparameterFramework.hyperparamDecay`): one
/// strength is multiplied by the factor; several decay one at a time from the values the task
/// began with (the others put back), then all together, which become the new values to decay
/// from. With strengths (λ 5, α 2) and factor 0.5 the attempts try (5, 2), (2.5, 2), (5, 1),
/// (2.5, 1), (1.25, 1), (2.5, 0.5), (1.25, 0.5), ...
#[derive(Debug, Clone)]
pub struct StrengthSchedule {
    current: BTreeMap<String, f64>,
    /// The values single decays start from (CLsurvey's `hyperparams_backup`).
    backup: BTreeMap<String, f64>,
    /// The strength the next single decay applies to; `len()` means all together.
    next: usize,
    factor: f64,
}

impl StrengthSchedule {
    /// Starts at `start`, decaying by `factor`.
    pub fn new(start: BTreeMap<String, f64>, factor: f64) -> StrengthSchedule {
        StrengthSchedule {
            backup: start.clone(),
            current: start,
            next: 0,
            factor,
        }
    }

    /// The strengths of the next attempt (after a decay) or the ones to carry on (after
    /// acceptance or the last decay).
    pub fn current(&self) -> &BTreeMap<String, f64> {
        &self.current
    }

    /// The current strengths were accepted: they stay.
    pub fn accept(&mut self) {}

    /// The current strengths were rejected: the next attempt's.
    pub fn decay(&mut self) {
        let n = self.current.len();
        if n <= 1 {
            for v in self.current.values_mut() {
                *v *= self.factor;
            }
            return;
        }
        if self.next == n {
            self.next = 0;
            for (k, v) in self.current.iter_mut() {
                *v = self.backup[k] * self.factor;
            }
            self.backup = self.current.clone();
            return;
        }
        let key = self.current.keys().nth(self.next).cloned().unwrap();
        self.current = self.backup.clone();
        self.current
            .insert(key.clone(), self.backup[&key] * self.factor);
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn one_strength_halves_at_every_rejection() {
        let mut s = StrengthSchedule::new(map(&[("lambda", 8.0)]), 0.5);
        let mut tried = vec![s.current()["lambda"]];
        for _ in 0..3 {
            s.decay();
            tried.push(s.current()["lambda"]);
        }
        assert_eq!(tried, vec![8.0, 4.0, 2.0, 1.0]);
    }

    #[test]
    fn two_strengths_decay_one_at_a_time_then_together_as_clsurvey_documents() {
        // CLsurvey's docstring example, with the keys in clbench's (sorted) order: alpha, lambda.
        let mut s = StrengthSchedule::new(map(&[("alpha", 2.0), ("lambda", 5.0)]), 0.5);
        let mut tried = vec![(s.current()["lambda"], s.current()["alpha"])];
        for _ in 0..6 {
            s.decay();
            tried.push((s.current()["lambda"], s.current()["alpha"]));
        }
        assert_eq!(
            tried,
            vec![
                (5.0, 2.0),
                (5.0, 1.0),
                (2.5, 2.0),
                (2.5, 1.0),
                (2.5, 0.5),
                (1.25, 1.0),
                (1.25, 0.5),
            ]
        );
    }
}
