//! `hat`: Hard Attention to the Task (Serrà et al. 2018, "Overcoming catastrophic forgetting
//! with hard attention to the task", ICML), ported from joansj/hat at 6fd0b9d:
//! `src/approaches/hat.py`, with the networks' gating of `src/networks/mlp_hat.py` and
//! `alexnet_hat.py`.
//!
//! Every hidden layer l (a linear layer's units, a convolution's channels; never the heads) has
//! one embedding row e_l^t per task, initialised N(0, 1) (`torch.nn.Embedding`'s default). On
//! task t the layer's output is multiplied by the gate a_l = sigmoid(s e_l^t):
//!
//! - in training, `s = (s_max - 1/s_max) i / N + 1/s_max`, with i the index of the batch's first
//!   sample in the epoch and N the task's training samples, so s anneals from 1/s_max towards
//!   s_max over each epoch; evaluation, validation and the cumulative mask use s = s_max;
//! - the loss is `CE + c reg`, `reg = sum a (1 - a_cum) / sum (1 - a_cum)` over the units of all
//!   gated layers together (`sum a / units` on the first task), a_cum being the element-wise
//!   maximum of the earlier tasks' gates at s_max; the reference's validation loss is this whole
//!   criterion (`training.lr_plateau.watch: criterion`);
//! - from the second task on, a weight's gradient is multiplied by `1 - min(a_cum of its output
//!   unit, a_cum of its input unit)` (the first layer: its output unit alone; a linear layer after
//!   a convolution: the channel's a_cum repeated over its spatial positions, as `alexnet_hat.py`'s
//!   `get_view_for`), a bias's by `1 - a_cum` of its unit;
//! - every embedding gradient is multiplied by `s_max/s (cosh(clamp(s e, ±50)) + 1) / (cosh(e) + 1)`
//!   (the compensation for the annealing), then the loop clips (the reference's `clipgrad` 10000 is
//!   `training.clip_grad_norm: 10000` in the experiment file) and steps, and the embeddings are
//!   clamped to ±6;
//! - after the task, `a_cum <- max(a_cum, sigmoid(s_max e^t))`.
//!
//! Defaults as the reference: c 0.75, s_max 400 (its grid searches chose them). Where every unit
//! of every layer is held by earlier tasks, `sum (1 - a_cum)` is 0 and the reference's regularizer
//! is 0/0; here it is then 0. The gates multiply a layer's output before its activation (see
//! `clbench::model::Forward`), which equals the reference's gating after ReLU, dropout and max
//! pooling because the gates are positive; models with batch norm or skip connections are refused
//! when the file is planned.

use anyhow::{anyhow, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use clbench::core::{ParamSpec, Range};
use clbench::model::{gating::input_columns, Net};
use clbench::strategy::{
    registry::{config_from, resolve_with, Registration, Requirement},
    AttachContext, Batch, GatePass, GradientEdit, GradientEdits, ParamMap, SavedState, Strategy,
    TaskContext, UnitGates, UnitLayer,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Weight of the attention regularizer (the reference's `lamb`).
    pub c: f64,
    /// The gates' largest slope (the reference's `smax`).
    pub s_max: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            c: 0.75,
            s_max: 400.0,
        }
    }
}

/// `thres_cosh` of the reference's `train_epoch`: the compensation's cosh argument is clamped.
const COSH_CLAMP: f64 = 50.0;
/// `thres_emb`: embeddings are clamped to ±this after every step.
const EMBEDDING_CLAMP: f64 = 6.0;

pub struct Hat {
    config: Config,
    /// The gated layers, input to output.
    layers: Vec<UnitLayer>,
    /// One embedding per layer, Float [tasks, units], by `hat.embedding.{layer}`.
    embeddings: ParamMap,
    /// The earlier tasks' cumulative gates at s_max, by layer; empty before the first task ends.
    cumulative: ParamMap,
    /// `1 - min(post, pre)` of the cumulative gates, by network parameter name.
    gradient_masks: ParamMap,
    /// The slope and gates of the last pass asked for (the regularizer and the compensation
    /// read them).
    slope: f64,
    gates: UnitGates,
}

