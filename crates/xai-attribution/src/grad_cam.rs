//! Grad-CAM on a named layer, upsampled to the input as captum's
//! `LayerAttribution.interpolate` does by default (nearest neighbour).

use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, IxDyn};
use xai_core::LayerModel;

use crate::common::{
    check_inputs_targets, check_model_finite, chunks, gather_rows, one_hot, ClassTargets,
};
use crate::error::{AttributionError, Result};
use crate::hyperparams::GradCamValidParams;

/// Grad-CAM maps of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCamAttributions {
    /// The map on the layer's grid, `[n, k, ..layer_spatial]` (captum's `LayerGradCam`
    /// output `[n, 1, ..]` per class, without the channel axis); `[n, k]` for a layer without
    /// spatial axes.
    pub layer_map: ArrayD<f32>,
    /// The map upsampled to the input's spatial size, `[n, k, ..input_shape[1..]]`, by
    /// nearest neighbour as captum's `LayerAttribution.interpolate(map, size)` (its default
    /// `interpolate_mode = "nearest"`, PyTorch's `F.interpolate`: source index
    /// `⌊dst · in/out⌋`); `None` when the layer's spatial rank differs from the input's.
    pub upsampled: Option<ArrayD<f32>>,
    /// `[n, k]` target classes.
    pub targets: ndarray::Array2<usize>,
}

/// Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra 2017, "Grad-CAM: Visual
/// Explanations from Deep Networks via Gradient-based Localization", eq. 1-2), as captum 0.9's
/// `LayerGradCam`: for the activation `A` (`[C, ..spatial]`) of a layer and class `c`,
///
/// `α_k = mean_{spatial} ∂f_c/∂A_k`, `L = ReLU(Σ_k α_k A_k)`
///
/// (for a layer without spatial axes, `L = Σ_k (∂f_c/∂A_k) A_k`, as captum). The ReLU is on by
/// default (the paper; captum's `relu_attributions` defaults to false). The map is then
/// upsampled to the input size ([`GradCamAttributions::upsampled`]).
pub struct GradCam<'m> {
    model: &'m dyn LayerModel,
    params: GradCamValidParams,
}

impl<'m> GradCam<'m> {
    /// Grad-CAM of `model` on the layer named in `params`. The name is checked against the
    /// model's layers at the first call (a model may accept names it does not list, such as
    /// the graph engine's node names).
    pub fn new(model: &'m dyn LayerModel, params: GradCamValidParams) -> Self {
        GradCam { model, params }
    }

    /// The parameters.
    pub fn params(&self) -> &GradCamValidParams {
        &self.params
    }

    /// Grad-CAM maps of the inputs `x` for their target classes. Errors: an unknown layer
    /// (the model's typed error, listing its layers), a layer whose activation has no batch
    /// and channel axes, and those of the inputs, targets and model.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
    ) -> Result<GradCamAttributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let layer = self.params.layer.as_str();
        let mut maps: Vec<f32> = Vec::new();
        let mut grid: Option<Vec<usize>> = None;
        for range in chunks(n * k, self.params.batch_size) {
            let m = range.len();
            let (rows, classes, inputs) = gather_rows(&x, targets, range);
            let w = one_hot(&classes, self.model.n_outputs());
            let (a, g) = self
                .model
                .layer_activation_and_gradient(rows.view(), layer, w.view())?;
            if a.ndim() < 2 || a.shape()[0] != m || g.shape() != a.shape() {
                return Err(AttributionError::Layer {
                    layer: layer.to_string(),
                    shape: a.shape().to_vec(),
                    problem: format!(
                        "expected [{m}, channels, ..spatial] (batch and channel axes) and a gradient of the same shape, got {:?}",
                        g.shape()
                    ),
                });
            }
            check_model_finite("layer activation", &a.view(), &inputs)?;
            check_model_finite("layer gradient", &g.view(), &inputs)?;
            let spatial = a.shape()[2..].to_vec();
            grid.get_or_insert_with(|| spatial.clone());
            maps.extend(cam(&a, &g, self.params.relu_attributions));
        }
        let spatial = grid.unwrap_or_default();
        let mut shape = vec![n, k];
        shape.extend_from_slice(&spatial);
        let layer_map = ArrayD::from_shape_vec(IxDyn(&shape), maps).expect("sized from the grid");
        let input_spatial = &x.shape()[2..];
        let upsampled = (spatial.len() == input_spatial.len() && !spatial.is_empty())
            .then(|| upsample_nearest(&layer_map, input_spatial));
        Ok(GradCamAttributions {
            layer_map,
            upsampled,
            targets: targets.classes().to_owned(),
        })
    }
}

