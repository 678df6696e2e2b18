//! SLIC superpixels (Achanta et al. 2012, "SLIC Superpixels Compared to State-of-the-art
//! Superpixel Methods", TPAMI 34(11)), following scikit-image's `slic` step by step so that
//! dianna's segmentations are reproduced:
//!
//! 1. the image is rescaled to `[0, 1]` (over all channels);
//! 2. RGB images (3 channels) are converted to CIE Lab (D65, 2°) unless `convert2lab` is
//!    `Some(false)`; grayscale images (1 channel, skimage's `channel_axis=None`) and other channel
//!    counts are clustered on their raw values;
//! 3. cluster centres start on skimage's `regular_grid` (e.g. a 14 x 14 grid, 196 centres, for
//!    `n_segments = 200` on a 28 x 28 image);
//! 4. the image is smoothed with a Gaussian of width `sigma` (scipy's `gaussian_filter`, `reflect`
//!    borders, truncated at 4 sigma) when `sigma > 0`;
//! 5. `max_num_iter` rounds of local k-means in (colour / `compactness`, position / `step`) space,
//!    searching a `±2 step` window around each centre (the paper's distance `D`, Eq. 3);
//!    SLIC-zero (`slic_zero`) divides the colour distance by each cluster's largest one;
//! 6. connectivity enforcement (the paper's post-processing): 4-connected components are
//!    relabelled in raster order; components smaller than `min_size_factor * H * W / n_centres`
//!    join the last adjacent labelled component; a breadth-first search stops at
//!    `max_size_factor * H * W / n_centres` pixels (as in skimage, larger components are split).
//!
//! Arithmetic is `f32` like skimage on a `float32` image (dianna passes `float32`).

use ndarray::{Array2, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShapError};

/// The largest Gaussian width SLIC accepts: the smoothing kernel spans `8 sigma + 1` pixels,
/// so a huge `sigma` (e.g. read from a file) would drive a huge allocation and loop; 1024 pixels
/// is far wider than any image this smooths meaningfully.
pub const MAX_SIGMA: f32 = 1024.0;

/// Hyperparameters of [`slic`], with scikit-image's / dianna's defaults. Build with the setters and
/// validate with [`SlicParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlicParams {
    n_segments: usize,
    compactness: f32,
    max_num_iter: usize,
    sigma: f32,
    convert2lab: Option<bool>,
    enforce_connectivity: bool,
    min_size_factor: f32,
    max_size_factor: f32,
    slic_zero: bool,
    start_label: usize,
}

impl Default for SlicParams {
    fn default() -> Self {
        Self {
            n_segments: 100,
            compactness: 10.0,
            max_num_iter: 10,
            sigma: 0.0,
            convert2lab: None,
            enforce_connectivity: true,
            min_size_factor: 0.5,
            max_size_factor: 3.0,
            slic_zero: false,
            start_label: 1,
        }
    }
}

impl SlicParams {
    /// The defaults: `n_segments = 100`, `compactness = 10`, `max_num_iter = 10`, `sigma = 0`,
    /// Lab conversion for 3-channel images, connectivity enforced with size factors 0.5 and 3,
    /// no SLIC-zero, labels starting at 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The (approximate) number of segments; the centres are placed on a regular grid with about
    /// this many points.
    pub fn n_segments(mut self, n_segments: usize) -> Self {
        self.n_segments = n_segments;
        self
    }

    /// Balance of colour against spatial proximity (higher: squarer segments). Must be `> 0`.
    pub fn compactness(mut self, compactness: f32) -> Self {
        self.compactness = compactness;
        self
    }

    /// Number of k-means iterations.
    pub fn max_num_iter(mut self, max_num_iter: usize) -> Self {
        self.max_num_iter = max_num_iter;
        self
    }

    /// Width of the Gaussian pre-smoothing kernel in pixels; 0 means no smoothing.
    pub fn sigma(mut self, sigma: f32) -> Self {
        self.sigma = sigma;
        self
    }

    /// Lab conversion: `None` converts 3-channel images only, `Some(true)` requires 3 channels,
    /// `Some(false)` never converts.
    pub fn convert2lab(mut self, convert2lab: Option<bool>) -> Self {
        self.convert2lab = convert2lab;
        self
    }