fn embedding_name(layer: &str) -> String {
    format!("hat.embedding.{layer}")
}

impl Hat {
    pub fn new(config: Config) -> Hat {
        Hat {
            slope: config.s_max,
            config,
            layers: Vec::new(),
            embeddings: ParamMap::new(),
            cumulative: ParamMap::new(),
            gradient_masks: ParamMap::new(),
            gates: UnitGates::new(),
        }
    }

    /// The annealed slope of a training batch starting at sample `first` of `samples`.
    pub fn slope(&self, first: usize, samples: usize) -> f64 {
        let s_max = self.config.s_max;
        (s_max - 1.0 / s_max) * first as f64 / samples.max(1) as f64 + 1.0 / s_max
    }

    /// `sigmoid(s e^task)` of every layer.
    fn gates_at(&self, task: usize, s: f64) -> UnitGates {
        self.layers
            .iter()
            .map(|l| {
                let e = self.embeddings[&embedding_name(&l.name)].get(task as i64);
                (l.name.clone(), (e * s).sigmoid())
            })
            .collect()
    }

    /// The attention regularizer of `gates` against the cumulative gates.
    pub fn regularizer(&self, gates: &UnitGates) -> Tensor {
        let mut sum: Option<Tensor> = None;
        let mut count: Option<Tensor> = None;
        let add = |slot: &mut Option<Tensor>, t: Tensor| {
            *slot = Some(match slot.take() {
                Some(s) => s + t,
                None => t,
            });
        };
        for (name, a) in gates {
            match self.cumulative.get(name) {
                Some(held) => {
                    let free = 1.0 - held;
                    add(&mut sum, (a * &free).sum(Kind::Float));
                    add(&mut count, free.sum(Kind::Float));
                }
                None => {
                    add(&mut sum, a.sum(Kind::Float));
                    add(&mut count, Tensor::from(a.numel() as f32).to_device(a.device()));
                }
            }
        }
        match (sum, count) {
            (Some(s), Some(n)) => {
                // 0/0 when every unit is held: the regularizer is then 0 (see the module docs).
                let n = n.clamp_min(f64::MIN_POSITIVE);
                s / n
            }
            _ => Tensor::from(0.0f32),
        }
    }

    /// `1 - min(post, pre)` for each gated layer's weight and `1 - post` for its bias.
    fn rebuild_gradient_masks(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.gradient_masks.clear();
        for (k, layer) in self.layers.iter().enumerate() {
            let post = &self.cumulative[&layer.name];
            let shape: Vec<i64> = if layer.conv {
                vec![-1, 1, 1, 1]
            } else {
                vec![-1, 1]
            };
            let mut held = post.view(shape.as_slice());
            if k > 0 {
                let previous = &self.layers[k - 1];
                let repeat = input_columns(previous, layer).map_err(|e| anyhow!(e))?;
                let pre = self.cumulative[&previous.name].repeat_interleave_self_int(
                    repeat,
                    0,
                    None::<i64>,
                );
                let pre_shape: Vec<i64> = if layer.conv {
                    vec![1, -1, 1, 1]
                } else {
                    vec![1, -1]
                };
                held = held.minimum(&pre.view(pre_shape.as_slice()));
            }
            self.gradient_masks
                .insert(format!("{}.weight", layer.name), 1.0 - held);
            self.gradient_masks
                .insert(format!("{}.bias", layer.name), 1.0 - post);
        }
        Ok(())
    }

    /// The cumulative gates (a_cum) by layer, after the tasks trained so far.
    pub fn cumulative(&self) -> &ParamMap {
        &self.cumulative
    }
}

