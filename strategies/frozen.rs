//! `frozen`: sgd-frozen of the HAT reference code (joansj/hat 6fd0b9d,
//! `src/approaches/sgd_frozen.py`).
//!
//! The first task is trained as `naive`; from the second on only the heads learn. The reference
//! sets `requires_grad = False` on every parameter not named `last*` after its first task, so the
//! optimizer leaves them (and any state it has for them) alone and gradient clipping does not see
//! them; here every backbone parameter's gradient is dropped ([`GradientEdit::Drop`]), which the
//! loop treats the same way. clbench's heads are the column blocks of one output layer (`head`);
//! a task's cross-entropy reaches only its own block, so each task still trains its own head.
//!
//! The no-forgetting-in-the-trunk reference: later tasks can only be as good as features learnt
//! on the first allow.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::model::Net;
use clbench::strategy::{
    drop_gradients, registry::resolve_with, GradientEdits, Registration, SavedState, Strategy,
    HEAD_PREFIX,
};

/// `frozen` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Frozen;

impl Strategy for Frozen {
    fn gradient_edits(&mut self, model: &Net, task: usize) -> Result<GradientEdits> {
        if task == 0 {
            return Ok(GradientEdits::new());
        }
        Ok(drop_gradients(model, |name| !name.starts_with(HEAD_PREFIX)))
    }

    /// Nothing to carry: whether the trunk is frozen follows from the task's index.
    fn save_state(&self) -> Option<SavedState> {
        Some(SavedState::new())
    }

    fn load_state(&mut self, state: SavedState, _device: Device) -> Result<()> {
        state.finish("frozen")
    }
}

inventory::submit! {
    Registration {
        name: "frozen",
        summary: "trains the first task, then only the heads (the HAT code's sgd-frozen)",
        paper: "Serra et al. 2018, ICML (joansj/hat src/approaches/sgd_frozen.py)",
        params: &[],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |_, _| Ok(Box::new(Frozen)),
    }
}
