//! `l2`: a quadratic pull towards the parameters reached after the previous task,
//! `lambda/2 * sum (theta - theta_old)^2`: EWC with every importance set to 1, the baseline that
//! shows what importance weighting adds.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot},
    registry::{resolve_with, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Strength of the pull towards the previous task's parameters.
    pub lambda: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { lambda: 1.0 }
    }
}

pub struct L2 {
    config: Config,
    /// The parameters after the previous task; `None` during the first task.
    anchor: Option<ParamMap>,
    /// The pull towards `anchor`.
    penalty: Option<QuadraticPenalty>,
}

impl L2 {
    pub fn new(config: Config) -> L2 {
        L2 {
            config,
            anchor: None,
            penalty: None,
        }
    }

    fn set_anchor(&mut self, anchor: ParamMap) {
        let scale = self.config.lambda / 2.0;
        self.penalty = Some(QuadraticPenalty::new(scale, vec![(None, shallow(&anchor))]));
        self.anchor = Some(anchor);
    }
}

impl Strategy for L2 {
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.set_anchor(snapshot(&ctx.model.params()));
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        if let Some(anchor) = &self.anchor {
            state.put_map("anchor", anchor);
        }
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some(anchor) = state.take_map("anchor", device) {
            self.set_anchor(anchor);
        }
        state.finish("l2")
    }
}

inventory::submit! {
    Registration {
        name: "l2",
        summary: "quadratic pull towards the previous task's parameters, lambda/2 * sum (theta - theta_old)^2",
        paper: "",
        params: &[
            ParamSpec::new("lambda", "strength of the pull (default 1)").range(Range::non_negative()).strength(),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(L2::new(clbench::strategy::registry::config_from(params)?))),
    }
}
