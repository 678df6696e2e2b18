//! GPU against CPU: gradient-similarity fit on 10,000 references and KernelSHAP-sized model
//! batches (1,000 masked images), for the same 784-32-10 MLP as a `BurnModel` on each enabled
//! burn backend and as an `xai-models` `Network` (the workspace's own CPU path).
//!
//! ```text
//! cargo bench -p xai-burn --bench backends                    # CPU: ndarray + xai-models
//! cargo bench -p xai-burn --bench backends --features flex     # + burn's flex CPU backend
//! cargo bench -p xai-burn --bench backends --features cuda    # + burn's CUDA backend
//! cargo bench -p xai-burn --bench backends --features wgpu    # + burn's wgpu backend
//! ```
//! A GPU backend whose device cannot be opened at run time is skipped with a message.
#![allow(deprecated)]
#![allow(missing_docs)] // criterion's generated functions // burn 0.22 deprecates its ndarray backend in favour of `flex`

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use xai_burn::{load_named, BurnModel};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Targets};
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_models::{Dense, Layer, NamedLayer, Network};

#[derive(Module, Debug)]
struct Mlp {
    dense1: Linear,
    relu: Relu,
    dense2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = x.flatten(1, 3);
        burn::tensor::activation::softmax(
            self.dense2
                .forward(self.relu.forward(self.dense1.forward(x))),
            1,
        )
    }
}

fn network() -> Network {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    Network::new(
        "mlp",
        [1, 28, 28],
        vec![
            NamedLayer {
                name: "flatten".into(),
                layer: Layer::Flatten,
            },
            NamedLayer {
                name: "dense1".into(),
                layer: Layer::Dense(Dense::new(784, 32, &mut rng)),
            },
            NamedLayer {
                name: "relu".into(),
                layer: Layer::Relu,
            },
            NamedLayer {
                name: "dense2".into(),
                layer: Layer::Dense(Dense::new(32, 10, &mut rng)),
            },
            NamedLayer {
                name: "softmax".into(),
                layer: Layer::Softmax,
            },
        ],
    )
    .expect("a valid MLP")
}

/// The devices to compare: always burn-ndarray, plus flex and each GPU backend compiled in.
fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)] // GPU backends are pushed when their features are on
    let mut d = vec![("burn-ndarray", Device::ndarray())];
    #[cfg(feature = "flex")]
    d.push(("burn-flex", Device::flex()));
    #[cfg(feature = "cuda")]
    d.push(("burn-cuda", Device::cuda(0)));
    #[cfg(feature = "wgpu")]
    d.push(("burn-wgpu", Device::wgpu(Default::default())));
    d
}

fn bench(c: &mut Criterion) {
    let net = network();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let refs = Array4::from_shape_fn((10_000, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
    let labels = Targets::Classes((0..10_000).map(|i| i % 10).collect());
    let batch = Array4::from_shape_fn((1000, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
    // The whole backward pass runs per reference; only the last layer's gradients are kept, so
    // that 10,000 of them fit in memory on every backend.
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .param_selection(ParamSelection::Groups(vec![
            "dense2.weight".into(),
            "dense2.bias".into(),
        ]))
        .check()
        .expect("valid parameters");

    let mut models: Vec<(String, Box<dyn DifferentiableModel>)> =
        vec![("xai-models".into(), Box::new(net.clone()))];
    let values = net_values(&net);
    for (name, device) in devices() {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let m = Mlp {
                dense1: LinearConfig::new(784, 32).init(&device),
                relu: Relu::new(),
                dense2: LinearConfig::new(32, 10).init(&device),
            };
            let m = load_named(m, &values, &device).expect("same shapes");
            BurnModel::new(m, &device, &[1, 28, 28], Mlp::forward).expect("a valid model")
        }));
        match built {
            Ok(m) => models.push((name.into(), Box::new(m))),
            Err(_) => eprintln!("{name}: no usable device at run time, skipped"),
        }
    }
    let mut g = c.benchmark_group("backends");
    g.sample_size(10);
    for (name, model) in &models {
        g.bench_function(format!("kernel_shap_batch_1000/{name}"), |b| {
            b.iter(|| model.predict(batch.view().into_dyn()).expect("predict"))
        });
        g.bench_function(format!("grad_sim_fit_10000/{name}"), |b| {
            b.iter(|| {
                GradientSimilarity::new(model.as_ref(), params.clone())
                    .expect("explainer")
                    .fit(refs.clone(), labels.clone())
                    .expect("fit")
                    .n_references()
            })
        });
    }
    g.finish();
}

fn net_values(net: &Network) -> std::collections::HashMap<String, xai_burn::NamedTensor> {
    net.parameter_groups()
        .into_iter()
        .zip(net.param_slices())
        .map(|(g, v)| (g.name, (g.shape, v.to_vec())))
        .collect()
}

criterion_group!(benches, bench);
criterion_main!(benches);
