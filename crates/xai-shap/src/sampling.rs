//! Coalition designs: which coalitions (subsets of features) KernelSHAP evaluates and with which
//! regression weights.
//!
//! Every scheme returns a [`CoalitionDesign`] whose weighted least-squares fit (with the
//! efficiency constraint, see [`crate::solver`]) estimates the Shapley values. The Shapley kernel
//! of Lundberg & Lee (2017, Theorem 2) gives a coalition `S` of size `s` among `M` features the
//! weight `(M - 1) / (C(M, s) s (M - s))`; the empty and the full coalition enter through the
//! constraint only.
//!
//! * [`SamplingScheme::Shap`] reproduces shap's `KernelExplainer`: coalition sizes get budget in
//!   proportion to their kernel mass; sizes (smallest and largest first) whose every coalition the
//!   budget covers are enumerated; the rest is sampled with replacement, size by the kernel, each
//!   sample paired with its complement, repeats adding weight 1 to the earlier copy; the sampled
//!   weights are rescaled to the kernel mass left.
//! * [`SamplingScheme::PairedKernel`] allocates like shap but stratified: a fixed number of
//!   complement pairs per size, drawn without replacement, each weighted by its kernel weight
//!   over its inclusion probability (Covert & Lee 2021 show paired sampling is the largest single
//!   variance reduction of KernelSHAP).
//! * [`SamplingScheme::Leverage`] gives every coalition size the same budget, i.e. samples by the
//!   leverage scores of the constrained regression (Musco & Witter 2024, "Provably Accurate
//!   Shapley Value Estimation via Leverage Score Sampling"), paired and without replacement,
//!   reweighted by kernel weight / inclusion probability.
//!
//! All schemes enumerate every coalition, and so give the exact Shapley values, when the budget
//! covers the `2^M - 2` non-trivial coalitions.

use std::collections::{HashMap, HashSet};

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::seq::index::sample as sample_indices;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShapError};

/// How coalitions are chosen; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SamplingScheme {
    /// shap's `KernelExplainer` sampling, step for step.
    Shap,
    /// Kernel allocation, stratified by size, complement pairs without replacement.
    PairedKernel,
    /// Uniform allocation over sizes (leverage scores), complement pairs without replacement.
    #[default]
    Leverage,
}

/// A set of coalitions of `n_features` features with regression weights. Coalitions are stored
/// as bitsets (bit `j` set: feature `j` present).
#[derive(Debug, Clone, PartialEq)]
pub struct CoalitionDesign {
    n_features: usize,
    words: usize,
    bits: Vec<u64>,
    weights: Vec<f64>,
    exact: bool,
}

