//! Tests of [`xai_core::LayerModel`] for [`Network`]: a layer's activation against the network
//! cut after that layer, its gradient against central finite differences of the rest of the
//! network run on a perturbed activation (a chain and a graph whose node feeds a residual
//! `Add` and a convolution), unknown layers, wrong shapes and the names of unnamed layers.

use ndarray::{Array2, Array4, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{CoreError, LayerModel, Predictor};

use crate::graph_tests::{mobilenet_like, resnet_like};
use crate::layers::{Conv2d, Dense, Layer, MaxPool2d, Padding};
use crate::ops::BinaryOp;
use crate::{NamedLayer, Network};

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

fn conv(r: &mut StdRng, i: usize, o: usize, k: usize, padding: Padding) -> Layer {
    let mut c = Conv2d::new(i, o, (k, k), (1, 1), padding, r);
    c.bias = (0..o).map(|_| r.gen_range(-0.2..0.2)).collect();
    Layer::Conv2d(c)
}

fn images(r: &mut StdRng, n: usize, [c, h, w]: [usize; 3]) -> Array4<f32> {
    Array4::from_shape_fn((n, c, h, w), |_| r.gen_range(-1.0..1.0))
}

fn weights(r: &mut StdRng, n: usize, k: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, k), |_| r.gen_range(-1.0..1.0))
}

/// A chain over three channels (so that NHWC and NCHW differ): conv, ReLU, max pool, conv,
/// dropout, sigmoid, flatten, dense, tanh, dense, softmax.
fn chain(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let layers = vec![
        named("conv1", conv(&mut r, 3, 4, 3, Padding::Same)),
        named("relu1", Layer::Relu),
        named("pool1", Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid))),
        named("conv2", conv(&mut r, 4, 5, 3, Padding::Same)),
        named("dropout", Layer::Dropout(0.5)),
        named("sigmoid", Layer::Sigmoid),
        named("flatten", Layer::Flatten),
        named("fc1", Layer::Dense(Dense::new(5 * 3 * 4, 6, &mut r))),
        named("tanh", Layer::Tanh),
        named("fc2", Layer::Dense(Dense::new(6, 3, &mut r))),
        named("softmax", Layer::Softmax),
    ];
    Network::new("chain", [3, 6, 8], layers).unwrap()
}

/// A residual block whose ReLU output (`relu1`) is read both by a convolution and by the
/// skip connection: `relu1 -> conv2 -> add(conv2, relu1) -> relu2 -> gap -> flatten -> fc`.
fn residual(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let layers = vec![
        named("conv1", conv(&mut r, 2, 3, 3, Padding::Same)),
        named("relu1", Layer::Relu),
        named("conv2", conv(&mut r, 3, 3, 3, Padding::Same)),
        named("add", Layer::Binary(BinaryOp::Add)),
        named("tanh", Layer::Tanh),
        named("gap", Layer::GlobalAvgPool),
        named("flatten", Layer::Flatten),
        named("fc", Layer::Dense(Dense::new(3, 4, &mut r))),
    ];
    let inputs = vec![
        vec![0],
        vec![1],
        vec![2],
        vec![3, 2],
        vec![4],
        vec![5],
        vec![6],
        vec![7],
    ];
    Network::graph("residual", [2, 5, 4], layers, inputs).unwrap()
}

/// The network cut after layer `k`: its first `k + 1` layers (a graph keeps their edges).
fn head(net: &Network, k: usize) -> Network {
    let layers = net.layers()[..=k].to_vec();
    let inputs = (0..=k).map(|i| net.layer_inputs(i)).collect();
    Network::graph(
        "head",
        net.input_shape().try_into().unwrap(),
        layers,
        inputs,
    )
    .unwrap()
}

/// Checks every layer's activation against the network cut after it, run by `predict` (the
/// evaluation path: fused and in-place layers, no trace).
fn check_activations(net: &Network, x: &Array4<f32>, w: &Array2<f32>) {
    let n = x.shape()[0];
    assert_eq!(net.layer_names().len(), net.layers().len());
    for (k, name) in net.layer_names().iter().enumerate() {
        assert_eq!(name, &net.layers()[k].name);
        let (a, g) = net
            .layer_activation_and_gradient(x.view().into_dyn(), name, w.view())
            .unwrap();
        assert_eq!(a.shape(), g.shape(), "{name}");
        let d = net.dims()[k + 1];
        let expected_shape = if d.h == 1 && d.w == 1 {
            vec![n, d.c]
        } else {
            vec![n, d.c, d.h, d.w]
        };
        assert_eq!(a.shape(), expected_shape.as_slice(), "{name}");
        // The head's outputs are `[c, h, w]`-flattened rows: the channels-first activation.
        let by_hand = head(net, k).predict(x.view().into_dyn()).unwrap();
        let a_flat: Vec<f32> = a.iter().copied().collect();
        assert_eq!(by_hand.len(), a_flat.len(), "{name}");
        for (i, (p, q)) in by_hand.iter().zip(&a_flat).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + p.abs()),
                "{name}[{i}]: {q} != {p} by hand"
            );
        }
    }
}

