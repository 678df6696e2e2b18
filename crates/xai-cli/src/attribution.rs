//! The gradient attributions of captum and alibi (`xai-attribution`) as subcommands:
//! `xai saliency`, `xai ig`, `xai smoothgrad`, `xai gradient-shap`, `xai gradcam` and
//! `xai occlusion`, with captum's parameter names and defaults. Per input and explained class
//! they write `attributions.npy` (`[k, c, h, w]`: the classes in order), `explanation.json`
//! (`meta`: the method and every parameter; `data`: the classes and, where the method has one,
//! the convergence delta) and `attributions.png` (each class's map, summed over the channels,
//! over the image).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::{Array3, ArrayD, Axis, IxDyn};
use serde_json::json;
use xai_attribution::{
    Attributions, Baseline, ClassTargets, GradCam, GradCamParams, GradientShap, GradientShapParams,
    InputXGradient, InputXGradientParams, IntegratedGradients, IntegratedGradientsParams,
    IntegrationMethod, NoiseTunnel, NoiseTunnelBase, NoiseTunnelParams, NoiseTunnelType, Occlusion,
    OcclusionParams, Saliency, SaliencyParams,
};
use xai_viz::HeatmapOptions;

use crate::cli::{CommonArgs, Session};
use crate::error::{failed_in, usage, Result};
use crate::inputs::{read_reference, Sample};
use crate::model::Outputs;
use crate::output::top_classes;

/// The flags of every attribution subcommand.
#[derive(Debug, Clone, Args)]
pub struct AttributionCommon {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Classes to explain, comma-separated (default: the model's --top-k classes of each
    /// input, the predicted class unless --top-k is given).
    #[arg(long, value_delimiter = ',', value_name = "K,...")]
    pub labels: Option<Vec<usize>>,
    /// Explain the model's logits (as captum does on a network without a softmax) instead of its
    /// class probabilities.
    #[arg(long)]
    pub logits: bool,
}

/// Integration rules of Integrated Gradients (captum's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Left Riemann sum.
    RiemannLeft,
    /// Right Riemann sum.
    RiemannRight,
    /// Midpoint rule.
    RiemannMiddle,
    /// Trapezoid rule.
    RiemannTrapezoid,
    /// Gauss–Legendre quadrature (captum's default).
    Gausslegendre,
}

impl From<MethodArg> for IntegrationMethod {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::RiemannLeft => IntegrationMethod::RiemannLeft,
            MethodArg::RiemannRight => IntegrationMethod::RiemannRight,
            MethodArg::RiemannMiddle => IntegrationMethod::RiemannMiddle,
            MethodArg::RiemannTrapezoid => IntegrationMethod::RiemannTrapezoid,
            MethodArg::Gausslegendre => IntegrationMethod::GaussLegendre,
        }
    }
}

/// `xai saliency` flags.
#[derive(Debug, Args)]
pub struct SaliencyArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// Keep the gradient's sign (captum's `abs=False`); default |∂f/∂x|.
    #[arg(long)]
    pub signed: bool,
    /// Multiply by the input: input x gradient (Shrikumar et al. 2016) instead of saliency.
    #[arg(long)]
    pub times_input: bool,
}

/// `xai ig` flags.
#[derive(Debug, Args)]
pub struct IgArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// The baseline: a number (every element; 0 is captum's default) or an `.npy` image of the
    /// input's shape.
    #[arg(long, default_value = "0", allow_negative_numbers = true)]
    pub baseline: String,
    /// Integration steps.
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
    /// Integration rule.
    #[arg(long, value_enum, default_value_t = MethodArg::Gausslegendre)]
    pub method: MethodArg,
    /// Interpolants per model call (bounds memory; captum's `internal_batch_size`).
    #[arg(long, default_value_t = 64)]
    pub internal_batch_size: usize,
}

/// The method NoiseTunnel wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TunnelBase {
    /// Saliency (SmoothGrad).
    Saliency,
    /// Input x gradient.
    InputXGradient,
    /// Integrated Gradients from 0 (--n-steps, --method).
    Ig,
}

