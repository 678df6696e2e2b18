//! GradientSHAP (expected gradients) over a background set.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rand::Rng;
use xai_core::DifferentiableModel;

use crate::common::{
    check_finite, check_inputs_targets, chunks, fill_normal, gradients, per_class, sample_rng,
    stack_rows, target_outputs, Attributions, ClassTargets,
};
use crate::error::{AttributionError, Result};
use crate::hyperparams::GradientShapValidParams;

/// GradientSHAP (Lundberg and Lee 2017, "A Unified Approach to Interpreting Model
/// Predictions", §4; the expected-gradients estimator of Erion et al. 2021, "Improving
/// performance of deep learning models with axiomatic attribution priors and expected
/// gradients"), as captum 0.9's `GradientShap`: for each input `x` and `n_samples` draws of a
/// baseline `b` from the background set, a point `α ~ U(0, 1)` and noise `ε ~ N(0,
/// stdevs²)`,
///
/// `φ(x) = E[(x + ε − b) ∘ ∂f_c(α (x + ε) + (1 − α) b)/∂x]`
///
/// (the mean over the samples). The draws of input `i`'s sample `s` come from a generator
/// seeded by `(seed, i, s)`; [`GradientShap::attribute_with`] takes them explicitly. With
/// `return_convergence_delta`, each sample's `Σ φ_s − (f_c(x + ε) − f_c(b))` is returned,
/// `[n, k, n_samples]`.
pub struct GradientShap<'m> {
    model: &'m dyn DifferentiableModel,
    params: GradientShapValidParams,
}

/// One sample's draws: the baseline (flat), `α`, and the noise written into a buffer.
type Draw<'a> = dyn Fn(usize, usize, &mut [f32]) -> (&'a [f32], f32) + 'a;

impl<'m> GradientShap<'m> {
    /// GradientSHAP of `model` with checked parameters.
    pub fn new(model: &'m dyn DifferentiableModel, params: GradientShapValidParams) -> Self {
        GradientShap { model, params }
    }

    /// The parameters.
    pub fn params(&self) -> &GradientShapValidParams {
        &self.params
    }

