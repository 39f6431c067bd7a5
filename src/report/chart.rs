//! Charts with plotters, each a plain function of (data, path without extension); every chart is
//! written as SVG and PNG. Text uses the DejaVu Sans font shipped in `assets/fonts`, registered
//! once, so charts look the same on any machine (no system font lookup). This file holds the
//! shared pieces (font, palette, legend, error conversion), the average-accuracy chart and the
//! sensitivity chart; the other charts have a file each beside it.
//!
//! Colours follow configurations: the i-th group of [`super::summary::group`] is drawn in
//! [`color`]`(i)` in every chart of an experiment.

use std::{ops::Range, path::Path, sync::Once};

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::summary::{params_label, Group, Stat};

pub(crate) const FONT: &str = "sans-serif";
static REGISTER_FONT: Once = Once::new();

/// Height of the strip [`svg_and_png_noted`] adds under a chart.
pub(crate) const NOTE_H: u32 = 24;

/// Draws with `$draw(args..., root)` into `<base>.svg` and `<base>.png`, with `$note` (how the
/// configurations were chosen) written in a strip under the chart, inside the image, so a chart
/// copied out of its report still says it. `$size` is the chart's own; the image is [`NOTE_H`]
/// taller. Each file goes through a temp file renamed when complete (a full disk leaves the old
/// chart, not half of a new one; the error names the chart's path).
macro_rules! svg_and_png_noted {
    ($base:expr, $size:expr, $note:expr, $draw:ident($($arg:expr),*)) => {{
        let (w, h) = $size;
        let full = (w, h + $crate::report::chart::NOTE_H);
        $crate::report::chart::register_font();
        let svg = $base.with_extension("svg");
        let png = $base.with_extension("png");
        $crate::core::atomic::write_atomic_with(&svg, |tmp| {
            let root = plotters::prelude::SVGBackend::new(tmp, full).into_drawing_area();
            $draw($($arg,)* $crate::report::chart::with_note(&root, $note, h)?)
        })?;
        $crate::core::atomic::write_atomic_keeping_extension(&png, |tmp| {
            let root = plotters::prelude::BitMapBackend::new(tmp, full).into_drawing_area();
            $draw($($arg,)* $crate::report::chart::with_note(&root, $note, h)?)
        })?;
    }};
}
pub(crate) use svg_and_png_noted;

/// Writes `Configurations <note>.` in grey in the strip below the first `height` pixels of
/// `root`, and returns the area above it for the chart.
pub(crate) fn with_note<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    note: &str,
    height: u32,
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let (chart, strip) = root.split_vertically(height);
    strip.fill(&WHITE).map_err(draw_err)?;
    let style = (FONT, 13).into_font().color(&RGBColor(90, 90, 90));
    strip
        .draw_text(&format!("Configurations {note}."), &style, (12, 4))
        .map_err(draw_err)?;
    Ok(chart)
}

/// Fills `root` white, writes `title` across its top 40 pixels and returns the area below.
pub(crate) fn titled_body<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    size: u32,
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let (top, body) = root.split_vertically(40);
    top.titled(title, (FONT, size)).map_err(draw_err)?;
    Ok(body)
}

/// A plotters drawing error as an `anyhow` error.
pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing chart: {e:?}")
}

/// A legend in its own area: a coloured line and the label per entry, in columns when they do
/// not fit one.
pub(crate) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(String, RGBColor)],
) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let line = 20i32;
    let top = 36i32;
    area.draw(&Text::new(title.to_string(), (10, 10), (FONT, 15)))
        .map_err(draw_err)?;
    let per_col = (((h as i32 - top - 8) / line).max(1)) as usize;
    let cols = entries.len().div_ceil(per_col).max(1);
    let col_w = (w as i32 - 10) / cols as i32;
    for (k, (label, c)) in entries.iter().enumerate() {
        let x = 10 + (k / per_col) as i32 * col_w;
        let y = top + (k % per_col) as i32 * line;
        area.draw(&PathElement::new(
            vec![(x, y + 7), (x + 22, y + 7)],
            c.stroke_width(3),
        ))
        .map_err(draw_err)?;
        area.draw(&Text::new(label.clone(), (x + 28, y), (FONT, 13)))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The legend entries of `groups`: label (with the number of seeds) and colour.
pub(crate) fn entries(groups: &[Group]) -> Vec<(String, RGBColor)> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("{} (n={})", g.label, g.acc.n), color(i)))
        .collect()
}

