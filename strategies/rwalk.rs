//! `rwalk`: Riemannian Walk (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian Walk for
//! Incremental Learning: Understanding Forgetting and Intransigence", ECCV, Eq. 6-10).
//!
//! RWalk adds two importances: EWC++'s running Fisher `F` (Eq. 6 and 10; see
//! `clbench::fisher::running`) and a path score `s` in the manner of SI, the loss change of each
//! step `-g * delta_theta` (first order, `g` the task loss's gradient) over the KL distance the
//! step covered, `1/2 F delta_theta^2` (Eq. 7). After each task both are normalised and the loss is
//! `CE + lambda * sum (F_norm + s_norm) (theta - theta*)^2` (Eq. 8-9, no 1/2), `theta*` the
//! parameters after the last task. `g` is read in `after_task_backward` (the gradient of the
//! task loss alone, as SI reads it); the step `delta_theta` in `after_step`. The
//! implementations differ in nearly every detail, so two ship as `variant`:
//!
//! **`authors`** (facebookresearch/agem 4542149, `model/model.py` `create_pathint_ops`,
//! `create_fisher_ops`, `task_updates`; the `RWALK` branch of `fc_permute_mnist.py`'s loop). At
//! iteration `i` of a task (0-based), when `(i + 1) % delta_t == 0` and before that iteration's
//! step: `s += relu(w / (1e-3 + F (theta - theta_last)^2))` with `w = sum -g * delta_theta`
//! over the steps since the last such point (`small_omega`) and `theta_last` the parameters there
//! (`weights_delta_old`), using `F` as it stands; then
//! `F <- (1 - alpha) F + alpha * G / delta_t`, where `G` is the sum of `g^2` over every iteration
//! **since the task began**: the code's `RWALK` branch never runs `reset_tmp_fisher` inside a
//! task (its `EWC` branch does), so that is what this variant does. `F` starts at zero and
//! carries across tasks; the steps after a task's last update point reach neither `s` nor `F`.
//! After the task, `s` is doubled on the first task, `score <- score + (score + s)/2`, and both
//! `score` and `F` are min-max normalised over all parameters together:
//! `(x - min)/(max - min + 1e-32)`. Defaults: `lambda` 1 (`replicate_results_iclr19.sh`'s MNIST
//! setting), `alpha` 0.9, `delta_t` 10. The code's sparsification of the scores is commented
//! out there and not done here.
//!
//! **`avalanche`** (ContinualAI/avalanche eb075be, `avalanche/training/plugins/rwalk.py`,
//! `RWalkPlugin`). Every iteration, `F <- alpha g^2 + (1 - alpha) F` (`F = g^2` on the very first
//! iteration of the job; carried across tasks). The plugin gets `g` from a forward and backward
//! pass of its own, before the step, in eval mode, on the same batch and parameters, of the
//! criterion alone; clbench takes it from the training pass's backward of the task loss, which
//! is the same gradient for a model without dropout or batch norm (the plugin's `model.eval()`
//! also stays on for the training pass that follows, which clbench does not copy). After each
//! step, `w += -g * delta_theta`; every `delta_t` iterations of the job (its clock counts across
//! tasks: `(train_iterations + 1) % delta_t`), `s += w / (1/2 F (theta - theta_last)^2 + eps)`,
//! `eps` float32's machine epsilon, with no relu, and `w`, `theta_last` start again (and at each
//! task's start). After the task, `score <- s` on the first task, else `(score + s)/2`, and the
//! penalty's weights are `F / max F + relu(score) / max score`, the maxima over all parameters
//! (where a maximum is not positive that term is 0 here; the plugin would divide by it).
//! Defaults: `lambda` 0.1, `alpha` 0.9, `delta_t` 10.
//!
//! **FACIL** (mmasana/FACIL e09d2c8, `src/approach/r_walk.py`), described, not shipped: no
//! running Fisher; after each task a Fisher of the trained model at the model's predicted labels
//! (`max_pred`: squared batch-mean gradients times the batch size, over N, training mode),
//! merged as `F <- alpha F_old + (1 - alpha) F_new` with `alpha` 0.5 on the old; the score once
//! per task, `relu(w / (F (theta - theta_old)^2 + 0.1))` over the task's whole displacement with
//! the merged `F`, then `score <- (score + s)/2` (halved on the first task too); no
//! normalisation; `lambda` 1; the heads carry no importance (only the feature extractor's
//! parameters are penalised). Its `w` integrates the gradient of the cross-entropy over all
//! heads' outputs concatenated, while without exemplars it trains on the current head's alone.
//!
//! The default variant is `avalanche`: it is the implementation behind the published
//! reproduction clbench ships (`experiments/clb_split_mnist_rwalk.yaml`, continual-learning-
//! baselines' Split MNIST), the one users of PyTorch libraries meet, and its `F` is Eq. 10's
//! running average of recent squared gradients, where the authors' code averages a sum that grows
//! over the task. `lambda` left out takes the variant's default.

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use clbench::core::{ParamSpec, Range};
use clbench::fisher::running::{
    blend_into, copy_task_gradients, RunningFisher, Window, DEFAULT_ALPHA, DEFAULT_INTERVAL,
};
use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot, zeros_like},
    registry::{config_from, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};

