//! `cargo xtask demo cem`: alibi's CEM MNIST example with the shipped CNN and autoencoder
//! (both on inputs in [-0.5, 0.5]): test image 4, a pertinent negative and a pertinent positive
//! with the seed's settings, and one figure of the original, the autoencoder's reconstruction,
//! the PN and the PP, each titled with its prediction.

use anyhow::{Context, Result};
use ndarray::{s, Array2};
use xai_core::{argmax_rows, Predictor};
use xai_datasets::Mnist;
use xai_models::zoo::{load_pretrained, ModelKind};
use xai_viz::{image_grid, ImageGridOptions};

/// The seed explains test image 4.
const TEST_INDEX: usize = 4;

pub fn run() -> Result<()> {
    let dir = crate::demo_dir("cem")?;
    let mnist = Mnist::load_default().context("loading MNIST")?;
    let cnn = load_pretrained(ModelKind::CemCnn)?;
    let ae = load_pretrained(ModelKind::CemAutoencoder)?;
    let x = mnist
        .test
        .subset(&[TEST_INDEX])?
        .images_f32(ModelKind::CemCnn.scaling());
    let outputs = xai_cem::demo::seed_example(&cnn, Some(&ae), x.view().into_dyn(), &dir, |p| p)?;
    let recon = ae.predict(x.view().into_dyn())?;
    let recon_image = recon.row(0).to_owned().into_shape_with_order((28, 28))?;
    let recon_pred = argmax_rows(
        cnn.predict(
            recon
                .clone()
                .into_shape_with_order((1, 1, 28, 28))?
                .view()
                .into_dyn(),
        )?
        .view(),
    )[0];
    let original: Array2<f32> = x.slice(s![0, 0, .., ..]).to_owned();
    let mut images = vec![original, recon_image];
    let x_pred = outputs[0].explanations[0].data.x_pred;
    let mut titles = vec![
        format!("original, pred {x_pred}"),
        format!("autoencoder, pred {recon_pred}"),
    ];
    for (out, name) in outputs
        .iter()
        .zip(["pertinent negative", "pertinent positive"])
    {
        let data = &out.explanations[0].data;
        match &data.pertinent {
            Some(p) => {
                images.push(
                    p.instance
                        .view()
                        .into_shape_with_order((28, 28))?
                        .to_owned(),
                );
                titles.push(format!("{name}, pred {}", p.pred));
            }
            None => {
                images.push(Array2::from_elem((28, 28), -0.5));
                titles.push(format!("no {name} found"));
            }
        }
        println!("{}: {}", name, data.summary());
        println!("{}", out.quality);
    }
    let path = dir.join("cem.png");
    image_grid(
        &path,
        &images,
        &titles,
        &ImageGridOptions::default()
            .grid(1, 4)
            .value_range(-0.5, 0.5)
            .title(format!("CEM on MNIST test image {TEST_INDEX}")),
    )?;
    println!(
        "wrote {} and the explanations under {}",
        path.display(),
        dir.display()
    );
    Ok(())
}
