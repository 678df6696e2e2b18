//! End to end on the zoo's residual CNN with batch norm (`resnet_bn`, trained on MNIST, shipped
//! weights): exported to ONNX with `xai_onnx::to_onnx_bytes`, imported back by `xai-onnx`'s
//! importer (not tract: the model stays differentiable), checked against the original, and
//! explained by all four methods on tiny budgets: gradient similarity with the identical class
//! test, CEM (pertinent negatives and positives found), KernelSHAP and L2X.

use ndarray::{s, Array2, Array4, Axis};
use xai_core::{argmax_rows, DifferentiableModel, Predictor};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_models::Network;
use xai_onnx::{to_onnx_bytes, Backend, Engine, ExportOptions, OnnxModel, OnnxOptions};

const KIND: ModelKind = ModelKind::ResnetBn;

/// The shipped network and its ONNX export imported back.
fn original_and_imported() -> (Network, OnnxModel) {
    let net =
        load_pretrained(KIND).expect("models/resnet_bn.safetensors (cargo xtask train resnet_bn)");
    let bytes = to_onnx_bytes(&net, &ExportOptions::new()).unwrap();
    let model = OnnxOptions::new()
        .backend(Backend::Import)
        .check()
        .unwrap()
        .load_bytes(&bytes)
        .unwrap();
    assert_eq!(model.engine(), Engine::Imported, "{}", model.describe());
    (net, model)
}

/// `n` MNIST test images from `offset` (in [0, 1]) and their labels.
fn test_images(n: usize, offset: usize) -> (Array4<f32>, Vec<usize>) {
    let mnist = Mnist::load_default().expect("MNIST in data/mnist");
    let split = mnist.test.head(offset + n);
    let x = split.images_f32(KIND.scaling());
    (
        x.slice(s![offset.., .., .., ..]).to_owned(),
        split.labels_usize()[offset..].to_vec(),
    )
}

#[test]
fn imported_export_agrees_with_the_shipped_network() {
    let (net, model) = original_and_imported();
    assert_eq!(model.input_shape(), &[1, 28, 28]);
    assert_eq!(model.n_outputs(), 10);
    let (x, labels) = test_images(64, 0);
    let a = net.predict(x.view().into_dyn()).unwrap();
    let b = model.predict(x.view().into_dyn()).unwrap();
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "outputs differ by {max_diff}");
    let correct = argmax_rows(b.view())
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    assert!(correct >= 60, "{correct}/64 test digits right");
    // Input gradients through the folded batch norms equal the original's.
    let w = Array2::from_shape_fn((8, 10), |(i, j)| ((i * 7 + j * 3) % 5) as f32 - 2.0);
    let xs = x.slice(s![..8, .., .., ..]);
    let ga = net.input_gradient(xs.into_dyn(), w.view()).unwrap();
    let gb = model.input_gradient(xs.into_dyn(), w.view()).unwrap();
    let scale = ga.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let gdiff = ga
        .iter()
        .zip(&gb)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(
        scale > 0.0 && gdiff <= 1e-3 * scale,
        "input gradients differ by {gdiff} (scale {scale})"
    );
}

#[test]
fn gradient_similarity_passes_the_identical_class_test_on_the_imported_model() {
    use xai_grad_sim::{identical_class_test, GradSimParams, SimilarityFn};
    let (_, model) = original_and_imported();
    let mnist = Mnist::load_default().unwrap();
    let refs = mnist.train.random_subset(200, 0).unwrap();
    let (x_test, test_labels) = test_images(20, 100);
    let params = GradSimParams::new(KIND.loss())
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .check()
        .unwrap();
    let report = identical_class_test(
        &model,
        params,
        refs.images_f32(KIND.scaling()).into_dyn(),
        &refs.labels_usize(),
        x_test.view().into_dyn(),
        Some(&test_labels),
    )
    .unwrap();
    let cos = report.result(SimilarityFn::GradCos).unwrap().fraction;
    // A trained classifier passes it for most test digits with grad_cos (Hanawa et al. 2021);
    // chance is about 0.1.
    assert!(cos >= 0.7, "grad_cos identical class fraction {cos}");
}

