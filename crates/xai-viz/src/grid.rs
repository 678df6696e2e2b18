//! A titled grid of small grayscale images (as in alibi's figures).

use std::path::Path;

use ndarray::{ArrayBase, Data, Ix2};

use crate::colormap::gray_color;
use crate::error::VizError;
use crate::render::{
    auto_range, blit, check_image, check_range, fit, frame, grid_shape, rasterize, render, RgbImage,
};
use crate::text::draw_fitted_text;

/// Options of [`image_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGridOptions {
    /// Number of rows; derived from `cols` (or the default of up to 10 columns) when `None`.
    pub rows: Option<usize>,
    /// Number of columns; derived from `rows` when `None`.
    pub cols: Option<usize>,
    /// Figure title above the grid.
    pub title: Option<String>,
    /// Values mapped to black and white; `None` uses the min and max over all images.
    pub value_range: Option<(f32, f32)>,
    /// Side of the square box each image is scaled into (nearest neighbour, aspect kept).
    pub cell_px: u32,
    /// Font size of the cell titles, in pixels.
    pub title_px: u32,
}

impl Default for ImageGridOptions {
    fn default() -> Self {
        ImageGridOptions {
            rows: None,
            cols: None,
            title: None,
            value_range: None,
            cell_px: 112,
            title_px: 14,
        }
    }
}

impl ImageGridOptions {
    /// Sets the grid shape.
    pub fn grid(mut self, rows: usize, cols: usize) -> Self {
        self.rows = Some(rows);
        self.cols = Some(cols);
        self
    }

    /// Sets the figure title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the gray scale's value range.
    pub fn value_range(mut self, min: f32, max: f32) -> Self {
        self.value_range = Some((min, max));
        self
    }

    /// Sets the cell size.
    pub fn cell_px(mut self, px: u32) -> Self {
        self.cell_px = px;
        self
    }
}

const PAD: u32 = 10;
const FIG_TITLE_PX: u32 = 20;

/// Renders a grid of grayscale images, each with its own title (e.g. `"label 4, pred 4"`),
/// filled row by row. `titles` must be empty (no cell titles) or have one entry per image.
pub fn render_image_grid<S: Data<Elem = f32>, T: AsRef<str>>(
    images: &[ArrayBase<S, Ix2>],
    titles: &[T],
    opts: &ImageGridOptions,
) -> Result<RgbImage, VizError> {
    let n = images.len();
    if n == 0 {
        return Err(VizError::Empty(
            "image grid needs at least one image".into(),
        ));
    }
    if !titles.is_empty() && titles.len() != n {
        return Err(VizError::SizeMismatch {
            what: "cell titles".into(),
            expected: format!("{n} (one per image) or none"),
            found: titles.len().to_string(),
        });
    }
    for (i, img) in images.iter().enumerate() {
        check_image(&img.view(), &format!("image {i}"))?;
    }
    if opts.cell_px == 0 || opts.title_px == 0 {
        return Err(VizError::InvalidOption(
            "cell_px and title_px must be positive".into(),
        ));
    }
    let (lo, hi) = match opts.value_range {
        Some(r) => {
            check_range(r)?;
            r
        }
        None => auto_range(images.iter().flat_map(|a| a.iter())),
    };
    let (rows, cols) = grid_shape(n, opts.rows, opts.cols, 10)?;

    let cell = opts.cell_px as u64;
    let title_band = if titles.is_empty() {
        0
    } else {
        opts.title_px as u64 + 8
    };
    let fig_title_band = if opts.title.is_some() {
        FIG_TITLE_PX as u64 + 14
    } else {
        0
    };
    let width = cols as u64 * (cell + PAD as u64) + PAD as u64;
    let height = fig_title_band + rows as u64 * (title_band + cell + PAD as u64) + PAD as u64;

    render((width, height), |area| {
        if let Some(t) = &opts.title {
            draw_fitted_text(
                area,
                t,
                (
                    (width / 2) as i32,
                    (PAD as u64 + FIG_TITLE_PX as u64 / 2) as i32,
                ),
                FIG_TITLE_PX as f64,
                width.saturating_sub(2 * PAD as u64) as u32,
            )?;
        }
        for (i, img) in images.iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let x0 = PAD as u64 + c as u64 * (cell + PAD as u64);
            let y0 = fig_title_band + PAD as u64 + r as u64 * (title_band + cell + PAD as u64);
            if let Some(t) = titles.get(i) {
                draw_fitted_text(
                    area,
                    t.as_ref(),
                    ((x0 + cell / 2) as i32, (y0 + title_band / 2) as i32),
                    opts.title_px as f64,
                    opts.cell_px + PAD / 2,
                )?;
            }
            let (ir, ic) = img.dim();
            let (w, h) = fit(ir, ic, opts.cell_px, opts.cell_px);
            let x = x0 + (cell - w as u64) / 2;
            let y = y0 + title_band + (cell - h as u64) / 2;
            let buf = rasterize(ir, ic, (w, h), |rr, cc| gray_color(img[[rr, cc]], lo, hi));
            blit(area, (x as i32, y as i32), (w, h), buf)?;
            frame(area, (x as i32, y as i32), (w, h))?;
        }
        Ok(())
    })
}

/// Writes [`render_image_grid`]'s figure to a PNG file (parent folders are created).
///
/// ```no_run
/// use ndarray::Array2;
/// use xai_viz::{image_grid, ImageGridOptions};
///
/// let digits: Vec<Array2<f32>> = vec![Array2::zeros((28, 28)); 10];
/// let titles: Vec<String> = (0..10).map(|i| format!("label {i}, pred {i}")).collect();
/// let opts = ImageGridOptions::default().grid(2, 5).title("Test digits").value_range(0.0, 1.0);
/// image_grid("target/grid.png", &digits, &titles, &opts)?;
/// # Ok::<(), xai_viz::VizError>(())
/// ```
pub fn image_grid<S: Data<Elem = f32>, T: AsRef<str>>(
    path: impl AsRef<Path>,
    images: &[ArrayBase<S, Ix2>],
    titles: &[T],
    opts: &ImageGridOptions,
) -> Result<(), VizError> {
    crate::render::check_png_path(path.as_ref())?;
    render_image_grid(images, titles, opts)?.save_png(path)
}
