//! Training an L2X explainer ([`L2xValidParams::fit`]) and explaining images with it
//! ([`L2x::explain`]); saving and loading a trained explainer.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{s, Array2, Array3, Array4, ArrayView2, ArrayView3, ArrayView4, Axis};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use xai_core::{argmax_rows, CoreError, Explanation, Loss, Meta, OutputKind, Predictor, Targets};
use xai_models::{Adam, Network};

use crate::error::{L2xError, Result};
use crate::explanation::L2xData;
use crate::hyperparams::{L2xParams, L2xValidParams, Mode, TargetKind};
use crate::models::{default_prediction_model, default_selection_model, L2xNet, SelectionModel};
use crate::relaxation::{
    check_k, hard_top_k, relaxed_k_hot, sample_gumbel, selection_probability, top_k_indices,
};
use crate::upsample::BilinearUpsample;

/// Images per forward pass outside training (bounds memory).
const EVAL_CHUNK: usize = 256;
/// Images per call of the black box when labelling the training data.
const LABEL_CHUNK: usize = 1024;

/// Method name in [`Meta`].
pub const METHOD_NAME: &str = "L2X";

/// How training went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Training images.
    pub n_samples: usize,
    /// Batch size used.
    pub batch_size: usize,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// Wall-clock seconds of each epoch. Not serialized (in explanations' `meta` or a saved
    /// explainer): a seeded run writes the same bytes every time, and the shards of a sharded
    /// `xai l2x` run merge into exactly the unsharded output.
    #[serde(skip)]
    pub epoch_seconds: Vec<f64>,
    /// omnixai's `_check_performance`: the approximator on the *whole* training images
    /// (weights all 1) against the black box — accuracy of its top class in classification
    /// mode (omnixai warns below 0.7), mean relative error in regression mode (omnixai warns
    /// above 0.3).
    pub full_input_score: f32,
}

/// A trained L2X explainer: the selection model, the approximator (prediction model), and the
/// upsampling from the selection's patch grid to the image.
///
/// Built by [`L2xValidParams::fit`] (default models) or [`L2xValidParams::fit_with`] (your
/// own), or read back with [`L2x::load`] / [`L2x::load_with`].
#[derive(Debug, Clone)]
pub struct L2x<S = Network, P = Network> {
    params: L2xValidParams,
    selection: S,
    prediction: P,
    upsample: BilinearUpsample,
    regions: Vec<usize>,
    input_shape: [usize; 3],
    n_outputs: usize,
    summary: TrainingSummary,
}

fn image_shape_of(images: &ArrayView4<'_, f32>) -> [usize; 3] {
    let s = images.shape();
    [s[1], s[2], s[3]]
}

