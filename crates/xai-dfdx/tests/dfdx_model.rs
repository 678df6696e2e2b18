//! DfdxModel on small MLPs and CNNs: shapes, gradients against finite differences, the factored
//! and row-by-row per-sample paths, parameter names, errors.

use dfdx::prelude::*;
use ndarray::{Array2, Array4, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};
use xai_dfdx::conv::{Conv2d, FlattenTo, MaxPool2d};
use xai_dfdx::DfdxModel;
use xai_models::Padding;

type Mlp = (Linear<5, 7>, Tanh, Linear<7, 3>);

fn mlp() -> (Cpu, <Mlp as BuildOnDevice<Cpu, f32>>::Built) {
    let dev: Cpu = Cpu::seed_from_u64(3);
    let m = dev.build_module::<Mlp, f32>();
    (dev, m)
}

fn batch(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0f32..1.0))
}

fn close(a: &ArrayD<f32>, b: &ArrayD<f32>, tol: f32) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn names_shapes_and_predictions() {
    let (dev, m) = mlp();
    let x = batch(4, 5, 1);
    let want = m.forward(dev.tensor_from_vec(x.iter().copied().collect(), (4, Const::<5>)));
    let model = DfdxModel::<_, Rank1<5>>::new(m, &dev).unwrap();
    assert_eq!(model.input_shape(), &[5]);
    assert_eq!(model.n_outputs(), 3);
    let names: Vec<_> = model
        .parameter_groups()
        .into_iter()
        .map(|g| (g.name, g.shape))
        .collect();
    assert_eq!(
        names,
        vec![
            ("0.weight".to_string(), vec![7, 5]),
            ("0.bias".to_string(), vec![7]),
            ("2.weight".to_string(), vec![3, 7]),
            ("2.bias".to_string(), vec![3]),
        ]
    );
    let got = model.predict(x.view().into_dyn()).unwrap();
    assert_eq!(got.iter().copied().collect::<Vec<_>>(), want.as_vec());
    // Wrong shapes are errors, not panics.
    let err = model.predict(batch(2, 4, 0).view().into_dyn()).unwrap_err();
    assert_eq!(err.to_string(), "input has shape [2, 4], expected [n, 5]");
    let w = Array2::<f32>::zeros((4, 2));
    assert!(model.input_gradient(x.view().into_dyn(), w.view()).is_err());
    let t = Targets::Classes(vec![0, 1]);
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    assert!(model
        .per_sample_grads(x.view().into_dyn(), &t, &loss, &ParamSelection::All)
        .is_err());
    let sel = ParamSelection::Groups(vec!["1.weight".into()]);
    let t = Targets::Classes(vec![0, 1, 2, 0]);
    assert!(model
        .per_sample_grads(x.view().into_dyn(), &t, &loss, &sel)
        .unwrap_err()
        .to_string()
        .contains("1.weight"));
}

#[test]
fn input_gradient_matches_finite_differences_and_pullback() {
    let (dev, m) = mlp();
    let model = DfdxModel::<_, Rank1<5>>::new(m, &dev).unwrap();
    let x = batch(3, 5, 2);
    let w = batch(3, 3, 9);
    let g = model.input_gradient(x.view().into_dyn(), w.view()).unwrap();
    let f = |x: &Array2<f32>| -> f64 {
        let y = model.predict(x.view().into_dyn()).unwrap();
        (&y * &w).iter().map(|v| *v as f64).sum()
    };
    let h = 1e-2f32;
    for i in 0..3 {
        for j in 0..5 {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[[i, j]] += h;
            b[[i, j]] -= h;
            let fd = ((f(&a) - f(&b)) / (2.0 * h as f64)) as f32;
            assert!((fd - g[[i, j]]).abs() < 2e-3, "{fd} vs {}", g[[i, j]]);
        }
    }
    // The pullback gives the same outputs and gradient from one pass, with weights computed
    // from the outputs; all-zero weights give a zero gradient.
    let mut seen = None;
    let (out, g2) = model
        .predict_and_input_gradient(x.view().into_dyn(), &mut |o| {
            seen = Some(o.to_owned());
            Ok(w.clone())
        })
        .unwrap();
    assert_eq!(Some(out.clone()), seen);
    assert_eq!(out, model.predict(x.view().into_dyn()).unwrap());
    close(&g2, &g, 1e-6);
    let (_, z) = model
        .predict_and_input_gradient(x.view().into_dyn(), &mut |o| Ok(Array2::zeros(o.raw_dim())))
        .unwrap();
    assert!(z.iter().all(|v| *v == 0.0));
}

