//! Shared machinery: the embedded font, the in-memory RGB image, PNG output, text and raster
//! helpers.

use std::path::Path;
use std::sync::OnceLock;

use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::colormap::Rgb;
use crate::error::VizError;

/// The font family name every figure uses; registered from the embedded DejaVu Sans.
pub const FONT_FAMILY: &str = "sans-serif";

/// The largest width or height, in pixels, of a figure.
pub const MAX_FIGURE_SIDE: u32 = 16_384;

static REGISTERED: OnceLock<bool> = OnceLock::new();

/// Registers the embedded DejaVu Sans as `"sans-serif"` with plotters (once per process).
/// Every figure function calls it; call it yourself only to draw with plotters directly.
pub fn ensure_font() -> Result<(), VizError> {
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, crate::text::FONT_BYTES)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(VizError::Font)
    }
}

/// An RGB8 image in row-major order (`data.len() == 3 * width * height`): what every
/// `render_*` function returns and every `save_*`-style function writes as PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels, 3 bytes each, row by row.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// `self` with `below` under it, both centred on a white canvas as wide as the wider one.
    pub fn stack_below(&self, below: &RgbImage) -> RgbImage {
        let width = self.width.max(below.width);
        let height = self.height + below.height;
        let mut data = vec![255u8; width as usize * height as usize * 3];
        for (img, y0) in [(self, 0u32), (below, self.height)] {
            let x0 = (width - img.width) / 2;
            for y in 0..img.height {
                let src = (y * img.width * 3) as usize;
                let dst = (((y0 + y) * width + x0) * 3) as usize;
                let len = (img.width * 3) as usize;
                data[dst..dst + len].copy_from_slice(&img.data[src..src + len]);
            }
        }
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// The colour at `(x, y)`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = 3 * (y as usize * self.width as usize + x as usize);
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// The number of distinct colours.
    pub fn distinct_colors(&self) -> usize {
        let mut set = std::collections::HashSet::new();
        for p in self.data.chunks_exact(3) {
            set.insert([p[0], p[1], p[2]]);
        }
        set.len()
    }

    /// Writes the image as a PNG file, creating the parent folder if needed.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), VizError> {
        let path = path.as_ref();
        check_png_path(path)?;
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| VizError::Write {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
        }
        let size = (self.width, self.height);
        let mut backend = BitMapBackend::new(path, size);
        backend
            .blit_bitmap((0, 0), size, &self.data)
            .map_err(|e| write_err(path, e))?;
        backend.present().map_err(|e| write_err(path, e))?;
        Ok(())
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> VizError {
    VizError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn check_png_path(path: &Path) -> Result<(), VizError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => Ok(()),
        _ => Err(VizError::NotPng(path.to_path_buf())),
    }
}

