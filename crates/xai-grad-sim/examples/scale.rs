//! Time and memory of gradient similarity at a given reference-set size, with MNIST training
//! images as references and 5 test images explained.
//!
//! `cargo run --release -p xai-grad-sim --example scale -- N_REFS [MODE] [MODEL]`
//!
//! * `MODE`: `precompute` (default; stored gradients, full scores), `recompute` (gradients
//!   recomputed at explain time, full scores) or `streaming` (recomputed, top-k only);
//! * `MODEL`: `alibi_cnn` (default; alibi's CNN, 412,778 parameters, with its trained weights
//!   when `models/alibi_cnn.safetensors` exists, else untrained, which times the same) or
//!   `mlp` (a `[1, 28, 28] -> 256 tanh -> 10 softmax` perceptron, 203,530 parameters).
//!
//! Prints one JSON line (`ScaleMeasurement`). Peak RSS is a per-process high-water mark, so run
//! one configuration per call.

use xai_core::{DifferentiableModel, Loss, OutputKind, Targets};
use xai_datasets::Scaling;
use xai_grad_sim::{GradSimParams, SimilarityFn};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_testkit::grad_sim_report::measure_scale;
use xai_testkit::grad_sim_toy::{OutputActivation, TwoLayerMlp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n_refs: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let mode = args.next().unwrap_or_else(|| "precompute".into());
    let (precompute, keep_scores) = match mode.as_str() {
        "precompute" => (true, true),
        "recompute" => (false, true),
        "streaming" => (false, false),
        other => {
            return Err(format!(
                "unknown mode {other}: expected precompute, recompute or streaming"
            )
            .into())
        }
    };
    let model_name = args.next().unwrap_or_else(|| "alibi_cnn".into());
    let model: Box<dyn DifferentiableModel> = match model_name.as_str() {
        "alibi_cnn" => match load_pretrained(ModelKind::AlibiCnn) {
            Ok(net) => Box::new(net),
            Err(e) => {
                eprintln!("untrained alibi_cnn ({e})");
                Box::new(ModelKind::AlibiCnn.build(0))
            }
        },
        "mlp" => Box::new(TwoLayerMlp::new_random(
            vec![1, 28, 28],
            256,
            10,
            OutputActivation::Softmax,
            1,
        )?),
        other => return Err(format!("unknown model {other}: expected alibi_cnn or mlp").into()),
    };
    let mnist = xai_datasets::Mnist::load_default()?;
    let refs = mnist.train.random_subset(n_refs, 0)?;
    let tests = mnist.test.random_subset(5, 1)?;
    let x_ref = refs.images_f32(Scaling::UnitInterval).into_dyn();
    let y_ref = Targets::Classes(refs.labels_usize());
    let x_test = tests.images_f32(Scaling::UnitInterval).into_dyn();
    // Only the arrays handed to the explainer stay alive (as in a user's program).
    drop((mnist, refs, tests));
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(precompute)
        .keep_scores(keep_scores)
        .batch_size(256)
        .check()?;
    let m = measure_scale(model.as_ref(), params, x_ref, y_ref, x_test.view(), None)?;
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}