/// The authors' damping of the score's denominator (`PARAM_XI_STEP`).
pub const AUTHORS_DAMPING: f64 = 1e-3;
/// The authors' guard in the min-max normalisation (`EPSILON`).
pub const AUTHORS_NORM_EPSILON: f64 = 1e-32;
/// Avalanche's damping of the score's denominator (`torch.finfo(float32).eps`).
pub const AVALANCHE_EPSILON: f64 = f32::EPSILON as f64;

/// Which implementation to follow; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// facebookresearch/agem's `model/model.py`.
    Authors,
    /// Avalanche's `RWalkPlugin`.
    #[default]
    Avalanche,
}

impl Variant {
    /// The penalty strength each implementation's own setting uses.
    pub fn default_lambda(self) -> f64 {
        match self {
            Variant::Authors => 1.0,
            Variant::Avalanche => 0.1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub variant: Variant,
    /// Penalty strength; resolved to the variant's default when left out.
    pub lambda: Option<f64>,
    /// Weight of the new term in the running Fisher.
    pub alpha: f64,
    /// Iterations between two score updates (and, for `authors`, Fisher updates).
    pub delta_t: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            variant: Variant::default(),
            lambda: None,
            alpha: DEFAULT_ALPHA,
            delta_t: DEFAULT_INTERVAL,
        }
    }
}

/// Parses the YAML strictly and fills in the variant's `lambda`.
fn resolve(params: &serde_yaml::Mapping) -> Result<serde_json::Value, String> {
    let mut config: Config = serde_yaml::from_value(serde_yaml::Value::Mapping(params.clone()))
        .map_err(|e| e.to_string())?;
    config
        .lambda
        .get_or_insert(config.variant.default_lambda());
    serde_json::to_value(config).map_err(|e| e.to_string())
}

/// The running Fisher, kept as each variant keeps it.
enum Fisher {
    /// The authors' schedule, `G` summed since the task began.
    Authors(RunningFisher),
    /// Avalanche's per-iteration average; `None` before the job's first iteration.
    Avalanche(Option<ParamMap>),
}

impl Fisher {
    fn current(&self) -> Option<&ParamMap> {
        match self {
            Fisher::Authors(running) => running.fisher(),
            Fisher::Avalanche(f) => f.as_ref(),
        }
    }
}