/// NoiseTunnel's combination of the noisy attributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NtTypeArg {
    /// The mean.
    Smoothgrad,
    /// The mean of the squares.
    SmoothgradSq,
    /// The variance.
    Vargrad,
}

/// `xai smoothgrad` flags.
#[derive(Debug, Args)]
pub struct SmoothGradArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// The wrapped method.
    #[arg(long, value_enum, default_value_t = TunnelBase::Saliency)]
    pub base: TunnelBase,
    /// How the noisy attributions combine (captum's `nt_type`).
    #[arg(long, value_enum, default_value_t = NtTypeArg::Smoothgrad)]
    pub nt_type: NtTypeArg,
    /// Noisy copies per input (captum's `nt_samples`).
    #[arg(long, default_value_t = 5)]
    pub nt_samples: usize,
    /// Standard deviation of the Gaussian noise (captum's `stdevs`).
    #[arg(long, default_value_t = 1.0)]
    pub stdevs: f32,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Integrated Gradients' steps (with --base ig).
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
}

/// `xai gradient-shap` flags.
#[derive(Debug, Args)]
pub struct GradientShapArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// The background set the baselines are drawn from (images, `.npy` arrays or folders).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub reference: Vec<PathBuf>,
    /// Random (baseline, alpha) draws per input (captum's `n_samples`).
    #[arg(long, default_value_t = 5)]
    pub n_samples: usize,
    /// Standard deviation of the noise added to the input (captum's `stdevs`, default 0).
    #[arg(long, default_value_t = 0.0)]
    pub stdevs: f32,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `xai gradcam` flags.
#[derive(Debug, Args)]
pub struct GradCamArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// The layer: a shipped network's layer name (e.g. `conv2`) or, for an ONNX model, a node's
    /// output name or the node's name (an unknown name's error lists the layers).
    #[arg(long, required = true, value_name = "NAME")]
    pub layer: String,
    /// Keep negative values (captum's `relu_attributions=False`); the paper's ReLU is the
    /// default.
    #[arg(long)]
    pub no_relu: bool,
}

/// `xai occlusion` flags.
#[derive(Debug, Args)]
pub struct OcclusionArgs {
    /// Model, inputs, output, classes.
    #[command(flatten)]
    pub attr: AttributionCommon,
    /// The sliding window `HxW` (all channels at once) or `CxHxW`.
    #[arg(long, default_value = "8x8", value_name = "HxW")]
    pub window: String,
    /// The strides `HxW` or `CxHxW` (default: the window's height and width).
    #[arg(long, value_name = "HxW")]
    pub strides: Option<String>,
    /// What occluded elements become.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub baseline: f32,
    /// Window positions per model call (captum's `perturbations_per_eval`).
    #[arg(long, default_value_t = 16)]
    pub perturbations_per_eval: usize,
}

fn parse_dims(flag: &str, s: &str, c: usize) -> Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(['x', 'X', ','])
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| usage(format!("{flag} `{s}`: expected HxW or CxHxW, e.g. 8x8")))?;
    match v.as_slice() {
        [h, w] if *h > 0 && *w > 0 => Ok(vec![c, *h, *w]),
        [cc, h, w] if *cc > 0 && *h > 0 && *w > 0 => Ok(vec![*cc, *h, *w]),
        _ => Err(usage(format!(
            "{flag} `{s}`: expected HxW or CxHxW with sizes >= 1"
        ))),
    }
}

/// The classes explained for `sample`: --labels, or the model's top-k.
fn classes(a: &AttributionCommon, s: &Session, sample: &Sample) -> Result<Vec<usize>> {
    if let Some(l) = &a.labels {
        return Ok(l.clone());
    }
    let outputs = s.model.predict_one(sample.x.view())?;
    Ok(top_classes(&outputs, s.top_k, None)
        .into_iter()
        .map(|t| t.class)
        .collect())
}

/// What a method returns for one input: `[k, c, h, w]` maps and the convergence delta, if the
/// method has one (the parameters for `meta` are given to [`run_attribution`] once).
struct MethodResult {
    maps: ArrayD<f32>,
    delta: Option<Vec<f32>>,
}

