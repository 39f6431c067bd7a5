//! The metric family, as pure functions of one job's stored data, and the one table of them that
//! the summary, `summary.csv`, the HTML glossary and the charts read.
//!
//! `r[i][j]` is the test accuracy on task j after training task i; T tasks.
//! - ACC = mean_j r[T-1][j]
//! - BWT = mean over j < T-1 of (r[T-1][j] - r[j][j])  (Lopez-Paz & Ranzato 2017)
//! - forgetting = mean over j < T-1 of (max over l < T-1 of r[l][j]) - r[T-1][j]
//!   (Chaudhry et al. 2018)
//! - FWT = mean over j >= 1 of (r[j-1][j] - b[j]), b the untrained network's accuracy
//!   (Lopez-Paz & Ranzato 2017)
//! - learning accuracy = mean_j r[j][j]; average incremental accuracy = mean over i of
//!   mean_{j<=i} r[i][j] (Rebuffi et al. 2017)
//! - intransigence = mean_j (joint[j][j] - r[j][j]), against the joint run of the same seed
//!   (Chaudhry et al. 2018)
//! - forgetting ratio rho = mean_j (r[T-1][j] - c[j]) / (joint[T-1][j] - c[j]) - 1 (Serra et al.
//!   2018), c a stratified random classifier's expected accuracy
//!
//! With one task, BWT and forgetting are 0 by convention (nothing could be forgotten). A metric
//! whose inputs a result lacks (an old result has no untrained row; a grid without `joint` has
//! no reference) is `None`, shown as a dash, never a made-up number.
//!
//! Adding a metric is one entry of [`METRICS`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub acc: f64,
    pub bwt: f64,
    pub forgetting: f64,
}

impl Metrics {
    pub fn from_matrix(r: &[Vec<f64>]) -> Metrics {
        Metrics {
            acc: acc(r),
            bwt: bwt(r),
            forgetting: forgetting(r),
        }
    }
}

/// Mean accuracy over all tasks after the last task (NaN for a matrix without rows).
pub fn acc(r: &[Vec<f64>]) -> f64 {
    r.last().map_or(f64::NAN, |last| mean(last.iter().copied()))
}

