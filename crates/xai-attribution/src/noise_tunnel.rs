//! NoiseTunnel: SmoothGrad, SmoothGrad², VarGrad over saliency, input × gradient or
//! Integrated Gradients.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use xai_core::DifferentiableModel;

use crate::common::{
    check_finite, check_inputs_targets, chunks, fill_normal, gradients, per_class, sample_rng,
    stack_rows, Attributions, Baseline, ClassTargets,
};
use crate::error::{AttributionError, Result};
use crate::hyperparams::{
    InputXGradientValidParams, IntegratedGradientsValidParams, NoiseTunnelType,
    NoiseTunnelValidParams, SaliencyValidParams,
};
use crate::integrated::{integrate, BaselineRows, PathRows};

/// The attribution method NoiseTunnel runs on the noisy copies (captum wraps any attribution
/// object; these are the gradient methods of this crate).
#[derive(Debug, Clone, PartialEq)]
pub enum NoiseTunnelBase {
    /// [`crate::Saliency`] (captum's `Saliency`; `abs` as in its parameters).
    Saliency(SaliencyValidParams),
    /// [`crate::InputXGradient`]: the noisy input times its gradient.
    InputXGradient(InputXGradientValidParams),
    /// [`crate::IntegratedGradients`] from the baseline (each noisy copy of input `i` uses
    /// input `i`'s baseline, as captum expands it).
    IntegratedGradients(IntegratedGradientsValidParams, Baseline),
}

impl NoiseTunnelBase {
    /// captum's class name of the wrapped method.
    pub fn name(&self) -> &'static str {
        match self {
            NoiseTunnelBase::Saliency(_) => "Saliency",
            NoiseTunnelBase::InputXGradient(_) => "InputXGradient",
            NoiseTunnelBase::IntegratedGradients(..) => "IntegratedGradients",
        }
    }
}

/// NoiseTunnel (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"; Adebayo
/// et al. 2018, "Local Explanation Methods for Deep Neural Networks Lack Sensitivity to
/// Parameter Values", for VarGrad), as captum 0.9's `NoiseTunnel`: the wrapped method's
/// attributions `a_s` of `nt_samples` noisy copies `x + ε_s`, `ε_s ~ N(0, stdevs²)`, combined
/// as `E[a]` (smoothgrad), `E[a²]` (smoothgrad_sq) or `E[a²] − E[a]²` (vargrad).
///
/// The noise of input `i`'s sample `s` comes from a generator seeded by `(seed, i, s)`:
/// results do not depend on the thread count or the batch sizes.
/// [`NoiseTunnel::attribute_with_noise`] takes the noise instead (to reproduce another
/// library's draws). Over Integrated Gradients the convergence delta of every noisy copy is
/// returned (`[n, k, nt_samples]`, as captum concatenates them).
pub struct NoiseTunnel<'m> {
    model: &'m dyn DifferentiableModel,
    base: NoiseTunnelBase,
    params: NoiseTunnelValidParams,
}

