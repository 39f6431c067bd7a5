//! Checkpoints within a job: after every finished task, everything a killed job needs to go on
//! from the next task and end with the accuracy matrix of an uninterrupted run.
//!
//! One safetensors file per job, `<experiment>/checkpoints/<job id>.safetensors`, replaced
//! atomically after each task (written to a temp file in the same folder, synced, renamed) and
//! deleted once the job's result is written. It holds the model's parameters (`model/...`), the
//! optimizer's moments and step count (`optimizer/...`), the strategy's state (`strategy/...`,
//! see [`Strategy::save_state`](crate::strategy::Strategy::save_state)) and a JSON header stored
//! as a byte tensor (`meta`): the job's settings (a checkpoint of other settings is ignored), the
//! rows of the accuracy matrix so far, the training curve, importance summaries, timings, the
//! step and sample counters and the position of the shuffling RNG. Tensors are stored bit for
//! bit, so a resumed job computes exactly what the uninterrupted one would.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::model::Net;
use crate::results::{CurvePoint, ImportanceSummary, Timings};
use crate::strategy::SavedState;

/// Version of the layout; a checkpoint of another version is ignored.
const FORMAT: u32 = 1;

/// A job's progress after its last finished task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobProgress {
    pub format: u32,
    pub job_id: String,
    /// The job's resolved settings; a checkpoint only resumes a job with equal settings.
    pub settings: serde_json::Value,
    /// A row per finished (and evaluated) task.
    pub accuracy: Vec<Vec<f64>>,
    /// The untrained network's accuracy on each task (see `JobResult::initial_accuracy`).
    #[serde(default)]
    pub initial_accuracy: Option<Vec<f64>>,
    /// Search runs' test rows (see `JobResult::test_accuracy`).
    #[serde(default)]
    pub test_accuracy: Vec<Vec<f64>>,
    pub curve: Vec<CurvePoint>,
    pub importance: Vec<ImportanceSummary>,
    /// Gated units held after each finished task (see `JobResult::capacity`).
    #[serde(default)]
    pub capacity: Vec<crate::results::CapacityPoint>,
    /// `selection: continual`'s choice on each finished task (see `JobResult::continual`).
    #[serde(default)]
    pub continual: Vec<crate::results::ContinualChoice>,
    pub timings: Timings,
    pub global_step: usize,
    pub samples_seen: usize,
    /// `ChaCha8Rng::get_word_pos` of the shuffling RNG, in decimal (a u128).
    pub rng_word_pos: String,
}

impl JobProgress {
    /// Tasks finished: the job resumes at task `tasks_done()`.
    pub fn tasks_done(&self) -> usize {
        self.accuracy.len()
    }

    /// The progress of job `job_id` before its first task.
    pub fn new(job_id: &str, settings: &serde_json::Value) -> JobProgress {
        JobProgress {
            format: FORMAT,
            job_id: job_id.to_string(),
            settings: settings.clone(),
            accuracy: Vec::new(),
            initial_accuracy: None,
            test_accuracy: Vec::new(),
            curve: Vec::new(),
            importance: Vec::new(),
            capacity: Vec::new(),
            continual: Vec::new(),
            timings: Timings::default(),
            global_step: 0,
            samples_seen: 0,
            rng_word_pos: "0".into(),
        }
    }
}

/// What [`load`] reads back.
pub struct Checkpoint {
    pub progress: JobProgress,
    pub model: SavedState,
    pub optimizer: SavedState,
    pub strategy: SavedState,
}

/// Where the checkpoint of job `id` of the experiment in `out_dir` lives.
pub fn path(out_dir: &Path, id: &str) -> PathBuf {
    out_dir
        .join("checkpoints")
        .join(format!("{id}.safetensors"))
}

/// Writes a checkpoint to `path` atomically.
pub fn save(
    path: &Path,
    progress: &JobProgress,
    model: &Net,
    optimizer: SavedState,
    strategy: SavedState,
) -> Result<()> {
    let mut all = SavedState::new();
    all.put_map("model", &model.params());
    // Buffers (batch-norm running statistics) share the `model/` prefix: names are unique in
    // the VarStore, and a model without buffers keeps the layout it always had.
    all.put_map("model", &model.buffers());
    all.put_all("optimizer", optimizer);
    all.put_all("strategy", strategy);
    let meta = serde_json::to_vec(progress)?;
    all.put("meta", &Tensor::from_slice(&meta));
    // safetensors wants contiguous CPU data; detach so no autograd state is touched.
    let tensors: Vec<(String, Tensor)> = all
        .into_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.detach().to_device(Device::Cpu).contiguous()))
        .collect();

    crate::results::write_atomic_with(path, |tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?))
        .context("writing a checkpoint")
}

/// Reads the checkpoint at `path` if there is one for a job with `settings`. `Ok(None)` when
/// there is none, or it belongs to other settings or another format; an error when the file is
/// there but unreadable (it says to delete it).
pub fn load(path: &Path, settings: &serde_json::Value) -> Result<Option<Checkpoint>> {
    if !path.exists() {
        return Ok(None);
    }
    let unreadable = || {
        format!(
            "checkpoint {} is unreadable; delete it to restart the job from its first task",
            path.display()
        )
    };
    let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(unreadable)?
        .into_iter()
        .collect();
    let mut all = SavedState::from_tensors(tensors);
    let meta = all.take("meta", Device::Cpu).with_context(unreadable)?;
    if meta.kind() != Kind::Uint8 {
        bail!("{}: its header is not bytes", unreadable());
    }
    let bytes = Vec::<u8>::try_from(&meta).with_context(unreadable)?;
    let progress: JobProgress = serde_json::from_slice(&bytes).with_context(unreadable)?;
    if progress.format != FORMAT || &progress.settings != settings {
        return Ok(None);
    }
    let model = all.take_all("model");
    let optimizer = all.take_all("optimizer");
    let strategy = all.take_all("strategy");
    all.finish("the checkpoint").with_context(unreadable)?;
    Ok(Some(Checkpoint {
        progress,
        model,
        optimizer,
        strategy,
    }))
}

/// Copies the parameters and buffers of a checkpoint into `model`.
pub fn restore_model(model: &Net, mut saved: SavedState) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut p) in model.params().into_iter().chain(model.buffers()) {
        let value = saved
            .take(&name, model.device())
            .with_context(|| format!("the checkpoint has no parameter {name}"))?;
        if value.size() != p.size() {
            bail!(
                "the checkpoint's {name} has shape {:?}, the model's {:?}",
                value.size(),
                p.size()
            );
        }
        p.copy_(&value);
    }
    saved.finish("the model")
}
