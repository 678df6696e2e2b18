//! BurnModel on burn's ndarray backend: names, shapes, gradients against finite differences,
//! per-sample gradients against burn's own batch gradient, errors; and the cross-framework
//! comparison with an xai-models MLP whose weights move through safetensors.
#![allow(deprecated)] // burn 0.22 deprecates its ndarray backend in favour of `flex`

#[path = "../../xai-dfdx/tests/common/cross.rs"]
mod cross;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use ndarray::{Array2, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use xai_burn::{load_named, read_safetensors, BurnModel};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    activation: Relu,
    output: Linear,
}

impl Mlp {
    fn new(d_in: usize, d_hidden: usize, d_out: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(d_in, d_hidden).init(device),
            activation: Relu::new(),
            output: LinearConfig::new(d_hidden, d_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output
            .forward(self.activation.forward(self.hidden.forward(x)))
    }
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

fn small() -> BurnModel<Mlp, fn(&Mlp, Tensor<2>) -> Tensor<2>, 2> {
    let device = Device::ndarray();
    Device::seed(&device, 7);
    let m = Mlp::new(5, 6, 3, &device);
    BurnModel::new(
        m,
        &device,
        &[5],
        Mlp::forward as fn(&Mlp, Tensor<2>) -> Tensor<2>,
    )
    .unwrap()
}

#[test]
fn names_shapes_errors() {
    let model = small();
    assert_eq!(model.n_outputs(), 3);
    let names: Vec<_> = model
        .parameter_groups()
        .into_iter()
        .map(|g| (g.name, g.shape))
        .collect();
    assert_eq!(
        names,
        vec![
            ("hidden.weight".to_string(), vec![5, 6]),
            ("hidden.bias".to_string(), vec![6]),
            ("output.weight".to_string(), vec![6, 3]),
            ("output.bias".to_string(), vec![3]),
        ]
    );
    let err = model.predict(batch(2, 4, 0).view().into_dyn()).unwrap_err();
    assert_eq!(err.to_string(), "input has shape [2, 4], expected [n, 5]");
    let x = batch(4, 5, 1);
    assert!(model
        .input_gradient(x.view().into_dyn(), Array2::zeros((4, 2)).view())
        .is_err());
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    assert!(model
        .per_sample_grads(
            x.view().into_dyn(),
            &Targets::Classes(vec![0]),
            &loss,
            &ParamSelection::All
        )
        .is_err());
    // A wrong rank for the forward function is an error at construction.
    let device = Device::ndarray();
    let m = Mlp::new(5, 6, 3, &device);
    assert!(BurnModel::new(m, &device, &[1, 5], |m: &Mlp, x: Tensor<2>| m.forward(x)).is_err());
}

#[test]
fn input_gradient_matches_finite_differences_and_pullback() {
    let model = small();
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
    let (out, g2) = model
        .predict_and_input_gradient(x.view().into_dyn(), &mut |_| Ok(w.clone()))
        .unwrap();
    assert_eq!(out, model.predict(x.view().into_dyn()).unwrap());
    close(&g2, &g, 1e-6);
}

#[test]
fn per_sample_gradients_add_up_to_the_batch_gradient() {
    let model = small();
    let x = batch(5, 5, 4);
    let classes = vec![0, 2, 1, 1, 0];
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let g = model
        .per_sample_grads(
            x.view().into_dyn(),
            &Targets::Classes(classes.clone()),
            &loss,
            &ParamSelection::All,
        )
        .unwrap();
    assert_eq!(g.n_samples(), 5);
    // burn's own gradient of the summed loss through the same outputs' loss gradient.
    let out = model.predict(x.view().into_dyn()).unwrap();
    let (_, dl) = loss
        .value_and_grad(out.view(), &Targets::Classes(classes))
        .unwrap();
    let device = model.device().clone();
    let xt = Tensor::<2>::from_data(
        TensorData::new(x.iter().copied().collect::<Vec<_>>(), [5, 5]),
        &device,
    );
    let wt = Tensor::<2>::from_data(
        TensorData::new(dl.iter().copied().collect::<Vec<_>>(), [5, 3]),
        &device,
    );
    let grads = (model.module().forward(xt) * wt).sum().backward();
    let want: Vec<f32> = model
        .module()
        .hidden
        .weight
        .val()
        .grad(&grads)
        .unwrap()
        .to_data()
        .into_vec()
        .unwrap();
    let summed = g.to_flat().sum_axis(Axis(0));
    for (p, q) in summed.iter().zip(&want) {
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }
    let sel = ParamSelection::Groups(vec!["output.bias".into()]);
    let b = model
        .per_sample_grads(
            x.view().into_dyn(),
            &Targets::Classes(vec![0, 2, 1, 1, 0]),
            &loss,
            &sel,
        )
        .unwrap();
    assert_eq!(b.n_params(), 3);
}

#[derive(Module, Debug)]
struct ImageMlp {
    dense1: Linear,
    relu: Relu,
    dense2: Linear,
}

impl ImageMlp {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = x.flatten(1, 3);
        let h = self.relu.forward(self.dense1.forward(x));
        burn::tensor::activation::softmax(self.dense2.forward(h), 1)
    }
}

#[test]
fn burn_copy_of_an_xai_models_mlp_explains_the_same() {
    let r = cross::trained_mlp();
    let device = Device::ndarray();
    let m = ImageMlp {
        dense1: LinearConfig::new(784, cross::HIDDEN).init(&device),
        relu: Relu::new(),
        dense2: LinearConfig::new(cross::HIDDEN, 10).init(&device),
    };
    // xai-models' names and [in, out] dense weights are burn's: no renaming, no transpose.
    let values = read_safetensors(&r.safetensors).unwrap();
    let m = load_named(m, &values, &device).unwrap();
    let mut partial = values.clone();
    partial.remove("dense2.bias");
    let err = load_named(m.clone(), &partial, &device).unwrap_err();
    assert!(err.to_string().contains("dense2.bias"), "{err}");
    let model = BurnModel::new(m, &device, &[1, 28, 28], ImageMlp::forward).unwrap();
    cross::assert_same_explanations(&r, &model);
}

/// A small CNN: burn-ndarray's convolution runs its output channels on rayon, also for a batch
/// of one, which the row path's backward passes are.
#[derive(Module, Debug)]
struct SmallCnn {
    conv: burn::nn::conv::Conv2d,
    relu: Relu,
    output: Linear,
}

impl SmallCnn {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.relu.forward(self.conv.forward(x));
        self.output.forward(h.flatten(1, 3))
    }
}

