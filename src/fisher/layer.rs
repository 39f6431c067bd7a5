//! Exact per-sample gradient reductions, one recorded layer at a time.
//!
//! Given a layer's [`Record`] (its input) and `g`, the gradient of a loss summed over samples
//! with respect to the layer's output (one backward pass gives every sample's row), each layer
//! kind sums over samples what the estimators need: squared gradients (optionally weighted per
//! sample), absolute gradients (MAS), or squared mini-batch means (the reference code's `batch`).
//!
//! - **Linear**: a sample's weight gradient is the outer product `g_n a_n^T`, so the sums are
//!   `(G*G)^T (A*A)` and `|G|^T |A|` without materialising any per-sample gradient.
//! - **Conv2d**: a sample's weight gradient is a sum over output positions of grad-output times
//!   input patch, so the outer-product identity does not hold. Every sample's gradient is
//!   computed exactly as one batched matrix product, `[out, positions] x [positions, in*kh*kw]`
//!   per sample, of its output gradient with its unfolded patches; the patches are a strided
//!   view of the zero-padded input copied out row by row (libtorch's `im2col` took twice as
//!   long), for a few samples at a time, so the unfolded input (`kh*kw` times the input) stays in
//!   the cache ([`UNFOLD_BUDGET`]). That is the ordinary weight gradient's multiply-adds, without
//!   the sum over samples. (The path before, a grouped convolution with a sample per group and
//!   the output gradient as kernel, measured 1.5-2x slower per layer in PyTorch micro-benchmarks
//!   on a loaded CPU, but within noise of this one over whole passes of 128 rows:
//!   `scripts/bench/fisher_conv.py`. libtorch's own `convolution_backward` with a group per
//!   sample is the fastest there, but tch does not bind it.)
//! - **ChannelAffine** (batch norm in eval mode): `dgamma_n = sum_positions g * xhat`,
//!   `dbeta_n = sum_positions g`.

use tch::{Kind, Tensor};

use crate::core::params::{add_into, ParamMap};
use crate::core::row_spans;
use crate::model::{LayerKind, Record};

/// Bytes of per-sample gradients and unfolded inputs materialised at once by the conv and batch
/// norm paths (the result does not depend on it).
pub const MEMORY_BUDGET: usize = 256 << 20;

/// Bytes of unfolded conv inputs materialised at once: a few samples, so that the patches are
/// still in the cache when the matrix product reads them (the result does not depend on it).
pub const UNFOLD_BUDGET: usize = 4 << 20;

/// What to sum over samples.
#[derive(Debug, Clone, Copy)]
pub enum Reduction<'a> {
    /// `sum_n w_n (grad_n)^2`, `w_n` 1 when `None`.
    Squared(Option<&'a Tensor>),
    /// `sum_n |grad_n|`.
    Absolute,
    /// `sum_b |b| (mean_{n in b} grad_n)^2` over consecutive mini-batches of this size.
    BatchSquared(usize),
}

/// Adds the reduction of this layer's per-sample gradients into `sums` (keyed by the record's
/// parameter names).
pub fn accumulate(rec: &Record, g: &Tensor, reduction: Reduction, sums: &mut ParamMap) {
    match (rec.kind, reduction) {
        (LayerKind::Linear, Reduction::Squared(w)) => {
            let g2 = g.square();
            let g2 = match w {
                Some(w) => g2 * w.unsqueeze(1),
                None => g2,
            };
            let w_sum = g2.transpose(0, 1).matmul(&rec.input.square());
            add_linear(rec, &w_sum, &g2, sums);
        }
        (LayerKind::Linear, Reduction::Absolute) => {
            let ga = g.abs();
            let w_sum = ga.transpose(0, 1).matmul(&rec.input.abs());
            add_linear(rec, &w_sum, &ga, sums);
        }
        (LayerKind::Linear, Reduction::BatchSquared(b)) => {
            let n = g.size()[0];
            let b = b.max(1) as i64;
            for (start, len) in row_spans(n, b) {
                let gb = g.narrow(0, start, len);
                let ab = rec.input.narrow(0, start, len);
                // Gradient of the batch's mean loss, squared, times the batch size.
                let w_grad = gb.transpose(0, 1).matmul(&ab) / len as f64;
                let b_grad = sum0(&gb) / len as f64;
                add_into(sums, &rec.weight, &(w_grad.square() * len as f64));
                if let Some(bias) = &rec.bias {
                    add_into(sums, bias, &(b_grad.square() * len as f64));
                }
            }
        }
        (LayerKind::Conv2d { .. } | LayerKind::ChannelAffine, reduction) => {
            accumulate_materialised(rec, g, reduction, sums)
        }
    }
}

fn add_linear(rec: &Record, w_sum: &Tensor, g_reduced: &Tensor, sums: &mut ParamMap) {
    add_into(sums, &rec.weight, w_sum);
    if let Some(bias) = &rec.bias {
        add_into(sums, bias, &sum0(g_reduced));
    }
}

fn sum0(t: &Tensor) -> Tensor {
    t.sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
}

