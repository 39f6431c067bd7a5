//! `restart`: sgd-restart of the HAT reference code (joansj/hat 6fd0b9d,
//! `src/approaches/sgd_restart.py`).
//!
//! Before every task the network is put back to its initial weights, heads included, from one
//! copy made when the job starts (`self.initial_model = deepcopy(model)`: the same weights each
//! time, not a fresh draw), and the optimizer starts afresh. Each task is learnt from scratch, so
//! the accuracy of a task just after its training (the diagonal of the accuracy matrix) is the
//! no-transfer reference; earlier tasks are scored with the restarted network, whose earlier heads
//! are untrained again, as in the reference's evaluation.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::strategy::{
    params::snapshot, registry::resolve_with, AttachContext, Boundary, OptimizerAfterEdit,
    ParamMap, Registration, SavedState, Strategy, TaskContext, WeightEdit,
};

/// `restart` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

#[derive(Default)]
pub struct Restart {
    /// The network's parameters and buffers as built (before a checkpoint is restored, so a
    /// resumed job holds the same copy: the job's seed determines them).
    initial: ParamMap,
}

impl Strategy for Restart {
    fn attach(&mut self, ctx: &AttachContext) -> Result<()> {
        let mut weights = ctx.model.params();
        weights.extend(ctx.model.buffers());
        self.initial = tch::no_grad(|| snapshot(&weights));
        Ok(())
    }

    fn weight_edit(&mut self, ctx: &TaskContext, at: Boundary) -> Result<Option<WeightEdit>> {
        if at != Boundary::BeforeTask || ctx.task == 0 {
            return Ok(None);
        }
        Ok(Some(WeightEdit {
            values: clbench::strategy::params::shallow(&self.initial),
            optimizer: OptimizerAfterEdit::Reset,
        }))
    }

    /// Nothing to carry: the initial copy is rebuilt from the job's seed by `attach`.
    fn save_state(&self) -> Option<SavedState> {
        Some(SavedState::new())
    }

    fn load_state(&mut self, state: SavedState, _device: Device) -> Result<()> {
        state.finish("restart")
    }
}

inventory::submit! {
    Registration {
        name: "restart",
        summary: "puts back the initial weights before every task (the HAT code's sgd-restart)",
        paper: "Serra et al. 2018, ICML (joansj/hat src/approaches/sgd_restart.py)",
        params: &[],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |_, _| Ok(Box::new(Restart::default())),
    }
}
