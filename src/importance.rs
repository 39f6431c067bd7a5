//! Label-free parameter importance of Memory Aware Synapses (Aljundi et al. 2018, "Memory Aware
//! Synapses: Learning what (not) to forget", ECCV, Eq. 2-4), as a plain function.
//!
//! `Omega = 1/N sum_n |d ||f(x_n)||_2^2 / d theta|`, where f is the network's output over the
//! columns in play (the current task's head, or the classes seen so far). No label is used.
//!
//! **Fast path.** As for the Fisher (see [`crate::fisher::layer`]): one backward pass gives each
//! sample's gradient with respect to each recorded layer's output, and each layer kind sums the
//! absolute per-sample parameter gradients exactly (linear: `|G|^T |A|`, since a sample's
//! gradient is an outer product; conv: a batched product of unfolded patches; batch norm: per-channel sums).
//! Parameters without a fast path fall back to the per-sample loop. [`mas_importance_loop`] is
//! the per-sample reference the tests compare against.
//!
//! **Per-batch form.** Several reference implementations (Avalanche's `MASPlugin`, among others)
//! take the absolute value after averaging over a mini-batch instead of per sample:
//! `Omega = 1/B sum_b |d (1/|b| sum_{n in b} ||f(x_n)||^2) / d theta|` over the B consecutive
//! mini-batches. Signs cancel inside a batch, so it is at most the per-sample form and depends on
//! the batch size; [`mas_importance_batched`] computes it, selectable in `mas` as
//! `importance: per_batch`.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::core::params::{add_into, zeros_like, ParamMap};
use crate::core::row_spans;
use crate::fisher::{layer, Coverage};
use crate::model::{Net, Record};

/// MAS importance of `model` on inputs `x`, over the output columns in `mask` (Bool [outputs]).
pub fn mas_importance(
    model: &Net,
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
    let (_, probe) = model.forward_recorded(&x.narrow(0, 0, 1));
    let coverage = Coverage::from_records(model, &probe);
    let all = model.params();
    let mut sums: ParamMap = coverage
        .covered
        .iter()
        .map(|k| (k.clone(), all[k].zeros_like()))
        .collect();
    // Passes as the Fisher's (see `crate::fisher::PASS_ROWS`), of 4096 rows for a network of
    // linear layers.
    let chunk = coverage.pass_rows(4096);
    for (start, len) in row_spans(n, chunk) {
        let xs = x.narrow(0, start as i64, len as i64);
        let (out, records) = model.forward_recorded(&xs);
        let rec: Vec<&Record> = coverage.usable(&records).collect();
        if !rec.is_empty() {
            // Columns outside the mask are multiplied by 0, so they do not enter the norm.
            let norm = (&out * &keep).square().sum(Kind::Float);
            let outputs: Vec<&Tensor> = rec.iter().map(|r| &r.output).collect();
            let grads = Tensor::run_backward(&[norm], &outputs, false, false);
            for (r, g) in rec.iter().zip(&grads) {
                layer::accumulate(r, g, layer::Reduction::Absolute, &mut sums);
            }
        }
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    if !coverage.uncovered.is_empty() {
        let xs = x.narrow(0, 0, n as i64);
        sums.extend(mas_loop_of(model, &xs, mask, &coverage.uncovered)?);
    }
    coverage.check(model, &sums)?;
    Ok(sums)
}

/// The per-batch form (see the module docs): one backward pass per mini-batch of `batch`
/// consecutive samples through the parameters, the last batch possibly smaller.
pub fn mas_importance_batched(
    model: &Net,
    x: &Tensor,
    mask: &Tensor,
    max_samples: Option<usize>,
    batch: usize,
) -> Result<ParamMap> {
    let n_total = x.size()[0] as usize;
    let n = max_samples.map_or(n_total, |m| m.min(n_total));
    if n == 0 || batch == 0 {
        bail!("cannot estimate MAS importance from zero samples or batches of zero");
    }
    let names: Vec<String> = model.params().into_keys().collect();
    mas_batches_of(model, &x.narrow(0, 0, n as i64), mask, &names, batch)
}

/// The per-sample reference: one backward pass per sample through the parameters.
pub fn mas_importance_loop(model: &Net, x: &Tensor, mask: &Tensor) -> Result<ParamMap> {
    let names: Vec<String> = model.params().into_keys().collect();
    mas_loop_of(model, x, mask, &names)
}

/// [`mas_importance_loop`] for the parameters called `names` only.
fn mas_loop_of(model: &Net, x: &Tensor, mask: &Tensor, names: &[String]) -> Result<ParamMap> {
    mas_batches_of(model, x, mask, names, 1)
}

/// `1/B sum_b |d (mean_{n in b} ||f(x_n)||^2) / d theta|` for the parameters called `names`,
/// over the B consecutive mini-batches of `batch` samples: with batches of one, the per-sample
/// form.
fn mas_batches_of(
    model: &Net,
    x: &Tensor,
    mask: &Tensor,
    names: &[String],
    batch: usize,
) -> Result<ParamMap> {
    let n = x.size()[0] as usize;
    let keep = mask.to_kind(Kind::Float);
    let all = model.params();
    let params: ParamMap = names
        .iter()
        .map(|k| (k.clone(), all[k].shallow_clone()))
        .collect();
    let tensors: Vec<&Tensor> = params.values().collect();
    let mut sums = zeros_like(&params);
    let mut batches = 0usize;
    for (start, len) in row_spans(n, batch) {
        let out = model.forward(&x.narrow(0, start as i64, len as i64));
        let mean_norm = (&out * &keep)
            .square()
            .sum_dim_intlist(1, false, Kind::Float)
            .mean(Kind::Float);
        let grads = Tensor::run_backward(&[mean_norm], &tensors, false, false);
        for (name, g) in params.keys().zip(grads) {
            add_into(&mut sums, name, &g.abs());
        }
        batches += 1;
    }
    for t in sums.values_mut() {
        *t = &*t / batches as f64;
    }
    Ok(sums)
}
