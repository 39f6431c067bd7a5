//! Scenarios: how a dataset becomes a sequence of tasks, and which outputs each task uses.
//!
//! A scenario fixes, for every task, its classes, its train and test samples, the output column of
//! each class, and masks of the output columns that take part in training and in testing
//! (van de Ven & Tolias 2019, "Three scenarios for continual learning"):
//!
//! - `task`: the task label is known; with `heads: multi` each task has its own block of
//!   columns (a head), with `heads: single` it uses its classes' columns of a shared layer.
//! - `domain`: no task label; one shared head over the within-task classes (class k of every
//!   task is column k).
//! - `class`: no task label; one head over all classes, scored over every class seen so far.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::Split;
use crate::strategy::TaskData;

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

/// One task of a scenario, as plain data.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    pub classes: Vec<u8>,
    pub train_indices: Vec<i64>,
    pub test_indices: Vec<i64>,
    /// Output column of each class of the dataset (None for classes outside this task).
    pub column_of_class: [Option<i64>; 256],
    /// Output columns this task trains on.
    pub train_columns: Vec<i64>,
}

/// A split scenario over a dataset: plain data, shared by every job of an experiment.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub mode: Mode,
    pub heads: Heads,
    pub outputs: i64,
    pub tasks: Vec<TaskPlan>,
}

impl Scenario {
    /// Splits `train`/`test` into tasks of the given classes.
    pub fn split(
        train: &Split,
        test: &Split,
        classes: &[Vec<u8>],
        mode: Mode,
        heads: Heads,
    ) -> Result<Scenario> {
        if classes.is_empty() {
            bail!("a scenario needs at least one task");
        }
        let per_task = classes[0].len();
        if per_task == 0 || classes.iter().any(|c| c.len() != per_task) {
            bail!(
                "every task must have the same number of classes (at least one); got {classes:?}"
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for &c in classes.iter().flatten() {
            if !seen.insert(c) {
                bail!("class {c} appears in more than one task; each class belongs to one task");
            }
        }
        if heads == Heads::Multi && mode != Mode::Task {
            bail!("heads: multi needs the task label at test time, so it fits only mode: task (use heads: single)");
        }
        let all_classes = *seen.iter().max().unwrap() as i64 + 1;
        let outputs = match (mode, heads) {
            (Mode::Task, Heads::Multi) => (classes.len() * per_task) as i64,
            (Mode::Domain, _) => per_task as i64,
            _ => all_classes,
        };
        let tasks = classes
            .iter()
            .enumerate()
            .map(|(t, cls)| {
                let mut column_of_class = [None; 256];
                for (k, &c) in cls.iter().enumerate() {
                    column_of_class[c as usize] = Some(match (mode, heads) {
                        (Mode::Task, Heads::Multi) => (t * per_task + k) as i64,
                        (Mode::Domain, _) => k as i64,
                        _ => c as i64,
                    });
                }
                let mut train_columns: Vec<i64> = cls.iter().map(|&c| column_of_class[c as usize].unwrap()).collect();
                train_columns.sort();
                let train_indices = train.indices_of_classes(cls);
                let test_indices = test.indices_of_classes(cls);
                if train_indices.is_empty() || test_indices.is_empty() {
                    bail!("task {t} (classes {cls:?}) has no training or no test samples in the dataset");
                }
                Ok(TaskPlan { classes: cls.clone(), train_indices, test_indices, column_of_class, train_columns })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Scenario {
            mode,
            heads,
            outputs,
            tasks,
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
                    .flat_map(|p| p.train_columns.iter().copied()),
            ),
            _ => self.columns_mask(self.tasks[k].train_columns.iter().copied()),
        }
    }

    /// `mask` as a Bool tensor on `device`.
    pub fn mask_tensor(mask: &[bool], device: Device) -> Tensor {
        Tensor::from_slice(mask)
            .to_kind(Kind::Bool)
            .to_device(device)
    }

    /// Columns scored when testing task `j` after training task `i`.
    pub fn eval_mask(&self, j: usize, i: usize) -> Vec<bool> {
        match self.mode {
            Mode::Task | Mode::Domain => {
                self.columns_mask(self.tasks[j].train_columns.iter().copied())
            }
            // Every class seen so far; a task not yet trained is scored with its own classes too.
            Mode::Class => self.columns_mask(
                self.tasks[..=i.max(j)]
                    .iter()
                    .flat_map(|p| p.train_columns.iter().copied()),
            ),
        }
    }

    fn columns_mask(&self, columns: impl Iterator<Item = i64>) -> Vec<bool> {
        let mut mask = vec![false; self.outputs as usize];
        for c in columns {
            mask[c as usize] = true;
        }
        mask
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
        let plan = &self.tasks[t];
        let columns: Vec<i64> = indices
            .iter()
            .map(|&i| {
                plan.column_of_class[split.labels[i as usize] as usize]
                    .expect("index of a class outside the task")
            })
            .collect();
        TaskData {
            task: t,
            x: split.images_tensor(indices, device),
            y: Tensor::from_slice(&columns).to_device(device),
            mask: Scenario::mask_tensor(&mask, device),
        }
    }
}
