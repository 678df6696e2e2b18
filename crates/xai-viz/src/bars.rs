//! Bar charts with labelled bars, alone or several in one figure (as in alibi's similarity
//! figure: per test image, the mean score per true class and per predicted class).

use std::path::Path;

use plotters::prelude::*;

use crate::error::VizError;
use crate::render::{check_png_path, format_tick, grid_shape, render, Area, RgbImage, FONT_FAMILY};
use crate::text::{draw_fitted, draw_fitted_text};

/// One bar chart: a value per labelled bar, a title and axis labels.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Label of the horizontal axis (e.g. `"class"`).
    pub x_label: String,
    /// Label of the vertical axis (e.g. `"mean similarity"`).
    pub y_label: String,
    /// One label per bar (e.g. `"0"`..`"9"`).
    pub labels: Vec<String>,
    /// One finite value per bar; negative values are drawn below the zero line.
    pub values: Vec<f32>,
    /// Index of a bar drawn in the highlight colour (e.g. the predicted class).
    pub highlight: Option<usize>,
}

impl BarChart {
    /// A chart with the given title, bar labels and values (axis labels empty).
    pub fn new(
        title: impl Into<String>,
        labels: impl IntoIterator<Item = impl Into<String>>,
        values: impl IntoIterator<Item = f32>,
    ) -> Self {
        BarChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            labels: labels.into_iter().map(Into::into).collect(),
            values: values.into_iter().collect(),
            highlight: None,
        }
    }

    /// Sets the axis labels.
    pub fn axes(mut self, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        self.x_label = x_label.into();
        self.y_label = y_label.into();
        self
    }

    /// Highlights bar `i`.
    pub fn highlight(mut self, i: usize) -> Self {
        self.highlight = Some(i);
        self
    }

    fn validate(&self, which: &str) -> Result<(), VizError> {
        if self.values.is_empty() {
            return Err(VizError::Empty(format!("{which} has no bars")));
        }
        if self.labels.len() != self.values.len() {
            return Err(VizError::SizeMismatch {
                what: format!("bar labels of {which}"),
                expected: format!("{} (one per value)", self.values.len()),
                found: self.labels.len().to_string(),
            });
        }
        if let Some(&v) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(VizError::NonFinite {
                what: format!("values of {which}"),
                value: v,
            });
        }
        if let Some(h) = self.highlight {
            if h >= self.values.len() {
                return Err(VizError::InvalidOption(format!(
                    "highlighted bar {h} of {which} is out of range for {} bars",
                    self.values.len()
                )));
            }
        }
        Ok(())
    }

    /// The y range: always includes 0, with some headroom.
    fn y_range(&self) -> (f64, f64) {
        let lo = self.values.iter().fold(0.0f64, |m, &v| m.min(v as f64));
        let hi = self.values.iter().fold(0.0f64, |m, &v| m.max(v as f64));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let lo = if lo < 0.0 { lo - 0.08 * span } else { 0.0 };
        let hi = if hi > 0.0 || lo == 0.0 {
            hi + 0.08 * span
        } else {
            0.0
        };
        (lo, hi)
    }
}

/// Options of [`bar_chart`] and [`bar_chart_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct BarChartOptions {
    /// Size of one chart in pixels.
    pub chart_size: (u32, u32),
    /// Charts per row in a grid; derived (up to 3) when `None`.
    pub cols: Option<usize>,
    /// Figure title above a grid.
    pub title: Option<String>,
    /// Bar colour.
    pub color: [u8; 3],
    /// Colour of the highlighted bar.
    pub highlight_color: [u8; 3],
}

impl Default for BarChartOptions {
    fn default() -> Self {
        BarChartOptions {
            chart_size: (480, 320),
            cols: None,
            title: None,
            color: [31, 119, 180],
            highlight_color: [214, 39, 40],
        }
    }
}

impl BarChartOptions {
    /// Sets the figure title (grids only).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the number of charts per row (grids only).
    pub fn cols(mut self, cols: usize) -> Self {
        self.cols = Some(cols);
        self
    }
}

const FIG_TITLE_PX: u32 = 20;