    /// Whether small disconnected pieces are merged into neighbours (skimage's default `true`).
    pub fn enforce_connectivity(mut self, enforce_connectivity: bool) -> Self {
        self.enforce_connectivity = enforce_connectivity;
        self
    }

    /// Components smaller than this fraction of the expected segment size are merged.
    pub fn min_size_factor(mut self, min_size_factor: f32) -> Self {
        self.min_size_factor = min_size_factor;
        self
    }

    /// The connected-component search stops at this multiple of the expected segment size.
    pub fn max_size_factor(mut self, max_size_factor: f32) -> Self {
        self.max_size_factor = max_size_factor;
        self
    }

    /// Run SLIC-zero (SLICO), which adapts the colour normalisation per cluster.
    pub fn slic_zero(mut self, slic_zero: bool) -> Self {
        self.slic_zero = slic_zero;
        self
    }

    /// First label of the output: 0 or 1 (skimage's default 1).
    pub fn start_label(mut self, start_label: usize) -> Self {
        self.start_label = start_label;
        self
    }

    /// Validates the parameters.
    pub fn check(&self) -> Result<ValidSlicParams> {
        if self.n_segments == 0 {
            return Err(ShapError::param("n_segments", 0, "at least 1"));
        }
        if !(self.compactness.is_finite() && self.compactness > 0.0) {
            return Err(ShapError::param(
                "compactness",
                self.compactness,
                "a finite number > 0",
            ));
        }
        if !(self.sigma.is_finite() && (0.0..=MAX_SIGMA).contains(&self.sigma)) {
            return Err(ShapError::param(
                "sigma",
                self.sigma,
                "a finite number in [0, MAX_SIGMA = 1024]",
            ));
        }
        if !(self.min_size_factor.is_finite() && self.min_size_factor >= 0.0) {
            return Err(ShapError::param(
                "min_size_factor",
                self.min_size_factor,
                "a finite number >= 0",
            ));
        }
        if !(self.max_size_factor.is_finite() && self.max_size_factor > 0.0) {
            return Err(ShapError::param(
                "max_size_factor",
                self.max_size_factor,
                "a finite number > 0",
            ));
        }
        if self.start_label > 1 {
            return Err(ShapError::param("start_label", self.start_label, "0 or 1"));
        }
        Ok(ValidSlicParams(self.clone()))
    }
}

/// Validated [`SlicParams`]; segment images with [`ValidSlicParams::segment`]. Deserialising
/// runs [`SlicParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SlicParams")]
pub struct ValidSlicParams(SlicParams);

impl TryFrom<SlicParams> for ValidSlicParams {
    type Error = ShapError;
    fn try_from(p: SlicParams) -> Result<Self> {
        p.check()
    }
}

impl ValidSlicParams {
    /// The requested number of segments.
    pub fn n_segments(&self) -> usize {
        self.0.n_segments
    }
    /// Colour/space balance.
    pub fn compactness(&self) -> f32 {
        self.0.compactness
    }
    /// Number of k-means iterations.
    pub fn max_num_iter(&self) -> usize {
        self.0.max_num_iter
    }
    /// Gaussian pre-smoothing width.
    pub fn sigma(&self) -> f32 {
        self.0.sigma
    }
    /// Lab conversion setting.
    pub fn convert2lab(&self) -> Option<bool> {
        self.0.convert2lab
    }
    /// Whether connectivity is enforced.
    pub fn enforce_connectivity(&self) -> bool {
        self.0.enforce_connectivity
    }
    /// Minimum size factor.
    pub fn min_size_factor(&self) -> f32 {
        self.0.min_size_factor
    }
    /// Maximum size factor.
    pub fn max_size_factor(&self) -> f32 {
        self.0.max_size_factor
    }
    /// Whether SLIC-zero is used.
    pub fn slic_zero(&self) -> bool {
        self.0.slic_zero
    }
    /// First label.
    pub fn start_label(&self) -> usize {
        self.0.start_label
    }
    /// The unvalidated parameters (for serialisation in `meta`).
    pub fn params(&self) -> &SlicParams {
        &self.0
    }

    /// Segments an image `[channels, height, width]` (see the module docs).
    pub fn segment(&self, image: ArrayView3<'_, f32>) -> Result<Segmentation> {
        slic(image, self)
    }
}

