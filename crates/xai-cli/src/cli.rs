//! The command line (clap): one subcommand per method, with the model, input and output flags
//! every method shares ([`CommonArgs`]) and the method's parameters with the library's defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Result;
use crate::inputs::{first_image_hw, ChannelOrder, Fit, ImageSpec, Preprocess};
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
    /// Saliency (|∂f/∂x|, captum's Saliency) or, with --times-input, input x gradient.
    Saliency(crate::attribution::SaliencyArgs),
    /// Integrated Gradients (Sundararajan et al. 2017; captum's IntegratedGradients) with its
    /// convergence delta.
    Ig(crate::attribution::IgArgs),
    /// SmoothGrad / SmoothGrad² / VarGrad (captum's NoiseTunnel) over saliency, input x
    /// gradient or IG.
    Smoothgrad(crate::attribution::SmoothGradArgs),
    /// GradientSHAP / expected gradients over a background set (captum's GradientShap).
    GradientShap(crate::attribution::GradientShapArgs),
    /// Grad-CAM on a named layer (captum's LayerGradCam), upsampled to the input; needs the
    /// graph engine (--backend graph).
    Gradcam(crate::attribution::GradCamArgs),
    /// Occlusion: the output change when a sliding window is replaced by a baseline (captum's
    /// Occlusion).
    Occlusion(crate::attribution::OcclusionArgs),
    /// Which explanation to trust: runs each method (--methods) on each input, scores the maps
    /// with faithfulness and robustness metrics (--metrics, as Quantus defines them) next to a
    /// random map, and writes eval.csv (input, method, metric, value), eval.json and a figure
    /// per input.
    Eval(crate::eval::EvalArgs),
    /// Merges the output folders of a sharded run (--shard i/n) into exactly what one unsharded
    /// run writes; missing, duplicate or mismatched shards are errors, nothing is overwritten.
    Merge(MergeArgs),
}

/// `xai merge` flags.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' output folders, in any order.
    #[arg(required = true, num_args = 1.., value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// The merged folder (new, or without any of the inputs' folders).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
    /// Resize images so that their shorter side has this many pixels, keeping the aspect ratio
    /// (bilinear with antialiasing, torchvision's `Resize(n)`), before --crop.
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub resize: Option<u32>,
    /// Centre crop `HxW` (or `N` for N x N) after --resize, torchvision's `CenterCrop`: the
    /// attributions are drawn and saved on the cropped image the model sees. Sets the input size
    /// of a model whose height and width are dynamic.
    #[arg(long, value_name = "HxW", value_parser = parse_crop)]
    pub crop: Option<[u32; 2]>,
    /// The channel order of a 3-channel model's input.
    #[arg(long, value_enum, default_value_t = ChannelOrder::Rgb)]
    pub channel_order: ChannelOrder,
    /// Preprocessing presets: `imagenet` is --resize 256 --crop 224 --mean 0.485,0.456,0.406
    /// --std 0.229,0.224,0.225, RGB (torchvision's and timm's classifiers); flags given as well
    /// override the preset's.
    #[arg(long, value_enum, value_name = "PRESET")]
    pub preset: Option<Preset>,
    /// Class names for figures and summaries, in class order: a text file with one name per line
    /// (e.g. ImageNet's 1,000 labels), or the names comma-separated.
    #[arg(long, value_name = "FILE|NAMES")]
    pub class_names: Option<String>,
    /// How many of the model's top classes the summaries and JSON report (with their scores and
    /// names), and the classes `xai shap` explains when --labels is not given.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub top_k: u32,
    /// Print one JSON object per input (input, out_dir, prediction, score, files, result)
    /// instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Run shard i of n (0 <= i < n): the i-th of n contiguous blocks of the inputs, with the
    /// seeds and results of the unsharded run; `auto/n` reads i from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Jobs) or SLURM_ARRAY_TASK_ID (Slurm arrays). `xai merge` joins the
    /// shards' folders.
    #[arg(long, value_name = "i/n", value_parser = crate::shard::parse_shard)]
    pub shard: Option<crate::shard::ShardSpec>,
}

