//! The final metrics per configuration, one panel per metric of [`METRICS`] that some
//! configuration has (ACC, BWT and forgetting always; FWT, learning accuracy and the others when
//! the results hold their inputs), four panels a row: horizontal bars (a row per configuration,
//! in its colour) with 95% confidence error bars over seeds; in the ACC panel, lines across the
//! bars at the joint (upper bound) and naive (lower bound) ACC when the experiment has them.
//! Adding a metric to the table adds its panel. Reads groups only; writes `<base>.{svg,png}`.

use std::{ops::Range, path::Path};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{
    accuracy_axis, clamp_to, color, decimals, draw_err, finite_range, left_out, padded, plottable,
    points, svg_and_png_noted, titled_body, FONT, NOT_FINITE,
};
use super::summary::{number, Group, Stat};
use crate::results::metrics::{MetricDef, METRICS};

/// The least width of the label column; longer labels widen it.
const LABELS_W: u32 = 320;
const PANEL_W: u32 = 330;
/// Panels side by side in a row of the chart.
const PER_ROW: usize = 4;
const CAPTION: u32 = 22;
const AXIS: u32 = 44;

/// The metrics every result has (they need only the accuracy matrix), drawn even when no value
/// can be.
const ALWAYS: [&str; 3] = ["acc", "bwt", "forgetting"];

/// The metrics of [`METRICS`] to draw, as (index into the table, entry): ACC, BWT and
/// forgetting, and every other one that at least one group has.
fn shown(groups: &[Group]) -> Vec<(usize, &'static MetricDef)> {
    METRICS
        .iter()
        .enumerate()
        .filter(|(i, def)| {
            ALWAYS.contains(&def.key)
                || groups
                    .iter()
                    .any(|g| g.family.get(*i).is_some_and(Option::is_some))
        })
        .collect()
}

/// Height of one row of panels.
fn row_height(groups: &[Group]) -> u32 {
    (110 + 34 * groups.len() as u32).max(280)
}

/// Writes the final-metrics chart of `groups` (nothing when there are none), with `selection`
/// (how the configurations were chosen) under it.
pub fn final_metrics(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let metrics = shown(groups);
    if groups.is_empty() || metrics.is_empty() {
        return Ok(());
    }
    let rows = metrics.len().div_ceil(PER_ROW) as u32;
    let per_row = metrics.len().min(PER_ROW) as u32;
    let size = (
        labels_width(groups) + per_row * PANEL_W,
        40 + rows * row_height(groups),
    );
    svg_and_png_noted!(base, size, selection, draw(groups, &metrics));
    Ok(())
}

/// Room for the longest `label (n=k)` at 13 px (about 7 px a character), so none is clipped.
fn labels_width(groups: &[Group]) -> u32 {
    let longest = groups
        .iter()
        .map(|g| format!("{} (n={})", g.label, g.acc.n).chars().count())
        .max()
        .unwrap_or(0) as u32;
    LABELS_W.max(7 * longest + 30)
}

/// Group `g`'s value of metric `index` of [`METRICS`], if its results have the inputs.
fn stat(g: &Group, index: usize) -> Option<Stat> {
    g.family.get(index).copied().flatten()
}

fn title(def: &MetricDef) -> String {
    let direction = if def.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    if def.key == "acc" {
        format!("final ACC ({direction})")
    } else {
        format!("{} ({direction})", def.name)
    }
}

/// The best (highest) plottable mean ACC of the configurations of `strategy`, if any.
fn bound(groups: &[Group], strategy: &str) -> Option<f64> {
    groups
        .iter()
        .filter(|g| g.strategy == strategy)
        .map(|g| g.acc.mean)
        .filter(|v| plottable(*v))
        .max_by(f64::total_cmp)
}

/// The span of metric `index`'s axis over the means and interval bounds of `groups`: ACC on an
/// accuracy axis from 0; the others from their lowest to their highest value with 0 in view,
/// padded (on the left only where it is negative: bars grow from 0).
fn x_range(def: &MetricDef, index: usize, groups: &[Group]) -> Range<f64> {
    let stats = || groups.iter().filter_map(|g| stat(g, index));
    if def.key == "acc" {
        return accuracy_axis(0.0, stats().map(|s| s.mean));
    }
    let (low, high) = finite_range(stats().flat_map(|s| {
        let (low, high) = s.ci95_bounds();
        [low, high, s.mean]
    }))
    .unwrap_or((0.0, 0.0));
    let (low, high) = (low.min(0.0), high.max(0.0));
    let min_span = if def.percent { 0.005 } else { 0.05 };
    let wide = padded((low, high), 0.08, min_span);
    (if low < 0.0 { wide.start } else { low })..wide.end
}

