//! Plan-time checks of values: every number of the framework's sections against its range, a
//! plugin's parameters against the ranges it declares ([`crate::core::ParamSpec`]), and the size
//! of a grid before it is expanded. Each check returns the key it is about, which
//! [`super::plan`] turns into the file's line and column.

use super::{ScenarioKind, ScenarioSection, TrainingSection};
use crate::core::param_spec::{self, Bound, ParamSpec, Range};

/// `<section>.<key>` must lie in `range`; the message names the setting, its value and the range.
pub(super) fn in_range(section: &str, key: &str, value: f64, range: Range) -> Result<(), String> {
    if range.admits(value) {
        Ok(())
    } else {
        Err(format!("{section}.{key} is {value}; it must be {range}"))
    }
}

/// The ranges of `training:`'s numbers, for the file's section and a strategy entry's overrides
/// alike.
const TRAINING_RANGES: &[(&str, Range)] = &[
    ("lr", Range::positive()),
    ("momentum", Range::from_below(0.0, 1.0)),
    ("batch_size", Range::Count),
    ("epochs", Range::Count),
    ("iterations", Range::Count),
    ("clip_grad_value", Range::positive()),
    ("clip_grad_norm", Range::positive()),
];

/// Checks the training settings that are given against [`TRAINING_RANGES`].
pub(super) fn training_values(
    values: &[(&'static str, Option<f64>)],
) -> Result<(), (&'static str, String)> {
    for &(key, value) in values {
        let range = TRAINING_RANGES
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| *r)
            .expect("every checked training key has a range");
        if let Some(v) = value {
            in_range("training", key, v, range).map_err(|m| (key, m))?;
        }
    }
    Ok(())
}

/// Every number of `training:` within its range; the error names the key it is about.
pub(super) fn check_training(t: &TrainingSection) -> Result<(), (&'static str, String)> {
    let count = |v: Option<usize>| v.map(|v| v as f64);
    training_values(&[
        ("lr", Some(t.lr)),
        ("momentum", Some(t.momentum)),
        ("batch_size", Some(t.batch_size as f64)),
        ("epochs", count(t.epochs)),
        ("iterations", count(t.iterations)),
        ("clip_grad_value", t.clip_grad_value),
        ("clip_grad_norm", t.clip_grad_norm),
    ])?;
    for (i, beta) in [t.betas.0, t.betas.1].into_iter().enumerate() {
        in_range(
            "training",
            &format!("betas[{i}]"),
            beta,
            Range::from_below(0.0, 1.0),
        )
        .map_err(|m| ("betas", m))?;
    }
    if let Some(p) = &t.lr_plateau {
        for (key, value, range) in [
            ("patience", p.patience as f64, Range::Count),
            (
                "factor",
                p.factor,
                Range::Number {
                    min: Bound::Exclusive(1.0),
                    max: Bound::Unbounded,
                },
            ),
            ("min_lr", p.min_lr, Range::non_negative()),
        ] {
            in_range("training.lr_plateau", key, value, range).map_err(|m| ("lr_plateau", m))?;
        }
    }
    if let Some(patience) = t.early_stopping.and_then(|e| e.patience) {
        in_range(
            "training.early_stopping",
            "patience",
            patience as f64,
            Range::Count,
        )
        .map_err(|m| ("early_stopping", m))?;
    }
    Ok(())
}

/// The most tasks a scenario may have: far beyond any published benchmark, and small enough
/// that building the tasks' permutations or angles at plan time cannot exhaust memory.
pub const MAX_TASKS: usize = 10_000;

/// The scenario's numbers within range: a task count of 1..=[`MAX_TASKS`], finite angles, no
/// empty task. The error names the key it is about.
pub(super) fn check_scenario(s: &ScenarioSection) -> Result<(), (&'static str, String)> {
    if let Some(n) = s.num_tasks {
        in_range(
            "scenario",
            "num_tasks",
            n as f64,
            Range::between(1.0, MAX_TASKS as f64),
        )
        .map_err(|m| ("num_tasks", m))?;
    }
    if let Some(angles) = &s.angles {
        if angles.len() > MAX_TASKS {
            return Err((
                "angles",
                format!(
                    "scenario.angles lists {} angles, one task each; at most {MAX_TASKS} tasks are allowed",
                    angles.len()
                ),
            ));
        }
        if let Some((i, a)) = angles.iter().enumerate().find(|(_, a)| !a.is_finite()) {
            return Err((
                "angles",
                format!("scenario.angles[{i}] is {a}; give a finite angle in degrees"),
            ));
        }
    }
    if s.draw_per_seed && s.kind == ScenarioKind::Split {
        return Err((
            "draw_per_seed",
            "scenario.draw_per_seed draws permutations or angles; a split scenario's tasks are \
             the classes given in `tasks`, so remove it"
                .to_string(),
        ));
    }
    if s.draw_per_seed && s.angles.is_some() {
        return Err((
            "draw_per_seed",
            "scenario.draw_per_seed draws the angles, but `angles` gives them; keep one of the two"
                .to_string(),
        ));
    }
    if s.kind == ScenarioKind::Split {
        if s.tasks.len() > MAX_TASKS {
            return Err((
                "tasks",
                format!(
                    "scenario.tasks lists {} tasks; at most {MAX_TASKS} are allowed",
                    s.tasks.len()
                ),
            ));
        }
        if let Some(i) = s.tasks.iter().position(|t| t.is_empty()) {
            return Err((
                "tasks",
                format!("scenario.tasks[{i}] is empty; every task needs at least one class"),
            ));
        }
    }
    Ok(())
}

/// The most jobs one strategy entry may plan: a grid far beyond what any machine runs, small
/// enough that planning it takes well under a second.
pub const MAX_JOBS: usize = 10_000;

/// The number of points of an entry's grid (the product of its lists' lengths), or the key of
/// an empty list, which would silently plan nothing.
pub(super) fn grid_size(params: &serde_yaml::Mapping) -> Result<usize, (String, String)> {
    params.iter().try_fold(1usize, |size, (key, value)| {
        let n = match value {
            serde_yaml::Value::Sequence(seq) => seq.len(),
            _ => 1,
        };
        if n == 0 {
            let key = key.as_str().unwrap_or("?").to_string();
            return Err((
                key.clone(),
                format!("`{key}` is an empty list, a grid axis with no value; give at least one"),
            ));
        }
        Ok(size.saturating_mul(n))
    })
}

/// A plugin's parameters from the file, resolved and checked: no NaN or infinity in what the file
/// gave (JSON, the resolved form, would turn it into `null`), then `resolve` (names and types),
/// then every resolved value, defaults included, within the range the plugin declares. An error
/// comes with the key it is about, to locate it in the file.
pub(super) fn resolve_plugin(
    given: &serde_yaml::Mapping,
    specs: &[ParamSpec],
    resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
) -> Result<serde_json::Value, (Option<String>, String)> {
    if let Some((path, value)) = param_spec::first_non_finite(given) {
        return Err((
            Some(param_spec::leaf_key(&path).to_string()),
            format!("`{path}` is {value}; give a finite number"),
        ));
    }
    let resolved = resolve(given).map_err(|message| (culprit_key(given, resolve), message))?;
    param_spec::check_ranges(specs, &resolved)
        .map_err(|e| (Some(e.param.clone()), e.to_string()))?;
    Ok(resolved)
}

/// The key whose value alone fails `resolve` (serde's errors on values do not name the field).
fn culprit_key(
    point: &serde_yaml::Mapping,
    resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
) -> Option<String> {
    point.iter().find_map(|(k, v)| {
        let mut single = serde_yaml::Mapping::new();
        single.insert(k.clone(), v.clone());
        resolve(&single)
            .is_err()
            .then(|| k.as_str().map(str::to_string))
            .flatten()
    })
}