/// A shaded band between the 95% interval bounds of `points` (x, stat), clamped to the axis
/// span `y`; points whose mean or bounds the axis cannot show are skipped.
pub(crate) fn band(points: &[(f64, Stat)], c: RGBColor, y: &Range<f64>) -> Polygon<(f64, f64)> {
    let bounds: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(x, s)| plottable(*x) && plottable(s.mean))
        .filter_map(|(x, s)| {
            let (low, high) = s.ci95_bounds();
            Some((*x, clamp_to(y, low)?, clamp_to(y, high)?))
        })
        .collect();
    let mut outline: Vec<(f64, f64)> = bounds.iter().map(|&(x, _, high)| (x, high)).collect();
    outline.extend(bounds.iter().rev().map(|&(x, low, _)| (x, low)));
    Polygon::new(outline, c.mix(0.18).filled())
}

/// The largest magnitude an axis shows. Beyond it the span of a range, or its padding, could
/// overflow to infinity, over which plotters' tick computation never ends.
pub(crate) const AXIS_LIMIT: f64 = 1e300;

/// Whether a linear axis can show `v`: finite and within ±[`AXIS_LIMIT`].
pub(crate) fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() <= AXIS_LIMIT
}

/// `log10(v)` when a log axis can show `v` (positive and [`plottable`]), else `None`.
pub(crate) fn positive_for_log(v: f64) -> Option<f64> {
    (plottable(v) && v > 0.0).then(|| v.log10())
}

/// The lowest and highest of the [`plottable`] `values` (`lo <= hi`); `None` when there is
/// none.
pub(crate) fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| plottable(*v))
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// `lo..hi` widened on each side by `frac` (at most 1) of its span, and by at least `least`.
/// One value (`lo == hi`) with `least` 0 is widened by half its magnitude, or by 0.5 when it
/// is 0, so that every axis has a span. Finite for [`plottable`] bounds.
pub(crate) fn padded((lo, hi): (f64, f64), frac: f64, least: f64) -> Range<f64> {
    let magnitude = lo.abs().max(hi.abs());
    let mut pad = (frac * (hi - lo)).max(least);
    if pad <= 0.0 {
        pad = if magnitude > 0.0 {
            0.5 * magnitude
        } else {
            0.5
        };
    }
    // A pad below about 1e-16 of the bounds is lost to rounding (1e300 + 1 == 1e300).
    let pad = pad.max(1e-9 * magnitude);
    (lo - pad)..(hi + pad)
}

/// `v` moved into `range` (an infinite interval bound drawn to the axis' end); `None` for NaN.
pub(crate) fn clamp_to(range: &Range<f64>, v: f64) -> Option<f64> {
    (!v.is_nan()).then(|| v.clamp(range.start, range.end))
}

/// What [`left_out`] says values a linear axis cannot show are (beyond ±[`AXIS_LIMIT`] counts
/// as infinite).
pub(crate) const NOT_FINITE: &str = "NaN or infinite";
/// What [`left_out`] says values a log axis cannot show are.
pub(crate) const NOT_POSITIVE: &str = "≤ 0, NaN or infinite";

/// Appended to a chart's caption when it left out `n` values it cannot show (`why`: which
/// ones, [`NOT_FINITE`] or [`NOT_POSITIVE`]); empty when it left out none.
pub(crate) fn left_out(n: usize, why: &str) -> String {
    match n {
        0 => String::new(),
        1 => format!(" [1 value left out: {why}]"),
        _ => format!(" [{n} values left out: {why}]"),
    }
}

/// The span of an accuracy axis: from `floor` (see [`accuracy_floor`]) to 1, widened to every
/// [`plottable`] value of `means`. An accuracy outside [0, 1] is odd data, but shown where it
/// is rather than drawn outside the chart.
pub(crate) fn accuracy_axis(floor: f64, means: impl IntoIterator<Item = f64>) -> Range<f64> {
    match finite_range(means) {
        Some((lo, hi)) if lo < floor || hi > 1.0 => padded((lo.min(floor), hi.max(1.0)), 0.02, 0.0),
        _ => floor..1.0,
    }
}