/// `Σ w ∘ tail(a)` in f64, `a` channels first as the layer model returns it.
fn weighted(tail: &Network, a: &ArrayD<f32>, w: &Array2<f32>) -> f64 {
    let shape = tail.input_shape().to_vec();
    let mut full = vec![a.shape()[0]];
    full.extend_from_slice(&shape);
    let a = a.to_shape(IxDyn(&full)).unwrap();
    let out = tail.predict(a.view()).unwrap();
    out.iter()
        .zip(w.iter())
        .map(|(o, w)| *o as f64 * *w as f64)
        .sum()
}

/// `⟨∂(Σ w ∘ f)/∂A, δ⟩` against `(F(A + εδ) − F(A − εδ)) / 2ε`, with `F` the rest of the
/// network (`tail`) from the layer's activation `A`, for a few random directions `δ`.
fn check_gradient(
    net: &Network,
    tail: &Network,
    layer: &str,
    x: &Array4<f32>,
    w: &Array2<f32>,
    r: &mut StdRng,
) {
    let (a, g) = net
        .layer_activation_and_gradient(x.view().into_dyn(), layer, w.view())
        .unwrap();
    // The tail reproduces the network's outputs from the activation.
    let full: f64 = net
        .predict(x.view().into_dyn())
        .unwrap()
        .iter()
        .zip(w.iter())
        .map(|(o, w)| *o as f64 * *w as f64)
        .sum();
    let from_a = weighted(tail, &a, w);
    assert!((full - from_a).abs() < 1e-4 * (1.0 + full.abs()), "{layer}");
    let eps = 1e-2f32;
    for _ in 0..3 {
        let delta = ArrayD::from_shape_fn(a.raw_dim(), |_| r.gen_range(-1.0f32..1.0));
        let plus = &a + &(&delta * eps);
        let minus = &a - &(&delta * eps);
        let fd = (weighted(tail, &plus, w) - weighted(tail, &minus, w)) / (2.0 * eps as f64);
        let analytic: f64 = g
            .iter()
            .zip(delta.iter())
            .map(|(g, d)| *g as f64 * *d as f64)
            .sum();
        assert!(
            (fd - analytic).abs() <= 2e-3 * (1.0 + fd.abs()),
            "{layer}: ⟨grad, δ⟩ = {analytic}, finite differences {fd}"
        );
        assert!(
            analytic.abs() > 1e-3,
            "{layer}: a trivial gradient {analytic}"
        );
    }
}

#[test]
fn chain_activations_are_the_first_layers_run_by_hand() {
    let net = chain(1);
    let mut r = StdRng::seed_from_u64(2);
    // 19 samples: two chunks of samples.
    let x = images(&mut r, 19, [3, 6, 8]);
    let w = weights(&mut r, 19, 3);
    check_activations(&net, &x, &w);
    // The last layer's gradient is the output weights themselves.
    let (_, g) = net
        .layer_activation_and_gradient(x.view().into_dyn(), "softmax", w.view())
        .unwrap();
    assert_eq!(g, w.clone().into_dyn());
}

#[test]
fn chain_gradients_match_finite_differences() {
    let net = chain(3);
    let mut r = StdRng::seed_from_u64(4);
    let x = images(&mut r, 5, [3, 6, 8]);
    let w = weights(&mut r, 5, 3);
    let names = net.layer_names();
    // The last-but-one layer (flat), the flatten's input (a feature map, three channels and
    // more: a layout error shows), and a convolution read by an in-place ReLU.
    for k in [names.len() - 2, 5, 3, 0] {
        let d = net.dims()[k + 1];
        let tail = Network::new("tail", [d.c, d.h, d.w], net.layers()[k + 1..].to_vec()).unwrap();
        check_gradient(&net, &tail, &names[k], &x, &w, &mut r);
    }
}

#[test]
fn graph_activations_are_the_first_layers_run_by_hand() {
    let mut r = StdRng::seed_from_u64(5);
    for net in [residual(6), resnet_like(7), mobilenet_like(8)] {
        let shape: [usize; 3] = net.input_shape().try_into().unwrap();
        let x = images(&mut r, 18, shape);
        let w = weights(&mut r, 18, net.n_outputs());
        check_activations(&net, &x, &w);
    }
}

