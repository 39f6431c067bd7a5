//! `imm`: Incremental Moment Matching (Lee, Kim, Jun, Ha & Zhang 2017, "Overcoming catastrophic
//! forgetting by incremental moment matching", NeurIPS; merges Eq. 4 and 7, transfer
//! techniques Sec. 3.3).
//!
//! Each task `k` is trained from the weights the previous one ended at, and its end point
//! `theta_k` is kept. After task `t` the end points `theta_0..theta_t` are merged:
//!
//! - `merge: mean` (mean-IMM, Eq. 4): `theta = sum_k alpha_k theta_k`;
//! - `merge: mode` (mode-IMM, Eq. 7, diagonal): `theta = (sum_k alpha_k F_k theta_k) /
//!   (sum_k alpha_k F_k)`, `F_k` task k's diagonal Fisher at `theta_k`, estimated as CLsurvey's
//!   `diag_fisher` (Mattdl/CLsurvey 1599657, `src/methods/IMM/merge.py`): labels sampled from
//!   the model's softmax, eval mode (no dropout), initialised at 1e-8 (IMMTF adds the same 1e-8).
//!   Here it is `clbench::fisher::diagonal_fisher` with `Estimator::Sampled` (one draw per
//!   sample, mean of per-sample squared gradients) on the task's training data only: the
//!   strategy does not see validation data, which CLsurvey adds. (CLsurvey and IMMTF square
//!   mini-batch mean gradients instead; only the ratio between tasks and the 1e-8 matter.)
//!
//! `alpha_k` are equal, `1/(t+1)`, unless `alpha_last` is set: then the newest task gets
//! `alpha_last` and each earlier one `(1 - alpha_last)/t`, IMMTF's `--alpha` (its default 1/3 is
//! equal over its three tasks). No per-task list of alphas is offered. After the first task
//! there is one end point and nothing is merged.
//!
//! `merged_weights` says where the merge lives:
//! - `evaluate_only` (default; CLsurvey, and IMMTF, which merges once at the end): the merged
//!   weights are evaluated and checkpointed (`weight_edit` after the task), the end point is kept
//!   in the state and written back before the next task (optimizer state kept), so training goes
//!   on from the unmerged weights while every evaluation, the final one included, scores the merge;
//! - `train_on` (the HAT code, joansj/hat 6fd0b9d `src/approaches/imm_mean.py`): the merge is
//!   written back and the next task trains on from it. With equal alphas this is the HAT code's
//!   `theta <- (theta_t + t theta_merged)/(t+1)`. The HAT code's `imm_mode.py` assigns its merge to
//!   a local variable, so as written its model is never changed; this file merges as the paper.
//!
//! `merge_heads` (default false, CLsurvey): whether the output layer (`head.*`) is merged too.
//! The HAT code merges it, so with one head per task a new head is averaged with its untrained
//! copies; with a shared head (IMMTF's single 10-way head) it must be true to match IMMTF.
//! The defaults are CLsurvey's, which agree with the paper on evaluating the merge only and are
//! the safe choice for multi-head scenarios.
//!
//! `transfer` is what the paper adds during training, from the second task on (the anchor
//! `theta_prev` is the weights the task starts from: the previous end point, or the merge under
//! `train_on`):
//! - `l2` (L2-transfer, the default): `lambda * sum (theta - theta_prev)^2`, no 1/2, as IMMTF
//!   (btjhjeon/IMM_tensorflow c5e0ba2, `model/linear_layer.py` `RegLinear`, `RegPatch`), lambda
//!   1e-4 its default. The HAT code adds `lambda_H/2 * sum (theta - theta_prev)^2` (1e-4 for mean,
//!   0.01 for mode): its lambda_H is 2 lambda here (use 5e-5 and 0.005). IMMTF's regularizer
//!   also acts on the first task with a zero anchor (weight decay towards 0); here, as in the HAT
//!   code, there is no penalty on the first task.
//! - `drop` (drop-transfer, Eq. 10): a hidden unit's incoming weights run at `theta_prev` when
//!   the unit is dropped and at `theta_prev + (theta - theta_prev)/keep` when kept, keep =
//!   1 - `drop_rate`; the output layer is never dropped (IMMTF's keep 1.0 for the last layer).
//!   IMMTF (`DropLinear`: `dropout(h W_delta + b_delta) + h W_prev + b_prev`) draws this mask per
//!   sample and unit; the loop's `forward_weights` hook runs one weight set per batch, so here the
//!   mask is drawn per unit once per batch, from the strategy's own stream (seeded by the job's
//!   seed and the task). IMMTF's drop variant also replaces the hidden layers' ordinary dropout by
//!   this one, which is plain dropout on the first task (zero anchor); here the model's own
//!   dropout stays as configured and drop-transfer starts with the second task.
//! - `none`: plain SGD between merges.