/// Per-sample gradients of many rows of a CNN, called from inside a multi-threaded rayon pool (as
/// gradient similarity does), finish: burn holds its global autodiff lock during `backward`
/// while the convolution's kernels run on rayon, so rows run on rayon's threads deadlocked (a
/// worker stole another row, whose forward pass waited for the lock its own thread held). A
/// watchdog turns a hang into a failure.
#[test]
fn per_sample_gradients_of_many_rows_on_a_rayon_pool_finish() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let device = Device::ndarray();
        Device::seed(&device, 3);
        let m = SmallCnn {
            conv: burn::nn::conv::Conv2dConfig::new([1, 8], [3, 3]).init(&device),
            relu: Relu::new(),
            output: LinearConfig::new(8 * 10 * 10, 10).init(&device),
        };
        let model = BurnModel::new(m, &device, &[1, 12, 12], SmallCnn::forward).unwrap();
        let x = batch(96, 144, 5)
            .into_shape_with_order((96, 1, 12, 12))
            .unwrap();
        let targets = Targets::Classes((0..96).map(|i| i % 10).collect());
        let loss = Loss::CrossEntropy(OutputKind::Logits);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let g = pool.install(|| {
            model.per_sample_grads(x.view().into_dyn(), &targets, &loss, &ParamSelection::All)
        });
        tx.send(g.map(|g| g.n_samples())).unwrap();
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("per-sample gradients did not finish within 300 s (deadlock?)");
    assert_eq!(got.unwrap(), 96);
}
