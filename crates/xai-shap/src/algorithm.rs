//! KernelSHAP (Lundberg & Lee 2017, Theorem 2) on coalition games, predictors with maskers, and
//! images on SLIC superpixels (dianna's `explain_image(..., method="KernelSHAP")`).
//!
//! Steps of [`ValidKernelShapParams::explain_game`]:
//! 1. evaluate `v(∅)` (the base value) and `v(N)` (the explained instance);
//! 2. drop inert players (they get 0, as shap drops features that do not vary);
//! 3. draw a coalition design ([`crate::sampling`]) for the `M` remaining players with
//!    `nsamples` coalitions (`auto`: `2M + 2048`), seeded;
//! 4. evaluate the coalitions in batches of `batch_size`, accumulating the `M x M` normal
//!    equations ([`crate::solver`]);
//! 5. solve the weighted least squares (plain, or with per-size intercepts) with `Σ φ = link(v(N)) - link(v(∅))` enforced exactly,
//!    for every requested output at once.

use ndarray::{Array2, Array3, ArrayD, ArrayView3, Axis, IxDyn};
use serde::{Deserialize, Serialize};
use xai_core::{Explanation, Meta, NpyArrays, Predictor};

use crate::background::{BackgroundData, BackgroundGames};
use crate::error::{Result, ShapError};
use crate::game::{Background, CoalitionGame, CoalitionMasker, ImageMasker, MaskedPredictor};
use crate::hyperparams::{
    ImageKernelShapParams, NSamples, ValidImageKernelShapParams, ValidKernelShapParams,
};
use crate::rows::OneGame;
use crate::slic::Segmentation;

/// Name recorded in `meta` for [`ValidKernelShapParams::explain_game`] and
/// [`ValidKernelShapParams::explain`].
pub const KERNEL_SHAP: &str = "KernelShap";
/// Name recorded in `meta` for image explanations.
pub const KERNEL_SHAP_IMAGE: &str = "KernelShapImage";

/// KernelSHAP values of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapValues {
    /// The explained outputs, in the order of the rows of `values`.
    pub labels: Vec<usize>,
    /// `[n_labels, n_features]`: the estimated Shapley values, in link units.
    pub values: Array2<f64>,
    /// `link(v(∅))` per label: the model with every feature absent (shap's `expected_value`).
    pub base_values: Vec<f64>,
    /// `link(v(N))` per label: the explained instance; each row of `values` sums to
    /// `instance_values - base_values`.
    pub instance_values: Vec<f64>,
    /// Features left out as inert (value 0).
    pub inert_features: Vec<usize>,
    /// Coalitions evaluated besides the two references.
    pub n_coalitions: usize,
    /// Model evaluations in total (`n_coalitions + 2`).
    pub n_evaluations: usize,
    /// Whether every coalition was evaluated, so that the values are exact Shapley values.
    pub exact: bool,
}

impl NpyArrays for ShapValues {
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
        vec![
            ("values".into(), self.values.mapv(|v| v as f32).into_dyn()),
            ("base_values".into(), vec_array(&self.base_values)),
            ("instance_values".into(), vec_array(&self.instance_values)),
        ]
    }
}

fn vec_array(v: &[f64]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.iter().map(|&x| x as f32).collect())
        .expect("1-D shape matches")
}

/// KernelSHAP on superpixels: per label an attribution map, the per-segment values, the base
/// value and the segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageShapValues {
    /// The explained classes, in the order of the first axis of the maps.
    pub labels: Vec<usize>,
    /// `[n_labels, height, width]`: each pixel carries its superpixel's value (dianna's heatmaps).
    pub attributions: Array3<f32>,
    /// `[n_labels, n_segments]`: the value of segment `k` (label `start_label + k`).
    pub segment_values: Array2<f32>,
    /// `link(f(background image))` per label.
    pub base_values: Vec<f32>,
    /// `link(f(image))` per label; `segment_values` rows sum to `instance_values - base_values`.
    pub instance_values: Vec<f32>,
    /// The SLIC segmentation used.
    pub segmentation: Segmentation,
    /// Segments equal to the background (value 0 without estimation).
    pub inert_segments: Vec<usize>,
    /// Model evaluations in total.
    pub n_evaluations: usize,
    /// Whether every coalition of segments was evaluated (exact Shapley values).
    pub exact: bool,
}

impl NpyArrays for ImageShapValues {
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
        let base: Vec<f64> = self.base_values.iter().map(|&v| v as f64).collect();
        let inst: Vec<f64> = self.instance_values.iter().map(|&v| v as f64).collect();
        vec![
            ("attributions".into(), self.attributions.clone().into_dyn()),
            (
                "segment_values".into(),
                self.segment_values.clone().into_dyn(),
            ),
            (
                "segmentation".into(),
                self.segmentation.labels().mapv(|l| l as f32).into_dyn(),
            ),
            ("base_values".into(), vec_array(&base)),
            ("instance_values".into(), vec_array(&inst)),
        ]
    }
}

impl ValidKernelShapParams {
    /// KernelSHAP values of `game` (see the module docs), without `meta`.
    pub fn estimate(&self, game: &dyn CoalitionGame) -> Result<ShapValues> {
        let mut rows = self.estimate_rows(&OneGame(game))?;
        Ok(rows.remove(0))
    }

