//! The `Strategy` trait: a continual-learning method as a set of hooks on the training loop.
//!
//! Hook order, for each task `t` of a job (the training loop in `train/` calls them):
//!
//! ```text
//! training_tasks(t)                 which tasks' data to train on (joint training: all seen)
//! before_task(ctx)                  e.g. LwF snapshots the model as its teacher
//! for each epoch, for each batch:
//!     task_loss(batch, logits, ce)  may change the task loss (LwF adds distillation)
//!     after_task_backward(model)    the gradients of the task loss alone are in .grad() (SI)
//!     penalty(model)                a regularization term; the loop adds its gradient
//!     (optimizer step)
//!     after_step(model)             e.g. SI's path integral
//! after_task(ctx)                   e.g. EWC computes its Fisher and moves its anchor
//! save_state()                      what later tasks need, into the job's checkpoint
//! ```
//!
//! A job resumed from a checkpoint builds a fresh strategy, calls `load_state` with what
//! `save_state` returned after the last finished task, and goes on with `before_task` of the
//! next one.
//!
//! Hooks return values and the loop applies them (a strategy never edits the loss in place), so a
//! penalty that silently became zero is visible in the training curve. Every hook has a no-op
//! default: a strategy implements only what it needs.
//!
//! Strategies register themselves with [`inventory`] through a [`Registration`]; see
//! [`registry`].

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
}

/// A continual-learning method. Built inside its job's worker (tensors are not `Sync`).
pub trait Strategy: Send {
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

    fn after_step(&mut self, _model: &Net) -> Result<()> {
        Ok(())
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

    /// Restores what [`save_state`](Self::save_state) returned into a freshly built strategy,
    /// before `before_task` of the next task. Entries are on the CPU; move them to `device`.
    fn load_state(&mut self, _state: SavedState, _device: Device) -> Result<()> {
        anyhow::bail!("this strategy does not save its state, so it cannot be resumed")
    }
}
