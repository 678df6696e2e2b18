//! CEM: one explanation on small models, white-box and black-box, single instance and a batch
//! of instances in lock-step, and the bare FISTA step at MNIST size (784 features).
//!
//! * `bars8`: the toy classifier of 8x8 bar images (64 inputs, 12 tanh units, 3 classes).
//! * `mlp784`: an untrained 784-32-10 softmax MLP on 28x28 inputs, to measure CEM's own
//!   per-iteration overhead at MNIST size (the shipped CNN is measured by the lead later).
//!
//! * `alibi_cnn`: the architecture of alibi's MNIST example (CNN, 412,778 parameters, and the
//!   5,250-parameter convolutional autoencoder) from `xai_models::zoo`, untrained (the cost
//!   per iteration does not depend on the weights), with the seed's settings but 50 iterations
//!   of one c-step: multiply by 200 for the seed's 10 x 1000 iterations.
//!
//! * `seed`: the acceptance measurement. The shipped (trained) `cem_cnn` and `cem_autoencoder`,
//!   MNIST test image 4 (the seed's), the seed's settings in full (10 c-steps x 1000
//!   iterations): one PN and one PP explanation, with and without the autoencoder.
//!
//! Run with `cargo bench -p xai-benches --bench cem` (`-- cem_seed` for the seed group only;
//! about four minutes).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::{s, ArrayD};
use rand::{rngs::StdRng, Rng, SeedableRng};
use xai_cem::fista::{fista_step, FistaGeometry, Projection};
use xai_cem::{Cem, CemParams, Mode};
use xai_core::{DifferentiableModel, FnPredictor, Predictor};
use xai_testkit::cem_toy::{self as toy, OutputActivation, TwoLayerNet};

fn bars_budget(mode: Mode) -> CemParams {
    CemParams::alibi_mnist_example(mode)
        .gamma(0.0)
        .c_init(10.0)
        .c_steps(2)
        .max_iterations(200)
}

fn bench_bars(c: &mut Criterion) {
    let (model, train, _) = toy::trained_bar_classifier(8, 12, 7).expect("toy classifier");
    let autoencoder = toy::trained_autoencoder(&train, 16, 11).expect("toy autoencoder");
    let one = train.slice(s![0..1, .., .., ..]).to_owned().into_dyn();
    let eight = train.slice(s![0..8, .., .., ..]).to_owned().into_dyn();
    let mut group = c.benchmark_group("cem_bars8");
    group.sample_size(10);
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        let params = bars_budget(mode).check().expect("params");
        let cem = Cem::white_box(params.clone(), &model).expect("cem");
        group.bench_function(BenchmarkId::new("white_box_2x200it", mode), |b| {
            b.iter(|| cem.explain_batch(one.view(), None).expect("explain"))
        });
        group.bench_function(BenchmarkId::new("white_box_batch8_2x200it", mode), |b| {
            b.iter(|| cem.explain_batch(eight.view(), None).expect("explain"))
        });
        let with_ae = bars_budget(mode).gamma(1.0).check().expect("params");
        let cem_ae = Cem::white_box(with_ae, &model)
            .expect("cem")
            .with_autoencoder(&autoencoder)
            .expect("autoencoder");
        group.bench_function(BenchmarkId::new("white_box_ae_2x200it", mode), |b| {
            b.iter(|| cem_ae.explain_batch(one.view(), None).expect("explain"))
        });
        let black = FnPredictor::new(model.input_shape().to_vec(), 3, |x| model.predict(x));
        let cem_black = Cem::black_box(params, &black).expect("cem");
        group.bench_function(BenchmarkId::new("black_box_2x200it", mode), |b| {
            b.iter(|| cem_black.explain_batch(one.view(), None).expect("explain"))
        });
    }
    group.finish();
}

fn bench_mnist_sized(c: &mut Criterion) {
    let model = TwoLayerNet::new(&[1, 28, 28], 32, 10, OutputActivation::Softmax, 1);
    let mut rng = StdRng::seed_from_u64(2);
    let x = ArrayD::from_shape_fn(vec![1, 1, 28, 28], |_| {
        if rng.gen_bool(0.2) {
            rng.gen_range(0.0f32..0.5)
        } else {
            -0.5
        }
    });
    let mut group = c.benchmark_group("cem_mlp784");
    group.sample_size(10);
    let params = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .gamma(0.0)
        .c_steps(1)
        .max_iterations(1000)
        .check()
        .expect("params");
    let cem = Cem::white_box(params, &model).expect("cem");
    group.bench_function("pn_white_box_1x1000it", |b| {
        b.iter(|| cem.explain_batch(x.view(), None).expect("explain"))
    });

    // The bare FISTA step (gradient already computed), 784 features.
    let f = 784;
    let x0: Vec<f32> = x.iter().copied().collect();
    let no_info = vec![-1.0f32; f];
    let (min, max) = (vec![-0.5f32; f], vec![0.5f32; f]);
    let grad: Vec<f32> = (0..f).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
    let geometry = FistaGeometry {
        anchor: &x0,
        min: &min,
        max: &max,
        beta: 0.1,
        projection: Projection::AddOnly {
            original: &x0,
            no_info: &no_info,
        },
    };
    let mut xs = x0.clone();
    let mut ys = x0.clone();
    let mut step = 0usize;
    group.sample_size(50);
    group.bench_function("fista_step_784", |b| {
        b.iter(|| {
            step += 1;
            fista_step(&geometry, &mut xs, &mut ys, &grad, 1e-4, step % 1000 + 1);
        })
    });
    group.finish();
}

