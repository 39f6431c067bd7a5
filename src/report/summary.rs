//! Grouping results by configuration (strategy + parameters) over seeds, with mean, standard
//! deviation and 95% confidence interval; the printed table and `summary.csv`.
//!
//! The 95% interval of a mean over n seeds is `mean ± t_{0.975, n-1} · s / √n` (Student's t, s the
//! sample standard deviation); with one seed there is no interval.

use std::collections::BTreeMap;

use crate::results::{
    metrics::{average_accuracy_curve, MetricInputs, METRICS},
    CurvePoint, ImportanceSummary, JobResult, Metrics,
};

/// Mean and sample standard deviation (n - 1; 0 for a single value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stat {
            mean,
            std: var.sqrt(),
            n,
        }
    }

    /// Half-width of the 95% confidence interval of the mean, `t_{0.975, n-1} · s / √n`; `None`
    /// for fewer than two values.
    pub fn ci95(&self) -> Option<f64> {
        (self.n > 1).then(|| t_975(self.n - 1) * self.std / (self.n as f64).sqrt())
    }

    /// The interval's bounds, `(mean, mean)` without one.
    pub fn ci95_bounds(&self) -> (f64, f64) {
        let h = self.ci95().unwrap_or(0.0);
        (self.mean - h, self.mean + h)
    }

    /// `mean ± half-width` with `digits` decimals (the mean alone for one value); `scale`
    /// multiplies both (100 for percent).
    pub fn format(&self, scale: f64, digits: usize) -> String {
        match self.ci95() {
            Some(h) => format!(
                "{} ± {}",
                number(self.mean * scale, digits),
                number(h * scale, digits)
            ),
            None => number(self.mean * scale, digits),
        }
    }

    /// [`Stat::format`] with the mean's sign, `+` included (`+0.85 ± 0.01`): how BWT is shown.
    pub fn format_signed(&self, scale: f64, digits: usize) -> String {
        match self.ci95() {
            Some(h) => format!(
                "{} ± {}",
                signed(self.mean * scale, digits),
                number(h * scale, digits)
            ),
            None => signed(self.mean * scale, digits),
        }
    }
}

/// `v` with `digits` decimals, from 1e9 on in scientific notation (fixed decimals would print
/// hundreds of digits for an absurd value), NaN and the infinities as `NaN`, `inf` and `-inf`:
/// how every table and `summary.csv` print a number.
pub fn number(v: f64, digits: usize) -> String {
    if v.is_finite() && v.abs() >= 1e9 {
        format!("{v:.digits$e}")
    } else {
        format!("{v:.digits$}")
    }
}

/// [`number`] with its sign, `+` included (`+0.50`, `-inf`; NaN has none).
pub fn signed(v: f64, digits: usize) -> String {
    if v.is_finite() && v.abs() >= 1e9 {
        format!("{v:+.digits$e}")
    } else {
        format!("{v:+.digits$}")
    }
}

/// The 0.975 quantile of Student's t distribution with `df` degrees of freedom (`df >= 1`).
pub fn t_975(df: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, df.max(1) as f64)
        .expect("a t distribution with positive degrees of freedom")
        .inverse_cdf(0.975)
}

