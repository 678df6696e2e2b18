//! Colour maps: the diverging blue-white-red map for signed attributions, the sequential
//! `viridis` map for values that are not signed (importances, probabilities) and the gray map
//! for images.

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Matplotlib's `bwr` diverging map: `t = -1` is blue `(0, 0, 255)`, `t = 0` is white and
/// `t = 1` is red `(255, 0, 0)`, linear in between. `t` is clamped to `[-1, 1]`; NaN is white.
///
/// ```
/// use xai_viz::bwr;
/// assert_eq!(bwr(-1.0), [0, 0, 255]);
/// assert_eq!(bwr(0.0), [255, 255, 255]);
/// assert_eq!(bwr(1.0), [255, 0, 0]);
/// assert_eq!(bwr(0.5), [255, 128, 128]);
/// ```
pub fn bwr(t: f32) -> Rgb {
    if t.is_nan() {
        return [255, 255, 255];
    }
    let t = t.clamp(-1.0, 1.0);
    let fade = |x: f32| (255.0 * (1.0 - x)).round() as u8;
    if t < 0.0 {
        let v = fade(-t);
        [v, v, 255]
    } else {
        let v = fade(t);
        [255, v, v]
    }
}

/// A diverging colour map centred on 0 with a symmetric range `[-limit, limit]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DivergingColormap {
    /// Values at or beyond `±limit` get the saturated end colours. Must be finite and positive.
    pub limit: f32,
}

impl DivergingColormap {
    /// A map for `[-limit, limit]`; a limit that is not finite and positive becomes 1.
    pub fn new(limit: f32) -> Self {
        let limit = if limit.is_finite() && limit > 0.0 {
            limit
        } else {
            1.0
        };
        DivergingColormap { limit }
    }

    /// A map whose limit is the largest absolute finite value in `values` (1 if there is none
    /// or all are zero), so that 0 is white and the range is symmetric.
    pub fn symmetric_for<'a>(values: impl IntoIterator<Item = &'a f32>) -> Self {
        DivergingColormap::new(symmetric_limit(values))
    }

    /// The colour of `value` (NaN is white).
    pub fn color(&self, value: f32) -> Rgb {
        bwr(value / self.limit)
    }
}

/// The colour of `value` on the blue-white-red map with range `[-limit, limit]`.
/// A `limit` that is not finite and positive is treated as 1.
pub fn diverging_color(value: f32, limit: f32) -> Rgb {
    DivergingColormap::new(limit).color(value)
}

/// The largest absolute finite value in `values`, or 1 if there is none or it is 0.
pub fn symmetric_limit<'a>(values: impl IntoIterator<Item = &'a f32>) -> f32 {
    let m = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Control points of matplotlib's `viridis` at `t = 0, 1/8, ..., 1` (sRGB), interpolated linearly
/// by [`viridis`] (the largest difference to matplotlib's 256-entry table is a few levels).
const VIRIDIS: [Rgb; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [40, 174, 128],
    [94, 201, 98],
    [173, 220, 48],
    [253, 231, 37],
];

/// Matplotlib's `viridis` sequential map: `t = 0` is dark violet, `t = 1` is yellow, perceptually
/// uniform in between. `t` is clamped to `[0, 1]`; NaN takes the colour of 0.
///
/// ```
/// use xai_viz::viridis;
/// assert_eq!(viridis(0.0), [68, 1, 84]);
/// assert_eq!(viridis(1.0), [253, 231, 37]);
/// assert_eq!(viridis(0.5), [33, 145, 140]);
/// ```
pub fn viridis(t: f32) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |a: u8, b: u8| (a as f32 + f * (b as f32 - a as f32)).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// A sequential colour map over `[min, max]` (viridis): for values that are not signed, such as
/// L2X's selection importances, where a diverging map centred on 0 would mislead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialColormap {
    /// Value drawn with the first colour (and everything below it).
    pub min: f32,
    /// Value drawn with the last colour (and everything above it).
    pub max: f32,
}

impl SequentialColormap {
    /// A map for `[min, max]`; a range that is not finite and increasing becomes `[0, 1]`
    /// (or `[min, min + 1]` when only the width is zero).
    pub fn new(min: f32, max: f32) -> Self {
        match (min.is_finite(), max.is_finite()) {
            (true, true) if max > min => SequentialColormap { min, max },
            (true, true) => SequentialColormap {
                min,
                max: min + 1.0,
            },
            _ => SequentialColormap { min: 0.0, max: 1.0 },
        }
    }

