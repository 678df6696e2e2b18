//! [`LayerModel`] for [`OnnxModel`]: the graph engine's layers (every value a node computes,
//! by value or node name) or the importer's (the ONNX values its layers' outputs hold, by value
//! or node name; a value folded away, such as a convolution's output under a batch norm folded
//! into it, is not one). tract does not expose layers: a model it runs gives a typed error.

use ndarray::{ArrayD, ArrayView2, ArrayViewD};
use xai_core::LayerModel;

use crate::error::OnnxError;
use crate::model::OnnxModel;
use crate::options::Engine;

impl LayerModel for OnnxModel {
    /// The layer names of the engine that runs the model: the graph engine's (every value a
    /// node computes, [`xai_graph::GraphModel`]), or for the importer the ONNX value names its
    /// layers' outputs hold (a node's name is accepted too); empty for tract.
    fn layer_names(&self) -> Vec<String> {
        match self.graph_model() {
            Some(m) => m.layer_names(),
            None => self.imported_layer_names().unwrap_or_default(),
        }
    }

    fn layer_activation_and_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        layer: &str,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
        match (self.graph_model(), self.engine()) {
            (Some(m), _) => m.layer_activation_and_gradient(x, layer, output_weights),
            (None, Engine::Tract) => Err(OnnxError::NotDifferentiable {
                reason: format!(
                    "; layer `{layer}` was asked for, and only the importer and the graph engine \
                     read layers"
                ),
            }
            .into()),
            (None, _) => self.imported_layer(&x, layer, output_weights),
        }
    }
}