/// One configuration's results over its seeds.
#[derive(Debug, Clone)]
pub struct Group {
    /// `strategy` plus its parameters, e.g. `ewc lambda=100 fisher=empirical`.
    pub label: String,
    pub strategy: String,
    pub params: serde_json::Value,
    pub seeds: Vec<u64>,
    pub acc: Stat,
    /// Final ACC of each seed's job, by seed: what the paired tests compare.
    pub acc_by_seed: Vec<(u64, f64)>,
    pub bwt: Stat,
    pub forgetting: Stat,
    /// Every job of the group trained once, after the last task (joint's `at_end`): BWT,
    /// forgetting and the other metrics that read earlier rows are shown as "—".
    pub trained_once_at_end: bool,
    pub wall_s: Stat,
    /// Time, memory and state per job, mean over seeds (the cost table and chart).
    pub cost: super::cost::CostStats,
    /// For the grid points of a search: the mean final ACC on the data the choice was made on
    /// (validation), when `acc` is the test ACC of the same runs; `None` otherwise.
    pub selection_acc: Option<Stat>,
    /// Every metric of [`METRICS`], in its order, over the seeds whose results have its inputs
    /// (`None` when none has: e.g. FWT of results without an untrained row).
    pub family: Vec<Option<Stat>>,
    /// Mean over seeds of the average accuracy on the tasks seen so far, after each task.
    pub avg_accuracy_curve: Vec<f64>,
    /// The same over seeds, with its spread: one [`Stat`] per task trained.
    pub avg_accuracy: Vec<Stat>,
    /// `accuracy[i][j]` over seeds: test accuracy on task j after training task i.
    pub accuracy: Vec<Vec<Stat>>,
    /// The smallest seed, whose training curve is `curve`.
    pub curve_seed: u64,
    /// Task loss and penalty per epoch of the smallest seed's job.
    pub curve: Vec<CurvePoint>,
    /// Importance distributions after each task, of the smallest seed's job.
    pub importance: Vec<ImportanceSummary>,
    /// Gated units held after each task, of the smallest seed's job (methods that gate).
    pub capacity: Vec<crate::results::CapacityPoint>,
    /// Under `selection: continual`, each seed's choices task by task, in seed order.
    pub continual: Vec<(u64, Vec<crate::results::ContinualChoice>)>,
}

impl Group {
    /// `cell()` for a metric of a sequence trained task by task; "—" for a group trained once
    /// at the end, which has none (see [`trained_once_note`]).
    pub fn sequential_cell(&self, cell: impl FnOnce() -> String) -> String {
        if self.trained_once_at_end {
            "—".to_string()
        } else {
            cell()
        }
    }

    /// The `k`-th metric of [`METRICS`] over the group's seeds, if any seed has it.
    pub fn metric(&self, k: usize) -> Option<Stat> {
        self.family.get(k).copied().flatten()
    }
}

/// `key=value` for each parameter, in name order.
pub fn params_label(params: &serde_json::Value) -> String {
    params_label_except(params, &serde_json::Value::Null)
}

/// `key=value` for each parameter whose value differs from `defaults` (a strategy's resolved
/// defaults) or that is in `always`, in name order: the short label of tables and legends.
pub fn params_label_except(params: &serde_json::Value, defaults: &serde_json::Value) -> String {
    params_label_with(params, defaults, &[])
}

fn params_label_with(
    params: &serde_json::Value,
    defaults: &serde_json::Value,
    always: &[&str],
) -> String {
    match params {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, v)| defaults.get(k.as_str()) != Some(*v) || always.contains(&k.as_str()))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                serde_json::Value::Null => format!("{k}=none"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Whether `r` is a search run of the selection (its settings say so): scored on validation
/// data or on the first tasks only, so never part of the reported tables.
pub fn is_search(r: &JobResult) -> bool {
    r.settings.get("phase").and_then(|p| p.as_str()) == Some("search")
}

/// The inputs of the metric family for `r`: its matrices, and the joint run of the same seed
/// among `results` (the first by id) as the reference of intransigence and the forgetting ratio.
/// A joint run trained on only the last task (`schedule: at_end`) has untrained rows before the
/// last, so it is a reference for the forgetting ratio only, not for intransigence.
pub fn metric_inputs<'a>(r: &'a JobResult, results: &'a [JobResult]) -> MetricInputs<'a> {
    let joints = || {
        results
            .iter()
            .filter(move |o| o.strategy == "joint" && o.seed == r.seed && o.id != r.id)
    };
    let cumulative = |o: &&JobResult| o.params.get("schedule").is_none_or(|s| s == "cumulative");
    let joint = joints()
        .filter(cumulative)
        .min_by(|a, b| a.id.cmp(&b.id))
        .map(|o| o.accuracy.as_slice());
    let joint_final = joints()
        .min_by(|a, b| a.id.cmp(&b.id))
        .and_then(|o| o.accuracy.last())
        .map(Vec::as_slice);
    MetricInputs {
        accuracy: &r.accuracy,
        initial: r.initial_accuracy.as_deref(),
        chance: r.chance_accuracy.as_deref(),
        joint,
        joint_final,
        trained_once_at_end: r.trained_once_at_end(),
        capacity: &r.capacity,
    }
}

/// Every metric of [`METRICS`] for one result (see [`metric_inputs`]), non-finite values
/// dropped.
pub fn job_metrics(r: &JobResult, results: &[JobResult]) -> Vec<Option<f64>> {
    let inputs = metric_inputs(r, results);
    METRICS
        .iter()
        .map(|m| m.value(&inputs).filter(|v| v.is_finite()))
        .collect()
}

/// ` k=v` for each of `keys` set in `r`'s training settings (`clip_value=1.0` for the parts of
/// a nested setting; unset values left out).
fn training_label(r: &JobResult, keys: &[String]) -> String {
    let mut out = String::new();
    for k in keys {
        match r.settings.get("training").and_then(|t| t.get(k)) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(parts)) => {
                for (part, v) in parts.iter().filter(|(_, v)| !v.is_null()) {
                    out.push_str(&format!(" {k}_{part}={v}"));
                }
            }
            Some(v) => out.push_str(&format!(" {k}={v}")),
        }
    }
    out
}

