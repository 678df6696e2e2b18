//! alibi parity of the API: inputs with or without a batch axis, optional and broadcast targets,
//! the explanation's fields and meta, and typed errors (never panics) for bad input.

mod common;

use common::*;
use ndarray::{array, Array2, ArrayD, ArrayView2, ArrayViewD, Axis};
use xai_core::{
    CoreError, DifferentiableModel, Loss, ParamGroup, ParamSelection, PerSampleGrads, Predictor,
    Targets,
};
use xai_grad_sim::{
    GradSimError, GradSimParams, GradientSimilarity, SimilarityData, SimilarityFn, Task,
};
use xai_testkit::grad_sim_toy::TwoLayerMlp;

fn fitted_explanation(
    model: &TwoLayerMlp,
    n_ref: usize,
    params: GradSimParams,
    x: ArrayViewD<'_, f32>,
    y: Option<&Targets>,
) -> Result<xai_core::Explanation<SimilarityData>, GradSimError> {
    let (x_ref, labels) = random_data(n_ref, 100);
    GradientSimilarity::new(model, params.check()?)?
        .fit(x_ref, Targets::Classes(labels))?
        .explain(x, y)
}

#[test]
fn explanation_has_alibi_fields_and_meta() {
    let model = softmax_model(1);
    let (x_ref, labels) = random_data(12, 100);
    let (x_test, _) = random_data(3, 7);
    let params = GradSimParams::new(ce_probs())
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .check()
        .unwrap();
    let fitted = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x_ref.clone(), Targets::Classes(labels))
        .unwrap();
    assert_eq!(fitted.n_references(), 12);
    let e = fitted.explain(x_test.view(), None).unwrap();
    let d = &e.data;
    assert_eq!(d.scores.as_ref().unwrap().dim(), (3, 12));
    assert_eq!(d.ordered_indices.as_ref().unwrap().dim(), (3, 12));
    assert_eq!(d.most_similar.shape(), &[3, 5, 2, 3]);
    assert_eq!(d.least_similar.shape(), &[3, 5, 2, 3]);
    for i in 0..3 {
        for j in 0..5 {
            let r = d.most_similar_indices[[i, j]];
            assert_eq!(
                d.most_similar.index_axis(Axis(0), i).index_axis(Axis(0), j),
                x_ref.index_axis(Axis(0), r)
            );
            assert_eq!(d.ordered_indices.as_ref().unwrap()[[i, j]], r);
            let l = d.least_similar_indices[[i, j]];
            assert_eq!(
                d.least_similar
                    .index_axis(Axis(0), i)
                    .index_axis(Axis(0), j),
                x_ref.index_axis(Axis(0), l)
            );
            assert_eq!(d.ordered_indices.as_ref().unwrap()[[i, 11 - j]], l);
        }
    }
    // Without targets, classification explains the model's predicted class.
    let predicted = xai_core::argmax_rows(model.predict(x_test.view()).unwrap().view());
    assert_eq!(d.test_classes.as_ref().unwrap(), &predicted);
    let with_predicted = fitted
        .explain(x_test.view(), Some(&Targets::Classes(predicted)))
        .unwrap();
    assert_eq!(with_predicted.data, e.data);
    // meta holds every parameter.
    assert_eq!(e.meta.name, "GradientSimilarity");
    assert!(e.meta.version.starts_with("xai-grad-sim@"));
    let p = &e.meta.params;
    for key in [
        "loss",
        "sim_fn",
        "task",
        "precompute_grads",
        "batch_size",
        "n_similar",
        "keep_scores",
        "param_selection",
        "eps",
    ] {
        assert!(p.get(key).is_some(), "meta.params lacks {key}: {p}");
    }
    assert_eq!(p["sim_fn"], "grad_cos");
    assert_eq!(p["task"], "classification");
    assert_eq!(p["precompute_grads"], true);
}

