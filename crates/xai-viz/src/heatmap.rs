//! Attribution heatmap panels with a shared colour bar (as in dianna's KernelSHAP figure: the
//! digit, then one attribution map per class): diverging for signed values, sequential for
//! values that are not signed.

use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use plotters::prelude::*;

use crate::colormap::{blend, gray_color, DivergingColormap, Rgb, SequentialColormap};
use crate::error::VizError;
use crate::render::{
    auto_range, blit, check_image, check_png_path, check_range, fit, format_tick, frame,
    grid_shape, rasterize, render, RgbImage,
};
use crate::text::draw_fitted_text;

/// One panel: a grayscale or colour image, a heatmap, or a heatmap drawn semi-transparently over
/// an image.
#[derive(Debug, Clone)]
pub struct HeatmapPanel<'a> {
    /// Title above the panel (may be empty).
    pub title: String,
    /// The grayscale image (background), if any.
    pub image: Option<ArrayView2<'a, f32>>,
    /// A colour image `[3, h, w]` (red, green, blue) drawn instead of `image`, if any.
    pub rgb: Option<ArrayView3<'a, f32>>,
    /// The heatmap (attributions), if any; must have the image's shape when both are given.
    pub heatmap: Option<ArrayView2<'a, f32>>,
}

impl<'a> HeatmapPanel<'a> {
    /// A panel with only a grayscale image.
    pub fn image(title: impl Into<String>, image: ArrayView2<'a, f32>) -> Self {
        HeatmapPanel {
            title: title.into(),
            image: Some(image),
            rgb: None,
            heatmap: None,
        }
    }

    /// A panel with only a colour image `[3, h, w]`.
    pub fn rgb(title: impl Into<String>, rgb: ArrayView3<'a, f32>) -> Self {
        HeatmapPanel {
            title: title.into(),
            image: None,
            rgb: Some(rgb),
            heatmap: None,
        }
    }

    /// A heatmap drawn over a colour image `[3, h, w]`: the opacity is
    /// [`HeatmapOptions::overlay_alpha`] times the value's share of the colour scale, so the photo
    /// shows where attributions are near 0.
    pub fn overlay_rgb(
        title: impl Into<String>,
        rgb: ArrayView3<'a, f32>,
        heatmap: ArrayView2<'a, f32>,
    ) -> Self {
        HeatmapPanel {
            title: title.into(),
            image: None,
            rgb: Some(rgb),
            heatmap: Some(heatmap),
        }
    }

    /// A panel with only a heatmap.
    pub fn heatmap(title: impl Into<String>, heatmap: ArrayView2<'a, f32>) -> Self {
        HeatmapPanel {
            title: title.into(),
            image: None,
            rgb: None,
            heatmap: Some(heatmap),
        }
    }

    /// A heatmap drawn over an image (with [`HeatmapOptions::overlay_alpha`]).
    pub fn overlay(
        title: impl Into<String>,
        image: ArrayView2<'a, f32>,
        heatmap: ArrayView2<'a, f32>,
    ) -> Self {
        HeatmapPanel {
            title: title.into(),
            image: Some(image),
            rgb: None,
            heatmap: Some(heatmap),
        }
    }
}

/// How heatmap values become colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorScale {
    /// Blue-white-red centred on 0 over a symmetric range (signed values: SHAP attributions).
    #[default]
    Diverging,
    /// viridis from the smallest to the largest value (values that are not signed: L2X
    /// importances, probabilities).
    Sequential,
}

/// The colour map of one figure, shared by all its panels and its colour bar.
#[derive(Debug, Clone, Copy)]
enum Scale {
    Diverging(DivergingColormap),
    Sequential(SequentialColormap),
}

impl Scale {
    fn color(&self, v: f32) -> Rgb {
        match self {
            Scale::Diverging(m) => m.color(v),
            Scale::Sequential(m) => m.color(v),
        }
    }