/// A segmentation: an `[height, width]` label image with labels `start_label ..
/// start_label + n_segments`, every label used.
///
/// Deserialising runs [`Segmentation::new`]'s checks (and requires the stored `n_segments` to
/// be what the labels give).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Segmentation {
    labels: Array2<usize>,
    start_label: usize,
    n_segments: usize,
}

impl Serialize for Segmentation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Segmentation::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Segmentation::deserialize(d)?;
        let checked =
            Segmentation::new(raw.labels, raw.start_label).map_err(serde::de::Error::custom)?;
        if checked.n_segments != raw.n_segments {
            return Err(serde::de::Error::custom(format!(
                "segmentation declares {} segments, its labels have {}",
                raw.n_segments, checked.n_segments
            )));
        }
        Ok(checked)
    }
}

impl Segmentation {
    /// Wraps a label image, checking that its labels are exactly `start_label .. start_label + n`
    /// for some `n >= 1`, each used by at least one pixel.
    pub fn new(labels: Array2<usize>, start_label: usize) -> Result<Self> {
        if labels.is_empty() {
            return Err(ShapError::shape(
                "segmentation",
                labels.shape(),
                "[height, width] with height, width >= 1",
            ));
        }
        let max = labels.iter().copied().max().unwrap_or(start_label);
        if let Some(&bad) = labels.iter().find(|&&l| l < start_label) {
            return Err(ShapError::param(
                "segmentation label",
                bad,
                format!("labels >= start_label = {start_label}"),
            ));
        }
        // Every label must have a pixel, so there are at most as many segments as pixels: a
        // larger label range is refused before anything is allocated for it.
        let n_segments = (max - start_label).saturating_add(1);
        if n_segments > labels.len() {
            return Err(ShapError::param(
                "segmentation label",
                max,
                format!(
                    "labels {start_label}..={max} all in use, but the image has only {} pixels",
                    labels.len()
                ),
            ));
        }
        let mut used = vec![false; n_segments];
        for &l in labels.iter() {
            used[l - start_label] = true;
        }
        if let Some(missing) = used.iter().position(|u| !u) {
            return Err(ShapError::param(
                "segmentation label",
                missing + start_label,
                format!(
                    "labels {start_label}..={max} all in use (contiguous); label {} has no pixel",
                    missing + start_label
                ),
            ));
        }
        Ok(Self {
            labels,
            start_label,
            n_segments,
        })
    }

    /// The `[height, width]` label image.
    pub fn labels(&self) -> &Array2<usize> {
        &self.labels
    }

    /// The first label.
    pub fn start_label(&self) -> usize {
        self.start_label
    }

    /// Number of segments (labels in use).
    pub fn n_segments(&self) -> usize {
        self.n_segments
    }

    /// `(height, width)`.
    pub fn dim(&self) -> (usize, usize) {
        self.labels.dim()
    }

    /// Zero-based segment index of each pixel, row-major (`label - start_label`).
    pub fn segment_indices(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l - self.start_label).collect()
    }

    /// For each segment, the row-major indices of its pixels.
    pub fn pixels_per_segment(&self) -> Vec<Vec<usize>> {
        let mut pixels = vec![Vec::new(); self.n_segments];
        for (p, &l) in self.labels.iter().enumerate() {
            pixels[l - self.start_label].push(p);
        }
        pixels
    }

    /// Number of pixels of each segment.
    pub fn segment_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.n_segments];
        for &l in self.labels.iter() {
            sizes[l - self.start_label] += 1;
        }
        sizes
    }
}

