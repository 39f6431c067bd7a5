//! `joint`: trains each task on the union of every task seen so far (the current one included),
//! the upper bound a continual learner is measured against: it has all the data it would
//! otherwise forget.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::strategy::{registry::resolve_with, Registration, SavedState, Strategy};

/// `joint` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Joint;

impl Strategy for Joint {
    fn training_tasks(&self, task: usize) -> Vec<usize> {
        (0..=task).collect()
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
        summary: "trains on the union of all tasks seen so far (upper bound)",
        paper: "",
        params: &[],
        resolve: resolve_with::<Config>,
        build: |_, _| Ok(Box::new(Joint)),
    }
}