use anyhow::{anyhow, bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use clbench::core::{ParamSpec, Range};
use clbench::fisher::{diagonal_fisher, Estimator, FisherOptions};
use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot},
    registry::{config_from, resolve_with, BuildContext, Registration},
    Boundary, ForwardWeight, ForwardWeights, OptimizerAfterEdit, ParamMap, Penalty,
    QuadraticPenalty, SavedState, Strategy, TaskContext, WeightEdit, HEAD_PREFIX,
};

/// How the end points of the tasks are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Mean-IMM: `sum_k alpha_k theta_k`.
    Mean,
    /// Mode-IMM: `(sum_k alpha_k F_k theta_k) / (sum_k alpha_k F_k)`.
    Mode,
}

/// What is added to plain SGD while a task trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// `lambda * sum (theta - theta_prev)^2`.
    L2,
    /// Drop-transfer: hidden units dropped towards `theta_prev`.
    Drop,
    None,
}

/// Where the merged weights live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergedWeights {
    /// Evaluated (and checkpointed); training goes on from the unmerged end point.
    EvaluateOnly,
    /// Written back: the next task trains on from the merge.
    TrainOn,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub merge: Merge,
    pub transfer: Transfer,
    /// L2-transfer's strength (no 1/2).
    pub lambda: f64,
    /// Drop-transfer's probability of dropping a hidden unit.
    pub drop_rate: f64,
    /// The newest task's alpha (the others share the rest equally); equal alphas when absent.
    pub alpha_last: Option<f64>,
    pub merged_weights: MergedWeights,
    /// Whether the output layer is merged too.
    pub merge_heads: bool,
    /// Estimate mode-IMM's Fisher on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            merge: Merge::Mean,
            transfer: Transfer::L2,
            lambda: 1e-4,
            drop_rate: 0.5,
            alpha_last: None,
            merged_weights: MergedWeights::EvaluateOnly,
            merge_heads: false,
            max_samples: None,
        }
    }
}

/// Added to every Fisher, as CLsurvey's initialisation and IMMTF's `FM += 1e-8`: a parameter
/// no task's data moves is merged by the mean instead of 0/0.
pub const FISHER_FLOOR: f64 = 1e-8;

pub struct Imm {
    config: Config,
    seed: u64,
    /// Each finished task's end point, before any merge (all parameters).
    end_points: Vec<ParamMap>,
    /// Each finished task's Fisher plus [`FISHER_FLOOR`] (mode-IMM only).
    fishers: Vec<ParamMap>,
    /// The weights the current task started from; `None` on the first task.
    anchor: Option<ParamMap>,
    /// L2-transfer's pull towards `anchor`.
    penalty: Option<QuadraticPenalty>,
    /// Drop-transfer's masks, reseeded by `before_task` (so a resumed job draws the same ones).
    rng: ChaCha8Rng,
}

impl Imm {
    pub fn new(config: Config, ctx: &BuildContext) -> Imm {
        Imm {
            config,
            seed: ctx.seed,
            end_points: Vec::new(),
            fishers: Vec::new(),
            anchor: None,
            penalty: None,
            rng: ChaCha8Rng::seed_from_u64(ctx.seed),
        }
    }

    /// Whether parameter `name` takes part in the merge.
    fn merges(&self, name: &str) -> bool {
        self.config.merge_heads || !name.starts_with(HEAD_PREFIX)
    }

    /// The merge of the end points so far, for the parameters that are merged.
    pub fn merged(&self) -> ParamMap {
        let alphas = alphas(self.end_points.len(), self.config.alpha_last);
        let names = self.end_points[0].keys().filter(|n| self.merges(n));
        let _guard = tch::no_grad_guard();
        names
            .map(|name| {
                let thetas: Vec<&Tensor> = self.end_points.iter().map(|e| &e[name]).collect();
                let merged = match self.config.merge {
                    Merge::Mean => mean_merge(&thetas, &alphas),
                    Merge::Mode => {
                        let fishers: Vec<&Tensor> = self.fishers.iter().map(|f| &f[name]).collect();
                        mode_merge(&thetas, &fishers, &alphas)
                    }
                };
                (name.clone(), merged)
            })
            .collect()
    }