/// What one task's walk accumulates; rebuilt by `before_task`.
struct TaskWalk {
    /// This task's score so far (`s`: the authors' `big_omega_riemann`, Avalanche's
    /// `checkpoint_scores`).
    score: ParamMap,
    /// `sum -g * delta_theta` since the interval began (`small_omega`, `checkpoint_loss`).
    interval_loss: ParamMap,
    /// The parameters where the interval began (`weights_delta_old`, `checkpoint_params`).
    interval_start: ParamMap,
    /// The parameters before the current step (`after_step` leaves `-delta_theta` in it).
    before_step: ParamMap,
    /// The current step's task-loss gradients.
    grads: ParamMap,
    /// Whether `grads` and `before_step` wait for the step's `after_step`.
    pending: bool,
}

impl TaskWalk {
    fn new(params: &ParamMap) -> TaskWalk {
        let start = snapshot(params);
        TaskWalk {
            score: zeros_like(&start),
            interval_loss: zeros_like(&start),
            interval_start: snapshot(&start),
            before_step: snapshot(&start),
            grads: zeros_like(&start),
            pending: false,
        }
    }

    /// Closes the interval at `params`: its score joins `s`, and a new interval begins there.
    fn close_interval(&mut self, params: &ParamMap, fisher: Option<&ParamMap>, variant: Variant) {
        tch::no_grad(|| {
            for (k, p) in params {
                let moved = p - &self.interval_start[k];
                let add = interval_score(
                    &self.interval_loss[k],
                    fisher.map(|f| &f[k]),
                    &moved,
                    variant,
                );
                let s = self.score.get_mut(k).unwrap();
                *s = &*s + add;
                let _ = self.interval_loss.get_mut(k).unwrap().zero_();
                self.interval_start.get_mut(k).unwrap().copy_(p);
            }
        });
    }
}

/// One interval's score of one parameter: `relu(w / (1e-3 + F moved^2))` for `authors`,
/// `w / (1/2 F moved^2 + eps)` for `avalanche`; no `F` yet counts as zero.
pub fn interval_score(
    loss: &Tensor,
    fisher: Option<&Tensor>,
    moved: &Tensor,
    variant: Variant,
) -> Tensor {
    let distance = match fisher {
        Some(f) => f * moved.square(),
        None => moved.zeros_like(),
    };
    match variant {
        Variant::Authors => (loss / (distance + AUTHORS_DAMPING)).relu(),
        Variant::Avalanche => loss / (distance * 0.5 + AVALANCHE_EPSILON),
    }
}

/// The accumulated score after a task whose own score is `task`: the authors'
/// `score + (score + s)/2` (with `s` doubled on the first task, so that it is then `s`), or
/// Avalanche's `s` on the first task and `(score + s)/2` after it.
pub fn merge_scores(old: Option<&ParamMap>, task: &ParamMap, variant: Variant) -> ParamMap {
    task.iter()
        .map(|(k, s)| {
            let merged = match (old.map(|o| &o[k]), variant) {
                (None, _) => s.copy(),
                (Some(o), Variant::Authors) => o + (o + s) / 2.0,
                (Some(o), Variant::Avalanche) => (o + s) * 0.5,
            };
            (k.clone(), merged)
        })
        .collect()
}

/// The smallest and largest entry over all of `map`'s tensors.
fn extremes(map: &ParamMap) -> (f64, f64) {
    map.values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t.min().double_value(&[])), hi.max(t.max().double_value(&[])))
    })
}

/// The authors' `(x - min)/(max - min + 1e-32)`, min and max over all parameters together.
pub fn min_max_normalized(map: &ParamMap) -> ParamMap {
    let (lo, hi) = extremes(map);
    let range = hi - lo + AUTHORS_NORM_EPSILON;
    map.iter()
        .map(|(k, t)| (k.clone(), (t - lo) / range))
        .collect()
}

/// Avalanche's `relu(x) / max x`, the maximum over all parameters; zeros where it is not
/// positive (the plugin would divide by it: NaN or a sign flip).
pub fn max_normalized(map: &ParamMap) -> ParamMap {
    let (_, hi) = extremes(map);
    map.iter()
        .map(|(k, t)| {
            let v = if hi > 0.0 { t.relu() / hi } else { t.zeros_like() };
            (k.clone(), v)
        })
        .collect()
}

