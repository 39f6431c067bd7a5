//! The experiment file: YAML types that mirror it one to one, and their validation into a
//! [`Plan`](plan::Plan) of jobs.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere): a misspelt key is an error naming the
//! file, line and column and listing the allowed keys, never a silently ignored setting. Strategy
//! entries are a `name` plus that strategy's parameters; a list as a parameter's value is a grid
//! axis, and the grid is the Cartesian product of the axes. `dataset:` is likewise a registered
//! dataset's `name` plus its parameters, checked by the dataset's plugin (no grid there).

pub mod checks;
pub mod identity;
pub mod locate;
pub mod plan;
pub mod selection;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::scenario::{Heads, Interpolation, Mode};
use crate::train::OptimizerKind;

pub use plan::{JobSpec, Phase, Plan, ResolvedDataset};
pub use selection::{Selection, SelectionSection};

/// A whole experiment file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// Names the report folder: `<output>/<name>/`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How the file's numbers are to be read: the penalty's form, the Fisher's estimator and
    /// scale, the protocol it follows. Lambdas do not transfer between conventions.
    #[serde(default)]
    pub convention: String,
    pub dataset: DatasetSection,
    /// Input transforms: padding and normalization on every split, random crop and flip on
    /// training batches (drawn from the job's seeded stream).
    #[serde(default)]
    pub transforms: crate::data::transform::Transforms,
    pub scenario: ScenarioSection,
    #[serde(default)]
    pub model: ModelSection,
    pub training: TrainingSection,
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub runner: RunnerSection,
    pub strategies: Vec<serde_yaml::Mapping>,
    /// How each strategy's configuration is chosen from its grid (see [`selection`]).
    #[serde(default)]
    pub selection: SelectionSection,
    /// Published numbers to compare against, printed beside clbench's in the report.
    #[serde(default)]
    pub reference: Option<Reference>,
    /// Folder under which `<name>/` is written.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Written by clbench into the copy it saves beside the results (`experiment.yaml`): the
    /// format of that folder ([`crate::results::FORMAT_VERSION`]). Not needed in a file you
    /// write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
}

/// Published results of the protocol an experiment reproduces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Where the numbers come from (paper, table).
    pub source: String,
    /// Final average accuracy (ACC) in percent, by strategy name.
    pub acc_percent: std::collections::BTreeMap<String, f64>,
}

fn default_output() -> PathBuf {
    PathBuf::from("reports")
}

/// `dataset:`: a registered dataset's `name` plus that dataset's parameters.
///
/// Which keys are allowed depends on the dataset, so this type keeps them as YAML and the
/// dataset's plugin checks them strictly when the plan is built
/// ([`plan::Plan::from_str`] resolves them into [`plan::ResolvedDataset`]). `clbench datasets`
/// lists the datasets and their parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetSection {
    /// A registered dataset: `mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `synthetic`.
    pub name: String,
    /// Every other key of the section: the dataset's parameters, unchecked until planning.
    #[serde(flatten)]
    pub params: serde_yaml::Mapping,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioKind {
    /// Disjoint groups of classes, one group per task (`tasks`).
    Split,
    /// Every class in every task, each task with its own fixed pixel permutation.
    Permuted,
    /// Every class in every task, each task rotated by its own angle (`angles`).
    Rotated,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    pub kind: ScenarioKind,
    pub mode: Mode,
    /// split: the classes of each task, in training order.
    #[serde(default = "default_split")]
    pub tasks: Vec<Vec<u8>>,
    /// permuted (default 10), and rotated without `angles`: the number of tasks.
    #[serde(default)]
    pub num_tasks: Option<usize>,
    /// permuted: the first task keeps the original pixel order.
    #[serde(default = "yes")]
    pub identity_first: bool,
    /// rotated: each task's angle in degrees; without it, `num_tasks` angles are drawn
    /// uniformly from [0, 180) with `seed` (Buzzega et al.'s rotated MNIST).
    #[serde(default)]
    pub angles: Option<Vec<f64>>,
    /// rotated: how pixels are resampled, `bilinear` (default) or `nearest` (torchvision's
    /// `rotate` default).
    #[serde(default, skip_serializing_if = "Interpolation::is_bilinear")]
    pub interpolation: Interpolation,
    /// Seed of the permutations or angles, shared by every job of the experiment (unless
    /// `draw_per_seed`).
    #[serde(default)]
    pub seed: u64,
    /// permuted and rotated: every run seed draws its own permutations or angles, from `seed`
    /// and the run seed together, instead of one draw for the whole experiment. Mammoth sets no
    /// global seed, so each run behind Buzzega et al.'s (2020) means had its own angles; a mean
    /// over seeds is then a mean over task draws too. The jobs of one seed still share their
    /// tasks, so comparisons between strategies stay paired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draw_per_seed: bool,
}

impl ScenarioSection {
    /// How many tasks the scenario has: the split's groups, the permutations (default 10) or the
    /// rotations.
    pub fn task_count(&self) -> usize {
        match self.kind {
            ScenarioKind::Split => self.tasks.len(),
            ScenarioKind::Permuted => self.num_tasks.unwrap_or(10),
            // The count is the same for every run seed.
            ScenarioKind::Rotated => self.rotation_angles(0).len(),
        }
    }

    /// The seed the tasks of run seed `run_seed` are drawn from: `seed`, or with
    /// `draw_per_seed` one mixed from both (the same run seed always gives the same tasks).
    pub fn tasks_seed(&self, run_seed: u64) -> u64 {
        if self.draw_per_seed {
            // Distinct run seeds give distinct seeds; the odd constant spreads small numbers.
            self.seed ^ run_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        } else {
            self.seed
        }
    }

