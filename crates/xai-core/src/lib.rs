//! # xai-core
//!
//! The small set of types every explanation method in the `xai` workspace relies on:
//!
//! * [`Predictor`] — a black box: a batch of `f32` inputs of a known per-sample shape in, a batch
//!   of outputs (`[n, n_outputs]`) out. KernelSHAP, L2X and black-box CEM need nothing more.
//!   A closure is one through [`FnPredictor`].
//! * [`DifferentiableModel`] — a predictor that also gives gradients: of a weighted sum of its
//!   outputs with respect to the input (CEM), and per-sample gradients of a [`Loss`] with respect to
//!   its parameters ([`PerSampleGrads`], used by gradient similarity).
//! * [`Loss`] and [`Targets`] — cross-entropy on logits or probabilities, mean squared error;
//!   labels as class indices, one-hot rows or regression targets.
//! * [`Explanation`] — `meta` (method name, every parameter, crate version) plus `data`,
//!   serialisable to JSON, with arrays writable as `.npy` through [`NpyArrays`].
//! * [`LayerModel`] — a differentiable model whose named layers' activations and gradients can
//!   be read (Grad-CAM).
//! * [`CoreError`] — the typed error for everything above.
//! * [`adapter`] — what an adapter for another framework (dfdx, burn) needs for per-sample
//!   gradients: a parallel row-by-row path and the factored dense-layer block.
//!
//! The public API speaks [`ndarray`]; how a model computes (dfdx, hand-written kernels, ONNX) stays
//! behind these traits.
//!
//! ```
//! use ndarray::{array, Array2, ArrayViewD};
//! use xai_core::{FnPredictor, Predictor};
//!
//! // A "model" that sums its two input features and reports it as one output.
//! let model = FnPredictor::new(vec![2], 1, |x: ArrayViewD<'_, f32>| {
//!     let x = x.into_dimensionality::<ndarray::Ix2>().unwrap();
//!     Ok(x.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1)))
//! });
//! let out: Array2<f32> = model.predict(array![[1.0f32, 2.0], [3.0, 4.0]].view().into_dyn()).unwrap();
//! assert_eq!(out, array![[3.0f32], [7.0]]);
//! ```

pub mod adapter;
mod error;
mod explanation;
mod grads;
mod layers;
mod loss;
mod predictor;

pub use error::{CoreError, Result};
pub use explanation::{write_npy, Explanation, Meta, NpyArrays};
pub use grads::{GradBlock, ParamGroup, ParamSelection, PerSampleGrads};
pub use layers::{check_layer_request, unknown_layer, LayerModel};
pub use loss::{Loss, OutputKind, Targets};
pub use predictor::{
    argmax_rows, check_batch, check_finite, DifferentiableModel, FnPredictor, Predictor,
    TimedPredictor,
};
