//! Contract tests over the strategy and model registries: every registered strategy, built from
//! its defaults, trains two synthetic tasks on every registered model that takes it, with a
//! finite penalty that is 0 on the first task; a pair the plan refuses (a gating method on a
//! network with batch norm or skip connections) is skipped with the plan's message, and is
//! refused before anything trains. A strategy or model file dropped into its folder is covered
//! here without editing this file.

mod common;

use clbench::model::ModelRegistry;
use clbench::strategy::Registry;

/// Smaller settings for the shipped models, so the grid runs in seconds in a debug build; any
/// other model runs with its defaults.
fn model_yaml(name: &str) -> String {
    let small = match name {
        "conv" => "channels: [4, 8], hidden: [16], batch_norm: true, dropout: 0.2",
        "resnet18" => "width: 4",
        "alexnet_hat" => "fc: 32",
        "mlp" => "hidden: [32]",
        _ => "",
    };
    if small.is_empty() {
        format!("model: {{name: {name}}}")
    } else {
        format!("model: {{name: {name}, {small}}}")
    }
}

#[test]
fn every_strategy_trains_two_tasks_on_every_model() {
    let strategies = Registry::load().unwrap();
    let models = ModelRegistry::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for model in models.names() {
        if model.starts_with("test_") {
            continue; // models registered by other test binaries' files are not linked here
        }
        for strategy in strategies.names() {
            let label = format!("{strategy} on {model}");
            let text =
                common::synthetic_yaml("contract", dir.path(), &format!("  - name: {strategy}\n"))
                    .replace("model:\n  hidden: [32]", &model_yaml(model))
                    .replace("tasks: [[0, 1], [2, 3], [4, 5]]", "tasks: [[0, 1], [2, 3]]")
                    .replace("epochs: 2", "iterations: 6")
                    .replace("seeds: [1, 2]", "seeds: [1]");
            let registry = clbench::strategy::Registry::load().unwrap();
            let planned =
                clbench::config::Plan::from_str(&text, std::path::Path::new("c.yaml"), &registry);
            if let Err(e) = planned {
                let refused = strategies
                    .get(strategy)
                    .is_some_and(|r| !r.requires.is_empty())
                    && e.message.contains("cannot run strategy");
                assert!(refused, "{label}: {e}");
                eprintln!("{label}: skipped, the plan refuses it: {e}");
                continue;
            }
            let (result, _) = common::run_first_job(&text);
            assert_eq!(result.accuracy.len(), 2, "{label}");
            assert!(
                result
                    .accuracy
                    .iter()
                    .flatten()
                    .all(|a| (0.0..=1.0).contains(a)),
                "{label}: {:?}",
                result.accuracy
            );
            for point in &result.curve {
                assert!(
                    point.task_loss.is_finite() && point.penalty.is_finite(),
                    "{label}: {point:?}"
                );
                if point.task == 0 {
                    assert_eq!(point.penalty, 0.0, "{label}: a penalty on the first task");
                }
            }
        }
    }
}
