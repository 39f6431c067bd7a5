//! Diagonal Fisher information, as plain functions the strategies, tests and benches share.
//!
//! Every estimator is a weighted sum of squared per-sample gradients of the negative
//! log-likelihood `-log p(t_n | x_n)` at some label `t_n`:
//!
//! | estimator   | label `t_n`                          | weight                  |
//! |-------------|--------------------------------------|-------------------------|
//! | `empirical` | the true label                       | 1/N                     |
//! | `argmax`    | the model's most probable label      | 1/N                     |
//! | `sampled`   | drawn from p(.|x_n), `draws` times   | 1/(N draws)             |
//! | `exact`     | every class c                        | p(c|x_n)/N              |
//!
//! `batch` is the reference code's estimator, kept for fidelity: the squared gradient of each
//! mini-batch's mean loss times the batch size, summed and divided by N. It is *not* the Fisher:
//! for gradients dominated by noise it is about 1/B of `empirical`, so a lambda tuned with it does
//! not transfer.
//!
//! **Fast path.** For a linear layer with inputs A [N, in] and per-sample gradients G [N, out] of
//! the summed loss with respect to its outputs (one backward pass gives all rows), the sum over
//! samples of the squared weight gradients is `(G*G)^T (A*A)`, and for the bias the column sums
//! of `G*G`. So the cost is one forward and one backward pass plus two matmuls per layer, not N
//! backward passes. [`per_sample_loop`] is the slow reference that tests compare against.
//!
//! The Fisher pass never touches the parameters' `.grad()`.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::{masked_logits, Mlp};
use crate::strategy::{params::add_into, ParamMap};

/// Which labels the squared gradients are taken at; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    #[default]
    Empirical,
    Sampled,
    Exact,
    Argmax,
    Batch,
}

/// How to estimate: the estimator and its knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FisherOptions {
    pub estimator: Estimator,
    /// Use at most this many samples (the first ones of the task's data).
    pub max_samples: Option<usize>,
    /// Label draws per sample for `sampled`.
    pub draws: usize,
    /// Mini-batch size for `batch` (the reference code uses 20).
    pub batch_size: usize,
    /// Rows per forward/backward pass (bounds memory; does not change the result, except which
    /// labels `sampled` draws with more than one draw: each chunk draws its labels draw by draw).
    pub chunk: usize,
    /// Seed for `sampled`'s draws.
    pub seed: u64,
}

impl Default for FisherOptions {
    fn default() -> Self {
        FisherOptions {
            estimator: Estimator::Empirical,
            max_samples: None,
            draws: 1,
            batch_size: 20,
            chunk: 4096,
            seed: 0,
        }
    }
}

impl FisherOptions {
    /// Options as the EWC-family strategies spell them in YAML (`fisher`, `max_samples`, `draws`,
    /// `fisher_batch`), with the seed for `sampled`'s draws.
    pub fn from_settings(
        estimator: Estimator,
        max_samples: Option<usize>,
        draws: usize,
        batch_size: usize,
        seed: u64,
    ) -> FisherOptions {
        FisherOptions {
            estimator,
            max_samples,
            draws,
            batch_size,
            seed,
            ..FisherOptions::default()
        }
    }
}

