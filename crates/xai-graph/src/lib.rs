//! # xai-graph
//!
//! A general differentiable graph engine on N-D tensors, with ONNX operator semantics, for
//! explaining models that exporters write (`torch.onnx.export`, tf2onnx, paddle2onnx):
//!
//! * [`Value`]: `f32` tensors (activations, weights) and `i64` tensors (shapes, indices).
//! * [`Operator`]: one node's forward pass and backward pass (vector-Jacobian product) side by
//!   side. The operators live in [`ops`], one file per family, each exporting a table of
//!   `(operator type, builder)`; a new operator is one entry plus its tests ([`ops::known_ops`]
//!   lists them).
//! * [`GraphBuilder`] → [`Graph`]: named values, nodes in any acyclic order, constant folding
//!   (every node whose inputs are all constants, shape subgraphs included, runs once when the
//!   graph is built), pruning, parameters (float initializers read as weights); a forward pass
//!   that frees each value after its last reader or keeps a [`Tape`], and a backward pass that
//!   runs only the nodes between the wanted values (inputs, parameters) and the outputs.
//! * [`GraphModel`]: a graph with one image (or feature) input and one `[n, k]` output as an
//!   `xai-core` [`xai_core::Predictor`] and [`xai_core::DifferentiableModel`]: predictions,
//!   input gradients, pullbacks, parameter groups and per-sample parameter gradients, so that
//!   every explanation method of the workspace runs on it; and an [`xai_core::LayerModel`]:
//!   the activation of any value a node computes, and the gradient with respect to it
//!   (Grad-CAM).
//!
//! ```
//! use xai_graph::{Attrs, GraphBuilder, GraphModel, NodeDef, Value};
//! use xai_core::{DifferentiableModel, Predictor};
//! use ndarray::{arr2, ArrayD, IxDyn};
//!
//! // y = relu(x W), W = [[1, -1], [2, 0.5]].
//! let w = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, -1.0, 2.0, 0.5]).unwrap();
//! let graph = GraphBuilder::new()
//!     .input("x")
//!     .initializer("W", Value::F32(w))
//!     .node(NodeDef { op_type: "MatMul".into(), name: "mm".into(), attrs: Attrs::new(),
//!                     inputs: vec!["x".into(), "W".into()], outputs: vec!["h".into()] })
//!     .node(NodeDef { op_type: "Relu".into(), name: "relu".into(), attrs: Attrs::new(),
//!                     inputs: vec!["h".into()], outputs: vec!["y".into()] })
//!     .output("y")
//!     .build()
//!     .unwrap();
//! let model = GraphModel::new(graph, vec![2], None).unwrap();
//! let x = arr2(&[[1.0f32, 1.0]]);
//! assert_eq!(model.predict(x.view().into_dyn()).unwrap(), arr2(&[[3.0f32, 0.0]]));
//! let g = model.input_gradient(x.view().into_dyn(), arr2(&[[1.0f32, 0.0]]).view()).unwrap();
//! assert_eq!(g.into_raw_vec_and_offset().0, vec![1.0, 2.0]);
//! ```

mod broadcast;
mod error;
mod graph;
mod layers;
mod model;
mod op;
pub mod ops;
mod value;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use broadcast::{broadcast_shape, unbroadcast};
pub use error::{GraphError, OpError, OpResult, Result};
pub use graph::{Gradients, Graph, GraphBuilder, NodeDef, Param, Tape, Wanted};
pub use model::GraphModel;
pub use op::{Attr, Attrs, Builder, NodeSpec, Operator};
pub use value::{normalize_axis, Value};

/// The newest default-domain ONNX opset whose operator semantics the engine follows (a node
/// built without an opset gets these).
pub const LATEST_OPSET: i64 = 23;