impl<'m> NoiseTunnel<'m> {
    /// NoiseTunnel over `base` on `model`.
    pub fn new(
        model: &'m dyn DifferentiableModel,
        base: NoiseTunnelBase,
        params: NoiseTunnelValidParams,
    ) -> Self {
        NoiseTunnel {
            model,
            base,
            params,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &NoiseTunnelValidParams {
        &self.params
    }

    /// The wrapped method.
    pub fn base(&self) -> &NoiseTunnelBase {
        &self.base
    }

    /// Attributions `[n, k, ..input_shape]` with seeded noise. Errors: as the wrapped method.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
    ) -> Result<Attributions> {
        let (seed, stdev) = (self.params.seed, self.params.stdevs);
        self.run(x, targets, &|i, s, out: &mut [f32]| {
            fill_normal(&mut sample_rng(seed, i, s), stdev, out)
        })
    }

    /// Attributions with the given noise, `[n, nt_samples, ..input_shape]` (`x_i + noise[i,
    /// s]` is input `i`'s `s`-th copy; `stdevs` and `seed` are not used). Errors: noise of the
    /// wrong shape or not finite, and those of [`NoiseTunnel::attribute`].
    pub fn attribute_with_noise(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        noise: ArrayViewD<'_, f32>,
    ) -> Result<Attributions> {
        let n = x.shape().first().copied().unwrap_or(0);
        let mut want = vec![n, self.params.nt_samples];
        want.extend_from_slice(self.model.input_shape());
        if noise.shape() != want.as_slice() {
            return Err(AttributionError::Shape {
                what: "the noise",
                got: noise.shape().to_vec(),
                expected: format!("{want:?} ([n, nt_samples, ..input_shape])"),
            });
        }
        check_finite("the noise", &noise)?;
        self.run(x, targets, &|i, s, out: &mut [f32]| {
            let e = noise.index_axis(Axis(0), i);
            let e = e.index_axis(Axis(0), s);
            out.iter_mut().zip(e.iter()).for_each(|(o, v)| *o = *v);
        })
    }

    fn run(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        noise: &dyn Fn(usize, usize, &mut [f32]),
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let shape = x.shape()[1..].to_vec();
        let len: usize = shape.iter().product();
        if let NoiseTunnelBase::IntegratedGradients(_, b) = &self.base {
            b.check(n, &shape)?;
        }
        let samples = self.params.nt_samples;
        let group = self
            .params
            .nt_samples_batch_size
            .unwrap_or(samples)
            .min(samples);
        let mut sum = vec![0.0f32; n * k * len];
        let mut sum_sq = vec![0.0f32; n * k * len];
        let mut deltas = match self.base {
            NoiseTunnelBase::IntegratedGradients(..) => Some(vec![0.0f32; n * k * samples]),
            _ => None,
        };
        let bases = match &self.base {
            NoiseTunnelBase::IntegratedGradients(_, b) => Some(BaselineRows::new(b, len)),
            _ => None,
        };
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        for i in 0..n {
            let xi = &xs[i * len..(i + 1) * len];
            for range in chunks(samples, group) {
                let count = range.len();
                // The noisy copies of input i for these samples.
                let mut noisy = vec![0.0f32; count * len];
                for (q, s) in range.clone().enumerate() {
                    let dst = &mut noisy[q * len..(q + 1) * len];
                    noise(i, s, dst);
                    dst.iter_mut().zip(xi).for_each(|(e, x)| *e += x);
                }
                // Rows (sample q, class slot j), q-major.
                let m = count * k;
                let class = |r: usize| targets.classes()[[i, r % k]];
                let (attr, delta) =
                    self.base_rows(&noisy, m, k, &shape, &class, i, bases.as_ref())?;
                for r in 0..m {
                    let j = r % k;
                    let dst = (i * k + j) * len;
                    let a = &attr[r * len..(r + 1) * len];
                    sum[dst..dst + len]
                        .iter_mut()
                        .zip(a)
                        .for_each(|(s, v)| *s += v);
                    sum_sq[dst..dst + len]
                        .iter_mut()
                        .zip(a)
                        .for_each(|(s, v)| *s += v * v);
                    if let (Some(all), Some(d)) = (deltas.as_mut(), delta.as_ref()) {
                        let s = range.start + r / k;
                        all[(i * k + j) * samples + s] = d[r];
                    }
                }
            }
        }
        let inv = 1.0 / samples as f32;
        let values: Vec<f32> = match self.params.nt_type {
            NoiseTunnelType::Smoothgrad => sum.iter().map(|s| s * inv).collect(),
            NoiseTunnelType::SmoothgradSq => sum_sq.iter().map(|s| s * inv).collect(),
            NoiseTunnelType::Vargrad => sum
                .iter()
                .zip(&sum_sq)
                .map(|(s, q)| {
                    let mean = s * inv;
                    q * inv - mean * mean
                })
                .collect(),
        };
        Ok(Attributions {
            values: per_class(values, n, k, &shape),
            targets: targets.classes().to_owned(),
            delta: deltas
                .map(|d| ArrayD::from_shape_vec(IxDyn(&[n, k, samples]), d).expect("n x k x s")),
        })
    }

    /// The wrapped method on `m` rows: row `r` is noisy copy `r / k` (of `noisy`) with class
    /// `class(r)`, all of input `i`.
    #[allow(clippy::too_many_arguments)]
    fn base_rows(
        &self,
        noisy: &[f32],
        m: usize,
        k: usize,
        shape: &[usize],
        class: &dyn Fn(usize) -> usize,
        i: usize,
        bases: Option<&BaselineRows>,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let len: usize = shape.iter().product();
        let grads = |batch: usize| -> Result<Vec<f32>> {
            let mut out = Vec::with_capacity(m * len);
            for range in chunks(m, batch) {
                let count = range.len();
                let mut data = Vec::with_capacity(count * len);
                for r in range.clone() {
                    data.extend_from_slice(&noisy[(r / k) * len..(r / k + 1) * len]);
                }
                let classes: Vec<usize> = range.clone().map(class).collect();
                let g = gradients(
                    self.model,
                    stack_rows(data, count, shape).view(),
                    &classes,
                    &vec![i; count],
                )?;
                out.extend(g.iter().copied());
            }
            Ok(out)
        };
        match &self.base {
            NoiseTunnelBase::Saliency(p) => {
                let mut g = grads(p.batch_size)?;
                if p.abs {
                    g.iter_mut().for_each(|v| *v = v.abs());
                }
                Ok((g, None))
            }
            NoiseTunnelBase::InputXGradient(p) => {
                let mut g = grads(p.batch_size)?;
                for (r, row) in g.chunks_mut(len.max(1)).enumerate() {
                    let xr = &noisy[(r / k) * len..(r / k + 1) * len];
                    row.iter_mut().zip(xr).for_each(|(a, x)| *a *= x);
                }
                Ok((g, None))
            }
            NoiseTunnelBase::IntegratedGradients(p, _) => {
                let bases = bases.expect("baselines resolved for IG");
                let x_row = |r: usize| &noisy[(r / k) * len..(r / k + 1) * len];
                let b_row = |_: usize| bases.get(i);
                let input = |_: usize| i;
                let rows = PathRows {
                    shape,
                    m,
                    x: &x_row,
                    b: &b_row,
                    class,
                    input: &input,
                };
                let (attr, delta) = integrate(self.model, &rows, p)?;
                Ok((attr, Some(delta)))
            }
        }
    }
}
