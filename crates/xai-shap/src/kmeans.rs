//! A weighted k-means summary of a background data set, as shap's `shap.kmeans(X, k)`.
//!
//! shap runs scikit-learn's `KMeans(n_clusters=k, random_state=0, n_init=10)` (k-means++
//! seeding, Arthur & Vassilvitskii 2007, with scikit-learn's greedy `2 + ln k` candidate
//! trials; Lloyd iterations until the centres move less than `tol` times the mean feature
//! variance; the best of `n_init` runs by inertia), then by default replaces every centroid
//! coordinate by the nearest value that feature takes in the data (`round_values=True`, so
//! discrete features keep valid values), and weights each centroid by its cluster's size. This
//! module does the same steps with its own seeded generator: the summary has the same
//! definition, not scikit-learn's random numbers, so centroids can differ from shap's where
//! k-means has several local optima.

use ndarray::{Array2, ArrayView2, Axis};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShapError};

/// k-means parameters; defaults as `shap.kmeans`: 10 initialisations, at most 300 Lloyd
/// iterations, `tol = 1e-4`, centroids rounded to data values, seed 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansParams {
    k: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    round_values: bool,
    seed: u64,
}

impl KMeansParams {
    /// `k` clusters with the defaults (see the type docs).
    pub fn new(k: usize) -> Self {
        Self {
            k,
            n_init: 10,
            max_iter: 300,
            tol: 1e-4,
            round_values: true,
            seed: 0,
        }
    }

    /// Number of seeded initialisations; the run with the lowest inertia wins.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.n_init = n_init;
        self
    }

    /// Most Lloyd iterations per initialisation.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Convergence tolerance, relative to the mean feature variance (scikit-learn's `tol`).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Whether each centroid coordinate is replaced by the nearest value of that feature in the
    /// data (shap's `round_values`).
    pub fn round_values(mut self, yes: bool) -> Self {
        self.round_values = yes;
        self
    }

    /// Seed of the k-means++ seeding.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates the parameters.
    pub fn check(&self) -> Result<ValidKMeansParams> {
        if self.k == 0 {
            return Err(ShapError::param("k", 0, "at least 1 cluster"));
        }
        if self.n_init == 0 {
            return Err(ShapError::param("n_init", 0, "at least 1"));
        }
        if self.max_iter == 0 {
            return Err(ShapError::param("max_iter", 0, "at least 1"));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(ShapError::param("tol", self.tol, "a finite tol >= 0"));
        }
        Ok(ValidKMeansParams(self.clone()))
    }
}

/// Validated [`KMeansParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidKMeansParams(KMeansParams);

