//! Time per image of dianna's KernelSHAP setting on an ONNX model, with the imported and the
//! tract back end, and the model alone on 1,000 images; the counterpart of
//! `benches/python/shap_onnx_baseline.py` (shap's `KernelExplainer` through onnxruntime).
//!
//! ```text
//! cargo run --release -p xai-onnx --example export -- target/onnx
//! cargo run --release -p xai-onnx --example shap_timing -- target/onnx/binary_cnn.onnx [n_images] [repeats] [nsamples]
//! ```
//! Images: the first `n_images` (default 5) MNIST test digits 0 and 1 for a 2-output model, else
//! the first test digits, in [0, 1]. KernelSHAP: SLIC `n_segments = 200`, `compactness = 10`,
//! `sigma = 0`, background 0, `nsamples` (default 1000), no feature selection, labels 0 and 1 (or the
//! predicted class), the default estimator and shap's (`KernelShapParams::shap_compatible`).
//! Each engine explains one image untimed first. The model alone: `repeats` (default 5) calls on
//! 1,000 images after one warm-up call, best and median.

use std::time::Instant;

use ndarray::{Array2, Axis};
use xai_core::{Predictor, TimedPredictor};
use xai_datasets::{Mnist, Scaling};
use xai_onnx::{Backend, OnnxOptions};
use xai_shap::{Background, ImageKernelShapParams, KernelShapParams};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: shap_timing <model.onnx> [n_images] [repeats] [nsamples]")?;
    let n_images: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let repeats: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let nsamples: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("{threads} threads available");
    let mnist = Mnist::load_default()?;
    let mut models = Vec::new();
    for backend in [Backend::Import, Backend::Tract] {
        let t = Instant::now();
        let m = OnnxOptions::new()
            .backend(backend)
            .probabilities(true)
            .check()?
            .load(path)?;
        println!(
            "{} (loaded in {:.2} s)",
            m.describe(),
            t.elapsed().as_secs_f64()
        );
        models.push(m);
    }
    let k = models[0].n_outputs();
    let split = if k == 2 {
        mnist.test.binary_subset(0, 1)
    } else {
        mnist.test.clone()
    };

    println!("\nmodel alone, 1,000 images in one call ({repeats} calls after one warm-up):");
    let batch = split.head(1000).images_f32(Scaling::UnitInterval);
    let mut reference: Option<Array2<f32>> = None;
    for m in &models {
        let mut times = Vec::new();
        m.predict(batch.view().into_dyn())?;
        let mut out = None;
        for _ in 0..repeats {
            let t = Instant::now();
            out = Some(m.predict(batch.view().into_dyn())?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let out = out.ok_or("no repeats")?;
        let diff = reference
            .as_ref()
            .map(|r| (r - &out).iter().fold(0.0f32, |a, d| a.max(d.abs())));
        reference.get_or_insert(out);
        println!(
            "  {:<30} best {:.3} s, median {:.3} s{}",
            m.engine().to_string(),
            times[0],
            times[times.len() / 2],
            diff.map(|d| format!(" (max |difference| to the importer {d:.1e})"))
                .unwrap_or_default()
        );
    }

    let images = split.head(n_images).images_f32(Scaling::UnitInterval);
    for (estimator, shap) in [
        ("default estimator", KernelShapParams::new()),
        ("shap's estimator", KernelShapParams::shap_compatible()),
    ] {
        println!(
            "\nKernelSHAP ({estimator}), {n_images} images, nsamples {nsamples}, 200 segments:"
        );
        let mut values = Vec::new();
        for m in &models {
            let timed = TimedPredictor::new(m);
            let mut total = 0.0;
            let mut vals = Vec::new();
            // One untimed explanation first (thread pools, allocator).
            let warm_up = split.head(n_images + 1).images_f32(Scaling::UnitInterval);
            let warm_up = warm_up.index_axis(Axis(0), n_images);
            let labels = if k == 2 { vec![0, 1] } else { vec![0] };
            ImageKernelShapParams::new()
                .kernel_shap(shap.clone())
                .labels(labels)
                .nsamples(nsamples)
                .background(Background::Value(0.0))
                .n_segments(200)
                .check()?
                .explain(m, warm_up)?;
            for image in images.axis_iter(Axis(0)) {
                let labels = if k == 2 {
                    vec![0, 1]
                } else {
                    let p = m.predict(image.insert_axis(Axis(0)).into_dyn())?;
                    vec![xai_core::argmax_rows(p.view())[0]]
                };
                let params = ImageKernelShapParams::new()
                    .kernel_shap(shap.clone())
                    .labels(labels)
                    .nsamples(nsamples)
                    .background(Background::Value(0.0))
                    .n_segments(200)
                    .compactness(10.0)
                    .sigma(0.0)
                    .check()?;
                let t = Instant::now();
                let e = params.explain(&timed, image)?;
                total += t.elapsed().as_secs_f64();
                vals.push(e.data.segment_values);
            }
            let model_s = timed.elapsed().as_secs_f64();
            let rows = timed.rows() as f64 / n_images as f64;
            println!(
                "  {:<30} {:.3} s per image, of which model {:.3} s ({rows:.0} rows per image)",
                m.engine().to_string(),
                total / n_images as f64,
                model_s / n_images as f64,
            );
            values.push(vals);
        }
        let diff = values[0]
            .iter()
            .zip(&values[1])
            .map(|(a, b)| (a - b).iter().fold(0.0f32, |m, d| m.max(d.abs())))
            .fold(0.0f32, f32::max);
        println!("  max |difference| of the SHAP values, importer vs tract: {diff:.1e}");
    }
    Ok(())
}
