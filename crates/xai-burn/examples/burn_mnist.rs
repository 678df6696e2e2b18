//! Train a small MLP in burn on MNIST for one epoch (burn's flex CPU backend with autodiff), then
//! explain it with gradient similarity and KernelSHAP through `BurnModel`, and draw both
//! explanations.
//!
//! ```text
//! cargo run --release -p xai-burn --example burn_mnist
//! cargo run --release -p xai-burn --example burn_mnist -- --train-size 2000 --references 100 \
//!     --nsamples 300 --out /tmp/burn-example      # a quick run
//! ```
//! Figures go to `target/xai-burn-example/` (`grad_sim.png`, `kernel_shap.png`) unless `--out`
//! names another folder.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Int;
use clap::Parser;
use ndarray::{s, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use xai_burn::BurnModel;
use xai_core::{argmax_rows, Loss, OutputKind, Predictor, Targets};
use xai_datasets::{Mnist, Scaling};
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_shap::{Background, ImageKernelShapParams};
use xai_viz::{heatmap_panels, image_grid, HeatmapOptions, HeatmapPanel, ImageGridOptions};

/// 784 -> 64 -> 10 with a ReLU, logits out.
#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    relu: Relu,
    output: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = x.flatten(1, 3);
        self.output
            .forward(self.relu.forward(self.hidden.forward(x)))
    }
}

/// Train a burn MLP on MNIST for one epoch and explain it with gradient similarity and
/// KernelSHAP.
#[derive(Parser, Debug)]
struct Args {
    /// Training images used for the epoch (the first N of MNIST's 60,000).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u32).range(64..=60_000))]
    train_size: u32,
    /// Training images used as gradient-similarity references.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(5..=60_000))]
    references: u32,
    /// KernelSHAP coalitions per explained image.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    nsamples: u32,
    /// Folder for the figures.
    #[arg(long, default_value = "target/xai-burn-example")]
    out: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<()> {
    let out = args.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mnist = Mnist::load_default()?;
    let n_train = args.train_size as usize;
    let x_train = mnist
        .train
        .images_f32(Scaling::UnitInterval)
        .slice(s![..n_train, .., .., ..])
        .to_owned();
    let y_train = mnist.train.labels_usize()[..n_train].to_vec();
    let x_test = mnist.test.images_f32(Scaling::UnitInterval);
    let y_test = mnist.test.labels_usize();

    // 1. Train for one epoch with burn's Adam (any device works: Device::ndarray(), a GPU, ...).
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut module = Mlp {
        hidden: LinearConfig::new(784, 64).init(&device),
        relu: Relu::new(),
        output: LinearConfig::new(64, 10).init(&device),
    };
    let mut optim = AdamConfig::new().init();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut order: Vec<usize> = (0..x_train.shape()[0]).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1));
    let start = std::time::Instant::now();
    for batch in order.chunks(64) {
        let b = batch.len();
        let x = x_train.select(Axis(0), batch);
        let x = Tensor::<4>::from_data(
            TensorData::new(x.iter().copied().collect::<Vec<f32>>(), [b, 1, 28, 28]),
            &device,
        );
        let y: Vec<i64> = batch.iter().map(|&k| y_train[k] as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [b]), &device);
        let loss = ce.forward(module.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(1e-3, module, grads);
    }
    println!(
        "trained one epoch in {:.1} s",
        start.elapsed().as_secs_f32()
    );

    // 2. Wrap it: the five lines of the crate docs.
    let model = BurnModel::new(module, &device, &[1, 28, 28], Mlp::forward)?;
    let pred = argmax_rows(model.predict(x_test.view().into_dyn())?.view());
    let acc = pred.iter().zip(&y_test).filter(|(p, y)| p == y).count() as f32 / y_test.len() as f32;
    println!("test accuracy {:.2}%", 100.0 * acc);

    // 3. Gradient similarity: the first training images as references (burn's per-sample gradients
    // are row by row and stored in full), 4 test images explained.
    let n_ref = (args.references as usize).min(n_train);
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .n_similar(5)
        .check()?;
    let refs = x_train.slice(s![..n_ref, .., .., ..]).to_owned();
    let fitted = GradientSimilarity::new(&model, params)?
        .fit(refs, Targets::Classes(y_train[..n_ref].to_vec()))?;
    let test = x_test.slice(s![..4, .., .., ..]);
    let sim = fitted.explain(test.into_dyn(), None)?;
    let mut images = Vec::new();
    let mut titles = Vec::new();
    for i in 0..4 {
        images.push(test.slice(s![i, 0, .., ..]).to_owned());
        titles.push(format!("test, pred {}", pred[i]));
        for k in 0..5 {
            let r = sim.data.most_similar_indices[[i, k]];
            images.push(x_train.slice(s![r, 0, .., ..]).to_owned());
            titles.push(format!(
                "{:.2} (label {})",
                sim.data.most_similar_scores[[i, k]],
                y_train[r]
            ));
        }
    }
    let opts = ImageGridOptions::default()
        .grid(4, 6)
        .title("burn MLP: most similar training images (grad_cos)")
        .value_range(0.0, 1.0);
    image_grid(out.join("grad_sim.png"), &images, &titles, &opts)?;

    // 4. KernelSHAP on SLIC superpixels for the predicted class of 3 test images.
    let mut shap_maps = Vec::new();
    for i in 0..3 {
        let params = ImageKernelShapParams::new()
            .labels(vec![pred[i]])
            .nsamples(args.nsamples as usize)
            .n_segments(50)
            .background(Background::Value(0.0))
            .seed(i as u64)
            .check()?;
        let e = params.explain(&model, x_test.index_axis(Axis(0), i))?;
        shap_maps.push(e.data.attributions.index_axis(Axis(0), 0).to_owned());
    }
    let mut panels = Vec::new();
    for i in 0..3 {
        panels.push(HeatmapPanel::overlay(
            format!("pred {}", pred[i]),
            x_test.slice(s![i, 0, .., ..]),
            shap_maps[i].view(),
        ));
    }
    let opts = HeatmapOptions {
        title: Some("burn MLP: KernelSHAP".into()),
        colorbar_label: Some("SHAP value".into()),
        ..Default::default()
    };
    heatmap_panels(out.join("kernel_shap.png"), &panels, &opts)?;
    println!("figures in {}", out.display());
    Ok(())
}
