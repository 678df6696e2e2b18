//! A user-style burn CNN (Conv2d, BatchNorm, ReLU, MaxPool, Conv2d, Dropout, adaptive average
//! pooling, Linear) trained a few steps with burn's optimizer and wrapped straight out of
//! training, in training mode: the model explains it as it predicts in inference (outputs
//! independent of the batch), never touches the caller's module or its running statistics,
//! lists parameters without buffers, and gives the gradient-similarity scores of the same
//! weights in `xai-models`; factored per-sample gradients of its dense layer equal the row path's.
#![allow(deprecated)] // burn 0.22 deprecates its ndarray backend in favour of `flex`

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Int;
use ndarray::{s, Array2, Array4, Axis};
use rand::{Rng, SeedableRng};
use xai_burn::{BurnError, BurnModel, LinearTaps};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_models::{Dense, Layer, MaxPool2d as XMaxPool, NamedLayer, Network, Padding};

const SIDE: usize = 10;
const CLASSES: usize = 3;

#[derive(Module, Debug)]
struct Cnn {
    conv1: Conv2d,
    bn: BatchNorm,
    relu: Relu,
    pool: MaxPool2d,
    conv2: Conv2d,
    dropout: Dropout,
    gap: AdaptiveAvgPool2d,
    output: Linear,
}

impl Cnn {
    fn new(device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 4], [3, 3]).init(device),
            bn: BatchNormConfig::new(4).init(device),
            relu: Relu::new(),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            conv2: Conv2dConfig::new([4, 6], [3, 3]).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            output: LinearConfig::new(6, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_taps(x, &mut LinearTaps::off())
    }

    /// The forward pass with the dense layer recorded (factored per-sample gradients).
    fn forward_taps(&self, x: Tensor<4>, taps: &mut LinearTaps) -> Tensor<2> {
        let h = self
            .pool
            .forward(self.relu.forward(self.bn.forward(self.conv1.forward(x))));
        let h = self.relu.forward(self.conv2.forward(h));
        let h = self.gap.forward(self.dropout.forward(h));
        taps.linear("output", &self.output, h.flatten(1, 3))
    }
}

fn images(n: usize, seed: u64) -> Array4<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array4::from_shape_fn((n, 1, SIDE, SIDE), |_| rng.gen_range(0.0f32..1.0))
}

fn tensor(x: &Array4<f32>, device: &Device) -> Tensor<4> {
    let dims: [usize; 4] = x.shape().try_into().unwrap();
    Tensor::from_data(
        TensorData::new(x.iter().copied().collect::<Vec<f32>>(), dims),
        device,
    )
}

/// The CNN after a few Adam steps, as burn leaves it: training mode, on the autodiff device,
/// with a pending update of BatchNorm's running statistics.
fn trained() -> (Cnn, Device) {
    let device = Device::ndarray().autodiff();
    device.seed(11);
    let mut module = Cnn::new(&device);
    let mut optim = AdamConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    for step in 0..4u64 {
        let x = images(16, 100 + step);
        let y: Vec<i64> = (0..16).map(|i| (i % CLASSES) as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [16]), &device);
        let loss = ce.forward(module.forward(tensor(&x, &device)), y);
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(1e-2, module, grads);
    }
    (module, device)
}