fn fmt_shape(s: &[usize]) -> String {
    format!(
        "[n, {}]",
        s.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Checks images against a black box: non-empty, finite, and shaped `[n, ..input_shape]`.
fn check_images_for(
    what: &str,
    images: &ArrayView4<'_, f32>,
    black_box: &dyn Predictor,
) -> Result<()> {
    if images.shape()[1..] != *black_box.input_shape() {
        return Err(L2xError::shape(
            format!("{what} (for the black box)"),
            images.shape(),
            fmt_shape(black_box.input_shape()),
        ));
    }
    xai_core::check_finite(what, &images.view().into_dyn())?;
    Ok(())
}

/// Runs the black box over `images` in chunks, checking its output shape and values.
fn black_box_outputs(
    black_box: &dyn Predictor,
    images: ArrayView4<'_, f32>,
) -> Result<Array2<f32>> {
    let n = images.shape()[0];
    let m = black_box.n_outputs();
    let mut out = Array2::<f32>::zeros((n, m));
    let mut start = 0;
    while start < n {
        let end = (start + LABEL_CHUNK).min(n);
        let y = black_box.predict(images.slice(s![start..end, .., .., ..]).into_dyn())?;
        if y.dim() != (end - start, m) {
            return Err(L2xError::shape(
                "black box outputs",
                y.shape(),
                format!("[{}, {m}] (n_outputs() = {m})", end - start),
            ));
        }
        out.slice_mut(s![start..end, ..]).assign(&y);
        start = end;
    }
    xai_core::check_finite("black box outputs", &out.view().into_dyn())?;
    Ok(out)
}

fn softmax_rows(x: &Array2<f32>) -> Array2<f32> {
    let mut p = x.clone();
    for mut row in p.rows_mut() {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

/// Multiplies each channel of `x` (`[n, c, h, w]`, standard layout) by `w` (`[n, h * w]`).
fn mask_images(x: &Array4<f32>, w: &Array2<f32>) -> Array4<f32> {
    let mut out = x.clone();
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let plane = x.shape()[2] * x.shape()[3];
    for i in 0..n {
        let wi = w.row(i);
        for ch in 0..c {
            let mut img = out.slice_mut(s![i, ch, .., ..]);
            for (v, wv) in img.iter_mut().zip(wi.iter()) {
                *v *= wv;
            }
        }
    }
    debug_assert_eq!(w.ncols(), plane);
    out
}

/// The loss of one batch and the gradients of both networks (Chen et al. 2018, Eq. 6 with the
/// relaxation of Eq. 8): selection forward → relaxed k-hot weights → bilinear upsampling →
/// image ⊙ weights → approximator → loss, then back through every step.
pub(crate) struct StepOutput {
    /// Per-sample losses summed over the batch.
    pub loss_sum: f64,
    pub selection_grads: Vec<Vec<f32>>,
    pub prediction_grads: Vec<Vec<f32>>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step_gradients<S: SelectionModel, P: L2xNet>(
    selection: &S,
    prediction: &P,
    upsample: &BilinearUpsample,
    loss: &Loss,
    tau: f32,
    xb: &Array4<f32>,
    targets: &Targets,
    gumbel: ArrayView3<'_, f32>,
    mut rng: Option<&mut StdRng>,
) -> Result<StepOutput> {
    let nb = xb.shape()[0];
    let (logits, sel_trace) = selection.forward_train(xb.view(), rng.as_deref_mut())?;
    let relaxed = relaxed_k_hot(logits.view(), gumbel, tau)?;
    let w_up = upsample.forward(relaxed.weights())?;
    let xm = mask_images(xb, &w_up);
    let (outputs, pred_trace) = prediction.forward_train(xm.view(), rng)?;
    let (values, mut grad) = loss.value_and_grad(outputs.view(), targets)?;
    grad /= nb as f32;
    let pred_grads = prediction.backward(&pred_trace, grad.view(), true)?;
    let prediction_grads = pred_grads.params;
    let dxm = pred_grads.input.ok_or_else(|| {
        L2xError::from(CoreError::Model(
            "the prediction model returned no input gradient".into(),
        ))
    })?;
    if dxm.shape() != xb.shape() {
        return Err(L2xError::shape(
            "input gradient of the prediction model",
            dxm.shape(),
            format!("{:?}", xb.shape()),
        ));
    }
    // d/dw of Σ_c x_c ⊙ w: the sum over channels of dxm ⊙ x.
    let mut dw_up = Array2::<f32>::zeros(w_up.raw_dim());
    for i in 0..nb {
        let mut row = dw_up.row_mut(i);
        for ch in 0..xb.shape()[1] {
            let g = dxm.slice(s![i, ch, .., ..]);
            let x = xb.slice(s![i, ch, .., ..]);
            for ((d, gv), xv) in row.iter_mut().zip(g.iter()).zip(x.iter()) {
                *d += gv * xv;
            }
        }
    }
    let dw = upsample.backward(dw_up.view())?;
    let dlogits = relaxed.backward(dw.view())?;
    let selection_grads = selection
        .backward(&sel_trace, dlogits.view(), false)?
        .params;
    Ok(StepOutput {
        loss_sum: values.iter().map(|v| *v as f64).sum(),
        selection_grads,
        prediction_grads,
    })
}

impl L2xValidParams {
    /// Trains L2X with omnixai's default selection and prediction models
    /// ([`default_selection_model`], [`default_prediction_model`]) on `images` (`[n, c, h, w]`),
    /// labelled by the black box `black_box` (only its outputs are used).
    pub fn fit(&self, images: ArrayView4<'_, f32>, black_box: &dyn Predictor) -> Result<L2x> {
        if images.shape()[0] == 0 {
            return Err(L2xError::EmptyTrainingData);
        }
        check_images_for("training images", &images, black_box)?;
        let shape = image_shape_of(&images);
        let selection = default_selection_model(shape, self.seed())?;
        let prediction =
            default_prediction_model(shape, black_box.n_outputs(), self.seed().wrapping_add(1))?;
        self.fit_with(images, black_box, selection, prediction)
    }

    /// Trains L2X with your own selection and prediction models (both already initialised).
    ///
    /// The selection model must take the images and score `grid_h * grid_w` patches, with
    /// `k` at most that many; the prediction model must take the images and have as many
    /// outputs as the black box.
    pub fn fit_with<S: SelectionModel, P: L2xNet>(
        &self,
        images: ArrayView4<'_, f32>,
        black_box: &dyn Predictor,
        mut selection: S,
        mut prediction: P,
    ) -> Result<L2x<S, P>> {
        let n = images.shape()[0];
        if n == 0 {
            return Err(L2xError::EmptyTrainingData);
        }
        check_images_for("training images", &images, black_box)?;
        let mut l2x = L2x::assemble(
            self.clone(),
            check_models(&selection, &prediction, &images, black_box)?,
            black_box.n_outputs(),
            TrainingSummary {
                n_samples: n,
                batch_size: self.effective_batch_size(n),
                epoch_losses: Vec::new(),
                epoch_seconds: Vec::new(),
                full_input_score: f32::NAN,
            },
            (),
            (),
        )?;
        let outputs = black_box_outputs(black_box, images)?;
        let targets = self.make_targets(&outputs)?;
        let loss = self.loss();
        let d = l2x.upsample.input_size().0 * l2x.upsample.input_size().1;
        let batch_size = l2x.summary.batch_size;
        let steps = n.div_ceil(batch_size);
        let epochs = self.num_epochs();
        let mut rng = StdRng::seed_from_u64(self.seed().wrapping_add(2));
        let mut adam_sel = Adam::new(self.learning_rate());
        let mut adam_pred = Adam::new(self.learning_rate());
        let mut order: Vec<usize> = (0..n).collect();
        let bar = if self.progress() {
            let b = ProgressBar::new((steps * epochs) as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix("L2X");
            b
        } else {
            ProgressBar::hidden()
        };
        for epoch in 0..epochs {
            let started = Instant::now();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut seen) = (0.0f64, 0usize);
            for idx in order.chunks(batch_size) {
                let xb = images.select(Axis(0), idx);
                let tb = targets.select(idx)?;
                let gumbel = sample_gumbel(idx.len(), self.k(), d, &mut rng);
                let out = step_gradients(
                    &selection,
                    &prediction,
                    &l2x.upsample,
                    &loss,
                    self.tau(),
                    &xb,
                    &tb,
                    gumbel.view(),
                    Some(&mut rng),
                )?;
                adam_sel.step(selection.params_mut(), &out.selection_grads)?;
                adam_pred.step(prediction.params_mut(), &out.prediction_grads)?;
                loss_sum += out.loss_sum;
                seen += idx.len();
                bar.set_message(format!(
                    "epoch {}/{epochs} loss {:.4}",
                    epoch + 1,
                    loss_sum / seen as f64
                ));
                bar.inc(1);
            }
            let epoch_loss = (loss_sum / seen.max(1) as f64) as f32;
            if !epoch_loss.is_finite() {
                bar.abandon();
                return Err(L2xError::param(
                    "learning_rate",
                    self.learning_rate(),
                    format!(
                        "a rate at which training converges (the loss of epoch {} is {epoch_loss})",
                        epoch + 1
                    ),
                ));
            }
            l2x.summary.epoch_losses.push(epoch_loss);
            l2x.summary
                .epoch_seconds
                .push(started.elapsed().as_secs_f64());
            if self.progress() && !std::io::stderr().is_terminal() {
                eprintln!("L2X epoch {}/{epochs}: loss {epoch_loss:.4}", epoch + 1);
            }
        }
        bar.finish();
        let full = full_input_outputs(&prediction, images)?;
        l2x.summary.full_input_score = match self.mode() {
            Mode::Classification => {
                agreement(&argmax_rows(full.view()), &argmax_rows(outputs.view()))
            }
            Mode::Regression => mean_relative_error(&full, &outputs),
        };
        Ok(l2x.with_models(selection, prediction))
    }

    /// The approximator's loss: cross-entropy on its logits (classification) or the mean squared
    /// error (regression).
    pub fn loss(&self) -> Loss {
        match self.mode() {
            Mode::Classification => Loss::CrossEntropy(OutputKind::Logits),
            Mode::Regression => Loss::MeanSquaredError,
        }
    }

    /// The approximator's targets from the black box's outputs.
    fn make_targets(&self, outputs: &Array2<f32>) -> Result<Targets> {
        match self.mode() {
            Mode::Regression => Ok(Targets::Values(outputs.clone())),
            Mode::Classification => {
                if outputs.ncols() < 2 {
                    return Err(L2xError::shape(
                        "black box outputs (classification)",
                        outputs.shape(),
                        "[n, n_classes] with n_classes >= 2 (use Mode::Regression for one value)",
                    ));
                }
                match self.targets() {
                    TargetKind::Classes => Ok(Targets::Classes(argmax_rows(outputs.view()))),
                    TargetKind::Probabilities => match self.black_box_outputs() {
                        OutputKind::Logits => Ok(Targets::Probabilities(softmax_rows(outputs))),
                        OutputKind::Probabilities => {
                            for (row, r) in outputs.rows().into_iter().enumerate() {
                                let min = r.iter().cloned().fold(f32::INFINITY, f32::min);
                                let sum = r.sum();
                                if min < -1e-6 || (sum - 1.0).abs() > 1e-3 {
                                    return Err(L2xError::NotProbabilities { row, min, sum });
                                }
                            }
                            Ok(Targets::Probabilities(outputs.clone()))
                        }
                    },
                }
            }
        }
    }
}

/// The checks [`L2xValidParams::fit_with`] makes on the models; returns the patch grid.
fn check_models<S: SelectionModel, P: L2xNet>(
    selection: &S,
    prediction: &P,
    images: &ArrayView4<'_, f32>,
    black_box: &dyn Predictor,
) -> Result<((usize, usize), [usize; 3])> {
    let shape = image_shape_of(images);
    if selection.input_shape() != shape {
        return Err(L2xError::shape(
            "training images (for the selection model)",
            images.shape(),
            fmt_shape(&selection.input_shape()),
        ));
    }
    if prediction.input_shape() != shape {
        return Err(L2xError::shape(
            "training images (for the prediction model)",
            images.shape(),
            fmt_shape(&prediction.input_shape()),
        ));
    }
    if prediction.n_outputs() != black_box.n_outputs() {
        return Err(L2xError::shape(
            "prediction model outputs",
            &[prediction.n_outputs()],
            format!("[{}] (the black box's n_outputs)", black_box.n_outputs()),
        ));
    }
    let grid = selection.patch_grid();
    if grid.0 * grid.1 != selection.n_outputs() || grid.0 == 0 || grid.1 == 0 {
        return Err(L2xError::shape(
            "selection model patch grid",
            &[grid.0, grid.1],
            format!(
                "a non-empty grid with as many cells as the model's {} outputs",
                selection.n_outputs()
            ),
        ));
    }
    Ok((grid, shape))
}

fn full_input_outputs<P: L2xNet>(
    prediction: &P,
    images: ArrayView4<'_, f32>,
) -> Result<Array2<f32>> {
    let n = images.shape()[0];
    let mut out = Array2::<f32>::zeros((n, prediction.n_outputs()));
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_CHUNK).min(n);
        let y = prediction.predict(images.slice(s![start..end, .., .., ..]))?;
        out.slice_mut(s![start..end, ..]).assign(&y);
        start = end;
    }
    Ok(out)
}

/// Fraction of equal entries.
pub(crate) fn agreement(a: &[usize], b: &[usize]) -> f32 {
    if a.is_empty() {
        return f32::NAN;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f32 / a.len() as f32
}

/// omnixai's regression check: mean of |y - ŷ| / |y|.
fn mean_relative_error(pred: &Array2<f32>, target: &Array2<f32>) -> f32 {
    let n = pred.len().max(1) as f32;
    pred.iter()
        .zip(target.iter())
        .map(|(p, t)| (p - t).abs() / t.abs().max(f32::MIN_POSITIVE))
        .sum::<f32>()
        / n
}

/// Everything in a saved explainer besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedConfig {
    format: String,
    crate_version: String,
    params: L2xParams,
    input_shape: [usize; 3],
    n_outputs: usize,
    patch_grid: (usize, usize),
    summary: TrainingSummary,
}

const SAVED_FORMAT: &str = "xai-l2x/1";
/// File names inside a saved explainer's folder.
pub const CONFIG_FILE: &str = "l2x.json";
/// The selection model's weights.
pub const SELECTION_FILE: &str = "selection.safetensors";
/// The prediction model's weights.
pub const PREDICTION_FILE: &str = "prediction.safetensors";

impl<S, P> L2x<S, P> {
    /// Builds the explainer's fixed parts (upsampling, regions) around placeholder models.
    fn assemble(
        params: L2xValidParams,
        (grid, input_shape): ((usize, usize), [usize; 3]),
        n_outputs: usize,
        summary: TrainingSummary,
        selection: S,
        prediction: P,
    ) -> Result<Self> {
        check_k(params.k(), grid.0 * grid.1)?;
        let upsample = BilinearUpsample::new(grid, (input_shape[1], input_shape[2]))?;
        let regions = upsample.regions();
        Ok(Self {
            params,
            selection,
            prediction,
            upsample,
            regions,
            input_shape,
            n_outputs,
            summary,
        })
    }

    fn with_models<S2, P2>(self, selection: S2, prediction: P2) -> L2x<S2, P2> {
        L2x {
            params: self.params,
            selection,
            prediction,
            upsample: self.upsample,
            regions: self.regions,
            input_shape: self.input_shape,
            n_outputs: self.n_outputs,
            summary: self.summary,
        }
    }

    /// The parameters it was trained with.
    pub fn params(&self) -> &L2xValidParams {
        &self.params
    }

    /// The selection model.
    pub fn selection_model(&self) -> &S {
        &self.selection
    }

    /// The prediction model (variational approximator).
    pub fn prediction_model(&self) -> &P {
        &self.prediction
    }

    /// `(grid_h, grid_w)` of the patches.
    pub fn patch_grid(&self) -> (usize, usize) {
        self.upsample.input_size()
    }

    /// Number of patches.
    pub fn n_patches(&self) -> usize {
        let (h, w) = self.patch_grid();
        h * w
    }

    /// Shape `[c, h, w]` of the images it explains.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// Number of black-box outputs it was trained on.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// How training went.
    pub fn summary(&self) -> &TrainingSummary {
        &self.summary
    }

    /// The upsampling from the patch grid to the image.
    pub fn upsampling(&self) -> &BilinearUpsample {
        &self.upsample
    }

    /// For every pixel (row-major), the patch it belongs to.
    pub fn pixel_regions(&self) -> &[usize] {
        &self.regions
    }

    fn check_images(&self, what: &str, images: &ArrayView4<'_, f32>) -> Result<()> {
        if images.shape()[1..] != self.input_shape {
            return Err(L2xError::shape(
                what,
                images.shape(),
                fmt_shape(&self.input_shape),
            ));
        }
        xai_core::check_finite(what, &images.view().into_dyn())?;
        Ok(())
    }

    fn check_black_box(&self, black_box: &dyn Predictor) -> Result<()> {
        if *black_box.input_shape() != self.input_shape {
            return Err(L2xError::shape(
                "black box input shape",
                black_box.input_shape(),
                format!(
                    "{:?} (the images the explainer was trained on)",
                    self.input_shape
                ),
            ));
        }
        if black_box.n_outputs() != self.n_outputs {
            return Err(L2xError::shape(
                "black box outputs",
                &[black_box.n_outputs()],
                format!(
                    "[{}] (the outputs the explainer was trained on)",
                    self.n_outputs
                ),
            ));
        }
        Ok(())
    }

    /// Binary pixel masks `[n, h * w]` of hard patch selections `[n, n_patches]`.
    pub fn pixel_masks(&self, patch_mask: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if patch_mask.ncols() != self.n_patches() {
            return Err(L2xError::shape(
                "patch mask",
                patch_mask.shape(),
                format!("[n, {}]", self.n_patches()),
            ));
        }
        let mut out = Array2::zeros((patch_mask.nrows(), self.regions.len()));
        for (mut o, m) in out.rows_mut().into_iter().zip(patch_mask.rows()) {
            for (v, &r) in o.iter_mut().zip(&self.regions) {
                *v = if m[r] > 0.5 { 1.0 } else { 0.0 };
            }
        }
        Ok(out)
    }

    /// `images` with every pixel outside the selected patches set to `background`
    /// (what the black box is shown in [`crate::fidelity()`]).
    pub fn keep_selected(
        &self,
        images: ArrayView4<'_, f32>,
        patch_mask: ArrayView2<'_, f32>,
        background: f32,
    ) -> Result<Array4<f32>> {
        self.check_images("images", &images)?;
        if patch_mask.nrows() != images.shape()[0] {
            return Err(L2xError::shape(
                "patch mask",
                patch_mask.shape(),
                format!("[{}, {}]", images.shape()[0], self.n_patches()),
            ));
        }
        let pixels = self.pixel_masks(patch_mask)?;
        let mut out = images.to_owned();
        for (i, m) in pixels.rows().into_iter().enumerate() {
            for ch in 0..self.input_shape[0] {
                let mut img = out.slice_mut(s![i, ch, .., ..]);
                for (v, keep) in img.iter_mut().zip(m.iter()) {
                    if *keep == 0.0 {
                        *v = background;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl<S: SelectionModel, P: L2xNet> L2x<S, P> {
    /// The selection model's patch logits `[n, n_patches]` (evaluation mode).
    pub fn patch_logits(&self, images: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        self.check_images("images", &images)?;
        let n = images.shape()[0];
        let mut out = Array2::zeros((n, self.n_patches()));
        let mut start = 0;
        while start < n {
            let end = (start + EVAL_CHUNK).min(n);
            let y = self
                .selection
                .predict(images.slice(s![start..end, .., .., ..]))?;
            if y.ncols() != self.n_patches() {
                return Err(L2xError::shape(
                    "selection model outputs",
                    y.shape(),
                    format!("[n, {}]", self.n_patches()),
                ));
            }
            out.slice_mut(s![start..end, ..]).assign(&y);
            start = end;
        }
        Ok(out)
    }

    /// The hard selection of the `k` best patches of each image, `[n, n_patches]` (exactly `k`
    /// ones per row); `k` may differ from the one trained with.
    pub fn select(&self, images: ArrayView4<'_, f32>, k: usize) -> Result<Array2<f32>> {
        let logits = self.patch_logits(images)?;
        hard_top_k(logits.view(), k)
    }

    /// The approximator's outputs `[n, n_outputs]` from `images` times the bilinearly upsampled
    /// patch weights `patch_weights` (`[n, n_patches]`, e.g. a hard selection): L2X's
    /// `g_α(x ⊙ upsample(w))`.
    pub fn approximate(
        &self,
        images: ArrayView4<'_, f32>,
        patch_weights: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        self.check_images("images", &images)?;
        let n = images.shape()[0];
        if patch_weights.dim() != (n, self.n_patches()) {
            return Err(L2xError::shape(
                "patch weights",
                patch_weights.shape(),
                format!("[{n}, {}]", self.n_patches()),
            ));
        }
        let mut out = Array2::zeros((n, self.n_outputs));
        let mut start = 0;
        while start < n {
            let end = (start + EVAL_CHUNK).min(n);
            let w = self
                .upsample
                .forward(patch_weights.slice(s![start..end, ..]))?;
            let x = images.slice(s![start..end, .., .., ..]).to_owned();
            let y = self.prediction.predict(mask_images(&x, &w).view())?;
            out.slice_mut(s![start..end, ..]).assign(&y);
            start = end;
        }
        Ok(out)
    }

    /// A stochastic importance map as omnixai's `explain` returns it: one relaxed k-hot sample
    /// of the patch weights (Eq. 8, temperature `tau`), bilinearly upsampled, `[n, h, w]`.
    /// [`L2x::explain`] gives its deterministic `τ → 0` expectation instead.
    pub fn sample_importance(&self, images: ArrayView4<'_, f32>, seed: u64) -> Result<Array3<f32>> {
        let logits = self.patch_logits(images)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let g = sample_gumbel(logits.nrows(), self.params.k(), self.n_patches(), &mut rng);
        let w = relaxed_k_hot(logits.view(), g.view(), self.params.tau())?;
        let up = self.upsample.forward(w.weights())?;
        let (h, wd) = (self.input_shape[1], self.input_shape[2]);
        Ok(up
            .into_shape_with_order((logits.nrows(), h, wd))
            .map_err(|e| CoreError::Model(e.to_string()))?)
    }

    /// Explains each image of `images` (`[n, c, h, w]`) with the trained selection model: the
    /// importance map, the hard top-`k` selection (patches and pixel mask), the black box's
    /// outputs and explained label (its top class), and the approximator's prediction from the
    /// selection alone.
    ///
    /// `black_box` must be the model the explainer was trained for (same input shape and
    /// number of outputs).
    pub fn explain(
        &self,
        black_box: &dyn Predictor,
        images: ArrayView4<'_, f32>,
    ) -> Result<Explanation<L2xData>> {
        self.check_black_box(black_box)?;
        self.check_images("images to explain", &images)?;
        let n = images.shape()[0];
        if n == 0 {
            return Err(CoreError::Empty("the batch of images to explain".into()).into());
        }
        let k = self.params.k();
        let (gh, gw) = self.patch_grid();
        let (h, w) = (self.input_shape[1], self.input_shape[2]);
        let logits = self.patch_logits(images)?;
        let patch_mask = hard_top_k(logits.view(), k)?;
        let importance = self
            .upsample
            .forward(selection_probability(logits.view(), k)?.view())?;
        let mask = self.pixel_masks(patch_mask.view())?;
        let selected_patches = logits
            .rows()
            .into_iter()
            .map(|r| top_k_indices(r, k))
            .collect();
        let approximator_outputs = self.approximate(images, patch_mask.view())?;
        let outputs = black_box_outputs(black_box, images)?;
        let classification = self.params.mode() == Mode::Classification;
        let labels = classification.then(|| argmax_rows(outputs.view()));
        let approximator_labels = classification.then(|| argmax_rows(approximator_outputs.view()));
        let to3 = |a: Array2<f32>, r: usize, c: usize| -> Result<Array3<f32>> {
            Ok(a.into_shape_with_order((n, r, c))
                .map_err(|e| CoreError::Model(e.to_string()))?)
        };
        let data = L2xData {
            k,
            importance: to3(importance, h, w)?,
            mask: to3(mask, h, w)?,
            patch_logits: to3(logits, gh, gw)?,
            patch_mask: to3(patch_mask, gh, gw)?,
            selected_patches,
            black_box_outputs: outputs,
            labels,
            approximator_outputs,
            approximator_labels,
        };
        Ok(Explanation {
            meta: self.meta()?,
            data,
        })
    }

    /// The `meta` of this explainer's explanations: every parameter, the input shape, the patch
    /// grid and the training summary.
    pub fn meta(&self) -> Result<Meta> {
        #[derive(Serialize)]
        struct MetaParams<'a> {
            #[serde(flatten)]
            params: &'a L2xValidParams,
            input_shape: [usize; 3],
            patch_grid: (usize, usize),
            n_outputs: usize,
            training: &'a TrainingSummary,
        }
        Ok(Meta::new(
            METHOD_NAME,
            &MetaParams {
                params: &self.params,
                input_shape: self.input_shape,
                patch_grid: self.patch_grid(),
                n_outputs: self.n_outputs,
                training: &self.summary,
            },
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
        )?)
    }

    /// Saves the trained explainer in the folder `dir` (created if needed): `l2x.json` (the
    /// parameters, shapes and training summary) and the weights of both models as safetensors
    /// (`selection.safetensors`, `prediction.safetensors`).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| L2xError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = SavedConfig {
            format: SAVED_FORMAT.into(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            params: self.params.to_params(),
            input_shape: self.input_shape,
            n_outputs: self.n_outputs,
            patch_grid: self.patch_grid(),
            summary: self.summary.clone(),
        };
        let json = serde_json::to_string_pretty(&config)
            .map_err(|e| CoreError::Serialize(e.to_string()))?;
        let path = dir.join(CONFIG_FILE);
        std::fs::write(&path, json).map_err(|source| L2xError::Io { path, source })?;
        let meta = HashMap::from([
            ("method".to_string(), METHOD_NAME.to_string()),
            ("k".to_string(), self.params.k().to_string()),
        ]);
        self.selection
            .save_weights(&dir.join(SELECTION_FILE), meta.clone())?;
        self.prediction
            .save_weights(&dir.join(PREDICTION_FILE), meta)?;
        Ok(())
    }

    /// Loads an explainer saved by [`L2x::save`] into the given (freshly built) models, which
    /// must have the saved architecture.
    pub fn load_with(dir: impl AsRef<Path>, mut selection: S, mut prediction: P) -> Result<Self> {
        let dir = dir.as_ref();
        let config = read_config(dir)?;
        let params = config.params.clone().check()?;
        let bad = |reason: String| L2xError::Saved {
            path: dir.join(CONFIG_FILE),
            reason,
        };
        if selection.input_shape() != config.input_shape
            || prediction.input_shape() != config.input_shape
        {
            return Err(bad(format!(
                "the models take images {:?} / {:?}, the explainer was saved for {:?}",
                selection.input_shape(),
                prediction.input_shape(),
                config.input_shape
            )));
        }
        if selection.patch_grid() != config.patch_grid {
            return Err(bad(format!(
                "the selection model scores a {:?} grid, the saved one a {:?} grid",
                selection.patch_grid(),
                config.patch_grid
            )));
        }
        if prediction.n_outputs() != config.n_outputs {
            return Err(bad(format!(
                "the prediction model has {} outputs, the saved one {}",
                prediction.n_outputs(),
                config.n_outputs
            )));
        }
        selection.load_weights(&dir.join(SELECTION_FILE))?;
        prediction.load_weights(&dir.join(PREDICTION_FILE))?;
        let l2x = L2x::assemble(
            params,
            (config.patch_grid, config.input_shape),
            config.n_outputs,
            config.summary,
            selection,
            prediction,
        )?;
        Ok(l2x)
    }
}

fn read_config(dir: &Path) -> Result<SavedConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| L2xError::Io {
        path: path.clone(),
        source,
    })?;
    let config: SavedConfig = serde_json::from_str(&text).map_err(|e| L2xError::Saved {
        path: path.clone(),
        reason: format!("not an L2X configuration ({e})"),
    })?;
    if config.format != SAVED_FORMAT {
        return Err(L2xError::Saved {
            path,
            reason: format!("format `{}`, expected `{SAVED_FORMAT}`", config.format),
        });
    }
    Ok(config)
}

/// Checks, before any network is built, that the sizes in a saved configuration fit the saved
/// weight files: the default models have `[c, h, w]`- and `n_outputs`-dependent parameter counts,
/// and each parameter takes 4 bytes in its safetensors file, so a configuration whose models would
/// need more than the files hold is corrupt (and would otherwise drive a huge allocation).
fn check_saved_sizes(dir: &Path, config: &SavedConfig) -> Result<()> {
    let [c, h, w] = config.input_shape;
    let bad = |reason: String| L2xError::Saved {
        path: dir.join(CONFIG_FILE),
        reason,
    };
    if c == 0 || h == 0 || w == 0 || config.n_outputs == 0 {
        return Err(bad(format!(
            "input shape {:?} and {} outputs: every size must be at least 1",
            config.input_shape, config.n_outputs
        )));
    }
    // Parameter counts of default_selection_model / default_prediction_model (checked).
    let selection = c
        .checked_mul(10 * 9)
        .and_then(|v| v.checked_add(10 + (10 * 20 * 9 + 20) + (20 + 1)));
    // The flattened side after two 5x5 convolutions and two 2x2 poolings (as the model builds it).
    let side = |s: usize| {
        s.checked_sub(4)
            .map(|v| v / 2)
            .and_then(|v| v.checked_sub(4))
            .map(|v| v / 2)
    };
    let fc1_in = side(h)
        .zip(side(w))
        .and_then(|(a, b)| a.checked_mul(b))
        .and_then(|v| v.checked_mul(20));
    let prediction = c
        .checked_mul(10 * 25)
        .and_then(|v| v.checked_add(10 + (10 * 20 * 25 + 20)))
        .and_then(|v| {
            fc1_in
                .and_then(|f| f.checked_mul(50))
                .and_then(|f| v.checked_add(f + 50))
        })
        .and_then(|v| {
            config
                .n_outputs
                .checked_mul(51)
                .and_then(|o| v.checked_add(o))
        });
    for (file, params) in [(SELECTION_FILE, selection), (PREDICTION_FILE, prediction)] {
        let path = dir.join(file);
        let bytes = std::fs::metadata(&path)
            .map_err(|source| L2xError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        let fits = params
            .and_then(|p| p.checked_mul(4))
            .is_some_and(|need| need as u64 <= bytes);
        if !fits {
            return Err(bad(format!(
                "input shape {:?} with {} outputs needs {} parameters in {file}, which holds {bytes} bytes",
                config.input_shape,
                config.n_outputs,
                params.map_or("more than usize::MAX".to_string(), |p| p.to_string()),
            )));
        }
    }
    Ok(())
}

impl L2x {
    /// Loads an explainer with the default models saved by [`L2x::save`] from the folder `dir`.
    /// The sizes in its `l2x.json` are checked against the weight files before any network is
    /// built.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = read_config(dir)?;
        check_saved_sizes(dir, &config)?;
        let seed = config.params.clone().check()?.seed();
        let selection = default_selection_model(config.input_shape, seed)?;
        let prediction =
            default_prediction_model(config.input_shape, config.n_outputs, seed.wrapping_add(1))?;
        L2x::load_with(dir, selection, prediction)
    }

    /// Whether `dir` holds a saved explainer (its `l2x.json`).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(CONFIG_FILE).is_file()
    }
}

/// The folder a saved explainer is conventionally kept in: `<models_dir>/l2x_<name>`.
pub fn explainer_dir(name: &str) -> PathBuf {
    xai_models::zoo::models_dir().join(format!("l2x_{name}"))
}
