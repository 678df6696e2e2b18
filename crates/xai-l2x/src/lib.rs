//! # xai-l2x
//!
//! **L2X**, "learning to explain": Jianbo Chen, Le Song, Martin J. Wainwright, Michael I. Jordan,
//! *Learning to Explain: An Information-Theoretic Perspective on Model Interpretation*, ICML 2018
//! (<https://arxiv.org/abs/1802.07814>), for images, with omnixai's `L2XImage` as the behavioural
//! reference.
//!
//! L2X trains two networks jointly on a black box's outputs (only its outputs are used):
//!
//! * a **selection model** `E_θ` scores the patches of a grid (omnixai's default for MNIST: an
//!   11 x 11 grid over 28 x 28 images, [`default_selection_model`]);
//! * `k` patches are drawn with the **continuous relaxation of k-hot sampling** (Sec. 3.2,
//!   Eq. 8): `k` independent Gumbel-softmax samples at temperature `τ`, combined by an
//!   elementwise maximum ([`relaxation`]), bilinearly upsampled to the image
//!   ([`upsample`], PyTorch's `align_corners=False`);
//! * a **variational approximator** `g_α` predicts the black box's output from the image times
//!   those weights ([`default_prediction_model`], the MNISTNet shape), trained with
//!   cross-entropy against the black box's class probabilities (Eq. 6) or the mean squared error.
//!
//! Once trained, an explanation is one forward pass of the selection model: the `k` patches with
//! the largest logits (the hard top-k mask) and an importance map ([`L2x::explain`]).
//! [`fidelity()`] measures post-hoc accuracy and black-box agreement next to random patches.
//!
//! Users can bring their own selection and prediction models ([`SelectionModel`], [`L2xNet`],
//! [`L2xValidParams::fit_with`]); [`xai_models::Network`] implements both. A trained explainer
//! is saved and loaded as safetensors ([`L2x::save`], [`L2x::load`]).
//!
//! ## Differences from omnixai
//!
//! * The approximator's targets are the black box's class probabilities (the paper's objective)
//!   by default; [`TargetKind::Classes`] uses the top class as omnixai does.
//! * The importance map of [`L2x::explain`] is deterministic: the probability that each patch is
//!   drawn in the `τ → 0` limit of the relaxation, upsampled. omnixai returns one random
//!   relaxed sample; [`L2x::sample_importance`] gives that (seeded).
//! * The hard selection has exactly `k` patches (ties go to the lower index); omnixai's
//!   `logits >= k-th largest` can select more on ties. It is also returned as a binary pixel
//!   mask (each pixel belongs to the patch with the largest bilinear weight).
//! * Default models are initialised Glorot-uniform (Keras) rather than PyTorch's Kaiming-uniform,
//!   and inputs are used as given (omnixai divides by 255 when the data exceeds 1).
//!
//! ## Example
//!
//! ```
//! use xai_l2x::L2xParams;
//! use xai_testkit::l2x_toy as toy;
//!
//! // 16x16 images with one bright square; the black box says which quadrant holds it.
//! let (images, _) = toy::square_images(256, 16, 0)?;
//! let black_box = toy::QuadrantClassifier::new(16, 2.0);
//! let l2x = L2xParams::new()
//!     .k(2)
//!     .num_epochs(2)
//!     .batch_size(Some(32))
//!     .progress(false)
//!     .check()?
//!     .fit(images.view(), &black_box)?;
//! assert_eq!(l2x.patch_grid(), (5, 5));
//!
//! let explanation = l2x.explain(&black_box, images.slice(ndarray::s![0..4, .., .., ..]))?;
//! let data = &explanation.data;
//! assert_eq!(data.importance.shape(), &[4, 16, 16]);
//! for i in 0..4 {
//!     let image = data.image(i).unwrap();
//!     assert_eq!(image.selected_patches.len(), 2);
//!     assert!(image.mask.iter().all(|&m| m == 0.0 || m == 1.0));
//! }
//! assert_eq!(explanation.meta.name, "L2X");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod algorithm;
mod error;
mod explanation;
pub mod fidelity;
mod hyperparams;
mod models;
pub mod relaxation;
pub mod upsample;

pub use algorithm::{
    explainer_dir, L2x, TrainingSummary, CONFIG_FILE, METHOD_NAME, PREDICTION_FILE, SELECTION_FILE,
};
pub use error::{L2xError, Result};
pub use explanation::{ImageExplanation, L2xData};
pub use fidelity::{fidelity, Fidelity, FidelityRow, FidelityTable};
pub use hyperparams::{auto_batch_size, L2xParams, L2xValidParams, Mode, TargetKind};
pub use models::{default_prediction_model, default_selection_model, L2xNet, SelectionModel};
pub use upsample::BilinearUpsample;
pub use xai_core::OutputKind;

#[cfg(test)]
mod tests;