/// Preprocessing presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Resize 256, centre crop 224, ImageNet mean and std, RGB.
    Imagenet,
}

fn parse_crop(s: &str) -> std::result::Result<[u32; 2], String> {
    let dims: Vec<&str> = s.split(['x', 'X', ',']).map(str::trim).collect();
    let n: Vec<u32> = dims
        .iter()
        .map(|d| d.parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a crop size: expected HxW or N, e.g. 224x224"))?;
    match n.as_slice() {
        [n] if *n > 0 => Ok([*n, *n]),
        [h, w] if *h > 0 && *w > 0 => Ok([*h, *w]),
        _ => Err(format!(
            "`{s}` is not a crop size: expected HxW or N with sizes >= 1, e.g. 224x224"
        )),
    }
}

/// Reads `--class-names`: a file of one name per line (blank lines at the end ignored), or a
/// comma-separated list; `n_outputs` names are expected.
pub fn read_class_names(spec: &str, n_outputs: usize) -> Result<Vec<String>> {
    let path = std::path::Path::new(spec);
    let (names, what): (Vec<String>, String) = if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| {
            crate::error::usage(format!(
                "--class-names {}: cannot read it ({e})",
                path.display()
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            crate::error::usage(format!(
                "--class-names {}: not a UTF-8 text file (one class name per line expected)",
                path.display()
            ))
        })?;
        let mut lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(crate::error::usage(format!(
                "--class-names {}: line {} is empty (one class name per line expected)",
                path.display(),
                i + 1
            )));
        }
        (lines, path.display().to_string())
    } else if path.is_dir() {
        return Err(crate::error::usage(format!(
            "--class-names {}: a folder, not a file of class names",
            path.display()
        )));
    } else {
        (
            spec.split(',').map(|n| n.trim().to_string()).collect(),
            "the list".into(),
        )
    };
    if names.len() != n_outputs {
        return Err(crate::error::usage(format!(
            "--class-names: {what} has {} class names, the model has {n_outputs} outputs \
             (one name per output, in class order)",
            names.len()
        )));
    }
    Ok(names)
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
    /// How many top classes to report.
    pub top_k: usize,
    /// This run's shard, if sharded.
    pub shard: Option<crate::shard::Shard>,
    /// The manifest (its inputs filled in by [`Session::finish`]).
    manifest: crate::shard::Manifest,
    /// How many inputs the whole run has (set when they are read).
    n_inputs: std::cell::Cell<usize>,
}

impl CommonArgs {
    /// Loads the model and prepares the output folder.
    pub fn session(&self, outputs: crate::model::Outputs) -> Result<Session> {
        let progress = Progress::new(self.quiet);
        let shard = self
            .shard
            .map(|s| s.resolve(|k| std::env::var(k).ok()))
            .transpose()?;
        let args: Vec<String> = std::env::args().collect();
        let manifest = crate::shard::Manifest {
            command: args.get(1).cloned().unwrap_or_default(),
            args_sha256: crate::shard::args_sha256(&args),
            model_sha256: crate::shard::model_sha256(&self.model.model)?,
            shard,
            n_inputs: 0,
            inputs: Vec::new(),
            references: None,
        };
        let prep = self.preprocess();
        let mut model_args = self.model.clone();
        if self.preset == Some(Preset::Imagenet) {
            model_args
                .mean
                .get_or_insert_with(|| xai_onnx::IMAGENET_MEAN.to_vec());
            model_args
                .std
                .get_or_insert_with(|| xai_onnx::IMAGENET_STD.to_vec());
        }
        // A model with dynamic height and width takes the crop's size, or the first image's.
        model_args.image_hw = prep
            .crop
            .map(|[h, w]| [h as usize, w as usize])
            .or_else(|| first_image_hw(&self.input, &prep));
        let spinner = progress.spinner("loading the model");
        let model = model_args.load(outputs)?;
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
            prep,
        };
        let class_names = match &self.class_names {
            Some(spec) => Some(read_class_names(spec, model.n_outputs())?),
            None => None,
        };
        let reporter = Reporter::new(self.out.clone(), self.json)?;
        Ok(Session {
            model,
            spec,
            reporter,
            progress,
            class_names,
            top_k: self.top_k as usize,
            shard,
            manifest,
            n_inputs: std::cell::Cell::new(0),
        })
    }

    /// The resize, crop and channel order, the preset's where no flag is given.
    pub fn preprocess(&self) -> Preprocess {
        let imagenet = self.preset == Some(Preset::Imagenet);
        Preprocess {
            resize_shorter: self.resize.or(imagenet.then_some(256)),
            crop: self.crop.or(imagenet.then_some([224, 224])),
            channel_order: self.channel_order,
        }
    }
}

