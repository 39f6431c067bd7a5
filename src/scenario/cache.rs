//! A job's task tensors, built once per worker and scenario instead of once per job.
//!
//! In: the dataset, the scenario, the job's [`View`] of it and the device. Out: each task's
//! training, test and held-out tensors as [`TaskData`], equal to what [`Scenario::train_data`],
//! [`Scenario::test_data`], [`Scenario::eval_data`] and [`Scenario::validation_data`] build (they
//! are those functions' tensors, kept).
//!
//! The images and targets of a task depend only on those four inputs, so the jobs one worker
//! runs after another can share them. The runner opens a [`Scope`] around each job, naming the
//! run's dataset and the job's scenario in their `Arc`s; inside it, a [`TaskTensors`] for that
//! same dataset and scenario hands out shallow clones of tensors built on first use and kept in
//! a per-thread cache (tensors are not `Sync`). Each entry holds clones of the two `Arc`s, so
//! the addresses that key it cannot be reused by other objects while it lives. Outside a scope
//! (a job run directly, as tests do) every tensor is built afresh, as before.
//!
//! Cached tensors must not be written to: jobs read their data and replace, never modify, it.
//! The cache keeps the [`MAX_ENTRIES`] most recently used (dataset, scenario, view, device)
//! entries and drops older ones once it holds more than [`BUDGET_BYTES`]; the entry in use is
//! always kept. The output masks are not cached (they depend on the row of the accuracy matrix
//! and cost nothing to build).

use std::{cell::RefCell, collections::HashMap, sync::Arc};

use tch::{Device, Tensor};

use super::{Evaluate, Scenario, View};
use crate::data::{Dataset, Split};
use crate::strategy::TaskData;

/// Entries (dataset, scenario, view, device) a worker keeps.
pub const MAX_ENTRIES: usize = 2;
/// Bytes of tensors a worker keeps before it drops entries other than the one in use: 20 permuted
/// MNIST tasks (training and test images) take 4.4 GB.
pub const BUDGET_BYTES: usize = 6 << 30;

/// Which of a task's sample lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Samples {
    Train,
    Test,
    /// The training samples a holdout keeps out.
    Validation,
}

/// One (dataset, scenario, view, device) and the task tensors built for it so far.
struct Entry {
    dataset: Arc<Dataset>,
    scenario: Arc<Scenario>,
    view: View,
    device: Device,
    /// Per task and sample list: images and target columns.
    tensors: HashMap<(Samples, usize), (Tensor, Tensor)>,
    bytes: usize,
}

impl Entry {
    fn is(&self, key: &Key) -> bool {
        Arc::ptr_eq(&self.dataset, &key.dataset)
            && Arc::ptr_eq(&self.scenario, &key.scenario)
            && self.view == key.view
            && self.device == key.device
    }
}

thread_local! {
    /// The dataset and scenario of the job this thread runs, while a [`Scope`] is open.
    static SCOPE: RefCell<Option<(Arc<Dataset>, Arc<Scenario>)>> = const { RefCell::new(None) };
    /// Entries, the most recently used last.
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// While it lives, jobs on this thread over `dataset` and `scenario` share their task tensors
/// with the thread's earlier and later jobs over them.
pub struct Scope {
    outer: Option<(Arc<Dataset>, Arc<Scenario>)>,
}

impl Scope {
    pub fn enter(dataset: &Arc<Dataset>, scenario: &Arc<Scenario>) -> Scope {
        let outer = SCOPE.with(|s| s.replace(Some((dataset.clone(), scenario.clone()))));
        Scope { outer }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        SCOPE.with(|s| *s.borrow_mut() = self.outer.take());
    }
}

/// Drops every cached tensor of this thread (for tests and benches that time a cold start).
pub fn clear() {
    CACHE.with(|c| c.borrow_mut().clear());
}

/// Bytes of tensors this thread's cache holds.
pub fn cached_bytes() -> usize {
    CACHE.with(|c| c.borrow().iter().map(|e| e.bytes).sum())
}

struct Key {
    dataset: Arc<Dataset>,
    scenario: Arc<Scenario>,
    view: View,
    device: Device,
}

/// A job's task tensors: the scenario as the job's view shows it, over the dataset, on a
/// device; shared through the thread's cache when a [`Scope`] names that dataset and scenario.
pub struct TaskTensors<'a> {
    scenario: &'a Scenario,
    dataset: &'a Dataset,
    device: Device,
    key: Option<Key>,
}

