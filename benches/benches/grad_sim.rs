//! Gradient similarity: the fast path (batched per-sample gradients in factored form, scores
//! from block-wise gram products) against the naive path (one instance at a time, flattened
//! gradients), in the same run, on a small softmax MLP (64 inputs, 64 tanh units, 10 classes:
//! 4,810 parameters).
//!
//! The last group repeats the comparison on alibi's MNIST CNN.
//!
//! Run with `cargo bench -p xai-benches --bench grad_sim`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::{s, ArrayD};
use xai_core::{Loss, OutputKind, Targets};
use xai_grad_sim::naive::naive_scores;
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_testkit::grad_sim_toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};

const N_FEATURES: usize = 64;
const N_CLASSES: usize = 10;
const N_TEST: usize = 8;

struct Fixture {
    model: TwoLayerMlp,
    x_ref: ArrayD<f32>,
    y_ref: Targets,
    x_test: ArrayD<f32>,
    y_test: Targets,
}

fn fixture(n_ref: usize) -> Fixture {
    let n_per_class = (n_ref + N_TEST).div_ceil(N_CLASSES);
    let (x, labels) = gaussian_blobs(n_per_class, N_CLASSES, N_FEATURES, 1.0, 0.5, 3);
    let model = TwoLayerMlp::new_random(
        vec![N_FEATURES],
        64,
        N_CLASSES,
        OutputActivation::Softmax,
        5,
    )
    .expect("valid model sizes");
    Fixture {
        model,
        x_ref: x.slice(s![..n_ref, ..]).to_owned().into_dyn(),
        y_ref: Targets::Classes(labels[..n_ref].to_vec()),
        x_test: x.slice(s![n_ref..n_ref + N_TEST, ..]).to_owned().into_dyn(),
        y_test: Targets::Classes(labels[n_ref..n_ref + N_TEST].to_vec()),
    }
}

fn params() -> GradSimParams {
    GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .sim_fn(SimilarityFn::GradCos)
        .batch_size(128)
}

fn bench_fit_and_explain(c: &mut Criterion) {
    let mut group = c.benchmark_group("grad_sim_fit_explain");
    group.sample_size(10);
    for n_ref in [256usize, 1024] {
        let f = fixture(n_ref);
        let precompute = params()
            .precompute_grads(true)
            .check()
            .expect("valid params");
        group.bench_with_input(BenchmarkId::new("fast_precompute", n_ref), &f, |b, f| {
            b.iter(|| {
                GradientSimilarity::new(&f.model, precompute.clone())
                    .and_then(|e| e.fit(f.x_ref.clone(), f.y_ref.clone()))
                    .and_then(|fitted| fitted.explain(f.x_test.view(), Some(&f.y_test)))
                    .expect("explanation")
            })
        });
        let streaming = params()
            .precompute_grads(false)
            .keep_scores(false)
            .check()
            .expect("valid params");
        group.bench_with_input(
            BenchmarkId::new("fast_streaming_topk", n_ref),
            &f,
            |b, f| {
                b.iter(|| {
                    GradientSimilarity::new(&f.model, streaming.clone())
                        .and_then(|e| e.fit(f.x_ref.clone(), f.y_ref.clone()))
                        .and_then(|fitted| fitted.explain(f.x_test.view(), Some(&f.y_test)))
                        .expect("explanation")
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("naive_one_at_a_time", n_ref),
            &f,
            |b, f| {
                b.iter(|| {
                    naive_scores(
                        &f.model,
                        &precompute,
                        f.x_ref.view(),
                        &f.y_ref,
                        f.x_test.view(),
                        &f.y_test,
                    )
                    .expect("scores")
                })
            },
        );
    }
    group.finish();
}

fn bench_explain_with_stored_gradients(c: &mut Criterion) {
    let mut group = c.benchmark_group("grad_sim_explain_stored");
    group.sample_size(20);
    let f = fixture(1024);
    let precompute = params()
        .precompute_grads(true)
        .check()
        .expect("valid params");
    let explainer = GradientSimilarity::new(&f.model, precompute).expect("explainer");
    let fitted = explainer
        .fit(f.x_ref.clone(), f.y_ref.clone())
        .expect("fitted");
    group.bench_function("explain_8_vs_1024", |b| {
        b.iter(|| {
            fitted
                .explain(f.x_test.view(), Some(&f.y_test))
                .expect("explanation")
        })
    });
    group.finish();
}

/// The same comparison on alibi's MNIST CNN (412,778 parameters, untrained weights: the cost
/// does not depend on them) with 256 MNIST-sized references and 5 test images: the fast path
/// (conv blocks batched over im2col patches, dense blocks factored) against one backward pass
/// per instance with the full flattened gradients.
fn bench_alibi_cnn(c: &mut Criterion) {
    use rand::{Rng, SeedableRng};
    let mut group = c.benchmark_group("grad_sim_alibi_cnn");
    group.sample_size(10);
    let model = xai_models::zoo::ModelKind::AlibiCnn.build(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let n_ref = 256;
    let x_ref = ndarray::Array4::from_shape_fn((n_ref, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0))
        .into_dyn();
    let y_ref = Targets::Classes((0..n_ref).map(|i| i % 10).collect());
    let x_test =
        ndarray::Array4::from_shape_fn((5, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0)).into_dyn();
    let y_test = Targets::Classes(vec![0, 1, 2, 3, 4]);
    let precompute = params()
        .precompute_grads(true)
        .check()
        .expect("valid params");
    group.bench_function(BenchmarkId::new("fast_precompute", n_ref), |b| {
        b.iter(|| {
            GradientSimilarity::new(&model, precompute.clone())
                .and_then(|e| e.fit(x_ref.clone(), y_ref.clone()))
                .and_then(|fitted| fitted.explain(x_test.view(), Some(&y_test)))
                .expect("explanation")
        })
    });
    group.bench_function(BenchmarkId::new("naive_one_at_a_time", n_ref), |b| {
        b.iter(|| {
            naive_scores(
                &model,
                &precompute,
                x_ref.view(),
                &y_ref,
                x_test.view(),
                &y_test,
            )
            .expect("scores")
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_fit_and_explain,
    bench_explain_with_stored_gradients,
    bench_alibi_cnn
);
criterion_main!(benches);
