//! Validation of an experiment file into a plan: the jobs to run and the settings they share.
//!
//! This is the one place where YAML is checked; everything after it receives a [`Plan`]. Every
//! error names the file, line and column and says what is allowed.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::checks::{
    check_scenario, check_training, grid_size, in_range, resolve_plugin, training_values, MAX_JOBS,
};
use super::selection::{
    Continual, LaterLrs, Selection, SelectionMode, CLSURVEY_LR_GRID, DEFAULT_VALIDATION_FRACTION,
};
use super::{identity, locate, ExperimentFile, ScenarioKind};
use crate::core::param_spec::Range;
use crate::data::{DatasetRegistry, DatasetShape};
use crate::model::ModelRegistry;
use crate::scenario::{Heads, Holdout, Mode, View};
use crate::strategy::Registry;
use crate::train::TrainSettings;

/// An error in an experiment file, with where it is.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// One job: a strategy with one point of its grid, and a seed.
#[derive(Debug, Clone, Serialize)]
pub struct JobSpec {
    /// A readable label (strategy, the parameters the file set, seed) plus a hash of
    /// [`settings`](Self::settings); see [`identity`].
    pub id: String,
    pub strategy: String,
    /// Resolved parameters (defaults filled in).
    pub params: serde_json::Value,
    pub seed: u64,
    /// The strategy entry's position in the file, 0-based (groups jobs for reports).
    pub entry: usize,
    /// Every setting the job's outcome depends on (data, scenario, model, training, strategy,
    /// parameters, seed). A saved result with equal settings is this job's result.
    pub settings: serde_json::Value,
    /// The id and settings an earlier clbench gave this job (before ids carried a hash), when it
    /// could have run it: a result saved under them is migrated to the new id.
    #[serde(skip)]
    pub legacy: Option<(String, serde_json::Value)>,
    /// A search run of the selection (scored on validation data or the first tasks, never
    /// reported) or a reported run.
    pub phase: Phase,
    /// The part of the scenario the job sees: all of it, except under `holdout` (training data
    /// without the validation split) and `first_tasks` (a range of tasks) selection.
    pub view: View,
    /// The training settings: the file's `training:`, with the strategy entry's own
    /// `training:` overrides (a paper's per-method learning rate) applied.
    pub train: TrainSettings,
    /// The model's resolved parameters: the file's `model:`, with the strategy entry's own
    /// `model:` overrides (a paper's per-method dropout) applied.
    pub model_params: serde_json::Value,
    /// Under `selection: continual`, its settings: the job chooses its learning rate and
    /// strengths task by task (see `runner::continual`).
    pub continual: Option<Continual>,
}

/// Which stage of the selection a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Scores a grid point for the choice.
    Search,
    /// A configuration run on the report seeds and reported.
    Report,
}

/// A grid point that search runs choose among: entry `entry` of the file, strategy
/// `strategy`, resolved parameters `params`.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub entry: usize,
    pub strategy: String,
    pub params: serde_json::Value,
}

/// Builds a job's id and settings from the settings every job shares.
#[derive(Debug, Clone)]
struct JobMaker {
    shared: serde_json::Value,
    /// What an earlier clbench recorded, for the jobs it could run.
    legacy_shared: Option<serde_json::Value>,
    /// Each entry's resolved defaults, for the label.
    defaults: Vec<serde_json::Value>,
    /// Each entry's training settings (the file's, or its own overrides applied).
    train: Vec<TrainSettings>,
    /// Each entry's model parameters (the file's, or its own overrides applied).
    model_params: Vec<serde_json::Value>,
    /// `selection: continual`'s settings, which every job follows.
    continual: Option<Continual>,
}

