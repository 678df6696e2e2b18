//! shap's `l1_reg` feature selection (`KernelExplainer.solve`), on shap's augmented problem.
//!
//! shap selects features before its constrained least squares by fitting, for each output, the
//! stacked design `X` with rows `sqrt(w (M - s)) z` and `sqrt(w s) (z - 1)` against targets
//! `sqrt(w (M - s)) y` and `sqrt(w s) (y - Δ)` (coalition `z` of size `s`, kernel weight `w`
//! with `Σ w = 1`, `y = link(v(S)) - link(v(∅))`, `Δ = link(v(N)) - link(v(∅))`), and keeps:
//!
//! * `num_features(k)` ([`FeatureSelection::TopK`]): the active set of
//!   `sklearn.linear_model.lars_path(X, y, max_iter=k)` (least-angle regression, no intercept);
//! * `aic` / `bic` ([`FeatureSelection::Aic`], [`FeatureSelection::Bic`]): the non-zero
//!   coefficients of `make_pipeline(StandardScaler(with_mean=False), LassoLarsIC(criterion))`:
//!   columns scaled by their standard deviation, centred with the target (intercept), the
//!   Lasso-LARS path computed, and the step minimising
//!   `n ln(2π σ²) + RSS/σ² + c · df` chosen (`c = 2` or `ln n`, `df` the non-zero coefficients,
//!   `σ²` the residual variance of ordinary least squares with `n - M - 1` degrees of freedom;
//!   Zou, Hastie & Tibshirani 2007, "On the degrees of freedom of the lasso");
//! * an alpha ([`FeatureSelection::Alpha`]): the non-zero coefficients of `Lasso(alpha)` with an
//!   intercept, here read exactly off the Lasso-LARS path at `alpha` (scikit-learn's coordinate
//!   descent stops at a duality-gap tolerance; a feature whose coefficient is within that
//!   tolerance of 0 may be kept by one and dropped by the other).
//!
//! Everything is computed from `M x M` sums accumulated with the normal equations
//! ([`crate::solver::NormalEquations`]), never from the `2n x M` design. The fixtures in
//! `tests/fixtures/l1_reg_sklearn.json` (written by `tests/fixtures/make_shap_fixtures.py` with
//! scikit-learn) check the selected sets.

use ndarray::Array2;

use crate::error::{Result, ShapError};
use crate::lars::{lars_path_gram, LarsMethod};
use crate::solver::{solve_symmetric, FeatureSelection};

/// `LassoLarsIC`'s default `max_iter`.
const LASSO_LARS_IC_MAX_ITER: usize = 500;

/// shap's augmented selection problem as sums (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentedProblem {
    /// `XᵀX`, `[M, M]`.
    pub gram: Array2<f64>,
    /// `Xᵀy`.
    pub xty: Vec<f64>,
    /// Column sums of `X`.
    pub col_sums: Vec<f64>,
    /// Sum of `y`.
    pub y_sum: f64,
    /// `yᵀy`.
    pub yty: f64,
    /// Rows of `X` (twice the number of coalitions).
    pub n_samples: usize,
}

impl AugmentedProblem {
    /// The problem after centring `X` and `y` (an intercept), optionally with the columns first
    /// divided by their standard deviations (`StandardScaler(with_mean=False)`): Gram,
    /// correlations and `yᵀy`.
    fn centred(&self, standardise: bool) -> (Array2<f64>, Vec<f64>, f64) {
        let m = self.xty.len();
        let n = self.n_samples.max(1) as f64;
        let scale: Vec<f64> = (0..m)
            .map(|j| {
                if !standardise {
                    return 1.0;
                }
                let mean = self.col_sums[j] / n;
                let var = (self.gram[[j, j]] / n - mean * mean).max(0.0);
                // scikit-learn's `_is_constant_feature`
                let eps = f64::EPSILON;
                let upper = n * eps * var + (n * mean * eps).powi(2);
                if var <= upper {
                    1.0
                } else {
                    var.sqrt()
                }
            })
            .collect();
        let gram = Array2::from_shape_fn((m, m), |(i, j)| {
            (self.gram[[i, j]] - self.col_sums[i] * self.col_sums[j] / n) / (scale[i] * scale[j])
        });
        let xty = (0..m)
            .map(|j| (self.xty[j] - self.col_sums[j] * self.y_sum / n) / scale[j])
            .collect();
        let yty = self.yty - self.y_sum * self.y_sum / n;
        (gram, xty, yty)
    }
}