/// The lower end of an accuracy axis: the lowest value rounded down to a tenth, at most 0.9 and
/// at least 0 (NaN values ignored).
pub(crate) fn accuracy_floor(values: impl Iterator<Item = f64>) -> f64 {
    let low = values.fold(1.0f64, f64::min).min(0.9);
    ((low * 10.0).floor() / 10.0).max(0.0)
}

/// Decimals for tick labels in points (value × 100) over a span of `span` (in fractions).
pub(crate) fn decimals(span: f64) -> usize {
    match span * 100.0 {
        s if s < 0.5 => 2,
        s if s < 5.0 => 1,
        _ => 0,
    }
}

/// `value` × 100 with `digits` decimals, never "-0".
pub(crate) fn points(value: f64, digits: usize) -> String {
    let text = format!("{:.digits$}", value * 100.0);
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

pub(crate) fn register_font() {
    REGISTER_FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        // Registration only fails on a malformed font, which the bundled one is not.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, bytes);
    });
}

/// One colour per position, kept across charts of an experiment.
pub fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Average accuracy over the tasks seen so far, after each task, one line per configuration
/// (mean over seeds, shaded 95% confidence band). Writes `<base>.svg` and `<base>.png`.
pub fn average_accuracy(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    svg_and_png_noted!(base, (900, 560), selection, draw_average_accuracy(groups));
    Ok(())
}