fn draw<DB: DrawingBackend>(
    groups: &[Group],
    metrics: &[(usize, &'static MetricDef)],
    root: DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let left: usize = metrics
        .iter()
        .map(|&(i, _)| {
            groups
                .iter()
                .filter(|g| stat(g, i).is_some_and(|s| !plottable(s.mean)))
                .count()
        })
        .sum();
    let title = format!(
        "Final metrics per configuration (mean over seeds, bars: 95% CI){}",
        left_out(left, NOT_FINITE)
    );
    let body = titled_body(&root, &title, 18)?;
    let n = groups.len() as f64;
    // Above the rows, room for the labels of the reference lines.
    let top = n + 0.9;
    // Row k (group k) is centred on y = n - 1 - k, so the first group is at the top.
    let y_of = |k: usize| n - 1.0 - k as f64;
    let rows = body.split_evenly((metrics.len().div_ceil(PER_ROW), 1));
    for (row, chunk) in rows.iter().zip(metrics.chunks(PER_ROW)) {
        let (labels, panels) = row.split_horizontally(labels_width(groups));
        draw_labels(groups, &labels, top, y_of)?;
        let (panels, _) = panels.split_horizontally(PANEL_W * chunk.len() as u32);
        for (&(index, def), area) in chunk.iter().zip(panels.split_evenly((1, chunk.len()))) {
            draw_panel(groups, index, def, &area, top, y_of)?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The configurations' labels, in their colours, level with their bars.
fn draw_labels<DB: DrawingBackend>(
    groups: &[Group],
    labels: &DrawingArea<DB, Shift>,
    top: f64,
    y_of: impl Fn(usize) -> f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut label_chart = ChartBuilder::on(labels)
        .caption(" ", (FONT, CAPTION))
        .margin(10)
        .x_label_area_size(AXIS)
        .build_cartesian_2d(0.0f64..1.0f64, -0.5f64..top)
        .map_err(draw_err)?;
    for (k, g) in groups.iter().enumerate() {
        let style = (FONT, 13)
            .into_font()
            .color(&color(k))
            .pos(Pos::new(HPos::Right, VPos::Center));
        label_chart
            .draw_series([Text::new(
                format!("{} (n={})", g.label, g.acc.n),
                (1.0, y_of(k)),
                style,
            )])
            .map_err(draw_err)?;
    }
    Ok(())
}

/// One metric's panel: a bar per configuration that has the metric, with its 95% CI.
fn draw_panel<DB: DrawingBackend>(
    groups: &[Group],
    index: usize,
    def: &MetricDef,
    area: &DrawingArea<DB, Shift>,
    top: f64,
    y_of: impl Fn(usize) -> f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = groups.len() as f64;
    {
        let x_range = x_range(def, index, groups);
        let digits = decimals(x_range.end - x_range.start);
        let percent = def.percent;
        let desc = if percent {
            "points of accuracy (%)"
        } else {
            "ratio"
        };
        let format = move |x: &f64| {
            if percent {
                points(*x, digits)
            } else {
                // A ratio: two decimals more than points of accuracy, never "-0.00".
                points(*x / 100.0, digits + 2)
            }
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title(def), (FONT, CAPTION))
            .margin(10)
            .x_label_area_size(AXIS)
            .build_cartesian_2d(x_range.clone(), -0.5f64..top)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(6)
            .x_label_formatter(&format)
            .x_desc(desc)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series([PathElement::new(
                vec![(0.0, -0.5), (0.0, n - 0.5)],
                BLACK.stroke_width(1),
            )])
            .map_err(draw_err)?;
        for (k, g) in groups.iter().enumerate() {
            let c = color(k);
            let y = y_of(k);
            let Some(stat) = stat(g, index).filter(|s| plottable(s.mean)) else {
                continue;
            };
            chart
                .draw_series([Rectangle::new(
                    [(0.0, y - 0.35), (stat.mean, y + 0.35)],
                    c.mix(0.85).filled(),
                )])
                .map_err(draw_err)?;
            // An infinite bound is drawn to the axis' end; a NaN one (an undefined spread) not.
            let (lo, hi) = stat.ci95_bounds();
            let (Some(lo), Some(hi)) = (clamp_to(&x_range, lo), clamp_to(&x_range, hi)) else {
                continue;
            };
            if hi > lo {
                chart
                    .draw_series([
                        PathElement::new(vec![(lo, y), (hi, y)], BLACK.stroke_width(2)),
                        PathElement::new(vec![(lo, y - 0.2), (lo, y + 0.2)], BLACK.stroke_width(2)),
                        PathElement::new(vec![(hi, y - 0.2), (hi, y + 0.2)], BLACK.stroke_width(2)),
                    ])
                    .map_err(draw_err)?;
            }
        }
        if def.key == "acc" {
            for (strategy, name, shade, at) in [
                ("joint", "joint (upper bound)", BLACK, top),
                (
                    "naive",
                    "naive (lower bound)",
                    RGBColor(110, 110, 110),
                    n + 0.2,
                ),
            ] {
                if let Some(acc) = bound(groups, strategy) {
                    chart
                        .draw_series([PathElement::new(
                            vec![(acc, -0.5), (acc, at)],
                            shade.stroke_width(2),
                        )])
                        .map_err(draw_err)?;
                    let style = (FONT, 12)
                        .into_font()
                        .color(&shade)
                        .pos(Pos::new(HPos::Right, VPos::Top));
                    chart
                        .draw_series([Text::new(
                            format!("{name} {}", number(100.0 * acc, 1)),
                            (acc, at),
                            style,
                        )])
                        .map_err(draw_err)?;
                }
            }
        }
    }
    Ok(())
}