impl CoalitionDesign {
    fn new(n_features: usize) -> Self {
        Self {
            n_features,
            words: n_features.div_ceil(64).max(1),
            bits: Vec::new(),
            weights: Vec::new(),
            exact: false,
        }
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of coalitions.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether the design holds no coalition.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Regression weight of each coalition.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Whether every non-trivial coalition is in the design (the estimate is then exact).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether feature `j` is present in coalition `i`.
    pub fn contains(&self, i: usize, j: usize) -> bool {
        self.bits[i * self.words + j / 64] >> (j % 64) & 1 == 1
    }

    /// Number of features present in coalition `i`.
    pub fn size(&self, i: usize) -> usize {
        self.row_bits(i)
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Writes coalition `i` as booleans into `out` (length `n_features`).
    pub fn write_row(&self, i: usize, out: &mut [bool]) {
        for (j, o) in out.iter_mut().enumerate().take(self.n_features) {
            *o = self.contains(i, j);
        }
    }

    fn row_bits(&self, i: usize) -> &[u64] {
        &self.bits[i * self.words..(i + 1) * self.words]
    }

    fn push(&mut self, bits: &[u64], weight: f64) {
        self.bits.extend_from_slice(bits);
        self.weights.push(weight);
    }
}

/// A coalition under construction, as a bitset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Mask(Vec<u64>);

impl Mask {
    fn empty(n: usize) -> Self {
        Mask(vec![0; n.div_ceil(64).max(1)])
    }
    fn from_indices(n: usize, indices: impl IntoIterator<Item = usize>) -> Self {
        let mut m = Self::empty(n);
        for j in indices {
            m.0[j / 64] |= 1 << (j % 64);
        }
        m
    }
    fn complement(&self, n: usize) -> Self {
        let mut c = Mask(self.0.iter().map(|w| !w).collect());
        let rem = n % 64;
        if rem != 0 {
            let last = c.0.len() - 1;
            c.0[last] &= (1u64 << rem) - 1;
        }
        if n == 0 {
            c.0.iter_mut().for_each(|w| *w = 0);
        }
        c
    }
    fn contains(&self, j: usize) -> bool {
        self.0[j / 64] >> (j % 64) & 1 == 1
    }
}

/// `C(n, k)` as `f64` (infinite when it overflows), as scipy's `binom`.
pub fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    let mut r = 1f64;
    for i in 0..k {
        r = r * (n - i) as f64 / (i + 1) as f64;
    }
    r.round_if_exact()
}

trait RoundIfExact {
    fn round_if_exact(self) -> Self;
}

impl RoundIfExact for f64 {
    /// Rounds to the nearest integer where `f64` represents integers exactly.
    fn round_if_exact(self) -> Self {
        if self < 9.0e15 {
            self.round()
        } else {
            self
        }
    }
}

/// The Shapley kernel weight of one coalition of size `s` among `m` features,
/// `(m - 1) / (C(m, s) s (m - s))` (Lundberg & Lee 2017, Theorem 2).
pub fn shapley_kernel_weight(m: usize, s: usize) -> f64 {
    (m as f64 - 1.0) / (binomial(m, s) * s as f64 * (m - s) as f64)
}

/// The number of coalition evaluations a budget of `nsamples` amounts to for `m` features:
/// at most `2^m - 2`, the number of non-trivial coalitions.
pub fn effective_nsamples(m: usize, nsamples: usize) -> usize {
    if m < 2 {
        return 0;
    }
    if m <= 62 {
        let max = (1u64 << m) - 2;
        (nsamples as u64).min(max) as usize
    } else {
        nsamples
    }
}

/// Builds a design for `m >= 2` features with at most `nsamples` coalitions.
pub fn design(
    scheme: SamplingScheme,
    m: usize,
    nsamples: usize,
    rng: &mut StdRng,
) -> Result<CoalitionDesign> {
    if m < 2 {
        return Err(ShapError::param(
            "number of features",
            m,
            "at least 2 for a coalition design (0 or 1 features have closed-form values)",
        ));
    }
    let nsamples = effective_nsamples(m, nsamples);
    if nsamples == 0 {
        return Err(ShapError::param("nsamples", 0, "at least 1"));
    }
    // paired schemes spend the budget in complement pairs: an odd budget leaves one coalition
    // unused, and a budget of 1 is raised to one pair
    let paired_budget = nsamples.max(2);
    let mut d = match scheme {
        SamplingScheme::Shap => shap_design(m, nsamples, rng),
        SamplingScheme::PairedKernel => {
            stratified_paired_design(m, paired_budget, rng, |s| 1.0 / (s as f64 * (m - s) as f64))
        }
        SamplingScheme::Leverage => stratified_paired_design(m, paired_budget, rng, |_| 1.0),
    };
    d.exact = m <= 62 && d.len() as u64 == (1u64 << m) - 2;
    Ok(d)
}

/// All `k`-subsets of `0..n` in lexicographic order (as `itertools.combinations`).
fn for_each_combination(n: usize, k: usize, mut f: impl FnMut(&[usize])) {
    if k > n {
        return;
    }
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        f(&idx);
        // the rightmost position that can still advance
        let mut i = k;
        while i > 0 && idx[i - 1] == n - k + i - 1 {
            i -= 1;
        }
        if i == 0 {
            return;
        }
        idx[i - 1] += 1;
        for j in i..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// shap's `KernelExplainer.explain` sampling (see the module docs).
fn shap_design(m: usize, nsamples: usize, rng: &mut StdRng) -> CoalitionDesign {
    let mut d = CoalitionDesign::new(m);
    let num_subset_sizes = (m - 1).div_ceil(2);
    let num_paired_subset_sizes = (m - 1) / 2;
    let mut weight_vector: Vec<f64> = (1..=num_subset_sizes)
        .map(|i| (m as f64 - 1.0) / (i as f64 * (m - i) as f64))
        .collect();
    for w in weight_vector.iter_mut().take(num_paired_subset_sizes) {
        *w *= 2.0;
    }
    let total: f64 = weight_vector.iter().sum();
    weight_vector.iter_mut().for_each(|w| *w /= total);

    let mut num_full_subsets = 0;
    let mut num_samples_left = nsamples as f64;
    let mut remaining_weight_vector = weight_vector.clone();
    for subset_size in 1..=num_subset_sizes {
        let mut nsubsets = binomial(m, subset_size);
        let paired = subset_size <= num_paired_subset_sizes;
        if paired {
            nsubsets *= 2.0;
        }
        if num_samples_left * remaining_weight_vector[subset_size - 1] / nsubsets >= 1.0 - 1e-8 {
            num_full_subsets += 1;
            num_samples_left -= nsubsets;
            let r = remaining_weight_vector[subset_size - 1];
            if r < 1.0 {
                remaining_weight_vector
                    .iter_mut()
                    .for_each(|w| *w /= 1.0 - r);
            }
            let mut w = weight_vector[subset_size - 1] / binomial(m, subset_size);
            if paired {
                w /= 2.0;
            }
            for_each_combination(m, subset_size, |inds| {
                let mask = Mask::from_indices(m, inds.iter().copied());
                d.push(&mask.0, w);
                if paired {
                    d.push(&mask.complement(m).0, w);
                }
            });
        } else {
            break;
        }
    }

    let nfixed_samples = d.len();
    let mut samples_left = nsamples.saturating_sub(d.len());
    if num_full_subsets != num_subset_sizes && samples_left > 0 {
        let mut rw = weight_vector.clone();
        for w in rw.iter_mut().take(num_paired_subset_sizes) {
            *w /= 2.0;
        }
        let rw = &rw[num_full_subsets..];
        let dist = WeightedIndex::new(rw).expect("positive finite weights");
        let ind_set: Vec<usize> = (0..4 * samples_left).map(|_| dist.sample(rng)).collect();
        let mut used_masks: HashMap<Mask, usize> = HashMap::new();
        let mut pos = 0;
        while samples_left > 0 && pos < ind_set.len() {
            let subset_size = ind_set[pos] + num_full_subsets + 1;
            pos += 1;
            let mask = Mask::from_indices(m, sample_indices(rng, m, subset_size));
            let (new_sample, index) = match used_masks.get(&mask) {
                Some(&i) => {
                    d.weights[i] += 1.0;
                    (false, i)
                }
                None => {
                    let i = d.len();
                    used_masks.insert(mask.clone(), i);
                    samples_left -= 1;
                    d.push(&mask.0, 1.0);
                    (true, i)
                }
            };
            if samples_left > 0 && subset_size <= num_paired_subset_sizes {
                if new_sample {
                    samples_left -= 1;
                    d.push(&mask.complement(m).0, 1.0);
                } else if index + 1 < d.len() {
                    // shap assumes the complement follows the original sample
                    d.weights[index + 1] += 1.0;
                }
            }
        }
        let weight_left: f64 = weight_vector[num_full_subsets..].iter().sum();
        let sampled: f64 = d.weights[nfixed_samples..].iter().sum();
        if sampled > 0.0 {
            for w in d.weights[nfixed_samples..].iter_mut() {
                *w *= weight_left / sampled;
            }
        }
    }
    d
}

/// Stratified, paired, without-replacement sampling with `size_weight(s)` proportional to the
/// budget share of coalition size `s` (see the module docs).
fn stratified_paired_design(
    m: usize,
    nsamples: usize,
    rng: &mut StdRng,
    size_weight: impl Fn(usize) -> f64,
) -> CoalitionDesign {
    let mut d = CoalitionDesign::new(m);
    // stratum t = sizes {t, m - t}, t = 1..=m/2
    let strata: Vec<usize> = (1..=m / 2).collect();
    let is_middle = |t: usize| 2 * t == m;
    let n_subsets = |t: usize| {
        if is_middle(t) {
            binomial(m, t)
        } else {
            2.0 * binomial(m, t)
        }
    };
    let mass = |t: usize| {
        if is_middle(t) {
            size_weight(t)
        } else {
            size_weight(t) + size_weight(m - t)
        }
    };

    // enumerate strata while the budget share covers them
    let mut budget = nsamples as f64;
    let mut mass_left: f64 = strata.iter().map(|&t| mass(t)).sum();
    let mut first_sampled = strata.len();
    for (pos, &t) in strata.iter().enumerate() {
        let n = n_subsets(t);
        if budget * mass(t) / mass_left >= n * (1.0 - 1e-8) && n <= budget {
            let w = shapley_kernel_weight(m, t);
            for_each_combination(m, t, |inds| {
                let mask = Mask::from_indices(m, inds.iter().copied());
                if is_middle(t) {
                    d.push(&mask.0, w);
                } else {
                    d.push(&mask.0, w);
                    d.push(&mask.complement(m).0, w);
                }
            });
            budget -= n;
            mass_left -= mass(t);
        } else {
            first_sampled = pos;
            break;
        }
    }
    let sampled_strata = &strata[first_sampled..];
    if sampled_strata.is_empty() {
        return d;
    }

    // allocate complement pairs to the remaining strata: floor, then largest remainders
    let pairs = (budget.max(0.0) as usize) / 2;
    let pair_capacity = |t: usize| n_subsets(t) / 2.0;
    let shares: Vec<f64> = sampled_strata
        .iter()
        .map(|&t| pairs as f64 * mass(t) / mass_left)
        .collect();
    let mut counts: Vec<usize> = shares
        .iter()
        .zip(sampled_strata)
        .map(|(s, &t)| (s.floor()).min(pair_capacity(t)) as usize)
        .collect();
    let mut left = pairs.saturating_sub(counts.iter().sum());
    let mut order: Vec<usize> = (0..sampled_strata.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = shares[a] - shares[a].floor();
        let rb = shares[b] - shares[b].floor();
        rb.partial_cmp(&ra).unwrap_or(std::cmp::Ordering::Equal)
    });
    while left > 0 {
        let mut gave = false;
        for &i in &order {
            if left == 0 {
                break;
            }
            if (counts[i] as f64) < pair_capacity(sampled_strata[i]) {
                counts[i] += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            break;
        }
    }

    // draw the pairs of each stratum without replacement
    for (&t, &count) in sampled_strata.iter().zip(&counts) {
        if count == 0 {
            continue;
        }
        let capacity = pair_capacity(t);
        // kernel weight / inclusion probability, with C(m, t) cancelled (it may overflow)
        let per_pair = if is_middle(t) { 0.5 } else { 1.0 };
        let w = (m as f64 - 1.0) / (t as f64 * (m - t) as f64) * per_pair / count as f64;
        if 2.0 * count as f64 >= capacity {
            // a dense stratum: list its pairs and keep a random `count` of them
            let mut reps = Vec::new();
            for_each_combination(m, t, |inds| {
                if !is_middle(t) || inds[0] == 0 {
                    reps.push(Mask::from_indices(m, inds.iter().copied()));
                }
            });
            for k in sample_indices(rng, reps.len(), count.min(reps.len())).into_iter() {
                d.push(&reps[k].0, w);
                d.push(&reps[k].complement(m).0, w);
            }
            continue;
        }
        let mut seen: HashSet<Mask> = HashSet::with_capacity(count);
        while seen.len() < count {
            let mask = Mask::from_indices(m, sample_indices(rng, m, t));
            // one representative per complement pair (in the middle stratum, both have size t)
            let key = if is_middle(t) && !mask.contains(0) {
                mask.complement(m)
            } else {
                mask
            };
            if seen.insert(key.clone()) {
                d.push(&key.0, w);
                d.push(&key.complement(m).0, w);
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn binomials_and_kernel() {
        assert_eq!(binomial(5, 2), 10.0);
        assert_eq!(binomial(196, 1), 196.0);
        assert_eq!(binomial(3, 4), 0.0);
        assert!((shapley_kernel_weight(4, 1) - 3.0 / (4.0 * 3.0)).abs() < 1e-15);
        assert_eq!(effective_nsamples(3, 100), 6);
        assert_eq!(effective_nsamples(200, 100), 100);
    }

    #[test]
    fn combinations_are_lexicographic_and_complete() {
        let mut all = Vec::new();
        for_each_combination(4, 2, |c| all.push(c.to_vec()));
        assert_eq!(
            all,
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
        let mut n = 0;
        for_each_combination(7, 3, |_| n += 1);
        assert_eq!(n, 35);
        let mut n = 0;
        for_each_combination(3, 3, |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn complement_masks_the_tail() {
        let m = Mask::from_indices(70, [0, 65]);
        let c = m.complement(70);
        assert!(!c.contains(0) && !c.contains(65) && c.contains(69) && c.contains(1));
        assert_eq!(c.0[1].count_ones(), 5);
    }

    #[test]
    fn every_scheme_enumerates_small_games() {
        for scheme in [
            SamplingScheme::Shap,
            SamplingScheme::PairedKernel,
            SamplingScheme::Leverage,
        ] {
            for m in 2..9 {
                let mut rng = StdRng::seed_from_u64(1);
                let d = design(scheme, m, 10_000, &mut rng).unwrap();
                assert_eq!(d.len(), (1 << m) - 2, "{scheme:?} m={m}");
                assert!(d.is_exact());
                let distinct: HashSet<Vec<bool>> = (0..d.len())
                    .map(|i| (0..m).map(|j| d.contains(i, j)).collect())
                    .collect();
                assert_eq!(distinct.len(), d.len());
                for i in 0..d.len() {
                    let s = d.size(i);
                    assert!(s > 0 && s < m);
                    let expected = shapley_kernel_weight(m, s);
                    // shap normalises its kernel; compare up to one common factor
                    let ratio = d.weights()[i] / expected;
                    let ratio0 = d.weights()[0] / shapley_kernel_weight(m, d.size(0));
                    assert!((ratio - ratio0).abs() < 1e-9 * ratio0, "{scheme:?} m={m}");
                }
            }
        }
    }

    #[test]
    fn sampled_designs_respect_budget_and_pairs() {
        for scheme in [
            SamplingScheme::Shap,
            SamplingScheme::PairedKernel,
            SamplingScheme::Leverage,
        ] {
            let m = 40;
            let mut rng = StdRng::seed_from_u64(7);
            let d = design(scheme, m, 1000, &mut rng).unwrap();
            assert!(d.len() <= 1000 && d.len() >= 900, "{scheme:?}: {}", d.len());
            assert!(!d.is_exact());
            assert!(d.weights().iter().all(|w| *w > 0.0 && w.is_finite()));
            if scheme != SamplingScheme::Shap {
                // rows come in complement pairs
                for i in (0..d.len()).step_by(2) {
                    for j in 0..m {
                        assert_ne!(d.contains(i, j), d.contains(i + 1, j));
                    }
                }
            }
            let mut rng2 = StdRng::seed_from_u64(7);
            assert_eq!(design(scheme, m, 1000, &mut rng2).unwrap(), d);
        }
    }

    #[test]
    fn tiny_budgets_still_sample() {
        for scheme in [SamplingScheme::PairedKernel, SamplingScheme::Leverage] {
            let mut rng = StdRng::seed_from_u64(0);
            let d = design(scheme, 30, 1, &mut rng).unwrap();
            assert_eq!(d.len(), 2, "{scheme:?}");
            let d = design(scheme, 30, 7, &mut rng).unwrap();
            assert_eq!(d.len(), 6, "{scheme:?}");
        }
    }

    #[test]
    fn too_few_features_is_an_error() {
        let mut rng = StdRng::seed_from_u64(0);
        assert!(design(SamplingScheme::Leverage, 1, 10, &mut rng).is_err());
        assert!(design(SamplingScheme::Leverage, 5, 0, &mut rng).is_err());
    }
}
