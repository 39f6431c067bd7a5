//! `imm` (Incremental Moment Matching): both merges on a two-task toy by hand (the 1e-8 Fisher
//! floor, alphas, heads merged or not), L2-transfer's penalty and gradient, drop-transfer's
//! weights and the training loop's chain rule through them, where the merged weights live, and
//! imm against naive from the same seed on a small real split MNIST run.

mod common;

use std::path::Path;

use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use clbench::fisher::{diagonal_fisher, Estimator, FisherOptions};
use clbench::model::{MlpSpec, Net};
use clbench::strategies::imm::{mode_merge, Imm, FISHER_FLOOR};
use clbench::strategy::{
    params::snapshot, registry::BuildContext, Boundary, ParamMap, Penalty, Strategy, TaskContext,
    TaskData,
};
use clbench::train::{OptimizerKind, TrainSet, TrainSettings, Trainer};

const SEED: u64 = 7;

/// A 2-2-2 ReLU network (`trunk.0`, then the head).
fn small_mlp() -> Net {
    let spec = MlpSpec {
        inputs: 2,
        hidden: vec![2],
        outputs: 2,
    };
    Net::mlp(&spec, Device::Cpu, 0)
}

fn imm(yaml: &str) -> Imm {
    let ctx = BuildContext {
        device: Device::Cpu,
        num_tasks: 3,
        seed: SEED,
        clip: Default::default(),
    };
    Imm::new(serde_yaml::from_str(yaml).unwrap(), &ctx)
}

fn ctx<'a>(task: usize, model: &'a Net, data: &'a TaskData) -> TaskContext<'a> {
    TaskContext {
        task,
        num_tasks: 3,
        model,
        data,
        device: Device::Cpu,
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float))
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(1.0),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

/// Sets every parameter of `model` to `value`, then the head's weight to `head` (row-major).
fn set_weights(model: &Net, value: f64, head: [f32; 4]) {
    common::set_all(model, value);
    tch::no_grad(|| {
        let h = Tensor::from_slice(&head).view([2, 2]);
        model.params()["head.weight"].shallow_clone().copy_(&h);
    });
}

/// One sample `x = (1, 0)` of class 0: the weights from the second input get no gradient, so
/// their Fisher is exactly 0 and only the 1e-8 floor weighs them in mode-IMM.
fn sample(task: usize) -> TaskData {
    common::one_sample(task, [1.0, 0.0])
}

/// Trains nothing: `theta_0` is every parameter 1 (head [[1, 0], [0, 1]]), `theta_1` every
/// parameter 3 (head [[3, 1], [0, 3]]); runs both tasks' `after_task` and returns the model at
/// `theta_1` and the merge `weight_edit` asks for after the second task.
fn two_end_points(strategy: &mut Imm, model: &Net) -> ParamMap {
    let (d0, d1) = (sample(0), sample(1));
    set_weights(model, 1.0, [1.0, 0.0, 0.0, 1.0]);
    strategy.after_task(&ctx(0, model, &d0)).unwrap();
    assert!(
        strategy
            .weight_edit(&ctx(0, model, &d0), Boundary::AfterTask)
            .unwrap()
            .is_none(),
        "one end point: nothing to merge"
    );
    set_weights(model, 3.0, [3.0, 1.0, 0.0, 3.0]);
    strategy.after_task(&ctx(1, model, &d1)).unwrap();
    strategy
        .weight_edit(&ctx(1, model, &d1), Boundary::AfterTask)
        .unwrap()
        .unwrap()
        .values
}

