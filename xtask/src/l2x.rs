//! `cargo xtask demo l2x [--epochs N] [--train-size N]`: loads the shipped L2X explainer of the
//! shipped MNISTNet (with `--epochs`/`--train-size`, trains a fresh one with omnixai's defaults
//! otherwise, saved under the demo's folder, never over the shipped one), explains the first 5
//! test images and plots, per image, the digit, the importance heatmap (sequential scale) and
//! the selected patches.

use std::path::Path;

use anyhow::Result;
use ndarray::Axis;
use xai_testkit::l2x_mnist::{mnist_demo, MnistDemoConfig};
use xai_viz::{l2x_figure, L2xFigureOptions};

use crate::cli::L2xDemoArgs;

/// Runs the demo into `dir`; `smoke` explains 2 images (and trains on at most 64 images for
/// at most one epoch when asked to train).
pub fn run(dir: &Path, args: &L2xDemoArgs, smoke: bool) -> Result<()> {
    let mut config = MnistDemoConfig::default();
    let train = args.epochs.is_some() || args.train_size.is_some();
    if smoke {
        config.n_images = 2;
    }
    if train {
        if let Some(epochs) = args.epochs {
            config.params = config.params.num_epochs(epochs);
        }
        config.train_size = args.train_size;
        if smoke {
            config.params = config.params.num_epochs(1).batch_size(Some(32));
            config.train_size = Some(config.train_size.unwrap_or(64).min(64));
        }
        config.explainer_dir = dir.join("explainer");
        if config.explainer_dir.exists() {
            std::fs::remove_dir_all(&config.explainer_dir)?;
        }
    }
    let demo = mnist_demo(&config).map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{} the L2X explainer ({})",
        if demo.trained {
            "trained and saved"
        } else {
            "loaded"
        },
        config.explainer_dir.display()
    );
    let k = demo.explanation.data.k;
    for i in 0..demo.images.len_of(Axis(0)) {
        println!(
            "image {i}: label {}, prediction {}, approximator on {k} patches: {}",
            demo.true_labels[i], demo.predictions[i], demo.approximator_predictions[i]
        );
    }
    let titles = (0..demo.images.len_of(Axis(0)))
        .map(|i| {
            format!(
                "label {}, pred {}",
                demo.true_labels[i], demo.predictions[i]
            )
        })
        .collect();
    let path = dir.join("l2x.png");
    l2x_figure(
        &path,
        demo.images.view(),
        &demo.explanation,
        &L2xFigureOptions {
            image_titles: Some(titles),
            background: Some(config.params.clone().check()?.background()),
            image_range: Some((0.0, 1.0)),
            title: Some("L2X on the MNISTNet: image, importance, selected patches".into()),
        },
    )?;
    let json = dir.join("explanation.json");
    demo.explanation.save_json(&json)?;
    demo.explanation.save_npy(dir)?;
    println!("wrote {} and {}", path.display(), json.display());
    Ok(())
}
