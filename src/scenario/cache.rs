//! A job's task tensors, built once per process and scenario instead of once per job.
//!
//! In: the dataset, the scenario, the job's [`View`] of it and the device. Out: each task's
//! training, test and held-out tensors as [`TaskData`], equal to what [`Scenario::train_data`],
//! [`Scenario::test_data`], [`Scenario::eval_data`] and [`Scenario::validation_data`] build (they
//! are those functions' tensors, kept).
//!
//! The images and targets of a task depend only on those four inputs, so the jobs a run's
//! workers run, one after another and side by side, can share them: 20 permuted MNIST tasks are
//! 4.4 GB, and four jobs on one GPU each building their own would hold four copies. The runner
//! opens a [`Scope`] around each job, naming the run's dataset and the job's scenario in their
//! `Arc`s; inside it, a [`TaskTensors`] for that same dataset and scenario hands out shallow
//! clones of tensors built on first use and kept in the process's cache. A tensor one worker is
//! building is waited for by the others that need it, never built twice; different tensors build
//! side by side. Each entry holds clones of the two `Arc`s, so the addresses that key it cannot be
//! reused by other objects while it lives. Outside a scope (a job run directly, as tests do)
//! every tensor is built afresh, as before.
//!
//! Cached tensors must not be written to: jobs read their data and replace, never modify, it.
//! The cache keeps the entries jobs are using, and of the others the most recently used, up to
//! [`MAX_ENTRIES`] entries and [`BUDGET_BYTES`] in all. The output masks are not cached (they
//! depend on the row of the accuracy matrix and cost nothing to build).

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, MutexGuard,
    },
};

use tch::{Device, Tensor};

use super::{Evaluate, Scenario, View};
use crate::data::{Dataset, Split};
use crate::strategy::TaskData;

/// Entries (dataset, scenario, view, device) the process keeps when no job uses them.
pub const MAX_ENTRIES: usize = 2;
/// Bytes of tensors the process keeps before it drops entries no job uses: 20 permuted MNIST
/// tasks (training and test images) take 4.4 GB.
pub const BUDGET_BYTES: usize = 6 << 30;

/// Which of a task's sample lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Samples {
    Train,
    Test,
    /// The training samples a holdout keeps out.
    Validation,
}

/// One task's images and target columns, once some worker has built them.
type Slot = Arc<Mutex<Option<(Tensor, Tensor)>>>;

/// One (dataset, scenario, view, device) and the task tensors built for it so far.
struct Entry {
    dataset: Arc<Dataset>,
    scenario: Arc<Scenario>,
    view: View,
    device: Device,
    /// Per task and sample list.
    slots: Mutex<HashMap<(Samples, usize), Slot>>,
    bytes: AtomicUsize,
}

impl Entry {
    fn is(&self, key: &Key) -> bool {
        Arc::ptr_eq(&self.dataset, &key.dataset)
            && Arc::ptr_eq(&self.scenario, &key.scenario)
            && self.view == key.view
            && self.device == key.device
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }
}

/// Entries, the most recently used last. `TaskTensors` hold an `Arc` of theirs while they live,
/// which is how an entry in use is told apart (its strong count is above 1).
static CACHE: Mutex<Vec<Arc<Entry>>> = Mutex::new(Vec::new());

thread_local! {
    /// The dataset and scenario of the job this thread runs, while a [`Scope`] is open.
    static SCOPE: RefCell<Option<(Arc<Dataset>, Arc<Scenario>)>> = const { RefCell::new(None) };
}

/// A lock that a panicking job (its libtorch errors arrive as panics) cannot poison for the
/// others: what it guards is only ever replaced whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// While it lives, jobs on this thread over `dataset` and `scenario` share their task tensors
/// with the process's other jobs over them.
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

struct Key {
    dataset: Arc<Dataset>,
    scenario: Arc<Scenario>,
    view: View,
    device: Device,
}

/// The cache's entry for `key`, made the most recently used (created if missing), after
/// dropping the entries past the count or the budget that no job uses.
fn entry_for(key: Key) -> Arc<Entry> {
    let mut cache = lock(&CACHE);
    let entry = match cache.iter().position(|e| e.is(&key)) {
        Some(at) => cache.remove(at),
        None => Arc::new(Entry {
            dataset: key.dataset,
            scenario: key.scenario,
            view: key.view,
            device: key.device,
            slots: Mutex::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
        }),
    };
    cache.push(entry.clone());
    evict(&mut cache);
    entry
}

