//! The methods of the HAT reference code beyond penalties, and the hooks they use: HAT's
//! annealing, regularizer, gradient conditioning, embedding compensation and clamp against values
//! computed by hand; a unit held by an earlier task gets no gradient and that task's logits stay
//! bit-identical; `frozen` keeps the trunk; `restart` puts back the initial weights bit for bit;
//! the reference EWC Fisher against a brute-force loop of the reference formula; LFL's distance
//! and frozen heads; and the plan's refusal of networks a gating method cannot run on.

mod common;

use std::path::Path;

use clbench::fisher::{diagonal_fisher, Estimator, FisherOptions};
use clbench::model::{Forward, MlpSpec, Net};
use clbench::strategies::hat::{Config as HatConfig, Hat};
use clbench::strategy::{
    params::snapshot, AttachContext, GatePass, GradientEdit, Registry, Strategy, TaskContext,
    TaskData,
};
use clbench::train::{OptimizerKind, TrainSet, TrainSettings, Trainer};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

fn mlp(hidden: Vec<i64>, outputs: i64, seed: u64) -> Net {
    let spec = MlpSpec {
        inputs: 2,
        hidden,
        outputs,
    };
    Net::mlp(&spec, Device::Cpu, seed)
}

fn attached(config: HatConfig, model: &Net, tasks: usize) -> Hat {
    let mut hat = Hat::new(config);
    hat.attach(&AttachContext {
        model,
        num_tasks: tasks,
        device: Device::Cpu,
        seed: 1,
    })
    .unwrap();
    hat
}

/// Sets row `task` of the embedding of `layer` to `values`.
fn set_embedding(hat: &Hat, layer: &str, task: i64, values: &[f32]) {
    let e = &hat.parameters()[&format!("hat.embedding.{layer}")];
    tch::no_grad(|| e.get(task).copy_(&Tensor::from_slice(values)));
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() < 1e-5 * (1.0 + y.abs()),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

fn data(task: usize, n: i64, outputs: i64, columns: [i64; 2]) -> TaskData {
    let x: Vec<f32> = (0..2 * n)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3)
        .collect();
    let y: Vec<i64> = (0..n).map(|i| columns[(i % 2) as usize]).collect();
    let mask: Vec<bool> = (0..outputs).map(|c| columns.contains(&c)).collect();
    TaskData {
        task,
        x: Tensor::from_slice(&x).view([n, 2]),
        y: Tensor::from_slice(&y),
        mask: Tensor::from_slice(&mask),
    }
}

fn ctx<'a>(task: usize, model: &'a Net, data: &'a TaskData) -> TaskContext<'a> {
    TaskContext {
        task,
        num_tasks: 2,
        model,
        data,
        device: Device::Cpu,
    }
}

#[test]
fn hat_anneals_its_slope_over_the_epoch() {
    let hat = Hat::new(HatConfig::default());
    // s = (s_max - 1/s_max) i/N + 1/s_max with s_max 400.
    assert!((hat.slope(0, 64) - 1.0 / 400.0).abs() < 1e-12);
    assert!((hat.slope(32, 64) - 200.00125).abs() < 1e-9);
    assert!((hat.slope(63, 64) - (399.9975 * 63.0 / 64.0 + 0.0025)).abs() < 1e-9);
}

