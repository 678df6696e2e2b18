//! Train a small MLP in dfdx on MNIST for one epoch, then explain it with gradient similarity and
//! KernelSHAP through `DfdxModel`, and draw both explanations.
//!
//! ```text
//! cargo run --release -p xai-dfdx --example dfdx_mnist
//! ```
//! Figures go to `target/xai-dfdx-example/` (`grad_sim.png`, `kernel_shap.png`).

use anyhow::Result;
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

fn main() -> Result<()> {
    let out = std::path::PathBuf::from("target/xai-dfdx-example");
    std::fs::create_dir_all(&out)?;
    let mnist = Mnist::load_default()?;
    let x_train = mnist.train.images_f32(Scaling::UnitInterval);
    let y_train = mnist.train.labels_usize();
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

    // 3. Gradient similarity: 2,000 training images as references, 4 test images explained.
    let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
        .sim_fn(SimilarityFn::GradCos)
        .precompute_grads(true)
        .n_similar(5)
        .check()?;
    let refs = x_train.slice(s![..2000, .., .., ..]).to_owned();
    let fitted = GradientSimilarity::new(&model, params)?
        .fit(refs, Targets::Classes(y_train[..2000].to_vec()))?;
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
            .nsamples(1000)
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