/// Runs an attribution subcommand: `explain` gives one input's result.
fn run_attribution(
    a: &AttributionCommon,
    method: &str,
    params: serde_json::Value,
    explain: impl Fn(&Session, &Sample, &ClassTargets) -> Result<MethodResult>,
) -> Result<()> {
    let outputs = if a.logits {
        Outputs::ForLoss
    } else {
        Outputs::Probabilities
    };
    let s = a.common.session(outputs)?;
    let k_out = s.model.n_outputs();
    if let Some(bad) = a.labels.iter().flatten().find(|&&l| l >= k_out) {
        return Err(usage(format!(
            "--labels: class {bad} does not exist, the model has {k_out} outputs (0..={})",
            k_out - 1
        )));
    }
    let samples = s.read_inputs(&a.common.input)?;
    let names = s.class_names.as_deref();
    s.reporter.each_input(&s.progress, &samples, method, |sample| {
        let cls = classes(a, &s, sample)?;
        let targets = ClassTargets::per_input(vec![cls.clone()]).map_err(usage)?;
        let r = explain(&s, sample, &targets)?;
        let (c, h, w) = sample.x.dim();
        let k = cls.len();
        let maps = r
            .maps
            .into_shape_with_order(IxDyn(&[k, c, h, w]))
            .map_err(|e| failed_in("shaping the attributions", e))?;
        let mut out = s.output(sample)?;
        let npy = out.dir().join("attributions.npy");
        ndarray_npy::write_npy(&npy, &maps)
            .map_err(|e| failed_in(format!("writing {}", npy.display()), e))?;
        out.add_file(npy);
        let doc = json!({
            "meta": {"name": method, "params": params, "version": concat!("xai-attribution@", env!("CARGO_PKG_VERSION"))},
            "data": {"classes": cls, "convergence_delta": r.delta},
        });
        let jp = out.dir().join("explanation.json");
        std::fs::write(
            &jp,
            serde_json::to_string_pretty(&doc).map_err(|e| failed_in("writing JSON", e))? + "\n",
        )
        .map_err(|e| failed_in(format!("writing {}", jp.display()), e))?;
        out.add_file(jp);
        let summed: Array3<f32> = maps.sum_axis(Axis(1)).into_dimensionality().map_err(|e| {
            failed_in("summing the channels", e)
        })?;
        let titled: Vec<(String, ndarray::ArrayView2<'_, f32>)> = cls
            .iter()
            .enumerate()
            .map(|(j, &c)| {
                (
                    crate::output::class_name(names, c),
                    summed.index_axis(Axis(0), j),
                )
            })
            .collect();
        let (lo, hi) = s.spec.pixels.range();
        let heat = HeatmapOptions::default()
            .image_range(lo, hi)
            .title(method.to_string())
            .colorbar_label("attribution (summed over channels)");
        out.figure("attributions.png", |path| {
            xai_viz::attribution_overlay(path, sample.x.view(), "input", &titled, &heat)
        })?;
        let prediction = s.model.prediction(sample.x.view())?;
        let total: f32 = summed.index_axis(Axis(0), 0).sum();
        let detail = format!(
            "{method} of {}: attributions sum to {total:+.4}{}",
            crate::output::class_name(names, cls[0]),
            r.delta
                .as_ref()
                .and_then(|d| d.first())
                .map(|d| format!(", convergence delta {d:+.2e}"))
                .unwrap_or_default()
        );
        let result = json!({"method": method, "classes": cls, "convergence_delta": r.delta});
        Ok(out.finish(prediction, result, &detail))
    })?;
    s.finish(&samples)
}

fn attributions(
    r: std::result::Result<Attributions, xai_attribution::AttributionError>,
    what: &str,
) -> Result<MethodResult> {
    let a = r.map_err(|e| failed_in(what.to_string(), e))?;
    Ok(MethodResult {
        maps: a.values.index_axis(Axis(0), 0).to_owned(),
        delta: a.delta.map(|d| d.iter().copied().collect()),
    })
}

fn batch(sample: &Sample) -> ndarray::ArrayViewD<'_, f32> {
    sample.x.view().insert_axis(Axis(0)).into_dyn()
}

