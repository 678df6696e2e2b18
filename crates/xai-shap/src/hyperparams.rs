//! Hyperparameters: [`KernelShapParams`] for any coalition game, [`ImageKernelShapParams`] for
//! images on SLIC superpixels (dianna's `explain_image(..., method="KernelSHAP")`).
//! Build with the setters, then `check()` into the validated form that explains.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShapError};
use crate::game::Background;
use crate::sampling::SamplingScheme;
use crate::slic::{SlicParams, ValidSlicParams};
use crate::solver::{FeatureSelection, Regression};

/// The budget of coalition evaluations (shap's `nsamples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NSamples {
    /// shap's `"auto"`: `2 M + 2048` for `M` (varying) features.
    #[default]
    Auto,
    /// A fixed number of coalitions.
    Count(usize),
}

impl NSamples {
    /// The number of coalitions for `m` features (before capping at `2^m - 2`).
    pub fn resolve(self, m: usize) -> usize {
        match self {
            NSamples::Auto => 2 * m + 2048,
            NSamples::Count(n) => n,
        }
    }
}

impl From<usize> for NSamples {
    fn from(n: usize) -> Self {
        NSamples::Count(n)
    }
}

/// The link connecting the additive values to the model output: `Σ φ = link(f(x)) -
/// link(f(background))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Link {
    /// `link(p) = p`.
    #[default]
    Identity,
    /// `link(p) = ln(p / (1 - p))` for probabilities; values are clamped to `[1e-7, 1 - 1e-7]`
    /// so saturated outputs stay finite; outputs outside `[0, 1]` are an error.
    Logit,
}

/// Largest degree accepted for [`Regression::SizePolynomial`].
pub const MAX_SIZE_POLYNOMIAL_DEGREE: usize = 16;

/// The largest `nsamples` accepted (2^24 coalition evaluations). With up to 62 features the
/// budget is also capped at the `2^M - 2` coalitions that exist; above that only this limit
/// keeps a typo such as `nsamples = 10^12` from driving a design that cannot be allocated.
pub const MAX_NSAMPLES: usize = 1 << 24;

/// Clamp used by [`Link::Logit`].
pub const LOGIT_EPS: f64 = 1e-7;

impl Link {
    /// Applies the link to a model output; `None` if the logit link gets a non-probability.
    pub fn apply(self, v: f64) -> Option<f64> {
        match self {
            Link::Identity => Some(v),
            Link::Logit => {
                if !(-1e-6..=1.0 + 1e-6).contains(&v) {
                    return None;
                }
                let p = v.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
                Some((p / (1.0 - p)).ln())
            }
        }
    }
}

/// KernelSHAP hyperparameters with shap's `nsamples="auto"` and identity link, no feature
/// selection (shap's default is `num_features(10)`; see [`FeatureSelection`]) and this crate's
/// variance-reduced estimator (leverage sampling,
/// [`Regression::SizePolynomial`]`(4)`, inert features skipped);
/// [`KernelShapParams::shap_compatible`] gives shap's estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelShapParams {
    labels: Option<Vec<usize>>,
    nsamples: NSamples,
    link: Link,
    l1_reg: FeatureSelection,
    batch_size: usize,
    seed: u64,
    sampling: SamplingScheme,
    regression: Regression,
    skip_inert_features: bool,
}

impl Default for KernelShapParams {
    fn default() -> Self {
        Self {
            labels: None,
            nsamples: NSamples::Auto,
            link: Link::Identity,
            l1_reg: FeatureSelection::None,
            batch_size: 512,
            seed: 0,
            sampling: SamplingScheme::Leverage,
            regression: Regression::SizePolynomial(4),
            skip_inert_features: true,
        }
    }
}

impl KernelShapParams {
    /// The defaults: every output explained, `nsamples = auto`, identity link, no feature
    /// selection, batches of 512 coalitions, seed 0, leverage sampling, regression with a
    /// degree-4 polynomial in the coalition size, inert features skipped.
    pub fn new() -> Self {
        Self::default()
    }

