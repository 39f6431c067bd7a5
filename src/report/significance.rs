//! Paired significance tests for comparing two strategies run on the same seeds.
//!
//! The typical use is: strategy A and strategy B were each run on seeds
//! `0..n`, giving final accuracies `a[i]` and `b[i]`. Because both runs for
//! seed `i` share the seed (data order, initialisation, task split), the
//! observations are *paired*, and the tests here work on the per-seed
//! differences `d[i] = a[i] - b[i]`:
//!
//! * [`paired_t_test`]: Student's paired t-test (assumes roughly normal
//!   differences), matching `scipy.stats.ttest_rel`.
//! * [`wilcoxon_signed_rank`]: the distribution-free Wilcoxon signed-rank test,
//!   matching `scipy.stats.wilcoxon` with its default arguments.
//! * [`holm`]: Holm–Bonferroni adjustment when many comparisons are reported
//!   together, matching `statsmodels.stats.multitest.multipletests(method="holm")`.
//! * [`paired`]: all of the above (except Holm) plus the mean difference and
//!   its 95% confidence interval, with input validation.
//!
//! The reference implementation for every number is scipy 1.17.1 /
//! statsmodels 0.15.0; the unit tests pin results against values those
//! libraries printed, and each test names the exact command used. The few
//! places where this module deliberately returns something different from
//! scipy (degenerate inputs where scipy returns `inf`/`NaN`) are documented on
//! the function concerned.
//!
//! # How many seeds do you need?
//!
//! The Wilcoxon test is exact for small samples, which makes its resolution
//! visible: with `n` pairs, none of them zero, the smallest two-sided p-value
//! it can ever produce is `2 / 2^n`:
//!
//! | pairs | smallest two-sided p |
//! |-------|----------------------|
//! | 3     | 0.25                 |
//! | 4     | 0.125                |
//! | 5     | 0.0625               |
//! | 6     | 0.03125              |
//!
//! So with 3–5 seeds the Wilcoxon test *cannot* reach p < 0.05 however large
//! the effect; a "not significant" result there is a statement about the seed
//! count, not about the strategies.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// [`TestResult::method`] of [`paired_t_test`]: p from Student's t with `n - 1`
/// degrees of freedom.
pub const METHOD_STUDENT_T: &str = "Student t";

/// [`TestResult::method`] of [`wilcoxon_signed_rank`] when the exact null
/// distribution of the signed-rank statistic was used (no ties, no zero
/// differences, at most 50 pairs).
pub const METHOD_EXACT: &str = "exact";

/// [`TestResult::method`] of [`wilcoxon_signed_rank`] when ties or zero
/// differences were present and there are at most 13 pairs: the p-value is
/// exact *conditional on the observed tie pattern*, obtained by enumerating all
/// `2^n` sign flips (what scipy does via `permutation_test` in this case).
pub const METHOD_EXACT_TIES: &str = "exact (ties/zeros)";

/// [`TestResult::method`] of [`wilcoxon_signed_rank`] when the normal
/// approximation (with tie correction, without continuity correction) was used.
pub const METHOD_NORMAL: &str = "normal approximation";

/// Largest number of pairs for which the Wilcoxon test uses an exact
/// distribution when there are no ties or zeros (scipy's `method="auto"` cut-off).
const WILCOXON_EXACT_MAX_N: usize = 50;

/// Largest number of pairs for which scipy enumerates all sign flips when there
/// are ties or zeros: `2^13 = 8192` is below `permutation_test`'s default
/// `n_resamples = 9999`, so the "permutation" test is a complete, deterministic
/// enumeration. Above this scipy falls back to the normal approximation.
const WILCOXON_TIES_EXACT_MAX_N: usize = 13;

/// Differences whose sample standard deviation is at most this fraction of
/// their absolute mean are treated as having zero variance by
/// [`paired_t_test`]. Rounding alone produces such spreads: `0.812 - 0.790` and
/// `0.825 - 0.803` are both 0.022 on paper but differ by ~1e-16 in `f64`, which
/// would otherwise yield |t| ~ 1e14 and p ~ 0. No real experiment has a
/// seed-to-seed spread of a billionth of its mean effect.
const ZERO_VARIANCE_REL_TOL: f64 = 1e-9;

/// Outcome of one hypothesis test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// The test statistic as scipy reports it: Student's t for the t-test
    /// (signed, positive when `a` tends to exceed `b`); `min(W+, W-)` for the
    /// two-sided Wilcoxon test (always >= 0, so it carries no direction; use
    /// [`PairedComparison::mean_diff`] for that).
    pub statistic: f64,
    /// Two-sided p-value in `[0, 1]`.
    pub p_value: f64,
    /// How the p-value was obtained; one of the `METHOD_*` constants of this
    /// module. Worth printing next to the p-value, because an exact and an
    /// approximate p are not equally trustworthy at small `n`.
    pub method: &'static str,
}

