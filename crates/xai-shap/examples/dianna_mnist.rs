//! dianna's KernelSHAP MNIST tutorial with the shipped binary (0 vs 1) CNN: explains the first
//! `n` test digits 0/1 for both classes and writes JSON, `.npy` files and figures to
//! `target/xai-demo/kernelshap/` (or the folder given). Run:
//!
//! ```text
//! cargo run --release -p xai-shap --example dianna_mnist -- [n_images] [out_dir]
//! ```

use ndarray::s;
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(3);
    let out_dir = args.get(2).cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/xai-demo/kernelshap"
        )
        .to_string()
    });
    let kind = ModelKind::BinaryCnn;
    let model = load_pretrained(kind)?;
    let test = Mnist::load_default()?.test.binary_subset(0, 1);
    let images = test.images_f32(kind.scaling());
    let images = images.slice(s![..n.min(images.shape()[0]), .., .., ..]);
    let out = xai_shap::demo::dianna_mnist_example(
        &model,
        images,
        &[0, 1],
        Some(&["digit 0", "digit 1"]),
        &out_dir,
        |p| p,
    )?;
    for e in &out.explanations {
        let d = &e.data;
        println!(
            "{} segments ({} equal to the background), {} model evaluations, f(x) - f(0) = {:?}",
            d.segmentation.n_segments(),
            d.inert_segments.len(),
            d.n_evaluations,
            d.instance_values
                .iter()
                .zip(&d.base_values)
                .map(|(f, b)| f - b)
                .collect::<Vec<_>>()
        );
    }
    println!(
        "{:.3} s per image; {} files under {out_dir}",
        out.seconds_per_image,
        out.files.len()
    );
    Ok(())
}