/// `Σ_c mean_spatial(G_c) A_c` per row (ReLU'd), flat `[m, ..spatial]`.
fn cam(a: &ArrayD<f32>, g: &ArrayD<f32>, relu: bool) -> Vec<f32> {
    let m = a.shape()[0];
    let c = a.shape()[1];
    let sp: usize = a.shape()[2..].iter().product();
    let a = a.as_standard_layout();
    let g = g.as_standard_layout();
    let (a, g) = (
        a.as_slice().expect("standard"),
        g.as_slice().expect("standard"),
    );
    let mut out = vec![0.0f32; m * sp];
    for r in 0..m {
        let dst = &mut out[r * sp..(r + 1) * sp];
        for ch in 0..c {
            let at = (r * c + ch) * sp;
            let gc = &g[at..at + sp];
            let ac = &a[at..at + sp];
            // captum: the mean over the spatial axes (none: the gradient itself).
            let w = gc.iter().sum::<f32>() / sp as f32;
            // (A layer without spatial axes has sp = 1: w is the gradient itself.)
            dst.iter_mut().zip(ac).for_each(|(d, a)| *d += w * a);
        }
        if relu {
            dst.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    out
}

/// PyTorch's `nearest` source index: `min(⌊dst · (in / out)⌋, in − 1)` in `f32`.
fn nearest_index(dst: usize, input: usize, output: usize) -> usize {
    let scale = input as f32 / output as f32;
    (((dst as f32) * scale).floor() as usize).min(input - 1)
}

/// `[n, k, ..spatial]` to `[n, k, ..target]` by nearest neighbour.
fn upsample_nearest(map: &ArrayD<f32>, target: &[usize]) -> ArrayD<f32> {
    let (n, k) = (map.shape()[0], map.shape()[1]);
    let src = &map.shape()[2..];
    let mut shape = vec![n, k];
    shape.extend_from_slice(target);
    let index: Vec<Vec<usize>> = target
        .iter()
        .zip(src)
        .map(|(&out, &inp)| (0..out).map(|d| nearest_index(d, inp, out)).collect())
        .collect();
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    for i in 0..n {
        for j in 0..k {
            let from = map.index_axis(Axis(0), i);
            let from = from.index_axis(Axis(0), j);
            let mut to = out.index_axis_mut(Axis(0), i);
            let mut to = to.index_axis_mut(Axis(0), j);
            for (pos, v) in to.indexed_iter_mut() {
                let p = pos.slice();
                let srcpos: Vec<usize> = (0..p.len()).map(|d| index[d][p[d]]).collect();
                *v = from[IxDyn(&srcpos)];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_pytorch_indices() {
        // F.interpolate(mode="nearest") from 3 to 7: floor(d * 3/7).
        let idx: Vec<usize> = (0..7).map(|d| nearest_index(d, 3, 7)).collect();
        assert_eq!(idx, vec![0, 0, 0, 1, 1, 2, 2]);
        let idx: Vec<usize> = (0..4).map(|d| nearest_index(d, 2, 4)).collect();
        assert_eq!(idx, vec![0, 0, 1, 1]);
        // Downsampling 5 -> 2: floor(d * 2.5).
        let idx: Vec<usize> = (0..2).map(|d| nearest_index(d, 5, 2)).collect();
        assert_eq!(idx, vec![0, 2]);
    }

    #[test]
    fn upsampling_repeats_cells() {
        let map =
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let up = upsample_nearest(&map, &[4, 4]);
        let expected = [
            1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0,
        ];
        assert_eq!(up.iter().copied().collect::<Vec<_>>(), expected);
    }
}