impl Strategy for Hat {
    fn attach(&mut self, ctx: &AttachContext) -> Result<()> {
        self.layers = ctx.model.hidden_layers().to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0x6861_745f_656d_6200);
        for layer in &self.layers {
            let n = ctx.num_tasks * layer.units as usize;
            let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            let e = Tensor::from_slice(&values)
                .view([ctx.num_tasks as i64, layer.units])
                .to_device(ctx.device)
                .set_requires_grad(true);
            self.embeddings.insert(embedding_name(&layer.name), e);
        }
        Ok(())
    }

    fn parameters(&self) -> ParamMap {
        clbench::strategy::params::shallow(&self.embeddings)
    }

    fn unit_gates(&mut self, pass: &GatePass) -> Result<Option<UnitGates>> {
        let (task, s) = match *pass {
            GatePass::Train {
                task,
                first_sample,
                samples,
            } => (task, self.slope(first_sample, samples)),
            GatePass::Eval { task } => (task, self.config.s_max),
        };
        self.slope = s;
        self.gates = match pass {
            GatePass::Train { .. } => self.gates_at(task, s),
            GatePass::Eval { .. } => tch::no_grad(|| self.gates_at(task, s)),
        };
        Ok(Some(clbench::strategy::params::shallow(&self.gates)))
    }

    fn task_loss(&mut self, _batch: &Batch, _logits: &Tensor, ce: Tensor) -> Result<Tensor> {
        Ok(ce + self.regularizer(&self.gates) * self.config.c)
    }

    fn gradient_edits(&mut self, _model: &Net, _task: usize) -> Result<GradientEdits> {
        let mut edits: GradientEdits = self
            .gradient_masks
            .iter()
            .map(|(name, m)| (name.clone(), GradientEdit::Scale(m.shallow_clone())))
            .collect();
        let (s, s_max) = (self.slope, self.config.s_max);
        tch::no_grad(|| {
            for (name, e) in &self.embeddings {
                let num = (e * s).clamp(-COSH_CLAMP, COSH_CLAMP).cosh() + 1.0;
                let den = e.cosh() + 1.0;
                edits.insert(name.clone(), GradientEdit::Scale(num / den * (s_max / s)));
            }
        });
        Ok(edits)
    }

    fn after_step(&mut self, _model: &Net) -> Result<()> {
        tch::no_grad(|| {
            for e in self.embeddings.values() {
                let _ = e.shallow_clone().clamp_(-EMBEDDING_CLAMP, EMBEDDING_CLAMP);
            }
        });
        Ok(())
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let gates = tch::no_grad(|| self.gates_at(ctx.task, self.config.s_max));
        for (name, a) in gates {
            let merged = match self.cumulative.remove(&name) {
                Some(held) => held.maximum(&a),
                None => a,
            };
            self.cumulative.insert(name, merged);
        }
        self.rebuild_gradient_masks()
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_map("embedding", &self.embeddings);
        state.put_map("cumulative", &self.cumulative);
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        let saved = state
            .take_map("embedding", device)
            .ok_or_else(|| anyhow!("hat: no embeddings in the saved state"))?;
        tch::no_grad(|| -> Result<()> {
            for (name, e) in &self.embeddings {
                let value = saved
                    .get(name)
                    .ok_or_else(|| anyhow!("hat: embedding {name} missing from the saved state"))?;
                e.shallow_clone().copy_(value);
            }
            Ok(())
        })?;
        self.cumulative = state.take_map("cumulative", device).unwrap_or_default();
        if !self.cumulative.is_empty() {
            self.rebuild_gradient_masks()?;
        }
        state.finish("hat")
    }
}

inventory::submit! {
    Registration {
        name: "hat",
        summary: "Hard Attention to the Task: learnt per-task gates on hidden units, gradients of units earlier tasks hold are blocked",
        paper: "Serra et al. 2018, ICML (joansj/hat src/approaches/hat.py)",
        params: &[
            ParamSpec::new("c", "weight of the attention regularizer (default 0.75)").range(Range::non_negative()).strength(),
            ParamSpec::new("s_max", "largest slope of the gates, sigmoid(s e) (default 400)").range(Range::positive()),
        ],
        requires: &[Requirement::UnitGates],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(Hat::new(config_from(params)?))),
    }
}
