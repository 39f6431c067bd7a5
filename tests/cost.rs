//! The cost of a job: the bytes of a strategy's state against a hand count, the cost a real job
//! records (memory, state, times) without changing its accuracies, and a report of results with
//! and without it (the cost table, "—" for old results, the cost chart).

mod common;

use clbench::model::Net;
use clbench::strategy::{registry::BuildContext, Registry, Strategy, TaskContext, TaskData};
use common::{linear_model, one_sample};
use tch::Device;

fn build(name: &str, params: &str) -> Box<dyn Strategy> {
    let registry = Registry::load().unwrap();
    let reg = registry.get(name).unwrap();
    let params = (reg.resolve)(&serde_yaml::from_str(params).unwrap()).unwrap();
    let bc = BuildContext {
        device: Device::Cpu,
        num_tasks: 3,
        seed: 0,
        clip: Default::default(),
    };
    (reg.build)(&params, &bc).unwrap()
}

fn after_task(s: &mut dyn Strategy, task: usize, model: &Net, data: &TaskData) {
    s.after_task(&TaskContext {
        task,
        num_tasks: 3,
        model,
        data,
        device: Device::Cpu,
    })
    .unwrap();
}

/// The linear model 2 -> 2: a 2x2 weight and 2 biases, 6 floats of 4 bytes.
const PARAM_BYTES: u64 = 6 * 4;
/// The Int64 count of terms EWC saves beside them.
const COUNT: u64 = 8;

#[test]
fn ewc_keeps_an_anchor_and_a_fisher_per_term() {
    let model = linear_model(0.1);
    let data = one_sample(0, [1.0, 2.0]);
    let mut ewc = build("ewc", "{lambda: 1.0}");
    assert_eq!(
        ewc.state_bytes(),
        Some(COUNT),
        "no term before the first task"
    );
    after_task(ewc.as_mut(), 0, &model, &data);
    // One anchor and one Fisher, each the size of the parameters.
    assert_eq!(ewc.state_bytes(), Some(2 * PARAM_BYTES + COUNT));
    after_task(ewc.as_mut(), 1, &model, &data);
    assert_eq!(ewc.state_bytes(), Some(2 * PARAM_BYTES + COUNT), "merged");

    let mut separate = build("ewc", "{lambda: 1.0, merge: separate}");
    after_task(separate.as_mut(), 0, &model, &data);
    after_task(separate.as_mut(), 1, &model, &data);
    assert_eq!(separate.state_bytes(), Some(4 * PARAM_BYTES + COUNT));

    let naive = build("naive", "{}");
    assert_eq!(naive.state_bytes(), Some(0));
}

const JOB: &str = "name: cost
dataset:
  name: synthetic
  synthetic: {seed: 3, train_per_class: 30, test_per_class: 10}
scenario:
  kind: split
  mode: task
  tasks: [[0, 1], [2, 3]]
model:
  hidden: [16]
training:
  optimizer: sgd
  lr: 0.05
  batch_size: 16
  epochs: 1
seeds: [1]
runner:
  workers: 1
  devices: [cpu]
  checkpoints: false
strategies:
  - name: ewc
    lambda: 10.0
selection: {mode: fixed}
output: /tmp/clbench-cost-test-unused
";

#[test]
fn a_job_records_its_cost_and_its_accuracies_do_not_depend_on_it() {
    let (first, model) = common::run_first_job(JOB);
    let cost = first.cost.clone().expect("a new result records its cost");
    let param_bytes: u64 = model
        .params()
        .values()
        .map(clbench::core::state::tensor_bytes)
        .sum();
    assert_eq!(cost.state_bytes, Some(2 * param_bytes + COUNT), "{cost:?}");
    if cfg!(target_os = "linux") {
        let peak = cost.peak_rss_bytes.expect("VmHWM");
        assert!(
            peak > 10 << 20,
            "a libtorch process holds more than 10 MiB: {peak}"
        );
        assert!(peak + 4096 >= cost.start_rss_bytes.unwrap(), "{cost:?}");
    }
    assert!(cost.jobs_overlapping >= 1);
    let t = &first.timings;
    assert!(t.train_s > 0.0 && t.eval_s > 0.0 && t.total_s >= t.train_s + t.after_task_s);
    let (again, _) = common::run_first_job(JOB);
    assert_eq!(first.id, again.id);
    assert_eq!(
        first.accuracy, again.accuracy,
        "measurements change no accuracy"
    );

    // A result written before the cost was recorded loads, and the report says "—".
    let mut json = serde_json::to_value(&first).unwrap();
    json.as_object_mut().unwrap().remove("cost");
    let mut old: clbench::results::JobResult = serde_json::from_value(json).unwrap();
    assert!(old.cost.is_none());
    old.strategy = "naive".into();
    old.params = serde_json::json!({});
    old.id = "naive-old".into();
    let dir = tempfile::tempdir().unwrap();
    clbench::report::write_report(dir.path(), &[first, old], None, None).unwrap();
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Cost"))
        .take(6)
        .collect();
    assert!(
        table[2].starts_with("| configuration | ACC % | train s | importance s | eval s | total s | peak memory | strategy state |"),
        "{table:#?}"
    );
    let ewc = table.iter().find(|l| l.starts_with("| ewc")).unwrap();
    let naive = table.iter().find(|l| l.starts_with("| naive")).unwrap();
    assert!(
        ewc.contains("MiB") && ewc.contains("KiB") && !ewc.contains('—'),
        "{ewc}"
    );
    assert!(naive.ends_with("| — | — |"), "{naive}");
    assert!(readme.contains("(cost.png)"), "the chart is linked");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(html.contains("<h3>Cost</h3>") && html.contains("Pareto front"));
    for ext in ["svg", "png"] {
        let size = std::fs::metadata(dir.path().join(format!("cost.{ext}")))
            .unwrap()
            .len();
        assert!(size > 2000, "cost.{ext} is {size} bytes");
    }
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with(",eval_s,selection_s,peak_rss_bytes,state_bytes"));
    let old_row = csv.lines().find(|l| l.starts_with("naive-old")).unwrap();
    assert!(old_row.ends_with(",,"), "{old_row}");
}
