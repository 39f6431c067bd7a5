//! The `Strategy` trait: a continual-learning method as a set of hooks on the training loop.
//!
//! Hook order, for each job and each task `t` of it (the training loop in `train/` and the job
//! in `runner/job.rs` call them):
//!
//! ```text
//! attach(model)                     once, on the freshly built model (before a checkpoint is
//!                                   restored): make own parameters (HAT's embeddings), keep the
//!                                   initial weights (restart)
//! parameters()                      the method's own trainable parameters, read whenever an
//!                                   optimizer is built: the job's optimizer trains them too
//! for each task t:
//!   training_tasks(t)               which tasks' data to train on (joint training: all seen)
//!   weight_edit(ctx, BeforeTask)    may overwrite parameters (restart puts back the initial ones)
//!   before_task(ctx)                e.g. LwF snapshots the model as its teacher
//!   for each epoch, for each batch:
//!       unit_gates(Train{i, N})     gates on hidden units for this batch's forward pass (HAT)
//!       forward_weights(model, t)   weights this batch's forward and backward passes run at in
//!                                   place of the stored ones (IMM's drop-transfer); the stored
//!                                   ones are put back after the backward pass, before
//!                                   after_task_backward, and the gradient is chain-ruled to them
//!       task_loss(batch, logits, ce) may change the task loss (LwF adds distillation; the batch
//!                                   carries the backbone's features, the head's input)
//!       after_task_backward(model)  the gradients of the task loss alone are in .grad() (SI)
//!       gradient_edits(model, t)    how to scale or drop each parameter's whole gradient
//!                                   (HAT, frozen): asked for here, applied below
//!       penalty(model)              a regularization term; the loop adds its gradient
//!       (the edits applied to the whole gradient, penalty's included; clipping; optimizer step)
//!       after_step(model)           e.g. SI's path integral; HAT clamps its embeddings
//!     after each pass, with held-out data: unit_gates(Eval); with lr_plateau.watch:
//!                                   criterion, task_loss and penalty on the held-out batches
//!   unit_gates(Eval)                the gates of every later pass of task t (the Fisher of
//!                                   after_task, the evaluation of task t)
//!   after_task(ctx)                 e.g. EWC computes its Fisher and moves its anchor
//!   weight_edit(ctx, AfterTask)     may overwrite parameters (a merge)
//!   (evaluation of every task j, each under unit_gates(Eval) of task j)
//!   save_state()                    what later tasks need, into the job's checkpoint
//! ```
//!
//! A job resumed from a checkpoint builds a fresh strategy, calls `attach` on the fresh network,
//! restores the network, calls `load_state` with what `save_state` returned after the last
//! finished task, and goes on with `weight_edit(BeforeTask)` and `before_task` of the next one.
//!
//! Hooks return values and the loop applies them (a strategy never edits the loss in place), so a
//! penalty that silently became zero is visible in the training curve. Every hook has a no-op
//! default: a strategy implements only what it needs.
//!
//! Strategies register themselves with [`inventory`] through a [`Registration`]; see
//! [`registry`].

pub mod distill;
pub mod penalty;
pub mod registry;

/// Parameter maps and saved state live in the leaf module [`crate::core`]; re-exported here for
/// strategy files.
pub use crate::core::{params, state};
pub use params::ParamMap;
pub use penalty::{Penalty, QuadraticPenalty};
pub use registry::{Registration, Registry};
pub use state::SavedState;

use anyhow::Result;
use tch::{Device, Tensor};

use crate::model::Net;
pub use crate::model::{UnitGates, UnitLayer};

/// One task's training data, on the job's device.
pub struct TaskData {
    /// Index of the task in the scenario (0-based).
    pub task: usize,
    /// Inputs, Float [n, features].
    pub x: Tensor,
    /// Targets as output-layer columns, Int64 [n].
    pub y: Tensor,
    /// Mask of the output columns this task trains on, Bool [outputs].
    pub mask: Tensor,
}

/// What the task-level hooks see.
pub struct TaskContext<'a> {
    /// The task being trained (0-based).
    pub task: usize,
    pub num_tasks: usize,
    pub model: &'a Net,
    /// The data of the task just begun or finished (not the union that joint training uses).
    pub data: &'a TaskData,
    pub device: Device,
}

