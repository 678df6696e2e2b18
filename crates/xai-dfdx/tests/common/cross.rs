//! Shared by the cross-framework tests of `xai-dfdx` and `xai-burn` (the burn crate includes this
//! file by path): a small MLP trained with `xai-models` on MNIST, its weights written as
//! safetensors, and the comparison of every method's result on it with the result on another
//! framework's copy of the same weights.

use ndarray::{s, Array2, Array4, Axis};
use xai_cem::{Cem, CemParams, Mode};
use xai_core::{DifferentiableModel, Loss, OutputKind, Targets};
use xai_datasets::{Mnist, Scaling};
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_models::{Dense, Layer, NamedLayer, Network, TrainConfig};
use xai_shap::ImageKernelShapParams;

/// Hidden width of the test MLP.
pub const HIDDEN: usize = 32;

/// The reference network, its safetensors bytes and the MNIST images it is compared on.
pub struct Reference {
    pub net: Network,
    pub safetensors: Vec<u8>,
    pub train: Array4<f32>,
    pub train_labels: Vec<usize>,
    pub test: Array4<f32>,
}

/// A 784-32-10 softmax MLP trained for one epoch on 1,000 MNIST images (inputs in [-0.5, 0.5],
/// alibi's CEM scaling), written to safetensors with `xai_models::save_weights`.
pub fn trained_mlp() -> Reference {
    let mnist = Mnist::load_default().expect("the committed data/mnist");
    let train = mnist.train.head(1000);
    let x = train.images_f32(Scaling::Centered);
    let labels = train.labels_usize();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut net = Network::new(
        "mlp",
        [1, 28, 28],
        vec![
            NamedLayer {
                name: "flatten".into(),
                layer: Layer::Flatten,
            },
            NamedLayer {
                name: "dense1".into(),
                layer: Layer::Dense(Dense::new(784, HIDDEN, &mut rng)),
            },
            NamedLayer {
                name: "relu".into(),
                layer: Layer::Relu,
            },
            NamedLayer {
                name: "dense2".into(),
                layer: Layer::Dense(Dense::new(HIDDEN, 10, &mut rng)),
            },
            NamedLayer {
                name: "softmax".into(),
                layer: Layer::Softmax,
            },
        ],
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 32,
        learning_rate: 1e-3,
        seed: 1,
        loss: Loss::CrossEntropy(OutputKind::Probabilities),
        progress: false,
    };
    xai_models::train(
        &mut net,
        x.view(),
        &Targets::Classes(labels.clone()),
        &config,
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!(
        "xai-cross-{}-{:?}.safetensors",
        std::process::id(),
        std::thread::current().id()
    ));
    xai_models::save_weights(&net, &path, Default::default()).unwrap();
    let safetensors = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let test = mnist.test.head(3).images_f32(Scaling::Centered);
    Reference {
        net,
        safetensors,
        train: x,
        train_labels: labels,
        test,
    }
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale})"
        );
    }
}

/// Every method gives the same result on `other` as on the reference network: predictions,
/// input gradients, gradient-similarity scores, KernelSHAP values and CEM's pertinent negative.
pub fn assert_same_explanations(r: &Reference, other: &dyn DifferentiableModel) {
    let net: &dyn DifferentiableModel = &r.net;
    assert_eq!(other.input_shape(), net.input_shape());
    let x = r.test.view().into_dyn();
    let p_net = net.predict(x.clone()).unwrap();
    let p_other = other.predict(x.clone()).unwrap();
    assert_close(
        "predictions",
        p_other.as_slice().unwrap(),
        p_net.as_slice().unwrap(),
        1e-4,
    );

    let w = Array2::from_shape_fn((3, 10), |(i, j)| ((i * 7 + j * 3) % 5) as f32 - 2.0);
    let g_net = net.input_gradient(x.clone(), w.view()).unwrap();
    let g_other = other.input_gradient(x.clone(), w.view()).unwrap();
    assert_close(
        "input gradients",
        g_other.as_slice().unwrap(),
        g_net.as_slice().unwrap(),
        1e-3,
    );

    let loss = Loss::CrossEntropy(OutputKind::Probabilities);
    let params = GradSimParams::new(loss)
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .n_similar(5)
        .check()
        .unwrap();
    let refs = r.train.slice(s![..40, .., .., ..]).to_owned();
    let labels = Targets::Classes(r.train_labels[..40].to_vec());
    let scores = |m: &dyn DifferentiableModel| {
        let fitted = GradientSimilarity::new(m, params.clone())
            .unwrap()
            .fit(refs.clone(), labels.clone())
            .unwrap();
        let e = fitted.explain(x.clone(), None).unwrap();
        (
            e.data.scores_by_reference().unwrap(),
            e.data.most_similar_indices,
        )
    };
    let (s_net, top_net) = scores(net);
    let (s_other, top_other) = scores(other);
    assert_close(
        "gradient-similarity scores",
        s_other.as_slice().unwrap(),
        s_net.as_slice().unwrap(),
        1e-3,
    );
    assert_eq!(top_other.column(0), top_net.column(0));

    let label = xai_core::argmax_rows(p_net.view())[0];
    let shap = ImageKernelShapParams::new()
        .labels(vec![label])
        .nsamples(200)
        .n_segments(30)
        .seed(3)
        .check()
        .unwrap();
    let image = r.test.index_axis(Axis(0), 0);
    let a_net = shap.explain(net, image).unwrap().data.attributions;
    let a_other = shap.explain(other, image).unwrap().data.attributions;
    assert_close(
        "KernelSHAP attributions",
        a_other.as_slice().unwrap(),
        a_net.as_slice().unwrap(),
        2e-3,
    );

    let cem = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .c_steps(2)
        .max_iterations(100)
        .check()
        .unwrap();
    let pn = |m: &dyn DifferentiableModel| {
        let e = Cem::white_box(cem.clone(), m)
            .unwrap()
            .explain(image.into_dyn())
            .unwrap();
        (e.data.pn().cloned(), e.data.pn_pred())
    };
    let (pn_net, pred_net) = pn(net);
    let (pn_other, pred_other) = pn(other);
    assert_eq!(pred_other, pred_net, "CEM pertinent negative's class");
    match (pn_net, pn_other) {
        (Some(a), Some(b)) => assert_close(
            "CEM pertinent negative",
            b.as_slice().unwrap(),
            a.as_slice().unwrap(),
            1e-3,
        ),
        (None, None) => {}
        (a, b) => panic!(
            "CEM found a PN on one side only: {:?} vs {:?}",
            a.is_some(),
            b.is_some()
        ),
    }
}
