//! One task's training loop, calling the strategy's hooks, and evaluation into a row of the
//! accuracy matrix.
//!
//! The loop owns the loss: it computes the masked cross-entropy, lets the strategy change it
//! (`task_loss`), backpropagates it, lets the strategy read the task-only gradients, adds the
//! gradient of the strategy's penalty (in closed form for quadratic penalties, else by a second
//! backward pass through the parameters only), steps the optimizer and calls `after_step`.
//! A strategy may have a batch's forward and backward passes run at other weights than the
//! stored ones (`forward_weights`): the loop writes them in, puts the stored ones back after the
//! backward pass and takes the gradient to them by the chain rule.
//! Losses are summed on the device and read once per epoch, so a GPU is not synchronised on every
//! step; a NaN or infinite loss stops the job with the task, epoch and step where it showed.
//!
//! A quadratic penalty's value is only needed for the training curve, so it is evaluated on every
//! [`PENALTY_LOG_EVERY`]-th step of an epoch and on its last step, and the curve reports the mean
//! of those values; its gradient is applied on every step.

mod adadelta;
mod adam;
pub mod schedule;
mod sgd;

use anyhow::{anyhow, bail, Result};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::core::{row_spans, GradientClip};
use crate::data::transform::Transforms;
use crate::model::{masked_cross_entropy, Forward, InputShape, Net};

use crate::results::CurvePoint;
use crate::strategy::{
    Batch, ForwardWeights, GatePass, GradientEdit, GradientEdits, ParamMap, Penalty,
    QuadraticPenalty, SavedState, Strategy, TaskData,
};
pub use adadelta::Adadelta;
pub use adam::Adam;
pub use sgd::Sgd;

/// A quadratic penalty's value is logged on every this-many-th step of an epoch.
pub const PENALTY_LOG_EVERY: usize = 32;

/// Bytes of layer inputs and outputs one evaluation forward pass may produce. Chunks of
/// thousands of images made every layer's activations hundreds of MB, past the caches: the conv
/// net of the Fashion-MNIST files evaluated at 0.22 ms a sample in chunks of 8 192 against
/// 0.15 ms in batches of 128. `benches/eval.rs` measures [`accuracy`] against a bare forward
/// pass at 128.
pub const EVAL_ACTIVATION_BYTES: i64 = 16 << 20;

/// Samples per evaluation forward pass of `model`: as many as keep the pass's layer inputs and
/// outputs within [`EVAL_ACTIVATION_BYTES`] (measured on one sample of `x`), between 128 and
/// 8 192 (about 170 for the conv net above, 1 700 for the 784-400-400 MLP).
pub fn eval_batch(model: &Net, x: &Tensor) -> i64 {
    if x.size()[0] == 0 {
        return 1;
    }
    let (_, records) = tch::no_grad(|| model.forward_recorded(&x.narrow(0, 0, 1)));
    let floats: i64 = records
        .iter()
        .map(|r| (r.input.numel() + r.output.numel()) as i64)
        .sum();
    let bytes = floats.max(1) * x.kind().elt_size_in_bytes() as i64;
    (EVAL_ACTIVATION_BYTES / bytes).clamp(128, 8192)
}

/// The optimizer and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Training settings shared by every task of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSettings {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Adam's (beta1, beta2).
    pub betas: (f64, f64),
    /// SGD's momentum.
    pub momentum: f64,
    pub batch_size: usize,
    /// Passes over each task's data; ignored when `iterations` is set.
    pub epochs: usize,
    /// Optimizer steps per task (the protocol of van de Ven & Tolias); overrides `epochs`.
    pub iterations: Option<usize>,
    /// A fresh optimizer (no moments carried over) at the start of each task.
    pub reset_optimizer: bool,
    /// Clipping of the gradient each step applies (task loss plus penalty); off by default,
    /// and then left out of the settings, so jobs from before it keep their ids.
    #[serde(default, skip_serializing_if = "GradientClip::is_off")]
    pub clip: GradientClip,
    /// HAT's learning-rate decay on a validation-loss plateau (needs held-out data); off by
    /// default and then left out of the settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_plateau: Option<schedule::Plateau>,
    /// Early stopping on the validation loss, restoring the best weights (needs held-out
    /// data); off by default and then left out of the settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<schedule::EarlyStopping>,
}