/// One training mini-batch.
pub struct Batch<'a> {
    pub x: &'a Tensor,
    /// Targets as output columns, Int64 [b].
    pub y: &'a Tensor,
    /// Per-sample mask of the output columns that take part in the loss, Bool [b, outputs].
    pub mask: &'a Tensor,
    /// The task being trained.
    pub task: usize,
    /// The backbone's features for this batch (the head's input), in the graph.
    pub features: &'a Tensor,
}

/// Which pass a strategy's [`unit_gates`](Strategy::unit_gates) are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatePass {
    /// A training batch of task `task` whose first sample is the `first_sample`-th of the
    /// epoch's `samples` (HAT anneals its gates' slope over the epoch).
    Train {
        task: usize,
        first_sample: usize,
        samples: usize,
    },
    /// Any pass that scores task `task` after (or between) its training passes: validation,
    /// evaluation, a Fisher or importance estimate.
    Eval { task: usize },
}

impl GatePass {
    pub fn task(&self) -> usize {
        match *self {
            GatePass::Train { task, .. } | GatePass::Eval { task } => task,
        }
    }
}

/// What a strategy does to one parameter's gradient before clipping and the optimizer step.
pub enum GradientEdit {
    /// Multiply it by this tensor (broadcast to the parameter's shape): HAT's conditioning.
    Scale(Tensor),
    /// Drop it: the optimizer skips the parameter (its moments untouched) and clipping leaves it
    /// out, as PyTorch treats a parameter with `requires_grad = False` (sgd-frozen).
    Drop,
}

/// The edits of one step, by parameter name; parameters not named are left as they are.
pub type GradientEdits = std::collections::BTreeMap<String, GradientEdit>;

/// The name prefix of the output layer's parameters, the heads (`head.weight`, `head.bias`).
pub const HEAD_PREFIX: &str = "head.";

/// Edits that drop the gradient of every network parameter whose name `drop` accepts (a
/// frozen trunk: `|n| !n.starts_with(HEAD_PREFIX)`; frozen heads: the reverse).
pub fn drop_gradients(model: &Net, drop: impl Fn(&str) -> bool) -> GradientEdits {
    model
        .params()
        .into_keys()
        .filter(|name| drop(name))
        .map(|name| (name, GradientEdit::Drop))
        .collect()
}

/// The weights one training batch's forward and backward passes run at, for one parameter:
/// `scale * theta + offset` (each broadcast to the parameter's shape), `theta` the stored value.
/// IMM's drop-transfer runs at `mu + m/keep * (theta - mu)`: `scale = m/keep`,
/// `offset = (1 - m/keep) * mu`.
pub struct ForwardWeight {
    pub scale: Tensor,
    pub offset: Tensor,
}

/// The forward weights of one step, by parameter name; parameters not named run at their stored
/// values. After the backward pass the loop puts the stored values back and multiplies each
/// named parameter's gradient by its `scale` (the chain rule through `scale * theta + offset`),
/// before the penalty's gradient is added, so a penalty is taken at the stored weights.
pub type ForwardWeights = std::collections::BTreeMap<String, ForwardWeight>;

/// When a [`WeightEdit`] is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// Before `before_task` of the task.
    BeforeTask,
    /// After `after_task` of the task, before its evaluation and checkpoint.
    AfterTask,
}

/// What happens to the optimizer's state (momenta, Adam's moments) when weights are edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerAfterEdit {
    /// Keep it: the state goes on from the edited weights.
    Keep,
    /// Drop it: the next task starts with a fresh optimizer.
    Reset,
}

/// New values for some of the network's parameters, written at a task boundary.
pub struct WeightEdit {
    /// By the network's parameter or buffer names (see [`Net::params`], [`Net::buffers`]); any
    /// other name is an error.
    pub values: ParamMap,
    pub optimizer: OptimizerAfterEdit,
}

/// What [`Strategy::attach`] sees: the network as built, before any checkpoint is restored.
pub struct AttachContext<'a> {
    pub model: &'a Net,
    pub num_tasks: usize,
    pub device: Device,
    /// The job's seed, for a method's own initial values.
    pub seed: u64,
}

/// A continual-learning method. Built inside its job's worker (tensors are not `Sync`).
pub trait Strategy: Send {
    /// Called once on the freshly built network, before a checkpoint is restored into it and
    /// before any other hook: make the method's own parameters, keep the initial weights.
    fn attach(&mut self, _ctx: &AttachContext) -> Result<()> {
        Ok(())
    }

