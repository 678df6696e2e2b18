//! The README's example: load a shipped model, predict, and compare per-sample loss gradients.
//!
//! `cargo run --release -p xai-models --example per_sample_grads`

use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};
use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mnist = Mnist::load_default()?;
    let model = load_pretrained(ModelKind::AlibiCnn)?; // trained, 412,778 parameters
    let x = mnist.test.head(8).images_f32(Scaling::UnitInterval); // [8, 1, 28, 28]
    let probs = model.predict(x.view().into_dyn())?; // [8, 10]
                                                     // Per-sample loss gradients for a whole batch, dense layers kept factored.
    let grads = model.per_sample_grads(
        x.view().into_dyn(),
        &Targets::Classes(mnist.test.head(8).labels_usize()),
        &Loss::CrossEntropy(OutputKind::Probabilities),
        &ParamSelection::All,
    )?;
    let similarity = grads.gram(&grads)?; // [8, 8] gradient dot products
    println!("{probs:.3}\n{similarity:.3e}");
    Ok(())
}
