//! The regularization family beyond EWC: online EWC, SI, MAS, LwF and joint training, each
//! against a hand or brute-force computation, against naive from the same seed, and with a
//! penalty that is zero on the first task and non-zero after it.

mod common;

use clbench::model::Forward;

use common::{linear_model, one_sample, set_all};

use clbench::importance::{mas_importance, mas_importance_batched, mas_importance_loop};
use clbench::model::{MlpSpec, Net};
use clbench::strategies::{
    lwf::distillation,
    online_ewc::{decay_and_add, OnlineEwc},
    si::Si,
};
use clbench::strategy::{
    registry::BuildContext, ParamMap, Registry, Strategy, TaskContext, TaskData,
};
use tch::{Device, Kind, Tensor};

fn ctx<'a>(task: usize, model: &'a Net, data: &'a TaskData) -> TaskContext<'a> {
    TaskContext {
        task,
        num_tasks: 3,
        model,
        data,
        device: Device::Cpu,
    }
}

/// The strategy's penalty at the model's current parameters (it must have one).
fn penalty_at(strategy: &mut dyn Strategy, model: &Net) -> f64 {
    strategy
        .penalty(model)
        .unwrap()
        .unwrap()
        .value(&model.params())
        .double_value(&[])
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.flatten(0, -1)).unwrap()
}

fn assert_close(a: &ParamMap, b: &ParamMap, tol: f64) {
    for (name, x) in a {
        let diff = (x - &b[name]).abs().max().double_value(&[]);
        let scale = b[name].abs().max().double_value(&[]).max(1e-12);
        assert!(
            diff / scale < tol,
            "{name}: relative difference {}",
            diff / scale
        );
    }
}

#[test]
fn online_ewc_decays_and_accumulates_its_fisher() {
    // With W = 0, b = 0 and one sample x of class 0, F(W) = 0.25 * [x; x]^2 and F(b) = 0.25.
    let model = linear_model(0.0);
    let bc = BuildContext {
        device: Device::Cpu,
        num_tasks: 3,
        seed: 0,
        clip: Default::default(),
    };
    let mut s = OnlineEwc::new(
        serde_yaml::from_str("{lambda: 4.0, gamma: 0.5}").unwrap(),
        &bc,
    );
    let (d0, d1) = (one_sample(0, [1.0, 2.0]), one_sample(1, [2.0, 0.0]));
    assert!(s.penalty(&model).unwrap().is_none());
    s.after_task(&ctx(0, &model, &d0)).unwrap();
    s.after_task(&ctx(1, &model, &d1)).unwrap();
    // 0.5 * [0.25, 1] + [1, 0] = [1.125, 0.5]; bias 0.5 * 0.25 + 0.25 = 0.375.
    let f = s.fisher().unwrap();
    assert_eq!(values(&f["head.weight"]), vec![1.125, 0.5, 1.125, 0.5]);
    assert_eq!(values(&f["head.bias"]), vec![0.375, 0.375]);
    set_all(&model, 1.0);
    // lambda/2 * sum F * 1 = 2 * (3.25 + 0.75) = 8.
    let p = penalty_at(&mut s, &model);
    assert!((p - 8.0).abs() < 1e-5, "{p}");
    let old: ParamMap = [("p".into(), Tensor::from_slice(&[2.0f32]))]
        .into_iter()
        .collect();
    let new: ParamMap = [("p".into(), Tensor::from_slice(&[1.0f32]))]
        .into_iter()
        .collect();
    let decayed = decay_and_add(&old, &new, 0.9)["p"].double_value(&[0]);
    assert!((decayed - 2.8).abs() < 1e-6, "{decayed}");
}

#[test]
fn si_path_integral_and_importance_match_the_hand_computation() {
    let model = linear_model(0.0);
    let mut si = Si::new(serde_yaml::from_str("{c: 2.0, xi: 0.5}").unwrap());
    let data = one_sample(0, [1.0, 2.0]);
    si.before_task(&ctx(0, &model, &data)).unwrap();
    // Two steps: the task loss sum(3 * theta) has gradient 3 everywhere; the parameters move by
    // -0.1 and then by -0.3, so omega = -(3 * -0.1) - (3 * -0.3) = 1.2 and Delta = -0.4.
    let after_first = si_steps(&mut si, &model, &[-0.1]);
    assert!((after_first - 0.3).abs() < 1e-6, "{after_first}");
    let after_second = si_steps(&mut si, &model, &[-0.4]);
    assert!((after_second - 1.2).abs() < 1e-6, "{after_second}");
    si.after_task(&ctx(0, &model, &data)).unwrap();
    // Omega = 1.2 / (0.16 + 0.5).
    let omega = 1.2 / (0.16 + 0.5);
    for v in values(&si.importance().unwrap()["head.weight"]) {
        assert!((v as f64 - omega).abs() < 1e-5, "{v} vs {omega}");
    }
    set_all(&model, 0.6); // 1 away from the anchor at -0.4
    let p = penalty_at(&mut si, &model);
    assert!((p - 2.0 * 6.0 * omega).abs() < 1e-4, "{p}");
}