#[test]
fn single_instance_and_broadcast_targets() {
    let model = softmax_model(2);
    let (x_test, _) = random_data(4, 8);
    let params = || GradSimParams::new(ce_probs()).sim_fn(SimilarityFn::GradDot);
    let batch = fitted_explanation(
        &model,
        9,
        params(),
        x_test.view(),
        Some(&Targets::Classes(vec![1; 4])),
    )
    .unwrap();
    // One instance without a batch axis gives a batch of one with the same scores.
    let single = fitted_explanation(
        &model,
        9,
        params(),
        x_test.index_axis(Axis(0), 2),
        Some(&Targets::Classes(vec![1])),
    )
    .unwrap();
    assert_eq!(single.data.n_test(), 1);
    assert_eq!(
        single.data.scores.as_ref().unwrap().row(0),
        batch.data.scores.as_ref().unwrap().row(2)
    );
    // A single target applies to every instance.
    let broadcast = fitted_explanation(
        &model,
        9,
        params(),
        x_test.view(),
        Some(&Targets::Classes(vec![1])),
    )
    .unwrap();
    assert_eq!(broadcast.data, batch.data);
}

#[test]
fn n_similar_is_capped_at_the_reference_set() {
    let model = softmax_model(3);
    let (x_test, _) = random_data(2, 9);
    let e = fitted_explanation(
        &model,
        3,
        GradSimParams::new(ce_probs()).n_similar(10),
        x_test.view(),
        None,
    )
    .unwrap();
    assert_eq!(e.data.most_similar_indices.dim(), (2, 3));
    assert_eq!(e.data.most_similar.shape(), &[2, 3, 2, 3]);
    let e = fitted_explanation(
        &model,
        8,
        GradSimParams::new(ce_probs()).n_similar(2),
        x_test.view(),
        None,
    )
    .unwrap();
    assert_eq!(e.data.least_similar_indices.dim(), (2, 2));
}