impl JobMaker {
    fn make(
        &self,
        strategy: &str,
        entry: usize,
        resolved: &serde_json::Value,
        seed: u64,
        view: &View,
        phase: Phase,
    ) -> JobSpec {
        let defaults = &self.defaults[entry];
        // The label shows the parameters that differ from the strategy's defaults, so it
        // follows from the settings alone (a default written out changes nothing).
        let explicit: Vec<(String, serde_json::Value)> = match resolved {
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(k, v)| defaults.get(k.as_str()) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let with_job = |shared: &serde_json::Value| {
            let mut settings = shared.clone();
            settings["strategy"] = serde_json::json!(strategy);
            settings["params"] = resolved.clone();
            settings["seed"] = serde_json::json!(seed);
            settings
        };
        let mut settings = with_job(&self.shared);
        let train = self.train[entry].clone();
        // An entry's own training settings replace the file's in its jobs' settings only.
        settings["training"] = serde_json::json!(train);
        // So do its model parameters, recorded only where they differ, so every other job keeps
        // its id.
        let model_params = self.model_params[entry].clone();
        if settings["model"]["params"] != model_params {
            settings["model"]["params"] = model_params.clone();
        }
        // Only a job that sees part of the scenario records its view, so every other job keeps
        // the id it had before selection modes existed.
        if view != &View::default() {
            settings["view"] = serde_json::json!(view);
        }
        if phase == Phase::Search {
            settings["phase"] = serde_json::json!(phase);
        }
        // The choices a continual job makes follow from these settings, so they are part of it.
        if let Some(continual) = &self.continual {
            settings["continual"] = serde_json::json!(continual);
        }
        let id = identity::job_id(strategy, &explicit, seed, &settings);
        // An earlier clbench could only have run this job with the file's own training settings
        // on the whole scenario; a job with either changed has no earlier result to adopt.
        let legacy = self
            .legacy_shared
            .as_ref()
            .filter(|_| view == &View::default())
            .filter(|_| settings["training"] == self.shared["training"])
            .map(|shared| {
                (
                    identity::legacy_job_id(strategy, resolved, seed),
                    with_job(shared),
                )
            });
        JobSpec {
            settings,
            id,
            strategy: strategy.to_string(),
            params: resolved.clone(),
            seed,
            entry,
            legacy,
            phase,
            view: view.clone(),
            train,
            model_params,
            continual: self.continual.clone(),
        }
    }
}

/// A strategy entry's `training:`: the settings a paper chose per method (e.g. Mammoth's
/// learning rate per model), replacing the file's for that entry's jobs.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingOverride {
    optimizer: Option<crate::train::OptimizerKind>,
    lr: Option<f64>,
    momentum: Option<f64>,
    batch_size: Option<usize>,
    epochs: Option<usize>,
    iterations: Option<usize>,
    clip_grad_value: Option<f64>,
    clip_grad_norm: Option<f64>,
}

impl TrainingOverride {
    /// `base` with the overrides applied, each checked as `training:` checks it.
    fn apply(&self, base: &TrainSettings) -> Result<TrainSettings, String> {
        let count = |v: Option<usize>| v.map(|v| v as f64);
        training_values(&[
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("batch_size", count(self.batch_size)),
            ("epochs", count(self.epochs)),
            ("iterations", count(self.iterations)),
            ("clip_grad_value", self.clip_grad_value),
            ("clip_grad_norm", self.clip_grad_norm),
        ])
        .map_err(|(_, message)| message)?;
        let mut t = base.clone();
        t.optimizer = self.optimizer.unwrap_or(t.optimizer);
        t.lr = self.lr.unwrap_or(t.lr);
        t.momentum = self.momentum.unwrap_or(t.momentum);
        t.batch_size = self.batch_size.unwrap_or(t.batch_size);
        if let Some(e) = self.epochs {
            t.epochs = e;
            t.iterations = None;
        }
        if self.iterations.is_some() {
            t.iterations = self.iterations;
        }
        if self.clip_grad_value.is_some() {
            t.clip.value = self.clip_grad_value;
        }
        if self.clip_grad_norm.is_some() {
            t.clip.norm = self.clip_grad_norm;
        }
        Ok(t)
    }
}

/// The experiment's network: a registered model and its resolved parameters.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub name: &'static str,
    pub params: serde_json::Value,
}

/// The experiment's dataset after its plugin checked the parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedDataset {
    /// The registered name (`DatasetRegistry::get` finds its plugin).
    pub name: String,
    /// Its parameters as the plugin's `resolve` returned them, defaults filled in.
    pub params: serde_json::Value,
}