/// Runs SI's hooks over steps of the task loss `sum(3 * theta)` (gradient 3 everywhere), moving
/// every parameter to each of `moves` in turn; returns the path integral of `head.bias`.
fn si_steps(si: &mut Si, model: &Net, moves: &[f64]) -> f64 {
    for &moved_to in moves {
        let loss = model
            .params()
            .values()
            .map(|p| p.sum(Kind::Float) * 3.0)
            .reduce(|a, b| a + b)
            .unwrap();
        for p in model.params().values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        si.after_task_backward(model).unwrap();
        set_all(model, moved_to);
        si.after_step(model).unwrap();
    }
    si.path_integral().unwrap()["head.bias"].double_value(&[0])
}

#[test]
fn si_total_gradient_adds_its_own_penalty_to_the_path_integral() {
    // Task 1 as in the test above: omega 1.2, Delta -0.4, so Omega = 1.2 / 0.66 and the anchor
    // is -0.4 (no penalty yet, so both variants agree). Task 2 moves -0.4 -> -0.5 -> -0.7. With
    // `task`, omega = -(3)(-0.1) - (3)(-0.2) = 0.9. With `total`, the second step's gradient
    // also has the penalty's 2c Omega (theta - anchor) = 2 * 2 * Omega * (-0.1) (the first step
    // starts at the anchor, where it is 0): omega = 0.3 + (3 - 0.4 Omega) * 0.2 = 0.9 - 0.08 Omega.
    let omega1 = 1.2 / (0.16 + 0.5);
    for (variant, expected) in [("task", 0.9), ("total", 0.9 - 0.08 * omega1)] {
        let model = linear_model(0.0);
        let config = format!("{{c: 2.0, xi: 0.5, gradient: {variant}}}");
        let mut si = Si::new(serde_yaml::from_str(&config).unwrap());
        let data = one_sample(0, [1.0, 2.0]);
        si.before_task(&ctx(0, &model, &data)).unwrap();
        let first = si_steps(&mut si, &model, &[-0.1, -0.4]);
        assert!(
            (first - 1.2).abs() < 1e-6,
            "{variant}: task 1 omega {first}"
        );
        si.after_task(&ctx(0, &model, &data)).unwrap();
        si.before_task(&ctx(1, &model, &data)).unwrap();
        let second = si_steps(&mut si, &model, &[-0.5, -0.7]);
        assert!(
            (second - expected).abs() < 1e-5,
            "{variant}: task 2 omega {second} vs {expected}"
        );
    }
}

#[test]
fn mas_importance_matches_brute_force_and_the_hand_computation() {
    // Linear model with every parameter 1 and x = (1, 2): f = (4, 4), ||f||^2 = 32,
    // d/dW = 2 f x^T = [[8, 16], [8, 16]], d/db = 2 f = (8, 8).
    let model = linear_model(1.0);
    let data = one_sample(0, [1.0, 2.0]);
    let omega = mas_importance(&model, &data.x, &data.mask, None).unwrap();
    assert_eq!(values(&omega["head.weight"]), vec![8.0, 16.0, 8.0, 16.0]);
    assert_eq!(values(&omega["head.bias"]), vec![8.0, 8.0]);
    // Only the columns in play count: with column 1 masked, its rows get no importance.
    let half = mas_importance(&model, &data.x, &Tensor::from_slice(&[true, false]), None).unwrap();
    assert_eq!(values(&half["head.weight"]), vec![8.0, 16.0, 0.0, 0.0]);

    let spec = MlpSpec {
        inputs: 6,
        hidden: vec![5, 4],
        outputs: 3,
    };
    let mlp = Net::mlp(&spec, Device::Cpu, 3);
    let x: Vec<f32> = (0..60)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0)
        .collect();
    let x = Tensor::from_slice(&x).view([10, 6]);
    let mask = Tensor::from_slice(&[true, false, true]);
    assert_close(
        &mas_importance(&mlp, &x, &mask, None).unwrap(),
        &mas_importance_loop(&mlp, &x, &mask).unwrap(),
        1e-5,
    );
}

