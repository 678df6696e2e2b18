//! The command line (clap): one subcommand per method, with the model, input and output flags
//! every method shares ([`CommonArgs`]) and the method's parameters with the library's defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Result;
use crate::inputs::{Fit, ImageSpec};
use crate::model::{LoadedModel, ModelArgs};
use crate::output::Reporter;
use crate::progress::Progress;

/// Explain an image classifier's predictions: an ONNX file or a shipped network, on your own
/// PNG/JPEG images (converted to the model's channels and size; pixels p in 0..=255 become
/// p / 255 in [0, 1] for ONNX models, or the shipped network's training scale) or `.npy` arrays
/// (used as they are, in that value scale).
#[derive(Debug, Parser)]
#[command(name = "xai", version, about, long_about = None)]
pub struct Cli {
    /// The method.
    #[command(subcommand)]
    pub command: Command,
}

/// The methods.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// KernelSHAP on SLIC superpixels (dianna's explain_image): one attribution map per
    /// explained class.
    Shap(crate::shap::ShapArgs),
    /// Gradient similarity (alibi's GradientSimilarity): the reference samples whose loss
    /// gradients are most like the input's. Needs gradients (a shipped model, or an ONNX model
    /// the importer reads) and --reference.
    Similarity(crate::similarity::SimilarityArgs),
    /// Contrastive explanations (alibi's CEM): a pertinent negative (what to add to change the
    /// class) and a pertinent positive (what suffices to keep it).
    Cem(crate::cem::CemArgs),
    /// L2X (omnixai's L2XImage): trains a patch selector on --reference (or loads one with
    /// --explainer) and shows the k patches that explain each input.
    L2x(crate::l2x::L2xArgs),
}

/// The flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The model and how to feed it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Inputs to explain: PNG/JPEG images, `.npy` arrays ([c, h, w] or a batch [n, c, h, w]),
    /// or folders of them.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub input: Vec<PathBuf>,
    /// Folder for the results: one subfolder per input with the figure, explanation.json and
    /// the .npy arrays.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Images of another size than the model's: resize them (bilinear) or reject them.
    #[arg(long, value_enum, default_value_t = Fit::Resize)]
    pub fit: Fit,
    /// Invert images (p -> 255 - p), e.g. dark digits on white paper for an MNIST model.
    #[arg(long)]
    pub invert: bool,
    /// Class names for figures and summaries, in class order, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub class_names: Option<Vec<String>>,
    /// Print one JSON object per input (input, out_dir, prediction, score, files, result)
    /// instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// What every method starts from.
pub struct Session {
    /// The loaded model.
    pub model: LoadedModel,
    /// How images become inputs.
    pub spec: ImageSpec,
    /// Output folder and format.
    pub reporter: Reporter,
    /// Progress bars.
    pub progress: Progress,
    /// Class names, if given.
    pub class_names: Option<Vec<String>>,
}

impl CommonArgs {
    /// Loads the model and prepares the output folder.
    pub fn session(&self, outputs: crate::model::Outputs) -> Result<Session> {
        let progress = Progress::new(self.quiet);
        let spinner = progress.spinner("loading the model");
        let model = self.model.load(outputs)?;
        spinner.finish_and_clear();
        if progress.enabled() {
            // Only where bars are drawn: redirected stderr holds nothing but errors.
            eprintln!("{}", model.describe());
        }
        let spec = ImageSpec {
            shape: model.input_shape(),
            pixels: model.pixels,
            fit: self.fit,
            invert: self.invert,
        };
        let reporter = Reporter::new(self.out.clone(), self.json)?;
        Ok(Session {
            model,
            spec,
            reporter,
            progress,
            class_names: self.class_names.clone(),
        })
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Shap(a) => crate::shap::run(&a),
        Command::Similarity(a) => crate::similarity::run(&a),
        Command::Cem(a) => crate::cem::run(&a),
        Command::L2x(a) => crate::l2x::run(&a),
    }
}

/// Parses `xai <method> --model m --input x --out o <extra>...`: the smallest command line of
/// a method, for the unit tests of its flags.
#[cfg(test)]
pub fn parse_minimal(method: &str, extra: &[&str]) -> std::result::Result<Command, clap::Error> {
    let args = ["xai", method, "--model", "m", "--input", "x", "--out", "o"];
    Cli::try_parse_from(args.iter().chain(extra)).map(|cli| cli.command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_shape_parses() {
        let cli = Cli::try_parse_from([
            "xai",
            "shap",
            "--model",
            "m.onnx",
            "--input",
            "a.png",
            "b/",
            "--out",
            "o",
            "--layout",
            "nhwc",
            "--input-scale",
            "255",
            "--input-offset",
            "-0.5",
        ])
        .unwrap();
        let Command::Shap(a) = cli.command else {
            panic!("expected shap");
        };
        assert_eq!(a.common.input.len(), 2);
        assert_eq!(a.common.model.input_offset, Some(-0.5));
        assert!(Cli::try_parse_from(["xai", "shap", "--model", "m", "--out", "o"]).is_err());
        assert!(Cli::try_parse_from(["xai", "lime"]).is_err());
    }
}