impl ResolvedDataset {
    /// How clbench recorded the dataset in a job's settings before datasets were plugins
    /// (`{"name", "dir", "download", "synthetic"}`), so that results saved then can still be
    /// recognised; `None` where that format could not express the dataset. `section` is the
    /// `dataset:` YAML this was resolved from (the old format kept `synthetic:` as written).
    pub fn legacy_settings(&self, section: &super::DatasetSection) -> Option<serde_json::Value> {
        let old = |dir, download, synthetic| {
            serde_json::json!({
                "name": self.name, "dir": dir, "download": download, "synthetic": synthetic,
            })
        };
        match self.name.as_str() {
            "mnist" => Some(old(
                self.params["dir"].clone(),
                self.params["download"].clone(),
                serde_json::Value::Null,
            )),
            "synthetic" => {
                let mut spec = self.params.clone();
                let map = spec.as_object_mut()?;
                let channels = map.remove("channels")?;
                if channels != 1 || map.get("classes")?.as_u64()? > 10 {
                    return None;
                }
                let synthetic = match section.params.get("synthetic") {
                    Some(serde_yaml::Value::Null) => serde_json::Value::Null,
                    Some(_) => spec,
                    None if section.params.is_empty() => serde_json::Value::Null,
                    None => return None,
                };
                Some(old(serde_json::Value::Null, true.into(), synthetic))
            }
            _ => None,
        }
    }
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PathBuf,
    pub experiment: ExperimentFile,
    /// The dataset to load (`runner::load_dataset` loads it through the dataset registry).
    pub dataset: ResolvedDataset,
    /// What the dataset gives (channels, image size, classes), known before loading it.
    pub dataset_shape: DatasetShape,
    pub heads: Heads,
    pub model: ModelChoice,
    pub train: TrainSettings,
    /// How each strategy's configuration is chosen.
    pub selection: Selection,
    /// The jobs known before any runs: every job under `fixed` and `test_oracle`; the search
    /// runs and the runs of entries with a single setting under `holdout` and `first_tasks`
    /// (the chosen configurations' runs come from [`report_jobs`](Self::report_jobs)).
    pub jobs: Vec<JobSpec>,
    /// The grid points the search runs choose among, in file order (empty without a search).
    pub candidates: Vec<Candidate>,
    /// `<output>/<name>`.
    pub out_dir: PathBuf,
    maker: JobMaker,
    num_tasks: usize,
}