    /// shap's estimator: exactly `shap.KernelExplainer(f, data).shap_values(x, nsamples=n,
    /// l1_reg=False)` run on the game as given (shap 0.4x-0.51 `KernelExplainer.explain`/`solve`:
    /// its coalition sampling — with this crate's seeded generator instead of numpy's global one,
    /// so the same distribution of designs, not the same draws — its plain constrained weighted
    /// least squares, no feature selection), with every player in the regression.
    ///
    /// * Images as dianna calls shap (`explain_image(..., method="KernelSHAP")`: shap sees the
    ///   segment mask, all ones against an all-zeros background, so no feature is constant):
    ///   this is dianna's call with `l1_reg=False`. dianna itself passes shap's *default*
    ///   `l1_reg`, which is `"num_features(10)"` since shap 0.47 and was `"auto"` (AIC when fewer
    ///   than 20% of the coalitions are evaluated) before: add
    ///   `.l1_reg(FeatureSelection::TopK(10))` or `.l1_reg(FeatureSelection::Auto)` to match a
    ///   given shap version. dianna maps feature `j` to segment `j` when masking but draws the values
    ///   onto the segments with an off-by-one (dianna PR #898); this crate uses segment
    ///   `start_label + k` for feature `k` in both places and does not reproduce the off-by-one.
    /// * Tables or images against a background data set ([`crate::BackgroundGames`]): add
    ///   `.skip_inert_features(true)`, because shap drops features that do not vary between the
    ///   row and the background (shap compares with `np.allclose`, this crate with exact
    ///   equality); [`KernelShapParams::shap_defaults`] does that and takes shap's defaults.
    pub fn shap_compatible() -> Self {
        Self {
            sampling: SamplingScheme::Shap,
            regression: Regression::Plain,
            skip_inert_features: false,
            ..Self::default()
        }
    }

    /// `shap.KernelExplainer(f, data).shap_values(X)` with shap's defaults as of shap 0.47-0.51:
    /// `nsamples="auto"` (`2M + 2048`), `l1_reg="num_features(10)"`, identity link, features
    /// that do not vary dropped; shap's sampling and regression as in
    /// [`KernelShapParams::shap_compatible`].
    pub fn shap_defaults() -> Self {
        Self {
            l1_reg: FeatureSelection::TopK(10),
            skip_inert_features: true,
            ..Self::shap_compatible()
        }
    }

    /// The model outputs to explain (dianna's `labels`); `None` explains all of them.
    pub fn labels(mut self, labels: Option<Vec<usize>>) -> Self {
        self.labels = labels;
        self
    }

    /// The budget of coalition evaluations (the two reference evaluations, all features absent
    /// and present, come on top, as in shap).
    pub fn nsamples(mut self, nsamples: impl Into<NSamples>) -> Self {
        self.nsamples = nsamples.into();
        self
    }

    /// The link function.
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// Feature selection before the regression (shap's `l1_reg`; default none here, while shap's
    /// default is `num_features(10)` since 0.47 and `"auto"` before; see [`FeatureSelection`]).
    pub fn l1_reg(mut self, l1_reg: FeatureSelection) -> Self {
        self.l1_reg = l1_reg;
        self
    }

    /// How many coalitions are passed to the model at once.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Seed of the coalition sampling.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The sampling scheme.
    pub fn sampling(mut self, sampling: SamplingScheme) -> Self {
        self.sampling = sampling;
        self
    }

    /// The regression: shap's plain one or with per-size intercepts.
    pub fn regression(mut self, regression: Regression) -> Self {
        self.regression = regression;
        self
    }

    /// Whether players the game reports as inert (e.g. superpixels equal to the background) get
    /// 0 without entering the regression.
    pub fn skip_inert_features(mut self, skip: bool) -> Self {
        self.skip_inert_features = skip;
        self
    }