/// Result of comparing paired samples `a[i]` vs `b[i]` (e.g. final accuracy of
/// strategy A and strategy B on the same seed `i`). All quantities are about
/// the differences `a[i] - b[i]`; positive means A is larger.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedComparison {
    /// Number of pairs (including pairs whose difference is zero).
    pub n: usize,
    /// Mean of `a[i] - b[i]`.
    pub mean_diff: f64,
    /// 95% confidence interval of the mean difference, `mean ± t(0.975, n-1) *
    /// sd / sqrt(n)` (as `scipy.stats.ttest_rel(a, b).confidence_interval()`).
    /// `None` if `n < 2` (no variance estimate). If all differences are equal
    /// the interval has (near) zero width, which is the honest answer for that
    /// data even though the t-test itself is reported as `None`.
    pub ci95: Option<(f64, f64)>,
    /// Two-sided paired t-test; see [`paired_t_test`] for when it is `None`.
    pub t_test: Option<TestResult>,
    /// Two-sided Wilcoxon signed-rank test; see [`wilcoxon_signed_rank`] for
    /// when it is `None` (never, for input accepted by [`paired`]).
    pub wilcoxon: Option<TestResult>,
}

/// Compares paired samples: `a[i]` and `b[i]` must be measurements of the two
/// strategies under the same condition `i` (typically the same seed).
///
/// # Errors
///
/// Returns `Err` with a human-readable message if
/// * `a` and `b` have different lengths,
/// * there are no pairs at all (there is nothing to report, and silently
///   returning a `NaN` mean would hide a caller bug),
/// * any `a[i]` or `b[i]` is `NaN` or infinite (the message names the slice
///   and index), or a difference overflows to infinity.
pub fn paired(a: &[f64], b: &[f64]) -> Result<PairedComparison, String> {
    if a.len() != b.len() {
        return Err(format!(
            "paired samples must have equal lengths, got {} and {}",
            a.len(),
            b.len()
        ));
    }
    if a.is_empty() {
        return Err("paired samples are empty".to_string());
    }
    let mut diffs = Vec::with_capacity(a.len());
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if !x.is_finite() {
            return Err(format!("a[{i}] is not finite: {x}"));
        }
        if !y.is_finite() {
            return Err(format!("b[{i}] is not finite: {y}"));
        }
        let d = x - y;
        if !d.is_finite() {
            return Err(format!("a[{i}] - b[{i}] overflows: {x} - {y}"));
        }
        diffs.push(d);
    }
    let (mean_diff, _) = mean_and_sd(&diffs);
    Ok(PairedComparison {
        n: diffs.len(),
        mean_diff,
        ci95: ci95(&diffs),
        t_test: paired_t_test(&diffs),
        wilcoxon: wilcoxon_signed_rank(&diffs),
    })
}

/// Two-sided paired t-test on the differences `diffs[i] = a[i] - b[i]`,
/// i.e. a one-sample t-test of mean zero. Matches
/// `scipy.stats.ttest_rel(a, b)` (equivalently `ttest_1samp(diffs, 0)`):
/// `t = mean / (sd / sqrt(n))` with the `n - 1` sample standard deviation, and
/// `p = 2 * P(T > |t|)` for Student's t with `n - 1` degrees of freedom.
///
/// Returns `None` when the test is undefined or meaningless:
/// * `n < 2`: there is no variance estimate (scipy returns `NaN`).
/// * any difference is `NaN` or infinite (scipy would propagate `NaN`).
/// * zero variance, i.e. all differences are equal, *including equal up to
///   rounding* (sample sd at most `1e-9 * |mean|`). If they are all zero, `t`
///   is 0/0 (scipy: `NaN`). If they are all the same nonzero value, scipy
///   returns `t = ±inf, p = 0`; we deliberately return `None` instead. Such data
///   arise from quantised metrics or too few seeds (three seeds that each
///   improve by exactly one test example), and reporting `p = 0`, "infinitely
///   significant", from three numbers would be misleading. The Wilcoxon test
///   and [`PairedComparison::ci95`] still describe such data honestly.
#[must_use]
pub fn paired_t_test(diffs: &[f64]) -> Option<TestResult> {
    let n = diffs.len();
    if n < 2 || diffs.iter().any(|d| !d.is_finite()) {
        return None;
    }
    let (mean, sd) = mean_and_sd(diffs);
    if sd <= ZERO_VARIANCE_REL_TOL * mean.abs() {
        return None;
    }
    let t = mean / (sd / (n as f64).sqrt());
    let dist = students_t(n - 1);
    // `sf` evaluates the upper tail directly through the regularised incomplete
    // beta function, so tiny p-values do not lose precision to `1 - cdf`.
    let p_value = (2.0 * dist.sf(t.abs())).min(1.0);
    Some(TestResult {
        statistic: t,
        p_value,
        method: METHOD_STUDENT_T,
    })
}