fn draw_average_accuracy<DB: DrawingBackend>(
    groups: &[Group],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing chart: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let tasks = groups
        .iter()
        .map(|g| g.avg_accuracy_curve.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let y_min = accuracy_floor(
        groups
            .iter()
            .flat_map(|g| g.avg_accuracy.iter().map(|s| s.ci95_bounds().0)),
    );
    let means = || {
        groups
            .iter()
            .flat_map(|g| g.avg_accuracy_curve.iter().copied())
    };
    let y_range = accuracy_axis(y_min, means());
    let left = means().filter(|v| !plottable(*v)).count();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Average accuracy on the tasks seen so far (mean, 95% CI){}",
                left_out(left, NOT_FINITE)
            ),
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.75f64..tasks as f64 + 0.25, y_range.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("tasks trained")
        .y_desc("mean test accuracy (tasks 1..t)")
        .x_labels(tasks)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| format!("{}%", points(*y, 0)))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for (i, g) in groups.iter().enumerate() {
        let c = color(i);
        let stats: Vec<(f64, Stat)> = g
            .avg_accuracy
            .iter()
            .enumerate()
            .map(|(t, s)| (t as f64 + 1.0, *s))
            .collect();
        chart
            .draw_series([band(&stats, c, &y_range)])
            .map_err(err)?;
        let points: Vec<(f64, f64)> = g
            .avg_accuracy_curve
            .iter()
            .enumerate()
            .map(|(t, &a)| (t as f64 + 1.0, a))
            .filter(|p| plottable(p.1))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (n={})", g.label, g.acc.n))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One configuration of a sweep: the swept value, the group's index (its colour) and its final
/// ACC and BWT over seeds.
#[derive(Debug, Clone, Copy)]
pub struct SweepPoint {
    pub value: f64,
    pub group: usize,
    pub acc: Stat,
    pub bwt: Stat,
    /// The final ACC the selection read (validation), when `acc` is the test ACC.
    pub selection: Option<Stat>,
}

/// `v`, with NaN as -inf: for choosing the highest value, where `total_cmp` alone would rank a
/// NaN above every number.
fn nan_lowest(v: f64) -> f64 {
    if v.is_nan() {
        f64::NEG_INFINITY
    } else {
        v
    }
}

/// One strategy's sweep of one numeric parameter, sorted by value.
pub struct Sweep {
    pub strategy: String,
    pub param: String,
    /// The strategy's other parameters that differ between its sweeps (`gradient=total`), empty
    /// when it has one sweep.
    pub variant: String,
    pub points: Vec<SweepPoint>,
}

impl Sweep {
    /// The chosen configuration: the highest mean ACC (a NaN mean ranks lowest).
    pub fn best(&self) -> SweepPoint {
        *self
            .points
            .iter()
            .max_by(|a, b| nan_lowest(a.acc.mean).total_cmp(&nan_lowest(b.acc.mean)))
            .expect("a sweep has points")
    }

    /// The value the selection chose: the highest mean validation ACC, when the points carry
    /// one; `None` otherwise (the chosen value is then [`best`](Self::best)).
    pub fn chosen_on_validation(&self) -> Option<SweepPoint> {
        self.points
            .iter()
            .filter(|p| p.selection.is_some())
            .max_by(|a, b| {
                let (a, b) = (a.selection.unwrap().mean, b.selection.unwrap().mean);
                nan_lowest(a).total_cmp(&nan_lowest(b))
            })
            .copied()
    }

    /// Whether the swept values are drawn on a log axis: when they are all positive.
    fn log(&self) -> bool {
        self.points.iter().all(|p| p.value > 0.0)
    }

    /// Where `value` lies on the x axis: its log10 on a log axis.
    fn x(&self, value: f64) -> f64 {
        if self.log() {
            value.log10()
        } else {
            value
        }
    }

    /// `strategy` or `strategy variant`, for captions.
    pub fn name(&self) -> String {
        match self.variant.is_empty() {
            true => self.strategy.clone(),
            false => format!("{} {}", self.strategy, self.variant),
        }
    }
}

/// The sweeps in `groups`: for each strategy whose configurations differ in exactly one numeric
/// parameter, one sweep per combination of its other differing parameters (a strategy run both
/// as `si` and `si gradient=total` over the same c gives two sweeps of c).
pub fn sweeps(groups: &[Group]) -> Vec<Sweep> {
    let mut strategies: Vec<&str> = Vec::new();
    for g in groups {
        if !strategies.contains(&g.strategy.as_str()) {
            strategies.push(&g.strategy);
        }
    }
    let mut out = Vec::new();
    for strategy in strategies {
        let members: Vec<(usize, &Group)> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.strategy == strategy)
            .collect();
        let first = &members[0].1.params;
        let mut varying: Vec<&str> = Vec::new();
        for (_, g) in &members {
            for k in g.params.as_object().into_iter().flat_map(|m| m.keys()) {
                if !varying.contains(&k.as_str())
                    && members
                        .iter()
                        .any(|(_, o)| o.params.get(k.as_str()) != first.get(k.as_str()))
                {
                    varying.push(k);
                }
            }
        }
        let numeric: Vec<&str> = varying
            .iter()
            .copied()
            .filter(|k| {
                members
                    .iter()
                    .all(|(_, g)| g.params.get(*k).is_some_and(|v| v.is_number()))
            })
            .collect();
        let [param] = numeric.as_slice() else {
            continue;
        };
        // Partition by the other differing parameters; a parameter a configuration leaves out
        // (a default not recorded) labels nothing.
        let mut partitions: Vec<(String, Vec<SweepPoint>)> = Vec::new();
        for &(group, g) in &members {
            let others: serde_json::Map<String, serde_json::Value> = varying
                .iter()
                .filter(|k| *k != param)
                .filter_map(|k| Some((k.to_string(), g.params.get(*k)?.clone())))
                .collect();
            let variant = params_label(&serde_json::Value::Object(others));
            let point = SweepPoint {
                value: g.params[*param].as_f64().expect("numeric"),
                group,
                acc: g.acc,
                bwt: g.bwt,
                selection: g.selection_acc,
            };
            match partitions.iter_mut().find(|(v, _)| *v == variant) {
                Some((_, points)) => points.push(point),
                None => partitions.push((variant, vec![point])),
            }
        }
        for (variant, mut points) in partitions {
            if points.len() < 2 {
                continue;
            }
            points.sort_by(|a, b| a.value.total_cmp(&b.value));
            out.push(Sweep {
                strategy: strategy.to_string(),
                param: param.to_string(),
                variant,
                points,
            });
        }
    }
    out
}

