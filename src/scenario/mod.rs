//! Scenarios: how a dataset becomes a sequence of tasks, and which outputs each task uses.
//!
//! Three ways to make tasks from a dataset:
//! - `split`: disjoint groups of classes, one group per task;
//! - `permuted`: every class in every task, each task with its own fixed pixel permutation
//!   (drawn from the scenario's seed, so every job of an experiment sees the same tasks);
//! - `rotated`: every class in every task, each task rotated by its own angle.
//!
//! And three scenarios (van de Ven & Tolias 2019, "Three scenarios for continual learning"),
//! which fix the output columns of each task and the masks of the columns in play:
//! - `task`: the task label is known; with `heads: multi` each task has its own block of
//!   columns (a head), with `heads: single` it uses its classes' columns of a shared layer.
//! - `domain`: no task label; one shared head over the within-task classes (class k of every
//!   task is column k).
//! - `class`: no task label; one head over all classes of all tasks, scored over every class
//!   seen so far.
//!
//! A [`Scenario`] is plain data (index lists, permutations, angles), shared by every job; jobs
//! build their tensors from it with [`Scenario::train_data`] and [`Scenario::test_data`], or
//! share them with the worker's other jobs through [`cache`].

use anyhow::{bail, Result};
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::Split;
use crate::strategy::TaskData;

pub mod cache;
mod view;
pub use cache::TaskTensors;
pub use view::{holdout_mask, Evaluate, Holdout, View};

/// The three scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Task,
    Domain,
    Class,
}

/// How the output layer is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heads {
    /// One head per task (only meaningful when the task label is known).
    Multi,
    /// One shared output layer.
    Single,
}

/// What is done to a task's images.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    None,
    /// Pixel `i` of the result is pixel `permutation[i]` of the original.
    Permute(Vec<i64>),
    /// Rotation by this many degrees (counter-clockwise), zero outside the image.
    Rotate(f64, Interpolation),
}

/// How a rotated image's pixels are resampled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    #[default]
    Bilinear,
    /// The nearest source pixel (torchvision's `rotate` default, which Mammoth's rotated MNIST
    /// uses).
    Nearest,
}

impl Interpolation {
    pub fn is_bilinear(&self) -> bool {
        *self == Interpolation::Bilinear
    }
}

/// One task of a scenario, as plain data.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub classes: Vec<u8>,
    pub train_indices: Vec<i64>,
    pub test_indices: Vec<i64>,
    /// Training samples held out for model selection, never trained on (indices into the
    /// training split; empty without a [`Holdout`]).
    pub validation_indices: Vec<i64>,
    /// Output column of each dataset label (None for labels outside this task).
    pub column_of_label: [Option<i64>; 256],
    /// Output columns this task trains on, ascending.
    pub columns: Vec<i64>,
    pub transform: Transform,
}

/// A sequence of tasks with their output columns.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub mode: Mode,
    pub heads: Heads,
    pub outputs: i64,
    pub tasks: Vec<TaskPlan>,
    /// What [`eval_data`](Scenario::eval_data) scores: the test set, or (for selection runs)
    /// the held-out part of the training data.
    pub evaluate: Evaluate,
}

impl Scenario {
    /// Disjoint groups of classes, one per task.
    pub fn split(
        train: &Split,
        test: &Split,
        classes: &[Vec<u8>],
        mode: Mode,
        heads: Heads,
    ) -> Result<Scenario> {
        let mut seen = std::collections::BTreeSet::new();
        for &c in classes.iter().flatten() {
            if !seen.insert(c) {
                bail!("class {c} appears in more than one task; each class belongs to one task");
            }
        }
        let tasks = classes
            .iter()
            .map(|cls| (cls.clone(), Transform::None))
            .collect();
        // Classes are disjoint, so the dataset's label is a class id unique across tasks.
        Scenario::build(train, test, tasks, mode, heads, |_, c| c as i64)
    }