#[test]
fn json_and_npy_round_trip() {
    let model = softmax_model(4);
    let (x_test, _) = random_data(2, 10);
    let e = fitted_explanation(
        &model,
        6,
        GradSimParams::new(ce_probs()),
        x_test.view(),
        None,
    )
    .unwrap();
    let json = e.to_json().unwrap();
    let back: xai_core::Explanation<SimilarityData> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    let dir = std::env::temp_dir().join(format!("xai-grad-sim-npy-{}", std::process::id()));
    let files = e.save_npy(&dir).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "scores",
        "ordered_indices",
        "most_similar",
        "least_similar",
        "most_similar_indices",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn works_through_a_trait_object() {
    let model = softmax_model(5);
    let dyn_model: &dyn DifferentiableModel = &model;
    let (x_ref, labels) = random_data(5, 11);
    let params = GradSimParams::new(ce_probs()).check().unwrap();
    let e = GradientSimilarity::new(dyn_model, params)
        .unwrap()
        .fit(x_ref.clone(), Targets::Classes(labels))
        .unwrap()
        .explain(x_ref.view(), None)
        .unwrap();
    assert_eq!(e.data.n_test(), 5);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let model = softmax_model(6);
    let params = GradSimParams::new(ce_probs()).check().unwrap();
    let explainer = GradientSimilarity::new(&model, params.clone()).unwrap();
    let (x_ref, labels) = random_data(6, 12);
    let y_ref = Targets::Classes(labels.clone());

    // Empty reference set.
    let empty = ArrayD::<f32>::zeros(vec![0, 2, 3]);
    let err = explainer.fit(empty, Targets::Classes(vec![])).unwrap_err();
    assert!(matches!(err, GradSimError::EmptyReferenceSet), "{err}");
    // Wrong reference shape.
    let err = explainer
        .fit(
            ArrayD::<f32>::zeros(vec![4, 6]),
            Targets::Classes(vec![0; 4]),
        )
        .unwrap_err();
    assert!(
        matches!(err, GradSimError::Core(CoreError::ShapeMismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("[n, 2, 3]"), "{err}");
    // NaN and infinity in the references.
    let mut bad = x_ref.clone();
    bad[[3, 1, 2]] = f32::NAN;
    let err = explainer.fit(bad, y_ref.clone()).unwrap_err();
    assert!(
        matches!(err, GradSimError::Core(CoreError::NonFinite { .. })),
        "{err}"
    );
    // Label count and range.
    let err = explainer
        .fit(x_ref.clone(), Targets::Classes(vec![0; 5]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            GradSimError::TargetCount {
                got: 5,
                n_instances: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = explainer
        .fit(x_ref.clone(), Targets::Classes(vec![0, 1, 2, 3, 4, 0]))
        .unwrap_err();
    assert!(
        matches!(err, GradSimError::InvalidTarget { index: 4, .. }),
        "{err}"
    );
    let err = explainer
        .fit(x_ref.clone(), Targets::Probabilities(Array2::zeros((6, 3))))
        .unwrap_err();
    assert!(err.to_string().contains("[n, 4]"), "{err}");

    for precompute in [true, false] {
        let params = GradSimParams::new(ce_probs())
            .precompute_grads(precompute)
            .check()
            .unwrap();
        let fitted = GradientSimilarity::new(&model, params)
            .unwrap()
            .fit(x_ref.clone(), y_ref.clone())
            .unwrap();
        // Empty test batch.
        let err = fitted
            .explain(ArrayD::<f32>::zeros(vec![0, 2, 3]).view(), None)
            .unwrap_err();
        assert!(matches!(err, GradSimError::EmptyTestBatch), "{err}");
        // Wrong test shape.
        let err = fitted
            .explain(ArrayD::<f32>::zeros(vec![2, 3, 2]).view(), None)
            .unwrap_err();
        assert!(
            matches!(err, GradSimError::Core(CoreError::ShapeMismatch { .. })),
            "{err}"
        );
        // Infinity in the test inputs.
        let mut x = x_ref.clone();
        x[[0, 0, 0]] = f32::INFINITY;
        let err = fitted.explain(x.view(), None).unwrap_err();
        assert!(
            matches!(
                err,
                GradSimError::Core(CoreError::NonFinite { index: 0, .. })
            ),
            "{err}"
        );
        // Test targets: wrong count, out of range, wrong kind for the task.
        let err = fitted
            .explain(x_ref.view(), Some(&Targets::Classes(vec![0, 1])))
            .unwrap_err();
        assert!(
            matches!(err, GradSimError::TargetCount { got: 2, .. }),
            "{err}"
        );
        let err = fitted
            .explain(x_ref.view(), Some(&Targets::Classes(vec![7])))
            .unwrap_err();
        assert!(matches!(err, GradSimError::InvalidTarget { .. }), "{err}");
        let err = fitted
            .explain(x_ref.view(), Some(&random_values(6, 1)))
            .unwrap_err();
        assert!(
            matches!(err, GradSimError::TargetsDoNotFitTask { .. }),
            "{err}"
        );
    }

    // A parameter selection the model does not have.
    let sel = GradSimParams::new(ce_probs())
        .param_selection(ParamSelection::Groups(vec!["dense9.weight".into()]))
        .check()
        .unwrap();
    let err = GradientSimilarity::new(&model, sel).unwrap_err();
    assert!(err.to_string().contains("dense9.weight"), "{err}");
}

#[test]
fn regression_requires_targets() {
    let model = regression_model(7);
    let (x, _) = random_data(4, 13);
    let params = GradSimParams::new(Loss::MeanSquaredError)
        .task(Task::Regression)
        .check()
        .unwrap();
    let fitted = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x.clone(), random_values(4, 14))
        .unwrap();
    let err = fitted.explain(x.view(), None).unwrap_err();
    assert!(
        matches!(err, GradSimError::MissingRegressionTargets),
        "{err}"
    );
    let e = fitted
        .explain(x.view(), Some(&random_values(4, 15)))
        .unwrap();
    assert!(e.data.test_classes.is_none());
    // Class labels do not fit a regression task.
    let explainer = GradientSimilarity::new(&model, fitted.params().clone()).unwrap();
    let err = explainer.fit(x, Targets::Classes(vec![0; 4])).unwrap_err();
    assert!(
        matches!(err, GradSimError::TargetsDoNotFitTask { .. }),
        "{err}"
    );
}

#[test]
fn non_finite_model_gradients_are_errors() {
    let mut model = softmax_model(8);
    let (x, labels) = random_data(5, 16);
    let params = GradSimParams::new(ce_probs())
        .precompute_grads(true)
        .check()
        .unwrap();
    model.w2[[0, 0]] = f32::NAN;
    let err = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x, Targets::Classes(labels))
        .unwrap_err();
    assert!(
        matches!(
            err,
            GradSimError::NonFiniteGradient {
                what: "reference",
                index: 0,
                ..
            }
        ),
        "{err}"
    );
}

/// A model that returns gradients for fewer samples than it was given.
struct ShortModel(TwoLayerMlp);

impl Predictor for ShortModel {
    fn input_shape(&self) -> &[usize] {
        self.0.input_shape()
    }
    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        self.0.predict(x)
    }
}

impl DifferentiableModel for ShortModel {
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        w: ArrayView2<'_, f32>,
    ) -> xai_core::Result<ArrayD<f32>> {
        self.0.input_gradient(x, w)
    }
    fn parameter_groups(&self) -> Vec<ParamGroup> {
        self.0.parameter_groups()
    }
    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> xai_core::Result<PerSampleGrads> {
        let g = self.0.per_sample_grads(x, targets, loss, selection)?;
        Ok(g.select(&[0]))
    }
}

#[test]
fn a_model_returning_too_few_gradients_is_an_error() {
    let model = ShortModel(softmax_model(9));
    let (x, labels) = random_data(3, 17);
    let params = GradSimParams::new(ce_probs())
        .precompute_grads(true)
        .check()
        .unwrap();
    let err = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x, Targets::Classes(labels))
        .unwrap_err();
    assert!(
        matches!(
            err,
            GradSimError::GradientCount {
                got: 1,
                expected: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn one_hot_rejects_out_of_range_labels() {
    assert_eq!(
        xai_grad_sim::one_hot(&[1, 0], 2).unwrap(),
        array![[0.0f32, 1.0], [1.0, 0.0]]
    );
    assert!(xai_grad_sim::one_hot(&[2], 2).is_err());
}

/// Progress reports count every chunk of every stage, in order, up to the set's size, and the
/// explanation is the one `explain` gives.
#[test]
fn progress_reports_every_chunk_and_changes_nothing() {
    use xai_grad_sim::{Progress, Stage};
    let model = softmax_model(3);
    let (x_ref, labels) = random_data(10, 100);
    let (x_test, _) = random_data(5, 7);
    for precompute in [true, false] {
        let params = GradSimParams::new(ce_probs())
            .batch_size(4)
            .precompute_grads(precompute)
            .check()
            .unwrap();
        let explainer = GradientSimilarity::new(&model, params).unwrap();
        let mut seen: Vec<Progress> = Vec::new();
        let fitted = explainer
            .fit_with_progress(
                x_ref.clone(),
                Targets::Classes(labels.clone()),
                Some(&mut |p: &Progress| seen.push(*p)),
            )
            .unwrap();
        let e = fitted
            .explain_with_progress(x_test.view(), None, Some(&mut |p: &Progress| seen.push(*p)))
            .unwrap();
        let counts = |stage| -> Vec<(usize, usize)> {
            seen.iter()
                .filter(|p| p.stage == stage)
                .map(|p| (p.done, p.total))
                .collect()
        };
        let fit_reports = if precompute {
            vec![(4, 10), (8, 10), (10, 10)]
        } else {
            vec![]
        };
        assert_eq!(counts(Stage::ReferenceGradients), fit_reports);
        assert_eq!(counts(Stage::TestGradients), vec![(4, 5), (5, 5)]);
        assert_eq!(counts(Stage::Scores), vec![(4, 10), (8, 10), (10, 10)]);
        let plain = fitted.explain(x_test.view(), None).unwrap();
        assert_eq!(e.data.scores, plain.data.scores);
        assert_eq!(e.data.most_similar_indices, plain.data.most_similar_indices);
    }
}