/// Segments `image` (`[channels, height, width]`) with SLIC; see the module docs.
pub fn slic(image: ArrayView3<'_, f32>, params: &ValidSlicParams) -> Result<Segmentation> {
    let (channels, height, width) = image.dim();
    if channels == 0 || height == 0 || width == 0 {
        return Err(ShapError::shape(
            "image",
            image.shape(),
            "[channels, height, width] with every dimension >= 1",
        ));
    }
    if let Some((index, value)) = image.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(xai_core::CoreError::NonFinite {
            what: "image".into(),
            index,
            value: *value,
        }
        .into());
    }
    let convert = match params.convert2lab() {
        Some(true) if channels != 3 => {
            return Err(ShapError::param(
                "convert2lab",
                "true",
                format!("an RGB image (3 channels) for Lab conversion; the image has {channels}"),
            ))
        }
        Some(c) => c,
        None => channels == 3,
    };

    // 1. channel-last copy, rescaled to [0, 1] over all values.
    let n_pixels = height * width;
    let mut img = vec![0f32; n_pixels * channels];
    for c in 0..channels {
        for y in 0..height {
            for x in 0..width {
                img[(y * width + x) * channels + c] = image[[c, y, x]];
            }
        }
    }
    let imin = img.iter().copied().fold(f32::INFINITY, f32::min);
    let imax = img.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in img.iter_mut() {
        *v -= imin;
    }
    if imax != imin {
        let range = imax - imin;
        for v in img.iter_mut() {
            *v /= range;
        }
    }

    // 2. Lab.
    if convert {
        for px in img.chunks_exact_mut(3) {
            let lab = rgb_to_lab([px[0], px[1], px[2]]);
            px.copy_from_slice(&lab);
        }
    }

    // 3. centres on a regular grid (depth 1).
    let (starts, steps) = regular_grid([1, height, width], params.n_segments());
    let mut centres_yx = Vec::new();
    for y in (starts[1]..height).step_by(steps[1]) {
        for x in (starts[2]..width).step_by(steps[2]) {
            centres_yx.push((y as f32, x as f32));
        }
    }
    let n_centres = centres_yx.len();
    let step = steps.iter().copied().max().unwrap_or(1) as f32;

    // 4. Gaussian smoothing (depth axis of size 1 is unchanged by a reflected filter).
    let sigma = params.sigma() as f64;
    if sigma > 0.0 {
        gaussian_filter_hwc(&mut img, height, width, channels, sigma);
    }

    // 5. colour scaled by 1 / compactness, then local k-means.
    let ratio = 1.0f32 / params.compactness();
    for v in img.iter_mut() {
        *v *= ratio;
    }
    let labels = slic_kmeans(
        &img,
        height,
        width,
        channels,
        &centres_yx,
        step,
        params.max_num_iter(),
        params.slic_zero(),
        params.start_label(),
    );

    // 6. connectivity.
    let labels = if params.enforce_connectivity() {
        let segment_size = n_pixels as f64 / n_centres as f64;
        let min_size = (params.min_size_factor() as f64 * segment_size) as usize;
        let max_size = (params.max_size_factor() as f64 * segment_size) as usize;
        enforce_label_connectivity(
            &labels,
            height,
            width,
            min_size,
            max_size,
            params.start_label(),
        )
    } else {
        relabel_sequential(&labels, params.start_label())
    };
    let labels = Array2::from_shape_vec((height, width), labels)
        .map_err(|e| ShapError::shape("segmentation", &[height, width], e.to_string()))?;
    Segmentation::new(labels, params.start_label())
}

/// skimage's `regular_grid`: start and step of a grid of about `n_points` points in `shape`,
/// as cubic as possible; dimensions shorter than the step are "discarded" (step = their length).
pub(crate) fn regular_grid(shape: [usize; 3], n_points: usize) -> ([usize; 3], [usize; 3]) {
    let ndim = 3;
    let mut order: Vec<usize> = (0..ndim).collect();
    order.sort_by_key(|&i| shape[i]); // stable, like Python's sorted
    let sorted: Vec<f64> = order.iter().map(|&i| shape[i] as f64).collect();
    let space_size: f64 = sorted.iter().product();
    if space_size <= n_points as f64 {
        return ([0; 3], [1; 3]);
    }
    let step_size = (space_size / n_points as f64).powf(1.0 / ndim as f64);
    let (starts_sorted, steps_sorted): (Vec<usize>, Vec<usize>) =
        if sorted.iter().any(|&s| s < step_size) {
            let mut step_sizes = vec![step_size; ndim];
            for dim in 0..ndim {
                step_sizes[dim] = sorted[dim];
                let rest: f64 = sorted[dim + 1..].iter().product();
                let new_size = (rest / n_points as f64).powf(1.0 / (ndim - dim - 1) as f64);
                for s in step_sizes.iter_mut().skip(dim + 1) {
                    *s = new_size;
                }
                if !sorted.iter().zip(&step_sizes).any(|(s, sz)| s < sz) {
                    break;
                }
            }
            (
                step_sizes
                    .iter()
                    .map(|s| (s / 2.0).floor() as usize)
                    .collect(),
                step_sizes.iter().map(|&s| round_half_even(s)).collect(),
            )
        } else {
            let start = (step_size as usize) / 2;
            let step = round_half_even(step_size);
            (vec![start; ndim], vec![step; ndim])
        };
    let mut starts = [0; 3];
    let mut steps = [1; 3];
    for (k, &dim) in order.iter().enumerate() {
        starts[dim] = starts_sorted[k];
        steps[dim] = steps_sorted[k].max(1);
    }
    (starts, steps)
}

