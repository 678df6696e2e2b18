//! The continuous relaxation of k-hot subset sampling (Chen et al. 2018, Sec. 3.2, Eq. 7-8),
//! its gradient, and the hard top-k selection used at explanation time.
//!
//! For patch logits `l ∈ R^d` of one image, L2X draws `k` independent Gumbel-softmax samples
//! (Jang et al. 2017; Maddison et al. 2017)
//!
//! ```text
//! c_j = softmax((g_j + l) / τ),   g_j,i = -log(-log u_j,i),   u_j,i ~ U(0, 1),   j = 1..k
//! ```
//!
//! and takes their elementwise maximum `V_i = max_j c_j,i` (Eq. 8): a vector in `[0, 1]^d` that
//! tends, as `τ → 0`, to the indicator of the (at most `k`) patches drawn. The noise is drawn
//! separately ([`sample_gumbel`], with the clamp of omnixai's `SamplingLayer`,
//! `u ∈ [1e-4, 0.9999]`), so that the map from logits to weights is deterministic and its
//! gradient can be checked. At explanation time the `k` patches with the largest logits are
//! selected ([`hard_top_k`], Sec. 3.3).

use ndarray::{Array2, Array3, ArrayView1, ArrayView2, ArrayView3, Axis};
use rand::Rng;

use crate::error::{L2xError, Result};

/// Bounds of the uniform draws behind the Gumbel noise (omnixai's `torch.clamp(u, 1e-4, 0.9999)`).
pub const UNIFORM_CLAMP: (f32, f32) = (1e-4, 0.9999);

/// Standard Gumbel noise `[n, k, d]`: `g = -ln(-ln u)` with `u ~ U(0, 1)` clamped to
/// [`UNIFORM_CLAMP`].
pub fn sample_gumbel(n: usize, k: usize, d: usize, rng: &mut impl Rng) -> Array3<f32> {
    Array3::from_shape_simple_fn((n, k, d), || {
        let u: f32 = rng.gen::<f32>().clamp(UNIFORM_CLAMP.0, UNIFORM_CLAMP.1);
        -(-u.ln()).ln()
    })
}

fn check_tau(tau: f32) -> Result<()> {
    if tau.is_finite() && tau > 0.0 {
        Ok(())
    } else {
        Err(L2xError::InvalidTau(tau))
    }
}

/// The relaxed k-hot weights of a batch and what their gradient needs.
#[derive(Debug, Clone)]
pub struct RelaxedKHot {
    weights: Array2<f32>,
    /// Softmax of every draw, `[n, k, d]`.
    probs: Array3<f32>,
    /// For every weight, the draw that attains the maximum, `[n, d]`.
    winner: Array2<u32>,
    tau: f32,
}

/// The relaxed k-hot sample `V = max_j softmax((g_j + l) / τ)` (Eq. 8) of each row of `logits`
/// (`[n, d]`) for the Gumbel noise `gumbel` (`[n, k, d]`, from [`sample_gumbel`]).
pub fn relaxed_k_hot(
    logits: ArrayView2<'_, f32>,
    gumbel: ArrayView3<'_, f32>,
    tau: f32,
) -> Result<RelaxedKHot> {
    check_tau(tau)?;
    let (n, d) = logits.dim();
    let (gn, k, gd) = gumbel.dim();
    if gn != n || gd != d || k == 0 {
        return Err(L2xError::shape(
            "Gumbel noise",
            gumbel.shape(),
            format!("[{n}, k, {d}] with k >= 1"),
        ));
    }
    let mut weights = Array2::<f32>::zeros((n, d));
    let mut winner = Array2::<u32>::zeros((n, d));
    let mut probs = Array3::<f32>::zeros((n, k, d));
    let inv_tau = 1.0 / tau;
    for i in 0..n {
        let l = logits.row(i);
        for j in 0..k {
            let g = gumbel.slice(ndarray::s![i, j, ..]);
            let mut p = probs.slice_mut(ndarray::s![i, j, ..]);
            let mut max = f32::NEG_INFINITY;
            for ((pv, gv), lv) in p.iter_mut().zip(g.iter()).zip(l.iter()) {
                *pv = (gv + lv) * inv_tau;
                max = max.max(*pv);
            }
            let mut sum = 0.0f32;
            for pv in p.iter_mut() {
                *pv = (*pv - max).exp();
                sum += *pv;
            }
            for (idx, pv) in p.iter_mut().enumerate() {
                *pv /= sum;
                if j == 0 || *pv > weights[[i, idx]] {
                    weights[[i, idx]] = *pv;
                    winner[[i, idx]] = j as u32;
                }
            }
        }
    }
    Ok(RelaxedKHot {
        weights,
        probs,
        winner,
        tau,
    })
}