    /// Drop-transfer's weights for one batch: per hidden layer, a unit mask `m` drawn with
    /// probability keep, `scale = m/keep` over the unit's incoming weights and bias, and
    /// `offset = (1 - scale) * anchor`.
    fn drop_weights(&mut self, model: &Net, anchor: &ParamMap) -> ForwardWeights {
        let keep = 1.0 - self.config.drop_rate;
        let mut weights = ForwardWeights::new();
        for layer in model.hidden_layers() {
            let mask: Vec<f32> = (0..layer.units)
                .map(|_| f32::from(u8::from(self.rng.gen::<f64>() < keep)) / keep as f32)
                .collect();
            let unit_scale = Tensor::from_slice(&mask);
            for suffix in ["weight", "bias"] {
                let name = format!("{}.{suffix}", layer.name);
                let Some(mu) = anchor.get(&name) else { continue };
                let mut shape = vec![1i64; mu.dim()];
                shape[0] = layer.units;
                let scale = unit_scale.view(shape.as_slice()).to_device(mu.device());
                let offset = (1.0 - &scale) * mu;
                weights.insert(name, ForwardWeight { scale, offset });
            }
        }
        weights
    }
}

/// The alphas of `n` end points: equal, or `alpha_last` for the newest and the rest shared.
pub fn alphas(n: usize, alpha_last: Option<f64>) -> Vec<f64> {
    match (n, alpha_last) {
        (1, _) => vec![1.0],
        (_, None) => vec![1.0 / n as f64; n],
        (_, Some(last)) => {
            let mut a = vec![(1.0 - last) / (n - 1) as f64; n - 1];
            a.push(last);
            a
        }
    }
}

/// Mean-IMM: `sum_k alpha_k theta_k`.
pub fn mean_merge(thetas: &[&Tensor], alphas: &[f64]) -> Tensor {
    thetas
        .iter()
        .zip(alphas)
        .map(|(t, &a)| *t * a)
        .reduce(|x, y| x + y)
        .expect("a merge of at least one end point")
}

/// Mode-IMM: `(sum_k alpha_k F_k theta_k) / (sum_k alpha_k F_k)`.
pub fn mode_merge(thetas: &[&Tensor], fishers: &[&Tensor], alphas: &[f64]) -> Tensor {
    let weighted: Vec<Tensor> = fishers.iter().zip(alphas).map(|(f, &a)| *f * a).collect();
    let numerator = weighted
        .iter()
        .zip(thetas)
        .map(|(w, t)| w * *t)
        .reduce(|x, y| x + y)
        .expect("a merge of at least one end point");
    let denominator = weighted
        .into_iter()
        .reduce(|x, y| x + y)
        .expect("a merge of at least one end point");
    numerator / denominator
}