#[test]
fn hat_regularizer_gates_and_gradient_masks_match_hand_computed_values() {
    let model = mlp(vec![3, 2], 4, 0);
    let config = HatConfig {
        c: 0.75,
        s_max: 2.0,
    };
    let mut hat = attached(config, &model, 2);
    let ln3 = 3f32.ln();
    // sigmoid(2 e): e = 0 -> 0.5, ln3/2 -> 0.75, -ln3/2 -> 0.25.
    set_embedding(&hat, "trunk.0", 0, &[0.0, ln3 / 2.0, -ln3 / 2.0]);
    set_embedding(&hat, "trunk.1", 0, &[ln3 / 2.0, 0.0]);
    let gates = hat
        .unit_gates(&GatePass::Eval { task: 0 })
        .unwrap()
        .unwrap();
    close(&values(&gates["trunk.0"]), &[0.5, 0.75, 0.25], "gates");
    // Task 0: reg = sum a / units = (1.5 + 1.25) / 5 = 0.55; loss = ce + 0.75 reg.
    let batch_x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let (features, logits) = model.forward_features_t(&batch_x, &mut Forward::eval());
    let y = Tensor::from_slice(&[0i64]);
    let mask = Tensor::from_slice(&[true, true, false, false]).view([1, 4]);
    let batch = clbench::strategy::Batch {
        x: &batch_x,
        y: &y,
        mask: &mask,
        task: 0,
        features: &features,
    };
    let loss = hat
        .task_loss(&batch, &logits, Tensor::from(1.0f32))
        .unwrap();
    close(
        &[loss.double_value(&[])],
        &[1.0 + 0.75 * 0.55],
        "task 0 loss",
    );

    let d0 = data(0, 4, 4, [0, 1]);
    hat.after_task(&ctx(0, &model, &d0)).unwrap();
    close(
        &values(&hat.cumulative()["trunk.0"]),
        &[0.5, 0.75, 0.25],
        "a_cum",
    );
    // Task 1: a = [0.75, 0.5, 0.5] and [0.5, 0.75] against a_cum [0.5, 0.75, 0.25], [0.75, 0.5]:
    // reg = (0.375 + 0.125 + 0.375 + 0.125 + 0.375) / (0.5 + 0.25 + 0.75 + 0.25 + 0.5).
    set_embedding(&hat, "trunk.0", 1, &[ln3 / 2.0, 0.0, 0.0]);
    set_embedding(&hat, "trunk.1", 1, &[0.0, ln3 / 2.0]);
    hat.unit_gates(&GatePass::Eval { task: 1 }).unwrap();
    let loss = hat
        .task_loss(&batch, &logits, Tensor::from(0.0f32))
        .unwrap();
    close(
        &[loss.double_value(&[])],
        &[0.75 * 1.375 / 2.25],
        "task 1 loss",
    );

    // Gradient masks: 1 - a_cum for the first layer's rows and biases, 1 - min(post, pre) for
    // the second layer's weights.
    let edits = hat.gradient_edits(&model, 1).unwrap();
    let scale = |name: &str| match &edits[name] {
        GradientEdit::Scale(s) => values(&s.expand(model.params()[name].size(), false)),
        GradientEdit::Drop => panic!("{name} dropped"),
    };
    close(&scale("trunk.0.bias"), &[0.5, 0.25, 0.75], "trunk.0.bias");
    close(
        &scale("trunk.0.weight"),
        &[0.5, 0.5, 0.25, 0.25, 0.75, 0.75],
        "trunk.0.weight",
    );
    let min = |a: f64, b: f64| a.min(b);
    let (post, pre) = ([0.75, 0.5], [0.5, 0.75, 0.25]);
    let expected: Vec<f64> = post
        .iter()
        .flat_map(|&p| pre.iter().map(move |&q| 1.0 - min(p, q)))
        .collect();
    close(&scale("trunk.1.weight"), &expected, "trunk.1.weight");
    assert!(
        !edits.contains_key("head.weight"),
        "the heads are not conditioned"
    );
}

#[test]
fn hat_compensates_embedding_gradients_and_clamps_embeddings() {
    let model = mlp(vec![2], 2, 0);
    let mut hat = attached(HatConfig::default(), &model, 1);
    set_embedding(&hat, "trunk.0", 0, &[0.5, 6.0]);
    // A training batch half way through: s = 200.00125.
    hat.unit_gates(&GatePass::Train {
        task: 0,
        first_sample: 32,
        samples: 64,
    })
    .unwrap();
    let s = 200.00125f64;
    let edits = hat.gradient_edits(&model, 0).unwrap();
    let GradientEdit::Scale(scale) = &edits["hat.embedding.trunk.0"] else {
        panic!("no compensation");
    };
    // s_max/s (cosh(clamp(s e, ±50)) + 1) / (cosh(e) + 1): s e = 100 and 1200 both clamp to 50.
    let expected: Vec<f64> = [0.5f64, 6.0]
        .iter()
        .map(|&e| 400.0 / s * ((s * e).clamp(-50.0, 50.0).cosh() + 1.0) / (e.cosh() + 1.0))
        .collect();
    let got = values(scale);
    for (g, e) in got.iter().zip(&expected) {
        assert!((g / e - 1.0).abs() < 1e-4, "{got:?} vs {expected:?}");
    }
    set_embedding(&hat, "trunk.0", 0, &[9.0, -7.5]);
    hat.after_step(&model).unwrap();
    close(
        &values(&hat.parameters()["hat.embedding.trunk.0"]),
        &[6.0, -6.0],
        "clamped",
    );
}

