//! What [`crate::L2x::explain`] returns.

use ndarray::{Array2, Array3, ArrayD, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use xai_core::NpyArrays;

/// L2X explanations of a batch of `n` images of `h x w` pixels, for a selection of `k` of the
/// `grid_h x grid_w` patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L2xData {
    /// Patches selected per image.
    pub k: usize,
    /// Importance of every pixel, `[n, h, w]` in `[0, 1]`: the probability that the pixel's
    /// patches are drawn in the `τ → 0` limit of the k-hot relaxation
    /// ([`crate::relaxation::selection_probability`]), bilinearly upsampled like the weights the
    /// approximator was trained on.
    pub importance: Array3<f32>,
    /// The hard selection as a pixel mask, `[n, h, w]`: 1 on the pixels of the `k` selected
    /// patches (each pixel belongs to the patch with the largest bilinear weight), 0 elsewhere.
    pub mask: Array3<f32>,
    /// The selection model's patch logits, `[n, grid_h, grid_w]`.
    pub patch_logits: Array3<f32>,
    /// The hard top-k selection on the grid, `[n, grid_h, grid_w]`, exactly `k` ones per image.
    pub patch_mask: Array3<f32>,
    /// The selected patches (row-major grid indices), best first.
    pub selected_patches: Vec<Vec<usize>>,
    /// The black box's outputs for the images, `[n, n_outputs]`.
    pub black_box_outputs: Array2<f32>,
    /// The explained label of each image (the black box's top class), in classification mode.
    pub labels: Option<Vec<usize>>,
    /// The approximator's outputs from the selected patches alone (the image times the
    /// bilinearly upsampled hard selection), `[n, n_outputs]`.
    pub approximator_outputs: Array2<f32>,
    /// The approximator's top class from the selected patches alone, in classification mode.
    pub approximator_labels: Option<Vec<usize>>,
}

/// One image's part of an [`L2xData`].
#[derive(Debug, Clone, Copy)]
pub struct ImageExplanation<'a> {
    /// Importance map `[h, w]`.
    pub importance: ArrayView2<'a, f32>,
    /// Binary pixel mask `[h, w]` of the selected patches.
    pub mask: ArrayView2<'a, f32>,
    /// Patch logits `[grid_h, grid_w]`.
    pub patch_logits: ArrayView2<'a, f32>,
    /// Selected patches, best first.
    pub selected_patches: &'a [usize],
    /// The black box's outputs.
    pub black_box_outputs: ArrayView1<'a, f32>,
    /// The explained label (classification).
    pub label: Option<usize>,
    /// The approximator's label from the selection alone (classification).
    pub approximator_label: Option<usize>,
}

impl L2xData {
    /// Number of explained images.
    pub fn len(&self) -> usize {
        self.importance.len_of(Axis(0))
    }

    /// Whether no image was explained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The explanation of image `i`, if there is one.
    pub fn image(&self, i: usize) -> Option<ImageExplanation<'_>> {
        if i >= self.len() {
            return None;
        }
        Some(ImageExplanation {
            importance: self.importance.index_axis(Axis(0), i),
            mask: self.mask.index_axis(Axis(0), i),
            patch_logits: self.patch_logits.index_axis(Axis(0), i),
            selected_patches: &self.selected_patches[i],
            black_box_outputs: self.black_box_outputs.row(i),
            label: self.labels.as_ref().map(|l| l[i]),
            approximator_label: self.approximator_labels.as_ref().map(|l| l[i]),
        })
    }
}

fn labels_array(labels: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(
        vec![labels.len()],
        labels.iter().map(|&l| l as f32).collect(),
    )
    .expect("1-D shape matches length")
}

impl NpyArrays for L2xData {
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
        let mut out = vec![
            ("importance".to_string(), self.importance.clone().into_dyn()),
            ("mask".to_string(), self.mask.clone().into_dyn()),
            (
                "patch_logits".to_string(),
                self.patch_logits.clone().into_dyn(),
            ),
            ("patch_mask".to_string(), self.patch_mask.clone().into_dyn()),
            (
                "black_box_outputs".to_string(),
                self.black_box_outputs.clone().into_dyn(),
            ),
            (
                "approximator_outputs".to_string(),
                self.approximator_outputs.clone().into_dyn(),
            ),
        ];
        if let Some(l) = &self.labels {
            out.push(("labels".to_string(), labels_array(l)));
        }
        if let Some(l) = &self.approximator_labels {
            out.push(("approximator_labels".to_string(), labels_array(l)));
        }
        out
    }
}