impl Strategy for Imm {
    fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed ^ (0x696d_6d00 + ctx.task as u64));
        self.anchor = None;
        self.penalty = None;
        if ctx.task == 0 || self.config.transfer == Transfer::None {
            return Ok(());
        }
        let anchor = tch::no_grad(|| snapshot(&ctx.model.params()));
        if self.config.transfer == Transfer::L2 {
            let term = vec![(None, shallow(&anchor))];
            self.penalty = Some(QuadraticPenalty::new(self.config.lambda, term));
        }
        self.anchor = Some(anchor);
        Ok(())
    }

    fn forward_weights(&mut self, model: &Net, _task: usize) -> Result<ForwardWeights> {
        match (self.config.transfer, self.anchor.take()) {
            (Transfer::Drop, Some(anchor)) => {
                let weights = tch::no_grad(|| self.drop_weights(model, &anchor));
                self.anchor = Some(anchor);
                Ok(weights)
            }
            (_, anchor) => {
                self.anchor = anchor;
                Ok(ForwardWeights::new())
            }
        }
    }

    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let end_point = tch::no_grad(|| snapshot(&ctx.model.params()));
        if self.config.merge == Merge::Mode {
            let opts = FisherOptions::from_settings(
                Estimator::Sampled,
                self.config.max_samples,
                1,
                1,
                self.seed.wrapping_add(ctx.task as u64),
            );
            let d = &ctx.data;
            let fisher = diagonal_fisher(ctx.model, &d.x, &d.y, &d.mask, &opts)?;
            let floored = fisher
                .into_iter()
                .map(|(k, f)| (k, f + FISHER_FLOOR))
                .collect();
            self.fishers.push(floored);
        }
        self.end_points.push(end_point);
        Ok(())
    }

    fn weight_edit(&mut self, ctx: &TaskContext, at: Boundary) -> Result<Option<WeightEdit>> {
        let values = match (at, self.config.merged_weights) {
            // One end point: nothing to merge.
            (Boundary::AfterTask, _) if self.end_points.len() < 2 => return Ok(None),
            (Boundary::AfterTask, _) => self.merged(),
            // Training goes on from the end point the merge replaced for evaluation.
            (Boundary::BeforeTask, MergedWeights::EvaluateOnly) if ctx.task > 0 => {
                let last = self.end_points.last().ok_or_else(|| {
                    anyhow!("imm: task {} begins without the previous end point", ctx.task)
                })?;
                shallow(last)
            }
            (Boundary::BeforeTask, _) => return Ok(None),
        };
        Ok(Some(WeightEdit {
            values,
            optimizer: OptimizerAfterEdit::Keep,
        }))
    }

    fn importance(&self) -> Option<&ParamMap> {
        self.fishers.last()
    }

    /// The end points and Fishers; the anchor, penalty and mask stream are rebuilt by
    /// `before_task` (after the end point is written back).
    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_count("tasks", self.end_points.len());
        for (k, end_point) in self.end_points.iter().enumerate() {
            state.put_map(&format!("end_point{k}"), end_point);
        }
        for (k, fisher) in self.fishers.iter().enumerate() {
            state.put_map(&format!("fisher{k}"), fisher);
        }
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        let n = state.take_count("tasks")?;
        let mut take = |prefix: &str, k: usize| {
            state
                .take_map(&format!("{prefix}{k}"), device)
                .ok_or_else(|| anyhow!("imm: {prefix} {k} missing from the saved state"))
        };
        self.end_points = (0..n).map(|k| take("end_point", k)).collect::<Result<_>>()?;
        if self.config.merge == Merge::Mode {
            self.fishers = (0..n).map(|k| take("fisher", k)).collect::<Result<_>>()?;
        }
        state.finish("imm")
    }
}

/// Builds an `imm` from resolved parameters, refusing what cannot be merged.
fn build(params: &serde_json::Value, ctx: &BuildContext) -> Result<Box<dyn Strategy>> {
    let config: Config = config_from(params)?;
    if let Some(a) = config.alpha_last {
        if !(0.0..=1.0).contains(&a) {
            bail!("imm: alpha_last must be in [0, 1], got {a}");
        }
    }
    if !(0.0..1.0).contains(&config.drop_rate) {
        bail!("imm: drop_rate must be in [0, 1), got {}", config.drop_rate);
    }
    Ok(Box::new(Imm::new(config, ctx)))
}

inventory::submit! {
    Registration {
        name: "imm",
        summary: "Incremental Moment Matching: merges the tasks' end points (mean or Fisher-weighted mode) with L2- or drop-transfer",
        paper: "Lee et al. 2017, Overcoming catastrophic forgetting by incremental moment matching, NeurIPS",
        params: &[
            ParamSpec::new("merge", "mean: theta = sum alpha_k theta_k; mode: (sum alpha_k F_k theta_k)/(sum alpha_k F_k), F sampled-label Fisher + 1e-8 (default mean)"),
            ParamSpec::new("transfer", "during training from the second task: l2 (lambda * sum (theta - theta_prev)^2), drop (drop-transfer towards theta_prev) or none (default l2)"),
            ParamSpec::new("lambda", "L2-transfer strength, no 1/2 (IMMTF's 1e-4; the HAT code's lambda_H/2 convention: lambda = lambda_H/2) (default 1e-4)").range(Range::non_negative()),
            ParamSpec::new("drop_rate", "drop-transfer's probability of dropping a hidden unit, one mask per batch (default 0.5)").range(Range::from_below(0.0, 1.0)),
            ParamSpec::new("alpha_last", "the newest task's alpha, the others (1 - alpha_last)/t each (IMMTF's --alpha); equal alphas when absent").range(Range::between(0.0, 1.0)),
            ParamSpec::new("merged_weights", "evaluate_only: the merge is evaluated, training goes on from the unmerged weights (CLsurvey, IMMTF; default); train_on: written back (the HAT code)"),
            ParamSpec::new("merge_heads", "merge the output layer too (the HAT code; true for a shared head as IMMTF) (default false, CLsurvey)"),
            ParamSpec::new("max_samples", "estimate mode-IMM's Fisher on at most this many samples (default: all)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build,
    }
}
