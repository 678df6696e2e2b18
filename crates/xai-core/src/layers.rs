//! [`LayerModel`]: a differentiable model that exposes the activations of its named layers and
//! the gradients of the outputs with respect to them (what Grad-CAM and other layer
//! attributions need).

use ndarray::{ArrayD, ArrayView2, ArrayViewD};

use crate::{check_batch, CoreError, DifferentiableModel, Predictor, Result};

/// A [`DifferentiableModel`] whose intermediate layers can be read by name. Object safe.
///
/// Activations are laid out channels-first, `[n, channels, ..spatial]` for convolutional
/// layers (ONNX's and PyTorch's NCHW), `[n, features]` for dense ones, whatever layout the
/// model computes in internally.
pub trait LayerModel: DifferentiableModel {
    /// The names of the layers whose activations [`LayerModel::layer_activation_and_gradient`]
    /// accepts, in evaluation order.
    fn layer_names(&self) -> Vec<String>;

    /// For a batch `x` (`[n, ..input_shape]`) and weights on the outputs `w` (`[n,
    /// n_outputs]`): the activation `A` of `layer` and the gradient `∂(Σ w ∘ f(x))/∂A`, both
    /// shaped `[n, ..layer_shape]`, from one forward and one backward pass.
    ///
    /// Errors: a layer name that [`LayerModel::layer_names`] does not list
    /// ([`crate::CoreError::InvalidParameter`], naming the layers), a batch or weights of the
    /// wrong shape, or the model's own errors.
    fn layer_activation_and_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        layer: &str,
        output_weights: ArrayView2<'_, f32>,
    ) -> Result<(ArrayD<f32>, ArrayD<f32>)>;
}

/// Checks the batch `x` and the output weights of a [`LayerModel::layer_activation_and_gradient`]
/// request against `model`'s input shape and outputs (`[n, n_outputs]`); returns `n`.
pub fn check_layer_request<M: Predictor + ?Sized>(
    model: &M,
    x: &ArrayViewD<'_, f32>,
    output_weights: ArrayView2<'_, f32>,
) -> Result<usize> {
    let n = check_batch("input", x, model.input_shape())?;
    if output_weights.dim() != (n, model.n_outputs()) {
        return Err(CoreError::shape(
            "output weights",
            output_weights.shape(),
            format!("[{n}, {}]", model.n_outputs()),
        ));
    }
    Ok(n)
}

/// The error for a layer name that a model does not have: lists up to 20 of its layers.
pub fn unknown_layer(layer: &str, names: &[String]) -> crate::CoreError {
    let shown: Vec<&str> = names.iter().take(20).map(|s| s.as_str()).collect();
    let more = if names.len() > 20 {
        format!(", ... ({} layers in all)", names.len())
    } else {
        String::new()
    };
    crate::CoreError::param(
        "layer",
        format!("`{layer}`"),
        format!("one of the model's layers: {}{more}", shown.join(", ")),
    )
}