fn nonzero(coef: &[f64]) -> Vec<usize> {
    (0..coef.len()).filter(|&j| coef[j] != 0.0).collect()
}

/// The features `mode` keeps on `problem` (see the module docs).
pub fn select(problem: &AugmentedProblem, mode: FeatureSelection) -> Result<Vec<usize>> {
    let m = problem.xty.len();
    match mode {
        // `Auto` is resolved by the caller from the fraction evaluated; here it keeps all
        FeatureSelection::None | FeatureSelection::Auto => Ok((0..m).collect()),
        FeatureSelection::TopK(k) => Ok(lars_path_gram(
            &problem.gram,
            &problem.xty,
            problem.n_samples,
            LarsMethod::Lar,
            k,
            0.0,
        )
        .active),
        FeatureSelection::Alpha(alpha) => {
            if !(alpha.is_finite() && alpha > 0.0) {
                return Err(ShapError::param(
                    "l1_reg",
                    format!("Alpha({alpha})"),
                    "a positive, finite Lasso penalty",
                ));
            }
            let (gram, xty, _) = problem.centred(false);
            let path = lars_path_gram(
                &gram,
                &xty,
                problem.n_samples,
                LarsMethod::Lasso,
                usize::MAX,
                alpha,
            );
            Ok(nonzero(path.coefs.last().map_or(&[][..], |c| &c[..])))
        }
        mode @ (FeatureSelection::Aic | FeatureSelection::Bic) => {
            let n = problem.n_samples;
            if n <= m + 1 {
                return Err(ShapError::param(
                    "l1_reg",
                    format!("{mode:?} with {} coalitions", n / 2),
                    format!(
                        "more than {} rows in shap's augmented problem (2 per coalition) for {m} \
                         features, as scikit-learn's LassoLarsIC needs to estimate the noise variance",
                        m + 1
                    ),
                ));
            }
            let (gram, xty, yty) = problem.centred(true);
            let nf = n as f64;
            // noise variance: residual of ordinary least squares, n - M - 1 degrees of freedom
            let b = Array2::from_shape_fn((m, 1), |(j, _)| xty[j]);
            let beta = solve_symmetric(&gram, &b);
            let fitted: f64 = (0..m).map(|j| beta[[j, 0]] * xty[j]).sum();
            let rss_ols = yty - fitted;
            let sigma2 = rss_ols / (nf - m as f64 - 1.0);
            if sigma2.is_nan() || sigma2 <= 1e-14 * yty.abs().max(f64::MIN_POSITIVE) {
                return Err(ShapError::param(
                    "l1_reg",
                    format!("{mode:?}"),
                    "coalition values that a linear model does not fit exactly (here the residual \
                     variance is 0, so AIC/BIC are undefined); use TopK or None",
                ));
            }
            let factor = if mode == FeatureSelection::Aic {
                2.0
            } else {
                nf.ln()
            };
            let path = lars_path_gram(
                &gram,
                &xty,
                n,
                LarsMethod::Lasso,
                LASSO_LARS_IC_MAX_ITER,
                0.0,
            );
            let mut best: Option<(usize, f64)> = None;
            for (k, coef) in path.coefs.iter().enumerate() {
                let mut quad = 0.0;
                for i in 0..m {
                    if coef[i] == 0.0 {
                        continue;
                    }
                    for j in 0..m {
                        quad += coef[i] * gram[[i, j]] * coef[j];
                    }
                }
                let cross: f64 = (0..m).map(|j| coef[j] * xty[j]).sum();
                let rss = yty - 2.0 * cross + quad;
                let df = coef.iter().filter(|c| c.abs() > f64::EPSILON).count() as f64;
                let criterion =
                    nf * (2.0 * std::f64::consts::PI * sigma2).ln() + rss / sigma2 + factor * df;
                // np.argmin: the first minimum, a NaN wins
                match best {
                    Some((_, b)) if b.is_nan() || criterion >= b => {}
                    _ => best = Some((k, criterion)),
                }
            }
            let k = best.map_or(0, |(k, _)| k);
            Ok(nonzero(&path.coefs[k]))
        }
    }
}
