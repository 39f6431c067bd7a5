//! `lfl`: Less-Forgetting Learning (Jung et al. 2016, "Less-forgetting learning in deep neural
//! networks"), as the HAT reference code writes it (joansj/hat 6fd0b9d,
//! `src/approaches/lfl.py`) and as Avalanche's `LFLPlugin` does (ContinualAI/avalanche eb075be,
//! as `shared/notes/reference-methods.md` and issue 21 describe it; not read here).
//!
//! Before each task after the first, the network is frozen as the previous task's network (its
//! forward in eval mode, as the reference's `model_old.eval()`). On every batch the loss becomes
//! `CE + distance`, the distance between the backbone's features (the head's input) of the
//! current network and of the frozen one on the same images:
//!
//! - `reduction: sum_half` (the HAT code, the default): `lambda/2 * sum over the batch and the
//!   units of (f_old - f)^2`, lambda 0.05 (its grid's best, "though none of them really worked");
//! - `reduction: mean` (Avalanche): `lambda * mean over the batch and the units of (f_old - f)^2`,
//!   no 1/2.
//!
//! So a lambda of one convention is `2 * batch * units` times the other's. The HAT code's
//! features are `relu(fc2(h))` without dropout (its `alexnet_lfl.py` drops the last dropout);
//! here they are the backbone's output as the model computes it in training mode, so with a model
//! whose last layer has dropout the current network's features carry it.
//!
//! `freeze_head: true` freezes the output layer, every head, from the second task on (its
//! gradient dropped). Avalanche's plugin freezes "the last linear layer" it finds after each
//! experience, which on a multi-head network is only the newest head; here the whole output
//! layer is one layer of heads, and all of it stops.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use clbench::core::{ParamSpec, Range};
use clbench::model::{Forward, Net};
use clbench::strategy::{
    registry::{config_from, resolve_with, Registration},
    drop_gradients, Batch, GradientEdits, SavedState, Strategy, TaskContext, HEAD_PREFIX,
};

/// How the squared feature distance is reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// `lambda/2 * sum (f_old - f)^2` over the batch and units (the HAT code).
    SumHalf,
    /// `lambda * mean (f_old - f)^2` over the batch and units (Avalanche).
    Mean,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Weight of the feature distance.
    pub lambda: f64,
    pub reduction: Reduction,
    /// Freeze the output layer (every head) after the first task.
    pub freeze_head: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 0.05,
            reduction: Reduction::SumHalf,
            freeze_head: false,
        }
    }
}

pub struct Lfl {
    config: Config,
    /// The network after the previous task, frozen; none during the first task.
    previous: Option<Net>,
}

impl Lfl {
    pub fn new(config: Config) -> Lfl {
        Lfl {
            config,
            previous: None,
        }
    }

    /// The weighted distance between `features` and `old` under the configured reduction.
    pub fn distance(&self, features: &Tensor, old: &Tensor) -> Tensor {
        let squares = (old - features).square();
        match self.config.reduction {
            Reduction::SumHalf => squares.sum(Kind::Float) * (self.config.lambda / 2.0),
            Reduction::Mean => squares.mean(Kind::Float) * self.config.lambda,
        }
    }
}

impl Strategy for Lfl {
    fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        if ctx.task > 0 {
            self.previous = Some(ctx.model.frozen_copy()?);
        }
        Ok(())
    }

    fn task_loss(&mut self, batch: &Batch, _logits: &Tensor, ce: Tensor) -> Result<Tensor> {
        let Some(previous) = &self.previous else {
            return Ok(ce);
        };
        let old = tch::no_grad(|| {
            previous
                .forward_features_t(batch.x, &mut Forward::eval())
                .0
        });
        Ok(ce + self.distance(batch.features, &old))
    }

    fn gradient_edits(&mut self, model: &Net, task: usize) -> Result<GradientEdits> {
        if !self.config.freeze_head || task == 0 {
            return Ok(GradientEdits::new());
        }
        Ok(drop_gradients(model, |name| name.starts_with(HEAD_PREFIX)))
    }

    /// Nothing to carry: the previous network is the model itself at the next `before_task`.
    fn save_state(&self) -> Option<SavedState> {
        Some(SavedState::new())
    }

    fn load_state(&mut self, state: SavedState, _device: Device) -> Result<()> {
        state.finish("lfl")
    }
}

inventory::submit! {
    Registration {
        name: "lfl",
        summary: "Less-Forgetting Learning: keeps the backbone's features close to the previous task's network's",
        paper: "Jung et al. 2016, Less-forgetting learning in deep neural networks (joansj/hat src/approaches/lfl.py)",
        params: &[
            ParamSpec::new("lambda", "weight of the feature distance (default 0.05, the HAT code's)").range(Range::non_negative()).strength(),
            ParamSpec::new("reduction", "sum_half: lambda/2 * sum (f_old - f)^2, the HAT code's (default); mean: lambda * mean (f_old - f)^2, Avalanche's"),
            ParamSpec::new("freeze_head", "freeze the output layer, every head, after the first task (default false)"),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(Lfl::new(config_from(params)?))),
    }
}
