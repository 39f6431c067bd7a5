//! A small, seeded, clearly separable stand-in for MNIST, for tests and quick runs.
//!
//! In: a [`SyntheticSpec`] (embeddable in an experiment's YAML). Out: a [`Dataset`] named
//! `"synthetic"` with the same shape conventions as MNIST: `u8` pixels, labels `0..classes`.
//!
//! Each class gets a prototype image with every pixel drawn uniformly from 0..=255; a sample is
//! its class prototype plus Gaussian noise of standard deviation `noise * 255`, rounded and
//! clipped to 0..=255. Prototypes of 28x28 images lie thousands of grey levels apart, so at the
//! default noise a linear model (even nearest class mean) separates the classes almost perfectly.
//! Each split is shuffled, so classes are interleaved. The same spec always gives the same bytes
//! (ChaCha8 seeded from `seed`); nothing else (time, threads, the file system) is read.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, Split};

/// How to build a synthetic dataset. Every field has a default, so YAML may name only some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSpec {
    /// Seeds prototypes, noise and shuffling.
    pub seed: u64,
    /// Training samples per class.
    pub train_per_class: usize,
    /// Test samples per class.
    pub test_per_class: usize,
    /// Number of classes, 1..=10; labels are `0..classes`.
    pub classes: usize,
    pub rows: usize,
    pub cols: usize,
    /// Standard deviation of the per-pixel Gaussian noise, as a fraction of the 0..=255 range.
    pub noise: f32,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            train_per_class: 200,
            test_per_class: 50,
            classes: 10,
            rows: 28,
            cols: 28,
            noise: 0.25,
        }
    }
}

impl SyntheticSpec {
    /// Checks the ranges [`synthetic`] relies on.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |field, problem: &str| {
            Err(DataError::InvalidSpec {
                field,
                problem: problem.to_string(),
            })
        };
        if !(1..=10).contains(&self.classes) {
            return invalid("classes", &format!("is {}, must be 1..=10", self.classes));
        }
        if self.rows == 0 || self.cols == 0 {
            return invalid("rows/cols", "must both be at least 1");
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return invalid("train_per_class/test_per_class", "must both be at least 1");
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return invalid(
                "noise",
                &format!("is {}, must be a finite number >= 0", self.noise),
            );
        }
        Ok(())
    }
}

