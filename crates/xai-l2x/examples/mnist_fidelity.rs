//! The fidelity measurement of L2X on real MNIST for the shipped MNISTNet: for each `k`, train
//! (or load) an explainer, then print post-hoc accuracy and black-box agreement next to random
//! patches, with training time per epoch and explanation time per image.
//!
//! ```text
//! cargo run --release -p xai-l2x --example mnist_fidelity -- \
//!     [--model mnist_net] [--k 5,10,20] [--train N] [--test N] [--epochs 20] [--seed 0]
//!     [--dir PATH] [--quiet]
//! ```
//!
//! Defaults: k = 5, 10, 20; all 60,000 training and 10,000 test images; omnixai's 20 epochs.
//! With `--dir`, explainers are loaded from (or saved to) `PATH/k<k>`. Needs MNIST
//! (`xai_datasets::Mnist::load_default`) and the model's shipped weights
//! (`models/mnist_net.safetensors`).

use std::path::PathBuf;
use std::process::ExitCode;

use xai_models::zoo::ModelKind;
use xai_testkit::l2x_mnist::{mnist_fidelity_table, MnistFidelityConfig};

fn parse(args: &[String]) -> Result<MnistFidelityConfig, String> {
    let mut config = MnistFidelityConfig::default();
    let mut i = 0;
    let value = |i: usize| -> Result<&String, String> {
        args.get(i + 1)
            .ok_or_else(|| format!("`{}` needs a value", args[i]))
    };
    let number = |s: &String, what: &str| -> Result<usize, String> {
        s.parse::<usize>()
            .map_err(|e| format!("{what}: `{s}` is not a non-negative integer ({e})"))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--model" => {
                let name = value(i)?;
                config.model = ModelKind::from_name(name)
                    .ok_or_else(|| format!("--model: unknown model `{name}`"))?;
                i += 1;
            }
            "--k" => {
                config.ks = value(i)?
                    .split(',')
                    .map(|s| number(&s.trim().to_string(), "--k"))
                    .collect::<Result<_, _>>()?;
                i += 1;
            }
            "--train" => {
                config.train_size = Some(number(value(i)?, "--train")?);
                i += 1;
            }
            "--test" => {
                config.test_size = Some(number(value(i)?, "--test")?);
                i += 1;
            }
            "--epochs" => {
                config.num_epochs = number(value(i)?, "--epochs")?;
                i += 1;
            }
            "--seed" => {
                config.seed = number(value(i)?, "--seed")? as u64;
                i += 1;
            }
            "--dir" => {
                config.explainer_dir = Some(PathBuf::from(value(i)?));
                i += 1;
            }
            "--quiet" => config.progress = false,
            "-h" | "--help" => {
                return Err(
                    "usage: mnist_fidelity [--model mnist_net] [--k 5,10,20] [--train N] [--test N] [--epochs E] \
                     [--seed S] [--dir PATH] [--quiet]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
        i += 1;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("L2X fidelity on MNIST: {config:?}");
    match mnist_fidelity_table(&config) {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