impl Plan {
    /// Reads and validates an experiment file.
    pub fn from_file(path: &Path, registry: &Registry) -> Result<Plan, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            position: None,
            message: format!("cannot read the experiment file: {e}"),
        })?;
        Plan::from_str(&text, path, registry)
    }

    /// Validates experiment text; `path` names it in errors.
    pub fn from_str(text: &str, path: &Path, registry: &Registry) -> Result<Plan, ConfigError> {
        let err = |position, message: String| ConfigError {
            file: path.to_path_buf(),
            position,
            message,
        };
        let experiment: ExperimentFile = serde_yaml::from_str(text).map_err(|e| {
            let position = e.location().map(|l| (l.line(), l.column()));
            let message = e.to_string();
            // serde_yaml appends " at line L column C"; the position is already in front.
            let message = match message.rfind(" at line ") {
                Some(i) if position.is_some() => message[..i].to_string(),
                _ => message,
            };
            err(position, message)
        })?;
        let top = |key: &str| find_top_level_key(text, key);

        if experiment.name.trim().is_empty() || experiment.name.contains(['/', '\\']) {
            return Err(err(
                top("name"),
                "`name` must be a non-empty folder name (no slashes)".into(),
            ));
        }
        if experiment.seeds.is_empty() {
            return Err(err(
                top("seeds"),
                "`seeds` is empty; give at least one seed, e.g. `seeds: [1, 2, 3]`".into(),
            ));
        }
        if experiment.seeds.iter().collect::<BTreeSet<_>>().len() != experiment.seeds.len() {
            return Err(err(
                top("seeds"),
                "`seeds` repeats a seed; each seed must appear once".into(),
            ));
        }
        let t = &experiment.training;
        check_training(t).map_err(|(key, message)| {
            err(
                section_key(text, "training", key).or(top("training")),
                message,
            )
        })?;
        check_scenario(&experiment.scenario).map_err(|(key, message)| {
            err(
                section_key(text, "scenario", key).or(top("scenario")),
                message,
            )
        })?;
        let models = ModelRegistry::load().map_err(|e| err(None, e.to_string()))?;
        let model_at = || locate::section_key(text, "model", Some("name")).or(top("model"));
        let model_reg = models
            .lookup(&experiment.model.name)
            .map_err(|message| err(model_at(), format!("model: {message}")))?;
        let model_params = resolve_plugin(
            &experiment.model.params,
            model_reg.params,
            model_reg.resolve,
        )
        .map_err(|(key, message)| {
            let position = key
                .and_then(|k| locate::section_key(text, "model", Some(&k)))
                .or(top("model"));
            err(position, format!("model `{}`: {message}", model_reg.name))
        })?;
        let model = ModelChoice {
            name: model_reg.name,
            params: model_params,
        };
        let r = &experiment.runner;
        for (key, value) in [
            ("workers", r.workers),
            ("jobs_per_device", r.jobs_per_device),
            ("threads_per_worker", r.threads_per_worker),
        ] {
            if let Some(v) = value {
                in_range("runner", key, v as f64, Range::Count).map_err(|message| {
                    err(section_key(text, "runner", key).or(top("runner")), message)
                })?;
            }
        }
        let (dataset, dataset_shape) = resolve_dataset(&experiment, text, path)?;
        // The transforms and the network must fit the dataset's images, known without loading.
        let transforms = &experiment.transforms;
        transforms
            .validate(dataset_shape.channels)
            .map_err(|message| {
                // Messages start `transforms.<key>`: point at that key.
                let key = message
                    .strip_prefix("transforms.")
                    .and_then(|rest| rest.split(['.', '[', ' ']).next())
                    .unwrap_or("");
                err(
                    section_key(text, "transforms", key).or(top("transforms")),
                    message,
                )
            })?;
        let (c, h, w) = transforms.output_shape(
            dataset_shape.channels,
            dataset_shape.rows,
            dataset_shape.cols,
        );
        let input = crate::model::InputShape {
            channels: c as i64,
            height: h as i64,
            width: w as i64,
        };
        (model_reg.check)(&model.params, input).map_err(|message| {
            err(
                top("model"),
                format!("model `{}` on {c}x{h}x{w} inputs: {message}", model.name),
            )
        })?;
        let heads = match (experiment.model.heads, experiment.scenario.mode) {
            (Some(Heads::Multi), Mode::Domain | Mode::Class) => {
                return Err(err(
                    top("model"),
                    "model.heads: multi needs the task label at test time, which only scenario.mode: task gives; \
                     use heads: single"
                        .into(),
                ))
            }
            (Some(h), _) => h,
            (None, Mode::Task) => Heads::Multi,
            (None, _) => Heads::Single,
        };
        let train = TrainSettings {
            optimizer: t.optimizer,
            lr: t.lr,
            betas: t.betas,
            momentum: t.momentum,
            batch_size: t.batch_size,
            epochs: t.epochs.unwrap_or(1),
            iterations: t.iterations,
            reset_optimizer: t.reset_optimizer,
            clip: crate::core::GradientClip {
                value: t.clip_grad_value,
                norm: t.clip_grad_norm,
            },
            lr_plateau: t.lr_plateau,
            early_stopping: t.early_stopping,
        };

        if experiment.strategies.is_empty() {
            return Err(err(
                top("strategies"),
                format!(
                    "`strategies` is empty; list at least one of: {}",
                    registry.names().join(", ")
                ),
            ));
        }
        let shared = serde_json::json!({
            "dataset": dataset,
            "transforms": experiment.transforms,
            "scenario": experiment.scenario,
            "model": { "name": model.name, "params": model.params, "heads": heads },
            "training": train,
        });
        // What an earlier clbench recorded, for the MLP (the only model it had).
        let legacy_shared = dataset
            .legacy_settings(&experiment.dataset)
            .filter(|_| model.name == "mlp" && experiment.transforms.is_identity())
            .map(|legacy_dataset| {
                serde_json::json!({
                    "dataset": legacy_dataset,
                    "scenario": experiment.scenario,
                    "model": { "hidden": model.params["hidden"], "heads": heads },
                    "training": train,
                })
            });
        // Every entry's grid, resolved: (name, defaults, points).
        let mut entries: Vec<(String, serde_json::Value, Vec<serde_json::Value>)> = Vec::new();
        let mut trains: Vec<TrainSettings> = Vec::new();
        let mut models_of: Vec<serde_json::Value> = Vec::new();
        for (entry, mapping) in experiment.strategies.iter().enumerate() {
            let at = |key: Option<&str>| locate::strategy_key(text, entry, key);
            let name = match mapping.get("name") {
                Some(serde_yaml::Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(err(
                        at(Some("name")),
                        "a strategy's `name` must be a string".into(),
                    ))
                }
                None => {
                    return Err(err(
                        at(None),
                        format!(
                            "strategy entry {entry} has no `name`; use one of: {}",
                            registry.names().join(", ")
                        ),
                    ))
                }
            };
            let reg = registry
                .get(&name)
                .ok_or_else(|| err(at(Some("name")), registry.unknown_name_message(&name)))?;
            let mut params = mapping.clone();
            params.remove("name");
            let entry_train = match params.remove("training") {
                None => train.clone(),
                Some(value) => serde_yaml::from_value::<TrainingOverride>(value)
                    .map_err(|e| e.to_string())
                    .and_then(|o| o.apply(&train))
                    .map_err(|message| {
                        err(
                            at(Some("training")),
                            format!("strategy `{name}`: {message}"),
                        )
                    })?,
            };
            trains.push(entry_train);
            let entry_model = match params.remove("model") {
                None => model.params.clone(),
                Some(serde_yaml::Value::Mapping(overrides)) => {
                    let mut given = experiment.model.params.clone();
                    given.extend(overrides);
                    let resolved = resolve_plugin(&given, model_reg.params, model_reg.resolve)
                        .and_then(|p| {
                            (model_reg.check)(&p, input)
                                .map(|_| p)
                                .map_err(|m| (None, m))
                        })
                        .map_err(|(_, message)| {
                            err(
                                at(Some("model")),
                                format!("strategy `{name}`: model `{}`: {message}", model.name),
                            )
                        })?;
                    resolved
                }
                Some(_) => {
                    return Err(err(
                        at(Some("model")),
                        format!(
                            "strategy `{name}`: `model:` takes the model's parameters to change \
                             for this entry, e.g. `model: {{dropout: 0.2}}`"
                        ),
                    ))
                }
            };
            models_of.push(entry_model);
            let defaults = (reg.resolve)(&serde_yaml::Mapping::new()).unwrap_or_default();
            let grid_size = grid_size(&params).map_err(|(key, message)| {
                err(at(Some(&key)), format!("strategy `{name}`: {message}"))
            })?;
            let runs = grid_size.saturating_mul(experiment.seeds.len());
            if runs > MAX_JOBS {
                return Err(err(
                    at(None),
                    format!(
                        "strategy `{name}`: the grid has {grid_size} points, {runs} runs with the \
                         seeds; at most {MAX_JOBS} jobs are allowed per entry: shorten the lists"
                    ),
                ));
            }
            let mut points = Vec::new();
            for point in expand_grid(&params) {
                let resolved =
                    resolve_plugin(&point, reg.params, reg.resolve).map_err(|(key, message)| {
                        err(at(key.as_deref()), format!("strategy `{name}`: {message}"))
                    })?;
                points.push(resolved);
            }
            entries.push((name, defaults, points));
        }
        for ((name, ..), params) in entries.iter().zip(&models_of) {
            check_requirements(name, registry, &model, params, input)
                .map_err(|message| err(model_at(), message))?;
        }
        let num_tasks = experiment.scenario.task_count();
        if num_tasks == 0 {
            return Err(err(
                top("scenario"),
                "the scenario has no tasks: give `tasks` (split), `num_tasks` (permuted), or \
                 `angles` or `num_tasks` (rotated)"
                    .into(),
            ));
        }
        let selection = resolve_selection(&experiment, &entries, num_tasks, text, path)?;
        if train.uses_validation()
            && !matches!(
                selection,
                Selection::Holdout { .. } | Selection::Continual(_)
            )
        {
            let key = if train.lr_plateau.is_some() {
                "lr_plateau"
            } else {
                "early_stopping"
            };
            return Err(err(
                section_key(text, "training", key),
                format!(
                    "training.{key} watches a loss on held-out data, which only `selection: {{mode: holdout}}` \
                     (or `continual`) keeps out of training; add it (with one setting per strategy it only holds the data out)"
                ),
            ));
        }
        let maker = JobMaker {
            shared,
            legacy_shared,
            defaults: entries.iter().map(|e| e.1.clone()).collect(),
            train: trains,
            model_params: models_of,
            continual: match &selection {
                Selection::Continual(c) => Some(c.clone()),
                _ => None,
            },
        };
        let report_view = selection.report_view(num_tasks);
        let search_view = selection.search_view();
        let mut jobs = Vec::new();
        let mut candidates = Vec::new();
        for (entry, (name, _, points)) in entries.iter().enumerate() {
            if selection.searches() && points.len() > 1 {
                for resolved in points {
                    candidates.push(Candidate {
                        entry,
                        strategy: name.clone(),
                        params: resolved.clone(),
                    });
                    for &seed in selection.search_seeds() {
                        jobs.push(maker.make(
                            name,
                            entry,
                            resolved,
                            seed,
                            &search_view,
                            Phase::Search,
                        ));
                    }
                }
            } else {
                for resolved in points {
                    for &seed in &experiment.seeds {
                        jobs.push(maker.make(
                            name,
                            entry,
                            resolved,
                            seed,
                            &report_view,
                            Phase::Report,
                        ));
                    }
                }
            }
        }
        let mut ids = BTreeSet::new();
        for job in &jobs {
            if !ids.insert(job.id.clone()) {
                return Err(err(
                    locate::strategy_key(text, job.entry, None),
                    format!(
                        "job `{}` appears twice; remove the repeated grid value",
                        job.id
                    ),
                ));
            }
        }
        if let Some(reference) = &experiment.reference {
            for name in reference.acc_percent.keys() {
                if registry.get(name).is_none() {
                    return Err(err(
                        find_line_containing(text, &format!("{name}:")),
                        format!(
                            "reference.acc_percent: {}",
                            registry.unknown_name_message(name)
                        ),
                    ));
                }
            }
        }
        let out_dir = experiment.output.join(&experiment.name);
        Ok(Plan {
            file: path.to_path_buf(),
            experiment,
            dataset,
            dataset_shape,
            heads,
            model,
            train,
            selection,
            jobs,
            candidates,
            out_dir,
            maker,
            num_tasks,
        })
    }

    /// The runs of the configurations the search chose, on the report seeds, given the search
    /// runs' scores; with each choice as (entry, parameters, mean score). Entries whose search
    /// has not finished on every search seed get no runs yet.
    pub fn report_jobs(
        &self,
        scores: &[super::selection::SearchScore],
    ) -> (Vec<JobSpec>, Vec<(usize, serde_json::Value, f64)>) {
        let points: Vec<(usize, serde_json::Value)> = self
            .candidates
            .iter()
            .map(|c| (c.entry, c.params.clone()))
            .collect();
        let chosen = super::selection::choose(&points, scores, self.selection.search_seeds());
        let view = &self.selection.report_view(self.num_tasks);
        let jobs = chosen
            .iter()
            .flat_map(|(entry, params, _)| {
                let strategy = &self
                    .candidates
                    .iter()
                    .find(|c| c.entry == *entry)
                    .expect("a choice is among the candidates")
                    .strategy;
                self.experiment.seeds.iter().map(move |&seed| {
                    self.maker
                        .make(strategy, *entry, params, seed, view, Phase::Report)
                })
            })
            .collect();
        (jobs, chosen)
    }

    /// Whether search runs choose a configuration for some entry: the selection searches and
    /// an entry has more than one grid point. The chosen configurations' runs then wait for the
    /// search's results.
    pub fn searches(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// How the reported configurations were chosen, as every table says it: the selection's
    /// label, or, for `holdout` without a grid to choose from, that nothing was chosen.
    pub fn selection_label(&self) -> String {
        match &self.selection {
            Selection::Holdout { holdout, .. } if !self.searches() => format!(
                "{} ({}% of each class's training samples held out of training)",
                Selection::Fixed.label(),
                holdout.fraction * 100.0
            ),
            s => s.label(),
        }
    }

    /// The number of tasks each run of the scenario trains.
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }
}

