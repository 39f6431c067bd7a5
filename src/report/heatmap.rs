//! The accuracy matrix of each configuration as a heatmap: task trained (rows) × task tested
//! (columns), the mean over seeds printed in every cell. One figure, a panel per configuration,
//! its title in the configuration's colour. Reads groups only; writes `<base>.{svg,png}`.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{color, draw_err, svg_and_png_noted, titled_body, FONT};
use super::summary::{number, Group};

const PANEL: (u32, u32) = (400, 380);

/// Writes the heatmaps of `groups` (nothing when no group has a matrix).
pub fn accuracy_matrices(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    if groups.iter().all(|g| g.accuracy.is_empty()) {
        return Ok(());
    }
    let cols = groups.len().clamp(1, 3);
    let rows = groups.len().div_ceil(cols);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 40);
    svg_and_png_noted!(base, size, selection, draw(groups, (rows, cols)));
    Ok(())
}

/// White for 0, dark blue for 1 (matplotlib's "Blues" end points), values beyond either end
/// in its colour; grey for NaN, which has no place on the scale.
fn shade(v: f64) -> RGBColor {
    if v.is_nan() {
        return RGBColor(200, 200, 200);
    }
    let v = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

fn draw<DB: DrawingBackend>(
    groups: &[Group],
    (rows, cols): (usize, usize),
    root: DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let body = titled_body(&root, "Accuracy matrix R[i][j]: test accuracy (%) on task j after training task i, mean over seeds", 17)?;
    for ((i, g), area) in groups
        .iter()
        .enumerate()
        .zip(body.split_evenly((rows, cols)))
    {
        panel(g, color(i), &area)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

fn panel<DB: DrawingBackend>(g: &Group, c: RGBColor, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let t = g.accuracy.len();
    let cols = g.accuracy.first().map_or(0, Vec::len);
    if t == 0 || cols == 0 {
        return Ok(());
    }
    let tf = t as f64;
    // Cell (i, j) is centred on x = j, y = t - 1 - i, so row 0 is at the top.
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} (n={})", g.label, g.acc.n),
            (FONT, 14).into_font().color(&c),
        )
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(-0.5f64..cols as f64 - 0.5, -0.5f64..tf - 0.5)
        .map_err(draw_err)?;
    let on_cell = |v: &f64| (v - v.round()).abs() < 1e-6;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * cols + 1)
        .y_labels(2 * t + 1)
        .x_label_formatter(&|x| {
            if on_cell(x) {
                format!("{}", x.round() as i64 + 1)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| {
            if on_cell(y) {
                format!("{}", t as i64 - y.round() as i64)
            } else {
                String::new()
            }
        })
        .x_desc("task tested (j)")
        .y_desc("task trained (i)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(draw_err)?;
    let size = match t.max(cols) {
        0..=5 => 14,
        6..=8 => 11,
        9..=12 => 9,
        _ => 7,
    };
    for (i, row) in g.accuracy.iter().enumerate() {
        let y = tf - 1.0 - i as f64;
        for (j, s) in row.iter().enumerate() {
            let x = j as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    shade(s.mean).filled(),
                )])
                .map_err(draw_err)?;
            let ink = if s.mean > 0.55 { WHITE } else { BLACK };
            let style = (FONT, size)
                .into_font()
                .color(&ink)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series([Text::new(number(100.0 * s.mean, 1), (x, y), style)])
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_cells_get_a_colour_without_a_panic() {
        assert_eq!(shade(0.0), RGBColor(247, 251, 255));
        assert_eq!(shade(1.0), RGBColor(8, 48, 107));
        assert_eq!(shade(f64::INFINITY), shade(1.0));
        assert_eq!(shade(-0.5), shade(0.0));
        assert_eq!(shade(f64::NAN), RGBColor(200, 200, 200));
    }
}
