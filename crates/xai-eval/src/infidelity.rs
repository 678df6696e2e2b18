//! Infidelity (Yeh et al. 2019; Quantus' `Infidelity`): how far the attribution's prediction of
//! the output change, `Σ a · (x − x')`, is from the real change `f(x) − f(x')`.

use ndarray::ArrayViewD;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use xai_core::Predictor;

use crate::error::Result;
use crate::hyperparams::{InfidelityPerturbation, InfidelityValidParams};
use crate::perturb::{broadcast_map, fill_values, patches, require_image, Sample};

/// Infidelity, lower is better:
///
/// * [`InfidelityPerturbation::Squares`] — Quantus' definition: for each patch size, the square
///   patches (raster order; the image padded to a multiple of the size as Quantus' region
///   perturbation pads it — Quantus' own infidelity indexes out of place for sizes that do not
///   divide the image, so only dividing sizes are comparable) are replaced by the baseline one
///   more at a time, cumulatively; the mean over the patches of
///   `((f(x) − f(x_k)) − Σ a · (x − x_k))²`, averaged over the patch sizes. Deterministic (Quantus'
///   `n_perturb_samples` repeats the same computation).
/// * [`InfidelityPerturbation::Gaussian`] — Yeh et al.: `x' = x − I`, `I ~ N(0, std²)` per
///   element, `n_samples` seeded draws (drawn in order from one stream: independent of threads).
///
/// The map is used as given (Quantus' `normalise=False`, `abs=False` defaults), so infidelity
/// depends on the map's scale.
pub fn infidelity(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    params: &InfidelityValidParams,
) -> Result<f64> {
    let sample = Sample::new(model, x, target)?;
    let a = broadcast_map(&sample.shape, map)?;
    let y0 = f64::from(sample.original_output()?);
    match &params.perturbation {
        InfidelityPerturbation::Squares {
            patch_sizes,
            baseline,
        } => {
            let (c, h, w) = require_image(&sample, "square-removal infidelity")?;
            let fill = fill_values(&sample, *baseline)?;
            let mut total = 0.0;
            for ps in patch_sizes {
                let groups = patches(c, h, w, *ps);
                let mut cur = sample.x.clone();
                let mut a_sums = Vec::with_capacity(groups.len());
                let mut a_sum = 0.0f64;
                let ys = sample.sequence(groups.len(), params.batch_size, |k, buf| {
                    for e in &groups[k] {
                        a_sum += f64::from(a[*e]) * (f64::from(sample.x[*e]) - f64::from(fill[*e]));
                        cur[*e] = fill[*e];
                    }
                    a_sums.push(a_sum);
                    buf.copy_from_slice(&cur);
                    Ok(())
                })?;
                let mse = ys
                    .iter()
                    .zip(&a_sums)
                    .map(|(y, s)| (y0 - f64::from(*y) - s).powi(2))
                    .sum::<f64>()
                    / ys.len().max(1) as f64;
                total += mse;
            }
            Ok(total / patch_sizes.len() as f64)
        }
        InfidelityPerturbation::Gaussian { std, n_samples } => {
            let normal = Normal::new(0.0f32, *std).expect("checked standard deviation");
            let mut rng = StdRng::seed_from_u64(params.seed);
            let mut a_sums = Vec::with_capacity(*n_samples);
            let ys = sample.sequence(*n_samples, params.batch_size, |_, buf| {
                let mut s = 0.0f64;
                for (i, b) in buf.iter_mut().enumerate() {
                    let noise: f32 = normal.sample(&mut rng);
                    s += f64::from(a[i]) * f64::from(noise);
                    *b = sample.x[i] - noise;
                }
                a_sums.push(s);
                Ok(())
            })?;
            Ok(ys
                .iter()
                .zip(&a_sums)
                .map(|(y, s)| (y0 - f64::from(*y) - s).powi(2))
                .sum::<f64>()
                / ys.len() as f64)
        }
    }
}
