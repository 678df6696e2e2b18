//! `xai cem`: contrastive explanations (`xai_cem`, alibi's `CEM`): a pertinent negative and/or
//! positive per input, alibi's figure.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::{Axis, IxDyn};
use serde_json::json;
use xai_cem::{Cem, CemParams, EarlyStop, Mode};
use xai_viz::cem_figure;

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, Result};
use crate::inputs::read_reference;
use crate::model::{load_autoencoder, Outputs};
use crate::output::class_name;

/// Which pertinents to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Pertinent negative: the smallest addition that changes the class.
    Pn,
    /// Pertinent positive: the smallest part that keeps the class.
    Pp,
    /// Both.
    Both,
}

fn parse_pair(s: &str) -> std::result::Result<(f32, f32), String> {
    let v: Vec<&str> = s.split(',').map(str::trim).collect();
    match v.as_slice() {
        [a, b] => match (a.parse::<f32>(), b.parse::<f32>()) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(format!("`{s}`: expected two numbers MIN,MAX")),
        },
        _ => Err(format!("`{s}`: expected two numbers MIN,MAX")),
    }
}

/// `xai cem` flags. Defaults are the library's (alibi's `CEM`), except the feature range and
/// the "no information" value, which default to the images' pixel range and its lower end.
#[derive(Debug, Args)]
pub struct CemArgs {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Look for a pertinent negative, a pertinent positive, or both.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
    /// An autoencoder for the gamma term (a shipped name such as cem_autoencoder, or an ONNX
    /// file the importer reads, taking the classifier's inputs and returning them flattened).
    #[arg(long, value_name = "FILE.onnx|NAME")]
    pub autoencoder: Option<String>,
    /// Estimate gradients from outputs by central differences (any model, also one tract
    /// runs; 2 x features model evaluations per step) instead of the model's gradients.
    #[arg(long)]
    pub black_box: bool,
    /// Samples whose per-pixel median is the "no information" value (alibi's fit), e.g. the
    /// training images; overrides --no-info-val.
    #[arg(long, num_args = 1.., value_name = "FILE|DIR")]
    pub reference: Vec<PathBuf>,
    /// The "no information" value of every pixel (default: the lower end of the feature
    /// range, i.e. black).
    #[arg(long, allow_negative_numbers = true, value_name = "VALUE")]
    pub no_info_val: Option<f32>,
    /// Bounds of every pixel as MIN,MAX in the model's input scale (default: the pixel range,
    /// e.g. 0,1 for ONNX models, -0.5,0.5 for cem_cnn).
    #[arg(long, value_parser = parse_pair, allow_negative_numbers = true, value_name = "MIN,MAX")]
    pub feature_range: Option<(f32, f32)>,
    /// Confidence margin of the attack loss (>= 0).
    #[arg(long, default_value_t = 0.0)]
    pub kappa: f32,
    /// Weight of the L1 term (>= 0).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f32,
    /// Weight of the autoencoder term (>= 0; used with --autoencoder).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f32,
    /// Initial weight of the attack loss (> 0).
    #[arg(long, default_value_t = 10.0)]
    pub c_init: f32,
    /// Values of c tried (>= 1).
    #[arg(long, default_value_t = 10)]
    pub c_steps: usize,
    /// FISTA iterations per value of c (>= 1).
    #[arg(long, default_value_t = 1000)]
    pub max_iterations: usize,
    /// Gradient clip range MIN,MAX.
    #[arg(long, value_parser = parse_pair, allow_negative_numbers = true, default_value = "-100,100", value_name = "MIN,MAX")]
    pub clip: (f32, f32),
    /// Initial learning rate (> 0).
    #[arg(long, default_value_t = 0.01)]
    pub learning_rate_init: f32,
    /// Step of the central differences (--black-box).
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f32,
    /// --black-box: recompute the numerical gradient every n iterations.
    #[arg(long, default_value_t = 1)]
    pub update_num_grad: usize,
    /// Stop a c-step after this many iterations without a 1e-4 relative improvement (default:
    /// run every iteration, as alibi).
    #[arg(long, value_name = "N")]
    pub early_stop_patience: Option<usize>,
}

impl CemArgs {
    fn params(&self, mode: Mode, range: (f32, f32)) -> CemParams {
        let mut p = CemParams::new(mode)
            .kappa(self.kappa)
            .beta(self.beta)
            .gamma(self.gamma)
            .c_init(self.c_init)
            .c_steps(self.c_steps)
            .max_iterations(self.max_iterations)
            .feature_range(range.0, range.1)
            .clip(self.clip.0, self.clip.1)
            .learning_rate_init(self.learning_rate_init)
            .no_info_val(self.no_info_val.unwrap_or(range.0))
            .eps(self.eps)
            .update_num_grad(self.update_num_grad);
        if let Some(patience) = self.early_stop_patience {
            p = p.early_stop(Some(EarlyStop {
                patience,
                ..EarlyStop::default()
            }));
        }
        p
    }
}

