//! Final ACC, BWT and forgetting per configuration: horizontal bars (a row per configuration, in
//! its colour) with 95% confidence error bars over seeds; in the ACC panel, lines across the bars
//! at the joint (upper bound) and naive (lower bound) ACC when the experiment has them. Reads
//! groups only; writes `<base>.{svg,png}`.

use std::{ops::Range, path::Path};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{
    accuracy_axis, clamp_to, color, decimals, draw_err, finite_range, left_out, padded, plottable,
    points, svg_and_png, titled_body, FONT, NOT_FINITE,
};
use super::summary::{number, Group, Stat};

/// The least width of the label column; longer labels widen it.
const LABELS_W: u32 = 320;
const PANEL_W: u32 = 330;
const CAPTION: u32 = 22;
const AXIS: u32 = 44;

/// Writes the final-metrics chart of `groups` (nothing when there are none).
pub fn final_metrics(groups: &[Group], base: &Path) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let height = (150 + 34 * groups.len() as u32).max(320);
    svg_and_png!(
        base,
        (labels_width(groups) + 3 * PANEL_W, height),
        draw(groups)
    );
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

#[derive(Clone, Copy)]
enum Which {
    Acc,
    Bwt,
    Forgetting,
}

impl Which {
    fn stat(self, g: &Group) -> Stat {
        match self {
            Which::Acc => g.acc,
            Which::Bwt => g.bwt,
            Which::Forgetting => g.forgetting,
        }
    }
    fn title(self) -> &'static str {
        match self {
            Which::Acc => "final ACC (higher is better)",
            Which::Bwt => "BWT (higher is better)",
            Which::Forgetting => "forgetting (lower is better)",
        }
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

/// The span of `which`'s axis over the means and interval bounds of `groups`: ACC on an
/// accuracy axis from 0; BWT and forgetting from their lowest to their highest value with 0
/// in view, padded (on the left only where it is negative: bars grow from 0).
fn x_range(which: Which, groups: &[Group]) -> Range<f64> {
    let stats = || groups.iter().map(|g| which.stat(g));
    if matches!(which, Which::Acc) {
        return accuracy_axis(0.0, stats().map(|s| s.mean));
    }
    let (low, high) = finite_range(stats().flat_map(|s| {
        let (low, high) = s.ci95_bounds();
        [low, high, s.mean]
    }))
    .unwrap_or((0.0, 0.0));
    let (low, high) = (low.min(0.0), high.max(0.0));
    let wide = padded((low, high), 0.08, 0.005);
    (if low < 0.0 { wide.start } else { low })..wide.end
}

fn draw<DB: DrawingBackend>(groups: &[Group], root: DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let left: usize = [Which::Acc, Which::Bwt, Which::Forgetting]
        .into_iter()
        .map(|which| {
            groups
                .iter()
                .filter(|g| !plottable(which.stat(g).mean))
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
    let (labels, panels) = body.split_horizontally(labels_width(groups));
    let mut label_chart = ChartBuilder::on(&labels)
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
    for (which, area) in [Which::Acc, Which::Bwt, Which::Forgetting]
        .into_iter()
        .zip(panels.split_evenly((1, 3)))
    {
        let x_range = x_range(which, groups);
        let digits = decimals(x_range.end - x_range.start);
        let mut chart = ChartBuilder::on(&area)
            .caption(which.title(), (FONT, CAPTION))
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
            .x_label_formatter(&|x| points(*x, digits))
            .x_desc("points of accuracy (%)")
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
            let stat = which.stat(g);
            if !plottable(stat.mean) {
                continue;
            }
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
        if matches!(which, Which::Acc) {
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
    root.present().map_err(draw_err)?;
    Ok(())
}
