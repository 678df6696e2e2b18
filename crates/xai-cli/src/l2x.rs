//! `xai l2x`: L2X (`xai_l2x`, omnixai's `L2XImage`): trains a patch selector on a training set
//! (or loads a saved one) and explains each input; omnixai's figure per input.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::Axis;
use serde_json::json;
use xai_l2x::{L2x, L2xParams, TargetKind};
use xai_viz::{l2x_figure, L2xFigureOptions};

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, usage_in, Result};
use crate::inputs::read_reference;
use crate::model::Outputs;
use crate::output::{class_name, top};

/// What the approximator learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// The model's class probabilities (the paper's objective).
    Probabilities,
    /// The model's predicted class (omnixai's L2XImage).
    Classes,
}

/// `xai l2x` flags. Defaults are the library's (omnixai's), except the background, which
/// defaults to the lower end of the pixel range (0, the library's, for [0, 1] pixels).
#[derive(Debug, Args)]
pub struct L2xArgs {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Training images for the explainer (files or folders; subfolder labels are not used:
    /// the model labels them).
    #[arg(long, num_args = 1.., value_name = "FILE|DIR", required_unless_present = "explainer")]
    pub reference: Vec<PathBuf>,
    /// Load a saved explainer from this folder instead of training one (e.g.
    /// models/l2x_mnist_net for the shipped mnist_net).
    #[arg(long, value_name = "DIR", conflicts_with = "reference")]
    pub explainer: Option<PathBuf>,
    /// Save the trained explainer to this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "explainer")]
    pub save_explainer: Option<PathBuf>,
    /// Patches selected per image (>= 1).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Gumbel-softmax temperature (> 0).
    #[arg(long, default_value_t = 0.5)]
    pub tau: f32,
    /// Adam's learning rate (> 0).
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f32,
    /// Training batch size (default: omnixai's choice from the training set's size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes over the training images (>= 1).
    #[arg(long, default_value_t = 20)]
    pub num_epochs: usize,
    /// Seed of initialisation, shuffling, Gumbel noise and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What the approximator is trained to predict.
    #[arg(long, value_enum, default_value_t = TargetArg::Probabilities)]
    pub targets: TargetArg,
    /// Value of the pixels outside the selection (default: the lower end of the pixel range).
    #[arg(long, allow_negative_numbers = true)]
    pub background: Option<f32>,
}

impl L2xArgs {
    fn params(&self, background: f32) -> L2xParams {
        L2xParams::new()
            .k(self.k)
            .tau(self.tau)
            .learning_rate(self.learning_rate)
            .batch_size(self.batch_size)
            .num_epochs(self.num_epochs)
            .seed(self.seed)
            .targets(match self.targets {
                TargetArg::Probabilities => TargetKind::Probabilities,
                TargetArg::Classes => TargetKind::Classes,
            })
            .background(background)
    }
}

/// Runs `xai l2x`.
pub fn run(a: &L2xArgs) -> Result<()> {
    let s = a.common.session(Outputs::Probabilities)?;
    let background = a.background.unwrap_or(s.spec.pixels.range().0);
    let params = a
        .params(background)
        .black_box_outputs(s.model.core_output_kind())
        .progress(s.progress.enabled())
        .check()
        .map_err(usage)?;
    let samples = s.read_inputs(&a.common.input)?;
    let l2x = match &a.explainer {
        Some(dir) => {
            let l = L2x::load(dir)
                .map_err(|e| usage_in(format!("loading the explainer {}", dir.display()), e))?;
            if l.input_shape() != s.spec.shape || l.n_outputs() != s.model.n_outputs() {
                return Err(usage(format!(
                    "the explainer in {} was trained for inputs {:?} with {} outputs, the model \
                     takes {:?} with {} outputs",
                    dir.display(),
                    l.input_shape(),
                    l.n_outputs(),
                    s.spec.shape,
                    s.model.n_outputs()
                )));
            }
            l
        }
        None => {
            let train = read_reference(&a.reference, None, &s.spec)?.x;
            let l = params
                .fit(train.view(), s.model.predictor())
                .map_err(|e| failed_in("training the L2X explainer", e))?;
            if s.progress.enabled() {
                eprintln!(
                    "trained L2X on {} images: final loss {:.4}, approximator agrees with the \
                     model on {:.1}% of them",
                    l.summary().n_samples,
                    l.summary().epoch_losses.last().copied().unwrap_or(f32::NAN),
                    100.0 * l.summary().full_input_score
                );
            }
            if let Some(dir) = &a.save_explainer {
                l.save(dir).map_err(|e| {
                    usage_in(format!("saving the explainer to {}", dir.display()), e)
                })?;
            }
            l
        }
    };
    let names = s.class_names.as_deref();
    s.reporter
        .each_input(&s.progress, &samples, "L2X", |sample| {
            let x = sample.x.view().insert_axis(Axis(0));
            let e = l2x
                .explain(s.model.predictor(), x)
                .map_err(|e| failed_in(format!("explaining {}", sample.source), e))?;
            let mut out = s.output(sample)?;
            out.save(&e, None)?;
            let prediction @ (pred, _) = top(e.data.black_box_outputs.row(0));
            let approx = e.data.approximator_labels.as_ref().map(|l| l[0]);
            let gray = x
                .mean_axis(Axis(1))
                .ok_or_else(|| failed_in("drawing", "an image without channels"))?;
            out.figure("l2x.png", |path| {
                l2x_figure(
                    path,
                    gray.view(),
                    &e,
                    &L2xFigureOptions {
                        image_titles: Some(vec![format!(
                            "{}: pred {}",
                            sample.name,
                            class_name(names, pred)
                        )]),
                        background: Some(background),
                        image_range: Some(s.spec.pixels.range()),
                        title: Some("L2X: image, importance, selected patches".into()),
                    },
                )
            })?;
            let detail = format!(
                "L2X selected {} patches {:?}{}",
                e.data.k,
                e.data.selected_patches[0],
                match approx {
                    Some(c) => format!(", approximator on them alone: {}", class_name(names, c)),
                    None => String::new(),
                }
            );
            let result = json!({
                "method": "L2X",
                "k": e.data.k,
                "selected_patches": e.data.selected_patches[0],
                "approximator_label": approx,
            });
            Ok(out.finish(prediction, result, &detail))
        })?;
    s.finish(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_minimal, Command};

    /// The flags' defaults are the library's.
    #[test]
    fn defaults_are_the_librarys() {
        let Ok(Command::L2x(a)) = parse_minimal("l2x", &["--reference", "r"]) else {
            panic!("expected l2x")
        };
        assert_eq!(a.params(0.0), L2xParams::new());
        assert!(parse_minimal("l2x", &[]).is_err());
    }
}
