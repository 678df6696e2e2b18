//! [`LayerModel`] for [`OnnxModel`]: the graph engine's layers (every value a node computes,
//! by value or node name). The importer's networks and tract do not expose their layers: a
//! model they run gives a typed error saying to load it with [`crate::Backend::Graph`].

use ndarray::{ArrayD, ArrayView2, ArrayViewD};
use xai_core::{CoreError, LayerModel};

use crate::error::OnnxError;
use crate::model::OnnxModel;
use crate::options::Engine;

impl LayerModel for OnnxModel {
    /// The graph engine's layer names ([`xai_graph::GraphModel`]); empty for a model another
    /// engine runs.
    fn layer_names(&self) -> Vec<String> {
        match self.graph_model() {
            Some(m) => m.layer_names(),
            None => Vec::new(),
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
                    "; layer `{layer}` was asked for, and only the graph engine (Backend::Graph) reads layers"
                ),
            }
            .into()),
            (None, engine) => Err(CoreError::from(OnnxError::Unsupported(format!(
                "layer `{layer}` of `{}`: the {engine} back end does not expose layer activations; \
                 load the model with Backend::Graph (the graph engine names every node's output)",
                self.name()
            )))),
        }
    }
}
