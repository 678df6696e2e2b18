//! The identical class test (Hanawa et al. 2021) on MNIST with the shipped alibi CNN: the
//! fraction of test images whose most similar reference has the test image's label, for each
//! similarity kernel.
//!
//! `cargo run --release -p xai-grad-sim --example identical_class -- [N_TEST] [N_REFS]`
//! (defaults 1000 and 1000; references are random training images, seed 0; test images are
//! random test images, seed 1).

use xai_grad_sim::{identical_class_test, GradSimParams, SimilarityFn};
use xai_models::zoo::{load_pretrained, ModelKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_test: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let n_refs: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let kind = ModelKind::AlibiCnn;
    let model = load_pretrained(kind)?;
    let mnist = xai_datasets::Mnist::load_default()?;
    let refs = mnist.train.random_subset(n_refs, 0)?;
    let tests = mnist.test.random_subset(n_test, 1)?;
    let params = GradSimParams::new(kind.loss())
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .check()?;
    let start = std::time::Instant::now();
    let report = identical_class_test(
        &model,
        params,
        refs.images_f32(kind.scaling()),
        &refs.labels_usize(),
        tests.images_f32(kind.scaling()).view().into_dyn(),
        Some(&tests.labels_usize()),
    )?;
    println!(
        "identical class test: {n_test} test images, {n_refs} references ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    for r in &report.results {
        println!(
            "  {:<14} {}/{} = {:.3}",
            r.sim_fn, r.n_identical, report.n_test, r.fraction
        );
    }
    Ok(())
}
