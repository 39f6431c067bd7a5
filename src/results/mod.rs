//! Job results on disk and the forgetting metrics computed from them.
//!
//! A job writes one [`JobResult`] as JSON, atomically (temp file, then rename), so a finished result
//! is never half-written and a crash never leaves a truncated file. Metrics are pure functions of
//! the accuracy matrix, so reports can recompute them without training.

pub mod metrics;

pub use crate::core::atomic::{
    is_stale_temp, temp_path, write_atomic, write_atomic_with, write_json_atomic,
};
pub use metrics::Metrics;

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The format of the job results (`jobs/<id>.json`) and of the saved `experiment.yaml` that
/// this clbench writes, and the newest it reads.
///
/// - 1: every file written before formats were numbered (they carry no `format_version`).
///   They read as they are; fields added since are optional, and reports recompute every
///   metric from the stored accuracy matrices, so old folders keep working.
/// - 2: the same content, with `format_version`.
///
/// A change that an older clbench would misread bumps the number; a file of a newer format is
/// refused with a message naming the clbench that wrote it, never misread.
pub const FORMAT_VERSION: u32 = 2;

/// What a file without `format_version` is.
fn unnumbered_format() -> u32 {
    1
}

/// Everything one job produced, with what is needed to reproduce it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    /// See [`FORMAT_VERSION`].
    #[serde(default = "unnumbered_format")]
    pub format_version: u32,
    /// Stable id that encodes the strategy, every one of its parameters and the seed.
    pub id: String,
    /// Set when the job went on from a checkpoint after this many tasks (after a crash or a
    /// kill); its timings then add up the runs, without the work the kill lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after_task: Option<usize>,
    pub experiment: String,
    pub strategy: String,
    /// The strategy's resolved parameters (defaults filled in), as given to its constructor.
    pub params: serde_json::Value,
    pub seed: u64,
    /// `accuracy[i][j]`: test accuracy on task j after training task i (all j, so forward
    /// transfer is readable too).
    pub accuracy: Vec<Vec<f64>>,
    /// The untrained network's test accuracy on each task, scored as `accuracy[0]` scores it:
    /// the reference of forward transfer. Absent from results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_accuracy: Option<Vec<f64>>,
    /// Per task, the expected test accuracy of a classifier that draws labels at random with the
    /// task's training frequencies (HAT's `random` approach, in expectation): the chance level
    /// of the forgetting ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chance_accuracy: Option<Vec<f64>>,
    /// Search runs of `holdout` selection score `accuracy` on held-out training data; this is
    /// their test accuracy matrix, kept only so that the sensitivity chart can show how far the
    /// test-best value lies from the chosen one. The choice never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<Vec<Vec<f64>>>,
    /// ACC, BWT and forgetting as the job computed them; reports recompute every metric from
    /// the matrices ([`metrics::METRICS`]).
    pub metrics: Metrics,
    /// Mean task loss and mean penalty per epoch of each task, in training order.
    pub curve: Vec<CurvePoint>,
    pub timings: Timings,
    /// Memory and state the job cost (see [`Cost`]). Absent from results written before it was
    /// recorded; reports show "—" for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    pub device: String,
    pub provenance: Provenance,
    /// The resolved experiment (after defaults), so the file alone says how it was made.
    pub config: serde_json::Value,
    /// Distribution of the strategy's importance values per parameter, after each task (for
    /// methods that have one: EWC family, SI, MAS).
    #[serde(default)]
    pub importance: Vec<ImportanceSummary>,
    /// For methods that gate hidden units (HAT): how many of each layer's units the tasks so
    /// far hold, after each task. Left out of the file when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity: Vec<CapacityPoint>,
    /// Under `selection: continual`, what was chosen on each task: the learning rate, the
    /// strengths and every attempt. Left out of the file otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continual: Vec<ContinualChoice>,
    /// The settings the outcome depends on (see `JobSpec::settings`); a rerun skips a job whose
    /// saved result has equal settings.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// One point of a training curve: means over one epoch of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub task: usize,
    pub epoch: usize,
    pub step: usize,
    pub task_loss: f64,
    pub penalty: f64,
    /// Mean loss on the task's held-out data after the pass, and the learning rate of the pass,
    /// when the training schedules on them (`lr_plateau`, `early_stopping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Wall time of the whole job, in seconds.
    pub total_s: f64,
    /// Wall time of training (all tasks, hooks included), in seconds.
    pub train_s: f64,
    /// Wall time of the strategies' end-of-task work (e.g. Fisher), in seconds.
    pub after_task_s: f64,
    /// Wall time of evaluation, in seconds.
    pub eval_s: f64,
    /// Training samples processed per second.
    pub samples_per_s: f64,
    /// Wall time of `selection: continual`'s fine-tunes and rejected attempts, in seconds (the
    /// kept training is in `train_s`). Left out of the file when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub selection_s: f64,
}

