//! Speed of `BurnModel` on a small CNN against the same network in `xai-models`, per burn CPU
//! backend (`ndarray`, and `flex` with this crate's `flex` feature): predictions of 10,000
//! images, per-sample gradients of 1,000 references (gradient-similarity fit: every parameter
//! by rows, every parameter with the dense layer factored, the dense layer alone factored),
//! KernelSHAP per image and CEM per image. The numbers are in docs/BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p xai-burn --features flex --example burn_cnn_speed
//! cargo run --release -p xai-burn --features flex --example burn_cnn_speed -- --references 200 \
//!     --predict 2000 --cem-iterations 50     # a quick run
//! ```
//! The CNN (MNIST-sized input): Conv2d(1→8, 3×3), BatchNorm, ReLU, MaxPool 2×2, Conv2d(8→16,
//! 3×3), ReLU, adaptive average pooling, Linear(16→10); random weights (speed does not depend on
//! training) and random images.
#![allow(deprecated)] // burn 0.22 deprecates its ndarray backend in favour of `flex`

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use clap::Parser;
use ndarray::{s, Array4, Axis};
use rand::{Rng, SeedableRng};
use xai_burn::{BurnModel, LinearTaps};
use xai_cem::{Cem, CemParams, Mode};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Targets};
use xai_grad_sim::{GradSimParams, GradSimValidParams, GradientSimilarity, SimilarityFn};
use xai_models::{Dense, Layer, MaxPool2d as XMaxPool, NamedLayer, Network, Padding};
use xai_shap::{Background, ImageKernelShapParams};

#[derive(Module, Debug)]
struct Cnn {
    conv1: Conv2d,
    bn: BatchNorm,
    relu: Relu,
    pool: MaxPool2d,
    conv2: Conv2d,
    gap: AdaptiveAvgPool2d,
    output: Linear,
}

impl Cnn {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_taps(x, &mut LinearTaps::off())
    }

    fn forward_taps(&self, x: Tensor<4>, taps: &mut LinearTaps) -> Tensor<2> {
        let h = self
            .pool
            .forward(self.relu.forward(self.bn.forward(self.conv1.forward(x))));
        let h = self.gap.forward(self.relu.forward(self.conv2.forward(h)));
        taps.linear("output", &self.output, h.flatten(1, 3))
    }
}

/// Time burn's CNN against the same network in xai-models.
#[derive(Parser, Debug)]
struct Args {
    /// burn backends to time: `ndarray`, `flex` (needs the `flex` feature), or both
    /// (comma-separated; run in that order, each after the xai-models baseline).
    #[arg(long, default_value = "ndarray,flex")]
    backends: String,
    /// References whose per-sample gradients the gradient-similarity fit computes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    references: u32,
    /// Images predicted in one call.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    predict: u32,
    /// KernelSHAP coalitions for the image explained.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    nsamples: u32,
    /// CEM iterations per c step (1 c step) for the image explained.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cem_iterations: u32,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn cnn(device: &Device) -> Cnn {
    Cnn {
        conv1: Conv2dConfig::new([1, 8], [3, 3]).init(device),
        bn: BatchNormConfig::new(8).init(device),
        relu: Relu::new(),
        pool: MaxPool2dConfig::new([2, 2]).init(),
        conv2: Conv2dConfig::new([8, 16], [3, 3]).init(device),
        gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        output: LinearConfig::new(16, 10).init(device),
    }
}

/// The same network in xai-models (convolution weights `[out, in, kh, kw]` to `[kh, kw, in, out]`).
fn xai_models_copy(m: &Cnn) -> Result<Network> {
    let v = |t: Tensor<1>| -> Result<Vec<f32>> {
        t.to_data().into_vec().map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    let conv = |c: &Conv2d| -> Result<xai_models::Conv2d> {
        let w = c.weight.val();
        let [o, i, kh, kw] = w.dims();
        let w: Vec<f32> = w
            .to_data()
            .into_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut hwio = vec![0.0; w.len()];
        for a in 0..o {
            for b in 0..i {
                for y in 0..kh {
                    for x in 0..kw {
                        hwio[((y * kw + x) * i + b) * o + a] = w[((a * i + b) * kh + y) * kw + x];
                    }
                }
            }
        }
        Ok(xai_models::Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: (kh, kw),
            stride: (1, 1),
            padding: Padding::Valid,
            weight: hwio,
            bias: v(c.bias.as_ref().context("a conv bias")?.val())?,
        })
    };
    let layers = vec![
        ("conv1", Layer::Conv2d(conv(&m.conv1)?)),
        (
            "bn",
            Layer::BatchNorm(xai_models::BatchNorm {
                gamma: v(m.bn.gamma.val())?,
                beta: v(m.bn.beta.val())?,
                mean: v(m.bn.running_mean.value())?,
                var: v(m.bn.running_var.value())?,
                eps: 1e-5,
            }),
        ),
        ("relu1", Layer::Relu),
        (
            "pool",
            Layer::MaxPool2d(XMaxPool {
                size: (2, 2),
                stride: (2, 2),
                padding: Padding::Valid,
            }),
        ),
        ("conv2", Layer::Conv2d(conv(&m.conv2)?)),
        ("relu2", Layer::Relu),
        ("gap", Layer::GlobalAvgPool),
        ("flatten", Layer::Flatten),
        (
            "output",
            Layer::Dense(Dense {
                in_features: 16,
                out_features: 10,
                weight: m
                    .output
                    .weight
                    .val()
                    .to_data()
                    .into_vec()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                bias: v(m.output.bias.as_ref().context("a dense bias")?.val())?,
            }),
        ),
    ];
    Ok(Network::new(
        "cnn",
        [1, 28, 28],
        layers
            .into_iter()
            .map(|(name, layer)| NamedLayer {
                name: name.into(),
                layer,
            })
            .collect(),
    )?)
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let out = f()?;
    Ok((t.elapsed().as_secs_f64(), out))
}

