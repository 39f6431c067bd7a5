//! `si`: Synaptic Intelligence (Zenke, Poole & Ganguli 2017, "Continual learning through synaptic
//! intelligence", ICML, Eq. 4-5).
//!
//! During each task every parameter accumulates its path integral `omega += -g * delta_theta`
//! over the optimizer's steps, with `g` the gradient of the task loss alone (read after the task
//! loss's backward pass, before the penalty's). At the end of the task the importance grows by
//! `Omega += omega / (Delta^2 + xi)`, where `Delta` is the parameter's total change over the task,
//! and the anchor `theta*` moves to the parameters reached. The loss is
//! `CE + c * sum Omega (theta - theta*)^2` (the paper's form, without a 1/2).
//!
//! `gradient` chooses the `g` of the path integral:
//! - `task` (the default; Zenke et al.'s code, which integrates the unregularized loss's
//!   gradient): the task loss alone;
//! - `total` (van de Ven & Tolias's code, whose `W += -p.grad * delta` reads the gradient of the
//!   whole loss): the task loss's gradient plus the SI penalty's own, `2c Omega (theta - theta*)`.
//!   From the second task on, the penalty pulls parameters back towards the anchor, so the path
//!   integrals of parameters that move away from it, and their Omega, come out smaller.
//!   When the training clips gradients (`clip_grad_value`, `clip_grad_norm`), `g` is clipped
//!   as the optimizer's is. With plain SGD, `-g * delta_theta = lr * g^2`: Mammoth's `si.py`,
//!   which adds `lr * grad**2` after `clip_grad_value_(1)`, computes exactly this.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot, zeros_like},
    registry::{config_from, resolve_with, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};
use clbench::core::{GradientClip, ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub c: f64,
    /// Damping of the importance's denominator.
    pub xi: f64,
    /// Which gradient the path integral uses. Left out of the resolved parameters when it is
    /// the default, so results from before this option keep their ids.
    #[serde(skip_serializing_if = "PathGradient::is_task")]
    pub gradient: PathGradient,
}

/// The gradient `g` in the path integral `omega += -g * delta_theta`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathGradient {
    /// The task loss's gradient (Zenke et al.).
    #[default]
    Task,
    /// The gradient of the task loss plus the SI penalty (van de Ven & Tolias's code).
    Total,
}

impl PathGradient {
    fn is_task(&self) -> bool {
        *self == PathGradient::Task
    }
}

impl Default for Config {
    fn default() -> Self {
        // Zenke et al.'s split MNIST values.
        Config {
            c: 1.0,
            xi: 1e-3,
            gradient: PathGradient::Task,
        }
    }
}

pub struct Si {
    config: Config,
    /// Accumulated importance Omega and the anchor, after the first task.
    importance: Option<(ParamMap, ParamMap)>,
    /// Running path integral of the current task.
    omega: Option<ParamMap>,
    /// Parameters at the start of the current task.
    task_start: Option<ParamMap>,
    /// Parameters before the current step.
    before_step: Option<ParamMap>,
    /// The gradients `g` of the current step (see [`PathGradient`]).
    step_grads: Option<ParamMap>,
    /// `c * sum Omega (theta - theta*)^2`; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
    /// The training loop's clipping, applied to `g` under `gradient: total`.
    clip: GradientClip,
}

impl Si {
    pub fn new(config: Config) -> Si {
        Si {
            config,
            importance: None,
            omega: None,
            task_start: None,
            before_step: None,
            step_grads: None,
            penalty: None,
            clip: GradientClip::default(),
        }
    }

    /// An SI whose `gradient: total` path integral clips `g` as the training loop does.
    pub fn with_clip(config: Config, clip: GradientClip) -> Si {
        Si {
            clip,
            ..Si::new(config)
        }
    }

    /// Sets Omega and the anchor, and the penalty `c * sum Omega (theta - anchor)^2`.
    fn set_importance(&mut self, omega: ParamMap, anchor: ParamMap) {
        let term = (Some(shallow(&omega)), shallow(&anchor));
        self.penalty = Some(QuadraticPenalty::new(self.config.c, vec![term]));
        self.importance = Some((omega, anchor));
    }

