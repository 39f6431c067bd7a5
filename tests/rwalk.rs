//! RWalk (both variants) and EWC++'s running Fisher (`fisher: ema` of `ewc` and `online_ewc`):
//! the running Fisher on a hand-made gradient sequence, RWalk's scores on hand-made
//! trajectories, its normalisations and penalty, checkpoint resumption of the variants the
//! registry-wide checkpoint test does not reach, resolved parameters that keep existing ids, and
//! each method against naive on a small real Split MNIST run.

mod common;

use std::path::Path;

use clbench::fisher::running::{FisherSource, RunningFisher, Window};
use clbench::fisher::Estimator;
use clbench::model::Net;
use clbench::strategies::ewc::Ewc;
use clbench::strategies::rwalk::{
    max_normalized, min_max_normalized, penalty_weights, RWalk, Variant, AVALANCHE_EPSILON,
};
use clbench::strategy::{
    registry::BuildContext, ParamMap, Penalty, Registry, Strategy, TaskContext, TaskData,
};
use tch::{Device, Kind, Tensor};

use common::{linear_model, one_sample};

fn ctx<'a>(task: usize, model: &'a Net, data: &'a TaskData) -> TaskContext<'a> {
    TaskContext {
        task,
        num_tasks: 2,
        model,
        data,
        device: Device::Cpu,
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn one(name: &str, v: &[f32]) -> ParamMap {
    [(name.to_string(), Tensor::from_slice(v))]
        .into_iter()
        .collect()
}

fn assert_near(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn the_running_fisher_follows_a_hand_made_gradient_sequence() {
    // alpha 0.5, an update every 2 iterations, before the iteration's own square.
    let grads: [[f32; 2]; 5] = [[1.0, 2.0], [3.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]];
    let run = |window| {
        let mut running = RunningFisher::new(0.5, 2, window);
        running.begin_task();
        for g in grads {
            running.observe(&one("p", &g));
        }
        values(&running.fisher().unwrap()["p"])
    };
    // The EWC branch: at iteration 1, F = 0.5 * 0 + 0.5 * [1, 4]/2 = [0.25, 1]; G restarts at
    // [9, 0] and becomes [10, 1]; at iteration 3, F = 0.5 * [0.25, 1] + 0.5 * [10, 1]/2.
    assert_near(
        &run(Window::SinceUpdate),
        &[2.625, 0.75],
        1e-6,
        "since update",
    );
    // The RWALK branch: G is not reset, so at iteration 3 it is [1+9+1, 4+0+1] = [11, 5].
    assert_near(
        &run(Window::SinceTaskStart),
        &[2.875, 1.75],
        1e-6,
        "since task start",
    );
    // A new task keeps F and starts G and the iteration count again: F is next updated at the
    // new task's second iteration, from its first square only.
    let mut running = RunningFisher::new(0.5, 2, Window::SinceUpdate);
    for g in grads {
        running.observe(&one("p", &g));
    }
    running.begin_task();
    running.observe(&one("p", &[2.0, 0.0]));
    assert_near(
        &values(&running.fisher().unwrap()["p"]),
        &[2.625, 0.75],
        1e-6,
        "kept",
    );
    running.observe(&one("p", &[5.0, 5.0]));
    // 0.5 * [2.625, 0.75] + 0.5 * [4, 0]/2.
    assert_near(
        &values(&running.fisher().unwrap()["p"]),
        &[2.3125, 0.375],
        1e-6,
        "next",
    );
}

fn build_rwalk(params: &str) -> RWalk {
    let registry = Registry::load().unwrap();
    let yaml: serde_yaml::Mapping = serde_yaml::from_str(params).unwrap();
    let resolved = (registry.get("rwalk").unwrap().resolve)(&yaml).unwrap();
    RWalk::new(serde_json::from_value(resolved).unwrap())
}

/// One training step on the linear model: the task loss `c * sum(bias)` (gradient `c` on each
/// bias, none on the weights, which stay at 0), then the bias moved to `to`.
fn step(strategy: &mut dyn Strategy, model: &Net, c: f64, to: f64) {
    let params = model.params();
    for p in params.values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    (params["head.bias"].sum(Kind::Float) * c).backward();
    strategy.after_task_backward(model).unwrap();
    tch::no_grad(|| {
        let _ = params["head.bias"].shallow_clone().fill_(to);
    });
    strategy.after_step(model).unwrap();
}

fn bias_of(map: Option<&ParamMap>) -> f64 {
    map.unwrap()["head.bias"].double_value(&[0])
}

fn weight_of(map: Option<&ParamMap>) -> Vec<f64> {
    values(&map.unwrap()["head.weight"])
}

/// The penalty's value and its closed-form gradient on the bias at the model's parameters.
fn penalty_and_bias_gradient(strategy: &mut dyn Strategy, model: &Net) -> (f64, Vec<f64>) {
    let params = model.params();
    let Some(Penalty::Quadratic(q)) = strategy.penalty(model).unwrap() else {
        panic!("rwalk's penalty is quadratic");
    };
    let value = q.value(&params).double_value(&[]);
    let (w, c) = q.gradient_terms("head.bias").unwrap();
    (value, values(&(w * &params["head.bias"] - c)))
}

#[test]
fn avalanche_scores_a_hand_made_trajectory() {
    let model = linear_model(0.0);
    let data = one_sample(0, [1.0, 2.0]);
    let mut rwalk = build_rwalk("{variant: avalanche, alpha: 0.5, delta_t: 2}");
    rwalk.before_task(&ctx(0, &model, &data)).unwrap();
    // Step 1: g = 3, F = g^2 = 9 (the first iteration), the bias 0 -> -0.1: w = 0.3.
    step(&mut rwalk, &model, 3.0, -0.1);
    assert_eq!(bias_of(rwalk.running_fisher()), 9.0);
    assert_eq!(
        bias_of(rwalk.task_score()),
        0.0,
        "no score before delta_t iterations"
    );
    // Step 2: g = 1, F = 0.5 * 1 + 0.5 * 9 = 5, -0.1 -> -0.3: w = 0.3 + 0.2 = 0.5; the interval
    // closes: s = 0.5 / (0.5 * 5 * 0.3^2 + eps).
    step(&mut rwalk, &model, 1.0, -0.3);
    assert_eq!(bias_of(rwalk.running_fisher()), 5.0);
    let s1 = 0.5 / (0.5 * 5.0 * 0.09 + AVALANCHE_EPSILON);
    assert_near(&[bias_of(rwalk.task_score())], &[s1], 1e-6, "task 1 score");
    // Weights that neither moved nor had a gradient score 0 (0 / eps), not NaN.
    assert_eq!(weight_of(rwalk.task_score()), vec![0.0; 4]);
    rwalk.after_task(&ctx(0, &model, &data)).unwrap();
    // F / max F + relu(s) / max s: 1 + 1 on the bias, 0 on the weights.
    assert_eq!(
        values(&rwalk.importance().unwrap()["head.bias"]),
        vec![2.0, 2.0]
    );
    assert_eq!(weight_of(rwalk.importance()), vec![0.0; 4]);
    // lambda 0.1 (the variant's default) * 2 * 1^2 per bias, 1 away from the anchor -0.3.
    tch::no_grad(|| {
        let _ = model.params()["head.bias"].shallow_clone().fill_(0.7);
    });
    let (value, grad) = penalty_and_bias_gradient(&mut rwalk, &model);
    assert_near(&[value], &[0.4], 1e-6, "penalty");
    assert_near(
        &grad,
        &[0.4, 0.4],
        1e-6,
        "penalty gradient 2 lambda w (theta - a)",
    );
    tch::no_grad(|| {
        let _ = model.params()["head.bias"].shallow_clone().fill_(-0.3);
    });

    // Task 2 goes against the gradient: step 3, g = 2, -0.3 -> -0.2: w = -0.2, F = 4.5; step 4
    // (the job's fourth iteration closes an interval), g = 2, no move: F = 4.25, and
    // s = -0.2 / (0.5 * 4.25 * 0.1^2 + eps) < 0, kept negative (no relu).
    rwalk.before_task(&ctx(1, &model, &data)).unwrap();
    step(&mut rwalk, &model, 2.0, -0.2);
    step(&mut rwalk, &model, 2.0, -0.2);
    assert_eq!(bias_of(rwalk.running_fisher()), 4.25);
    let s2 = -0.2 / (0.5 * 4.25 * 0.01 + AVALANCHE_EPSILON);
    assert_near(&[bias_of(rwalk.task_score())], &[s2], 1e-5, "task 2 score");
    rwalk.after_task(&ctx(1, &model, &data)).unwrap();
    assert_near(
        &[bias_of(rwalk.score())],
        &[(s1 + s2) / 2.0],
        1e-5,
        "averaged score",
    );
    // The score's maximum over all parameters is 0 (the weights'): its term is 0; F's is 1.
    assert_eq!(
        values(&rwalk.importance().unwrap()["head.bias"]),
        vec![1.0, 1.0]
    );
}

#[test]
fn authors_score_a_hand_made_trajectory() {
    let model = linear_model(0.0);
    let data = one_sample(0, [1.0, 2.0]);
    let mut rwalk = build_rwalk("{variant: authors, alpha: 0.5, delta_t: 2}");
    rwalk.before_task(&ctx(0, &model, &data)).unwrap();
    // Iteration 0: g = 3, F = 0, G = 9; the bias 0 -> -0.1: w = 0.3.
    step(&mut rwalk, &model, 3.0, -0.1);
    assert_eq!(bias_of(rwalk.running_fisher()), 0.0);
    // Iteration 1, before its step: s = relu(0.3 / (1e-3 + 0 * 0.1^2)) = 300, then
    // F = 0.5 * 0 + 0.5 * 9 / 2 = 2.25; g = 1 (G = 10), -0.1 -> -0.3: w = 0.2.
    step(&mut rwalk, &model, 1.0, -0.3);
    assert_near(
        &[bias_of(rwalk.task_score())],
        &[300.0],
        1e-6,
        "first interval",
    );
    assert_eq!(bias_of(rwalk.running_fisher()), 2.25);
    // Iteration 2: g = 2 (G = 14), -0.3 -> 0: w = 0.2 - 0.6 = -0.4. Iteration 3: the interval
    // (from -0.1 to 0) scores relu(-0.4 / (1e-3 + 2.25 * 0.01)) = 0, and
    // F = 0.5 * 2.25 + 0.5 * 14 / 2 = 4.625 (G holds every square since the task began).
    step(&mut rwalk, &model, 2.0, 0.0);
    step(&mut rwalk, &model, 0.0, 0.0);
    assert_near(&[bias_of(rwalk.task_score())], &[300.0], 1e-6, "relu");
    assert_eq!(bias_of(rwalk.running_fisher()), 4.625);
    assert_eq!(weight_of(rwalk.task_score()), vec![0.0; 4]);
    rwalk.after_task(&ctx(0, &model, &data)).unwrap();
    // First task: 2s doubled then averaged with 0: score = s = 300.
    assert_near(&[bias_of(rwalk.score())], &[300.0], 1e-6, "task 1 score");
    // Min-max over all parameters: F and the score are 1 on the bias, 0 on the weights.
    assert_eq!(
        values(&rwalk.importance().unwrap()["head.bias"]),
        vec![2.0, 2.0]
    );
    assert_eq!(weight_of(rwalk.importance()), vec![0.0; 4]);
    // lambda 1 (the variant's default) * 2 * 1^2 per bias, no 1/2.
    tch::no_grad(|| {
        let _ = model.params()["head.bias"].shallow_clone().fill_(1.0);
    });
    let (value, grad) = penalty_and_bias_gradient(&mut rwalk, &model);
    assert_near(&[value], &[4.0], 1e-6, "penalty");
    assert_near(&grad, &[4.0, 4.0], 1e-6, "penalty gradient");
    tch::no_grad(|| {
        let _ = model.params()["head.bias"].shallow_clone().fill_(0.0);
    });

    // Task 2: iteration 0, g = 1 (G = 1), 0 -> -0.1: w = 0.1; iteration 1 closes the interval:
    // s = relu(0.1 / (1e-3 + 4.625 * 0.01)) with the F carried over; then F = 0.5 * 4.625 +
    // 0.5 * 1 / 2. The score becomes score + (score + s)/2.
    rwalk.before_task(&ctx(1, &model, &data)).unwrap();
    step(&mut rwalk, &model, 1.0, -0.1);
    step(&mut rwalk, &model, 1.0, -0.1);
    let s2 = 0.1 / (1e-3 + 4.625 * 0.01);
    assert_near(&[bias_of(rwalk.task_score())], &[s2], 1e-5, "task 2 score");
    assert_eq!(bias_of(rwalk.running_fisher()), 2.5625);
    rwalk.after_task(&ctx(1, &model, &data)).unwrap();
    let merged = 300.0 + (300.0 + s2) / 2.0;
    assert_near(&[bias_of(rwalk.score())], &[merged], 1e-6, "merged score");
}

#[test]
fn the_normalisations_match_the_hand_computation() {
    let map: ParamMap = [
        ("a".to_string(), Tensor::from_slice(&[-1.0f32, 3.0])),
        ("b".to_string(), Tensor::from_slice(&[1.0f32])),
    ]
    .into_iter()
    .collect();
    // The authors': (x + 1) / (3 + 1 + 1e-32) over both tensors.
    let mm = min_max_normalized(&map);
    assert_eq!(values(&mm["a"]), vec![0.0, 1.0]);
    assert_eq!(values(&mm["b"]), vec![0.5]);
    // Avalanche's: relu(x) / 3.
    let mx = max_normalized(&map);
    assert_near(&values(&mx["a"]), &[0.0, 1.0], 1e-7, "a");
    assert_near(&values(&mx["b"]), &[1.0 / 3.0], 1e-7, "b");
    // A constant map: min-max gives 0 (not NaN); a maximum that is not positive gives 0.
    let flat = one("c", &[2.0, 2.0]);
    assert_eq!(values(&min_max_normalized(&flat)["c"]), vec![0.0, 0.0]);
    let negative = one("c", &[-2.0, 0.0]);
    assert_eq!(values(&max_normalized(&negative)["c"]), vec![0.0, 0.0]);
    // The weights add the two terms: F = (0, 4), score = (2, 1).
    let fisher = one("c", &[0.0, 4.0]);
    let score = one("c", &[2.0, 1.0]);
    let authors = penalty_weights(&fisher, &score, Variant::Authors);
    assert_eq!(values(&authors["c"]), vec![1.0, 1.0]);
    let avalanche = penalty_weights(&fisher, &score, Variant::Avalanche);
    assert_eq!(values(&avalanche["c"]), vec![1.0, 1.5]);
}

#[test]
fn ewc_with_an_ema_fisher_takes_the_running_fisher_at_the_end_of_the_task() {
    let model = linear_model(0.0);
    let data = one_sample(0, [1.0, 2.0]);
    let bc = BuildContext {
        device: Device::Cpu,
        num_tasks: 2,
        seed: 0,
        clip: Default::default(),
    };
    let config = "{lambda: 2.0, fisher: ema, ema_alpha: 0.5, ema_interval: 2}";
    let mut ewc = Ewc::new(serde_yaml::from_str(config).unwrap(), &bc);
    ewc.before_task(&ctx(0, &model, &data)).unwrap();
    // g = 3, 1, 2: the update at iteration 1 gives F = 0.5 * 9 / 2 = 2.25; G restarts and
    // holds 1 + 4 = 5 at the task's end, which never reaches F.
    for (c, to) in [(3.0, -0.1), (1.0, -0.3), (2.0, -0.5)] {
        step(&mut ewc, &model, c, to);
    }
    ewc.after_task(&ctx(0, &model, &data)).unwrap();
    let f = ewc.fisher().unwrap();
    assert_eq!(values(&f["head.bias"]), vec![2.25, 2.25]);
    assert_eq!(values(&f["head.weight"]), vec![0.0; 4]);
    // lambda/2 * 2.25 * 1^2 per bias, 1 away from the anchor -0.5.
    tch::no_grad(|| {
        let _ = model.params()["head.bias"].shallow_clone().fill_(0.5);
    });
    let (value, grad) = penalty_and_bias_gradient(&mut ewc, &model);
    assert_near(&[value], &[4.5], 1e-6, "penalty");
    assert_near(&grad, &[4.5, 4.5], 1e-6, "gradient lambda F (theta - a)");
}

#[test]
fn ema_is_a_fisher_source_that_keeps_the_estimators_spelling_and_the_ids() {
    let parse = |s: &str| serde_yaml::from_str::<FisherSource>(s);
    assert_eq!(parse("ema").unwrap(), FisherSource::Ema);
    assert_eq!(
        parse("batch").unwrap(),
        FisherSource::Estimate(Estimator::Batch)
    );
    assert_eq!(
        serde_json::to_value(FisherSource::Estimate(Estimator::EmpiricalWeighted)).unwrap(),
        serde_json::json!("empirical_weighted")
    );
    let err = parse("emma").unwrap_err().to_string();
    assert!(
        err.contains("`emma`") && err.contains("empirical") && err.contains("`ema`"),
        "{err}"
    );
    // Resolved with their defaults, ewc and online_ewc hold no new key, so their ids stand.
    let registry = Registry::load().unwrap();
    for name in ["ewc", "online_ewc"] {
        let resolve = registry.get(name).unwrap().resolve;
        let plain = resolve(&serde_yaml::Mapping::new()).unwrap();
        assert_eq!(plain["fisher"], "empirical", "{name}");
        assert!(plain.get("ema_alpha").is_none() && plain.get("ema_interval").is_none());
        let ema: serde_yaml::Mapping =
            serde_yaml::from_str("{fisher: ema, ema_alpha: 0.5, ema_interval: 3}").unwrap();
        let ema = resolve(&ema).unwrap();
        assert_eq!(
            (&ema["fisher"], &ema["ema_alpha"], &ema["ema_interval"]),
            (&"ema".into(), &0.5.into(), &3.into()),
            "{name}"
        );
    }
    // rwalk resolves lambda per variant; an explicit default is the same job.
    let resolve = registry.get("rwalk").unwrap().resolve;
    let of = |s: &str| resolve(&serde_yaml::from_str(s).unwrap()).unwrap();
    assert_eq!(of("{}")["lambda"], 0.1);
    assert_eq!(of("{variant: authors}")["lambda"], 1.0);
    assert_eq!(of("{lambda: 0.1}"), of("{}"));
    let text = |params: &str| {
        common::synthetic_yaml(
            "ids",
            Path::new("/tmp"),
            &format!("  - name: rwalk\n{params}"),
        )
    };
    let ids = |t: &str| -> Vec<String> {
        common::plan_from(t)
            .jobs
            .into_iter()
            .map(|j| j.id)
            .collect()
    };
    assert_eq!(ids(&text("")), ids(&text("    lambda: 0.1\n")));
    let bad = text("    delta_t: 0\n");
    let registry = Registry::load().unwrap();
    let err = match clbench::config::Plan::from_str(&bad, Path::new("t.yaml"), &registry) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("delta_t 0 must be refused"),
    };
    assert!(err.contains("delta_t"), "{err}");
}

/// Runs `text`'s first job, optionally checkpointing and simulating a kill in `stop_in_task`.
fn run_job(
    text: &str,
    ckpt: Option<&Path>,
    stop_in_task: Option<usize>,
) -> Option<(clbench::results::JobResult, Vec<f32>)> {
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
    Some((result, common::flat_weights(&model)))
}

#[test]
fn the_variants_and_ema_fishers_resume_from_a_checkpoint_bit_for_bit() {
    // tests/checkpoint.rs resumes rwalk with its defaults; these are the other code paths.
    let cases = [
        ("rwalk", "    variant: authors\n    delta_t: 3\n"),
        ("rwalk", "    lambda: 5.0\n    delta_t: 7\n"),
        (
            "ewc",
            "    lambda: 1000.0\n    fisher: ema\n    ema_interval: 3\n",
        ),
        (
            "online_ewc",
            "    lambda: 1000.0\n    fisher: ema\n    gamma: 0.9\n",
        ),
    ];
    for (strategy, params) in cases {
        let dir = tempfile::tempdir().unwrap();
        let entry = format!("  - name: {strategy}\n{params}");
        let text = common::synthetic_yaml("ckpt", dir.path(), &entry)
            .replace("seeds: [1, 2]", "seeds: [4]")
            .replace(
                "tasks: [[0, 1], [2, 3], [4, 5]]",
                "tasks: [[0, 1], [2, 3], [4, 5], [6, 7]]",
            );
        let label = format!("{strategy} {}", params.trim());
        let (reference, weights) = run_job(&text, None, None).unwrap();
        let ckpt = dir.path().join("job.safetensors");
        assert!(run_job(&text, Some(&ckpt), Some(2)).is_none(), "{label}");
        let (resumed, resumed_weights) = run_job(&text, Some(&ckpt), None).unwrap();
        assert_eq!(resumed.resumed_after_task, Some(2), "{label}");
        assert_eq!(resumed.accuracy, reference.accuracy, "{label}");
        let curve = |r: &clbench::results::JobResult| -> Vec<(f64, f64)> {
            r.curve.iter().map(|p| (p.task_loss, p.penalty)).collect()
        };
        assert_eq!(curve(&resumed), curve(&reference), "{label}: curve");
        assert_eq!(resumed_weights, weights, "{label}: weights");
    }
}

/// Two tasks of real Split MNIST (digits 0/1, then 2/3), task-incremental, a small MLP and a
/// few hundred Adam steps per task; `None` where this machine has no MNIST.
fn real_split_mnist(strategy: &str, params: &str) -> Option<(Vec<Vec<f64>>, Vec<f32>, f64)> {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    if !mnist.join("train-images-idx3-ubyte.gz").exists() {
        common::skip(
            "rwalk real_split_mnist",
            &format!("no MNIST at {}", mnist.display()),
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let entry = format!("  - name: {strategy}\n{params}");
    let text = common::synthetic_yaml("mnist", dir.path(), &entry)
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!(
                "  name: mnist\n  dir: {}\n  download: false",
                mnist.display()
            ),
        )
        .replace("tasks: [[0, 1], [2, 3], [4, 5]]", "tasks: [[0, 1], [2, 3]]")
        .replace("hidden: [32]", "hidden: [64]")
        .replace("lr: 0.01", "lr: 0.001")
        .replace("batch_size: 16", "batch_size: 64")
        .replace("epochs: 2", "iterations: 150")
        .replace("seeds: [1, 2]", "seeds: [1]");
    let (result, model) = common::run_first_job(&text);
    let penalty_after_first: f64 = result
        .curve
        .iter()
        .filter(|p| p.task == 1)
        .map(|p| p.penalty)
        .sum();
    Some((
        result.accuracy,
        common::flat_weights(&model),
        penalty_after_first,
    ))
}

#[test]
fn rwalk_and_ema_fishers_change_a_real_split_mnist_run_against_naive() {
    let Some((naive_acc, naive, _)) = real_split_mnist("naive", "") else {
        return;
    };
    let cases = [
        ("rwalk", "    lambda: 100.0\n"),
        ("rwalk", "    variant: authors\n    lambda: 100.0\n"),
        ("ewc", "    lambda: 1.0e5\n    fisher: ema\n"),
        ("online_ewc", "    lambda: 1.0e5\n    fisher: ema\n"),
    ];
    for (name, params) in cases {
        let (acc, weights, penalty) = real_split_mnist(name, params).unwrap();
        let label = format!("{name} {}", params.trim());
        let diff = naive
            .iter()
            .zip(&weights)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!(
            "{label}: accuracy {acc:?} (naive {naive_acc:?}); max weight change vs naive {diff}; \
             penalty on task 2 {penalty}"
        );
        assert!(diff > 1e-3, "{label} ended within {diff} of naive");
        assert!(penalty > 0.0, "{label}: no penalty on the second task");
    }
}