/// `r[i][j]`, NaN when a row is too short: a malformed result gives a NaN metric, which tables
/// show as such, rather than a panic.
fn at(r: &[Vec<f64>], i: usize, j: usize) -> f64 {
    r.get(i)
        .and_then(|row| row.get(j))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Backward transfer: how much training later tasks changed the accuracy on earlier ones.
pub fn bwt(r: &[Vec<f64>]) -> f64 {
    let t = r.len();
    if t < 2 {
        return 0.0;
    }
    mean((0..t - 1).map(|j| at(r, t - 1, j) - at(r, j, j)))
}

/// Average forgetting: the drop from each earlier task's best accuracy to its final one.
pub fn forgetting(r: &[Vec<f64>]) -> f64 {
    let t = r.len();
    if t < 2 {
        return 0.0;
    }
    mean((0..t - 1).map(|j| {
        let best = (0..t - 1)
            .map(|l| at(r, l, j))
            .fold(f64::NEG_INFINITY, f64::max);
        best - at(r, t - 1, j)
    }))
}

/// Mean accuracy over the tasks seen so far, after each task: `mean_{j<=i} r[i][j]`.
pub fn average_accuracy_curve(r: &[Vec<f64>]) -> Vec<f64> {
    r.iter()
        .enumerate()
        .map(|(i, _)| mean((0..=i).map(|j| at(r, i, j))))
        .collect()
}

/// Forward transfer: how much training the earlier tasks helped each task before it was trained,
/// against the untrained network's accuracy `initial[j]` on it.
pub fn fwt(r: &[Vec<f64>], initial: &[f64]) -> Option<f64> {
    let t = r.len();
    (t >= 2 && initial.len() >= t && r.iter().all(|row| row.len() >= t))
        .then(|| mean((1..t).map(|j| r[j - 1][j] - initial[j])))
}

/// Mean over tasks of the accuracy on each task just after training it.
pub fn learning_accuracy(r: &[Vec<f64>]) -> f64 {
    mean((0..r.len()).map(|j| at(r, j, j)))
}

/// Mean over the rows of the average accuracy on the tasks seen so far.
pub fn average_incremental_accuracy(r: &[Vec<f64>]) -> f64 {
    mean(average_accuracy_curve(r).into_iter())
}

/// How much less each task was learnt than the joint run (trained on every task so far at once)
/// learnt it: mean_j `joint[j][j] - r[j][j]`.
pub fn intransigence(r: &[Vec<f64>], joint: &[Vec<f64>]) -> Option<f64> {
    (joint.len() >= r.len() && joint.iter().all(|row| row.len() >= r.len()))
        .then(|| mean((0..r.len()).map(|j| joint[j][j] - at(r, j, j))))
}

/// HAT's forgetting ratio after the last task (Serra et al. 2018, joansj/hat
/// `src/plot_results.py`): per task, `(r - c) / (joint - c) - 1` with `c` the random reference
/// and `joint_last` the joint run's last row, then the mean over tasks. 0 matches the joint run,
/// -1 is chance. A task where the joint run is no better than chance has no ratio and is left
/// out (`None` if every task is).
pub fn forgetting_ratio(r: &[Vec<f64>], joint_last: &[f64], chance: &[f64]) -> Option<f64> {
    let last = r.last()?;
    let ratios: Vec<f64> = (0..last.len())
        .filter_map(|j| {
            let (a, b, c) = (last[j], *joint_last.get(j)?, *chance.get(j)?);
            (b - c > 1e-12).then(|| (a - c) / (b - c) - 1.0)
        })
        .collect();
    (!ratios.is_empty()).then(|| mean(ratios.into_iter()))
}

/// What a metric is computed from: one job's stored data and the references beside it.
#[derive(Debug, Clone, Copy)]
pub struct MetricInputs<'a> {
    /// The job's accuracy matrix `r[i][j]`.
    pub accuracy: &'a [Vec<f64>],
    /// The untrained network's accuracy on each task, when the result recorded it.
    pub initial: Option<&'a [f64]>,
    /// A stratified random classifier's expected accuracy on each task, when recorded.
    pub chance: Option<&'a [f64]>,
    /// The accuracy matrix of the joint run with the same seed whose row j was trained on the
    /// tasks up to j (joint's `cumulative` schedule), when the results hold one.
    pub joint: Option<&'a [Vec<f64>]>,
    /// The last row of a joint run with the same seed (either schedule): the reference of the
    /// forgetting ratio.
    pub joint_final: Option<&'a [f64]>,
    /// The job trained once, after the last task (joint's `at_end` schedule): its rows before the
    /// last are an untrained network's, so metrics that read them are left out.
    pub trained_once_at_end: bool,
    /// The gated units held after each task, for methods that gate (empty otherwise).
    pub capacity: &'a [super::CapacityPoint],
}

/// One metric of the family: its name, definition and direction, and how to compute it.
pub struct MetricDef {
    /// Column name in `summary.csv` and key in code, e.g. `fwt`.
    pub key: &'static str,
    /// Name in tables, e.g. `FWT`.
    pub name: &'static str,
    /// One sentence: the formula and its source.
    pub definition: &'static str,
    pub higher_is_better: bool,
    /// An accuracy or a difference of accuracies (shown ×100, in % or points), else a ratio.
    pub percent: bool,
    /// Reads rows of the accuracy matrix before the last, i.e. says how tasks fared while the
    /// sequence was trained: meaningless for a job trained once at the end.
    pub reads_earlier_rows: bool,
    /// `None` when the inputs lack what the metric needs. Private: callers go through
    /// [`MetricDef::value`], which also leaves out what a job trained once at the end lacks.
    compute: fn(&MetricInputs) -> Option<f64>,
}

