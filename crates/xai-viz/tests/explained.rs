//! The figures of explanations, on explanations the methods compute for small models: sizes,
//! colours where they carry meaning, and typed errors for input that does not fit.

use ndarray::{s, Array2, Array3, ArrayViewD, Axis, Ix4};
use xai_core::{FnPredictor, Loss, OutputKind, Targets};
use xai_viz::*;

/// Class 1 is the brightness of the top half of a 1x10x10 image, class 0 the rest.
fn top_half_model() -> impl xai_core::Predictor {
    FnPredictor::new(vec![1, 10, 10], 2, |x: ArrayViewD<'_, f32>| {
        let x = x.into_dimensionality::<Ix4>().unwrap();
        let mut out = Array2::zeros((x.shape()[0], 2));
        for (i, img) in x.axis_iter(Axis(0)).enumerate() {
            let top: f32 = img.iter().take(50).sum::<f32>() / 50.0;
            out[[i, 1]] = top;
            out[[i, 0]] = 1.0 - top;
        }
        Ok(out)
    })
}

#[test]
fn shap_figure_orders_classes_and_uses_the_diverging_scale() {
    let model = top_half_model();
    let image = ndarray::Array3::from_shape_fn((1, 10, 10), |(_, y, x)| {
        if y < 5 {
            0.9
        } else {
            ((x + y) % 3) as f32 / 6.0
        }
    });
    let explanation = xai_shap::hyperparams::ImageKernelShapParams::new()
        .labels(vec![0, 1])
        .nsamples(200)
        .n_segments(8)
        .check()
        .unwrap()
        .explain(&model, image.view())
        .unwrap();
    let opts = ShapFigureOptions::default().class_names(["dark", "bright top"]);
    let fig = render_shap_figure(image.view().into_dyn(), &explanation, &opts).unwrap();
    assert!(fig.width > 300 && fig.height > 100);
    // Attributions of both signs: red and blue pixels are drawn.
    let mut red = false;
    let mut blue = false;
    for y in 0..fig.height {
        for x in 0..fig.width {
            let [r, g, b] = fig.pixel(x, y).unwrap();
            red |= r > 200 && g < 120 && b < 120;
            blue |= b > 200 && r < 120 && g < 120;
        }
    }
    assert!(red && blue, "diverging colours missing");
    let dir = tempfile::tempdir().unwrap();
    shap_figure(
        dir.path().join("a/shap.png"),
        image.view().into_dyn(),
        &explanation,
        &opts,
    )
    .unwrap();
    assert!(dir.path().join("a/shap.png").is_file());
    // An image of another size than the maps is refused.
    let small = Array2::<f32>::zeros((5, 5));
    assert!(matches!(
        render_shap_figure(small.view().into_dyn(), &explanation, &opts),
        Err(VizError::SizeMismatch { .. })
    ));
    let not_an_image = ndarray::Array1::<f32>::zeros(4);
    assert!(render_shap_figure(not_an_image.view().into_dyn(), &explanation, &opts).is_err());
}

#[test]
fn similarity_figures_show_the_neighbours_and_class_means() {
    use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
    use xai_testkit::grad_sim_toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};
    let (x, labels) = gaussian_blobs(6, 3, 4, 3.0, 0.3, 7);
    let images = x.clone().into_shape_with_order((18, 2, 2)).unwrap();
    let model = TwoLayerMlp::new_random(vec![4], 8, 3, OutputActivation::Softmax, 1).unwrap();
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .sim_fn(SimilarityFn::GradCos)
        .n_similar(3)
        .check()
        .unwrap();
    let fitted = GradientSimilarity::new(&model, params)
        .unwrap()
        .fit(x.clone().into_dyn(), Targets::Classes(labels.clone()))
        .unwrap();
    let test = x.slice(s![0..2, ..]).to_owned().into_dyn();
    let explanation = fitted
        .explain(test.view(), Some(&Targets::Classes(labels[..2].to_vec())))
        .unwrap();
    let test_images = images.slice(s![0..2, .., ..]);
    let opts = SimilarityGridOptions {
        k: 3,
        reference_captions: Some(labels.iter().map(|l| format!("label {l}")).collect()),
        ..Default::default()
    };
    let grid = render_similarity_grid(test_images, images.view(), &explanation, &opts).unwrap();
    assert!(grid.width > 200 && grid.height > 100);
    // k beyond the explanation's n_similar, or the wrong number of test images, are refused.
    let too_many = SimilarityGridOptions {
        k: 4,
        ..Default::default()
    };
    assert!(matches!(
        render_similarity_grid(test_images, images.view(), &explanation, &too_many),
        Err(VizError::InvalidOption(_))
    ));
    assert!(matches!(
        render_similarity_grid(images.view(), images.view(), &explanation, &opts),
        Err(VizError::SizeMismatch { .. })
    ));
    // Indices past the reference images given are refused, not a panic.
    assert!(render_similarity_grid(test_images, test_images, &explanation, &opts).is_err());

    let grouping = ClassGrouping {
        name: "true class".into(),
        reference_classes: labels.clone(),
        highlight: Some(labels[..2].to_vec()),
    };
    let bars =
        render_similarity_class_bars(&explanation, std::slice::from_ref(&grouping), Some("t"))
            .unwrap();
    assert!(bars.width > 100);
    let short = ClassGrouping {
        reference_classes: vec![0; 5],
        ..grouping
    };
    assert!(matches!(
        render_similarity_class_bars(&explanation, &[short], None),
        Err(VizError::SizeMismatch { .. })
    ));
    assert!(render_similarity_class_bars(&explanation, &[], None).is_err());
}

