//! Ranking references by score: the full ordering (alibi's `ordered_indices`) or, when the score
//! rows are not kept, a running top-k / bottom-k per test instance that needs memory for `k`
//! entries only.
//!
//! Both use one total order, so they agree exactly: a reference is more similar than another
//! when its score is larger, and on equal scores when its index is smaller.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use ndarray::{Array2, ArrayView2};

/// A reference's score, ordered so that "greater" means "more similar".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub(crate) score: f32,
    pub(crate) index: usize,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The ranking of the references for every test instance.
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    /// Scores sorted from most to least similar, `[n_test, n_ref]` (when kept).
    pub(crate) sorted_scores: Option<Array2<f32>>,
    /// Reference indices from most to least similar, `[n_test, n_ref]` (when kept).
    pub(crate) ordered_indices: Option<Array2<usize>>,
    /// The `k` most similar references, most similar first, `[n_test, k]`.
    pub(crate) most_indices: Array2<usize>,
    /// Their scores.
    pub(crate) most_scores: Array2<f32>,
    /// The `k` least similar references, least similar first, `[n_test, k]`.
    pub(crate) least_indices: Array2<usize>,
    /// Their scores.
    pub(crate) least_scores: Array2<f32>,
}

/// Receives blocks of scores (any test rows × any reference columns) and ranks them.
#[derive(Debug, Clone)]
pub(crate) enum ScoreCollector {
    /// Keeps every score; ranks at the end by sorting.
    Full { scores: Array2<f32>, k: usize },
    /// Keeps, per test instance, the `k` most similar (a min-heap) and the `k` least similar
    /// (a max-heap) seen so far.
    Streaming {
        k: usize,
        most: Vec<BinaryHeap<Reverse<Ranked>>>,
        least: Vec<BinaryHeap<Ranked>>,
    },
}

impl ScoreCollector {
    /// A collector for `n_test` rows over `n_ref` references reporting the `n_similar` most and
    /// least similar (capped at `n_ref`).
    pub(crate) fn new(n_test: usize, n_ref: usize, n_similar: usize, keep_scores: bool) -> Self {
        let k = n_similar.min(n_ref);
        if keep_scores {
            ScoreCollector::Full {
                scores: Array2::zeros((n_test, n_ref)),
                k,
            }
        } else {
            ScoreCollector::Streaming {
                k,
                most: (0..n_test)
                    .map(|_| BinaryHeap::with_capacity(k + 1))
                    .collect(),
                least: (0..n_test)
                    .map(|_| BinaryHeap::with_capacity(k + 1))
                    .collect(),
            }
        }
    }

    /// Adds `scores[i, j]`, the score of test `test_offset + i` against reference
    /// `ref_offset + j`.
    pub(crate) fn add_block(
        &mut self,
        test_offset: usize,
        ref_offset: usize,
        scores: ArrayView2<'_, f32>,
    ) {
        let (rows, cols) = scores.dim();
        match self {
            ScoreCollector::Full { scores: all, .. } => {
                all.slice_mut(ndarray::s![
                    test_offset..test_offset + rows,
                    ref_offset..ref_offset + cols
                ])
                .assign(&scores);
            }
            ScoreCollector::Streaming { k, most, least } => {
                let k = *k;
                for (i, row) in scores.rows().into_iter().enumerate() {
                    let most = &mut most[test_offset + i];
                    let least = &mut least[test_offset + i];
                    for (j, &score) in row.iter().enumerate() {
                        let item = Ranked {
                            score,
                            index: ref_offset + j,
                        };
                        if most.len() < k {
                            most.push(Reverse(item));
                        } else if most.peek().is_some_and(|Reverse(worst)| item > *worst) {
                            most.pop();
                            most.push(Reverse(item));
                        }
                        if least.len() < k {
                            least.push(item);
                        } else if least.peek().is_some_and(|best| item < *best) {
                            least.pop();
                            least.push(item);
                        }
                    }
                }
            }
        }
    }

