//! The Rust side of the xai-eval timing (issue 28 item 4): time per image of deletion, ROAD and
//! infidelity on the model and inputs `benches/python/quantus_timing.py` writes, with the same
//! parameters as its Quantus runs.
//!
//! ```text
//! /work/venv/bin/python benches/python/quantus_timing.py            # writes target/quantus-timing
//! RAYON_NUM_THREADS=1 cargo run --release -p xai-eval --example eval_timing [-- target/quantus-timing]
//! ```
//!
//! Without a release build, the dev profile with the hot crates at release optimisation gives
//! the same code for them (the model's layers, the metrics; tract is not used):
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run -p xai-eval --example eval_timing \
//!     --config profile.dev.package.xai-models.opt-level=3 \
//!     --config profile.dev.package.xai-eval.opt-level=3 \
//!     --config profile.dev.package.xai-core.opt-level=3
//! ```
//!
//! Prints one row per metric: `metric  images  seconds_total  seconds_per_image`, and checks
//! that the scores are finite.

use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use xai_eval::*;
use xai_onnx::{Backend, OnnxOptions, OutputKind};

fn floats(v: &serde_json::Value, out: &mut Vec<f32>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| floats(x, out)),
        serde_json::Value::Number(n) => out.push(n.as_f64().expect("a number") as f32),
        other => panic!("not a number: {other}"),
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/quantus-timing".into());
    let dir = std::path::Path::new(&dir);
    let model = OnnxOptions::new()
        .input_shape([1, 28, 28])
        .output_kind(OutputKind::Logits)
        .backend(Backend::Auto)
        .check()?
        .load(dir.join("mnist_cnn.onnx"))?;
    let inputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json"))?)?;
    let n = inputs["y"].as_array().ok_or("inputs.json has no y")?.len();
    let take = |key: &str, i: usize| -> ArrayD<f32> {
        let mut v = Vec::new();
        floats(&inputs[key][i], &mut v);
        ArrayD::from_shape_vec(IxDyn(&[1, 28, 28]), v).expect("28 x 28 images")
    };
    let xs: Vec<ArrayD<f32>> = (0..n).map(|i| take("x", i)).collect();
    let maps: Vec<ArrayD<f32>> = (0..n).map(|i| take("maps", i)).collect();
    let ys: Vec<usize> = (0..n)
        .map(|i| inputs["y"][i].as_u64().expect("a class") as usize)
        .collect();

    let curve = CurveParams::new()
        .features(Features::Elements)
        .features_in_step(28)
        .check()?;
    let road_params = RoadParams::new().check()?;
    let infid = InfidelityParams::new().check()?;
    println!("metric\timages\tseconds_total\tseconds_per_image");
    let time = |name: &str, f: &dyn Fn(usize) -> Result<f64>| -> Result<()> {
        let t0 = Instant::now();
        for i in 0..n {
            let v = f(i)?;
            assert!(v.is_finite(), "{name} on image {i}: {v}");
        }
        let dt = t0.elapsed().as_secs_f64();
        println!("{name}\t{n}\t{dt:.4}\t{:.5}", dt / n as f64);
        Ok(())
    };
    time("deletion", &|i| {
        Ok(pixel_flipping(
            &model,
            xs[i].view(),
            maps[i].view(),
            ys[i],
            None,
            Order::Morf,
            &curve,
        )?
        .value)
    })?;
    time("road", &|i| {
        Ok(road(
            &model,
            xs[i].view(),
            maps[i].view(),
            ys[i],
            Order::Morf,
            &road_params,
        )?
        .value)
    })?;
    time("infidelity", &|i| {
        infidelity(&model, xs[i].view(), maps[i].view(), ys[i], &infid)
    })?;
    Ok(())
}
