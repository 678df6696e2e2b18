//! Estimation quality: the relative L2 error of KernelSHAP estimates against a large-sample
//! reference, as a function of the budget `nsamples` (the curves of Covert & Lee 2021, Fig. 2).
//!
//! `error = ||φ̂ - φ_ref||₂ / ||φ_ref||₂` over all explained labels and features. The reference
//! is one run with `reference_nsamples` coalitions (default `10^6`) of the reference estimator
//! (default: leverage sampling with inert features skipped); each curve point is the mean over
//! `repeats` seeds, none of them the reference's.

use std::time::Instant;

use ndarray::{Array2, ArrayView3};
use serde::{Deserialize, Serialize};
use xai_core::Predictor;

use xai_shap::algorithm::ShapValues;
use xai_shap::error::{Result, ShapError};
use xai_shap::game::{CoalitionGame, ImageMasker, MaskedPredictor};
use xai_shap::hyperparams::{ValidImageKernelShapParams, ValidKernelShapParams};
use xai_shap::sampling::SamplingScheme;
use xai_shap::solver::Regression;

/// One estimator to measure: sampling scheme, regression, and whether inert players are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Estimator {
    /// Sampling scheme.
    pub sampling: SamplingScheme,
    /// Regression.
    pub regression: Regression,
    /// Whether inert players get 0 without estimation.
    pub skip_inert_features: bool,
}

impl Estimator {
    /// shap's `KernelExplainer` as dianna calls it (all segments in the regression).
    pub const SHAP_AS_DIANNA: Estimator = Estimator {
        sampling: SamplingScheme::Shap,
        regression: Regression::Plain,
        skip_inert_features: false,
    };
    /// This crate's default estimator.
    pub const DEFAULT: Estimator = Estimator {
        sampling: SamplingScheme::Leverage,
        regression: Regression::SizePolynomial(4),
        skip_inert_features: true,
    };

    /// A short name, e.g. `"Leverage/SizePolynomial(4)+skip"`.
    pub fn name(&self) -> String {
        format!(
            "{:?}/{:?}{}",
            self.sampling,
            self.regression,
            if self.skip_inert_features {
                "+skip"
            } else {
                ""
            }
        )
    }
}

/// What [`error_curve`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCurveParams {
    /// Budgets to measure.
    pub nsamples: Vec<usize>,
    /// Seeds per budget and estimator.
    pub repeats: usize,
    /// Budget of the reference run.
    pub reference_nsamples: usize,
    /// Estimator of the reference run.
    pub reference: Estimator,
    /// Estimators to measure.
    pub estimators: Vec<Estimator>,
    /// Base seed: the reference uses it, repeat `r` uses `seed + 1 + r`.
    pub seed: u64,
}

impl Default for ErrorCurveParams {
    fn default() -> Self {
        Self {
            nsamples: vec![250, 500, 1000, 2000, 4000],
            repeats: 5,
            reference_nsamples: 1_000_000,
            reference: Estimator::DEFAULT,
            estimators: vec![Estimator::SHAP_AS_DIANNA, Estimator::DEFAULT],
            seed: 0,
        }
    }
}

impl ErrorCurveParams {
    fn check(&self) -> Result<()> {
        if self.nsamples.is_empty() || self.nsamples.contains(&0) {
            return Err(ShapError::param(
                "nsamples",
                format!("{:?}", self.nsamples),
                "a non-empty list of budgets >= 1",
            ));
        }
        if self.repeats == 0 {
            return Err(ShapError::param("repeats", 0, "at least 1"));
        }
        if self.reference_nsamples == 0 {
            return Err(ShapError::param("reference_nsamples", 0, "at least 1"));
        }
        if self.estimators.is_empty() {
            return Err(ShapError::param(
                "estimators",
                "[]",
                "at least one estimator",
            ));
        }
        Ok(())
    }
}

