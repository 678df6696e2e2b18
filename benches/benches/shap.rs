//! KernelSHAP on SLIC superpixels (xai-shap): time per explained MNIST image at dianna's
//! settings (`n_segments = 200`, `compactness = 10`, `sigma = 0`, one label) and
//! `nsamples = 1000`.
//!
//! * `mlp32`: an untrained 784-32-10 softmax MLP as a closure, so the estimator's own cost
//!   (SLIC, sampling, masking, normal equations, solve) is visible next to a cheap model;
//!   background 0 (dianna's MNIST example: segments of pure background are skipped) and the
//!   image mean (no segment skipped, 196 in the regression), default estimator and shap's.
//! * `linear`: a linear closure model, nearly free: the estimator's overhead alone.
//! * `alibi_cnn`: the shipped alibi MNIST CNN (`models/alibi_cnn.safetensors`), skipped when
//!   the weights are missing: 1002 model evaluations per image dominate.
//! * `slic_28x28`: the segmentation alone.
//!
//! Run with `cargo bench -p xai-benches --bench shap`.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{Array1, Array2, Array3, ArrayViewD, Axis, Ix2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use xai_core::{FnPredictor, Predictor};
use xai_datasets::{Mnist, Scaling};
use xai_shap::{Background, ImageKernelShapParams, KernelShapParams, SlicParams};

fn mnist_digit() -> Array3<f32> {
    match Mnist::load_default() {
        Ok(m) => m
            .test
            .images_f32(Scaling::UnitInterval)
            .index_axis(Axis(0), 0)
            .to_owned(),
        // a synthetic stroke when the data is missing
        Err(_) => Array3::from_shape_fn((1, 28, 28), |(_, y, x)| {
            if (x as i32 - y as i32).abs() < 3 && (6..22).contains(&y) {
                1.0
            } else {
                0.0
            }
        }),
    }
}

fn softmax_rows(mut z: Array2<f32>) -> Array2<f32> {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - max).exp());
        let s = row.sum();
        row /= s;
    }
    z
}

fn flat(x: ArrayViewD<'_, f32>) -> Array2<f32> {
    let n = x.shape()[0];
    x.to_shape((n, 784))
        .expect("[n, 1, 28, 28]")
        .into_dimensionality::<Ix2>()
        .expect("2-D")
        .to_owned()
}

fn mlp32() -> impl Predictor {
    let mut rng = StdRng::seed_from_u64(1);
    let w1 = Array2::from_shape_fn((784, 32), |_| rng.gen_range(-0.1f32..0.1));
    let b1 = Array1::from_shape_fn(32, |_| rng.gen_range(-0.1f32..0.1));
    let w2 = Array2::from_shape_fn((32, 10), |_| rng.gen_range(-0.5f32..0.5));
    FnPredictor::new(vec![1, 28, 28], 10, move |x: ArrayViewD<'_, f32>| {
        let h = (flat(x).dot(&w1) + &b1).mapv(|v| v.max(0.0));
        Ok(softmax_rows(h.dot(&w2)))
    })
}

fn linear() -> impl Predictor {
    FnPredictor::new(vec![1, 28, 28], 2, |x: ArrayViewD<'_, f32>| {
        let s = flat(x).sum_axis(Axis(1));
        Ok(ndarray::stack![Axis(1), s, -&s])
    })
}

fn params(shap: KernelShapParams, background: Background) -> ImageKernelShapParams {
    ImageKernelShapParams::new()
        .kernel_shap(shap)
        .labels(vec![0])
        .nsamples(1000)
        .n_segments(200)
        .compactness(10.0)
        .sigma(0.0)
        .background(background)
}

fn bench_kernelshap(c: &mut Criterion) {
    let image = mnist_digit();
    let mut group = c.benchmark_group("kernelshap_mnist_seg200_n1000");
    group.sample_size(20);
    let mlp = mlp32();
    let lin = linear();
    let cases: Vec<(&str, &dyn Predictor, KernelShapParams, Background)> = vec![
        (
            "mlp32/default/bg0",
            &mlp,
            KernelShapParams::new(),
            Background::Value(0.0),
        ),
        (
            "mlp32/shap/bg0",
            &mlp,
            KernelShapParams::shap_compatible(),
            Background::Value(0.0),
        ),
        (
            "mlp32/default/mean",
            &mlp,
            KernelShapParams::new(),
            Background::ChannelMean,
        ),
        (
            "mlp32/shap/mean",
            &mlp,
            KernelShapParams::shap_compatible(),
            Background::ChannelMean,
        ),
        (
            "linear/default/mean",
            &lin,
            KernelShapParams::new(),
            Background::ChannelMean,
        ),
    ];
    for (name, model, shap, background) in cases {
        let p = params(shap, background).check().expect("valid params");
        group.bench_function(name, |b| {
            b.iter(|| p.explain(model, image.view()).expect("explanation"))
        });
    }
    group.finish();

    if let Ok(cnn) = xai_models::zoo::load_pretrained(xai_models::zoo::ModelKind::AlibiCnn) {
        let mut group = c.benchmark_group("kernelshap_mnist_seg200_n1000_alibi_cnn");
        group.sample_size(10);
        for (name, shap) in [
            ("default/bg0", KernelShapParams::new()),
            ("shap/bg0", KernelShapParams::shap_compatible()),
        ] {
            let p = params(shap, Background::Value(0.0))
                .check()
                .expect("valid params");
            group.bench_function(name, |b| {
                b.iter(|| p.explain(&cnn, image.view()).expect("explanation"))
            });
        }
        group.finish();
    }
}

fn bench_slic(c: &mut Criterion) {
    let image = mnist_digit();
    let p = SlicParams::new()
        .n_segments(200)
        .check()
        .expect("valid params");
    c.bench_function("slic_28x28_n200", |b| {
        b.iter(|| p.segment(image.view()).expect("segmentation"))
    });
}

criterion_group!(benches, bench_kernelshap, bench_slic);
criterion_main!(benches);