/// Builds the dataset `spec` describes. Panics if [`SyntheticSpec::validate`] fails; validate
/// configurations first to report errors instead.
pub fn synthetic(spec: &SyntheticSpec) -> Dataset {
    if let Err(err) = spec.validate() {
        panic!("{err}");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let pixels = spec.rows * spec.cols;
    let prototypes: Vec<Vec<u8>> = (0..spec.classes)
        .map(|_| (0..pixels).map(|_| rng.gen()).collect())
        .collect();
    let train = sample_split(spec, &prototypes, spec.train_per_class, &mut rng);
    let test = sample_split(spec, &prototypes, spec.test_per_class, &mut rng);
    Dataset {
        name: "synthetic".to_string(),
        train,
        test,
        source: format!(
            "synthetic seed {} ({} classes, {}/{} train/test per class, {}x{}, noise {})",
            spec.seed,
            spec.classes,
            spec.train_per_class,
            spec.test_per_class,
            spec.rows,
            spec.cols,
            spec.noise
        ),
    }
}

/// `per_class` noisy copies of each prototype, in shuffled order.
fn sample_split(
    spec: &SyntheticSpec,
    prototypes: &[Vec<u8>],
    per_class: usize,
    rng: &mut ChaCha8Rng,
) -> Split {
    let mut labels: Vec<u8> = (0..prototypes.len() as u8)
        .flat_map(|class| std::iter::repeat_n(class, per_class))
        .collect();
    labels.shuffle(rng);
    let sd = spec.noise * 255.0;
    let mut images = Vec::with_capacity(labels.len() * spec.rows * spec.cols);
    for &label in &labels {
        for &p in &prototypes[usize::from(label)] {
            let value = f32::from(p) + sd * standard_normal(rng);
            images.push(value.round().clamp(0.0, 255.0) as u8);
        }
    }
    Split {
        images,
        labels,
        rows: spec.rows,
        cols: spec.cols,
    }
}

/// One draw from N(0, 1) by the Box-Muller transform (rand 0.8 has no normal distribution).
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = 1.0 - rng.gen::<f32>(); // in (0, 1], so ln is finite
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_counts() {
        let spec = SyntheticSpec {
            classes: 4,
            train_per_class: 30,
            test_per_class: 7,
            rows: 5,
            cols: 6,
            ..Default::default()
        };
        let d = synthetic(&spec);
        assert_eq!(d.name, "synthetic");
        assert!(d.source.starts_with("synthetic seed 0 "), "{}", d.source);
        for (split, per_class) in [(&d.train, 30), (&d.test, 7)] {
            assert_eq!((split.rows, split.cols, split.len()), (5, 6, 4 * per_class));
            assert_eq!(split.images.len(), split.len() * 30);
            assert_eq!(
                split.class_counts(),
                [per_class, per_class, per_class, per_class, 0, 0, 0, 0, 0, 0]
            );
        }
        // Shuffled: the first samples are not all of one class.
        assert!(d.train.labels[..10].iter().any(|&l| l != d.train.labels[0]));
    }

    #[test]
    fn deterministic_per_seed() {
        let spec = SyntheticSpec {
            train_per_class: 20,
            test_per_class: 5,
            ..Default::default()
        };
        assert_eq!(synthetic(&spec), synthetic(&spec));
        let other = synthetic(&SyntheticSpec {
            seed: 1,
            ..spec.clone()
        });
        assert_ne!(synthetic(&spec).train.images, other.train.images);
    }

    /// Nearest class mean is a linear classifier; it must already be near perfect.
    #[test]
    fn classes_are_linearly_separable() {
        let d = synthetic(&SyntheticSpec::default());
        let px = d.train.pixels();
        let mut means = vec![vec![0f64; px]; 10];
        for (i, &label) in d.train.labels.iter().enumerate() {
            for (m, &p) in means[usize::from(label)]
                .iter_mut()
                .zip(&d.train.images[i * px..][..px])
            {
                *m += f64::from(p) / 200.0;
            }
        }
        let correct = (0..d.test.len())
            .filter(|&i| {
                let x = &d.test.images[i * px..][..px];
                let dist = |m: &Vec<f64>| -> f64 {
                    m.iter()
                        .zip(x)
                        .map(|(m, &p)| (m - f64::from(p)).powi(2))
                        .sum()
                };
                let best = (0..10)
                    .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
                    .unwrap();
                best == usize::from(d.test.labels[i])
            })
            .count();
        assert!(
            correct as f64 / d.test.len() as f64 > 0.95,
            "{correct}/{}",
            d.test.len()
        );
    }

    #[test]
    fn yaml_defaults_and_unknown_fields() {
        let spec: SyntheticSpec = serde_yaml::from_str("seed: 3\nclasses: 4\n").unwrap();
        assert_eq!(
            spec,
            SyntheticSpec {
                seed: 3,
                classes: 4,
                ..Default::default()
            }
        );
        let err = serde_yaml::from_str::<SyntheticSpec>("sed: 3\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `sed`"), "{err}");
    }

    #[test]
    fn validate_rejects_bad_ranges() {
        let bad = [
            SyntheticSpec {
                classes: 11,
                ..Default::default()
            },
            SyntheticSpec {
                classes: 0,
                ..Default::default()
            },
            SyntheticSpec {
                rows: 0,
                ..Default::default()
            },
            SyntheticSpec {
                test_per_class: 0,
                ..Default::default()
            },
            SyntheticSpec {
                noise: f32::NAN,
                ..Default::default()
            },
            SyntheticSpec {
                noise: -0.1,
                ..Default::default()
            },
        ];
        for spec in bad {
            assert!(
                matches!(spec.validate(), Err(DataError::InvalidSpec { .. })),
                "{spec:?}"
            );
        }
        let err = SyntheticSpec {
            classes: 11,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "synthetic dataset: classes is 11, must be 1..=10"
        );
        assert!(SyntheticSpec::default().validate().is_ok());
    }
}