impl TrainSettings {
    /// Whether training reads a validation set between passes.
    pub fn uses_validation(&self) -> bool {
        self.lr_plateau.is_some() || self.early_stopping.is_some()
    }

    /// The optimizer for `params`: ours rather than libtorch's, whose state tch cannot read,
    /// so that checkpoints can save it.
    fn optimizer(&self, vs: &nn::VarStore, params: &ParamMap) -> Result<Optimizer> {
        Ok(match self.optimizer {
            OptimizerKind::Adam => {
                Optimizer::Adam(Adam::new(vs, params, self.lr, self.betas, ADAM_EPS)?)
            }
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(vs, params, self.lr, self.momentum)?),
        })
    }

    /// Optimizer steps for a task of `n` samples.
    pub fn steps_for(&self, n: usize) -> usize {
        self.iterations
            .unwrap_or_else(|| self.epochs * n.div_ceil(self.batch_size.max(1)))
    }
}

/// The samples one task trains on (the union of several tasks for joint training).
///
/// The union is not copied: each task's inputs stay in their own tensor, and a batch's rows are
/// gathered from them by index, in the batch's order, so the batches are those of the
/// concatenated tensors bit for bit. Targets and masks (a few bytes a sample) are concatenated.
pub struct TrainSet {
    /// Each part's inputs, Float [n_k, features]; the set's rows are theirs one after another.
    xs: Vec<Tensor>,
    /// The first row of each part, and the number of rows after the last.
    starts: Vec<usize>,
    pub y: Tensor,
    /// Per-sample output mask, Bool [n, outputs].
    pub mask: Tensor,
}

impl TrainSet {
    /// One task's data with its own mask.
    pub fn from_task(data: &TaskData) -> TrainSet {
        TrainSet::from_parts(&[(data, data.mask.shallow_clone())])
    }

    /// The union of several tasks' data, each scored over the given mask (Bool [outputs]).
    pub fn from_parts(parts: &[(&TaskData, Tensor)]) -> TrainSet {
        let mut starts = vec![0];
        for (d, _) in parts {
            starts.push(starts.last().unwrap() + d.x.size()[0] as usize);
        }
        let xs = parts.iter().map(|(d, _)| d.x.shallow_clone()).collect();
        if let [(data, mask)] = parts {
            let n = data.x.size()[0];
            return TrainSet {
                xs,
                starts,
                y: data.y.shallow_clone(),
                mask: mask.unsqueeze(0).expand([n, -1], false),
            };
        }
        let ys: Vec<&Tensor> = parts.iter().map(|(d, _)| &d.y).collect();
        let masks: Vec<Tensor> = parts
            .iter()
            .map(|(d, m)| m.unsqueeze(0).expand([d.x.size()[0], -1], false))
            .collect();
        TrainSet {
            xs,
            starts,
            y: Tensor::cat(&ys, 0),
            mask: Tensor::cat(&masks, 0),
        }
    }

