//! Training throughput on the 784-400-400-10 MLP at batch 128 with Adam, in samples per second.
//!
//! Group `train_step/<device>`, each iteration one epoch over the same ~12 000 split-MNIST-shaped
//! samples (two classes, the mask over their two columns), so the three cases compare directly:
//!
//! - `libtorch_loop`: a bare loop of forward, masked cross-entropy, backward and Adam step over
//!   pre-made batches (the floor);
//! - `libtorch_loop+ewc_penalty`: the same step plus EWC's `lambda/2 * sum F (theta -
//!   theta_old)^2` through `weighted_squared_distance`, with a random positive F;
//! - `clbench_trainer`: `Trainer::train_task` with a strategy that has no hooks (shuffling,
//!   gathering batches, per-sample masks and the hook calls included);
//! - `clbench_trainer+hat`: the same with HAT on its second task (gates on both hidden layers,
//!   its regularizer, gradient conditioning and compensation, the embeddings' clamp): the goal is
//!   at most 1.3x `clbench_trainer`.
//!
//! Group `train_step_conv/<device>`: the same comparison (`libtorch_loop` against
//! `clbench_trainer`) on the conv net of `split_fashion_mnist_task.yaml`, one epoch over 4 000
//! Fashion-MNIST images (random ones when the dataset is not installed) of two classes.
//!
//! Group `train_step_joint/<device>`: `joint`'s loop against naive's on the MLP, one epoch of
//! 12 000 samples each: `naive` trains on one task's tensor, `joint` on the union of
//! [`JOINT_PARTS`] tasks' tensors (as `joint` trains on the tasks so far), its batches gathered
//! from them by index. A line after the group prints joint's samples/s over naive's.
//!
//! Quick run: `cargo bench --bench train_step -- --warm-up-time 0.5 --measurement-time 1`.

mod common;

use std::time::Duration;

use clbench::model::{masked_cross_entropy, Net};
use clbench::strategies::ewc::Ewc;
use clbench::strategy::params::{snapshot, weighted_squared_distance};
use clbench::strategy::registry::BuildContext;
use clbench::strategy::{ParamMap, Strategy, TaskContext, TaskData};
use clbench::train::{OptimizerKind, TrainSet, TrainSettings, Trainer};
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion,
    SamplingMode, Throughput,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::OptimizerConfig, Tensor};

use common::{
    column_mask, fashion_conv, fashion_or_random, median_secs, mnist_like, mnist_mlp, DEVICE,
    DEVICE_NAME, THREADS,
};

/// About one split-MNIST task (digits 0 and 1: 12 665 training images).
const SAMPLES: usize = 12_000;
const BATCH: usize = 128;
const LR: f64 = 1e-3;
/// The two classes of the task, as output columns.
const TASK_CLASSES: [i64; 2] = [0, 1];
const EWC_LAMBDA: f64 = 100.0;

/// Plain fine-tuning: every hook left at its no-op default.
struct Naive;

impl Strategy for Naive {}

/// Consecutive batches of `BATCH` rows, the last one partial, as contiguous tensors.
fn batches(x: &Tensor, y: &Tensor) -> Vec<(Tensor, Tensor)> {
    let samples = x.size()[0] as usize;
    (0..samples)
        .step_by(BATCH)
        .map(|start| {
            let len = BATCH.min(samples - start) as i64;
            (
                x.narrow(0, start as i64, len).contiguous(),
                y.narrow(0, start as i64, len).contiguous(),
            )
        })
        .collect()
}

fn adam(model: &Net) -> nn::Optimizer {
    nn::Adam::default()
        .build(&model.vs, LR)
        .expect("building Adam")
}

/// A random positive importance per parameter, as EWC's Fisher would be.
fn random_fisher(params: &ParamMap, seed: u64) -> ParamMap {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    params
        .iter()
        .map(|(name, p)| {
            let values: Vec<f32> = (0..p.numel())
                .map(|_| rng.gen_range(1e-3f32..1.0))
                .collect();
            (
                name.clone(),
                Tensor::from_slice(&values)
                    .view(p.size().as_slice())
                    .to_device(DEVICE),
            )
        })
        .collect()
}

