//! `online_ewc`: online EWC (Schwarz et al. 2018, "Progress & Compress: A scalable framework for
//! continual learning", ICML, Eq. 8-9).
//!
//! One running Fisher, decayed and accumulated at the end of each task,
//! `F <- gamma * F_old + F_new`, and one anchor at the parameters after the last task; the loss is
//! `CE + lambda/2 * sum F (theta - theta*)^2`. With `gamma = 1` every task counts equally; with
//! `gamma < 1` older tasks fade.
//!
//! `fisher: ema` takes `F_new` from EWC++'s running Fisher of training instead of an estimate
//! after the task, as `ewc`'s `fisher: ema` does (the RWalk authors' code, facebookresearch/agem
//! 4542149 `model/model.py`; see `clbench::fisher::running`): every `ema_interval` (10) iterations
//! `F_run <- (1 - ema_alpha) F_run + ema_alpha * G / ema_interval`, `ema_alpha` 0.9 and `G` the
//! squared task-loss gradients since the last update, `F_run` carried across tasks; at the end of
//! a task `F <- gamma * F_old + F_run`.

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub lambda: f64,
    /// Decay of the running Fisher at each new task (1: no decay).
    pub gamma: f64,
    /// Fisher estimator (empirical, sampled, exact, argmax, batch, ...) or `ema`.
    pub fisher: FisherSource,
    /// Estimate the Fisher on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
    /// Label draws per sample for `fisher: sampled`.
    pub draws: usize,
    /// Mini-batch size of `fisher: batch`.
    pub fisher_batch: usize,
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
            gamma: 1.0,
            fisher: FisherSource::default(),
            max_samples: None,
            draws: 1,
            fisher_batch: 20,
            ema_alpha: DEFAULT_ALPHA,
            ema_interval: DEFAULT_INTERVAL,
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
    /// The running Fisher of `fisher: ema`.
    running: Option<RunningFisher>,
}

impl OnlineEwc {
    pub fn new(config: Config, ctx: &BuildContext) -> OnlineEwc {
        let running = (config.fisher == FisherSource::Ema).then(|| {
            RunningFisher::new(config.ema_alpha, config.ema_interval, Window::SinceUpdate)
        });
        OnlineEwc {
            config,
            seed: ctx.seed,
            state: None,
            penalty: None,
            running,
        }
    }

    /// The new task's Fisher: the running one under `fisher: ema`, else estimated now.
    fn task_fisher(&self, ctx: &TaskContext) -> Result<ParamMap> {
        if let Some(running) = &self.running {
            return Ok(running.fisher_or_zeros(&ctx.model.params()));
        }
        let c = &self.config;
        let opts = FisherOptions::from_settings(
            // `running` exists exactly under `fisher: ema`.
            c.fisher.estimator().unwrap_or_default(),
            c.max_samples,
            c.draws,
            c.fisher_batch,
            self.seed.wrapping_add(ctx.task as u64),
        );
        diagonal_fisher(ctx.model, &ctx.data.x, &ctx.data.y, &ctx.data.mask, &opts)
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
        let fisher = match &self.state {
            Some((old, _)) => decay_and_add(old, &new, self.config.gamma),
            None => new,
        };
        let anchor = snapshot(&ctx.model.params());
        self.set_state(fisher, anchor);
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_term("fisher", "anchor", self.state.as_ref());
        if let Some(f) = self.running.as_ref().and_then(RunningFisher::fisher) {
            state.put_map("running", f);
        }
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some((fisher, anchor)) = state.take_term("fisher", "anchor", device)? {
            self.set_state(fisher, anchor);
        }
        if let (Some(running), Some(f)) = (&mut self.running, state.take_map("running", device)) {
            running.set_fisher(f);
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
            ParamSpec::new("fisher", "estimator: empirical | sampled | exact | argmax | batch | empirical_weighted (Mammoth's: each square times p(y|x)) | ema (EWC++'s running Fisher of training, as the RWalk authors' code) (default empirical)"),
            ParamSpec::new("max_samples", "estimate the Fisher on at most this many samples (default: all)").range(Range::Count),
            ParamSpec::new("draws", "label draws per sample for fisher: sampled (default 1)").range(Range::Count),
            ParamSpec::new("fisher_batch", "mini-batch size of fisher: batch (default 20)").range(Range::Count),
            ParamSpec::new("ema_alpha", "fisher: ema: weight of the new term, F <- (1 - ema_alpha) F + ema_alpha G / ema_interval (default 0.9, the RWalk authors')").range(Range::between(0.0, 1.0)),
            ParamSpec::new("ema_interval", "fisher: ema: training iterations between updates of the running Fisher (default 10)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| Ok(Box::new(OnlineEwc::new(config_from(params)?, ctx))),
    }
}
