//! The strategies against hand computations, and their effect against naive from the same seed.

mod common;

use common::{linear_model, one_sample, set_all};

use std::sync::Mutex;

use clbench::model::Net;
use clbench::strategies::ewc::{merge_mean, Ewc};
use clbench::strategy::{
    registry::{BuildContext, Registration},
    Penalty, Registry, Strategy, TaskContext, TaskData,
};
use tch::{Device, Kind, Tensor};

fn build(name: &str, params: &str) -> Box<dyn Strategy> {
    let registry = Registry::load().unwrap();
    let reg = registry.get(name).unwrap();
    let mapping: serde_yaml::Mapping = serde_yaml::from_str(params).unwrap();
    let resolved = (reg.resolve)(&mapping).unwrap();
    (reg.build)(
        &resolved,
        &BuildContext {
            device: Device::Cpu,
            num_tasks: 3,
            seed: 0,
            clip: Default::default(),
        },
    )
    .unwrap()
}

/// The gradients the training loop applies for the strategy's penalty (the closed form of a
/// quadratic penalty), starting from zero gradients.
fn closed_form_grads(model: &Net, strategy: &mut dyn Strategy) -> Vec<(String, Vec<f32>)> {
    let params = model.params();
    // Defined, zero gradients, as after the task loss's backward pass with a zero loss.
    (params.values().map(|p| p.sum(Kind::Float)).sum::<Tensor>() * 0.0).backward();
    for p in params.values() {
        let _ = p.grad().zero_();
    }
    match strategy.penalty(model).unwrap().unwrap() {
        Penalty::Quadratic(q) => assert!(q.add_gradient(&params)),
        Penalty::Graph(_) => panic!("expected a quadratic penalty"),
    }
    params
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                Vec::<f32>::try_from(p.grad().flatten(0, -1)).unwrap(),
            )
        })
        .collect()
}