    /// One line saying what the tasks of run seed `run_seed` are, for `run --dry-run`: the
    /// class groups, the permutations' seed, or every rotation angle (so a run can be repeated
    /// elsewhere, e.g. with `angles:` or in another framework).
    pub fn describe(&self, run_seed: u64) -> String {
        let mode = format!("{:?}", self.mode).to_lowercase();
        match self.kind {
            ScenarioKind::Split => format!("split, {mode}-incremental, tasks {:?}", self.tasks),
            ScenarioKind::Permuted => format!(
                "permuted, {mode}-incremental, {} tasks, permutations from seed {}{}",
                self.task_count(),
                self.tasks_seed(run_seed),
                if self.identity_first {
                    " (the first task unpermuted)"
                } else {
                    ""
                }
            ),
            ScenarioKind::Rotated => {
                let angles: Vec<String> = self
                    .rotation_angles(run_seed)
                    .iter()
                    .map(|a| format!("{a:.4}"))
                    .collect();
                format!(
                    "rotated, {mode}-incremental, {} tasks, angles in degrees [{}]",
                    angles.len(),
                    angles.join(", ")
                )
            }
        }
    }

    /// The rotated scenario's angles for run seed `run_seed`: `angles`, or `num_tasks` angles
    /// drawn uniformly from [0, 180) degrees with [`Self::tasks_seed`] (the same for every job
    /// of the experiment unless `draw_per_seed`).
    pub fn rotation_angles(&self, run_seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        match &self.angles {
            Some(angles) => angles.clone(),
            None => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.tasks_seed(run_seed));
                (0..self.num_tasks.unwrap_or(0))
                    .map(|_| rng.gen_range(0.0..180.0))
                    .collect()
            }
        }
    }
}

fn default_split() -> Vec<Vec<u8>> {
    vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7], vec![8, 9]]
}

/// The network: a registered model (`models/*.rs`) with its parameters, and the heads, which
/// are the framework's. Strict like a strategy entry: the model's own config rejects unknown
/// keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSection {
    /// The model plugin (`clbench models` lists them); default `mlp`.
    #[serde(default = "default_model")]
    pub name: String,
    /// `multi` (a head per task) or `single`; default: multi in the task scenario, else single.
    #[serde(default)]
    pub heads: Option<Heads>,
    /// The model's own parameters (e.g. `hidden: [400, 400]` for `mlp`).
    #[serde(flatten)]
    pub params: serde_yaml::Mapping,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            name: default_model(),
            heads: None,
            params: serde_yaml::Mapping::new(),
        }
    }
}

fn default_model() -> String {
    "mlp".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    #[serde(default)]
    pub momentum: f64,
    pub batch_size: usize,
    /// Passes over each task's data (default 1 unless `iterations` is given).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Optimizer steps per task; overrides `epochs`.
    #[serde(default)]
    pub iterations: Option<usize>,
    #[serde(default = "yes")]
    pub reset_optimizer: bool,
    /// Clamp every gradient entry to [-v, v] before each step (PyTorch's `clip_grad_value_`;
    /// Mammoth's SI uses 1). Off by default.
    #[serde(default)]
    pub clip_grad_value: Option<f64>,
    /// Rescale the whole gradient to at most this L2 norm before each step
    /// (`clip_grad_norm_`; HAT's `clipgrad`). Off by default.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Divide the learning rate by `factor` after `patience` passes without a better loss on
    /// the task's held-out data, and stop the task below `min_lr` (HAT's schedule). Needs
    /// `selection: {mode: holdout}`. Off by default.
    #[serde(default)]
    pub lr_plateau: Option<crate::train::schedule::Plateau>,
    /// Stop a task after `patience` passes without a better held-out loss (optional), and put
    /// back the best weights (`restore_best`, default true). Needs `selection: {mode: holdout}`.
    #[serde(default)]
    pub early_stopping: Option<crate::train::schedule::EarlyStopping>,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerSection {
    /// Jobs run at once (default: one per GPU, else one per core; at most the number of jobs).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Jobs run at once on each device (workers = this x devices), e.g. several small jobs per
    /// GPU; ignored when `workers` is given.
    #[serde(default)]
    pub jobs_per_device: Option<usize>,
    /// libtorch intra-op threads per worker (default: cores / workers, at least 1).
    #[serde(default)]
    pub threads_per_worker: Option<usize>,
    /// `auto` (every CUDA GPU, else the CPU), or a list such as `[cpu]` or `[cuda:0, cuda:1]`.
    #[serde(default)]
    pub devices: Devices,
    /// Flush subnormal floats to zero on the CPU (as `torch.set_flush_denormal(True)`): training
    /// runs up to twice as fast; only values below 1.2e-38 change.
    #[serde(default = "yes")]
    pub flush_denormal: bool,
    /// Save a checkpoint after every task of a job, so a killed job resumes from its last
    /// finished task (`<output>/<name>/checkpoints/`, deleted when the job finishes).
    #[serde(default = "yes")]
    pub checkpoints: bool,
}

impl Default for RunnerSection {
    fn default() -> Self {
        RunnerSection {
            workers: None,
            jobs_per_device: None,
            threads_per_worker: None,
            devices: Devices::Auto,
            flush_denormal: true,
            checkpoints: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Devices {
    #[default]
    #[serde(with = "auto_keyword")]
    Auto,
    List(Vec<String>),
}

mod auto_keyword {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "expected `auto` or a list of devices, got `{s}`"
            )))
        }
    }
}
