//! The cost side of a comparison, from the results' `timings` and `cost`: per configuration the
//! mean over seeds of the train, importance (end-of-task work), evaluation and total time, the
//! peak resident memory and the bytes of the strategy's state, as table cells ("—" where no
//! result has the value: results written before it was recorded), and the Pareto front of
//! final ACC against total time that [`super::cost_chart`] draws. Reads groups only.

use crate::results::JobResult;

use super::summary::{number, Group, Stat};

/// A configuration's costs over its seeds. A value only some results have is the mean over
/// those; `None` when none has it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostStats {
    pub train_s: Option<Stat>,
    /// The strategies' end-of-task work (a Fisher, an importance): `timings.after_task_s`.
    pub importance_s: Option<Stat>,
    pub eval_s: Option<Stat>,
    pub total_s: Option<Stat>,
    pub peak_rss_bytes: Option<Stat>,
    pub state_bytes: Option<Stat>,
    /// Some job's peak includes other jobs of its process (it ran beside them).
    pub shared_peak: bool,
}

impl CostStats {
    pub fn of(results: &[&JobResult]) -> CostStats {
        let over = |f: &dyn Fn(&JobResult) -> Option<f64>| {
            let values: Vec<f64> = results.iter().filter_map(|r| f(r)).collect();
            (!values.is_empty()).then(|| Stat::of(&values))
        };
        let cost = |f: fn(&crate::results::Cost) -> Option<u64>| {
            over(&move |r: &JobResult| r.cost.as_ref().and_then(f).map(|b| b as f64))
        };
        CostStats {
            train_s: over(&|r| Some(r.timings.train_s)),
            importance_s: over(&|r| Some(r.timings.after_task_s)),
            eval_s: over(&|r| Some(r.timings.eval_s)),
            total_s: over(&|r| Some(r.timings.total_s)),
            peak_rss_bytes: cost(|c| c.peak_rss_bytes),
            state_bytes: cost(|c| c.state_bytes),
            shared_peak: results
                .iter()
                .any(|r| r.cost.as_ref().is_some_and(|c| c.jobs_overlapping > 1)),
        }
    }
}

/// The cost table's header, after the configuration.
pub const HEAD: [&str; 7] = [
    "ACC %",
    "train s",
    "importance s",
    "eval s",
    "total s",
    "peak memory",
    "strategy state",
];

/// What the cost table's columns are, said under it.
pub const NOTE: &str = "Means over seeds, per job. Importance: the strategies' end-of-task work \
(a Fisher, an importance); total: the whole job, set-up and selection included. Peak memory: \
the process's resident high-water mark (Linux VmHWM), reset at the job's start when it ran alone \
in its process, so the dataset and libtorch count in it; marked * where jobs ran side by side \
(runner.workers > 1), whose memory is then in it too. Strategy state: the bytes of the tensors \
the strategy keeps after the last task (anchors, Fishers, importances, old models). —: results \
written before these were recorded.";

/// A cost table row's cells, after the configuration's label.
pub fn cells(g: &Group) -> Vec<String> {
    let c = &g.cost;
    let seconds = |s: Option<Stat>| s.map_or_else(dash, |s| number(s.mean, 1));
    let bytes = |s: Option<Stat>| s.map_or_else(dash, |s| human_bytes(s.mean));
    let star = if c.shared_peak { " *" } else { "" };
    vec![
        g.acc.format(100.0, 2),
        seconds(c.train_s),
        seconds(c.importance_s),
        seconds(c.eval_s),
        seconds(c.total_s),
        c.peak_rss_bytes
            .map_or_else(dash, |s| format!("{}{star}", human_bytes(s.mean))),
        bytes(c.state_bytes),
    ]
}

fn dash() -> String {
    "—".to_string()
}

/// `bytes` in binary units: `512 B`, `1.5 KiB`, `23.4 MiB`, `1.20 GiB`; odd values as
/// [`number`] prints them.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if !bytes.is_finite() || bytes < 1024.0 {
        return format!("{} B", number(bytes, 0));
    }
    let mut value = bytes;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let digits = if value < 10.0 { 2 } else { 1 };
    format!("{} {unit}", number(value, digits))
}

/// The configurations on the Pareto front of `points` (ACC, time), higher ACC and lower time
/// being better: those no other point dominates, i.e. is at least as accurate and at least as
/// fast and strictly better in one of the two. Two equal points both stay; of two with equal
/// ACC the slower is dominated, of two with equal time the less accurate. Points with a
/// non-finite value are on no front. Indices into `points`, fastest first (so ACC rises along
/// the front).
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let finite = |&(acc, time): &(f64, f64)| acc.is_finite() && time.is_finite();
    let dominates =
        |a: &(f64, f64), b: &(f64, f64)| a.0 >= b.0 && a.1 <= b.1 && (a.0 > b.0 || a.1 < b.1);
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| finite(&points[i]))
        .filter(|&i| !points.iter().any(|p| finite(p) && dominates(p, &points[i])))
        .collect();
    front.sort_by(|&a, &b| {
        points[a]
            .1
            .total_cmp(&points[b].1)
            .then(points[a].0.total_cmp(&points[b].0))
    });
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_what_nothing_beats_on_both_acc_and_time() {
        // (ACC, seconds)
        let points = [
            (0.90, 10.0),    // 0: front (fastest of the accurate ones)
            (0.95, 40.0),    // 1: front
            (0.85, 20.0),    // 2: beaten by 0 on both
            (0.95, 60.0),    // 3: ties 1 on ACC, slower: dominated
            (0.80, 10.0),    // 4: ties 0 on time, less accurate: dominated
            (0.99, 100.0),   // 5: front (most accurate)
            (0.99, 100.0),   // 6: equal to 5: both stay
            (f64::NAN, 1.0), // 7: no ACC: on no front, and beats nothing
            (0.70, 5.0),     // 8: front (fastest)
        ];
        assert_eq!(pareto_front(&points), vec![8, 0, 1, 5, 6]);
        assert!(pareto_front(&[]).is_empty());
        assert_eq!(pareto_front(&[(0.5, 1.0)]), vec![0]);
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1023.0), "1023 B");
        assert_eq!(human_bytes(1536.0), "1.50 KiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0 * 20.5), "61.5 MiB");
        assert_eq!(human_bytes(1.2 * 1024f64.powi(3)), "1.20 GiB");
        assert_eq!(human_bytes(f64::NAN), "NaN B");
    }

    #[test]
    fn old_results_show_a_dash_and_new_ones_their_costs() {
        let mut g = super::super::summary::test_group(
            "ewc",
            "ewc",
            serde_json::json!({}),
            &[(1, 0.9), (2, 0.92)],
        );
        let old = cells(&g);
        assert_eq!(old.len(), HEAD.len());
        assert!(old[1..].iter().all(|c| c == "—"), "{old:?}");
        g.cost = CostStats {
            train_s: Some(Stat::of(&[10.0, 12.0])),
            importance_s: Some(Stat::of(&[1.0])),
            eval_s: Some(Stat::of(&[2.0])),
            total_s: Some(Stat::of(&[14.0, 16.0])),
            peak_rss_bytes: Some(Stat::of(&[512.0 * 1024.0 * 1024.0])),
            state_bytes: Some(Stat::of(&[2.0 * 1024.0 * 24.0])),
            shared_peak: true,
        };
        assert_eq!(
            cells(&g)[1..],
            ["11.0", "1.0", "2.0", "15.0", "512.0 MiB *", "48.0 KiB"]
        );
    }
}