    /// How strongly `v` shows over a colour photo, in [0, 1]: its distance from the scale's
    /// neutral value (0 on a diverging scale, the minimum on a sequential one) relative to the
    /// scale's extent, so that a photo shows through where attributions are small.
    fn strength(&self, v: f32) -> f32 {
        let t = match self {
            Scale::Diverging(m) => v.abs() / m.limit,
            Scale::Sequential(m) => (v - m.min) / (m.max - m.min),
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn range(&self) -> (f32, f32) {
        match self {
            Scale::Diverging(m) => (-m.limit, m.limit),
            Scale::Sequential(m) => (m.min, m.max),
        }
    }
}

/// Options of [`heatmap_panels`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOptions {
    /// Figure title above the panels.
    pub title: Option<String>,
    /// Panels per row; all in one row when `None`.
    pub cols: Option<usize>,
    /// Side of the square box each panel is scaled into.
    pub panel_px: u32,
    /// Values mapped to black and white in images; `None` uses the min and max over all images.
    pub image_range: Option<(f32, f32)>,
    /// Opacity of a heatmap drawn over an image, in `[0, 1]`.
    pub overlay_alpha: f32,
    /// Diverging (signed values, the default) or sequential (values that are not signed).
    pub scale: ColorScale,
    /// The colour scale runs over `[-limit, limit]` (diverging) or `[0, limit]` (sequential);
    /// `None` uses the largest absolute heatmap value across all panels (diverging: shared,
    /// symmetric, centred on 0) or the smallest to the largest value (sequential).
    pub limit: Option<f32>,
    /// Draw the shared horizontal colour bar (only if some panel has a heatmap).
    pub colorbar: bool,
    /// Label under the colour bar (e.g. `"SHAP value"`).
    pub colorbar_label: Option<String>,
    /// Font size of panel titles, in pixels.
    pub title_px: u32,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        HeatmapOptions {
            title: None,
            cols: None,
            panel_px: 140,
            image_range: None,
            overlay_alpha: 0.6,
            scale: ColorScale::Diverging,
            limit: None,
            colorbar: true,
            colorbar_label: None,
            title_px: 14,
        }
    }
}

impl HeatmapOptions {
    /// Sets the figure title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the colour bar label.
    pub fn colorbar_label(mut self, label: impl Into<String>) -> Self {
        self.colorbar_label = Some(label.into());
        self
    }

    /// Sets the images' value range.
    pub fn image_range(mut self, min: f32, max: f32) -> Self {
        self.image_range = Some((min, max));
        self
    }

    /// Sets the colour scale (diverging or sequential).
    pub fn scale(mut self, scale: ColorScale) -> Self {
        self.scale = scale;
        self
    }

    /// Sets a fixed limit for the colour scale (see [`HeatmapOptions::limit`]).
    pub fn limit(mut self, limit: f32) -> Self {
        self.limit = Some(limit);
        self
    }
}

const PAD: u32 = 12;
const FIG_TITLE_PX: u32 = 20;
const BAR_H: u32 = 14;
const TICK_PX: u32 = 12;
const MIN_WIDTH: u64 = 360;