#[test]
fn mean_imm_merges_by_hand_with_equal_and_given_alphas_and_heads_merged_or_not() {
    let model = small_mlp();
    let merged = two_end_points(&mut imm("{merge: mean}"), &model);
    // Heads are not merged by default: only the trunk is edited, to (1 + 3)/2.
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        vec!["trunk.0.bias", "trunk.0.weight"]
    );
    close(&values(&merged["trunk.0.weight"]), &[2.0; 4], "mean");
    // alpha_last 0.25: 0.75 * 1 + 0.25 * 3 = 1.5.
    let merged = two_end_points(&mut imm("{merge: mean, alpha_last: 0.25}"), &model);
    close(&values(&merged["trunk.0.bias"]), &[1.5; 2], "alpha_last");
    // merge_heads: the head is the mean of [[1, 0], [0, 1]] and [[3, 1], [0, 3]].
    let merged = two_end_points(&mut imm("{merge: mean, merge_heads: true}"), &model);
    close(
        &values(&merged["head.weight"]),
        &[2.0, 0.5, 0.0, 2.0],
        "head",
    );
    close(&values(&merged["head.bias"]), &[2.0, 2.0], "head bias");
}

/// Each task's sampled-label Fisher, as the strategy estimates it (seed + task), with the floor.
fn fisher_of(model: &Net, task: usize) -> ParamMap {
    let d = sample(task);
    let opts = FisherOptions::from_settings(Estimator::Sampled, None, 1, 1, SEED + task as u64);
    diagonal_fisher(model, &d.x, &d.y, &d.mask, &opts)
        .unwrap()
        .into_iter()
        .map(|(k, f)| (k, f + FISHER_FLOOR))
        .collect()
}

#[test]
fn mode_imm_weights_by_the_floored_fisher_by_hand() {
    let model = small_mlp();
    set_weights(&model, 1.0, [1.0, 0.0, 0.0, 1.0]);
    let f0 = fisher_of(&model, 0);
    set_weights(&model, 3.0, [3.0, 1.0, 0.0, 3.0]);
    let f1 = fisher_of(&model, 1);
    for alpha_last in [None, Some(0.25)] {
        let yaml = match alpha_last {
            None => "{merge: mode, merge_heads: true}".to_string(),
            Some(a) => format!("{{merge: mode, merge_heads: true, alpha_last: {a}}}"),
        };
        let merged = two_end_points(&mut imm(&yaml), &model);
        let (a0, a1) = match alpha_last {
            None => (0.5, 0.5),
            Some(a) => (1.0 - a, a),
        };
        for (name, theta0, theta1) in [
            ("trunk.0.weight", vec![1.0; 4], vec![3.0; 4]),
            (
                "head.weight",
                vec![1.0, 0.0, 0.0, 1.0],
                vec![3.0, 1.0, 0.0, 3.0],
            ),
        ] {
            let (g0, g1) = (values(&f0[name]), values(&f1[name]));
            let expected: Vec<f64> = (0..4)
                .map(|i| {
                    let (w0, w1) = (a0 * g0[i], a1 * g1[i]);
                    (w0 * theta0[i] + w1 * theta1[i]) / (w0 + w1)
                })
                .collect();
            close(&values(&merged[name]), &expected, name);
        }
        // The weights from the input that is always 0 have no Fisher in either task: the floor
        // alone weighs them, so they merge as mean-IMM does (a0 * 1 + a1 * 3).
        let w = values(&merged["trunk.0.weight"]);
        close(&[w[1], w[3]], &[a0 + 3.0 * a1; 2], "floored weights");
        assert!((values(&f0["trunk.0.weight"])[1] - FISHER_FLOOR).abs() < 1e-15);
    }
    // The pure function: F = (1, 3), theta = (0, 4), equal alphas: (0 + 12) / 4 = 3.
    let t = [Tensor::from(0.0f64), Tensor::from(4.0f64)];
    let f = [Tensor::from(1.0f64), Tensor::from(3.0f64)];
    let m = mode_merge(&[&t[0], &t[1]], &[&f[0], &f[1]], &[0.5, 0.5]);
    assert!((m.double_value(&[]) - 3.0).abs() < 1e-12);
}

