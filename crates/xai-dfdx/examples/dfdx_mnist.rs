//! Train a small MLP in dfdx on MNIST for one epoch, then explain it with gradient similarity and
//! KernelSHAP through `DfdxModel`, and draw both explanations.
//!
//! ```text
//! cargo run --release -p xai-dfdx --example dfdx_mnist
//! cargo run --release -p xai-dfdx --example dfdx_mnist -- --train-size 2000 --references 100 \
//!     --nsamples 300 --out /tmp/dfdx-example      # a quick run
//! ```
//! Figures go to `target/xai-dfdx-example/` (`grad_sim.png`, `kernel_shap.png`) unless `--out`
//! names another folder.

use anyhow::{Context, Result};
use clap::Parser;
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use ndarray::{s, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use xai_core::{argmax_rows, Loss, OutputKind, Predictor, Targets};
use xai_datasets::{Mnist, Scaling};
use xai_dfdx::conv::FlattenTo;
use xai_dfdx::DfdxModel;
use xai_grad_sim::{GradSimParams, GradientSimilarity, SimilarityFn};
use xai_shap::{Background, ImageKernelShapParams};
use xai_viz::{heatmap_panels, image_grid, HeatmapOptions, HeatmapPanel, ImageGridOptions};

/// The model: flatten the `[1, 28, 28]` image, 784 -> 64 -> 10 with a ReLU (logits out).
type Mlp = (
    FlattenTo<784>,
    dfdx::nn::modules::Linear<784, 64, f32, Cpu>,
    ReLU,
    dfdx::nn::modules::Linear<64, 10, f32, Cpu>,
);

/// Train a dfdx MLP on MNIST for one epoch and explain it with gradient similarity and
/// KernelSHAP.
#[derive(Parser, Debug)]
struct Args {
    /// Training images used for the epoch (the first N of MNIST's 60,000).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u32).range(64..=60_000))]
    train_size: u32,
    /// Training images used as gradient-similarity references.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(5..=60_000))]
    references: u32,
    /// KernelSHAP coalitions per explained image.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    nsamples: u32,
    /// Folder for the figures.
    #[arg(long, default_value = "target/xai-dfdx-example")]
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

    // 1. Train for one epoch with dfdx's Adam.
    let dev = Cpu::seed_from_u64(0);
    let (l1, _, l2) = dev.build_module::<(Linear<784, 64>, ReLU, Linear<64, 10>), f32>();
    let mut module: Mlp = (FlattenTo, l1, ReLU, l2);
    let mut opt = Adam::new(
        &module,
        AdamConfig {
            lr: 1e-3,
            ..Default::default()
        },
    );
    let mut grads = module.alloc_grads();
    let mut order: Vec<usize> = (0..x_train.shape()[0]).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1));
    let start = std::time::Instant::now();
    for batch in order.chunks(64) {
        let b = batch.len();
        let x = x_train.select(Axis(0), batch);
        let x = dev.tensor_from_vec(
            x.iter().copied().collect(),
            (b, Const::<1>, Const::<28>, Const::<28>),
        );
        let mut onehot = vec![0.0f32; b * 10];
        for (i, &k) in batch.iter().enumerate() {
            onehot[i * 10 + y_train[k]] = 1.0;
        }
        let y = dev.tensor_from_vec(onehot, (b, Const::<10>));
        let logits = module.try_forward(x.traced(grads))?;
        let loss = cross_entropy_with_logits_loss(logits, y);
        grads = loss.backward();
        opt.update(&mut module, &grads)
            .map_err(|e| anyhow::anyhow!("adam: {e:?}"))?;
        module.zero_grads(&mut grads);
    }
    println!(
        "trained one epoch in {:.1} s",
        start.elapsed().as_secs_f32()
    );

    // 2. Wrap it: the five lines of the crate docs.
    let model = DfdxModel::<_, Rank3<1, 28, 28>>::with_factored_linear(module, &dev)?;
    let pred = argmax_rows(model.predict(x_test.view().into_dyn())?.view());
    let acc = pred.iter().zip(&y_test).filter(|(p, y)| p == y).count() as f32 / y_test.len() as f32;
    println!("test accuracy {:.2}%", 100.0 * acc);

    // 3. Gradient similarity: the first training images as references (2,000 by default), 4 test
    // images explained.
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
        .title("dfdx MLP: most similar training images (grad_cos)")
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
        title: Some("dfdx MLP: KernelSHAP".into()),
        colorbar_label: Some("SHAP value".into()),
        ..Default::default()
    };
    heatmap_panels(out.join("kernel_shap.png"), &panels, &opts)?;
    println!("figures in {}", out.display());
    Ok(())
}
