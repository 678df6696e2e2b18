//! Properties of the kernels (Charpiat et al. 2019, section 2), checked on random models and
//! data: grad_cos lies in [-1, 1] and is symmetric, grad_dot is symmetric, grad_asym_dot(z, z)
//! is 1, and the order of the references does not change any reference's score.

mod common;

use common::*;
use ndarray::{Array2, ArrayD, Axis};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use xai_core::Targets;
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};

/// Scores of every instance of `x` against every instance of `x` (fit and explain on the same
/// labelled set), in reference order.
fn self_scores(
    sim_fn: SimilarityFn,
    eps: f32,
    model_seed: u64,
    x: &ArrayD<f32>,
    labels: &[usize],
    batch_size: usize,
    precompute: bool,
) -> Array2<f32> {
    let model = softmax_model(model_seed);
    let params = GradSimParams::new(ce_probs())
        .sim_fn(sim_fn)
        .eps(eps)
        .batch_size(batch_size)
        .precompute_grads(precompute)
        .check()
        .unwrap();
    let y = Targets::Classes(labels.to_vec());
    GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x.clone(), y.clone())
        .unwrap()
        .explain(x.view(), Some(&y))
        .unwrap()
        .data
        .scores_by_reference()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn grad_cos_is_bounded_and_symmetric(
        model_seed in 0u64..1000, data_seed in 0u64..1000, n in 2usize..10,
        batch_size in 1usize..6, precompute in any::<bool>(),
    ) {
        let (x, labels) = random_data(n, data_seed);
        let s = self_scores(SimilarityFn::GradCos, 1e-7, model_seed, &x, &labels, batch_size, precompute);
        for ((i, j), &v) in s.indexed_iter() {
            prop_assert!((-1.0..=1.0).contains(&v), "cos[{i},{j}] = {v}");
            prop_assert!((v - s[[j, i]]).abs() <= 1e-5, "cos[{i},{j}] = {v} vs {}", s[[j, i]]);
        }
        // Cauchy-Schwarz is attained on the diagonal.
        for i in 0..n {
            prop_assert!((s[[i, i]] - 1.0).abs() <= 1e-4, "cos[{i},{i}] = {}", s[[i, i]]);
        }
    }

    #[test]
    fn grad_dot_is_symmetric(
        model_seed in 0u64..1000, data_seed in 0u64..1000, n in 2usize..10,
        batch_size in 1usize..6, precompute in any::<bool>(),
    ) {
        let (x, labels) = random_data(n, data_seed);
        let s = self_scores(SimilarityFn::GradDot, 1e-7, model_seed, &x, &labels, batch_size, precompute);
        for ((i, j), &v) in s.indexed_iter() {
            let scale = (s[[i, i]] * s[[j, j]]).sqrt().max(1e-30);
            prop_assert!((v - s[[j, i]]).abs() <= 1e-5 * scale, "dot[{i},{j}] = {v} vs {}", s[[j, i]]);
            prop_assert!(s[[i, i]] >= 0.0);
        }
    }

    #[test]
    fn grad_asym_dot_of_an_instance_with_itself_is_one(
        model_seed in 0u64..1000, data_seed in 0u64..1000, n in 1usize..10,
        batch_size in 1usize..6, precompute in any::<bool>(),
    ) {
        let (x, labels) = random_data(n, data_seed);
        // The kernel as defined (eps = 0) ...
        let s = self_scores(SimilarityFn::GradAsymDot, 0.0, model_seed, &x, &labels, batch_size, precompute);
        for i in 0..n {
            prop_assert!((s[[i, i]] - 1.0).abs() <= 1e-5, "asym[{i},{i}] = {}", s[[i, i]]);
        }
        // ... and with alibi's stabiliser, ‖g‖² / (‖g‖² + eps).
        let eps = 1e-7;
        let d = self_scores(SimilarityFn::GradDot, eps, model_seed, &x, &labels, batch_size, precompute);
        let a = self_scores(SimilarityFn::GradAsymDot, eps, model_seed, &x, &labels, batch_size, precompute);
        for i in 0..n {
            let expected = d[[i, i]] / (d[[i, i]] + eps);
            prop_assert!((a[[i, i]] - expected).abs() <= 1e-5, "asym[{i},{i}] = {} vs {expected}", a[[i, i]]);
        }
    }

    #[test]
    fn reference_order_does_not_change_scores(
        model_seed in 0u64..1000, data_seed in 0u64..1000, n_ref in 1usize..16,
        perm_seed in any::<u64>(), batch_size in 1usize..7, sim in 0usize..3,
        precompute in any::<bool>(),
    ) {
        let sim_fn = SimilarityFn::ALL[sim];
        let model = softmax_model(model_seed);
        let (x_ref, labels) = random_data(n_ref, data_seed);
        let (x_test, _) = random_data(3, data_seed + 1);
        let mut perm: Vec<usize> = (0..n_ref).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(perm_seed));
        let params = GradSimParams::new(ce_probs())
            .sim_fn(sim_fn)
            .batch_size(batch_size)
            .precompute_grads(precompute)
            .check()
            .unwrap();
        let explainer = GradientSimilarity::new(&model, params).unwrap();
        let y_ref = Targets::Classes(labels);
        let original = explainer
            .fit(x_ref.clone(), y_ref.clone())
            .unwrap()
            .explain(x_test.view(), None)
            .unwrap();
        let permuted = explainer
            .fit(x_ref.select(Axis(0), &perm), y_ref.select(&perm).unwrap())
            .unwrap()
            .explain(x_test.view(), None)
            .unwrap();
        let a = original.data.scores_by_reference().unwrap();
        let b = permuted.data.scores_by_reference().unwrap();
        for i in 0..3 {
            for (new_j, &old_j) in perm.iter().enumerate() {
                let (u, v) = (a[[i, old_j]], b[[i, new_j]]);
                prop_assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "test {i} ref {old_j}: {u} vs {v}");
            }
        }
        // The most similar instance is the same reference (up to exact ties).
        let best_old = original.data.most_similar_indices[[0, 0]];
        let best_new = perm[permuted.data.most_similar_indices[[0, 0]]];
        prop_assert!(best_old == best_new || (a[[0, best_old]] - a[[0, best_new]]).abs() <= 1e-5 * (1.0 + a[[0, best_old]].abs()));
    }
}