#[test]
fn mas_per_batch_takes_the_absolute_value_after_the_batch_mean() {
    // W = 0, b = (1, -1): f = b for every x, so d||f||^2/db = 2b and d||f||^2/dW = 2 b x^T.
    let model = linear_model(0.0);
    tch::no_grad(|| {
        model.params()["head.bias"]
            .shallow_clone()
            .copy_(&Tensor::from_slice(&[1.0f32, -1.0]));
    });
    // Batches of 2: the first one's inputs cancel (mean (0, 0)), the second's mean is (2, 2).
    let x = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0, 3.0, 2.0, 1.0, 2.0]).view([4, 2]);
    let mask = Tensor::from_slice(&[true, true]);
    let batched = mas_importance_batched(&model, &x, &mask, None, 2).unwrap();
    // Omega_W = (|2 b 0| + |2 b (2, 2)|) / 2 = 2 everywhere; Omega_b = |2b| = 2.
    assert_eq!(values(&batched["head.weight"]), vec![2.0, 2.0, 2.0, 2.0]);
    assert_eq!(values(&batched["head.bias"]), vec![2.0, 2.0]);
    // Per sample: Omega_W[., 0] = 2 mean(1, 1, 3, 1) = 3, Omega_W[., 1] = 2 mean(0, 0, 2, 2) = 2.
    let per_sample = mas_importance(&model, &x, &mask, None).unwrap();
    assert_eq!(values(&per_sample["head.weight"]), vec![3.0, 2.0, 3.0, 2.0]);
    // A batch of one sample is the per-sample form.
    assert_close(
        &mas_importance_batched(&model, &x, &mask, None, 1).unwrap(),
        &per_sample,
        1e-6,
    );
}

#[test]
fn lwf_distillation_matches_the_hand_computation() {
    let mask = Tensor::from_slice(&[true, true, false]);
    // Teacher logits (0, ln 3) at T = 1 give p = (0.25, 0.75); the student equals the teacher.
    let z = Tensor::from_slice(&[0.0f32, 3f32.ln(), 5.0])
        .view([1, 3])
        .set_requires_grad(true);
    let teacher = z.detach();
    let kd = distillation(&z, &teacher, &mask, &mask, 1.0);
    let entropy = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
    assert!((kd.double_value(&[]) - entropy).abs() < 1e-6);
    // Cross-entropy is smallest where the student matches the teacher: zero gradient there.
    kd.backward();
    assert!(z.grad().abs().max().double_value(&[]) < 1e-6);
    // At T = 2 the softened targets are (1/(1+sqrt 3), sqrt 3/(1+sqrt 3)) and the loss is x T^2.
    let kd2 = distillation(&teacher, &teacher, &mask, &mask, 2.0).double_value(&[]);
    let q = 3f64.sqrt() / (1.0 + 3f64.sqrt());
    let h2 = -((1.0 - q) * (1.0 - q).ln() + q * q.ln());
    assert!((kd2 - 4.0 * h2).abs() < 1e-6, "{kd2} vs {}", 4.0 * h2);
    // The class scenario: the student's softmax also covers the new class (logit ln 4), where
    // the teacher's target is 0: p = (1, 3, 4)/8, so KD = -(0.25 ln 1/8 + 0.75 ln 3/8).
    let all = Tensor::from_slice(&[true, true, true]);
    let student = Tensor::from_slice(&[0.0f32, 3f32.ln(), 4f32.ln()]).view([1, 3]);
    let kd3 = distillation(&student, &teacher, &mask, &all, 1.0).double_value(&[]);
    let expected = -(0.25 * (1.0f64 / 8.0).ln() + 0.75 * (3.0f64 / 8.0).ln());
    assert!((kd3 - expected).abs() < 1e-6, "{kd3} vs {expected}");
}

#[test]
fn each_method_ends_elsewhere_than_naive_and_penalizes_from_the_second_task_on() {
    let (_, naive) = common::run_synthetic("naive", "");
    let cases = [
        ("l2", "    lambda: 10.0\n", true),
        ("ewc", "    lambda: 1000.0\n", true),
        ("online_ewc", "    lambda: 1000.0\n    gamma: 0.9\n", true),
        ("si", "    c: 10.0\n", true),
        ("mas", "    lambda: 10.0\n", true),
        ("lwf", "    alpha: 1.0\n", false),
        ("joint", "", false),
    ];
    for (name, params, has_penalty) in cases {
        let (result, weights) = common::run_synthetic(name, params);
        let diff = naive
            .iter()
            .zip(&weights)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff > 1e-3, "{name} ended within {diff} of naive");
        if has_penalty {
            for point in &result.curve {
                match point.task {
                    0 => assert_eq!(point.penalty, 0.0, "{name}: penalty on the first task"),
                    _ => assert!(
                        point.penalty > 0.0,
                        "{name}: zero penalty on task {}",
                        point.task
                    ),
                }
            }
        }
    }
}

