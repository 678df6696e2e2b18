//! Gradient similarity: the fast path (batched per-sample gradients in factored form, scores
//! from block-wise gram products) against the naive path (one instance at a time, flattened
//! gradients), in the same run, on a small softmax MLP (64 inputs, 64 tanh units, 10 classes:
//! 4,810 parameters).
//!
//! Run with `cargo bench -p xai-benches --bench grad_sim`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::{s, ArrayD};
use xai_core::{Loss, OutputKind, Targets};
use xai_grad_sim::naive::naive_scores;
use xai_grad_sim::toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};

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

criterion_group!(
    benches,
    bench_fit_and_explain,
    bench_explain_with_stored_gradients
);
criterion_main!(benches);