/// Resolves `selection:`: the mode (default `holdout` when a grid has more than one point,
/// else `fixed`) and its settings, each checked against the file.
/// Refuses a model that cannot give strategy `name` what it needs (see
/// [`Requirement`](crate::strategy::registry::Requirement)), naming both.
fn check_requirements(
    name: &str,
    registry: &Registry,
    model: &ModelChoice,
    params: &serde_json::Value,
    input: crate::model::InputShape,
) -> Result<(), String> {
    use crate::strategy::registry::Requirement;
    let Some(reg) = registry.get(name) else {
        return Ok(());
    };
    if !reg.requires.contains(&Requirement::UnitGates) {
        return Ok(());
    }
    let spec = crate::model::NetSpec {
        model: model.name,
        params: params.clone(),
        input,
        outputs: 2,
    };
    let net = crate::model::Net::new(&spec, tch::Device::Cpu, 0)
        .map_err(|e| format!("model `{}`: {e}", model.name))?;
    crate::model::gating::check_gateable(&net).map_err(|why| {
        format!(
            "model `{}` cannot run strategy `{name}`, which gates hidden units: {why}",
            model.name
        )
    })
}

fn resolve_selection(
    experiment: &ExperimentFile,
    entries: &[(String, serde_json::Value, Vec<serde_json::Value>)],
    num_tasks: usize,
    text: &str,
    path: &Path,
) -> Result<Selection, ConfigError> {
    let err = |position, message: String| ConfigError {
        file: path.to_path_buf(),
        position,
        message,
    };
    let at =
        |key: &str| section_key(text, "selection", key).or(find_top_level_key(text, "selection"));
    let section = &experiment.selection;
    let swept = entries.iter().position(|e| e.2.len() > 1);
    let mode = section.mode.unwrap_or(if swept.is_some() {
        SelectionMode::Holdout
    } else {
        SelectionMode::Fixed
    });
    let only = |key: &str, given: bool, modes: &str| -> Result<(), ConfigError> {
        if given {
            Err(err(
                at(key),
                format!(
                    "selection.{key} applies to {modes} only, but the mode is {}; remove it or change the mode",
                    mode.name()
                ),
            ))
        } else {
            Ok(())
        }
    };
    let holds_out = matches!(mode, SelectionMode::Holdout | SelectionMode::Continual);
    only(
        "validation_fraction",
        !holds_out && section.validation_fraction.is_some(),
        "modes holdout and continual",
    )?;
    only(
        "split_seed",
        !holds_out && section.split_seed.is_some(),
        "modes holdout and continual",
    )?;
    let not_continual = mode != SelectionMode::Continual;
    for (key, given) in [
        ("lr_grid", section.lr_grid.is_some()),
        ("drop_margin", section.drop_margin.is_some()),
        ("decay", section.decay.is_some()),
        ("max_attempts", section.max_attempts.is_some()),
        ("carry_over", section.carry_over.is_some()),
        ("retrain", section.retrain.is_some()),
        ("later_lrs", section.later_lrs.is_some()),
    ] {
        only(key, not_continual && given, "mode: continual")?;
    }
    only(
        "tasks",
        mode != SelectionMode::FirstTasks && section.tasks.is_some(),
        "mode: first_tasks",
    )?;
    let searching = matches!(mode, SelectionMode::Holdout | SelectionMode::FirstTasks);
    only(
        "search_seeds",
        !searching && section.search_seeds.is_some(),
        "modes holdout and first_tasks",
    )?;
    let search_seeds = || -> Result<Vec<u64>, ConfigError> {
        let seeds = section.search_seeds.clone().unwrap_or_else(|| vec![0]);
        if seeds.is_empty() {
            return Err(err(
                at("search_seeds"),
                "selection.search_seeds is empty; give at least one seed, e.g. `search_seeds: [0]`"
                    .into(),
            ));
        }
        if seeds.iter().collect::<BTreeSet<_>>().len() != seeds.len() {
            return Err(err(
                at("search_seeds"),
                "selection.search_seeds repeats a seed; each seed must appear once".into(),
            ));
        }
        if let Some(seed) = seeds.iter().find(|s| experiment.seeds.contains(s)) {
            // Without a `selection:` section the search seeds are the default [0]: point at the
            // report seeds that hold it.
            return Err(err(
                at("search_seeds").or(find_top_level_key(text, "seeds")),
                format!(
                    "search seed {seed} is also a report seed (`seeds`); the configuration must be chosen on runs \
                     that are not reported: give `selection.search_seeds` disjoint from `seeds`"
                ),
            ));
        }
        Ok(seeds)
    };
    let holdout = || -> Result<Holdout, ConfigError> {
        let fraction = section
            .validation_fraction
            .unwrap_or(DEFAULT_VALIDATION_FRACTION);
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(err(
                at("validation_fraction"),
                format!("selection.validation_fraction must be between 0 and 1 (exclusive), got {fraction}"),
            ));
        }
        Ok(Holdout {
            fraction,
            seed: section.split_seed.unwrap_or(0),
        })
    };
    Ok(match mode {
        SelectionMode::Continual => {
            Selection::Continual(resolve_continual(section, holdout()?, &|key, message| {
                err(at(key), message)
            })?)
        }
        SelectionMode::Fixed => {
            if let Some(k) = swept {
                return Err(err(
                    locate::strategy_key(text, k, None),
                    format!(
                        "selection: fixed runs one setting per strategy, but entry {k} (`{}`) has {} grid points; \
                         give one value per parameter, or choose how to select: `selection: {{mode: holdout}}`",
                        entries[k].0,
                        entries[k].2.len()
                    ),
                ));
            }
            Selection::Fixed
        }
        SelectionMode::TestOracle => Selection::TestOracle,
        SelectionMode::Holdout => Selection::Holdout {
            holdout: holdout()?,
            search_seeds: search_seeds()?,
        },
        SelectionMode::FirstTasks => {
            let tasks = section.tasks.ok_or_else(|| {
                err(at("mode"), format!("selection: first_tasks needs `tasks`, the number of leading tasks to choose on (1 to {})", num_tasks.saturating_sub(1)))
            })?;
            if tasks == 0 || tasks >= num_tasks {
                return Err(err(
                    at("tasks"),
                    format!(
                        "selection.tasks must leave tasks to report: between 1 and {} for this scenario's {num_tasks} tasks, got {tasks}",
                        num_tasks.saturating_sub(1)
                    ),
                ));
            }
            Selection::FirstTasks {
                tasks,
                search_seeds: search_seeds()?,
            }
        }
    })
}

