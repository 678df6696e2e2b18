//! Parameters of every metric: a builder per metric family (`*Params`, with Quantus' defaults
//! where Quantus has the metric) checked once into a `Valid*Params` type. The valid types run
//! the same checks when they are deserialised, so a file cannot hand over unchecked values.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// What a removed feature is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// A fixed value (Quantus: a number passed as `perturb_baseline`).
    Value(f32),
    /// The input's minimum (Quantus' `"black"`, its default).
    Black,
    /// The input's maximum (Quantus' `"white"`).
    White,
    /// The mean of the unperturbed input (Quantus' `"mean"` takes the mean of the partly
    /// perturbed array at every step; here it is fixed, so that every step removes towards one
    /// reference).
    Mean,
    /// The input blurred channel by channel with a Gaussian of this standard deviation in pixels
    /// (RISE's insertion baseline; images only).
    Blur {
        /// Standard deviation in pixels, > 0.
        sigma: f32,
    },
}

impl Baseline {
    fn check(self, name: &'static str) -> Result<()> {
        match self {
            Baseline::Value(v) if !v.is_finite() => {
                Err(EvalError::param(name, self, "a finite fill value"))
            }
            Baseline::Blur { sigma } if !(sigma.is_finite() && sigma > 0.0 && sigma <= 1e3) => Err(
                EvalError::param(name, self, "a blur sigma in (0, 1000] pixels"),
            ),
            _ => Ok(()),
        }
    }
}

/// The units that are removed together, and ranked by their summed attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Features {
    /// Every element of the input on its own (Quantus' pixel flipping on the flattened input).
    Elements,
    /// All channels of a pixel together, ranked by the map summed over its channels; for an
    /// input that is not `[c, h, w]` the same as `Elements`.
    #[default]
    Pixels,
    /// The segments of a label map `[h, w]` given with the input (superpixels), all channels
    /// together, ranked by the map summed over the segment.
    Segments,
}

/// The similarity of two explanations (MPRT) or of two series (faithfulness correlation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    /// Spearman's rank correlation, ties ranked by their average (scipy's `spearmanr`;
    /// Quantus' `correlation_spearman`, MPRT's default).
    Spearman,
    /// Pearson's correlation (Quantus' `correlation_pearson`, faithfulness correlation's
    /// default).
    Pearson,
    /// The structural similarity index of the two flattened series (Quantus' `ssim`, which
    /// calls scikit-image's `structural_similarity` on the flattened maps MPRT passes it): a
    /// window of 7 values, data range the span of both series, `K1 = 0.01`, `K2 = 0.03`, sample
    /// covariances, the mean over the windows that fit.
    Ssim,
}

/// A vector norm of a flattened explanation (Quantus' `norm_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// The Euclidean norm (Quantus' `fro_norm`, its default, and `l2_norm`).
    #[default]
    Fro,
    /// The largest absolute value (Quantus' `linf_norm`).
    Linf,
}

/// How infidelity perturbs the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfidelityPerturbation {
    /// Quantus' `Infidelity` with its default perturbation: for each patch size, square patches
    /// in raster order are replaced by the baseline one more at a time (cumulatively), and the
    /// squared errors between the output drops and the attribution sums are averaged over the
    /// patches, then over the patch sizes. Deterministic.
    Squares {
        /// Patch side lengths in pixels (Quantus' `perturb_patch_sizes`, default `[4]`).
        patch_sizes: Vec<usize>,
        /// What the patches are replaced with (Quantus' default `"black"`).
        baseline: Baseline,
    },
    /// Yeh et al.'s Gaussian perturbation (captum's usual choice): `I ~ N(0, std²)` per element,
    /// infidelity `= mean_k (Σ a·I_k − (f(x) − f(x − I_k)))²` over `n_samples` seeded draws.
    Gaussian {
        /// Standard deviation of the noise, > 0.
        std: f32,
        /// Number of perturbations, ≥ 1.
        n_samples: usize,
    },
}

/// Default batch size of the model calls.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Largest batch size accepted.
pub const MAX_BATCH_SIZE: usize = 1 << 16;
/// Largest number of random draws (runs, samples) accepted.
pub const MAX_SAMPLES: usize = 1 << 20;

fn check_batch_size(b: usize) -> Result<()> {
    if b == 0 || b > MAX_BATCH_SIZE {
        return Err(EvalError::param(
            "batch_size",
            b,
            "1..=65536 inputs per model call",
        ));
    }
    Ok(())
}

fn check_count(name: &'static str, n: usize) -> Result<()> {
    if n == 0 || n > MAX_SAMPLES {
        return Err(EvalError::param(name, n, "a count in 1..=2^20"));
    }
    Ok(())
}

