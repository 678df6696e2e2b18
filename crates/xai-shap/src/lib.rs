//! # xai-shap
//!
//! KernelSHAP (Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions",
//! NeurIPS) on SLIC superpixels (Achanta et al. 2012, "SLIC Superpixels Compared to
//! State-of-the-art Superpixel Methods", TPAMI), as dianna does it on top of shap, with the
//! variance reductions of Covert & Lee (2021, "Improving KernelSHAP: Practical Shapley Value
//! Estimation via Linear Regression", AISTATS) and leverage-score sampling (Musco & Witter 2024).
//!
//! * [`slic`] — SLIC for grayscale and RGB images, label for label as scikit-image's `slic`.
//! * [`game`] — coalition games: a [`Predictor`](xai_core::Predictor) plus a [`CoalitionMasker`]
//!   (images: [`ImageMasker`]; tables: [`TabularMasker`]; any closure: [`FnMasker`]).
//! * [`sampling`] — which coalitions are evaluated: shap's scheme ([`SamplingScheme::Shap`]) or
//!   paired, stratified, without-replacement schemes ([`SamplingScheme::Leverage`], the default).
//! * [`solver`] — the efficiency-constrained weighted least squares through `M x M` normal
//!   equations, shap's ([`Regression::Plain`]) or with terms in the coalition size that leave the
//!   exact answer unchanged and absorb noise ([`Regression::SizePolynomial`], the default, and
//!   [`Regression::SizeStratified`]); optional top-k feature selection by least-angle regression.
//! * [`background`] — background data sets ([`BackgroundData`]: `N` weighted rows or images,
//!   or a [`kmeans`] summary as `shap.kmeans`) and the games of rows against them
//!   ([`BackgroundGames`]: `v(S) = Σ_n w_n f(x_S, b_n)`, as shap's `KernelExplainer(f, data)`).
//! * [`rows`] — many rows per call: cross-row batched model evaluation, progress callback,
//!   values identical to one call per row.
//! * [`tabular`] — models with `[n_features]` input: feature names, CSV input, the JSON of the
//!   `tabular` example ([`ValidKernelShapParams::explain_table`]).
//! * [`l1_reg`] and [`lars`] — shap's `l1_reg` feature selection (`num_features(k)`, `aic`,
//!   `bic`, alpha, `auto`) on scikit-learn's least-angle regression, ported.
//! * [`algorithm`] — [`ValidKernelShapParams::explain_game`], [`ValidKernelShapParams::explain`],
//!   [`ValidImageKernelShapParams::explain`] (and `explain_with_data` against background
//!   images) and dianna's [`explain_image`].
//! * [`exact`] — brute-force Shapley values for small games.
//!
//! ## Estimators
//!
//! [`KernelShapParams::shap_compatible`] is shap's `KernelExplainer` with `l1_reg=False` (shap's
//! sampling and regression, every superpixel in the regression): dianna's call except that
//! dianna leaves shap's `l1_reg` at its default, `num_features(10)` since shap 0.47 and `"auto"`
//! before (add [`FeatureSelection::TopK`]`(10)` or [`FeatureSelection::Auto`] to match), and
//! that dianna draws the values onto the segments with an off-by-one (dianna PR #898), which is
//! not reproduced;
//! [`KernelShapParams::shap_defaults`] is `KernelExplainer(f, data).shap_values(X)` with
//! shap 0.47+'s defaults. The default
//! estimator reduces the variance three ways, each leaving the exact answer unchanged:
//! superpixels identical to the background are null players and get 0 without estimation (as shap
//! itself does with features that do not vary, which dianna's all-ones/all-zeros call hides from
//! it); coalitions are drawn in complement pairs, stratified by size with the same budget for
//! every size and without replacement (Covert & Lee 2021; Musco & Witter 2024); and the
//! regression carries a degree-4 polynomial in the coalition size ([`solver`]).
//!
//! ## Accuracy and cost
//!
//! Relative L2 error at `nsamples = 1000` against a `2·10^5`-coalition reference (mean of 3 to 5
//! seeds), dianna's tutorial setting (SLIC `n_segments = 200` → 196 superpixels, `sigma = 0`,
//! background 0, the predicted class), from `examples/error_curve.rs`:
//!
//! | model, MNIST test image | shap as dianna | default | default, no skipping |
//! |---|---|---|---|
//! | shipped binary CNN, 0/1 image 1 (a 0) | 1.80 | 0.45 (4.0x lower) | 0.99 |
//! | shipped binary CNN, 0/1 image 5 (a 1) | 3.46 | 0.18 (19x lower) | 1.24 |
//! | shipped alibi CNN, image 0 | 0.91 | 0.22 (4.1x lower) | 0.69 |
//! | 784-128-10 MLP, image 3 | 1.04 | 0.19 (5.4x lower) | 0.45 |
//! | 784-128-10 MLP, image 13 | 0.92 | 0.16 (5.7x lower) | 0.40 |
//!
//! The default at 250 coalitions is about as accurate as shap at 1000. Time per image is the
//! model's: 1002 evaluations of the alibi CNN take 0.8-1.1 s on a shared 2-core machine; the
//! estimator's own work (SLIC, sampling, masking, normal equations, solve) is 4-10 ms
//! (`cargo bench -p xai-benches --bench shap`).
//!
//! ```
//! use ndarray::{Array2, Array3, ArrayViewD, Axis, Ix4};
//! use xai_core::FnPredictor;
//! use xai_shap::{Background, ImageKernelShapParams};
//!
//! // A "model" on 1 x 8 x 8 images: class 1 scores the mean brightness of the left half.
//! let model = FnPredictor::new(vec![1, 8, 8], 2, |x: ArrayViewD<'_, f32>| {
//!     let x = x.into_dimensionality::<Ix4>().unwrap();
//!     let mut out = Array2::zeros((x.shape()[0], 2));
//!     for (i, img) in x.axis_iter(Axis(0)).enumerate() {
//!         let left: f32 = img.iter().enumerate().filter(|(p, _)| p % 8 < 4).map(|(_, v)| v).sum();
//!         out[[i, 1]] = left / 32.0;
//!         out[[i, 0]] = 1.0 - out[[i, 1]];
//!     }
//!     Ok(out)
//! });
//! let image = Array3::from_shape_fn((1, 8, 8), |(_, y, x)| ((x + y) % 3) as f32 / 2.0);
//! let explanation = ImageKernelShapParams::new()
//!     .labels(vec![1])
//!     .nsamples(500)
//!     .n_segments(16)
//!     .background(Background::Value(0.0))
//!     .check()?
//!     .explain(&model, image.view())?;
//! let shap = &explanation.data;
//! assert_eq!(shap.attributions.shape(), &[1, 8, 8]);
//! // efficiency: the values add up to f(image) - f(background)
//! let total: f32 = shap.segment_values.row(0).sum();
//! assert!((total - (shap.instance_values[0] - shap.base_values[0])).abs() < 1e-4);
//! // the right half does not matter to class 1
//! assert!(shap.attributions[[0, 3, 7]].abs() < 1e-4);
//! # Ok::<(), xai_shap::ShapError>(())
//! ```