/// The settings of `selection: continual`, CLsurvey's defaults filled in, each checked.
fn resolve_continual(
    section: &super::selection::SelectionSection,
    holdout: Holdout,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Continual, ConfigError> {
    let lr_grid = section
        .lr_grid
        .clone()
        .unwrap_or_else(|| CLSURVEY_LR_GRID.to_vec());
    if lr_grid.is_empty() || lr_grid.iter().any(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(err(
            "lr_grid",
            format!(
                "selection.lr_grid must list at least one learning rate, each > 0; got {lr_grid:?}"
            ),
        ));
    }
    let drop_margin = section.drop_margin.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&drop_margin) {
        return Err(err(
            "drop_margin",
            format!("selection.drop_margin is the accepted share of the fine-tuned accuracy lost, in [0, 1]; got {drop_margin}"),
        ));
    }
    let decay = section.decay.unwrap_or(0.5);
    if !(decay > 0.0 && decay < 1.0) {
        return Err(err(
            "decay",
            format!("selection.decay multiplies a rejected strength, so it must lie in (0, 1); got {decay}"),
        ));
    }
    let max_attempts = section.max_attempts.unwrap_or(10);
    if max_attempts == 0 {
        return Err(err(
            "max_attempts",
            "selection.max_attempts must be at least 1 (the method's first training is an attempt)"
                .into(),
        ));
    }
    Ok(Continual {
        holdout,
        lr_grid,
        drop_margin,
        decay,
        max_attempts,
        carry_over: section.carry_over.unwrap_or(true),
        retrain: section.retrain.unwrap_or(false),
        later_lrs: section.later_lrs.unwrap_or(LaterLrs::All),
    })
}