/// The error of one estimator at one budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPoint {
    /// The budget.
    pub nsamples: usize,
    /// Relative L2 error of each repeat.
    pub errors: Vec<f64>,
    /// Mean of `errors`.
    pub mean_error: f64,
    /// Mean wall-clock seconds per explanation (model included).
    pub seconds_per_explanation: f64,
}

/// The error curve of one estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatorCurve {
    /// The estimator.
    pub estimator: Estimator,
    /// One point per budget.
    pub points: Vec<ErrorPoint>,
}

/// Error curves against one reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCurve {
    /// The reference values.
    pub reference: ShapValues,
    /// One curve per estimator.
    pub curves: Vec<EstimatorCurve>,
}

impl ErrorCurve {
    /// The mean error of `estimator` at `nsamples`, if measured.
    pub fn mean_error(&self, estimator: Estimator, nsamples: usize) -> Option<f64> {
        self.curves
            .iter()
            .find(|c| c.estimator == estimator)?
            .points
            .iter()
            .find(|p| p.nsamples == nsamples)
            .map(|p| p.mean_error)
    }
}

/// `||estimate - reference||₂ / ||reference||₂` (`∞` when the reference is 0 and the estimate
/// is not; 0 when both are 0).
pub fn relative_l2_error(estimate: &Array2<f64>, reference: &Array2<f64>) -> f64 {
    let diff: f64 = estimate
        .iter()
        .zip(reference.iter())
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let norm: f64 = reference.iter().map(|b| b * b).sum();
    if norm == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (diff / norm).sqrt()
}

/// Error curves of `curve.estimators` on `game`, with every other KernelSHAP parameter (labels,
/// link, batch size, feature selection) taken from `base`; the reference is computed first.
pub fn error_curve(
    game: &dyn CoalitionGame,
    base: &ValidKernelShapParams,
    curve: &ErrorCurveParams,
) -> Result<ErrorCurve> {
    curve.check()?;
    let reference = with_estimator(base, curve.reference, curve.reference_nsamples, curve.seed)?
        .estimate(game)?;
    error_curve_against(game, base, curve, reference)
}

fn with_estimator(
    base: &ValidKernelShapParams,
    e: Estimator,
    nsamples: usize,
    seed: u64,
) -> Result<ValidKernelShapParams> {
    base.params()
        .clone()
        .sampling(e.sampling)
        .regression(e.regression)
        .skip_inert_features(e.skip_inert_features)
        .nsamples(nsamples)
        .seed(seed)
        .check()
}

/// [`error_curve`] against a reference computed before (e.g. saved from an earlier run; it must
/// explain the same game and labels).
pub fn error_curve_against(
    game: &dyn CoalitionGame,
    base: &ValidKernelShapParams,
    curve: &ErrorCurveParams,
    reference: ShapValues,
) -> Result<ErrorCurve> {
    curve.check()?;
    let mut curves = Vec::new();
    for &estimator in &curve.estimators {
        let mut points = Vec::new();
        for &nsamples in &curve.nsamples {
            let mut errors = Vec::new();
            let start = Instant::now();
            for r in 0..curve.repeats {
                let seed = curve.seed.wrapping_add(1 + r as u64);
                let estimate = with_estimator(base, estimator, nsamples, seed)?.estimate(game)?;
                if estimate.values.dim() != reference.values.dim() {
                    return Err(ShapError::shape(
                        "reference values",
                        reference.values.shape(),
                        format!("{:?} like the estimates", estimate.values.shape()),
                    ));
                }
                errors.push(relative_l2_error(&estimate.values, &reference.values));
            }
            let seconds = start.elapsed().as_secs_f64() / curve.repeats as f64;
            let mean_error = errors.iter().sum::<f64>() / errors.len() as f64;
            points.push(ErrorPoint {
                nsamples,
                errors,
                mean_error,
                seconds_per_explanation: seconds,
            });
        }
        curves.push(EstimatorCurve { estimator, points });
    }
    Ok(ErrorCurve { reference, curves })
}