impl MetricDef {
    /// The metric for `m`: `None` when the inputs lack what it needs, or when it reads rows
    /// before the last of a job trained once at the end (joint's `at_end` BWT of +85 points
    /// would say nothing about forgetting).
    pub fn value(&self, m: &MetricInputs) -> Option<f64> {
        if self.reads_earlier_rows && m.trained_once_at_end {
            return None;
        }
        (self.compute)(m)
    }

    /// `a` is better than `b` in this metric's direction.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.higher_is_better {
            a > b
        } else {
            a < b
        }
    }
}

/// The metric family, in the order tables show it.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        key: "acc",
        name: "ACC",
        definition: "mean over j of R[T-1][j]: the average accuracy after the last task",
        higher_is_better: true,
        percent: true,
        reads_earlier_rows: false,
        compute: |m| (!m.accuracy.is_empty()).then(|| acc(m.accuracy)),
    },
    MetricDef {
        key: "bwt",
        name: "BWT",
        definition: "mean over j < T-1 of R[T-1][j] − R[j][j] (Lopez-Paz & Ranzato 2017): negative when learning later tasks hurt earlier ones",
        higher_is_better: true,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| (!m.accuracy.is_empty()).then(|| bwt(m.accuracy)),
    },
    MetricDef {
        key: "forgetting",
        name: "forgetting",
        definition: "mean over j < T-1 of max_{l < T-1} R[l][j] − R[T-1][j] (Chaudhry et al. 2018): the drop from each task's best accuracy to its final one",
        higher_is_better: false,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| (!m.accuracy.is_empty()).then(|| forgetting(m.accuracy)),
    },
    MetricDef {
        key: "fwt",
        name: "FWT",
        definition: "mean over j ≥ 1 of R[j-1][j] − b[j], b[j] the untrained network's accuracy on task j (Lopez-Paz & Ranzato 2017): positive when earlier tasks help a task before it is trained",
        higher_is_better: true,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| fwt(m.accuracy, m.initial?),
    },
    MetricDef {
        key: "learning_acc",
        name: "learning acc",
        definition: "mean over j of R[j][j]: how well each task is learnt when it is trained (Riemer et al. 2019)",
        higher_is_better: true,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| (!m.accuracy.is_empty()).then(|| learning_accuracy(m.accuracy)),
    },
    MetricDef {
        key: "avg_inc_acc",
        name: "avg inc acc",
        definition: "mean over i of the mean over j ≤ i of R[i][j]: the average accuracy on the tasks seen so far, averaged over the sequence (Rebuffi et al. 2017)",
        higher_is_better: true,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| (!m.accuracy.is_empty()).then(|| average_incremental_accuracy(m.accuracy)),
    },
    MetricDef {
        key: "intransigence",
        name: "intransigence",
        definition: "mean over j of J[j][j] − R[j][j], J the joint run of the same seed (Chaudhry et al. 2018): how much less each task is learnt than by training on every task so far at once; needs `joint` in the grid",
        higher_is_better: false,
        percent: true,
        reads_earlier_rows: true,
        compute: |m| intransigence(m.accuracy, m.joint?),
    },
    MetricDef {
        key: "rho",
        name: "ρ",
        definition: "mean over j of (R[T-1][j] − c[j]) / (J[T-1][j] − c[j]) − 1, J the joint run of the same seed and c[j] the expected accuracy of a random classifier drawing labels with task j's training frequencies (HAT's forgetting ratio, Serrà et al. 2018, as joansj/hat src/plot_results.py): 0 is as good as joint, −1 is chance; needs `joint` in the grid",
        higher_is_better: true,
        percent: false,
        reads_earlier_rows: false,
        compute: |m| forgetting_ratio(m.accuracy, m.joint_final?, m.chance?),
    },
    MetricDef {
        key: "units_held",
        name: "units held",
        definition: "the share of all gated hidden units that the tasks hold after the last task (largest gate over the tasks at least 0.5; HAT's compression, Serrà et al. 2018): what is left is free for later tasks; only methods that gate units have it",
        higher_is_better: false,
        percent: true,
        reads_earlier_rows: false,
        compute: |m| units_held(m.capacity),
    },
];

