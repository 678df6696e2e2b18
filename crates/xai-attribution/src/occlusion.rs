//! Occlusion: a sliding window replaced by the baseline, batched model calls.

use ndarray::{ArrayViewD, Axis};
use xai_core::Predictor;

use crate::common::{
    check_inputs_targets, chunks, per_class, stack_rows, Attributions, Baseline, ClassTargets,
};
use crate::error::{AttributionError, Result};
use crate::hyperparams::OcclusionValidParams;

/// Occlusion (Zeiler and Fergus 2014, "Visualizing and Understanding Convolutional
/// Networks"), as captum 0.9's `Occlusion`: a window of `sliding_window_shapes` slides over
/// the input with `strides` (positions `0, s, 2s, …` in each dimension, `⌈(d − w)/s⌉ + 1`
/// of them, the last window cut at the border); each position's window is replaced by the
/// baseline, and every element covered gets `f_c(x) − f_c(x_occluded)`. An element's
/// attribution is the mean of that difference over the windows that cover it.
///
/// Each model call evaluates `perturbations_per_eval` window positions for every input of
/// the batch (captum's batching). Needs only a [`Predictor`].
pub struct Occlusion<'m> {
    model: &'m dyn Predictor,
    params: OcclusionValidParams,
    strides: Vec<usize>,
    shift_counts: Vec<usize>,
}

impl<'m> Occlusion<'m> {
    /// Occlusion of `model`. Errors: a window whose rank is not the input's, or that is
    /// larger than the input in some dimension; a stride larger than the window where the
    /// window does not span the whole dimension (captum's checks).
    pub fn new(model: &'m dyn Predictor, params: OcclusionValidParams) -> Result<Self> {
        let shape = model.input_shape();
        let window = &params.sliding_window_shapes;
        if window.len() != shape.len() || window.iter().zip(shape).any(|(w, d)| w > d) {
            return Err(AttributionError::param(
                "sliding_window_shapes",
                format!("{window:?}"),
                format!("one extent per input dimension, each at most the input's {shape:?}"),
            ));
        }
        let strides = params
            .strides
            .clone()
            .unwrap_or_else(|| vec![1; shape.len()]);
        for d in 0..shape.len() {
            if shape[d] != window[d] && strides[d] > window[d] {
                return Err(AttributionError::param(
                    "strides",
                    format!("{strides:?}"),
                    format!(
                        "strides at most the window {window:?} (dimension {d}: {} > {})",
                        strides[d], window[d]
                    ),
                ));
            }
        }
        let shift_counts = (0..shape.len())
            .map(|d| (shape[d] - window[d]).div_ceil(strides[d]) + 1)
            .collect();
        Ok(Occlusion {
            model,
            params,
            strides,
            shift_counts,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &OcclusionValidParams {
        &self.params
    }

    /// Number of window positions.
    pub fn n_windows(&self) -> usize {
        self.shift_counts.iter().product()
    }

    /// The flat indices of the elements window `f` covers (captum's `_occlusion_mask`: the
    /// position in dimension `d` is `(f mod count_d) · stride_d`, `f` divided by `count_d`
    /// after each dimension, the first dimension first).
    fn window(&self, mut f: usize) -> Vec<usize> {
        let shape = self.model.input_shape();
        let nd = shape.len();
        let mut ranges = Vec::with_capacity(nd);
        for d in 0..nd {
            let start = (f % self.shift_counts[d]) * self.strides[d];
            f /= self.shift_counts[d];
            let end = (start + self.params.sliding_window_shapes[d]).min(shape[d]);
            ranges.push(start..end);
        }
        // Row-major flat indices of the box.
        let mut idx = vec![0usize];
        for d in 0..nd {
            let mut next = Vec::with_capacity(idx.len() * ranges[d].len());
            for &base in &idx {
                for p in ranges[d].clone() {
                    next.push(base * shape[d] + p);
                }
            }
            idx = next;
        }
        idx
    }

    /// Attributions `[n, k, ..input_shape]` of the inputs `x` for their target classes, the
    /// occluded values taken from `baseline`. Errors: a baseline of the wrong shape or not
    /// finite, and those of the inputs, targets and model.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        baseline: &Baseline,
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let shape = x.shape()[1..].to_vec();
        baseline.check(n, &shape)?;
        let len: usize = shape.iter().product();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let bases: Vec<Vec<f32>> = match baseline {
            Baseline::PerInput(_) => (0..n).map(|i| baseline.row(i, len)).collect(),
            _ => vec![baseline.row(0, len)],
        };
        let base = |i: usize| &bases[if bases.len() == 1 { 0 } else { i }];
        let initial = self.model.predict(x.view())?;
        let mut total = vec![0.0f32; n * k * len];
        let mut weight = vec![0.0f32; len];
        let windows = self.n_windows();
        for range in chunks(windows, self.params.perturbations_per_eval) {
            let masks: Vec<Vec<usize>> = range.clone().map(|f| self.window(f)).collect();
            let rows = masks.len() * n;
            let mut data = Vec::with_capacity(rows * len);
            for mask in &masks {
                for i in 0..n {
                    let start = data.len();
                    data.extend_from_slice(&xs[i * len..(i + 1) * len]);
                    let b = base(i);
                    for &e in mask {
                        data[start + e] = b[e];
                    }
                }
            }
            let out = self.model.predict(stack_rows(data, rows, &shape).view())?;
            for (q, mask) in masks.iter().enumerate() {
                for &e in mask {
                    weight[e] += 1.0;
                }
                for i in 0..n {
                    let row = out.index_axis(Axis(0), q * n + i);
                    for j in 0..k {
                        let c = targets.classes()[[i, j]];
                        let diff = initial[[i, c]] - row[c];
                        if !diff.is_finite() {
                            return Err(AttributionError::NonFiniteModelOutput {
                                what: "output",
                                input: i,
                                value: diff,
                            });
                        }
                        let dst = &mut total[(i * k + j) * len..(i * k + j + 1) * len];
                        for &e in mask {
                            dst[e] += diff;
                        }
                    }
                }
            }
        }
        for row in total.chunks_mut(len.max(1)) {
            row.iter_mut().zip(&weight).for_each(|(t, w)| *t /= w);
        }
        Ok(Attributions {
            values: per_class(total, n, k, &shape),
            targets: targets.classes().to_owned(),
            delta: None,
        })
    }
}
