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
//! | `empirical_weighted` | the true label y_n          | p(y_n|x_n)/N            |
//!
//! `empirical_weighted` is the Fisher of Mammoth's online EWC (aimagelab/mammoth
//! `models/ewc_on.py`, `fish += exp_cond_prob * grad**2` per sample), kept to reproduce the
//! results of Buzzega et al. (2020).
//!
//! `batch` is the reference code's estimator, kept for fidelity: the squared gradient of each
//! mini-batch's mean loss times the batch size, summed and divided by N. It is *not* the Fisher:
//! for gradients dominated by noise it is about 1/B of `empirical`, so a lambda tuned with it does
//! not transfer.
//!
//! `reference` is the HAT reference code's `utils.fisher_matrix_diag` (joansj/hat 6fd0b9d,
//! `src/utils.py`) exactly: consecutive mini-batches of `fisher_batch` (20) in data order, each batch's mean
//! cross-entropy gradient squared and multiplied by `fisher_batch` (the last, smaller batch too,
//! where `batch` multiplies by its size), summed and divided by N, with the network in training
//! mode (`model.train()`: dropout on, its masks drawn from the estimate's seed; batch norm on
//! batch statistics). The reference's criterion also carries the EWC penalty, but its anchor is
//! copied just before the Fisher runs, so that term and its gradient are zero and it is left out.
//! It runs by autograd, one backward pass per mini-batch: about one training epoch at batch 20.
//!
//! **Fast path, per layer kind.** Passes of [`Coverage::pass_rows`] samples. One eval-mode forward pass records every parametrised layer's
//! input; one backward pass of the summed loss gives each sample's gradient with respect to each
//! layer's output; [`layer::accumulate`] turns those into exact per-sample parameter gradient
//! sums for its kind (linear: `(G*G)^T (A*A)`; conv: unfolded patches; batch norm: per-channel
//! sums). So the cost is about one forward and one backward pass, not N backward passes.
//!
//! **Coverage.** A parameter that no record covers (a layer without a fast path, written by a
//! model plugin by hand) or that two records share (a layer applied twice, where the per-layer
//! identity would be wrong) falls back to the per-sample loop, for those parameters only.
//! [`per_sample_loop`] is also the slow reference the tests compare against. The result is
//! checked to hold exactly the model's parameters, so a parameter is never left without an
//! estimate silently.
//!
//! [`running`] holds the other kind of Fisher: EWC++'s running average of squared gradients,
//! kept during training (`fisher: ema` of `ewc` and `online_ewc`, and `rwalk`'s).
//!
//! The Fisher pass never touches the parameters' `.grad()`, and runs in eval mode (no dropout,
//! batch norm on its running statistics): no mode is switched, so none has to be restored.

pub mod layer;
pub mod running;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::core::params::{add_into, zeros_like, ParamMap};
use crate::core::row_spans;
use crate::model::{mask_rows, masked_logits, Net, Record};
use layer::Reduction;

/// Rows per forward and backward pass of the fast path on a network with convolutions: the
/// training loop's batch size. Larger passes run slower per sample on a CPU (a conv net's batch
/// of 2048 at 0.7x the speed of 128: the activations no longer fit the cache). A network of
/// linear layers runs one pass per chunk instead ([`Coverage::pass_rows`]): its passes are
/// matrix products, faster large (`cargo bench --bench fisher -- '^fisher/'`: passes of 128 took
/// 1.25-1.45x the time of one pass per chunk), and its sums then keep their old order.
pub const PASS_ROWS: usize = 128;

