//! A small, seeded, clearly separable stand-in for MNIST, for tests and quick runs.
//!
//! In: a [`SyntheticSpec`] (embeddable in an experiment's YAML). Out: a [`Dataset`] named
//! `"synthetic"` with the same conventions as the file datasets: `u8` pixels in CHW order, labels
//! `0..classes`, or a [`DataError`] for a spec out of range (never a panic).
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

use super::{DataError, Dataset, Split, MAX_CLASSES};

/// Most pixel bytes a spec may ask for (train and test together): 4 GiB.
const MAX_BYTES: usize = 1 << 32;

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
    /// Number of classes, 1..=256; labels are `0..classes`.
    pub classes: usize,
    /// Colour channels per image (1: greyscale, as MNIST; 3: as CIFAR).
    pub channels: usize,
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
            channels: 1,
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
        if !(1..=MAX_CLASSES).contains(&self.classes) {
            return invalid(
                "classes",
                &format!("is {}, must be 1..={MAX_CLASSES}", self.classes),
            );
        }
        if self.channels == 0 || self.rows == 0 || self.cols == 0 {
            return invalid("channels/rows/cols", "must all be at least 1");
        }
        if self.train_per_class == 0 || self.test_per_class == 0 {
            return invalid("train_per_class/test_per_class", "must both be at least 1");
        }
        let bytes = [self.classes, self.channels, self.rows, self.cols]
            .into_iter()
            .fold(
                self.train_per_class.checked_add(self.test_per_class),
                |acc, n| acc.and_then(|acc| acc.checked_mul(n)),
            )
            .filter(|&b| b <= MAX_BYTES);
        if bytes.is_none() {
            return invalid(
                "classes x (train_per_class + test_per_class) x channels x rows x cols",
                &format!("exceeds {MAX_BYTES} bytes of pixels; make the dataset smaller"),
            );
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

/// Builds the dataset `spec` describes, or returns the error of [`SyntheticSpec::validate`].
pub fn synthetic(spec: &SyntheticSpec) -> Result<Dataset, DataError> {
    spec.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let pixels = spec.channels * spec.rows * spec.cols;
    let prototypes: Vec<Vec<u8>> = (0..spec.classes)
        .map(|_| (0..pixels).map(|_| rng.gen()).collect())
        .collect();
    let train = sample_split(spec, &prototypes, spec.train_per_class, &mut rng);
    let test = sample_split(spec, &prototypes, spec.test_per_class, &mut rng);
    Ok(Dataset {
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
    })
}

/// `per_class` noisy copies of each prototype, in shuffled order.
fn sample_split(
    spec: &SyntheticSpec,
    prototypes: &[Vec<u8>],
    per_class: usize,
    rng: &mut ChaCha8Rng,
) -> Split {
    // Classes go up to 256, so count in usize (256 as u8 would be 0).
    let mut labels: Vec<u8> = (0..prototypes.len())
        .flat_map(|class| std::iter::repeat_n(class as u8, per_class))
        .collect();
    labels.shuffle(rng);
    let sd = spec.noise * 255.0;
    let mut images = Vec::with_capacity(labels.len() * prototypes[0].len());
    for &label in &labels {
        for &p in &prototypes[usize::from(label)] {
            let value = f32::from(p) + sd * standard_normal(rng);
            images.push(value.round().clamp(0.0, 255.0) as u8);
        }
    }
    Split {
        images,
        labels,
        channels: spec.channels,
        rows: spec.rows,
        cols: spec.cols,
        classes: spec.classes,
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
        let d = synthetic(&spec).unwrap();
        assert_eq!(d.name, "synthetic");
        assert!(d.source.starts_with("synthetic seed 0 "), "{}", d.source);
        for (split, per_class) in [(&d.train, 30), (&d.test, 7)] {
            assert_eq!((split.rows, split.cols, split.len()), (5, 6, 4 * per_class));
            assert_eq!(split.images.len(), split.len() * 30);
            assert_eq!(split.class_counts(), [per_class; 4]);
            assert_eq!((split.channels, split.classes), (1, 4));
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
        assert_eq!(synthetic(&spec).unwrap(), synthetic(&spec).unwrap());
        let other = synthetic(&SyntheticSpec {
            seed: 1,
            ..spec.clone()
        });
        assert_ne!(
            synthetic(&spec).unwrap().train.images,
            other.unwrap().train.images
        );
    }

    /// Nearest class mean is a linear classifier; it must already be near perfect.
    #[test]
    fn classes_are_linearly_separable() {
        let d = synthetic(&SyntheticSpec::default()).unwrap();
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
                classes: 0,
                ..Default::default()
            },
            SyntheticSpec {
                classes: 257,
                ..Default::default()
            },
            SyntheticSpec {
                channels: 0,
                ..Default::default()
            },
            SyntheticSpec {
                train_per_class: usize::MAX,
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
        let err = synthetic(&SyntheticSpec {
            classes: 300,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "synthetic dataset: classes is 300, must be 1..=256"
        );
        assert!(SyntheticSpec::default().validate().is_ok());
    }

    #[test]
    fn many_classes_and_channels() {
        let spec = SyntheticSpec {
            classes: 256,
            channels: 3,
            rows: 2,
            cols: 3,
            train_per_class: 2,
            test_per_class: 1,
            ..Default::default()
        };
        let d = synthetic(&spec).unwrap();
        assert_eq!((d.train.len(), d.train.pixels()), (512, 18));
        assert_eq!(d.train.images.len(), 512 * 18);
        assert_eq!(d.test.class_counts(), vec![1; 256]);
    }

    /// Computed with the code before channels and classes beyond 10 were added.
    const PINNED_LABELS: [u8; 6] = [7, 6, 8, 5, 0, 7];
    const PINNED_SUM: u64 = 3017249;

    /// The default spec's bytes are pinned: adding channels and classes changed nothing.
    #[test]
    fn default_bytes_are_unchanged() {
        let d = synthetic(&SyntheticSpec {
            train_per_class: 3,
            test_per_class: 1,
            ..Default::default()
        })
        .unwrap();
        let sum: u64 = d.train.images.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(
            (d.train.labels[..6].to_vec(), sum),
            (PINNED_LABELS.to_vec(), PINNED_SUM)
        );
    }
}
