//! ACC, BWT and forgetting as pure functions of the accuracy matrix.
//!
//! `r[i][j]` is the test accuracy on task j after training task i; T tasks.
//! - ACC = mean_j r[T-1][j]
//! - BWT = mean over j < T-1 of (r[T-1][j] - r[j][j])  (Lopez-Paz & Ranzato 2017)
//! - forgetting = mean over j < T-1 of (max over l < T-1 of r[l][j]) - r[T-1][j]
//!   (Chaudhry et al. 2018)
//!
//! With one task, BWT and forgetting are 0 by convention (nothing could be forgotten).

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

/// Mean accuracy over all tasks after the last task.
pub fn acc(r: &[Vec<f64>]) -> f64 {
    let last = r.last().expect("accuracy matrix has no rows");
    mean(last.iter().copied())
}

/// Backward transfer: how much training later tasks changed the accuracy on earlier ones.
pub fn bwt(r: &[Vec<f64>]) -> f64 {
    let t = r.len();
    if t < 2 {
        return 0.0;
    }
    mean((0..t - 1).map(|j| r[t - 1][j] - r[j][j]))
}

/// Average forgetting: the drop from each earlier task's best accuracy to its final one.
pub fn forgetting(r: &[Vec<f64>]) -> f64 {
    let t = r.len();
    if t < 2 {
        return 0.0;
    }
    mean((0..t - 1).map(|j| {
        let best = (0..t - 1)
            .map(|l| r[l][j])
            .fold(f64::NEG_INFINITY, f64::max);
        best - r[t - 1][j]
    }))
}

/// Mean accuracy over the tasks seen so far, after each task: `mean_{j<=i} r[i][j]`.
pub fn average_accuracy_curve(r: &[Vec<f64>]) -> Vec<f64> {
    r.iter()
        .enumerate()
        .map(|(i, row)| mean(row[..=i].iter().copied()))
        .collect()
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
    fn one_task_has_no_forgetting() {
        let m = Metrics::from_matrix(&[vec![0.97]]);
        assert_eq!((m.bwt, m.forgetting), (0.0, 0.0));
    }
}