    pub fn len(&self) -> usize {
        *self.starts.last().unwrap()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> tch::Device {
        self.y.device()
    }

    /// The inputs of rows `rows` (Int64 [len] on the set's device, and the same indices in
    /// `order`), in that order: the rows `index_select` takes from the concatenated inputs.
    pub fn x_rows(&self, rows: &Tensor, order: &[i64]) -> Tensor {
        if let [x] = self.xs.as_slice() {
            return x.index_select(0, rows);
        }
        let width = self.xs[0].size()[1];
        let kind = self.xs[0].kind();
        let out = Tensor::empty([order.len() as i64, width], (kind, self.device()));
        let part_of = |i: i64| self.starts.partition_point(|&s| s <= i as usize) - 1;
        let on_cpu_f32 = self.device() == tch::Device::Cpu
            && kind == Kind::Float
            && self
                .xs
                .iter()
                .all(|x| x.is_contiguous() && x.kind() == kind);
        if on_cpu_f32 {
            let width = width as usize;
            let dst = out.data_ptr() as *mut f32;
            for (r, &i) in order.iter().enumerate() {
                let k = part_of(i);
                let local = i as usize - self.starts[k];
                assert!(local < self.starts[k + 1] - self.starts[k]);
                // SAFETY: `out` is a fresh contiguous Float tensor of `order.len()` rows of
                // `width`, and part `k` a contiguous Float tensor with row `local` (checked
                // above) of `width` values; the two do not overlap.
                unsafe {
                    let src = (self.xs[k].data_ptr() as *const f32).add(local * width);
                    std::ptr::copy_nonoverlapping(src, dst.add(r * width), width);
                }
            }
            return out;
        }
        // Elsewhere (a GPU): per part, its rows of the batch copied into their positions.
        let mut by_part: Vec<(Vec<i64>, Vec<i64>)> = vec![Default::default(); self.xs.len()];
        for (r, &i) in order.iter().enumerate() {
            let k = part_of(i);
            by_part[k].0.push(r as i64);
            by_part[k].1.push(i - self.starts[k] as i64);
        }
        let mut out = out;
        for (k, (positions, locals)) in by_part.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let to = |v: &[i64]| Tensor::from_slice(v).to_device(self.device());
            let rows = self.xs[k].index_select(0, &to(locals));
            let _ = out.index_copy_(0, &to(positions), &rows);
        }
        out
    }
}

/// Parameter `p`'s gradient `g` (undefined when it has none) plus a quadratic penalty's
/// `W theta - C` from `terms`, in tensor operations; `None` when there is neither.
fn total_gradient(p: &Tensor, g: &Tensor, terms: Option<(&Tensor, &Tensor)>) -> Option<Tensor> {
    let penalty = terms.map(|(w, c)| w * p - c);
    match (g.defined(), penalty) {
        (true, Some(q)) => Some(g + q),
        (true, None) => Some(g.shallow_clone()),
        (false, q) => q,
    }
}

/// An optimizer step from the gradients plus `penalty`'s. Without clipping or gradient edits
/// the penalty's gradient is added in closed form inside the step; otherwise it is first added
/// into each parameter's `.grad()`, then the strategy's edits scale or drop whole gradients, and
/// what is left is clipped as PyTorch's `clip_grad_value_` and `clip_grad_norm_` clip it after a
/// backward pass through the whole loss. (A parameter without a gradient, one the loss does not
/// reach, then gets none of the penalty's either.)
fn apply_step(
    opt: &mut Optimizer,
    penalty: Option<&QuadraticPenalty>,
    params: &ParamMap,
    clip: GradientClip,
    edits: &GradientEdits,
) {
    if clip.is_off() && edits.is_empty() {
        opt.step(penalty, &[]);
        return;
    }
    let mut dropped = Vec::new();
    let mut grads: Vec<Tensor> = tch::no_grad(|| {
        params
            .iter()
            .filter_map(|(name, p)| {
                let mut g = p.grad();
                if !g.defined() {
                    return None;
                }
                if let Some((w, c)) = penalty.and_then(|q| q.gradient_terms(name)) {
                    let _ = g.g_add_(&(w * p - c));
                }
                match edits.get(name) {
                    Some(GradientEdit::Drop) => {
                        dropped.push(name.clone());
                        return None;
                    }
                    Some(GradientEdit::Scale(scale)) => {
                        let _ = g.g_mul_(scale);
                    }
                    None => {}
                }
                Some(g)
            })
            .collect()
    });
    clip.apply(&mut grads);
    opt.step(None, &dropped);
}

