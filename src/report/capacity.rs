//! How much of the network the tasks hold, for methods that gate hidden units (HAT's compression
//! analysis, Serrà et al. 2018, Sec. 4.4): one panel per gated configuration, one line per gated
//! layer, the share of its units held after each task. For the smallest seed of each
//! configuration. Reads groups only; writes `<base>.{svg,png}`, nothing when no configuration
//! gates.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{color, draw_err, left_out, svg_and_png_noted, titled_body, FONT};
use super::summary::Group;

const PANEL: (u32, u32) = (640, 360);

/// Writes the chart of the groups that recorded held units.
pub fn units_held(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    let gated: Vec<&Group> = groups.iter().filter(|g| !g.capacity.is_empty()).collect();
    if gated.is_empty() {
        return Ok(());
    }
    let cols = gated.len().min(2);
    let rows = gated.len().div_ceil(cols);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 40);
    svg_and_png_noted!(base, size, selection, draw(&gated, (rows, cols)));
    Ok(())
}

/// Each layer's (task + 1, percent held) points, layers in name order.
fn layer_lines(g: &Group) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut layers: Vec<String> = g.capacity.iter().map(|c| c.layer.clone()).collect();
    layers.sort();
    layers.dedup();
    layers
        .into_iter()
        .map(|layer| {
            let points = g
                .capacity
                .iter()
                .filter(|c| c.layer == layer && c.units > 0 && c.held <= c.units)
                .map(|c| (c.task as f64 + 1.0, 100.0 * c.held as f64 / c.units as f64))
                .collect();
            (layer, points)
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    groups: &[&Group],
    (rows, cols): (usize, usize),
    root: DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // A layer recorded with no units (a malformed result) has no share to draw.
    let empty = groups
        .iter()
        .flat_map(|g| &g.capacity)
        .filter(|c| c.units == 0 || c.held > c.units)
        .count();
    let title = format!(
        "Units held by the tasks trained so far, per gated layer (smallest seed){}",
        left_out(empty, "a layer of no units, or more held than it has")
    );
    let body = titled_body(&root, &title, 18)?;
    for (g, area) in groups.iter().zip(body.split_evenly((rows, cols))) {
        panel(g, &area)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn panel<DB: DrawingBackend>(g: &Group, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let tasks = g.capacity.iter().map(|c| c.task + 1).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} (seed {})", g.label, g.curve_seed), (FONT, 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(0.75..tasks as f64 + 0.25, 0.0..100.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_labels(2 * tasks + 1)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .x_desc("after training task")
        .y_desc("units held")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    for (i, (layer, points)) in layer_lines(g).into_iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(draw_err)?
            .label(layer)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 12))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}
