//! Who forgot what: for each task j, its test accuracy after training each task i >= j, one line
//! per configuration (mean over seeds, shaded 95% confidence band), a panel per task and a legend
//! panel. Reads groups only; writes `<base>.{svg,png}`.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{
    accuracy_axis, accuracy_floor, band, color, draw_err, entries, left_out, legend, plottable,
    points, svg_and_png_noted, titled_body, FONT, NOT_FINITE,
};
use super::summary::{Group, Stat};

const PANEL: (u32, u32) = (420, 330);

/// Writes the per-task accuracy chart of `groups` (nothing when no group has a matrix).
pub fn per_task(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let tasks = groups.iter().map(|g| g.accuracy.len()).max().unwrap_or(0);
    if tasks == 0 {
        return Ok(());
    }
    // One slot per task plus at least one for the legend.
    let cols = (tasks + 1).min(3);
    let rows = (tasks + 1).div_ceil(cols);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 40);
    svg_and_png_noted!(base, size, selection, draw(groups, tasks, (rows, cols)));
    Ok(())
}

/// Task j's accuracy after each task i >= j, as (i + 1, stat) points.
fn task_points(g: &Group, j: usize) -> Vec<(f64, Stat)> {
    g.accuracy
        .iter()
        .enumerate()
        .skip(j)
        .filter_map(|(i, row)| Some((i as f64 + 1.0, *row.get(j)?)))
        .collect()
}

fn draw<DB: DrawingBackend>(
    groups: &[Group],
    tasks: usize,
    (rows, cols): (usize, usize),
    root: DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let left = (0..tasks)
        .flat_map(|j| groups.iter().flat_map(move |g| task_points(g, j)))
        .filter(|(_, s)| !plottable(s.mean))
        .count();
    let title = format!(
        "Accuracy on each task as later tasks are trained (mean over seeds, 95% CI){}",
        left_out(left, NOT_FINITE)
    );
    let body = titled_body(&root, &title, 18)?;
    let areas = body.split_evenly((rows, cols));
    for (j, area) in areas.iter().take(tasks).enumerate() {
        panel(groups, j, tasks, area)?;
    }
    let rest = &areas[tasks..];
    legend(&rest[0], "configuration (seeds)", &entries(groups))?;
    root.present().map_err(draw_err)?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    groups: &[Group],
    j: usize,
    tasks: usize,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let y_min = accuracy_floor(
        groups
            .iter()
            .flat_map(|g| task_points(g, j))
            .map(|(_, s)| s.ci95_bounds().0),
    );
    let means = || {
        groups
            .iter()
            .flat_map(|g| task_points(g, j))
            .map(|(_, s)| s.mean)
    };
    let y_range = accuracy_axis(y_min, means());
    let mut chart = ChartBuilder::on(area)
        .caption(format!("task {}", j + 1), (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(j as f64 + 0.75..tasks as f64 + 0.25, y_range.clone())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_labels(2 * (tasks - j) + 1)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{}%", points(*y, 0)))
        .x_desc("after training task")
        .y_desc(format!("test accuracy, task {}", j + 1))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    for (i, g) in groups.iter().enumerate() {
        let c = color(i);
        let stats = task_points(g, j);
        if stats.is_empty() {
            continue;
        }
        chart
            .draw_series([band(&stats, c, &y_range)])
            .map_err(draw_err)?;
        let points: Vec<(f64, f64)> = stats
            .iter()
            .map(|(x, s)| (*x, s.mean))
            .filter(|p| plottable(p.1))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(draw_err)?;
    }
    Ok(())
}
