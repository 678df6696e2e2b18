//! What the metrics share: input and map checks, feature groups and their ranking, removal
//! values, batched model calls along a sequence of perturbed inputs, correlations.

use ndarray::{ArrayView2, ArrayViewD, IxDyn};
use xai_core::Predictor;

use crate::error::{EvalError, Result};
use crate::hyperparams::{Baseline, Features, Similarity};

/// One input checked against a model: its flat values, shape and the target.
pub(crate) struct Sample<'a> {
    pub model: &'a dyn Predictor,
    pub shape: Vec<usize>,
    pub x: Vec<f32>,
    pub target: usize,
}

impl<'a> Sample<'a> {
    /// Checks `x` (one sample, shaped like the model's input) and `target`.
    pub fn new(model: &'a dyn Predictor, x: ArrayViewD<'_, f32>, target: usize) -> Result<Self> {
        if x.shape() != model.input_shape() {
            return Err(EvalError::Shape {
                what: "the input",
                got: x.shape().to_vec(),
                expected: format!(
                    "the model's input shape {:?} (one sample, no batch axis)",
                    model.input_shape()
                ),
            });
        }
        xai_core::check_finite("input", &x)?;
        if target >= model.n_outputs() {
            return Err(EvalError::Target {
                target,
                n_outputs: model.n_outputs(),
            });
        }
        Ok(Self {
            model,
            shape: x.shape().to_vec(),
            x: x.iter().copied().collect(),
            target,
        })
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// `[c, h, w]` when the input is an image.
    pub fn image_dims(&self) -> Option<(usize, usize, usize)> {
        match self.shape[..] {
            [c, h, w] => Some((c, h, w)),
            _ => None,
        }
    }

    /// The target output of a batch of flat inputs (`n * len` values).
    pub fn predict_target(&self, flat: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut shape = vec![n];
        shape.extend_from_slice(&self.shape);
        let batch =
            ArrayViewD::from_shape(IxDyn(&shape), flat).expect("batch buffer matches its shape");
        let out = self.model.predict(batch)?;
        if out.nrows() != n || out.ncols() <= self.target {
            return Err(EvalError::Shape {
                what: "the model's output",
                got: out.shape().to_vec(),
                expected: format!("[{n}, {}]", self.model.n_outputs()),
            });
        }
        let col: Vec<f32> = out.column(self.target).to_vec();
        if let Some(v) = col.iter().find(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: "a model output",
                value: f64::from(*v),
                why: "the model returned NaN or infinity on a perturbed input",
            });
        }
        Ok(col)
    }

    /// The predicted class (argmax) of a batch of flat inputs.
    pub fn predict_argmax(&self, flat: &[f32], n: usize) -> Result<Vec<usize>> {
        let mut shape = vec![n];
        shape.extend_from_slice(&self.shape);
        let batch =
            ArrayViewD::from_shape(IxDyn(&shape), flat).expect("batch buffer matches its shape");
        let out = self.model.predict(batch)?;
        Ok(xai_core::argmax_rows(out.view()))
    }

    /// Evaluates the target output on `n_steps` inputs that `fill(step, buffer)` writes, in
    /// order, `batch_size` inputs per model call.
    pub fn sequence(
        &self,
        n_steps: usize,
        batch_size: usize,
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Vec<f32>> {
        let len = self.len();
        let mut out = Vec::with_capacity(n_steps);
        let mut buf = vec![0.0f32; batch_size.min(n_steps.max(1)) * len];
        let mut step = 0;
        while step < n_steps {
            let n = batch_size.min(n_steps - step);
            for i in 0..n {
                fill(step + i, &mut buf[i * len..(i + 1) * len])?;
            }
            out.extend(self.predict_target(&buf[..n * len], n)?);
            step += n;
        }
        Ok(out)
    }

    /// The target output of the unperturbed input.
    pub fn original_output(&self) -> Result<f32> {
        Ok(self.predict_target(&self.x, 1)?[0])
    }
}

/// The map broadcast to the input's shape (Quantus broadcasts `a` to `x`): the same shape, or
/// `[1, h, w]` / `[h, w]` for an input `[c, h, w]`.
pub(crate) fn broadcast_map(shape: &[usize], map: ArrayViewD<'_, f32>) -> Result<Vec<f32>> {
    xai_core::check_finite("attribution map", &map)?;
    if map.shape() == shape {
        return Ok(map.iter().copied().collect());
    }
    if let [c, h, w] = shape[..] {
        let plane = match map.shape() {
            [1, mh, mw] if *mh == h && *mw == w => true,
            [mh, mw] if *mh == h && *mw == w => true,
            _ => false,
        };
        if plane {
            let p: Vec<f32> = map.iter().copied().collect();
            let mut out = Vec::with_capacity(c * h * w);
            for _ in 0..c {
                out.extend_from_slice(&p);
            }
            return Ok(out);
        }
    }
    Err(EvalError::Shape {
        what: "the attribution map",
        got: map.shape().to_vec(),
        expected: match shape {
            [_, h, w] => format!("the input's shape {shape:?}, [1, {h}, {w}] or [{h}, {w}]"),
            _ => format!("the input's shape {shape:?}"),
        },
    })
}