/// Unweighted squared per-sample gradients.
const SQUARED: Reduction<'static> = Reduction::Squared(None);

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
    EmpiricalWeighted,
    Reference,
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
    /// Rows whose labels `sampled` draws together, draw by draw (with more than one draw it
    /// decides which labels are drawn; otherwise it does not change the result). Each chunk runs
    /// in forward/backward passes of [`Coverage::pass_rows`] rows.
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
    model: &Net,
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
    if opts.estimator == Estimator::Reference {
        return reference_loop(model, x, y, mask, n, opts);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let coverage = Coverage::of(model, &x.narrow(0, 0, 1));
    let mut sums = zeros_like(&coverage.covered_params(model));
    let chunk = opts.chunk.max(1);
    // `batch` needs whole mini-batches inside a chunk.
    let chunk = match opts.estimator {
        Estimator::Batch => {
            let b = opts.batch_size.max(1);
            (chunk / b).max(1) * b
        }
        _ => chunk,
    };
    for (start, len) in row_spans(n, chunk) {
        let xs = x.narrow(0, start as i64, len as i64);
        let ys = y.narrow(0, start as i64, len as i64);
        let ms = mask_rows(mask, start as i64, len as i64);
        accumulate_chunk(model, &coverage, &xs, &ys, &ms, opts, &mut rng, &mut sums)?;
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    if !coverage.uncovered.is_empty() {
        let limited = FisherOptions {
            max_samples: Some(n),
            ..*opts
        };
        let rest = match opts.estimator {
            Estimator::Batch => batch_loop(model, x, y, mask, &limited, &coverage.uncovered)?,
            _ => per_sample_loop_of(model, x, y, mask, &limited, &coverage.uncovered)?,
        };
        sums.extend(rest);
    }
    coverage.check(model, &sums)?;
    Ok(sums)
}

/// Which parameters the recorded layers cover exactly, and which need the slow path.
pub struct Coverage {
    /// Parameters of layers recorded exactly once.
    pub covered: Vec<String>,
    /// Every other parameter.
    pub uncovered: Vec<String>,
    /// Indices of the records that take part (each layer recorded once).
    usable: Vec<bool>,
    /// Whether a convolution is among the layers.
    convolutional: bool,
}

impl Coverage {
    /// Coverage of `model`'s parameters by the records of a forward pass on `probe`.
    pub fn of(model: &Net, probe: &Tensor) -> Coverage {
        let (_, records) = model.forward_recorded(probe);
        Coverage::from_records(model, &records)
    }

    /// Coverage of `model`'s parameters by `records`.
    pub fn from_records(model: &Net, records: &[Record]) -> Coverage {
        let mut uses = std::collections::BTreeMap::<&str, usize>::new();
        for r in records {
            for name in std::iter::once(&r.weight).chain(&r.bias) {
                *uses.entry(name.as_str()).or_default() += 1;
            }
        }
        let usable = records
            .iter()
            .map(|r| {
                std::iter::once(&r.weight)
                    .chain(&r.bias)
                    .all(|n| uses[n.as_str()] == 1)
            })
            .collect::<Vec<_>>();
        let (covered, uncovered) = model
            .params()
            .into_keys()
            .partition(|name| uses.get(name.as_str()) == Some(&1));
        Coverage {
            covered,
            uncovered,
            usable,
            convolutional: records
                .iter()
                .any(|r| matches!(r.kind, crate::model::LayerKind::Conv2d { .. })),
        }
    }

    /// Rows per forward and backward pass over a chunk of `chunk` rows: [`PASS_ROWS`] for a
    /// network with convolutions, the whole chunk otherwise.
    pub fn pass_rows(&self, chunk: usize) -> usize {
        if self.convolutional {
            PASS_ROWS
        } else {
            chunk.max(1)
        }
    }

    fn covered_params(&self, model: &Net) -> ParamMap {
        let all = model.params();
        self.covered
            .iter()
            .map(|n| (n.clone(), all[n].shallow_clone()))
            .collect()
    }

    /// The records of a pass that take part in the fast path.
    pub fn usable<'r>(&'r self, records: &'r [Record]) -> impl Iterator<Item = &'r Record> + 'r {
        records
            .iter()
            .zip(&self.usable)
            .filter(|(_, &ok)| ok)
            .map(|(r, _)| r)
    }

    /// Fails unless `estimate` holds exactly the model's parameters, each with its shape.
    pub fn check(&self, model: &Net, estimate: &ParamMap) -> Result<()> {
        let params = model.params();
        let missing: Vec<&String> = params
            .keys()
            .filter(|k| !estimate.contains_key(*k))
            .collect();
        let extra: Vec<&String> = estimate
            .keys()
            .filter(|k| !params.contains_key(*k))
            .collect();
        let misshapen: Vec<&String> = params
            .iter()
            .filter(|(k, p)| estimate.get(*k).is_some_and(|e| e.size() != p.size()))
            .map(|(k, _)| k)
            .collect();
        if !(missing.is_empty() && extra.is_empty() && misshapen.is_empty()) {
            bail!(
                "importance estimate does not cover the model `{}`: missing {missing:?}, unknown \
                 {extra:?}, wrong shape {misshapen:?} (a bug in a layer's fast path)",
                model.spec.model
            );
        }
        Ok(())
    }
}

