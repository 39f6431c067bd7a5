//! Adadelta (Zeiler 2012, "ADADELTA: an adaptive learning rate method"), which tch does not
//! provide, as `torch.optim.Adadelta` computes it (torch 2.11 `torch/optim/adadelta.py`,
//! `_single_tensor_adadelta`, without weight decay or `maximize`):
//!
//! ```text
//! v  <- rho v + (1 - rho) g^2                 (square_avg)
//! d  <- sqrt(u + eps) / sqrt(v + eps) * g     (the step, before lr)
//! u  <- rho u + (1 - rho) d^2                 (acc_delta)
//! p  <- p - lr d
//! ```
//!
//! with `v` and `u` zero at the start; PyTorch's defaults are rho 0.9 and eps 1e-6. It trains
//! tensors that are not in a VarStore (EBLL's autoencoders): it reads their `.grad()`.

use tch::Tensor;

/// PyTorch's default decay of the running averages.
pub const ADADELTA_RHO: f64 = 0.9;
/// PyTorch's default term added under both square roots.
pub const ADADELTA_EPS: f64 = 1e-6;

pub struct Adadelta {
    lr: f64,
    rho: f64,
    eps: f64,
    /// (parameter, running average of g^2, running average of the squared steps).
    state: Vec<(Tensor, Tensor, Tensor)>,
}

impl Adadelta {
    /// Adadelta on `params` (leaf tensors with `requires_grad`) with PyTorch's rho and eps.
    pub fn new(params: &[Tensor], lr: f64) -> Adadelta {
        Adadelta::with(params, lr, ADADELTA_RHO, ADADELTA_EPS)
    }

    pub fn with(params: &[Tensor], lr: f64, rho: f64, eps: f64) -> Adadelta {
        let state = params
            .iter()
            .map(|p| (p.shallow_clone(), p.zeros_like(), p.zeros_like()))
            .collect();
        Adadelta {
            lr,
            rho,
            eps,
            state,
        }
    }

    /// One step from the parameters' gradients; a parameter without a gradient is left alone.
    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        for (p, square_avg, acc_delta) in &mut self.state {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = square_avg.g_mul_scalar_(self.rho);
            let _ = square_avg.g_add_(&(g.square() * (1.0 - self.rho)));
            let std = (&*square_avg + self.eps).sqrt();
            let delta = (&*acc_delta + self.eps).sqrt() / std * &g;
            let _ = acc_delta.g_mul_scalar_(self.rho);
            let _ = acc_delta.g_add_(&(delta.square() * (1.0 - self.rho)));
            let _ = p.g_sub_(&(delta * self.lr));
        }
    }

    /// Zeroes the parameters' gradients (before the next backward pass accumulates into them).
    pub fn zero_grad(&mut self) {
        for (p, _, _) in &mut self.state {
            p.zero_grad();
        }
    }
}
