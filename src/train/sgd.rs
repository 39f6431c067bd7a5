//! SGD with momentum, with its momentum buffers in the open (for checkpoints) and a quadratic
//! penalty's gradient added in closed form.
//!
//! The arithmetic is libtorch's SGD without weight decay, dampening or Nesterov: on the first
//! step the buffer is the gradient, then `buf = momentum * buf + g`; `p -= lr * buf` (plain
//! `p -= lr * g` when `momentum` is 0, which keeps no buffer).

use anyhow::Result;
use tch::{nn, nn::OptimizerConfig, Tensor};

use crate::strategy::{ParamMap, QuadraticPenalty, SavedState};

pub struct Sgd {
    lr: f64,
    momentum: f64,
    /// (name, parameter, momentum buffer once the parameter has had a step).
    state: Vec<(String, Tensor, Option<Tensor>)>,
    /// Frees the gradients before each backward pass (see `Adam`).
    zeroer: nn::Optimizer,
}

impl Sgd {
    pub fn new(vs: &nn::VarStore, params: &ParamMap, lr: f64, momentum: f64) -> Result<Sgd> {
        Ok(Sgd {
            lr,
            momentum,
            state: params
                .iter()
                .map(|(name, p)| (name.clone(), p.shallow_clone(), None))
                .collect(),
            zeroer: nn::Sgd::default().build(vs, 0.0)?,
        })
    }

    pub fn zero_grad(&mut self) {
        self.zeroer.zero_grad();
    }

    /// One step from the parameters' gradients plus `penalty`'s gradient `W theta - C`.
    pub fn step(&mut self, penalty: Option<&QuadraticPenalty>) {
        self.step_skipping(penalty, &[]);
    }

    /// [`step`](Self::step), leaving the parameters named in `skip` (and their buffers) alone.
    pub fn step_skipping(&mut self, penalty: Option<&QuadraticPenalty>, skip: &[String]) {
        let _guard = tch::no_grad_guard();
        for (name, p, buffer) in &mut self.state {
            if skip.contains(name) {
                continue;
            }
            let terms = penalty.and_then(|q| q.gradient_terms(name));
            let Some(grad) = super::total_gradient(p, &p.grad(), terms) else {
                continue;
            };
            let direction = if self.momentum == 0.0 {
                grad
            } else {
                match buffer {
                    Some(buf) => {
                        let _ = buf.g_mul_scalar_(self.momentum);
                        let _ = buf.g_add_(&grad);
                        buf.shallow_clone()
                    }
                    None => {
                        let buf = grad.copy();
                        *buffer = Some(buf.shallow_clone());
                        buf
                    }
                }
            };
            let _ = p.g_sub_(&(direction * self.lr));
        }
    }

    /// Changes the learning rate from the next step on (the learning-rate schedule).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The momentum buffers that exist, for a checkpoint.
    pub fn state(&self) -> SavedState {
        let mut state = SavedState::new();
        for (name, _, buffer) in &self.state {
            if let Some(buf) = buffer {
                state.put(format!("momentum/{name}"), buf);
            }
        }
        state
    }

    /// Restores [`state`](Self::state)'s output into an optimizer built for the same model.
    pub fn load_state(&mut self, mut saved: SavedState) -> Result<()> {
        if let Some(buffers) = saved.take_map("momentum", tch::Device::Cpu) {
            for (name, p, buffer) in &mut self.state {
                *buffer = buffers.get(name).map(|b| b.to_device(p.device()));
            }
        }
        saved.finish("the SGD optimizer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpSpec, Net};
    use tch::{Device, Kind};

    fn model() -> Net {
        let spec = MlpSpec {
            inputs: 4,
            hidden: vec![8],
            outputs: 3,
        };
        Net::mlp(&spec, Device::Cpu, 2)
    }

    fn loss(m: &Net, step: i64) -> Tensor {
        let x = Tensor::arange(4 * 5, (Kind::Float, Device::Cpu))
            .view([5, 4])
            .cos()
            * (step + 1) as f64;
        m.forward(&x).square().mean(Kind::Float)
    }

    /// Equal to libtorch's SGD up to float rounding, with and without momentum; and a state
    /// saved after 5 steps and loaded into a fresh optimizer continues identically.
    #[test]
    fn sgd_follows_libtorchs_sgd_and_resumes_from_its_state() {
        for momentum in [0.0, 0.9] {
            let (a, b) = (model(), model());
            let mut torch = nn::Sgd {
                momentum,
                ..Default::default()
            }
            .build(&a.vs, 0.05)
            .unwrap();
            let mut ours = Sgd::new(&b.vs, &b.params(), 0.05, momentum).unwrap();
            for step in 0..10 {
                torch.zero_grad();
                loss(&a, step).backward();
                torch.step();
                if step == 5 {
                    let state = ours.state();
                    ours = Sgd::new(&b.vs, &b.params(), 0.05, momentum).unwrap();
                    ours.load_state(state).unwrap();
                }
                ours.zero_grad();
                loss(&b, step).backward();
                ours.step(None);
            }
            for (k, p) in a.params() {
                let d = (&p - &b.params()[&k]).abs().max().double_value(&[]);
                assert!(d < 1e-6, "momentum {momentum}: {k} differs by {d}");
            }
        }
    }
}