/// Adds this chunk's (weighted) squared per-sample gradients to `sums`, in passes of
/// [`Coverage::pass_rows`] rows (for `batch`, whole mini-batches).
#[allow(clippy::too_many_arguments)]
fn accumulate_chunk(
    model: &Net,
    coverage: &Coverage,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
    rng: &mut ChaCha8Rng,
    sums: &mut ParamMap,
) -> Result<()> {
    let n = x.size()[0];
    let rows = coverage.pass_rows(n as usize);
    let pass = match opts.estimator {
        // Whole mini-batches in a pass (a chunk holds whole ones but for its last).
        Estimator::Batch if rows < n as usize => {
            let b = opts.batch_size.max(1);
            (rows / b).max(1) * b
        }
        _ => rows,
    } as i64;
    // `sampled` draws its labels draw by draw over the whole chunk (the order the estimate has
    // always drawn them in); with one draw that is row by row, which the passes keep by
    // themselves, else the labels are drawn before the passes from the chunk's probabilities.
    let drawn = match opts.estimator {
        Estimator::Sampled if opts.draws > 1 => Some(draw_labels(model, x, mask, pass, opts, rng)?),
        _ => None,
    };
    for (start, len) in row_spans(n, pass) {
        let labels = drawn.as_ref().map(|d| {
            d.iter()
                .map(|draw| Tensor::from_slice(&draw[start as usize..(start + len) as usize]))
                .map(|t| t.to_device(x.device()))
                .collect::<Vec<_>>()
        });
        accumulate_pass(
            model,
            coverage,
            &x.narrow(0, start, len),
            &y.narrow(0, start, len),
            &mask_rows(mask, start, len),
            opts,
            rng,
            labels.as_deref(),
            sums,
        )?;
    }
    Ok(())
}