/// Renders panels side by side (wrapping after `cols`), with heatmaps on a blue-white-red map
/// centred on 0 whose symmetric range is shared by all panels, and a shared colour bar below.
pub fn render_heatmap_panels(
    panels: &[HeatmapPanel<'_>],
    opts: &HeatmapOptions,
) -> Result<RgbImage, VizError> {
    let n = panels.len();
    if n == 0 {
        return Err(VizError::Empty(
            "heatmap figure needs at least one panel".into(),
        ));
    }
    for (i, p) in panels.iter().enumerate() {
        if p.image.is_none() && p.rgb.is_none() && p.heatmap.is_none() {
            return Err(VizError::Empty(format!(
                "panel {i} ({:?}) has neither an image nor a heatmap",
                p.title
            )));
        }
        if let Some(img) = &p.image {
            check_image(img, &format!("image of panel {i}"))?;
        }
        if let Some(rgb) = &p.rgb {
            if rgb.len_of(ndarray::Axis(0)) != 3 {
                return Err(VizError::SizeMismatch {
                    what: format!("colour image of panel {i} ({:?})", p.title),
                    expected: "[3, h, w] (red, green, blue)".into(),
                    found: format!("{:?}", rgb.shape()),
                });
            }
            check_image(
                &rgb.index_axis(ndarray::Axis(0), 0),
                &format!("colour image of panel {i}"),
            )?;
            let rgb_hw = (rgb.shape()[1], rgb.shape()[2]);
            for (what, other) in [("image", p.image.as_ref()), ("heatmap", p.heatmap.as_ref())] {
                if let Some(o) = other {
                    if o.dim() != rgb_hw {
                        return Err(VizError::SizeMismatch {
                            what: format!("{what} of panel {i} ({:?})", p.title),
                            expected: format!("{rgb_hw:?} (the colour image's height and width)"),
                            found: format!("{:?}", o.shape()),
                        });
                    }
                }
            }
        }
        if let Some(h) = &p.heatmap {
            check_image(h, &format!("heatmap of panel {i}"))?;
        }
        if let (Some(img), Some(h)) = (&p.image, &p.heatmap) {
            if img.dim() != h.dim() {
                return Err(VizError::SizeMismatch {
                    what: format!("heatmap of panel {i} ({:?})", p.title),
                    expected: format!("{:?} (the image's shape)", img.shape()),
                    found: format!("{:?}", h.shape()),
                });
            }
        }
    }
    if opts.panel_px == 0 || opts.title_px == 0 {
        return Err(VizError::InvalidOption(
            "panel_px and title_px must be positive".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.overlay_alpha) {
        return Err(VizError::InvalidOption(format!(
            "overlay_alpha {} is not in [0, 1]",
            opts.overlay_alpha
        )));
    }
    let (lo, hi) = match opts.image_range {
        Some(r) => {
            check_range(r)?;
            r
        }
        None => auto_range(
            panels
                .iter()
                .filter_map(|p| p.image.as_ref())
                .flat_map(|a| a.iter())
                .chain(
                    panels
                        .iter()
                        .filter_map(|p| p.rgb.as_ref())
                        .flat_map(|a| a.iter()),
                ),
        ),
    };
    if let Some(l) = opts.limit {
        if !(l.is_finite() && l > 0.0) {
            return Err(VizError::InvalidOption(format!(
                "colour limit {l} must be finite and positive"
            )));
        }
    }
    let heat_values = || {
        panels
            .iter()
            .filter_map(|p| p.heatmap.as_ref())
            .flat_map(|a| a.iter())
    };
    let cmap = match (opts.scale, opts.limit) {
        (ColorScale::Diverging, Some(l)) => Scale::Diverging(DivergingColormap::new(l)),
        (ColorScale::Diverging, None) => {
            Scale::Diverging(DivergingColormap::symmetric_for(heat_values()))
        }
        (ColorScale::Sequential, Some(l)) => Scale::Sequential(SequentialColormap::new(0.0, l)),
        (ColorScale::Sequential, None) => {
            Scale::Sequential(SequentialColormap::spanning(heat_values()))
        }
    };
    let (rows, cols) = grid_shape(n, None, Some(opts.cols.unwrap_or(n)), n)?;
    let has_heat = panels.iter().any(|p| p.heatmap.is_some());
    let show_bar = opts.colorbar && has_heat;

    let cell = opts.panel_px as u64;
    let pad = PAD as u64;
    let title_band = if panels.iter().any(|p| !p.title.is_empty()) {
        opts.title_px as u64 + 10
    } else {
        0
    };
    let fig_title_band = if opts.title.is_some() {
        FIG_TITLE_PX as u64 + 14
    } else {
        0
    };
    let label_band = if opts.colorbar_label.is_some() { 22 } else { 0 };
    let bar_band = if show_bar {
        BAR_H as u64 + 8 + TICK_PX as u64 + 8 + label_band + pad
    } else {
        0
    };
    let grid_w = cols as u64 * (cell + pad) + pad;
    let width = grid_w.max(MIN_WIDTH);
    let x_off = (width - grid_w) / 2;
    let grid_h = rows as u64 * (title_band + cell + pad) + pad;
    let height = fig_title_band + grid_h + bar_band;

    render((width, height), |area| {
        if let Some(t) = &opts.title {
            draw_fitted_text(
                area,
                t,
                ((width / 2) as i32, (pad + FIG_TITLE_PX as u64 / 2) as i32),
                FIG_TITLE_PX as f64,
                width.saturating_sub(2 * pad) as u32,
            )?;
        }
        for (i, p) in panels.iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let x0 = x_off + pad + c as u64 * (cell + pad);
            let y0 = fig_title_band + pad + r as u64 * (title_band + cell + pad);
            if !p.title.is_empty() {
                draw_fitted_text(
                    area,
                    &p.title,
                    ((x0 + cell / 2) as i32, (y0 + title_band / 2) as i32),
                    opts.title_px as f64,
                    opts.panel_px + PAD / 2,
                )?;
            }
            let (ir, ic) = match (&p.rgb, p.image.as_ref().or(p.heatmap.as_ref())) {
                (Some(rgb), _) => (rgb.shape()[1], rgb.shape()[2]),
                (None, Some(a)) => a.dim(),
                (None, None) => unreachable!("checked above"),
            };
            let (w, h) = fit(ir, ic, opts.panel_px, opts.panel_px);
            let x = x0 + (cell - w as u64) / 2;
            let y = y0 + title_band + (cell - h as u64) / 2;
            let background = |rr: usize, cc: usize| -> Option<Rgb> {
                match (&p.rgb, &p.image) {
                    (Some(rgb), _) => {
                        Some([0, 1, 2].map(|k| gray_color(rgb[[k, rr, cc]], lo, hi)[0]))
                    }
                    (None, Some(img)) => Some(gray_color(img[[rr, cc]], lo, hi)),
                    (None, None) => None,
                }
            };
            let buf = rasterize(ir, ic, (w, h), |rr, cc| {
                match (background(rr, cc), &p.heatmap) {
                    // Over a colour photo the heatmap's opacity grows with |value|.
                    (Some(b), Some(heat)) if p.rgb.is_some() => {
                        let v = heat[[rr, cc]];
                        blend(b, cmap.color(v), opts.overlay_alpha * cmap.strength(v))
                    }
                    (Some(b), Some(heat)) => {
                        blend(b, cmap.color(heat[[rr, cc]]), opts.overlay_alpha)
                    }
                    (Some(b), None) => b,
                    (None, Some(heat)) => cmap.color(heat[[rr, cc]]),
                    (None, None) => [255, 255, 255],
                }
            });
            blit(area, (x as i32, y as i32), (w, h), buf)?;
            frame(area, (x as i32, y as i32), (w, h))?;
        }
        if show_bar {
            let bar_w = ((width as f64 * 0.6) as u64).clamp(200, width - 2 * pad) as u32;
            let bx = ((width - bar_w as u64) / 2) as i32;
            let by = (fig_title_band + grid_h + 4) as i32;
            draw_colorbar(area, (bx, by), bar_w, cmap, opts.colorbar_label.as_deref())?;
        }
        Ok(())
    })
}

/// Draws a horizontal colour bar of `cmap` over its range with ticks and a label.
fn draw_colorbar(
    area: &crate::render::Area<'_>,
    (x, y): (i32, i32),
    w: u32,
    cmap: Scale,
    label: Option<&str>,
) -> Result<(), VizError> {
    let (lo, hi) = cmap.range();
    let mut buf = Vec::with_capacity(3 * w as usize * BAR_H as usize);
    for _ in 0..BAR_H {
        for i in 0..w {
            let t = if w > 1 {
                i as f32 / (w - 1) as f32
            } else {
                0.5
            };
            buf.extend_from_slice(&cmap.color(lo + t * (hi - lo)));
        }
    }
    blit(area, (x, y), (w, BAR_H), buf)?;
    frame(area, (x, y), (w, BAR_H))?;
    let n_ticks: i32 = if w >= 300 { 5 } else { 3 };
    let tick_color = RGBColor(80, 80, 80);
    for k in 0..n_ticks {
        let t = k as f64 / (n_ticks - 1) as f64;
        let tx = x + (t * (w - 1) as f64).round() as i32;
        let ty = y + BAR_H as i32;
        area.draw(&PathElement::new(vec![(tx, ty), (tx, ty + 4)], tick_color))?;
        let v = lo as f64 + t * (hi as f64 - lo as f64);
        crate::text::draw_text_centered(
            area,
            &format_tick(v),
            (tx, ty + 6 + TICK_PX as i32 / 2 + 2),
            TICK_PX as f32,
            BLACK,
        )?;
    }
    if let Some(label) = label {
        draw_fitted_text(
            area,
            label,
            (
                x + w as i32 / 2,
                y + BAR_H as i32 + 8 + TICK_PX as i32 + 8 + 9,
            ),
            15.0,
            w,
        )?;
    }
    Ok(())
}

/// Writes [`render_heatmap_panels`]'s figure to a PNG file (parent folders are created).
///
/// ```no_run
/// use ndarray::Array2;
/// use xai_viz::{heatmap_panels, HeatmapOptions, HeatmapPanel};
///
/// let digit = Array2::<f32>::zeros((28, 28));
/// let shap: Vec<Array2<f32>> = vec![Array2::zeros((28, 28)); 10];
/// let mut panels = vec![HeatmapPanel::image("digit", digit.view())];
/// for (c, s) in shap.iter().enumerate() {
///     panels.push(HeatmapPanel::overlay(format!("class {c}"), digit.view(), s.view()));
/// }
/// heatmap_panels("target/shap.png", &panels, &HeatmapOptions::default().colorbar_label("SHAP value"))?;
/// # Ok::<(), xai_viz::VizError>(())
/// ```
pub fn heatmap_panels(
    path: impl AsRef<Path>,
    panels: &[HeatmapPanel<'_>],
    opts: &HeatmapOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_heatmap_panels(panels, opts)?.save_png(path)
}

/// An input image `[c, h, w]` as a figure background: in colour for 3 channels (red, green,
/// blue), otherwise grayscale (the channels' mean).
#[derive(Debug, Clone)]
pub enum PanelImage {
    /// A grayscale image `[h, w]`.
    Gray(Array2<f32>),
    /// A colour image `[3, h, w]`.
    Rgb(Array3<f32>),
}

impl PanelImage {
    /// The background of `image` (`[c, h, w]`): colour when `c == 3`, else the channels' mean.
    pub fn from_channels(image: ArrayView3<'_, f32>) -> Result<Self, VizError> {
        let (c, h, w) = image.dim();
        if c == 0 || h == 0 || w == 0 {
            return Err(VizError::Empty(format!(
                "the image has shape {:?}, expected [c, h, w] with every size at least 1",
                image.shape()
            )));
        }
        if c == 3 {
            return Ok(PanelImage::Rgb(image.to_owned()));
        }
        Ok(PanelImage::Gray(image.mean_axis(Axis(0)).ok_or_else(
            || VizError::Empty("the image has no channels".into()),
        )?))
    }

    /// `[h, w]`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            PanelImage::Gray(g) => g.dim(),
            PanelImage::Rgb(c) => (c.shape()[1], c.shape()[2]),
        }
    }

    /// A panel showing the image.
    pub fn panel(&self, title: impl Into<String>) -> HeatmapPanel<'_> {
        match self {
            PanelImage::Gray(g) => HeatmapPanel::image(title, g.view()),
            PanelImage::Rgb(c) => HeatmapPanel::rgb(title, c.view()),
        }
    }

    /// A panel with `heatmap` drawn over the image.
    pub fn overlay<'b>(
        &'b self,
        title: impl Into<String>,
        heatmap: ArrayView2<'b, f32>,
    ) -> HeatmapPanel<'b> {
        match self {
            PanelImage::Gray(g) => HeatmapPanel::overlay(title, g.view(), heatmap),
            PanelImage::Rgb(c) => HeatmapPanel::overlay_rgb(title, c.view(), heatmap),
        }
    }
}

