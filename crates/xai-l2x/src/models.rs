//! The two networks of L2X and the traits that let users supply their own.
//!
//! * The **selection model** (the explainer `E_θ` of Chen et al. 2018, Sec. 3.2) maps an image
//!   to one logit per patch of a `grid_h x grid_w` grid ([`SelectionModel`]).
//! * The **prediction model** (the variational approximator `g_α` of Sec. 3.1) predicts the
//!   black box's output from the image times the upsampled selection weights ([`L2xNet`]).
//!
//! Both are trained jointly, so both expose a forward pass that keeps a trace, a backward pass,
//! their parameters and safetensors persistence. [`xai_models::Network`] implements both traits;
//! [`default_selection_model`] and [`default_prediction_model`] build omnixai's defaults.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, ArrayView2, ArrayView4};
use rand::rngs::StdRng;
use rand::SeedableRng;
use xai_models::{Conv2d, Dense, Gradients, Layer, MaxPool2d, NamedLayer, Network, Padding, Trace};

use crate::error::{L2xError, Result};

/// A trainable network L2X can drive: batched forward pass with a trace, backward pass,
/// parameters for Adam, and weights persistence.
///
/// Images are NCHW `[n, c, h, w]`; outputs are `[n, n_outputs]`.
pub trait L2xNet: Send + Sync {
    /// What [`L2xNet::forward_train`] keeps for [`L2xNet::backward`].
    type Trace;

    /// Shape `[c, h, w]` of one input image.
    fn input_shape(&self) -> [usize; 3];

    /// Number of outputs per image.
    fn n_outputs(&self) -> usize;

    /// Forward pass keeping what the backward pass needs. `rng` switches on training-time
    /// randomness such as dropout; `None` evaluates.
    fn forward_train(
        &self,
        x: ArrayView4<'_, f32>,
        rng: Option<&mut StdRng>,
    ) -> Result<(Array2<f32>, Self::Trace)>;

    /// Backward pass of `Σ grad_outputs ⊙ outputs`: the gradient with respect to the input
    /// when `need_input` (NCHW, [`Gradients::input`]) and the summed gradients of every
    /// parameter tensor in [`L2xNet::params_mut`] order ([`Gradients::params`]).
    fn backward(
        &self,
        trace: &Self::Trace,
        grad_outputs: ArrayView2<'_, f32>,
        need_input: bool,
    ) -> Result<Gradients>;

    /// The parameter tensors, flattened, in a fixed order.
    fn params_mut(&mut self) -> Vec<&mut Vec<f32>>;

    /// Evaluation-mode outputs `[n, n_outputs]` (no dropout).
    fn predict(&self, x: ArrayView4<'_, f32>) -> Result<Array2<f32>>;

    /// Writes the weights to `path` (safetensors), with `metadata` in the header.
    fn save_weights(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()>;

    /// Reads weights written by [`L2xNet::save_weights`], checking names and shapes.
    fn load_weights(&mut self, path: &Path) -> Result<()>;
}

/// A selection model: an [`L2xNet`] whose outputs are the logits of the patches of a
/// `grid_h x grid_w` grid (row-major), so `n_outputs = grid_h * grid_w`.
pub trait SelectionModel: L2xNet {
    /// `(grid_h, grid_w)`.
    fn patch_grid(&self) -> (usize, usize);
}

fn output_is_flat_or_single_channel(net: &Network) -> Result<()> {
    let d = net.dims().last().copied().ok_or_else(|| {
        L2xError::from(xai_models::ModelError::Architecture(
            "network has no layers".into(),
        ))
    })?;
    if d.c == 1 || (d.h == 1 && d.w == 1) {
        Ok(())
    } else {
        Err(L2xError::shape(
            format!("output of network `{}` (h, w, c)", net.name()),
            &[d.h, d.w, d.c],
            "a flat vector (h = w = 1) or a single-channel map (c = 1)",
        ))
    }
}

impl L2xNet for Network {
    type Trace = Trace;

    fn input_shape(&self) -> [usize; 3] {
        let s = xai_core::Predictor::input_shape(self);
        [s[0], s[1], s[2]]
    }

    fn n_outputs(&self) -> usize {
        xai_core::Predictor::n_outputs(self)
    }

    fn forward_train(
        &self,
        x: ArrayView4<'_, f32>,
        rng: Option<&mut StdRng>,
    ) -> Result<(Array2<f32>, Trace)> {
        // The trace's output is in the internal NHWC order, which is the predictor's order
        // exactly for flat or single-channel outputs.
        output_is_flat_or_single_channel(self)?;
        let trace = self.forward_trace(x, rng)?;
        let n = trace.n_samples();
        let out =
            Array2::from_shape_vec((n, L2xNet::n_outputs(self)), trace.output_flat().to_vec())
                .map_err(|e| xai_models::ModelError::Internal(e.to_string()))?;
        Ok((out, trace))
    }

    fn backward(
        &self,
        trace: &Trace,
        grad_outputs: ArrayView2<'_, f32>,
        need_input: bool,
    ) -> Result<Gradients> {
        Ok(Network::backward(self, trace, grad_outputs, need_input)?)
    }

    fn params_mut(&mut self) -> Vec<&mut Vec<f32>> {
        self.param_slices_mut()
    }

    fn predict(&self, x: ArrayView4<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.forward(x)?)
    }

    fn save_weights(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(xai_models::save_weights(self, path, metadata)?)
    }

    fn load_weights(&mut self, path: &Path) -> Result<()> {
        xai_models::load_weights(self, path)?;
        Ok(())
    }
}

impl SelectionModel for Network {
    fn patch_grid(&self) -> (usize, usize) {
        match self.dims().last() {
            Some(d) if d.c == 1 => (d.h, d.w),
            Some(d) => (1, d.len()),
            None => (0, 0),
        }
    }
}

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

fn conv(name: &str, i: usize, o: usize, k: usize, rng: &mut StdRng) -> NamedLayer {
    named(
        name,
        Layer::Conv2d(Conv2d::new(i, o, (k, k), (1, 1), Padding::Valid, rng)),
    )
}

/// omnixai's `DefaultSelectionModel` (designed for MNIST): conv 10 k3 → maxpool 2 → relu →
/// conv 20 k3 → relu → conv 1 k1, giving one logit per patch (an 11 x 11 grid for 28 x 28
/// images). Weights are Glorot-uniform from `seed`.
pub fn default_selection_model(input_shape: [usize; 3], seed: u64) -> Result<Network> {
    let mut rng = StdRng::seed_from_u64(seed);
    let r = &mut rng;
    let layers = vec![
        conv("sel_conv1", input_shape[0], 10, 3, r),
        named(
            "sel_pool1",
            Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid)),
        ),
        named("sel_relu1", Layer::Relu),
        conv("sel_conv2", 10, 20, 3, r),
        named("sel_relu2", Layer::Relu),
        conv("sel_logits", 20, 1, 1, r),
    ];
    Ok(Network::new("l2x_selection", input_shape, layers)?)
}