/// The values removed features are replaced with, one per input element.
pub(crate) fn fill_values(sample: &Sample<'_>, baseline: Baseline) -> Result<Vec<f32>> {
    let x = &sample.x;
    let n = x.len();
    Ok(match baseline {
        Baseline::Value(v) => vec![v; n],
        Baseline::Black => vec![x.iter().copied().fold(f32::INFINITY, f32::min); n],
        Baseline::White => vec![x.iter().copied().fold(f32::NEG_INFINITY, f32::max); n],
        Baseline::Mean => {
            let m = x.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
            vec![m as f32; n]
        }
        Baseline::Blur { sigma } => {
            let (c, h, w) = sample.image_dims().ok_or_else(|| EvalError::Shape {
                what: "the input",
                got: sample.shape.clone(),
                expected: "an image [c, h, w] for the blur baseline".into(),
            })?;
            gaussian_blur(x, c, h, w, sigma)
        }
    })
}

/// Separable Gaussian blur per channel, radius `ceil(3 sigma)`, mirrored at the borders
/// (scipy's `reflect` mode: `d c b a | a b c d`).
pub(crate) fn gaussian_blur(x: &[f32], c: usize, h: usize, w: usize, sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i as f64).powi(2) / (2.0 * f64::from(sigma).powi(2))).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let mirror = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let period = 2 * n;
        let mut j = i.rem_euclid(period);
        if j >= n {
            j = period - j - 1;
        }
        j as usize
    };
    let mut tmp = vec![0.0f64; c * h * w];
    let mut out = vec![0.0f32; c * h * w];
    for ch in 0..c {
        let base = ch * h * w;
        for r in 0..h {
            for col in 0..w {
                let mut s = 0.0;
                for (k, kv) in kernel.iter().enumerate() {
                    let cc = mirror(col as isize + k as isize - radius, w);
                    s += kv * f64::from(x[base + r * w + cc]);
                }
                tmp[base + r * w + col] = s;
            }
        }
        for r in 0..h {
            for col in 0..w {
                let mut s = 0.0;
                for (k, kv) in kernel.iter().enumerate() {
                    let rr = mirror(r as isize + k as isize - radius, h);
                    s += kv * tmp[base + rr * w + col];
                }
                out[base + r * w + col] = s as f32;
            }
        }
    }
    out
}

/// The feature groups (flat element indices) of an input.
pub(crate) fn feature_groups(
    sample: &Sample<'_>,
    features: Features,
    segments: Option<ArrayView2<'_, usize>>,
) -> Result<Vec<Vec<usize>>> {
    let n = sample.len();
    match (features, sample.image_dims()) {
        (Features::Elements, _) | (Features::Pixels, None) => Ok((0..n).map(|i| vec![i]).collect()),
        (Features::Pixels, Some((c, h, w))) => Ok((0..h * w)
            .map(|p| (0..c).map(|ch| ch * h * w + p).collect())
            .collect()),
        (Features::Segments, dims) => {
            let labels = segments.ok_or(EvalError::Missing {
                metric: "a curve with features = segments",
                needs: "a label map [h, w] with the input",
            })?;
            let (c, h, w) = dims.ok_or_else(|| EvalError::Shape {
                what: "the input",
                got: sample.shape.clone(),
                expected: "an image [c, h, w] for segment features".into(),
            })?;
            if labels.shape() != [h, w] {
                return Err(EvalError::Shape {
                    what: "the label map",
                    got: labels.shape().to_vec(),
                    expected: format!("[{h}, {w}], the input's height and width"),
                });
            }
            let max = labels.iter().copied().max().unwrap_or(0);
            if max >= h * w {
                return Err(EvalError::param(
                    "label map",
                    max,
                    "labels below h * w (one segment per label)",
                ));
            }
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); max + 1];
            for ch in 0..c {
                for (p, l) in labels.iter().enumerate() {
                    groups[*l].push(ch * h * w + p);
                }
            }
            groups.retain(|g| !g.is_empty());
            Ok(groups)
        }
    }
}

/// The summed (optionally absolute) attribution of each group.
pub(crate) fn group_scores(groups: &[Vec<usize>], map: &[f32], abs: bool) -> Vec<f64> {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|i| {
                    let v = f64::from(map[*i]);
                    if abs {
                        v.abs()
                    } else {
                        v
                    }
                })
                .sum()
        })
        .collect()
}

