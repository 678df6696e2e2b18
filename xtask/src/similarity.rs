//! `cargo xtask demo similarity`: alibi's MNIST gradient-similarity example with the shipped
//! alibi CNN — 1,000 random training images as references, 5 random test images, `grad_cos`,
//! precomputed gradients — and both of its figures.

use std::path::Path;

use anyhow::{Context, Result};
use ndarray::Axis;
use xai_core::{argmax_rows, Predictor};
use xai_datasets::Mnist;
use xai_grad_sim::{GradSimParams, SimilarityFn};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_testkit::grad_sim_report::similarity_demo;
use xai_viz::{similarity_class_bars, similarity_grid, ClassGrouping, SimilarityGridOptions};

/// Runs the demo into `dir`; `smoke` uses 24 references, 2 test images and 3 neighbours.
pub fn run(dir: &Path, smoke: bool) -> Result<()> {
    let (n_references, n_test, k) = if smoke { (24, 2, 3) } else { (1000, 5, 5) };
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let kind = ModelKind::AlibiCnn;
    let model = load_pretrained(kind)?;
    let refs = mnist.train.random_subset(n_references, 0)?;
    let tests = mnist.test.random_subset(n_test, 1)?;
    let x_ref = refs.images_f32(kind.scaling());
    let x_test = tests.images_f32(kind.scaling());
    let ref_labels = refs.labels_usize();
    let test_labels = tests.labels_usize();
    let params = GradSimParams::new(kind.loss())
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .n_similar(k)
        .check()?;
    let report = similarity_demo(
        &model,
        params,
        x_ref.clone().into_dyn(),
        &ref_labels,
        x_test.view().into_dyn(),
        &test_labels,
        Some(dir),
    )?;
    println!("{report}");
    let ref_preds = argmax_rows(model.predict(x_ref.view().into_dyn())?.view());

    // Figure 1: each test image followed by its k most similar references.
    let grid_path = dir.join("most_similar.png");
    let opts = SimilarityGridOptions {
        k,
        test_titles: Some(
            (0..n_test)
                .map(|i| {
                    format!(
                        "test: label {}, pred {}",
                        test_labels[i], report.test_predictions[i]
                    )
                })
                .collect(),
        ),
        reference_captions: Some(
            ref_labels
                .iter()
                .zip(&ref_preds)
                .map(|(l, p)| format!("label {l}, pred {p}"))
                .collect(),
        ),
        title: Some("Most similar training images (grad_cos), most similar first".into()),
        value_range: Some((0.0, 1.0)),
    };
    similarity_grid(
        &grid_path,
        x_test.index_axis(Axis(1), 0),
        x_ref.index_axis(Axis(1), 0),
        &report.explanation,
        &opts,
    )?;

    // Figure 2: mean score per true class and per predicted class of the references.
    let bars_path = dir.join("score_by_class.png");
    similarity_class_bars(
        &bars_path,
        &report.explanation,
        &[
            ClassGrouping {
                name: "true class".into(),
                reference_classes: ref_labels.clone(),
                highlight: Some(test_labels.clone()),
            },
            ClassGrouping {
                name: "predicted class".into(),
                reference_classes: ref_preds.clone(),
                highlight: Some(report.test_predictions.clone()),
            },
        ],
        Some("Mean similarity of the references, grouped by class"),
    )?;
    println!("wrote {} and {}", grid_path.display(), bars_path.display());
    Ok(())
}