fn sgd(lr: f64, iterations: usize) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerKind::Sgd,
        lr,
        betas: (0.9, 0.999),
        momentum: 0.0,
        batch_size: 4,
        epochs: 1,
        iterations: Some(iterations),
        reset_optimizer: true,
        clip: Default::default(),
        lr_plateau: None,
        early_stopping: None,
    }
}

/// A 2-layer network whose first task holds units 0, 1 of the first layer and 0, 2 of the
/// second with binary gates (sigmoid(400 * ±6) is exactly 0 or 1 in f32): training the second
/// task leaves every weight between held units and the first task's logits bit for bit.
#[test]
fn a_unit_held_by_an_earlier_task_gets_no_gradient_and_its_logits_stay_bit_identical() {
    let model = mlp(vec![4, 4], 4, 3);
    let mut hat = attached(HatConfig::default(), &model, 2);
    set_embedding(&hat, "trunk.0", 0, &[6.0, 6.0, -6.0, -6.0]);
    set_embedding(&hat, "trunk.1", 0, &[6.0, -6.0, 6.0, -6.0]);
    let (d0, d1) = (data(0, 16, 4, [0, 1]), data(1, 16, 4, [2, 3]));
    let logits_of_task_0 = |hat: &mut Hat| {
        model
            .set_gates(hat.unit_gates(&GatePass::Eval { task: 0 }).unwrap())
            .unwrap();
        let out = model.forward(&d0.x);
        model.set_gates(None).unwrap();
        out
    };
    hat.after_task(&ctx(0, &model, &d0)).unwrap();
    let gates = hat
        .unit_gates(&GatePass::Eval { task: 0 })
        .unwrap()
        .unwrap();
    assert_eq!(values(&gates["trunk.0"]), vec![1.0, 1.0, 0.0, 0.0]);
    let before_logits = logits_of_task_0(&mut hat);
    let before = snapshot(&model.params());

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut trainer = Trainer::new(sgd(0.5, 20));
    hat.before_task(&ctx(1, &model, &d1)).unwrap();
    trainer
        .train_task(
            &model,
            &mut hat,
            &TrainSet::from_task(&d1),
            1,
            &mut rng,
            |_| {},
        )
        .unwrap();
    let after = model.params();
    // Rows of held first-layer units, and their biases.
    for unit in [0, 1] {
        assert!(after["trunk.0.weight"]
            .get(unit)
            .equal(&before["trunk.0.weight"].get(unit)));
        assert!(after["trunk.0.bias"]
            .get(unit)
            .equal(&before["trunk.0.bias"].get(unit)));
    }
    for (i, j) in [(0, 0), (0, 1), (2, 0), (2, 1)] {
        assert!(after["trunk.1.weight"]
            .get(i)
            .get(j)
            .equal(&before["trunk.1.weight"].get(i).get(j)));
    }
    // The second task did learn: weights of free units moved.
    let free_moved = [2, 3].iter().any(|&unit| {
        !after["trunk.0.weight"]
            .get(unit)
            .equal(&before["trunk.0.weight"].get(unit))
            || !after["trunk.1.weight"]
                .get(unit)
                .equal(&before["trunk.1.weight"].get(unit))
    });
    assert!(free_moved, "nothing was learnt on the free units");
    // Task 0's head (columns 0, 1) scores exactly as before; task 1's head has learnt.
    let now = logits_of_task_0(&mut hat);
    assert!(
        now.narrow(1, 0, 2).equal(&before_logits.narrow(1, 0, 2)),
        "task 0's logits changed"
    );
}

