//! EWC++'s running Fisher (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning:
//! Understanding Forgetting and Intransigence", ECCV, Eq. 6 and 10): a diagonal Fisher kept up
//! to date during training from the task loss's own gradients, instead of estimated once after
//! the task. Shared by `rwalk` and by `ewc`/`online_ewc` under `fisher: ema`.
//!
//! In: at every training iteration, the gradient `g` of the task loss alone (the batch's mean
//! cross-entropy), read from `.grad()` in the strategy's `after_task_backward` hook
//! ([`RunningFisher::observe_model`], [`copy_task_gradients`]). Out: the running Fisher `F`, one
//! tensor per parameter. Nothing here touches the parameters or their gradients.
//!
//! [`RunningFisher`] is the authors' schedule (facebookresearch/agem 4542149, `model/model.py`
//! `create_fisher_ops` and the training loop of `fc_permute_mnist.py`): at iteration `i` of a
//! task (0-based), when `(i + 1) % interval == 0`, before the iteration's own gradient,
//!
//! `F <- (1 - alpha) F + alpha * G / interval`
//!
//! where `G` sums `g^2` over earlier iterations (`set_tmp_fisher` adds `tf.square(d)` of
//! `tf.gradients(self.unweighted_entropy, ...)`, the squared mean gradient of the batch, not a
//! per-sample square: about 1/B of the empirical Fisher at batch size B). Which iterations `G`
//! covers differs between the code's two users, and [`Window`] keeps both: the `EWC` branch
//! resets `G` after each update (`reset_tmp_fisher`), so `G` holds the last `interval`
//! iterations; the `RWALK` branch never resets it inside a task, so `G` holds every iteration
//! since the task began (9 iterations at the first update, 19 at the second, ...) while still
//! being divided by `interval`. Both reset `G` at the end of a task (`task_updates`), and both
//! carry `F` across tasks; `F` starts at zero (`set_initial_running_fisher` copies the still-zero
//! `G`). The first update of a task therefore comes after 9 iterations, later ones after 10
//! (the loop updates before it adds the iteration's own square); iterations after the task's
//! last update do not reach `F`. Defaults: `alpha` 0.9 (`FISHER_EMA_DECAY`, the weight of the
//! new term) and `interval` 10 (`FISHER_UPDATE_AFTER`).
//!
//! [`blend_into`] is the update alone, which Avalanche's `RWalkPlugin` applies at every iteration to
//! that iteration's `g^2` (see `strategies/rwalk.rs`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Estimator;
use crate::core::params::{zeros_like, ParamMap};
use crate::model::Net;

/// The authors' defaults: the weight of the new term (`FISHER_EMA_DECAY`)...
pub const DEFAULT_ALPHA: f64 = 0.9;
/// ...and the iterations between two updates (`FISHER_UPDATE_AFTER`).
pub const DEFAULT_INTERVAL: usize = 10;

/// Whether `alpha` is [`DEFAULT_ALPHA`]: a strategy's config leaves its `ema_alpha` out of the
/// resolved parameters then, so jobs resolved before the option existed keep their ids.
pub fn is_default_alpha(alpha: &f64) -> bool {
    *alpha == DEFAULT_ALPHA
}

/// Whether `interval` is [`DEFAULT_INTERVAL`] (see [`is_default_alpha`]).
pub fn is_default_interval(interval: &usize) -> bool {
    *interval == DEFAULT_INTERVAL
}

/// `old <- (1 - alpha) old + alpha * new` in place, parameter by parameter (as `lerp`:
/// `old + alpha (new - old)`, one pass and no new tensor).
pub fn blend_into(old: &mut ParamMap, new: &ParamMap, alpha: f64) {
    tch::no_grad(|| {
        for (k, f) in old.iter_mut() {
            let _ = f.lerp_(&new[k], alpha);
        }
    });
}

/// Copies the gradients now in `model`'s `.grad()` (in `after_task_backward`: the task loss's
/// alone) into `into`, which holds a tensor of each parameter's shape; zeros for a parameter the
/// loss did not reach, which has none.
pub fn copy_task_gradients(model: &Net, into: &mut ParamMap) {
    tch::no_grad(|| {
        for (k, p) in model.params() {
            let g = p.grad();
            let slot = into.get_mut(&k).unwrap();
            if g.defined() {
                slot.copy_(&g);
            } else {
                let _ = slot.zero_();
            }
        }
    });
}

/// Which iterations the sum of squares `G` covers when `F` is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The iterations since the last update (the code's `EWC` branch).
    SinceUpdate,
    /// Every iteration since the task began (the code's `RWALK` branch).
    SinceTaskStart,
}

/// The authors' running Fisher; see the module docs.
pub struct RunningFisher {
    alpha: f64,
    interval: usize,
    window: Window,
    /// `F`; `None` until the first iteration (then zeros, as the code starts it).
    fisher: Option<ParamMap>,
    /// `G`; `None` at the start of each task.
    squares: Option<ParamMap>,
    /// Iterations of the current task so far.
    iteration: usize,
}