/// The caller's running statistics: `value()` (what it holds) and `value_sync()` (with any
/// pending update folded in, what training and `valid` read), as bits.
fn stats(m: &Cnn) -> Vec<Vec<u32>> {
    let bits = |t: Tensor<1>| -> Vec<u32> {
        t.to_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    // `value_sync` first: it folds a pending update in, after which `value` holds it too.
    let synced = vec![
        bits(m.bn.running_mean.value_sync()),
        bits(m.bn.running_var.value_sync()),
    ];
    [
        synced,
        vec![
            bits(m.bn.running_mean.value()),
            bits(m.bn.running_var.value()),
        ],
    ]
    .concat()
}

fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn a_module_straight_out_of_training_is_explained_in_inference_and_left_untouched() {
    let (module, device) = trained();
    assert!(module.bn.training.is_enabled() && module.dropout.training.is_enabled());
    // Training left an update pending: `value` lags `value_sync` until something syncs.
    assert_ne!(
        module.bn.running_mean.value().to_data(),
        module.bn.running_mean.clone().value_sync().to_data()
    );
    // From here on both reads must stay bit-identical.
    let before = stats(&module);
    assert_eq!(before[0], before[2]);

    let model = BurnModel::new(module.clone(), &device, &[1, SIDE, SIDE], Cnn::forward).unwrap();
    assert_eq!(stats(&module), before, "BurnModel::new");
    assert_eq!(model.training_flags_switched_off(), 2);
    let groups: Vec<_> = model
        .parameter_groups()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        groups,
        [
            "conv1.weight",
            "conv1.bias",
            "bn.gamma",
            "bn.beta",
            "conv2.weight",
            "conv2.bias",
            "output.weight",
            "output.bias"
        ]
    );
    let buffers: Vec<_> = model.buffers().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(buffers, ["bn.running_mean", "bn.running_var"]);

    // One image's outputs do not depend on the batch (in training mode BatchNorm would use the
    // batch's statistics) and equal burn's own inference, `module.valid()`.
    let x = images(12, 1);
    let batch = model.predict(x.view().into_dyn()).unwrap();
    let alone = model
        .predict(x.slice(s![..1, .., .., ..]).into_dyn())
        .unwrap();
    close(
        "alone vs in a batch",
        alone.as_slice().unwrap(),
        batch.row(0).as_slice().unwrap(),
        1e-5,
    );
    let valid = module.valid();
    let want: Vec<f32> = valid
        .forward(tensor(&x, &valid.devices()[0]))
        .to_data()
        .into_vec()
        .unwrap();
    close("vs module.valid()", batch.as_slice().unwrap(), &want, 1e-5);
    // The same for the model of `module.valid()`: the same outputs.
    let model_valid = BurnModel::new(valid, &device, &[1, SIDE, SIDE], Cnn::forward).unwrap();
    assert_eq!(model_valid.training_flags_switched_off(), 0);
    assert_eq!(model_valid.predict(x.view().into_dyn()).unwrap(), batch);
    assert_eq!(stats(&module), before, "predict");

    // Input gradients and per-sample gradients: a sample's alone equal its in the batch.
    let w = Array2::from_shape_fn((12, CLASSES), |(i, j)| ((i + 2 * j) % 3) as f32 - 1.0);
    let g = model.input_gradient(x.view().into_dyn(), w.view()).unwrap();
    let g0 = model
        .input_gradient(
            x.slice(s![..1, .., .., ..]).into_dyn(),
            w.slice(s![..1, ..]),
        )
        .unwrap();
    close(
        "input gradient alone vs in a batch",
        g0.as_slice().unwrap(),
        g.index_axis(Axis(0), 0).to_owned().as_slice().unwrap(),
        1e-5,
    );
    let (p, _) = model
        .predict_and_input_gradient(x.view().into_dyn(), &mut |_| Ok(w.clone()))
        .unwrap();
    close(
        "predict_and_input_gradient",
        p.as_slice().unwrap(),
        batch.as_slice().unwrap(),
        1e-5,
    );
    assert_eq!(stats(&module), before, "input gradients");

    let targets = Targets::Classes((0..12).map(|i| i % CLASSES).collect());
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let rows = model
        .per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
        .unwrap();
    assert_eq!(
        rows.n_params(),
        4 * 9 + 4 + 4 + 4 + 6 * 4 * 9 + 6 + 6 * CLASSES + CLASSES
    );
    assert_eq!(stats(&module), before, "per-sample gradients by rows");

    // Factored: the dense layer's per-sample gradients from one batched pass, the rest by rows;
    // the same values, and sample 0's the same in the batch as alone.
    let factored = BurnModel::new(module.clone(), &device, &[1, SIDE, SIDE], Cnn::forward)
        .unwrap()
        .with_factored_linear(Cnn::forward_taps)
        .unwrap();
    let f = factored
        .per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
        .unwrap();
    assert!(f
        .blocks()
        .iter()
        .any(|b| matches!(b, xai_core::GradBlock::Outer { .. })));
    let (a, b) = (f.to_flat(), rows.to_flat());
    close(
        "factored vs rows",
        a.as_slice().unwrap(),
        b.as_slice().unwrap(),
        1e-5,
    );
    let last = ParamSelection::Groups(vec!["output.weight".into(), "output.bias".into()]);
    let f_last = factored
        .per_sample_grads(x.view().into_dyn(), &targets, &loss, &last)
        .unwrap();
    let r_last = model
        .per_sample_grads(x.view().into_dyn(), &targets, &loss, &last)
        .unwrap();
    close(
        "factored vs rows, dense layer only",
        f_last.to_flat().as_slice().unwrap(),
        r_last.to_flat().as_slice().unwrap(),
        1e-5,
    );
    let alone = factored
        .per_sample_grads(
            x.slice(s![..1, .., .., ..]).into_dyn(),
            &Targets::Classes(vec![0]),
            &loss,
            &last,
        )
        .unwrap();
    close(
        "factored: sample 0 alone vs in the batch",
        alone.to_flat().as_slice().unwrap(),
        f_last.to_flat().row(0).to_owned().as_slice().unwrap(),
        1e-5,
    );
    assert_eq!(stats(&module), before, "factored per-sample gradients");
    // The caller's module is still the training module it was.
    assert!(module.bn.training.is_enabled() && module.dropout.training.is_enabled());
}