/// Implements Serialize (plain fields) and Deserialize (fields, then the builder's `check`).
macro_rules! checked_serde {
    ($valid:ident, $builder:ident) => {
        impl Serialize for $valid {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                $valid::serialize(self, s)
            }
        }

        impl<'de> Deserialize<'de> for $valid {
            /// Reads the fields, then validates them with the builder's `check`.
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let unchecked = $valid::deserialize(d)?;
                $builder(unchecked)
                    .check()
                    .map_err(serde::de::Error::custom)
            }
        }

        impl From<$valid> for $builder {
            fn from(v: $valid) -> Self {
                $builder(v)
            }
        }
    };
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.0.$name = value;
            self
        }
    };
}

macro_rules! getter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self) -> $ty {
            self.$name.clone()
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Curves: deletion / insertion and pixel flipping.

/// Validated parameters of the perturbation curves: deletion, insertion (Petsiuk et al. 2018)
/// and pixel flipping (Quantus' `PixelFlipping`). Build them with [`CurveParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct CurveValidParams {
    pub(crate) features: Features,
    pub(crate) baseline: Baseline,
    pub(crate) features_in_step: usize,
    #[serde(default)]
    pub(crate) max_steps: Option<usize>,
    pub(crate) abs: bool,
    pub(crate) batch_size: usize,
}

impl CurveValidParams {
    getter!(/// The units removed together.
        features: Features);
    getter!(/// What removed features are replaced with (deletion) or start from (insertion).
        baseline: Baseline);
    getter!(/// Features (pixels, elements or segments) removed per step of the curve.
        features_in_step: usize);
    getter!(/// At most this many steps: the step grows to `ceil(features / max_steps)` when
        /// `features_in_step` would make more (large images), `None` for no bound.
        max_steps: Option<usize>);
    getter!(/// Whether features are ranked by the absolute value of their attribution.
        abs: bool);
    getter!(/// Inputs per model call.
        batch_size: usize);
}

/// Builder for [`CurveValidParams`], with Quantus' `PixelFlipping` defaults: one feature per
/// step, baseline `"black"` (the input's minimum), signed attributions; features are pixels.
///
/// ```
/// use xai_eval::{Baseline, CurveParams, Features};
/// let p = CurveParams::new().features(Features::Elements).baseline(Baseline::Value(0.0))
///     .features_in_step(16).check().unwrap();
/// assert_eq!(p.features_in_step(), 16);
/// assert!(CurveParams::new().features_in_step(0).check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CurveParams(CurveValidParams);

impl Default for CurveParams {
    fn default() -> Self {
        Self::new()
    }
}