    /// The ranking of everything added.
    pub(crate) fn finish(self) -> Ranking {
        match self {
            ScoreCollector::Full { scores, k } => {
                let (n_test, n_ref) = scores.dim();
                let mut sorted_scores = Array2::zeros((n_test, n_ref));
                let mut ordered = Array2::zeros((n_test, n_ref));
                let mut most = Vec::with_capacity(n_test);
                let mut least = Vec::with_capacity(n_test);
                for (i, row) in scores.rows().into_iter().enumerate() {
                    let mut ranked: Vec<Ranked> = row
                        .iter()
                        .enumerate()
                        .map(|(index, &score)| Ranked { score, index })
                        .collect();
                    ranked.sort_unstable_by(|a, b| b.cmp(a));
                    for (j, r) in ranked.iter().enumerate() {
                        sorted_scores[[i, j]] = r.score;
                        ordered[[i, j]] = r.index;
                    }
                    most.push(ranked[..k].to_vec());
                    least.push(ranked[n_ref - k..].iter().rev().copied().collect());
                }
                let (most_indices, most_scores) = to_arrays(&most, k);
                let (least_indices, least_scores) = to_arrays(&least, k);
                Ranking {
                    sorted_scores: Some(sorted_scores),
                    ordered_indices: Some(ordered),
                    most_indices,
                    most_scores,
                    least_indices,
                    least_scores,
                }
            }
            ScoreCollector::Streaming { k, most, least } => {
                let most: Vec<Vec<Ranked>> = most
                    .into_iter()
                    .map(|heap| {
                        // Ascending order of `Reverse` is descending similarity.
                        heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
                    })
                    .collect();
                let least: Vec<Vec<Ranked>> = least
                    .into_iter()
                    .map(|heap| heap.into_sorted_vec())
                    .collect();
                let (most_indices, most_scores) = to_arrays(&most, k);
                let (least_indices, least_scores) = to_arrays(&least, k);
                Ranking {
                    sorted_scores: None,
                    ordered_indices: None,
                    most_indices,
                    most_scores,
                    least_indices,
                    least_scores,
                }
            }
        }
    }
}

impl Ranking {
    /// The explanation's data: this ranking with the instances of the most and least similar
    /// references and the test classes.
    pub(crate) fn into_data(
        self,
        most_similar: ndarray::ArrayD<f32>,
        least_similar: ndarray::ArrayD<f32>,
        test_classes: Option<Vec<usize>>,
    ) -> crate::SimilarityData {
        crate::SimilarityData {
            most_similar,
            least_similar,
            scores: self.sorted_scores,
            ordered_indices: self.ordered_indices,
            most_similar_indices: self.most_indices,
            most_similar_scores: self.most_scores,
            least_similar_indices: self.least_indices,
            least_similar_scores: self.least_scores,
            test_classes,
        }
    }
}

fn to_arrays(rows: &[Vec<Ranked>], k: usize) -> (Array2<usize>, Array2<f32>) {
    let indices = Array2::from_shape_fn((rows.len(), k), |(i, j)| rows[i][j].index);
    let scores = Array2::from_shape_fn((rows.len(), k), |(i, j)| rows[i][j].score);
    (indices, scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    #[test]
    fn full_ranking_orders_ties_by_index() {
        let scores = array![[0.5f32, 0.9, 0.5, -1.0]];
        let mut c = ScoreCollector::new(1, 4, 2, true);
        c.add_block(0, 0, scores.view());
        let r = c.finish();
        assert_eq!(r.ordered_indices.unwrap(), array![[1, 0, 2, 3]]);
        assert_eq!(r.sorted_scores.unwrap(), array![[0.9, 0.5, 0.5, -1.0]]);
        assert_eq!(r.most_indices, array![[1, 0]]);
        assert_eq!(r.least_indices, array![[3, 2]]);
        assert_eq!(r.least_scores, array![[-1.0, 0.5]]);
    }

    proptest! {
        #[test]
        fn streaming_top_k_equals_full_sort(
            values in proptest::collection::vec(-3i32..3, 2..60),
            k in 1usize..8,
            chunk in 1usize..7,
        ) {
            // Small integers make ties frequent.
            let n_ref = values.len() / 2;
            prop_assume!(n_ref > 0);
            let scores = Array2::from_shape_fn((2, n_ref), |(i, j)| values[i * n_ref + j] as f32);
            let mut full = ScoreCollector::new(2, n_ref, k, true);
            let mut streaming = ScoreCollector::new(2, n_ref, k, false);
            full.add_block(0, 0, scores.view());
            let mut start = 0;
            while start < n_ref {
                let end = (start + chunk).min(n_ref);
                // Feed the test rows separately too, to exercise the row offset.
                for i in 0..2 {
                    streaming.add_block(i, start, scores.slice(ndarray::s![i..i + 1, start..end]));
                }
                start = end;
            }
            let a = full.finish();
            let b = streaming.finish();
            prop_assert_eq!(&a.most_indices, &b.most_indices);
            prop_assert_eq!(&a.least_indices, &b.least_indices);
            prop_assert_eq!(&a.most_scores, &b.most_scores);
            prop_assert_eq!(&a.least_scores, &b.least_scores);
            prop_assert_eq!(a.most_indices.ncols(), k.min(n_ref));
            prop_assert!(b.sorted_scores.is_none());
        }
    }
}
