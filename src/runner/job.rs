//! One job end to end, inside its worker: build the model and strategy, train the tasks in order
//! calling the hooks, fill the accuracy matrix, and return the result (the caller writes it).
//! With a checkpoint path, the job saves a checkpoint after every task but the last and, when
//! one is there, goes on from it (see [`checkpoint`](super::checkpoint)).

use std::{path::Path, time::Instant};

use anyhow::{anyhow, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

use crate::config::{JobSpec, Plan};
use crate::core::param_spec::strengths;
use crate::data::Dataset;
use crate::model::{InputShape, Net, NetSpec};
use crate::results::CurvePoint;
use crate::results::{CapacityPoint, ImportanceSummary, JobResult, Metrics, Provenance};
use crate::scenario::{Evaluate, Scenario, TaskTensors, View};
use crate::strategy::{
    registry::BuildContext, AttachContext, Boundary, GatePass, OptimizerAfterEdit, Registry,
    Strategy, TaskContext, TaskData, WeightEdit,
};
use crate::train::{accuracy, TrainSet, Trainer};

use super::checkpoint::{self, JobProgress};
use super::continual;
use super::progress::JobEvent;

/// Runs `job` of `plan` on `device`, checkpointing to (and resuming from) `checkpoint` if given.
#[allow(clippy::too_many_arguments)]
pub fn run_job(
    plan: &Plan,
    registry: &Registry,
    dataset: &Dataset,
    scenario: &Scenario,
    job: &JobSpec,
    device: Device,
    checkpoint: Option<&Path>,
    on_event: &(dyn Fn(JobEvent) + Sync),
) -> Result<JobResult> {
    run_job_with_model(
        plan, registry, dataset, scenario, job, device, checkpoint, on_event,
    )
    .map(|(result, _)| result)
}

/// [`run_job`], also returning the trained model (for tests).
#[allow(clippy::too_many_arguments)]
pub fn run_job_with_model(
    plan: &Plan,
    registry: &Registry,
    dataset: &Dataset,
    scenario: &Scenario,
    job: &JobSpec,
    device: Device,
    checkpoint: Option<&Path>,
    on_event: &(dyn Fn(JobEvent) + Sync),
) -> Result<(JobResult, Net)> {
    let started = Instant::now();
    let memory = super::memory::MemoryWatch::start();
    // The part of the scenario this job sees (all of it unless selection holds data out).
    let base = scenario;
    let viewed = (job.view != View::default())
        .then(|| scenario.view(&dataset.train, &job.view))
        .transpose()
        .context("the job's view of the scenario")?;
    let scenario = viewed.as_ref().unwrap_or(base);
    // Each task's tensors, shared with the worker's other jobs over this scenario.
    let tensors = TaskTensors::new(dataset, base, &job.view, scenario, device);
    let num_tasks = scenario.num_tasks();
    let registration = registry
        .get(&job.strategy)
        .ok_or_else(|| anyhow!(registry.unknown_name_message(&job.strategy)))?;
    let build_context = BuildContext {
        device,
        num_tasks,
        seed: job.seed,
        clip: job.train.clip,
    };
    let mut strategy = (registration.build)(&job.params, &build_context)?;
    let transforms = &plan.experiment.transforms;
    let input = model_input(plan, dataset);
    let spec = NetSpec {
        model: plan.model.name,
        params: job.model_params.clone(),
        input,
        outputs: scenario.outputs,
    };
    // Padding and normalization, once per task's tensors (train and test alike).
    let image_shape = dataset_image_shape(dataset);
    let prepare = |mut data: TaskData| -> TaskData {
        if !transforms.is_identity() {
            let (c, h, w) = image_shape;
            let n = data.x.size()[0];
            data.x = transforms
                .apply_eval(&data.x.view([n, c, h, w]))
                .view([n, input.numel()]);
        }
        data
    };
    let model = Net::new(&spec, device, job.seed)?;
    strategy.attach(&AttachContext {
        model: &model,
        num_tasks,
        device,
        seed: job.seed,
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(job.seed);

    // Training data is built task by task (a permuted MNIST task is 190 MB of floats); test data
    // is kept for the whole job, since every task is evaluated after every task. A search run
    // of holdout selection is scored on its held-out data, and also tested (for the sensitivity
    // chart only).
    let test: Vec<TaskData> = (0..num_tasks)
        .map(|t| prepare(tensors.eval_data(t, t)))
        .collect();
    let also_test: Vec<TaskData> = match scenario.evaluate {
        Evaluate::Test => Vec::new(),
        Evaluate::Validation => (0..num_tasks)
            .map(|t| prepare(tensors.test_data(t, t)))
            .collect(),
    };

    let mut trainer = Trainer::new(job.train.clone());
    trainer.set_augmentation(transforms, input);
    let mut progress = JobProgress::new(&job.id, &job.settings);
    let mut resumed_after_task = None;
    if let Some(path) = checkpoint {
        if let Some(saved) = checkpoint::load(path, &job.settings)? {
            let resume = || -> Result<JobProgress> {
                checkpoint::restore_model(&model, saved.model)?;
                strategy.load_state(saved.strategy, device)?;
                trainer.load_optimizer_state(&model, &strategy.parameters(), saved.optimizer)?;
                let p = saved.progress;
                trainer.global_step = p.global_step;
                trainer.samples_seen = p.samples_seen;
                rng.set_word_pos(p.rng_word_pos.parse()?);
                Ok(p)
            };
            progress = resume().with_context(|| {
                format!(
                    "resuming from checkpoint {}; delete it to restart the job from its first task",
                    path.display()
                )
            })?;
            resumed_after_task = Some(progress.tasks_done());
            on_event(JobEvent::Resumed {
                tasks_done: progress.tasks_done(),
                num_tasks,
            });
        }
    }
    // Time spent by earlier runs of this job (before a kill), so totals add up.
    let earlier_s = progress.timings.total_s;
    let score = |strategy: &mut dyn Strategy, sets: &[TaskData], after: usize| {
        score_tasks(&model, strategy, scenario, sets, after, device)
    };
    if progress.tasks_done() == 0 {
        // The untrained network, scored as after task 0 (a task not yet trained is scored over
        // the same columns at every earlier row): forward transfer's reference. An evaluation
        // draws nothing from the job's stream, so training is unchanged.
        let tick = Instant::now();
        progress.initial_accuracy = Some(score(strategy.as_mut(), &test, 0)?);
        progress.timings.eval_s += tick.elapsed().as_secs_f64();
    }
    for t in progress.tasks_done()..num_tasks {
        let current = prepare(tensors.train_data(t));
        if job.train.uses_validation() {
            let held_out = tensors.validation_data(t);
            trainer.set_validation((held_out.x.size()[0] > 0).then(|| prepare(held_out)));
        }
        let run = TaskRun {
            model: &model,
            scenario,
            tensors: &tensors,
            prepare: &prepare,
            current: &current,
            num_tasks,
            device,
            on_event,
        };
        let tick = Instant::now();
        let (points, selection_s) = match &job.continual {
            None => (run.train(strategy.as_mut(), &mut trainer, &mut rng)?, 0.0),
            Some(settings) => {
                let held_out = prepare(tensors.validation_data(t));
                let rebuild = |params: &serde_json::Value| -> Result<Box<dyn Strategy>> {
                    let mut fresh = (registration.build)(params, &build_context)?;
                    // As a resumed job does: attached to the network as first built.
                    let initial = Net::new(&spec, device, job.seed)?;
                    fresh.attach(&AttachContext {
                        model: &initial,
                        num_tasks,
                        device,
                        seed: job.seed,
                    })?;
                    Ok(fresh)
                };
                let choice = continual::choose(
                    &run,
                    &continual::Method {
                        params: &job.params,
                        strengths: &strengths(registration.params),
                        rebuild: &rebuild,
                    },
                    settings,
                    &mut strategy,
                    &mut trainer,
                    &mut rng,
                    &held_out,
                    &progress.continual,
                )?;
                progress.continual.push(choice.record);
                (choice.points, choice.selection_s)
            }
        };
        progress.curve.extend(points);
        // Only the kept training counts as training; the fine-tunes and rejected attempts are
        // the selection's cost.
        progress.timings.train_s += tick.elapsed().as_secs_f64() - selection_s;
        progress.timings.selection_s += selection_s;

        let tick = Instant::now();
        run.finish(strategy.as_mut(), &mut trainer)?;
        progress.timings.after_task_s += tick.elapsed().as_secs_f64();
        if let Some(map) = strategy.importance() {
            progress.importance.extend(
                map.iter()
                    .map(|(name, v)| ImportanceSummary::of(t, name, v)),
            );
        }

        progress.capacity.extend(units_held(strategy.as_mut(), t)?);

        let tick = Instant::now();
        let row = score(strategy.as_mut(), &test, t)?;
        if !also_test.is_empty() {
            progress
                .test_accuracy
                .push(score(strategy.as_mut(), &also_test, t)?);
        }
        progress.timings.eval_s += tick.elapsed().as_secs_f64();
        on_event(JobEvent::TaskDone {
            task: t,
            num_tasks,
            seen_mean: row[..=t].iter().sum::<f64>() / (t + 1) as f64,
        });
        progress.accuracy.push(row);

        // After the last task the result itself is written; a strategy without saved state
        // cannot resume, so it gets no checkpoint.
        if let (Some(path), true) = (checkpoint, t + 1 < num_tasks) {
            if let Some(state) = strategy.save_state() {
                progress.global_step = trainer.global_step;
                progress.samples_seen = trainer.samples_seen;
                progress.rng_word_pos = rng.get_word_pos().to_string();
                progress.timings.total_s = earlier_s + started.elapsed().as_secs_f64();
                checkpoint::save(path, &progress, &model, trainer.optimizer_state(), state)?;
            }
        }
    }
    model.set_gates(None)?;
    let mut timings = progress.timings;
    timings.total_s = earlier_s + started.elapsed().as_secs_f64();
    timings.samples_per_s = trainer.samples_seen as f64 / timings.train_s.max(1e-9);
    let accuracy_matrix = progress.accuracy;
    let cost = crate::results::Cost {
        state_bytes: strategy.state_bytes(),
        ..memory.finish()
    };
    let result = JobResult {
        format_version: crate::results::FORMAT_VERSION,
        id: job.id.clone(),
        resumed_after_task,
        experiment: plan.experiment.name.clone(),
        strategy: job.strategy.clone(),
        params: job.params.clone(),
        seed: job.seed,
        metrics: Metrics::from_matrix(&accuracy_matrix),
        accuracy: accuracy_matrix,
        initial_accuracy: progress.initial_accuracy,
        test_accuracy: (!progress.test_accuracy.is_empty()).then_some(progress.test_accuracy),
        chance_accuracy: Some(scenario.chance_accuracy(&dataset.train, &dataset.test)),
        curve: progress.curve,
        importance: progress.importance,
        capacity: progress.capacity,
        continual: progress.continual,
        timings,
        cost: Some(cost),
        device: format!("{device:?}"),
        provenance: provenance(),
        config: serde_json::to_value(&plan.experiment)?,
        settings: job.settings.clone(),
    };
    Ok((result, model))
}

/// One task of a job: what every training of it shares (the network, the scenario, the task's
/// data). A job trains each task once; `selection: continual` trains it several times from
/// the same starting state (`runner::continual`).
pub(super) struct TaskRun<'a> {
    pub model: &'a Net,
    pub scenario: &'a Scenario,
    /// Each task's tensors (shared with the worker's other jobs inside a cache scope).
    pub tensors: &'a TaskTensors<'a>,
    /// The experiment's padding and normalization, applied to a task's tensors.
    pub prepare: &'a dyn Fn(TaskData) -> TaskData,
    /// The task's training data (its `task` is the task being trained).
    pub current: &'a TaskData,
    pub num_tasks: usize,
    pub device: Device,
    pub on_event: &'a (dyn Fn(JobEvent) + Sync),
}

impl TaskRun<'_> {
    /// The task being trained.
    pub fn task(&self) -> usize {
        self.current.task
    }

    fn context(&self) -> TaskContext<'_> {
        TaskContext {
            task: self.task(),
            num_tasks: self.num_tasks,
            model: self.model,
            data: self.current,
            device: self.device,
        }
    }

    /// The task's training with `strategy`'s hooks, up to the end of its last pass:
    /// `weight_edit(BeforeTask)`, `before_task`, then the passes over the data of the tasks the
    /// strategy trains on. Returns one curve point per pass.
    pub fn train(
        &self,
        strategy: &mut dyn Strategy,
        trainer: &mut Trainer,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<CurvePoint>> {
        let (t, device, scenario) = (self.task(), self.device, self.scenario);
        let ctx = self.context();
        let edit = strategy.weight_edit(&ctx, Boundary::BeforeTask)?;
        apply_weight_edit(self.model, trainer, edit)?;
        strategy.before_task(&ctx)?;
        let tasks = strategy.training_tasks(t);
        let earlier: Vec<TaskData> = tasks
            .iter()
            .filter(|&&k| k != t)
            .map(|&k| (self.prepare)(self.tensors.train_data(k)))
            .collect();
        let parts: Vec<(&TaskData, tch::Tensor)> = tasks
            .iter()
            .map(|&k| {
                let data = match earlier.iter().find(|d| d.task == k) {
                    Some(d) => d,
                    None => self.current,
                };
                let mask = scenario.train_mask_during(k, t);
                (data, Scenario::mask_tensor(&mask, device))
            })
            .collect();
        // A strategy may train nothing on a task (joint's `at_end` schedule).
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let set = TrainSet::from_parts(&parts);
        drop(parts);
        drop(earlier);
        let num_tasks = self.num_tasks;
        trainer.train_task(self.model, strategy, &set, t, rng, |p| {
            (self.on_event)(JobEvent::Epoch {
                task: t,
                num_tasks,
                epoch: p.epoch,
                task_loss: p.task_loss,
            })
        })
    }

    /// The end of the task: the gates of its later passes, `after_task` (e.g. a Fisher) and
    /// `weight_edit(AfterTask)`.
    pub fn finish(&self, strategy: &mut dyn Strategy, trainer: &mut Trainer) -> Result<()> {
        let ctx = self.context();
        self.model
            .set_gates(strategy.unit_gates(&GatePass::Eval { task: ctx.task })?)?;
        strategy.after_task(&ctx)?;
        let edit = strategy.weight_edit(&ctx, Boundary::AfterTask)?;
        apply_weight_edit(self.model, trainer, edit)
    }

    /// The accuracy on `held_out`, the task's own held-out data, of the network as trained so
    /// far, under the gates `strategy` gives the task.
    pub fn held_out_accuracy(
        &self,
        strategy: &mut dyn Strategy,
        held_out: &TaskData,
    ) -> Result<f64> {
        let t = self.task();
        self.model
            .set_gates(strategy.unit_gates(&GatePass::Eval { task: t })?)?;
        let data = TaskData {
            task: t,
            x: held_out.x.shallow_clone(),
            y: held_out.y.shallow_clone(),
            mask: Scenario::mask_tensor(&self.scenario.eval_mask(t, t), self.device),
        };
        Ok(accuracy(self.model, &data))
    }
}

/// The accuracy on each of `sets` after task `after`, each task scored under the gates the
/// strategy gives it.
fn score_tasks(
    model: &Net,
    strategy: &mut dyn Strategy,
    scenario: &Scenario,
    sets: &[TaskData],
    after: usize,
    device: Device,
) -> Result<Vec<f64>> {
    sets.iter()
        .enumerate()
        .map(|(j, set)| {
            model.set_gates(strategy.unit_gates(&GatePass::Eval { task: j })?)?;
            let mask = Scenario::mask_tensor(&scenario.eval_mask(j, after), device);
            let data = TaskData {
                task: j,
                x: set.x.shallow_clone(),
                y: set.y.shallow_clone(),
                mask,
            };
            Ok(accuracy(model, &data))
        })
        .collect()
}

/// For a method that gates units: per gated layer, the units whose largest evaluation gate over
/// tasks `0..=after` is at least 0.5 (empty for a method without gates).
fn units_held(strategy: &mut dyn Strategy, after: usize) -> Result<Vec<CapacityPoint>> {
    let mut largest: std::collections::BTreeMap<String, tch::Tensor> = Default::default();
    for task in 0..=after {
        let Some(gates) = strategy.unit_gates(&GatePass::Eval { task })? else {
            return Ok(Vec::new());
        };
        for (layer, gate) in gates {
            let gate = gate.detach();
            let merged = match largest.remove(&layer) {
                Some(m) => m.maximum(&gate),
                None => gate,
            };
            largest.insert(layer, merged);
        }
    }
    Ok(largest
        .into_iter()
        .map(|(layer, g)| CapacityPoint {
            task: after,
            held: g.ge(0.5).sum(tch::Kind::Int64).int64_value(&[]) as usize,
            units: g.numel(),
            layer,
        })
        .collect())
}

/// Writes a strategy's weight edit into the network and handles the optimizer as it asks.
fn apply_weight_edit(model: &Net, trainer: &mut Trainer, edit: Option<WeightEdit>) -> Result<()> {
    let Some(edit) = edit else { return Ok(()) };
    let mut weights = model.params();
    weights.extend(model.buffers());
    tch::no_grad(|| -> Result<()> {
        for (name, value) in &edit.values {
            let p = weights.get(name).ok_or_else(|| {
                anyhow!("the strategy edits `{name}`, which is not a parameter or buffer of the network")
            })?;
            p.shallow_clone().copy_(value);
        }
        Ok(())
    })?;
    if edit.optimizer == OptimizerAfterEdit::Reset {
        trainer.reset_optimizer();
    }
    Ok(())
}

/// The dataset's images as (channels, height, width).
fn dataset_image_shape(dataset: &Dataset) -> (i64, i64, i64) {
    let s = &dataset.train;
    (s.channels as i64, s.rows as i64, s.cols as i64)
}

/// The network's input: the dataset's images after the experiment's transforms.
pub fn model_input(plan: &Plan, dataset: &Dataset) -> InputShape {
    let (c, h, w) = dataset_image_shape(dataset);
    let (c, h, w) = plan
        .experiment
        .transforms
        .output_shape(c as usize, h as usize, w as usize);
    InputShape {
        channels: c as i64,
        height: h as i64,
        width: w as i64,
    }
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