pub mod algorithm;
pub mod background;
pub mod error;
pub mod exact;
pub mod game;
pub mod hyperparams;
pub mod kmeans;
pub mod l1_reg;
pub mod lars;
pub mod rows;
pub mod sampling;
pub mod slic;
pub mod solver;
pub mod tabular;

pub use algorithm::{explain_image, ImageShapValues, ShapValues, KERNEL_SHAP, KERNEL_SHAP_IMAGE};
pub use background::{BackgroundData, BackgroundGames};
pub use error::{Result, ShapError};
pub use exact::exact_shapley_values;
pub use game::{
    Background, CoalitionGame, CoalitionMasker, FnGame, FnMasker, ImageMasker, MaskedPredictor,
    TabularMasker,
};
pub use hyperparams::{
    ImageKernelShapParams, KernelShapParams, Link, NSamples, ValidImageKernelShapParams,
    ValidKernelShapParams,
};
pub use kmeans::{KMeansParams, KMeansSummary};
pub use rows::{CoalitionRequest, GameList, GameRows, OneGame, Progress};
pub use sampling::SamplingScheme;
pub use slic::{Segmentation, SlicParams, ValidSlicParams};
pub use solver::{FeatureSelection, Regression};
pub use tabular::{read_csv, TabularShapValues};
