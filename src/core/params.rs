//! Named parameter tensors: the currency of every importance-weighted penalty.
//!
//! Parameters are keyed by their VarStore path (e.g. `trunk.0.weight`), which also keys every
//! importance map (Fisher, SI's omega, MAS's importances). A `BTreeMap` keeps a fixed order, so
//! sums over parameters are reproducible.

use std::collections::BTreeMap;

use tch::Tensor;

/// Parameter name -> tensor.
pub type ParamMap = BTreeMap<String, Tensor>;

/// Detached copies of `params` (a snapshot that later training does not change).
pub fn snapshot(params: &ParamMap) -> ParamMap {
    params
        .iter()
        .map(|(k, v)| (k.clone(), v.detach().copy()))
        .collect()
}

/// Zeros shaped like `params`.
pub fn zeros_like(params: &ParamMap) -> ParamMap {
    params
        .iter()
        .map(|(k, v)| (k.clone(), v.zeros_like()))
        .collect()
}

/// `sum_k sum(weights_k * (params_k - anchor_k)^2)`, a scalar with a graph to `params`.
///
/// The shared core of L2 (weights = 1), EWC (weights = Fisher), SI and MAS.
pub fn weighted_squared_distance(
    params: &ParamMap,
    anchor: &ParamMap,
    weights: Option<&ParamMap>,
) -> Tensor {
    let mut total: Option<Tensor> = None;
    for (name, p) in params {
        let diff = p - &anchor[name];
        let sq = &diff * &diff;
        let term = match weights {
            Some(w) => (&w[name] * sq).sum(tch::Kind::Float),
            None => sq.sum(tch::Kind::Float),
        };
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.expect("the model has no parameters")
}

/// The sum of all entries of all tensors, as f64 (for logs and tests).
pub fn total(map: &ParamMap) -> f64 {
    map.values()
        .map(|t| t.sum(tch::Kind::Double).double_value(&[]))
        .sum()
}

/// `map[name] += value`; panics on an unknown name (a programming error, not bad input).
pub fn add_into(map: &mut ParamMap, name: &str, value: &Tensor) {
    let slot = map
        .get_mut(name)
        .unwrap_or_else(|| panic!("no parameter named {name}"));
    *slot = &*slot + value;
}

/// A map sharing `map`'s tensors (no copy).
pub fn shallow(map: &ParamMap) -> ParamMap {
    map.iter()
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect()
}
