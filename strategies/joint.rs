//! `joint`: trains each task on the union of every task seen so far (the current one included),
//! the upper bound a continual learner is measured against: it has all the data it would
//! otherwise forget.

use serde::{Deserialize, Serialize};

use clbench::strategy::{registry::resolve_with, Registration, Strategy};

/// `joint` takes no parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Joint;

impl Strategy for Joint {
    fn training_tasks(&self, task: usize) -> Vec<usize> {
        (0..=task).collect()
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