/// [`sample_gumbel`] followed by [`relaxed_k_hot`]: one relaxed k-hot sample per row.
pub fn sample_relaxed_k_hot(
    logits: ArrayView2<'_, f32>,
    k: usize,
    tau: f32,
    rng: &mut impl Rng,
) -> Result<RelaxedKHot> {
    let (n, d) = logits.dim();
    check_k(k, d)?;
    let g = sample_gumbel(n, k, d, rng);
    relaxed_k_hot(logits, g.view(), tau)
}

impl RelaxedKHot {
    /// The relaxed weights `[n, d]`, each in `[0, 1]`.
    pub fn weights(&self) -> ArrayView2<'_, f32> {
        self.weights.view()
    }

    /// Takes the weights.
    pub fn into_weights(self) -> Array2<f32> {
        self.weights
    }

    /// The temperature used.
    pub fn tau(&self) -> f32 {
        self.tau
    }

    /// The gradient with respect to the logits of `Σ grad_weights ⊙ V`.
    ///
    /// The maximum passes the gradient to the draw that attains it; the softmax's Jacobian is
    /// `diag(c) - c cᵀ`, and `∂z/∂l = 1/τ`.
    pub fn backward(&self, grad_weights: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (n, d) = self.weights.dim();
        if grad_weights.dim() != (n, d) {
            return Err(L2xError::shape(
                "gradient of the relaxed weights",
                grad_weights.shape(),
                format!("[{n}, {d}]"),
            ));
        }
        let k = self.probs.len_of(Axis(1));
        let inv_tau = 1.0 / self.tau;
        let mut grad = Array2::<f32>::zeros((n, d));
        for i in 0..n {
            let gw = grad_weights.row(i);
            let win = self.winner.row(i);
            let mut out = grad.row_mut(i);
            for j in 0..k {
                let p = self.probs.slice(ndarray::s![i, j, ..]);
                let ju = j as u32;
                // s = <dc_j, c_j> with dc_j = gw where draw j wins, else 0.
                let mut s = 0.0f32;
                let mut any = false;
                for idx in 0..d {
                    if win[idx] == ju {
                        s += gw[idx] * p[idx];
                        any = true;
                    }
                }
                if !any {
                    continue;
                }
                for idx in 0..d {
                    let dc = if win[idx] == ju { gw[idx] } else { 0.0 };
                    out[idx] += p[idx] * (dc - s) * inv_tau;
                }
            }
        }
        Ok(grad)
    }
}

pub(crate) fn check_k(k: usize, d: usize) -> Result<()> {
    if k == 0 {
        return Err(L2xError::ZeroK);
    }
    if k > d {
        return Err(L2xError::KTooLarge { k, n_patches: d });
    }
    Ok(())
}

