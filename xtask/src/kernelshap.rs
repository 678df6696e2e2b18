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
//! test digit for every output. Files go to `target/xai-demo/kernelshap_onnx/`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use xai_core::Predictor;
use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_onnx::{Backend, Layout, OnnxOptions, OutputKind};

/// The `--onnx` flags.
struct OnnxArgs {
    path: PathBuf,
    options: OnnxOptions,
}

fn value<'a>(args: &'a [String], i: usize, flag: &str) -> Result<&'a str> {
    args.get(i + 1)
        .map(String::as_str)
        .with_context(|| format!("{flag} needs a value"))
}

fn parse(args: &[String]) -> Result<Option<OnnxArgs>> {
    let mut path = None;
    let mut options = OnnxOptions::new().probabilities(true);
    let mut onnx_flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let v = value(args, i, flag);
        match flag {
            "--onnx" => path = Some(PathBuf::from(v?)),
            "--layout" => options = options.layout(v?.parse::<Layout>()?),
            "--input-scale" => {
                let v = v?;
                let scale = v
                    .parse()
                    .with_context(|| format!("--input-scale `{v}` is not a number"))?;
                options = options.input_scale(scale);
            }
            "--input-offset" => {
                let v = v?;
                let offset = v
                    .parse()
                    .with_context(|| format!("--input-offset `{v}` is not a number"))?;
                options = options.input_offset(offset);
            }
            "--output" => options = options.output_kind(v?.parse::<OutputKind>()?),
            "--backend" => options = options.backend(v?.parse::<Backend>()?),
            other => bail!(
                "unknown argument `{other}` for demo kernelshap (expected --onnx <file> \
                 [--layout nchw|nhwc] [--input-scale <f>] [--input-offset <f>] \
                 [--output logits|probabilities|log-probabilities] [--backend auto|import|tract])"
            ),
        }
        if flag != "--onnx" {
            onnx_flags.push(flag);
        }
        i += 2;
    }
    match (path, onnx_flags.first()) {
        (Some(path), _) => Ok(Some(OnnxArgs { path, options })),
        (None, Some(f)) => bail!("{f} only applies with --onnx <file>"),
        (None, None) => Ok(None),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    if let Some(onnx) = parse(args)? {
        return run_onnx(onnx);
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

fn run_onnx(args: OnnxArgs) -> Result<()> {
    let model = args
        .options
        .check()?
        .load(&args.path)
        .with_context(|| format!("loading {}", args.path.display()))?;
    println!("{}", model.describe());
    let dir = crate::demo_dir("kernelshap_onnx")?;
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
    let out = xai_shap::demo::dianna_mnist_example(
        &model,
        images.view(),
        &labels,
        (k <= 10).then_some(names.as_slice()),
        &dir,
        |p| p,
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
