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

use ndarray::{Array2, Array3, ArrayD, ArrayView2, ArrayView3, Axis, IxDyn};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use xai_core::{CoreError, Explanation, Meta, NpyArrays, Predictor};

use crate::error::{Result, ShapError};
use crate::game::{Background, CoalitionGame, CoalitionMasker, ImageMasker, MaskedPredictor};
use crate::hyperparams::{
    ImageKernelShapParams, Link, NSamples, ValidImageKernelShapParams, ValidKernelShapParams,
};
use crate::sampling::{design, effective_nsamples};
use crate::slic::Segmentation;
use crate::solver::{FeatureSelection, NormalEquations};

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

fn apply_link(link: Link, value: f64, label: usize, coalition: usize) -> Result<f64> {
    link.apply(value).ok_or(ShapError::LogitDomain {
        label,
        coalition,
        value,
    })
}

/// Evaluates `coalitions`, checking the output shape and finiteness; `first` numbers the rows
/// in error messages.
fn evaluate_checked(
    game: &dyn CoalitionGame,
    coalitions: ArrayView2<'_, bool>,
    first: usize,
) -> Result<Array2<f64>> {
    let out = game.evaluate(coalitions)?;
    let expected = [coalitions.nrows(), game.n_outputs()];
    if out.shape() != expected {
        return Err(ShapError::BatchShape {
            what: "coalition function".into(),
            got: out.shape().to_vec(),
            expected: format!("{expected:?}"),
        });
    }
    if let Some(((row, label), &value)) = out.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(ShapError::NonFiniteOutput {
            label,
            coalition: first + row,
            value,
        });
    }
    Ok(out)
}

impl ValidKernelShapParams {
    /// The labels to explain for a game with `n_outputs` outputs, checked.
    fn resolve_labels(&self, n_outputs: usize) -> Result<Vec<usize>> {
        if n_outputs == 0 {
            return Err(CoreError::Empty("the model's outputs".into()).into());
        }
        let labels = match self.labels() {
            Some(l) => l.to_vec(),
            None => (0..n_outputs).collect(),
        };
        if let Some(&label) = labels.iter().find(|&&l| l >= n_outputs) {
            return Err(ShapError::LabelOutOfRange { label, n_outputs });
        }
        Ok(labels)
    }

    /// KernelSHAP values of `game` (see the module docs), without `meta`.
    pub fn estimate(&self, game: &dyn CoalitionGame) -> Result<ShapValues> {
        let labels = self.resolve_labels(game.n_outputs())?;
        let d = labels.len();
        let m_total = game.n_players();
        let mut inert = vec![false; m_total];
        if self.skip_inert_features() {
            for j in game.inert_players() {
                if j >= m_total {
                    return Err(ShapError::param(
                        "inert player",
                        j,
                        format!("an index below the number of players {m_total}"),
                    ));
                }
                inert[j] = true;
            }
        }
        let active: Vec<usize> = (0..m_total).filter(|&j| !inert[j]).collect();
        let inert_features: Vec<usize> = (0..m_total).filter(|&j| inert[j]).collect();
        let m = active.len();

        let mut references = Array2::from_elem((2, m_total), false);
        references.row_mut(1).fill(true);
        let out = evaluate_checked(game, references.view(), 0)?;
        let link = self.link();
        let mut base_values = Vec::with_capacity(d);
        let mut instance_values = Vec::with_capacity(d);
        for &l in &labels {
            base_values.push(apply_link(link, out[[0, l]], l, 0)?);
            instance_values.push(apply_link(link, out[[1, l]], l, 1)?);
        }
        let delta: Vec<f64> = instance_values
            .iter()
            .zip(&base_values)
            .map(|(f, b)| f - b)
            .collect();

        let mut values = Array2::zeros((d, m_total));
        let mut n_coalitions = 0;
        let mut exact = true;
        if m == 1 {
            for k in 0..d {
                values[[k, active[0]]] = delta[k];
            }
        } else if m >= 2 {
            let nsamples = effective_nsamples(m, self.nsamples().resolve(m));
            let mut rng = StdRng::seed_from_u64(self.seed());
            let coalitions = design(self.sampling(), m, nsamples, &mut rng)?;
            let with_selection = matches!(self.l1_reg(), FeatureSelection::TopK(k) if k < m);
            let mut equations = NormalEquations::new(m, d, self.regression(), with_selection);
            let batch = self.batch_size();
            let mut start = 0;
            while start < coalitions.len() {
                let end = (start + batch).min(coalitions.len());
                let rows = end - start;
                let mut masks = Array2::from_elem((rows, m_total), true);
                let mut z = Array2::<f64>::zeros((rows, m));
                for r in 0..rows {
                    for (a, &j) in active.iter().enumerate() {
                        let present = coalitions.contains(start + r, a);
                        masks[[r, j]] = present;
                        z[[r, a]] = if present { 1.0 } else { 0.0 };
                    }
                }
                let out = evaluate_checked(game, masks.view(), 2 + start)?;
                let mut y = Array2::<f64>::zeros((rows, d));
                for r in 0..rows {
                    for (k, &l) in labels.iter().enumerate() {
                        y[[r, k]] =
                            apply_link(link, out[[r, l]], l, 2 + start + r)? - base_values[k];
                    }
                }
                equations.add(z.view(), &coalitions.weights()[start..end], y.view());
                start = end;
            }
            let phi = equations.solve(&delta, self.l1_reg());
            for k in 0..d {
                for (a, &j) in active.iter().enumerate() {
                    values[[k, j]] = phi[[k, a]];
                }
            }
            n_coalitions = coalitions.len();
            exact = coalitions.is_exact();
        }
        Ok(ShapValues {
            labels,
            values,
            base_values,
            instance_values,
            inert_features,
            n_coalitions,
            n_evaluations: n_coalitions + 2,
            exact,
        })
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