/// The share of gated units held after the last task recorded, or `None` without records.
pub fn units_held(capacity: &[super::CapacityPoint]) -> Option<f64> {
    let last = capacity.iter().map(|c| c.task).max()?;
    let (held, units) = capacity
        .iter()
        .filter(|c| c.task == last)
        .fold((0, 0), |(h, u), c| (h + c.held, u + c.units));
    (units > 0).then(|| held as f64 / units as f64)
}

/// The entry of [`METRICS`] with this key.
pub fn metric(key: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.key == key)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_a_hand_computed_matrix() {
        // Three tasks. Task 0: 0.9 -> 0.8 -> 0.6; task 1: 0.95 -> 0.85; task 2: 0.99.
        let r = vec![
            vec![0.9, 0.1, 0.2],
            vec![0.8, 0.95, 0.3],
            vec![0.6, 0.85, 0.99],
        ];
        let m = Metrics::from_matrix(&r);
        assert!((m.acc - (0.6 + 0.85 + 0.99) / 3.0).abs() < 1e-12);
        // BWT = ((0.6 - 0.9) + (0.85 - 0.95)) / 2 = -0.2
        assert!((m.bwt + 0.2).abs() < 1e-12);
        // forgetting = ((0.9 - 0.6) + (0.95 - 0.85)) / 2 = 0.2
        assert!((m.forgetting - 0.2).abs() < 1e-12);
        let curve = average_accuracy_curve(&r);
        assert!((curve[1] - 0.875).abs() < 1e-12);
    }

    #[test]
    fn forgetting_uses_the_best_earlier_accuracy_not_the_first() {
        let r = vec![vec![0.5, 0.0], vec![0.7, 0.9], vec![0.4, 0.9]];
        // Only rows l < T-1 = 2 count for the max: task 0 best is 0.7, task 1 best 0.9.
        assert!((forgetting(&r) - ((0.7 - 0.4) + 0.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_family_on_a_hand_computed_case() {
        let r = vec![
            vec![0.9, 0.1, 0.2],
            vec![0.8, 0.95, 0.3],
            vec![0.6, 0.85, 0.99],
        ];
        let initial = [0.1, 0.12, 0.25];
        // FWT = ((0.1 - 0.12) + (0.3 - 0.25)) / 2 = 0.015
        assert!((fwt(&r, &initial).unwrap() - 0.015).abs() < 1e-12);
        // learning accuracy = (0.9 + 0.95 + 0.99) / 3
        assert!((learning_accuracy(&r) - 2.84 / 3.0).abs() < 1e-12);
        // average incremental accuracy = (0.9 + 0.875 + 2.44 / 3) / 3
        let aia = (0.9 + 0.875 + 2.44 / 3.0) / 3.0;
        assert!((average_incremental_accuracy(&r) - aia).abs() < 1e-12);
        let joint = vec![
            vec![0.95, 0.1, 0.1],
            vec![0.9, 0.96, 0.1],
            vec![0.9, 0.9, 0.99],
        ];
        // intransigence = ((0.95 - 0.9) + (0.96 - 0.95) + (0.99 - 0.99)) / 3 = 0.02
        assert!((intransigence(&r, &joint).unwrap() - 0.02).abs() < 1e-12);
        // rho = mean of (0.6-0.5)/(0.9-0.5)-1, (0.85-0.5)/(0.9-0.5)-1, (0.99-0.5)/(0.99-0.5)-1
        //     = (-0.75 - 0.125 + 0) / 3
        let chance = [0.5, 0.5, 0.5];
        let rho = forgetting_ratio(&r, &joint[2], &chance).unwrap();
        assert!((rho - (-0.875 / 3.0)).abs() < 1e-12, "{rho}");
        // A task where joint is at chance has no ratio; it is left out, not divided by zero.
        let flat = [0.5, 0.5, 0.99];
        let rho = forgetting_ratio(&r, &joint[2], &flat).unwrap();
        assert!((rho - (-0.75 - 0.125) / 2.0).abs() < 1e-12, "{rho}");
    }

    #[test]
    fn a_job_trained_once_at_the_end_has_only_the_metrics_of_its_last_row() {
        // joint at_end: the first row is an untrained network's (0.1), the last learnt both.
        let r = vec![vec![0.1, 0.1], vec![0.95, 0.97]];
        let chance = [0.5, 0.5];
        let inputs = MetricInputs {
            accuracy: &r,
            initial: Some(&[0.1, 0.1]),
            chance: Some(&chance),
            joint: Some(&r),
            joint_final: Some(&[0.95, 0.97]),
            trained_once_at_end: true,
            capacity: &[],
        };
        let shown: Vec<&str> = METRICS
            .iter()
            .filter(|m| m.value(&inputs).is_some())
            .map(|m| m.key)
            .collect();
        assert_eq!(shown, ["acc", "rho"]);
        // The same matrix trained task by task would have a BWT of +85 points.
        let sequential = MetricInputs {
            trained_once_at_end: false,
            ..inputs
        };
        let bwt = metric("bwt").unwrap().value(&sequential).unwrap();
        assert!((bwt - 0.85).abs() < 1e-12, "{bwt}");
        assert!((metric("acc").unwrap().value(&inputs).unwrap() - 0.96).abs() < 1e-12);
    }

    #[test]
    fn metrics_without_their_inputs_are_none_not_numbers() {
        let r = vec![vec![0.9, 0.1], vec![0.8, 0.95]];
        let inputs = MetricInputs {
            accuracy: &r,
            initial: None,
            chance: None,
            joint: None,
            joint_final: None,
            trained_once_at_end: false,
            capacity: &[],
        };
        for key in ["fwt", "intransigence", "rho"] {
            assert_eq!((metric(key).unwrap().compute)(&inputs), None, "{key}");
        }
        let empty = MetricInputs {
            accuracy: &[],
            ..inputs
        };
        // An empty matrix gives no metric at all (and no panic).
        for m in METRICS {
            assert_eq!((m.compute)(&empty), None, "{}", m.key);
        }
        let keys: std::collections::BTreeSet<_> = METRICS.iter().map(|m| m.key).collect();
        assert_eq!(keys.len(), METRICS.len(), "metric keys must be unique");
    }

    #[test]
    fn a_ragged_matrix_gives_nan_metrics_not_a_panic() {
        // A truncated result: the second row lacks task 1, the third is empty.
        let r = vec![vec![0.9, 0.1], vec![0.8], vec![]];
        assert!(bwt(&r).is_nan() && forgetting(&r).is_nan());
        // ACC averages the (empty) last row: no value, so 0, as every empty mean here.
        assert_eq!(acc(&r), 0.0);
        assert!(learning_accuracy(&r).is_nan());
        let curve = average_accuracy_curve(&r);
        assert_eq!(curve[0], 0.9);
        assert!(curve[1].is_nan() && curve[2].is_nan());
        assert!(intransigence(&r, &vec![vec![1.0; 3]; 3]).unwrap().is_nan());
        assert_eq!(average_accuracy_curve(&[vec![]]).len(), 1);
    }

    #[test]
    fn one_task_has_no_forgetting() {
        let m = Metrics::from_matrix(&[vec![0.97]]);
        assert_eq!((m.bwt, m.forgetting), (0.0, 0.0));
    }
}