    /// Validates the parameters.
    pub fn check(&self) -> Result<ValidKernelShapParams> {
        if let NSamples::Count(0) = self.nsamples {
            return Err(ShapError::param(
                "nsamples",
                0,
                "at least 1, or NSamples::Auto",
            ));
        }
        if let NSamples::Count(n) = self.nsamples {
            if n > MAX_NSAMPLES {
                return Err(ShapError::param(
                    "nsamples",
                    n,
                    format!("at most MAX_NSAMPLES = {MAX_NSAMPLES}"),
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(ShapError::param("batch_size", 0, "at least 1"));
        }
        match self.l1_reg {
            FeatureSelection::TopK(0) => {
                return Err(ShapError::param(
                    "l1_reg",
                    "TopK(0)",
                    "TopK(k) with k >= 1, or FeatureSelection::None",
                ));
            }
            FeatureSelection::Alpha(a) if !(a.is_finite() && a > 0.0) => {
                return Err(ShapError::param(
                    "l1_reg",
                    format!("Alpha({a})"),
                    "Alpha(a) with a positive, finite a, or FeatureSelection::None",
                ));
            }
            _ => {}
        }
        if let Regression::SizePolynomial(degree) = self.regression {
            if degree > MAX_SIZE_POLYNOMIAL_DEGREE {
                return Err(ShapError::param(
                    "regression",
                    format!("SizePolynomial({degree})"),
                    format!("a degree of at most {MAX_SIZE_POLYNOMIAL_DEGREE}"),
                ));
            }
        }
        if let Some(labels) = &self.labels {
            if labels.is_empty() {
                return Err(ShapError::param(
                    "labels",
                    "[]",
                    "at least one output index, or None for all outputs",
                ));
            }
        }
        Ok(ValidKernelShapParams(self.clone()))
    }
}

/// Validated [`KernelShapParams`]; explain with the methods in [`crate::algorithm`].
/// Deserialising runs [`KernelShapParams::check`], so a `batch_size` of 0 read from a file is an
/// error, not a checked value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "KernelShapParams")]
pub struct ValidKernelShapParams(KernelShapParams);

impl TryFrom<KernelShapParams> for ValidKernelShapParams {
    type Error = ShapError;
    fn try_from(p: KernelShapParams) -> Result<Self> {
        p.check()
    }
}

impl ValidKernelShapParams {
    /// Outputs to explain (`None`: all).
    pub fn labels(&self) -> Option<&[usize]> {
        self.0.labels.as_deref()
    }
    /// The sample budget.
    pub fn nsamples(&self) -> NSamples {
        self.0.nsamples
    }
    /// The link.
    pub fn link(&self) -> Link {
        self.0.link
    }
    /// Feature selection.
    pub fn l1_reg(&self) -> FeatureSelection {
        self.0.l1_reg
    }
    /// Batch size of model calls.
    pub fn batch_size(&self) -> usize {
        self.0.batch_size
    }
    /// Sampling seed.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }
    /// Sampling scheme.
    pub fn sampling(&self) -> SamplingScheme {
        self.0.sampling
    }
    /// The regression.
    pub fn regression(&self) -> Regression {
        self.0.regression
    }
    /// Whether inert players are skipped.
    pub fn skip_inert_features(&self) -> bool {
        self.0.skip_inert_features
    }
    /// The parameters as given.
    pub fn params(&self) -> &KernelShapParams {
        &self.0
    }
}

/// KernelSHAP on SLIC superpixels, dianna's `explain_image(model, image, labels,
/// method="KernelSHAP", nsamples, background, n_segments, compactness, sigma)`. Defaults as
/// dianna: `n_segments = 100`, `compactness = 10`, `sigma = 0`, background = channel mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageKernelShapParams {
    shap: KernelShapParams,
    slic: SlicParams,
    background: Background,
}

impl ImageKernelShapParams {
    /// dianna's defaults (see the type docs) with [`KernelShapParams::new`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces all KernelSHAP parameters.
    pub fn kernel_shap(mut self, shap: KernelShapParams) -> Self {
        self.shap = shap;
        self
    }

    /// Replaces all SLIC parameters.
    pub fn slic(mut self, slic: SlicParams) -> Self {
        self.slic = slic;
        self
    }

    /// Classes to explain; one attribution map each.
    pub fn labels(mut self, labels: impl Into<Vec<usize>>) -> Self {
        self.shap = self.shap.labels(Some(labels.into()));
        self
    }

    /// The budget of model evaluations.
    pub fn nsamples(mut self, nsamples: impl Into<NSamples>) -> Self {
        self.shap = self.shap.nsamples(nsamples);
        self
    }

    /// What absent superpixels show.
    pub fn background(mut self, background: Background) -> Self {
        self.background = background;
        self
    }

    /// Approximate number of superpixels.
    pub fn n_segments(mut self, n_segments: usize) -> Self {
        self.slic = self.slic.n_segments(n_segments);
        self
    }

    /// SLIC colour/space balance.
    pub fn compactness(mut self, compactness: f32) -> Self {
        self.slic = self.slic.compactness(compactness);
        self
    }

    /// SLIC Gaussian pre-smoothing width.
    pub fn sigma(mut self, sigma: f32) -> Self {
        self.slic = self.slic.sigma(sigma);
        self
    }

    /// Link function.
    pub fn link(mut self, link: Link) -> Self {
        self.shap = self.shap.link(link);
        self
    }

    /// Sampling scheme.
    pub fn sampling(mut self, sampling: SamplingScheme) -> Self {
        self.shap = self.shap.sampling(sampling);
        self
    }

    /// Sampling seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.shap = self.shap.seed(seed);
        self
    }

    /// The regression.
    pub fn regression(mut self, regression: Regression) -> Self {
        self.shap = self.shap.regression(regression);
        self
    }

    /// Batch size of model calls.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.shap = self.shap.batch_size(batch_size);
        self
    }

