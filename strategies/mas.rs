//! `mas`: Memory Aware Synapses (Aljundi et al. 2018, "Memory Aware Synapses: Learning what (not)
//! to forget", ECCV, Eq. 2-4 and 6).
//!
//! At the end of each task the importance of every parameter is the mean absolute gradient of the
//! squared L2 norm of the network's output (over the columns in play), computed without labels
//! (`clbench::importance::mas_importance`); importances are summed over tasks. The loss is
//! `CE + lambda * sum Omega (theta - theta*)^2`, anchored at the parameters after the last task.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::importance::mas_importance;
use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot},
    registry::{config_from, resolve_with, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub lambda: f64,
    /// Estimate the importance on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 1.0,
            max_samples: None,
        }
    }
}

pub struct Mas {
    config: Config,
    /// Accumulated importance and the anchor, after the first task.
    state: Option<(ParamMap, ParamMap)>,
    /// `lambda * sum Omega (theta - anchor)^2`; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
}

impl Mas {
    pub fn new(config: Config) -> Mas {
        Mas {
            config,
            state: None,
            penalty: None,
        }
    }

    /// Sets the importance and the anchor, and the penalty `lambda * sum Omega (theta - anchor)^2`.
    fn set_state(&mut self, omega: ParamMap, anchor: ParamMap) {
        let term = (Some(shallow(&omega)), shallow(&anchor));
        self.penalty = Some(QuadraticPenalty::new(self.config.lambda, vec![term]));
        self.state = Some((omega, anchor));
    }

    /// The accumulated importance.
    pub fn importance(&self) -> Option<&ParamMap> {
        self.state.as_ref().map(|(o, _)| o)
    }
}

impl Strategy for Mas {
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn importance(&self) -> Option<&ParamMap> {
        Mas::importance(self)
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let new = mas_importance(
            ctx.model,
            &ctx.data.x,
            &ctx.data.mask,
            self.config.max_samples,
        )?;
        let omega = match &self.state {
            Some((old, _)) => old.iter().map(|(k, o)| (k.clone(), o + &new[k])).collect(),
            None => new,
        };
        let anchor = snapshot(&ctx.model.params());
        self.set_state(omega, anchor);
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_term("omega", "anchor", self.state.as_ref());
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some((omega, anchor)) = state.take_term("omega", "anchor", device)? {
            self.set_state(omega, anchor);
        }
        state.finish("mas")
    }
}

inventory::submit! {
    Registration {
        name: "mas",
        summary: "Memory Aware Synapses: label-free importance from the output norm's gradient",
        paper: "Aljundi et al. 2018, Memory Aware Synapses: Learning what (not) to forget, ECCV",
        params: &[
            ("lambda", "penalty strength; the penalty is lambda * sum Omega (theta - theta*)^2 (default 1)"),
            ("max_samples", "estimate the importance on at most this many samples (default: all)"),
        ],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(Mas::new(config_from(params)?))),
    }
}