#[test]
fn evaluate_only_trains_on_from_the_end_point_and_train_on_from_the_merge() {
    let model = small_mlp();
    let d2 = sample(2);
    let mut evaluate_only = imm("{merge: mean}");
    two_end_points(&mut evaluate_only, &model);
    // The evaluation (and the checkpoint) saw the merge; before task 2 the end point of task 1
    // (every parameter 3, head included) is written back.
    common::set_all(&model, 2.0);
    let edit = evaluate_only
        .weight_edit(&ctx(2, &model, &d2), Boundary::BeforeTask)
        .unwrap()
        .unwrap();
    assert_eq!(edit.optimizer, clbench::strategy::OptimizerAfterEdit::Keep);
    assert_eq!(edit.values.len(), 4, "every parameter goes back");
    close(
        &values(&edit.values["trunk.0.weight"]),
        &[3.0; 4],
        "end point",
    );
    close(
        &values(&edit.values["head.weight"]),
        &[3.0, 1.0, 0.0, 3.0],
        "head",
    );
    // train_on: nothing is written back, so the next task starts from the merge.
    let mut train_on = imm("{merge: mean, merged_weights: train_on}");
    two_end_points(&mut train_on, &model);
    assert!(train_on
        .weight_edit(&ctx(2, &model, &d2), Boundary::BeforeTask)
        .unwrap()
        .is_none());
}

#[test]
fn l2_transfer_penalty_and_gradient_match_the_hand_computation() {
    let model = common::linear_model(1.0);
    let data = common::one_sample(0, [1.0, 2.0]);
    let mut s = imm("{transfer: l2, lambda: 0.5}");
    s.before_task(&ctx(0, &model, &data)).unwrap();
    assert!(
        s.penalty(&model).unwrap().is_none(),
        "no penalty on the first task"
    );
    s.after_task(&ctx(0, &model, &data)).unwrap();
    s.before_task(&ctx(1, &model, &data)).unwrap(); // anchor: every parameter 1
    common::set_all(&model, 3.0);
    let params = model.params();
    let Some(Penalty::Quadratic(q)) = s.penalty(&model).unwrap() else {
        panic!("l2-transfer is a quadratic penalty")
    };
    // lambda * sum (3 - 1)^2 over the 6 parameters, no 1/2: 0.5 * 4 * 6 = 12.
    assert!((q.value(&params).double_value(&[]) - 12.0).abs() < 1e-6);
    // Gradient 2 lambda (theta - theta_prev) = 2.
    let zero = params
        .values()
        .map(|p| p.sum(Kind::Float))
        .reduce(|a, b| a + b)
        .unwrap()
        * 0.0;
    zero.backward();
    assert!(q.add_gradient(&params));
    for (name, p) in &params {
        close(&values(&p.grad()), &vec![2.0; p.numel()], name);
    }
}

fn sgd_step(lr: f64) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerKind::Sgd,
        lr,
        betas: (0.9, 0.999),
        momentum: 0.0,
        batch_size: 1,
        epochs: 1,
        iterations: Some(1),
        reset_optimizer: true,
        clip: Default::default(),
        lr_plateau: None,
        early_stopping: None,
    }
}