/// Results grouped by (strategy, parameters), sorted by label. Labels show the parameters that
/// differ from the strategy's defaults (the job ids and `summary.csv` show every one).
pub fn group(results: &[JobResult]) -> Vec<Group> {
    let registry = crate::strategy::Registry::load().ok();
    let mut by_key: BTreeMap<String, Vec<&JobResult>> = BTreeMap::new();
    // Training settings that differ between results (a strategy entry's own `training:`, as a
    // paper's per-method learning rate) label the configurations they belong to.
    let training = |r: &JobResult| {
        r.settings
            .get("training")
            .and_then(|t| t.as_object())
            .cloned()
    };
    let varying_training: Vec<String> = results
        .iter()
        .filter_map(training)
        .flat_map(|t| t.keys().cloned().collect::<Vec<_>>())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| {
            let values: std::collections::BTreeSet<String> = results
                .iter()
                .map(|r| {
                    training(r)
                        .and_then(|t| t.get(k).cloned())
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            values.len() > 1
        })
        .collect();
    for r in results {
        let defaults = registry
            .as_ref()
            .and_then(|reg| reg.get(&r.strategy))
            .and_then(|reg| (reg.resolve)(&serde_yaml::Mapping::new()).ok())
            .unwrap_or(serde_json::Value::Null);
        // A swept parameter is always shown, even at its default value.
        let swept: Vec<&str> = r
            .params
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, v)| {
                        results.iter().any(|o| {
                            o.strategy == r.strategy && o.params.get(k.as_str()) != Some(*v)
                        })
                    })
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let label = [
            r.strategy.clone(),
            params_label_with(&r.params, &defaults, &swept),
            training_label(r, &varying_training),
        ]
        .iter()
        .map(|part| part.trim())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        by_key.entry(label).or_default().push(r);
    }
    let mut groups: Vec<Group> = by_key
        .into_iter()
        .map(|(label, rs)| {
            let collect = |f: &dyn Fn(&JobResult) -> f64| {
                Stat::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            // ACC, BWT and forgetting recomputed from each stored matrix, once per job.
            let metrics: Vec<Metrics> = rs
                .iter()
                .map(|r| Metrics::from_matrix(&r.accuracy))
                .collect();
            let of_metrics =
                |f: &dyn Fn(&Metrics) -> f64| Stat::of(&metrics.iter().map(f).collect::<Vec<_>>());
            let curves: Vec<Vec<f64>> = rs
                .iter()
                .map(|r| average_accuracy_curve(&r.accuracy))
                .collect();
            let len = curves.iter().map(Vec::len).min().unwrap_or(0);
            let avg_accuracy: Vec<Stat> = (0..len)
                .map(|i| Stat::of(&curves.iter().map(|c| c[i]).collect::<Vec<_>>()))
                .collect();
            let avg_accuracy_curve = avg_accuracy.iter().map(|s| s.mean).collect();
            let rows = rs.iter().map(|r| r.accuracy.len()).min().unwrap_or(0);
            let cols = rs
                .iter()
                .flat_map(|r| r.accuracy.iter().map(Vec::len))
                .min()
                .unwrap_or(0);
            let accuracy = (0..rows)
                .map(|i| {
                    (0..cols)
                        .map(|j| Stat::of(&rs.iter().map(|r| r.accuracy[i][j]).collect::<Vec<_>>()))
                        .collect()
                })
                .collect();
            let per_job: Vec<Vec<Option<f64>>> =
                rs.iter().map(|r| job_metrics(r, results)).collect();
            let family = (0..METRICS.len())
                .map(|k| {
                    let values: Vec<f64> = per_job.iter().filter_map(|m| m[k]).collect();
                    (!values.is_empty()).then(|| Stat::of(&values))
                })
                .collect();
            let first = rs.iter().min_by_key(|r| r.seed).expect("a group has a job");
            Group {
                label,
                strategy: rs[0].strategy.clone(),
                params: rs[0].params.clone(),
                seeds: rs.iter().map(|r| r.seed).collect(),
                acc: of_metrics(&|m| m.acc),
                acc_by_seed: rs
                    .iter()
                    .zip(&metrics)
                    .map(|(r, m)| (r.seed, m.acc))
                    .collect(),
                bwt: of_metrics(&|m| m.bwt),
                forgetting: of_metrics(&|m| m.forgetting),
                trained_once_at_end: rs.iter().all(|r| r.trained_once_at_end()),
                wall_s: collect(&|r| r.timings.total_s),
                cost: super::cost::CostStats::of(&rs),
                selection_acc: None,
                family,
                avg_accuracy_curve,
                avg_accuracy,
                accuracy,
                curve_seed: first.seed,
                curve: first.curve.clone(),
                importance: first.importance.clone(),
                capacity: first.capacity.clone(),
                continual: rs
                    .iter()
                    .filter(|r| !r.continual.is_empty())
                    .map(|r| (r.seed, r.continual.clone()))
                    .collect(),
            }
        })
        .collect();
    // By strategy, then by parameter values (numbers as numbers, so 20 comes before 100).
    groups.sort_by(|a, b| {
        a.strategy
            .cmp(&b.strategy)
            .then_with(|| compare_params(&a.params, &b.params))
    });
    groups
}

