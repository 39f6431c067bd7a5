//! `naive`: plain fine-tuning, the lower bound. Each task is trained with the task loss alone, so
//! nothing protects what earlier tasks learned.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::strategy::{registry::resolve_with, Registration, SavedState, Strategy};

/// `naive` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Naive;

/// Nothing to carry between tasks.
impl Strategy for Naive {
    fn save_state(&self) -> Option<SavedState> {
        Some(SavedState::new())
    }

    fn load_state(&mut self, state: SavedState, _device: Device) -> Result<()> {
        state.finish("naive")
    }
}

inventory::submit! {
    Registration {
        name: "naive",
        summary: "plain fine-tuning on each task in turn (lower bound)",
        paper: "",
        params: &[],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |_, _| Ok(Box::new(Naive)),
    }
}