/// Writes `scale * theta + offset` into each parameter that `weights` names (see
/// [`ForwardWeight`](crate::strategy::ForwardWeight)) and returns the stored values, for [`swap_back`]; empty when none is named.
fn swap_in(params: &ParamMap, weights: &ForwardWeights) -> Result<ParamMap> {
    let _guard = tch::no_grad_guard();
    weights
        .iter()
        .map(|(name, w)| {
            let Some(p) = params.get(name) else {
                bail!("the strategy's forward weights name `{name}`, which is not a trained parameter");
            };
            let stored = p.copy();
            p.shallow_clone()
                .f_copy_(&(&stored * &w.scale + &w.offset))
                .map_err(|e| anyhow!("the forward weights of `{name}`: {e}"))?;
            Ok((name.clone(), stored))
        })
        .collect()
}

/// Puts back the stored values [`swap_in`] replaced, once the backward pass is done (its graph
/// holds the forward weights), and takes each gradient through `scale * theta + offset` to the
/// stored weights: `dL/dtheta = scale * dL/dw`.
fn swap_back(params: &ParamMap, weights: &ForwardWeights, stored: &ParamMap) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, w) in weights {
        let p = &params[name];
        p.shallow_clone().f_copy_(&stored[name])?;
        let mut g = p.grad();
        if g.defined() {
            let _ = g.f_mul_(&w.scale)?;
        }
    }
    Ok(())
}

/// Adam's epsilon (PyTorch's default).
const ADAM_EPS: f64 = 1e-8;

/// The optimizer of a job.
enum Optimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl Optimizer {
    fn zero_grad(&mut self) {
        match self {
            Optimizer::Adam(adam) => adam.zero_grad(),
            Optimizer::Sgd(sgd) => sgd.zero_grad(),
        }
    }

    /// A step from the gradients plus a quadratic penalty's, added in closed form; the
    /// parameters named in `skip` are left alone.
    fn step(&mut self, penalty: Option<&QuadraticPenalty>, skip: &[String]) {
        match self {
            Optimizer::Adam(adam) => adam.step_skipping(penalty, skip),
            Optimizer::Sgd(sgd) => sgd.step_skipping(penalty, skip),
        }
    }

    fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Adam(adam) => adam.set_lr(lr),
            Optimizer::Sgd(sgd) => sgd.set_lr(lr),
        }
    }

    fn state(&self) -> SavedState {
        match self {
            Optimizer::Adam(adam) => adam.state(),
            Optimizer::Sgd(sgd) => sgd.state(),
        }
    }

    fn load_state(&mut self, state: SavedState) -> Result<()> {
        match self {
            Optimizer::Adam(adam) => adam.load_state(state),
            Optimizer::Sgd(sgd) => sgd.load_state(state),
        }
    }
}

/// An optimizer that lives across tasks unless `reset_optimizer` asks for a fresh one.
pub struct Trainer {
    settings: TrainSettings,
    optimizer: Option<Optimizer>,
    /// Random crop and flip of each training batch (none when the transforms have no random
    /// part), with the shape the batch's flat rows are viewed as.
    augmentation: Option<(Transforms, InputShape)>,
    /// The current task's held-out data, scored after each pass when the settings schedule on
    /// it (see [`schedule`]).
    validation: Option<TaskData>,
    /// Steps taken over the whole job (the x axis of training curves).
    pub global_step: usize,
    /// Training samples processed over the whole job.
    pub samples_seen: usize,
}

impl Trainer {
    pub fn new(settings: TrainSettings) -> Trainer {
        Trainer {
            settings,
            optimizer: None,
            augmentation: None,
            validation: None,
            global_step: 0,
            samples_seen: 0,
        }
    }

    /// Augments every training batch with `transforms`' random part (a no-op without one), its
    /// rows viewed as images of `shape`. The draws come from the loop's RNG after the batch's
    /// shuffling, so a seed gives the same batches on every run.
    pub fn set_augmentation(&mut self, transforms: &Transforms, shape: InputShape) {
        self.augmentation = transforms
            .has_augmentation()
            .then(|| (transforms.clone(), shape));
    }

    /// The held-out data of the task about to be trained, for the settings' learning-rate
    /// plateau and early stopping (ignored when they are off).
    pub fn set_validation(&mut self, data: Option<TaskData>) {
        self.validation = data;
    }

