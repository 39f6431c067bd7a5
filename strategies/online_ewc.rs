//! `online_ewc`: online EWC (Schwarz et al. 2018, "Progress & Compress: A scalable framework for
//! continual learning", ICML, Eq. 8-9).
//!
//! One running Fisher, decayed and accumulated at the end of each task,
//! `F <- gamma * F_old + F_new`, and one anchor at the parameters after the last task; the loss is
//! `CE + lambda/2 * sum F (theta - theta*)^2`. With `gamma = 1` every task counts equally; with
//! `gamma < 1` older tasks fade.

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub lambda: f64,
    /// Decay of the running Fisher at each new task (1: no decay).
    pub gamma: f64,
    /// Fisher estimator: empirical, sampled, exact, argmax or batch.
    pub fisher: Estimator,
    /// Estimate the Fisher on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
    /// Label draws per sample for `fisher: sampled`.
    pub draws: usize,
    /// Mini-batch size of `fisher: batch`.
    pub fisher_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 100.0,
            gamma: 1.0,
            fisher: Estimator::Empirical,
            max_samples: None,
            draws: 1,
            fisher_batch: 20,
        }
    }
}

pub struct OnlineEwc {
    config: Config,
    seed: u64,
    /// The running Fisher and the anchor, after the first task.
    state: Option<(ParamMap, ParamMap)>,
    /// `lambda/2 * sum F (theta - anchor)^2`; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
}

impl OnlineEwc {
    pub fn new(config: Config, ctx: &BuildContext) -> OnlineEwc {
        OnlineEwc {
            config,
            seed: ctx.seed,
            state: None,
            penalty: None,
        }
    }

    /// Sets the running Fisher and the anchor, and the penalty `lambda/2 * sum F (theta - anchor)^2`.
    fn set_state(&mut self, fisher: ParamMap, anchor: ParamMap) {
        let term = (Some(shallow(&fisher)), shallow(&anchor));
        self.penalty = Some(QuadraticPenalty::new(self.config.lambda / 2.0, vec![term]));
        self.state = Some((fisher, anchor));
    }

    /// The running Fisher.
    pub fn fisher(&self) -> Option<&ParamMap> {
        self.state.as_ref().map(|(f, _)| f)
    }
}

/// `F <- gamma * F_old + F_new`.
pub fn decay_and_add(old: &ParamMap, new: &ParamMap, gamma: f64) -> ParamMap {
    old.iter()
        .map(|(k, f)| (k.clone(), f * gamma + &new[k]))
        .collect()
}

impl Strategy for OnlineEwc {
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn importance(&self) -> Option<&ParamMap> {
        self.fisher()
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let c = &self.config;
        let opts = FisherOptions::from_settings(
            c.fisher,
            c.max_samples,
            c.draws,
            c.fisher_batch,
            self.seed.wrapping_add(ctx.task as u64),
        );
        let new = diagonal_fisher(ctx.model, &ctx.data.x, &ctx.data.y, &ctx.data.mask, &opts)?;
        let fisher = match &self.state {
            Some((old, _)) => decay_and_add(old, &new, c.gamma),
            None => new,
        };
        let anchor = snapshot(&ctx.model.params());
        self.set_state(fisher, anchor);
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_term("fisher", "anchor", self.state.as_ref());
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some((fisher, anchor)) = state.take_term("fisher", "anchor", device)? {
            self.set_state(fisher, anchor);
        }
        state.finish("online_ewc")
    }
}

inventory::submit! {
    Registration {
        name: "online_ewc",
        summary: "online EWC: one running Fisher F <- gamma F_old + F_new and one anchor",
        paper: "Schwarz et al. 2018, Progress & Compress: A scalable framework for continual learning, ICML",
        params: &[
            ParamSpec::new("lambda", "penalty strength; the penalty is lambda/2 * sum F (theta - theta*)^2 (default 100)").range(Range::non_negative()).strength(),
            ParamSpec::new("gamma", "decay of the running Fisher per task (default 1: no decay)").range(Range::between(0.0, 1.0)),
            ParamSpec::new("fisher", "estimator: empirical | sampled | exact | argmax | batch | empirical_weighted (Mammoth's: each square times p(y|x)) (default empirical)"),
            ParamSpec::new("max_samples", "estimate the Fisher on at most this many samples (default: all)").range(Range::Count),
            ParamSpec::new("draws", "label draws per sample for fisher: sampled (default 1)").range(Range::Count),
            ParamSpec::new("fisher_batch", "mini-batch size of fisher: batch (default 20)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| Ok(Box::new(OnlineEwc::new(config_from(params)?, ctx))),
    }
}