/// Two-sided Wilcoxon signed-rank test on the differences
/// `diffs[i] = a[i] - b[i]`, matching `scipy.stats.wilcoxon(diffs)` with its
/// defaults (scipy 1.17: `zero_method="wilcox"`, `correction=False`,
/// `alternative="two-sided"`, `method="auto"`).
///
/// * Zero differences are dropped before ranking (`zero_method="wilcox"`);
///   the remaining `|d|` are ranked with average ranks for ties. Ties are
///   detected by exact `f64` equality, as in scipy, so differences that are
///   equal on paper but not in floating point (`0.812 - 0.790` vs
///   `0.825 - 0.803`) are *not* ties; round the inputs first if that matters.
/// * `statistic` is `min(W+, W-)`, the smaller of the rank sums of positive
///   and negative differences.
/// * Let `N = diffs.len()` **including** zeros (scipy decides on the raw length):
///   - `N <= 50`, no ties and no zeros: exact null distribution
///     ([`METHOD_EXACT`]), `p = min(1, 2 * P(W <= statistic))`, obtained by
///     counting the subsets of ranks with each rank sum (dynamic programming).
///   - `N <= 13` with ties or zeros: exact distribution of the statistic over
///     all sign flips given the observed (average) ranks
///     ([`METHOD_EXACT_TIES`]); this is what scipy's `permutation_test`
///     computes here, since it enumerates all `2^N` flips.
///   - otherwise: normal approximation ([`METHOD_NORMAL`]) with the tie
///     correction `sum(t^3 - t) / 48` in the variance and **no** continuity
///     correction (scipy's default `correction=False`).
///
/// Smallest achievable p (no zeros): 0.25 with 3 pairs, 0.125 with 4, 0.0625
/// with 5, 0.03125 with 6; i.e. with 3–5 seeds this test can never reach
/// p < 0.05.
///
/// Degenerate cases:
/// * empty input or any non-finite difference: `None` (scipy gives `NaN`).
/// * every difference is zero: `statistic = 0, p = 1` (the samples are
///   identical, so there is no evidence of a difference). scipy agrees for
///   `N <= 13`; for larger `N` its normal approximation divides 0/0 and returns
///   `NaN`, where we still return `p = 1` for consistency.
/// * a single nonzero difference: `statistic = 0, p = 1`, as scipy.
#[must_use]
pub fn wilcoxon_signed_rank(diffs: &[f64]) -> Option<TestResult> {
    if diffs.is_empty() || diffs.iter().any(|d| !d.is_finite()) {
        return None;
    }
    let n_total = diffs.len();
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|&d| d != 0.0).collect();
    let m = nonzero.len();
    if m == 0 {
        return Some(TestResult {
            statistic: 0.0,
            p_value: 1.0,
            // The conditional null distribution is a point mass at 0.
            method: METHOD_EXACT_TIES,
        });
    }

    let abs: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let ranks = doubled_average_ranks(&abs);
    // Work in doubled ranks so that average ranks of ties (k + 0.5) stay
    // integers; every sum below is then exact.
    let w_plus2: u64 = nonzero
        .iter()
        .zip(&ranks.doubled)
        .filter(|(&d, _)| d > 0.0)
        .map(|(_, &r)| r)
        .sum();
    let total2 = (m * (m + 1)) as u64; // 2 * (1 + 2 + ... + m)
    let w_minus2 = total2 - w_plus2;
    let statistic = w_plus2.min(w_minus2) as f64 / 2.0;

    let has_zeros = m < n_total;
    let exact = if ranks.has_ties || has_zeros {
        n_total <= WILCOXON_TIES_EXACT_MAX_N
    } else {
        n_total <= WILCOXON_EXACT_MAX_N
    };

    if exact {
        let counts = rank_sum_counts(&ranks.doubled);
        // 2^m fits in u64 (m <= 50) and is a power of two, so the division
        // below is exact apart from the rounding of the count itself.
        let total: u64 = counts.iter().sum();
        let lower: u64 = counts[..=w_plus2 as usize].iter().sum();
        let upper: u64 = counts[w_plus2 as usize..].iter().sum();
        let p_value = (2.0 * lower.min(upper) as f64 / total as f64).min(1.0);
        let method = if ranks.has_ties || has_zeros {
            METHOD_EXACT_TIES
        } else {
            METHOD_EXACT
        };
        return Some(TestResult {
            statistic,
            p_value,
            method,
        });
    }

    let mf = m as f64;
    let mean = mf * (mf + 1.0) / 4.0;
    let var = (mf * (mf + 1.0) * (2.0 * mf + 1.0) - ranks.tie_term / 2.0) / 24.0;
    let z = (w_plus2 as f64 / 2.0 - mean) / var.sqrt();
    let p_value = 2.0 * Normal::standard().sf(z.abs());
    Some(TestResult {
        statistic,
        p_value,
        method: METHOD_NORMAL,
    })
}