fn run(args: &Args) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let n_ref = args.references as usize;
    let refs = Array4::from_shape_fn((n_ref, 1, 28, 28), |_| rng.gen_range(0.0f32..1.0));
    let labels = Targets::Classes((0..n_ref).map(|i| i % 10).collect());
    let images = Array4::from_shape_fn((args.predict as usize, 1, 28, 28), |_| {
        rng.gen_range(0.0f32..1.0)
    });
    let image = images.slice(s![..1, .., .., ..]).to_owned();
    println!(
        "threads: {} (rayon), {} references, predict {} images, KernelSHAP {} coalitions, CEM \
         1 c step x {} iterations",
        rayon::current_num_threads(),
        n_ref,
        args.predict,
        args.nsamples,
        args.cem_iterations
    );
    let grad_sim = |selection: ParamSelection| -> Result<GradSimValidParams> {
        Ok(GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
            .sim_fn(SimilarityFn::GradCos)
            .precompute_grads(true)
            .param_selection(selection)
            .check()?)
    };
    let last = ParamSelection::Groups(vec!["output.weight".into(), "output.bias".into()]);
    let shap = ImageKernelShapParams::new()
        .labels(vec![0])
        .nsamples(args.nsamples as usize)
        .n_segments(50)
        .background(Background::Value(0.0))
        .seed(0)
        .check()?;
    let cem = CemParams::alibi_mnist_example(Mode::PertinentNegative)
        .c_steps(1)
        .max_iterations(args.cem_iterations as usize)
        .feature_range(0.0, 1.0)
        .check()?;

    // One set of weights: built once on the plain ndarray device, moved to each backend.
    let weights_device = Device::ndarray();
    weights_device.seed(0);
    let module = cnn(&weights_device);
    let net = xai_models_copy(&module)?;

    let measure = |name: &str,
                   model: &dyn DifferentiableModel,
                   factored: Option<&dyn DifferentiableModel>|
     -> Result<()> {
        let (t, _) = time(|| Ok(model.predict(images.view().into_dyn())?))?;
        println!(
            "{name:>22}  predict {} images           {t:8.3} s",
            args.predict
        );
        let fit = |m: &dyn DifferentiableModel, sel: ParamSelection| -> Result<f64> {
            let params = grad_sim(sel)?;
            Ok(time(|| {
                Ok(GradientSimilarity::new(m, params)?
                    .fit(refs.clone(), labels.clone())?
                    .n_references())
            })?
            .0)
        };
        let t = fit(model, ParamSelection::All)?;
        println!("{name:>22}  per-sample grads, all params {t:8.3} s");
        if let Some(f) = factored {
            let t = fit(f, ParamSelection::All)?;
            println!("{name:>22}  per-sample grads, all, factored {t:8.3} s");
            let t = fit(f, last.clone())?;
            println!("{name:>22}  per-sample grads, dense layer, factored {t:8.3} s");
        } else {
            let t = fit(model, last.clone())?;
            println!("{name:>22}  per-sample grads, dense layer {t:8.3} s");
        }
        let (t, _) = time(|| Ok(shap.explain(model, image.index_axis(Axis(0), 0))?))?;
        println!("{name:>22}  KernelSHAP per image          {t:8.3} s");
        let (t, _) = time(|| {
            Ok(Cem::white_box(cem.clone(), model)?
                .explain(image.index_axis(Axis(0), 0).into_dyn())?)
        })?;
        println!("{name:>22}  CEM per image                 {t:8.3} s");
        Ok(())
    };

    for backend in args.backends.split(',') {
        measure("xai-models", &net, None)?;
        let device = match backend.trim() {
            "ndarray" => Device::ndarray(),
            #[cfg(feature = "flex")]
            "flex" => Device::flex(),
            other => anyhow::bail!(
                "unknown or disabled backend `{other}` (ndarray; flex with --features flex)"
            ),
        };
        let name = format!("burn-{}", backend.trim());
        let model = BurnModel::new(module.clone(), &device, &[1, 28, 28], Cnn::forward)?;
        let factored = BurnModel::new(module.clone(), &device, &[1, 28, 28], Cnn::forward)?
            .with_factored_linear(Cnn::forward_taps)?;
        measure(&name, &model, Some(&factored))?;
    }
    Ok(())
}