/// `sampled`'s labels for every row of a chunk, draw by draw (`[draw][row]`), from the
/// probabilities of eval-mode passes of `pass` rows.
fn draw_labels(
    model: &Net,
    x: &Tensor,
    mask: &Tensor,
    pass: i64,
    opts: &FisherOptions,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<i64>>> {
    let n = x.size()[0];
    let mut probs: Vec<f32> = Vec::new();
    for (start, len) in row_spans(n, pass) {
        let p = tch::no_grad(|| {
            masked_logits(
                &model.forward(&x.narrow(0, start, len)),
                &mask_rows(mask, start, len),
            )
            .log_softmax(-1, Kind::Float)
            .exp()
        });
        probs.extend(Vec::<f32>::try_from(
            p.to_device(tch::Device::Cpu).flatten(0, -1),
        )?);
    }
    let classes = probs.len() / n.max(1) as usize;
    Ok((0..opts.draws.max(1))
        .map(|_| {
            probs
                .chunks(classes)
                .map(|p| sample_categorical(p, rng) as i64)
                .collect()
        })
        .collect())
}

/// Adds one pass's (weighted) squared per-sample gradients to `sums`; `drawn` holds `sampled`'s
/// labels of these rows per draw when they were drawn beforehand.
#[allow(clippy::too_many_arguments)]
fn accumulate_pass(
    model: &Net,
    coverage: &Coverage,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
    rng: &mut ChaCha8Rng,
    drawn: Option<&[Tensor]>,
    sums: &mut ParamMap,
) -> Result<()> {
    let (logits, records) = model.forward_recorded(x);
    let rec: Vec<&Record> = coverage.usable(&records).collect();
    let log_probs = masked_logits(&logits, mask).log_softmax(-1, Kind::Float);
    let n = x.size()[0];
    match opts.estimator {
        Estimator::Empirical => add_reduced(&rec, &log_probs, y, SQUARED, false, sums),
        Estimator::EmpiricalWeighted => {
            let p = log_probs
                .detach()
                .gather(1, &y.view([-1, 1]), false)
                .exp()
                .view([-1]);
            add_reduced(
                &rec,
                &log_probs,
                y,
                Reduction::Squared(Some(&p)),
                false,
                sums,
            )
        }
        Estimator::Argmax => {
            let t = log_probs.argmax(-1, false);
            add_reduced(&rec, &log_probs, &t, SQUARED, false, sums)
        }
        Estimator::Sampled => {
            if let Some(drawn) = drawn {
                let weight = Tensor::full([n], 1.0 / drawn.len() as f64, (Kind::Float, x.device()));
                for (d, t) in drawn.iter().enumerate() {
                    let weighted = Reduction::Squared(Some(&weight));
                    add_reduced(&rec, &log_probs, t, weighted, d + 1 < drawn.len(), sums)?;
                }
                return Ok(());
            }
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
                let weighted = Reduction::Squared(Some(&weight));
                add_reduced(&rec, &log_probs, &t, weighted, d + 1 < draws, sums)?;
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
                let weighted = Reduction::Squared(Some(&w));
                add_reduced(&rec, &log_probs, &t, weighted, k + 1 < live.len(), sums)?;
            }
            Ok(())
        }
        Estimator::Batch => {
            let batches = Reduction::BatchSquared(opts.batch_size.max(1));
            add_reduced(&rec, &log_probs, y, batches, false, sums)
        }
        Estimator::Reference => unreachable!("the reference estimator has its own loop"),
    }
}

/// `sums +=` the `reduction` of every recorded layer's per-sample gradients of the NLL at
/// `targets` (`w_n g_n^2`, or the reference's `|b| (mean over b)^2`), from one backward pass.
fn add_reduced(
    rec: &[&Record],
    log_probs: &Tensor,
    targets: &Tensor,
    reduction: Reduction,
    keep_graph: bool,
    sums: &mut ParamMap,
) -> Result<()> {
    let grads = output_grads(rec, log_probs, targets, keep_graph);
    for (r, g) in rec.iter().zip(&grads) {
        layer::accumulate(r, g, reduction, sums);
    }
    Ok(())
}

/// Per-sample gradients of `sum_n -log p(t_n|x_n)` with respect to each layer's outputs.
fn output_grads(
    rec: &[&Record],
    log_probs: &Tensor,
    targets: &Tensor,
    keep_graph: bool,
) -> Vec<Tensor> {
    let nll = -log_probs
        .gather(1, &targets.unsqueeze(1), false)
        .sum(Kind::Float);
    if rec.is_empty() {
        return Vec::new();
    }
    let outputs: Vec<&Tensor> = rec.iter().map(|r| &r.output).collect();
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
    model: &Net,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
) -> Result<ParamMap> {
    let names: Vec<String> = model.params().into_keys().collect();
    per_sample_loop_of(model, x, y, mask, opts, &names)
}