/// Holm–Bonferroni step-down adjusted p-values, returned in the input order.
///
/// With the `m` valid p-values sorted ascending, `p(1) <= ... <= p(m)`, the
/// adjusted values are `adj(k) = min(1, max_{j <= k} (m - j + 1) * p(j))`.
/// Rejecting every hypothesis whose adjusted p is below `alpha` controls the
/// family-wise error rate at `alpha`. Matches
/// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`.
///
/// Properties: every output is `>=` its input and `<= 1`; outputs are monotone
/// in the inputs (a smaller raw p never gets a larger adjusted p); tied inputs
/// get identical outputs.
///
/// `NaN` entries (e.g. a test that was `None` and was stored as `NaN`) are
/// returned as `NaN` and are **not** counted in the family size `m`, since a
/// test that could not be run cannot produce a false rejection. This is what
/// R's `p.adjust` does; statsmodels would instead count them in `m` (and so
/// inflate every other adjusted value). Other inputs are expected to lie in
/// `[0, 1]` (checked with `debug_assert!`).
#[must_use]
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    debug_assert!(
        p_values
            .iter()
            .all(|p| p.is_nan() || (0.0..=1.0).contains(p)),
        "p-values must be NaN or in [0, 1]: {p_values:?}"
    );
    let mut order: Vec<usize> = (0..p_values.len())
        .filter(|&i| !p_values[i].is_nan())
        .collect();
    // Stable sort; the order among tied values does not affect the result,
    // because the running maximum gives tied values the same adjustment.
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let m = order.len();
    let mut adjusted = vec![f64::NAN; p_values.len()];
    let mut running_max = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        let factor = (m - rank) as f64;
        running_max = running_max.max(factor * p_values[i]);
        adjusted[i] = running_max.min(1.0);
    }
    adjusted
}

/// Mean and sample standard deviation (`n - 1` denominator; `NaN` for `n < 2`),
/// with the two-pass formula for accuracy on nearly constant data.
fn mean_and_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// 95% Student-t confidence interval of the mean; `None` for fewer than two
/// values.
fn ci95(diffs: &[f64]) -> Option<(f64, f64)> {
    let n = diffs.len();
    if n < 2 {
        return None;
    }
    let (mean, sd) = mean_and_sd(diffs);
    let half_width = students_t(n - 1).inverse_cdf(0.975) * sd / (n as f64).sqrt();
    Some((mean - half_width, mean + half_width))
}

/// Standard Student's t distribution with `df >= 1` degrees of freedom.
fn students_t(df: usize) -> StudentsT {
    StudentsT::new(0.0, 1.0, df as f64).expect("df >= 1 is a valid Student t parameter")
}

/// Average ranks of `values`, doubled so they are integers, plus tie
/// information.
struct Ranks {
    /// `2 * rank` of each value, in input order (rank 1 = smallest).
    doubled: Vec<u64>,
    /// Whether any two values are equal.
    has_ties: bool,
    /// `sum(t^3 - t)` over groups of `t` equal values (normal-approximation tie
    /// correction).
    tie_term: f64,
}

/// Ranks `values` (all finite) with average ranks for ties, as
/// `scipy.stats.rankdata(method="average")`.
fn doubled_average_ranks(values: &[f64]) -> Ranks {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut doubled = vec![0; values.len()];
    let mut has_ties = false;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their
        // average doubled is (start + 1) + end.
        let rank2 = (start + 1 + end) as u64;
        for &i in &order[start..end] {
            doubled[i] = rank2;
        }
        let t = (end - start) as f64;
        if end - start > 1 {
            has_ties = true;
            tie_term += t * t * t - t;
        }
        start = end;
    }
    Ranks {
        doubled,
        has_ties,
        tie_term,
    }
}