/// Final ACC (left) and BWT (right) against each swept strength, a row of panels per strategy
/// (log axis when the values are positive), mean with 95% confidence bars over seeds, each point
/// in its configuration's colour; the chosen (best-ACC) value ringed in both panels. Writes
/// nothing when no grid sweeps a strength.
///
/// `selection` (how the configurations were chosen) is written under the chart. When the points
/// carry the validation ACC the choice read, the ACC panel draws it as a dashed line and marks the
/// value it chose with a square, beside the ring on the best test ACC.
pub fn sensitivity(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let sweeps = sweeps(groups);
    if sweeps.is_empty() {
        return Ok(());
    }
    let size = (2 * 420, 320 * sweeps.len() as u32 + SENSITIVITY_TITLE);
    svg_and_png_noted!(base, size, selection, draw_sensitivity(&sweeps));
    Ok(())
}

/// Height of the sensitivity chart's heading, in pixels.
const SENSITIVITY_TITLE: u32 = 26;

/// Which metric a sensitivity panel shows.
#[derive(Clone, Copy)]
enum Metric {
    Acc,
    Bwt,
}

impl Metric {
    fn of(self, p: &SweepPoint) -> Stat {
        match self {
            Metric::Acc => p.acc,
            Metric::Bwt => p.bwt,
        }
    }
}

/// The points of `sweep` a panel of `metric` can show, with their x: both coordinates
/// [`plottable`].
fn shown(sweep: &Sweep, metric: Metric) -> Vec<(f64, &SweepPoint)> {
    sweep
        .points
        .iter()
        .map(|p| (sweep.x(p.value), p))
        .filter(|(x, p)| plottable(*x) && plottable(metric.of(p).mean))
        .collect()
}

/// How many values a panel of `metric` leaves out: the means it cannot show and, in the ACC
/// panel, the validation ACCs of the points it shows.
fn hidden(sweep: &Sweep, metric: Metric) -> usize {
    let shown = shown(sweep, metric);
    let validation = match metric {
        Metric::Acc => shown
            .iter()
            .filter(|(_, p)| p.selection.is_some_and(|s| !plottable(s.mean)))
            .count(),
        Metric::Bwt => 0,
    };
    sweep.points.len() - shown.len() + validation
}