fn compare_params(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return std::cmp::Ordering::Equal;
    };
    for (key, x) in a {
        let order = match (x, b.get(key).unwrap_or(&Value::Null)) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y.as_f64().unwrap_or(0.0)),
            (x, y) => x.to_string().cmp(&y.to_string()),
        };
        if order.is_ne() {
            return order;
        }
    }
    std::cmp::Ordering::Equal
}

/// How a configuration's row is marked: the bounds every method is measured between.
pub fn role(strategy: &str) -> &'static str {
    match strategy {
        "joint" => " (upper bound)",
        "naive" => " (lower bound)",
        _ => "",
    }
}

/// Which configuration is best in each column of the summary, by mean over seeds: the highest
/// ACC, the highest BWT, the lowest forgetting. Indices into `groups` (every one that ties).
pub struct Best {
    pub acc: Vec<usize>,
    pub bwt: Vec<usize>,
    pub forgetting: Vec<usize>,
}

impl Best {
    pub fn of(groups: &[Group]) -> Best {
        let pick = |value: &dyn Fn(&Group) -> Option<f64>| {
            let top = groups
                .iter()
                .filter_map(value)
                .fold(f64::NEG_INFINITY, f64::max);
            (0..groups.len())
                .filter(|&i| value(&groups[i]) == Some(top))
                .collect()
        };
        // A job trained once at the end has no BWT or forgetting to rank.
        let sequential = |g: &Group, v: f64| (!g.trained_once_at_end).then_some(v);
        Best {
            acc: pick(&|g| Some(g.acc.mean)),
            bwt: pick(&|g| sequential(g, g.bwt.mean)),
            forgetting: pick(&|g| sequential(g, -g.forgetting.mean)),
        }
    }
}

