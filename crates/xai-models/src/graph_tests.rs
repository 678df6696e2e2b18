//! Tests of graph networks and of the layers in [`crate::ops`]: forward passes against naive
//! references, input gradients, pullbacks and per-sample parameter gradients against finite
//! differences and against their sum over the batch.

use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};

use crate::layers::{Conv2d, Dense, Dims, Layer, MaxPool2d, Padding};
use crate::ops::{AvgPool2d, BatchNorm, BinaryOp, GroupConv2d};
use crate::{NamedLayer, Network};

fn named(name: &str, layer: Layer) -> NamedLayer {
    NamedLayer {
        name: name.into(),
        layer,
    }
}

fn uniform(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
}

fn images(rng: &mut StdRng, n: usize, c: usize, h: usize, w: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, c, h, w), |_| rng.gen_range(-1.0..1.0))
}

fn group_conv(
    rng: &mut StdRng,
    (i, o, groups): (usize, usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: Padding,
) -> Layer {
    Layer::GroupConv2d(GroupConv2d {
        in_channels: i,
        out_channels: o,
        kernel,
        stride,
        dilation,
        groups,
        padding,
        weight: uniform(rng, kernel.0 * kernel.1 * (i / groups) * o, 0.5),
        bias: uniform(rng, o, 0.2),
    })
}

fn batch_norm(rng: &mut StdRng, c: usize) -> Layer {
    Layer::BatchNorm(BatchNorm {
        gamma: (0..c).map(|_| rng.gen_range(0.5..1.5)).collect(),
        beta: uniform(rng, c, 0.3),
        mean: uniform(rng, c, 0.3),
        var: (0..c).map(|_| rng.gen_range(0.5..2.0)).collect(),
        eps: 1e-5,
    })
}

fn conv(rng: &mut StdRng, i: usize, o: usize, k: usize, s: usize, padding: Padding) -> Layer {
    let mut c = Conv2d::new(i, o, (k, k), (s, s), padding, rng);
    c.bias = uniform(rng, o, 0.2);
    Layer::Conv2d(c)
}

/// A ResNet-style graph: conv -> BN -> ReLU -> strided conv, a strided 1x1 projection of the
/// input, residual Add, ReLU, global average pool, dense head.
pub(crate) fn resnet_like(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let layers = vec![
        named("conv1", conv(&mut r, 2, 4, 3, 1, Padding::Same)),
        named("bn1", batch_norm(&mut r, 4)),
        named("relu1", Layer::Relu),
        named(
            "conv2",
            conv(
                &mut r,
                4,
                4,
                3,
                2,
                Padding::Explicit {
                    top: 1,
                    bottom: 0,
                    left: 1,
                    right: 0,
                },
            ),
        ),
        named("proj", conv(&mut r, 2, 4, 1, 2, Padding::Valid)),
        named("add", Layer::Binary(BinaryOp::Add)),
        named("relu2", Layer::Relu),
        named("gap", Layer::GlobalAvgPool),
        named("flatten", Layer::Flatten),
        named("fc", Layer::Dense(Dense::new(4, 3, &mut r))),
    ];
    // node 0 = input; node j + 1 = output of layer j.
    let inputs = vec![
        vec![0],
        vec![1],
        vec![2],
        vec![3],
        vec![0],
        vec![4, 5],
        vec![6],
        vec![7],
        vec![8],
        vec![9],
    ];
    Network::graph("resnet_like", [2, 6, 6], layers, inputs).unwrap()
}

/// Builds a graph from `(name, layer, input names)`; `"x"` is the network's input.
fn build(name: &str, shape: [usize; 3], spec: Vec<(&str, Layer, Vec<&str>)>) -> Network {
    let mut names = vec!["x"];
    let mut layers = Vec::new();
    let mut inputs = Vec::new();
    for (n, l, ins) in spec {
        inputs.push(
            ins.iter()
                .map(|i| names.iter().position(|m| m == i).expect("defined before"))
                .collect(),
        );
        layers.push(named(n, l));
        names.push(n);
    }
    Network::graph(name, shape, layers, inputs).unwrap()
}

/// A MobileNetV2-style graph with every other new layer: 1x1 expand, ReLU6, depthwise 3x3,
/// dilated grouped conv, project, inverted residual Add, Concat, Mul/Sub/Div between branches,
/// smooth activations, average pooling, and a LogSoftmax head.
pub(crate) fn mobilenet_like(seed: u64) -> Network {
    let mut r = StdRng::seed_from_u64(seed);
    let p1 = Padding::Explicit {
        top: 1,
        bottom: 1,
        left: 1,
        right: 1,
    };
    let p2 = Padding::Explicit {
        top: 2,
        bottom: 2,
        left: 2,
        right: 2,
    };
    let spec = vec![
        (
            "expand",
            conv(&mut r, 2, 4, 1, 1, Padding::Valid),
            vec!["x"],
        ),
        ("relu6", Layer::Clip { min: 0.0, max: 6.0 }, vec!["expand"]),
        (
            "dw",
            group_conv(&mut r, (4, 4, 4), (3, 3), (1, 1), (1, 1), p1),
            vec!["relu6"],
        ),
        ("bn_dw", batch_norm(&mut r, 4), vec!["dw"]),
        ("hswish", Layer::HardSwish, vec!["bn_dw"]),
        (
            "gdil",
            group_conv(&mut r, (4, 4, 2), (3, 3), (1, 1), (2, 2), p2),
            vec!["hswish"],
        ),
        (
            "project",
            conv(&mut r, 4, 2, 1, 1, Padding::Valid),
            vec!["gdil"],
        ),
        (
            "residual",
            Layer::Binary(BinaryOp::Add),
            vec!["project", "x"],
        ),
        ("sig", Layer::Sigmoid, vec!["residual"]),
        (
            "hsig",
            Layer::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            vec!["residual"],
        ),
        ("gate", Layer::Binary(BinaryOp::Mul), vec!["sig", "hsig"]),
        ("tanh", Layer::Tanh, vec!["residual"]),
        ("leaky", Layer::LeakyRelu(0.1), vec!["residual"]),
        ("div", Layer::Binary(BinaryOp::Div), vec!["leaky", "sig"]),
        ("sub", Layer::Binary(BinaryOp::Sub), vec!["tanh", "div"]),
        ("cat", Layer::Concat, vec!["sub", "hswish", "gate"]),
        (
            "avg",
            Layer::AvgPool2d(AvgPool2d {
                size: (3, 3),
                stride: (2, 2),
                padding: p1,
                count_include_pad: false,
            }),
            vec!["cat"],
        ),
        (
            "avg_incl",
            Layer::AvgPool2d(AvgPool2d {
                size: (2, 2),
                stride: (1, 1),
                padding: Padding::Explicit {
                    top: 0,
                    bottom: 1,
                    left: 0,
                    right: 1,
                },
                count_include_pad: true,
            }),
            vec!["avg"],
        ),
        ("flatten", Layer::Flatten, vec!["avg_incl"]),
        (
            "fc",
            Layer::Dense(Dense::new(3 * 3 * 8, 3, &mut r)),
            vec!["flatten"],
        ),
        ("logsm", Layer::LogSoftmax, vec!["fc"]),
    ];
    build("mobilenet_like", [2, 6, 6], spec)
}

fn weighted_output(net: &Network, x: &Array4<f32>, w: &Array2<f32>) -> f64 {
    let y = net.predict(x.view().into_dyn()).unwrap();
    y.iter().zip(w).map(|(a, b)| *a as f64 * *b as f64).sum()
}

/// Fraction of finite differences of `Σ w ∘ f(x)` that agree with the analytic gradient.
fn input_fd_agreement(net: &Network, x: &Array4<f32>, w: &Array2<f32>, grad: &[f32]) -> f64 {
    let h = 1e-3f32;
    let mut ok = 0;
    for idx in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[idx] += h;
        xm.as_slice_mut().unwrap()[idx] -= h;
        let fd = (weighted_output(net, &xp, w) - weighted_output(net, &xm, w)) / (2.0 * h as f64);
        if (fd - grad[idx] as f64).abs() <= 1e-2 * (1.0 + fd.abs()) {
            ok += 1;
        }
    }
    ok as f64 / x.len() as f64
}

