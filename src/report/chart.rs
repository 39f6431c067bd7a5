//! Charts with plotters, each a plain function of (data, path without extension); every chart is
//! written as SVG and PNG. Text uses the DejaVu Sans font shipped in `assets/fonts`, registered
//! once, so charts look the same on any machine (no system font lookup). This file holds the
//! shared pieces (font, palette, legend, error conversion), the average-accuracy chart and the
//! sensitivity chart; the other charts have a file each beside it.
//!
//! Colours follow configurations: the i-th group of [`super::summary::group`] is drawn in
//! [`color`]`(i)` in every chart of an experiment.

use std::{path::Path, sync::Once};

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::summary::{params_label, Group, Stat};

pub(crate) const FONT: &str = "sans-serif";
static REGISTER_FONT: Once = Once::new();

/// Draws with `$draw(args..., root)` into `<base>.svg` and `<base>.png` of `$size` pixels, each
/// through a temp file renamed when complete (a full disk leaves the old chart, not half of a
/// new one; the error names the chart's path).
macro_rules! svg_and_png {
    ($base:expr, $size:expr, $draw:ident($($arg:expr),*)) => {{
        $crate::report::chart::register_font();
        let svg = $base.with_extension("svg");
        let png = $base.with_extension("png");
        $crate::core::atomic::write_atomic_with(&svg, |tmp| {
            $draw($($arg,)* plotters::prelude::SVGBackend::new(tmp, $size).into_drawing_area())
        })?;
        $crate::core::atomic::write_atomic_keeping_extension(&png, |tmp| {
            $draw($($arg,)* plotters::prelude::BitMapBackend::new(tmp, $size).into_drawing_area())
        })?;
    }};
}
pub(crate) use svg_and_png;

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

/// A shaded band between the 95% interval bounds of `points` (x, stat).
pub(crate) fn band(points: &[(f64, Stat)], c: RGBColor) -> Polygon<(f64, f64)> {
    let mut outline: Vec<(f64, f64)> = points
        .iter()
        .map(|(x, s)| (*x, s.ci95_bounds().1))
        .collect();
    outline.extend(points.iter().rev().map(|(x, s)| (*x, s.ci95_bounds().0)));
    Polygon::new(outline, c.mix(0.18).filled())
}

/// The lower end of an accuracy axis: the lowest value rounded down to a tenth, at most 0.9.
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
pub fn average_accuracy(groups: &[Group], base: &Path) -> Result<()> {
    svg_and_png!(base, (900, 560), draw_average_accuracy(groups));
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
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Average accuracy on the tasks seen so far (mean, 95% CI)",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.75f64..tasks as f64 + 0.25, y_min..1.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("tasks trained")
        .y_desc("mean test accuracy (tasks 1..t)")
        .x_labels(tasks)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
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
        chart.draw_series([band(&stats, c)]).map_err(err)?;
        let points: Vec<(f64, f64)> = g
            .avg_accuracy_curve
            .iter()
            .enumerate()
            .map(|(t, &a)| (t as f64 + 1.0, a))
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
    /// The chosen configuration: the highest mean ACC.
    pub fn best(&self) -> SweepPoint {
        *self
            .points
            .iter()
            .max_by(|a, b| a.acc.mean.total_cmp(&b.acc.mean))
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
                a.total_cmp(&b)
            })
            .copied()
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
/// `selection` (how the configurations were chosen) heads the chart. When the points carry the
/// validation ACC the choice read, the ACC panel draws it as a dashed line and marks the value it
/// chose with a square, beside the ring on the best test ACC.
pub fn sensitivity(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let sweeps = sweeps(groups);
    if sweeps.is_empty() {
        return Ok(());
    }
    let size = (2 * 420, 320 * sweeps.len() as u32 + SENSITIVITY_TITLE);
    svg_and_png!(base, size, draw_sensitivity(&sweeps, selection));
    Ok(())
}

