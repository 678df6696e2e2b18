//! Wall-clock timing of the operations the explainers call most, per shipped network: a batched
//! `predict` (KernelSHAP, L2X), a batch-1 `predict` and input gradient (CEM), and batched
//! per-sample gradients (gradient similarity). Medians of repeated runs.
//!
//! `cargo run --release -p xai-models --example model_timing -- [model ...]`
//! (models: alibi_cnn cem_cnn cem_autoencoder mnist_net binary_cnn resnet_bn; default all)

use std::time::Instant;

use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, ParamSelection, Predictor, Targets};
use xai_models::zoo::ModelKind;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[reps / 2]
}

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let kinds: Vec<ModelKind> = if names.is_empty() {
        ModelKind::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| ModelKind::from_name(n).unwrap_or_else(|| panic!("unknown model {n}")))
            .collect()
    };
    println!("threads: {}", rayon::current_num_threads());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for kind in kinds {
        let net = kind.build(0);
        let x1000 = Array4::from_shape_fn((1000, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
        let x1 = x1000.slice(ndarray::s![0..1, .., .., ..]).to_owned();
        let k = net.n_outputs();
        let w1 = Array2::from_elem((1, k), 1.0f32);
        let predict_1000 = median_secs(5, || {
            net.predict(x1000.view().into_dyn()).unwrap();
        });
        let predict_1 = median_secs(201, || {
            net.predict(x1.view().into_dyn()).unwrap();
        });
        let grad_1 = median_secs(201, || {
            net.input_gradient(x1.view().into_dyn(), w1.view()).unwrap();
        });
        let x256 = x1000.slice(ndarray::s![0..256, .., .., ..]).to_owned();
        let loss = kind.loss();
        let targets = if k == 784 {
            Targets::Values(x256.clone().into_shape_with_order((256, 784)).unwrap())
        } else {
            Targets::Classes((0..256).map(|i| i % k).collect())
        };
        let psg_256 = median_secs(5, || {
            net.per_sample_grads(
                x256.view().into_dyn(),
                &targets,
                &loss,
                &ParamSelection::All,
            )
            .unwrap();
        });
        println!(
            "{:16} predict 1000: {:8.2} ms   predict 1: {:7.3} ms   input grad 1: {:7.3} ms   per-sample grads 256: {:8.2} ms",
            kind.name(),
            predict_1000 * 1e3,
            predict_1 * 1e3,
            grad_1 * 1e3,
            psg_256 * 1e3
        );
    }
}