    /// The optimizer's state (empty before the first task), for a checkpoint.
    pub fn optimizer_state(&self) -> SavedState {
        self.optimizer
            .as_ref()
            .map_or_else(SavedState::new, Optimizer::state)
    }

    /// Restores [`optimizer_state`](Self::optimizer_state)'s output for `model` and the
    /// strategy's own parameters `own`.
    pub fn load_optimizer_state(
        &mut self,
        model: &Net,
        own: &ParamMap,
        state: SavedState,
    ) -> Result<()> {
        if state.is_empty() {
            self.optimizer = None;
            return Ok(());
        }
        let mut optimizer = self
            .settings
            .optimizer(&model.vs, &trained_params(model, own)?)?;
        optimizer.load_state(state)?;
        self.optimizer = Some(optimizer);
        Ok(())
    }

    /// Trains at `lr` from now on, the optimizer's rate and the configured one alike (the rate
    /// `selection: continual` chose for a task).
    pub fn set_lr(&mut self, lr: f64) {
        self.settings.lr = lr;
        if let Some(optimizer) = self.optimizer.as_mut() {
            optimizer.set_lr(lr);
        }
    }

    /// Drops the optimizer's state: the next task starts with a fresh optimizer (a strategy's
    /// weight edit asked for it).
    pub fn reset_optimizer(&mut self) {
        self.optimizer = None;
    }

