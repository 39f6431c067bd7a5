//! What a plugin declares about each of its parameters: the name, what it means and which values
//! it allows. The plan checks every value against its range before any data is read or any job
//! trains, so `lambda: -5` is an error naming the file, line and column, not a run with a
//! negative penalty.
//!
//! The config type's parsing stays the check of types and names (an unknown key, a string where
//! a number belongs); a [`Range`] adds what a type cannot say (a strength is `>= 0`, a decay lies
//! in `[0, 1]`, a width is at least 1). Ranges are checked on the resolved parameters, so the
//! defaults are covered too (`tests/param_ranges.rs` checks every plugin's defaults against its
//! own ranges). Numbers in a plugin's YAML must be finite: [`first_non_finite`] finds a NaN or
//! infinity before it is resolved (JSON, the resolved form, would turn it into `null`).

use std::fmt;

/// One end of a [`Range`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// No limit on this side.
    Unbounded,
    /// The value may equal the limit.
    Inclusive(f64),
    /// The value must lie strictly beyond the limit.
    Exclusive(f64),
}

/// The values a parameter allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Not a bounded number (a name, a switch, a path, a seed): the config type's parsing is
    /// the whole check.
    Any,
    /// A finite number between `min` and `max`; for a list, each of its numbers.
    Number { min: Bound, max: Bound },
    /// A whole number >= 1 (counts, widths, sample caps, batch sizes); for a list, each of its
    /// numbers.
    Count,
}

impl Range {
    /// A finite number `>= 0` (penalty strengths, weights, noise).
    pub const fn non_negative() -> Range {
        Range::Number {
            min: Bound::Inclusive(0.0),
            max: Bound::Unbounded,
        }
    }

    /// A finite number `> 0` (temperatures, dampings, rates).
    pub const fn positive() -> Range {
        Range::Number {
            min: Bound::Exclusive(0.0),
            max: Bound::Unbounded,
        }
    }

    /// At least `min`.
    pub const fn at_least(min: f64) -> Range {
        Range::Number {
            min: Bound::Inclusive(min),
            max: Bound::Unbounded,
        }
    }

    /// In `[min, max]`.
    pub const fn between(min: f64, max: f64) -> Range {
        Range::Number {
            min: Bound::Inclusive(min),
            max: Bound::Inclusive(max),
        }
    }

    /// In `[min, max)` (a dropout probability, a momentum).
    pub const fn from_below(min: f64, max: f64) -> Range {
        Range::Number {
            min: Bound::Inclusive(min),
            max: Bound::Exclusive(max),
        }
    }

    /// Whether `value` lies in the range; a non-finite number never does.
    pub fn admits(&self, value: f64) -> bool {
        match *self {
            Range::Any => true,
            Range::Count => value >= 1.0 && value.is_finite() && value.fract() == 0.0,
            Range::Number { min, max } => {
                value.is_finite()
                    && match min {
                        Bound::Unbounded => true,
                        Bound::Inclusive(m) => value >= m,
                        Bound::Exclusive(m) => value > m,
                    }
                    && match max {
                        Bound::Unbounded => true,
                        Bound::Inclusive(m) => value <= m,
                        Bound::Exclusive(m) => value < m,
                    }
            }
        }
    }
}

impl fmt::Display for Range {
    /// `a finite number >= 0`, `a number in [0, 1)`, ...: what an error says is allowed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Range::Any => write!(f, "any value of its type"),
            Range::Count => write!(f, "a whole number >= 1"),
            Range::Number { min, max } => match (min, max) {
                (Bound::Unbounded, Bound::Unbounded) => write!(f, "a finite number"),
                (Bound::Inclusive(m), Bound::Unbounded) => write!(f, "a finite number >= {m}"),
                (Bound::Exclusive(m), Bound::Unbounded) => write!(f, "a finite number > {m}"),
                (Bound::Unbounded, Bound::Inclusive(m)) => write!(f, "a finite number <= {m}"),
                (Bound::Unbounded, Bound::Exclusive(m)) => write!(f, "a finite number < {m}"),
                (lo, hi) => {
                    let (open, a) = match lo {
                        Bound::Inclusive(a) => ('[', a),
                        Bound::Exclusive(a) => ('(', a),
                        Bound::Unbounded => unreachable!("matched above"),
                    };
                    let (close, b) = match hi {
                        Bound::Inclusive(b) => (']', b),
                        Bound::Exclusive(b) => (')', b),
                        Bound::Unbounded => unreachable!("matched above"),
                    };
                    write!(f, "a number in {open}{a}, {b}{close}")
                }
            },
        }
    }
}

/// One parameter of a plugin: its key in the experiment file, its range and its meaning (shown
/// by `clbench strategies`, `models` and `datasets`).
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub range: Range,
    pub doc: &'static str,
    /// Whether this is one of the method's strengths: a number that trades stability for
    /// plasticity (a penalty's lambda, a distillation's weight), which `selection: continual`
    /// decays until the new task is learnt well enough.
    pub strength: bool,
}

impl ParamSpec {
    /// A parameter whose type is its whole check (`Range::Any`); add a range with
    /// [`range`](Self::range).
    pub const fn new(name: &'static str, doc: &'static str) -> ParamSpec {
        ParamSpec {
            name,
            range: Range::Any,
            doc,
            strength: false,
        }
    }

    /// The same parameter, allowing only `range`.
    pub const fn range(self, range: Range) -> ParamSpec {
        ParamSpec { range, ..self }
    }

    /// The same parameter, marked as one of the method's strengths (see
    /// [`strength`](Self::strength)); it must be a number.
    pub const fn strength(self) -> ParamSpec {
        ParamSpec {
            strength: true,
            ..self
        }
    }
}

