//! Least-angle regression on a Gram matrix, step for step as scikit-learn's `lars_path` with a
//! precomputed Gram (`sklearn.linear_model._least_angle._lars_path_solver`, version 1.x):
//! `method="lar"` (Efron, Hastie, Johnstone & Tibshirani 2004, "Least Angle Regression", Annals
//! of Statistics, Section 2) and `method="lasso"` (the same paper's Lasso modification, Section
//! 3.1: a coefficient that would cross zero leaves the active set).
//!
//! The port keeps scikit-learn's order of operations where it decides which variable enters or
//! leaves: the permutation of inactive variables (ties in `argmax` go to the first in that
//! order), the rounding of the equiangular correlations to 15 decimals, the `float32` tiny and
//! epsilon guards, the degenerate-regressor rule (Cholesky pivot below `1e-7`), the early stop
//! of the Lasso path when `alpha` grows, and the recomputation of a dropped variable's
//! correlation from the original Gram matrix. It is what xai-shap's `l1_reg` modes run on
//! shap's augmented regression problem (see [`crate::solver`]).

use ndarray::Array2;

/// `np.finfo(np.float32).tiny`.
const TINY32: f64 = f32::MIN_POSITIVE as f64;
/// `np.finfo(np.float32).eps`, scikit-learn's `equality_tolerance`.
const EQUALITY_TOLERANCE: f64 = f32::EPSILON as f64;
/// `np.finfo(float).eps`, the default `eps` of `lars_path`.
const EPS: f64 = f64::EPSILON;

/// Which path: least-angle regression or the Lasso.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LarsMethod {
    /// `method="lar"`.
    Lar,
    /// `method="lasso"`.
    Lasso,
}

/// The computed path, as `lars_path(..., return_path=True)` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct LarsPath {
    /// `alphas[k]`: the maximum absolute correlation over `n_samples` at step `k`.
    pub alphas: Vec<f64>,
    /// The active variables at the end, in the order they entered (after drops).
    pub active: Vec<usize>,
    /// `coefs[k]`: the coefficients at step `k` (`coefs[0]` is zero).
    pub coefs: Vec<Vec<f64>>,
}

/// `arrayfuncs.min_pos`: the smallest strictly positive value, or `f64::MAX`.
fn min_pos(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| *v > 0.0).fold(f64::MAX, f64::min)
}

/// numpy's `around(x, 15)`: multiply, round half to even, divide.
fn around15(x: f64) -> f64 {
    let scale = 1e15;
    let y = x * scale;
    if !y.is_finite() {
        return x;
    }
    y.round_ties_even() / scale
}

/// Solves `L Lᵀ x = b` for the lower-triangular `l` (`n x n` leading block).
fn cholesky_solve(l: &[Vec<f64>], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b[..n].to_vec();
    for i in 0..n {
        let mut s = x[i];
        for k in 0..i {
            s -= l[i][k] * x[k];
        }
        x[i] = s / l[i][i];
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for k in i + 1..n {
            s -= l[k][i] * x[k];
        }
        x[i] = s / l[i][i];
    }
    x
}

/// The Cholesky factor of `gram[active][active]`, rebuilt row by row as scikit-learn adds rows
/// (used after a drop, where scikit-learn downdates with Givens rotations: the same factor up
/// to rounding).
fn rebuild_cholesky(gram: &Array2<f64>, active: &[usize]) -> Vec<Vec<f64>> {
    let n = active.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        let mut row: Vec<f64> = (0..i).map(|k| gram[[active[i], active[k]]]).collect();
        for r in 0..i {
            let mut s = row[r];
            for k in 0..r {
                s -= l[r][k] * row[k];
            }
            row[r] = s / l[r][r];
        }
        let v: f64 = row.iter().map(|x| x * x).sum();
        let c = gram[[active[i], active[i]]];
        l[i][..i].copy_from_slice(&row);
        l[i][i] = (c - v).abs().sqrt().max(EPS);
    }
    l
}