/// omnixai's `DefaultPredictionModel`, the shape of omnixai's `MNISTNet`: conv 10 k5 →
/// maxpool 2 → relu → conv 20 k5 → dropout 0.5 → maxpool 2 → relu → flatten → dense 50 →
/// relu → dropout 0.5 → dense `n_outputs` (logits). For `[1, 28, 28]` and 10 outputs it is
/// `xai_models::zoo::ModelKind::MnistNet`'s architecture (21,840 parameters) with the same
/// layer names. Weights are Glorot-uniform from `seed`.
pub fn default_prediction_model(
    input_shape: [usize; 3],
    n_outputs: usize,
    seed: u64,
) -> Result<Network> {
    if n_outputs == 0 {
        return Err(L2xError::param("n_outputs", 0, "at least 1"));
    }
    // The flattened size after the convolutions: (((h - 4) / 2) - 4) / 2 per side.
    let side = |s: usize| {
        s.checked_sub(4)
            .map(|v| v / 2)
            .and_then(|v| v.checked_sub(4))
            .map(|v| v / 2)
    };
    let (fh, fw) = match (side(input_shape[1]), side(input_shape[2])) {
        (Some(h), Some(w)) if h > 0 && w > 0 => (h, w),
        _ => {
            return Err(L2xError::shape(
                "images for the default prediction model",
                &input_shape,
                "[c, h, w] with h, w >= 12 (two 5x5 convolutions and two 2x2 poolings)",
            ))
        }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let r = &mut rng;
    let layers = vec![
        conv("conv1", input_shape[0], 10, 5, r),
        named("pool1", Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid))),
        named("relu1", Layer::Relu),
        conv("conv2", 10, 20, 5, r),
        named("dropout1", Layer::Dropout(0.5)),
        named("pool2", Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid))),
        named("relu2", Layer::Relu),
        named("flatten", Layer::Flatten),
        named("fc1", Layer::Dense(Dense::new(fh * fw * 20, 50, r))),
        named("relu3", Layer::Relu),
        named("dropout2", Layer::Dropout(0.5)),
        named("fc2", Layer::Dense(Dense::new(50, n_outputs, r))),
    ];
    Ok(Network::new("l2x_prediction", input_shape, layers)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;
    use xai_core::DifferentiableModel;
    use xai_models::zoo::ModelKind;

    #[test]
    fn default_models_have_omnixais_shapes() {
        let sel = default_selection_model([1, 28, 28], 0).unwrap();
        assert_eq!(sel.patch_grid(), (11, 11));
        assert_eq!(L2xNet::n_outputs(&sel), 121);
        // 1*10*9 + 10, 10*20*9 + 20, 20 + 1.
        assert_eq!(sel.n_params(), 100 + 1820 + 21);
        let pred = default_prediction_model([1, 28, 28], 10, 0).unwrap();
        let mnist = ModelKind::MnistNet.build(0);
        assert_eq!(pred.n_params(), 21_840);
        let shapes = |n: &Network| {
            n.parameter_groups()
                .into_iter()
                .map(|g| (g.name, g.shape))
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(&pred), shapes(&mnist));
        let layers = |n: &Network| {
            n.layers()
                .iter()
                .map(|l| std::mem::discriminant(&l.layer))
                .collect::<Vec<_>>()
        };
        assert_eq!(layers(&pred), layers(&mnist));
        // Other shapes and outputs.
        let rgb = default_prediction_model([3, 32, 32], 4, 1).unwrap();
        assert_eq!(L2xNet::n_outputs(&rgb), 4);
        assert!(default_prediction_model([1, 10, 10], 2, 0).is_err());
        assert!(default_prediction_model([1, 28, 28], 0, 0).is_err());
        assert!(default_selection_model([1, 4, 4], 0).is_err());
    }

    #[test]
    fn multi_channel_image_outputs_are_rejected() {
        let mut rng = StdRng::seed_from_u64(0);
        let net = Network::new("two_maps", [1, 6, 6], vec![conv("c", 1, 2, 3, &mut rng)]).unwrap();
        let x = Array4::zeros((1, 1, 6, 6));
        assert!(matches!(
            net.forward_train(x.view(), None),
            Err(L2xError::ShapeMismatch { .. })
        ));
    }
}