/// The penalty's weights from the running Fisher and the accumulated score.
pub fn penalty_weights(fisher: &ParamMap, score: &ParamMap, variant: Variant) -> ParamMap {
    let (f, s) = match variant {
        Variant::Authors => (min_max_normalized(fisher), min_max_normalized(score)),
        Variant::Avalanche => (max_normalized(fisher), max_normalized(score)),
    };
    f.iter().map(|(k, t)| (k.clone(), t + &s[k])).collect()
}

pub struct RWalk {
    variant: Variant,
    lambda: f64,
    alpha: f64,
    delta_t: usize,
    fisher: Fisher,
    /// Training iterations of the whole job so far (Avalanche's clock).
    iterations: usize,
    walk: Option<TaskWalk>,
    /// The accumulated score and the anchor, after the first task.
    consolidated: Option<(ParamMap, ParamMap)>,
    /// `F_norm + s_norm`, the penalty's weights.
    weights: Option<ParamMap>,
    /// `lambda * sum weights (theta - anchor)^2`; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
}

impl RWalk {
    pub fn new(config: Config) -> RWalk {
        let variant = config.variant;
        let delta_t = config.delta_t.max(1);
        let fisher = match variant {
            Variant::Authors => Fisher::Authors(RunningFisher::new(
                config.alpha,
                delta_t,
                Window::SinceTaskStart,
            )),
            Variant::Avalanche => Fisher::Avalanche(None),
        };
        RWalk {
            variant,
            lambda: config.lambda.unwrap_or(variant.default_lambda()),
            alpha: config.alpha,
            delta_t,
            fisher,
            iterations: 0,
            walk: None,
            consolidated: None,
            weights: None,
            penalty: None,
        }
    }

    /// The running Fisher as it stands.
    pub fn running_fisher(&self) -> Option<&ParamMap> {
        self.fisher.current()
    }

    /// The current task's score so far.
    pub fn task_score(&self) -> Option<&ParamMap> {
        self.walk.as_ref().map(|w| &w.score)
    }

    /// The score accumulated over finished tasks (before normalisation).
    pub fn score(&self) -> Option<&ParamMap> {
        self.consolidated.as_ref().map(|(s, _)| s)
    }

    /// Rebuilds the weights and the penalty from the running Fisher, the score and the anchor.
    fn rebuild_penalty(&mut self) {
        let Some((score, anchor)) = &self.consolidated else {
            return;
        };
        let fisher = match self.fisher.current() {
            Some(f) => shallow(f),
            None => zeros_like(anchor),
        };
        let weights = tch::no_grad(|| penalty_weights(&fisher, score, self.variant));
        let term = (Some(shallow(&weights)), shallow(anchor));
        self.penalty = Some(QuadraticPenalty::new(self.lambda, vec![term]));
        self.weights = Some(weights);
    }
}

/// Avalanche's `F <- alpha g^2 + (1 - alpha) F`, or `F = g^2` at the job's first iteration.
fn avalanche_fisher_step(fisher: &mut Option<ParamMap>, grads: &ParamMap, alpha: f64) {
    let squares: ParamMap =
        tch::no_grad(|| grads.iter().map(|(k, g)| (k.clone(), g.square())).collect());
    match fisher {
        None => *fisher = Some(squares),
        Some(f) => blend_into(f, &squares, alpha),
    }
}

/// The error of a training step or task end without `before_task`.
fn no_walk() -> anyhow::Error {
    anyhow!("rwalk: a training step or task end without before_task")
}

