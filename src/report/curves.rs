//! Training curves of the smallest seed of each configuration: the mean task loss (log scale) and
//! the mean penalty per epoch against the global step, in two panels, one line per
//! configuration, grey lines at the ends of tasks. Reads groups only; writes `<base>.{svg,png}`.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{
    color, draw_err, entries, finite_range, left_out, legend, padded, plottable, positive_for_log,
    svg_and_png_noted, FONT, NOT_FINITE, NOT_POSITIVE,
};
use super::summary::Group;
use crate::results::CurvePoint;

/// Writes the training curves of `groups` (nothing when no group has a curve).
pub fn training_curves(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    if groups.iter().all(|g| g.curve.is_empty()) {
        return Ok(());
    }
    let legend_rows = groups.len().max(1) as u32;
    let height = (2 * 340 + 40).max(60 + 20 * legend_rows);
    svg_and_png_noted!(base, (1260, height), selection, draw(groups));
    Ok(())
}

#[derive(Clone, Copy)]
enum Series {
    TaskLoss,
    Penalty,
}

fn draw<DB: DrawingBackend>(groups: &[Group], root: DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let (top, body) = root.split_vertically(40);
    let seeds: Vec<u64> = groups.iter().map(|g| g.curve_seed).collect();
    let seed = match (seeds.iter().min(), seeds.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("seed {a}"),
        _ => "the smallest seed of each configuration".to_string(),
    };
    top.titled(
        &format!("Training curves, {seed}: means over each epoch"),
        (FONT, 18),
    )
    .map_err(draw_err)?;
    let (plots, side) = body.split_horizontally(880);
    let (upper, lower) = plots.split_vertically(plots.dim_in_pixel().1 / 2);
    panel(groups, Series::TaskLoss, &upper)?;
    panel(groups, Series::Penalty, &lower)?;
    legend(&side, "configuration (seeds)", &entries(groups))?;
    root.present().map_err(draw_err)?;
    Ok(())
}

/// The global steps at which a task ends (the last point of each task but the final one).
fn task_ends(curve: &[CurvePoint]) -> Vec<f64> {
    curve
        .windows(2)
        .filter(|w| w[0].task != w[1].task)
        .map(|w| w[0].step as f64)
        .collect()
}

fn panel<DB: DrawingBackend>(
    groups: &[Group],
    series: Series,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // The task loss is drawn as log10 (labelled 10^k); the penalty, which is 0 on the first
    // task, on a linear axis. A value the axis cannot show is `None`: left out, and counted.
    let value = |p: &CurvePoint| match series {
        Series::TaskLoss => positive_for_log(p.task_loss),
        Series::Penalty => Some(p.penalty).filter(|v| plottable(*v)),
    };
    let values = || groups.iter().flat_map(|g| g.curve.iter().map(value));
    let left = values().filter(Option::is_none).count();
    let range = finite_range(values().flatten());
    let y_range = match (series, range) {
        (Series::TaskLoss, Some(range)) => padded(range, 0.05, 0.0),
        // Nothing to show: 0.1 to 10.
        (Series::TaskLoss, None) => -1.0..1.0,
        (Series::Penalty, range) => {
            let (lo, hi) = range.unwrap_or((0.0, 0.0));
            let wide = padded((lo.min(0.0), hi.max(0.0)), 0.05, 0.0);
            // From 0 unless a penalty is negative.
            (if lo < 0.0 { wide.start } else { 0.0 })..wide.end
        }
    };
    let steps = groups
        .iter()
        .flat_map(|g| g.curve.iter().map(|p| p.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (title, y_desc, why) = match series {
        Series::TaskLoss => (
            "task loss (cross-entropy, log scale)",
            "task loss",
            NOT_POSITIVE,
        ),
        Series::Penalty => ("penalty (the strategy's added loss)", "penalty", NOT_FINITE),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title}{}", left_out(left, why)), (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0f64..steps * 1.02, y_range.clone())
        .map_err(draw_err)?;
    // Far from 1, fixed decimals would print hundreds of digits.
    let loss_label = |y: &f64| {
        let v = 10f64.powf(*y);
        if (0.01..1e4).contains(&v) {
            format!("{v:.2}")
        } else {
            format!("{v:.1e}")
        }
    };
    let linear_label = |y: &f64| {
        if *y == 0.0 || (1e-3..1e5).contains(&y.abs()) {
            format!("{y:.3}")
        } else {
            format!("{y:.2e}")
        }
    };
    let label: &dyn Fn(&f64) -> String = match series {
        Series::TaskLoss => &loss_label,
        Series::Penalty => &linear_label,
    };
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("global step (mini-batches)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    if let Some(g) = groups.iter().find(|g| !g.curve.is_empty()) {
        for end in task_ends(&g.curve) {
            chart
                .draw_series([PathElement::new(
                    vec![(end, y_range.start), (end, y_range.end)],
                    BLACK.mix(0.25).stroke_width(1),
                )])
                .map_err(draw_err)?;
        }
    }
    for (i, g) in groups.iter().enumerate() {
        let c = color(i);
        let points: Vec<(f64, f64)> = g
            .curve
            .iter()
            .filter_map(|p| Some((p.step as f64, value(p)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 2, c.filled())))
            .map_err(draw_err)?;
    }
    Ok(())
}