    /// KernelSHAP values of a coalition game, with `meta` recording these parameters.
    pub fn explain_game(&self, game: &dyn CoalitionGame) -> Result<Explanation<ShapValues>> {
        let data = self.estimate(game)?;
        Ok(Explanation {
            meta: Meta::new(
                KERNEL_SHAP,
                self.params(),
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            )?,
            data,
        })
    }

    /// KernelSHAP values of `model` at the instance a `masker` describes (e.g. a
    /// [`crate::game::TabularMasker`] or [`ImageMasker`]).
    pub fn explain(
        &self,
        model: &dyn Predictor,
        masker: &dyn CoalitionMasker,
    ) -> Result<Explanation<ShapValues>> {
        let game = MaskedPredictor::new(model, masker)?;
        self.explain_game(&game)
    }
}

fn check_image_for_model(model: &dyn Predictor, image: &ArrayView3<'_, f32>) -> Result<()> {
    if image.shape() != model.input_shape() {
        return Err(ShapError::shape(
            "image",
            image.shape(),
            format!(
                "[channels, height, width] equal to the model's input shape {:?}",
                model.input_shape()
            ),
        ));
    }
    Ok(())
}

impl ValidImageKernelShapParams {
    /// Segments `image` (`[channels, height, width]`, the model's input shape) with SLIC and
    /// explains the requested classes on its superpixels.
    pub fn explain(
        &self,
        model: &dyn Predictor,
        image: ArrayView3<'_, f32>,
    ) -> Result<Explanation<ImageShapValues>> {
        check_image_for_model(model, &image)?;
        let segmentation = self.slic.segment(image)?;
        self.explain_segmented(model, image, segmentation)
    }

    /// Segments `image` with SLIC and explains it against a background data set of images
    /// (`[N, c, h, w]` rows of `background`, weighted): an absent superpixel takes each
    /// background image's pixels and the value of a coalition is the weighted mean of the
    /// model over the background images, as shap's `KernelExplainer(f, data)`. The parameters'
    /// own [`Background`] is unused here.
    pub fn explain_with_data(
        &self,
        model: &dyn Predictor,
        image: ArrayView3<'_, f32>,
        background: &BackgroundData,
    ) -> Result<Explanation<ImageShapValues>> {
        check_image_for_model(model, &image)?;
        let segmentation = self.slic.segment(image)?;
        let games = BackgroundGames::image(model, background, image, &segmentation)?;
        let values = self.shap.estimate_rows(&games)?.remove(0);
        let data = image_values(values, segmentation);
        Ok(Explanation {
            meta: Meta::new(
                KERNEL_SHAP_IMAGE,
                &self.params,
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            )?,
            data,
        })
    }

    /// Explains `image` on a given segmentation (the SLIC parameters are then unused).
    pub fn explain_segmented(
        &self,
        model: &dyn Predictor,
        image: ArrayView3<'_, f32>,
        segmentation: Segmentation,
    ) -> Result<Explanation<ImageShapValues>> {
        check_image_for_model(model, &image)?;
        let masker = ImageMasker::new(image, &segmentation, &self.background)?;
        let game = MaskedPredictor::new(model, &masker)?;
        let values = self.shap.estimate(&game)?;
        let data = image_values(values, segmentation);
        Ok(Explanation {
            meta: Meta::new(
                KERNEL_SHAP_IMAGE,
                &self.params,
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            )?,
            data,
        })
    }
}

/// Spreads per-segment values over the pixels.
pub(crate) fn image_values(values: ShapValues, segmentation: Segmentation) -> ImageShapValues {
    let (h, w) = segmentation.dim();
    let d = values.labels.len();
    let segment_values = values.values.mapv(|v| v as f32);
    let index = segmentation.segment_indices();
    let mut attributions = Array3::zeros((d, h, w));
    for (k, mut map) in attributions.axis_iter_mut(Axis(0)).enumerate() {
        for (px, v) in map.iter_mut().enumerate() {
            *v = segment_values[[k, index[px]]];
        }
    }
    ImageShapValues {
        labels: values.labels,
        attributions,
        segment_values,
        base_values: values.base_values.iter().map(|&v| v as f32).collect(),
        instance_values: values.instance_values.iter().map(|&v| v as f32).collect(),
        segmentation,
        inert_segments: values.inert_features,
        n_evaluations: values.n_evaluations,
        exact: values.exact,
    }
}

/// dianna's `explain_image(model, image, labels, method="KernelSHAP", nsamples, background,
/// n_segments, compactness, sigma)`: [`ImageKernelShapParams`] with these values and every other
/// parameter at its default, checked and run.
pub fn explain_image(
    model: &dyn Predictor,
    image: ArrayView3<'_, f32>,
    labels: &[usize],
    nsamples: impl Into<NSamples>,
    background: Background,
    n_segments: usize,
    compactness: f32,
    sigma: f32,
) -> Result<Explanation<ImageShapValues>> {
    ImageKernelShapParams::new()
        .labels(labels.to_vec())
        .nsamples(nsamples)
        .background(background)
        .n_segments(n_segments)
        .compactness(compactness)
        .sigma(sigma)
        .check()?
        .explain(model, image)
}