/// Resolves `dataset:` through the dataset registry and checks the scenario against the
/// dataset's shape, before any data is read: split tasks may only name classes the dataset has,
/// and rotation needs single-channel images. Errors point at the offending key.
fn resolve_dataset(
    experiment: &ExperimentFile,
    text: &str,
    path: &Path,
) -> Result<(ResolvedDataset, DatasetShape), ConfigError> {
    let err = |position, message: String| ConfigError {
        file: path.to_path_buf(),
        position,
        message,
    };
    let at = |key: &str| section_key(text, "dataset", key);
    let registry = DatasetRegistry::load().map_err(|e| err(None, format!("{e:#}")))?;
    let section = &experiment.dataset;
    let reg = registry
        .lookup(&section.name)
        .map_err(|message| err(at("name"), format!("dataset.name: {message}")))?;
    let params =
        resolve_plugin(&section.params, reg.params, reg.resolve).map_err(|(key, message)| {
            let position = key.as_deref().map_or(at("name"), at);
            err(position, format!("dataset `{}`: {message}", reg.name))
        })?;
    let shape = (reg.shape)(&params);
    let scenario = &experiment.scenario;
    if scenario.kind == ScenarioKind::Split {
        if let Some(&class) = scenario
            .tasks
            .iter()
            .flatten()
            .find(|&&c| usize::from(c) >= shape.classes)
        {
            return Err(err(
                section_key(text, "scenario", "tasks"),
                format!(
                    "scenario.tasks names class {class}, but dataset `{}` has {} classes \
                     (0..={}); list only classes below {}",
                    reg.name,
                    shape.classes,
                    shape.classes.saturating_sub(1),
                    shape.classes
                ),
            ));
        }
    }
    if scenario.kind == ScenarioKind::Rotated && shape.channels != 1 {
        return Err(err(
            section_key(text, "scenario", "kind"),
            format!(
                "scenario.kind: rotated rotates single-channel images, but dataset `{}` has {} \
                 channels; use kind: split or permuted",
                reg.name, shape.channels
            ),
        ));
    }
    Ok((
        ResolvedDataset {
            name: reg.name.to_string(),
            params,
        },
        shape,
    ))
}