#[test]
fn cem_figure_draws_instance_extras_and_pertinents() {
    use xai_cem::{Cem, CemParams, Mode};
    use xai_testkit::cem_toy as toy;
    let (model, images, _) = toy::trained_bar_classifier(8, 12, 7).unwrap();
    let x = images.index_axis(Axis(0), 0).into_dyn();
    let mut explanations = Vec::new();
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let params = CemParams::alibi_mnist_example(mode)
            .c_steps(2)
            .max_iterations(100)
            .check()
            .unwrap();
        explanations.push(
            Cem::white_box(params, &model)
                .unwrap()
                .explain(x.view())
                .unwrap(),
        );
    }
    let extra = Array3::<f32>::zeros((1, 8, 8));
    let refs: Vec<_> = explanations.iter().collect();
    let fig = render_cem_figure(
        &refs,
        &[("blank".to_string(), extra.view().into_dyn())],
        (-0.5, 0.5),
        Some("CEM"),
    )
    .unwrap();
    assert!(fig.width > 4 * 50);
    assert!(matches!(
        render_cem_figure(&[], &[], (-0.5, 0.5), None),
        Err(VizError::Empty(_))
    ));
    // Explanations of two different instances cannot share a panel.
    let other = images.index_axis(Axis(0), 1).into_dyn();
    let params = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .c_steps(1)
        .max_iterations(10)
        .check()
        .unwrap();
    let e2 = Cem::white_box(params, &model)
        .unwrap()
        .explain(other)
        .unwrap();
    assert!(render_cem_figure(&[&explanations[0], &e2], &[], (-0.5, 0.5), None).is_err());
}

#[test]
fn l2x_figure_uses_the_sequential_scale() {
    use xai_testkit::l2x_toy as toy;
    let (images, _) = toy::square_images(64, 16, 0).unwrap();
    let black_box = toy::QuadrantClassifier::new(16, 2.0);
    let l2x = xai_l2x::L2xParams::new()
        .k(2)
        .num_epochs(1)
        .batch_size(Some(32))
        .progress(false)
        .check()
        .unwrap()
        .fit(images.view(), &black_box)
        .unwrap();
    let x = images.slice(s![0..2, .., .., ..]);
    let explanation = l2x.explain(&black_box, x).unwrap();
    let gray = x.index_axis(Axis(1), 0);
    let fig = render_l2x_figure(gray, &explanation, &L2xFigureOptions::default()).unwrap();
    // The colour bar runs from viridis' dark violet to its yellow; no red or blue of the
    // diverging map appears.
    let mut violet = false;
    let mut yellow = false;
    for y in 0..fig.height {
        for x in 0..fig.width {
            let p = fig.pixel(x, y).unwrap();
            violet |= p == viridis(0.0);
            yellow |= p == viridis(1.0);
            assert!(
                !(p[0] > 200 && p[1] < 60 && p[2] < 60),
                "diverging red at ({x}, {y})"
            );
        }
    }
    assert!(violet && yellow);
    let wrong = Array3::<f32>::zeros((3, 16, 16));
    assert!(matches!(
        render_l2x_figure(wrong.view(), &explanation, &L2xFigureOptions::default()),
        Err(VizError::SizeMismatch { .. })
    ));
}