/// `counts[s]` = number of subsets of `ranks` whose sum is `s`, i.e. the number
/// of sign assignments giving rank sum `s` for the positive differences. Under
/// the null hypothesis every sign assignment is equally likely, so this is the
/// exact null distribution of `W+` (in the units of `ranks`).
///
/// Classic subset-sum dynamic programming, `O(len * sum)`: at most
/// 50 * 2550 steps here. Counts stay below `2^len <= 2^50`, so `u64` is exact.
fn rank_sum_counts(ranks: &[u64]) -> Vec<u64> {
    let total: u64 = ranks.iter().sum();
    let mut counts = vec![0_u64; total as usize + 1];
    counts[0] = 1;
    let mut reachable = 0;
    for &r in ranks {
        let r = r as usize;
        reachable += r;
        // Iterate downwards so each rank is used at most once per subset.
        for s in (r..=reachable).rev() {
            counts[s] += counts[s - r];
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    //! Reference values come from scipy 1.17.1 and statsmodels 0.15.0 (NumPy
    //! 2.x) under Python 3.11.7. Each test gives the exact command (run with
    //! `python3 -W ignore` to silence scipy's small-sample warnings) and what it
    //! printed, with NumPy 2's `np.float64(...)` / `np.int64(...)` wrappers
    //! removed for readability. Floats in the inputs are written so that Python and Rust perform
    //! identical IEEE operations (e.g. `a - b` on the same literals).

    use super::*;

    /// Asserts `|actual - expected| <= tol * max(|expected|, tiny)`.
    fn assert_rel(actual: f64, expected: f64, tol: f64) {
        let scale = expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() <= tol * scale,
            "actual {actual:e} vs expected {expected:e} (rel tol {tol:e})"
        );
    }

    fn assert_test(r: Option<TestResult>, statistic: f64, p: f64, method: &str, tol: f64) {
        let r = r.expect("test result should be Some");
        assert_rel(r.statistic, statistic, tol);
        assert_rel(r.p_value, p, tol);
        assert_eq!(r.method, method);
    }

    const EXACT: f64 = 1e-9;
    const APPROX: f64 = 1e-6;

    // Typical 5-seed comparison.
    // $ python3 -c "from scipy.stats import ttest_rel, wilcoxon; a=[0.812,0.798,0.825,0.805,0.817]; b=[0.790,0.801,0.803,0.779,0.800]; r=ttest_rel(a,b); print(repr(r.statistic), repr(r.pvalue), r.confidence_interval()); print(wilcoxon(a,b)); import numpy as np; print(repr(np.mean(np.subtract(a,b))))"
    // -> 3.2610602480206903 0.031049739645018316 ConfidenceInterval(low=0.0024965912250060947, high=0.031103408774993846)
    // -> WilcoxonResult(statistic=1.0, pvalue=0.125)
    // -> 0.01679999999999997
    #[test]
    fn typical_five_seeds() {
        let a = [0.812, 0.798, 0.825, 0.805, 0.817];
        let b = [0.790, 0.801, 0.803, 0.779, 0.800];
        let c = paired(&a, &b).unwrap();
        assert_eq!(c.n, 5);
        assert_rel(c.mean_diff, 0.01679999999999997, 1e-12);
        let (lo, hi) = c.ci95.unwrap();
        assert_rel(lo, 0.0024965912250060947, EXACT);
        assert_rel(hi, 0.031103408774993846, EXACT);
        assert_test(
            c.t_test,
            3.2610602480206903,
            0.031049739645018316,
            METHOD_STUDENT_T,
            EXACT,
        );
        // 0.812-0.790 and 0.825-0.803 differ in the last bits, so no ties and
        // the exact distribution applies, as in scipy.
        assert_test(c.wilcoxon, 1.0, 0.125, METHOD_EXACT, EXACT);
    }

    // n = 3: even all-positive differences give p = 0.25.
    // $ python3 -c "from scipy.stats import ttest_1samp, wilcoxon; d=[0.05,0.06,0.01]; r=ttest_1samp(d,0); print(repr(r.statistic), repr(r.pvalue), r.confidence_interval()); print(wilcoxon(d))"
    // -> 2.618614682831909 0.12011730987188027 ConfidenceInterval(low=-0.02572410607728428, high=0.10572410607728427)
    // -> WilcoxonResult(statistic=0.0, pvalue=0.25)
    #[test]
    fn three_seeds() {
        let d = [0.05, 0.06, 0.01];
        assert_test(
            paired_t_test(&d),
            2.618614682831909,
            0.12011730987188027,
            METHOD_STUDENT_T,
            EXACT,
        );
        let (lo, hi) = ci95(&d).unwrap();
        assert_rel(lo, -0.02572410607728428, EXACT);
        assert_rel(hi, 0.10572410607728427, EXACT);
        assert_test(wilcoxon_signed_rank(&d), 0.0, 0.25, METHOD_EXACT, EXACT);
    }

    // Smallest achievable two-sided p for 3, 5 and 6 pairs (2 / 2^n).
    // $ python3 -c "from scipy.stats import wilcoxon; print([wilcoxon(list(range(1,n+1))).pvalue for n in (3,5,6)])"
    // -> [0.25, 0.0625, 0.03125]
    #[test]
    fn p_value_floor_for_few_seeds() {
        for (n, floor) in [(3, 0.25), (5, 0.0625), (6, 0.03125)] {
            let d: Vec<f64> = (1..=n).map(f64::from).collect();
            assert_test(wilcoxon_signed_rank(&d), 0.0, floor, METHOD_EXACT, EXACT);
            let neg: Vec<f64> = d.iter().map(|x| -x).collect();
            assert_test(wilcoxon_signed_rank(&neg), 0.0, floor, METHOD_EXACT, EXACT);
        }
    }

    // Alternating signs, 12 pairs, exact path away from the tail.
    // $ python3 -c "from scipy.stats import wilcoxon; print(wilcoxon([(-1)**i*(i+1)*0.1 for i in range(12)]))"
    // -> WilcoxonResult(statistic=36.0, pvalue=0.85009765625)
    #[test]
    fn exact_alternating_signs() {
        let d: Vec<f64> = (0..12)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } * f64::from(i + 1) * 0.1)
            .collect();
        assert_test(
            wilcoxon_signed_rank(&d),
            36.0,
            0.85009765625,
            METHOD_EXACT,
            EXACT,
        );
    }

    // Ties in |d| with 20 pairs: scipy uses the tie-corrected normal
    // approximation without continuity correction.
    // $ python3 -c "from scipy.stats import wilcoxon; print(wilcoxon([1.,2.,2.,3.,-3.,4.,5.,5.,5.,-6.,7.,8.,-8.,9.,10.,11.,12.,-12.,13.,14.]))"
    // -> WilcoxonResult(statistic=44.5, pvalue=0.023808709565383696)
    #[test]
    fn ties_normal_approximation() {
        let d = [
            1., 2., 2., 3., -3., 4., 5., 5., 5., -6., 7., 8., -8., 9., 10., 11., 12., -12., 13.,
            14.,
        ];
        assert_test(
            wilcoxon_signed_rank(&d),
            44.5,
            0.023808709565383696,
            METHOD_NORMAL,
            APPROX,
        );
    }

    // Ties with only 5 pairs: scipy enumerates all sign flips
    // (permutation_test), i.e. the exact conditional distribution.
    // $ python3 -c "from scipy.stats import wilcoxon; print(wilcoxon([0.02,0.01,0.02,-0.01,0.03]))"
    // -> WilcoxonResult(statistic=1.5, pvalue=0.1875)
    #[test]
    fn ties_small_sample_exact() {
        let d = [0.02, 0.01, 0.02, -0.01, 0.03];
        assert_test(
            wilcoxon_signed_rank(&d),
            1.5,
            0.1875,
            METHOD_EXACT_TIES,
            EXACT,
        );
    }

    // Zero differences are dropped (zero_method="wilcox"); with 6 pairs the
    // exact (permutation) path is taken.
    // $ python3 -c "from scipy.stats import wilcoxon; print(wilcoxon([0.,0.5,1.5,-1.,2.,0.]))"
    // -> WilcoxonResult(statistic=2.0, pvalue=0.375)
    #[test]
    fn zeros_dropped_small_sample() {
        let d = [0., 0.5, 1.5, -1., 2., 0.];
        assert_test(
            wilcoxon_signed_rank(&d),
            2.0,
            0.375,
            METHOD_EXACT_TIES,
            EXACT,
        );
        // Dropping the zeros by hand gives the same statistic and p (now via
        // the ordinary exact distribution).
        assert_test(
            wilcoxon_signed_rank(&[0.5, 1.5, -1., 2.]),
            2.0,
            0.375,
            METHOD_EXACT,
            EXACT,
        );
    }

    // Zeros with 20 pairs: the 2 zeros are dropped (m = 18 in the normal
    // approximation), and because N = 20 > 13 scipy uses the normal
    // approximation even though the 18 nonzero values have no ties. Without the
    // zeros the same 18 values get the exact p instead.
    // $ python3 -c "from scipy.stats import wilcoxon; d=[0.,1.,-2.,3.,4.,5.,6.,-7.,8.,9.,10.,0.,11.,12.,-13.,14.,15.,16.,17.,18.]; print(wilcoxon(d)); print(wilcoxon([x for x in d if x]))"
    // -> WilcoxonResult(statistic=22.0, pvalue=0.005684474003904788)
    // -> WilcoxonResult(statistic=22.0, pvalue=0.00400543212890625)
    #[test]
    fn zeros_dropped_normal_approximation() {
        let d = [
            0., 1., -2., 3., 4., 5., 6., -7., 8., 9., 10., 0., 11., 12., -13., 14., 15., 16., 17.,
            18.,
        ];
        assert_test(
            wilcoxon_signed_rank(&d),
            22.0,
            0.005684474003904788,
            METHOD_NORMAL,
            APPROX,
        );
        let nonzero: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
        assert_test(
            wilcoxon_signed_rank(&nonzero),
            22.0,
            0.00400543212890625,
            METHOD_EXACT,
            EXACT,
        );
    }

    // All differences identical. scipy's t-test returns t = inf, p = 0 (we
    // return None by design); its Wilcoxon treats them as one tie group.
    // $ python3 -c "from scipy.stats import ttest_1samp, wilcoxon; d=[0.01,0.01,0.01]; print(ttest_1samp(d,0)); print(wilcoxon(d))"
    // -> TtestResult(statistic=inf, pvalue=0.0, df=2)
    // -> WilcoxonResult(statistic=0.0, pvalue=0.25)
    #[test]
    fn identical_differences() {
        let d = [0.01, 0.01, 0.01];
        assert_eq!(paired_t_test(&d), None);
        assert_test(
            wilcoxon_signed_rank(&d),
            0.0,
            0.25,
            METHOD_EXACT_TIES,
            EXACT,
        );
        // Zero-width interval: the data show no spread at all.
        let (lo, hi) = ci95(&d).unwrap();
        assert_rel(lo, 0.01, 1e-12);
        assert_rel(hi, 0.01, 1e-12);
        // All zero: t would be 0/0 (scipy: NaN).
        assert_eq!(paired_t_test(&[0.0, 0.0, 0.0]), None);
    }

    // Differences equal on paper but not in f64: scipy reports an absurd t.
    // $ python3 -c "from scipy.stats import ttest_rel; a=[0.812,0.825,0.847]; b=[0.790,0.803,0.825]; print([x-y for x,y in zip(a,b)]); print(ttest_rel(a,b))"
    // -> [0.02200000000000002, 0.02199999999999991, 0.02200000000000002]
    // -> TtestResult(statistic=594330068406641.2, pvalue=2.831030802377075e-30, df=2)
    #[test]
    fn identical_up_to_rounding() {
        let c = paired(&[0.812, 0.825, 0.847], &[0.790, 0.803, 0.825]).unwrap();
        assert_eq!(c.t_test, None);
        let (lo, hi) = c.ci95.unwrap();
        assert!((hi - lo).abs() < 1e-12);
        // Two of the three f64 differences tie (see the printed list), so the
        // conditional exact path applies; all positive, so p is the n = 3 floor.
        let w = c.wilcoxon.unwrap();
        assert_eq!((w.p_value, w.method), (0.25, METHOD_EXACT_TIES));
    }

    // A single pair: no variance, so no CI and no t-test; Wilcoxon p = 1.
    // $ python3 -c "from scipy.stats import ttest_rel, wilcoxon; print(ttest_rel([0.8],[0.7])); print(wilcoxon([0.8],[0.7]))"
    // -> TtestResult(statistic=nan, pvalue=nan, df=0)
    // -> WilcoxonResult(statistic=0.0, pvalue=1.0)
    #[test]
    fn single_pair() {
        let c = paired(&[0.8], &[0.7]).unwrap();
        assert_eq!(c.n, 1);
        assert_rel(c.mean_diff, 0.8 - 0.7, 1e-15);
        assert_eq!(c.ci95, None);
        assert_eq!(c.t_test, None);
        assert_test(c.wilcoxon, 0.0, 1.0, METHOD_EXACT, EXACT);
    }

    // No nonzero differences: p = 1. scipy agrees for N <= 13 and returns NaN
    // for larger N (documented deviation).
    // $ python3 -c "from scipy.stats import wilcoxon; print(wilcoxon([0.,0.,0.])); print(wilcoxon([0.]*20))"
    // -> WilcoxonResult(statistic=0.0, pvalue=1.0)
    // -> WilcoxonResult(statistic=0.0, pvalue=nan)
    #[test]
    fn all_zero_differences() {
        for n in [3, 20] {
            assert_test(
                wilcoxon_signed_rank(&vec![0.0; n]),
                0.0,
                1.0,
                METHOD_EXACT_TIES,
                EXACT,
            );
        }
        assert_eq!(wilcoxon_signed_rank(&[]), None);
        assert_eq!(wilcoxon_signed_rank(&[1.0, f64::NAN]), None);
        assert_eq!(paired_t_test(&[1.0, f64::INFINITY, 2.0]), None);
    }

    // What the report feeds in from odd results: NaN, infinite and huge accuracies give an
    // error, `None` or NaN, never a panic.
    #[test]
    fn odd_values_give_none_or_errors_not_panics() {
        let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
        for v in odd {
            assert!(paired(&[0.5, v], &[0.4, 0.3]).is_err(), "{v}");
            assert!(paired(&[0.5, 0.6], &[v, 0.3]).is_err(), "{v}");
            assert_eq!(paired_t_test(&[0.1, v, 0.2]), None, "{v}");
            assert_eq!(wilcoxon_signed_rank(&[0.1, v, 0.2]), None, "{v}");
            assert_eq!(
                ci95(&[v, v]).map(|(lo, hi)| lo.is_nan() || hi.is_nan()),
                Some(true)
            );
        }
        let all_nan = holm(&[f64::NAN, f64::NAN]);
        assert!(all_nan.iter().all(|p| p.is_nan()));
        // Huge but finite: the sums overflow, the answers are no numbers rather than a panic.
        let c = paired(&[1e308, 1e308, -1e308], &[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(c.n, 3);
        assert!(c
            .t_test
            .is_none_or(|t| t.p_value.is_nan() || (0.0..=1.0).contains(&t.p_value)));
    }

    /// 60 distinct, tie-free, mostly positive values: `(k - 20.25) / 10` where
    /// `k = 37 i mod 61` runs over distinct integers (61 is prime).
    fn sixty_values() -> Vec<f64> {
        (0..60)
            .map(|i| f64::from((i * 37) % 61) - 20.25)
            .map(|x| x / 10.0)
            .collect()
    }

    // More than 50 pairs: normal approximation even without ties; exactly 50:
    // still exact.
    // $ python3 -c "from scipy.stats import wilcoxon; d=[((i*37)%61-20.25)/10 for i in range(60)]; print([wilcoxon(d[:n]) for n in (60,51,50)])"
    // -> [WilcoxonResult(statistic=424.0, pvalue=0.00030087314752156533), WilcoxonResult(statistic=334.0, pvalue=0.002043264466164624), WilcoxonResult(statistic=315.0, pvalue=0.0014846473444478647)]
    #[test]
    fn large_sample_boundary() {
        let d = sixty_values();
        assert_test(
            wilcoxon_signed_rank(&d),
            424.0,
            0.00030087314752156533,
            METHOD_NORMAL,
            APPROX,
        );
        assert_test(
            wilcoxon_signed_rank(&d[..51]),
            334.0,
            0.002043264466164624,
            METHOD_NORMAL,
            APPROX,
        );
        assert_test(
            wilcoxon_signed_rank(&d[..50]),
            315.0,
            0.0014846473444478647,
            METHOD_EXACT,
            EXACT,
        );
    }

    // Holm, unsorted input. By hand: sorted 0.005, 0.01, 0.03, 0.04 times
    // 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06.
    // $ python3 -c "from statsmodels.stats.multitest import multipletests; print(multipletests([0.01,0.04,0.03,0.005],method='holm')[1])"
    // -> [0.03 0.06 0.06 0.02]
    #[test]
    fn holm_unsorted() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (x, e) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert_rel(*x, e, 1e-12);
        }
    }

    // Holm with ties. By hand: sorted 0.01, 0.02, 0.02, 0.5 times 4, 3, 2, 1 =
    // 0.04, 0.06, 0.04, 0.5; running max 0.04, 0.06, 0.06, 0.5.
    // $ python3 -c "from statsmodels.stats.multitest import multipletests; print(multipletests([0.02,0.02,0.5,0.01],method='holm')[1])"
    // -> [0.06 0.06 0.5  0.04]
    #[test]
    fn holm_ties() {
        let adj = holm(&[0.02, 0.02, 0.5, 0.01]);
        for (x, e) in adj.iter().zip([0.06, 0.06, 0.5, 0.04]) {
            assert_rel(*x, e, 1e-12);
        }
    }

    // Holm capped at 1. By hand: 3 * 0.3 = 0.9 (0.8999999999999999 in f64),
    // 2 * 0.6 = 1.2 -> 1, max(1.2, 0.9) -> 1.
    // $ python3 -c "from statsmodels.stats.multitest import multipletests; print([repr(x) for x in multipletests([0.3,0.6,0.9],method='holm')[1]])"
    // -> ['np.float64(0.8999999999999999)', 'np.float64(1.0)', 'np.float64(1.0)']
    #[test]
    fn holm_capped_at_one() {
        let adj = holm(&[0.3, 0.6, 0.9]);
        assert_rel(adj[0], 0.8999999999999999, 1e-15);
        assert_eq!(&adj[1..], &[1.0, 1.0]);
    }

    // NaN entries are passed through and excluded from the family size, so the
    // others are adjusted as a family of two.
    // $ python3 -c "from statsmodels.stats.multitest import multipletests; print(multipletests([0.01,0.04],method='holm')[1])"
    // -> [0.02 0.04]
    #[test]
    fn holm_nan_and_empty() {
        let adj = holm(&[0.01, f64::NAN, 0.04]);
        assert_rel(adj[0], 0.02, 1e-12);
        assert!(adj[1].is_nan());
        assert_rel(adj[2], 0.04, 1e-12);
        assert!(holm(&[]).is_empty());
        assert_eq!(holm(&[f64::NAN]).len(), 1);
    }

    #[test]
    fn paired_rejects_bad_input() {
        let e = paired(&[1.0, 2.0], &[1.0]).unwrap_err();
        assert!(e.contains("2 and 1"), "{e}");
        assert!(paired(&[], &[]).is_err());
        let e = paired(&[1.0, 2.0, 3.0], &[1.0, f64::NAN, 3.0]).unwrap_err();
        assert!(e.contains("b[1]"), "{e}");
        let e = paired(&[f64::INFINITY], &[1.0]).unwrap_err();
        assert!(e.contains("a[0]"), "{e}");
        let e = paired(&[0.0, f64::MAX], &[0.0, -f64::MAX]).unwrap_err();
        assert!(e.contains("a[1] - b[1]"), "{e}");
    }

    // Internal consistency of the exact distribution: 2^m assignments,
    // symmetric about m(m+1)/4, and the one-point tail equals 1/2^m.
    #[test]
    fn rank_sum_counts_is_a_distribution() {
        let ranks: Vec<u64> = (1..=10).map(|r| 2 * r).collect();
        let counts = rank_sum_counts(&ranks);
        assert_eq!(counts.iter().sum::<u64>(), 1 << 10);
        assert!(counts.iter().eq(counts.iter().rev()));
        assert_eq!(counts[0], 1);
    }
}