    /// A map from the smallest to the largest finite value of `values` (`[0, 1]` if none).
    pub fn spanning<'a>(values: impl IntoIterator<Item = &'a f32>) -> Self {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        SequentialColormap::new(lo, hi)
    }

    /// The colour of `value` (NaN takes the colour of `min`).
    pub fn color(&self, value: f32) -> Rgb {
        viridis((value - self.min) / (self.max - self.min))
    }
}

/// Gray level of `value` within `[min, max]`: `min` (and below) is black, `max` (and above) is
/// white. NaN is black. The range is assumed valid (`min < max`).
pub fn gray_color(value: f32, min: f32, max: f32) -> Rgb {
    let t = if value.is_nan() {
        0.0
    } else {
        ((value - min) / (max - min)).clamp(0.0, 1.0)
    };
    let v = (t * 255.0).round() as u8;
    [v, v, v]
}

/// `alpha * top + (1 - alpha) * bottom`, per channel; `alpha` is clamped to `[0, 1]`.
pub fn blend(bottom: Rgb, top: Rgb, alpha: f32) -> Rgb {
    let a = if alpha.is_nan() {
        0.0
    } else {
        alpha.clamp(0.0, 1.0)
    };
    let mix = |b: u8, t: u8| (a * t as f32 + (1.0 - a) * b as f32).round() as u8;
    [
        mix(bottom[0], top[0]),
        mix(bottom[1], top[1]),
        mix(bottom[2], top[2]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_symmetric_and_clamped() {
        assert_eq!(diverging_color(0.0, 2.0), [255, 255, 255]);
        assert_eq!(diverging_color(-2.0, 2.0), [0, 0, 255]);
        assert_eq!(diverging_color(5.0, 2.0), [255, 0, 0]);
        assert_eq!(diverging_color(f32::NAN, 2.0), [255, 255, 255]);
        assert_eq!(diverging_color(1.0, 0.0), [255, 0, 0]); // limit 0 -> 1
        for i in 0..=20 {
            let v = i as f32 / 20.0;
            let (p, n) = (bwr(v), bwr(-v));
            assert_eq!([p[2], p[1], p[0]], n, "mirror at {v}");
        }
    }

    #[test]
    fn sequential_is_monotone_in_lightness_and_clamped() {
        let m = SequentialColormap::new(2.0, 4.0);
        assert_eq!(m.color(2.0), viridis(0.0));
        assert_eq!(m.color(-10.0), viridis(0.0));
        assert_eq!(m.color(9.0), viridis(1.0));
        assert_eq!(m.color(f32::NAN), viridis(0.0));
        let luma = |c: Rgb| 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32;
        for i in 0..40 {
            let (a, b) = (i as f32 / 40.0, (i + 1) as f32 / 40.0);
            assert!(luma(viridis(a)) <= luma(viridis(b)) + 0.5, "{a} -> {b}");
        }
        assert_eq!(SequentialColormap::new(1.0, 1.0).max, 2.0);
        assert_eq!(SequentialColormap::new(f32::NAN, 1.0).min, 0.0);
        let s = SequentialColormap::spanning(&[0.5, f32::NAN, -1.0, 3.0]);
        assert_eq!((s.min, s.max), (-1.0, 3.0));
    }

    #[test]
    fn limits_gray_and_blend() {
        assert_eq!(symmetric_limit(&[0.5, -2.0, f32::NAN, f32::INFINITY]), 2.0);
        assert_eq!(symmetric_limit(&[0.0]), 1.0);
        assert_eq!(symmetric_limit(&[]), 1.0);
        assert_eq!(DivergingColormap::symmetric_for(&[-0.25, 0.1]).limit, 0.25);
        assert_eq!(gray_color(0.0, 0.0, 1.0), [0, 0, 0]);
        assert_eq!(gray_color(1.0, 0.0, 1.0), [255; 3]);
        assert_eq!(gray_color(0.0, -0.5, 0.5), [128; 3]);
        assert_eq!(gray_color(f32::NAN, 0.0, 1.0), [0; 3]);
        assert_eq!(blend([0; 3], [255, 0, 0], 0.5), [128, 0, 0]);
        assert_eq!(blend([10; 3], [200; 3], 0.0), [10; 3]);
        assert_eq!(blend([10; 3], [200; 3], 7.0), [200; 3]);
    }
}
