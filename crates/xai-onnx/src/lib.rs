//! # xai-onnx
//!
//! ONNX image classifiers as `xai-core` models, and ONNX export of `xai-models` networks.
//!
//! * [`OnnxOptions`] — how the model is fed and read: per-sample shape (`[1, 28, 28]` by
//!   default), input [`Layout`] (NCHW or NHWC; the API is always NCHW), input scaling
//!   (`x * scale + offset` before the model, e.g. 255 for raw pixels), the [`OutputKind`]
//!   (logits, probabilities, log-probabilities; read from the graph's last node unless stated),
//!   optional conversion to probabilities (what KernelSHAP explains), and the [`Backend`].
//! * [`OnnxModel`] — the loaded model: a [`xai_core::Predictor`], and a
//!   [`xai_core::DifferentiableModel`] when the importer or the graph engine runs it, and an
//!   [`xai_core::LayerModel`] (activations and gradients of named nodes, for Grad-CAM) on
//!   either: every node output on the graph engine, the ONNX values its layers hold on the
//!   importer.
//! * Three engines behind one loader ([`Engine`]):
//!   the **importer** turns graphs as PyTorch and tf2onnx export them — `Conv` (grouped,
//!   depthwise, dilated), `BatchNormalization`, `MaxPool` / `AveragePool` /
//!   `GlobalAveragePool`, `Gemm` / `MatMul` + `Add`, `Relu` / `Clip` / `Sigmoid` / `Tanh` /
//!   `LeakyRelu` / `HardSigmoid` / `HardSwish`, residual `Add` and `Concat`, `Flatten` /
//!   `Reshape` (PyTorch's runtime `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` flatten is
//!   constant-folded), `Transpose` (layout only), `Softmax` / `LogSoftmax` — into an
//!   [`xai_models::Network`] of our own layers (fast, and differentiable for the white-box
//!   methods); the **graph engine** ([`xai_graph`]: N-D tensors, ~100 operators with their
//!   gradients, the tier for dynamo exports, vision transformers and the ONNX model zoo) runs
//!   the graphs the importer declines; **tract** (tract-onnx) runs any other graph, outputs
//!   only. [`Backend::Auto`] tries them in that order and reports why an engine declined
//!   ([`OnnxModel::fallback_reason`]).
//! * Loading reads weights kept in external data files (`location` / `offset` / `length`,
//!   inside the model's folder) and takes symbolic or dynamic dimensions (any batch symbol;
//!   height and width from [`OnnxOptions::input_shape`]).
//! * [`to_onnx`] / [`save_onnx`] — write a `Network` as an ONNX model (opset 13, dynamic batch),
//!   optionally with an NHWC input, an input scale, or another output kind ([`ExportOptions`]).
//! * [`OnnxError`] — typed errors: missing file, bytes that are not ONNX, an input shape that does
//!   not match the options, an operator the importer cannot read (named), gradients asked of a
//!   tract-run model.
//!
//! ```
//! use xai_core::{DifferentiableModel, Predictor};
//! use xai_models::zoo::ModelKind;
//! use xai_onnx::{to_onnx_bytes, Backend, Engine, ExportOptions, OnnxOptions};
//!
//! let net = ModelKind::BinaryCnn.build(0); // untrained; zoo::load_pretrained for the weights
//! let bytes = to_onnx_bytes(&net, &ExportOptions::new()).unwrap();
//! let model = OnnxOptions::new().backend(Backend::Import).check().unwrap().load_bytes(&bytes).unwrap();
//! assert_eq!(model.engine(), Engine::Imported);
//! let x = ndarray::Array4::<f32>::from_elem((2, 1, 28, 28), 0.5);
//! let ours = net.predict(x.view().into_dyn()).unwrap();
//! let onnx = model.predict(x.view().into_dyn()).unwrap();
//! assert!((&ours - &onnx).iter().all(|d| d.abs() < 1e-5));
//! // An imported model has gradients too.
//! let g = model.input_gradient(x.view().into_dyn(), ndarray::Array2::ones((2, 2)).view()).unwrap();
//! assert_eq!(g.shape(), &[2, 1, 28, 28]);
//! ```

mod error;
mod export;
mod external;
mod graph_engine;
mod import;
mod layers;
mod model;
mod options;
mod proto;
mod tract_backend;
mod tract_ops;

pub use error::{OnnxError, Result};
pub use export::{save_onnx, to_onnx, to_onnx_bytes, ExportOptions, EXPORT_OPSET};
pub use external::external_data_files;
pub use model::OnnxModel;
pub use options::{
    Backend, Engine, Layout, OnnxOptions, OutputKind, ValidOnnxOptions, IMAGENET_MEAN, IMAGENET_STD,
};
pub use proto::{declared_input, DeclaredInput, MAX_FIXED_BATCH, MAX_FIXED_BATCH_VALUES};
/// tract-onnx's protobuf types of the ONNX format (`ModelProto`, ...), as [`to_onnx`] returns.
pub use tract_onnx::pb;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod node_conformance;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod torchvision_tests;