/// What a job cost besides time: memory, and the state its strategy keeps. Measurements, like
/// [`Timings`]: they vary from run to run and take no part in the job's id or its accuracies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    /// The process's peak resident memory (Linux `VmHWM` of `/proc/self/status`) read at the
    /// job's end, in bytes; `None` where the system does not say. `VmHWM` is per process and
    /// only grows, so the job resets it at its start (writing `5` to `/proc/self/clear_refs`)
    /// when it is the only job running in its process; then this is the peak of the job's own
    /// lifetime ([`peak_since_start`](Self::peak_since_start)). It is the whole process's
    /// memory either way: the dataset loaded once per process and libtorch count in it, and
    /// with several workers in one process (`runner.workers` > 1,
    /// [`jobs_overlapping`](Self::jobs_overlapping) > 1) the other jobs' memory does too, so it
    /// is an upper bound on the job's. Host memory only; a GPU's memory is not in it. A job
    /// resumed from a checkpoint records the last run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// The process's resident memory (`VmRSS`) at the job's start, in bytes: the peak less this
    /// is the job's own increase when it ran alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_rss_bytes: Option<u64>,
    /// Whether the peak was reset at the job's start, so that it covers the job's lifetime
    /// only (false: it covers the process's from its start, or from another job's reset).
    #[serde(default)]
    pub peak_since_start: bool,
    /// How many jobs of this process ran during this one, itself included: 1 when it ran alone
    /// and the peak is its own.
    #[serde(default)]
    pub jobs_overlapping: usize,
    /// The bytes of the tensors the strategy keeps after the last task (anchors, Fishers,
    /// importances, old models, autoencoders; `Strategy::state_bytes`); `None` for a strategy
    /// that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The units of one gated layer that the tasks trained so far hold, after one task: those whose
/// largest gate over these tasks (at evaluation) is at least 0.5 (HAT's compression analysis,
/// Serrà et al. 2018, Sec. 4.4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityPoint {
    pub task: usize,
    /// The layer, e.g. `trunk.0`.
    pub layer: String,
    pub held: usize,
    pub units: usize,
}

/// What `selection: continual` chose on one task (De Lange et al. 2021's framework): every
/// figure here is an accuracy on the task's own held-out data, the only data the choice reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContinualChoice {
    pub task: usize,
    /// The maximal-plasticity search: each learning rate tried and the held-out accuracy of
    /// fine-tuning at it, in the order tried.
    pub lr_search: Vec<LrScore>,
    /// The rate chosen (the best of `lr_search`; the first on ties).
    pub lr: f64,
    /// A_ft: the best fine-tuned accuracy.
    pub ft_accuracy: f64,
    /// `(1 - drop_margin) * A_ft`, the accuracy an attempt must reach (none on the first task
    /// and for a method without strengths: nothing is decayed there).
    pub threshold: Option<f64>,
    /// The method's trainings at `lr`, in order.
    pub attempts: Vec<Attempt>,
    /// How the task ended.
    pub outcome: ContinualOutcome,
    /// The strengths of the model kept.
    pub strengths: std::collections::BTreeMap<String, f64>,
    /// The strengths the next task starts from (with `carry_over`).
    pub carried: std::collections::BTreeMap<String, f64>,
    /// Seconds spent on the whole choice (every fine-tune and attempt).
    pub search_s: f64,
}

/// One learning rate of the maximal-plasticity search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LrScore {
    pub lr: f64,
    pub accuracy: f64,
}

/// One training of the method on the task, at the chosen learning rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub strengths: std::collections::BTreeMap<String, f64>,
    /// Held-out accuracy on the task after it.
    pub accuracy: f64,
    pub accepted: bool,
}

/// How `selection: continual` ended on a task.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContinualOutcome {
    /// The first task or a method without strengths: one training at the chosen rate.
    NotDecayed,
    /// An attempt reached the threshold and was kept.
    Accepted,
    /// No attempt reached it; the last one was kept (CLsurvey).
    KeptLast,
    /// No attempt reached it; the method was trained once more at the strengths decayed once
    /// more (FACIL, `retrain: true`).
    Retrained,
}

/// Quantiles of one parameter tensor's importance values after one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportanceSummary {
    pub task: usize,
    /// Parameter name, e.g. `trunk.0.weight`.
    pub param: String,
    /// Number of values, and how many of them are exactly zero.
    pub count: usize,
    pub zeros: usize,
    /// Quantiles 0, 0.1, 0.25, 0.5, 0.75, 0.9 and 1 of the non-zero values (empty if all are
    /// zero).
    pub quantiles: Vec<f64>,
}

/// The quantiles that [`ImportanceSummary::quantiles`] holds.
pub const IMPORTANCE_QUANTILES: [f64; 7] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0];

