//! # xai-attribution
//!
//! Attribution methods as PyTorch users know them from captum (and alibi's
//! `IntegratedGradients`), on any [`xai_core::DifferentiableModel`] (occlusion on any
//! [`xai_core::Predictor`], Grad-CAM on any [`xai_core::LayerModel`]):
//!
//! | method | paper | captum |
//! |---|---|---|
//! | [`Saliency`] | Simonyan, Vedaldi and Zisserman 2014, "Deep Inside Convolutional Networks" | `Saliency` |
//! | [`InputXGradient`] | Shrikumar et al. 2016, "Not Just a Black Box" | `InputXGradient` |
//! | [`IntegratedGradients`] | Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep Networks" | `IntegratedGradients` |
//! | [`NoiseTunnel`] | Smilkov et al. 2017, "SmoothGrad"; Adebayo et al. 2018 (VarGrad) | `NoiseTunnel` |
//! | [`GradientShap`] | Lundberg and Lee 2017, "A Unified Approach to Interpreting Model Predictions"; Erion et al. 2021 (expected gradients) | `GradientShap` |
//! | [`GradCam`] | Selvaraju et al. 2017, "Grad-CAM" | `LayerGradCam` + `LayerAttribution.interpolate` |
//! | [`Occlusion`] | Zeiler and Fergus 2014, "Visualizing and Understanding Convolutional Networks" | `Occlusion` |
//!
//! Every method takes a batch `x` of shape `[n, ..input_shape]` and [`ClassTargets`] (`k >=
//! 1` classes per input), and returns [`Attributions`] `[n, k, ..input_shape]` (Grad-CAM:
//! [`GradCamAttributions`]), with the convergence delta where the method has one.
//! Parameters are built with captum's defaults and names and checked once into a
//! `*ValidParams` type ([`IntegratedGradientsParams::check`], ...); bad targets, shapes and
//! NaN inputs, baselines or noise are typed errors ([`AttributionError`]).
//!
//! Memory is bounded: Integrated Gradients evaluates at most `internal_batch_size`
//! interpolants at once and accumulates the weighted gradients batch by batch; NoiseTunnel
//! and GradientSHAP stream their noisy copies the same way; occlusion evaluates
//! `perturbations_per_eval` window positions per call. The random draws (noise, baselines,
//! alphas) of input `i`'s sample `s` come from a generator seeded by `(seed, i, s)`, so the
//! results do not depend on the thread count or the batch sizes; the `*_with*` entry points
//! take the draws explicitly (the captum agreement tests hand them captum's).
//!
//! ```
//! use ndarray::{array, Array2, ArrayD, ArrayView2, ArrayViewD, Ix2};
//! use xai_attribution::{Baseline, ClassTargets, IntegratedGradients, IntegratedGradientsParams};
//! use xai_core::{CoreError, DifferentiableModel, Loss, ParamGroup, ParamSelection,
//!                PerSampleGrads, Predictor, Targets};
//!
//! /// f(x) = [x W]: 2 features, 2 outputs.
//! struct Linear;
//! const W: [[f32; 2]; 2] = [[1.0, -2.0], [3.0, 0.5]];
//! impl Predictor for Linear {
//!     fn input_shape(&self) -> &[usize] { &[2] }
//!     fn n_outputs(&self) -> usize { 2 }
//!     fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
//!         let x = x.into_dimensionality::<Ix2>().unwrap();
//!         Ok(x.dot(&ndarray::arr2(&W)))
//!     }
//! }
//! impl DifferentiableModel for Linear {
//!     fn input_gradient(&self, _x: ArrayViewD<'_, f32>, w: ArrayView2<'_, f32>)
//!         -> xai_core::Result<ArrayD<f32>> {
//!         Ok(w.dot(&ndarray::arr2(&W).t()).into_dyn())
//!     }
//!     fn parameter_groups(&self) -> Vec<ParamGroup> { vec![] }
//!     fn per_sample_grads(&self, _: ArrayViewD<'_, f32>, _: &Targets, _: &Loss,
//!                         _: &ParamSelection) -> xai_core::Result<PerSampleGrads> {
//!         Err(CoreError::Model("not needed here".into()))
//!     }
//! }
//!
//! let params = IntegratedGradientsParams::new().n_steps(20).check().unwrap();
//! let ig = IntegratedGradients::new(&Linear, params);
//! let x = array![[1.0f32, 2.0]];
//! let attr = ig
//!     .attribute(x.view().into_dyn(), &ClassTargets::one_per_input(vec![0]), &Baseline::Zero)
//!     .unwrap();
//! // For a linear model IG is exactly (x - b) * w: [1 * 1, 2 * 3].
//! let a = attr.get(0, 0);
//! assert!((a[[0]] - 1.0).abs() < 1e-5 && (a[[1]] - 6.0).abs() < 1e-5);
//! // Completeness: the delta is (numerically) zero.
//! assert!(attr.delta.unwrap()[[0, 0]].abs() < 1e-4);
//! ```

mod common;
mod error;
mod grad_cam;
mod gradient_shap;
mod gradients;
mod hyperparams;
mod integrated;
mod noise_tunnel;
mod occlusion;

pub use common::{Attributions, Baseline, ClassTargets};
pub use error::{AttributionError, Result};
pub use grad_cam::{GradCam, GradCamAttributions};
pub use gradient_shap::GradientShap;
pub use gradients::{InputXGradient, Saliency};
pub use hyperparams::{
    GradCamParams, GradCamValidParams, GradientShapParams, GradientShapValidParams,
    InputXGradientParams, InputXGradientValidParams, IntegratedGradientsParams,
    IntegratedGradientsValidParams, IntegrationMethod, NoiseTunnelParams, NoiseTunnelType,
    NoiseTunnelValidParams, OcclusionParams, OcclusionValidParams, SaliencyParams,
    SaliencyValidParams, DEFAULT_BATCH_SIZE, MAX_STEPS,
};
pub use integrated::IntegratedGradients;
pub use noise_tunnel::{NoiseTunnel, NoiseTunnelBase};
pub use occlusion::Occlusion;