/// Python's `round` on a float (ties to even), as a step length.
fn round_half_even(v: f64) -> usize {
    let floor = v.floor();
    let diff = v - floor;
    let r = if diff > 0.5 || (diff == 0.5 && (floor as i64) % 2 != 0) {
        floor + 1.0
    } else {
        floor
    };
    r.max(0.0) as usize
}

/// sRGB (`[0, 1]`) to CIE Lab under D65 / 2°, as skimage's `rgb2lab`.
pub(crate) fn rgb_to_lab(rgb: [f32; 3]) -> [f32; 3] {
    const XYZ_FROM_RGB: [[f32; 3]; 3] = [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ];
    const WHITE_D65: [f32; 3] = [0.95047, 1.0, 1.08883];
    let lin = rgb.map(|v| {
        if v > 0.04045 {
            ((v + 0.055) / 1.055).powf(2.4)
        } else {
            v / 12.92
        }
    });
    let mut xyz = [0f32; 3];
    for (i, row) in XYZ_FROM_RGB.iter().enumerate() {
        xyz[i] = row[0] * lin[0] + row[1] * lin[1] + row[2] * lin[2];
    }
    let f = |t: f32| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let fx = f(xyz[0] / WHITE_D65[0]);
    let fy = f(xyz[1] / WHITE_D65[1]);
    let fz = f(xyz[2] / WHITE_D65[2]);
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// scipy's `reflect` boundary (`d c b a | a b c d | d c b a`) for index `i` on length `n`.
fn reflect_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// scipy's `gaussian_filter` (truncate 4, reflect) over the two spatial axes of a channel-last
/// image, channel axis unsmoothed; each axis pass accumulates in `f64` and stores `f32`.
fn gaussian_filter_hwc(img: &mut [f32], height: usize, width: usize, channels: usize, sigma: f64) {
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut kernel: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let mut out = vec![0f32; img.len()];
    // along y
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let mut acc = 0f64;
                for (j, w) in kernel.iter().enumerate() {
                    let yy = reflect_index(y as isize + j as isize - radius, height);
                    acc += w * img[(yy * width + x) * channels + c] as f64;
                }
                out[(y * width + x) * channels + c] = acc as f32;
            }
        }
    }
    // along x
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let mut acc = 0f64;
                for (j, w) in kernel.iter().enumerate() {
                    let xx = reflect_index(x as isize + j as isize - radius, width);
                    acc += w * out[(y * width + xx) * channels + c] as f64;
                }
                img[(y * width + x) * channels + c] = acc as f32;
            }
        }
    }
}