/// Why the groups trained once at the end show "—" for BWT, forgetting and the metrics that
/// read earlier rows; `None` when no group did.
pub fn trained_once_note(groups: &[Group]) -> Option<String> {
    let labels: Vec<&str> = groups
        .iter()
        .filter(|g| g.trained_once_at_end)
        .map(|g| g.label.as_str())
        .collect();
    (!labels.is_empty()).then(|| {
        format!(
            "—: {} trained once, after the last task; its rows before the last are an untrained \
             network's, so BWT, forgetting, FWT, learning accuracy, average incremental accuracy \
             and intransigence say nothing about it.",
            labels.join(", ")
        )
    })
}

/// What a `±` of [`table`] and [`family_table`] means, printed under them.
pub const PLUS_MINUS_NOTE: &str =
    "± is the half-width of the 95% confidence interval of the mean over seeds, t(0.975, n-1) · s / √n.";

/// The table printed at the end of a run: mean ± 95% CI half-width over seeds, as the HTML page
/// and the further metrics show them.
pub fn table(groups: &[Group]) -> String {
    let width = groups
        .iter()
        .map(|g| g.label.chars().count() + role(&g.strategy).len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:<width$}  {:>5}  {:>17}  {:>17}  {:>17}  {:>9}\n",
        "strategy", "seeds", "ACC", "BWT", "forgetting", "wall s"
    );
    for g in groups {
        let pm = |s: &Stat| s.format(1.0, 4);
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>17}  {:>17}  {:>17}  {:>9}\n",
            format!("{}{}", g.label, role(&g.strategy)),
            g.acc.n,
            pm(&g.acc),
            g.sequential_cell(|| g.bwt.format_signed(1.0, 4)),
            g.sequential_cell(|| pm(&g.forgetting)),
            number(g.wall_s.mean, 1)
        ));
    }
    out
}

/// The metrics of [`METRICS`] beyond ACC, BWT and forgetting (which the main table shows)
/// that at least one group has, as table columns: a header per metric, then per group its cells
/// and whether each cell is the best of its column (by the metric's direction).
pub struct FamilyTable {
    pub head: Vec<String>,
    pub rows: Vec<Vec<(String, bool)>>,
}

/// The main table's metrics, which [`FamilyTable`] leaves out.
const MAIN_METRICS: [&str; 3] = ["acc", "bwt", "forgetting"];

impl FamilyTable {
    pub fn of(groups: &[Group]) -> FamilyTable {
        let columns: Vec<usize> = (0..METRICS.len())
            .filter(|&k| !MAIN_METRICS.contains(&METRICS[k].key))
            .filter(|&k| groups.iter().any(|g| g.metric(k).is_some()))
            .collect();
        let head = columns
            .iter()
            .map(|&k| {
                let m = &METRICS[k];
                let unit = if m.percent { " (points)" } else { "" };
                let arrow = if m.higher_is_better { "↑" } else { "↓" };
                format!("{}{unit} {arrow}", m.name)
            })
            .collect();
        let best: Vec<Option<f64>> = columns
            .iter()
            .map(|&k| {
                let m = &METRICS[k];
                groups
                    .iter()
                    .filter_map(|g| g.metric(k).map(|s| s.mean))
                    .reduce(|a, b| if m.better(b, a) { b } else { a })
            })
            .collect();
        let rows = groups
            .iter()
            .map(|g| {
                columns
                    .iter()
                    .zip(&best)
                    .map(|(&k, best)| match g.metric(k) {
                        Some(s) => {
                            let m = &METRICS[k];
                            let text = if m.percent {
                                s.format(100.0, 2)
                            } else {
                                s.format(1.0, 3)
                            };
                            (text, Some(s.mean) == *best)
                        }
                        None => ("—".to_string(), false),
                    })
                    .collect()
            })
            .collect();
        FamilyTable { head, rows }
    }

    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }
}

