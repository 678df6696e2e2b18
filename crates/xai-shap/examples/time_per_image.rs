//! Time per explained MNIST image of KernelSHAP at dianna's settings (`n_segments = 200`,
//! `compactness = 10`, `sigma = 0`, background 0, the predicted label) with a shipped network,
//! split into the time spent in the model and the estimator's own time (SLIC, sampling, masking,
//! regression). Medians over the first `N` test images (of classes 0/1 for `binary_cnn`).
//!
//! ```text
//! cargo run --release -p xai-shap --example time_per_image -- [model] [n_images] [nsamples] [default|shap]
//! ```
//! Defaults: `alibi_cnn 20 1000 default`.

use std::time::Instant;

use ndarray::{s, Axis};
use xai_core::{argmax_rows, Predictor, TimedPredictor};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_shap::{Background, ImageKernelShapParams, KernelShapParams};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("alibi_cnn");
    let n: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let nsamples: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let shap_compatible = matches!(args.get(3).map(String::as_str), Some("shap"));
    let kind = ModelKind::from_name(name).ok_or(format!("unknown model {name}"))?;
    let model = load_pretrained(kind)?;
    let mnist = Mnist::load_default()?;
    let test = if kind == ModelKind::BinaryCnn {
        mnist.test.binary_subset(0, 1)
    } else {
        mnist.test
    };
    let images = test.images_f32(kind.scaling());
    let images = images.slice(s![..n.min(images.shape()[0]), .., .., ..]);
    let labels = argmax_rows(model.predict(images.into_dyn())?.view());
    let timed = TimedPredictor::new(&model);
    let shap = if shap_compatible {
        KernelShapParams::shap_compatible()
    } else {
        KernelShapParams::new()
    };
    let (mut totals, mut model_times, mut evaluations) = (Vec::new(), Vec::new(), Vec::new());
    for (i, image) in images.axis_iter(Axis(0)).enumerate() {
        let params = ImageKernelShapParams::new()
            .kernel_shap(shap.clone())
            .labels(vec![labels[i]])
            .nsamples(nsamples)
            .background(Background::Value(0.0))
            .n_segments(200)
            .compactness(10.0)
            .sigma(0.0)
            .check()?;
        timed.reset();
        let start = Instant::now();
        let e = params.explain(&timed, image)?;
        totals.push(start.elapsed().as_secs_f64());
        model_times.push(timed.elapsed().as_secs_f64());
        evaluations.push(e.data.n_evaluations as f64);
    }
    println!(
        "{name}: {} images, nsamples {nsamples}, {} estimator: median {:.1} ms per image, of which the model {:.1} ms ({} evaluations), threads {}",
        totals.len(),
        if shap_compatible { "shap-compatible" } else { "default" },
        1e3 * median(totals),
        1e3 * median(model_times),
        median(evaluations),
        rayon::current_num_threads(),
    );
    Ok(())
}