fn draw_chart(area: &Area<'_>, chart: &BarChart, opts: &BarChartOptions) -> Result<(), VizError> {
    let n = chart.values.len();
    let (lo, hi) = chart.y_range();
    let (w, _) = area.dim_in_pixel();
    let title_h = if chart.title.is_empty() { 6 } else { 28 };
    let (title_area, body) = area.split_vertically(title_h);
    if !chart.title.is_empty() {
        draw_fitted_text(
            &title_area,
            &chart.title,
            (w as i32 / 2, 16),
            16.0,
            w.saturating_sub(12),
        )?;
    }
    // Tick labels, axis descriptions and the y axis label are drawn with our own text renderer
    // (see `text.rs`); plotters draws the frame, the y ticks and the bars.
    let x_area = if chart.x_label.is_empty() { 24 } else { 46 };
    let y_area = if chart.y_label.is_empty() { 48 } else { 70 };
    let mut cc = ChartBuilder::on(&body)
        .margin_right(12)
        .margin_top(4)
        .margin_left(4)
        .margin_bottom(4)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)?;
    // Key points near 0 can come out as 1e-18 from floating-point steps.
    let eps = (hi - lo) * 1e-9;
    let y_fmt = |v: &f64| format_tick(if v.abs() < eps { 0.0 } else { *v });
    cc.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&y_fmt)
        .label_style((FONT_FAMILY, 12))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;

    let [r, g, b] = opts.color;
    let [hr, hg, hb] = opts.highlight_color;
    cc.draw_series(chart.values.iter().enumerate().map(|(i, &v)| {
        let color = if chart.highlight == Some(i) {
            RGBColor(hr, hg, hb)
        } else {
            RGBColor(r, g, b)
        };
        let (top, bottom) = if v >= 0.0 {
            (v as f64, 0.0)
        } else {
            (0.0, v as f64)
        };
        let x = i as f64;
        Rectangle::new([(x - 0.4, top), (x + 0.4, bottom)], color.filled())
    }))?;
    if lo < 0.0 {
        cc.draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
            BLACK.stroke_width(1),
        )))?;
    }

    // Our own x tick marks and labels, axis descriptions; coordinates relative to `area`.
    let (bx, by) = area.get_base_pixel();
    let (xr, yr) = cc.plotting_area().get_pixel_range();
    let slot = ((xr.end - xr.start) as f64 / n as f64).max(1.0);
    let axis_y = yr.end - by;
    for (i, label) in chart.labels.iter().enumerate() {
        let (px, _) = cc.backend_coord(&(i as f64, lo));
        let x = px - bx;
        area.draw(&PathElement::new(vec![(x, axis_y), (x, axis_y + 4)], BLACK))?;
        draw_fitted_text(
            area,
            label,
            (x, axis_y + 14),
            12.0,
            (slot - 2.0).max(8.0) as u32,
        )?;
    }
    let mid_x = (xr.start + xr.end) / 2 - bx;
    if !chart.x_label.is_empty() {
        draw_fitted_text(
            area,
            &chart.x_label,
            (mid_x, axis_y + 34),
            14.0,
            (xr.end - xr.start) as u32,
        )?;
    }
    if !chart.y_label.is_empty() {
        let mid_y = (yr.start + yr.end) / 2 - by;
        draw_fitted(
            area,
            &chart.y_label,
            (14, mid_y),
            14.0,
            (yr.end - yr.start) as u32,
            true,
        )?;
    }
    Ok(())
}

/// Renders one bar chart of `opts.chart_size` pixels.
pub fn render_bar_chart(chart: &BarChart, opts: &BarChartOptions) -> Result<RgbImage, VizError> {
    chart.validate("the bar chart")?;
    let (w, h) = opts.chart_size;
    check_chart_size(w, h)?;
    render((w as u64, h as u64), |area| draw_chart(area, chart, opts))
}

/// Renders several bar charts in a grid (row by row, `opts.cols` per row) with an optional
/// figure title.
pub fn render_bar_chart_grid(
    charts: &[BarChart],
    opts: &BarChartOptions,
) -> Result<RgbImage, VizError> {
    if charts.is_empty() {
        return Err(VizError::Empty(
            "bar chart grid needs at least one chart".into(),
        ));
    }
    for (i, c) in charts.iter().enumerate() {
        c.validate(&format!("bar chart {i} ({:?})", c.title))?;
    }
    let (w, h) = opts.chart_size;
    check_chart_size(w, h)?;
    let (rows, cols) = grid_shape(charts.len(), None, opts.cols, 3)?;
    let title_band = if opts.title.is_some() {
        FIG_TITLE_PX as u64 + 16
    } else {
        0
    };
    let width = cols as u64 * w as u64;
    let height = title_band + rows as u64 * h as u64;
    render((width, height), |area| {
        let (top, body) = area.split_vertically(title_band as u32);
        if let Some(t) = &opts.title {
            draw_fitted_text(
                &top,
                t,
                ((width / 2) as i32, (title_band / 2) as i32 + 2),
                FIG_TITLE_PX as f64,
                width.saturating_sub(20) as u32,
            )?;
        }
        let cells = body.split_evenly((rows, cols));
        for (chart, cell) in charts.iter().zip(cells.iter()) {
            draw_chart(cell, chart, opts)?;
        }
        Ok(())
    })
}

fn check_chart_size(w: u32, h: u32) -> Result<(), VizError> {
    if w < 120 || h < 100 {
        return Err(VizError::InvalidOption(format!(
            "chart size {w}x{h} is too small (at least 120x100)"
        )));
    }
    Ok(())
}

/// Writes [`render_bar_chart`]'s figure to a PNG file (parent folders are created).
///
/// ```no_run
/// use xai_viz::{bar_chart, BarChart, BarChartOptions};
///
/// let scores = [0.1f32, 0.9, 0.2, 0.0, -0.1, 0.3, 0.2, 0.1, 0.4, 0.2];
/// let chart = BarChart::new("mean similarity per class", (0..10).map(|c| c.to_string()), scores)
///     .axes("class", "mean score")
///     .highlight(1);
/// bar_chart("target/bars.png", &chart, &BarChartOptions::default())?;
/// # Ok::<(), xai_viz::VizError>(())
/// ```
pub fn bar_chart(
    path: impl AsRef<Path>,
    chart: &BarChart,
    opts: &BarChartOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_bar_chart(chart, opts)?.save_png(path)
}

/// Writes [`render_bar_chart_grid`]'s figure to a PNG file (parent folders are created).
pub fn bar_chart_grid(
    path: impl AsRef<Path>,
    charts: &[BarChart],
    opts: &BarChartOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_bar_chart_grid(charts, opts)?.save_png(path)
}
