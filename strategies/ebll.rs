//! `ebll`: Encoder Based Lifelong Learning (Rannen Triki, Aljundi, Blaschko & Tuytelaars 2017,
//! "Encoder Based Lifelong Learning", ICCV), as CLsurvey's code writes it (Mattdl/CLsurvey
//! 1599657: `src/methods/EBLL/Finetune_SGD_EBLL.py` (`train_autoencoder`, `train_model_ebll`,
//! `fine_tune_Adam_Autoencoder`, `distillation_loss`), `src/methods/EBLL/AlexNet_EBLL.py`
//! (`AutoEncoder`, `AlexNet_ENCODER`, `AlexNet_EBLL`) and the `EBLL` class of
//! `src/methods/method.py` for the defaults).
//!
//! LwF plus one undercomplete autoencoder per finished task on the backbone's features `f` (the
//! head's input). After task k the network is frozen and an autoencoder
//! `c = sigmoid(W_e f + b_e)`, `r = W_d c + b_d` (code size `code_size`) is trained on task k's
//! training data to minimise
//!
//! ```text
//! L_AE = ae_loss_weight * mean((r - f)^2) + CE(head_k(r), y)
//! ```
//!
//! the mean over the batch and the feature units (`nn.MSELoss`), the cross-entropy through the
//! frozen head of task k (over the outputs task k trained on): the classification term keeps the
//! code what the task needs, and `ae_loss_weight` (CLsurvey's `alpha` of `train_autoencoder`,
//! grid 0.1 / 0.01) weighs the reconstruction, not the classification. Adadelta (lr `ae_lr`,
//! rho 0.9, eps 1e-6, see `clbench::train::Adadelta`), `ae_epochs` epochs of shuffled
//! mini-batches of `ae_batch_size` (the last one smaller), the autoencoder's parameters drawn as
//! PyTorch's `nn.Linear` draws them (U(-1/sqrt(fan_in), +)), from the job's seed. Only the
//! encoder is kept (CLsurvey adds `autoencoder.encode` to its `autoencoders` module; one per
//! finished task, all kept). Then, while training task t > 0, with the network after task t-1
//! frozen (eval mode) giving the old logits `z_old` and features `f_old`:
//!
//! ```text
//! L = CE + alpha * sum_g KD_T(z_g, z_old_g) + code_weight * sum_{k<t} mean((c_k(f) - c_k(f_old))^2)
//! ```
//!
//! `KD_T = -sum softmax(z_old/T) log softmax(z/T)`, batch mean, with no `T^2` factor and summed
//! (not averaged) over the earlier heads g, as CLsurvey's `distillation_loss` and its loop over
//! `target_logits` (`lwf` here averages over the heads and multiplies by `T^2`; the soft
//! cross-entropy and the teacher's bookkeeping are `clbench::strategy::distill`, shared with
//! it). The code distance is `nn.MSELoss`: the mean over the batch and the code units, no 1/2.
//! Every encoder codes the features of the network after task t-1 (CLsurvey's `original_model`),
//! not those of the network it was trained on.
//!
//! Defaults: `alpha` 10 and `code_weight` 1 (CLsurvey's `reg_lambda` and `ebll_reg_alpha`, the
//! start of its framework's decaying search), `temperature` 2 (`train_model_ebll`'s default, which
//! `fine_tune_SGD_EBLL` keeps), `code_size` 100 and `ae_loss_weight` 0.01 (the grid points
//! CLsurvey's `overwrite_timing_args` fixes), `ae_epochs` 50, `ae_lr` 0.01, `ae_batch_size` 200
//! (its `--batch_size`).
//!
//! Where this differs from CLsurvey, and why:
//! - CLsurvey trains the autoencoder at the start of the next task, on the previous task's data
//!   with the previous task's network; here `after_task` trains it on the same data with the same
//!   network, which is the same computation (nothing trains in between).
//! - Its autoencoder sits between AlexNet's convolutions and its fully connected classifier, and
//!   the classification term runs through that classifier; here it sits on the backbone's output,
//!   so the shared fully connected layers are inside the backbone and the term runs through the
//!   task's linear head only. The features are computed in eval mode (the network is frozen;
//!   AlexNet's convolutions have no dropout).
//! - It keeps, per task, the best of a grid over code size {100, 300} and `ae_loss_weight`
//!   {0.1, 0.01}, each trained up to 50 epochs with early stopping on validation accuracy
//!   (patience 5) and its best-accuracy epoch kept; here one setting is trained for `ae_epochs`
//!   and its last weights kept: the training data is all `after_task` sees.

