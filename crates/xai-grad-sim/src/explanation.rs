//! The data of a gradient similarity explanation.

use ndarray::{Array2, ArrayD};
use serde::{Deserialize, Serialize};
use xai_core::NpyArrays;

/// What a gradient similarity explanation says about each test instance (alibi's
/// `Explanation.data` of `GradientSimilarity`), in `xai_core::Explanation::data`.
///
/// As in alibi, `scores` are sorted from most to least similar and aligned with
/// `ordered_indices`: `scores[[i, j]]` is the score of reference `ordered_indices[[i, j]]` for
/// test instance `i`. [`SimilarityData::scores_by_reference`] gives them in reference order.
/// Both are `None` when the explainer ran with `keep_scores(false)` (streaming top-k mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarityData {
    /// Similarity scores sorted in descending order, `[n_test, n_ref]`.
    pub scores: Option<Array2<f32>>,
    /// Reference indices from most to least similar, `[n_test, n_ref]`.
    pub ordered_indices: Option<Array2<usize>>,
    /// The `k` most similar reference instances, most similar first,
    /// `[n_test, k, ..input_shape]` (`k` is `n_similar`, at most the number of references).
    pub most_similar: ArrayD<f32>,
    /// The `k` least similar reference instances, least similar first,
    /// `[n_test, k, ..input_shape]`.
    pub least_similar: ArrayD<f32>,
    /// Indices of the most similar references, `[n_test, k]`.
    pub most_similar_indices: Array2<usize>,
    /// Scores of the most similar references, `[n_test, k]`.
    pub most_similar_scores: Array2<f32>,
    /// Indices of the least similar references, least similar first, `[n_test, k]`.
    pub least_similar_indices: Array2<usize>,
    /// Scores of the least similar references, `[n_test, k]`.
    pub least_similar_scores: Array2<f32>,
    /// The class each test instance's gradient was taken for, when the task is classification
    /// with class-index targets or targets defaulted to the model's prediction; `None` for
    /// probability rows and regression values.
    pub test_classes: Option<Vec<usize>>,
}

impl SimilarityData {
    /// Number of explained test instances.
    pub fn n_test(&self) -> usize {
        self.most_similar_indices.nrows()
    }

    /// Scores in reference order, `[n_test, n_ref]`: entry `[i, j]` is the score of reference
    /// `j` for test instance `i` (`None` in streaming top-k mode).
    pub fn scores_by_reference(&self) -> Option<Array2<f32>> {
        let (sorted, order) = (self.scores.as_ref()?, self.ordered_indices.as_ref()?);
        let mut out = Array2::zeros(sorted.dim());
        for ((i, j), &r) in order.indexed_iter() {
            out[[i, r]] = sorted[[i, j]];
        }
        Some(out)
    }
}

fn indices_as_f32(a: &Array2<usize>) -> ArrayD<f32> {
    a.mapv(|v| v as f32).into_dyn()
}

impl NpyArrays for SimilarityData {
    /// `scores` and `ordered_indices` (when kept), `most_similar`, `least_similar` and the
    /// indices and scores of both. Indices are written as `f32`, exact below 2^24.
    fn npy_arrays(&self) -> Vec<(String, ArrayD<f32>)> {
        let mut out = Vec::new();
        if let Some(s) = &self.scores {
            out.push(("scores".to_string(), s.clone().into_dyn()));
        }
        if let Some(o) = &self.ordered_indices {
            out.push(("ordered_indices".to_string(), indices_as_f32(o)));
        }
        out.push(("most_similar".to_string(), self.most_similar.clone()));
        out.push(("least_similar".to_string(), self.least_similar.clone()));
        out.push((
            "most_similar_indices".to_string(),
            indices_as_f32(&self.most_similar_indices),
        ));
        out.push((
            "most_similar_scores".to_string(),
            self.most_similar_scores.clone().into_dyn(),
        ));
        out.push((
            "least_similar_indices".to_string(),
            indices_as_f32(&self.least_similar_indices),
        ));
        out.push((
            "least_similar_scores".to_string(),
            self.least_similar_scores.clone().into_dyn(),
        ));
        out
    }
}