#[test]
fn factored_and_row_per_sample_gradients_agree_with_batch_gradients() {
    let (dev, m) = mlp();
    let rows = DfdxModel::<_, Rank1<5>>::new(m.clone(), &dev).unwrap();
    let fact = DfdxModel::<_, Rank1<5>>::with_factored_linear(m.clone(), &dev).unwrap();
    let x = batch(6, 5, 4);
    let t = Targets::Classes(vec![0, 1, 2, 2, 1, 0]);
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let a = rows
        .per_sample_grads(x.view().into_dyn(), &t, &loss, &ParamSelection::All)
        .unwrap();
    let b = fact
        .per_sample_grads(x.view().into_dyn(), &t, &loss, &ParamSelection::All)
        .unwrap();
    assert!(b.stored_floats() < a.stored_floats());
    close(&a.to_flat().into_dyn(), &b.to_flat().into_dyn(), 1e-5);
    // The per-sample gradients add up to the batch's summed gradient from dfdx itself.
    let xt = dev.tensor_from_vec(x.iter().copied().collect(), (6, Const::<5>));
    let logits = m.forward(xt.leaky_trace());
    let labels: Vec<f32> = (0..6)
        .flat_map(|i| (0..3).map(move |c| if [0, 1, 2, 2, 1, 0][i] == c { 1.0 } else { 0.0 }))
        .collect();
    let y = dev.tensor_from_vec(labels, (6, Const::<3>));
    // dfdx's cross_entropy_with_logits_loss is the mean; times n gives the sum.
    let grads = (cross_entropy_with_logits_loss(logits, y) * 6.0).backward();
    let summed = a.to_flat().sum_axis(Axis(0));
    let w0 = grads.get(&m.0.weight).as_vec();
    for (p, q) in summed.iter().take(35).zip(&w0) {
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }
    // A selection keeps only the named groups, in order.
    let sel = ParamSelection::Groups(vec!["2.bias".into(), "0.weight".into()]);
    let s = fact
        .per_sample_grads(x.view().into_dyn(), &t, &loss, &sel)
        .unwrap();
    let names: Vec<_> = s.blocks().iter().map(|b| b.name().to_string()).collect();
    assert_eq!(names, vec!["0.weight", "2.bias"]);
}

/// A CNN from the stable conv op, and the same network in xai-models.
type Cnn = (
    Conv2d<1, 3, 3, 3, f32, Cpu>,
    ReLU,
    MaxPool2d,
    FlattenTo<27>,
    dfdx::nn::modules::Linear<27, 4, f32, Cpu>,
);

#[test]
fn cnn_with_the_stable_conv_op_matches_xai_models() {
    use xai_models::{Conv2d as XConv, Dense, Layer, NamedLayer, Network};
    let dev: Cpu = Cpu::seed_from_u64(5);
    let conv = Conv2d::<1, 3, 3, 3, f32, Cpu>::new(&dev, (1, 1), Padding::Same, 11);
    let lin = dev.build_module::<Linear<27, 4>, f32>();
    let cnn: Cnn = (
        conv.clone(),
        ReLU,
        MaxPool2d {
            size: 2,
            padding: Padding::Valid,
        },
        FlattenTo,
        lin.clone(),
    );
    let model = DfdxModel::<_, Rank3<1, 6, 6>>::new(cnn, &dev).unwrap();
    let groups: Vec<_> = model
        .parameter_groups()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(groups, vec!["0.weight", "0.bias", "4.weight", "4.bias"]);
    // xai-models flattens NHWC; dfdx CHW. Permute the dense rows: xai row (p * 3 + c) is dfdx
    // column (c * 9 + p); xai-models' dense weight is [in, out], dfdx's [out, in].
    let lw = lin.weight.as_vec();
    let mut dense_w = vec![0.0f32; 27 * 4];
    for p in 0..9 {
        for c in 0..3 {
            for o in 0..4 {
                dense_w[(p * 3 + c) * 4 + o] = lw[o * 27 + c * 9 + p];
            }
        }
    }
    let net = Network::new(
        "cnn",
        [1, 6, 6],
        vec![
            NamedLayer {
                name: "conv".into(),
                layer: Layer::Conv2d(XConv {
                    in_channels: 1,
                    out_channels: 3,
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: Padding::Same,
                    weight: conv.weight.as_vec(),
                    bias: conv.bias.as_vec(),
                }),
            },
            NamedLayer {
                name: "relu".into(),
                layer: Layer::Relu,
            },
            NamedLayer {
                name: "pool".into(),
                layer: Layer::MaxPool2d(xai_models::MaxPool2d::new(2, Padding::Valid)),
            },
            NamedLayer {
                name: "flatten".into(),
                layer: Layer::Flatten,
            },
            NamedLayer {
                name: "dense".into(),
                layer: Layer::Dense(Dense {
                    in_features: 27,
                    out_features: 4,
                    weight: dense_w,
                    bias: lin.bias.as_vec(),
                }),
            },
        ],
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let x = Array4::from_shape_fn((3, 1, 6, 6), |_| rng.gen_range(-1.0f32..1.0));
    let xd = x.view().into_dyn();
    close(
        &model.predict(xd.clone()).unwrap().into_dyn(),
        &net.predict(xd.clone()).unwrap().into_dyn(),
        1e-5,
    );
    let w = batch(3, 4, 3);
    close(
        &model.input_gradient(xd.clone(), w.view()).unwrap(),
        &net.input_gradient(xd.clone(), w.view()).unwrap(),
        1e-4,
    );
    // Per-sample gradients of the convolution (row by row through the op's backward pass)
    // equal the network's; the dense blocks are compared through their Gram matrices (the
    // flattening orders differ).
    let t = Targets::Classes(vec![1, 0, 3]);
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let sel = ParamSelection::Groups(vec!["0.weight".into(), "0.bias".into()]);
    let a = model.per_sample_grads(xd.clone(), &t, &loss, &sel).unwrap();
    let sel_net = ParamSelection::Groups(vec!["conv.weight".into(), "conv.bias".into()]);
    let b = net
        .per_sample_grads(xd.clone(), &t, &loss, &sel_net)
        .unwrap();
    close(&a.to_flat().into_dyn(), &b.to_flat().into_dyn(), 1e-4);
    let ga = model
        .per_sample_grads(xd.clone(), &t, &loss, &ParamSelection::All)
        .unwrap();
    let gb = net
        .per_sample_grads(xd, &t, &loss, &ParamSelection::All)
        .unwrap();
    close(
        &ga.gram(&ga).unwrap().into_dyn(),
        &gb.gram(&gb).unwrap().into_dyn(),
        1e-4,
    );
}