    /// Trains `task` on `data` with `strategy`'s hooks; returns one curve point per pass.
    pub fn train_task(
        &mut self,
        model: &Net,
        strategy: &mut dyn Strategy,
        data: &TrainSet,
        task: usize,
        rng: &mut ChaCha8Rng,
        mut on_epoch: impl FnMut(&CurvePoint),
    ) -> Result<Vec<CurvePoint>> {
        let own = strategy.parameters();
        let params = trained_params(model, &own)?;
        if self.optimizer.is_none() || self.settings.reset_optimizer {
            self.optimizer = Some(self.settings.optimizer(&model.vs, &params)?);
        }
        // Each task starts at the configured learning rate (HAT's code does so too).
        let scheduled = self.settings.uses_validation() && self.validation.is_some();
        let plateau = self.settings.lr_plateau;
        let mut watch =
            schedule::Watch::new(self.settings.lr, plateau, self.settings.early_stopping);
        if scheduled {
            self.optimizer.as_mut().unwrap().set_lr(self.settings.lr);
        }
        // The best pass's parameters and buffers (batch-norm statistics), by name.
        let mut best: Option<ParamMap> = None;
        let mut stop = false;
        let n = data.len();
        let batch = self.settings.batch_size.max(1);
        let total_steps = self.settings.steps_for(n);
        let device = data.device();
        let mut order: Vec<i64> = (0..n as i64).collect();
        let mut curve = Vec::new();
        let mut step = 0;
        let mut epoch = 0;
        while step < total_steps && !stop {
            let opt = self.optimizer.as_mut().unwrap();
            order.shuffle(rng);
            let order_t = Tensor::from_slice(&order).to_device(device);
            let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
            let mut penalty_sum = Tensor::zeros([], (Kind::Float, device));
            let mut penalty_logged = 0usize;
            let mut steps_this_epoch = 0;
            for (start, len) in row_spans(n, batch) {
                if step == total_steps {
                    break;
                }
                let idx = order_t.narrow(0, start as i64, len as i64);
                let (mut x, y, mask) = (
                    data.x_rows(&idx, &order[start..start + len]),
                    data.y.index_select(0, &idx),
                    data.mask.index_select(0, &idx),
                );
                if let Some((transforms, s)) = &self.augmentation {
                    let images = x.view([len as i64, s.channels, s.height, s.width]);
                    x = transforms.augment(&images, rng).view([len as i64, -1]);
                }
                model.set_gates(strategy.unit_gates(&GatePass::Train {
                    task,
                    first_sample: start,
                    samples: n,
                })?)?;
                // Empty for every method but those that train through other weights.
                let forward_weights = strategy.forward_weights(model, task)?;
                let stored = swap_in(&params, &forward_weights)?;
                // Training mode: dropout masks come from the job's stream (a model without
                // dropout draws nothing from it, so the shuffling order is unchanged).
                let (features, logits) = model.forward_features_t(&x, &mut Forward::train(rng));
                let b = Batch {
                    x: &x,
                    y: &y,
                    mask: &mask,
                    task,
                    features: &features,
                };
                let ce = masked_cross_entropy(&logits, &mask, &y);
                let loss = strategy.task_loss(&b, &logits, ce)?;
                opt.zero_grad();
                zero_own_grads(&own);
                loss.backward();
                swap_back(&params, &forward_weights, &stored)?;
                strategy.after_task_backward(model)?;
                let last_of_epoch = start + len >= n || step + 1 == total_steps;
                let log_penalty = (steps_this_epoch + 1) % PENALTY_LOG_EVERY == 0 || last_of_epoch;
                let clip = self.settings.clip;
                // Asked for before the penalty (which borrows the strategy until the step), and
                // applied after the penalty's gradient is in.
                let edits = strategy.gradient_edits(model, task)?;
                match strategy.penalty(model)? {
                    None => apply_step(opt, None, &params, clip, &edits),
                    Some(Penalty::Quadratic(q)) => {
                        if log_penalty {
                            penalty_sum += tch::no_grad(|| q.value(&params));
                            penalty_logged += 1;
                        }
                        // Its gradient is added in closed form inside the optimizer's step.
                        apply_step(opt, Some(q), &params, clip, &edits);
                    }
                    Some(Penalty::Graph(value)) => {
                        value.backward();
                        penalty_sum += value.detach();
                        penalty_logged += 1;
                        apply_step(opt, None, &params, clip, &edits);
                    }
                }
                strategy.after_step(model)?;
                loss_sum += loss.detach();
                steps_this_epoch += 1;
                self.samples_seen += len;
                step += 1;
            }
            self.global_step += steps_this_epoch;
            let mut point = CurvePoint {
                task,
                epoch,
                step: self.global_step,
                task_loss: loss_sum.double_value(&[]) / steps_this_epoch as f64,
                penalty: penalty_sum.double_value(&[]) / penalty_logged.max(1) as f64,
                validation_loss: None,
                lr: None,
            };
            if let (true, Some(val)) = (scheduled, &self.validation) {
                model.set_gates(strategy.unit_gates(&GatePass::Eval { task })?)?;
                let loss = match plateau.map(|p| p.watch).unwrap_or_default() {
                    schedule::Watched::Ce => validation_loss(model, val),
                    schedule::Watched::Criterion => validation_criterion(model, strategy, val)?,
                };
                point.validation_loss = Some(loss);
                point.lr = Some(watch.lr());
                match watch.after_pass(loss) {
                    schedule::Action::Improved if watch.restores_best() => {
                        let mut weights = crate::core::params::shallow(&params);
                        weights.extend(model.buffers());
                        best = Some(tch::no_grad(|| crate::core::params::snapshot(&weights)));
                    }
                    schedule::Action::Decay(lr) => {
                        if plateau.is_some_and(|p| p.restart_optimizer) {
                            self.optimizer = Some(self.settings.optimizer(&model.vs, &params)?);
                        }
                        self.optimizer.as_mut().unwrap().set_lr(lr);
                    }
                    schedule::Action::Stop => stop = true,
                    _ => {}
                }
            }
            if !point.task_loss.is_finite() || !point.penalty.is_finite() {
                bail!(
                    "training diverged on task {task}, pass {epoch} (steps up to {}): task loss {}, penalty {}; \
                     lower the learning rate or the regularization strength",
                    self.global_step, point.task_loss, point.penalty
                );
            }
            on_epoch(&point);
            curve.push(point);
            epoch += 1;
        }
        if let Some(best) = best {
            // The weights of the best validation pass (the method's own parameters and the
            // batch-norm statistics included).
            tch::no_grad(|| {
                for (name, p) in params.iter().chain(model.buffers().iter()) {
                    p.shallow_clone().copy_(&best[name]);
                }
            });
        }
        Ok(curve)
    }
}