/// Group indices by descending score (`most_relevant_first`) or ascending; ties keep index
/// order (numpy's `argsort` leaves their order unspecified).
pub(crate) fn ranking(scores: &[f64], most_relevant_first: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if most_relevant_first {
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    } else {
        order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    }
    order
}

/// Pearson's correlation of two series (NaN when one is constant, as scipy).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    let r = sab / (saa.sqrt() * sbb.sqrt());
    if r.is_finite() {
        r.clamp(-1.0, 1.0)
    } else {
        f64::NAN
    }
}

/// Ranks 1..n, ties given their average rank (scipy's `rankdata(method="average")`).
pub(crate) fn ranks(a: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by(|i, j| a[*i].total_cmp(&a[*j]));
    let mut r = vec![0.0; a.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && a[order[j + 1]] == a[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[order[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (scipy's `spearmanr`: Pearson on average ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// The structural similarity of two series as scikit-image's `structural_similarity` computes
/// it on 1-D arrays with its defaults (Quantus' `ssim`): uniform windows of 7 values, data range
/// `max − min` over both series, `K1 = 0.01`, `K2 = 0.03`, sample covariances (`7 / 6`), the
/// mean of the index over the windows that lie inside the series. NaN for series shorter than 7.
pub fn ssim(a: &[f64], b: &[f64]) -> f64 {
    const WIN: usize = 7;
    let n = a.len().min(b.len());
    if n < WIN {
        return f64::NAN;
    }
    let (lo, hi) = a[..n]
        .iter()
        .chain(&b[..n])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let range = (hi - lo).abs();
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    let cov_norm = WIN as f64 / (WIN as f64 - 1.0);
    let mut total = 0.0;
    for start in 0..=n - WIN {
        let (xa, xb) = (&a[start..start + WIN], &b[start..start + WIN]);
        let m = |f: &dyn Fn(usize) -> f64| (0..WIN).map(f).sum::<f64>() / WIN as f64;
        let (ux, uy) = (m(&|i| xa[i]), m(&|i| xb[i]));
        let (uxx, uyy, uxy) = (
            m(&|i| xa[i] * xa[i]),
            m(&|i| xb[i] * xb[i]),
            m(&|i| xa[i] * xb[i]),
        );
        let (vx, vy, vxy) = (
            cov_norm * (uxx - ux * ux),
            cov_norm * (uyy - uy * uy),
            cov_norm * (uxy - ux * uy),
        );
        total +=
            ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
    }
    total / (n - WIN + 1) as f64
}

/// The similarity `s` of two series.
pub fn similarity(s: Similarity, a: &[f64], b: &[f64]) -> f64 {
    match s {
        Similarity::Spearman => spearman(a, b),
        Similarity::Pearson => pearson(a, b),
        Similarity::Ssim => ssim(a, b),
    }
}

/// The composite trapezoidal rule with unit spacing (Quantus' `calculate_auc`, `np.trapz`).
pub(crate) fn trapezoid_unit(y: &[f64]) -> f64 {
    y.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum()
}

/// The trapezoidal rule over points `(x, y)`.
pub(crate) fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

/// A square-patch tiling of an image `[c, h, w]` as Quantus builds it: the image is padded to a
/// multiple of `patch` (`floor` of the padding before, `ceil` after), cut into blocks in raster
/// order, and each block lists the input elements (all channels) it covers; padding is dropped.
pub(crate) fn patches(c: usize, h: usize, w: usize, patch: usize) -> Vec<Vec<usize>> {
    let pad = |d: usize| -> (usize, usize) {
        let m = d % patch;
        if m == 0 {
            (0, 0)
        } else {
            let t = patch - m;
            (t / 2, t - t / 2)
        }
    };
    let ((ph0, ph1), (pw0, pw1)) = (pad(h), pad(w));
    let (hp, wp) = (h + ph0 + ph1, w + pw0 + pw1);
    let mut out = Vec::new();
    for br in 0..hp / patch {
        for bc in 0..wp / patch {
            let mut g = Vec::new();
            for ch in 0..c {
                for r in br * patch..(br + 1) * patch {
                    for col in bc * patch..(bc + 1) * patch {
                        if r < ph0 || r >= ph0 + h || col < pw0 || col >= pw0 + w {
                            continue;
                        }
                        g.push(ch * h * w + (r - ph0) * w + (col - pw0));
                    }
                }
            }
            out.push(g);
        }
    }
    out
}

pub(crate) fn require_image(
    sample: &Sample<'_>,
    metric: &'static str,
) -> Result<(usize, usize, usize)> {
    sample.image_dims().ok_or_else(|| EvalError::Shape {
        what: "the input",
        got: sample.shape.clone(),
        expected: format!("an image [c, h, w] for {metric}"),
    })
}
