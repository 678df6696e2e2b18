//! Hyperparameters: one builder per method, with captum's defaults, checked once into a
//! `*ValidParams` type. The checked types serialise (into an explanation's `meta`) and
//! deserialise through the same checks, so a file cannot hand a method an unchecked value.

use serde::{Deserialize, Serialize};

use crate::error::{AttributionError, Result};

/// Deserialising a checked type runs its builder's `check`.
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
    };
}

/// Default number of rows (inputs, interpolants, perturbed copies) per model call.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Largest `n_steps` / `nt_samples` / `n_samples` accepted (the quadrature and the loops are
/// linear or quadratic in it; captum's examples use up to a few hundred).
pub const MAX_STEPS: usize = 10_000;

fn check_batch_size(name: &'static str, b: usize) -> Result<()> {
    if b == 0 {
        return Err(AttributionError::param(name, 0, "at least 1"));
    }
    Ok(())
}

fn check_count(name: &'static str, v: usize, min: usize) -> Result<()> {
    if v < min || v > MAX_STEPS {
        return Err(AttributionError::param(
            name,
            v,
            format!("{min}..={MAX_STEPS}"),
        ));
    }
    Ok(())
}

fn check_stdev(name: &'static str, v: f32) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(AttributionError::param(name, v, "a finite number >= 0"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Checked parameters of [`crate::Saliency`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct SaliencyValidParams {
    pub(crate) abs: bool,
    pub(crate) batch_size: usize,
}
checked_serde!(SaliencyValidParams, SaliencyParams);