impl RunningFisher {
    /// A running Fisher with weight `alpha` on the new term, updated every `interval` iterations
    /// (at least 1).
    pub fn new(alpha: f64, interval: usize, window: Window) -> RunningFisher {
        RunningFisher {
            alpha,
            interval: interval.max(1),
            window,
            fisher: None,
            squares: None,
            iteration: 0,
        }
    }

    /// Starts a task: `G` and the iteration count start again, `F` carries over.
    pub fn begin_task(&mut self) {
        self.squares = None;
        self.iteration = 0;
    }

    /// Whether the next [`observe`](Self::observe) updates `F` before adding its squares.
    pub fn update_due(&self) -> bool {
        (self.iteration + 1).is_multiple_of(self.interval)
    }

    /// One training iteration with the task loss's gradients `grads`: `F` is updated first when
    /// it is due, then `g^2` joins `G`.
    pub fn observe(&mut self, grads: &ParamMap) {
        self.update_if_due(grads);
        let squares = self.squares.as_mut().unwrap();
        tch::no_grad(|| {
            for (k, s) in squares.iter_mut() {
                let _ = s.addcmul_(&grads[k], &grads[k]);
            }
        });
        self.iteration += 1;
    }

    /// [`observe`](Self::observe) with the gradients in `model`'s `.grad()`, read in place (in
    /// `after_task_backward`: the task loss's alone); a parameter without one adds nothing.
    pub fn observe_model(&mut self, model: &Net) {
        let params = model.params();
        self.update_if_due(&params);
        let squares = self.squares.as_mut().unwrap();
        tch::no_grad(|| {
            for (k, p) in &params {
                let g = p.grad();
                if g.defined() {
                    let _ = squares.get_mut(k).unwrap().addcmul_(&g, &g);
                }
            }
        });
        self.iteration += 1;
    }

    /// Makes `F` and `G` (zeros shaped like `like`) if they are not there yet, and updates `F`
    /// when this iteration is due.
    fn update_if_due(&mut self, like: &ParamMap) {
        let due = self.update_due();
        let zeros = || tch::no_grad(|| zeros_like(like));
        let fisher = self.fisher.get_or_insert_with(zeros);
        let squares = self.squares.get_or_insert_with(zeros);
        if !due {
            return;
        }
        tch::no_grad(|| {
            let mean: ParamMap = squares
                .iter()
                .map(|(k, s)| (k.clone(), s / self.interval as f64))
                .collect();
            blend_into(fisher, &mean, self.alpha);
            if self.window == Window::SinceUpdate {
                squares.values_mut().for_each(|s| {
                    let _ = s.zero_();
                });
            }
        });
    }

    /// `F` as it stands; `None` before the first iteration.
    pub fn fisher(&self) -> Option<&ParamMap> {
        self.fisher.as_ref()
    }

    /// `F` for the end of a task: zeros shaped like `params` when no iteration has been seen.
    pub fn fisher_or_zeros(&self, params: &ParamMap) -> ParamMap {
        match &self.fisher {
            Some(f) => f.iter().map(|(k, t)| (k.clone(), t.copy())).collect(),
            None => tch::no_grad(|| zeros_like(params)),
        }
    }

    /// Restores `F` (from a checkpoint).
    pub fn set_fisher(&mut self, fisher: ParamMap) {
        self.fisher = Some(fisher);
    }
}

/// Where an EWC-family strategy's Fisher comes from (its `fisher` parameter): an estimate after
/// the task ([`Estimator`], spelled as before: `empirical`, `sampled`, ...) or `ema`, the running
/// Fisher of training. Kept apart from [`Estimator`], which [`super::diagonal_fisher`] computes,
/// so that a strategy whose `fisher` is an [`Estimator`] cannot be given `ema` at all: the plan
/// refuses it as an unknown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FisherSource {
    Estimate(Estimator),
    Ema,
}

impl Default for FisherSource {
    fn default() -> Self {
        FisherSource::Estimate(Estimator::default())
    }
}

impl FisherSource {
    /// The post-hoc estimator, or `None` for `ema`.
    pub fn estimator(self) -> Option<Estimator> {
        match self {
            FisherSource::Estimate(e) => Some(e),
            FisherSource::Ema => None,
        }
    }
}

/// An estimator serializes as before (`"empirical"`), so resolved parameters and job ids made
/// before `ema` existed are unchanged.
impl Serialize for FisherSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FisherSource::Estimate(e) => e.serialize(s),
            FisherSource::Ema => s.serialize_str("ema"),
        }
    }
}

impl<'de> Deserialize<'de> for FisherSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        let name = String::deserialize(d)?;
        if name == "ema" {
            return Ok(FisherSource::Ema);
        }
        let inner: serde::de::value::StrDeserializer<'_, D::Error> =
            name.as_str().into_deserializer();
        Estimator::deserialize(inner)
            .map(FisherSource::Estimate)
            .map_err(|e| {
                D::Error::custom(format!("{e}, or `ema` (the running Fisher of training)"))
            })
    }
}