/// Runs the synthetic three-task job of `strategy` and returns the network's weights after each
/// task's `before_task` hook has seen them (from the first job's checkpoints).
fn job(strategy: &str, dir: &Path) -> String {
    common::synthetic_yaml(strategy, dir, &format!("  - name: {strategy}\n"))
        .replace("optimizer: adam", "optimizer: sgd")
}

/// A strategy that records the network's parameters at every `before_task`, wrapping another.
struct Spy<S: Strategy> {
    inner: S,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<f32>>>>,
}

impl<S: Strategy> Strategy for Spy<S> {
    fn attach(&mut self, ctx: &AttachContext) -> anyhow::Result<()> {
        self.inner.attach(ctx)
    }
    fn weight_edit(
        &mut self,
        ctx: &TaskContext,
        at: clbench::strategy::Boundary,
    ) -> anyhow::Result<Option<clbench::strategy::WeightEdit>> {
        self.inner.weight_edit(ctx, at)
    }
    fn before_task(&mut self, ctx: &TaskContext) -> anyhow::Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push(common::flat_weights(ctx.model));
        self.inner.before_task(ctx)
    }
    fn gradient_edits(
        &mut self,
        model: &Net,
        task: usize,
    ) -> anyhow::Result<clbench::strategy::GradientEdits> {
        self.inner.gradient_edits(model, task)
    }
    fn task_loss(
        &mut self,
        batch: &clbench::strategy::Batch,
        logits: &Tensor,
        ce: Tensor,
    ) -> anyhow::Result<Tensor> {
        self.inner.task_loss(batch, logits, ce)
    }
}

fn run_spied<S: Strategy + 'static>(inner: S) -> (Vec<Vec<f32>>, Net) {
    let dir = tempfile::tempdir().unwrap();
    let text = job("naive", dir.path());
    let plan = common::plan_from(&text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let scenario = clbench::runner::build_scenario(&plan, &dataset, 1).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut spy = Spy {
        inner,
        seen: seen.clone(),
    };
    // The job's own loop, with the spy in place of the registered strategy.
    let spec = clbench::model::NetSpec {
        model: "mlp",
        params: plan.jobs[0].model_params.clone(),
        input: clbench::runner::model_input(&plan, &dataset),
        outputs: scenario.outputs,
    };
    let model = Net::new(&spec, Device::Cpu, 1).unwrap();
    spy.attach(&AttachContext {
        model: &model,
        num_tasks: 3,
        device: Device::Cpu,
        seed: 1,
    })
    .unwrap();
    let mut trainer = Trainer::new(plan.jobs[0].train.clone());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for t in 0..3 {
        let d = scenario.train_data(&dataset.train, t, Device::Cpu);
        let c = ctx(t, &model, &d);
        if let Some(edit) = spy
            .weight_edit(&c, clbench::strategy::Boundary::BeforeTask)
            .unwrap()
        {
            tch::no_grad(|| {
                for (name, v) in &edit.values {
                    model.params()[name].shallow_clone().copy_(v);
                }
            });
            trainer.reset_optimizer();
        }
        spy.before_task(&c).unwrap();
        trainer
            .train_task(
                &model,
                &mut spy,
                &TrainSet::from_task(&d),
                t,
                &mut rng,
                |_| {},
            )
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    (seen, model)
}

#[test]
fn restart_puts_back_the_initial_weights_before_every_task_bit_for_bit() {
    let (seen, _) = run_spied(clbench::strategies::restart::Restart::default());
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1], seen[0], "before task 1");
    assert_eq!(seen[2], seen[0], "before task 2");
    // Without the edit, task 1 starts from task 0's weights.
    let (naive, _) = run_spied(clbench::strategies::naive::Naive);
    assert_ne!(naive[1], naive[0]);
}