/// The k-means of skimage's `_slic_cython` for a 2D image (channel-last, already scaled by
/// `1 / compactness`). Returns labels `k + start_label`, row-major.
#[allow(clippy::too_many_arguments)]
fn slic_kmeans(
    img: &[f32],
    height: usize,
    width: usize,
    channels: usize,
    centres_yx: &[(f32, f32)],
    step: f32,
    max_num_iter: usize,
    slic_zero: bool,
    start_label: usize,
) -> Vec<isize> {
    let n_segments = centres_yx.len();
    let n_features = 2 + channels;
    // segments: [y, x, colour...], colours start at 0 as in skimage
    let mut segments = vec![0f32; n_segments * n_features];
    for (k, &(y, x)) in centres_yx.iter().enumerate() {
        segments[k * n_features] = y;
        segments[k * n_features + 1] = x;
    }
    let (_, grid_steps) = regular_grid([1, height, width], n_segments);
    let (step_y, step_x) = (grid_steps[1] as f32, grid_steps[2] as f32);
    let mask_label = start_label as isize - 1;
    let mut labels = vec![mask_label; height * width];
    let mut distance = vec![f32::INFINITY; height * width];
    let mut counts = vec![0usize; n_segments];
    let mut alive = vec![true; n_segments];
    let mut max_dist_color = vec![1f32; n_segments];
    let spatial_weight = 1.0f32 / (step * step);

    for _ in 0..max_num_iter {
        let mut change = false;
        distance.fill(f32::INFINITY);
        for k in 0..n_segments {
            if !alive[k] {
                continue;
            }
            let seg = &segments[k * n_features..(k + 1) * n_features];
            let (cy, cx) = (seg[0], seg[1]);
            let y_min = (cy - 2.0 * step_y).max(0.0) as usize;
            let y_max = ((cy + 2.0 * step_y + 1.0).min(height as f32)) as usize;
            let x_min = (cx - 2.0 * step_x).max(0.0) as usize;
            let x_max = ((cx + 2.0 * step_x + 1.0).min(width as f32)) as usize;
            for y in y_min..y_max {
                let mut dy = cy - y as f32;
                dy *= dy;
                for x in x_min..x_max {
                    let mut dx = cx - x as f32;
                    dx *= dx;
                    let mut dist = (0.0 + dy + dx) * spatial_weight;
                    let p = y * width + x;
                    let mut dist_color = 0f32;
                    for c in 0..channels {
                        let t = img[p * channels + c] - seg[2 + c];
                        dist_color += t * t;
                    }
                    if slic_zero {
                        dist_color /= max_dist_color[k];
                    }
                    dist += dist_color;
                    if distance[p] > dist {
                        labels[p] = k as isize + start_label as isize;
                        distance[p] = dist;
                        change = true;
                    }
                }
            }
        }
        if !change {
            break;
        }
        // recompute centres
        counts.fill(0);
        segments.fill(0.0);
        for y in 0..height {
            for x in 0..width {
                let p = y * width + x;
                if labels[p] == mask_label {
                    continue;
                }
                let k = (labels[p] - start_label as isize) as usize;
                counts[k] += 1;
                let seg = &mut segments[k * n_features..(k + 1) * n_features];
                seg[0] += y as f32;
                seg[1] += x as f32;
                for c in 0..channels {
                    seg[2 + c] += img[p * channels + c];
                }
            }
        }
        for k in 0..n_segments {
            if counts[k] == 0 {
                // skimage divides by zero here (NaN centre), which then never wins a pixel
                alive[k] = false;
                continue;
            }
            for v in &mut segments[k * n_features..(k + 1) * n_features] {
                *v /= counts[k] as f32;
            }
        }
        if slic_zero {
            for p in 0..height * width {
                if labels[p] == mask_label {
                    continue;
                }
                let k = (labels[p] - start_label as isize) as usize;
                let seg = &segments[k * n_features..(k + 1) * n_features];
                let mut dist_color = 0f32;
                for c in 0..channels {
                    let t = img[p * channels + c] - seg[2 + c];
                    dist_color += t * t;
                }
                if max_dist_color[k] < dist_color {
                    max_dist_color[k] = dist_color;
                }
            }
        }
    }
    labels
}

/// skimage's `_enforce_label_connectivity_cython` for a 2D label image (4-connectivity).
fn enforce_label_connectivity(
    segments: &[isize],
    height: usize,
    width: usize,
    min_size: usize,
    max_size: usize,
    start_label: usize,
) -> Vec<usize> {
    const DX: [isize; 4] = [1, -1, 0, 0];
    const DY: [isize; 4] = [0, 0, 1, -1];
    let mask_label = start_label as isize - 1;
    // No component has more pixels than the image (the buffer below is sized by it).
    let max_size = max_size.clamp(1, segments.len().max(1));
    let mut connected = vec![mask_label; segments.len()];
    let mut current_new_label = start_label as isize;
    let mut coords: Vec<(usize, usize)> = vec![(0, 0); max_size];
    for y in 0..height {
        for x in 0..width {
            let p = y * width + x;
            if segments[p] == mask_label || connected[p] > mask_label {
                continue;
            }
            let mut adjacent = current_new_label;
            let label = segments[p];
            connected[p] = current_new_label;
            let mut size = 1usize;
            let mut visited = 0usize;
            coords[0] = (y, x);
            while visited < size && size < max_size {
                let (cy, cx) = coords[visited];
                for i in 0..4 {
                    let yy = cy as isize + DY[i];
                    let xx = cx as isize + DX[i];
                    if yy < 0 || xx < 0 || yy >= height as isize || xx >= width as isize {
                        continue;
                    }
                    let q = yy as usize * width + xx as usize;
                    if segments[q] == label && connected[q] == mask_label {
                        connected[q] = current_new_label;
                        coords[size] = (yy as usize, xx as usize);
                        size += 1;
                        if size >= max_size {
                            break;
                        }
                    } else if connected[q] > mask_label && connected[q] != current_new_label {
                        adjacent = connected[q];
                    }
                }
                visited += 1;
            }
            if size < min_size {
                for &(yy, xx) in &coords[..size] {
                    connected[yy * width + xx] = adjacent;
                }
            } else {
                current_new_label += 1;
            }
        }
    }
    // every pixel has a label (no mask), all >= start_label
    connected
        .into_iter()
        .map(|l| l.max(start_label as isize) as usize)
        .collect()
}