    /// Feature selection.
    pub fn l1_reg(mut self, l1_reg: FeatureSelection) -> Self {
        self.shap = self.shap.l1_reg(l1_reg);
        self
    }

    /// Whether superpixels equal to the background are left out (they get 0).
    pub fn skip_inert_features(mut self, skip: bool) -> Self {
        self.shap = self.shap.skip_inert_features(skip);
        self
    }

    /// Validates everything.
    pub fn check(&self) -> Result<ValidImageKernelShapParams> {
        let shap = self.shap.check()?;
        let slic = self.slic.check()?;
        if let Background::Value(v) = self.background {
            if !v.is_finite() {
                return Err(ShapError::param("background", v, "a finite value"));
            }
        }
        Ok(ValidImageKernelShapParams {
            shap,
            slic,
            background: self.background.clone(),
            params: self.clone(),
        })
    }
}

/// Validated [`ImageKernelShapParams`]; explain with
/// [`ValidImageKernelShapParams::explain`](crate::algorithm).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidImageKernelShapParams {
    pub(crate) shap: ValidKernelShapParams,
    pub(crate) slic: ValidSlicParams,
    pub(crate) background: Background,
    pub(crate) params: ImageKernelShapParams,
}

impl ValidImageKernelShapParams {
    /// The KernelSHAP part.
    pub fn kernel_shap(&self) -> &ValidKernelShapParams {
        &self.shap
    }
    /// The SLIC part.
    pub fn slic(&self) -> &ValidSlicParams {
        &self.slic
    }
    /// The background.
    pub fn background(&self) -> &Background {
        &self.background
    }
    /// The parameters as given.
    pub fn params(&self) -> &ImageKernelShapParams {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_shap_and_dianna() {
        let p = KernelShapParams::new().check().unwrap();
        assert_eq!(p.nsamples().resolve(196), 2 * 196 + 2048);
        assert_eq!(p.l1_reg(), FeatureSelection::None);
        assert_eq!(p.link(), Link::Identity);
        let d = KernelShapParams::shap_defaults().check().unwrap();
        assert_eq!(d.l1_reg(), FeatureSelection::TopK(10));
        assert!(d.skip_inert_features());
        assert_eq!(d.sampling(), SamplingScheme::Shap);
        let s = KernelShapParams::shap_compatible().check().unwrap();
        assert_eq!(s.sampling(), SamplingScheme::Shap);
        assert_eq!(s.regression(), Regression::Plain);
        assert_eq!(p.regression(), Regression::SizePolynomial(4));
        assert!(!s.skip_inert_features());
        let img = ImageKernelShapParams::new().check().unwrap();
        assert_eq!(img.slic().n_segments(), 100);
        assert_eq!(img.slic().compactness(), 10.0);
        assert_eq!(img.slic().sigma(), 0.0);
        assert_eq!(img.background(), &Background::ChannelMean);
    }

    #[test]
    fn invalid_values_are_typed_errors() {
        let e = KernelShapParams::new().nsamples(0).check().unwrap_err();
        assert!(e.to_string().contains("nsamples"), "{e}");
        let e = KernelShapParams::new()
            .nsamples(MAX_NSAMPLES + 1)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("MAX_NSAMPLES"), "{e}");
        assert!(KernelShapParams::new()
            .nsamples(MAX_NSAMPLES)
            .check()
            .is_ok());
        assert!(KernelShapParams::new().batch_size(0).check().is_err());
        assert!(KernelShapParams::new()
            .l1_reg(FeatureSelection::TopK(0))
            .check()
            .is_err());
        assert!(KernelShapParams::new()
            .l1_reg(FeatureSelection::Alpha(-1.0))
            .check()
            .is_err());
        assert!(KernelShapParams::new()
            .labels(Some(vec![]))
            .check()
            .is_err());
        assert!(ImageKernelShapParams::new()
            .background(Background::Value(f32::NAN))
            .check()
            .is_err());
        assert!(ImageKernelShapParams::new().n_segments(0).check().is_err());
    }

    #[test]
    fn logit_link() {
        assert_eq!(Link::Logit.apply(0.5), Some(0.0));
        assert!(Link::Logit.apply(1.0).unwrap().is_finite());
        assert_eq!(Link::Logit.apply(1.5), None);
        assert_eq!(Link::Identity.apply(1.5), Some(1.5));
    }
}