/// The names of the strengths among `specs`, in display order.
pub fn strengths(specs: &[ParamSpec]) -> Vec<&'static str> {
    specs
        .iter()
        .filter(|s| s.strength)
        .map(|s| s.name)
        .collect()
}

/// A parameter value outside its declared range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{param}` is {value}; it must be {range}")]
pub struct RangeError {
    pub param: String,
    /// The offending value as the file gave it (for a list, the offending element).
    pub value: String,
    pub range: Range,
}

/// The first parameter of `resolved` (a plugin's resolved parameters, an object) that is outside
/// its range in `specs`. A list is checked element by element; `null` (an optional parameter
/// left out) and values of other types pass, as their type was checked when they were resolved.
pub fn check_ranges(specs: &[ParamSpec], resolved: &serde_json::Value) -> Result<(), RangeError> {
    for spec in specs {
        let Some(value) = resolved.get(spec.name) else {
            continue;
        };
        if let Some(bad) = first_outside(&spec.range, value) {
            return Err(RangeError {
                param: spec.name.to_string(),
                value: bad.to_string(),
                range: spec.range,
            });
        }
    }
    Ok(())
}

fn first_outside<'a>(range: &Range, value: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().filter(|v| !range.admits(*v)).map(|_| value),
        serde_json::Value::Array(items) => items.iter().find_map(|v| first_outside(range, v)),
        _ => None,
    }
}

/// The key path (`synthetic.noise`, `hidden[1]`) and value of the first NaN or infinite number
/// in `mapping`, nested mappings and lists included. YAML writes them `.nan`, `.inf`, `-.inf`.
pub fn first_non_finite(mapping: &serde_yaml::Mapping) -> Option<(String, f64)> {
    fn walk(path: String, value: &serde_yaml::Value) -> Option<(String, f64)> {
        match value {
            serde_yaml::Value::Number(n) => {
                n.as_f64().filter(|v| !v.is_finite()).map(|v| (path, v))
            }
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(format!("{path}[{i}]"), v)),
            serde_yaml::Value::Mapping(m) => m.iter().find_map(|(k, v)| {
                let key = key_text(k);
                walk(
                    if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    },
                    v,
                )
            }),
            serde_yaml::Value::Tagged(t) => walk(path, &t.value),
            _ => None,
        }
    }
    walk(String::new(), &serde_yaml::Value::Mapping(mapping.clone()))
}

/// A mapping key as text, for messages (keys are strings in every file clbench reads).
fn key_text(key: &serde_yaml::Value) -> String {
    match key {
        // An empty key is written as YAML writes it, so the path stays readable.
        serde_yaml::Value::String(s) if s.is_empty() => "''".into(),
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// The last key of a path from [`first_non_finite`] (`synthetic.noise` -> `noise`,
/// `hidden[1]` -> `hidden`): the one to locate in the file.
pub fn leaf_key(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_admit_and_describe() {
        let cases = [
            (Range::non_negative(), 0.0, -1e-9, "a finite number >= 0"),
            (Range::positive(), 1e-9, 0.0, "a finite number > 0"),
            (Range::at_least(-1.0), -1.0, -1.5, "a finite number >= -1"),
            (Range::Count, 1.0, 1.5, "a whole number >= 1"),
            (Range::between(0.0, 1.0), 1.0, 1.5, "a number in [0, 1]"),
            (Range::from_below(0.0, 1.0), 0.0, 1.0, "a number in [0, 1)"),
        ];
        for (range, inside, outside, text) in cases {
            assert!(range.admits(inside), "{range} should admit {inside}");
            assert!(!range.admits(outside), "{range} should refuse {outside}");
            assert!(!range.admits(f64::NAN) && !range.admits(f64::INFINITY));
            assert_eq!(range.to_string(), text);
        }
        assert!(Range::Any.admits(f64::NAN));
    }

    #[test]
    fn check_ranges_names_the_parameter_the_value_and_the_range() {
        let specs = [
            ParamSpec::new("lambda", "strength").range(Range::non_negative()),
            ParamSpec::new("hidden", "widths").range(Range::Count),
            ParamSpec::new("fisher", "estimator"),
        ];
        let ok = serde_json::json!({"lambda": 0.0, "hidden": [4, 1], "fisher": "empirical"});
        assert_eq!(check_ranges(&specs, &ok), Ok(()));
        let err = check_ranges(&specs, &serde_json::json!({"lambda": -5.0})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`lambda` is -5.0; it must be a finite number >= 0"
        );
        let err = check_ranges(&specs, &serde_json::json!({"hidden": [4, 0]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`hidden` is 0; it must be a whole number >= 1"
        );
        // An optional parameter left out resolves to null and passes.
        let specs = [ParamSpec::new("max_samples", "cap").range(Range::at_least(1.0))];
        assert_eq!(
            check_ranges(&specs, &serde_json::json!({"max_samples": null})),
            Ok(())
        );
    }

    #[test]
    fn non_finite_numbers_are_found_with_their_path() {
        let m: serde_yaml::Mapping =
            serde_yaml::from_str("lambda: 1\nsynthetic: {noise: .nan}\n").unwrap();
        let (path, v) = first_non_finite(&m).unwrap();
        assert_eq!(path, "synthetic.noise");
        assert!(v.is_nan());
        assert_eq!(leaf_key(&path), "noise");
        let m: serde_yaml::Mapping = serde_yaml::from_str("hidden: [4, -.inf]\n").unwrap();
        assert_eq!(first_non_finite(&m).map(|p| p.0), Some("hidden[1]".into()));
        assert_eq!(leaf_key("hidden[1]"), "hidden");
        let m: serde_yaml::Mapping = serde_yaml::from_str("lambda: 1e300\n").unwrap();
        assert_eq!(first_non_finite(&m), None);
    }
}
