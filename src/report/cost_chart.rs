//! Final ACC against the total time per job, a point per configuration (mean over seeds, with
//! the seeds' 95% confidence bar on ACC), each labelled, and the Pareto front of
//! [`super::cost::pareto_front`] (the configurations nothing beats on both ACC and time) as a
//! black step line. The time axis is logarithmic when the times span more than a factor of 10.
//! Reads groups only; writes `<base>.{svg,png}`.

use std::{ops::Range, path::Path};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{
    accuracy_axis, accuracy_floor, clamp_to, color, decimals, draw_err, entries, left_out, legend,
    padded, plottable, positive_for_log, svg_and_png_noted, titled_body, FONT, NOT_FINITE,
    NOT_POSITIVE,
};
use super::cost::pareto_front;
use super::summary::{Group, Stat};

const LEGEND_W: u32 = 340;
/// The time axis turns logarithmic beyond this ratio of the longest to the shortest time.
const LOG_SPREAD: f64 = 10.0;
const FRONT: &str = "Pareto front (ringed)";

/// One configuration as drawn: its index in the groups, x (seconds, or their log10), ACC.
struct Point {
    group: usize,
    x: f64,
    acc: Stat,
}

/// The points the axes can show, whether x is log10 of the time, and how many were left out.
fn placed(groups: &[Group]) -> (Vec<Point>, bool, usize) {
    let time = |g: &Group| g.cost.total_s.map_or(f64::NAN, |s| s.mean);
    let shown: Vec<usize> = (0..groups.len())
        .filter(|&i| plottable(time(&groups[i])) && plottable(groups[i].acc.mean))
        .collect();
    let times = || shown.iter().map(|&i| time(&groups[i]));
    let lowest = times().fold(f64::INFINITY, f64::min);
    let highest = times().fold(0.0, f64::max);
    let log = lowest > 0.0 && highest / lowest > LOG_SPREAD;
    let points: Vec<Point> = shown
        .into_iter()
        .filter_map(|i| {
            let t = time(&groups[i]);
            let x = if log { positive_for_log(t)? } else { t };
            Some(Point {
                group: i,
                x,
                acc: groups[i].acc,
            })
        })
        .collect();
    let left = groups.len() - points.len();
    (points, log, left)
}

/// Writes the cost chart of `groups` (nothing when there are none), with `selection` (how the
/// configurations were chosen) under it.
pub fn acc_against_time(groups: &[Group], base: &Path, selection: &str) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    svg_and_png_noted!(base, (1100, 600), selection, draw(groups));
    Ok(())
}