#[test]
fn cem_finds_pertinent_negatives_and_positives_on_the_imported_model() {
    use xai_cem::{Cem, CemParams, Mode};
    let (_, model) = original_and_imported();
    let (x, _) = test_images(2, 0);
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        // alibi's MNIST settings on [0, 1] inputs (no information = black), no autoencoder, a
        // small budget started at a large `c` (the outputs are saturated probabilities).
        let c_init = match mode {
            Mode::PertinentNegative => 1e4,
            Mode::PertinentPositive => 1e2,
        };
        let params = CemParams::alibi_mnist_example(mode)
            .gamma(0.0)
            .feature_range(0.0, 1.0)
            .no_info_val(0.0)
            .c_init(c_init)
            .c_steps(3)
            .max_iterations(200)
            .check()
            .unwrap();
        let cem = Cem::white_box(params, &model).unwrap();
        let out = cem.explain_batch(x.view().into_dyn(), None).unwrap();
        for e in &out {
            let d = &e.data;
            let p = d
                .pertinent
                .as_ref()
                .unwrap_or_else(|| panic!("{mode:?} not found: {}", d.summary()));
            let pred = argmax_rows(model.predict(p.instance.view()).unwrap().view())[0];
            assert_eq!(
                pred, p.pred,
                "{mode:?}: the stored prediction is the model's"
            );
            match mode {
                Mode::PertinentNegative => assert_ne!(p.pred, d.x_pred, "a PN changes the class"),
                Mode::PertinentPositive => assert_eq!(p.pred, d.x_pred, "a PP keeps the class"),
            }
            assert!(p.instance.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)));
        }
    }
}

#[test]
fn kernelshap_values_add_up_on_the_imported_model() {
    use xai_shap::game::Background;
    use xai_shap::hyperparams::ImageKernelShapParams;
    let (_, model) = original_and_imported();
    let (x, labels) = test_images(1, 0);
    let image = x.index_axis(Axis(0), 0);
    let e = ImageKernelShapParams::new()
        .labels(vec![labels[0]])
        .nsamples(200)
        .n_segments(30)
        .background(Background::Value(0.0))
        .seed(1)
        .check()
        .unwrap()
        .explain(&model, image)
        .unwrap();
    let d = &e.data;
    // Efficiency: the segment values add up to f(x) - f(background).
    let f_x = model.predict(x.view().into_dyn()).unwrap()[[0, labels[0]]];
    let f_b = model
        .predict(Array4::<f32>::zeros((1, 1, 28, 28)).view().into_dyn())
        .unwrap()[[0, labels[0]]];
    let sum = d.segment_values.row(0).sum();
    assert!((sum - (f_x - f_b)).abs() < 1e-3, "{sum} vs {}", f_x - f_b);
    assert!((d.instance_values[0] - f_x).abs() < 1e-5);
    assert!(d.segment_values.iter().any(|v| v.abs() > 1e-3));
}

#[test]
fn l2x_trains_and_explains_the_imported_model() {
    let (_, model) = original_and_imported();
    let (x, _) = test_images(64, 200);
    let k = 4;
    let l2x = xai_testkit::l2x_mnist::mnist_params(KIND, k, 3)
        .num_epochs(1)
        .batch_size(Some(32))
        .progress(false)
        .check()
        .unwrap()
        .fit(x.view(), &model)
        .unwrap();
    let e = l2x.explain(&model, x.slice(s![0..4, .., .., ..])).unwrap();
    let d = &e.data;
    assert_eq!(d.len(), 4);
    assert_eq!(d.k, k);
    // The black box's outputs are the imported model's, and every image gets k patches.
    let outputs = model
        .predict(x.slice(s![0..4, .., .., ..]).into_dyn())
        .unwrap();
    let diff = outputs
        .iter()
        .zip(&d.black_box_outputs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "black-box outputs differ by {diff}");
    for p in &d.selected_patches {
        assert_eq!(p.len(), k);
    }
    assert!(d.importance.iter().all(|v| v.is_finite()));
}