impl CurveParams {
    /// Quantus' defaults.
    pub fn new() -> Self {
        Self(CurveValidParams {
            features: Features::Pixels,
            baseline: Baseline::Black,
            features_in_step: 1,
            max_steps: None,
            abs: false,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// The units removed together (default pixels).
        features: Features);
    setter!(/// The removal value or blur baseline (default black, the input's minimum).
        baseline: Baseline);
    setter!(/// Features removed per step (Quantus' `features_in_step`, default 1).
        features_in_step: usize);
    setter!(/// At most this many steps per curve (default `None`: `features_in_step` decides);
        /// e.g. `Some(100)` removes 1% of the features per step on any input size.
        max_steps: Option<usize>);
    setter!(/// Rank by |attribution| (Quantus' `abs`, default false).
        abs: bool);
    setter!(/// Inputs per model call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<CurveValidParams> {
        let p = &self.0;
        p.baseline.check("baseline")?;
        if p.features_in_step == 0 {
            return Err(EvalError::param(
                "features_in_step",
                p.features_in_step,
                "at least 1 feature per step",
            ));
        }
        if let Some(m) = p.max_steps {
            if m == 0 || m > MAX_SAMPLES {
                return Err(EvalError::param("max_steps", m, "None, or 1..=2^20 steps"));
            }
        }
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

impl CurveValidParams {
    /// The features per step on an input of `n_features` features.
    pub(crate) fn step_for(&self, n_features: usize) -> usize {
        match self.max_steps {
            Some(m) => self.features_in_step.max(n_features.div_ceil(m)),
            None => self.features_in_step,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Region perturbation.

/// Validated parameters of region perturbation (Samek et al. 2016; Quantus'
/// `RegionPerturbation`). Build them with [`RegionParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RegionValidParams {
    pub(crate) patch_size: usize,
    pub(crate) regions_evaluation: usize,
    pub(crate) baseline: Baseline,
    pub(crate) batch_size: usize,
}

impl RegionValidParams {
    getter!(/// Side of the square regions in pixels.
        patch_size: usize);
    getter!(/// How many regions are removed (the curve's length, at most the number of regions).
        regions_evaluation: usize);
    getter!(/// What removed regions are replaced with.
        baseline: Baseline);
    getter!(/// Inputs per model call.
        batch_size: usize);
}

/// Builder for [`RegionValidParams`] with Quantus' defaults: 8 x 8 patches, 100 regions,
/// baseline `"black"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionParams(RegionValidParams);

impl Default for RegionParams {
    fn default() -> Self {
        Self::new()
    }
}

impl RegionParams {
    /// Quantus' defaults.
    pub fn new() -> Self {
        Self(RegionValidParams {
            patch_size: 8,
            regions_evaluation: 100,
            baseline: Baseline::Black,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// Side of the square regions (default 8).
        patch_size: usize);
    setter!(/// Regions removed (default 100).
        regions_evaluation: usize);
    setter!(/// Replacement (default black).
        baseline: Baseline);
    setter!(/// Inputs per model call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<RegionValidParams> {
        let p = &self.0;
        if p.patch_size == 0 || p.patch_size > 4096 {
            return Err(EvalError::param(
                "patch_size",
                p.patch_size,
                "a patch side in 1..=4096 pixels",
            ));
        }
        check_count("regions_evaluation", p.regions_evaluation)?;
        p.baseline.check("baseline")?;
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// ROAD.

/// Validated parameters of ROAD (Rong et al. 2022; Quantus' `ROAD`). Build them with
/// [`RoadParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RoadValidParams {
    pub(crate) percentages: Vec<f64>,
    pub(crate) noise: f32,
    pub(crate) seed: u64,
    pub(crate) max_iterations: usize,
    pub(crate) tolerance: f64,
    pub(crate) batch_size: usize,
}

impl RoadValidParams {
    getter!(/// Percentages of the pixels imputed, one point of the curve each.
        percentages: Vec<f64>);
    getter!(/// Standard deviation of the Gaussian noise added to the imputed values.
        noise: f32);
    getter!(/// Seed of the noise.
        seed: u64);
    getter!(/// Iteration bound of the conjugate-gradient solver.
        max_iterations: usize);
    getter!(/// Relative residual at which the solver stops.
        tolerance: f64);
    getter!(/// Inputs per model call.
        batch_size: usize);
}

/// Builder for [`RoadValidParams`] with Quantus' defaults: percentages 1, 3, ..., 99, noise
/// 0.01; the solver stops at a relative residual of 1e-8 or after 2,000 iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct RoadParams(RoadValidParams);

impl Default for RoadParams {
    fn default() -> Self {
        Self::new()
    }
}

impl RoadParams {
    /// Quantus' defaults, seed 0.
    pub fn new() -> Self {
        Self(RoadValidParams {
            percentages: (1..100).step_by(2).map(f64::from).collect(),
            noise: 0.01,
            seed: 0,
            max_iterations: 2000,
            tolerance: 1e-8,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// Percentages of pixels imputed (each in (0, 100]).
        percentages: Vec<f64>);
    setter!(/// Noise standard deviation (default 0.01; 0 makes ROAD deterministic).
        noise: f32);
    setter!(/// Seed of the noise.
        seed: u64);
    setter!(/// Conjugate-gradient iteration bound (default 2,000).
        max_iterations: usize);
    setter!(/// Conjugate-gradient relative residual (default 1e-8).
        tolerance: f64);
    setter!(/// Inputs per model call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<RoadValidParams> {
        let p = &self.0;
        if p.percentages.is_empty()
            || p.percentages.len() > 10_000
            || p.percentages
                .iter()
                .any(|q| !(q.is_finite() && *q > 0.0 && *q <= 100.0))
        {
            return Err(EvalError::param(
                "percentages",
                &p.percentages,
                "1 to 10,000 percentages in (0, 100]",
            ));
        }
        if !(p.noise.is_finite() && p.noise >= 0.0) {
            return Err(EvalError::param(
                "noise",
                p.noise,
                "a finite standard deviation >= 0",
            ));
        }
        check_count("max_iterations", p.max_iterations)?;
        if !(p.tolerance.is_finite() && p.tolerance > 0.0 && p.tolerance < 1.0) {
            return Err(EvalError::param(
                "tolerance",
                p.tolerance,
                "a relative residual in (0, 1)",
            ));
        }
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Infidelity.

/// Validated parameters of infidelity (Yeh et al. 2019; Quantus' `Infidelity`). Build them with
/// [`InfidelityParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct InfidelityValidParams {
    pub(crate) perturbation: InfidelityPerturbation,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
}

impl InfidelityValidParams {
    getter!(/// The perturbation.
        perturbation: InfidelityPerturbation);
    getter!(/// Seed of the Gaussian perturbations.
        seed: u64);
    getter!(/// Inputs per model call.
        batch_size: usize);
}

/// Builder for [`InfidelityValidParams`], with Quantus' default: square patches of 4 pixels
/// replaced by the input's minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct InfidelityParams(InfidelityValidParams);

impl Default for InfidelityParams {
    fn default() -> Self {
        Self::new()
    }
}

impl InfidelityParams {
    /// Quantus' defaults, seed 0.
    pub fn new() -> Self {
        Self(InfidelityValidParams {
            perturbation: InfidelityPerturbation::Squares {
                patch_sizes: vec![4],
                baseline: Baseline::Black,
            },
            seed: 0,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// The perturbation.
        perturbation: InfidelityPerturbation);
    setter!(/// Seed of the Gaussian perturbations.
        seed: u64);
    setter!(/// Inputs per model call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<InfidelityValidParams> {
        let p = &self.0;
        match &p.perturbation {
            InfidelityPerturbation::Squares {
                patch_sizes,
                baseline,
            } => {
                if patch_sizes.is_empty()
                    || patch_sizes.len() > 64
                    || patch_sizes.iter().any(|s| *s == 0 || *s > 4096)
                {
                    return Err(EvalError::param(
                        "perturbation.patch_sizes",
                        patch_sizes,
                        "1 to 64 patch sides in 1..=4096",
                    ));
                }
                baseline.check("perturbation.baseline")?;
            }
            InfidelityPerturbation::Gaussian { std, n_samples } => {
                if !(std.is_finite() && *std > 0.0) {
                    return Err(EvalError::param(
                        "perturbation.std",
                        std,
                        "a finite standard deviation > 0",
                    ));
                }
                check_count("perturbation.n_samples", *n_samples)?;
            }
        }
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Sensitivity.

/// Validated parameters of max- and avg-sensitivity (Yeh et al. 2019; Quantus'
/// `MaxSensitivity` / `AvgSensitivity`). Build them with [`SensitivityParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct SensitivityValidParams {
    pub(crate) nr_samples: usize,
    pub(crate) lower_bound: f32,
    pub(crate) norm_numerator: Norm,
    pub(crate) norm_denominator: Norm,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
}

impl SensitivityValidParams {
    getter!(/// Number of noisy inputs.
        nr_samples: usize);
    getter!(/// Noise radius: each element gets `U(-lower_bound, lower_bound)`.
        lower_bound: f32);
    getter!(/// Norm of the explanation's change.
        norm_numerator: Norm);
    getter!(/// Norm of the explanation.
        norm_denominator: Norm);
    getter!(/// Seed of the noise.
        seed: u64);
    getter!(/// Inputs per explainer call.
        batch_size: usize);
}

/// Builder for [`SensitivityValidParams`] with Quantus' defaults: 200 samples, noise
/// `U(-0.2, 0.2)`, Frobenius norms.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityParams(SensitivityValidParams);

impl Default for SensitivityParams {
    fn default() -> Self {
        Self::new()
    }
}

impl SensitivityParams {
    /// Quantus' defaults, seed 0.
    pub fn new() -> Self {
        Self(SensitivityValidParams {
            nr_samples: 200,
            lower_bound: 0.2,
            norm_numerator: Norm::Fro,
            norm_denominator: Norm::Fro,
            seed: 0,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// Number of noisy inputs (default 200).
        nr_samples: usize);
    setter!(/// Noise radius (default 0.2).
        lower_bound: f32);
    setter!(/// Norm of the change (default Frobenius).
        norm_numerator: Norm);
    setter!(/// Norm of the explanation (default Frobenius).
        norm_denominator: Norm);
    setter!(/// Seed of the noise.
        seed: u64);
    setter!(/// Inputs per explainer call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<SensitivityValidParams> {
        let p = &self.0;
        check_count("nr_samples", p.nr_samples)?;
        if !(p.lower_bound.is_finite() && p.lower_bound > 0.0) {
            return Err(EvalError::param(
                "lower_bound",
                p.lower_bound,
                "a finite noise radius > 0",
            ));
        }
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Faithfulness correlation.

/// Validated parameters of faithfulness correlation (Bhatt et al. 2020; Quantus'
/// `FaithfulnessCorrelation`). Build them with [`FaithfulnessCorrelationParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct FaithfulnessCorrelationValidParams {
    pub(crate) subset_size: usize,
    pub(crate) nr_runs: usize,
    pub(crate) baseline: Baseline,
    pub(crate) similarity: Similarity,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
}

impl FaithfulnessCorrelationValidParams {
    getter!(/// Elements replaced per run.
        subset_size: usize);
    getter!(/// Number of random subsets.
        nr_runs: usize);
    getter!(/// Replacement value.
        baseline: Baseline);
    getter!(/// Correlation of attribution sums and output drops.
        similarity: Similarity);
    getter!(/// Seed of the subsets.
        seed: u64);
    getter!(/// Inputs per model call.
        batch_size: usize);
}

/// Builder for [`FaithfulnessCorrelationValidParams`] with Quantus' defaults: 100 runs of 224
/// elements, baseline `"black"`, Pearson correlation.
#[derive(Debug, Clone, PartialEq)]
pub struct FaithfulnessCorrelationParams(FaithfulnessCorrelationValidParams);

impl Default for FaithfulnessCorrelationParams {
    fn default() -> Self {
        Self::new()
    }
}

impl FaithfulnessCorrelationParams {
    /// Quantus' defaults, seed 0.
    pub fn new() -> Self {
        Self(FaithfulnessCorrelationValidParams {
            subset_size: 224,
            nr_runs: 100,
            baseline: Baseline::Black,
            similarity: Similarity::Pearson,
            seed: 0,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// Elements per subset (default 224; at most the input's size).
        subset_size: usize);
    setter!(/// Runs (default 100; at least 2 for a correlation).
        nr_runs: usize);
    setter!(/// Replacement (default black).
        baseline: Baseline);
    setter!(/// Correlation (default Pearson).
        similarity: Similarity);
    setter!(/// Seed of the subsets.
        seed: u64);
    setter!(/// Inputs per model call (default 64).
        batch_size: usize);

    /// Checks every parameter (the subset size against the input happens when it is known).
    pub fn check(&self) -> Result<FaithfulnessCorrelationValidParams> {
        let p = &self.0;
        check_count("subset_size", p.subset_size)?;
        if p.nr_runs < 2 || p.nr_runs > MAX_SAMPLES {
            return Err(EvalError::param(
                "nr_runs",
                p.nr_runs,
                "2..=2^20 runs (a correlation needs two points)",
            ));
        }
        p.baseline.check("baseline")?;
        check_batch_size(p.batch_size)?;
        Ok(p.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// MPRT.

/// Validated parameters of the model-parameter randomisation test (Adebayo et al. 2018;
/// Quantus' `MPRT`). Build them with [`MprtParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct MprtValidParams {
    pub(crate) similarity: Similarity,
    pub(crate) abs: bool,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
}

impl MprtValidParams {
    getter!(/// Similarity of the maps before and after randomisation.
        similarity: Similarity);
    getter!(/// Whether maps are compared by absolute value (Quantus' default).
        abs: bool);
    getter!(/// Seed of the random weights.
        seed: u64);
    getter!(/// Inputs per explainer call.
        batch_size: usize);
}

/// Builder for [`MprtValidParams`] with Quantus' defaults: Spearman rank correlation of the
/// absolute maps, seed 42.
#[derive(Debug, Clone, PartialEq)]
pub struct MprtParams(MprtValidParams);

impl Default for MprtParams {
    fn default() -> Self {
        Self::new()
    }
}

impl MprtParams {
    /// Quantus' defaults.
    pub fn new() -> Self {
        Self(MprtValidParams {
            similarity: Similarity::Spearman,
            abs: true,
            seed: 42,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    setter!(/// Similarity (default Spearman).
        similarity: Similarity);
    setter!(/// Compare absolute maps (default true).
        abs: bool);
    setter!(/// Seed of the random weights (default 42).
        seed: u64);
    setter!(/// Inputs per explainer call (default 64).
        batch_size: usize);

    /// Checks every parameter.
    pub fn check(&self) -> Result<MprtValidParams> {
        check_batch_size(self.0.batch_size)?;
        Ok(self.0.clone())
    }
}

checked_serde!(CurveValidParams, CurveParams);
checked_serde!(RegionValidParams, RegionParams);
checked_serde!(RoadValidParams, RoadParams);
checked_serde!(InfidelityValidParams, InfidelityParams);
checked_serde!(SensitivityValidParams, SensitivityParams);
checked_serde!(
    FaithfulnessCorrelationValidParams,
    FaithfulnessCorrelationParams
);
checked_serde!(MprtValidParams, MprtParams);
