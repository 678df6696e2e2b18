//! Max- and avg-sensitivity (Yeh et al. 2019; Quantus' `MaxSensitivity` / `AvgSensitivity`):
//! how much the explanation changes when the input is perturbed by small uniform noise.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::hyperparams::{Norm, SensitivityValidParams};

/// An explanation method that can be re-run on new inputs: a batch `[n, ..input_shape]` and one
/// target per input in, one map per input out (`[n, ..map shape]`). Closures
/// `Fn(ArrayViewD<f32>, &[usize]) -> Result<ArrayD<f32>>` are explainers.
pub trait Explainer: Send + Sync {
    /// Explains every input of the batch for its target.
    fn explain(&self, x: ArrayViewD<'_, f32>, targets: &[usize]) -> Result<ArrayD<f32>>;
}

impl<F> Explainer for F
where
    F: Fn(ArrayViewD<'_, f32>, &[usize]) -> Result<ArrayD<f32>> + Send + Sync,
{
    fn explain(&self, x: ArrayViewD<'_, f32>, targets: &[usize]) -> Result<ArrayD<f32>> {
        self(x, targets)
    }
}

/// Both sensitivities from one set of noisy inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityScore {
    /// The largest relative change (max-sensitivity), lower is better.
    pub max: f64,
    /// The mean relative change (avg-sensitivity), lower is better.
    pub avg: f64,
    /// `‖a − a'‖ / ‖a‖` for every noisy input, in draw order.
    pub per_sample: Vec<f64>,
}

fn norm(n: Norm, v: impl Iterator<Item = f64>) -> f64 {
    match n {
        Norm::Fro => v.map(|x| x * x).sum::<f64>().sqrt(),
        Norm::Linf => v.fold(0.0, |m, x| m.max(x.abs())),
    }
}

/// Max- and avg-sensitivity of `map`, the explanation of `x` for `target`: `nr_samples` inputs
/// `x + U(-lower_bound, lower_bound)` (one seeded stream, drawn in order, so independent of the
/// thread count) are explained by `explainer`, `batch_size` at a time, and each gives
/// `‖map − map'‖ / ‖map‖` with the chosen norms. Quantus' option to drop samples whose
/// prediction changed is not implemented (it is off by default there).
pub fn sensitivity(
    explainer: &dyn Explainer,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    params: &SensitivityValidParams,
) -> Result<SensitivityScore> {
    let len = x.len();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let r = params.lower_bound;
    let mut noise = Vec::with_capacity(params.nr_samples * len);
    for _ in 0..params.nr_samples * len {
        noise.push(rng.gen_range(-r..r));
    }
    let mut shape = vec![params.nr_samples];
    shape.extend_from_slice(x.shape());
    let noise = ArrayD::from_shape_vec(IxDyn(&shape), noise).expect("noise matches its shape");
    sensitivity_with_noise(explainer, x, map, target, noise.view(), params)
}

/// [`sensitivity`] with the noise given, `[k, ..x shape]` (Quantus' draws, for the agreement
/// tests); `nr_samples` and `seed` are not used.
pub fn sensitivity_with_noise(
    explainer: &dyn Explainer,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    noise: ArrayViewD<'_, f32>,
    params: &SensitivityValidParams,
) -> Result<SensitivityScore> {
    xai_core::check_finite("input", &x)?;
    xai_core::check_finite("attribution map", &map)?;
    if noise.ndim() != x.ndim() + 1 || &noise.shape()[1..] != x.shape() || noise.shape()[0] == 0 {
        return Err(EvalError::Shape {
            what: "the noise",
            got: noise.shape().to_vec(),
            expected: format!(
                "[k >= 1, {:?}...], one noise array per sample shaped like the input",
                x.shape()
            ),
        });
    }
    let a: Vec<f64> = map.iter().map(|v| f64::from(*v)).collect();
    let denom = norm(params.norm_denominator, a.iter().copied());
    if denom == 0.0 {
        return Err(EvalError::NonFinite {
            what: "the sensitivity",
            value: f64::INFINITY,
            why: "the attribution map is all zeros, so its relative change is undefined",
        });
    }
    let k = noise.shape()[0];
    let len = x.len();
    let xs: Vec<f32> = x.iter().copied().collect();
    let noise_flat: Vec<f32> = noise.iter().copied().collect();
    let mut per_sample = Vec::with_capacity(k);
    let mut start = 0;
    while start < k {
        let n = params.batch_size.min(k - start);
        let mut buf = Vec::with_capacity(n * len);
        for s in start..start + n {
            buf.extend(
                xs.iter()
                    .zip(&noise_flat[s * len..(s + 1) * len])
                    .map(|(a, b)| a + b),
            );
        }
        let mut shape = vec![n];
        shape.extend_from_slice(x.shape());
        let batch = ArrayViewD::from_shape(IxDyn(&shape), &buf).expect("batch matches its shape");
        let targets = vec![target; n];
        let out = explainer.explain(batch, &targets)?;
        if out.is_empty() || out.shape()[0] != n || out.len() != n * a.len() {
            return Err(EvalError::Shape {
                what: "the explainer's output",
                got: out.shape().to_vec(),
                expected: format!("[{n}, ..], {} values per input like the map", a.len()),
            });
        }
        let out = out.as_standard_layout();
        let flat = out.as_slice().expect("standard layout");
        for i in 0..n {
            let e = &flat[i * a.len()..(i + 1) * a.len()];
            let num = norm(
                params.norm_numerator,
                a.iter().zip(e).map(|(p, q)| p - f64::from(*q)),
            );
            per_sample.push(num / denom);
        }
        start += n;
    }
    let max = per_sample.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = per_sample.iter().sum::<f64>() / per_sample.len() as f64;
    Ok(SensitivityScore {
        max,
        avg,
        per_sample,
    })
}