/// Runs `xai saliency`.
pub fn run_saliency(a: &SaliencyArgs) -> Result<()> {
    let (method, params) = if a.times_input {
        ("InputXGradient", json!({}))
    } else {
        ("Saliency", json!({"abs": !a.signed}))
    };
    let sal = SaliencyParams::new()
        .abs(!a.signed)
        .check()
        .map_err(usage)?;
    let ixg = InputXGradientParams::new().check().map_err(usage)?;
    run_attribution(&a.attr, method, params, |s, sample, t| {
        let model = s.model.differentiable("saliency", "")?;
        let what = format!("explaining {}", sample.source);
        if a.times_input {
            attributions(
                InputXGradient::new(model, ixg.clone()).attribute(batch(sample), t),
                &what,
            )
        } else {
            attributions(
                Saliency::new(model, sal.clone()).attribute(batch(sample), t),
                &what,
            )
        }
    })
}

fn baseline_arg(spec: &str, shape: [usize; 3]) -> Result<Baseline> {
    if let Ok(v) = spec.parse::<f32>() {
        if !v.is_finite() {
            return Err(usage(format!(
                "--baseline {spec}: expected a finite number"
            )));
        }
        return Ok(if v == 0.0 {
            Baseline::Zero
        } else {
            Baseline::Value(v)
        });
    }
    let path = std::path::Path::new(spec);
    let b = crate::inputs::read_npy_batch(path, shape)?;
    if b.len_of(Axis(0)) != 1 {
        return Err(usage(format!(
            "--baseline {spec}: expected one image of shape {shape:?}, found {} samples",
            b.len_of(Axis(0))
        )));
    }
    Ok(Baseline::Shared(
        b.index_axis(Axis(0), 0).to_owned().into_dyn(),
    ))
}

/// Runs `xai ig`.
pub fn run_ig(a: &IgArgs) -> Result<()> {
    let p = IntegratedGradientsParams::new()
        .n_steps(a.n_steps)
        .method(a.method.into())
        .internal_batch_size(a.internal_batch_size)
        .check()
        .map_err(usage)?;
    let params = json!({
        "baseline": a.baseline, "n_steps": a.n_steps,
        "method": format!("{:?}", a.method), "internal_batch_size": a.internal_batch_size,
    });
    run_attribution(&a.attr, "IntegratedGradients", params, |s, sample, t| {
        let model = s.model.differentiable("ig", "")?;
        let baseline = baseline_arg(&a.baseline, s.spec.shape)?;
        attributions(
            IntegratedGradients::new(model, p.clone()).attribute(batch(sample), t, &baseline),
            &format!("explaining {}", sample.source),
        )
    })
}

/// Runs `xai smoothgrad`.
pub fn run_smoothgrad(a: &SmoothGradArgs) -> Result<()> {
    // The noise of input i comes from (seed + its index among all inputs), so a shard draws
    // what the unsharded run draws.
    let params_for = |seed: u64| {
        NoiseTunnelParams::new()
            .nt_type(match a.nt_type {
                NtTypeArg::Smoothgrad => NoiseTunnelType::Smoothgrad,
                NtTypeArg::SmoothgradSq => NoiseTunnelType::SmoothgradSq,
                NtTypeArg::Vargrad => NoiseTunnelType::Vargrad,
            })
            .nt_samples(a.nt_samples)
            .stdevs(a.stdevs)
            .seed(seed)
            .check()
            .map_err(usage)
    };
    params_for(a.seed)?;
    let base = match a.base {
        TunnelBase::Saliency => {
            NoiseTunnelBase::Saliency(SaliencyParams::new().check().map_err(usage)?)
        }
        TunnelBase::InputXGradient => {
            NoiseTunnelBase::InputXGradient(InputXGradientParams::new().check().map_err(usage)?)
        }
        TunnelBase::Ig => NoiseTunnelBase::IntegratedGradients(
            IntegratedGradientsParams::new()
                .n_steps(a.n_steps)
                .check()
                .map_err(usage)?,
            Baseline::Zero,
        ),
    };
    let params = json!({
        "base": format!("{:?}", a.base), "nt_type": format!("{:?}", a.nt_type),
        "nt_samples": a.nt_samples, "stdevs": a.stdevs, "seed": a.seed,
    });
    run_attribution(&a.attr, "NoiseTunnel", params, |s, sample, t| {
        let model = s.model.differentiable("smoothgrad", "")?;
        let p = params_for(a.seed.wrapping_add(sample.index as u64))?;
        attributions(
            NoiseTunnel::new(model, base.clone(), p).attribute(batch(sample), t),
            &format!("explaining {}", sample.source),
        )
    })
}

