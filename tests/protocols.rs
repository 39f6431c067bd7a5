//! The training-protocol pieces that papers' own settings need: gradient clipping (by value and
//! by norm) in the loop, SI's path integral seeing the gradient the optimizer applied, a strategy
//! entry's own training settings, joint training only at the end, and rotated tasks at random
//! angles with nearest-pixel resampling (Buzzega et al.'s permuted and rotated MNIST).

mod common;

use std::path::Path;

use clbench::core::GradientClip;
use clbench::model::{MlpSpec, Net};
use clbench::strategies::si::{Config as SiConfig, PathGradient, Si};
use clbench::strategy::{params::snapshot, Registry, Strategy, TaskContext, TaskData};
use clbench::train::{OptimizerKind, TrainSet, TrainSettings, Trainer};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

fn sgd(lr: f64, clip: GradientClip, iterations: usize) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerKind::Sgd,
        lr,
        betas: (0.9, 0.999),
        momentum: 0.0,
        batch_size: 8,
        epochs: 1,
        iterations: Some(iterations),
        reset_optimizer: false,
        clip,
        lr_plateau: None,
        early_stopping: None,
    }
}

/// Eight 2-d samples of two classes, both columns in play; fixed values, large enough that
/// gradients exceed the clipping thresholds used below.
fn data(task: usize) -> TaskData {
    let x: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.8).collect();
    let y: Vec<i64> = (0..8).map(|i| (i % 2) as i64).collect();
    TaskData {
        task,
        x: Tensor::from_slice(&x).view([8, 2]),
        y: Tensor::from_slice(&y),
        mask: Tensor::from_slice(&[true, true]),
    }
}

