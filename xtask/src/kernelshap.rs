//! `cargo xtask demo kernelshap`: dianna's KernelSHAP MNIST tutorial with the shipped binary
//! (0 vs 1) CNN: SLIC with 200 segments, background 0, nsamples 1000, labels 0 and 1, and
//! dianna's figure (the digit, then one attribution map per class with a shared colour bar).

use anyhow::{bail, Context, Result};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--onnx") {
        bail!("--onnx is not available yet: the ONNX loader (xai-onnx, on tract-onnx) is not part of the workspace");
    }
    let dir = crate::demo_dir("kernelshap")?;
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let kind = ModelKind::BinaryCnn;
    let model = load_pretrained(kind)?;
    let test = mnist.test.binary_subset(0, 1).head(1);
    let images = test.images_f32(kind.scaling());
    let out = xai_shap::demo::dianna_mnist_example(
        &model,
        images.view(),
        &[0, 1],
        Some(&["digit 0", "digit 1"]),
        &dir,
        |p| p,
    )?;
    println!(
        "explained {} image(s), {:.3} s per image; files under {}",
        out.explanations.len(),
        out.seconds_per_image,
        dir.display()
    );
    Ok(())
}