/// A k-means summary: centroids and the number of rows each represents.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansSummary {
    /// `[k, D]`.
    pub centroids: Array2<f32>,
    /// Rows per cluster (shap's `np.bincount(labels_)`), as weights.
    pub weights: Vec<f64>,
    /// Cluster of each input row.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the rows to their centres (before rounding).
    pub inertia: f64,
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl ValidKMeansParams {
    /// Clusters the rows of `data` (`[N, D]`, finite, `N >= k`).
    pub fn fit(&self, data: ArrayView2<'_, f32>) -> Result<KMeansSummary> {
        let p = &self.0;
        let (n, d) = data.dim();
        if n < p.k {
            return Err(ShapError::shape(
                "k-means data",
                data.shape(),
                format!("at least k = {} rows", p.k),
            ));
        }
        xai_core::check_finite("k-means data", &data.into_dyn())?;
        let x: Vec<Vec<f64>> = data
            .axis_iter(Axis(0))
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        // tolerance relative to the mean variance of the features
        let mut mean_var = 0.0;
        for j in 0..d {
            let mean = x.iter().map(|r| r[j]).sum::<f64>() / n as f64;
            mean_var += x.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n as f64;
        }
        let tol = p.tol * mean_var / d.max(1) as f64;
        let mut rng = StdRng::seed_from_u64(p.seed);
        let mut best: Option<(Vec<Vec<f64>>, Vec<usize>, f64)> = None;
        for _ in 0..p.n_init {
            let centres = kmeans_plus_plus(&x, p.k, &mut rng);
            let (centres, labels, inertia) = lloyd(&x, centres, p.max_iter, tol);
            if best.as_ref().is_none_or(|b| inertia < b.2) {
                best = Some((centres, labels, inertia));
            }
        }
        let (mut centres, labels, inertia) = best.expect("n_init >= 1");
        if p.round_values {
            for c in centres.iter_mut() {
                for j in 0..d {
                    let mut nearest = x[0][j];
                    for r in &x {
                        if (r[j] - c[j]).abs() < (nearest - c[j]).abs() {
                            nearest = r[j];
                        }
                    }
                    c[j] = nearest;
                }
            }
        }
        let mut weights = vec![0.0; p.k];
        for &l in &labels {
            weights[l] += 1.0;
        }
        Ok(KMeansSummary {
            centroids: Array2::from_shape_fn((p.k, d), |(i, j)| centres[i][j] as f32),
            weights,
            labels,
            inertia,
        })
    }
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`: `2 + ⌊ln k⌋` candidates per centre,
/// the one lowering the potential most is kept).
fn kmeans_plus_plus(x: &[Vec<f64>], k: usize, rng: &mut StdRng) -> Vec<Vec<f64>> {
    let n = x.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centres = vec![x[rng.gen_range(0..n)].clone()];
    let mut closest: Vec<f64> = x.iter().map(|r| sq_dist(r, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = closest.iter().sum();
        let candidates: Vec<usize> = if total > 0.0 {
            let dist = WeightedIndex::new(&closest).expect("non-negative, positive sum");
            (0..trials).map(|_| dist.sample(rng)).collect()
        } else {
            (0..trials).map(|_| rng.gen_range(0..n)).collect()
        };
        let mut best: Option<(usize, f64, Vec<f64>)> = None;
        for c in candidates {
            let dists: Vec<f64> = x
                .iter()
                .zip(&closest)
                .map(|(r, &old)| old.min(sq_dist(r, &x[c])))
                .collect();
            let pot: f64 = dists.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.1) {
                best = Some((c, pot, dists));
            }
        }
        let (c, _, dists) = best.expect("at least two trials");
        centres.push(x[c].clone());
        closest = dists;
    }
    centres
}

/// Lloyd's iterations; empty clusters are moved to the rows farthest from their centres.
fn lloyd(
    x: &[Vec<f64>],
    mut centres: Vec<Vec<f64>>,
    max_iter: usize,
    tol: f64,
) -> (Vec<Vec<f64>>, Vec<usize>, f64) {
    let k = centres.len();
    let d = x[0].len();
    let assign = |centres: &[Vec<f64>]| -> (Vec<usize>, Vec<f64>) {
        x.iter()
            .map(|r| {
                let mut best = (0, f64::INFINITY);
                for (c, centre) in centres.iter().enumerate() {
                    let dist = sq_dist(r, centre);
                    if dist < best.1 {
                        best = (c, dist);
                    }
                }
                best
            })
            .unzip()
    };
    let (mut labels, mut dists) = assign(&centres);
    for _ in 0..max_iter {
        let mut sums = vec![vec![0.0; d]; k];
        let mut counts = vec![0usize; k];
        for (r, &l) in x.iter().zip(&labels) {
            counts[l] += 1;
            for (s, v) in sums[l].iter_mut().zip(r) {
                *s += v;
            }
        }
        // relocate empty clusters to the farthest rows
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]));
        let mut far = order.into_iter();
        let mut new_centres = Vec::with_capacity(k);
        for c in 0..k {
            if counts[c] == 0 {
                let r = far.next().unwrap_or(0);
                new_centres.push(x[r].clone());
            } else {
                new_centres.push(sums[c].iter().map(|s| s / counts[c] as f64).collect());
            }
        }
        let shift: f64 = centres
            .iter()
            .zip(&new_centres)
            .map(|(a, b)| sq_dist(a, b))
            .sum();
        centres = new_centres;
        let (l2, d2) = assign(&centres);
        let same = l2 == labels;
        labels = l2;
        dists = d2;
        if same || shift <= tol {
            break;
        }
    }
    let inertia = dists.iter().sum();
    (centres, labels, inertia)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn separated_clusters_are_found_and_weighted() {
        let data = array![
            [0.0f32, 0.0],
            [0.1, 0.0],
            [0.0, 0.1],
            [10.0, 10.0],
            [10.1, 10.0],
            [5.0, -5.0]
        ];
        let s = KMeansParams::new(3)
            .check()
            .unwrap()
            .fit(data.view())
            .unwrap();
        let mut w = s.weights.clone();
        w.sort_by(f64::total_cmp);
        assert_eq!(w, vec![1.0, 2.0, 3.0]);
        // rounded centroids take data values per feature
        for c in s.centroids.axis_iter(Axis(0)) {
            for (j, v) in c.iter().enumerate() {
                assert!(data.column(j).iter().any(|x| x == v), "{c:?}");
            }
        }
        let raw = KMeansParams::new(3)
            .round_values(false)
            .check()
            .unwrap()
            .fit(data.view())
            .unwrap();
        let big = raw
            .centroids
            .axis_iter(Axis(0))
            .find(|c| c[0] < 1.0)
            .unwrap();
        assert!((big[0] - 0.1 / 3.0).abs() < 1e-6 && (big[1] - 0.1 / 3.0).abs() < 1e-6);
        // seeded: same summary twice
        let again = KMeansParams::new(3)
            .check()
            .unwrap()
            .fit(data.view())
            .unwrap();
        assert_eq!(again, s);
        assert!(KMeansParams::new(7)
            .check()
            .unwrap()
            .fit(data.view())
            .is_err());
        assert!(KMeansParams::new(0).check().is_err());
    }
}
