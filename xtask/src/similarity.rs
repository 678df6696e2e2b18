//! `cargo xtask demo similarity`: alibi's MNIST gradient-similarity example with the shipped
//! alibi CNN — 1,000 random training images as references, 5 random test images, `grad_cos`,
//! precomputed gradients — and both of its figures.

use anyhow::{Context, Result};
use ndarray::{Array2, Axis};
use xai_core::{argmax_rows, Loss, OutputKind, Predictor};
use xai_datasets::Mnist;
use xai_grad_sim::{similarity_demo, GradSimParams, SimilarityFn};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_viz::{bar_chart_grid, image_grid, BarChart, BarChartOptions, ImageGridOptions};

const N_REFERENCES: usize = 1000;
const N_TEST: usize = 5;
const K: usize = 5;

pub fn run() -> Result<()> {
    let dir = crate::demo_dir("similarity")?;
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let kind = ModelKind::AlibiCnn;
    let model = load_pretrained(kind)?;
    let refs = mnist.train.random_subset(N_REFERENCES, 0)?;
    let tests = mnist.test.random_subset(N_TEST, 1)?;
    let x_ref = refs.images_f32(kind.scaling());
    let x_test = tests.images_f32(kind.scaling());
    let ref_labels = refs.labels_usize();
    let test_labels = tests.labels_usize();
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .n_similar(K)
        .check()?;
    let report = similarity_demo(
        &model,
        params,
        x_ref.clone().into_dyn(),
        &ref_labels,
        x_test.view().into_dyn(),
        &test_labels,
        Some(&dir),
    )?;
    println!("{report}");
    let data = &report.explanation.data;
    let ref_preds = argmax_rows(model.predict(x_ref.view().into_dyn())?.view());

    // Figure 1: each test image followed by its 5 most similar references.
    let mut images: Vec<Array2<f32>> = Vec::new();
    let mut titles: Vec<String> = Vec::new();
    for i in 0..N_TEST {
        images.push(
            x_test
                .index_axis(Axis(0), i)
                .index_axis(Axis(0), 0)
                .to_owned(),
        );
        titles.push(format!(
            "test: label {}, pred {}",
            test_labels[i], report.test_predictions[i]
        ));
        for j in 0..K {
            let r = data.most_similar_indices[[i, j]];
            images.push(
                x_ref
                    .index_axis(Axis(0), r)
                    .index_axis(Axis(0), 0)
                    .to_owned(),
            );
            titles.push(format!(
                "#{} label {}, pred {}",
                j + 1,
                ref_labels[r],
                ref_preds[r]
            ));
        }
    }
    let grid_path = dir.join("most_similar.png");
    image_grid(
        &grid_path,
        &images,
        &titles,
        &ImageGridOptions::default()
            .grid(N_TEST, K + 1)
            .value_range(0.0, 1.0)
            .title("Most similar training images (grad_cos), most similar first"),
    )?;

    // Figure 2: mean score per true class and per predicted class of the references.
    let scores = data
        .scores_by_reference()
        .context("the demo keeps full score rows")?;
    let mut charts = Vec::new();
    for i in 0..N_TEST {
        for (what, classes) in [("true", &ref_labels), ("predicted", &ref_preds)] {
            let mut sum = [0.0f32; 10];
            let mut count = [0usize; 10];
            for (r, &c) in classes.iter().enumerate() {
                sum[c] += scores[[i, r]];
                count[c] += 1;
            }
            let means: Vec<f32> = (0..10)
                .map(|c| {
                    if count[c] > 0 {
                        sum[c] / count[c] as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            charts.push(
                BarChart::new(
                    format!(
                        "test {} (label {}, pred {}): by {what} class",
                        i + 1,
                        test_labels[i],
                        report.test_predictions[i]
                    ),
                    (0..10).map(|c| c.to_string()),
                    means,
                )
                .axes(format!("{what} class of reference"), "mean grad_cos")
                .highlight(if what == "true" {
                    test_labels[i]
                } else {
                    report.test_predictions[i]
                }),
            );
        }
    }
    let bars_path = dir.join("score_by_class.png");
    bar_chart_grid(
        &bars_path,
        &charts,
        &BarChartOptions::default()
            .cols(2)
            .title("Mean similarity of the references, grouped by class"),
    )?;
    println!("wrote {} and {}", grid_path.display(), bars_path.display());
    Ok(())
}