/// Drops the least recently used entries no job uses while the cache holds more than
/// [`MAX_ENTRIES`] entries or [`BUDGET_BYTES`].
fn evict(cache: &mut Vec<Arc<Entry>>) {
    loop {
        let over = cache.len() > MAX_ENTRIES
            || cache.iter().map(|e| e.bytes()).sum::<usize>() > BUDGET_BYTES;
        // An entry only the cache holds is one no job uses.
        match cache.iter().position(|e| Arc::strong_count(e) == 1) {
            Some(unused) if over => drop(cache.remove(unused)),
            _ => return,
        }
    }
}

/// A job's task tensors: the scenario as the job's view shows it, over the dataset, on a
/// device; shared through the process's cache when a [`Scope`] names that dataset and scenario.
pub struct TaskTensors<'a> {
    scenario: &'a Scenario,
    dataset: &'a Dataset,
    device: Device,
    entry: Option<Arc<Entry>>,
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
            entry: key.map(entry_for),
        }
    }

    /// Whether the tensors come from the process's cache.
    pub fn is_shared(&self) -> bool {
        self.entry.is_some()
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
        let (x, y) = match &self.entry {
            None => self.build(samples, t),
            Some(entry) => self.shared(entry, samples, t),
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

    /// The entry's tensors of task `t`, built here unless another job has built them (or is
    /// building them: then this waits for its result).
    fn shared(&self, entry: &Entry, samples: Samples, t: usize) -> (Tensor, Tensor) {
        let slot = lock(&entry.slots).entry((samples, t)).or_default().clone();
        let mut slot = lock(&slot);
        if let Some((x, y)) = slot.as_ref() {
            return (x.shallow_clone(), y.shallow_clone());
        }
        let (x, y) = self.build(samples, t);
        entry
            .bytes
            .fetch_add(tensor_bytes(&x) + tensor_bytes(&y), Relaxed);
        *slot = Some((x.shallow_clone(), y.shallow_clone()));
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
        let entry = first.entry.as_ref().unwrap();
        let bytes = entry.bytes();
        assert!(bytes > 0);
        // A later job gets the same storage; nothing new is built.
        let second = TaskTensors::new(&data, &scenario, &view, &scenario, cpu);
        assert!(Arc::ptr_eq(entry, second.entry.as_ref().unwrap()));
        let (a, b) = (first.train_data(1), second.train_data(1));
        assert_eq!(a.x.data_ptr(), b.x.data_ptr());
        assert_eq!(entry.bytes(), bytes);
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
    fn workers_side_by_side_share_one_build() {
        let data = dataset();
        let (train, test) = (&data.train, &data.test);
        let scenario = Arc::new(
            Scenario::permuted(train, test, 2, false, 9, Mode::Domain, Heads::Single).unwrap(),
        );
        // Four workers at once, each in its own scope, each asking for every task's tensors.
        let pointers: Vec<Vec<usize>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let _scope = Scope::enter(&data, &scenario);
                        let view = View::default();
                        let tensors =
                            TaskTensors::new(&data, &scenario, &view, &scenario, Device::Cpu);
                        (0..2)
                            .flat_map(|t| {
                                let (a, b) = (tensors.train_data(t), tensors.test_data(t, 1));
                                assert!(same(&a, &scenario.train_data(train, t, Device::Cpu)));
                                [a.x.data_ptr() as usize, b.x.data_ptr() as usize]
                            })
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(
            pointers.iter().all(|p| p == &pointers[0]),
            "every worker got the one build: {pointers:?}"
        );
    }

    #[test]
    fn a_view_is_keyed_apart_and_unused_entries_are_dropped() {
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
        let mut made = Vec::new();
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
            assert!(!Arc::ptr_eq(
                all.entry.as_ref().unwrap(),
                part.entry.as_ref().unwrap()
            ));
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
            made.push(scenario);
        }
        // The first scenario's entries, unused since, made way for the later ones.
        let first = &made[0];
        assert!(!lock(&CACHE).iter().any(|e| Arc::ptr_eq(&e.scenario, first)));
    }
}