fn model() -> Net {
    let spec = MlpSpec {
        inputs: 2,
        hidden: vec![6],
        outputs: 2,
    };
    Net::mlp(&spec, Device::Cpu, 5)
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

/// The largest change of any parameter entry between `before` and the model now.
fn largest_move(model: &Net, before: &clbench::strategy::ParamMap) -> f64 {
    model
        .params()
        .iter()
        .map(|(k, p)| (p - &before[k]).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn clipping_by_value_bounds_every_entry_of_the_step() {
    let model = model();
    let data = data(0);
    let set = TrainSet::from_task(&data);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut naive = clbench::strategies::naive::Naive;
    let before = snapshot(&model.params());
    let clip = GradientClip {
        value: Some(1e-3),
        norm: None,
    };
    let mut trainer = Trainer::new(sgd(1.0, clip, 1));
    trainer
        .train_task(&model, &mut naive, &set, 0, &mut rng, |_| {})
        .unwrap();
    // lr 1: no entry moves by more than the clip, and some gradient was larger than it.
    let moved = largest_move(&model, &before);
    assert!((moved - 1e-3).abs() < 1e-6, "largest move {moved}");

    // By norm: the whole step has norm at most lr * max_norm.
    let model = self::model();
    let before = snapshot(&model.params());
    let clip = GradientClip {
        value: None,
        norm: Some(0.01),
    };
    let mut trainer = Trainer::new(sgd(1.0, clip, 1));
    trainer
        .train_task(&model, &mut naive, &set, 0, &mut rng, |_| {})
        .unwrap();
    let norm: f64 = model
        .params()
        .iter()
        .map(|(k, p)| {
            (p - &before[k])
                .square()
                .sum(Kind::Double)
                .double_value(&[])
        })
        .sum::<f64>()
        .sqrt();
    assert!((norm - 0.01).abs() < 1e-6, "step norm {norm}");
}

#[test]
fn si_total_integrates_the_clipped_gradient_the_optimizer_applied() {
    // With plain SGD the optimizer's step is -lr * g for the clipped total gradient g, so SI's
    // path integral -g * dtheta must equal dtheta^2 / lr (Mammoth's lr * g^2), penalty included.
    let lr = 0.5;
    let clip = GradientClip {
        value: Some(0.05),
        norm: None,
    };
    let model = model();
    let (d0, d1) = (data(0), data(1));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let config = SiConfig {
        c: 10.0,
        xi: 1.0,
        gradient: PathGradient::Total,
    };
    let mut si = Si::with_clip(config.clone(), clip);
    let mut trainer = Trainer::new(sgd(lr, clip, 3));
    si.before_task(&ctx(0, &model, &d0)).unwrap();
    trainer
        .train_task(
            &model,
            &mut si,
            &TrainSet::from_task(&d0),
            0,
            &mut rng,
            |_| {},
        )
        .unwrap();
    si.after_task(&ctx(0, &model, &d0)).unwrap();
    // Task 2, one step, with the penalty in play.
    let mut one_step = Trainer::new(sgd(lr, clip, 1));
    si.before_task(&ctx(1, &model, &d1)).unwrap();
    let before = snapshot(&model.params());
    one_step
        .train_task(
            &model,
            &mut si,
            &TrainSet::from_task(&d1),
            1,
            &mut rng,
            |_| {},
        )
        .unwrap();
    let omega = si.path_integral().unwrap();
    let mut clipped_somewhere = false;
    for (k, p) in model.params() {
        let delta = &p - &before[&k];
        let want = delta.square() / lr;
        let diff = (&omega[&k] - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "{k}: path integral off by {diff}");
        clipped_somewhere |= (delta.abs().max().double_value(&[]) - lr * 0.05).abs() < 1e-7;
    }
    assert!(clipped_somewhere, "the test never reached the clip");

    // Without the clip in SI, the integral would be lr * |g| * clip(g), not this: SI built
    // without it disagrees on the same step.
    let model2 = self::model();
    let mut unclipped = Si::new(config);
    let mut trainer = Trainer::new(sgd(lr, clip, 3));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    unclipped.before_task(&ctx(0, &model2, &d0)).unwrap();
    trainer
        .train_task(
            &model2,
            &mut unclipped,
            &TrainSet::from_task(&d0),
            0,
            &mut rng,
            |_| {},
        )
        .unwrap();
    unclipped.after_task(&ctx(0, &model2, &d0)).unwrap();
    unclipped.before_task(&ctx(1, &model2, &d1)).unwrap();
    let before = snapshot(&model2.params());
    Trainer::new(sgd(lr, clip, 1))
        .train_task(
            &model2,
            &mut unclipped,
            &TrainSet::from_task(&d1),
            1,
            &mut rng,
            |_| {},
        )
        .unwrap();
    let omega = unclipped.path_integral().unwrap();
    let off = model2
        .params()
        .iter()
        .map(|(k, p)| {
            let want = (p - &before[k]).square() / lr;
            (&omega[k] - want).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max);
    assert!(
        off > 1e-4,
        "unclipped SI agreed ({off}): the test shows nothing"
    );
}

const SPLIT: &str =
    "  - name: naive\n  - name: naive\n    training: {lr: 0.5, clip_grad_value: 2.0}\n";

#[test]
fn an_entry_can_set_its_own_training_settings() {
    let dir = Path::new("/nonexistent");
    let plan = common::plan_from(&common::synthetic_yaml("t", dir, SPLIT));
    let (file_lr, own) = (&plan.jobs[0], &plan.jobs[2]);
    assert_eq!(file_lr.train.lr, 0.01);
    assert_eq!(own.train.lr, 0.5);
    assert_eq!(own.train.clip.value, Some(2.0));
    assert_eq!(own.settings["training"]["lr"], 0.5);
    assert_ne!(file_lr.id, own.id);
    // Only the file's own settings can match a result an older clbench saved: an entry with its
    // own training settings has no legacy identity to migrate from.
    assert!(file_lr.legacy.is_some());
    assert!(own.legacy.is_none());
    // An entry without overrides keeps the id it has without this feature.
    let plain = common::plan_from(&common::synthetic_yaml("t", dir, "  - name: naive\n"));
    assert_eq!(plain.jobs[0].id, file_lr.id);

    let registry = Registry::load().unwrap();
    for (entry, expected) in [
        (
            "    training: {lr: -1.0}\n",
            "training.lr is -1; it must be a finite number > 0",
        ),
        ("    training: {lrr: 0.1}\n", "unknown field `lrr`"),
        (
            "    training: {momentum: 1.5}\n",
            "training.momentum is 1.5; it must be a number in [0, 1)",
        ),
        (
            "    training: {clip_grad_norm: 0.0}\n",
            "training.clip_grad_norm is 0; it must be a finite number > 0",
        ),
    ] {
        let text = common::synthetic_yaml("t", dir, &format!("  - name: naive\n{entry}"));
        let e = clbench::config::Plan::from_str(&text, Path::new("t.yaml"), &registry)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{entry}: {e}");
        let line = text
            .lines()
            .position(|l| l.contains("training: {"))
            .unwrap()
            + 1;
        assert!(e.starts_with(&format!("t.yaml:{line}:")), "{entry}: {e}");
    }
    let bad_file = common::synthetic_yaml("t", dir, "  - name: naive\n")
        .replace("  epochs: 2\n", "  epochs: 2\n  clip_grad_value: -1.0\n");
    let e = clbench::config::Plan::from_str(&bad_file, Path::new("t.yaml"), &registry)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training.clip_grad_value is -1; it must be a finite number > 0"),
        "{e}"
    );
}

#[test]
fn joint_at_end_trains_only_on_the_last_task() {
    let text = common::synthetic_yaml(
        "j",
        Path::new("/nonexistent"),
        "  - name: joint\n    schedule: at_end\n",
    );
    let (result, _) = common::run_first_job(&text);
    let initial = result.initial_accuracy.clone().unwrap();
    // Rows before the last are the untrained network's; the last learnt every task.
    assert_eq!(result.accuracy[0], initial);
    assert_eq!(result.accuracy[1], initial);
    let last = &result.accuracy[2];
    assert!(last.iter().all(|&a| a > 0.8), "{last:?}");
    assert!(
        result.curve.iter().all(|p| p.task == 2),
        "trained before the last task"
    );
    assert!(result.trained_once_at_end());
}

#[test]
fn rotated_tasks_draw_their_angles_from_the_scenario_seed() {
    let yaml = |seed: u64| {
        format!(
            "kind: rotated\nmode: domain\nnum_tasks: 20\ninterpolation: nearest\nseed: {seed}\n"
        )
    };
    let angles = |seed| {
        serde_yaml::from_str::<clbench::config::ScenarioSection>(&yaml(seed))
            .unwrap()
            .rotation_angles(1)
    };
    let a = angles(0);
    assert_eq!(a.len(), 20);
    assert!(a.iter().all(|&d| (0.0..180.0).contains(&d)), "{a:?}");
    assert_eq!(a, angles(0), "the same seed gives the same tasks");
    assert_ne!(a, angles(1));
    // Given angles win over drawn ones.
    let given: clbench::config::ScenarioSection =
        serde_yaml::from_str("kind: rotated\nmode: domain\nangles: [0.0, 90.0]\n").unwrap();
    assert_eq!(given.rotation_angles(1), vec![0.0, 90.0]);
    // The dry run's scenario line lists every drawn angle, so a run can be repeated elsewhere.
    let drawn: clbench::config::ScenarioSection = serde_yaml::from_str(&yaml(0)).unwrap();
    let line = drawn.describe(1);
    assert!(
        line.starts_with("rotated, domain-incremental, 20 tasks"),
        "{line}"
    );
    let listed: Vec<f64> = line
        .split_once('[')
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .unwrap()
        .split(", ")
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(listed.len(), 20);
    assert!(
        listed.iter().zip(&a).all(|(l, d)| (l - d).abs() < 1e-4),
        "{line}"
    );
    assert_eq!(
        drawn.rotation_angles(2),
        a,
        "without draw_per_seed every seed shares the draw"
    );

    // draw_per_seed: each run seed its own angles, the same ones every time for that seed.
    let per_seed: clbench::config::ScenarioSection =
        serde_yaml::from_str(&format!("{}draw_per_seed: true\n", yaml(0))).unwrap();
    let (one, two) = (per_seed.rotation_angles(1), per_seed.rotation_angles(2));
    assert_eq!(one.len(), 20);
    assert!(one.iter().all(|&d| (0.0..180.0).contains(&d)), "{one:?}");
    assert_ne!(one, two);
    assert_ne!(one, a);
    assert_eq!(one, per_seed.rotation_angles(1));
}

#[test]
fn draw_per_seed_gives_each_seed_its_own_tasks_shared_by_its_strategies() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::synthetic_yaml("perseed", dir.path(), "  - name: naive\n  - name: l2\n")
        .replace(
            "  kind: split\n  mode: task\n  tasks: [[0, 1], [2, 3], [4, 5]]\n",
            "  kind: permuted\n  mode: domain\n  num_tasks: 2\n  draw_per_seed: true\n",
        );
    let plan = common::plan_from(&text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let second_task = |seed| {
        clbench::runner::build_scenario(&plan, &dataset, seed)
            .unwrap()
            .train_data(&dataset.train, 1, tch::Device::Cpu)
            .x
    };
    assert!(second_task(1).equal(&second_task(1)), "one seed, one draw");
    assert!(
        !second_task(1).equal(&second_task(2)),
        "each seed its own permutations"
    );
    // Both strategies of a seed are planned with that seed, so they see the same tasks.
    let seeds: Vec<(String, u64)> = plan
        .jobs
        .iter()
        .map(|j| (j.strategy.clone(), j.seed))
        .collect();
    assert!(seeds.contains(&("naive".into(), 1)) && seeds.contains(&("l2".into(), 1)));
    let listing = clbench::runner::dry_run(&plan, false, None);
    assert!(listing.contains("scenario (seed 1): permuted"), "{listing}");
    assert!(listing.contains("scenario (seed 2): permuted"), "{listing}");

    // A split scenario has nothing to draw, and given angles leave nothing to draw: both are
    // refused at their key.
    let registry = clbench::strategy::Registry::load().unwrap();
    let split = common::synthetic_yaml("perseed", dir.path(), "  - name: naive\n").replace(
        "  tasks: [[0, 1], [2, 3], [4, 5]]\n",
        "  tasks: [[0, 1], [2, 3], [4, 5]]\n  draw_per_seed: true\n",
    );
    let given = text.replace(
        "  kind: permuted\n  mode: domain\n  num_tasks: 2\n",
        "  kind: rotated\n  mode: domain\n  angles: [0.0, 45.0]\n",
    );
    for (bad, why) in [(split, "split"), (given, "angles")] {
        let err = clbench::config::Plan::from_str(&bad, Path::new("bad.yaml"), &registry)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("{why}: accepted"));
        assert!(
            err.contains("bad.yaml:") && err.contains("draw_per_seed"),
            "{why}: {err}"
        );
    }
}

#[test]
fn the_plateau_schedule_and_early_stopping_run_on_held_out_data() {
    let text = common::synthetic_yaml("sched", Path::new("/nonexistent"), "  - name: naive\n")
        .replace("selection: {mode: test_oracle}", "selection: {mode: holdout, validation_fraction: 0.25}")
        .replace(
            "  epochs: 2\n",
            "  epochs: 12\n  lr: 0.3\n  lr_plateau: {patience: 1, factor: 3.0, min_lr: 0.005}\n  early_stopping: {restore_best: true}\n",
        )
        .replace("  lr: 0.01\n", "");
    let (result, model) = common::run_first_job(&text);
    // Every pass recorded its held-out loss and learning rate; replaying the schedule on the
    // recorded losses gives the same learning rates and the same stopping pass.
    for task in 0..3 {
        let points: Vec<_> = result.curve.iter().filter(|p| p.task == task).collect();
        assert!(!points.is_empty());
        let mut watch = clbench::train::schedule::Watch::new(
            0.3,
            Some(clbench::train::schedule::Plateau {
                patience: 1,
                factor: 3.0,
                min_lr: 0.005,
                restart_optimizer: false,
                watch: Default::default(),
            }),
            None,
        );
        let mut lr = 0.3;
        for (k, p) in points.iter().enumerate() {
            assert_eq!(p.lr, Some(lr), "task {task}, pass {k}");
            match watch.after_pass(p.validation_loss.unwrap()) {
                clbench::train::schedule::Action::Decay(next) => lr = next,
                clbench::train::schedule::Action::Stop => {
                    assert_eq!(k + 1, points.len(), "task {task} went on after the stop")
                }
                _ => {}
            }
        }
    }
    // lr 0.3 with patience 1 overshoots: the learning rate decays within the 12 passes.
    assert!(result.curve.iter().any(|p| p.lr.unwrap() < 0.3));
    // The weights kept are the best pass's: the final model's held-out loss on the last task is
    // the smallest one recorded.
    let plan = common::plan_from(&text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let scenario = clbench::runner::build_scenario(&plan, &dataset, plan.jobs[0].seed)
        .unwrap()
        .view(&dataset.train, &plan.jobs[0].view)
        .unwrap();
    let held_out = scenario.validation_data(&dataset.train, 2, Device::Cpu);
    let now = clbench::train::validation_loss(&model, &held_out);
    let best = result
        .curve
        .iter()
        .filter(|p| p.task == 2)
        .map(|p| p.validation_loss.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!((now - best).abs() < 1e-5, "final {now}, best {best}");

    // Without held-out data the schedule has nothing to watch: a located error.
    let registry = Registry::load().unwrap();
    let e = clbench::config::Plan::from_str(
        &text.replace(
            "selection: {mode: holdout, validation_fraction: 0.25}",
            "selection: {mode: fixed}",
        ),
        Path::new("s.yaml"),
        &registry,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("only `selection: {mode: holdout}`"), "{e}");
    assert!(e.starts_with("s.yaml:"), "{e}");
}

#[test]
fn xavier_init_covers_the_head_and_zeroes_the_biases() {
    let net = |init: &str| {
        let params: serde_json::Value = serde_json::json!({"hidden": [100, 100], "init": init});
        let spec = clbench::model::NetSpec {
            model: "mlp",
            params,
            input: clbench::model::InputShape {
                channels: 1,
                height: 28,
                width: 28,
            },
            outputs: 10,
        };
        Net::new(&spec, Device::Cpu, 4).unwrap()
    };
    let xavier = net("xavier");
    for (name, p) in xavier.params() {
        let largest = p.abs().max().double_value(&[]);
        if name.ends_with("bias") {
            assert_eq!(largest, 0.0, "{name}");
        } else {
            let size = p.size();
            let bound = (6.0 / (size[0] + size[1]) as f64).sqrt();
            // Within the bound, and near it (a uniform draw of thousands of values).
            assert!(
                largest <= bound && largest > 0.95 * bound,
                "{name}: {largest} vs {bound}"
            );
        }
    }
    // The default is PyTorch's, and the same seed gives the same network.
    let default = net("pytorch");
    let head = default.params()["head.weight"]
        .abs()
        .max()
        .double_value(&[]);
    assert!(head <= 0.1 + 1e-6 && head > 0.09, "head {head}");
    assert!(net("xavier").params()["trunk.0.weight"].equal(&xavier.params()["trunk.0.weight"]));
}

#[test]
fn an_entry_can_set_its_own_model_parameters_and_optimizer() {
    let dir = Path::new("/nonexistent");
    let entries = "  - name: naive\n  - name: l2\n    model: {dropout: 0.2, hidden: [16]}\n    training: {optimizer: sgd}\n";
    let plan = common::plan_from(&common::synthetic_yaml("m", dir, entries));
    let (plain, own) = (&plan.jobs[0], &plan.jobs[2]);
    assert_eq!(plain.model_params["hidden"], serde_json::json!([32]));
    assert_eq!(own.model_params["hidden"], serde_json::json!([16]));
    assert_eq!(own.model_params["dropout"], 0.2);
    assert_eq!(own.settings["model"]["params"], own.model_params);
    assert_eq!(own.train.optimizer, OptimizerKind::Sgd);
    // The other entry keeps the id it has without the feature.
    let alone = common::plan_from(&common::synthetic_yaml("m", dir, "  - name: naive\n"));
    assert_eq!(alone.jobs[0].id, plain.id);
    // A bad value is refused at the entry's `model:` line, naming the model.
    let text = common::synthetic_yaml("m", dir, "  - name: l2\n    model: {dropout: 1.5}\n");
    let registry = Registry::load().unwrap();
    let e = clbench::config::Plan::from_str(&text, Path::new("t.yaml"), &registry)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let line = text.lines().position(|l| l.contains("model: {")).unwrap() + 1;
    assert!(e.starts_with(&format!("t.yaml:{line}:")), "{e}");
    assert!(e.contains("model `mlp`") && e.contains("dropout"), "{e}");
}

/// `watch: criterion` scores held-out data with the method's whole loss: L2's penalty is in it
/// from the second task on, so the watched loss exceeds the cross-entropy by the penalty.
#[test]
fn the_watched_criterion_is_the_task_loss_plus_the_penalty() {
    let model = model();
    let data = data(0);
    let mut l2 = clbench::strategies::l2::L2::new(serde_yaml::from_str("lambda: 10.0").unwrap());
    let ce = clbench::train::validation_loss(&model, &data);
    let before = clbench::train::validation_criterion(&model, &mut l2, &data).unwrap();
    assert!((before - ce).abs() < 1e-6, "{before} vs {ce}");
    l2.after_task(&ctx(0, &model, &data)).unwrap();
    tch::no_grad(|| {
        for p in model.params().values() {
            let _ = p.shallow_clone().g_add_scalar_(0.1);
        }
    });
    let ce = clbench::train::validation_loss(&model, &data);
    let watched = clbench::train::validation_criterion(&model, &mut l2, &data).unwrap();
    let params = model.num_parameters();
    // lambda/2 * sum (0.1)^2 over every parameter.
    let penalty = 10.0 / 2.0 * 0.01 * params as f64;
    assert!(
        (watched - ce - penalty).abs() < 1e-4 * penalty,
        "{watched} - {ce} vs {penalty}"
    );
}

/// A cut with `restart_optimizer` starts Adam's moments again: the same job without it trains
/// differently after the first cut, and identically before it.
#[test]
fn restart_optimizer_starts_adam_again_at_each_cut() {
    let run = |restart: bool| {
        let text = common::synthetic_yaml("cut", Path::new("/nonexistent"), "  - name: naive\n")
            .replace("selection: {mode: test_oracle}", "selection: {mode: holdout, validation_fraction: 0.25}")
            .replace(
                "  epochs: 2\n",
                &format!("  epochs: 8\n  lr_plateau: {{patience: 1, factor: 3.0, min_lr: 0.0, restart_optimizer: {restart}}}\n"),
            );
        common::run_first_job(&text).0
    };
    let (kept, restarted) = (run(false), run(true));
    let losses = |r: &clbench::results::JobResult| -> Vec<f64> {
        r.curve.iter().map(|p| p.task_loss).collect()
    };
    let first_cut = kept
        .curve
        .windows(2)
        .position(|w| w[0].task == w[1].task && w[1].lr < w[0].lr)
        .expect("the schedule cut the learning rate at least once")
        + 1;
    // Pass `first_cut` is the first at the lower learning rate, trained after the cut.
    assert_eq!(losses(&kept)[..first_cut], losses(&restarted)[..first_cut]);
    assert_ne!(losses(&kept)[first_cut], losses(&restarted)[first_cut]);
    assert_ne!(losses(&kept), losses(&restarted));
}
