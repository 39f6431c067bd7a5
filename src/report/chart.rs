//! Charts with plotters, each a plain function of (data, path without extension); every chart is
//! written as SVG and PNG. Text uses the DejaVu Sans font shipped in `assets/fonts`, registered
//! once, so charts look the same on any machine (no system font lookup).

use std::{path::Path, sync::Once};

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::summary::Group;

const FONT: &str = "sans-serif";
static REGISTER_FONT: Once = Once::new();

fn register_font() {
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
/// (mean over seeds). Writes `<base>.svg` and `<base>.png`.
pub fn average_accuracy(groups: &[Group], base: &Path) -> Result<()> {
    register_font();
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    draw_average_accuracy(
        groups,
        SVGBackend::new(&svg, (900, 560)).into_drawing_area(),
    )?;
    draw_average_accuracy(
        groups,
        BitMapBackend::new(&png, (900, 560)).into_drawing_area(),
    )?;
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
    let low = groups
        .iter()
        .flat_map(|g| g.avg_accuracy_curve.iter().copied())
        .fold(1.0f64, f64::min)
        .min(0.9);
    let y_min = ((low * 10.0).floor() / 10.0).max(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("Average accuracy on the tasks seen so far", (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.75f64..tasks as f64 + 0.25, y_min..1.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
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

/// One strategy's sweep of one numeric parameter: (value, ACC mean, ACC std) sorted by value.
pub struct Sweep {
    pub strategy: String,
    pub param: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// The sweeps in `groups`: for each strategy with several configurations that differ in exactly
/// one numeric parameter.
pub fn sweeps(groups: &[Group]) -> Vec<Sweep> {
    let mut strategies: Vec<&str> = groups.iter().map(|g| g.strategy.as_str()).collect();
    strategies.dedup();
    let mut out = Vec::new();
    for strategy in strategies {
        let members: Vec<&Group> = groups.iter().filter(|g| g.strategy == strategy).collect();
        if members.len() < 2 {
            continue;
        }
        let keys: Vec<String> = members[0]
            .params
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let varying: Vec<&String> = keys
            .iter()
            .filter(|k| {
                members
                    .iter()
                    .any(|g| g.params.get(k.as_str()) != members[0].params.get(k.as_str()))
            })
            .collect();
        let [param] = varying.as_slice() else {
            continue;
        };
        let mut points: Vec<(f64, f64, f64)> = members
            .iter()
            .filter_map(|g| {
                Some((
                    g.params.get(param.as_str())?.as_f64()?,
                    g.acc.mean,
                    g.acc.std,
                ))
            })
            .collect();
        if points.len() < 2 {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push(Sweep {
            strategy: strategy.to_string(),
            param: param.to_string(),
            points,
        });
    }
    out
}

/// Final ACC against each swept strength, one panel per strategy (log axis when the values are
/// positive), mean ± standard deviation over seeds, the best value marked. Writes nothing when
/// no grid sweeps a strength.
pub fn sensitivity(groups: &[Group], base: &Path) -> Result<()> {
    let sweeps = sweeps(groups);
    if sweeps.is_empty() {
        return Ok(());
    }
    register_font();
    let cols = sweeps.len().min(3);
    let rows = sweeps.len().div_ceil(cols);
    let size = (380 * cols as u32, 320 * rows as u32);
    let colors: Vec<RGBColor> = sweeps
        .iter()
        .map(|s| {
            color(
                groups
                    .iter()
                    .position(|g| g.strategy == s.strategy)
                    .unwrap_or(0),
            )
        })
        .collect();
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    draw_sensitivity(
        &sweeps,
        &colors,
        (rows, cols),
        SVGBackend::new(&svg, size).into_drawing_area(),
    )?;
    draw_sensitivity(
        &sweeps,
        &colors,
        (rows, cols),
        BitMapBackend::new(&png, size).into_drawing_area(),
    )?;
    Ok(())
}

fn draw_sensitivity<DB: DrawingBackend>(
    sweeps: &[Sweep],
    colors: &[RGBColor],
    (rows, cols): (usize, usize),
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing chart: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    for ((sweep, area), &c) in sweeps
        .iter()
        .zip(root.split_evenly((rows, cols)))
        .zip(colors)
    {
        // Positive strengths are drawn on a log axis: x is log10 of the value, labelled 1eN.
        let log = sweep.points.iter().all(|p| p.0 > 0.0);
        let to_x = |v: f64| if log { v.log10() } else { v };
        let xs: Vec<f64> = sweep.points.iter().map(|p| to_x(p.0)).collect();
        let (lo, hi) = (xs[0], xs[xs.len() - 1]);
        let pad = ((hi - lo) * 0.1).max(0.5);
        let best = sweep
            .points
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{}: ACC vs {}", sweep.strategy, sweep.param),
                (FONT, 16),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(lo - pad..hi + pad, 0.0f64..1.0f64)
            .map_err(err)?;
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
            .x_desc(x_desc)
            .y_desc("final ACC")
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(err)?;
        let points: Vec<(f64, f64)> = xs
            .iter()
            .zip(&sweep.points)
            .map(|(&x, p)| (x, p.1))
            .collect();
        let bars = xs.iter().zip(&sweep.points).map(|(&x, &(_, m, s))| {
            PathElement::new(
                vec![(x, (m - s).max(0.0)), (x, (m + s).min(1.0))],
                c.stroke_width(1),
            )
        });
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(err)?;
        chart.draw_series(bars).map_err(err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
        chart
            .draw_series([Circle::new(
                (to_x(best.0), best.1),
                7,
                BLACK.stroke_width(2),
            )])
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
