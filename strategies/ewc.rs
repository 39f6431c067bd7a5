//! `ewc`: Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic
//! forgetting in neural networks", PNAS, Eq. 3), in the multi-task form of the reference code.
//!
//! At the end of task t (0-based) the diagonal Fisher `F_new` is estimated on that task's training
//! data (see `clbench::fisher`) and merged into one Fisher:
//!
//! - `merge: mean` (the reference code): `F <- (F_new + t * F_old) / (t + 1)`;
//! - `merge: sum`: `F <- F_old + F_new`;
//! - `merge: separate` (the paper): one Fisher and one anchor per task, one penalty each.
//!
//! The anchor `theta_old` is the parameters after the previous task, and the loss is
//! `CE + lambda/2 * sum F * (theta_old - theta)^2`. With `mean` and `sum` one Fisher is kept in
//! memory whatever the number of tasks.
//!
//! `fisher: reference` is the HAT reference code's own estimator (`utils.fisher_matrix_diag`, see
//! `clbench::fisher`): with `fisher_batch: 20`, `lambda: 5000` and `merge: mean`, this is the
//! reference's `src/approaches/ewc.py` exactly. `batch` differs from it in two ways kept for the
//! results made with it: eval mode (no dropout) and the last, smaller batch weighted by its size.
//!
//! `fisher: ema` is EWC++'s running Fisher as the RWalk authors' code keeps it
//! (facebookresearch/agem 4542149, `model/model.py` `create_fisher_ops`, the `EWC` branch of
//! `fc_permute_mnist.py`; see `clbench::fisher::running`): during training, every `ema_interval`
//! (10) iterations `F <- (1 - ema_alpha) F + ema_alpha * G / ema_interval`, `ema_alpha` 0.9 on
//! the new term and `G` the squared gradients of the task loss alone (each batch's mean
//! cross-entropy, read in `after_task_backward`) summed since the last update; `F` carries over
//! from task to task. At the end of the task this `F` stands in for the post-hoc estimate
//! `F_new`, and `merge` combines it as any other. (The authors' EWC also min-max normalises `F`
//! and uses it without the 1/2; here the penalty stays `lambda/2 * sum F (theta_old - theta)^2`.)
//! `max_samples`, `draws` and `fisher_batch` play no part then.
//!
//! The Fisher's scale depends on its estimator (`batch` is about 1/20 of `empirical` at the
//! reference's batch of 20; `ema` squares mean gradients of training batches, so about 1/B of
//! `empirical` at batch size B), so a lambda tuned for one estimator does not transfer to another.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::fisher::running::{
    is_default_alpha, is_default_interval, FisherSource, RunningFisher, Window,
    DEFAULT_ALPHA, DEFAULT_INTERVAL,
};
use clbench::fisher::{diagonal_fisher, FisherOptions};
use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot},
    registry::{config_from, resolve_with, BuildContext, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};
use clbench::core::{ParamSpec, Range};

/// How the Fishers of successive tasks are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    Mean,
    Sum,
    Separate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub lambda: f64,
    /// Fisher estimator (empirical, sampled, exact, argmax, batch, ...) or `ema`.
    pub fisher: FisherSource,
    /// Estimate the Fisher on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
    /// Label draws per sample for `fisher: sampled`.
    pub draws: usize,
    /// Mini-batch size of `fisher: batch` (the reference code's 20).
    pub fisher_batch: usize,
    pub merge: Merge,
    /// Weight of the new term in `fisher: ema`'s update. Left out of the resolved parameters at
    /// its default, so results from before this option keep their ids (as `ema_interval`).
    #[serde(skip_serializing_if = "is_default_alpha")]
    pub ema_alpha: f64,
    /// Training iterations between two updates of `fisher: ema`.
    #[serde(skip_serializing_if = "is_default_interval")]
    pub ema_interval: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 100.0,
            fisher: FisherSource::default(),
            max_samples: None,
            draws: 1,
            fisher_batch: 20,
            merge: Merge::Mean,
            ema_alpha: DEFAULT_ALPHA,
            ema_interval: DEFAULT_INTERVAL,
        }
    }
}

pub struct Ewc {
    config: Config,
    seed: u64,
    /// (Fisher, anchor) pairs: one for `mean`/`sum`, one per task for `separate`.
    terms: Vec<(ParamMap, ParamMap)>,
    /// `lambda/2 * sum F (theta - anchor)^2` over the terms; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
    /// The running Fisher of `fisher: ema`.
    running: Option<RunningFisher>,
}

impl Ewc {
    pub fn new(config: Config, ctx: &BuildContext) -> Ewc {
        let running = (config.fisher == FisherSource::Ema).then(|| {
            RunningFisher::new(config.ema_alpha, config.ema_interval, Window::SinceUpdate)
        });
        Ewc {
            config,
            seed: ctx.seed,
            terms: Vec::new(),
            penalty: None,
            running,
        }
    }