/// 1-based (line, column) of `key` inside the top-level block `section:` (block or flow
/// style), else of `section:` itself; `None` when there is no such section.
fn section_key(text: &str, section: &str, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        l.strip_prefix(section)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })?;
    // 1-based column of `key:` in `line`: its first word (block style), or after `{`, `,` or a
    // space (flow style: `dataset: {name: synthetic, seed: 3}`).
    let column = |line: &str| -> Option<usize> {
        let body = line.trim_start();
        if body
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
        {
            return Some(line.len() - body.len() + 1);
        }
        let pos = line.find(&format!("{key}:"))?;
        matches!(line[..pos].chars().last(), Some(' ' | '{' | ',')).then_some(pos + 1)
    };
    // On the section's own line, only after `section:`.
    if let Some(col) = column(&lines[start][section.len()..]) {
        return Some((start + 1, section.len() + col));
    }
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.len() == trimmed.len() {
            break; // the next top-level key
        }
        if let Some(col) = column(line) {
            return Some((i + 1, col));
        }
    }
    Some((start + 1, 1))
}

/// The Cartesian product of the parameters: a list value is an axis, anything else a constant.
fn expand_grid(params: &serde_yaml::Mapping) -> Vec<serde_yaml::Mapping> {
    let mut points = vec![serde_yaml::Mapping::new()];
    for (key, value) in params {
        let values = match value {
            serde_yaml::Value::Sequence(seq) => seq.clone(),
            other => vec![other.clone()],
        };
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(key.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    points
}

fn find_line_containing(text: &str, needle: &str) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
}

fn find_top_level_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| (i + 1, 1))
}
