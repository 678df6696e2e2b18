//! Time per image of Integrated Gradients (`n_steps = 50`, Gauss–Legendre) and SmoothGrad
//! (NoiseTunnel over saliency, `nt_samples = 50`) on an ONNX classifier, the Rust side of
//! `benches/python/captum_timing.py` (which exports the same network):
//!
//! ```text
//! cargo run --release -p xai-attribution --example timing -- \
//!     target/attr-timing/mnist_cnn.onnx 1,28,28 8 64
//! ```
//!
//! Arguments: the model, its input shape `c,h,w`, the number of images (seeded uniform
//! `[0, 1)` inputs) and `internal_batch_size` (interpolants or noisy copies per model call).
//! Prints one JSON line. Peak memory: run it under `/usr/bin/time -v`.

use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use xai_attribution::{
    ClassTargets, IntegratedGradients, IntegratedGradientsParams, NoiseTunnel, NoiseTunnelBase,
    NoiseTunnelParams, SaliencyParams,
};
use xai_onnx::OnnxOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: timing <model.onnx> <c,h,w> <images> <internal_batch_size>".into());
    }
    let dims: Vec<usize> = args[2]
        .split(',')
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let [c, h, w] = dims[..] else {
        return Err("the input shape is c,h,w".into());
    };
    let images: usize = args[3].parse()?;
    let batch: usize = args[4].parse()?;
    let model = OnnxOptions::new()
        .input_shape([c, h, w])
        .check()?
        .load(&args[1])?;
    eprintln!("{}", model.describe());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = ArrayD::from_shape_fn(IxDyn(&[images, c, h, w]), |_| rng.gen::<f32>());
    let targets = ClassTargets::predicted(&model, x.view())?;

    let ig = IntegratedGradients::new(
        &model,
        IntegratedGradientsParams::new()
            .n_steps(50)
            .internal_batch_size(batch)
            .check()?,
    );
    let start = Instant::now();
    let a = ig.attribute(x.view(), &targets, &xai_attribution::Baseline::Zero)?;
    let ig_s = start.elapsed().as_secs_f64() / images as f64;
    let max_delta = a
        .delta
        .as_ref()
        .map(|d| d.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .unwrap_or(0.0);

    let nt = NoiseTunnel::new(
        &model,
        NoiseTunnelBase::Saliency(SaliencyParams::new().batch_size(batch).check()?),
        NoiseTunnelParams::new()
            .nt_samples(50)
            .stdevs(0.15)
            .nt_samples_batch_size(Some(batch))
            .check()?,
    );
    let start = Instant::now();
    nt.attribute(x.view(), &targets)?;
    let sg_s = start.elapsed().as_secs_f64() / images as f64;
    println!(
        "{{\"model\": \"{}\", \"engine\": \"{}\", \"images\": {images}, \"internal_batch_size\": {batch}, \"threads\": {}, \"ig_s_per_image\": {ig_s:.4}, \"ig_max_abs_delta\": {max_delta:e}, \"smoothgrad_s_per_image\": {sg_s:.4}}}",
        model.name(),
        model.engine(),
        rayon::current_num_threads()
    );
    Ok(())
}