#[test]
fn frozen_leaves_the_trunk_after_the_first_task_and_trains_the_heads() {
    let (seen, model) = run_spied(clbench::strategies::frozen::Frozen);
    let trunk = |w: &[f32]| w.to_vec();
    // The flat weights are in name order: head.bias, head.weight, trunk.*: compare the trunk.
    let head_len = model.params()["head.bias"].numel() + model.params()["head.weight"].numel();
    assert_eq!(trunk(&seen[1][head_len..]), trunk(&seen[2][head_len..]));
    assert_eq!(
        trunk(&seen[2][head_len..]),
        common::flat_weights(&model)[head_len..].to_vec()
    );
    assert_ne!(seen[1][..head_len], seen[2][..head_len], "the heads learn");
    assert_ne!(
        seen[0][head_len..],
        seen[1][head_len..],
        "task 0 trains the trunk"
    );
}

/// The reference's `fisher_matrix_diag` by hand: batches of 20 in data order, `20 * grad^2` of
/// each batch's mean cross-entropy in training mode, summed and divided by N; no dropout here,
/// so the result does not depend on the masks.
#[test]
fn the_reference_fisher_matches_a_brute_force_loop_of_its_formula() {
    let model = mlp(vec![5], 4, 9);
    let d = data(0, 47, 4, [0, 1]); // 47 samples: two batches of 20 and one of 7
    let opts = FisherOptions {
        estimator: Estimator::Reference,
        batch_size: 20,
        ..FisherOptions::default()
    };
    let fisher = diagonal_fisher(&model, &d.x, &d.y, &d.mask, &opts).unwrap();
    for (name, p) in model.params() {
        let mut sum = p.zeros_like();
        for start in (0..47).step_by(20) {
            let len = 20.min(47 - start);
            let xb = d.x.narrow(0, start, len);
            let loss = clbench::model::masked_cross_entropy(
                &model.forward(&xb),
                &d.mask,
                &d.y.narrow(0, start, len),
            );
            let g = Tensor::run_backward(&[loss], &[&p], false, false).remove(0);
            sum += g.square() * 20.0;
        }
        let expected = sum / 47.0;
        let diff = (&fisher[&name] - &expected).abs().max().double_value(&[]);
        let scale = expected.abs().max().double_value(&[]);
        assert!(diff <= 1e-6 * (1.0 + scale), "{name}: off by {diff}");
    }
    // `batch` weighs the last batch by its size, so the two differ.
    let batch = diagonal_fisher(
        &model,
        &d.x,
        &d.y,
        &d.mask,
        &FisherOptions {
            estimator: Estimator::Batch,
            ..opts
        },
    )
    .unwrap();
    assert!(!batch["head.bias"].allclose(&fisher["head.bias"], 1e-6, 1e-9, false));
}

#[test]
fn the_reference_fisher_runs_in_training_mode_with_dropout() {
    let spec = clbench::model::NetSpec {
        model: "mlp",
        params: serde_json::json!({"hidden": [16], "dropout": 0.5}),
        input: clbench::model::InputShape {
            channels: 1,
            height: 1,
            width: 2,
        },
        outputs: 4,
    };
    let model = Net::new(&spec, Device::Cpu, 2).unwrap();
    let d = data(0, 40, 4, [0, 1]);
    let opts = |seed| FisherOptions {
        estimator: Estimator::Reference,
        batch_size: 20,
        seed,
        ..FisherOptions::default()
    };
    let f = |seed| diagonal_fisher(&model, &d.x, &d.y, &d.mask, &opts(seed)).unwrap();
    // Seeded masks: the same seed gives the same estimate, another seed another one.
    assert!(f(1)["trunk.0.weight"].equal(&f(1)["trunk.0.weight"]));
    assert!(!f(1)["trunk.0.weight"].equal(&f(2)["trunk.0.weight"]));
}