impl<'a> TaskTensors<'a> {
    /// `viewed` is `base` as `view` shows it ([`Scenario::view`]; `base` itself for the default
    /// view).
    pub fn new(
        dataset: &'a Dataset,
        base: &Scenario,
        view: &View,
        viewed: &'a Scenario,
        device: Device,
    ) -> TaskTensors<'a> {
        let key = SCOPE.with(|s| {
            s.borrow().as_ref().and_then(|(d, sc)| {
                (std::ptr::eq(Arc::as_ptr(d), dataset) && std::ptr::eq(Arc::as_ptr(sc), base)).then(
                    || Key {
                        dataset: d.clone(),
                        scenario: sc.clone(),
                        view: view.clone(),
                        device,
                    },
                )
            })
        });
        TaskTensors {
            scenario: viewed,
            dataset,
            device,
            key,
        }
    }

    /// Whether the tensors come from the thread's cache.
    pub fn is_shared(&self) -> bool {
        self.key.is_some()
    }

    /// As [`Scenario::train_data`].
    pub fn train_data(&self, t: usize) -> TaskData {
        let mask = self.scenario.train_mask(t);
        self.data(Samples::Train, t, mask)
    }

    /// As [`Scenario::test_data`].
    pub fn test_data(&self, j: usize, i: usize) -> TaskData {
        let mask = self.scenario.eval_mask(j, i);
        self.data(Samples::Test, j, mask)
    }

    /// As [`Scenario::eval_data`].
    pub fn eval_data(&self, j: usize, i: usize) -> TaskData {
        match self.scenario.evaluate {
            Evaluate::Test => self.test_data(j, i),
            Evaluate::Validation => {
                let mask = self.scenario.eval_mask(j, i);
                self.data(Samples::Validation, j, mask)
            }
        }
    }

    /// As [`Scenario::validation_data`].
    pub fn validation_data(&self, t: usize) -> TaskData {
        let mask = self.scenario.train_mask(t);
        self.data(Samples::Validation, t, mask)
    }

    fn data(&self, samples: Samples, t: usize, mask: Vec<bool>) -> TaskData {
        let (x, y) = match &self.key {
            None => self.build(samples, t),
            Some(key) => self.shared(key, samples, t),
        };
        TaskData {
            task: t,
            x,
            y,
            mask: Scenario::mask_tensor(&mask, self.device),
        }
    }

    fn build(&self, samples: Samples, t: usize) -> (Tensor, Tensor) {
        let plan = &self.scenario.tasks[t];
        let (split, indices): (&Split, &[i64]) = match samples {
            Samples::Train => (&self.dataset.train, &plan.train_indices),
            Samples::Test => (&self.dataset.test, &plan.test_indices),
            Samples::Validation => (&self.dataset.train, &plan.validation_indices),
        };
        self.scenario.task_tensors(split, indices, t, self.device)
    }

    fn shared(&self, key: &Key, samples: Samples, t: usize) -> (Tensor, Tensor) {
        let found = CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            let at = cache.iter().position(|e| e.is(key))?;
            // The most recently used last.
            let entry = cache.remove(at);
            cache.push(entry);
            let (x, y) = cache.last()?.tensors.get(&(samples, t))?;
            Some((x.shallow_clone(), y.shallow_clone()))
        });
        if let Some(found) = found {
            return found;
        }
        let (x, y) = self.build(samples, t);
        let bytes = tensor_bytes(&x) + tensor_bytes(&y);
        CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if !cache.last().is_some_and(|e| e.is(key)) {
                cache.push(Entry {
                    dataset: key.dataset.clone(),
                    scenario: key.scenario.clone(),
                    view: key.view.clone(),
                    device: key.device,
                    tensors: HashMap::new(),
                    bytes: 0,
                });
            }
            let entry = cache.last_mut().expect("just pushed");
            entry
                .tensors
                .insert((samples, t), (x.shallow_clone(), y.shallow_clone()));
            entry.bytes += bytes;
            // Drop the least recently used entries past the count or the budget, never the
            // one in use.
            while cache.len() > 1
                && (cache.len() > MAX_ENTRIES
                    || cache.iter().map(|e| e.bytes).sum::<usize>() > BUDGET_BYTES)
            {
                cache.remove(0);
            }
        });
        (x, y)
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Heads, Mode};

    fn dataset() -> Arc<Dataset> {
        // 6 images of 2x2, labels 0, 1, 0, 1, 0, 1.
        let split = Split {
            images: (0..24).map(|i| (i * 10) as u8).collect(),
            labels: vec![0, 1, 0, 1, 0, 1],
            channels: 1,
            rows: 2,
            cols: 2,
            classes: 2,
        };
        Arc::new(Dataset {
            name: "tiny".into(),
            train: split.clone(),
            test: split,
            source: "test".into(),
        })
    }

    fn same(a: &TaskData, b: &TaskData) -> bool {
        a.task == b.task && a.x.equal(&b.x) && a.y.equal(&b.y) && a.mask.equal(&b.mask)
    }

    #[test]
    fn cached_tensors_equal_fresh_ones_and_are_built_once() {
        clear();
        let data = dataset();
        let (train, test) = (&data.train, &data.test);
        let scenario = Arc::new(
            Scenario::permuted(train, test, 3, false, 5, Mode::Domain, Heads::Single).unwrap(),
        );
        let view = View::default();
        let cpu = Device::Cpu;
        let fresh = TaskTensors::new(&data, &scenario, &view, &scenario, cpu);
        assert!(!fresh.is_shared(), "no scope, no cache");
        let _scope = Scope::enter(&data, &scenario);
        let first = TaskTensors::new(&data, &scenario, &view, &scenario, cpu);
        assert!(first.is_shared());
        for t in 0..3 {
            assert!(same(
                &first.train_data(t),
                &scenario.train_data(train, t, cpu)
            ));
            assert!(same(
                &first.test_data(t, 2),
                &scenario.test_data(test, t, 2, cpu)
            ));
            assert!(same(
                &first.eval_data(t, 1),
                &scenario.eval_data(train, test, t, 1, cpu)
            ));
        }
        let bytes = cached_bytes();
        assert!(bytes > 0);
        // A later job gets the same storage; nothing new is built.
        let second = TaskTensors::new(&data, &scenario, &view, &scenario, cpu);
        let (a, b) = (first.train_data(1), second.train_data(1));
        assert_eq!(a.x.data_ptr(), b.x.data_ptr());
        assert_eq!(cached_bytes(), bytes);
        // Another scenario over the same data is another entry, and a scenario the scope does
        // not name is not cached.
        let other = Arc::new(
            Scenario::permuted(train, test, 3, false, 6, Mode::Domain, Heads::Single).unwrap(),
        );
        let outside = TaskTensors::new(&data, &other, &view, &other, cpu);
        assert!(!outside.is_shared());
        assert!(same(
            &outside.train_data(2),
            &other.train_data(train, 2, cpu)
        ));
        assert_ne!(
            outside.train_data(2).x.data_ptr(),
            first.train_data(2).x.data_ptr()
        );
    }

    #[test]
    fn a_view_is_keyed_apart_and_entries_are_bounded() {
        clear();
        let data = dataset();
        let (train, test) = (&data.train, &data.test);
        let cpu = Device::Cpu;
        let view = View {
            holdout: Some(crate::scenario::Holdout {
                fraction: 0.34,
                seed: 1,
            }),
            ..View::default()
        };
        for seed in 0..(MAX_ENTRIES as u64 + 2) {
            let scenario = Arc::new(
                Scenario::permuted(train, test, 2, false, seed, Mode::Domain, Heads::Single)
                    .unwrap(),
            );
            let viewed = scenario.view(train, &view).unwrap();
            let _scope = Scope::enter(&data, &scenario);
            let all = TaskTensors::new(&data, &scenario, &View::default(), &scenario, cpu);
            let part = TaskTensors::new(&data, &scenario, &view, &viewed, cpu);
            assert!(all.is_shared() && part.is_shared());
            assert!(same(&part.train_data(1), &viewed.train_data(train, 1, cpu)));
            assert!(same(
                &part.validation_data(1),
                &viewed.validation_data(train, 1, cpu)
            ));
            assert!(same(
                &all.train_data(1),
                &scenario.train_data(train, 1, cpu)
            ));
            assert_ne!(part.train_data(1).x.size(), all.train_data(1).x.size());
            CACHE.with(|c| assert!(c.borrow().len() <= MAX_ENTRIES));
        }
    }
}