    /// Omega, the accumulated importance.
    pub fn importance(&self) -> Option<&ParamMap> {
        self.importance.as_ref().map(|(o, _)| o)
    }

    /// The current task's path integral so far.
    pub fn path_integral(&self) -> Option<&ParamMap> {
        self.omega.as_ref()
    }
}

/// `Omega_old + omega / (Delta^2 + xi)`, `Delta = end - start`.
pub fn consolidate(
    old: Option<&ParamMap>,
    omega: &ParamMap,
    start: &ParamMap,
    end: &ParamMap,
    xi: f64,
) -> ParamMap {
    omega
        .iter()
        .map(|(k, w)| {
            let delta = &end[k] - &start[k];
            let add = w / (delta.square() + xi);
            let total = match old {
                Some(o) => &o[k] + add,
                None => add,
            };
            (k.clone(), total)
        })
        .collect()
}

impl Strategy for Si {
    fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let params = snapshot(&ctx.model.params());
        self.omega = Some(zeros_like(&params));
        self.before_step = Some(snapshot(&params));
        self.task_start = Some(params);
        Ok(())
    }

    fn after_task_backward(&mut self, model: &Net) -> Result<()> {
        // The parameters have not moved yet, so the penalty's gradient is the one the optimizer
        // is about to apply.
        let penalty = match self.config.gradient {
            PathGradient::Task => None,
            PathGradient::Total => self.penalty.as_ref(),
        };
        let grads: ParamMap = tch::no_grad(|| {
            model
                .params()
                .iter()
                .map(|(k, p)| {
                    let g = p.grad().detach().copy();
                    let g = match penalty.and_then(|q| q.gradient_terms(k)) {
                        Some((w, c)) => g + (w * p - c),
                        None => g,
                    };
                    (k.clone(), g)
                })
                .collect()
        });
        if self.config.gradient == PathGradient::Total {
            // The gradient the optimizer will apply: clipped like the loop clips it.
            self.clip
                .apply(&mut grads.values().map(|g| g.shallow_clone()).collect::<Vec<_>>());
        }
        self.step_grads = Some(grads);
        Ok(())
    }

    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn after_step(&mut self, model: &Net) -> Result<()> {
        let (Some(omega), Some(before), Some(grads)) = (
            self.omega.as_mut(),
            self.before_step.as_mut(),
            self.step_grads.as_ref(),
        ) else {
            return Ok(());
        };
        tch::no_grad(|| {
            for (k, p) in model.params() {
                let delta = &p - &before[&k];
                let w = omega.get_mut(&k).unwrap();
                *w -= &grads[&k] * &delta;
                before.get_mut(&k).unwrap().copy_(&p);
            }
        });
        Ok(())
    }

    fn importance(&self) -> Option<&ParamMap> {
        Si::importance(self)
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let end = snapshot(&ctx.model.params());
        let (Some(omega), Some(start)) = (self.omega.take(), self.task_start.take()) else {
            anyhow::bail!("si: after_task without before_task");
        };
        let old = self.importance.as_ref().map(|(o, _)| o);
        let importance = consolidate(old, &omega, &start, &end, self.config.xi);
        self.set_importance(importance, end);
        Ok(())
    }

    /// Omega and the anchor; the current task's path integral is rebuilt by `before_task`.
    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_term("omega", "anchor", self.importance.as_ref());
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some((omega, anchor)) = state.take_term("omega", "anchor", device)? {
            self.set_importance(omega, anchor);
        }
        state.finish("si")
    }
}

inventory::submit! {
    Registration {
        name: "si",
        summary: "Synaptic Intelligence: importance from each parameter's path integral of -g * dtheta",
        paper: "Zenke, Poole & Ganguli 2017, Continual learning through synaptic intelligence, ICML",
        params: &[
            ParamSpec::new("c", "penalty strength; the penalty is c * sum Omega (theta - theta*)^2 (default 1)").range(Range::non_negative()).strength(),
            ParamSpec::new("xi", "damping xi in Omega += omega / (Delta^2 + xi) (default 1e-3)").range(Range::positive()),
            ParamSpec::new("gradient", "g in the path integral: task (the task loss's, default) or total (with the SI penalty's, as van de Ven's code)"),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, ctx| Ok(Box::new(Si::with_clip(config_from(params)?, ctx.clip))),
    }
}
