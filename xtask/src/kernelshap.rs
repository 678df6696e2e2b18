//! `cargo xtask demo kernelshap`: dianna's KernelSHAP MNIST tutorial with the shipped binary
//! (0 vs 1) CNN: SLIC with 200 segments, background 0, nsamples 1000, labels 0 and 1, and
//! dianna's figure (the digit, then one attribution map per class with a shared colour bar).
//!
//! With `--onnx <file>` it explains an ONNX classifier instead (through `xai-onnx`), on MNIST
//! test images in [0, 1]: `--layout nchw|nhwc`, `--input-scale <f>` / `--input-offset <f>` (the
//! model sees `x * scale + offset`, e.g. 255 for raw pixels), `--output
//! logits|probabilities|log-probabilities` (default: read from the graph's last node; outputs
//! are converted to probabilities before they are explained) and `--backend auto|import|graph|tract`.
//! A 2-output model is explained on test digits 0 and 1 (labels 0, 1), any other on the first
//! test digit for every output. A model whose input is not `1 x 28 x 28` (e.g. a 3-channel
//! ResNet on 32 x 32) gets the digit resized bilinearly to its height and width and repeated
//! over its channels.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::Array4;
use xai_core::Predictor;
use xai_datasets::{Mnist, Scaling};
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_onnx::{Layout, OnnxOptions};
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
    // The sample shape the file declares (MNIST's 1 x 28 x 28 when it declares none).
    if let Some(shape) = declared_input_shape(path, args.layout.unwrap_or_default()) {
        options = options.input_shape(shape);
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
    let images = fit_to_input(test.images_f32(Scaling::UnitInterval), model.input_shape())?;
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

/// The per-sample `[c, h, w]` shape an ONNX file declares for its one non-weight input, when
/// it declares a rank-4 shape whose dimensions after the batch are fixed; `None` otherwise (an
/// unreadable file is then reported by the loader).
fn declared_input_shape(path: &Path, layout: Layout) -> Option<[usize; 3]> {
    let bytes = std::fs::read(path).ok()?;
    let shape = xai_onnx::declared_input(&bytes).ok()?.image_shape(layout)?;
    // A size beyond the importer's range is left to the loader to report.
    shape.iter().all(|&d| d <= 1 << 16).then_some(shape)
}

/// MNIST digits `[n, 1, 28, 28]` as inputs of shape `[c, h, w]`: resized bilinearly (pixel
/// centres aligned, as `torch.nn.functional.interpolate(..., align_corners=False)`) and repeated
/// over the `c` channels; unchanged when the shape is already `[1, 28, 28]`.
pub fn fit_to_input(images: Array4<f32>, shape: &[usize]) -> Result<Array4<f32>> {
    let &[c, h, w] = shape else {
        bail!("the model's input shape {shape:?} is not an image [channels, height, width]");
    };
    let (n, ih, iw) = (images.shape()[0], images.shape()[2], images.shape()[3]);
    if [c, h, w] == [images.shape()[1], ih, iw] {
        return Ok(images);
    }
    if c == 0 || h == 0 || w == 0 || c > 64 || h > 4096 || w > 4096 {
        bail!("the model's input shape {shape:?} is not an image the demo can fill from MNIST");
    }
    println!("MNIST digits resized from {ih}x{iw} to the model's {c}x{h}x{w} input");
    // Source coordinate of output pixel `o` along an axis of `from` -> `to` pixels, and its two
    // neighbours with weights.
    let taps = |o: usize, from: usize, to: usize| {
        let pos = ((o as f32 + 0.5) * from as f32 / to as f32 - 0.5).clamp(0.0, (from - 1) as f32);
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(from - 1);
        (lo, hi, pos - lo as f32)
    };
    Ok(Array4::from_shape_fn((n, c, h, w), |(s, _, y, x)| {
        let (y0, y1, fy) = taps(y, ih, h);
        let (x0, x1, fx) = taps(x, iw, w);
        let px = |yy: usize, xx: usize| images[[s, 0, yy, xx]];
        let top = px(y0, x0) * (1.0 - fx) + px(y0, x1) * fx;
        let bottom = px(y1, x0) * (1.0 - fx) + px(y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_resized_and_repeated_over_channels() {
        let images = Array4::from_shape_fn((2, 1, 28, 28), |(s, _, y, x)| (s + y + x) as f32);
        let same = fit_to_input(images.clone(), &[1, 28, 28]).unwrap();
        assert_eq!(same, images);
        let small = fit_to_input(images.clone(), &[3, 14, 14]).unwrap();
        assert_eq!(small.shape(), &[2, 3, 14, 14]);
        // Halving a linear ramp: output pixel (y, x) sits at source (2y + 0.5, 2x + 0.5).
        assert!((small[[1, 2, 3, 4]] - (1.0 + 6.5 + 8.5)).abs() < 1e-4);
        assert_eq!(
            small.index_axis(ndarray::Axis(1), 0),
            small.index_axis(ndarray::Axis(1), 2)
        );
        assert!(fit_to_input(images.clone(), &[1, 28]).is_err());
        assert!(fit_to_input(images, &[1, 0, 5]).is_err());
    }
}