/// `xai-models` copy of the CNN with the trained module's inference weights (burn's convolution
/// weights `[out, in, kh, kw]` to `[kh, kw, in, out]`).
fn xai_models_copy(m: &Cnn) -> Network {
    let v = |t: Tensor<1>| -> Vec<f32> { t.to_data().into_vec().unwrap() };
    let conv = |c: &Conv2d| -> xai_models::Conv2d {
        let w = c.weight.val();
        let [o, i, kh, kw] = w.dims();
        let w: Vec<f32> = w.to_data().into_vec().unwrap();
        let mut hwio = vec![0.0; w.len()];
        for a in 0..o {
            for b in 0..i {
                for y in 0..kh {
                    for x in 0..kw {
                        hwio[((y * kw + x) * i + b) * o + a] = w[((a * i + b) * kh + y) * kw + x];
                    }
                }
            }
        }
        xai_models::Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: (kh, kw),
            stride: (1, 1),
            padding: Padding::Valid,
            weight: hwio,
            bias: v(c.bias.as_ref().unwrap().val()),
        }
    };
    let bn = xai_models::BatchNorm {
        gamma: v(m.bn.gamma.val()),
        beta: v(m.bn.beta.val()),
        mean: v(m.bn.running_mean.value()),
        var: v(m.bn.running_var.value()),
        eps: 1e-5,
    };
    let dense = Dense {
        in_features: 6,
        out_features: CLASSES,
        weight: m.output.weight.val().to_data().into_vec().unwrap(),
        bias: v(m.output.bias.as_ref().unwrap().val()),
    };
    let layers = vec![
        ("conv1", Layer::Conv2d(conv(&m.conv1))),
        ("bn", Layer::BatchNorm(bn)),
        ("relu1", Layer::Relu),
        (
            "pool",
            Layer::MaxPool2d(XMaxPool {
                size: (2, 2),
                stride: (2, 2),
                padding: Padding::Valid,
            }),
        ),
        ("conv2", Layer::Conv2d(conv(&m.conv2))),
        ("relu2", Layer::Relu),
        ("dropout", Layer::Dropout(0.5)),
        ("gap", Layer::GlobalAvgPool),
        ("flatten", Layer::Flatten),
        ("output", Layer::Dense(dense)),
    ];
    Network::new(
        "cnn",
        [1, SIDE, SIDE],
        layers
            .into_iter()
            .map(|(name, layer)| NamedLayer {
                name: name.into(),
                layer,
            })
            .collect(),
    )
    .unwrap()
}