/// [`error_curve`] for an image: segments it with `params`' SLIC settings, masks with its
/// background, and measures the estimators on `model` against `reference` when given (from an
/// earlier run on the same image and parameters), else against a freshly computed one.
pub fn image_error_curve(
    model: &dyn Predictor,
    image: ArrayView3<'_, f32>,
    params: &ValidImageKernelShapParams,
    curve: &ErrorCurveParams,
    reference: Option<ShapValues>,
) -> Result<ErrorCurve> {
    if image.shape() != model.input_shape() {
        return Err(ShapError::shape(
            "image",
            image.shape(),
            format!("the model's input shape {:?}", model.input_shape()),
        ));
    }
    let segmentation = params.slic().segment(image)?;
    let masker = ImageMasker::new(image, &segmentation, params.background())?;
    let game = MaskedPredictor::new(model, &masker)?;
    match reference {
        Some(reference) => error_curve_against(&game, params.kernel_shap(), curve, reference),
        None => error_curve(&game, params.kernel_shap(), curve),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, ArrayView2};
    use xai_shap::game::FnGame;
    use xai_shap::hyperparams::KernelShapParams;

    #[test]
    fn default_estimator_is_the_default_params() {
        let p = KernelShapParams::new().check().unwrap();
        let d = Estimator::DEFAULT;
        assert_eq!(
            (d.sampling, d.regression, d.skip_inert_features),
            (p.sampling(), p.regression(), p.skip_inert_features())
        );
        let s = KernelShapParams::shap_compatible().check().unwrap();
        let e = Estimator::SHAP_AS_DIANNA;
        assert_eq!(
            (e.sampling, e.regression, e.skip_inert_features),
            (s.sampling(), s.regression(), s.skip_inert_features())
        );
        assert_eq!(d.name(), "Leverage/SizePolynomial(4)+skip");
    }

    #[test]
    fn relative_error_basics() {
        let r = array![[3.0, 4.0]];
        assert_eq!(relative_l2_error(&r, &r), 0.0);
        assert!((relative_l2_error(&array![[0.0, 0.0]], &r) - 1.0).abs() < 1e-12);
        assert_eq!(relative_l2_error(&array![[0.0]], &array![[0.0]]), 0.0);
        assert!(relative_l2_error(&array![[1.0]], &array![[0.0]]).is_infinite());
    }

    #[test]
    fn curve_on_a_small_interaction_game() {
        let m = 12;
        let game = FnGame::new(m, 1, |c: ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((c.nrows(), 1), |(r, _)| {
                let k = c.row(r).iter().filter(|&&b| b).count() as f64;
                let pair = (c[[r, 0]] && c[[r, 1]]) as u8 as f64;
                (k / 3.0).sin() + 2.0 * pair + if c[[r, 5]] { 0.5 } else { 0.0 }
            }))
        });
        let base = KernelShapParams::new().check().unwrap();
        let curve = ErrorCurveParams {
            nsamples: vec![64, 4094],
            repeats: 2,
            reference_nsamples: 1 << 13,
            estimators: vec![Estimator::SHAP_AS_DIANNA, Estimator::DEFAULT],
            ..ErrorCurveParams::default()
        };
        let result = error_curve(&game, &base, &curve).unwrap();
        assert!(result.reference.exact);
        let again = error_curve_against(&game, &base, &curve, result.reference.clone()).unwrap();
        assert_eq!(again.reference, result.reference);
        for (a, b) in again.curves.iter().zip(&result.curves) {
            for (p, q) in a.points.iter().zip(&b.points) {
                assert_eq!(p.errors, q.errors);
            }
        }
        for e in [Estimator::SHAP_AS_DIANNA, Estimator::DEFAULT] {
            let small = result.mean_error(e, 64).unwrap();
            let full = result.mean_error(e, 4094).unwrap();
            assert!(full < 1e-9, "{e:?}: {full}");
            assert!(small > full);
        }
        let bad = ErrorCurveParams {
            repeats: 0,
            ..ErrorCurveParams::default()
        };
        assert!(error_curve(&game, &base, &bad).is_err());
    }
}