    /// Attributions `[n, k, ..input_shape]` with baselines drawn uniformly from `background`
    /// (`[m, ..input_shape]`, `m >= 1`). Errors: an empty, misshapen or non-finite background,
    /// and those of the inputs, targets and model.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        background: ArrayViewD<'_, f32>,
    ) -> Result<Attributions> {
        let m = xai_core::check_batch("the background", &background, self.model.input_shape())?;
        if m == 0 {
            return Err(AttributionError::param(
                "background",
                "an empty set",
                "at least one baseline input",
            ));
        }
        check_finite("the background", &background)?;
        let len: usize = self.model.input_shape().iter().product();
        let bg = background.as_standard_layout();
        let bg = bg.as_slice().expect("standard layout");
        let (seed, stdev) = (self.params.seed, self.params.stdevs);
        let draw = |i: usize, s: usize, noise: &mut [f32]| -> (&[f32], f32) {
            let mut rng = sample_rng(seed, i, s);
            let b = rng.gen_range(0..m);
            let alpha: f32 = rng.gen();
            if stdev > 0.0 {
                fill_normal(&mut rng, stdev, noise);
            } else {
                noise.iter_mut().for_each(|v| *v = 0.0);
            }
            (&bg[b * len..(b + 1) * len], alpha)
        };
        self.run(x, targets, &draw)
    }

    /// Attributions with explicit draws: `baselines` `[n, n_samples, ..input_shape]`,
    /// `alphas` `[n, n_samples]` in `[0, 1]`, and optional `noise` `[n, n_samples,
    /// ..input_shape]` (none: no noise; `stdevs` and `seed` are not used). Errors: draws of the
    /// wrong shape, not finite, or alphas outside `[0, 1]`.
    pub fn attribute_with(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        baselines: ArrayViewD<'_, f32>,
        alphas: ArrayViewD<'_, f32>,
        noise: Option<ArrayViewD<'_, f32>>,
    ) -> Result<Attributions> {
        let n = x.shape().first().copied().unwrap_or(0);
        let s = self.params.n_samples;
        let mut want = vec![n, s];
        want.extend_from_slice(self.model.input_shape());
        let shape_err =
            |what: &'static str, got: &[usize], expected: String| AttributionError::Shape {
                what,
                got: got.to_vec(),
                expected,
            };
        if baselines.shape() != want.as_slice() {
            return Err(shape_err(
                "the baselines",
                baselines.shape(),
                format!("{want:?} ([n, n_samples, ..input_shape])"),
            ));
        }
        check_finite("the baselines", &baselines)?;
        if alphas.shape() != [n, s] {
            return Err(shape_err(
                "the alphas",
                alphas.shape(),
                format!("[{n}, {s}]"),
            ));
        }
        if let Some((index, &value)) = alphas
            .iter()
            .enumerate()
            .find(|(_, a)| !(0.0..=1.0).contains(*a))
        {
            return Err(AttributionError::param(
                "alphas",
                format!("{value} at flat index {index}"),
                "values in [0, 1]",
            ));
        }
        if let Some(e) = &noise {
            if e.shape() != want.as_slice() {
                return Err(shape_err(
                    "the noise",
                    e.shape(),
                    format!("{want:?} ([n, n_samples, ..input_shape])"),
                ));
            }
            check_finite("the noise", e)?;
        }
        let len: usize = self.model.input_shape().iter().product();
        let bs = baselines.as_standard_layout();
        let bs = bs.as_slice().expect("standard layout");
        let draw = |i: usize, j: usize, out: &mut [f32]| -> (&[f32], f32) {
            match &noise {
                Some(e) => {
                    let e = e.index_axis(Axis(0), i);
                    out.iter_mut()
                        .zip(e.index_axis(Axis(0), j).iter())
                        .for_each(|(o, v)| *o = *v);
                }
                None => out.iter_mut().for_each(|v| *v = 0.0),
            }
            let at = (i * s + j) * len;
            (&bs[at..at + len], alphas[[i, j]])
        };
        self.run(x, targets, &draw)
    }

    fn run(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        draw: &Draw<'_>,
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let shape = x.shape()[1..].to_vec();
        let len: usize = shape.iter().product();
        let samples = self.params.n_samples;
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let mut sum = vec![0.0f32; n * k * len];
        let mut deltas = self
            .params
            .return_convergence_delta
            .then(|| vec![0.0f32; n * k * samples]);
        // Pairs (input i, sample s), i-major; each pair gives k rows (its classes).
        let pairs_per_call = (self.params.internal_batch_size / k).max(1);
        let mut noise = vec![0.0f32; len];
        for range in chunks(n * samples, pairs_per_call) {
            let count = range.len();
            let mut noisy = Vec::with_capacity(count * len);
            let mut base = Vec::with_capacity(count * len);
            let mut scaled = Vec::with_capacity(count * k * len);
            let mut classes = Vec::with_capacity(count * k);
            let mut inputs = Vec::with_capacity(count * k);
            for p in range.clone() {
                let (i, s) = (p / samples, p % samples);
                let (b, alpha) = draw(i, s, &mut noise);
                let xi = &xs[i * len..(i + 1) * len];
                let start = noisy.len();
                noisy.extend(xi.iter().zip(&noise).map(|(x, e)| x + e));
                base.extend_from_slice(b);
                for j in 0..k {
                    scaled.extend(
                        noisy[start..start + len]
                            .iter()
                            .zip(b)
                            .map(|(&x, &b)| alpha * x + (1.0 - alpha) * b),
                    );
                    classes.push(targets.classes()[[i, j]]);
                    inputs.push(i);
                }
            }
            let g = gradients(
                self.model,
                stack_rows(scaled, count * k, &shape).view(),
                &classes,
                &inputs,
            )?;
            let g = g.as_standard_layout();
            let gs = g.as_slice().expect("standard layout");
            let mut sample_sums = Vec::with_capacity(count * k);
            for (q, p) in range.clone().enumerate() {
                let i = p / samples;
                let xq = &noisy[q * len..(q + 1) * len];
                let bq = &base[q * len..(q + 1) * len];
                for j in 0..k {
                    let r = q * k + j;
                    let gr = &gs[r * len..(r + 1) * len];
                    let dst = &mut sum[(i * k + j) * len..(i * k + j + 1) * len];
                    let mut total = 0.0f64;
                    for e in 0..len {
                        let a = if self.params.multiply_by_inputs {
                            (xq[e] - bq[e]) * gr[e]
                        } else {
                            gr[e]
                        };
                        dst[e] += a;
                        total += a as f64;
                    }
                    sample_sums.push(total);
                }
            }
            if let Some(all) = deltas.as_mut() {
                // f_c(x + ε) and f_c(b) for every row of this call.
                let mut data = Vec::with_capacity(2 * count * k * len);
                for q in 0..count {
                    for _ in 0..k {
                        data.extend_from_slice(&noisy[q * len..(q + 1) * len]);
                    }
                }
                for q in 0..count {
                    for _ in 0..k {
                        data.extend_from_slice(&base[q * len..(q + 1) * len]);
                    }
                }
                let both: Vec<usize> = classes.iter().chain(&classes).copied().collect();
                let both_inputs: Vec<usize> = inputs.iter().chain(&inputs).copied().collect();
                let out = target_outputs(
                    self.model,
                    stack_rows(data, 2 * count * k, &shape).view(),
                    &both,
                    &both_inputs,
                )?;
                let rows = count * k;
                for (q, p) in range.enumerate() {
                    let (i, s) = (p / samples, p % samples);
                    for j in 0..k {
                        let r = q * k + j;
                        let diff = out[r] as f64 - out[rows + r] as f64;
                        all[(i * k + j) * samples + s] = (sample_sums[r] - diff) as f32;
                    }
                }
            }
        }
        let inv = 1.0 / samples as f32;
        sum.iter_mut().for_each(|v| *v *= inv);
        Ok(Attributions {
            values: per_class(sum, n, k, &shape),
            targets: targets.classes().to_owned(),
            delta: deltas
                .map(|d| ArrayD::from_shape_vec(IxDyn(&[n, k, samples]), d).expect("n x k x s")),
        })
    }
}