/// `libtorch_loop`: forward, masked cross-entropy, backward and libtorch's Adam step over
/// pre-made batches, the floor both groups compare against.
fn bench_libtorch_loop(
    group: &mut BenchmarkGroup<'_, WallTime>,
    model: &Net,
    batches: &[(Tensor, Tensor)],
    mask: &Tensor,
) {
    let mut opt = adam(model);
    group.bench_function("libtorch_loop", |b| {
        b.iter(|| {
            for (xb, yb) in batches {
                let loss = masked_cross_entropy(&model.forward(xb), mask, yb);
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
        })
    });
}

/// One epoch of Adam at batch `BATCH`, as both groups' clbench loops train.
fn one_epoch_of_adam() -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerKind::Adam,
        lr: LR,
        betas: (0.9, 0.999),
        momentum: 0.0,
        batch_size: BATCH,
        epochs: 1,
        iterations: None,
        reset_optimizer: false,
        clip: Default::default(),
        lr_plateau: None,
        early_stopping: None,
    }
}

/// One task's data with one mask for every sample.
fn task_data(x: &Tensor, y: &Tensor, mask: &Tensor) -> TaskData {
    TaskData {
        task: 0,
        x: x.shallow_clone(),
        y: y.shallow_clone(),
        mask: mask.shallow_clone(),
    }
}