/// The network's parameters and the strategy's own, which one optimizer trains.
fn trained_params(model: &Net, own: &ParamMap) -> Result<ParamMap> {
    let mut params = model.params();
    for (name, p) in own {
        if params.insert(name.clone(), p.shallow_clone()).is_some() {
            bail!("the strategy's own parameter `{name}` has the name of a network parameter; prefix it");
        }
    }
    Ok(params)
}

/// Zeroes the gradients of the strategy's own parameters (the optimizer's `zero_grad` frees only
/// the network's, which live in its VarStore).
fn zero_own_grads(own: &ParamMap) {
    for p in own.values() {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
}

/// Samples a validation loss is averaged over before the chunks' means are weighted together
/// (the forward passes inside a chunk take [`eval_batch`] samples each: [`eval_forward`]).
const LOSS_CHUNK: i64 = 8192;

/// `model`'s eval-mode features and logits of `x`, `batch` samples a forward pass ([`eval_batch`]
/// of the data `x` is a chunk of), concatenated.
fn eval_forward(model: &Net, x: &Tensor, batch: i64) -> (Tensor, Tensor) {
    let n = x.size()[0];
    if n <= batch {
        return model.forward_features_t(x, &mut Forward::eval());
    }
    let (mut features, mut logits) = (Vec::new(), Vec::new());
    for (start, len) in row_spans(n, batch) {
        let (f, l) = model.forward_features_t(&x.narrow(0, start, len), &mut Forward::eval());
        features.push(f);
        logits.push(l);
    }
    (Tensor::cat(&features, 0), Tensor::cat(&logits, 0))
}

/// The sample-weighted mean of `loss(x, y, mask)` over `data` in chunks of [`LOSS_CHUNK`], in
/// eval mode without gradients; `mask` is the chunk's rows of a per-sample mask, or the shared
/// one. NaN for no data.
fn mean_over_chunks(
    data: &TaskData,
    mut loss: impl FnMut(&Tensor, &Tensor, &Tensor) -> Result<f64>,
) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let n = data.x.size()[0];
    if n == 0 {
        return Ok(f64::NAN);
    }
    let mut sum = 0.0;
    for (start, len) in row_spans(n, LOSS_CHUNK) {
        let mask = crate::model::mask_rows(&data.mask, start, len);
        let x = data.x.narrow(0, start, len);
        sum += loss(&x, &data.y.narrow(0, start, len), &mask)? * len as f64;
    }
    Ok(sum / n as f64)
}

/// Mean masked cross-entropy of `model` on `data` in eval mode: the validation loss the
/// schedule watches.
pub fn validation_loss(model: &Net, data: &TaskData) -> f64 {
    let batch = eval_batch(model, &data.x);
    mean_over_chunks(data, |x, y, mask| {
        Ok(masked_cross_entropy(&eval_forward(model, x, batch).1, mask, y).double_value(&[]))
    })
    .expect("the cross-entropy of a chunk cannot fail")
}

/// The strategy's whole criterion on `data` in eval mode (its `task_loss` of the masked
/// cross-entropy, plus its penalty), sample-weighted over chunks: what the HAT and UCL trainers'
/// `eval` returns as the validation loss.
pub fn validation_criterion(
    model: &Net,
    strategy: &mut dyn Strategy,
    data: &TaskData,
) -> Result<f64> {
    let batch = eval_batch(model, &data.x);
    let task_loss = mean_over_chunks(data, |x, y, mask| {
        let (features, logits) = eval_forward(model, x, batch);
        // A batch carries a per-sample mask.
        let mask = match mask.dim() {
            1 => mask.unsqueeze(0).expand([x.size()[0], -1], false),
            _ => mask.shallow_clone(),
        };
        let ce = masked_cross_entropy(&logits, &mask, y);
        let batch = Batch {
            x,
            y,
            mask: &mask,
            task: data.task,
            features: &features,
        };
        Ok(strategy.task_loss(&batch, &logits, ce)?.double_value(&[]))
    })?;
    let params = model.params();
    let penalty = match tch::no_grad(|| strategy.penalty(model))? {
        None => 0.0,
        Some(p) => tch::no_grad(|| p.value(&params)).double_value(&[]),
    };
    Ok(task_loss + penalty)
}

