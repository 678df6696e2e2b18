//! Line charts: several named curves on shared axes with a legend (e.g. the deletion and
//! insertion curves of every explanation method on one input), one chart per panel.

use std::path::Path;

use plotters::prelude::*;

use crate::error::VizError;
use crate::render::{check_png_path, format_tick, grid_shape, render, Area, RgbImage, FONT_FAMILY};
use crate::text::draw_fitted_text;

/// One named curve: its points `(x, y)` in order.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSeries {
    /// The legend entry.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A chart of curves on shared axes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    /// Title above the chart.
    pub title: String,
    /// Description under the x axis.
    pub x_label: String,
    /// The curves, drawn in matplotlib's `tab10` colours in order.
    pub series: Vec<LineSeries>,
}

/// matplotlib's `tab10` colours.
const TAB10: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

impl LineChart {
    fn validate(&self, what: &str) -> Result<(f64, f64, f64, f64), VizError> {
        if self.series.is_empty() || self.series.iter().all(|s| s.points.is_empty()) {
            return Err(VizError::Empty(format!("{what} has no points")));
        }
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for s in &self.series {
            for &(x, y) in &s.points {
                if !(x.is_finite() && y.is_finite()) {
                    return Err(VizError::InvalidOption(format!(
                        "{what}: curve {:?} has a non-finite point ({x}, {y})",
                        s.name
                    )));
                }
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
        }
        let pad = |lo: f64, hi: f64| {
            if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let m = (hi - lo) * 0.05;
                (lo - m, hi + m)
            }
        };
        let (x0, x1) = if x1 - x0 < 1e-12 {
            (x0 - 0.5, x1 + 0.5)
        } else {
            (x0, x1)
        };
        let (y0, y1) = pad(y0, y1);
        Ok((x0, x1, y0, y1))
    }
}

fn draw_line_chart(area: &Area<'_>, chart: &LineChart) -> Result<(), VizError> {
    let (x0, x1, y0, y1) = chart.validate(&format!("line chart {:?}", chart.title))?;
    let (w, _) = area.dim_in_pixel();
    let (title_area, body) = area.split_vertically(28);
    draw_fitted_text(
        &title_area,
        &chart.title,
        (w as i32 / 2, 16),
        15.0,
        w.saturating_sub(12),
    )?;
    let mut cc = ChartBuilder::on(&body)
        .margin_right(14)
        .margin_top(4)
        .margin_left(4)
        .margin_bottom(4)
        .x_label_area_size(if chart.x_label.is_empty() { 26 } else { 46 })
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let fmt = |v: &f64| format_tick(*v);
    cc.configure_mesh()
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .label_style((FONT_FAMILY, 12))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(230, 230, 230))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let (r, g, b) = TAB10[i % TAB10.len()];
        cc.draw_series(std::iter::once(PathElement::new(
            s.points.clone(),
            RGBColor(r, g, b).stroke_width(2),
        )))?;
    }
    // The legend, top right inside the plot, and the x axis description.
    let (bx, by) = area.get_base_pixel();
    let (xr, yr) = cc.plotting_area().get_pixel_range();
    let right = xr.end - bx;
    for (i, s) in chart.series.iter().enumerate() {
        let (r, g, b) = TAB10[i % TAB10.len()];
        let y = yr.start - by + 12 + 16 * i as i32;
        area.draw(&PathElement::new(
            vec![(right - 120, y), (right - 100, y)],
            RGBColor(r, g, b).stroke_width(3),
        ))?;
        draw_fitted_text(area, &s.name, (right - 50, y), 12.0, 92)?;
    }
    if !chart.x_label.is_empty() {
        let cx = (xr.start + xr.end) / 2 - bx;
        draw_fitted_text(
            area,
            &chart.x_label,
            (cx, yr.end - by + 34),
            13.0,
            w.saturating_sub(20),
        )?;
    }
    Ok(())
}

/// Renders `charts` side by side (`cols` per row, all in one row when `None`), each
/// `chart_size` pixels, under an optional figure title.
pub fn render_line_charts(
    charts: &[LineChart],
    title: Option<&str>,
    chart_size: (u32, u32),
    cols: Option<usize>,
) -> Result<RgbImage, VizError> {
    if charts.is_empty() {
        return Err(VizError::Empty("a line chart figure needs a chart".into()));
    }
    let (w, h) = chart_size;
    if w < 200 || h < 150 {
        return Err(VizError::InvalidOption(format!(
            "chart size {w}x{h} is too small (at least 200x150)"
        )));
    }
    for (i, c) in charts.iter().enumerate() {
        c.validate(&format!("line chart {i} ({:?})", c.title))?;
    }
    let (rows, cols) = grid_shape(charts.len(), None, Some(cols.unwrap_or(charts.len())), 4)?;
    let title_band: u64 = if title.is_some() { 36 } else { 0 };
    let width = cols as u64 * w as u64;
    let height = title_band + rows as u64 * h as u64;
    render((width, height), |area| {
        let (top, body) = area.split_vertically(title_band as u32);
        if let Some(t) = title {
            draw_fitted_text(
                &top,
                t,
                ((width / 2) as i32, 20),
                18.0,
                width.saturating_sub(20) as u32,
            )?;
        }
        for (chart, cell) in charts.iter().zip(body.split_evenly((rows, cols)).iter()) {
            draw_line_chart(cell, chart)?;
        }
        Ok(())
    })
}

/// Writes [`render_line_charts`]'s figure to a PNG file (parent folders are created).
pub fn line_charts(
    path: impl AsRef<Path>,
    charts: &[LineChart],
    title: Option<&str>,
    chart_size: (u32, u32),
    cols: Option<usize>,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_line_charts(charts, title, chart_size, cols)?.save_png(path)
}