fn train_step(c: &mut Criterion) {
    // As clbench's workers do (runner.flush_denormal): every case below, the bare loops too,
    // runs without subnormal slowdowns, so the comparison is like for like.
    clbench::runner::denormals::flush_denormals_to_zero();
    tch::set_num_threads(THREADS);
    let (x, y) = mnist_like(SAMPLES, &TASK_CLASSES, 2);
    let mask = column_mask(&TASK_CLASSES);
    let batches = batches(&x, &y);

    let mut group = c.benchmark_group(format!("train_step/{DEVICE_NAME}"));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    // An iteration is a whole epoch (about a second on CPU).
    group.sampling_mode(SamplingMode::Flat).sample_size(10);

    bench_libtorch_loop(&mut group, &mnist_mlp(3), &batches, &mask);

    {
        let model = mnist_mlp(4);
        let mut opt = adam(&model);
        let params = model.params();
        let anchor = snapshot(&params);
        let fisher = random_fisher(&params, 5);
        group.bench_function("libtorch_loop+ewc_penalty", |b| {
            b.iter(|| {
                for (xb, yb) in &batches {
                    let ce = masked_cross_entropy(&model.forward(xb), &mask, yb);
                    let penalty = weighted_squared_distance(&params, &anchor, Some(&fisher))
                        * (EWC_LAMBDA / 2.0);
                    let loss = ce + penalty;
                    opt.zero_grad();
                    loss.backward();
                    opt.step();
                }
            })
        });
    }

    {
        let model = mnist_mlp(6);
        let task = task_data(&x, &y, &mask);
        let set = TrainSet::from_task(&task);
        let settings = one_epoch_of_adam();
        let mut trainer = Trainer::new(settings.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        group.bench_function("clbench_trainer", |b| {
            b.iter(|| {
                trainer
                    .train_task(&model, &mut Naive, &set, 0, &mut rng, |_| {})
                    .unwrap()
            })
        });

        // The real EWC strategy after one task (its Fisher computed on this task's data), so
        // every step pays its penalty and the penalty's backward pass.
        let mut ewc = Ewc::new(
            serde_yaml::from_str(&format!("lambda: {EWC_LAMBDA}")).unwrap(),
            &BuildContext {
                device: DEVICE,
                num_tasks: 2,
                seed: 0,
                clip: Default::default(),
            },
        );
        let ctx = TaskContext {
            task: 0,
            num_tasks: 2,
            model: &model,
            data: &task,
            device: DEVICE,
        };
        ewc.after_task(&ctx).unwrap();
        // The closed-form penalty gradient alone, for scale.
        let params = model.params();
        let q = match ewc.penalty(&model).unwrap() {
            Some(clbench::strategy::Penalty::Quadratic(q)) => q,
            _ => unreachable!("ewc's penalty is quadratic"),
        };
        // Gradients exist (as after the task loss's backward pass), so the closed form applies.
        masked_cross_entropy(&model.forward(&batches[0].0), &mask, &batches[0].1).backward();
        assert!(q.add_gradient(&params));
        group.bench_function("ewc_penalty_gradient_only", |b| {
            b.iter(|| {
                for _ in 0..SAMPLES.div_ceil(BATCH) {
                    q.add_gradient(&params);
                }
            })
        });
        // HAT after one task: its cumulative gates and gradient masks exist, so every step pays
        // for all of its hooks.
        let mut hat = clbench::strategies::hat::Hat::new(Default::default());
        hat.attach(&clbench::strategy::AttachContext {
            model: &model,
            num_tasks: 2,
            device: DEVICE,
            seed: 0,
        })
        .unwrap();
        hat.after_task(&ctx).unwrap();
        let mut trainer = Trainer::new(settings.clone());
        group.bench_function("clbench_trainer+hat", |b| {
            b.iter(|| {
                trainer
                    .train_task(&model, &mut hat, &set, 1, &mut rng, |_| {})
                    .unwrap()
            })
        });
        model.set_gates(None).unwrap();

        let mut trainer = Trainer::new(settings);
        group.bench_function("clbench_trainer+ewc", |b| {
            b.iter(|| {
                trainer
                    .train_task(&model, &mut ewc, &set, 1, &mut rng, |_| {})
                    .unwrap()
            })
        });
    }

    group.finish();
}

/// Images per epoch of the conv group.
const CONV_SAMPLES: usize = 4_000;

fn train_step_conv(c: &mut Criterion) {
    clbench::runner::denormals::flush_denormals_to_zero();
    tch::set_num_threads(THREADS);
    // Two classes' columns in play; labels folded onto them (the timing does not depend on it).
    let (x, y) = fashion_or_random(CONV_SAMPLES, 2);
    let y = y.remainder(2);
    let mask = column_mask(&TASK_CLASSES);
    let batches = batches(&x, &y);
    let mut group = c.benchmark_group(format!("train_step_conv/{DEVICE_NAME}"));
    group.throughput(Throughput::Elements(CONV_SAMPLES as u64));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    bench_libtorch_loop(&mut group, &fashion_conv(3), &batches, &mask);
    let model = fashion_conv(6);
    let task = task_data(&x, &y, &mask);
    let set = TrainSet::from_task(&task);
    let mut trainer = Trainer::new(one_epoch_of_adam());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    group.bench_function("clbench_trainer", |b| {
        b.iter(|| {
            trainer
                .train_task(&model, &mut Naive, &set, 0, &mut rng, |_| {})
                .unwrap()
        })
    });
    group.finish();
}

/// Tasks in the union `joint` trains on in `train_step_joint`.
const JOINT_PARTS: usize = 6;

fn train_step_joint(c: &mut Criterion) {
    clbench::runner::denormals::flush_denormals_to_zero();
    tch::set_num_threads(THREADS);
    let classes: Vec<i64> = (0..10).collect();
    let (x, y) = mnist_like(SAMPLES, &classes, 8);
    let mask = column_mask(&classes);
    let task = task_data(&x, &y, &mask);
    // The same samples as JOINT_PARTS tasks, each in its own tensor.
    let per = SAMPLES.div_ceil(JOINT_PARTS) as i64;
    let tasks: Vec<TaskData> = (0..JOINT_PARTS as i64)
        .map(|k| {
            let len = per.min(SAMPLES as i64 - k * per);
            TaskData {
                task: k as usize,
                x: x.narrow(0, k * per, len).copy(),
                y: y.narrow(0, k * per, len).copy(),
                mask: mask.shallow_clone(),
            }
        })
        .collect();
    let parts: Vec<(&TaskData, Tensor)> = tasks.iter().map(|t| (t, mask.shallow_clone())).collect();
    let sets = [
        ("naive", TrainSet::from_task(&task)),
        ("joint", TrainSet::from_parts(&parts)),
    ];
    let mut group = c.benchmark_group(format!("train_step_joint/{DEVICE_NAME}"));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let mut epochs: Vec<Box<dyn FnMut()>> = Vec::new();
    for (name, set) in &sets {
        let model = mnist_mlp(9);
        let mut trainer = Trainer::new(one_epoch_of_adam());
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut epoch = move || {
            trainer
                .train_task(&model, &mut Naive, set, 0, &mut rng, |_| {})
                .unwrap();
        };
        group.bench_function(*name, |b| b.iter(&mut epoch));
        epochs.push(Box::new(epoch));
    }
    group.finish();
    let [naive, joint] = epochs.as_mut_slice() else {
        unreachable!()
    };
    let (naive, joint) = (median_secs(3, naive), median_secs(3, joint));
    println!(
        "train_step_joint/{DEVICE_NAME}: joint {:.0} samples/s, naive {:.0} samples/s: joint/naive {:.2}x",
        SAMPLES as f64 / joint,
        SAMPLES as f64 / naive,
        naive / joint
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = train_step, train_step_conv, train_step_joint
}
criterion_main!(benches);
