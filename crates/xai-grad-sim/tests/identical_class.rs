//! The identical class test (Hanawa et al. 2021) on a trained toy classifier, checked against
//! the top-1 references of full explanations, and the demo helper.

use ndarray::{s, Array2, ArrayD};
use xai_core::{Loss, OutputKind, Predictor, Targets};
use xai_grad_sim::{
    identical_class_test, GradSimError, GradSimParams, GradientSimilarity, SimilarityFn,
};
use xai_testkit::grad_sim_toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};

const N_CLASSES: usize = 4;

struct Setup {
    model: TwoLayerMlp,
    x_ref: ArrayD<f32>,
    ref_labels: Vec<usize>,
    x_test: ArrayD<f32>,
    test_labels: Vec<usize>,
}

fn trained_setup() -> Setup {
    let (x, labels) = gaussian_blobs(60, N_CLASSES, 8, 1.0, 0.6, 42);
    let loss = Loss::CrossEntropy(OutputKind::Probabilities);
    let mut model =
        TwoLayerMlp::new_random(vec![8], 16, N_CLASSES, OutputActivation::Softmax, 7).unwrap();
    let history = model
        .train_sgd(
            x.view().into_dyn(),
            &Targets::Classes(labels.clone()),
            &loss,
            30,
            0.2,
            16,
            1,
        )
        .unwrap();
    assert!(
        history.last().unwrap() < &(0.6 * history[0]),
        "training did not converge: {history:?}"
    );
    Setup {
        model,
        x_ref: x.slice(s![..200, ..]).to_owned().into_dyn(),
        ref_labels: labels[..200].to_vec(),
        x_test: x.slice(s![200.., ..]).to_owned().into_dyn(),
        test_labels: labels[200..].to_vec(),
    }
}

fn params(precompute: bool) -> GradSimParams {
    GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .precompute_grads(precompute)
        .batch_size(32)
}

#[test]
fn fractions_agree_with_explanations_and_grad_cos_passes() {
    let s = trained_setup();
    for precompute in [true, false] {
        let report = identical_class_test(
            &s.model,
            params(precompute).check().unwrap(),
            s.x_ref.clone(),
            &s.ref_labels,
            s.x_test.view(),
            Some(&s.test_labels),
        )
        .unwrap();
        assert_eq!(report.n_test, 40);
        assert_eq!(report.n_references, 200);
        assert_eq!(report.test_classes, s.test_labels);
        for sim_fn in SimilarityFn::ALL {
            let e = GradientSimilarity::new(
                &s.model,
                params(precompute).sim_fn(sim_fn).check().unwrap(),
            )
            .unwrap()
            .fit(s.x_ref.clone(), Targets::Classes(s.ref_labels.clone()))
            .unwrap()
            .explain(
                s.x_test.view(),
                Some(&Targets::Classes(s.test_labels.clone())),
            )
            .unwrap();
            let top: Vec<usize> = e.data.most_similar_indices.column(0).to_vec();
            let n_identical = top
                .iter()
                .zip(&s.test_labels)
                .filter(|(&r, &c)| s.ref_labels[r] == c)
                .count();
            let r = report.result(sim_fn).unwrap();
            assert_eq!(r.top_reference, top, "{sim_fn}");
            assert_eq!(r.n_identical, n_identical, "{sim_fn}");
            assert!((r.fraction - n_identical as f64 / 40.0).abs() < 1e-12);
        }
        // Hanawa et al.: the cosine passes the test on a well-trained classifier.
        let cos = report.result(SimilarityFn::GradCos).unwrap().fraction;
        assert!(cos >= 0.95, "grad_cos identical class fraction {cos}");
    }
}

#[test]
fn without_labels_the_predictions_are_tested() {
    let s = trained_setup();
    let fitted = GradientSimilarity::new(&s.model, params(true).check().unwrap())
        .unwrap()
        .fit(
            s.x_ref.clone(),
            Targets::Probabilities(xai_grad_sim::one_hot(&s.ref_labels, N_CLASSES).unwrap()),
        )
        .unwrap();
    let report = fitted.identical_class_test(s.x_test.view(), None).unwrap();
    let predicted = xai_core::argmax_rows(s.model.predict(s.x_test.view()).unwrap().view());
    assert_eq!(report.test_classes, predicted);
    // Errors: label count, regression references.
    let err = fitted
        .identical_class_test(s.x_test.view(), Some(&[0, 1]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            GradSimError::TargetCount {
                got: 2,
                n_instances: 40,
                ..
            }
        ),
        "{err}"
    );
    let regression = TwoLayerMlp::new_random(vec![8], 4, 1, OutputActivation::Identity, 1).unwrap();
    let fitted = GradientSimilarity::new(
        &regression,
        GradSimParams::new(Loss::MeanSquaredError)
            .task(xai_grad_sim::Task::Regression)
            .check()
            .unwrap(),
    )
    .unwrap()
    .fit(s.x_ref.clone(), Targets::Values(Array2::zeros((200, 1))))
    .unwrap();
    let err = fitted
        .identical_class_test(s.x_test.view(), None)
        .unwrap_err();
    assert!(
        matches!(err, GradSimError::TargetsDoNotFitTask { .. }),
        "{err}"
    );
}

#[test]
fn demo_writes_its_outputs() {
    let s = trained_setup();
    let dir = std::env::temp_dir().join(format!("xai-grad-sim-demo-{}", std::process::id()));
    let report = xai_testkit::grad_sim_report::similarity_demo(
        &s.model,
        params(true).sim_fn(SimilarityFn::GradCos).check().unwrap(),
        s.x_ref.clone(),
        &s.ref_labels,
        s.x_test.slice(s![..5, ..]).into_dyn(),
        &s.test_labels[..5],
        Some(&dir),
    )
    .unwrap();
    assert_eq!(report.most_similar_labels.len(), 5);
    assert_eq!(report.most_similar_labels[0].len(), 5);
    for (i, labels) in report.most_similar_labels.iter().enumerate() {
        let idx = report.explanation.data.most_similar_indices.row(i);
        assert_eq!(
            labels,
            &idx.iter().map(|&r| s.ref_labels[r]).collect::<Vec<_>>()
        );
    }
    assert!(report.stored_gradient_floats > 0);
    let text = report.to_string();
    assert!(
        text.contains("grad_cos") && text.contains("identical class test"),
        "{text}"
    );
    for f in &report.files {
        assert!(f.exists(), "{} missing", f.display());
    }
    assert!(dir.join("explanation.json").exists() && dir.join("identical_class.json").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn scale_measurement_reports_compact_storage() {
    let s = trained_setup();
    for (precompute, keep) in [(true, true), (false, false)] {
        let m = xai_testkit::grad_sim_report::measure_scale(
            &s.model,
            params(precompute).keep_scores(keep).check().unwrap(),
            s.x_ref.clone(),
            Targets::Classes(s.ref_labels.clone()),
            s.x_test.view(),
            None,
        )
        .unwrap();
        assert_eq!((m.n_references, m.n_test), (200, 40));
        assert_eq!(m.expanded_gradient_bytes, 200 * s.model.n_params() * 4);
        if precompute {
            // Per instance: (8 + 16) + 16 + (16 + 4) + 4 floats and one norm.
            assert_eq!(m.stored_gradient_bytes, 200 * 65 * 4);
        } else {
            assert_eq!(m.stored_gradient_bytes, 0);
        }
        if cfg!(target_os = "linux") {
            assert!(m.peak_rss_bytes.unwrap() > 0);
        }
    }
}