impl Strategy for RWalk {
    fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.walk = Some(TaskWalk::new(&ctx.model.params()));
        if let Fisher::Authors(running) = &mut self.fisher {
            running.begin_task();
        }
        Ok(())
    }

    fn after_task_backward(&mut self, model: &Net) -> Result<()> {
        let params = model.params();
        let (variant, alpha) = (self.variant, self.alpha);
        let walk = self.walk.as_mut().ok_or_else(no_walk)?;
        copy_task_gradients(model, &mut walk.grads);
        tch::no_grad(|| {
            for (k, p) in &params {
                walk.before_step.get_mut(k).unwrap().copy_(p);
            }
        });
        walk.pending = true;
        match &mut self.fisher {
            Fisher::Authors(running) => {
                // The code's loop closes the interval, then updates F, before this iteration.
                if running.update_due() {
                    walk.close_interval(&params, running.fisher(), variant);
                }
                running.observe(&walk.grads);
            }
            Fisher::Avalanche(fisher) => avalanche_fisher_step(fisher, &walk.grads, alpha),
        }
        Ok(())
    }

    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn after_step(&mut self, model: &Net) -> Result<()> {
        let params = model.params();
        let walk = self.walk.as_mut().ok_or_else(no_walk)?;
        if !std::mem::take(&mut walk.pending) {
            return Ok(());
        }
        // w -= g * (theta - before), as w += g * (before - theta), in place.
        tch::no_grad(|| {
            for (k, p) in &params {
                let before = walk.before_step.get_mut(k).unwrap();
                let _ = before.g_sub_(p);
                let _ = walk.interval_loss.get_mut(k).unwrap().addcmul_(&walk.grads[k], before);
            }
        });
        if self.variant == Variant::Avalanche {
            if (self.iterations + 1).is_multiple_of(self.delta_t) {
                walk.close_interval(&params, self.fisher.current(), Variant::Avalanche);
            }
            self.iterations += 1;
        }
        Ok(())
    }

    fn importance(&self) -> Option<&ParamMap> {
        self.weights.as_ref()
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let walk = self.walk.take().ok_or_else(no_walk)?;
        let old = self.consolidated.as_ref().map(|(s, _)| s);
        let score = tch::no_grad(|| merge_scores(old, &walk.score, self.variant));
        let anchor = snapshot(&ctx.model.params());
        self.consolidated = Some((score, anchor));
        self.rebuild_penalty();
        Ok(())
    }

    /// The running Fisher, the accumulated score, the anchor and Avalanche's clock; the
    /// weights are rebuilt from them.
    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        if let Some(f) = self.fisher.current() {
            state.put_map("fisher", f);
        }
        state.put_term("score", "anchor", self.consolidated.as_ref());
        state.put_count("iterations", self.iterations);
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some(f) = state.take_map("fisher", device) {
            match &mut self.fisher {
                Fisher::Authors(running) => running.set_fisher(f),
                Fisher::Avalanche(fisher) => *fisher = Some(f),
            }
        }
        self.consolidated = state.take_term("score", "anchor", device)?;
        self.iterations = state.take_count("iterations")?;
        self.rebuild_penalty();
        state.finish("rwalk")
    }
}

inventory::submit! {
    Registration {
        name: "rwalk",
        summary: "Riemannian Walk: EWC++'s running Fisher plus a KL-normalised path score, both normalised",
        paper: "Chaudhry et al. 2018, Riemannian Walk for Incremental Learning: Understanding Forgetting and Intransigence, ECCV",
        params: &[
            ParamSpec::new("variant", "avalanche (ContinualAI's RWalkPlugin, default) | authors (facebookresearch/agem model.py)"),
            ParamSpec::new("lambda", "penalty strength; the penalty is lambda * sum (F_norm + s_norm) (theta - theta*)^2 (default 0.1 for avalanche, 1 for authors)").range(Range::non_negative()).strength(),
            ParamSpec::new("alpha", "weight of the new term in the running Fisher F <- (1 - alpha) F + alpha * new (default 0.9)").range(Range::between(0.0, 1.0)),
            ParamSpec::new("delta_t", "iterations between score updates (and the authors' Fisher updates) (default 10)").range(Range::Count),
        ],
        requires: &[],
        resolve,
        build: |params, _ctx| Ok(Box::new(RWalk::new(config_from(params)?))),
    }
}
