//! Text drawn with the embedded font through `ab_glyph` directly.
//!
//! plotters' own `ab_glyph` text path drops each glyph's left side bearing, which at small
//! sizes glues letters together ("cl" reads as "d"); titles, tick labels and colour bar labels
//! are therefore laid out here. (Axis labels inside bar charts still go through plotters.)

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use plotters::prelude::*;

use crate::error::VizError;
use crate::render::Area;

pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();

fn font() -> Result<&'static FontRef<'static>, VizError> {
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or(VizError::Font)
}

/// Width and height in pixels of `text` at font size `px` (the font's ascent-to-descent height,
/// as plotters uses it).
pub(crate) fn text_size(text: &str, px: f32) -> Result<(f32, f32), VizError> {
    let f = font()?.as_scaled(PxScale::from(px));
    let mut w = 0.0;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    Ok((w, f.ascent() - f.descent()))
}

/// Draws `text` centred at `(cx, cy)` in `color` at size `px`, anti-aliased.
pub(crate) fn draw_text_centered(
    area: &Area<'_>,
    text: &str,
    center: (i32, i32),
    px: f32,
    color: RGBColor,
) -> Result<(), VizError> {
    draw_text(area, text, center, px, color, false)
}

/// Draws `text` centred at `(cx, cy)`; `vertical` turns it 90° counter-clockwise (it reads
/// bottom to top, as a y axis label).
pub(crate) fn draw_text(
    area: &Area<'_>,
    text: &str,
    (cx, cy): (i32, i32),
    px: f32,
    color: RGBColor,
    vertical: bool,
) -> Result<(), VizError> {
    let (w, h) = text_size(text, px)?;
    let font = font()?;
    let f = font.as_scaled(PxScale::from(px));
    // Laid out around (0, 0), then shifted (or turned) to the centre.
    let x0 = -w / 2.0;
    let baseline = -h / 2.0 + f.ascent();
    let mut caret = x0;
    let mut prev: Option<GlyphId> = None;
    let mut result = Ok(());
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            caret += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), point(caret, baseline));
        caret += f.h_advance(id);
        prev = Some(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                let (gx, gy) = (b.min.x as i32 + x as i32, b.min.y as i32 + y as i32);
                let p = if vertical {
                    (cx + gy, cy - gx)
                } else {
                    (cx + gx, cy + gy)
                };
                let c = RGBAColor(color.0, color.1, color.2, coverage.min(1.0) as f64);
                if let Err(e) = area.draw_pixel(p, &c) {
                    result = Err(VizError::from(e));
                }
            });
        }
    }
    result
}

/// Draws `text` centred at `(x, y)`, shrinking the font from `size` (down to 8 px) and then
/// shortening the text with an ellipsis so that it fits in `max_width` pixels.
pub(crate) fn draw_fitted_text(
    area: &Area<'_>,
    text: &str,
    center: (i32, i32),
    size: f64,
    max_width: u32,
) -> Result<(), VizError> {
    draw_fitted(area, text, center, size, max_width, false)
}

/// [`draw_fitted_text`], optionally turned 90° counter-clockwise (`max_width` is then the
/// available height).
pub(crate) fn draw_fitted(
    area: &Area<'_>,
    text: &str,
    center: (i32, i32),
    size: f64,
    max_width: u32,
    vertical: bool,
) -> Result<(), VizError> {
    if text.is_empty() {
        return Ok(());
    }
    let max_w = max_width as f32;
    let mut px = size as f32;
    while text_size(text, px)?.0 > max_w && px > 8.0 {
        px = (px - 1.0).max(8.0);
    }
    let mut shown = text.to_string();
    if text_size(&shown, px)?.0 > max_w {
        let chars: Vec<char> = text.chars().collect();
        let mut keep = chars.len();
        while keep > 0 {
            keep -= 1;
            shown = chars[..keep].iter().collect::<String>() + "…";
            if text_size(&shown, px)?.0 <= max_w {
                break;
            }
        }
    }
    draw_text(area, &shown, center, px, BLACK, vertical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_grow_with_text_and_font() {
        let (w1, h1) = text_size("class", 14.0).unwrap();
        let (w2, _) = text_size("class 0", 14.0).unwrap();
        let (w3, h3) = text_size("class", 28.0).unwrap();
        assert!(
            w1 > 20.0 && w2 > w1 && (w3 / w1 - 2.0).abs() < 0.05,
            "{w1} {w2} {w3}"
        );
        assert!(h1 > 10.0 && h3 > h1);
        assert_eq!(text_size("", 14.0).unwrap().0, 0.0);
    }
}