/// Indices of the `k` largest values of `row`, largest first; ties go to the lower index.
/// NaN counts as smaller than every number.
pub fn top_k_indices(row: ArrayView1<'_, f32>, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    idx.sort_by(|&a, &b| key(row[b]).total_cmp(&key(row[a])).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The hard selection of Sec. 3.3: for each row of `logits` (`[n, d]`), 1 at the `k` largest
/// logits and 0 elsewhere — exactly `k` ones per row (ties go to the lower index, unlike
/// omnixai's `logits >= threshold`, which can select more than `k`).
pub fn hard_top_k(logits: ArrayView2<'_, f32>, k: usize) -> Result<Array2<f32>> {
    let (n, d) = logits.dim();
    check_k(k, d)?;
    let mut out = Array2::zeros((n, d));
    for i in 0..n {
        for idx in top_k_indices(logits.row(i), k) {
            out[[i, idx]] = 1.0;
        }
    }
    Ok(out)
}

/// The probability that each patch is drawn at least once among the `k` categorical draws of
/// the `τ → 0` limit of the relaxation: `1 - (1 - softmax(l)_i)^k`. It is the expectation of
/// the hard k-hot sample, lies in `[0, 1]`, and orders patches as the logits do (so its top `k`
/// are the [`hard_top_k`] selection); [`crate::L2x::explain`] uses it as the importance map.
pub fn selection_probability(logits: ArrayView2<'_, f32>, k: usize) -> Result<Array2<f32>> {
    let (_, d) = logits.dim();
    check_k(k, d)?;
    let mut out = logits.to_owned();
    let kf = k as f32;
    for mut row in out.rows_mut() {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|e| {
            let p = (e / sum).min(1.0);
            // 1 - (1 - p)^k, accurate for small p.
            -(kf * (-p).ln_1p()).exp_m1()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn arr2(n: usize, d: usize, v: &[f32]) -> Array2<f32> {
        Array2::from_shape_vec((n, d), v.to_vec()).unwrap()
    }

    /// Σ c ⊙ V for fixed noise, in f64 for the finite differences.
    fn objective(logits: &Array2<f32>, g: &Array3<f32>, tau: f32, c: &Array2<f32>) -> f64 {
        let r = relaxed_k_hot(logits.view(), g.view(), tau).unwrap();
        r.weights()
            .iter()
            .zip(c.iter())
            .map(|(w, c)| (*w as f64) * (*c as f64))
            .sum()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(3);
        for &(k, tau) in &[(1usize, 1.0f32), (3, 0.5), (4, 2.0)] {
            let (n, d) = (2, 7);
            let logits = Array2::from_shape_simple_fn((n, d), || rng.gen_range(-1.0f32..1.0));
            let g = sample_gumbel(n, k, d, &mut rng);
            let c = Array2::from_shape_simple_fn((n, d), || rng.gen_range(-1.0f32..1.0));
            let r = relaxed_k_hot(logits.view(), g.view(), tau).unwrap();
            let analytic = r.backward(c.view()).unwrap();
            let h = 1e-3f32;
            for i in 0..n {
                for j in 0..d {
                    let mut plus = logits.clone();
                    plus[[i, j]] += h;
                    let mut minus = logits.clone();
                    minus[[i, j]] -= h;
                    let fd = (objective(&plus, &g, tau, &c) - objective(&minus, &g, tau, &c))
                        / (2.0 * h as f64);
                    let a = analytic[[i, j]] as f64;
                    assert!(
                        (a - fd).abs() <= 2e-3 + 2e-2 * fd.abs(),
                        "k={k} tau={tau} [{i},{j}]: analytic {a} vs finite difference {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn hard_top_k_breaks_ties_by_index_and_rejects_bad_k() {
        let l = arr2(1, 5, &[1.0, 3.0, 3.0, f32::NAN, 2.0]);
        assert_eq!(top_k_indices(l.row(0), 3), vec![1, 2, 4]);
        let m = hard_top_k(l.view(), 2).unwrap();
        assert_eq!(m.row(0).to_vec(), vec![0.0, 1.0, 1.0, 0.0, 0.0]);
        assert!(matches!(hard_top_k(l.view(), 0), Err(L2xError::ZeroK)));
        assert!(matches!(
            hard_top_k(l.view(), 6),
            Err(L2xError::KTooLarge {
                k: 6,
                n_patches: 5,
                ..
            })
        ));
    }

    #[test]
    fn shapes_and_tau_are_checked() {
        let l = arr2(1, 3, &[0.0, 1.0, 2.0]);
        let g = Array3::zeros((1, 2, 4));
        assert!(matches!(
            relaxed_k_hot(l.view(), g.view(), 0.5),
            Err(L2xError::ShapeMismatch { .. })
        ));
        let g = Array3::zeros((1, 2, 3));
        assert!(matches!(
            relaxed_k_hot(l.view(), g.view(), 0.0),
            Err(L2xError::InvalidTau(_))
        ));
        assert!(relaxed_k_hot(l.view(), g.view(), f32::NAN).is_err());
        let r = relaxed_k_hot(l.view(), g.view(), 1.0).unwrap();
        assert!(r.backward(Array2::zeros((2, 3)).view()).is_err());
    }

    #[test]
    fn different_seeds_give_different_samples() {
        let l = Array2::zeros((2, 20));
        let a = sample_relaxed_k_hot(l.view(), 3, 0.5, &mut StdRng::seed_from_u64(1)).unwrap();
        let b = sample_relaxed_k_hot(l.view(), 3, 0.5, &mut StdRng::seed_from_u64(2)).unwrap();
        assert_ne!(a.weights(), b.weights());
    }

    #[test]
    fn selection_probability_is_the_tau_to_zero_expectation() {
        // Monte Carlo: the hard k-hot indicator of the k Gumbel-max draws, averaged.
        let l = arr2(1, 4, &[0.5, -1.0, 1.5, 0.0]);
        let k = 2;
        let p = selection_probability(l.view(), k).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let trials = 20_000;
        let mut freq = [0.0f64; 4];
        for _ in 0..trials {
            let g = sample_gumbel(1, k, 4, &mut rng);
            let mut drawn = [false; 4];
            for j in 0..k {
                let best = (0..4)
                    .max_by(|&a, &b| {
                        (g[[0, j, a]] + l[[0, a]]).total_cmp(&(g[[0, j, b]] + l[[0, b]]))
                    })
                    .unwrap();
                drawn[best] = true;
            }
            for i in 0..4 {
                freq[i] += drawn[i] as u8 as f64 / trials as f64;
            }
        }
        for i in 0..4 {
            // The clamp of the uniform draws biases the frequencies slightly.
            assert!(
                (p[[0, i]] as f64 - freq[i]).abs() < 0.02,
                "{i}: {} vs {}",
                p[[0, i]],
                freq[i]
            );
        }
        assert_eq!(top_k_indices(p.row(0), 2), top_k_indices(l.row(0), 2));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn relaxed_weights_lie_in_unit_interval(
            vals in proptest::collection::vec(-20.0f32..20.0, 12),
            k in 1usize..6,
            tau in 0.01f32..5.0,
            seed in 0u64..1000,
        ) {
            let l = arr2(2, 6, &vals);
            let r = sample_relaxed_k_hot(l.view(), k, tau, &mut StdRng::seed_from_u64(seed)).unwrap();
            for w in r.weights().iter() {
                prop_assert!(w.is_finite() && (0.0..=1.0).contains(w), "{w}");
            }
            // Each draw is a distribution and the max over draws is at least one of them, so
            // the weights sum to at least 1 and at most k.
            for row in r.weights().rows() {
                let s: f32 = row.sum();
                prop_assert!(s >= 1.0 - 1e-4 && s <= k as f32 + 1e-4, "sum {s}");
            }
        }

        #[test]
        fn weights_approach_k_hot_as_tau_goes_to_zero(
            vals in proptest::collection::vec(-3.0f32..3.0, 8),
            k in 1usize..5,
            seed in 0u64..1000,
        ) {
            let d = 8;
            let l = arr2(1, d, &vals);
            let g = sample_gumbel(1, k, d, &mut StdRng::seed_from_u64(seed));
            // The Gumbel-max winners of the k draws and the smallest top-1/top-2 gap.
            let mut expected = vec![0.0f32; d];
            let mut gap = f32::INFINITY;
            for j in 0..k {
                let mut z: Vec<(f32, usize)> = (0..d).map(|i| (g[[0, j, i]] + l[[0, i]], i)).collect();
                z.sort_by(|a, b| b.0.total_cmp(&a.0));
                expected[z[0].1] = 1.0;
                gap = gap.min(z[0].0 - z[1].0);
            }
            prop_assume!(gap > 1e-3);
            let mut last_err = f32::INFINITY;
            for scale in [1.0f32, 4.0, 16.0] {
                // τ = gap / (2 * scale): the losers' weights are below d * exp(-2 * scale).
                let tau = gap / (2.0 * scale);
                let r = relaxed_k_hot(l.view(), g.view(), tau).unwrap();
                let err = r.weights().iter().zip(&expected).map(|(w, e)| (w - e).abs()).fold(0.0, f32::max);
                prop_assert!(err <= last_err + 1e-6, "error grew: {err} after {last_err}");
                last_err = err;
            }
            prop_assert!(last_err < 1e-6 * d as f32 + 1e-5, "max deviation from k-hot {last_err}");
            let ones = expected.iter().filter(|v| **v == 1.0).count();
            prop_assert!(ones >= 1 && ones <= k);
        }

        #[test]
        fn hard_mask_selects_exactly_k(
            vals in proptest::collection::vec(-5.0f32..5.0, 30),
            k in 1usize..=10,
        ) {
            let l = arr2(3, 10, &vals);
            let m = hard_top_k(l.view(), k).unwrap();
            for (i, row) in m.rows().into_iter().enumerate() {
                prop_assert_eq!(row.iter().filter(|v| **v == 1.0).count(), k);
                prop_assert!(row.iter().all(|v| *v == 0.0 || *v == 1.0));
                // Every selected logit is >= every unselected one.
                let sel_min = (0..10).filter(|&j| row[j] == 1.0).map(|j| l[[i, j]]).fold(f32::INFINITY, f32::min);
                let rest_max = (0..10).filter(|&j| row[j] == 0.0).map(|j| l[[i, j]]).fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(sel_min >= rest_max);
            }
            let p = selection_probability(l.view(), k).unwrap();
            prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        }

        #[test]
        fn same_seed_same_sample(
            vals in proptest::collection::vec(-5.0f32..5.0, 10),
            k in 1usize..5,
            seed in any::<u64>(),
        ) {
            let l = arr2(2, 5, &vals);
            let a = sample_relaxed_k_hot(l.view(), k, 0.5, &mut StdRng::seed_from_u64(seed)).unwrap();
            let b = sample_relaxed_k_hot(l.view(), k, 0.5, &mut StdRng::seed_from_u64(seed)).unwrap();
            prop_assert_eq!(a.weights(), b.weights());
        }
    }
}
