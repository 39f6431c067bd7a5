//! Label-free parameter importance of Memory Aware Synapses (Aljundi et al. 2018, "Memory Aware
//! Synapses: Learning what (not) to forget", ECCV, Eq. 2-4), as a plain function.
//!
//! `Omega = 1/N sum_n |d ||f(x_n)||_2^2 / d theta|`, where f is the network's output over the
//! columns in play (the current task's head, or the classes seen so far). No label is used.
//!
//! **Fast path.** For a linear layer, the per-sample weight gradient is the outer product
//! `g_n a_n^T`, so `|g_n a_n^T| = |g_n| |a_n|^T` and the sum over samples of the absolute
//! gradients is `|G|^T |A|` (bias: the column sums of `|G|`): one backward pass, as for the
//! Fisher. [`mas_importance_loop`] is the per-sample reference the tests compare against.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::model::Mlp;
use crate::strategy::{
    params::{add_into, zeros_like},
    ParamMap,
};

/// MAS importance of `model` on inputs `x`, over the output columns in `mask` (Bool [outputs]).
pub fn mas_importance(
    model: &Mlp,
    x: &Tensor,
    mask: &Tensor,
    max_samples: Option<usize>,
) -> Result<ParamMap> {
    let n_total = x.size()[0] as usize;
    let n = max_samples.map_or(n_total, |m| m.min(n_total));
    if n == 0 {
        bail!("cannot estimate MAS importance from zero samples");
    }
    let keep = mask.to_kind(Kind::Float);
    let mut sums = zeros_like(&model.params());
    let chunk = 4096;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let xs = x.narrow(0, start as i64, len as i64);
        let (out, rec) = model.forward_recorded(&xs);
        // Columns outside the mask are multiplied by 0, so they do not enter the norm.
        let norm = (&out * &keep).square().sum(Kind::Float);
        let outputs: Vec<&Tensor> = rec.outputs.iter().collect();
        let grads = Tensor::run_backward(&[norm], &outputs, false, false);
        for ((layer, a), g) in model.layers.iter().zip(&rec.inputs).zip(&grads) {
            let g = g.abs();
            let w = g.transpose(0, 1).matmul(&a.detach().abs());
            let b = g.sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
            add_into(&mut sums, &format!("{}.weight", layer.name), &w);
            add_into(&mut sums, &format!("{}.bias", layer.name), &b);
        }
        start += len;
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}

/// The per-sample reference: one backward pass per sample through the parameters.
pub fn mas_importance_loop(model: &Mlp, x: &Tensor, mask: &Tensor) -> Result<ParamMap> {
    let n = x.size()[0];
    let keep = mask.to_kind(Kind::Float);
    let params = model.params();
    let tensors: Vec<&Tensor> = params.values().collect();
    let mut sums = zeros_like(&params);
    for i in 0..n {
        let out = model.forward(&x.narrow(0, i, 1));
        let norm = (&out * &keep).square().sum(Kind::Float);
        let grads = Tensor::run_backward(&[norm], &tensors, false, false);
        for (name, g) in params.keys().zip(grads) {
            add_into(&mut sums, name, &g.abs());
        }
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}
