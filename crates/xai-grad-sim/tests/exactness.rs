//! The fast path (batched, factored, gram products) against the naive one-at-a-time path, for
//! every kernel, both gradient modes, several batch sizes, parameter subsets and both tasks.

mod common;

use common::*;
use ndarray::{s, ArrayD, Axis};
use xai_core::{Loss, ParamSelection, Targets};
use xai_grad_sim::naive::naive_scores;
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn, Task};
use xai_testkit::grad_sim_toy::PARAM_GROUPS;

const REL: f32 = 1e-4;

fn run_case(
    model: &xai_testkit::grad_sim_toy::TwoLayerMlp,
    params: GradSimParams,
    x_ref: &ArrayD<f32>,
    y_ref: &Targets,
    x_test: &ArrayD<f32>,
    y_test: &Targets,
) {
    let params = params.check().unwrap();
    let explainer = GradientSimilarity::new(model, params.clone()).unwrap();
    let fitted = explainer.fit(x_ref.clone(), y_ref.clone()).unwrap();
    let e = fitted.explain(x_test.view(), Some(y_test)).unwrap();
    let fast = e.data.scores_by_reference().unwrap();
    let naive = naive_scores(model, &params, x_ref.view(), y_ref, x_test.view(), y_test).unwrap();
    assert_scores_close(
        &fast,
        &naive,
        &params,
        model,
        x_test.view(),
        y_test,
        x_ref.view(),
        y_ref,
        REL,
    );
    // The sorted scores are the naive scores in the reported order.
    let order = e.data.ordered_indices.as_ref().unwrap();
    let sorted = e.data.scores.as_ref().unwrap();
    for i in 0..order.nrows() {
        for j in 1..order.ncols() {
            assert!(
                sorted[[i, j - 1]] >= sorted[[i, j]],
                "scores not descending"
            );
        }
        let mut seen = order.row(i).to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..x_ref.len_of(Axis(0))).collect::<Vec<_>>());
    }
}

#[test]
fn classification_scores_equal_naive_scores() {
    let model = softmax_model(21);
    let (x_ref, ref_labels) = random_data(23, 1);
    let (x_test, test_labels) = random_data(5, 2);
    let y_ref = Targets::Classes(ref_labels);
    let y_test = Targets::Classes(test_labels);
    for sim_fn in SimilarityFn::ALL {
        for precompute in [true, false] {
            for batch_size in [1, 4, 64] {
                let params = GradSimParams::new(ce_probs())
                    .sim_fn(sim_fn)
                    .precompute_grads(precompute)
                    .batch_size(batch_size);
                run_case(&model, params, &x_ref, &y_ref, &x_test, &y_test);
            }
        }
    }
}

#[test]
fn one_hot_targets_and_parameter_subsets_equal_naive_scores() {
    let model = softmax_model(22);
    let (x_ref, ref_labels) = random_data(17, 3);
    let (x_test, test_labels) = random_data(3, 4);
    let y_ref = Targets::Probabilities(xai_grad_sim::one_hot(&ref_labels, N_CLASSES).unwrap());
    let y_test = Targets::Probabilities(xai_grad_sim::one_hot(&test_labels, N_CLASSES).unwrap());
    let subsets = [
        ParamSelection::Groups(vec![PARAM_GROUPS[2].into(), PARAM_GROUPS[3].into()]),
        ParamSelection::Groups(vec![PARAM_GROUPS[1].into()]),
        ParamSelection::Groups(vec![PARAM_GROUPS[0].into(), PARAM_GROUPS[3].into()]),
    ];
    for selection in subsets {
        for sim_fn in SimilarityFn::ALL {
            let params = GradSimParams::new(ce_probs())
                .sim_fn(sim_fn)
                .precompute_grads(true)
                .batch_size(5)
                .param_selection(selection.clone());
            run_case(&model, params, &x_ref, &y_ref, &x_test, &y_test);
        }
    }
}

#[test]
fn regression_scores_equal_naive_scores() {
    let model = regression_model(23);
    let (x_ref, _) = random_data(19, 5);
    let (x_test, _) = random_data(4, 6);
    let y_ref = random_values(19, 7);
    let y_test = random_values(4, 8);
    for sim_fn in SimilarityFn::ALL {
        for precompute in [true, false] {
            let params = GradSimParams::new(Loss::MeanSquaredError)
                .task(Task::Regression)
                .sim_fn(sim_fn)
                .precompute_grads(precompute)
                .batch_size(6);
            run_case(&model, params, &x_ref, &y_ref, &x_test, &y_test);
        }
    }
}

#[test]
fn streaming_top_k_equals_the_full_ranking() {
    let model = softmax_model(24);
    let (x_ref, ref_labels) = random_data(41, 9);
    let (x_test, _) = random_data(6, 10);
    let y_ref = Targets::Classes(ref_labels);
    for sim_fn in SimilarityFn::ALL {
        let base = GradSimParams::new(ce_probs())
            .sim_fn(sim_fn)
            .n_similar(7)
            .batch_size(8);
        let full = GradientSimilarity::new(&model, base.clone().check().unwrap())
            .unwrap()
            .fit(x_ref.clone(), y_ref.clone())
            .unwrap()
            .explain(x_test.view(), None)
            .unwrap();
        let streaming = GradientSimilarity::new(&model, base.keep_scores(false).check().unwrap())
            .unwrap()
            .fit(x_ref.clone(), y_ref.clone())
            .unwrap()
            .explain(x_test.view(), None)
            .unwrap();
        let (f, st) = (&full.data, &streaming.data);
        assert!(st.scores.is_none() && st.ordered_indices.is_none());
        assert!(st.scores_by_reference().is_none());
        assert_eq!(f.most_similar_indices, st.most_similar_indices);
        assert_eq!(f.least_similar_indices, st.least_similar_indices);
        assert_eq!(f.most_similar_scores, st.most_similar_scores);
        assert_eq!(f.least_similar_scores, st.least_similar_scores);
        assert_eq!(f.most_similar, st.most_similar);
        // And the full ranking's head and tail are what it reports.
        let order = f.ordered_indices.as_ref().unwrap();
        assert_eq!(order.slice(s![.., ..7]), f.most_similar_indices);
        let tail: Vec<usize> = order.row(0).iter().rev().take(7).copied().collect();
        assert_eq!(tail, f.least_similar_indices.row(0).to_vec());
    }
}

#[test]
fn stored_gradients_stay_factored() {
    let model = softmax_model(25);
    let (x_ref, labels) = random_data(30, 11);
    let params = GradSimParams::new(ce_probs())
        .precompute_grads(true)
        .batch_size(7)
        .check()
        .unwrap();
    let fitted = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x_ref, Targets::Classes(labels))
        .unwrap();
    assert!(fitted.has_stored_gradients());
    // Outer blocks: (6 + 5) + (5 + 4) floats, full biases 5 + 4, and one norm per instance.
    let per_instance = (6 + 5) + 5 + (5 + 4) + 4 + 1;
    assert_eq!(fitted.stored_gradient_floats(), 30 * per_instance);
    assert!(fitted.stored_gradient_floats() < 30 * model.n_params());
}
