//! Speed of the stable-Rust layers on alibi's MNIST CNN (412,778 parameters):
//! one Adam training step at batch 256 and 1 (`Network::train_gradients`, as `train` runs it;
//! at 256 also through `forward_trace` + `backward`), a batched forward, and batched per-sample
//! gradients.
//!
//! `cargo bench -p xai-benches --bench models`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};
use xai_models::zoo::ModelKind;
use xai_models::Adam;

fn images(n: usize, seed: u64) -> Array4<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array4::from_shape_fn((n, 1, 28, 28), |_| rng.gen_range(0.0..1.0))
}

fn bench_alibi_cnn(c: &mut Criterion) {
    let mut group = c.benchmark_group("alibi_cnn");
    group.sample_size(10);
    let loss = Loss::CrossEntropy(OutputKind::Probabilities);
    for batch in [256usize, 1] {
        let x = images(batch, 1);
        let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        let targets = Targets::Classes(labels);
        group.bench_function(format!("train_step_batch_{batch}"), |b| {
            // What `xai_models::train` runs per step: forward with dropout, loss and backward
            // chunk by chunk (fused softmax cross-entropy), then Adam.
            let mut net = ModelKind::AlibiCnn.build(0);
            let mut adam = Adam::new(1e-3);
            let mut rng = rand::rngs::StdRng::seed_from_u64(2);
            b.iter(|| {
                let step = net
                    .train_gradients(x.view(), &targets, &loss, &mut rng)
                    .unwrap();
                adam.step(net.param_slices_mut(), &step.params).unwrap();
            })
        });
        if batch > 1 {
            group.bench_function(format!("train_step_trace_batch_{batch}"), |b| {
                // The same step through a whole-batch trace (`forward_trace` then `backward`,
                // as L2X drives its networks): every chunk's activations are alive at once.
                let mut net = ModelKind::AlibiCnn.build(0);
                let mut adam = Adam::new(1e-3);
                let mut rng = rand::rngs::StdRng::seed_from_u64(2);
                b.iter(|| {
                    let trace = net.forward_trace(x.view(), Some(&mut rng)).unwrap();
                    let out =
                        Array2::from_shape_vec((batch, 10), trace.output_flat().to_vec()).unwrap();
                    let (_, mut g) = loss.value_and_grad(out.view(), &targets).unwrap();
                    g /= batch as f32;
                    let grads = net.backward(&trace, g.view(), false).unwrap();
                    adam.step(net.param_slices_mut(), &grads.params).unwrap();
                })
            });
        }
    }
    let net = ModelKind::AlibiCnn.build(0);
    let x = images(1000, 3);
    group.bench_function("predict_1000", |b| {
        b.iter(|| net.predict(x.view().into_dyn()).unwrap())
    });
    let x = images(256, 4);
    let t = Targets::Classes((0..256).map(|i| i % 10).collect());
    group.bench_function("per_sample_grads_256_all_params", |b| {
        b.iter_batched(
            || (),
            |_| {
                net.per_sample_grads(x.view().into_dyn(), &t, &loss, &ParamSelection::All)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_alibi_cnn);
criterion_main!(benches);