#[test]
fn gradient_similarity_equals_the_same_weights_in_xai_models() {
    let (module, device) = trained();
    let net = xai_models_copy(&module.valid());
    let model = BurnModel::new(module.clone(), &device, &[1, SIDE, SIDE], Cnn::forward).unwrap();
    let factored = BurnModel::new(module, &device, &[1, SIDE, SIDE], Cnn::forward)
        .unwrap()
        .with_factored_linear(Cnn::forward_taps)
        .unwrap();
    let x = images(3, 7);
    let p_net = net.predict(x.view().into_dyn()).unwrap();
    let p_burn = model.predict(x.view().into_dyn()).unwrap();
    close(
        "logits",
        p_burn.as_slice().unwrap(),
        p_net.as_slice().unwrap(),
        1e-4,
    );

    let refs = images(24, 8);
    let labels = Targets::Classes((0..24).map(|i| (i * 7) % CLASSES).collect());
    for selection in [
        ParamSelection::All,
        ParamSelection::Groups(vec!["output.weight".into(), "output.bias".into()]),
    ] {
        let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
            .sim_fn(SimilarityFn::GradCos)
            .precompute_grads(true)
            .n_similar(5)
            .param_selection(selection.clone())
            .check()
            .unwrap();
        let scores = |m: &dyn DifferentiableModel| {
            let e = GradientSimilarity::new(m, params.clone())
                .unwrap()
                .fit(refs.clone(), labels.clone())
                .unwrap()
                .explain(x.view().into_dyn(), None)
                .unwrap();
            (
                e.data.scores_by_reference().unwrap(),
                e.data.most_similar_indices,
            )
        };
        let (s_net, top_net) = scores(&net);
        for (what, m) in [
            ("rows", &model as &dyn DifferentiableModel),
            ("factored", &factored),
        ] {
            let (s, top) = scores(m);
            close(
                &format!("grad-sim scores ({what}, {selection:?})"),
                s.as_slice().unwrap(),
                s_net.as_slice().unwrap(),
                1e-3,
            );
            assert_eq!(top.column(0), top_net.column(0), "{what}, {selection:?}");
        }
    }
}

#[test]
fn factored_forward_functions_are_checked() {
    let (module, device) = trained();
    let wrap = || BurnModel::new(module.clone(), &device, &[1, SIDE, SIDE], Cnn::forward).unwrap();
    let err = |r: Result<_, BurnError>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    // No layer recorded.
    let e = err(wrap().with_factored_linear(|m: &Cnn, x, _: &mut LinearTaps| m.forward(x)));
    assert!(e.contains("recorded no dense layer"), "{e}");
    // A name the module does not have.
    let e = err(
        wrap().with_factored_linear(|m: &Cnn, x: Tensor<4>, taps: &mut LinearTaps| {
            let h = m.gap.forward(
                m.relu.forward(
                    m.conv2.forward(
                        m.pool
                            .forward(m.relu.forward(m.bn.forward(m.conv1.forward(x)))),
                    ),
                ),
            );
            taps.linear("head", &m.output, h.flatten(1, 3))
        }),
    );
    assert!(e.contains("no parameter `head.weight`"), "{e}");
    // Not what the plain forward function computes.
    let e = err(wrap()
        .with_factored_linear(|m: &Cnn, x, taps: &mut LinearTaps| m.forward_taps(x, taps) * 2.0));
    assert!(e.contains("must compute the same"), "{e}");
    // Another layer (equal weights, but not the module's) under the module's layer's name.
    let fresh = |p: &Param<Tensor<1>>| Param::initialized(ParamId::new(), p.val().detach());
    let stranger = Linear {
        weight: Param::initialized(ParamId::new(), module.output.weight.val().detach()),
        bias: module.output.bias.as_ref().map(fresh),
    };
    let e = err(wrap().with_factored_linear(
        move |m: &Cnn, x: Tensor<4>, taps: &mut LinearTaps| {
            let h = m.gap.forward(
                m.relu.forward(
                    m.conv2.forward(
                        m.pool
                            .forward(m.relu.forward(m.bn.forward(m.conv1.forward(x)))),
                    ),
                ),
            );
            taps.linear("output", &stranger, h.flatten(1, 3))
        },
    ));
    assert!(e.contains("is not the module's layer `output`"), "{e}");
}
