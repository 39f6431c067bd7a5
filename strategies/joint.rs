//! `joint`: trains on the union of the tasks' data, the upper bound a continual learner is
//! measured against: it has all the data it would otherwise forget.
//!
//! `schedule` says when:
//! - `cumulative` (the default; van de Ven & Tolias's "offline" upper bound): each task trains on
//!   the union of every task seen so far, the current one included;
//! - `at_end` (Mammoth's `joint.py` for domain-incremental benchmarks): nothing is trained until
//!   the last task, which trains a network that has seen nothing on the union of all tasks. The
//!   rows before the last are then the untrained network's.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::core::ParamSpec;
use clbench::strategy::{
    registry::{config_from, resolve_with},
    Registration, SavedState, Strategy,
};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Left out of the resolved parameters at its default, so earlier results keep their ids.
    #[serde(skip_serializing_if = "Schedule::is_cumulative")]
    pub schedule: Schedule,
}

/// When the joint run trains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Cumulative,
    AtEnd,
}

impl Schedule {
    fn is_cumulative(&self) -> bool {
        *self == Schedule::Cumulative
    }
}

pub struct Joint {
    schedule: Schedule,
    num_tasks: usize,
}

impl Strategy for Joint {
    fn training_tasks(&self, task: usize) -> Vec<usize> {
        match self.schedule {
            Schedule::Cumulative => (0..=task).collect(),
            Schedule::AtEnd if task + 1 == self.num_tasks => (0..=task).collect(),
            Schedule::AtEnd => Vec::new(),
        }
    }

    fn save_state(&self) -> Option<SavedState> {
        Some(SavedState::new())
    }

    fn load_state(&mut self, state: SavedState, _device: Device) -> Result<()> {
        state.finish("joint")
    }
}

inventory::submit! {
    Registration {
        name: "joint",
        summary: "trains on the union of the tasks' data (upper bound)",
        paper: "",
        params: &[ParamSpec::new(
            "schedule",
            "cumulative (each task on every task so far, default) or at_end (only the last task, on all of them, as Mammoth's joint)",
        )],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| {
            let config: Config = config_from(params)?;
            Ok(Box::new(Joint {
                schedule: config.schedule,
                num_tasks: ctx.num_tasks,
            }))
        },
    }
}
