//! `naive`: plain fine-tuning, the lower bound. Each task is trained with the task loss alone, so
//! nothing protects what earlier tasks learned.

use serde::{Deserialize, Serialize};

use clbench::strategy::{registry::resolve_with, Registration, Strategy};

/// `naive` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Naive;

impl Strategy for Naive {}

inventory::submit! {
    Registration {
        name: "naive",
        summary: "plain fine-tuning on each task in turn (lower bound)",
        paper: "",
        params: &[],
        resolve: resolve_with::<Config>,
        build: |_, _| Ok(Box::new(Naive)),
    }
}
