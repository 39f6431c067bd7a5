//! Helpers shared by the integration tests: tiny synthetic experiments and models.
#![allow(dead_code)]

use std::path::Path;

use clbench::config::Plan;
use clbench::strategy::Registry;

/// A small task-incremental synthetic experiment; `strategies` is the YAML list's body.
pub fn synthetic_yaml(name: &str, output: &Path, strategies: &str) -> String {
    format!(
        "name: {name}
dataset:
  name: synthetic
  synthetic: {{seed: 3, train_per_class: 60, test_per_class: 20}}
scenario:
  kind: split
  mode: task
  tasks: [[0, 1], [2, 3], [4, 5]]
model:
  hidden: [32]
training:
  optimizer: adam
  lr: 0.01
  batch_size: 16
  epochs: 2
seeds: [1, 2]
runner:
  workers: 2
  devices: [cpu]
strategies:
{strategies}
output: {}
",
        output.display()
    )
}

pub fn plan_from(text: &str) -> Plan {
    let registry = Registry::load().unwrap();
    Plan::from_str(text, Path::new("test.yaml"), &registry).unwrap_or_else(|e| panic!("{e}"))
}
