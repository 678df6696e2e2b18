//! CEM on synthetic 8x8 "bar" images with a small trained classifier and autoencoder, using
//! the parameters of alibi's MNIST example (`gamma` lowered to 1 for this small autoencoder):
//! prints each instance next to its pertinent negative / positive as text and the quality
//! summaries, and writes the explanations (JSON + .npy) under `target/cem-bars-demo/`.
//!
//! Run with `cargo run -p xai-cem --release --example cem_bars`.

use ndarray::s;
use xai_testkit::cem_runs as demo;
use xai_testkit::cem_toy as toy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let side = 8;
    let (model, train, _) = toy::trained_bar_classifier(side, 12, 7)?;
    let autoencoder = toy::trained_autoencoder(&train, 16, 11)?;
    let (test, labels) = toy::bar_images(2, side, 0.1, 2024);
    let out_dir = std::path::Path::new("target/cem-bars-demo");
    let outputs = demo::seed_example(
        &model,
        Some(&autoencoder),
        test.view().into_dyn(),
        out_dir,
        |p| p.gamma(1.0),
    )?;
    for output in &outputs {
        for (i, e) in output.explanations.iter().enumerate() {
            println!("instance {i} (label {}): {}", labels[i], e.data.summary());
            let x = test.slice(s![i, 0, .., ..]).to_owned().into_dyn();
            let drawn_x = demo::ascii_image(&x, -0.5, 0.5);
            let drawn_p = e
                .data
                .pertinent
                .as_ref()
                .map(|p| demo::ascii_image(&p.instance, -0.5, 0.5))
                .unwrap_or_else(|| "(none)\n".repeat(side));
            for (a, b) in drawn_x.lines().zip(drawn_p.lines()) {
                println!("  {a}   {b}");
            }
        }
        println!("{}\n", output.quality);
    }
    println!("explanations written under {}", out_dir.display());
    Ok(())
}