/// Height of the sensitivity chart's heading, in pixels.
const SENSITIVITY_TITLE: u32 = 44;

/// Which metric a sensitivity panel shows.
#[derive(Clone, Copy)]
enum Metric {
    Acc,
    Bwt,
}

fn draw_sensitivity<DB: DrawingBackend>(
    sweeps: &[Sweep],
    selection: &str,
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
    // Long labels are cut rather than drawn past the edge.
    let line: String = format!("Configurations {selection}")
        .chars()
        .take(110)
        .collect();
    head.draw(&Text::new(line, (10, 6), (FONT, 13)))
        .map_err(draw_err)?;
    head.draw(&Text::new(marks, (10, 24), (FONT, 12)))
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
    let stat = |p: &SweepPoint| match metric {
        Metric::Acc => p.acc,
        Metric::Bwt => p.bwt,
    };
    // Positive strengths are drawn on a log axis: x is log10 of the value, labelled 1eN.
    let log = sweep.points.iter().all(|p| p.value > 0.0);
    let to_x = |v: f64| if log { v.log10() } else { v };
    let xs: Vec<f64> = sweep.points.iter().map(|p| to_x(p.value)).collect();
    let (lo, hi) = (xs[0], xs[xs.len() - 1]);
    let pad = ((hi - lo) * 0.1).max(0.5);
    let best = sweep.best();
    let (y_range, name): (std::ops::Range<f64>, &str) = match metric {
        Metric::Acc => (0.0f64..1.0f64, "final ACC"),
        Metric::Bwt => {
            let low = sweep
                .points
                .iter()
                .map(|p| p.bwt.ci95_bounds().0)
                .fold(0.0f64, f64::min);
            let high = sweep
                .points
                .iter()
                .map(|p| p.bwt.ci95_bounds().1)
                .fold(0.0f64, f64::max);
            let pad = ((high - low) * 0.1).max(0.01);
            (low - pad..high + pad, "BWT")
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
        .build_cartesian_2d(lo - pad..hi + pad, y_range)
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
                vec![(lo - pad, 0.0), (hi + pad, 0.0)],
                BLACK.mix(0.5).stroke_width(1),
            )])
            .map_err(draw_err)?;
    }
    let points: Vec<(f64, f64)> = xs
        .iter()
        .zip(&sweep.points)
        .map(|(&x, p)| (x, stat(p).mean))
        .collect();
    chart
        .draw_series(LineSeries::new(
            points.clone(),
            BLACK.mix(0.35).stroke_width(2),
        ))
        .map_err(draw_err)?;
    for (&x, p) in xs.iter().zip(&sweep.points) {
        let c = color(p.group);
        let (low, high) = stat(p).ci95_bounds();
        chart
            .draw_series([
                PathElement::new(vec![(x, low), (x, high)], c.stroke_width(2)),
                PathElement::new(vec![(x - 0.04, low), (x + 0.04, low)], c.stroke_width(2)),
                PathElement::new(vec![(x - 0.04, high), (x + 0.04, high)], c.stroke_width(2)),
            ])
            .map_err(draw_err)?;
        chart
            .draw_series([Circle::new((x, stat(p).mean), 4, c.filled())])
            .map_err(draw_err)?;
    }
    chart
        .draw_series([Circle::new(
            (to_x(best.value), stat(&best).mean),
            8,
            BLACK.stroke_width(2),
        )])
        .map_err(draw_err)?;
    if let (Metric::Acc, Some(chosen)) = (metric, sweep.chosen_on_validation()) {
        let validation: Vec<(f64, f64)> = xs
            .iter()
            .zip(&sweep.points)
            .filter_map(|(&x, p)| Some((x, p.selection?.mean)))
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
        chart
            .draw_series([Rectangle::new(
                [(x - 0.07, y - 0.025), (x + 0.07, y + 0.025)],
                BLACK.stroke_width(2),
            )])
            .map_err(draw_err)?;
    }
    Ok(())
}
