//! Shared fixtures: a small softmax MLP over `[2, 3]` inputs and random data.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD, ArrayViewD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{Loss, OutputKind, Targets};
use xai_grad_sim::naive::naive_flat_gradients;
use xai_grad_sim::GradSimValidParams;
use xai_testkit::grad_sim_toy::{OutputActivation, TwoLayerMlp};

pub const INPUT_SHAPE: [usize; 2] = [2, 3];
pub const N_CLASSES: usize = 4;

pub fn softmax_model(seed: u64) -> TwoLayerMlp {
    TwoLayerMlp::new_random(
        INPUT_SHAPE.to_vec(),
        5,
        N_CLASSES,
        OutputActivation::Softmax,
        seed,
    )
    .unwrap()
}

pub fn regression_model(seed: u64) -> TwoLayerMlp {
    TwoLayerMlp::new_random(INPUT_SHAPE.to_vec(), 5, 2, OutputActivation::Identity, seed).unwrap()
}

pub fn ce_probs() -> Loss {
    Loss::CrossEntropy(OutputKind::Probabilities)
}

/// `n` inputs `[n, 2, 3]` with entries in `[-1, 1]` and random classes.
pub fn random_data(n: usize, seed: u64) -> (ArrayD<f32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = ArrayD::from_shape_simple_fn(vec![n, 2, 3], || rng.gen_range(-1.0f32..1.0));
    let labels = (0..n).map(|_| rng.gen_range(0..N_CLASSES)).collect();
    (x, labels)
}

/// Regression targets `[n, 2]`.
pub fn random_values(n: usize, seed: u64) -> Targets {
    let mut rng = StdRng::seed_from_u64(seed);
    Targets::Values(Array2::from_shape_simple_fn((n, 2), || {
        rng.gen_range(-1.0f32..1.0)
    }))
}

/// Checks `fast` against `naive` (both in reference order) with relative error <= `rel`,
/// measured against the Cauchy-Schwarz bound of each entry (the scale a dot product's rounding
/// error is relative to): `‖g‖‖g'‖` for grad_dot, 1 for grad_cos, `‖g‖/‖g'‖` for grad_asym_dot.
pub fn assert_scores_close(
    fast: &Array2<f32>,
    naive: &Array2<f32>,
    params: &GradSimValidParams,
    model: &TwoLayerMlp,
    x_test: ArrayViewD<'_, f32>,
    y_test: &Targets,
    x_ref: ArrayViewD<'_, f32>,
    y_ref: &Targets,
    rel: f32,
) {
    assert_eq!(fast.dim(), naive.dim());
    let g_test = naive_flat_gradients(model, params, x_test, y_test).unwrap();
    let g_ref = naive_flat_gradients(model, params, x_ref, y_ref).unwrap();
    let norm = |r: ndarray::ArrayView1<'_, f32>| r.dot(&r).sqrt();
    for ((i, j), &f) in fast.indexed_iter() {
        let n = naive[[i, j]];
        let (nt, nr) = (norm(g_test.row(i)), norm(g_ref.row(j)));
        let bound = match params.sim_fn() {
            xai_grad_sim::SimilarityFn::GradDot => nt * nr,
            xai_grad_sim::SimilarityFn::GradCos => 1.0,
            xai_grad_sim::SimilarityFn::GradAsymDot => nt / (nr + 1e-12),
        };
        let scale = n.abs().max(bound).max(1e-30);
        assert!(
            (f - n).abs() <= rel * scale,
            "score [{i}, {j}]: fast {f} vs naive {n} (scale {scale}) with {:?}",
            params.sim_fn()
        );
    }
}