use anyhow::{bail, Result};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use clbench::core::{ParamSpec, Range};
use clbench::model::{masked_cross_entropy, Forward, Net};
use clbench::strategy::{
    distill::{soft_cross_entropy, Teacher},
    registry::{config_from, resolve_with, BuildContext, Registration},
    Batch, SavedState, Strategy, TaskContext,
};
use clbench::train::Adadelta;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Weight of the distillation loss (CLsurvey's `reg_lambda`).
    pub alpha: f64,
    /// Softening temperature T of the distillation.
    pub temperature: f64,
    /// Weight of the code distance (CLsurvey's `ebll_reg_alpha`).
    pub code_weight: f64,
    /// Units of each autoencoder's code.
    pub code_size: usize,
    /// Epochs of each autoencoder's training.
    pub ae_epochs: usize,
    /// Adadelta's learning rate for the autoencoders.
    pub ae_lr: f64,
    /// Weight of the reconstruction error in the autoencoder's loss (the cross-entropy's is 1).
    pub ae_loss_weight: f64,
    /// Mini-batch size of the autoencoder's training.
    pub ae_batch_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            alpha: 10.0,
            temperature: 2.0,
            code_weight: 1.0,
            code_size: 100,
            ae_epochs: 50,
            ae_lr: 0.01,
            ae_loss_weight: 0.01,
            ae_batch_size: 200,
        }
    }
}

/// An autoencoder's encoder, `c = sigmoid(f W^T + b)`.
pub struct Encoder {
    /// [code, features].
    pub weight: Tensor,
    /// [code].
    pub bias: Tensor,
}

impl Encoder {
    /// The codes [n, code] of features [n, features].
    pub fn code(&self, features: &Tensor) -> Tensor {
        features.linear(&self.weight, Some(&self.bias)).sigmoid()
    }
}

/// `sum_k mean((c_k(features) - c_k(old))^2)` over `encoders`, the mean over the batch and the
/// code units (CLsurvey's `nn.MSELoss` per encoder), or `None` without encoders.
pub fn code_distance(encoders: &[Encoder], features: &Tensor, old: &Tensor) -> Option<Tensor> {
    encoders
        .iter()
        .map(|e| (e.code(features) - e.code(old)).square().mean(Kind::Float))
        .reduce(|a, b| a + b)
}

/// What an autoencoder is trained on: one task's features and targets, and the frozen head.
pub struct AutoencoderData<'a> {
    /// The frozen network's features of the task's training samples, [n, features].
    pub features: &'a Tensor,
    /// Targets as output columns, Int64 [n].
    pub targets: &'a Tensor,
    /// The outputs the task trained on, Bool [outputs].
    pub mask: &'a Tensor,
    /// The head's weight [outputs, features] and bias [outputs], detached.
    pub head: (&'a Tensor, &'a Tensor),
}

/// How an autoencoder is trained.
#[derive(Debug, Clone, Copy)]
pub struct AutoencoderTraining {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// Weight of the reconstruction error beside the cross-entropy.
    pub reconstruction_weight: f64,
}

/// An undercomplete autoencoder, `r = W_d sigmoid(W_e f + b_e) + b_d`.
pub struct Autoencoder {
    pub encoder: Encoder,
    pub decoder_weight: Tensor,
    pub decoder_bias: Tensor,
}

impl Autoencoder {
    /// PyTorch's `nn.Linear` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    /// biases, drawn from `rng` in the order PyTorch builds CLsurvey's `AutoEncoder`: the
    /// encoder's weight and bias, then the decoder's.
    pub fn init(features: i64, code: i64, rng: &mut ChaCha8Rng, device: Device) -> Result<Self> {
        let mut uniform = |shape: &[i64], fan_in: i64| -> Result<Tensor> {
            let Some(n) = shape.iter().try_fold(1i64, |n, &d| n.checked_mul(d)) else {
                bail!("an autoencoder of {features} features and {code} code units is too large");
            };
            let values = uniform_values(n, 1.0 / (fan_in as f64).sqrt(), rng)?;
            Ok(Tensor::from_slice(&values)
                .view(shape)
                .to_device(device)
                .set_requires_grad(true))
        };
        let encoder = Encoder {
            weight: uniform(&[code, features], features)?,
            bias: uniform(&[code], features)?,
        };
        Ok(Autoencoder {
            encoder,
            decoder_weight: uniform(&[features, code], code)?,
            decoder_bias: uniform(&[features], code)?,
        })
    }

    pub fn parameters(&self) -> Vec<Tensor> {
        [
            &self.encoder.weight,
            &self.encoder.bias,
            &self.decoder_weight,
            &self.decoder_bias,
        ]
        .into_iter()
        .map(|t| t.shallow_clone())
        .collect()
    }

