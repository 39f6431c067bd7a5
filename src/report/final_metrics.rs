//! Final ACC, BWT and forgetting per configuration: horizontal bars (a row per configuration, in
//! its colour) with 95% confidence error bars over seeds; in the ACC panel, lines across the bars
//! at the joint (upper bound) and naive (lower bound) ACC when the experiment has them. Reads
//! groups only; writes `<base>.{svg,png}`.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{color, decimals, draw_err, points, svg_and_png, titled_body, FONT};
use super::summary::{Group, Stat};

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

/// The best (highest) mean ACC of the configurations of `strategy`, if any.
fn bound(groups: &[Group], strategy: &str) -> Option<f64> {
    groups
        .iter()
        .filter(|g| g.strategy == strategy)
        .map(|g| g.acc.mean)
        .max_by(f64::total_cmp)
}

fn draw<DB: DrawingBackend>(groups: &[Group], root: DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let body = titled_body(
        &root,
        "Final metrics per configuration (mean over seeds, bars: 95% CI)",
        18,
    )?;
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
        let bounds: Vec<(f64, f64)> = groups.iter().map(|g| which.stat(g).ci95_bounds()).collect();
        let low = bounds.iter().map(|b| b.0).fold(0.0f64, f64::min);
        let high = bounds.iter().map(|b| b.1).fold(0.0f64, f64::max);
        let x_range = match which {
            Which::Acc => 0.0..1.0,
            _ => {
                let pad = ((high - low) * 0.08).max(0.005);
                (low - if low < 0.0 { pad } else { 0.0 })..(high + pad)
            }
        };
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
        for (k, (g, &(lo, hi))) in groups.iter().zip(&bounds).enumerate() {
            let c = color(k);
            let y = y_of(k);
            let mean = which.stat(g).mean;
            chart
                .draw_series([Rectangle::new(
                    [(0.0, y - 0.35), (mean, y + 0.35)],
                    c.mix(0.85).filled(),
                )])
                .map_err(draw_err)?;
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
                            format!("{name} {:.1}", 100.0 * acc),
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