fn bench_alibi_cnn(c: &mut Criterion) {
    use xai_models::zoo::ModelKind;
    let cnn = ModelKind::CemCnn.build(0);
    let autoencoder = ModelKind::CemAutoencoder.build(1);
    let mut rng = StdRng::seed_from_u64(3);
    let x = ArrayD::from_shape_fn(vec![1, 1, 28, 28], |_| {
        if rng.gen_bool(0.2) {
            rng.gen_range(0.0f32..0.5)
        } else {
            -0.5
        }
    });
    let mut group = c.benchmark_group("cem_alibi_cnn");
    group.sample_size(10);
    for (name, with_ae) in [("pn_1x50it", false), ("pn_ae_1x50it", true)] {
        let params = CemParams::alibi_mnist_example(Mode::PertinentNegative)
            .c_steps(1)
            .max_iterations(50)
            .check()
            .expect("params");
        let mut cem = Cem::white_box(params, &cnn).expect("cem");
        if with_ae {
            cem = cem.with_autoencoder(&autoencoder).expect("autoencoder");
        }
        group.bench_function(name, |b| {
            b.iter(|| cem.explain_batch(x.view(), None).expect("explain"))
        });
    }
    // Eight instances in lock-step: every model call evaluates all eight.
    let views: Vec<_> = (0..8).map(|_| x.view()).collect();
    let x8 = ndarray::concatenate(ndarray::Axis(0), &views).expect("stack");
    let params = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .c_steps(1)
        .max_iterations(50)
        .check()
        .expect("params");
    let cem = Cem::white_box(params, &cnn).expect("cem");
    group.bench_function("pn_batch8_1x50it", |b| {
        b.iter(|| cem.explain_batch(x8.view(), None).expect("explain"))
    });
    // The model calls one white-box iteration makes: the classifier on [x_{k+1}; y_{k+1}], its
    // vector-Jacobian product at y_k, and (with gamma > 0) the autoencoder's forward pass and
    // vector-Jacobian product at y_k.
    let x2 = ndarray::concatenate(ndarray::Axis(0), &[x.view(), x.view()]).expect("stack");
    let weights = ndarray::Array2::from_shape_fn((1, 10), |(_, j)| j as f32 - 4.5);
    let ae_weights = ndarray::Array2::from_elem((1, 784), 0.01f32);
    group.bench_function("call_cnn_predict_2", |b| {
        b.iter(|| cnn.predict(x2.view()).expect("predict"))
    });
    group.bench_function("call_cnn_input_gradient_1", |b| {
        b.iter(|| cnn.input_gradient(x.view(), weights.view()).expect("vjp"))
    });
    group.bench_function("call_ae_predict_1", |b| {
        b.iter(|| autoencoder.predict(x.view()).expect("predict"))
    });
    group.bench_function("call_ae_input_gradient_1", |b| {
        b.iter(|| {
            autoencoder
                .input_gradient(x.view(), ae_weights.view())
                .expect("vjp")
        })
    });
    group.finish();
}

fn bench_seed(c: &mut Criterion) {
    use xai_datasets::Mnist;
    use xai_models::zoo::{load_pretrained, ModelKind};
    let mnist = Mnist::load_default().expect("MNIST under data/mnist");
    let x = mnist
        .test
        .subset(&[4])
        .expect("test image 4")
        .images_f32(ModelKind::CemCnn.scaling())
        .into_dyn();
    let cnn = load_pretrained(ModelKind::CemCnn).expect("shipped cem_cnn");
    let ae = load_pretrained(ModelKind::CemAutoencoder).expect("shipped cem_autoencoder");
    let mut group = c.benchmark_group("cem_seed");
    // Each explanation is the seed's 10,000 FISTA iterations (seconds): the fewest samples
    // criterion allows, and no extra time for them.
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(1));
    group.measurement_time(std::time::Duration::from_secs(1));
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        for with_ae in [true, false] {
            let mut params = CemParams::alibi_mnist_example(mode);
            if !with_ae {
                params = params.gamma(0.0);
            }
            let mut cem = Cem::white_box(params.check().expect("params"), &cnn).expect("cem");
            if with_ae {
                cem = cem.with_autoencoder(&ae).expect("autoencoder");
            }
            let name = format!("{mode}_{}", if with_ae { "with_ae" } else { "no_ae" });
            group.bench_function(name, |b| {
                b.iter(|| cem.explain_batch(x.view(), None).expect("explain"))
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_bars,
    bench_mnist_sized,
    bench_alibi_cnn,
    bench_seed
);
criterion_main!(benches);
