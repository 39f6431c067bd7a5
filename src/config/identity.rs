//! A job's identity: a short readable label plus a hash of every setting its outcome depends on.
//!
//! The label names the strategy, the parameters the experiment file set for this grid point
//! (not every default) and the seed, so a results folder stays readable; the hash covers the
//! whole resolved config (dataset, transforms, scenario, model, training, strategy and all its
//! parameters, seed), so two jobs that differ in any setting never share an id, and an unchanged
//! setting keeps it (criterion's `BenchmarkId`). The hash is MD5 over a canonical JSON text
//! (object keys sorted at every level), so it does not depend on map order or on serde_json's
//! features.

use md5::{Digest, Md5};

/// Hex digits of the settings hash kept in an id (40 bits: collisions within one experiment are
/// out of reach, and the saved settings are compared too).
const HASH_DIGITS: usize = 10;

/// `label-hash`, e.g. `ewc_lambda=100_seed1-3fa9c0d2e1`.
pub fn job_id(
    strategy: &str,
    explicit: &[(String, serde_json::Value)],
    seed: u64,
    settings: &serde_json::Value,
) -> String {
    let mut label = strategy.to_string();
    for (key, value) in explicit {
        label.push_str(&format!("_{key}={}", value_label(value)));
    }
    label.push_str(&format!("_seed{seed}"));
    format!(
        "{}-{}",
        file_safe(&label),
        &settings_hash(settings)[..HASH_DIGITS]
    )
}

/// The MD5 of the canonical JSON of `settings`, in hex.
pub fn settings_hash(settings: &serde_json::Value) -> String {
    let mut text = String::new();
    canonical(settings, &mut text);
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted at every level.
fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn value_label(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The id clbench gave a job before ids carried a hash: `strategy_key=value_..._seedN` over every
/// resolved parameter. Used once, to find and migrate results saved under it.
pub fn legacy_job_id(strategy: &str, params: &serde_json::Value, seed: u64) -> String {
    let mut id = strategy.to_string();
    if let serde_json::Value::Object(map) = params {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            id.push_str(&format!("_{k}={}", value_label(&map[k])));
        }
    }
    id.push_str(&format!("_seed{seed}"));
    file_safe(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_sees_every_value() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(settings_hash(&a), settings_hash(&b));
        let c = json!({"a": 1, "b": {"x": [2, 1], "y": "z"}});
        assert_ne!(settings_hash(&a), settings_hash(&c));
        // Pinned, so a change of the canonical form (which would orphan saved results) shows.
        assert_eq!(settings_hash(&json!({"b": 2, "a": [1.5]})), {
            let d = Md5::digest(br#"{"a":[1.5],"b":2}"#);
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
    }

    #[test]
    fn id_is_label_plus_hash() {
        let settings = json!({"seed": 1});
        let id = job_id("ewc", &[("lambda".into(), json!(100.0))], 1, &settings);
        assert_eq!(
            id,
            format!("ewc_lambda=100.0_seed1-{}", &settings_hash(&settings)[..10])
        );
        assert_eq!(
            legacy_job_id("l2", &json!({"lambda": 0.5, "b": null}), 3),
            "l2_b=none_lambda=0.5_seed3"
        );
    }
}
