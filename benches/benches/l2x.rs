//! L2X: explanation throughput for 28x28 MNIST images with omnixai's default models (11x11 patch
//! grid, k = 10), explaining the MNISTNet.
//!
//! Uses the shipped explainer (`models/l2x_mnist_net`) and classifier
//! (`models/mnist_net.safetensors`) with real test images when they exist; otherwise an
//! explainer trained for one epoch on 256 random images for an untrained MNISTNet (throughput
//! does not depend on the weights).
//!
//! * `explain/<batch>`: [`L2x::explain`], black-box calls included (selection forward, top-k,
//!   importance map, approximator on the selection, black box on the images).
//! * `select/<batch>`: the selection model and hard top-k alone.
//!
//! Run with `cargo bench -p xai-benches --bench l2x`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{s, Array4};
use rand::{rngs::StdRng, Rng, SeedableRng};
use xai_datasets::{Mnist, Scaling};
use xai_l2x::L2x;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_testkit::l2x_mnist::{default_mnist_explainer_dir, mnist_params};

fn setup() -> (L2x, xai_models::Network, Array4<f32>) {
    let images = Mnist::load_default()
        .map(|m| m.test.head(256).images_f32(Scaling::UnitInterval))
        .unwrap_or_else(|_| {
            let mut rng = StdRng::seed_from_u64(0);
            Array4::from_shape_simple_fn((256, 1, 28, 28), || rng.gen_range(0.0..1.0f32))
        });
    let dir = default_mnist_explainer_dir();
    if let (Ok(net), true) = (load_pretrained(ModelKind::MnistNet), L2x::exists(&dir)) {
        if let Ok(l2x) = L2x::load(&dir) {
            return (l2x, net, images);
        }
    }
    let net = ModelKind::MnistNet.build(0);
    let l2x = mnist_params(ModelKind::MnistNet, 10, 0)
        .num_epochs(1)
        .progress(false)
        .check()
        .expect("params")
        .fit(images.view(), &net)
        .expect("training");
    (l2x, net, images)
}

fn bench_explain(c: &mut Criterion) {
    let (l2x, net, images) = setup();
    let mut group = c.benchmark_group("l2x_mnist");
    group.sample_size(10);
    for batch in [1usize, 32, 256] {
        let x = images.slice(s![0..batch, .., .., ..]);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("explain", batch), |b| {
            b.iter(|| l2x.explain(&net, x).expect("explain"))
        });
        group.bench_function(BenchmarkId::new("select", batch), |b| {
            b.iter(|| l2x.select(x, 10).expect("select"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_explain);
criterion_main!(benches);
