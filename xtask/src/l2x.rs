//! `cargo xtask demo l2x [--epochs N] [--train-size N]`: loads the shipped L2X explainer of the
//! shipped MNISTNet (or trains one, with omnixai's defaults unless told otherwise, and saves it
//! under `models/l2x_mnist_net/`), explains the first 5 test images and plots, per image, the
//! digit, the importance heatmap and the selected patches.

use anyhow::{Context, Result};
use ndarray::Axis;
use xai_l2x::mnist::{mnist_demo, MnistDemoConfig};
use xai_viz::{heatmap_panels, HeatmapOptions, HeatmapPanel};

fn option(args: &[String], name: &str) -> Result<Option<usize>> {
    args.iter()
        .position(|a| a == name)
        .map(|i| {
            args.get(i + 1)
                .with_context(|| format!("{name} needs a number"))?
                .parse::<usize>()
                .with_context(|| format!("{name} needs a number"))
        })
        .transpose()
}

pub fn run(args: &[String]) -> Result<()> {
    let dir = crate::demo_dir("l2x")?;
    let mut config = MnistDemoConfig::default();
    if let Some(epochs) = option(args, "--epochs")? {
        config.params = config.params.num_epochs(epochs);
    }
    config.train_size = option(args, "--train-size")?;
    let demo = mnist_demo(&config)?;
    println!(
        "{} the L2X explainer ({})",
        if demo.trained {
            "trained and saved"
        } else {
            "loaded"
        },
        config.explainer_dir.display()
    );
    let k = demo.explanation.meta.params["k"].clone();
    let mut panels = Vec::new();
    for i in 0..demo.images.len_of(Axis(0)) {
        println!(
            "image {i}: label {}, prediction {}, approximator on {k} patches: {}",
            demo.true_labels[i], demo.predictions[i], demo.approximator_predictions[i]
        );
        panels.push(HeatmapPanel::image(
            format!(
                "label {}, pred {}",
                demo.true_labels[i], demo.predictions[i]
            ),
            demo.images.index_axis(Axis(0), i),
        ));
        panels.push(HeatmapPanel::heatmap(
            "importance",
            demo.importance.index_axis(Axis(0), i),
        ));
        panels.push(HeatmapPanel::image(
            format!(
                "{k} patches: approx. pred {}",
                demo.approximator_predictions[i]
            ),
            demo.selected.index_axis(Axis(0), i),
        ));
    }
    let path = dir.join("l2x.png");
    let mut opts = HeatmapOptions::default()
        .title("L2X on the MNISTNet: image, importance, selected patches")
        .colorbar_label("selection importance")
        .image_range(0.0, 1.0);
    opts.cols = Some(3);
    heatmap_panels(&path, &panels, &opts)?;
    let json = dir.join("explanation.json");
    demo.explanation.save_json(&json)?;
    demo.explanation.save_npy(&dir)?;
    println!("wrote {} and {}", path.display(), json.display());
    Ok(())
}