/// Drop-transfer with anchor `mu` (every parameter 1) and `theta` 3 (head [[3, 1], [0, 3]]):
/// each hidden unit's row and bias run at `mu` (dropped) or `mu + (theta - mu)/0.5 = 5` (kept);
/// the head is never dropped. One SGD step of the real loop moves `theta` by
/// `-lr * m/keep * dL/dw` at those weights, and leaves the stored weights otherwise in place.
#[test]
fn drop_transfer_runs_at_the_dropped_weights_and_chain_rules_the_gradient() {
    let model = small_mlp();
    let data = TaskData {
        task: 1,
        x: Tensor::from_slice(&[0.5f32, -0.25]).view([1, 2]),
        y: Tensor::from_slice(&[1i64]),
        mask: Tensor::from_slice(&[true, true]),
    };
    let config = "{transfer: drop, drop_rate: 0.5}";
    let (mut s, mut twin) = (imm(config), imm(config));
    for strategy in [&mut s, &mut twin] {
        common::set_all(&model, 1.0);
        strategy.after_task(&ctx(0, &model, &data)).unwrap();
        strategy.before_task(&ctx(1, &model, &data)).unwrap();
    }
    set_weights(&model, 3.0, [3.0, 1.0, 0.0, 3.0]);
    // The twin draws the masks the loop's first batch will draw.
    let fw = twin.forward_weights(&model, 1).unwrap();
    assert_eq!(
        fw.keys().collect::<Vec<_>>(),
        vec!["trunk.0.bias", "trunk.0.weight"],
        "the head is never dropped"
    );
    let scale = values(&fw["trunk.0.bias"].scale);
    assert!(scale.iter().all(|&m| m == 0.0 || m == 2.0), "{scale:?}");
    let theta = snapshot(&model.params());
    let effective: Vec<f64> = scale
        .iter()
        .map(|&m| if m == 0.0 { 1.0 } else { 5.0 })
        .collect();
    let w = &fw["trunk.0.weight"];
    let swapped = &theta["trunk.0.weight"] * &w.scale + &w.offset;
    close(
        &values(&swapped),
        &[effective[0], effective[0], effective[1], effective[1]],
        "rows",
    );

    // dL/dw at the dropped weights, by autograd on a copy holding them.
    let copy = small_mlp();
    tch::no_grad(|| {
        for (name, p) in copy.params() {
            let value = match fw.get(&name) {
                Some(f) => &theta[&name] * &f.scale + &f.offset,
                None => theta[&name].copy(),
            };
            p.shallow_clone().copy_(&value);
        }
    });
    let logits = copy.forward(&data.x);
    clbench::model::masked_cross_entropy(&logits, &data.mask.unsqueeze(0), &data.y).backward();
    let lr = 0.1;
    let mut trainer = Trainer::new(sgd_step(lr));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    trainer
        .train_task(
            &model,
            &mut s,
            &TrainSet::from_task(&data),
            1,
            &mut rng,
            |_| {},
        )
        .unwrap();
    for (name, p) in model.params() {
        let g = copy.params()[&name].grad();
        let chain = match fw.get(&name) {
            Some(f) => g * &f.scale,
            None => g,
        };
        let expected = &theta[&name] - chain * lr;
        close(&values(&p), &values(&expected), &name);
    }
}

#[test]
fn imm_differs_from_naive_from_the_same_seed_on_split_mnist() {
    let Some(dir) = small_mnist() else { return };
    let run = |strategy: &str| common::run_first_job(&mnist_yaml(dir.path(), strategy)).0;
    let naive = run("  - name: naive\n");
    for imm in [
        "  - name: imm\n    merge: mean\n",
        "  - name: imm\n    merge: mode\n    transfer: drop\n",
    ] {
        let result = run(imm);
        assert_eq!(result.accuracy.len(), 2);
        assert_ne!(result.accuracy, naive.accuracy, "{imm}");
        // The diagonal before the merge is a trained task; the merge changes the last row.
        assert!(result.accuracy[1][1] > 0.6, "{imm}: {:?}", result.accuracy);
    }
}

/// The first 2000 training and 1000 test images of the real MNIST, as IDX files in a temporary
/// folder; `None` (the test skipped) when the data is not on this machine.
fn small_mnist() -> Option<tempfile::TempDir> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    let Ok(data) = clbench::data::load_mnist(&source, false) else {
        common::skip("imm_differs_from_naive", "no MNIST at ../shared/data/mnist");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    for (prefix, split, n) in [("train", &data.train, 2000), ("t10k", &data.test, 1000)] {
        let pixels = split.rows * split.cols;
        let mut images = Vec::new();
        for v in [0x0803u32, n as u32, split.rows as u32, split.cols as u32] {
            images.extend_from_slice(&v.to_be_bytes());
        }
        images.extend_from_slice(&split.images[..n * pixels]);
        std::fs::write(
            dir.path().join(format!("{prefix}-images-idx3-ubyte")),
            images,
        )
        .unwrap();
        let mut labels = Vec::new();
        for v in [0x0801u32, n as u32] {
            labels.extend_from_slice(&v.to_be_bytes());
        }
        labels.extend_from_slice(&split.labels[..n]);
        std::fs::write(
            dir.path().join(format!("{prefix}-labels-idx1-ubyte")),
            labels,
        )
        .unwrap();
    }
    Some(dir)
}