    pub fn reconstruct(&self, features: &Tensor) -> Tensor {
        self.encoder
            .code(features)
            .linear(&self.decoder_weight, Some(&self.decoder_bias))
    }

    /// `reconstruction_weight * mean((r - f)^2) + CE(head(r), targets)` on `data`'s samples
    /// `features`/`targets` (a mini-batch or all of them).
    pub fn loss(
        &self,
        features: &Tensor,
        targets: &Tensor,
        data: &AutoencoderData,
        reconstruction_weight: f64,
    ) -> Tensor {
        let r = self.reconstruct(features);
        let logits = r.linear(data.head.0, Some(data.head.1));
        r.mse_loss(features, tch::Reduction::Mean) * reconstruction_weight
            + masked_cross_entropy(&logits, data.mask, targets)
    }

    /// Trains the autoencoder in place; returns each epoch's mean mini-batch loss.
    pub fn train(
        &self,
        data: &AutoencoderData,
        how: &AutoencoderTraining,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<f64>> {
        let mut optimizer = Adadelta::new(&self.parameters(), how.lr);
        let device = data.features.device();
        let mut order: Vec<i64> = (0..data.features.size()[0]).collect();
        let mut epoch_losses = Vec::with_capacity(how.epochs);
        for epoch in 0..how.epochs {
            order.shuffle(rng);
            let mut sum = Tensor::zeros([], (Kind::Float, device));
            for chunk in order.chunks(how.batch_size) {
                let rows = Tensor::from_slice(chunk).to_device(device);
                let features = data.features.index_select(0, &rows);
                let targets = data.targets.index_select(0, &rows);
                optimizer.zero_grad();
                let loss = self.loss(&features, &targets, data, how.reconstruction_weight);
                loss.backward();
                optimizer.step();
                sum += loss.detach();
            }
            let mean = sum.double_value(&[]) / order.chunks(how.batch_size).len() as f64;
            if !mean.is_finite() {
                bail!("the autoencoder's loss became {mean} in epoch {epoch}; lower ae_lr");
            }
            epoch_losses.push(mean);
        }
        Ok(epoch_losses)
    }
}

/// `n` values U(-bound, bound) from `rng`; an error, not an abort, when they do not fit in memory.
fn uniform_values(n: i64, bound: f64, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
    let mut values: Vec<f32> = Vec::new();
    let n = usize::try_from(n)?;
    if values.try_reserve_exact(n).is_err() {
        bail!("an autoencoder of {n} weights does not fit in memory; lower code_size");
    }
    values.extend((0..n).map(|_| rng.gen_range(-bound..bound) as f32));
    Ok(values)
}

/// Samples per forward pass when the features of a whole task are computed.
const FEATURE_CHUNK: i64 = 1024;

/// The eval-mode features of `x` under `model`, without a graph.
pub fn features_of(model: &Net, x: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let n = x.size()[0];
        let chunks: Vec<Tensor> = (0..n)
            .step_by(FEATURE_CHUNK as usize)
            .map(|start| {
                let chunk = x.narrow(0, start, FEATURE_CHUNK.min(n - start));
                model.forward_features_t(&chunk, &mut Forward::eval()).0
            })
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

/// Tags the autoencoders' random stream apart from the job's other streams of the same seed.
const AUTOENCODER_STREAM: u64 = 0x6562_6c6c_0000; // "ebll"

pub struct Ebll {
    config: Config,
    seed: u64,
    /// The previous task's network and the earlier outputs distilled from it.
    teacher: Teacher,
    /// One per finished task, in task order.
    encoders: Vec<Encoder>,
}

impl Ebll {
    pub fn new(config: Config, seed: u64) -> Ebll {
        Ebll {
            config,
            seed,
            teacher: Teacher::new(),
            encoders: Vec::new(),
        }
    }

    /// The encoders kept so far, one per finished task.
    pub fn encoders(&self) -> &[Encoder] {
        &self.encoders
    }

    fn training(&self) -> AutoencoderTraining {
        AutoencoderTraining {
            epochs: self.config.ae_epochs,
            lr: self.config.ae_lr,
            batch_size: self.config.ae_batch_size,
            reconstruction_weight: self.config.ae_loss_weight,
        }
    }

    /// Trains task `ctx.task`'s autoencoder on its data and the network just trained.
    fn train_autoencoder(&self, ctx: &TaskContext) -> Result<Autoencoder> {
        if ctx.data.x.size()[0] == 0 {
            bail!("ebll: task {} has no training samples to train its autoencoder on", ctx.task);
        }
        let features = features_of(ctx.model, &ctx.data.x);
        let (weight, bias) = (ctx.model.head.weight.detach(), ctx.model.head.bias.detach());
        let data = AutoencoderData {
            features: &features,
            targets: &ctx.data.y,
            mask: &ctx.data.mask,
            head: (&weight, &bias),
        };
        let stream = (self.seed ^ AUTOENCODER_STREAM).wrapping_add(ctx.task as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        let code = i64::try_from(self.config.code_size)?;
        let autoencoder = Autoencoder::init(features.size()[1], code, &mut rng, ctx.device)?;
        autoencoder.train(&data, &self.training(), &mut rng)?;
        Ok(autoencoder)
    }
}

impl Strategy for Ebll {
    fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.teacher.before_task(ctx)
    }

    fn task_loss(&mut self, batch: &Batch, logits: &Tensor, ce: Tensor) -> Result<Tensor> {
        let Some(teacher) = self.teacher.network() else {
            return Ok(ce);
        };
        let (old_features, old_logits) =
            tch::no_grad(|| teacher.forward_features_t(batch.x, &mut Forward::eval()));
        let temperature = self.config.temperature;
        let kd = self.teacher.summed(logits, &old_logits, |s, t, tm, sm| {
            soft_cross_entropy(s, t, tm, sm, temperature)
        });
        let loss = match kd {
            Some(kd) => ce + kd * self.config.alpha,
            None => ce,
        };
        // A zero weight skips the codes' passes (and keeps the loss that of the LwF part alone).
        let codes = (self.config.code_weight != 0.0)
            .then(|| code_distance(&self.encoders, batch.features, &old_features))
            .flatten();
        Ok(match codes {
            Some(codes) => loss + codes * self.config.code_weight,
            None => loss,
        })
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        self.teacher.after_task(ctx);
        if ctx.task + 1 == ctx.num_tasks {
            return Ok(()); // no later task would use it (CLsurvey trains none for the last task)
        }
        let Autoencoder { encoder, .. } = self.train_autoencoder(ctx)?;
        self.encoders.push(Encoder {
            weight: encoder.weight.detach(),
            bias: encoder.bias.detach(),
        });
        Ok(())
    }

    /// The earlier outputs' masks and the encoders; the teacher is the model itself at the next
    /// `before_task`.
    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        self.teacher.save_into(&mut state);
        state.put_count("encoders", self.encoders.len());
        for (k, e) in self.encoders.iter().enumerate() {
            state.put(format!("encoder{k}/weight"), &e.weight);
            state.put(format!("encoder{k}/bias"), &e.bias);
        }
        Some(state)
    }

    /// The saved masks (and autoencoders), plus the teacher network held until the next task.
    fn state_bytes(&self) -> Option<u64> {
        Some(self.save_state()?.bytes() + self.teacher.network_bytes())
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        self.teacher.load_from(&mut state, device)?;
        let n = state.take_count("encoders")?;
        self.encoders = (0..n)
            .map(|k| {
                Ok(Encoder {
                    weight: state.take(&format!("encoder{k}/weight"), device)?,
                    bias: state.take(&format!("encoder{k}/bias"), device)?,
                })
            })
            .collect::<Result<_>>()?;
        state.finish("ebll")
    }
}

inventory::submit! {
    Registration {
        name: "ebll",
        summary: "Encoder Based Lifelong Learning: LwF plus keeping each old task's autoencoder codes of the features",
        paper: "Rannen Triki, Aljundi, Blaschko & Tuytelaars 2017, Encoder Based Lifelong Learning, ICCV (Mattdl/CLsurvey src/methods/EBLL)",
        params: &[
            ParamSpec::new("alpha", "weight of the distillation loss, summed over the earlier heads, no T^2 (default 10, CLsurvey's)").range(Range::non_negative()).strength(),
            ParamSpec::new("temperature", "softening temperature T of the distillation (default 2)").range(Range::positive()),
            ParamSpec::new("code_weight", "weight of the code distance, sum over old tasks of mean (code(f) - code(f_old))^2 (default 1, CLsurvey's)").range(Range::non_negative()).strength(),
            ParamSpec::new("code_size", "code units of each task's autoencoder (default 100)").range(Range::Count),
            ParamSpec::new("ae_epochs", "epochs of each autoencoder's training (default 50)").range(Range::Count),
            ParamSpec::new("ae_lr", "Adadelta's learning rate for the autoencoders (default 0.01)").range(Range::positive()),
            ParamSpec::new("ae_loss_weight", "weight of the reconstruction error beside the cross-entropy through the frozen head in the autoencoder's loss (default 0.01)").range(Range::non_negative()),
            ParamSpec::new("ae_batch_size", "mini-batch size of the autoencoder's training (default 200)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx: &BuildContext| Ok(Box::new(Ebll::new(config_from(params)?, ctx.seed))),
    }
}
