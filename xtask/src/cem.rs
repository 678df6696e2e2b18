//! `cargo xtask demo cem`: alibi's CEM MNIST example with the shipped CNN and autoencoder
//! (both on inputs in [-0.5, 0.5]): test image 4, a pertinent negative and a pertinent positive
//! with the seed's settings, and one figure of the original, the autoencoder's reconstruction,
//! the PN and the PP, each titled with its prediction.

use std::path::Path;

use anyhow::{Context, Result};
use xai_core::{argmax_rows, Predictor};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_testkit::cem_runs::seed_example;
use xai_viz::cem_figure;

/// The seed explains test image 4.
const TEST_INDEX: usize = 4;

/// Runs the demo into `dir`; `smoke` runs 1 c-step of 10 iterations instead of 10 x 1000.
pub fn run(dir: &Path, smoke: bool) -> Result<()> {
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let cnn = load_pretrained(ModelKind::CemCnn)?;
    let ae = load_pretrained(ModelKind::CemAutoencoder)?;
    let x = mnist
        .test
        .subset(&[TEST_INDEX])?
        .images_f32(ModelKind::CemCnn.scaling());
    let outputs = seed_example(&cnn, Some(&ae), x.view().into_dyn(), dir, |p| {
        if smoke {
            p.c_steps(1).max_iterations(10)
        } else {
            p
        }
    })?;
    let recon = ae.predict(x.view().into_dyn())?;
    let recon = recon.into_shape_with_order((1, 1, 28, 28))?.into_dyn();
    let recon_pred = argmax_rows(cnn.predict(recon.view())?.view())[0];
    for (out, name) in outputs
        .iter()
        .zip(["pertinent negative", "pertinent positive"])
    {
        println!("{name}: {}", out.explanations[0].data.summary());
        println!("{}", out.quality);
    }
    let path = dir.join("cem.png");
    cem_figure(
        &path,
        &[&outputs[0].explanations[0], &outputs[1].explanations[0]],
        &[(format!("autoencoder, pred {recon_pred}"), recon.view())],
        (-0.5, 0.5),
        Some(&format!("CEM on MNIST test image {TEST_INDEX}")),
    )?;
    println!(
        "wrote {} and the explanations under {}",
        path.display(),
        dir.display()
    );
    Ok(())
}