/// Runs `xai cem`.
pub fn run(a: &CemArgs) -> Result<()> {
    let s = a.common.session(Outputs::Probabilities)?;
    let range = a.feature_range.unwrap_or(s.spec.pixels.range());
    let modes: Vec<Mode> = match a.mode {
        ModeArg::Pn => vec![Mode::PertinentNegative],
        ModeArg::Pp => vec![Mode::PertinentPositive],
        ModeArg::Both => vec![Mode::PertinentNegative, Mode::PertinentPositive],
    };
    let ae = match &a.autoencoder {
        Some(spec) => Some(load_autoencoder(spec, s.spec.shape, a.common.model.layout)?),
        None => None,
    };
    let train = if a.reference.is_empty() {
        None
    } else {
        Some(read_reference(&a.reference, None, &s.spec)?.x)
    };
    let mut explainers = Vec::new();
    for &mode in &modes {
        let params = a.params(mode, range).check().map_err(usage)?;
        let mut cem = if a.black_box {
            Cem::black_box(params, s.model.predictor())
        } else {
            let m = s.model.differentiable(
                "cem",
                "; or pass --black-box to estimate the gradients from the outputs",
            )?;
            Cem::white_box(params, m)
        }
        .map_err(usage)?;
        if let Some(ae) = &ae {
            cem = cem.with_autoencoder(ae.as_ref()).map_err(usage)?;
        }
        if let Some(t) = &train {
            cem.fit(t.view().into_dyn()).map_err(usage)?;
        }
        explainers.push(cem);
    }
    let samples = s.read_inputs(&a.common.input)?;
    let names = s.class_names.as_deref();
    // The bar counts FISTA iterations (c steps x max iterations per explanation), reported by
    // the library as the search goes.
    let per_explanation: usize = explainers
        .first()
        .map(|c| c.params().c_steps() * c.params().max_iterations())
        .unwrap_or(1)
        .max(1);
    let bar = s
        .progress
        .bar(samples.len() * modes.len() * per_explanation, "CEM");
    let mut finished = 0u64;
    for sample in &samples {
        if let Some((i, v)) = sample
            .x
            .iter()
            .enumerate()
            .find(|(_, v)| **v < range.0 || **v > range.1)
        {
            return Err(usage(format!(
                "{}: value {v} at feature {i} is outside the feature range [{}, {}] (set \
                 --feature-range)",
                sample.source, range.0, range.1
            )));
        }
        let mut out = s.output(sample)?;
        let mut explanations = Vec::new();
        for cem in &explainers {
            let mode = cem.params().mode();
            bar.set_message(format!("{} {}", sample.name, mode));
            let one = sample.x.view().insert_axis(Axis(0)).into_dyn();
            let e = cem
                .explain_batch_with_progress(
                    one,
                    None,
                    Some(&mut |p: &xai_cem::Progress| bar.set_position(finished + p.done() as u64)),
                )
                .map_err(|e| failed_in(format!("explaining {}", sample.source), e))?
                .remove(0);
            finished += per_explanation as u64;
            bar.set_position(finished);
            out.save(&e, Some(mode.short_name()))?;
            explanations.push(e);
        }
        let mut extra = Vec::new();
        if let Some(ae) = &ae {
            let x = sample.x.view().insert_axis(Axis(0)).into_dyn();
            let recon = ae
                .predict(x)
                .map_err(|e| failed_in("running the autoencoder", e))?;
            let shape: Vec<usize> = std::iter::once(1).chain(s.spec.shape).collect();
            let recon = recon
                .into_shape_with_order(IxDyn(&shape))
                .map_err(|e| failed_in("reshaping the reconstruction", e))?;
            extra.push(("autoencoder".to_string(), recon));
        }
        let extra_views: Vec<(String, ndarray::ArrayViewD<'_, f32>)> =
            extra.iter().map(|(n, a)| (n.clone(), a.view())).collect();
        let refs: Vec<&_> = explanations.iter().collect();
        let title = format!("CEM: {}", sample.name);
        out.figure("cem.png", |path| {
            cem_figure(path, &refs, &extra_views, range, Some(title.as_str()))
        })?;
        let prediction = s.model.prediction(sample.x.view())?;
        let mut result = serde_json::Map::new();
        result.insert("method".into(), json!("CEM"));
        let mut parts = Vec::new();
        for e in &explanations {
            let d = &e.data;
            result.insert(
                d.mode.short_name().into(),
                json!({
                    "found": d.found(),
                    "pred": d.pertinent.as_ref().map(|p| p.pred),
                    "l1": d.pertinent.as_ref().map(|p| p.l1),
                    "l2": d.pertinent.as_ref().map(|p| p.l2_squared.sqrt()),
                }),
            );
            parts.push(match &d.pertinent {
                Some(p) => format!(
                    "{} -> {} (L1 {:.3})",
                    d.mode,
                    class_name(names, p.pred),
                    p.l1
                ),
                None => format!("no {} found", d.mode),
            });
        }
        let r = out.finish(
            prediction,
            serde_json::Value::Object(result),
            &parts.join(", "),
        );
        s.reporter.report(&bar, &r)?;
    }
    bar.finish_and_clear();
    s.finish(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_minimal, Command};

    /// The flags' defaults are the library's, apart from the range and no-info value.
    #[test]
    fn defaults_are_the_librarys() {
        let Ok(Command::Cem(a)) = parse_minimal("cem", &[]) else {
            panic!("expected cem")
        };
        for mode in [Mode::PertinentNegative, Mode::PertinentPositive] {
            let lib = CemParams::new(mode)
                .feature_range(0.0, 1.0)
                .no_info_val(0.0);
            assert_eq!(a.params(mode, (0.0, 1.0)), lib);
        }
        assert!(parse_pair("-1,1").is_ok());
        assert!(parse_pair("1").is_err());
    }
}
