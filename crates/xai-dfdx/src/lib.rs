//! # xai-dfdx
//!
//! Explain [dfdx](https://docs.rs/dfdx/0.13) models directly: [`DfdxModel`] wraps a dfdx module
//! with compile-time shapes — an MLP such as `(Linear<784, 128>, ReLU, Linear<128, 10>)`, or a
//! CNN built from this crate's stable-Rust [`conv::Conv2d`], [`conv::MaxPool2d`] and
//! [`conv::FlattenTo`] — as an [`xai_core::Predictor`] and [`xai_core::DifferentiableModel`], so
//! that every method of the workspace (gradient similarity, CEM, KernelSHAP, L2X) runs on it:
//!
//! * predictions, input gradients and pullbacks through dfdx's tape;
//! * per-sample gradients for gradient similarity: row by row for any module, or factored from
//!   one batched pass for dense networks ([`DfdxModel::with_factored_linear`]);
//! * parameter groups named after the module's parts (`"0.weight"`, `"2.bias"`);
//! * ndarray batches converted with shape checks that return errors.
//!
//! The five lines that wrap a model:
//!
//! ```
//! use dfdx::prelude::*;
//! use xai_core::Predictor;
//! use xai_dfdx::DfdxModel;
//!
//! type Mlp = (Linear<784, 32>, ReLU, Linear<32, 10>);
//! let dev: Cpu = Default::default();
//! let module = dev.build_module::<Mlp, f32>();
//! let model = DfdxModel::<_, Rank1<784>>::with_factored_linear(module, &dev).unwrap();
//! // `model` now goes to any explainer, e.g. GradientSimilarity::new(&model, params).
//! let probs = model.predict(ndarray::Array2::<f32>::zeros((3, 784)).view().into_dyn()).unwrap();
//! assert_eq!(probs.shape(), &[3, 10]);
//! ```
//!
//! Weights move between frameworks through safetensors ([`io`]). dfdx 0.13 is CPU-only here
//! (its CUDA build needs `nvcc`); the GPU path of the workspace is `xai-burn`.

pub mod conv;
mod factored;
pub mod io;
mod model;

pub use factored::{Factored, LinearTap};
pub use model::{load_named, named_tensors, DfdxForward, DfdxModel, NamedValues, SampleShape};

/// Errors of the dfdx adapter.
#[derive(Debug, thiserror::Error)]
pub enum DfdxError {
    /// A batch, weight or target had the wrong shape (or another core error).
    #[error(transparent)]
    Shape(#[from] xai_core::CoreError),
    /// dfdx failed (out of memory, or a tensor of the wrong size).
    #[error("dfdx failed: {0}")]
    Framework(String),
    /// An `xai-models` layer used by a convolution op failed.
    #[error(transparent)]
    Model(#[from] xai_models::ModelError),
    /// A weight file lacks a tensor the module needs.
    #[error("no tensor named `{0}` in the weights (the module needs it)")]
    MissingTensor(String),
    /// A safetensors file could not be read.
    #[error("safetensors: {0}")]
    Safetensors(String),
}

impl From<dfdx::tensor::CpuError> for DfdxError {
    fn from(e: dfdx::tensor::CpuError) -> Self {
        DfdxError::Framework(e.to_string())
    }
}

impl From<DfdxError> for xai_core::CoreError {
    fn from(e: DfdxError) -> Self {
        match e {
            DfdxError::Shape(c) => c,
            other => xai_core::CoreError::Model(other.to_string()),
        }
    }
}