#[test]
fn lwf_adds_distillation_from_the_second_task_on() {
    let fixed = lwf_losses_on_two_tasks("fixed");
    assert_eq!(fixed[0], 1.0, "no distillation on the first task");
    assert!(
        fixed[1] > 1.0,
        "distillation must add to the loss on task 1: {}",
        fixed[1]
    );
    // van de Ven's weighting on task t = 2: CE/2 + KD/2, with KD = fixed - CE and CE = 1.
    let by_task = lwf_losses_on_two_tasks("by_task");
    assert_eq!(by_task[0], 1.0, "task 1 is all cross-entropy");
    let kd = fixed[1] - 1.0;
    assert!(
        (by_task[1] - (0.5 + 0.5 * kd)).abs() < 1e-6,
        "{} vs {}",
        by_task[1],
        0.5 + 0.5 * kd
    );
}

/// LwF's loss on one sample of each of two tasks with a cross-entropy of exactly 1.
fn lwf_losses_on_two_tasks(weighting: &str) -> Vec<f64> {
    let registry = Registry::load().unwrap();
    let reg = registry.get("lwf").unwrap();
    let mut yaml = serde_yaml::Mapping::new();
    yaml.insert("weighting".into(), weighting.into());
    let params = (reg.resolve)(&yaml).unwrap();
    let bc = BuildContext {
        device: Device::Cpu,
        num_tasks: 2,
        seed: 0,
        clip: Default::default(),
    };
    let mut lwf = (reg.build)(&params, &bc).unwrap();
    let model = Net::mlp(
        &MlpSpec {
            inputs: 2,
            hidden: vec![4],
            outputs: 4,
        },
        Device::Cpu,
        1,
    );
    let mask0 = Tensor::from_slice(&[true, true, false, false]);
    let mask1 = Tensor::from_slice(&[false, false, true, true]);
    let t0 = TaskData {
        mask: mask0,
        ..one_sample(0, [1.0, -1.0])
    };
    let t1 = TaskData {
        mask: mask1.shallow_clone(),
        y: Tensor::from_slice(&[2i64]),
        ..one_sample(1, [0.5, 2.0])
    };
    let batch_mask = mask1.unsqueeze(0);
    let ce = Tensor::from(1.0f32);
    let mut losses = Vec::new();
    for (t, data) in [(0, &t0), (1, &t1)] {
        lwf.before_task(&ctx(t, &model, data)).unwrap();
        // Move the student away from the teacher so that distillation has something to say.
        tch::no_grad(|| {
            let _ = model.params()["head.bias"].shallow_clone().fill_(t as f64);
        });
        let (features, logits) = model.forward_features_t(&data.x, &mut Forward::eval());
        let batch = clbench::strategy::Batch {
            x: &data.x,
            y: &data.y,
            mask: &batch_mask,
            task: t,
            features: &features,
        };
        let loss = lwf
            .task_loss(&batch, &logits, ce.shallow_clone())
            .unwrap()
            .double_value(&[]);
        losses.push(loss);
        lwf.after_task(&ctx(t, &model, data)).unwrap();
    }
    losses
}

#[test]
fn the_closed_form_gradient_of_a_quadratic_penalty_equals_autograd() {
    use clbench::strategy::QuadraticPenalty;
    // Three terms with different weights and anchors, some weights zero (as a Fisher of an
    // unused head), against backpropagation through the exact value.
    let model = Net::mlp(
        &MlpSpec {
            inputs: 3,
            hidden: vec![4],
            outputs: 2,
        },
        Device::Cpu,
        9,
    );
    let params = model.params();
    let mut rng = 0u64;
    let mut random = |p: &Tensor, zeros: bool| {
        let values: Vec<f32> = (0..p.numel())
            .map(|i| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (rng >> 40) as f32 / (1u64 << 24) as f32;
                if zeros && i % 3 == 0 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        Tensor::from_slice(&values).view(p.size().as_slice())
    };
    let terms: Vec<(Option<ParamMap>, ParamMap)> = (0..3)
        .map(|t| {
            let w = params
                .iter()
                .map(|(k, p)| (k.clone(), random(p, t < 2)))
                .collect();
            let a = params
                .iter()
                .map(|(k, p)| (k.clone(), random(p, false) - 0.5))
                .collect();
            (Some(w), a)
        })
        .collect();
    let q = QuadraticPenalty::new(0.7, terms);
    let reference: Vec<Tensor> = Tensor::run_backward(
        &[q.value(&params)],
        &params.values().collect::<Vec<_>>(),
        false,
        false,
    );
    (params.values().map(|p| p.sum(Kind::Float)).sum::<Tensor>() * 0.0).backward();
    for p in params.values() {
        let _ = p.grad().zero_();
    }
    assert!(q.add_gradient(&params));
    for ((name, p), r) in params.iter().zip(reference) {
        let diff = (p.grad() - &r).abs().max().double_value(&[]);
        let scale = r.abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{name}: {diff} (scale {scale})"
        );
    }
}