    /// The method's own trainable parameters (`requires_grad`), trained by the job's optimizer
    /// beside the network's and clipped with them; their names must not be the network's (use a
    /// prefix, e.g. `hat.`). Their values go into the checkpoint through `save_state`.
    fn parameters(&self) -> ParamMap {
        ParamMap::new()
    }

    /// Multiplicative gates on the hidden layers' output units for the next forward passes
    /// (see [`UnitGates`]), or `None` for none. Training gates may carry a graph to the method's
    /// own parameters. A method that gates must be registered with
    /// [`Requirement::UnitGates`](registry::Requirement), so models it cannot gate are refused.
    fn unit_gates(&mut self, _pass: &GatePass) -> Result<Option<UnitGates>> {
        Ok(None)
    }

    /// Weights the next training batch's forward and backward passes of task `task` run at in
    /// place of the stored ones (see [`ForwardWeight`]); empty, the default, changes nothing.
    /// The optimizer steps the stored weights, with the gradient taken through the map.
    fn forward_weights(&mut self, _model: &Net, _task: usize) -> Result<ForwardWeights> {
        Ok(ForwardWeights::new())
    }

    /// The tasks whose training data are used while training task `task`; none means nothing is
    /// trained on it.
    fn training_tasks(&self, task: usize) -> Vec<usize> {
        vec![task]
    }

    fn before_task(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    /// The loss on the current batch, given the loop's cross-entropy over the batch's masked
    /// logits. Return `ce` unchanged unless the method changes the task loss.
    fn task_loss(&mut self, _batch: &Batch, _logits: &Tensor, ce: Tensor) -> Result<Tensor> {
        Ok(ce)
    }

    /// Called after the task loss's backward pass and before the penalty's: the parameters'
    /// gradients hold the gradient of the task loss alone.
    fn after_task_backward(&mut self, _model: &Net) -> Result<()> {
        Ok(())
    }

    /// The regularization term added to the task loss on this batch, or `None` when there is
    /// none (yet): a [`QuadraticPenalty`] whose gradient the loop adds in closed form, or any
    /// scalar with a graph to the parameters.
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(None)
    }

    /// Edits of the whole gradient (task loss and penalty) of this step of task `task`, applied
    /// before clipping and the optimizer step; the method's own parameters may be named too.
    /// Empty, the default, changes nothing.
    fn gradient_edits(&mut self, _model: &Net, _task: usize) -> Result<GradientEdits> {
        Ok(GradientEdits::new())
    }

    fn after_step(&mut self, _model: &Net) -> Result<()> {
        Ok(())
    }

    /// Parameters to overwrite at a task boundary (see [`Boundary`]), with what becomes of the
    /// optimizer's state; `None`, the default, edits nothing. An edit after a task is in the
    /// checkpoint's model; one before a task is made again when a job resumes.
    fn weight_edit(&mut self, _ctx: &TaskContext, _at: Boundary) -> Result<Option<WeightEdit>> {
        Ok(None)
    }

    fn after_task(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    /// The per-parameter importance the penalty weights (a Fisher, SI's or MAS's Omega), for
    /// reports: read after each `after_task`. `None` for methods without one.
    fn importance(&self) -> Option<&ParamMap> {
        None
    }

    /// Everything the method carries from finished tasks to later ones (importances, anchors,
    /// output masks), read after `after_task` and saved in the job's checkpoint. State that
    /// `before_task` rebuilds from the model (LwF's teacher, SI's start point) need not be in it.
    /// `None`, the default, says the method cannot be checkpointed: a killed job of it restarts
    /// from its first task.
    fn save_state(&self) -> Option<SavedState> {
        None
    }

    /// The bytes of the tensors the method keeps from finished tasks, read once after the last
    /// task into the job's `Cost`. By default those of [`save_state`](Self::save_state)
    /// (numel × element size, [`SavedState::bytes`]); a method that keeps more than it saves
    /// (LwF's teacher network, rebuilt by `before_task`) adds it. `None` when the method saves
    /// no state.
    fn state_bytes(&self) -> Option<u64> {
        self.save_state().map(|s| s.bytes())
    }

    /// Restores what [`save_state`](Self::save_state) returned into a freshly built strategy,
    /// before `before_task` of the next task. Entries are on the CPU; move them to `device`.
    fn load_state(&mut self, _state: SavedState, _device: Device) -> Result<()> {
        anyhow::bail!("this strategy does not save its state, so it cannot be resumed")
    }
}