/// Relabels `labels` to `start_label..` in order of first appearance (used without connectivity
/// enforcement, where centres that lost all their pixels leave gaps).
fn relabel_sequential(labels: &[isize], start_label: usize) -> Vec<usize> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|l| {
            let next = start_label + map.len();
            *map.entry(*l).or_insert(next)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use proptest::prelude::*;

    #[test]
    fn regular_grid_matches_skimage_examples() {
        // regular_grid((20, 40), 8) -> (slice(5, None, 10), slice(5, None, 10)); as 3D with depth 1
        assert_eq!(regular_grid([1, 20, 40], 8), ([0, 5, 5], [1, 10, 10]));
        assert_eq!(regular_grid([1, 20, 40], 32), ([0, 2, 2], [1, 5, 5]));
        // regular_grid((3, 20, 40), 8) -> (slice(1, None, 3), slice(5, None, 10), slice(5, None, 10))
        assert_eq!(regular_grid([3, 20, 40], 8), ([1, 5, 5], [3, 10, 10]));
        // MNIST: 14 x 14 centres for 200 segments
        assert_eq!(regular_grid([1, 28, 28], 200), ([0, 0, 0], [1, 2, 2]));
        assert_eq!(regular_grid([1, 4, 4], 100), ([0, 0, 0], [1, 1, 1]));
    }

    #[test]
    fn round_half_even_is_pythons_round() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(1.98), 2);
        assert_eq!(round_half_even(1.49), 1);
    }

    #[test]
    fn reflect_index_is_scipy_reflect() {
        let n = 4;
        let got: Vec<usize> = (-5..9).map(|i| reflect_index(i, n)).collect();
        // d c b a | a b c d | d c b a  with a=0.. d=3, extended
        assert_eq!(got, vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
    }

    #[test]
    fn lab_of_white_and_black() {
        let white = rgb_to_lab([1.0, 1.0, 1.0]);
        assert!((white[0] - 100.0).abs() < 1e-2, "{white:?}");
        assert!(white[1].abs() < 1e-2 && white[2].abs() < 1e-2, "{white:?}");
        let black = rgb_to_lab([0.0, 0.0, 0.0]);
        assert!(black.iter().all(|v| v.abs() < 1e-4), "{black:?}");
        // pure red in skimage: [53.24, 80.09, 67.20]
        let red = rgb_to_lab([1.0, 0.0, 0.0]);
        assert!(
            (red[0] - 53.24).abs() < 0.05
                && (red[1] - 80.09).abs() < 0.05
                && (red[2] - 67.20).abs() < 0.05,
            "{red:?}"
        );
    }

    #[test]
    fn gaussian_preserves_constants_and_mass() {
        let (h, w) = (5, 7);
        let mut img = vec![0.25f32; h * w];
        gaussian_filter_hwc(&mut img, h, w, 1, 1.5);
        assert!(img.iter().all(|v| (v - 0.25).abs() < 1e-6));
        let mut spike = vec![0f32; h * w];
        spike[2 * w + 3] = 1.0;
        gaussian_filter_hwc(&mut spike, h, w, 1, 0.8);
        let total: f32 = spike.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(spike[2 * w + 3] < 1.0 && spike[2 * w + 4] > 0.0);
    }

    #[test]
    fn two_flat_halves_are_separated() {
        // left half dark, right half bright: no segment may straddle the edge
        let mut img = Array3::<f32>::zeros((1, 16, 16));
        for y in 0..16 {
            for x in 8..16 {
                img[[0, y, x]] = 1.0;
            }
        }
        let seg = SlicParams::new()
            .n_segments(8)
            .compactness(0.1)
            .check()
            .unwrap()
            .segment(img.view())
            .unwrap();
        let labels = seg.labels();
        for y in 0..16 {
            for x in 0..8 {
                for xx in 8..16 {
                    assert_ne!(labels[[y, x]], labels[[y, xx]]);
                }
            }
        }
    }

    #[test]
    fn rgb_and_bad_inputs() {
        let img = Array3::<f32>::from_shape_fn((3, 12, 12), |(c, y, x)| {
            if (c == 0) == (x < 6) {
                1.0
            } else {
                (y as f32) * 0.01
            }
        });
        let p = SlicParams::new().n_segments(9).check().unwrap();
        let seg = p.segment(img.view()).unwrap();
        assert!(seg.n_segments() >= 2);
        let two = Array3::<f32>::zeros((2, 4, 4));
        assert!(SlicParams::new()
            .convert2lab(Some(true))
            .check()
            .unwrap()
            .segment(two.view())
            .is_err());
        let mut nan = Array3::<f32>::zeros((1, 4, 4));
        nan[[0, 1, 1]] = f32::NAN;
        assert!(p.segment(nan.view()).is_err());
        assert!(p.segment(Array3::<f32>::zeros((1, 0, 4)).view()).is_err());
        assert!(SlicParams::new().compactness(0.0).check().is_err());
        assert!(SlicParams::new().start_label(2).check().is_err());
        assert!(SlicParams::new().n_segments(0).check().is_err());
        assert!(SlicParams::new().sigma(-1.0).check().is_err());
    }

    #[test]
    fn segmentation_rejects_gaps() {
        let labels = Array2::from_shape_vec((1, 3), vec![1, 3, 1]).unwrap();
        assert!(Segmentation::new(labels, 1).is_err());
        let labels = Array2::from_shape_vec((1, 3), vec![0, 1, 1]).unwrap();
        assert!(Segmentation::new(labels, 1).is_err());
        let labels = Array2::from_shape_vec((1, 3), vec![2, 1, 1]).unwrap();
        let s = Segmentation::new(labels, 1).unwrap();
        assert_eq!(s.n_segments(), 2);
        assert_eq!(s.segment_sizes(), vec![2, 1]);
        assert_eq!(s.pixels_per_segment(), vec![vec![1, 2], vec![0]]);
    }

    fn image_strategy() -> impl Strategy<Value = Array3<f32>> {
        (
            prop_oneof![Just(1usize), Just(3usize)],
            1usize..20,
            1usize..20,
        )
            .prop_flat_map(|(c, h, w)| {
                proptest::collection::vec(0f32..1.0, c * h * w)
                    .prop_map(move |v| Array3::from_shape_vec((c, h, w), v).unwrap())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_pixel_labelled_contiguously_and_deterministically(
            img in image_strategy(),
            n_segments in 1usize..60,
            compactness in prop_oneof![Just(0.1f32), Just(1.0), Just(10.0), Just(100.0)],
            sigma in prop_oneof![Just(0.0f32), Just(0.7), Just(2.0)],
            start_label in 0usize..2,
            enforce in any::<bool>(),
            slic_zero in any::<bool>(),
        ) {
            let p = SlicParams::new()
                .n_segments(n_segments)
                .compactness(compactness)
                .sigma(sigma)
                .start_label(start_label)
                .enforce_connectivity(enforce)
                .slic_zero(slic_zero)
                .check()
                .unwrap();
            let seg = p.segment(img.view()).unwrap();
            let (_, h, w) = img.dim();
            prop_assert_eq!(seg.dim(), (h, w));
            prop_assert_eq!(seg.start_label(), start_label);
            // contiguous labels from start_label, every one used (Segmentation::new checks) and
            // re-checked here independently
            let mut used = vec![false; seg.n_segments()];
            for &l in seg.labels().iter() {
                prop_assert!(l >= start_label && l < start_label + seg.n_segments());
                used[l - start_label] = true;
            }
            prop_assert!(used.iter().all(|u| *u));
            prop_assert!(seg.n_segments() <= h * w);
            let again = p.segment(img.view()).unwrap();
            prop_assert_eq!(seg, again);
        }
    }
}