/// The diagonal Fisher of `model` on inputs `x` with true labels `y` (output columns, Int64 [n])
/// and the output columns in play `mask` (Bool [outputs] or [n, outputs]).
pub fn diagonal_fisher(
    model: &Mlp,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
) -> Result<ParamMap> {
    let n_total = x.size()[0] as usize;
    let n = opts.max_samples.map_or(n_total, |m| m.min(n_total));
    if n == 0 {
        bail!("cannot estimate a Fisher from zero samples");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut sums = crate::strategy::params::zeros_like(&model.params());
    let chunk = opts.chunk.max(1);
    let mut start = 0;
    while start < n {
        // `batch` needs whole mini-batches inside a chunk.
        let len = match opts.estimator {
            Estimator::Batch => {
                let b = opts.batch_size.max(1);
                (chunk / b).max(1) * b
            }
            _ => chunk,
        }
        .min(n - start);
        let xs = x.narrow(0, start as i64, len as i64);
        let ys = y.narrow(0, start as i64, len as i64);
        let ms = if mask.dim() == 2 {
            mask.narrow(0, start as i64, len as i64)
        } else {
            mask.shallow_clone()
        };
        accumulate_chunk(model, &xs, &ys, &ms, opts, &mut rng, &mut sums)?;
        start += len;
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}

/// Adds this chunk's (weighted) squared per-sample gradients to `sums`.
fn accumulate_chunk(
    model: &Mlp,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
    rng: &mut ChaCha8Rng,
    sums: &mut ParamMap,
) -> Result<()> {
    let (logits, rec) = model.forward_recorded(x);
    let log_probs = masked_logits(&logits, mask).log_softmax(-1, Kind::Float);
    let n = x.size()[0];
    match opts.estimator {
        Estimator::Empirical => add_squared_grads(model, &rec, &log_probs, y, None, false, sums),
        Estimator::Argmax => {
            let t = log_probs.argmax(-1, false);
            add_squared_grads(model, &rec, &log_probs, &t, None, false, sums)
        }
        Estimator::Sampled => {
            let draws = opts.draws.max(1);
            let probs: Vec<f32> = Vec::try_from(
                log_probs
                    .detach()
                    .exp()
                    .to_device(tch::Device::Cpu)
                    .flatten(0, -1),
            )?;
            let classes = probs.len() / n as usize;
            let weight = Tensor::full([n], 1.0 / draws as f64, (Kind::Float, x.device()));
            for d in 0..draws {
                let labels: Vec<i64> = probs
                    .chunks(classes)
                    .map(|p| sample_categorical(p, rng) as i64)
                    .collect();
                let t = Tensor::from_slice(&labels).to_device(x.device());
                add_squared_grads(
                    model,
                    &rec,
                    &log_probs,
                    &t,
                    Some(&weight),
                    d + 1 < draws,
                    sums,
                )?;
            }
            Ok(())
        }
        Estimator::Exact => {
            let probs = log_probs.detach().exp();
            let classes = probs.size()[1];
            // Classes outside the mask have probability 0 and contribute nothing.
            let live: Vec<i64> = (0..classes)
                .filter(|&c| probs.select(1, c).max().double_value(&[]) > 0.0)
                .collect();
            for (k, &c) in live.iter().enumerate() {
                let t = Tensor::full([n], c, (Kind::Int64, x.device()));
                let w = probs.select(1, c);
                add_squared_grads(
                    model,
                    &rec,
                    &log_probs,
                    &t,
                    Some(&w),
                    k + 1 < live.len(),
                    sums,
                )?;
            }
            Ok(())
        }
        Estimator::Batch => {
            add_batch_grads(model, &rec, &log_probs, y, opts.batch_size.max(1), sums)
        }
    }
}

/// `sums += sum_n w_n * g_n^2` through the `(G*G)^T (A*A)` identity, one backward pass.
fn add_squared_grads(
    model: &Mlp,
    rec: &crate::model::Recorded,
    log_probs: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    keep_graph: bool,
    sums: &mut ParamMap,
) -> Result<()> {
    let grads = output_grads(rec, log_probs, targets, keep_graph);
    for ((layer, a), g) in model.layers.iter().zip(&rec.inputs).zip(&grads) {
        let g2 = g * g;
        let g2 = match weights {
            Some(w) => g2 * w.unsqueeze(1),
            None => g2,
        };
        let a2 = a.detach().square();
        let w_sq = g2.transpose(0, 1).matmul(&a2);
        let b_sq = g2.sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
        add_into(sums, &format!("{}.weight", layer.name), &w_sq);
        add_into(sums, &format!("{}.bias", layer.name), &b_sq);
    }
    Ok(())
}

/// The reference's estimator: per mini-batch b, `|b| * (grad of the mean loss over b)^2`.
fn add_batch_grads(
    model: &Mlp,
    rec: &crate::model::Recorded,
    log_probs: &Tensor,
    targets: &Tensor,
    batch_size: usize,
    sums: &mut ParamMap,
) -> Result<()> {
    let grads = output_grads(rec, log_probs, targets, false);
    let n = targets.size()[0];
    let b = batch_size as i64;
    for ((layer, a), g) in model.layers.iter().zip(&rec.inputs).zip(&grads) {
        let a = a.detach();
        let mut start = 0;
        while start < n {
            let len = b.min(n - start);
            let gb = g.narrow(0, start, len);
            let ab = a.narrow(0, start, len);
            // Gradient of the batch's mean loss.
            let w_grad = gb.transpose(0, 1).matmul(&ab) / len as f64;
            let b_grad = gb.sum_dim_intlist([0i64].as_slice(), false, Kind::Float) / len as f64;
            add_into(
                sums,
                &format!("{}.weight", layer.name),
                &(w_grad.square() * len as f64),
            );
            add_into(
                sums,
                &format!("{}.bias", layer.name),
                &(b_grad.square() * len as f64),
            );
            start += len;
        }
    }
    Ok(())
}

/// Per-sample gradients of `sum_n -log p(t_n|x_n)` with respect to each layer's outputs.
fn output_grads(
    rec: &crate::model::Recorded,
    log_probs: &Tensor,
    targets: &Tensor,
    keep_graph: bool,
) -> Vec<Tensor> {
    let nll = -log_probs
        .gather(1, &targets.unsqueeze(1), false)
        .sum(Kind::Float);
    let outputs: Vec<&Tensor> = rec.outputs.iter().collect();
    Tensor::run_backward(&[nll], &outputs, keep_graph, false)
}

fn sample_categorical(probs: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let total: f32 = probs.iter().sum();
    let mut u = rng.gen::<f32>() * total;
    for (i, &p) in probs.iter().enumerate() {
        if u < p {
            return i;
        }
        u -= p;
    }
    // Rounding left u just above the last bucket: take the last class with mass.
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

/// The slow reference: one backward pass per sample and label, squaring the parameters' own
/// gradients. Works for any model; tests check the fast path against it.
pub fn per_sample_loop(
    model: &Mlp,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
) -> Result<ParamMap> {
    let n_total = x.size()[0] as usize;
    let n = opts.max_samples.map_or(n_total, |m| m.min(n_total));
    let params = model.params();
    let names: Vec<&String> = params.keys().collect();
    let tensors: Vec<&Tensor> = params.values().collect();
    let mut sums = crate::strategy::params::zeros_like(&params);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    for i in 0..n as i64 {
        let xi = x.narrow(0, i, 1);
        let mi = if mask.dim() == 2 {
            mask.narrow(0, i, 1)
        } else {
            mask.shallow_clone()
        };
        let log_probs = masked_logits(&model.forward(&xi), &mi).log_softmax(-1, Kind::Float);
        let probs: Vec<f32> = Vec::try_from(
            log_probs
                .detach()
                .exp()
                .flatten(0, -1)
                .to_device(tch::Device::Cpu),
        )?;
        let labels_and_weights: Vec<(i64, f64)> = match opts.estimator {
            Estimator::Empirical | Estimator::Batch => vec![(y.int64_value(&[i]), 1.0)],
            Estimator::Argmax => vec![(log_probs.argmax(-1, false).int64_value(&[0]), 1.0)],
            Estimator::Sampled => {
                let d = opts.draws.max(1);
                (0..d)
                    .map(|_| (sample_categorical(&probs, &mut rng) as i64, 1.0 / d as f64))
                    .collect()
            }
            Estimator::Exact => probs
                .iter()
                .enumerate()
                .filter(|(_, &p)| p > 0.0)
                .map(|(c, &p)| (c as i64, p as f64))
                .collect(),
        };
        if opts.estimator == Estimator::Batch {
            bail!("per_sample_loop does not compute the `batch` estimator (it is not per-sample)");
        }
        for (k, &(label, weight)) in labels_and_weights.iter().enumerate() {
            let nll = -log_probs.select(1, label).sum(Kind::Float);
            let keep = k + 1 < labels_and_weights.len();
            let grads = Tensor::run_backward(&[nll], &tensors, keep, false);
            for (name, g) in names.iter().zip(grads) {
                add_into(&mut sums, name, &(g.square() * weight));
            }
        }
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}