fn draw_sensitivity<DB: DrawingBackend>(
    sweeps: &[Sweep],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let (head, body) = root.split_vertically(SENSITIVITY_TITLE);
    let marks = if sweeps.iter().any(|s| s.chosen_on_validation().is_some()) {
        "ring: best test ACC; square: chosen on validation (dashed line)"
    } else {
        "ring: best ACC"
    };
    let left = sweeps
        .iter()
        .map(|s| hidden(s, Metric::Acc) + hidden(s, Metric::Bwt))
        .sum();
    // How the configurations were chosen is in the strip under the chart, as on every chart.
    let marks = format!("{marks}{}", left_out(left, NOT_FINITE));
    head.draw(&Text::new(marks, (10, 6), (FONT, 12)))
        .map_err(draw_err)?;
    let areas = body.split_evenly((sweeps.len(), 2));
    for (k, sweep) in sweeps.iter().enumerate() {
        for (m, metric) in [Metric::Acc, Metric::Bwt].into_iter().enumerate() {
            draw_sweep_panel(sweep, metric, &areas[2 * k + m])?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn draw_sweep_panel<DB: DrawingBackend>(
    sweep: &Sweep,
    metric: Metric,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let stat = |p: &SweepPoint| metric.of(p);
    let log = sweep.log();
    let to_x = |v: f64| sweep.x(v);
    let shown = shown(sweep, metric);
    let (lo, hi) = finite_range(sweep.points.iter().map(|p| to_x(p.value))).unwrap_or((0.0, 1.0));
    let x_range = padded((lo, hi), 0.1, 0.5);
    let best = sweep.best();
    let validation = || sweep.points.iter().filter_map(|p| Some(p.selection?.mean));
    let (y_range, name): (Range<f64>, &str) = match metric {
        Metric::Acc => (
            accuracy_axis(
                0.0,
                shown.iter().map(|(_, p)| p.acc.mean).chain(validation()),
            ),
            "final ACC",
        ),
        Metric::Bwt => {
            let (low, high) = finite_range(shown.iter().flat_map(|(_, p)| {
                let (low, high) = p.bwt.ci95_bounds();
                [low, high, p.bwt.mean]
            }))
            .unwrap_or((0.0, 0.0));
            (padded((low.min(0.0), high.max(0.0)), 0.1, 0.01), "BWT")
        }
    };
    let digits = decimals(y_range.end - y_range.start);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: {name} vs {} (95% CI)", sweep.name(), sweep.param),
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(draw_err)?;
    let x_desc = if log {
        format!("{} (log scale)", sweep.param)
    } else {
        sweep.param.clone()
    };
    let x_label = |x: &f64| {
        if log {
            // Decades only: 1e-1, 1e0, 1e1, ...
            let decade = x.round();
            if (x - decade).abs() < 1e-6 {
                format!("1e{}", decade as i64)
            } else {
                String::new()
            }
        } else {
            format!("{x}")
        }
    };
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc(x_desc)
        .y_desc(match metric {
            Metric::Acc => "final ACC (%)",
            Metric::Bwt => "BWT (points of accuracy)",
        })
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| points(*y, digits))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    if matches!(metric, Metric::Bwt) {
        chart
            .draw_series([PathElement::new(
                vec![(x_range.start, 0.0), (x_range.end, 0.0)],
                BLACK.mix(0.5).stroke_width(1),
            )])
            .map_err(draw_err)?;
    }
    let points: Vec<(f64, f64)> = shown.iter().map(|&(x, p)| (x, stat(p).mean)).collect();
    chart
        .draw_series(LineSeries::new(
            points.clone(),
            BLACK.mix(0.35).stroke_width(2),
        ))
        .map_err(draw_err)?;
    for &(x, p) in &shown {
        let c = color(p.group);
        let (low, high) = stat(p).ci95_bounds();
        // An infinite bound is drawn to the axis' end; a NaN one (an undefined spread) not.
        if let (Some(low), Some(high)) = (clamp_to(&y_range, low), clamp_to(&y_range, high)) {
            chart
                .draw_series([
                    PathElement::new(vec![(x, low), (x, high)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.04, low), (x + 0.04, low)], c.stroke_width(2)),
                    PathElement::new(vec![(x - 0.04, high), (x + 0.04, high)], c.stroke_width(2)),
                ])
                .map_err(draw_err)?;
        }
        chart
            .draw_series([Circle::new((x, stat(p).mean), 4, c.filled())])
            .map_err(draw_err)?;
    }
    let (x, y) = (to_x(best.value), stat(&best).mean);
    if plottable(x) && plottable(y) {
        chart
            .draw_series([Circle::new((x, y), 8, BLACK.stroke_width(2))])
            .map_err(draw_err)?;
    }
    if let (Metric::Acc, Some(chosen)) = (metric, sweep.chosen_on_validation()) {
        let validation: Vec<(f64, f64)> = shown
            .iter()
            .filter_map(|&(x, p)| Some((x, p.selection?.mean)))
            .filter(|p| plottable(p.1))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(
                validation,
                6,
                4,
                BLACK.mix(0.55).stroke_width(1),
            ))
            .map_err(draw_err)?;
        let (x, y) = (to_x(chosen.value), stat(&chosen).mean);
        if plottable(x) && plottable(y) {
            chart
                .draw_series([Rectangle::new(
                    [(x - 0.07, y - 0.025), (x + 0.07, y + 0.025)],
                    BLACK.stroke_width(2),
                )])
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;

    #[test]
    fn finite_range_leaves_out_what_no_axis_can_show() {
        assert_eq!(
            finite_range([0.5, NAN, -2.0, INF, 3.0, -INF]),
            Some((-2.0, 3.0))
        );
        assert_eq!(finite_range([1e301, -f64::MAX, 0.25]), Some((0.25, 0.25)));
        assert_eq!(finite_range([NAN, INF, -INF]), None);
        assert_eq!(finite_range([]), None);
        assert!(plottable(AXIS_LIMIT) && plottable(-AXIS_LIMIT) && !plottable(1.1e300));
    }

    #[test]
    fn positive_for_log_takes_only_positive_finite_values() {
        assert_eq!(positive_for_log(100.0), Some(2.0));
        for v in [0.0, -0.0, -1.0, NAN, INF, -INF, f64::MAX] {
            assert_eq!(positive_for_log(v), None, "{v}");
        }
        assert!(positive_for_log(f64::MIN_POSITIVE).is_some_and(f64::is_finite));
    }

    #[test]
    fn padded_gives_every_range_a_finite_span() {
        assert_eq!(padded((0.0, 10.0), 0.1, 0.0), -1.0..11.0);
        // The least pad wins over a small share of the span.
        assert_eq!(padded((0.0, 0.01), 0.1, 0.5), -0.5..0.51);
        // One value: half its magnitude, or 0.5 around 0, when no least pad is given.
        assert_eq!(padded((2.0, 2.0), 0.1, 0.0), 1.0..3.0);
        assert_eq!(padded((0.0, 0.0), 0.1, 0.0), -0.5..0.5);
        // Nothing overflows at the limits, and a huge constant still gets a span.
        for (lo, hi) in [(-AXIS_LIMIT, AXIS_LIMIT), (AXIS_LIMIT, AXIS_LIMIT)] {
            for least in [0.0, 0.01] {
                let r = padded((lo, hi), 1.0, least);
                assert!(
                    r.start.is_finite() && r.end.is_finite() && r.start < r.end,
                    "{r:?}"
                );
            }
        }
        let r = padded((1e300, 1e300), 0.1, 0.01);
        assert!(r.start < 1e300 && r.end > 1e300, "{r:?}");
    }

    #[test]
    fn clamp_to_keeps_infinities_on_the_axis_and_drops_nan() {
        let r = -1.0..2.0;
        assert_eq!(clamp_to(&r, INF), Some(2.0));
        assert_eq!(clamp_to(&r, -INF), Some(-1.0));
        assert_eq!(clamp_to(&r, 0.5), Some(0.5));
        assert_eq!(clamp_to(&r, NAN), None);
    }

    #[test]
    fn left_out_says_how_many_and_why_or_nothing() {
        assert_eq!(left_out(0, NOT_FINITE), "");
        assert_eq!(
            left_out(1, NOT_FINITE),
            " [1 value left out: NaN or infinite]"
        );
        assert_eq!(
            left_out(3, NOT_POSITIVE),
            " [3 values left out: ≤ 0, NaN or infinite]"
        );
    }

    #[test]
    fn accuracy_axes_widen_to_odd_accuracies_only() {
        assert_eq!(accuracy_axis(0.5, [0.6, 0.9, NAN, INF]), 0.5..1.0);
        let r = accuracy_axis(0.0, [-0.5, 0.9]);
        assert!(r.start < -0.5 && r.end > 1.0, "{r:?}");
        let r = accuracy_axis(0.0, [1e300]);
        assert!(r.end > 1e300 && r.end.is_finite(), "{r:?}");
        assert_eq!(accuracy_floor([NAN, -INF, 0.73].into_iter()), 0.0);
        assert_eq!(accuracy_floor([NAN, 0.73].into_iter()), 0.7);
    }

    #[test]
    fn a_nan_accuracy_is_never_the_best_of_a_sweep() {
        let stat = |mean: f64| Stat {
            mean,
            std: 0.0,
            n: 1,
        };
        let point = |value: f64, acc: f64, selection: Option<f64>| SweepPoint {
            value,
            group: 0,
            acc: stat(acc),
            bwt: stat(0.0),
            selection: selection.map(stat),
        };
        let sweep = Sweep {
            strategy: "si".into(),
            param: "c".into(),
            variant: String::new(),
            points: vec![
                point(1.0, 0.5, Some(NAN)),
                point(2.0, NAN, Some(0.4)),
                point(3.0, 0.7, Some(0.3)),
            ],
        };
        assert_eq!(sweep.best().value, 3.0);
        assert_eq!(sweep.chosen_on_validation().unwrap().value, 2.0);
        assert_eq!(nan_lowest(NAN), -INF);
        assert_eq!(nan_lowest(INF), INF);
    }
}