impl ImportanceSummary {
    /// Summarises `values` (any shape) of parameter `param` after task `task`.
    pub fn of(task: usize, param: &str, values: &tch::Tensor) -> ImportanceSummary {
        let all: Vec<f32> = Vec::try_from(
            values
                .detach()
                .to_device(tch::Device::Cpu)
                .to_kind(tch::Kind::Float)
                .flatten(0, -1),
        )
        .unwrap_or_default();
        let mut positive: Vec<f64> = all
            .iter()
            .filter(|v| **v != 0.0)
            .map(|&v| v as f64)
            .collect();
        positive.sort_by(f64::total_cmp);
        let quantiles = if positive.is_empty() {
            Vec::new()
        } else {
            IMPORTANCE_QUANTILES
                .iter()
                .map(|q| positive[((positive.len() - 1) as f64 * q).round() as usize])
                .collect()
        };
        ImportanceSummary {
            task,
            param: param.to_string(),
            count: all.len(),
            zeros: all.len() - positive.len(),
            quantiles,
        }
    }
}

/// Versions and revision, recorded in every result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub clbench_version: String,
    pub git_revision: String,
    pub torch_version: String,
    pub tch_version: String,
    pub hostname: String,
    pub finished_at_unix: u64,
}

/// Reads one saved job result. A file of a newer format, or one that is not a job result
/// (truncated, hand-edited), is an error that names the file and says what to do.
pub fn read_job_result(path: &Path) -> anyhow::Result<JobResult> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bad = |problem: String| {
        anyhow::anyhow!(
            "{}: not a readable clbench job result ({problem}); it was truncated or edited by \
             hand: delete it and rerun the experiment, which reruns only the missing jobs",
            path.display()
        )
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    check_format(path, &value, "job result")?;
    let result: JobResult = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    result.check_shapes().map_err(bad)?;
    Ok(result)
}

impl JobResult {
    /// Whether the job trained once, after its last task (joint's `at_end` schedule), as its
    /// training curve shows: every recorded pass belongs to the last task, of two or more.
    pub fn trained_once_at_end(&self) -> bool {
        let last = self.accuracy.len();
        last > 1 && !self.curve.is_empty() && self.curve.iter().all(|p| p.task + 1 == last)
    }

    /// Whether the matrices fit together: `accuracy` is T x T with T >= 1 (a row per task
    /// trained, a column per task tested), the per-task vectors have T entries and a test
    /// matrix beside it is T x T too. Every metric indexes them so.
    pub fn check_shapes(&self) -> Result<(), String> {
        let t = self.accuracy.len();
        let square = |m: &[Vec<f64>]| m.len() == t && m.iter().all(|row| row.len() == t);
        if t == 0 || !square(&self.accuracy) {
            let rows: Vec<usize> = self.accuracy.iter().map(Vec::len).collect();
            return Err(format!(
                "`accuracy` must be a square matrix of one row per task, but its rows have {rows:?} entries"
            ));
        }
        for (name, v) in [
            ("initial_accuracy", &self.initial_accuracy),
            ("chance_accuracy", &self.chance_accuracy),
        ] {
            if let Some(v) = v.as_ref().filter(|v| v.len() != t) {
                return Err(format!("`{name}` has {} entries for {t} tasks", v.len()));
            }
        }
        if let Some(m) = self.test_accuracy.as_ref().filter(|m| !square(m)) {
            return Err(format!(
                "`test_accuracy` is not {t} x {t} like `accuracy` ({} rows)",
                m.len()
            ));
        }
        Ok(())
    }
}

/// Refuses a file whose `format_version` is newer than this clbench reads, naming the clbench
/// that wrote it (from its provenance, when it has one).
pub fn check_format(path: &Path, value: &serde_json::Value, what: &str) -> anyhow::Result<()> {
    let version = match value.get("format_version") {
        None | Some(serde_json::Value::Null) => unnumbered_format() as u64,
        Some(v) => v.as_u64().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: `format_version` is {v}, not a format number; restore the file or delete it and rerun",
                path.display()
            )
        })?,
    };
    if version > FORMAT_VERSION as u64 {
        let writer = value
            .pointer("/provenance/clbench_version")
            .and_then(|v| v.as_str())
            .map(|v| format!("clbench {v}"))
            .unwrap_or_else(|| "a newer clbench".into());
        anyhow::bail!(
            "{}: a {what} of format {version}, written by {writer}; this clbench ({}) reads formats \
             up to {FORMAT_VERSION}. Use the clbench that wrote it (or a newer one), or rerun the \
             experiment into another `output` folder",
            path.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

/// Checks that every `*.json` in `jobs_dir` is a job result this clbench reads, so that a run
/// stops before any training on a file it would otherwise skip or overwrite. A missing folder
/// is fine (nothing has run yet).
pub fn check_jobs_folder(jobs_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return Ok(());
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        read_job_result(&path)?;
    }
    Ok(())
}
