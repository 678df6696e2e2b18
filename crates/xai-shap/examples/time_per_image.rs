//! Time per explained MNIST image of KernelSHAP at dianna's settings (`n_segments = 200`,
//! `compactness = 10`, `sigma = 0`, background 0, the predicted label) with a shipped network,
//! split into the time spent in the model and the estimator's own time (SLIC, sampling, masking,
//! regression). Medians over the first `N` test images (of classes 0/1 for `binary_cnn`).
//!
//! ```text
//! cargo run --release -p xai-shap --example time_per_image -- [model] [n_images] [nsamples] [default|shap]
//! ```
//! Defaults: `alibi_cnn 20 1000 default`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::{s, Array2, ArrayViewD, Axis};
use xai_core::{argmax_rows, Predictor};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_shap::{Background, ImageKernelShapParams, KernelShapParams};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A predictor that adds up the time spent in the wrapped model.
struct Timed<'a> {
    inner: &'a dyn Predictor,
    spent: Mutex<Duration>,
}

impl Predictor for Timed<'_> {
    fn input_shape(&self) -> &[usize] {
        self.inner.input_shape()
    }
    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }
    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let start = Instant::now();
        let out = self.inner.predict(x);
        *self.spent.lock().expect("timer") += start.elapsed();
        out
    }
}

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
    let timed = Timed {
        inner: &model,
        spent: Mutex::new(Duration::ZERO),
    };
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
        *timed.spent.lock().expect("timer") = Duration::ZERO;
        let start = Instant::now();
        let e = params.explain(&timed, image)?;
        totals.push(start.elapsed().as_secs_f64());
        model_times.push(timed.spent.lock().expect("timer").as_secs_f64());
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