#[test]
fn graph_gradients_match_finite_differences() {
    let net = residual(9);
    let mut r = StdRng::seed_from_u64(10);
    let x = images(&mut r, 4, [2, 5, 4]);
    let w = weights(&mut r, 4, 4);
    // relu1 (node 2) feeds conv2 and the skip connection: its gradient is the sum of both.
    let tail = Network::graph(
        "tail",
        [3, 5, 4],
        net.layers()[2..].to_vec(),
        vec![vec![0], vec![1, 0], vec![2], vec![3], vec![4], vec![5]],
    )
    .unwrap();
    check_gradient(&net, &tail, "relu1", &x, &w, &mut r);
    // The Add's output, and the last-but-one layer.
    let tail = Network::new("tail", [3, 5, 4], net.layers()[4..].to_vec()).unwrap();
    check_gradient(&net, &tail, "add", &x, &w, &mut r);
    let tail = Network::new("tail", [3, 1, 1], net.layers()[7..].to_vec()).unwrap();
    check_gradient(&net, &tail, "flatten", &x, &w, &mut r);
    // Both operands of a residual Add get the Add's gradient (resnet_like: conv2 + proj).
    let net = resnet_like(11);
    let x = images(&mut r, 3, [2, 6, 6]);
    let w = weights(&mut r, 3, 3);
    let grad = |layer: &str| {
        net.layer_activation_and_gradient(x.view().into_dyn(), layer, w.view())
            .unwrap()
            .1
    };
    let g_add = grad("add");
    assert!(g_add.iter().any(|v| *v != 0.0));
    assert_eq!(grad("conv2"), g_add);
    assert_eq!(grad("proj"), g_add);
}

#[test]
fn unknown_layers_and_wrong_shapes_are_errors() {
    let net = chain(12);
    let mut r = StdRng::seed_from_u64(13);
    let x = images(&mut r, 2, [3, 6, 8]);
    let w = weights(&mut r, 2, 3);
    let err = net
        .layer_activation_and_gradient(x.view().into_dyn(), "nope", w.view())
        .unwrap_err();
    match &err {
        CoreError::InvalidParameter {
            name,
            value,
            expected,
        } => {
            assert_eq!(name, "layer");
            assert_eq!(value, "`nope`");
            assert!(
                expected.contains("conv1, relu1, pool1") && expected.contains("softmax"),
                "{expected}"
            );
        }
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
    // A batch of another image size, or without the batch axis.
    let bad = images(&mut r, 2, [3, 6, 7]);
    let err = net
        .layer_activation_and_gradient(bad.view().into_dyn(), "conv1", w.view())
        .unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err:?}");
    let err = net
        .layer_activation_and_gradient(
            x.index_axis(ndarray::Axis(0), 0).into_dyn(),
            "conv1",
            w.view(),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }), "{err:?}");
    // Output weights for another batch size or number of outputs.
    for w in [weights(&mut r, 3, 3), weights(&mut r, 2, 4)] {
        let err = net
            .layer_activation_and_gradient(x.view().into_dyn(), "conv1", w.view())
            .unwrap_err();
        assert!(err.to_string().contains("output weights"), "{err}");
    }
}

#[test]
fn empty_and_repeated_names_get_indexed_fallbacks() {
    let mut r = StdRng::seed_from_u64(14);
    let layers = vec![
        named("", conv(&mut r, 1, 2, 3, Padding::Same)),
        named("relu", Layer::Relu),
        named("#0", Layer::Flatten),
        named("fc", Layer::Dense(Dense::new(2 * 4 * 4, 2, &mut r))),
    ];
    let mut net = Network::new("names", [1, 4, 4], layers).unwrap();
    // `#0` is taken by a layer, so the empty name becomes `#0#`.
    assert_eq!(net.layer_names(), vec!["#0#", "relu", "#0", "fc"]);
    // Renamed in place to a repeated name: the second `relu` is listed by its index.
    net.layers_mut()[3].name = "relu".into();
    assert_eq!(net.layer_names(), vec!["#0#", "relu", "#0", "relu#3"]);
    let x = images(&mut r, 2, [1, 4, 4]);
    let w = weights(&mut r, 2, 2);
    let (a, _) = net
        .layer_activation_and_gradient(x.view().into_dyn(), "#0#", w.view())
        .unwrap();
    assert_eq!(a.shape(), &[2, 2, 4, 4]);
    let (a, g) = net
        .layer_activation_and_gradient(x.view().into_dyn(), "relu#3", w.view())
        .unwrap();
    assert_eq!(a, net.predict(x.view().into_dyn()).unwrap().into_dyn());
    assert_eq!(g, w.into_dyn());
}