impl Session {
    /// Reads the inputs (this shard's part of them): see [`crate::inputs::read_input_shard`].
    pub fn read_inputs(&self, paths: &[PathBuf]) -> Result<Vec<crate::inputs::Sample>> {
        let (samples, n) = crate::inputs::read_input_shard(paths, &self.spec, self.shard)?;
        self.n_inputs.set(n);
        Ok(samples)
    }

    /// Reads every input, whatever the shard (a shard of `xai similarity`'s references explains
    /// them all).
    pub fn read_all_inputs(&self, paths: &[PathBuf]) -> Result<Vec<crate::inputs::Sample>> {
        let (samples, n) = crate::inputs::read_input_shard(paths, &self.spec, None)?;
        self.n_inputs.set(n);
        Ok(samples)
    }

    /// Writes the run's `manifest.json` for the inputs written (after the last one).
    pub fn finish(&self, samples: &[crate::inputs::Sample]) -> Result<()> {
        self.finish_with(samples, None)
    }

    /// [`Session::finish`], for a shard of the references: `references` is its block.
    pub fn finish_with(
        &self,
        samples: &[crate::inputs::Sample],
        references: Option<crate::shard::ReferenceShard>,
    ) -> Result<()> {
        let mut manifest = self.manifest.clone();
        manifest.references = references;
        manifest.n_inputs = self.n_inputs.get();
        manifest.inputs = samples
            .iter()
            .map(|s| crate::shard::ManifestInput {
                index: s.index,
                name: s.name.clone(),
                source: s.source.clone(),
            })
            .collect();
        manifest.write(&self.reporter.out)
    }

    /// Starts one input's output (its folder) and records the model's top classes for it.
    pub fn output<'a>(
        &'a self,
        sample: &crate::inputs::Sample,
    ) -> Result<crate::output::InputOutput<'a>> {
        let mut out = self.reporter.input(sample, self.class_names.as_deref())?;
        let outputs = self.model.predict_one(sample.x.view())?;
        out.set_top(&outputs, self.top_k);
        Ok(out)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Shap(a) => crate::shap::run(&a),
        Command::Similarity(a) => crate::similarity::run(&a),
        Command::Cem(a) => crate::cem::run(&a),
        Command::L2x(a) => crate::l2x::run(&a),
        Command::Eval(a) => crate::eval::run(&a),
        Command::Saliency(a) => crate::attribution::run_saliency(&a),
        Command::Ig(a) => crate::attribution::run_ig(&a),
        Command::Smoothgrad(a) => crate::attribution::run_smoothgrad(&a),
        Command::GradientShap(a) => crate::attribution::run_gradient_shap(&a),
        Command::Gradcam(a) => crate::attribution::run_gradcam(&a),
        Command::Occlusion(a) => crate::attribution::run_occlusion(&a),
        Command::Merge(a) => {
            let n = crate::shard::merge(&a.shards, &a.out)?;
            println!(
                "merged {} shards, {n} inputs -> {}",
                a.shards.len(),
                a.out.display()
            );
            Ok(())
        }
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
