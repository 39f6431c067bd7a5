//! `mas`: Memory Aware Synapses (Aljundi et al. 2018, "Memory Aware Synapses: Learning what (not)
//! to forget", ECCV, Eq. 2-4 and 6).
//!
//! At the end of each task the importance of every parameter is the mean absolute gradient of the
//! squared L2 norm of the network's output (over the columns in play), computed without labels
//! (`clbench::importance::mas_importance`); importances are summed over tasks. The loss is
//! `CE + lambda * sum Omega (theta - theta*)^2`, anchored at the parameters after the last task.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Device;

use clbench::importance::{mas_importance, mas_importance_batched};
use clbench::model::Net;
use clbench::strategy::{
    params::{shallow, snapshot},
    registry::{config_from, resolve_with, Registration},
    ParamMap, Penalty, QuadraticPenalty, SavedState, Strategy, TaskContext,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Penalty strength.
    pub lambda: f64,
    /// Estimate the importance on at most this many samples of the task (all when absent).
    pub max_samples: Option<usize>,
    /// Per sample (Aljundi et al.) or per mini-batch (the form of several reference
    /// implementations); left out of the resolved parameters at its default, so earlier
    /// results keep their ids.
    #[serde(skip_serializing_if = "ImportanceForm::is_per_sample")]
    pub importance: ImportanceForm,
    /// Mini-batch size of `importance: per_batch`.
    #[serde(skip_serializing_if = "is_default_batch")]
    pub importance_batch: usize,
}

/// Where MAS takes the absolute value of the output norm's gradient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceForm {
    /// `1/N sum_n |grad_n|` (Aljundi et al. 2018, Eq. 2-4).
    #[default]
    PerSample,
    /// `1/B sum_b |grad of the batch's mean|` (e.g. Avalanche's `MASPlugin`).
    PerBatch,
}

impl ImportanceForm {
    fn is_per_sample(&self) -> bool {
        *self == ImportanceForm::PerSample
    }
}

const DEFAULT_IMPORTANCE_BATCH: usize = 32;

fn is_default_batch(b: &usize) -> bool {
    *b == DEFAULT_IMPORTANCE_BATCH
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lambda: 1.0,
            max_samples: None,
            importance: ImportanceForm::PerSample,
            importance_batch: DEFAULT_IMPORTANCE_BATCH,
        }
    }
}

pub struct Mas {
    config: Config,
    /// Accumulated importance and the anchor, after the first task.
    state: Option<(ParamMap, ParamMap)>,
    /// `lambda * sum Omega (theta - anchor)^2`; `None` during the first task.
    penalty: Option<QuadraticPenalty>,
}

impl Mas {
    pub fn new(config: Config) -> Mas {
        Mas {
            config,
            state: None,
            penalty: None,
        }
    }

    /// Sets the importance and the anchor, and the penalty `lambda * sum Omega (theta - anchor)^2`.
    fn set_state(&mut self, omega: ParamMap, anchor: ParamMap) {
        let term = (Some(shallow(&omega)), shallow(&anchor));
        self.penalty = Some(QuadraticPenalty::new(self.config.lambda, vec![term]));
        self.state = Some((omega, anchor));
    }

    /// The accumulated importance.
    pub fn importance(&self) -> Option<&ParamMap> {
        self.state.as_ref().map(|(o, _)| o)
    }
}

impl Strategy for Mas {
    fn penalty(&mut self, _model: &Net) -> Result<Option<Penalty<'_>>> {
        Ok(self.penalty.as_ref().map(Penalty::Quadratic))
    }

    fn importance(&self) -> Option<&ParamMap> {
        Mas::importance(self)
    }

    fn after_task(&mut self, ctx: &TaskContext) -> Result<()> {
        let (x, mask, cap) = (&ctx.data.x, &ctx.data.mask, self.config.max_samples);
        let new = match self.config.importance {
            ImportanceForm::PerSample => mas_importance(ctx.model, x, mask, cap)?,
            ImportanceForm::PerBatch => {
                mas_importance_batched(ctx.model, x, mask, cap, self.config.importance_batch)?
            }
        };
        let omega = match &self.state {
            Some((old, _)) => old.iter().map(|(k, o)| (k.clone(), o + &new[k])).collect(),
            None => new,
        };
        let anchor = snapshot(&ctx.model.params());
        self.set_state(omega, anchor);
        Ok(())
    }

    fn save_state(&self) -> Option<SavedState> {
        let mut state = SavedState::new();
        state.put_term("omega", "anchor", self.state.as_ref());
        Some(state)
    }

    fn load_state(&mut self, mut state: SavedState, device: Device) -> Result<()> {
        if let Some((omega, anchor)) = state.take_term("omega", "anchor", device)? {
            self.set_state(omega, anchor);
        }
        state.finish("mas")
    }
}

inventory::submit! {
    Registration {
        name: "mas",
        summary: "Memory Aware Synapses: label-free importance from the output norm's gradient",
        paper: "Aljundi et al. 2018, Memory Aware Synapses: Learning what (not) to forget, ECCV",
        params: &[
            ParamSpec::new("lambda", "penalty strength; the penalty is lambda * sum Omega (theta - theta*)^2 (default 1)").range(Range::non_negative()).strength(),
            ParamSpec::new("max_samples", "estimate the importance on at most this many samples (default: all)").range(Range::Count),
            ParamSpec::new("importance", "per_sample (Aljundi et al., default) or per_batch (|gradient of each mini-batch's mean|, as Avalanche)"),
            ParamSpec::new("importance_batch", "mini-batch size of importance: per_batch (default 32)").range(Range::Count),
        ],
        requires: &[],
        resolve: resolve_with::<Config>,
        build: |params, _| Ok(Box::new(Mas::new(config_from(params)?))),
    }
}