/// The further metrics ([`FamilyTable`]) as printed text; empty when no group has any.
pub fn family_table(groups: &[Group]) -> String {
    let table = FamilyTable::of(groups);
    if table.is_empty() {
        return String::new();
    }
    let width = groups
        .iter()
        .map(|g| g.label.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("{:<width$}", "strategy");
    for h in &table.head {
        out.push_str(&format!("  {:>20}", h));
    }
    out.push('\n');
    for (g, row) in groups.iter().zip(&table.rows) {
        out.push_str(&format!("{:<width$}", g.label));
        for (cell, _) in row {
            out.push_str(&format!("  {cell:>20}"));
        }
        out.push('\n');
    }
    out
}

/// `summary.csv`: one row per job, with every metric of [`METRICS`] (empty where a job's results
/// lack its inputs), recomputed from the stored matrices.
pub fn csv(results: &[JobResult], selection: &str) -> String {
    let mut out = String::from("id,strategy,params,seed,selection,");
    for m in METRICS {
        out.push_str(m.key);
        out.push(',');
    }
    out.push_str("total_s,train_s,after_task_s,samples_per_s,device,eval_s,selection_s,peak_rss_bytes,state_bytes\n");
    for r in results {
        let metrics: String = job_metrics(r, results)
            .iter()
            .map(|v| v.map_or_else(String::new, |v| number(v, 6)) + ",")
            .collect();
        let phase = if is_search(r) {
            "search run (scored on the selection data; not reported)"
        } else {
            selection
        };
        out.push_str(&format!(
            "{},{},\"{}\",{},\"{}\",{metrics}{},{},{},{},{}\n",
            r.id,
            r.strategy,
            params_label(&r.params).replace('"', "'"),
            r.seed,
            phase.replace('"', "'"),
            number(r.timings.total_s, 3),
            number(r.timings.train_s, 3),
            number(r.timings.after_task_s, 3),
            number(r.timings.samples_per_s, 1),
            r.device
        ));
        // Columns added later go last, so readers of the older columns by position still work.
        let bytes = |f: fn(&crate::results::Cost) -> Option<u64>| {
            r.cost
                .as_ref()
                .and_then(f)
                .map_or_else(String::new, |b| b.to_string())
        };
        out.pop();
        out.push_str(&format!(
            ",{},{},{},{}\n",
            number(r.timings.eval_s, 3),
            number(r.timings.selection_s, 3),
            bytes(|c| c.peak_rss_bytes),
            bytes(|c| c.state_bytes)
        ));
    }
    out
}

/// A group of `strategy` named `label` with final ACC `accs` by seed (every other statistic
/// the same), for the report's unit tests.
#[cfg(test)]
pub(crate) fn test_group(
    label: &str,
    strategy: &str,
    params: serde_json::Value,
    accs: &[(u64, f64)],
) -> Group {
    let stat = Stat::of(&accs.iter().map(|a| a.1).collect::<Vec<_>>());
    Group {
        label: label.to_string(),
        strategy: strategy.to_string(),
        params,
        seeds: accs.iter().map(|a| a.0).collect(),
        acc: stat,
        acc_by_seed: accs.to_vec(),
        bwt: stat,
        forgetting: stat,
        trained_once_at_end: false,
        wall_s: stat,
        cost: Default::default(),
        selection_acc: None,
        family: Vec::new(),
        avg_accuracy_curve: Vec::new(),
        avg_accuracy: Vec::new(),
        accuracy: Vec::new(),
        curve_seed: 1,
        curve: Vec::new(),
        importance: Vec::new(),
        capacity: Vec::new(),
        continual: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_uses_the_sample_standard_deviation() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.7]).std, 0.0);
    }

    #[test]
    fn the_printed_table_gives_the_95_percent_interval_as_every_other_table() {
        // [0.90, 0.92, 0.94]: s = 0.02, half-width 4.302653 * 0.02 / sqrt(3) = 0.0497, not the
        // standard deviation 0.0200 the table once printed without saying so.
        let g = test_group(
            "naive",
            "naive",
            serde_json::json!({}),
            &[(1, 0.90), (2, 0.92), (3, 0.94)],
        );
        let text = table(&[g]);
        assert!(text.contains("0.9200 ± 0.0497"), "{text}");
        assert!(text.contains("+0.9200 ± 0.0497"), "BWT is signed: {text}");
        assert!(!text.contains("± 0.0200"), "{text}");
    }

    #[test]
    fn a_group_trained_once_at_the_end_has_no_bwt_or_forgetting_to_show_or_rank() {
        let sequential = test_group(
            "naive",
            "naive",
            serde_json::json!({}),
            &[(1, 0.5), (2, 0.6)],
        );
        let mut at_end = test_group(
            "joint",
            "joint",
            serde_json::json!({}),
            &[(1, 0.9), (2, 0.95)],
        );
        at_end.trained_once_at_end = true;
        let groups = [sequential, at_end];
        let text = table(&groups);
        let joint_line = text.lines().find(|l| l.starts_with("joint")).unwrap();
        assert_eq!(joint_line.matches('—').count(), 2, "{text}");
        let best = Best::of(&groups);
        // joint has the higher ACC, but BWT and forgetting are ranked among sequential runs.
        assert_eq!(
            (best.acc, best.bwt, best.forgetting),
            (vec![1], vec![0], vec![0])
        );
        let note = trained_once_note(&groups).unwrap();
        assert!(note.starts_with("—: joint trained once"), "{note}");
        assert_eq!(trained_once_note(&groups[..1]), None);
    }

    #[test]
    fn ci95_is_t_times_the_standard_error() {
        // mean 0.92, s = 0.02, t_{0.975,2} = 4.302653: half-width 4.302653 * 0.02 / sqrt(3).
        let s = Stat::of(&[0.90, 0.92, 0.94]);
        assert!((s.mean - 0.92).abs() < 1e-12);
        assert!((s.std - 0.02).abs() < 1e-12);
        let expected = 4.302_652_729_749_464 * 0.02 / 3f64.sqrt();
        assert!(
            (s.ci95().unwrap() - expected).abs() < 1e-9,
            "{:?}",
            s.ci95()
        );
        assert!((expected - 0.049_682_75).abs() < 1e-8);
        assert_eq!(Stat::of(&[0.7]).ci95(), None);
        assert_eq!(Stat::of(&[0.7]).format(100.0, 1), "70.0");
    }

    #[test]
    fn numbers_print_readably_whatever_their_value() {
        assert_eq!(number(0.12345, 2), "0.12");
        assert_eq!(number(f64::NAN, 2), "NaN");
        assert_eq!(number(f64::INFINITY, 2), "inf");
        assert_eq!(number(f64::NEG_INFINITY, 1), "-inf");
        assert_eq!(number(1e300, 2), "1.00e300");
        assert_eq!(number(-2.5e9, 1), "-2.5e9");
        assert_eq!(signed(0.5, 2), "+0.50");
        assert_eq!(signed(-0.5, 2), "-0.50");
        assert_eq!(signed(f64::NAN, 2), "NaN");
        assert_eq!(signed(f64::INFINITY, 2), "+inf");
        assert_eq!(signed(3e12, 1), "+3.0e12");
        // Stat over odd values: an infinite mean has an undefined spread.
        assert_eq!(
            Stat::of(&[f64::INFINITY, 1.0]).format(100.0, 1),
            "inf ± NaN"
        );
        assert_eq!(Stat::of(&[1e300, -1e300]).format(1.0, 1), "0.0 ± inf");
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, t) in [
            (1, 12.706_204_736),
            (2, 4.302_652_730),
            (4, 2.776_445_105),
            (9, 2.262_157_163),
            (30, 2.042_272_456),
            (1000, 1.962_339_081),
        ] {
            assert!(
                (t_975(df) - t).abs() < 1e-6,
                "df {df}: {} vs {t}",
                t_975(df)
            );
        }
    }
}
