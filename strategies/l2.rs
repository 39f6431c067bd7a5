//! `l2`: a quadratic pull towards the parameters reached after the previous task,
//! `lambda/2 * sum (theta - theta_old)^2`: EWC with every importance set to 1, the baseline that
//! shows what importance weighting adds.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use clbench::model::Mlp;
use clbench::strategy::{
    params::{snapshot, weighted_squared_distance},
    registry::{resolve_with, Registration},
    ParamMap, Strategy, TaskContext,
};

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
    /// Parameters after the previous task; `None` during the first task.
    anchor: Option<ParamMap>,
}

impl L2 {
    pub fn new(config: Config) -> L2 {
        L2 {
            config,
            anchor: None,
        }
    }
}

impl Strategy for L2 {
    fn penalty(&mut self, model: &Mlp) -> Result<Option<Tensor>> {
        Ok(self.anchor.as_ref().map(|anchor| {
            weighted_squared_distance(&model.params(), anchor, None) * (self.config.lambda / 2.0)
        }))
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.anchor = Some(snapshot(&ctx.model.params()));
        Ok(())
    }
}

inventory::submit! {
    Registration {
        name: "l2",
        summary: "quadratic pull towards the previous task's parameters, lambda/2 * sum (theta - theta_old)^2",
        paper: "",
        params: &[("lambda", "strength of the pull (default 1)")],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(L2::new(clbench::strategy::registry::config_from(params)?))),
    }
}