impl SaliencyValidParams {
    /// Whether the gradient's absolute value is returned (captum's `abs`, default `true`).
    pub fn abs(&self) -> bool {
        self.abs
    }
    /// Rows per model call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// Builder for [`crate::Saliency`] (Simonyan, Vedaldi and Zisserman 2014, "Deep Inside
/// Convolutional Networks"): `abs = true` (captum's default), `batch_size = 64`.
#[derive(Debug, Clone, PartialEq)]
pub struct SaliencyParams(SaliencyValidParams);

impl Default for SaliencyParams {
    fn default() -> Self {
        Self::new()
    }
}

impl SaliencyParams {
    /// captum's defaults.
    pub fn new() -> Self {
        Self(SaliencyValidParams {
            abs: true,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    /// `|∂f_c/∂x|` (true, default) or the signed gradient.
    pub fn abs(mut self, abs: bool) -> Self {
        self.0.abs = abs;
        self
    }
    /// Rows per model call (default 64, at least 1).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.0.batch_size = b;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<SaliencyValidParams> {
        check_batch_size("batch_size", self.0.batch_size)?;
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// Checked parameters of [`crate::InputXGradient`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct InputXGradientValidParams {
    pub(crate) batch_size: usize,
}
checked_serde!(InputXGradientValidParams, InputXGradientParams);

impl InputXGradientValidParams {
    /// Rows per model call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// Builder for [`crate::InputXGradient`] (Shrikumar et al. 2016, "Not Just a Black Box"):
/// `batch_size = 64`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputXGradientParams(InputXGradientValidParams);

impl Default for InputXGradientParams {
    fn default() -> Self {
        Self::new()
    }
}

impl InputXGradientParams {
    /// Defaults.
    pub fn new() -> Self {
        Self(InputXGradientValidParams {
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    /// Rows per model call (default 64, at least 1).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.0.batch_size = b;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<InputXGradientValidParams> {
        check_batch_size("batch_size", self.0.batch_size)?;
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// How the path integral of Integrated Gradients is approximated (captum's `method`, its
/// `approximation_methods.py`): `n` points `α_s` in `[0, 1]` with weights `w_s`,
/// `∫₀¹ g(α) dα ≈ Σ_s w_s g(α_s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationMethod {
    /// `α_s = s/n`, `s = 0..n-1`, `w_s = 1/n` (needs `n >= 2`, as captum).
    RiemannLeft,
    /// `α_s = (s+1)/n`, `w_s = 1/n`.
    RiemannRight,
    /// `α_s = (s + ½)/n`, `w_s = 1/n`.
    RiemannMiddle,
    /// `α_s = s/(n-1)`, `w_s = 1/n` with the two ends halved (captum's trapezoid: the weights
    /// sum to `1 - 1/n`).
    RiemannTrapezoid,
    /// Gauss–Legendre quadrature with `n` nodes (numpy's `leggauss(n)` mapped to `[0, 1]`:
    /// `α = (1 + x)/2`, `w = w_GL/2`); captum's default.
    #[default]
    #[serde(rename = "gausslegendre")]
    GaussLegendre,
}

impl IntegrationMethod {
    /// captum's name (`riemann_left`, ..., `gausslegendre`).
    pub fn name(self) -> &'static str {
        match self {
            IntegrationMethod::RiemannLeft => "riemann_left",
            IntegrationMethod::RiemannRight => "riemann_right",
            IntegrationMethod::RiemannMiddle => "riemann_middle",
            IntegrationMethod::RiemannTrapezoid => "riemann_trapezoid",
            IntegrationMethod::GaussLegendre => "gausslegendre",
        }
    }

    /// Parses captum's name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "riemann_left" => IntegrationMethod::RiemannLeft,
            "riemann_right" => IntegrationMethod::RiemannRight,
            "riemann_middle" => IntegrationMethod::RiemannMiddle,
            "riemann_trapezoid" => IntegrationMethod::RiemannTrapezoid,
            "gausslegendre" => IntegrationMethod::GaussLegendre,
            other => return Err(AttributionError::param(
                "method",
                format!("`{other}`"),
                "riemann_left, riemann_right, riemann_middle, riemann_trapezoid or gausslegendre",
            )),
        })
    }

    fn min_steps(self) -> usize {
        match self {
            IntegrationMethod::GaussLegendre => 1,
            _ => 2,
        }
    }
}

impl std::fmt::Display for IntegrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Checked parameters of [`crate::IntegratedGradients`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct IntegratedGradientsValidParams {
    pub(crate) n_steps: usize,
    pub(crate) method: IntegrationMethod,
    pub(crate) internal_batch_size: usize,
    pub(crate) multiply_by_inputs: bool,
}
checked_serde!(IntegratedGradientsValidParams, IntegratedGradientsParams);

impl IntegratedGradientsValidParams {
    /// Points on the path.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }
    /// The quadrature.
    pub fn method(&self) -> IntegrationMethod {
        self.method
    }
    /// Interpolants per model call.
    pub fn internal_batch_size(&self) -> usize {
        self.internal_batch_size
    }
    /// Whether the integrated gradient is multiplied by `x - baseline` (captum's
    /// `multiply_by_inputs`, default true; false gives the "local" variant).
    pub fn multiply_by_inputs(&self) -> bool {
        self.multiply_by_inputs
    }
}

/// Builder for [`crate::IntegratedGradients`] (Sundararajan, Taly and Yan 2017, "Axiomatic
/// Attribution for Deep Networks"): `n_steps = 50`, `method = gausslegendre` (captum's
/// defaults), `internal_batch_size = 64` (captum's default evaluates all `n · n_steps`
/// interpolants at once; here at most this many go to the model at a time and the weighted
/// gradient sums are accumulated batch by batch), `multiply_by_inputs = true`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegratedGradientsParams(IntegratedGradientsValidParams);

impl Default for IntegratedGradientsParams {
    fn default() -> Self {
        Self::new()
    }
}

impl IntegratedGradientsParams {
    /// captum's defaults (and 64 interpolants per model call).
    pub fn new() -> Self {
        Self(IntegratedGradientsValidParams {
            n_steps: 50,
            method: IntegrationMethod::GaussLegendre,
            internal_batch_size: DEFAULT_BATCH_SIZE,
            multiply_by_inputs: true,
        })
    }
    /// Points on the path (default 50; at least 2 for the Riemann rules, 1 for Gauss–Legendre;
    /// at most [`MAX_STEPS`]).
    pub fn n_steps(mut self, n: usize) -> Self {
        self.0.n_steps = n;
        self
    }
    /// The quadrature (default Gauss–Legendre).
    pub fn method(mut self, m: IntegrationMethod) -> Self {
        self.0.method = m;
        self
    }
    /// Interpolants per model call (default 64, at least 1): bounds memory.
    pub fn internal_batch_size(mut self, b: usize) -> Self {
        self.0.internal_batch_size = b;
        self
    }
    /// Multiply by `x - baseline` (default true).
    pub fn multiply_by_inputs(mut self, yes: bool) -> Self {
        self.0.multiply_by_inputs = yes;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<IntegratedGradientsValidParams> {
        let p = &self.0;
        if p.n_steps < p.method.min_steps() || p.n_steps > MAX_STEPS {
            return Err(AttributionError::param(
                "n_steps",
                p.n_steps,
                format!("{}..={MAX_STEPS} for {}", p.method.min_steps(), p.method),
            ));
        }
        check_batch_size("internal_batch_size", p.internal_batch_size)?;
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// How NoiseTunnel combines the attributions of the noisy copies (captum's `nt_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseTunnelType {
    /// The mean `E[a]` (Smilkov et al. 2017, SmoothGrad).
    #[default]
    Smoothgrad,
    /// The mean of squares `E[a²]`.
    SmoothgradSq,
    /// The variance `E[a²] − E[a]²` (Adebayo et al. 2018, VarGrad).
    Vargrad,
}

impl NoiseTunnelType {
    /// captum's name.
    pub fn name(self) -> &'static str {
        match self {
            NoiseTunnelType::Smoothgrad => "smoothgrad",
            NoiseTunnelType::SmoothgradSq => "smoothgrad_sq",
            NoiseTunnelType::Vargrad => "vargrad",
        }
    }

    /// Parses captum's name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "smoothgrad" => NoiseTunnelType::Smoothgrad,
            "smoothgrad_sq" => NoiseTunnelType::SmoothgradSq,
            "vargrad" => NoiseTunnelType::Vargrad,
            other => {
                return Err(AttributionError::param(
                    "nt_type",
                    format!("`{other}`"),
                    "smoothgrad, smoothgrad_sq or vargrad",
                ))
            }
        })
    }
}

/// Checked parameters of [`crate::NoiseTunnel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct NoiseTunnelValidParams {
    pub(crate) nt_type: NoiseTunnelType,
    pub(crate) nt_samples: usize,
    pub(crate) stdevs: f32,
    pub(crate) nt_samples_batch_size: Option<usize>,
    pub(crate) seed: u64,
}
checked_serde!(NoiseTunnelValidParams, NoiseTunnelParams);

impl NoiseTunnelValidParams {
    /// How the noisy attributions are combined.
    pub fn nt_type(&self) -> NoiseTunnelType {
        self.nt_type
    }
    /// Noisy copies per input.
    pub fn nt_samples(&self) -> usize {
        self.nt_samples
    }
    /// Standard deviation of the Gaussian noise.
    pub fn stdevs(&self) -> f32 {
        self.stdevs
    }
    /// Noisy copies of one input handed to the wrapped method at once (all when `None`).
    pub fn nt_samples_batch_size(&self) -> Option<usize> {
        self.nt_samples_batch_size
    }
    /// Seed of the noise.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Builder for [`crate::NoiseTunnel`] (Smilkov, Thorat, Kim, Viégas and Wattenberg 2017,
/// "SmoothGrad: removing noise by adding noise"; Adebayo et al. 2018 for VarGrad): captum's
/// defaults `nt_type = smoothgrad`, `nt_samples = 5`, `stdevs = 1.0`; `seed = 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseTunnelParams(NoiseTunnelValidParams);

impl Default for NoiseTunnelParams {
    fn default() -> Self {
        Self::new()
    }
}

impl NoiseTunnelParams {
    /// captum's defaults.
    pub fn new() -> Self {
        Self(NoiseTunnelValidParams {
            nt_type: NoiseTunnelType::Smoothgrad,
            nt_samples: 5,
            stdevs: 1.0,
            nt_samples_batch_size: None,
            seed: 0,
        })
    }
    /// smoothgrad (default), smoothgrad_sq or vargrad.
    pub fn nt_type(mut self, t: NoiseTunnelType) -> Self {
        self.0.nt_type = t;
        self
    }
    /// Noisy copies per input (default 5, 1..=[`MAX_STEPS`]).
    pub fn nt_samples(mut self, n: usize) -> Self {
        self.0.nt_samples = n;
        self
    }
    /// Standard deviation of the noise (default 1.0, finite, >= 0). captum's default suits
    /// inputs of unit scale; SmoothGrad's paper uses 10-20% of the input range.
    pub fn stdevs(mut self, s: f32) -> Self {
        self.0.stdevs = s;
        self
    }
    /// Noisy copies of one input per call of the wrapped method (default: all of them).
    pub fn nt_samples_batch_size(mut self, b: Option<usize>) -> Self {
        self.0.nt_samples_batch_size = b;
        self
    }
    /// Seed of the noise: input `i`'s sample `s` is drawn from a generator seeded by
    /// `(seed, i, s)`, so the noise does not depend on batch sizes or thread counts.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<NoiseTunnelValidParams> {
        check_count("nt_samples", self.0.nt_samples, 1)?;
        check_stdev("stdevs", self.0.stdevs)?;
        if let Some(b) = self.0.nt_samples_batch_size {
            check_batch_size("nt_samples_batch_size", b)?;
        }
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// Checked parameters of [`crate::GradientShap`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct GradientShapValidParams {
    pub(crate) n_samples: usize,
    pub(crate) stdevs: f32,
    pub(crate) internal_batch_size: usize,
    pub(crate) multiply_by_inputs: bool,
    pub(crate) return_convergence_delta: bool,
    pub(crate) seed: u64,
}
checked_serde!(GradientShapValidParams, GradientShapParams);

impl GradientShapValidParams {
    /// Baseline draws per input.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }
    /// Standard deviation of the noise added to the input.
    pub fn stdevs(&self) -> f32 {
        self.stdevs
    }
    /// Rows per model call.
    pub fn internal_batch_size(&self) -> usize {
        self.internal_batch_size
    }
    /// Whether gradients are multiplied by `x - baseline`.
    pub fn multiply_by_inputs(&self) -> bool {
        self.multiply_by_inputs
    }
    /// Whether the per-sample convergence delta is computed (two more forward rows per
    /// sample).
    pub fn return_convergence_delta(&self) -> bool {
        self.return_convergence_delta
    }
    /// Seed of the draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Builder for [`crate::GradientShap`] (Lundberg and Lee 2017, "A Unified Approach to
/// Interpreting Model Predictions"; expected gradients, Erion et al. 2021): captum's
/// defaults `n_samples = 5`, `stdevs = 0.0`, `multiply_by_inputs = true`,
/// `return_convergence_delta = false`; `internal_batch_size = 64`, `seed = 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientShapParams(GradientShapValidParams);

impl Default for GradientShapParams {
    fn default() -> Self {
        Self::new()
    }
}

impl GradientShapParams {
    /// captum's defaults.
    pub fn new() -> Self {
        Self(GradientShapValidParams {
            n_samples: 5,
            stdevs: 0.0,
            internal_batch_size: DEFAULT_BATCH_SIZE,
            multiply_by_inputs: true,
            return_convergence_delta: false,
            seed: 0,
        })
    }
    /// Baseline draws per input (default 5, 1..=[`MAX_STEPS`]).
    pub fn n_samples(mut self, n: usize) -> Self {
        self.0.n_samples = n;
        self
    }
    /// Standard deviation of the Gaussian noise added to each input copy (default 0).
    pub fn stdevs(mut self, s: f32) -> Self {
        self.0.stdevs = s;
        self
    }
    /// Rows per model call (default 64).
    pub fn internal_batch_size(mut self, b: usize) -> Self {
        self.0.internal_batch_size = b;
        self
    }
    /// Multiply by `x - baseline` (default true).
    pub fn multiply_by_inputs(mut self, yes: bool) -> Self {
        self.0.multiply_by_inputs = yes;
        self
    }
    /// Compute the per-sample convergence delta (default false).
    pub fn return_convergence_delta(mut self, yes: bool) -> Self {
        self.0.return_convergence_delta = yes;
        self
    }
    /// Seed of the baseline draws, alphas and noise (per input and sample, as NoiseTunnel).
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<GradientShapValidParams> {
        check_count("n_samples", self.0.n_samples, 1)?;
        check_stdev("stdevs", self.0.stdevs)?;
        check_batch_size("internal_batch_size", self.0.internal_batch_size)?;
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// Checked parameters of [`crate::GradCam`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct GradCamValidParams {
    pub(crate) layer: String,
    pub(crate) relu_attributions: bool,
    pub(crate) batch_size: usize,
}
checked_serde!(GradCamValidParams, GradCamParams);

impl GradCamValidParams {
    /// The layer (a node output or node name of the model).
    pub fn layer(&self) -> &str {
        &self.layer
    }
    /// Whether the map goes through a ReLU.
    pub fn relu_attributions(&self) -> bool {
        self.relu_attributions
    }
    /// Rows per model call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// Builder for [`crate::GradCam`] (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations
/// from Deep Networks via Gradient-based Localization"): `relu_attributions = true` (the
/// paper's ReLU; captum's `LayerGradCam` defaults to false), `batch_size = 64`.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCamParams(GradCamValidParams);

impl GradCamParams {
    /// Grad-CAM on `layer` (see [`xai_core::LayerModel::layer_names`]).
    pub fn new(layer: impl Into<String>) -> Self {
        Self(GradCamValidParams {
            layer: layer.into(),
            relu_attributions: true,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }
    /// ReLU of the map (default true).
    pub fn relu_attributions(mut self, yes: bool) -> Self {
        self.0.relu_attributions = yes;
        self
    }
    /// Rows per model call (default 64).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.0.batch_size = b;
        self
    }
    /// Validates the parameters (the layer name against the model in [`crate::GradCam::new`]).
    pub fn check(self) -> Result<GradCamValidParams> {
        if self.0.layer.is_empty() {
            return Err(AttributionError::param("layer", "\"\"", "a layer name"));
        }
        check_batch_size("batch_size", self.0.batch_size)?;
        Ok(self.0)
    }
}

// ---------------------------------------------------------------------------------------------

/// Checked parameters of [`crate::Occlusion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct OcclusionValidParams {
    pub(crate) sliding_window_shapes: Vec<usize>,
    pub(crate) strides: Option<Vec<usize>>,
    pub(crate) perturbations_per_eval: usize,
}
checked_serde!(OcclusionValidParams, OcclusionParams);

impl OcclusionValidParams {
    /// The window, one extent per input dimension.
    pub fn sliding_window_shapes(&self) -> &[usize] {
        &self.sliding_window_shapes
    }
    /// The strides (1 in every dimension when `None`).
    pub fn strides(&self) -> Option<&[usize]> {
        self.strides.as_deref()
    }
    /// Window positions per model call.
    pub fn perturbations_per_eval(&self) -> usize {
        self.perturbations_per_eval
    }
}

/// Builder for [`crate::Occlusion`] (Zeiler and Fergus 2014, "Visualizing and Understanding
/// Convolutional Networks"): captum's `sliding_window_shapes` (required, one extent per
/// dimension of an input, e.g. `[3, 8, 8]` for `[c, h, w]`), `strides` (default 1),
/// `perturbations_per_eval` (default 1).
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionParams(OcclusionValidParams);

impl OcclusionParams {
    /// Occlusion with this window.
    pub fn new(sliding_window_shapes: Vec<usize>) -> Self {
        Self(OcclusionValidParams {
            sliding_window_shapes,
            strides: None,
            perturbations_per_eval: 1,
        })
    }
    /// Strides, one per dimension (default 1 everywhere).
    pub fn strides(mut self, strides: Vec<usize>) -> Self {
        self.0.strides = Some(strides);
        self
    }
    /// Window positions evaluated per model call, for every input of the batch (default 1).
    pub fn perturbations_per_eval(mut self, p: usize) -> Self {
        self.0.perturbations_per_eval = p;
        self
    }
    /// Validates the parameters (the window against the input shape in
    /// [`crate::Occlusion::new`]).
    pub fn check(self) -> Result<OcclusionValidParams> {
        let p = &self.0;
        if p.sliding_window_shapes.is_empty() || p.sliding_window_shapes.contains(&0) {
            return Err(AttributionError::param(
                "sliding_window_shapes",
                format!("{:?}", p.sliding_window_shapes),
                "one extent >= 1 per input dimension",
            ));
        }
        if let Some(s) = &p.strides {
            if s.len() != p.sliding_window_shapes.len() || s.contains(&0) {
                return Err(AttributionError::param(
                    "strides",
                    format!("{s:?}"),
                    format!(
                        "{} strides >= 1 (one per window dimension)",
                        p.sliding_window_shapes.len()
                    ),
                ));
            }
        }
        check_batch_size("perturbations_per_eval", p.perturbations_per_eval)?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_captum() {
        let ig = IntegratedGradientsParams::new().check().unwrap();
        assert_eq!(ig.n_steps(), 50);
        assert_eq!(ig.method(), IntegrationMethod::GaussLegendre);
        assert!(ig.multiply_by_inputs());
        assert!(SaliencyParams::new().check().unwrap().abs());
        let nt = NoiseTunnelParams::new().check().unwrap();
        assert_eq!((nt.nt_samples(), nt.stdevs()), (5, 1.0));
        assert_eq!(nt.nt_type(), NoiseTunnelType::Smoothgrad);
        let gs = GradientShapParams::new().check().unwrap();
        assert_eq!((gs.n_samples(), gs.stdevs()), (5, 0.0));
        assert!(GradCamParams::new("l").check().unwrap().relu_attributions());
        assert_eq!(
            OcclusionParams::new(vec![1, 2, 2])
                .check()
                .unwrap()
                .perturbations_per_eval(),
            1
        );
    }

    #[test]
    fn invalid_parameters_are_typed_errors() {
        let cases: Vec<(&str, AttributionError)> = vec![
            (
                "n_steps",
                IntegratedGradientsParams::new()
                    .n_steps(0)
                    .check()
                    .unwrap_err(),
            ),
            (
                "n_steps",
                IntegratedGradientsParams::new()
                    .method(IntegrationMethod::RiemannLeft)
                    .n_steps(1)
                    .check()
                    .unwrap_err(),
            ),
            (
                "n_steps",
                IntegratedGradientsParams::new()
                    .n_steps(MAX_STEPS + 1)
                    .check()
                    .unwrap_err(),
            ),
            (
                "internal_batch_size",
                IntegratedGradientsParams::new()
                    .internal_batch_size(0)
                    .check()
                    .unwrap_err(),
            ),
            (
                "batch_size",
                SaliencyParams::new().batch_size(0).check().unwrap_err(),
            ),
            (
                "nt_samples",
                NoiseTunnelParams::new().nt_samples(0).check().unwrap_err(),
            ),
            (
                "stdevs",
                NoiseTunnelParams::new()
                    .stdevs(f32::NAN)
                    .check()
                    .unwrap_err(),
            ),
            (
                "stdevs",
                GradientShapParams::new().stdevs(-1.0).check().unwrap_err(),
            ),
            ("layer", GradCamParams::new("").check().unwrap_err()),
            (
                "sliding_window_shapes",
                OcclusionParams::new(vec![0, 1]).check().unwrap_err(),
            ),
            (
                "strides",
                OcclusionParams::new(vec![1, 2])
                    .strides(vec![1])
                    .check()
                    .unwrap_err(),
            ),
            (
                "method",
                IntegrationMethod::from_name("simpson").unwrap_err(),
            ),
            ("nt_type", NoiseTunnelType::from_name("smooth").unwrap_err()),
        ];
        for (name, err) in cases {
            assert!(
                matches!(err, AttributionError::InvalidParameter { .. }),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!("`{name}`")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for m in [
            IntegrationMethod::RiemannLeft,
            IntegrationMethod::RiemannRight,
            IntegrationMethod::RiemannMiddle,
            IntegrationMethod::RiemannTrapezoid,
            IntegrationMethod::GaussLegendre,
        ] {
            assert_eq!(IntegrationMethod::from_name(m.name()).unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        for t in [
            NoiseTunnelType::Smoothgrad,
            NoiseTunnelType::SmoothgradSq,
            NoiseTunnelType::Vargrad,
        ] {
            assert_eq!(NoiseTunnelType::from_name(t.name()).unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
    }

    #[test]
    fn deserialising_runs_the_checks() {
        let p = IntegratedGradientsParams::new().check().unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["method"], "gausslegendre");
        let back: IntegratedGradientsValidParams = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, p);
        let mut bad = json;
        bad["n_steps"] = serde_json::json!(0);
        let err = serde_json::from_value::<IntegratedGradientsValidParams>(bad).unwrap_err();
        assert!(err.to_string().contains("n_steps"), "{err}");
        let mut bad = serde_json::to_value(NoiseTunnelParams::new().check().unwrap()).unwrap();
        bad["stdevs"] = serde_json::json!(-1.0);
        assert!(serde_json::from_value::<NoiseTunnelValidParams>(bad).is_err());
        let mut bad = serde_json::to_value(OcclusionParams::new(vec![1]).check().unwrap()).unwrap();
        bad["sliding_window_shapes"] = serde_json::json!([0]);
        assert!(serde_json::from_value::<OcclusionValidParams>(bad).is_err());
        let mut bad = serde_json::to_value(GradCamParams::new("a").check().unwrap()).unwrap();
        bad["layer"] = serde_json::json!("");
        assert!(serde_json::from_value::<GradCamValidParams>(bad).is_err());
    }
}
