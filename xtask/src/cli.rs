//! The command line of `cargo xtask` (clap): every form the README shows parses here, and
//! combinations that mean nothing (an ONNX flag without `kernelshap`, an L2X flag without `l2x`)
//! are rejected with a message before anything runs.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use xai_onnx::{Backend, Layout, OutputKind};

/// The demo methods, in the order `cargo xtask demo` runs them.
pub const METHODS: [&str; 4] = ["similarity", "cem", "kernelshap", "l2x"];

/// `cargo xtask`: developer workflows of the xai workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a shipped network with its seed recipe and fixed seed, print its test accuracy
    /// (or MSE), and write `<name>.safetensors` and `<name>.json` to the models folder.
    Train(TrainArgs),
    /// Reproduce the seeds' figures: PNG files, explanations as JSON and `.npy`, under
    /// `target/xai-demo/<method>/` (or `--out`).
    Demo(DemoArgs),
    /// Check that every crate's declared `rust-version` covers the `rust-version` of everything
    /// it builds with (from `cargo metadata`).
    Msrv,
    /// Write MNIST (from `data/mnist/`) as `images.npy` and `labels.npy`, the arrays `xai` reads
    /// as inputs or as a reference set.
    MnistNpy(MnistNpyArgs),
}

/// `cargo xtask mnist-npy [--split train|test] [--count N] --out DIR`.
#[derive(Debug, Args)]
pub struct MnistNpyArgs {
    /// Which split.
    #[arg(long, default_value = "train", value_parser = ["train", "test"])]
    pub split: String,
    /// The first N images of the split (default: all of them).
    #[arg(long)]
    pub count: Option<usize>,
    /// The folder to write `images.npy` and `labels.npy` to.
    #[arg(long)]
    pub out: PathBuf,
}

/// `cargo xtask train <model|all> [--epochs N] [--train-size N] [--out DIR]`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// alibi_cnn, cem_cnn, cem_autoencoder, mnist_net, binary_cnn, resnet_bn, or all.
    pub model: String,
    /// Epochs (default: the model's recipe).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train on this many training images, drawn with the recipe's seed (default: all; the
    /// shipped weights use all).
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Folder to write the weights and their JSON record to (default: the models folder,
    /// `$XAI_MODELS_DIR` or the workspace's `models/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `cargo xtask demo [<method>|all] [flags]`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// similarity, cem, kernelshap, l2x, or all.
    #[arg(default_value = "all", value_parser = ["all", "similarity", "cem", "kernelshap", "l2x"])]
    pub method: String,
    /// Folder the figures and explanations go to, one subfolder per method (default:
    /// `target/xai-demo/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A quick run with tiny budgets (few references, iterations and samples): checks that every
    /// step works, not what the figures show.
    #[arg(long)]
    pub smoke: bool,
    /// ONNX flags of the kernelshap demo.
    #[command(flatten)]
    pub onnx: OnnxDemoArgs,
    /// Flags of the l2x demo.
    #[command(flatten)]
    pub l2x: L2xDemoArgs,
}

/// `cargo xtask demo kernelshap --onnx <file> [...]`: explain an ONNX classifier instead.
#[derive(Debug, Args, Default)]
pub struct OnnxDemoArgs {
    /// An ONNX classifier to explain (kernelshap only) instead of the shipped binary CNN.
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// The model's input layout: nchw or nhwc.
    #[arg(long, requires = "onnx")]
    pub layout: Option<Layout>,
    /// The model sees `x * scale + offset` for pixels `x` in [0, 1] (e.g. 255 for raw pixels).
    #[arg(long, requires = "onnx", allow_negative_numbers = true)]
    pub input_scale: Option<f32>,
    /// See `--input-scale`.
    #[arg(long, requires = "onnx", allow_negative_numbers = true)]
    pub input_offset: Option<f32>,
    /// What the model outputs: logits, probabilities or log-probabilities (default: read from
    /// the graph's last node).
    #[arg(long, requires = "onnx")]
    pub output: Option<OutputKind>,
    /// auto (the importer, else the graph engine, else tract), import, graph, or tract.
    #[arg(long, requires = "onnx")]
    pub backend: Option<Backend>,
}

/// `cargo xtask demo l2x [--epochs N] [--train-size N]`: train a fresh explainer instead of
/// loading the shipped one.
#[derive(Debug, Args, Default)]
pub struct L2xDemoArgs {
    /// Train a fresh L2X explainer for this many epochs (saved under the demo's output folder,
    /// never over the shipped one).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train the fresh explainer on this many training images (default: all 60,000).
    #[arg(long)]
    pub train_size: Option<usize>,
}

