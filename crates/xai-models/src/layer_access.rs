//! [`LayerModel`] for [`Network`] (Grad-CAM on the shipped networks and any other `Network`,
//! chain or graph): the activation of a named layer and the gradient of the weighted outputs
//! with respect to it, from one forward pass that keeps the layer's output and one backward pass
//! that stops there (the passes of
//! [`DifferentiableModel::input_gradient`](xai_core::DifferentiableModel::input_gradient),
//! chunk by chunk on rayon's threads).
//!
//! **Names.** A layer is named by its [`NamedLayer`](crate::NamedLayer) name.
//! [`Network::new`] and [`Network::graph`] reject duplicate names, but a name may be empty, and
//! [`Network::layers_mut`] can rename layers; so a layer whose name is empty or equal to an
//! earlier layer's is listed as `<name>#<index>` (`#3` for an empty name at index 3,
//! `relu#5` for a second `relu` at index 5), with further `#`s appended while that collides with
//! another layer's name. The fallback depends only on the names and their order.
//!
//! **Layout.** The network computes in NHWC; activations and gradients are returned channels
//! first, as [`LayerModel`] asks: `[n, c, h, w]` for a layer whose output has a spatial extent,
//! `[n, features]` for one whose output is 1x1 (dense layers, flatten, softmax, global average
//! pooling: the network's own rule for flat outputs, as in its predictions). A flattened map
//! keeps the network's feature order (NHWC, the order its dense layers read), not PyTorch's
//! `[c, h, w]` order.

use std::collections::HashSet;

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Ix4, IxDyn};
use xai_core::{unknown_layer, CoreError, LayerModel};

use crate::{ModelError, Network};

impl Network {
    /// The names [`LayerModel::layer_names`] lists, one per layer in order: the layer's own
    /// name, or for an empty or repeated one `<name>#<index>` (with more `#`s while that is
    /// another layer's name).
    fn layer_access_names(&self) -> Vec<String> {
        let layers = self.layers();
        let own: HashSet<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        let mut used: HashSet<String> = HashSet::with_capacity(layers.len());
        let mut names = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            let name = if !l.name.is_empty() && !used.contains(&l.name) {
                l.name.clone()
            } else {
                let mut fallback = format!("{}#{i}", l.name);
                while own.contains(fallback.as_str()) || used.contains(&fallback) {
                    fallback.push('#');
                }
                fallback
            };
            used.insert(name.clone());
            names.push(name);
        }
        names
    }
}

impl LayerModel for Network {
    /// Every layer's name, in evaluation order (the order of [`Network::layers`]). Names are
    /// unique: a layer whose name is empty or repeats an earlier layer's (which
    /// [`Network::new`] rejects, but [`Network::layers_mut`] can make) is listed as
    /// `<name>#<index>` (`#3` for an empty name at index 3, `relu#5` for a second `relu` at
    /// index 5), with `#`s appended while that is another layer's name.
    fn layer_names(&self) -> Vec<String> {
        self.layer_access_names()
    }

    /// The output `A` of the layer `layer` and `∂(Σ w ∘ f(x))/∂A`, channels first: `[n, c, h,
    /// w]`, or `[n, features]` for an output of 1x1 (dense, flatten, softmax, global average
    /// pooling; the rule of the network's predictions), a flattened map in the network's NHWC
    /// feature order. Evaluation mode (dropout off, batch norm with its running statistics), as
    /// the network's predictions. Errors: an unknown layer (naming the layers), a batch or
    /// weights of the wrong shape.
    fn layer_activation_and_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        layer: &str,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
        let n = xai_core::check_layer_request(self, &x, output_weights)?;
        let names = self.layer_access_names();
        let index = names
            .iter()
            .position(|name| name == layer)
            .ok_or_else(|| unknown_layer(layer, &names))?;
        let x4 = x
            .view()
            .into_dimensionality::<Ix4>()
            .map_err(|e| CoreError::Model(e.to_string()))?;
        let node = index + 1;
        let (act, grad) = self.node_activation_and_gradient(x4, node, output_weights)?;
        let d = self.dims()[node];
        if act.len() != n * d.len() || grad.len() != act.len() {
            return Err(ModelError::Internal(format!(
                "layer `{layer}`: {} activations and {} gradients for {n} samples of {} values",
                act.len(),
                grad.len(),
                d.len()
            ))
            .into());
        }
        Ok((
            channels_first(act, n, d.h, d.w, d.c),
            channels_first(grad, n, d.h, d.w, d.c),
        ))
    }
}

/// `[n, h, w, c]` (flat, NHWC) as `[n, c, h, w]`, or `[n, c]` when `h = w = 1`.
fn channels_first(v: Vec<f32>, n: usize, h: usize, w: usize, c: usize) -> ArrayD<f32> {
    if h == 1 && w == 1 {
        return ArrayD::from_shape_vec(IxDyn(&[n, c]), v).expect("sized by the caller");
    }
    ArrayD::from_shape_vec(IxDyn(&[n, h, w, c]), v)
        .expect("sized by the caller")
        .permuted_axes(IxDyn(&[0, 3, 1, 2]))
        .as_standard_layout()
        .into_owned()
}