/// Test accuracy of `model` on `data` (targets scored over `data.mask`'s columns only), in
/// eval mode without gradients, [`eval_batch`] samples a forward pass; the count of correct
/// predictions stays on the device until the end.
pub fn accuracy(model: &Net, data: &TaskData) -> f64 {
    let _guard = tch::no_grad_guard();
    let n = data.x.size()[0];
    if n == 0 {
        return 0.0;
    }
    let mut correct = Tensor::zeros([], (Kind::Int64, data.x.device()));
    let batch = eval_batch(model, &data.x);
    for (start, len) in row_spans(n, batch) {
        let logits = model.forward(&data.x.narrow(0, start, len));
        let mask = crate::model::mask_rows(&data.mask, start, len);
        let pred = crate::model::masked_logits(&logits, &mask).argmax(-1, false);
        correct += pred
            .eq_tensor(&data.y.narrow(0, start, len))
            .sum(Kind::Int64);
    }
    correct.int64_value(&[]) as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tasks' data of 5, 7 and 4 samples with 6 features, in `kind`, each with its mask.
    fn parts(kind: Kind) -> Vec<(TaskData, Tensor)> {
        tch::manual_seed(3);
        [5, 7, 4]
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                let data = TaskData {
                    task: t,
                    x: Tensor::rand([n, 6], (kind, tch::Device::Cpu)),
                    y: Tensor::randint(4, [n], (Kind::Int64, tch::Device::Cpu)),
                    mask: Tensor::from_slice(&[false; 4]),
                };
                let mut mask = [false; 4];
                mask[t] = true;
                (data, Tensor::from_slice(&mask))
            })
            .collect()
    }

    #[test]
    fn a_union_gives_the_batches_of_the_concatenated_tensors() {
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        // Float on the CPU copies rows directly; Double takes the per-part path a GPU takes.
        for kind in [Kind::Float, Kind::Double] {
            let parts = parts(kind);
            let refs: Vec<(&TaskData, Tensor)> =
                parts.iter().map(|(d, m)| (d, m.shallow_clone())).collect();
            let set = TrainSet::from_parts(&refs);
            assert_eq!(set.len(), 16);
            let xs: Vec<&Tensor> = parts.iter().map(|(d, _)| &d.x).collect();
            let ys: Vec<&Tensor> = parts.iter().map(|(d, _)| &d.y).collect();
            let masks: Vec<Tensor> = parts
                .iter()
                .map(|(d, m)| m.unsqueeze(0).expand([d.x.size()[0], -1], false))
                .collect();
            let (x, y, mask) = (
                Tensor::cat(&xs, 0),
                Tensor::cat(&ys, 0),
                Tensor::cat(&masks, 0),
            );
            let mut order: Vec<i64> = (0..16).collect();
            order.shuffle(&mut rng);
            for batch in order.chunks(5) {
                let idx = Tensor::from_slice(batch);
                assert!(set.x_rows(&idx, batch).equal(&x.index_select(0, &idx)));
                assert!(set.y.index_select(0, &idx).equal(&y.index_select(0, &idx)));
                assert!(set
                    .mask
                    .index_select(0, &idx)
                    .equal(&mask.index_select(0, &idx)));
            }
            let one = TrainSet::from_task(&parts[1].0);
            let idx = Tensor::from_slice(&[6i64, 0, 3]);
            assert!(one
                .x_rows(&idx, &[6, 0, 3])
                .equal(&parts[1].0.x.index_select(0, &idx)));
        }
    }
}
