//! The distribution of each method's importance values (Fisher, SI's or MAS's Omega) per
//! parameter tensor, after each task: one panel per configuration, a box per (parameter, task)
//! on a log axis (box: quartiles; whiskers: 10th and 90th percentiles; tick: median; dots:
//! minimum and maximum of the non-zero values). For the smallest seed of each configuration.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{
    color, draw_err, finite_range, left_out, positive_for_log, svg_and_png_noted, titled_body,
    FONT, NOT_POSITIVE,
};
use super::summary::Group;

/// Writes `<base>.svg` and `<base>.png`; nothing when no configuration has importances.
pub fn importance_distributions(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let with: Vec<(usize, &Group)> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.importance.iter().any(|s| !s.quantiles.is_empty()))
        .collect();
    if with.is_empty() {
        return Ok(());
    }
    let cols = with.len().min(2);
    let rows = with.len().div_ceil(cols);
    svg_and_png_noted!(
        base,
        (640 * cols as u32, 380 * rows as u32 + 40),
        selection,
        draw(&with, (rows, cols))
    );
    Ok(())
}

fn draw<DB: DrawingBackend>(
    groups: &[(usize, &Group)],
    (rows, cols): (usize, usize),
    root: DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let body = titled_body(
        &root,
        "Importance values per parameter after each task (log scale; smallest seed)",
        18,
    )?;
    for ((k, g), area) in groups.iter().zip(body.split_evenly((rows, cols))) {
        panel(g, color(*k), &area)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// One configuration's boxes. Quantiles a log axis cannot show (an SI run with a negative
/// damping has negative importances) are left out, with the parts of their boxes they bound,
/// and counted in the caption.
fn panel<DB: DrawingBackend>(g: &Group, c: RGBColor, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut params: Vec<&str> = g.importance.iter().map(|s| s.param.as_str()).collect();
    params.sort();
    params.dedup();
    let tasks = g
        .importance
        .iter()
        .map(|s| s.task)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let quantiles = || {
        g.importance
            .iter()
            .flat_map(|s| s.quantiles.iter().copied())
    };
    let left = quantiles()
        .filter(|&q| positive_for_log(q).is_none())
        .count();
    let (lo, hi) = finite_range(quantiles().filter_map(positive_for_log))
        .map_or((-1.0, 1.0), |(lo, hi)| (lo.floor(), hi.ceil()));
    let width = tasks as f64 + 1.0;
    let top = hi.max(lo + 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}{}", g.label, left_out(left, NOT_POSITIVE)),
            (FONT, 14).into_font().color(&c),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..width * params.len() as f64, lo..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc(format!("{}; a box per task", params.join("  |  ")))
        .y_desc("importance (log10)")
        // Decades only: a span of one decade has ticks between them.
        .y_label_formatter(&|y| {
            if (y - y.round()).abs() < 1e-6 {
                format!("1e{}", y.round() as i64)
            } else {
                String::new()
            }
        })
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(draw_err)?;
    for s in &g.importance {
        let Some(p) = params.iter().position(|&n| n == s.param) else {
            continue;
        };
        let [min, p10, p25, p50, p75, p90, max] = match s.quantiles.as_slice() {
            [a, b, c, d, e, f, h] => [*a, *b, *c, *d, *e, *f, *h].map(positive_for_log),
            _ => continue,
        };
        let x = p as f64 * width + 1.0 + s.task as f64;
        // One shade per task: later tasks darker.
        let shade = c.mix(0.35 + 0.65 * (s.task as f64 + 1.0) / tasks as f64);
        if let (Some(p25), Some(p75)) = (p25, p75) {
            chart
                .draw_series([
                    Rectangle::new([(x - 0.35, p25), (x + 0.35, p75)], shade.filled()),
                    Rectangle::new([(x - 0.35, p25), (x + 0.35, p75)], BLACK.stroke_width(1)),
                ])
                .map_err(draw_err)?;
        }
        let whiskers = [(p10, p25), (p75, p90)].into_iter().filter_map(|(a, b)| {
            Some(PathElement::new(
                vec![(x, a?), (x, b?)],
                BLACK.stroke_width(1),
            ))
        });
        chart.draw_series(whiskers).map_err(draw_err)?;
        if let Some(p50) = p50 {
            chart
                .draw_series([PathElement::new(
                    vec![(x - 0.35, p50), (x + 0.35, p50)],
                    BLACK.stroke_width(2),
                )])
                .map_err(draw_err)?;
        }
        chart
            .draw_series(
                [min, max]
                    .into_iter()
                    .flatten()
                    .map(|v| Circle::new((x, v), 2, BLACK.filled())),
            )
            .map_err(draw_err)?;
    }
    Ok(())
}