/// Runs `xai gradient-shap`.
pub fn run_gradient_shap(a: &GradientShapArgs) -> Result<()> {
    let params_for = |seed: u64| {
        GradientShapParams::new()
            .n_samples(a.n_samples)
            .stdevs(a.stdevs)
            .seed(seed)
            .check()
            .map_err(usage)
    };
    params_for(a.seed)?;
    let params = json!({"n_samples": a.n_samples, "stdevs": a.stdevs, "seed": a.seed});
    let background = std::cell::OnceCell::new();
    run_attribution(&a.attr, "GradientShap", params, |s, sample, t| {
        let model = s.model.differentiable("gradient-shap", "")?;
        let bg = match background.get() {
            Some(b) => b,
            None => {
                let r = read_reference(&a.reference, None, &s.spec)?;
                background.get_or_init(|| r.x)
            }
        };
        let p = params_for(a.seed.wrapping_add(sample.index as u64))?;
        attributions(
            GradientShap::new(model, p).attribute(batch(sample), t, bg.view().into_dyn()),
            &format!("explaining {}", sample.source),
        )
    })
}

/// Runs `xai gradcam`.
pub fn run_gradcam(a: &GradCamArgs) -> Result<()> {
    let p = GradCamParams::new(a.layer.clone())
        .relu_attributions(!a.no_relu)
        .check()
        .map_err(usage)?;
    let params = json!({"layer": a.layer, "relu_attributions": !a.no_relu});
    run_attribution(&a.attr, "GradCam", params, |s, sample, t| {
        let model = s.model.layer_model("gradcam")?;
        let r = GradCam::new(model, p.clone())
            .attribute(batch(sample), t)
            .map_err(|e| usage(format!("explaining {}: {e}", sample.source)))?;
        let up = r.upsampled.ok_or_else(|| {
            usage(format!(
                "--layer {}: the layer's map has another number of spatial axes than the \
                 image; pick a convolutional layer",
                a.layer
            ))
        })?;
        // [1, k, h, w] -> [k, 1, h, w], shown as one channel.
        let (c, h, w) = sample.x.dim();
        let k = t.per_input_count();
        let maps = up
            .into_shape_with_order(IxDyn(&[k, 1, h, w]))
            .map_err(|e| failed_in("shaping the Grad-CAM maps", e))?;
        // The map repeated over the channels would change its sum; keep one channel's worth
        // and zeros elsewhere, so the summed figure is the map itself.
        let mut full = ArrayD::zeros(IxDyn(&[k, c, h, w]));
        full.slice_mut(ndarray::s![.., 0..1, .., ..]).assign(&maps);
        Ok(MethodResult {
            maps: full,
            delta: None,
        })
    })
}

/// Runs `xai occlusion`.
pub fn run_occlusion(a: &OcclusionArgs) -> Result<()> {
    let params = json!({
        "window": a.window, "strides": a.strides, "baseline": a.baseline,
        "perturbations_per_eval": a.perturbations_per_eval,
    });
    run_attribution(&a.attr, "Occlusion", params, |s, sample, t| {
        let c = s.spec.shape[0];
        let window = parse_dims("--window", &a.window, c)?;
        let strides = match &a.strides {
            Some(st) => parse_dims("--strides", st, c)?,
            None => vec![window[0], window[1], window[2]],
        };
        let p = OcclusionParams::new(window)
            .strides(strides)
            .perturbations_per_eval(a.perturbations_per_eval)
            .check()
            .map_err(usage)?;
        let occ = Occlusion::new(s.model.predictor(), p).map_err(usage)?;
        let baseline = if a.baseline == 0.0 {
            Baseline::Zero
        } else {
            Baseline::Value(a.baseline)
        };
        attributions(
            occ.attribute(batch(sample), t, &baseline),
            &format!("explaining {}", sample.source),
        )
    })
}
