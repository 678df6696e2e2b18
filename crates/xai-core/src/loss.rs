use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// What a classifier's outputs are, for a cross-entropy loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputKind {
    /// Unnormalised scores; the loss applies a log-softmax itself.
    Logits,
    /// Probabilities (e.g. after a softmax layer), clipped to `[1e-7, 1 - 1e-7]` as Keras does.
    Probabilities,
}

/// A per-sample loss `L(f(x), y)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Categorical cross-entropy `-sum_j t_j log p_j`, with `p` from logits (log-softmax) or
    /// given probabilities.
    CrossEntropy(OutputKind),
    /// Mean squared error `(1/k) sum_j (f_j - t_j)^2` over the `k` outputs.
    MeanSquaredError,
}

/// Targets for a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per sample.
    Classes(Vec<usize>),
    /// One row of target probabilities (e.g. one-hot) per sample, `[n, n_outputs]`.
    Probabilities(Array2<f32>),
    /// Regression targets, `[n, n_outputs]`.
    Values(Array2<f32>),
}

impl Targets {
    /// Number of samples the targets describe.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Probabilities(a) | Targets::Values(a) => a.nrows(),
        }
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of the samples at `indices`, in that order; an error names the first index
    /// that is out of range.
    pub fn select(&self, indices: &[usize]) -> Result<Targets> {
        let n = self.len();
        if let Some((position, &i)) = indices.iter().enumerate().find(|(_, &i)| i >= n) {
            return Err(CoreError::InvalidTargets(format!(
                "index {i} (position {position}) is out of range for {n} targets"
            )));
        }
        Ok(match self {
            Targets::Classes(c) => Targets::Classes(indices.iter().map(|&i| c[i]).collect()),
            Targets::Probabilities(a) => Targets::Probabilities(a.select(Axis(0), indices)),
            Targets::Values(a) => Targets::Values(a.select(Axis(0), indices)),
        })
    }

    /// Dense `[n, n_outputs]` target rows (class indices become one-hot rows).
    pub fn to_dense(&self, n_outputs: usize) -> Result<Array2<f32>> {
        match self {
            Targets::Classes(c) => {
                let mut t = Array2::zeros((c.len(), n_outputs));
                for (i, &k) in c.iter().enumerate() {
                    if k >= n_outputs {
                        return Err(CoreError::InvalidTargets(format!(
                            "class index {k} of sample {i} is out of range for a model with {n_outputs} outputs"
                        )));
                    }
                    t[[i, k]] = 1.0;
                }
                Ok(t)
            }
            Targets::Probabilities(a) | Targets::Values(a) => {
                if a.ncols() != n_outputs {
                    return Err(CoreError::InvalidTargets(format!(
                        "target rows have {} columns, the model has {n_outputs} outputs",
                        a.ncols()
                    )));
                }
                Ok(a.clone())
            }
        }
    }
}

const PROB_EPS: f32 = 1e-7;

