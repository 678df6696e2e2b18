//! alibi's "Similarity explanations for MNIST" example: the trained alibi CNN, 1,000 random
//! training images as the reference set, 5 random test images explained with `grad_cos` and
//! precomputed gradients, then the identical class test on those images.
//!
//! `cargo run --release -p xai-grad-sim --example mnist_similarity [OUT_DIR]`
//!
//! Needs `models/alibi_cnn.safetensors` (`cargo xtask train alibi_cnn`) and MNIST in
//! `data/mnist`. With `OUT_DIR`, the explanation (JSON, and `.npy` arrays including
//! `most_similar`, `[5, 5, 1, 28, 28]`) and the identical class test are written there.

use xai_grad_sim::{similarity_demo, GradSimParams, SimilarityFn};
use xai_models::zoo::{load_pretrained, ModelKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let kind = ModelKind::AlibiCnn;
    let model = load_pretrained(kind)?;
    let mnist = xai_datasets::Mnist::load_default()?;
    let refs = mnist.train.random_subset(1000, 0)?;
    let tests = mnist.test.random_subset(5, 1)?;
    let params = GradSimParams::new(kind.loss())
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .check()?;
    let report = similarity_demo(
        &model,
        params,
        refs.images_f32(kind.scaling()).into_dyn(),
        &refs.labels_usize(),
        tests.images_f32(kind.scaling()).view().into_dyn(),
        &tests.labels_usize(),
        out_dir.as_deref(),
    )?;
    print!("{report}");
    Ok(())
}
