//! `cargo xtask train <model|all> [--epochs N] [--train-size N] [--out DIR]`: trains an example network with its seed recipe and a fixed
//! seed, prints test accuracy (or MSE), and writes `models/<name>.safetensors` plus
//! `models/<name>.json` describing how the file was made.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xai_core::Targets;
use xai_datasets::{Mnist, MnistSplit};
use xai_models::zoo::ModelKind;
use xai_models::{evaluate, save_weights, train, Metrics, TrainConfig};

use crate::cli::TrainArgs;

#[derive(Serialize)]
struct Record<'a> {
    model: &'a str,
    parameters: usize,
    data: String,
    input_scaling: String,
    config: &'a TrainConfig,
    init_seed: u64,
    epochs: Vec<Metrics>,
    test: Metrics,
    train_seconds: f64,
    command: String,
}

/// Runs `cargo xtask train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let which = args.model.as_str();
    let kinds: Vec<ModelKind> = if which == "all" {
        ModelKind::ALL.to_vec()
    } else {
        vec![ModelKind::from_name(which).with_context(|| {
            format!("unknown model `{which}`; expected one of: all, {}", names())
        })?]
    };
    if args.epochs == Some(0) || args.train_size == Some(0) {
        bail!("--epochs and --train-size must be at least 1");
    }
    let mnist = Mnist::load_default().context("loading MNIST")?;
    for kind in kinds {
        train_one(kind, &mnist, args)?;
    }
    Ok(())
}

fn names() -> String {
    ModelKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn split_for(kind: ModelKind, split: &MnistSplit) -> MnistSplit {
    match kind {
        ModelKind::BinaryCnn => split.binary_subset(0, 1),
        _ => split.clone(),
    }
}

fn targets_for(kind: ModelKind, split: &MnistSplit) -> Targets {
    match kind {
        ModelKind::CemAutoencoder => Targets::Values(split.images_flat_f32(kind.scaling())),
        _ => Targets::Classes(split.labels_usize()),
    }
}

fn train_one(kind: ModelKind, mnist: &Mnist, args: &TrainArgs) -> Result<()> {
    let init_seed = 0;
    let mut net = kind.build(init_seed);
    let mut config = kind.train_config();
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    let mut train_split = split_for(kind, &mnist.train);
    if let Some(n) = args.train_size {
        train_split = train_split.random_subset(n.min(train_split.len()), config.seed)?;
    }
    let test_split = split_for(kind, &mnist.test);
    let x_train = train_split.images_f32(kind.scaling());
    let x_test = test_split.images_f32(kind.scaling());
    let t_train = targets_for(kind, &train_split);
    let t_test = targets_for(kind, &test_split);
    println!(
        "training {} ({} parameters) on {} images: {} epochs, batch {}, Adam lr {}, seed {}",
        kind.name(),
        net.n_params(),
        train_split.len(),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed
    );
    let start = Instant::now();
    let history = train(&mut net, x_train.view(), &t_train, &config)?;
    let seconds = start.elapsed().as_secs_f64();
    let test = evaluate(&net, x_test.view(), &t_test, &config.loss)?;
    match test.accuracy {
        Some(acc) => println!(
            "{}: test accuracy {:.4} (loss {:.4}) on {} images, trained in {:.0} s",
            kind.name(),
            acc,
            test.loss,
            test_split.len(),
            seconds
        ),
        None => println!(
            "{}: test MSE {:.5} on {} images, trained in {:.0} s",
            kind.name(),
            test.loss,
            test_split.len(),
            seconds
        ),
    }
    let path = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.join(format!("{}.safetensors", kind.name()))
        }
        None => kind.weights_path(),
    };
    let mut meta = HashMap::new();
    meta.insert("model".to_string(), kind.name().to_string());
    meta.insert("scaling".to_string(), format!("{:?}", kind.scaling()));
    save_weights(&net, &path, meta)?;
    let record = Record {
        model: kind.name(),
        parameters: net.n_params(),
        data: format!(
            "MNIST {} ({} train / {} test images), data/mnist",
            if kind == ModelKind::BinaryCnn {
                "digits 0 and 1"
            } else {
                "all digits"
            },
            train_split.len(),
            test_split.len()
        ),
        input_scaling: format!("{:?}", kind.scaling()),
        config: &config,
        init_seed,
        epochs: history,
        test,
        train_seconds: seconds,
        command: std::iter::once("cargo xtask".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let json_path = path.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&record)?)?;
    println!("wrote {} and {}", path.display(), json_path.display());
    Ok(())
}