impl Loss {
    /// Per-sample loss values `[n]` and the gradient of each sample's loss with respect to that
    /// sample's outputs `[n, n_outputs]`.
    pub fn value_and_grad(
        &self,
        outputs: ArrayView2<'_, f32>,
        targets: &Targets,
    ) -> Result<(Array1<f32>, Array2<f32>)> {
        let (n, k) = outputs.dim();
        if targets.len() != n {
            return Err(CoreError::InvalidTargets(format!(
                "{} targets for a batch of {n} samples",
                targets.len()
            )));
        }
        let t = targets.to_dense(k)?;
        let mut values = Array1::zeros(n);
        let mut grad = Array2::zeros((n, k));
        match self {
            Loss::CrossEntropy(OutputKind::Logits) => {
                for i in 0..n {
                    let row = outputs.row(i);
                    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let sum_exp: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    let log_z = max + sum_exp.ln();
                    let t_sum: f32 = t.row(i).sum();
                    let mut l = 0.0;
                    for j in 0..k {
                        let log_p = row[j] - log_z;
                        l -= t[[i, j]] * log_p;
                        grad[[i, j]] = log_p.exp() * t_sum - t[[i, j]];
                    }
                    values[i] = l;
                }
            }
            Loss::CrossEntropy(OutputKind::Probabilities) => {
                for i in 0..n {
                    let mut l = 0.0;
                    for j in 0..k {
                        let p = outputs[[i, j]];
                        let clipped = p.clamp(PROB_EPS, 1.0 - PROB_EPS);
                        l -= t[[i, j]] * clipped.ln();
                        // The clip has zero derivative outside the interval, as in Keras.
                        grad[[i, j]] = if p > PROB_EPS && p < 1.0 - PROB_EPS {
                            -t[[i, j]] / clipped
                        } else {
                            0.0
                        };
                    }
                    values[i] = l;
                }
            }
            Loss::MeanSquaredError => {
                let scale = 1.0 / k.max(1) as f32;
                for i in 0..n {
                    let mut l = 0.0;
                    for j in 0..k {
                        let d = outputs[[i, j]] - t[[i, j]];
                        l += d * d * scale;
                        grad[[i, j]] = 2.0 * d * scale;
                    }
                    values[i] = l;
                }
            }
        }
        Ok((values, grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use proptest::prelude::*;

    fn finite_difference(loss: Loss, out: &Array2<f32>, t: &Targets) -> Array2<f32> {
        let h = 1e-2f32;
        let mut g = Array2::zeros(out.dim());
        for i in 0..out.nrows() {
            for j in 0..out.ncols() {
                let mut plus = out.clone();
                plus[[i, j]] += h;
                let mut minus = out.clone();
                minus[[i, j]] -= h;
                let (lp, _) = loss.value_and_grad(plus.view(), t).unwrap();
                let (lm, _) = loss.value_and_grad(minus.view(), t).unwrap();
                g[[i, j]] = (lp[i] - lm[i]) / (2.0 * h);
            }
        }
        g
    }

    #[test]
    fn cross_entropy_on_logits_matches_closed_form() {
        let out = array![[0.0f32, 0.0], [10.0, 0.0]];
        let (v, _) = Loss::CrossEntropy(OutputKind::Logits)
            .value_and_grad(out.view(), &Targets::Classes(vec![0, 1]))
            .unwrap();
        assert!((v[0] - 2f32.ln()).abs() < 1e-6);
        assert!((v[1] - 10.0).abs() < 1e-3);
    }

    #[test]
    fn selecting_past_the_end_is_an_error() {
        let t = Targets::Classes(vec![1, 2, 3]);
        assert_eq!(t.select(&[2, 0]).unwrap(), Targets::Classes(vec![3, 1]));
        let e = t.select(&[0, 3]).unwrap_err();
        assert!(e.to_string().contains("index 3 (position 1)"), "{e}");
        let v = Targets::Values(array![[1.0f32], [2.0]]);
        assert!(v.select(&[5]).is_err());
    }

    #[test]
    fn wrong_targets_are_errors() {
        let out = array![[0.0f32, 0.0]];
        let l = Loss::CrossEntropy(OutputKind::Logits);
        assert!(l
            .value_and_grad(out.view(), &Targets::Classes(vec![2]))
            .is_err());
        assert!(l
            .value_and_grad(out.view(), &Targets::Classes(vec![0, 1]))
            .is_err());
        assert!(l
            .value_and_grad(out.view(), &Targets::Values(Array2::zeros((1, 3))))
            .is_err());
    }

    proptest! {
        #[test]
        fn gradients_match_finite_differences(
            vals in proptest::collection::vec(-3.0f32..3.0, 8),
            classes in proptest::collection::vec(0usize..4, 2),
            targets in proptest::collection::vec(-1.0f32..1.0, 8),
        ) {
            let logits = Array2::from_shape_vec((2, 4), vals.clone()).unwrap();
            let t = Targets::Classes(classes);
            let (_, g) = Loss::CrossEntropy(OutputKind::Logits).value_and_grad(logits.view(), &t).unwrap();
            let fd = finite_difference(Loss::CrossEntropy(OutputKind::Logits), &logits, &t);
            for (a, b) in g.iter().zip(fd.iter()) { prop_assert!((a - b).abs() < 2e-2, "{a} vs {b}"); }

            // probabilities strictly inside (0, 1)
            let probs = logits.mapv(|v| 0.2 + 0.15 * (v / 3.0));
            let (_, g) = Loss::CrossEntropy(OutputKind::Probabilities).value_and_grad(probs.view(), &t).unwrap();
            let fd = finite_difference(Loss::CrossEntropy(OutputKind::Probabilities), &probs, &t);
            for (a, b) in g.iter().zip(fd.iter()) { prop_assert!((a - b).abs() < 5e-2 * (1.0 + b.abs()), "{a} vs {b}"); }

            let tv = Targets::Values(Array2::from_shape_vec((2, 4), targets).unwrap());
            let (_, g) = Loss::MeanSquaredError.value_and_grad(logits.view(), &tv).unwrap();
            let fd = finite_difference(Loss::MeanSquaredError, &logits, &tv);
            for (a, b) in g.iter().zip(fd.iter()) { prop_assert!((a - b).abs() < 2e-2, "{a} vs {b}"); }
        }

        #[test]
        fn cross_entropy_is_non_negative_and_one_hot_equals_classes(
            vals in proptest::collection::vec(-5.0f32..5.0, 6),
            classes in proptest::collection::vec(0usize..3, 2),
        ) {
            let logits = Array2::from_shape_vec((2, 3), vals).unwrap();
            let l = Loss::CrossEntropy(OutputKind::Logits);
            let a = l.value_and_grad(logits.view(), &Targets::Classes(classes.clone())).unwrap();
            let onehot = Targets::Classes(classes).to_dense(3).unwrap();
            let b = l.value_and_grad(logits.view(), &Targets::Probabilities(onehot)).unwrap();
            prop_assert!(a.0.iter().all(|v| *v >= -1e-6));
            prop_assert_eq!(a, b);
        }
    }
}
