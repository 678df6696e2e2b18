//! How faithful the selected patches are, measured on a test set next to a random-patch
//! baseline (Chen et al. 2018, Sec. 4: post-hoc accuracy).
//!
//! For each test image `x` with black-box label `y = argmax f(x)` and a selection `S` of `k`
//! patches:
//!
//! * **post-hoc accuracy** — how often the approximator given only the selected patches
//!   (`g_α(x ⊙ upsample(1_S))`, what it was trained on) predicts `y`;
//! * **black-box agreement** — how often the black box itself still predicts `y` when every pixel
//!   outside the selected patches is set to the background value (`params.background()`).
//!
//! Both are also computed for `k` patches drawn uniformly at random per image (seeded), which is
//! what an uninformative explainer would score.

use std::fmt;

use ndarray::{s, Array2, ArrayView4};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use xai_core::{argmax_rows, CoreError, Predictor};

use crate::algorithm::L2x;
use crate::error::{L2xError, Result};
use crate::hyperparams::Mode;
use crate::models::{L2xNet, SelectionModel};
use crate::relaxation::{check_k, hard_top_k};

/// Images per evaluation chunk.
const CHUNK: usize = 500;

/// Fidelity of an L2X explainer at one `k`, next to random patches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Patches kept per image.
    pub k: usize,
    /// Test images.
    pub n_images: usize,
    /// Approximator on the L2X selection vs the black box's label.
    pub post_hoc_accuracy: f32,
    /// Approximator on random patches vs the black box's label.
    pub post_hoc_accuracy_random: f32,
    /// Black box on the L2X selection (rest = background) vs its own label.
    pub black_box_agreement: f32,
    /// Black box on random patches (rest = background) vs its own label.
    pub black_box_agreement_random: f32,
}

/// `k` distinct random patches per image, as a `[n, d]` 0/1 matrix.
pub fn random_patches(n: usize, d: usize, k: usize, rng: &mut StdRng) -> Result<Array2<f32>> {
    check_k(k, d)?;
    let mut m = Array2::zeros((n, d));
    for i in 0..n {
        for j in rand::seq::index::sample(rng, d, k) {
            m[[i, j]] = 1.0;
        }
    }
    Ok(m)
}

/// Measures [`Fidelity`] of `l2x` on `images` for `k` selected patches (which may differ from
/// the `k` it was trained with), with random patches drawn from `seed`.
///
/// Needs a classification explainer; `black_box` must be the model it was trained for.
pub fn fidelity<S: SelectionModel, P: L2xNet>(
    l2x: &L2x<S, P>,
    black_box: &dyn Predictor,
    images: ArrayView4<'_, f32>,
    k: usize,
    seed: u64,
) -> Result<Fidelity> {
    if l2x.params().mode() != Mode::Classification {
        return Err(L2xError::RequiresClassification("fidelity"));
    }
    check_k(k, l2x.n_patches())?;
    let n = images.shape()[0];
    if n == 0 {
        return Err(CoreError::Empty("the test images".into()).into());
    }
    if *black_box.input_shape() != l2x.input_shape() || black_box.n_outputs() != l2x.n_outputs() {
        return Err(L2xError::shape(
            "black box (input shape and outputs)",
            &[black_box.input_shape(), &[black_box.n_outputs()]].concat(),
            format!("{:?} and {} outputs", l2x.input_shape(), l2x.n_outputs()),
        ));
    }
    let background = l2x.params().background();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ph, mut ph_r, mut bb, mut bb_r) = (0usize, 0usize, 0usize, 0usize);
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let x = images.slice(s![start..end, .., .., ..]);
        let m = end - start;
        let labels = argmax_rows(black_box.predict(x.into_dyn())?.view());
        let selected = hard_top_k(l2x.patch_logits(x)?.view(), k)?;
        let random = random_patches(m, l2x.n_patches(), k, &mut rng)?;
        let count = |pred: Vec<usize>| -> usize {
            pred.iter().zip(&labels).filter(|(a, b)| a == b).count()
        };
        ph += count(argmax_rows(l2x.approximate(x, selected.view())?.view()));
        ph_r += count(argmax_rows(l2x.approximate(x, random.view())?.view()));
        let kept = l2x.keep_selected(x, selected.view(), background)?;
        bb += count(argmax_rows(
            black_box.predict(kept.view().into_dyn())?.view(),
        ));
        let kept_r = l2x.keep_selected(x, random.view(), background)?;
        bb_r += count(argmax_rows(
            black_box.predict(kept_r.view().into_dyn())?.view(),
        ));
        start = end;
    }
    let frac = |c: usize| c as f32 / n as f32;
    Ok(Fidelity {
        k,
        n_images: n,
        post_hoc_accuracy: frac(ph),
        post_hoc_accuracy_random: frac(ph_r),
        black_box_agreement: frac(bb),
        black_box_agreement_random: frac(bb_r),
    })
}

/// Rows of [`Fidelity`] (e.g. one per `k`), printed as a Markdown table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidelityTable {
    /// The rows.
    pub rows: Vec<FidelityRow>,
}

/// One row of a [`FidelityTable`]: the fidelity and, when known, timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FidelityRow {
    /// The measurement.
    pub fidelity: Fidelity,
    /// The approximator's accuracy on whole images (omnixai's check), if known.
    pub full_input_accuracy: Option<f32>,
    /// Mean training seconds per epoch, if the explainer was trained in this run.
    pub seconds_per_epoch: Option<f64>,
    /// Milliseconds per explained image ([`L2x::explain`], black-box calls included), if
    /// measured.
    pub explain_ms_per_image: Option<f64>,
}

impl fmt::Display for FidelityTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "|  k | images | post-hoc acc | random | black-box agree | random | full-input acc | s/epoch | ms/image |"
        )?;
        writeln!(
            f,
            "|---:|-------:|-------------:|-------:|----------------:|-------:|---------------:|--------:|---------:|"
        )?;
        let opt = |v: Option<f64>, prec: usize| {
            v.map(|v| format!("{v:.prec$}"))
                .unwrap_or_else(|| "-".into())
        };
        for r in &self.rows {
            let q = &r.fidelity;
            writeln!(
                f,
                "| {:>2} | {:>6} | {:>12.4} | {:>6.4} | {:>15.4} | {:>6.4} | {:>14} | {:>7} | {:>8} |",
                q.k,
                q.n_images,
                q.post_hoc_accuracy,
                q.post_hoc_accuracy_random,
                q.black_box_agreement,
                q.black_box_agreement_random,
                opt(r.full_input_accuracy.map(f64::from), 4),
                opt(r.seconds_per_epoch, 1),
                opt(r.explain_ms_per_image, 3),
            )?;
        }
        Ok(())
    }
}
