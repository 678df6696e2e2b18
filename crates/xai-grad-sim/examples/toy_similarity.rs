//! Gradient similarity on a toy problem: a two-layer softmax classifier trained on Gaussian
//! blobs, explained with `grad_cos` and checked with the identical class test.
//!
//! Run with `cargo run -p xai-grad-sim --example toy_similarity [OUT_DIR]`; with `OUT_DIR` the
//! explanation (JSON and `.npy`) and the identical class test are written there.

use ndarray::{s, Axis};
use xai_core::{Loss, OutputKind, Targets};
use xai_grad_sim::{GradSimParams, SimilarityFn};
use xai_testkit::grad_sim_report::similarity_demo;
use xai_testkit::grad_sim_toy::{gaussian_blobs, OutputActivation, TwoLayerMlp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let n_classes = 4;
    let (x, labels) = gaussian_blobs(60, n_classes, 8, 1.0, 0.6, 42);
    let loss = Loss::CrossEntropy(OutputKind::Probabilities);
    let mut model = TwoLayerMlp::new_random(vec![8], 16, n_classes, OutputActivation::Softmax, 7)?;
    let history = model.train_sgd(
        x.view().into_dyn(),
        &Targets::Classes(labels.clone()),
        &loss,
        30,
        0.2,
        16,
        1,
    )?;
    println!(
        "trained: loss {:.3} -> {:.3}",
        history.first().copied().unwrap_or(f32::NAN),
        history.last().copied().unwrap_or(f32::NAN)
    );
    // The first 200 points are the references, the last 40 the test instances.
    let x_ref = x.slice(s![..200, ..]).to_owned().into_dyn();
    let x_test = x.slice(s![200.., ..]).to_owned().into_dyn();
    let params = GradSimParams::new(loss)
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .check()?;
    let report = similarity_demo(
        &model,
        params,
        x_ref,
        &labels[..200],
        x_test.slice_axis(Axis(0), (0..x_test.len_of(Axis(0))).into()),
        &labels[200..],
        out_dir.as_deref(),
    )?;
    print!("{report}");
    Ok(())
}
