//! `cargo xtask mnist-npy`: the repository's MNIST (`data/mnist/`) as `.npy` arrays that `xai`
//! reads as a reference set or inputs: `images.npy` (`[n, 1, 28, 28]`, `f32` in `[0, 1]`, the
//! shipped networks' scale) and `labels.npy` (`[n]`, class indices as `f32`), e.g. for
//! `xai similarity --reference images.npy --reference-labels labels.npy` over the whole
//! training set (docs/BENCHMARKS.md, "Sharded gradient similarity").

use anyhow::{bail, Context, Result};
use ndarray::{ArrayD, IxDyn};
use xai_datasets::{Mnist, Scaling};

use crate::cli::MnistNpyArgs;

/// Writes the first `count` images of the split (all without `count`) and their labels.
pub fn run(a: &MnistNpyArgs) -> Result<()> {
    let mnist = Mnist::load_default().context("reading MNIST from data/mnist")?;
    let split = match a.split.as_str() {
        "train" => &mnist.train,
        "test" => &mnist.test,
        other => bail!("--split {other}: expected train or test"),
    };
    let n = a.count.unwrap_or(split.len());
    if n == 0 || n > split.len() {
        bail!(
            "--count {n}: the {} split has {} images (expected 1..={})",
            a.split,
            split.len(),
            split.len()
        );
    }
    let split = split.subset(&(0..n).collect::<Vec<_>>())?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let images = split.images_f32(Scaling::UnitInterval).into_dyn();
    let labels: Vec<f32> = split.labels_usize().iter().map(|&l| l as f32).collect();
    let labels = ArrayD::from_shape_vec(IxDyn(&[n]), labels)?;
    xai_core::write_npy(a.out.join("images.npy"), &images)?;
    xai_core::write_npy(a.out.join("labels.npy"), &labels)?;
    println!(
        "wrote {n} {} images and labels to {}",
        a.split,
        a.out.display()
    );
    Ok(())
}