/// The attribution figure of any method: the input image (`[c, h, w]`; colour for 3 channels,
/// as the model saw it after resizing and cropping), then each attribution map `[h, w]` drawn
/// translucently over it on a diverging colour map symmetric around 0, shared by all maps, with
/// a colour bar. `maps` are `(title, map)`; `opts.cols` wraps them into a grid.
pub fn render_attribution_overlay(
    image: ArrayView3<'_, f32>,
    image_title: &str,
    maps: &[(String, ArrayView2<'_, f32>)],
    opts: &HeatmapOptions,
) -> Result<RgbImage, VizError> {
    let background = PanelImage::from_channels(image)?;
    let mut panels = vec![background.panel(image_title)];
    for (title, map) in maps {
        if map.dim() != background.dim() {
            return Err(VizError::SizeMismatch {
                what: format!("attribution map {title:?}"),
                expected: format!("{:?} (the image's height and width)", background.dim()),
                found: format!("{:?}", map.shape()),
            });
        }
        panels.push(background.overlay(title.clone(), map.view()));
    }
    render_heatmap_panels(&panels, opts)
}

/// Writes [`render_attribution_overlay`]'s figure to a PNG file (parent folders are created).
pub fn attribution_overlay(
    path: impl AsRef<Path>,
    image: ArrayView3<'_, f32>,
    image_title: &str,
    maps: &[(String, ArrayView2<'_, f32>)],
    opts: &HeatmapOptions,
) -> Result<(), VizError> {
    check_png_path(path.as_ref())?;
    render_attribution_overlay(image, image_title, maps, opts)?.save_png(path)
}
