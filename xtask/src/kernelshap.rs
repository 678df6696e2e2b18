//! `cargo xtask demo kernelshap`: dianna's KernelSHAP MNIST tutorial with the shipped binary
//! (0 vs 1) CNN: SLIC with 200 segments, background 0, nsamples 1000, labels 0 and 1, and
//! dianna's figure (the digit, then one attribution map per class with a shared colour bar).
//!
//! With `--onnx <file>` it explains an ONNX classifier instead (through `xai-onnx`), on MNIST
//! test images in [0, 1]: `--layout nchw|nhwc`, `--input-scale <f>` / `--input-offset <f>` (the
//! model sees `x * scale + offset`, e.g. 255 for raw pixels), `--output
//! logits|probabilities|log-probabilities` (default: read from the graph's last node; outputs
//! are converted to probabilities before they are explained) and `--backend auto|import|tract`.
//! A 2-output model is explained on test digits 0 and 1 (labels 0, 1), any other on the first
//! test digit for every output.

use std::path::Path;

use anyhow::{Context, Result};
use xai_core::Predictor;
use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_onnx::OnnxOptions;
use xai_shap::hyperparams::ImageKernelShapParams;
use xai_testkit::shap_runs::dianna_mnist_example;

use crate::cli::OnnxDemoArgs;

/// `smoke`: 100 samples over 40 segments instead of 1000 over 200.
fn budget(smoke: bool) -> impl Fn(ImageKernelShapParams) -> ImageKernelShapParams {
    move |p| {
        if smoke {
            p.nsamples(100).n_segments(40)
        } else {
            p
        }
    }
}

/// Runs the demo into `dir` (with `--onnx`, on that model).
pub fn run(dir: &Path, onnx: &OnnxDemoArgs, smoke: bool) -> Result<()> {
    if onnx.onnx.is_some() {
        return run_onnx(dir, onnx, smoke);
    }
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let kind = ModelKind::BinaryCnn;
    let model = load_pretrained(kind)?;
    let test = mnist.test.binary_subset(0, 1).head(1);
    let images = test.images_f32(kind.scaling());
    let out = dianna_mnist_example(
        &model,
        images.view(),
        &[0, 1],
        Some(&["digit 0", "digit 1"]),
        dir,
        budget(smoke),
    )?;
    println!(
        "explained {} image(s), {:.3} s per image; files under {}",
        out.explanations.len(),
        out.seconds_per_image,
        dir.display()
    );
    Ok(())
}

fn run_onnx(dir: &Path, args: &OnnxDemoArgs, smoke: bool) -> Result<()> {
    let Some(path) = &args.onnx else {
        anyhow::bail!("no --onnx file");
    };
    let mut options = OnnxOptions::new().probabilities(true);
    if let Some(l) = args.layout {
        options = options.layout(l);
    }
    if let Some(s) = args.input_scale {
        options = options.input_scale(s);
    }
    if let Some(o) = args.input_offset {
        options = options.input_offset(o);
    }
    if let Some(k) = args.output {
        options = options.output_kind(k);
    }
    if let Some(b) = args.backend {
        options = options.backend(b);
    }
    let model = options
        .check()?
        .load(path)
        .with_context(|| format!("loading {}", path.display()))?;
    println!("{}", model.describe());
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let k = model.n_outputs();
    let (test, labels): (_, Vec<usize>) = if k == 2 {
        (mnist.test.binary_subset(0, 1).head(1), vec![0, 1])
    } else {
        (mnist.test.head(1), (0..k).collect())
    };
    let names: Vec<String> = labels.iter().map(|l| format!("digit {l}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let images = test.images_f32(Scaling::UnitInterval);
    let out = dianna_mnist_example(
        &model,
        images.view(),
        &labels,
        (k <= 10).then_some(names.as_slice()),
        dir,
        budget(smoke),
    )?;
    println!(
        "explained {} image(s) with the {} back end, {:.3} s per image; files under {}",
        out.explanations.len(),
        model.engine(),
        out.seconds_per_image,
        dir.display()
    );
    Ok(())
}
