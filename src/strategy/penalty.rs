//! What a strategy's `penalty` hook returns, and the closed form of quadratic penalties.
//!
//! Every regularizer of the EWC family (L2, EWC, online EWC, SI, MAS) adds
//! `scale * sum_t sum_k w_tk (theta_k - a_tk)^2`: importance weights `w_t` and anchors `a_t`,
//! one pair per term. Its gradient, `2 scale sum_t w_t (theta - a_t)`, equals `W theta - C` with
//! `W = 2 scale sum_t w_t` and `C = 2 scale sum_t w_t a_t`, both fixed until the strategy's state
//! changes. So [`QuadraticPenalty`] precomputes `W` and `C` once per task, and the gradient is
//! applied without an autograd graph inside the optimizer's step (`train::Adam`, `train::Sgd`:
//! in fused Adam's one-pass loop on the CPU, in tensor operations elsewhere).
//! [`QuadraticPenalty::add_gradient`] adds it to `.grad()` in place, for tests and benchmarks
//! that compare it with autograd or with libtorch's optimizers.
//! Backpropagating the penalty's graph instead cost over 40% of a training step of the
//! 784-400-400 MLP (`cargo bench --bench train_step`). (`W theta - C` rounds differently from
//! `W (theta - a)` by about `eps |theta| / |theta - a|` relative to the penalty's gradient:
//! negligible beside the task gradient it is added to.)
//!
//! Anything else returns [`Penalty::Graph`]: a scalar with a graph to the parameters, which the
//! loop backpropagates.

use tch::Tensor;

use super::params::{weighted_squared_distance, ParamMap};

/// A strategy's regularization term for one step.
pub enum Penalty<'a> {
    /// A scalar with a graph to the parameters; the loop calls `backward` on it.
    Graph(Tensor),
    /// A quadratic penalty; the loop adds its gradient in closed form.
    Quadratic(&'a QuadraticPenalty),
}

impl Penalty<'_> {
    /// The penalty's value at `params`, with a graph to them (for tests and logging).
    pub fn value(&self, params: &ParamMap) -> Tensor {
        match self {
            Penalty::Graph(t) => t.shallow_clone(),
            Penalty::Quadratic(q) => q.value(params),
        }
    }
}

/// `scale * sum_t sum (w_t * (theta - a_t)^2)` with its gradient precomputed.
pub struct QuadraticPenalty {
    scale: f64,
    /// `(w_t, a_t)`; `None` weights mean 1 everywhere (L2).
    terms: Vec<(Option<ParamMap>, ParamMap)>,
    /// `W = 2 scale sum_t w_t`.
    grad_weight: ParamMap,
    /// `C = 2 scale sum_t w_t a_t`.
    grad_offset: ParamMap,
}

impl QuadraticPenalty {
    /// A penalty from `(weights, anchor)` terms; `None` weights are all ones.
    pub fn new(scale: f64, terms: Vec<(Option<ParamMap>, ParamMap)>) -> QuadraticPenalty {
        assert!(
            !terms.is_empty(),
            "a quadratic penalty needs at least one term"
        );
        let _guard = tch::no_grad_guard();
        let mut grad_weight = ParamMap::new();
        let mut grad_offset = ParamMap::new();
        for name in terms[0].1.keys() {
            let mut w_sum: Option<Tensor> = None;
            let mut wa_sum: Option<Tensor> = None;
            for (w, a) in &terms {
                let a = &a[name];
                let w = match w {
                    Some(w) => w[name].shallow_clone(),
                    None => a.ones_like(),
                };
                let wa = &w * a;
                w_sum = Some(w_sum.map_or(w.shallow_clone(), |s| s + &w));
                wa_sum = Some(wa_sum.map_or(wa.shallow_clone(), |s| s + &wa));
            }
            grad_weight.insert(name.clone(), w_sum.unwrap() * (2.0 * scale));
            grad_offset.insert(name.clone(), wa_sum.unwrap() * (2.0 * scale));
        }
        QuadraticPenalty {
            scale,
            terms,
            grad_weight,
            grad_offset,
        }
    }

    /// `(W, C)` of parameter `name`: the gradient is `W theta - C`.
    pub fn gradient_terms(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        Some((self.grad_weight.get(name)?, self.grad_offset.get(name)?))
    }

    /// The value at `params`, exactly (term by term), with a graph to `params`.
    pub fn value(&self, params: &ParamMap) -> Tensor {
        self.terms
            .iter()
            .map(|(w, a)| weighted_squared_distance(params, a, w.as_ref()))
            .reduce(|x, y| x + y)
            .unwrap()
            * self.scale
    }

    /// Adds the gradient `W theta - C` to each parameter's `.grad()` in place. Returns false
    /// (and changes nothing) when a parameter has no gradient yet, so the caller can fall back to
    /// backpropagating [`value`](Self::value).
    pub fn add_gradient(&self, params: &ParamMap) -> bool {
        let grads: Vec<Tensor> = params.values().map(|p| p.grad()).collect();
        if grads.iter().any(|g| !g.defined()) {
            return false;
        }
        let _guard = tch::no_grad_guard();
        for ((name, p), mut g) in params.iter().zip(grads) {
            // `W theta - C` first, then added: adding `W theta` to the gradient first would round
            // away gradients much smaller than `W theta` before `C` cancels it.
            let _ = g.g_add_(&(&self.grad_weight[name] * p - &self.grad_offset[name]));
        }
        true
    }
}