/// Task-incremental split MNIST in two tasks (0/1, 2/3), a 784-100 MLP, one SGD epoch.
fn mnist_yaml(data: &Path, strategies: &str) -> String {
    common::synthetic_yaml("imm_mnist", &data.join("out"), strategies)
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!(
                "  name: mnist\n  dir: {}\n  download: false",
                data.display()
            ),
        )
        .replace("tasks: [[0, 1], [2, 3], [4, 5]]", "tasks: [[0, 1], [2, 3]]")
        .replace("hidden: [32]", "hidden: [100]")
        .replace("optimizer: adam", "optimizer: sgd")
        .replace("lr: 0.01", "lr: 0.1")
        .replace("epochs: 2", "epochs: 1")
        .replace("seeds: [1, 2]", "seeds: [1]")
}

/// A job's accuracy matrix, its curve's (task loss, penalty) and its final weights.
type Outcome = (Vec<Vec<f64>>, Vec<(f64, f64)>, Vec<f32>);

/// Runs the first job of `text`, checkpointing to `ckpt` if given; with `stop_in_task` it panics
/// (as a kill would stop it) on the first pass of that task. Returns the accuracy matrix, the
/// curve's losses and the final weights.
fn run_job(text: &str, ckpt: Option<&Path>, stop_in_task: Option<usize>) -> Option<Outcome> {
    let on_event = |event: clbench::runner::JobEvent| {
        if let (clbench::runner::JobEvent::Epoch { task, .. }, Some(stop)) = (event, stop_in_task) {
            if task == stop {
                panic!("simulated kill in task {task}");
            }
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::run_first_job_with(text, ckpt, &on_event)
    }));
    let (result, model) = outcome.ok()?;
    let curve = result
        .curve
        .iter()
        .map(|p| (p.task_loss, p.penalty))
        .collect();
    Some((result.accuracy, curve, common::flat_weights(&model)))
}

/// tests/checkpoint.rs resumes imm at its defaults; these are the other paths: mode-IMM's
/// Fishers, drop-transfer's mask stream, and the merge trained on. A job killed in task 2 and
/// resumed from the checkpoint after task 1 (a merge in the model, the end point in the state)
/// ends bit for bit as an uninterrupted one.
#[test]
fn imm_resumes_after_a_merge_exactly_in_every_mode() {
    for params in [
        "    merge: mode\n    transfer: drop\n",
        "    merge: mean\n    transfer: l2\n    lambda: 0.01\n    merged_weights: train_on\n    merge_heads: true\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let entry = format!("  - name: imm\n{params}");
        let text = common::synthetic_yaml("imm_ckpt", dir.path(), &entry)
            .replace("seeds: [1, 2]", "seeds: [4]")
            .replace("optimizer: adam", "optimizer: sgd");
        let reference = run_job(&text, None, None).unwrap();
        let ckpt = dir.path().join("job.safetensors");
        assert!(run_job(&text, Some(&ckpt), Some(2)).is_none(), "not interrupted");
        let resumed = run_job(&text, Some(&ckpt), None).unwrap();
        assert_eq!(resumed.0, reference.0, "{params}: accuracy matrix");
        assert_eq!(resumed.1, reference.1, "{params}: curve");
        assert_eq!(resumed.2, reference.2, "{params}: weights");
    }
}
