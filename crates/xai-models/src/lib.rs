//! # xai-models
//!
//! The example networks the `xai` explainers are demonstrated on, and the stable-Rust layers they
//! are made of:
//!
//! * [`layers`] — `Conv2d` (any kernel, stride and padding, including Keras/PyTorch `'same'` for
//!   even kernels), `MaxPool2d`, `Dense`, `Relu`, `Dropout`, `Flatten`, `Softmax`, `Upsample2d`,
//!   each with a batched forward and backward pass (convolution = im2col + one `gemm`).
//! * [`ops`] — the layers of real ONNX exports: grouped/depthwise/dilated convolution, average
//!   and global average pooling, batch norm (running statistics when evaluating, batch
//!   statistics when training), sigmoid, tanh, leaky ReLU, clip (ReLU6),
//!   hard sigmoid/swish, log-softmax, and the elementwise `Add`/`Sub`/`Mul`/`Div` and channel
//!   `Concat` nodes of a graph.
//! * [`Network`] — a sequential network (or, built with [`Network::graph`], a DAG of layers
//!   with residual connections) implementing [`xai_core::Predictor`] and
//!   [`xai_core::DifferentiableModel`], with batched per-sample parameter gradients (dense layers
//!   factored as input ⊗ delta, convolutions as one small matrix product per sample), and
//!   [`xai_core::LayerModel`] (a named layer's activation and gradient, for Grad-CAM).
//! * [`train()`] — Adam, seeded shuffling and dropout, an `indicatif` progress bar; [`evaluate`].
//!   Each step is [`Network::train_gradients`]: chunks of samples on rayon's threads, gradients
//!   reduced in a fixed order, so the trained weights do not depend on the number of threads.
//! * [`save_weights`] / [`load_weights`] — safetensors.
//! * [`zoo`] — the seeds' networks with their exact parameter counts, training recipes and
//!   [`zoo::load_pretrained`] for the weights shipped in `models/`.
//!
//! dfdx and burn models are explained through the adapter crates `xai-dfdx` (which also holds this
//! convolution as a dfdx tape operation) and `xai-burn`.
//!
//! ```
//! use xai_core::Predictor;
//! use xai_models::zoo::ModelKind;
//!
//! let net = ModelKind::AlibiCnn.build(0); // untrained; use zoo::load_pretrained for weights
//! let x = ndarray::Array4::<f32>::zeros((2, 1, 28, 28));
//! let probs = net.predict(x.view().into_dyn()).unwrap();
//! assert_eq!(probs.shape(), &[2, 10]);
//! ```

mod buffers;
mod cpu;
mod direct;
mod error;
mod gemm;
mod io;
mod layer_access;
pub mod layers;
mod network;
pub mod ops;
mod parallel;
mod train;
pub mod zoo;

pub use error::ModelError;
pub use io::{load_weights, load_weights_from_bytes, save_weights};
pub use layers::{Conv2d, Dense, Dims, Layer, MaxPool2d, Padding};
pub use network::{Gradients, NamedLayer, Network, Trace, TrainGradients};
pub use ops::{AvgPool2d, BatchNorm, BinaryOp, GroupConv2d};
pub use train::{evaluate, train, Adam, Metrics, TrainConfig};

#[cfg(test)]
mod bn_train_tests;
#[cfg(test)]
mod graph_tests;
#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod train_tests;
