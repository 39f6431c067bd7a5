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

/// Sets every parameter of `model` to `value`.
pub fn set_all(model: &clbench::model::Mlp, value: f64) {
    tch::no_grad(|| {
        for p in model.params().values() {
            let _ = p.shallow_clone().fill_(value);
        }
    });
}

/// A 2-input, 2-output linear softmax model with every parameter set to `value`.
pub fn linear_model(value: f64) -> clbench::model::Mlp {
    let spec = clbench::model::MlpSpec {
        inputs: 2,
        hidden: vec![],
        outputs: 2,
    };
    let model = clbench::model::Mlp::new(&spec, tch::Device::Cpu, 0);
    set_all(&model, value);
    model
}

/// One sample `x` of class 0 (column 0), both columns in play.
pub fn one_sample(task: usize, x: [f32; 2]) -> clbench::strategy::TaskData {
    clbench::strategy::TaskData {
        task,
        x: tch::Tensor::from_slice(&x).view([1, 2]),
        y: tch::Tensor::from_slice(&[0i64]),
        mask: tch::Tensor::from_slice(&[true, true]),
    }
}

/// Runs the first job of `text`'s plan through the real runner on the CPU; returns its result
/// and trained model.
pub fn run_first_job(text: &str) -> (clbench::results::JobResult, clbench::model::Mlp) {
    run_first_job_with(text, None, &|_| {})
}

/// [`run_first_job`] with a checkpoint file and a callback for the job's events.
pub fn run_first_job_with(
    text: &str,
    checkpoint: Option<&Path>,
    on_event: &(dyn Fn(clbench::runner::JobEvent) + Sync),
) -> (clbench::results::JobResult, clbench::model::Mlp) {
    let plan = plan_from(text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let scenario = clbench::runner::build_scenario(&plan, &dataset).unwrap();
    let registry = Registry::load().unwrap();
    clbench::runner::run_job_with_model(
        &plan,
        &registry,
        &dataset,
        &scenario,
        &plan.jobs[0],
        tch::Device::Cpu,
        checkpoint,
        on_event,
    )
    .unwrap()
}

/// Every parameter of `model`, flattened in name order.
pub fn flat_weights(model: &clbench::model::Mlp) -> Vec<f32> {
    model
        .params()
        .values()
        .flat_map(|p| Vec::<f32>::try_from(p.flatten(0, -1)).unwrap())
        .collect()
}

/// One synthetic job of `strategy` with `params` (YAML lines under its list entry).
pub fn run_synthetic(strategy: &str, params: &str) -> (clbench::results::JobResult, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!("  - name: {strategy}\n{params}");
    let (result, model) = run_first_job(&synthetic_yaml("job", dir.path(), &entry));
    (result, flat_weights(&model))
}