/// Per-sample gradients materialised in chunks, then reduced.
fn accumulate_materialised(rec: &Record, g: &Tensor, reduction: Reduction, sums: &mut ParamMap) {
    let n = g.size()[0];
    if n == 0 {
        return;
    }
    let per_sample_bytes =
        4 * (rec.input.numel() + g.numel()) / n as usize + 4 * 2 * rec_param_numel(rec, g);
    let mut chunk = (MEMORY_BUDGET / per_sample_bytes.max(1)).max(1) as i64;
    if let LayerKind::Conv2d { kernel, .. } = rec.kind {
        let unfolded = 4
            * rec.input.size()[1] as usize
            * (kernel[0] * kernel[1]) as usize
            * (g.numel() / g.size()[0].max(1) as usize / g.size()[1].max(1) as usize);
        chunk = chunk.min((UNFOLD_BUDGET / unfolded.max(1)).max(1) as i64);
    }
    if let Reduction::BatchSquared(b) = reduction {
        // Whole mini-batches inside a chunk.
        let b = b.max(1) as i64;
        chunk = (chunk / b).max(1) * b;
    }
    for (start, len) in row_spans(n, chunk) {
        for (name, ps) in per_sample(rec, g, start, len) {
            let reduced = match reduction {
                Reduction::Squared(None) => sum0(&ps.square()),
                Reduction::Squared(Some(w)) => {
                    let w = w.narrow(0, start, len);
                    let shape: Vec<i64> = (0..ps.dim())
                        .map(|d| if d == 0 { len } else { 1 })
                        .collect();
                    sum0(&(ps.square() * w.view(shape.as_slice())))
                }
                Reduction::Absolute => sum0(&ps.abs()),
                Reduction::BatchSquared(b) => {
                    let b = b.max(1) as i64;
                    let mut total = ps.get(0).zeros_like();
                    for (s, l) in row_spans(len, b) {
                        let mean = sum0(&ps.narrow(0, s, l)) / l as f64;
                        total += mean.square() * l as f64;
                    }
                    total
                }
            };
            add_into(sums, &name, &reduced);
        }
    }
}

/// Each sample's weight gradient of a convolution, `[len, out, in, kh, kw]`: per sample, its
/// output gradient `[out, positions]` times its patches `[positions, in*kh*kw]`, one batched
/// matrix product. The patches are a strided view of the zero-padded input (rows of an output
/// row's positions, contiguous when the stride is 1) made contiguous.
fn conv_grads_unfolded(
    a: &Tensor,
    go: &Tensor,
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
) -> Tensor {
    let (len, channels_in) = (a.size()[0], a.size()[1]);
    let (channels_out, h_out, w_out) = (go.size()[1], go.size()[2], go.size()[3]);
    let padded = a
        .constant_pad_nd([padding[1], padding[1], padding[0], padding[0]])
        .contiguous();
    let (hp, wp) = (padded.size()[2], padded.size()[3]);
    let plane = hp * wp;
    let patches = padded
        .as_strided(
            [len, channels_in, kernel[0], kernel[1], h_out, w_out],
            [
                channels_in * plane,
                plane,
                dilation[0] * wp,
                dilation[1],
                stride[0] * wp,
                stride[1],
            ],
            None,
        )
        .reshape([len, channels_in * kernel[0] * kernel[1], h_out * w_out]);
    go.reshape([len, channels_out, h_out * w_out])
        .bmm(&patches.transpose(1, 2))
        .view([len, channels_out, channels_in, kernel[0], kernel[1]])
}

/// Scalars of one sample's gradient over the layer's parameters.
fn rec_param_numel(rec: &Record, g: &Tensor) -> usize {
    let out = g.size()[1] as usize;
    match rec.kind {
        LayerKind::Conv2d { kernel, .. } => {
            let c = rec.input.size()[1] as usize;
            out * c * (kernel[0] * kernel[1]) as usize + out
        }
        _ => 2 * out,
    }
}

/// Exact per-sample gradients of samples `start..start+len`: `(parameter name, [len, shape])`.
fn per_sample(rec: &Record, g: &Tensor, start: i64, len: i64) -> Vec<(String, Tensor)> {
    let a = rec.input.narrow(0, start, len);
    let go = g.narrow(0, start, len);
    let mut out = Vec::with_capacity(2);
    match rec.kind {
        LayerKind::Conv2d {
            kernel,
            stride,
            padding,
            dilation,
        } => {
            let w = conv_grads_unfolded(&a, &go, kernel, stride, padding, dilation);
            out.push((rec.weight.clone(), w));
            if let Some(bias) = &rec.bias {
                out.push((
                    bias.clone(),
                    go.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float),
                ));
            }
        }
        LayerKind::ChannelAffine => {
            let c = go.size()[1];
            let go = go.reshape([len, c, -1]);
            let xhat = a.reshape([len, c, -1]);
            let w = (&go * &xhat).sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
            out.push((rec.weight.clone(), w));
            if let Some(bias) = &rec.bias {
                out.push((
                    bias.clone(),
                    go.sum_dim_intlist([2i64].as_slice(), false, Kind::Float),
                ));
            }
        }
        LayerKind::Linear => {
            let w = go.unsqueeze(2) * a.unsqueeze(1);
            out.push((rec.weight.clone(), w));
            if let Some(bias) = &rec.bias {
                out.push((bias.clone(), go.shallow_clone()));
            }
        }
    }
    out
}