fn plan_error(text: &str) -> clbench::config::plan::ConfigError {
    let registry = Registry::load().unwrap();
    match clbench::config::Plan::from_str(text, Path::new("test.yaml"), &registry) {
        Ok(_) => panic!("the plan was accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_gating_method_is_refused_on_batch_norm_and_skip_connections_at_the_models_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::synthetic_yaml("refused", dir.path(), "  - name: naive\n  - name: hat\n");
    let conv_bn = base.replace(
        "model:\n  hidden: [32]",
        "model:\n  name: conv\n  channels: [4]\n  hidden: [8]\n  batch_norm: true",
    );
    let e = plan_error(&conv_bn);
    assert!(
        e.message.contains("cannot run strategy `hat`") && e.message.contains("batch norm"),
        "{e}"
    );
    let model_line = conv_bn
        .lines()
        .position(|l| l.contains("name: conv"))
        .unwrap()
        + 1;
    assert_eq!(e.position.map(|p| p.0), Some(model_line), "{e}");
    let resnet = base.replace(
        "model:\n  hidden: [32]",
        "model:\n  name: resnet18\n  width: 4",
    );
    let e = plan_error(&resnet);
    assert!(e.message.contains("cannot run strategy `hat`"), "{e}");
    // The same file without batch norm plans.
    common::plan_from(&conv_bn.replace("batch_norm: true", "batch_norm: false"));
}

#[test]
fn hat_runs_on_mlp_conv_and_alexnet_hat() {
    let dir = tempfile::tempdir().unwrap();
    for model in [
        "hidden: [16, 16]\n  dropout: 0.2\n  input_dropout: 0.1",
        "name: conv\n  channels: [4, 8]\n  hidden: [16]",
        "name: alexnet_hat\n  fc: 16",
    ] {
        let text = common::synthetic_yaml("hat_models", dir.path(), "  - name: hat\n")
            .replace("model:\n  hidden: [32]", &format!("model:\n  {model}"))
            .replace("epochs: 2", "iterations: 4")
            .replace("seeds: [1, 2]", "seeds: [1]");
        let (result, _) = common::run_first_job(&text);
        assert_eq!(result.accuracy.len(), 3, "{model}");
        assert!(
            result.curve.iter().all(|p| p.task_loss.is_finite()),
            "{model}"
        );
    }
}

/// LFL's distance on hand-made features, in both conventions: lambda/2 * sum and lambda * mean.
#[test]
fn lfl_distance_matches_hand_computed_values() {
    use clbench::strategies::lfl::{Config, Lfl, Reduction};
    let f = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
    let old = Tensor::from_slice(&[1.0f32, 0.0, 4.0, 4.0]).view([2, 2]);
    // Squares: 0, 4, 1, 0.
    let sum_half = Lfl::new(Config {
        lambda: 0.5,
        reduction: Reduction::SumHalf,
        freeze_head: false,
    });
    close(
        &[sum_half.distance(&f, &old).double_value(&[])],
        &[0.5 / 2.0 * 5.0],
        "sum_half",
    );
    let mean = Lfl::new(Config {
        lambda: 0.5,
        reduction: Reduction::Mean,
        freeze_head: false,
    });
    close(
        &[mean.distance(&f, &old).double_value(&[])],
        &[0.5 * 5.0 / 4.0],
        "mean",
    );
}

/// On the same seed LFL ends with other weights than naive, and with `freeze_head` the output
/// layer does not move after the first task.
#[test]
fn lfl_changes_the_outcome_and_freeze_head_keeps_the_heads() {
    let (naive, naive_w) = common::run_synthetic("naive", "");
    let (lfl, lfl_w) = common::run_synthetic("lfl", "    lambda: 1.0\n");
    assert_eq!(naive.accuracy[0], lfl.accuracy[0], "task 0 is the same");
    assert_ne!(naive_w, lfl_w);
    assert!(lfl.curve.iter().all(|p| p.task_loss.is_finite()));
    let (seen, model) = run_spied(clbench::strategies::lfl::Lfl::new(
        serde_yaml::from_str("freeze_head: true").unwrap(),
    ));
    let heads = model.params()["head.bias"].numel() + model.params()["head.weight"].numel();
    assert_eq!(seen[1][..heads], seen[2][..heads], "the heads moved");
    assert_ne!(seen[1][heads..], seen[2][heads..], "the backbone learns");
}