fn check_gradients(net: &Network, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let s = net.input_shape();
    let (c, h, w) = (s[0], s[1], s[2]);
    let n = 3;
    let x = images(&mut rng, n, c, h, w);
    let wts = Array2::from_shape_fn((n, net.n_outputs()), |_| rng.gen_range(-1.0..1.0));
    // Input gradient against finite differences.
    let g = net.input_gradient(x.view().into_dyn(), wts.view()).unwrap();
    let agree = input_fd_agreement(net, &x, &wts, g.as_slice().unwrap());
    assert!(
        agree >= 0.97,
        "{}: input gradient agreement {agree}",
        net.name()
    );
    // The pullback gives the same outputs and gradient.
    let (y, g2) = net
        .predict_and_input_gradient(x.view().into_dyn(), &mut |_| Ok(wts.clone()))
        .unwrap();
    let y0 = net.predict(x.view().into_dyn()).unwrap();
    for (a, b) in y.iter().zip(&y0) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    for (a, b) in g.iter().zip(&g2) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Summed parameter gradients against finite differences.
    let trace = net.forward_trace(x.view(), None).unwrap();
    let grads = net.backward(&trace, wts.view(), true).unwrap();
    let gi = grads.input.as_ref().unwrap();
    for (a, b) in gi.iter().zip(&g) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let hp = 1e-3f32;
    let (mut ok, mut total) = (0, 0);
    for (k, gk) in grads.params.iter().enumerate() {
        // A few entries of every parameter tensor.
        let step = (gk.len() / 5).max(1);
        for j in (0..gk.len()).step_by(step) {
            let mut np = net.clone();
            np.param_slices_mut()[k][j] += hp;
            let mut nm = net.clone();
            nm.param_slices_mut()[k][j] -= hp;
            let fd = (weighted_output(&np, &x, &wts) - weighted_output(&nm, &x, &wts))
                / (2.0 * hp as f64);
            total += 1;
            if (fd - gk[j] as f64).abs() <= 1e-2 * (1.0 + fd.abs()) {
                ok += 1;
            }
        }
    }
    assert!(
        ok as f64 >= 0.95 * total as f64,
        "{}: parameter gradient agreement {ok}/{total}",
        net.name()
    );
    // Per-sample gradients: each row is that sample's backward pass; they sum to the batch's.
    let targets = Targets::Classes((0..n).map(|i| i % net.n_outputs()).collect());
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let psg = net
        .per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
        .unwrap();
    let flat = psg.to_flat();
    assert_eq!(flat.ncols(), net.n_params());
    let out = net.predict(x.view().into_dyn()).unwrap();
    let (_, g_out) = loss.value_and_grad(out.view(), &targets).unwrap();
    let batch = net.backward(&trace, g_out.view(), false).unwrap();
    let want_sum: Vec<f32> = batch.params.concat();
    for (col, want) in want_sum.iter().enumerate() {
        let got: f32 = flat.column(col).sum();
        assert!(
            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{}: column {col}: {got} vs {want}",
            net.name()
        );
    }
    for s in 0..n {
        let xs = x.slice(ndarray::s![s..s + 1, .., .., ..]).to_owned();
        let ts = targets.select(&[s]).unwrap();
        let tr = net.forward_trace(xs.view(), None).unwrap();
        let o = net.predict(xs.view().into_dyn()).unwrap();
        let (_, go) = loss.value_and_grad(o.view(), &ts).unwrap();
        let one: Vec<f32> = net.backward(&tr, go.view(), false).unwrap().params.concat();
        for (a, b) in flat.row(s).iter().zip(&one) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn resnet_like_graph_gradients_match_finite_differences() {
    let net = resnet_like(3);
    assert!(net.is_graph());
    check_gradients(&net, 11);
}

#[test]
fn mobilenet_like_graph_gradients_match_finite_differences() {
    let net = mobilenet_like(5);
    assert!(net.is_graph());
    assert_eq!(net.dims().last().unwrap(), &Dims::flat(3));
    check_gradients(&net, 12);
}

#[test]
fn every_single_input_layer_matches_finite_differences_in_a_chain() {
    let mut r = StdRng::seed_from_u64(9);
    let p = Padding::Explicit {
        top: 0,
        bottom: 2,
        left: 1,
        right: 0,
    };
    let cases: Vec<(&str, Layer)> = vec![
        (
            "depthwise_strided",
            group_conv(&mut r, (2, 4, 2), (3, 2), (2, 1), (1, 1), p),
        ),
        (
            "dilated",
            group_conv(&mut r, (2, 3, 1), (2, 3), (1, 2), (2, 1), p),
        ),
        ("bn", batch_norm(&mut r, 2)),
        (
            "avg",
            Layer::AvgPool2d(AvgPool2d {
                size: (2, 3),
                stride: (2, 1),
                padding: p,
                count_include_pad: false,
            }),
        ),
        ("gap", Layer::GlobalAvgPool),
        ("sigmoid", Layer::Sigmoid),
        ("tanh", Layer::Tanh),
        ("leaky", Layer::LeakyRelu(0.2)),
        (
            "clip",
            Layer::Clip {
                min: -0.3,
                max: 0.4,
            },
        ),
        (
            "hsig",
            Layer::HardSigmoid {
                alpha: 0.7,
                beta: 0.4,
            },
        ),
        ("hswish", Layer::HardSwish),
    ];
    for (name, layer) in cases {
        let d = layer.output_dims(Dims::new(6, 5, 2)).unwrap();
        let net = Network::new(
            name,
            [2, 6, 5],
            vec![
                named(name, layer),
                named("flatten", Layer::Flatten),
                named("fc", Layer::Dense(Dense::new(d.len(), 3, &mut r))),
                named("head", Layer::LogSoftmax),
            ],
        )
        .unwrap();
        assert!(!net.is_graph());
        check_gradients(&net, 21);
    }
}

#[test]
fn grouped_conv_matches_a_naive_reference() {
    let mut r = StdRng::seed_from_u64(4);
    let layer = group_conv(
        &mut r,
        (4, 6, 2),
        (3, 2),
        (2, 1),
        (2, 1),
        Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 0,
            right: 1,
        },
    );
    let Layer::GroupConv2d(g) = &layer else {
        unreachable!()
    };
    let input = Dims::new(7, 5, 4);
    let out = layer.output_dims(input).unwrap();
    // extent 5 x 2; (7 + 3 - 5) / 2 + 1 = 3; (5 + 1 - 2) / 1 + 1 = 5.
    assert_eq!(out, Dims::new(3, 5, 6));
    let x = uniform(&mut r, input.len(), 1.0);
    let (y, _) = layer
        .forward(
            &x,
            1,
            input,
            &mut crate::layers::Mode::Eval,
            false,
            &Default::default(),
        )
        .unwrap();
    for oy in 0..out.h {
        for ox in 0..out.w {
            for o in 0..6 {
                let grp = o / 3;
                let mut want = g.bias[o];
                for ky in 0..3 {
                    for kx in 0..2 {
                        let iy = (oy * 2 + ky * 2) as isize - 1;
                        let ix = (ox + kx) as isize;
                        if !(0..7).contains(&iy) || ix >= 5 {
                            continue;
                        }
                        for icl in 0..2 {
                            let xv = x[(iy as usize * 5 + ix as usize) * 4 + grp * 2 + icl];
                            want += xv * g.weight[((ky * 2 + kx) * 2 + icl) * 6 + o];
                        }
                    }
                }
                let got = y[(oy * out.w + ox) * 6 + o];
                assert!((got - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
    }
}

#[test]
fn a_graph_that_is_a_chain_runs_as_the_chain() {
    let mut r = StdRng::seed_from_u64(2);
    let layers = vec![
        named("conv", conv(&mut r, 1, 2, 3, 1, Padding::Valid)),
        named("relu", Layer::Relu),
        named("pool", Layer::MaxPool2d(MaxPool2d::new(2, Padding::Valid))),
        named("flatten", Layer::Flatten),
        named("fc", Layer::Dense(Dense::new(2 * 2 * 2, 2, &mut r))),
    ];
    let chain = Network::new("c", [1, 6, 6], layers.clone()).unwrap();
    let graph = Network::graph("c", [1, 6, 6], layers, (0..5).map(|i| vec![i]).collect()).unwrap();
    assert!(!graph.is_graph());
    assert_eq!(chain, graph);
}

#[test]
fn malformed_graphs_are_errors() {
    let mut r = StdRng::seed_from_u64(2);
    let layers = vec![
        named("relu", Layer::Relu),
        named("add", Layer::Binary(BinaryOp::Add)),
    ];
    // Reading a node computed later.
    assert!(Network::graph("g", [1, 4, 4], layers.clone(), vec![vec![2], vec![0, 1]]).is_err());
    // Wrong arity.
    assert!(Network::graph("g", [1, 4, 4], layers.clone(), vec![vec![0], vec![1]]).is_err());
    // Multi-input layer in a chain.
    assert!(Network::new("g", [1, 4, 4], layers.clone()).is_err());
    // Mismatched dimensions.
    let layers2 = vec![
        named("conv", conv(&mut r, 1, 2, 3, 1, Padding::Valid)),
        named("add", Layer::Binary(BinaryOp::Add)),
    ];
    assert!(Network::graph("g", [1, 4, 4], layers2, vec![vec![0], vec![0, 1]]).is_err());
    // A valid one, round-tripped through serde.
    let ok = Network::graph("g", [1, 4, 4], layers, vec![vec![0], vec![0, 1]]).unwrap();
    let json = serde_json::to_string(&ok).unwrap();
    let mut back: Network = serde_json::from_str(&json).unwrap();
    back.compute_dims().unwrap();
    assert_eq!(back, ok);
}