/// [`per_sample_loop`] for the parameters called `names` only.
fn per_sample_loop_of(
    model: &Net,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
    names: &[String],
) -> Result<ParamMap> {
    let n_total = x.size()[0] as usize;
    let n = opts.max_samples.map_or(n_total, |m| m.min(n_total));
    let all = model.params();
    let params: ParamMap = names
        .iter()
        .map(|k| (k.clone(), all[k].shallow_clone()))
        .collect();
    let names: Vec<&String> = params.keys().collect();
    let tensors: Vec<&Tensor> = params.values().collect();
    let mut sums = zeros_like(&params);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    for i in 0..n as i64 {
        let xi = x.narrow(0, i, 1);
        let mi = mask_rows(mask, i, 1);
        let log_probs = masked_logits(&model.forward(&xi), &mi).log_softmax(-1, Kind::Float);
        let probs: Vec<f32> = Vec::try_from(
            log_probs
                .detach()
                .exp()
                .flatten(0, -1)
                .to_device(tch::Device::Cpu),
        )?;
        let labels_and_weights: Vec<(i64, f64)> = match opts.estimator {
            Estimator::Empirical | Estimator::Batch | Estimator::Reference => {
                vec![(y.int64_value(&[i]), 1.0)]
            }
            Estimator::EmpiricalWeighted => {
                let label = y.int64_value(&[i]);
                vec![(label, probs[label as usize] as f64)]
            }
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
        if matches!(opts.estimator, Estimator::Batch | Estimator::Reference) {
            bail!(
                "per_sample_loop does not compute the `{:?}` estimator (it is not per-sample)",
                opts.estimator
            );
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

/// The `reference` estimator over the first `n` samples (see the module docs).
fn reference_loop(
    model: &Net,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    n: usize,
    opts: &FisherOptions,
) -> Result<ParamMap> {
    let params = model.params();
    let names: Vec<&String> = params.keys().collect();
    let tensors: Vec<&Tensor> = params.values().collect();
    let mut sums = zeros_like(&params);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let b = opts.batch_size.max(1) as i64;
    let n = n as i64;
    for (start, len) in row_spans(n, b) {
        let mb = mask_rows(mask, start, len);
        let logits = model.forward_t(
            &x.narrow(0, start, len),
            &mut crate::model::Forward::train(&mut rng),
        );
        let loss = crate::model::masked_cross_entropy(&logits, &mb, &y.narrow(0, start, len));
        let grads = Tensor::run_backward(&[loss], &tensors, false, false);
        for (name, g) in names.iter().zip(grads) {
            // A parameter the loss does not reach (another task's gates) has no gradient.
            if g.defined() {
                add_into(&mut sums, name, &(g.square() * b as f64));
            }
        }
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}

/// The `batch` estimator by autograd through the parameters called `names`: per mini-batch,
/// `|b| * (gradient of the batch's mean loss)^2` (the fallback for layers without a fast path).
fn batch_loop(
    model: &Net,
    x: &Tensor,
    y: &Tensor,
    mask: &Tensor,
    opts: &FisherOptions,
    names: &[String],
) -> Result<ParamMap> {
    let n_total = x.size()[0];
    let n = opts
        .max_samples
        .map_or(n_total, |m| (m as i64).min(n_total));
    let all = model.params();
    let tensors: Vec<&Tensor> = names.iter().map(|k| &all[k]).collect();
    let mut sums: ParamMap = names
        .iter()
        .map(|k| (k.clone(), all[k].zeros_like()))
        .collect();
    let b = opts.batch_size.max(1) as i64;
    for (start, len) in row_spans(n, b) {
        let mb = mask_rows(mask, start, len);
        let log_probs = masked_logits(&model.forward(&x.narrow(0, start, len)), &mb)
            .log_softmax(-1, Kind::Float);
        let loss = -log_probs
            .gather(1, &y.narrow(0, start, len).unsqueeze(1), false)
            .mean(Kind::Float);
        let grads = Tensor::run_backward(&[loss], &tensors, false, false);
        for (name, g) in names.iter().zip(grads) {
            add_into(&mut sums, name, &(g.square() * len as f64));
        }
    }
    for t in sums.values_mut() {
        *t = &*t / n as f64;
    }
    Ok(sums)
}
