//! `l2`: a quadratic pull towards the parameters reached after the previous task,
//! `lambda/2 * sum (theta - theta_old)^2`: EWC with every importance set to 1, the baseline that
//! shows what importance weighting adds.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use clbench::model::Mlp;
use clbench::strategy::{
    params::snapshot,
    registry::{resolve_with, Registration},
    Penalty, QuadraticPenalty, Strategy, TaskContext,
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
    /// The pull towards the parameters after the previous task; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
}

impl L2 {
    pub fn new(config: Config) -> L2 {
        L2 {
            config,
            penalty: None,
        }
    }
}

impl Strategy for L2 {
    fn penalty(&mut self, _model: &Mlp) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let anchor = snapshot(&ctx.model.params());
        let scale = self.config.lambda / 2.0;
        self.penalty = Some(QuadraticPenalty::new(scale, vec![(None, anchor)]));
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
