//! Writes one figure of each kind, from real MNIST digits, to `target/xai-viz-example/`:
//! an image grid, a heatmap panel figure, a bar chart and a grid of bar charts.
//!
//! `cargo run --release -p xai-viz --example figures`
//!
//! The "attributions" and "similarities" here are simple stand-ins computed from class-mean
//! images, only to give the figures realistic content.

use std::path::PathBuf;

use ndarray::{Array2, Axis};
use xai_datasets::{Mnist, Scaling};
use xai_viz::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/xai-viz-example"
    ));
    let mnist = Mnist::load_default()?;
    let train = mnist.train.random_subset(2000, 0)?;
    let test = mnist.test.head(10);

    // Class-mean images (unit scaling) of the training sample.
    let x = train.images_flat_f32(Scaling::UnitInterval);
    let labels = train.labels_usize();
    let mut means = Array2::<f32>::zeros((10, 784));
    let mut counts = [0f32; 10];
    for (row, &l) in x.outer_iter().zip(&labels) {
        let mut m = means.row_mut(l);
        m += &row;
        counts[l] += 1.0;
    }
    for (mut m, &n) in means.outer_iter_mut().zip(&counts) {
        m /= n.max(1.0);
    }
    let overall = means.mean_axis(Axis(0)).unwrap();
    // "Prediction": nearest class mean.
    let predict = |img: &Array2<f32>| -> usize {
        let flat = img.view().into_shape_with_order(784).unwrap();
        (0..10)
            .min_by(|&a, &b| {
                let da = (&means.row(a) - &flat).mapv(|v| v * v).sum();
                let db = (&means.row(b) - &flat).mapv(|v| v * v).sum();
                da.total_cmp(&db)
            })
            .unwrap()
    };

    // 1. Image grid.
    let images: Vec<Array2<f32>> = (0..10)
        .map(|i| test.image_f32(i, Scaling::UnitInterval))
        .collect();
    let titles: Vec<String> = images
        .iter()
        .zip(test.labels_usize())
        .map(|(img, l)| format!("label {l}, pred {}", predict(img)))
        .collect();
    let p = out.join("image_grid.png");
    image_grid(
        &p,
        &images,
        &titles,
        &ImageGridOptions::default()
            .grid(2, 5)
            .title("MNIST test digits")
            .value_range(0.0, 1.0),
    )?;
    println!("wrote {}", p.display());

    // 2. Heatmap panels: the digit, then one "attribution" map per class:
    //    pixel * (class mean - overall mean).
    let digit = &images[0];
    let maps: Vec<Array2<f32>> = (0..10)
        .map(|c| {
            let diff = (&means.row(c) - &overall)
                .into_shape_with_order((28, 28))
                .unwrap()
                .to_owned();
            digit * &diff
        })
        .collect();
    let mut panels = vec![HeatmapPanel::image("digit", digit.view())];
    for (c, m) in maps.iter().enumerate() {
        panels.push(HeatmapPanel::overlay(
            format!("class {c}"),
            digit.view(),
            m.view(),
        ));
    }
    let p = out.join("heatmap_panels.png");
    heatmap_panels(
        &p,
        &panels,
        &HeatmapOptions::default()
            .title(format!(
                "Attributions for a test digit (label {})",
                test.labels[0]
            ))
            .colorbar_label("SHAP value")
            .image_range(0.0, 1.0),
    )?;
    println!("wrote {}", p.display());

    // 3. Bar chart: mean cosine similarity of test image 0 to the training images of each class.
    let cos = |a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>| {
        a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt()).max(1e-6)
    };
    let similarity = |img: &Array2<f32>| -> Vec<f32> {
        let flat = img.view().into_shape_with_order(784).unwrap();
        let mut sums = [0f32; 10];
        for (row, &l) in x.outer_iter().zip(&labels) {
            sums[l] += cos(row, flat);
        }
        (0..10).map(|c| sums[c] / counts[c].max(1.0)).collect()
    };
    let classes = || (0..10).map(|c| c.to_string());
    let s0 = similarity(&images[0]);
    let chart = BarChart::new(
        "Mean similarity per class (test image 0)",
        classes(),
        s0.clone(),
    )
    .axes("class", "mean cosine similarity")
    .highlight(predict(&images[0]));
    let p = out.join("bar_chart.png");
    bar_chart(&p, &chart, &BarChartOptions::default())?;
    println!("wrote {}", p.display());

    // 4. A grid of bar charts: per test image, by true class and by predicted class.
    let preds: Vec<usize> = x
        .outer_iter()
        .map(|r| predict(&r.to_owned().into_shape_with_order((28, 28)).unwrap()))
        .collect();
    let mut charts = vec![];
    for i in 0..3 {
        let flat = images[i].view().into_shape_with_order(784).unwrap();
        let mut by_true = [0f32; 10];
        let mut by_pred = [0f32; 10];
        let mut n_pred = [0f32; 10];
        for ((row, &l), &p) in x.outer_iter().zip(&labels).zip(&preds) {
            let s = cos(row, flat);
            by_true[l] += s;
            by_pred[p] += s;
            n_pred[p] += 1.0;
        }
        let by_true: Vec<f32> = (0..10).map(|c| by_true[c] / counts[c].max(1.0)).collect();
        let by_pred: Vec<f32> = (0..10).map(|c| by_pred[c] / n_pred[c].max(1.0)).collect();
        let pred = predict(&images[i]);
        charts.push(
            BarChart::new(
                format!("test {i} (label {}): by true class", test.labels[i]),
                classes(),
                by_true,
            )
            .axes("true class", "mean score")
            .highlight(test.labels[i] as usize),
        );
        charts.push(
            BarChart::new(
                format!("test {i} (pred {pred}): by predicted class"),
                classes(),
                by_pred,
            )
            .axes("predicted class", "mean score")
            .highlight(pred),
        );
    }
    let p = out.join("bar_chart_grid.png");
    bar_chart_grid(
        &p,
        &charts,
        &BarChartOptions::default()
            .cols(2)
            .title("Similarity scores"),
    )?;
    println!("wrote {}", p.display());
    Ok(())
}