/// scikit-learn's `lars_path(X, y, Gram=gram, Xy=xy, n_samples=n_samples, method, max_iter,
/// alpha_min, eps=np.finfo(float).eps, return_path=True)` on a Gram matrix `gram = XᵀX` and
/// correlations `xy = Xᵀy`.
pub fn lars_path_gram(
    gram: &Array2<f64>,
    xy: &[f64],
    n_samples: usize,
    method: LarsMethod,
    max_iter: usize,
    alpha_min: f64,
) -> LarsPath {
    let n_features = xy.len();
    let n_samples = n_samples.max(1) as f64;
    // `indices[p]`: the variable at position p; positions `..n_active` are active
    let mut indices: Vec<usize> = (0..n_features).collect();
    // correlations of the inactive positions `n_active..`, by position
    let mut cov: Vec<f64> = xy.to_vec();
    let mut active: Vec<usize> = Vec::new();
    let mut sign_active: Vec<f64> = Vec::new();
    let mut l: Vec<Vec<f64>> = Vec::new();
    let mut alphas: Vec<f64> = vec![0.0];
    let mut coefs: Vec<Vec<f64>> = vec![vec![0.0; n_features]];
    let mut n_iter = 0usize;
    let mut drop = false;
    loop {
        // the first position with the largest |correlation| (np.argmax)
        let (c_idx, c_signed) = cov
            .iter()
            .enumerate()
            .fold(None, |best: Option<(usize, f64)>, (i, &v)| match best {
                Some((_, b)) if v.abs() <= b.abs() => best,
                _ => Some((i, v)),
            })
            .unwrap_or((0, 0.0));
        let c = c_signed.abs();
        let alpha = c / n_samples;
        alphas[n_iter] = alpha;
        if alpha <= alpha_min + EQUALITY_TOLERANCE {
            if (alpha - alpha_min).abs() > EQUALITY_TOLERANCE && n_iter > 0 {
                let prev_alpha = alphas[n_iter - 1];
                let ss = (prev_alpha - alpha_min) / (prev_alpha - alpha);
                let prev = coefs[n_iter - 1].clone();
                for (c, p) in coefs[n_iter].iter_mut().zip(&prev) {
                    *c = p + ss * (*c - p);
                }
            }
            if (alpha - alpha_min).abs() > EQUALITY_TOLERANCE {
                alphas[n_iter] = alpha_min;
            }
            break;
        }
        let n_active = active.len();
        if n_iter >= max_iter || n_active >= n_features {
            break;
        }
        if !drop {
            // move the chosen position to the front of the inactive block
            let m = n_active;
            let n = c_idx + n_active;
            cov.swap(c_idx, 0);
            indices.swap(n, m);
            let var = indices[m];
            let c_gram = gram[[var, var]];
            let mut row: Vec<f64> = (0..n_active).map(|k| gram[[var, indices[k]]]).collect();
            for r in 0..n_active {
                let mut s = row[r];
                for k in 0..r {
                    s -= l[r][k] * row[k];
                }
                row[r] = s / l[r][r];
            }
            let v: f64 = row.iter().map(|x| x * x).sum();
            let diag = (c_gram - v).abs().sqrt().max(EPS);
            if diag < 1e-7 {
                // degenerate regressor: scikit-learn zeroes the correlation at the front and
                // swaps the values back, leaving the positions swapped
                cov[0] = 0.0;
                cov.swap(c_idx, 0);
                continue;
            }
            cov.remove(0);
            row.push(diag);
            for r in l.iter_mut() {
                r.push(0.0);
            }
            l.push(row);
            sign_active.push(if c_signed > 0.0 {
                1.0
            } else if c_signed < 0.0 {
                -1.0
            } else {
                0.0
            });
            active.push(var);
        }
        let n_active = active.len();
        if method == LarsMethod::Lasso && n_iter > 0 && alphas[n_iter - 1] < alpha {
            break;
        }
        let mut least_squares = cholesky_solve(&l, n_active, &sign_active);
        let aa;
        if least_squares.len() == 1 && least_squares[0] == 0.0 {
            least_squares[0] = 1.0;
            aa = 1.0;
        } else {
            let mut s: f64 = least_squares
                .iter()
                .zip(&sign_active)
                .map(|(a, b)| a * b)
                .sum();
            let mut a = 1.0 / s.sqrt();
            let mut i = 0;
            while !a.is_finite() {
                let mut l2 = l.clone();
                for (k, row) in l2.iter_mut().enumerate().take(n_active) {
                    row[k] += 2f64.powi(i) * EPS;
                }
                least_squares = cholesky_solve(&l2, n_active, &sign_active);
                s = least_squares
                    .iter()
                    .zip(&sign_active)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    .max(EPS);
                a = 1.0 / s.sqrt();
                i += 1;
            }
            aa = a;
            least_squares.iter_mut().for_each(|v| *v *= aa);
        }
        let corr_eq_dir: Vec<f64> = (n_active..n_features)
            .map(|p| {
                let var = indices[p];
                let d: f64 = (0..n_active)
                    .map(|a| gram[[indices[a], var]] * least_squares[a])
                    .sum();
                around15(d)
            })
            .collect();
        let g1 = min_pos(
            cov.iter()
                .zip(&corr_eq_dir)
                .map(|(cv, e)| (c - cv) / (aa - e + TINY32)),
        );
        let g2 = min_pos(
            cov.iter()
                .zip(&corr_eq_dir)
                .map(|(cv, e)| (c + cv) / (aa + e + TINY32)),
        );
        let mut gamma = g1.min(g2).min(c / aa);
        drop = false;
        let prev = coefs[n_iter].clone();
        let z: Vec<f64> = active
            .iter()
            .zip(&least_squares)
            .map(|(&j, ls)| -prev[j] / (ls + TINY32))
            .collect();
        let z_pos = min_pos(z.iter().copied());
        let mut idx: Vec<usize> = Vec::new();
        if z_pos < gamma {
            idx = (0..z.len()).filter(|&i| z[i] == z_pos).rev().collect();
            for &i in &idx {
                sign_active[i] = -sign_active[i];
            }
            if method == LarsMethod::Lasso {
                gamma = z_pos;
            }
            drop = true;
        }
        n_iter += 1;
        let mut coef = vec![0.0; n_features];
        for (a, &j) in active.iter().enumerate() {
            coef[j] = prev[j] + gamma * least_squares[a];
        }
        coefs.push(coef);
        alphas.push(0.0);
        for (cv, e) in cov.iter_mut().zip(&corr_eq_dir) {
            *cv -= gamma * e;
        }
        if drop && method == LarsMethod::Lasso {
            let mut dropped = Vec::with_capacity(idx.len());
            for &ii in &idx {
                // scikit-learn moves position ii to the end of the active block
                let n_act = active.len();
                for i in ii..n_act - 1 {
                    indices.swap(i, i + 1);
                }
                dropped.push(active.remove(ii));
                sign_active.remove(ii);
            }
            l = rebuild_cholesky(gram, &active);
            let coef = &coefs[n_iter];
            let mut temp: Vec<f64> = dropped
                .iter()
                .map(|&j| xy[j] - (0..n_features).map(|k| gram[[j, k]] * coef[k]).sum::<f64>())
                .collect();
            temp.extend_from_slice(&cov);
            cov = temp;
        }
    }
    alphas.truncate(n_iter + 1);
    coefs.truncate(n_iter + 1);
    LarsPath {
        alphas,
        active,
        coefs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn orthonormal_design_enters_by_correlation() {
        let g = Array2::<f64>::eye(4);
        let xy = [0.1, -3.0, 2.0, 0.5];
        let p = lars_path_gram(&g, &xy, 10, LarsMethod::Lar, 3, 0.0);
        assert_eq!(p.active, vec![1, 2, 3]);
        // LAR on an orthonormal design: after step k the k strongest are shrunk equally
        assert!((p.alphas[0] - 0.3).abs() < 1e-12);
        assert!((p.coefs[1][1] + 1.0).abs() < 1e-12, "{:?}", p.coefs);
        let full = lars_path_gram(&g, &xy, 10, LarsMethod::Lasso, 500, 0.0);
        // the full path reaches least squares
        for (c, x) in full.coefs.last().unwrap().iter().zip(xy) {
            assert!((c - x).abs() < 1e-9, "{:?}", full.coefs);
        }
        let none = lars_path_gram(&g, &[0.0; 4], 10, LarsMethod::Lar, 3, 0.0);
        assert!(none.active.is_empty());
    }

    #[test]
    fn lasso_drops_a_variable_that_crosses_zero() {
        // Efron et al.'s sign change: x3 correlated with both, its coefficient turns
        let g = array![[1.0, 0.0, 0.9], [0.0, 1.0, 0.4], [0.9, 0.4, 1.0]];
        let beta = [1.0, 1.0, -0.6];
        let xy: Vec<f64> = (0..3)
            .map(|i| (0..3).map(|j| g[[i, j]] * beta[j]).sum())
            .collect();
        let lasso = lars_path_gram(&g, &xy, 1, LarsMethod::Lasso, 500, 0.0);
        let last = lasso.coefs.last().unwrap();
        for (c, b) in last.iter().zip(beta) {
            assert!((c - b).abs() < 1e-8, "{:?}", lasso.coefs);
        }
        // the Lasso's alphas never increase
        assert!(lasso.alphas.windows(2).all(|w| w[1] <= w[0] + 1e-12));
    }
}
