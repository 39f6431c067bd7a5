//! One job end to end, inside its worker: build the model and strategy, train the tasks in order
//! calling the hooks, fill the accuracy matrix, and return the result (the caller writes it).

use std::time::Instant;

use anyhow::{anyhow, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

use crate::config::{JobSpec, Plan};
use crate::data::Dataset;
use crate::model::{Mlp, MlpSpec};
use crate::results::{ImportanceSummary, JobResult, Metrics, Provenance, Timings};
use crate::scenario::Scenario;
use crate::strategy::{registry::BuildContext, Registry, TaskContext, TaskData};
use crate::train::{accuracy, TrainSet, Trainer};

use super::progress::JobEvent;

/// Runs `job` of `plan` on `device`.
pub fn run_job(
    plan: &Plan,
    registry: &Registry,
    dataset: &Dataset,
    scenario: &Scenario,
    job: &JobSpec,
    device: Device,
    on_event: &(dyn Fn(JobEvent) + Sync),
) -> Result<JobResult> {
    run_job_with_model(plan, registry, dataset, scenario, job, device, on_event)
        .map(|(result, _)| result)
}

/// [`run_job`], also returning the trained model (for tests and checkpoints).
pub fn run_job_with_model(
    plan: &Plan,
    registry: &Registry,
    dataset: &Dataset,
    scenario: &Scenario,
    job: &JobSpec,
    device: Device,
    on_event: &(dyn Fn(JobEvent) + Sync),
) -> Result<(JobResult, Mlp)> {
    let started = Instant::now();
    let num_tasks = scenario.num_tasks();
    let registration = registry
        .get(&job.strategy)
        .ok_or_else(|| anyhow!(registry.unknown_name_message(&job.strategy)))?;
    let mut strategy = (registration.build)(
        &job.params,
        &BuildContext {
            device,
            num_tasks,
            seed: job.seed,
        },
    )?;
    let spec = MlpSpec {
        inputs: dataset.train.pixels() as i64,
        hidden: plan.experiment.model.hidden.clone(),
        outputs: scenario.outputs,
    };
    let model = Mlp::new(&spec, device, job.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(job.seed);

    // Training data is built task by task (a permuted MNIST task is 190 MB of floats); test data
    // is kept for the whole job, since every task is evaluated after every task.
    let test: Vec<TaskData> = (0..num_tasks)
        .map(|t| scenario.test_data(&dataset.test, t, t, device))
        .collect();

    let mut trainer = Trainer::new(plan.train.clone());
    let mut timings = Timings::default();
    let mut accuracy_matrix = Vec::with_capacity(num_tasks);
    let mut curve = Vec::new();
    let mut importance = Vec::new();
    for t in 0..num_tasks {
        let current = scenario.train_data(&dataset.train, t, device);
        let ctx = TaskContext {
            task: t,
            num_tasks,
            model: &model,
            data: &current,
            device,
        };
        let tick = Instant::now();
        strategy.before_task(&ctx)?;
        let tasks = strategy.training_tasks(t);
        let earlier: Vec<TaskData> = tasks
            .iter()
            .filter(|&&k| k != t)
            .map(|&k| scenario.train_data(&dataset.train, k, device))
            .collect();
        let parts: Vec<(&TaskData, tch::Tensor)> = tasks
            .iter()
            .map(|&k| {
                let data = match earlier.iter().find(|d| d.task == k) {
                    Some(d) => d,
                    None => &current,
                };
                let mask = scenario.train_mask_during(k, t);
                (data, Scenario::mask_tensor(&mask, device))
            })
            .collect();
        let set = TrainSet::from_parts(&parts);
        drop(parts);
        drop(earlier);
        let points = trainer.train_task(&model, strategy.as_mut(), &set, t, &mut rng, |p| {
            on_event(JobEvent::Epoch {
                task: t,
                num_tasks,
                epoch: p.epoch,
                task_loss: p.task_loss,
            })
        })?;
        curve.extend(points);
        timings.train_s += tick.elapsed().as_secs_f64();

        let tick = Instant::now();
        strategy.after_task(&ctx)?;
        timings.after_task_s += tick.elapsed().as_secs_f64();
        if let Some(map) = strategy.importance() {
            importance.extend(
                map.iter()
                    .map(|(name, v)| ImportanceSummary::of(t, name, v)),
            );
        }

        let tick = Instant::now();
        let row: Vec<f64> = (0..num_tasks)
            .map(|j| {
                let mask = Scenario::mask_tensor(&scenario.eval_mask(j, t), device);
                let data = TaskData {
                    task: j,
                    x: test[j].x.shallow_clone(),
                    y: test[j].y.shallow_clone(),
                    mask,
                };
                accuracy(&model, &data)
            })
            .collect();
        timings.eval_s += tick.elapsed().as_secs_f64();
        on_event(JobEvent::TaskDone {
            task: t,
            num_tasks,
            seen_mean: row[..=t].iter().sum::<f64>() / (t + 1) as f64,
        });
        accuracy_matrix.push(row);
    }
    timings.total_s = started.elapsed().as_secs_f64();
    timings.samples_per_s = trainer.samples_seen as f64 / timings.train_s.max(1e-9);
    let result = JobResult {
        id: job.id.clone(),
        experiment: plan.experiment.name.clone(),
        strategy: job.strategy.clone(),
        params: job.params.clone(),
        seed: job.seed,
        metrics: Metrics::from_matrix(&accuracy_matrix),
        accuracy: accuracy_matrix,
        curve,
        importance,
        timings,
        device: format!("{device:?}"),
        provenance: provenance(),
        config: serde_json::to_value(&plan.experiment)?,
        settings: job.settings.clone(),
    };
    Ok((result, model))
}

/// Versions, git revision and host, as recorded in every result.
pub fn provenance() -> Provenance {
    let git = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
            "--abbrev=12",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    Provenance {
        clbench_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: git,
        torch_version: crate::TORCH_VERSION.into(),
        tch_version: crate::TCH_VERSION.into(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        finished_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}
