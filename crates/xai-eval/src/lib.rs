//! # xai-eval
//!
//! Which explanation to trust: metrics that score an attribution map of any
//! [`xai_core::Predictor`] — a map shaped like the input (`[c, h, w]` for an image, `[1, h, w]`
//! broadcast over channels, or one value per feature) — by what the model does when the
//! attributed features are removed, when the input is perturbed, or when the model is
//! randomised. Every parameter is validated once ([`hyperparams`]), every random choice is
//! seeded and independent of the thread count, and every model call is batched (one image's
//! curve is one sequence of batched calls).
//!
//! | metric (table key) | paper | Quantus 0.6 | better |
//! |---|---|---|---|
//! | [`deletion`] `deletion_auc`, [`insertion`] `insertion_auc` | Petsiuk et al. 2018 (RISE) | — | lower / higher |
//! | [`pixel_flipping`] `pixel_flipping_morf` / `_lerf` / `_difference` | Bach et al. 2015 | `PixelFlipping` (MoRF) | lower / higher / higher |
//! | [`region_perturbation`] `region_perturbation_morf` / `_lerf` / `_difference` | Samek et al. 2016 | `RegionPerturbation` | higher / lower / higher |
//! | [`road`] `road_morf` / `road_lerf` | Rong et al. 2022 | `ROAD` (MoRF) | lower / higher |
//! | [`infidelity()`] `infidelity` | Yeh et al. 2019 | `Infidelity` | lower |
//! | [`sensitivity()`] `max_sensitivity`, `avg_sensitivity` | Yeh et al. 2019 | `MaxSensitivity`, `AvgSensitivity` | lower |
//! | [`faithfulness_correlation`] `faithfulness_correlation` | Bhatt et al. 2020 | `FaithfulnessCorrelation` | higher |
//! | [`mprt()`] `mprt` | Adebayo et al. 2018 | `MPRT` | lower |
//!
//! [`random_attribution`] is the baseline every method should beat. [`evaluate`] runs a list of
//! [`Metric`]s (by name with [`Metric::from_name`], or with parameters) on one input and returns
//! `(metric, value, direction, curve)` rows.
//!
//! Where the definitions follow Quantus and where they differ is documented on each function;
//! `tests/quantus.rs` checks the agreement on a committed model and Quantus' own scores
//! (`fixtures/make_quantus_fixtures.py`).
//!
//! ```
//! use ndarray::{Array1, ArrayViewD, Axis};
//! use xai_core::FnPredictor;
//! use xai_eval::{evaluate, random_attribution, Baseline, Context, CurveParams, Input, Metric};
//!
//! // A linear model f(x) = w . x on 8 features, and its exact attribution w * x.
//! let w = Array1::from_iter((0..8).map(|i| i as f32 - 3.5));
//! let wm = w.clone();
//! let model = FnPredictor::new(vec![8], 1, move |x: ArrayViewD<'_, f32>| {
//!     let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
//!     Ok(x.dot(&wm).insert_axis(Axis(1)))
//! });
//! let x = Array1::from_elem(8, 1.0f32);
//! let exact = (&w * &x).into_dyn();
//! let random = random_attribution(&[8], 7);
//! // Removed features are set to 0 (the default baseline, the input's minimum, is 1 here).
//! let params = CurveParams::new().baseline(Baseline::Value(0.0)).check().unwrap();
//! let metrics = [Metric::DeletionAuc(params.clone()), Metric::InsertionAuc(params)];
//! let ctx = Context::new(&model);
//! let score = |map: &ndarray::ArrayD<f32>| {
//!     let input = Input { x: x.view().into_dyn(), map: map.view(), target: 0, segments: None };
//!     let rows = evaluate(&ctx, &input, &metrics).unwrap();
//!     (rows[0].value, rows[1].value)
//! };
//! let (exact_deletion, exact_insertion) = score(&exact);
//! let (random_deletion, random_insertion) = score(&random);
//! assert!(exact_deletion < random_deletion); // lower is better
//! assert!(exact_insertion > random_insertion); // higher is better
//! ```

mod correlation;
mod curves;
mod error;
mod evaluate;
pub mod hyperparams;
mod infidelity;
mod perturb;
mod random;
mod randomisation;
mod road;
mod sensitivity;

pub use correlation::{faithfulness_correlation, faithfulness_correlation_with_subsets};
pub use curves::{
    deletion, insertion, pixel_flipping, region_perturbation, Curve, CurveScore, Direction, Order,
};
pub use error::{EvalError, Result};
pub use evaluate::{evaluate, Context, Input, Metric, MetricValue, METRIC_NAMES};
pub use hyperparams::{
    Baseline, CurveParams, CurveValidParams, FaithfulnessCorrelationParams,
    FaithfulnessCorrelationValidParams, Features, InfidelityParams, InfidelityPerturbation,
    InfidelityValidParams, MprtParams, MprtValidParams, Norm, RegionParams, RegionValidParams,
    RoadParams, RoadValidParams, SensitivityParams, SensitivityValidParams, Similarity,
};
pub use infidelity::infidelity;
pub use perturb::{pearson, spearman, ssim};
pub use random::random_attribution;
pub use randomisation::{gradient_explainer, mprt, ModelExplainer, Randomizable};
pub use road::{noisy_linear_imputation, road};
pub use sensitivity::{sensitivity, sensitivity_with_noise, Explainer, SensitivityScore};