fn draw<DB: DrawingBackend>(groups: &[Group], root: DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (points, log, left) = placed(groups);
    let why = if log { NOT_POSITIVE } else { NOT_FINITE };
    let title = format!(
        "Final ACC against total time per job; black steps and rings: the Pareto front{}",
        left_out(left, why)
    );
    let body = titled_body(&root, &title, 18)?;
    let (w, _) = body.dim_in_pixel();
    let (plot, side) = body.split_horizontally(w.saturating_sub(LEGEND_W));
    draw_plot(groups, &points, log, &plot)?;
    let mut items = entries(groups);
    items.push((FRONT.to_string(), BLACK));
    legend(&side, "Configurations", &items)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

fn draw_plot<DB: DrawingBackend>(
    groups: &[Group],
    points: &[Point],
    log: bool,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let x_range = x_axis(points, log);
    let floor = accuracy_floor(points.iter().map(|p| p.acc.ci95_bounds().0));
    let y_range = accuracy_axis(floor, points.iter().map(|p| p.acc.mean));
    let digits = decimals(y_range.end - y_range.start);
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(draw_err)?;
    let x_label = |x: &f64| match log {
        // Decades only: 0.1, 1, 10, 100 seconds.
        true if (x - x.round()).abs() < 1e-6 => format!("{}", 10f64.powi(x.round() as i32)),
        true => String::new(),
        false => super::summary::number(*x, 1),
    };
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc(if log {
            "total time per job, s (log scale)"
        } else {
            "total time per job, s"
        })
        .y_desc("final ACC (%)")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| super::chart::points(*y, digits))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    let front: Vec<(f64, f64)> = {
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.acc.mean, p.x)).collect();
        pareto_front(&xy)
            .into_iter()
            .map(|i| (points[i].x, points[i].acc.mean))
            .collect()
    };
    // Past the slowest point of the front the best ACC stays its ACC: the line runs on to the
    // axis' end, so a front of one point shows too. Each point of the front is ringed.
    let mut line = steps(&front);
    if let Some(&(_, acc)) = front.last() {
        line.push((x_range.end, acc));
    }
    chart
        .draw_series([PathElement::new(line, BLACK.mix(0.7).stroke_width(2))])
        .map_err(draw_err)?;
    chart
        .draw_series(
            front
                .iter()
                .map(|&at| Circle::new(at, 9, BLACK.stroke_width(2))),
        )
        .map_err(draw_err)?;
    let whisker = 0.006 * (x_range.end - x_range.start);
    for p in points {
        let c = color(p.group);
        let (low, high) = p.acc.ci95_bounds();
        if let (Some(low), Some(high)) = (clamp_to(&y_range, low), clamp_to(&y_range, high)) {
            let x = p.x;
            chart
                .draw_series([
                    PathElement::new(vec![(x, low), (x, high)], c.stroke_width(2)),
                    PathElement::new(
                        vec![(x - whisker, low), (x + whisker, low)],
                        c.stroke_width(2),
                    ),
                    PathElement::new(
                        vec![(x - whisker, high), (x + whisker, high)],
                        c.stroke_width(2),
                    ),
                ])
                .map_err(draw_err)?;
        }
        let at = (p.x, p.acc.mean);
        chart
            .draw_series([Circle::new(at, 5, c.filled())])
            .map_err(draw_err)?;
        chart
            .draw_series([EmptyElement::at(at)
                + Text::new(
                    groups[p.group].label.clone(),
                    (9, 3),
                    (FONT, 12).into_font().color(&c),
                )])
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The x axis over the points (seconds or their log10), padded; 0..1 when there is none.
fn x_axis(points: &[Point], log: bool) -> Range<f64> {
    let range = super::chart::finite_range(points.iter().map(|p| p.x));
    match range {
        Some(r) if log => padded(r, 0.08, 0.1),
        Some(r) => padded(r, 0.08, 0.0),
        None => 0.0..1.0,
    }
}

/// The step line through `front` (x, ACC), fastest first: along each time to the next point's,
/// then up to its ACC: the best ACC reachable within a time budget.
pub fn steps(front: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut line = Vec::with_capacity(2 * front.len());
    for (k, &(x, y)) in front.iter().enumerate() {
        if k > 0 {
            line.push((x, front[k - 1].1));
        }
        line.push((x, y));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_line_goes_across_then_up() {
        let front = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)];
        assert_eq!(
            steps(&front),
            vec![(1.0, 0.5), (2.0, 0.5), (2.0, 0.7), (4.0, 0.7), (4.0, 0.9)]
        );
        assert!(steps(&[]).is_empty());
    }

    #[test]
    fn the_chart_is_written_with_a_log_axis_for_a_wide_spread() {
        let mut groups = vec![
            crate::report::summary::test_group(
                "naive",
                "naive",
                serde_json::json!({}),
                &[(1, 0.6), (2, 0.62)],
            ),
            crate::report::summary::test_group(
                "ewc",
                "ewc",
                serde_json::json!({}),
                &[(1, 0.9), (2, 0.91)],
            ),
            crate::report::summary::test_group("old", "l2", serde_json::json!({}), &[(1, 0.8)]),
        ];
        groups[0].cost.total_s = Some(Stat::of(&[2.0, 2.2]));
        groups[1].cost.total_s = Some(Stat::of(&[80.0, 90.0]));
        // groups[2] has no time: left out, and said so.
        let (points, log, left) = placed(&groups);
        assert!(log);
        assert_eq!((points.len(), left), (2, 1));
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cost");
        acc_against_time(&groups, &base, "fixed").unwrap();
        let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
        for text in [
            "Pareto front",
            "log scale",
            "1 value left out",
            "ewc",
            "fixed",
        ] {
            assert!(svg.contains(text), "cost.svg lacks {text:?}");
        }
        assert!(std::fs::metadata(base.with_extension("png")).unwrap().len() > 2000);
    }
}