    /// The new task's Fisher: the running one under `fisher: ema`, else estimated now.
    fn task_fisher(&self, ctx: &TaskContext) -> Result<ParamMap> {
        if let Some(running) = &self.running {
            return Ok(running.fisher_or_zeros(&ctx.model.params()));
        }
        let opts = FisherOptions::from_settings(
            // `running` exists exactly under `fisher: ema`.
            self.config.fisher.estimator().unwrap_or_default(),
            self.config.max_samples,
            self.config.draws,
            self.config.fisher_batch,
            self.seed.wrapping_add(ctx.task as u64),
        );
        diagonal_fisher(ctx.model, &ctx.data.x, &ctx.data.y, &ctx.data.mask, &opts)
    }

    /// `lambda/2 * sum F (theta - anchor)^2` over the terms.
    fn rebuild_penalty(&mut self) {
        let terms = self
            .terms
            .iter()
            .map(|(f, a)| (Some(shallow(f)), shallow(a)))
            .collect();
        self.penalty = Some(QuadraticPenalty::new(self.config.lambda / 2.0, terms));
    }

    /// The current merged Fisher (the last one for `separate`).
    pub fn fisher(&self) -> Option<&ParamMap> {
        self.terms.last().map(|(f, _)| f)
    }
}

/// `F <- (F_new + t * F_old) / (t + 1)`.
pub fn merge_mean(old: &ParamMap, new: &ParamMap, t: usize) -> ParamMap {
    old.iter()
        .map(|(k, f_old)| (k.clone(), (&new[k] + f_old * t as f64) / (t as f64 + 1.0)))
        .collect()
}

impl Strategy for Ewc {
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn importance(&self) -> Option<&ParamMap> {
        self.fisher()
    }

    fn before_task(&mut self, _ctx: &TaskContext) -> Result<()> {
        if let Some(running) = &mut self.running {
            running.begin_task();
        }
        Ok(())
    }

    fn after_task_backward(&mut self, model: &Net) -> Result<()> {
        if let Some(running) = &mut self.running {
            running.observe_model(model);
        }
        Ok(())
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let new = self.task_fisher(ctx)?;
        let anchor = snapshot(&ctx.model.params());
        let t = ctx.task;
        match (self.config.merge, self.terms.pop()) {
            (Merge::Separate, old) => {
                self.terms.extend(old);
                self.terms.push((new, anchor));
            }
            (Merge::Mean, Some((old, _))) => self.terms.push((merge_mean(&old, &new, t), anchor)),
            (Merge::Sum, Some((old, _))) => {
                let sum = old.iter().map(|(k, f)| (k.clone(), f + &new[k])).collect();
                self.terms.push((sum, anchor))
            }
            (_, None) => self.terms.push((new, anchor)),
        }
        self.rebuild_penalty();
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_count("terms", self.terms.len());
        for (i, term) in self.terms.iter().enumerate() {
            state.put_term(&format!("term{i}/fisher"), &format!("term{i}/anchor"), Some(term));
        }
        if let Some(f) = self.running.as_ref().and_then(RunningFisher::fisher) {
            state.put_map("running", f);
        }
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        let n = state.take_count("terms")?;
        self.terms = (0..n)
            .map(|i| {
                state
                    .take_term(&format!("term{i}/fisher"), &format!("term{i}/anchor"), device)?
                    .ok_or_else(|| anyhow::anyhow!("ewc: term {i} missing from the saved state"))
            })
            .collect::<Result<_>>()?;
        if n > 0 {
            self.rebuild_penalty();
        }
        if let (Some(running), Some(f)) = (&mut self.running, state.take_map("running", device)) {
            running.set_fisher(f);
        }
        state.finish("ewc")
    }
}

inventory::submit! {
    Registration {
        name: "ewc",
        summary: "Elastic Weight Consolidation: Fisher-weighted pull towards earlier tasks' parameters",
        paper: "Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks, PNAS",
        params: &[
            ParamSpec::new("lambda", "penalty strength; the penalty is lambda/2 * sum F (theta_old - theta)^2 (default 100)").range(Range::non_negative()).strength(),
            ParamSpec::new("fisher", "estimator: empirical | sampled | exact | argmax | batch | empirical_weighted (Mammoth's: each square times p(y|x)) | reference (the HAT code's fisher_matrix_diag: batches of fisher_batch in training mode, each square times fisher_batch) | ema (EWC++'s running Fisher of the training batches' squared task-loss gradients, as the RWalk authors' code) (default empirical)"),
            ParamSpec::new("max_samples", "estimate the Fisher on at most this many samples (default: all)").range(Range::Count),
            ParamSpec::new("draws", "label draws per sample for fisher: sampled (default 1)").range(Range::Count),
            ParamSpec::new("fisher_batch", "mini-batch size of fisher: batch (default 20, as the reference)").range(Range::Count),
            ParamSpec::new("merge", "mean: F <- (F_new + t F_old)/(t+1); sum; separate: one term per task (default mean)"),
            ParamSpec::new("ema_alpha", "fisher: ema: weight of the new term, F <- (1 - ema_alpha) F + ema_alpha G / ema_interval (default 0.9, the RWalk authors')").range(Range::between(0.0, 1.0)),
            ParamSpec::new("ema_interval", "fisher: ema: training iterations between updates of the running Fisher (default 10)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| Ok(Box::new(Ewc::new(config_from(params)?, ctx))),
    }
}
