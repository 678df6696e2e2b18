//! `xai shap`: KernelSHAP on SLIC superpixels (`xai_shap::ImageKernelShapParams`, dianna's
//! `explain_image`), dianna's figure per input.

use clap::{Args, ValueEnum};
use serde_json::json;
use xai_shap::{Background, ImageKernelShapParams, KernelShapParams, Link, NSamples};
use xai_viz::{shap_figure, ShapFigureOptions};

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, Result};
use crate::model::Outputs;
use crate::output::{class_name, top_classes};

/// The link between SHAP values and the model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkArg {
    /// The values add up to f(x) - f(background).
    Identity,
    /// The values add up to logit(f(x)) - logit(f(background)) (probabilities only).
    Logit,
}

/// `xai shap` flags. Defaults are the library's (dianna's and shap's).
#[derive(Debug, Args)]
pub struct ShapArgs {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Classes to explain, comma-separated (default: the model's --top-k classes for each input,
    /// the predicted class only unless --top-k is given).
    #[arg(long, value_delimiter = ',', value_name = "K,...")]
    pub labels: Option<Vec<usize>>,
    /// Model evaluations per image: `auto` (2 * superpixels + 2048, as shap) or a number >= 1.
    #[arg(long, default_value = "auto", value_parser = parse_nsamples)]
    pub nsamples: NSamples,
    /// Approximate number of SLIC superpixels.
    #[arg(long, default_value_t = 100)]
    pub n_segments: usize,
    /// SLIC's balance of colour and space (larger: squarer superpixels).
    #[arg(long, default_value_t = 10.0)]
    pub compactness: f32,
    /// Width of SLIC's Gaussian pre-smoothing (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub sigma: f32,
    /// What a hidden superpixel shows: `mean` (the image's channel mean) or a value in the
    /// model's input scale (e.g. 0 for black on [0, 1] pixels).
    #[arg(long, default_value = "mean", value_parser = parse_background, allow_negative_numbers = true)]
    pub background: Background,
    /// Link function.
    #[arg(long, value_enum, default_value_t = LinkArg::Identity)]
    pub link: LinkArg,
    /// Seed of the coalition sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Coalitions per model call.
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// shap's own estimator (its sampling and plain regression, every superpixel in the
    /// regression) instead of the lower-variance default.
    #[arg(long)]
    pub shap_compatible: bool,
}

fn parse_nsamples(s: &str) -> std::result::Result<NSamples, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(NSamples::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(NSamples::Count(n)),
        _ => Err(format!("`{s}`: expected `auto` or a number >= 1")),
    }
}

fn parse_background(s: &str) -> std::result::Result<Background, String> {
    if s.eq_ignore_ascii_case("mean") {
        return Ok(Background::ChannelMean);
    }
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Background::Value(v)),
        _ => Err(format!("`{s}`: expected `mean` or a finite number")),
    }
}

impl ShapArgs {
    fn params(&self) -> ImageKernelShapParams {
        self.params_for(self.labels.clone())
    }

    /// The parameters explaining `labels` (`None`: every output).
    fn params_for(&self, labels: Option<Vec<usize>>) -> ImageKernelShapParams {
        let base = if self.shap_compatible {
            KernelShapParams::shap_compatible()
        } else {
            KernelShapParams::new()
        };
        let mut p = ImageKernelShapParams::new()
            .kernel_shap(base.labels(labels))
            .nsamples(self.nsamples)
            .n_segments(self.n_segments)
            .compactness(self.compactness)
            .sigma(self.sigma)
            .background(self.background.clone())
            .seed(self.seed)
            .batch_size(self.batch_size);
        p = p.link(match self.link {
            LinkArg::Identity => Link::Identity,
            LinkArg::Logit => Link::Logit,
        });
        p
    }
}

/// Runs `xai shap`.
pub fn run(a: &ShapArgs) -> Result<()> {
    let params = a.params().check().map_err(usage)?;
    let s = a.common.session(Outputs::Probabilities)?;
    let k = s.model.n_outputs();
    if let Some(bad) = a.labels.iter().flatten().find(|&&l| l >= k) {
        return Err(usage(format!(
            "--labels: class {bad} does not exist, the model has {k} outputs (0..={})",
            k - 1
        )));
    }
    let samples = s.read_inputs(&a.common.input)?;
    let names = s.class_names.as_deref();
    s.reporter
        .each_input(&s.progress, &samples, "KernelSHAP", |sample| {
            let top;
            let params = match &a.labels {
                Some(_) => &params,
                None => {
                    let outputs = s.model.predict_one(sample.x.view())?;
                    let classes = top_classes(&outputs, s.top_k, None)
                        .into_iter()
                        .map(|t| t.class)
                        .collect();
                    top = a.params_for(Some(classes)).check().map_err(usage)?;
                    &top
                }
            };
            let e = params
                .explain(s.model.predictor(), sample.x.view())
                .map_err(|e| failed_in(format!("explaining {}", sample.source), e))?;
            let mut out = s.output(sample)?;
            out.save(&e, None)?;
            let mut opts = ShapFigureOptions::default();
            let (lo, hi) = s.spec.pixels.range();
            opts = opts.image_range(lo, hi);
            if let Some(n) = names {
                opts = opts.class_names(n.iter().cloned());
            }
            out.figure("shap.png", |path| {
                shap_figure(path, sample.x.view().into_dyn(), &e, &opts)
            })?;
            let prediction = s.model.prediction(sample.x.view())?;
            let d = &e.data;
            // The explained class the model scores highest, and its strongest superpixel.
            let row = (0..d.labels.len())
                .max_by(|&i, &j| d.instance_values[i].total_cmp(&d.instance_values[j]))
                .unwrap_or(0);
            let strongest = d
                .segment_values
                .row(row)
                .iter()
                .copied()
                .max_by(|x, y| x.abs().total_cmp(&y.abs()))
                .unwrap_or(0.0);
            let detail = format!(
                "KernelSHAP on {} superpixels, {} evaluations; {}: strongest superpixel \
             {strongest:+.4}, values sum to {:+.4}",
                d.segmentation.n_segments(),
                d.n_evaluations,
                class_name(names, d.labels[row]),
                d.instance_values[row] - d.base_values[row],
            );
            let result = json!({
                "method": "KernelSHAP",
                "labels": d.labels,
                "instance_values": d.instance_values,
                "base_values": d.base_values,
                "n_segments": d.segmentation.n_segments(),
                "n_evaluations": d.n_evaluations,
                "exact": d.exact,
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
        let Ok(Command::Shap(a)) = parse_minimal("shap", &[]) else {
            panic!("expected shap")
        };
        assert_eq!(a.params(), ImageKernelShapParams::new());
        let v = a.params().check().unwrap();
        assert_eq!(v.slic().n_segments(), 100);
    }
}
