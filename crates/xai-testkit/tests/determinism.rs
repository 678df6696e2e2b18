//! Determinism across thread counts: each of the four methods, on the shipped networks, gives
//! bit-identical results with 1, 2 and 4 rayon threads (chunk boundaries depend on the batch
//! size only, never on the threads; see docs/ARCHITECTURE.md, "Determinism").

use ndarray::{s, Array4};
use xai_core::Targets;
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};

/// Runs `f` on a fresh pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

/// The results of `f` with 1, 2 and 4 threads, which must be equal.
fn same_on_1_2_4<T: Send + PartialEq + std::fmt::Debug>(what: &str, f: impl Fn() -> T + Sync) {
    let one = on_threads(1, &f);
    for n in [2, 4] {
        let other = on_threads(n, &f);
        assert!(other == one, "{what}: {n} threads differ from 1 thread");
    }
}

fn mnist_images(kind: ModelKind, n: usize, offset: usize) -> (Array4<f32>, Vec<usize>) {
    let mnist = Mnist::load_default().expect("MNIST in data/mnist");
    let split = mnist.test.head(offset + n);
    let x = split.images_f32(kind.scaling());
    let labels = split.labels_usize()[offset..].to_vec();
    (x.slice(s![offset.., .., .., ..]).to_owned(), labels)
}

#[test]
fn gradient_similarity_is_bit_identical_across_thread_counts() {
    use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
    let kind = ModelKind::AlibiCnn;
    let model = load_pretrained(kind).unwrap();
    // 40 references: more than one 16-sample chunk, so the threads really split the work.
    let (x_ref, y_ref) = mnist_images(kind, 40, 0);
    let (x_test, y_test) = mnist_images(kind, 3, 100);
    for precompute in [true, false] {
        same_on_1_2_4("grad_sim", || {
            let params = GradSimParams::new(kind.loss())
                .sim_fn(SimilarityFn::GradCos)
                .precompute_grads(precompute)
                .batch_size(24)
                .check()
                .unwrap();
            let fitted = GradientSimilarity::new(&model, params)
                .unwrap()
                .fit(x_ref.clone().into_dyn(), Targets::Classes(y_ref.clone()))
                .unwrap();
            fitted
                .explain(
                    x_test.view().into_dyn(),
                    Some(&Targets::Classes(y_test.clone())),
                )
                .unwrap()
                .data
        });
    }
}

#[test]
fn cem_is_bit_identical_across_thread_counts() {
    use xai_cem::{Cem, CemParams, Mode};
    let cnn = load_pretrained(ModelKind::CemCnn).unwrap();
    let ae = load_pretrained(ModelKind::CemAutoencoder).unwrap();
    let (x, _) = mnist_images(ModelKind::CemCnn, 2, 4);
    for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
        same_on_1_2_4("cem", || {
            let params = CemParams::alibi_mnist_example(mode)
                .c_steps(2)
                .max_iterations(30)
                .check()
                .unwrap();
            let cem = Cem::white_box(params, &cnn)
                .unwrap()
                .with_autoencoder(&ae)
                .unwrap();
            cem.explain_batch(x.view().into_dyn(), None)
                .unwrap()
                .into_iter()
                .map(|e| e.data)
                .collect::<Vec<_>>()
        });
    }
}

#[test]
fn kernelshap_is_bit_identical_across_thread_counts() {
    use xai_shap::hyperparams::ImageKernelShapParams;
    let kind = ModelKind::BinaryCnn;
    let model = load_pretrained(kind).unwrap();
    let mnist = Mnist::load_default().unwrap();
    let x = mnist
        .test
        .binary_subset(0, 1)
        .head(1)
        .images_f32(kind.scaling());
    same_on_1_2_4("kernelshap", || {
        ImageKernelShapParams::new()
            .labels(vec![0, 1])
            .nsamples(300)
            .n_segments(50)
            .seed(3)
            .check()
            .unwrap()
            .explain(&model, x.index_axis(ndarray::Axis(0), 0))
            .unwrap()
            .data
    });
}

#[test]
fn l2x_training_and_explanations_are_bit_identical_across_thread_counts() {
    let kind = ModelKind::MnistNet;
    let model = load_pretrained(kind).unwrap();
    let (x, _) = mnist_images(kind, 96, 0);
    same_on_1_2_4("l2x", || {
        let l2x = xai_testkit::l2x_mnist::mnist_params(kind, 4, 5)
            .num_epochs(1)
            .batch_size(Some(32))
            .progress(false)
            .check()
            .unwrap()
            .fit(x.view(), &model)
            .unwrap();
        l2x.explain(&model, x.slice(s![0..8, .., .., ..]))
            .unwrap()
            .data
    });
}
