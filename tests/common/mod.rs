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
# The tests built on this file check other things than the choice; tests/selection.rs checks it.
selection: {{mode: test_oracle}}
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
pub fn set_all(model: &clbench::model::Net, value: f64) {
    tch::no_grad(|| {
        for p in model.params().values() {
            let _ = p.shallow_clone().fill_(value);
        }
    });
}

/// A 2-input, 2-output linear softmax model with every parameter set to `value`.
pub fn linear_model(value: f64) -> clbench::model::Net {
    let spec = clbench::model::MlpSpec {
        inputs: 2,
        hidden: vec![],
        outputs: 2,
    };
    let model = clbench::model::Net::mlp(&spec, tch::Device::Cpu, 0);
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
pub fn run_first_job(text: &str) -> (clbench::results::JobResult, clbench::model::Net) {
    run_first_job_with(text, None, &|_| {})
}

/// [`run_first_job`] with a checkpoint file and a callback for the job's events.
pub fn run_first_job_with(
    text: &str,
    checkpoint: Option<&Path>,
    on_event: &(dyn Fn(clbench::runner::JobEvent) + Sync),
) -> (clbench::results::JobResult, clbench::model::Net) {
    let plan = plan_from(text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let scenario = clbench::runner::build_scenario(&plan, &dataset, plan.jobs[0].seed).unwrap();
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
pub fn flat_weights(model: &clbench::model::Net) -> Vec<f32> {
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

/// The result files under `jobs_dir` of the jobs labelled `label` (an id is `label-hash`),
/// sorted by name.
pub fn job_files(jobs_dir: &std::path::Path, label: &str) -> Vec<std::path::PathBuf> {
    let prefix = format!("{label}-");
    let mut files: Vec<_> = std::fs::read_dir(jobs_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| {
        p.extension().is_some_and(|e| e == "json")
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
    });
    files.sort();
    files
}

/// Skips the calling test because `why` (something this machine lacks), or fails it under CI,
/// where `.ci/run` provides everything. The line goes to the process's stderr directly, past the
/// test harness's capture, so `cargo test` shows "skipped" beside the test that passed by
/// skipping.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}; under CI this test must run");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "test {test} ... skipped: {why}");
}

/// The shipped experiment files (`experiments/*.yaml`), sorted.
pub fn shipped_experiments() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Writes `split` as the IDX pair `<prefix>-images-idx3-ubyte` / `<prefix>-labels-idx1-ubyte`.
pub fn write_idx(dir: &Path, prefix: &str, split: &clbench::data::Split, labels: &[u8]) {
    let n = labels.len() as u32;
    let mut images = Vec::new();
    for v in [0x0803u32, n, split.rows as u32, split.cols as u32] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend_from_slice(&split.images);
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    let mut bytes = Vec::new();
    for v in [0x0801u32, n] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend_from_slice(labels);
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), bytes).unwrap();
}

/// Each saved result's id and accuracy matrix in an experiment folder, in the loader's order:
/// what a run must reproduce.
pub fn accuracy_matrices(folder: &Path) -> Vec<(String, Vec<Vec<f64>>)> {
    clbench::report::load_results(folder)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.accuracy))
        .collect()
}