impl DemoArgs {
    /// The methods to run, after checking that every flag applies to one of them.
    pub fn methods(&self) -> Result<Vec<&'static str>> {
        let methods: Vec<&'static str> = if self.method == "all" {
            METHODS.to_vec()
        } else {
            METHODS
                .iter()
                .copied()
                .filter(|m| *m == self.method)
                .collect()
        };
        if self.onnx.onnx.is_some() && self.method != "kernelshap" {
            bail!(
                "--onnx applies to the kernelshap demo only: cargo xtask demo kernelshap --onnx <file>"
            );
        }
        if (self.l2x.epochs.is_some() || self.l2x.train_size.is_some()) && self.method != "l2x" {
            bail!(
                "--epochs and --train-size apply to the l2x demo only: cargo xtask demo l2x --epochs <n>"
            );
        }
        if self.l2x.epochs == Some(0) || self.l2x.train_size == Some(0) {
            bail!("--epochs and --train-size must be at least 1");
        }
        Ok(methods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
    }

    fn demo(args: &[&str]) -> DemoArgs {
        match parse(args).unwrap().command {
            Command::Demo(d) => d,
            other => panic!("expected demo, got {other:?}"),
        }
    }

    #[test]
    fn bare_demo_runs_every_method() {
        // The README's main command; it used to panic after the second demo.
        let d = demo(&["demo"]);
        assert_eq!(d.method, "all");
        assert_eq!(d.methods().unwrap(), METHODS.to_vec());
        assert_eq!(demo(&["demo", "all"]).methods().unwrap(), METHODS.to_vec());
    }

    #[test]
    fn each_method_alone() {
        for m in METHODS {
            assert_eq!(demo(&["demo", m]).methods().unwrap(), vec![m]);
        }
        assert!(parse(&["demo", "lime"]).is_err());
    }

    #[test]
    fn kernelshap_onnx_flags() {
        let d = demo(&[
            "demo",
            "kernelshap",
            "--onnx",
            "m.onnx",
            "--layout",
            "nhwc",
            "--input-scale",
            "255",
            "--input-offset",
            "-0.5",
            "--output",
            "log-probabilities",
            "--backend",
            "tract",
        ]);
        assert_eq!(d.methods().unwrap(), vec!["kernelshap"]);
        assert_eq!(d.onnx.onnx.as_deref(), Some(std::path::Path::new("m.onnx")));
        assert_eq!(d.onnx.layout, Some(Layout::Nhwc));
        assert_eq!(d.onnx.input_scale, Some(255.0));
        assert_eq!(d.onnx.input_offset, Some(-0.5));
        assert_eq!(d.onnx.output, Some(OutputKind::LogProbabilities));
        assert_eq!(d.onnx.backend, Some(Backend::Tract));
        // ONNX flags need --onnx; --onnx needs kernelshap; bad values are rejected.
        assert!(parse(&["demo", "kernelshap", "--layout", "nchw"]).is_err());
        assert!(demo(&["demo", "--onnx", "m.onnx"]).methods().is_err());
        assert!(demo(&["demo", "cem", "--onnx", "m.onnx"])
            .methods()
            .is_err());
        assert!(parse(&["demo", "kernelshap", "--onnx", "m.onnx", "--layout", "chw"]).is_err());
        assert!(parse(&[
            "demo",
            "kernelshap",
            "--onnx",
            "m.onnx",
            "--input-scale",
            "x"
        ])
        .is_err());
        assert!(parse(&["demo", "kernelshap", "--onnx"]).is_err());
    }

    #[test]
    fn l2x_flags() {
        let d = demo(&["demo", "l2x", "--epochs", "2", "--train-size", "600"]);
        assert_eq!(d.methods().unwrap(), vec!["l2x"]);
        assert_eq!((d.l2x.epochs, d.l2x.train_size), (Some(2), Some(600)));
        assert!(demo(&["demo", "--epochs", "2"]).methods().is_err());
        assert!(demo(&["demo", "cem", "--train-size", "2"])
            .methods()
            .is_err());
        assert!(demo(&["demo", "l2x", "--epochs", "0"]).methods().is_err());
        assert!(parse(&["demo", "l2x", "--epochs", "-1"]).is_err());
    }

    #[test]
    fn train_forms() {
        for args in [
            vec!["train", "alibi_cnn"],
            vec!["train", "all"],
            vec!["train", "binary_cnn", "--epochs", "1"],
            vec![
                "train",
                "mnist_net",
                "--epochs",
                "1",
                "--train-size",
                "100",
                "--out",
                "/tmp/x",
            ],
        ] {
            match parse(&args).unwrap().command {
                Command::Train(t) => assert_eq!(t.model, args[1]),
                other => panic!("expected train, got {other:?}"),
            }
        }
        assert!(parse(&["train"]).is_err());
        assert!(parse(&["train", "alibi_cnn", "--epochs", "many"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["deploy"]).is_err());
    }
}
