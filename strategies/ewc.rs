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
//! The Fisher's scale depends on its estimator (`batch` is about 1/20 of `empirical` at the
//! reference's batch of 20), so a lambda tuned for one estimator does not transfer to another.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::fisher::{diagonal_fisher, Estimator, FisherOptions};
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
    /// Fisher estimator: empirical, sampled, exact, argmax or batch.
    pub fisher: Estimator,
    /// Estimate the Fisher on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
    /// Label draws per sample for `fisher: sampled`.
    pub draws: usize,
    /// Mini-batch size of `fisher: batch` (the reference code's 20).
    pub fisher_batch: usize,
    pub merge: Merge,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 100.0,
            fisher: Estimator::Empirical,
            max_samples: None,
            draws: 1,
            fisher_batch: 20,
            merge: Merge::Mean,
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
}

impl Ewc {
    pub fn new(config: Config, ctx: &BuildContext) -> Ewc {
        Ewc {
            config,
            seed: ctx.seed,
            terms: Vec::new(),
            penalty: None,
        }
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

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let opts = FisherOptions::from_settings(
            self.config.fisher,
            self.config.max_samples,
            self.config.draws,
            self.config.fisher_batch,
            self.seed.wrapping_add(ctx.task as u64),
        );
        let new = diagonal_fisher(ctx.model, &ctx.data.x, &ctx.data.y, &ctx.data.mask, &opts)?;
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
            ParamSpec::new("fisher", "estimator: empirical | sampled | exact | argmax | batch | empirical_weighted (Mammoth's: each square times p(y|x)) | reference (the HAT code's fisher_matrix_diag: batches of fisher_batch in training mode, each square times fisher_batch) (default empirical)"),
            ParamSpec::new("max_samples", "estimate the Fisher on at most this many samples (default: all)").range(Range::Count),
            ParamSpec::new("draws", "label draws per sample for fisher: sampled (default 1)").range(Range::Count),
            ParamSpec::new("fisher_batch", "mini-batch size of fisher: batch (default 20, as the reference)").range(Range::Count),
            ParamSpec::new("merge", "mean: F <- (F_new + t F_old)/(t+1); sum; separate: one term per task (default mean)"),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| Ok(Box::new(Ewc::new(config_from(params)?, ctx))),
    }
}