fn grads_after_backward(model: &Net, loss: &Tensor) -> Vec<(String, Vec<f32>)> {
    let params = model.params();
    for p in params.values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    loss.backward();
    params
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                Vec::<f32>::try_from(p.grad().flatten(0, -1)).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_strategy_is_registered_once_and_builds_from_its_defaults() {
    let registry = Registry::load().unwrap();
    let names = registry.names();
    for required in ["naive", "l2", "ewc"] {
        assert!(
            names.contains(&required),
            "{required} is not registered: {names:?}"
        );
    }
    for reg in registry.iter() {
        let defaults = (reg.resolve)(&serde_yaml::Mapping::new()).unwrap();
        (reg.build)(
            &defaults,
            &BuildContext {
                device: Device::Cpu,
                num_tasks: 2,
                seed: 0,
                clip: Default::default(),
            },
        )
        .unwrap();
        for &clbench::core::ParamSpec {
            name: param, doc, ..
        } in reg.params
        {
            // A parameter added after results existed may be left out of the resolved set at
            // its default, so those results keep their ids; its description names the default.
            assert!(
                defaults.get(param).is_some() || doc.contains("default"),
                "{}: documented parameter {param} has no default",
                reg.name
            );
        }
    }
}

#[test]
fn unknown_parameters_are_rejected_with_the_known_ones_listed() {
    let registry = Registry::load().unwrap();
    let mapping: serde_yaml::Mapping = serde_yaml::from_str("lamda: 3").unwrap();
    let err = (registry.get("ewc").unwrap().resolve)(&mapping).unwrap_err();
    assert!(
        err.contains("lamda") && err.contains("lambda") && err.contains("merge"),
        "{err}"
    );
}

#[test]
fn l2_penalty_and_gradient_match_the_hand_computation() {
    let mut l2 = build("l2", "lambda: 3.0");
    let model = linear_model(0.0);
    assert!(
        l2.penalty(&model).unwrap().is_none(),
        "no penalty during the first task"
    );
    let data = one_sample(0, [1.0, 2.0]);
    l2.after_task(&TaskContext {
        task: 0,
        num_tasks: 3,
        model: &model,
        data: &data,
        device: Device::Cpu,
    })
    .unwrap();
    set_all(&model, 1.0);
    // 6 parameters, each 1 away from its anchor: 3/2 * 6 = 9; gradient lambda * (theta - anchor) = 3.
    let penalty = l2.penalty(&model).unwrap().unwrap().value(&model.params());
    let closed = closed_form_grads(&model, l2.as_mut());
    assert!((penalty.double_value(&[]) - 9.0).abs() < 1e-6);
    for (name, g) in grads_after_backward(&model, &penalty) {
        assert!(g.iter().all(|&v| (v - 3.0).abs() < 1e-6), "{name}: {g:?}");
    }
    for (name, g) in closed {
        assert!(
            g.iter().all(|&v| (v - 3.0).abs() < 1e-6),
            "closed form, {name}: {g:?}"
        );
    }
}

#[test]
fn ewc_penalty_and_gradient_match_the_hand_computation() {
    // W = 0, b = 0 gives p = (0.5, 0.5); for x = (1, 2), y = 0 the gradient of -log p_0 is
    // (p - e_0) x^T = [[-0.5, -1], [0.5, 1]] for W and (-0.5, 0.5) for b, so with one sample
    // F = [[0.25, 1], [0.25, 1]] and (0.25, 0.25).
    let model = linear_model(0.0);
    let mut ewc = Ewc::new(
        serde_yaml::from_str("lambda: 2.0").unwrap(),
        &BuildContext {
            device: Device::Cpu,
            num_tasks: 3,
            seed: 0,
            clip: Default::default(),
        },
    );
    let data = one_sample(0, [1.0, 2.0]);
    ewc.after_task(&TaskContext {
        task: 0,
        num_tasks: 3,
        model: &model,
        data: &data,
        device: Device::Cpu,
    })
    .unwrap();
    let fisher = ewc.fisher().unwrap();
    let w: Vec<f32> = Vec::try_from(fisher["head.weight"].flatten(0, -1)).unwrap();
    let b: Vec<f32> = Vec::try_from(&fisher["head.bias"]).unwrap();
    assert_eq!(w, vec![0.25, 1.0, 0.25, 1.0]);
    assert_eq!(b, vec![0.25, 0.25]);

    set_all(&model, 1.0);
    // lambda/2 * sum F * 1^2 = 1 * (2.5 + 0.5) = 3; gradient lambda * F * (theta - anchor) = 2F.
    let penalty = ewc.penalty(&model).unwrap().unwrap().value(&model.params());
    let closed = closed_form_grads(&model, &mut ewc);
    assert!(
        (penalty.double_value(&[]) - 3.0).abs() < 1e-6,
        "{}",
        penalty.double_value(&[])
    );
    for (name, g) in grads_after_backward(&model, &penalty) {
        let expected: Vec<f32> = if name.ends_with("weight") {
            vec![0.5, 2.0, 0.5, 2.0]
        } else {
            vec![0.5, 0.5]
        };
        assert_eq!(g, expected, "{name}");
    }
    for (name, g) in closed {
        let expected: Vec<f32> = if name.ends_with("weight") {
            vec![0.5, 2.0, 0.5, 2.0]
        } else {
            vec![0.5, 0.5]
        };
        assert_eq!(g, expected, "closed form, {name}");
    }
}

#[test]
fn ewc_merges_fishers_as_the_running_mean_over_three_tasks() {
    let model = linear_model(0.0);
    let mut ewc = Ewc::new(
        serde_yaml::from_str("{}").unwrap(),
        &BuildContext {
            device: Device::Cpu,
            num_tasks: 3,
            seed: 0,
            clip: Default::default(),
        },
    );
    let inputs = [[1.0f32, 2.0], [3.0, -1.0], [0.5, 4.0]];
    let mut singles = Vec::new();
    for (t, x) in inputs.iter().enumerate() {
        let data = TaskData {
            x: Tensor::from_slice(x).view([1, 2]),
            ..one_sample(t, [1.0, 2.0])
        };
        singles.push(
            clbench::fisher::diagonal_fisher(
                &model,
                &data.x,
                &data.y,
                &data.mask,
                &Default::default(),
            )
            .unwrap(),
        );
        ewc.after_task(&TaskContext {
            task: t,
            num_tasks: 3,
            model: &model,
            data: &data,
            device: Device::Cpu,
        })
        .unwrap();
    }
    // (F_new + t F_old)/(t+1) applied at t = 0, 1, 2 is the plain mean of the three.
    for (name, merged) in ewc.fisher().unwrap() {
        let mean = (&singles[0][name] + &singles[1][name] + &singles[2][name]) / 3.0;
        let diff = (merged - mean).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: {diff}");
    }
    // And the formula itself on constants: t = 2, F_old = 3, F_new = 6 gives (6 + 2*3)/3 = 4.
    let old = [("p".to_string(), Tensor::from_slice(&[3.0f32]))]
        .into_iter()
        .collect();
    let new = [("p".to_string(), Tensor::from_slice(&[6.0f32]))]
        .into_iter()
        .collect();
    assert_eq!(merge_mean(&old, &new, 2)["p"].double_value(&[0]), 4.0);
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn regularizers_end_with_different_weights_than_naive_from_the_same_seed() {
    let naive = common::run_synthetic("naive", "").1;
    assert_eq!(
        naive,
        common::run_synthetic("naive", "").1,
        "the same seed must give the same weights"
    );
    for (name, params) in [
        ("l2", "    lambda: 10.0\n"),
        ("ewc", "    lambda: 1000.0\n"),
    ] {
        let w = common::run_synthetic(name, params).1;
        let diff = max_abs_diff(&naive, &w);
        assert!(diff > 1e-3, "{name} ended within {diff} of naive's weights");
    }
}

static HOOKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every hook call, to check the documented order.
struct Recording;

impl Strategy for Recording {
    fn before_task(&mut self, ctx: &TaskContext) -> anyhow::Result<()> {
        HOOKS
            .lock()
            .unwrap()
            .push(format!("before_task {}", ctx.task));
        Ok(())
    }
    fn task_loss(
        &mut self,
        _: &clbench::strategy::Batch,
        _: &Tensor,
        ce: Tensor,
    ) -> anyhow::Result<Tensor> {
        HOOKS.lock().unwrap().push("task_loss".into());
        Ok(ce)
    }
    fn after_task_backward(&mut self, model: &Net) -> anyhow::Result<()> {
        let has_grad = model.params().values().all(|p| p.grad().defined());
        HOOKS
            .lock()
            .unwrap()
            .push(format!("after_task_backward grads={has_grad}"));
        Ok(())
    }
    fn penalty(&mut self, model: &Net) -> anyhow::Result<Option<Penalty<'_>>> {
        HOOKS.lock().unwrap().push("penalty".into());
        Ok(Some(Penalty::Graph(
            model.params()["head.bias"].sum(Kind::Float) * 0.0,
        )))
    }
    fn after_step(&mut self, _: &Net) -> anyhow::Result<()> {
        HOOKS.lock().unwrap().push("after_step".into());
        Ok(())
    }
    fn after_task(&mut self, ctx: &TaskContext) -> anyhow::Result<()> {
        HOOKS
            .lock()
            .unwrap()
            .push(format!("after_task {}", ctx.task));
        Ok(())
    }
}

inventory::submit! {
    Registration {
        name: "test_recording",
        summary: "records hook calls (tests only)",
        paper: "",
        params: &[],
        requires: &[],
        resolve: |_| Ok(serde_json::json!({})),
        build: |_, _| Ok(Box::new(Recording)),
    }
}

#[test]
fn the_training_loop_calls_the_hooks_in_the_documented_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml("hooks", dir.path(), "  - name: test_recording\n")
        .replace("epochs: 2", "iterations: 2")
        .replace("seeds: [1, 2]", "seeds: [1]");
    common::run_first_job(&text);
    let hooks = HOOKS.lock().unwrap().clone();
    let step = [
        "task_loss",
        "after_task_backward grads=true",
        "penalty",
        "after_step",
    ];
    let mut expected = Vec::new();
    for t in 0..3 {
        expected.push(format!("before_task {t}"));
        for _ in 0..2 {
            expected.extend(step.iter().map(|s| s.to_string()));
        }
        expected.push(format!("after_task {t}"));
    }
    assert_eq!(hooks, expected);
}