/// The drawing area every figure draws on.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Renders a figure of `size` pixels on a white background.
pub(crate) fn render(
    size: (u64, u64),
    draw: impl FnOnce(&Area<'_>) -> Result<(), VizError>,
) -> Result<RgbImage, VizError> {
    let (w, h) = size;
    if w == 0 || h == 0 {
        return Err(VizError::InvalidOption(format!(
            "figure size {w}x{h} has a zero side"
        )));
    }
    if w > MAX_FIGURE_SIDE as u64 || h > MAX_FIGURE_SIDE as u64 {
        return Err(VizError::TooLarge {
            width: w,
            height: h,
            max: MAX_FIGURE_SIDE,
        });
    }
    ensure_font()?;
    let (w, h) = (w as u32, h as u32);
    let mut data = vec![255u8; 3 * w as usize * h as usize];
    {
        let root = BitMapBackend::with_buffer(&mut data, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// Scales a `rows x cols` image to fit in a `max_w x max_h` box, keeping its aspect ratio.
pub(crate) fn fit(rows: usize, cols: usize, max_w: u32, max_h: u32) -> (u32, u32) {
    let s = (max_w as f64 / cols as f64).min(max_h as f64 / rows as f64);
    let w = ((cols as f64 * s).round() as u32).clamp(1, max_w);
    let h = ((rows as f64 * s).round() as u32).clamp(1, max_h);
    (w, h)
}

/// Rasterises an image to `w x h` pixels by nearest-neighbour sampling of `color(row, col)`.
pub(crate) fn rasterize(
    rows: usize,
    cols: usize,
    (w, h): (u32, u32),
    color: impl Fn(usize, usize) -> Rgb,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(3 * w as usize * h as usize);
    for y in 0..h as usize {
        let r = (y * rows / h as usize).min(rows - 1);
        for x in 0..w as usize {
            let c = (x * cols / w as usize).min(cols - 1);
            buf.extend_from_slice(&color(r, c));
        }
    }
    buf
}

/// Blits an RGB buffer of `w x h` at `(x, y)`.
pub(crate) fn blit(
    area: &Area<'_>,
    (x, y): (i32, i32),
    (w, h): (u32, u32),
    buf: Vec<u8>,
) -> Result<(), VizError> {
    let el = BitMapElement::with_owned_buffer((x, y), (w, h), buf)
        .ok_or_else(|| VizError::Drawing("bitmap buffer of the wrong size".into()))?;
    area.draw(&el)?;
    Ok(())
}

/// Draws a 1-pixel frame around `w x h` at `(x, y)`.
pub(crate) fn frame(
    area: &Area<'_>,
    (x, y): (i32, i32),
    (w, h): (u32, u32),
) -> Result<(), VizError> {
    area.draw(&Rectangle::new(
        [(x - 1, y - 1), (x + w as i32, y + h as i32)],
        RGBColor(160, 160, 160).stroke_width(1),
    ))?;
    Ok(())
}

/// Checks that an image is non-empty.
pub(crate) fn check_image(img: &ArrayView2<'_, f32>, what: &str) -> Result<(), VizError> {
    if img.is_empty() {
        return Err(VizError::Empty(format!(
            "{what} has shape {:?}, expected at least 1x1",
            img.shape()
        )));
    }
    Ok(())
}

/// Validates a gray value range.
pub(crate) fn check_range((min, max): (f32, f32)) -> Result<(), VizError> {
    if min.is_finite() && max.is_finite() && min < max {
        Ok(())
    } else {
        Err(VizError::InvalidRange { min, max })
    }
}

/// The finite min and max over all images, widened when they coincide; `(0, 1)` if none.
pub(crate) fn auto_range<'a>(values: impl IntoIterator<Item = &'a f32>) -> (f32, f32) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A short label for a tick value.
pub(crate) fn format_tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else {
        let decimals = if a >= 100.0 {
            0
        } else if a >= 10.0 {
            1
        } else if a >= 1.0 {
            2
        } else {
            // Three significant digits.
            (2 - a.log10().floor() as i32).max(0) as usize
        };
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// Validates `(rows, cols)` for `n` items: derives a missing side; errors if too small.
pub(crate) fn grid_shape(
    n: usize,
    rows: Option<usize>,
    cols: Option<usize>,
    default_cols: usize,
) -> Result<(usize, usize), VizError> {
    let (r, c) = match (rows, cols) {
        (Some(0), _) | (_, Some(0)) => {
            return Err(VizError::InvalidOption(
                "rows and columns must be positive".into(),
            ))
        }
        (Some(r), Some(c)) => (r, c),
        (Some(r), None) => (r, n.div_ceil(r)),
        (None, Some(c)) => (n.div_ceil(c), c),
        (None, None) => {
            let c = n.min(default_cols.max(1));
            (n.div_ceil(c), c)
        }
    };
    match r.checked_mul(c) {
        Some(rc) if rc >= n => Ok((r, c)),
        _ => Err(VizError::InvalidOption(format!(
            "a {r}x{c} grid cannot hold {n} items"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(0.0123), "0.0123");
        assert_eq!(format_tick(-0.5), "-0.5");
        assert_eq!(format_tick(2.0), "2");
        assert_eq!(format_tick(12.25), "12.2");
        assert_eq!(format_tick(0.00012), "1.2e-4");
    }

    #[test]
    fn grids() {
        assert_eq!(grid_shape(10, None, None, 5).unwrap(), (2, 5));
        assert_eq!(grid_shape(3, None, None, 5).unwrap(), (1, 3));
        assert_eq!(grid_shape(10, Some(3), None, 5).unwrap(), (3, 4));
        assert!(grid_shape(10, Some(2), Some(4), 5).is_err());
        assert!(grid_shape(1, Some(0), None, 5).is_err());
    }

    #[test]
    fn fitting() {
        assert_eq!(fit(28, 28, 100, 80), (80, 80));
        assert_eq!(fit(10, 20, 100, 100), (100, 50));
        assert_eq!(auto_range(&[1.0, 1.0]), (0.5, 1.5));
        assert_eq!(auto_range(&[f32::NAN]), (0.0, 1.0));
    }

    #[test]
    fn rejects_non_png_and_huge() {
        let img = RgbImage {
            width: 1,
            height: 1,
            data: vec![0; 3],
        };
        assert!(matches!(img.save_png("x.jpg"), Err(VizError::NotPng(_))));
        assert!(matches!(
            render((20_000, 10), |_| Ok(())),
            Err(VizError::TooLarge { .. })
        ));
        assert!(render((0, 10), |_| Ok(())).is_err());
    }
}
