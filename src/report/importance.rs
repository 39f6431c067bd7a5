//! The distribution of each method's importance values (Fisher, SI's or MAS's Omega) per
//! parameter tensor, after each task: one panel per configuration, a box per (parameter, task)
//! on a log axis (box: quartiles; whiskers: 10th and 90th percentiles; tick: median; dots:
//! minimum and maximum of the non-zero values). For the smallest seed of each configuration.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{color, draw_err, svg_and_png, titled_body, FONT};
use super::summary::Group;

/// Writes `<base>.svg` and `<base>.png`; nothing when no configuration has importances.
pub fn importance_distributions(groups: &[Group], base: &Path) -> Result<()> {
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
    svg_and_png!(
        base,
        (640 * cols as u32, 380 * rows as u32 + 40),
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
        let mut params: Vec<&str> = g.importance.iter().map(|s| s.param.as_str()).collect();
        params.dedup();
        params.sort();
        params.dedup();
        let tasks = g.importance.iter().map(|s| s.task).max().unwrap_or(0) + 1;
        let logs: Vec<f64> = g
            .importance
            .iter()
            .flat_map(|s| s.quantiles.iter().map(|q| q.log10()))
            .filter(|v| v.is_finite())
            .collect();
        let lo = logs.iter().copied().fold(f64::INFINITY, f64::min).floor();
        let hi = logs
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .ceil();
        let width = (tasks + 1) as f64;
        let top = hi.max(lo + 1.0);
        let mut chart = ChartBuilder::on(&area)
            .caption(&g.label, (FONT, 14).into_font().color(&color(*k)))
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
            .y_label_formatter(&|y| format!("1e{}", y.round() as i64))
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(draw_err)?;
        for s in &g.importance {
            let Some(p) = params.iter().position(|&n| n == s.param) else {
                continue;
            };
            let [min, p10, p25, p50, p75, p90, max] = match s.quantiles.as_slice() {
                [a, b, c, d, e, f, h] => [*a, *b, *c, *d, *e, *f, *h].map(f64::log10),
                _ => continue,
            };
            let x = p as f64 * width + 1.0 + s.task as f64;
            // One shade per task: later tasks darker.
            let shade = 0.35 + 0.65 * (s.task + 1) as f64 / tasks as f64;
            let c = color(*k).mix(shade);
            chart
                .draw_series([
                    Rectangle::new([(x - 0.35, p25), (x + 0.35, p75)], c.filled()),
                    Rectangle::new([(x - 0.35, p25), (x + 0.35, p75)], BLACK.stroke_width(1)),
                ])
                .map_err(draw_err)?;
            chart
                .draw_series([
                    PathElement::new(vec![(x, p10), (x, p25)], BLACK.stroke_width(1)),
                    PathElement::new(vec![(x, p75), (x, p90)], BLACK.stroke_width(1)),
                    PathElement::new(
                        vec![(x - 0.35, p50), (x + 0.35, p50)],
                        BLACK.stroke_width(2),
                    ),
                ])
                .map_err(draw_err)?;
            chart
                .draw_series([min, max].map(|v| Circle::new((x, v), 2, BLACK.filled())))
                .map_err(draw_err)?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}