    /// `num_tasks` tasks over all classes, each with a fixed pixel permutation drawn from `seed`.
    pub fn permuted(
        train: &Split,
        test: &Split,
        num_tasks: usize,
        identity_first: bool,
        seed: u64,
        mode: Mode,
        heads: Heads,
    ) -> Result<Scenario> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pixels = train.pixels() as i64;
        let tasks = (0..num_tasks)
            .map(|t| {
                let mut perm: Vec<i64> = (0..pixels).collect();
                if !(t == 0 && identity_first) {
                    perm.shuffle(&mut rng);
                }
                (all_classes(train), Transform::Permute(perm))
            })
            .collect();
        let per_task = all_classes(train).len() as i64;
        Scenario::build(train, test, tasks, mode, heads, |t, c| {
            t as i64 * per_task + c as i64
        })
    }

    /// One task per angle (degrees), over all classes.
    pub fn rotated(
        train: &Split,
        test: &Split,
        angles: &[f64],
        interpolation: Interpolation,
        mode: Mode,
        heads: Heads,
    ) -> Result<Scenario> {
        let tasks = angles
            .iter()
            .map(|&a| (all_classes(train), Transform::Rotate(a, interpolation)))
            .collect();
        let per_task = all_classes(train).len() as i64;
        Scenario::build(train, test, tasks, mode, heads, |t, c| {
            t as i64 * per_task + c as i64
        })
    }

    /// Builds the tasks; `class_id(task, label)` numbers the classes of all tasks for the class
    /// scenario (and single-headed task scenario).
    fn build(
        train: &Split,
        test: &Split,
        tasks: Vec<(Vec<u8>, Transform)>,
        mode: Mode,
        heads: Heads,
        class_id: impl Fn(usize, u8) -> i64,
    ) -> Result<Scenario> {
        if tasks.is_empty() {
            bail!("a scenario needs at least one task");
        }
        let per_task = tasks[0].0.len();
        let sizes: Vec<usize> = tasks.iter().map(|(c, _)| c.len()).collect();
        if sizes.contains(&0) {
            bail!("every task needs at least one class; got {sizes:?}");
        }
        // One shared head over the within-task classes needs as many classes in every task;
        // heads per task (HAT's CIFAR protocol: 2 then 20 classes) or one head over all classes
        // do not.
        if mode == Mode::Domain && sizes.iter().any(|&n| n != per_task) {
            bail!(
                "the domain scenario needs the same number of classes in every task; got {sizes:?}"
            );
        }
        // First column of each task's head.
        let head_start: Vec<usize> = sizes
            .iter()
            .scan(0, |start, &n| {
                let first = *start;
                *start += n;
                Some(first)
            })
            .collect();
        if heads == Heads::Multi && mode != Mode::Task {
            bail!("heads: multi needs the task label at test time, so it fits only mode: task (use heads: single)");
        }
        let column = |t: usize, k: usize, label: u8| match (mode, heads) {
            (Mode::Task, Heads::Multi) => (head_start[t] + k) as i64,
            (Mode::Domain, _) => k as i64,
            _ => class_id(t, label),
        };
        let mut outputs = 0;
        let plans = tasks
            .into_iter()
            .enumerate()
            .map(|(t, (classes, transform))| {
                let mut column_of_label = [None; 256];
                for (k, &c) in classes.iter().enumerate() {
                    column_of_label[c as usize] = Some(column(t, k, c));
                }
                let mut columns: Vec<i64> = column_of_label.iter().flatten().copied().collect();
                columns.sort();
                outputs = outputs.max(columns.last().unwrap() + 1);
                let train_indices = train.indices_of_classes(&classes);
                let test_indices = test.indices_of_classes(&classes);
                if train_indices.is_empty() || test_indices.is_empty() {
                    bail!("task {t} (classes {classes:?}) has no training or no test samples in the dataset");
                }
                Ok(TaskPlan {
                    classes,
                    train_indices,
                    test_indices,
                    validation_indices: Vec::new(),
                    column_of_label,
                    columns,
                    transform,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Scenario {
            mode,
            heads,
            outputs,
            tasks: plans,
            evaluate: Evaluate::Test,
        })
    }

    pub fn num_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Columns scored while training task `t`: its own in the task and domain scenarios, every
    /// class seen so far in the class scenario.
    pub fn train_mask(&self, t: usize) -> Vec<bool> {
        self.train_mask_during(t, t)
    }

    /// Columns scored for task `k`'s samples while training task `t >= k` (joint training and
    /// replay revisit earlier tasks): in the class scenario every class seen up to `t`.
    pub fn train_mask_during(&self, k: usize, t: usize) -> Vec<bool> {
        match self.mode {
            Mode::Class => self.columns_mask(
                self.tasks[..=t.max(k)]
                    .iter()
                    .flat_map(|p| p.columns.iter().copied()),
            ),
            _ => self.columns_mask(self.tasks[k].columns.iter().copied()),
        }
    }

    /// Columns scored when testing task `j` after training task `i`: in the class scenario every
    /// class seen so far (a task not yet trained is scored with its own classes too).
    pub fn eval_mask(&self, j: usize, i: usize) -> Vec<bool> {
        self.train_mask_during(j, i)
    }

    fn columns_mask(&self, columns: impl Iterator<Item = i64>) -> Vec<bool> {
        let mut mask = vec![false; self.outputs as usize];
        for c in columns {
            mask[c as usize] = true;
        }
        mask
    }

    /// Task `j`'s evaluation data ([`evaluate`](Self::evaluate) says which: the test split or
    /// the held-out training samples), masked as it is scored after training task `i`.
    pub fn eval_data(
        &self,
        train: &Split,
        test: &Split,
        j: usize,
        i: usize,
        device: Device,
    ) -> TaskData {
        match self.evaluate {
            Evaluate::Test => self.test_data(test, j, i, device),
            Evaluate::Validation => {
                let plan = &self.tasks[j];
                self.task_data(
                    train,
                    &plan.validation_indices,
                    j,
                    self.eval_mask(j, i),
                    device,
                )
            }
        }
    }

    /// Per task, the expected accuracy on the evaluation data of a classifier that draws each
    /// prediction from the task's training labels at random (HAT's `random` approach, whose
    /// accuracy varies around this): `sum_c p_train(c) * p_eval(c)` over the task's classes.
    pub fn chance_accuracy(&self, train: &Split, test: &Split) -> Vec<f64> {
        let frequencies = |split: &Split, indices: &[i64]| {
            let mut counts = [0usize; 256];
            for &i in indices {
                counts[split.labels[i as usize] as usize] += 1;
            }
            let n = indices.len().max(1) as f64;
            counts.map(|c| c as f64 / n)
        };
        self.tasks
            .iter()
            .map(|plan| {
                let p = frequencies(train, &plan.train_indices);
                let q = match self.evaluate {
                    Evaluate::Test => frequencies(test, &plan.test_indices),
                    Evaluate::Validation => frequencies(train, &plan.validation_indices),
                };
                p.iter().zip(q.iter()).map(|(a, b)| a * b).sum()
            })
            .collect()
    }

    /// `mask` as a Bool tensor on `device`.
    pub fn mask_tensor(mask: &[bool], device: Device) -> Tensor {
        Tensor::from_slice(mask)
            .to_kind(Kind::Bool)
            .to_device(device)
    }

    /// Task `t`'s held-out training samples (empty without a holdout), masked as in training:
    /// what the learning-rate schedule and early stopping watch.
    pub fn validation_data(&self, split: &Split, t: usize, device: Device) -> TaskData {
        let plan = &self.tasks[t];
        self.task_data(
            split,
            &plan.validation_indices,
            t,
            self.train_mask(t),
            device,
        )
    }

    /// Task `t`'s training data as tensors on `device`.
    pub fn train_data(&self, split: &Split, t: usize, device: Device) -> TaskData {
        let plan = &self.tasks[t];
        self.task_data(split, &plan.train_indices, t, self.train_mask(t), device)
    }

    /// Task `j`'s test data, masked as it is scored after training task `i`.
    pub fn test_data(&self, split: &Split, j: usize, i: usize, device: Device) -> TaskData {
        let plan = &self.tasks[j];
        self.task_data(split, &plan.test_indices, j, self.eval_mask(j, i), device)
    }

    fn task_data(
        &self,
        split: &Split,
        indices: &[i64],
        t: usize,
        mask: Vec<bool>,
        device: Device,
    ) -> TaskData {
        let (x, y) = self.task_tensors(split, indices, t, device);
        TaskData {
            task: t,
            x,
            y,
            mask: Scenario::mask_tensor(&mask, device),
        }
    }

    /// The images (transformed as task `t` transforms them) and target columns of `split`'s
    /// samples `indices` in task `t`.
    fn task_tensors(
        &self,
        split: &Split,
        indices: &[i64],
        t: usize,
        device: Device,
    ) -> (Tensor, Tensor) {
        let plan = &self.tasks[t];
        let columns: Vec<i64> = indices
            .iter()
            .map(|&i| {
                plan.column_of_label[split.labels[i as usize] as usize]
                    .expect("index of a class outside the task")
            })
            .collect();
        let x = match &plan.transform {
            Transform::Permute(perm) => split.permuted_images_tensor(indices, perm, device),
            other => apply(
                other,
                &split.images_tensor(indices, device),
                split.rows as i64,
                split.cols as i64,
            ),
        };
        (x, Tensor::from_slice(&columns).to_device(device))
    }
}

/// Every label present in `split`, ascending.
fn all_classes(split: &Split) -> Vec<u8> {
    let counts = split.class_counts();
    // Up to 256 classes: count in usize (256 as u8 would be 0).
    (0..counts.len())
        .filter(|&c| counts[c] > 0)
        .map(|c| c as u8)
        .collect()
}

/// `transform` applied to flattened images `x` [n, rows*cols].
pub fn apply(transform: &Transform, x: &Tensor, rows: i64, cols: i64) -> Tensor {
    match transform {
        Transform::None => x.shallow_clone(),
        Transform::Permute(perm) => {
            let index = Tensor::from_slice(perm).to_device(x.device());
            x.index_select(1, &index)
        }
        Transform::Rotate(degrees, interpolation) => {
            let n = x.size()[0];
            let (s, c) = degrees.to_radians().sin_cos();
            // affine_grid maps output coordinates to input coordinates: the inverse rotation.
            let theta = Tensor::from_slice(&[c as f32, -s as f32, 0.0, s as f32, c as f32, 0.0])
                .view([1, 2, 3])
                .to_device(x.device())
                .expand([n, 2, 3], false)
                .contiguous();
            let images = x.view([n, 1, rows, cols]);
            let grid = Tensor::affine_grid_generator(&theta, [n, 1, rows, cols], false);
            // interpolation 0 = bilinear, 1 = nearest; padding 0 = zeros.
            let mode = match interpolation {
                Interpolation::Bilinear => 0,
                Interpolation::Nearest => 1,
            };
            Tensor::grid_sampler(&images, &grid, mode, 0, false).view([n, rows * cols])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_split() -> Split {
        // 4 images of 2x2, labels 0, 1, 0, 1.
        Split {
            images: vec![0, 255, 0, 0, 255, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 255],
            labels: vec![0, 1, 0, 1],
            channels: 1,
            rows: 2,
            cols: 2,
            classes: 2,
        }
    }

    #[test]
    fn permutation_moves_pixels_and_is_shared_across_jobs() {
        let s = tiny_split();
        let a = Scenario::permuted(&s, &s, 3, true, 7, Mode::Domain, Heads::Single).unwrap();
        let b = Scenario::permuted(&s, &s, 3, true, 7, Mode::Domain, Heads::Single).unwrap();
        assert_eq!(a.tasks[0].transform, Transform::Permute(vec![0, 1, 2, 3]));
        assert_eq!(a.tasks[2].transform, b.tasks[2].transform);
        let x = Tensor::from_slice(&[10.0f32, 20.0, 30.0, 40.0]).view([1, 4]);
        let y = apply(&Transform::Permute(vec![3, 0, 2, 1]), &x, 2, 2);
        assert_eq!(
            Vec::<f32>::try_from(y.view([-1])).unwrap(),
            vec![40.0, 10.0, 30.0, 20.0]
        );
    }

    #[test]
    fn rotation_by_90_degrees_moves_a_corner_pixel() {
        // A 3x3 image with only the top-right pixel lit.
        let mut pixels = vec![0.0f32; 9];
        pixels[2] = 1.0;
        let x = Tensor::from_slice(&pixels).view([1, 9]);
        let r: Vec<f32> = Vec::try_from(
            apply(&Transform::Rotate(90.0, Interpolation::Bilinear), &x, 3, 3).view([-1]),
        )
        .unwrap();
        let lit: Vec<usize> = (0..9).filter(|&i| r[i] > 0.5).collect();
        // Counter-clockwise: top-right goes to top-left.
        assert_eq!(lit, vec![0], "{r:?}");
        let same = apply(&Transform::Rotate(0.0, Interpolation::Bilinear), &x, 3, 3);
        assert!((same - &x).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn nearest_rotation_copies_pixels_without_blending() {
        // A 5x5 checkerboard of 0 and 1 at 30 degrees: bilinear blends, nearest only copies.
        let pixels: Vec<f32> = (0..25).map(|i| ((i / 5 + i % 5) % 2) as f32).collect();
        let x = Tensor::from_slice(&pixels).view([1, 25]);
        let values = |interpolation| -> Vec<f32> {
            Vec::try_from(apply(&Transform::Rotate(30.0, interpolation), &x, 5, 5).view([-1]))
                .unwrap()
        };
        assert!(values(Interpolation::Nearest)
            .iter()
            .all(|&v| v == 0.0 || v == 1.0));
        assert!(values(Interpolation::Bilinear)
            .iter()
            .any(|&v| v > 0.01 && v < 0.99));
    }

    #[test]
    fn columns_follow_the_scenario() {
        let s = tiny_split();
        let tasks = vec![vec![0u8], vec![1u8]];
        let task = Scenario::split(&s, &s, &tasks, Mode::Task, Heads::Multi).unwrap();
        assert_eq!((task.outputs, task.tasks[1].columns.clone()), (2, vec![1]));
        assert_eq!(task.eval_mask(0, 1), vec![true, false]);
        let class = Scenario::split(&s, &s, &tasks, Mode::Class, Heads::Single).unwrap();
        assert_eq!(class.train_mask(0), vec![true, false]);
        assert_eq!(class.eval_mask(0, 1), vec![true, true]);
        let domain = Scenario::split(&s, &s, &tasks, Mode::Domain, Heads::Single).unwrap();
        assert_eq!(
            (domain.outputs, domain.tasks[1].columns.clone()),
            (1, vec![0])
        );
        let perm = Scenario::permuted(&s, &s, 3, true, 1, Mode::Class, Heads::Single).unwrap();
        assert_eq!(perm.outputs, 6);
        assert_eq!(perm.tasks[2].column_of_label[1], Some(5));
        assert!(Scenario::split(&s, &s, &tasks, Mode::Class, Heads::Multi).is_err());
    }
}
