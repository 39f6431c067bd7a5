//! Evaluation throughput in samples per second: clbench's `accuracy` against a bare libtorch
//! forward pass at batch 128 and against a training step, on the same network and data.
//!
//! Group `eval/<device>`: the 784-400-400-10 MLP on 10 000 MNIST-shaped samples; group
//! `eval_conv/<device>`: the conv net of `split_fashion_mnist_task.yaml` (channels [16, 32],
//! kernel 5, padding 2, fc 128) on 2 000 Fashion-MNIST images (random ones when the dataset is
//! not installed). Each iteration is one pass over the samples:
//!
//! - `forward_128`: `Net::forward` without gradients over pre-made contiguous batches of 128
//!   (the floor `accuracy` is held to: at least 0.9x its samples/s);
//! - `clbench_accuracy`: `clbench::train::accuracy` over the whole task (chunks, masks, argmax
//!   and the count included);
//! - `train_step_128`: forward, masked cross-entropy, backward and an SGD step at batch 128,
//!   for scale.
//!
//! A line after each group prints accuracy's samples/s over the forward pass's and the
//! training step's.
//!
//! Quick run: `cargo bench --bench eval -- --warm-up-time 0.5 --measurement-time 2`.

mod common;

use std::time::Duration;

use clbench::model::{masked_cross_entropy, Net};
use clbench::strategy::TaskData;
use clbench::train::{accuracy, eval_batch};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tch::{nn, nn::OptimizerConfig, Tensor};

use common::{
    column_mask, fashion_conv, fashion_or_random, median_secs, mnist_like, mnist_mlp, CLASSES,
    DEVICE_NAME, THREADS,
};

const BATCH: i64 = 128;

/// Benches the three cases on `model` over `x`, `y` in group `name` and prints the ratios.
fn compare(c: &mut Criterion, name: &str, model: &Net, x: &Tensor, y: &Tensor) {
    let n = x.size()[0];
    let classes: Vec<i64> = (0..CLASSES).collect();
    let mask = column_mask(&classes);
    let batches: Vec<(Tensor, Tensor)> = (0..n)
        .step_by(BATCH as usize)
        .map(|s| {
            let len = BATCH.min(n - s);
            (
                x.narrow(0, s, len).contiguous(),
                y.narrow(0, s, len).contiguous(),
            )
        })
        .collect();
    let data = TaskData {
        task: 0,
        x: x.shallow_clone(),
        y: y.shallow_clone(),
        mask: mask.shallow_clone(),
    };
    let mut forward = || {
        tch::no_grad(|| {
            for (xb, _) in &batches {
                let _ = model.forward(xb);
            }
        })
    };
    let mut evaluate = || {
        std::hint::black_box(accuracy(model, &data));
    };
    let mut opt = nn::Sgd::default().build(&model.vs, 1e-3).expect("SGD");
    let mut train = || {
        for (xb, yb) in &batches {
            let loss = masked_cross_entropy(
                &model.forward_t(xb, &mut clbench::model::Forward::eval()),
                &mask,
                yb,
            );
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
    };
    let mut group = c.benchmark_group(format!("{name}/{DEVICE_NAME}"));
    group.throughput(Throughput::Elements(n as u64));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.bench_function("forward_128", |b| b.iter(&mut forward));
    group.bench_function("clbench_accuracy", |b| b.iter(&mut evaluate));
    group.bench_function("train_step_128", |b| b.iter(&mut train));
    group.finish();
    let runs = 5;
    let (f, e, t) = (
        median_secs(runs, forward),
        median_secs(runs, evaluate),
        median_secs(runs, train),
    );
    let rate = |s: f64| n as f64 / s;
    println!(
        "{name}/{DEVICE_NAME}: accuracy at {} samples a pass {:.0} samples/s, forward_128 {:.0}, \
         train_step_128 {:.0}: accuracy/forward {:.2}x, accuracy/train_step {:.2}x",
        eval_batch(model, x),
        rate(e),
        rate(f),
        rate(t),
        f / e,
        t / e
    );
}

fn eval(c: &mut Criterion) {
    clbench::runner::denormals::flush_denormals_to_zero();
    tch::set_num_threads(THREADS);
    let classes: Vec<i64> = (0..CLASSES).collect();
    let (x, y) = mnist_like(10_000, &classes, 1);
    compare(c, "eval", &mnist_mlp(2), &x, &y);
}

fn eval_conv(c: &mut Criterion) {
    clbench::runner::denormals::flush_denormals_to_zero();
    tch::set_num_threads(THREADS);
    let (x, y) = fashion_or_random(2_000, 3);
    compare(c, "eval_conv", &fashion_conv(4), &x, &y);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = eval, eval_conv
}
criterion_main!(benches);
