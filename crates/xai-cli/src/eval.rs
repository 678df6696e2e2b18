//! `xai eval`: which explanation to trust. Runs each method on each input for the predicted
//! class, scores every map with every metric (`xai-eval`: deletion/insertion, pixel flipping,
//! region perturbation, ROAD, infidelity, sensitivities, faithfulness correlation, MPRT) next to
//! a random map, and writes the table (`eval.csv` with columns `input, method, metric, value`,
//! and `eval.json` with each metric's direction), and per input the curves of every method on
//! one plot and the maps side by side (`eval.png`).

use std::path::Path;

use clap::{Args, ValueEnum};
use ndarray::{Array2, Array3, ArrayD, ArrayView3, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xai_core::{DifferentiableModel, Predictor};
use xai_eval::{
    evaluate, random_attribution, Baseline, Context, CurveParams, Direction, EvalError, Input,
    Metric, MetricValue, METRIC_NAMES,
};
use xai_shap::ImageKernelShapParams;
use xai_viz::{HeatmapOptions, LineChart, LineSeries};

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, Result};
use crate::inputs::Sample;
use crate::model::Outputs;

/// The methods `xai eval` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalMethod {
    /// KernelSHAP on SLIC superpixels (`--nsamples`, `--n-segments`).
    Shap,
    /// |∂f_c/∂x|, summed over the channels (needs gradients).
    Saliency,
    /// x ∘ ∂f_c/∂x, summed over the channels (needs gradients).
    InputXGradient,
    /// Integrated Gradients from 0, 50 Gauss–Legendre steps, summed over the channels (needs
    /// gradients).
    Ig,
    /// SmoothGrad: saliency averaged over 10 noisy copies (noise 0.1 of the input's range,
    /// seeded), summed over the channels (needs gradients).
    Smoothgrad,
    /// Occlusion with windows of 1/8 of the image's side, summed over the channels.
    Occlusion,
    /// Uniform random values: the baseline every method should beat.
    Random,
}

impl EvalMethod {
    fn name(self) -> &'static str {
        match self {
            EvalMethod::Shap => "shap",
            EvalMethod::Saliency => "saliency",
            EvalMethod::InputXGradient => "input-x-gradient",
            EvalMethod::Ig => "ig",
            EvalMethod::Smoothgrad => "smoothgrad",
            EvalMethod::Occlusion => "occlusion",
            EvalMethod::Random => "random",
        }
    }
}

/// `xai eval` flags.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The methods, comma-separated (`random` is always added as the baseline).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "shap,random")]
    pub methods: Vec<EvalMethod>,
    /// The metrics, comma-separated: deletion_auc, insertion_auc, pixel_flipping_morf, _lerf,
    /// _difference, region_perturbation_morf, _lerf, _difference, road_morf, road_lerf,
    /// infidelity, max_sensitivity, avg_sensitivity, faithfulness_correlation, mprt (shipped
    /// networks only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "deletion_auc,insertion_auc,pixel_flipping_morf,faithfulness_correlation"
    )]
    pub metrics: Vec<String>,
    /// Steps per deletion/insertion/pixel-flipping curve (each removes 1/steps of the pixels).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub steps: u32,
    /// What removed pixels become: black (the input's minimum), white (its maximum), mean,
    /// blur:<sigma> (RISE's insertion baseline) or a number.
    #[arg(long, default_value = "black", value_parser = parse_baseline, allow_negative_numbers = true)]
    pub baseline: Baseline,
    /// Seed of the random map and of the stochastic metrics and methods.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// KernelSHAP's model evaluations per image.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub nsamples: u32,
    /// KernelSHAP's approximate number of superpixels.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub n_segments: u32,
    /// Inputs per model call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

fn parse_baseline(s: &str) -> std::result::Result<Baseline, String> {
    let bad =
        || format!("`{s}`: expected black, white, mean, blur:<sigma> (e.g. blur:5) or a number");
    match s {
        "black" => Ok(Baseline::Black),
        "white" => Ok(Baseline::White),
        "mean" => Ok(Baseline::Mean),
        _ => {
            if let Some(sigma) = s.strip_prefix("blur:") {
                let sigma: f32 = sigma.parse().map_err(|_| bad())?;
                return Ok(Baseline::Blur { sigma });
            }
            s.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Baseline::Value)
                .ok_or_else(bad)
        }
    }
}

/// The metrics asked for, with the curve parameters of the flags.
fn metrics(a: &EvalArgs) -> Result<Vec<Metric>> {
    let curve = CurveParams::new()
        .baseline(a.baseline)
        .max_steps(Some(a.steps as usize))
        .batch_size(a.batch_size as usize)
        .check()
        .map_err(usage)?;
    let mut out = Vec::new();
    for name in &a.metrics {
        let m = Metric::from_name(name.trim()).map_err(|_| {
            usage(format!(
                "--metrics: `{name}` is not a metric; expected one of {}",
                METRIC_NAMES.join(", ")
            ))
        })?;
        out.push(match m {
            Metric::DeletionAuc(_) => Metric::DeletionAuc(curve.clone()),
            Metric::InsertionAuc(_) => Metric::InsertionAuc(curve.clone()),
            Metric::PixelFlippingMorf(_) => Metric::PixelFlippingMorf(curve.clone()),
            Metric::PixelFlippingLerf(_) => Metric::PixelFlippingLerf(curve.clone()),
            Metric::PixelFlippingDifference(_) => Metric::PixelFlippingDifference(curve.clone()),
            other => other,
        });
    }
    if out.is_empty() {
        return Err(usage("--metrics: give at least one metric"));
    }
    Ok(out)
}

/// A method's curve of a metric: (method, metric, points).
type MethodCurve = (String, &'static str, Vec<(f64, f64)>);

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalRow {
    /// The input's name.
    pub input: String,
    /// The method.
    pub method: String,
    /// The metric.
    pub metric: String,
    /// The score.
    pub value: f64,
    /// `lower` or `higher` is better.
    pub better: String,
}

/// Writes `eval.csv` and `eval.json` in `out` from the inputs' own `eval.json` rows, in the
/// order of `names` (used by a run and by `xai merge`, so that both write the same bytes).
pub fn write_tables(out: &Path, names: &[String]) -> Result<()> {
    let mut rows: Vec<EvalRow> = Vec::new();
    for n in names {
        let path = out.join(n).join("eval.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| failed_in(format!("reading {}", path.display()), e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| failed_in(format!("reading {}", path.display()), e))?;
        let r: Vec<EvalRow> = serde_json::from_value(v["rows"].clone())
            .map_err(|e| failed_in(format!("reading {}", path.display()), e))?;
        rows.extend(r);
    }
    let mut csv = String::from("input,method,metric,value\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(&r.input),
            r.method,
            r.metric,
            r.value
        ));
    }
    let write = |file: &str, text: String| {
        let p = out.join(file);
        std::fs::write(&p, text).map_err(|e| failed_in(format!("writing {}", p.display()), e))
    };
    write("eval.csv", csv)?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| failed_in("writing JSON", e))?;
    write("eval.json", json + "\n")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One method's map `[h, w]` of `x` (`[c, h, w]`) for class `target` on `model`.
fn explain(
    method: EvalMethod,
    a: &EvalArgs,
    predictor: &dyn Predictor,
    differentiable: Option<&dyn DifferentiableModel>,
    x: ArrayView3<'_, f32>,
    target: usize,
    seed: u64,
) -> std::result::Result<Array2<f32>, String> {
    let (c, h, w) = x.dim();
    let gradient = || -> std::result::Result<Array3<f32>, String> {
        let model = differentiable.ok_or_else(|| {
            format!(
                "`{}` needs the model's gradients (a shipped network or an ONNX model the \
                 importer or the graph engine runs)",
                method.name()
            )
        })?;
        let mut weights = Array2::zeros((1, predictor.n_outputs()));
        weights[[0, target]] = 1.0;
        let g = model
            .input_gradient(x.insert_axis(Axis(0)).into_dyn(), weights.view())
            .map_err(|e| e.to_string())?;
        g.into_shape_with_order((c, h, w))
            .map_err(|e| e.to_string())
    };
    match method {
        EvalMethod::Random => random_attribution(&[h, w], seed)
            .into_shape_with_order((h, w))
            .map_err(|e| e.to_string()),
        EvalMethod::Saliency => Ok(gradient()?.mapv(f32::abs).sum_axis(Axis(0))),
        EvalMethod::InputXGradient => Ok((gradient()? * x).sum_axis(Axis(0))),
        EvalMethod::Ig | EvalMethod::Smoothgrad | EvalMethod::Occlusion => {
            let batch = x.insert_axis(Axis(0)).into_dyn();
            let targets = xai_attribution::ClassTargets::one_per_input(vec![target]);
            let err = |e: xai_attribution::AttributionError| e.to_string();
            let a = match method {
                EvalMethod::Ig => {
                    let model = differentiable.ok_or("`ig` needs the model's gradients")?;
                    let p = xai_attribution::IntegratedGradientsParams::new()
                        .check()
                        .map_err(err)?;
                    xai_attribution::IntegratedGradients::new(model, p)
                        .attribute(batch, &targets, &xai_attribution::Baseline::Zero)
                        .map_err(err)?
                }
                EvalMethod::Smoothgrad => {
                    let model = differentiable.ok_or("`smoothgrad` needs the model's gradients")?;
                    let (lo, hi) = x
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                            (a.min(*v), b.max(*v))
                        });
                    let p = xai_attribution::NoiseTunnelParams::new()
                        .nt_samples(10)
                        .stdevs((0.1 * (hi - lo)).max(1e-6))
                        .seed(seed)
                        .check()
                        .map_err(err)?;
                    let base = xai_attribution::NoiseTunnelBase::Saliency(
                        xai_attribution::SaliencyParams::new()
                            .check()
                            .map_err(err)?,
                    );
                    xai_attribution::NoiseTunnel::new(model, base, p)
                        .attribute(batch, &targets)
                        .map_err(err)?
                }
                _ => {
                    let side = (h.max(w) / 8).max(1);
                    let p = xai_attribution::OcclusionParams::new(vec![c, side, side])
                        .strides(vec![c, side, side])
                        .perturbations_per_eval(a.batch_size as usize)
                        .check()
                        .map_err(err)?;
                    xai_attribution::Occlusion::new(predictor, p)
                        .map_err(err)?
                        .attribute(batch, &targets, &xai_attribution::Baseline::Zero)
                        .map_err(err)?
                }
            };
            let v = a
                .values
                .into_shape_with_order((c, h, w))
                .map_err(|e| e.to_string())?;
            Ok(v.sum_axis(Axis(0)))
        }
        EvalMethod::Shap => {
            let e = ImageKernelShapParams::new()
                .labels(vec![target])
                .nsamples(a.nsamples as usize)
                .n_segments(a.n_segments as usize)
                .seed(seed)
                .batch_size(a.batch_size as usize)
                .check()
                .map_err(|e| e.to_string())?
                .explain(predictor, x)
                .map_err(|e| e.to_string())?;
            Ok(e.data.attributions.index_axis(Axis(0), 0).to_owned())
        }
    }
}

/// Runs `xai eval`.
pub fn run(a: &EvalArgs) -> Result<()> {
    let metrics = metrics(a)?;
    let mut methods: Vec<EvalMethod> = Vec::new();
    for m in a.methods.iter().copied().chain([EvalMethod::Random]) {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let s = a.common.session(Outputs::Probabilities)?;
    let predictor = s.model.predictor();
    let differentiable = s.model.differentiable("eval", "").ok();
    if let Some(m) = methods.iter().find(|m| {
        matches!(
            m,
            EvalMethod::Saliency
                | EvalMethod::InputXGradient
                | EvalMethod::Ig
                | EvalMethod::Smoothgrad
        )
    }) {
        if differentiable.is_none() {
            s.model
                .differentiable("eval", "")
                .map_err(|e| usage(format!("--methods {}: {}", m.name(), e.one_line())))?;
        }
    }
    let network = match &s.model.inner {
        crate::model::Inner::Shipped(_, net, _) => Some(net),
        crate::model::Inner::Onnx(_) => None,
    };
    if metrics.iter().any(|m| matches!(m, Metric::Mprt(_))) && network.is_none() {
        return Err(usage(
            "--metrics mprt: randomising the layers of an ONNX model is not supported yet; MPRT \
             runs on shipped networks",
        ));
    }
    let samples = s.read_inputs(&a.common.input)?;
    let names: Vec<String> = samples.iter().map(|x| x.name.clone()).collect();
    s.reporter
        .each_input(&s.progress, &samples, "eval", |sample| {
            let (pred, score) = s.model.prediction(sample.x.view())?;
            let seed = a.seed.wrapping_add(sample.index as u64);
            let mut out = s.output(sample)?;
            let mut rows = Vec::new();
            let mut curves: Vec<MethodCurve> = Vec::new();
            let mut maps = Vec::new();
            let mut scores = serde_json::Map::new();
            for &method in &methods {
                let map = explain(
                    method,
                    a,
                    predictor,
                    differentiable,
                    sample.x.view(),
                    pred,
                    seed,
                )
                .map_err(|e| failed_in(format!("{} on {}", method.name(), sample.source), e))?;
                let run_method = |model: &dyn DifferentiableModel,
                                  xb: ArrayViewD<'_, f32>,
                                  targets: &[usize]|
                 -> xai_eval::Result<ArrayD<f32>> {
                    explain_batch(method, a, model, Some(model), xb, targets, seed)
                };
                let explainer =
                    |xb: ArrayViewD<'_, f32>, targets: &[usize]| -> xai_eval::Result<ArrayD<f32>> {
                        explain_batch(method, a, predictor, differentiable, xb, targets, seed)
                    };
                let ctx = Context {
                    model: predictor,
                    explainer: Some(&explainer),
                    randomizable: network.map(|n| n as &dyn xai_eval::Randomizable),
                    model_explainer: Some(&run_method),
                };
                let input = Input {
                    x: sample.x.view().into_dyn(),
                    map: map.view().into_dyn(),
                    target: pred,
                    segments: None,
                };
                let values: Vec<MetricValue> = evaluate(&ctx, &input, &metrics).map_err(|e| {
                    failed_in(format!("scoring {} on {}", method.name(), sample.source), e)
                })?;
                let mut per_metric = serde_json::Map::new();
                for v in values {
                    rows.push(EvalRow {
                        input: sample.name.clone(),
                        method: method.name().into(),
                        metric: v.metric.into(),
                        value: v.value,
                        better: match v.direction {
                            Direction::LowerIsBetter => "lower".into(),
                            Direction::HigherIsBetter => "higher".into(),
                        },
                    });
                    per_metric.insert(v.metric.into(), json!(v.value));
                    if let Some(c) = v.curve {
                        if matches!(v.metric, "deletion_auc" | "insertion_auc") {
                            curves.push((
                                method.name().into(),
                                v.metric,
                                c.x.into_iter().zip(c.y).collect(),
                            ));
                        }
                    }
                }
                scores.insert(method.name().into(), serde_json::Value::Object(per_metric));
                maps.push(map);
            }
            // The maps, one per method, and the table rows with the curves.
            let stacked =
                ndarray::stack(Axis(0), &maps.iter().map(|m| m.view()).collect::<Vec<_>>())
                    .map_err(|e| failed_in("stacking the maps", e))?;
            let maps_path = out.dir().join("maps.npy");
            ndarray_npy::write_npy(&maps_path, &stacked)
                .map_err(|e| failed_in(format!("writing {}", maps_path.display()), e))?;
            out.add_file(maps_path);
            let curve_json: Vec<serde_json::Value> = curves
                .iter()
                .map(|(m, metric, pts)| json!({"method": m, "metric": metric, "points": pts}))
                .collect();
            let doc = json!({
                "methods": methods.iter().map(|m| m.name()).collect::<Vec<_>>(),
                "target": pred,
                "metrics": metrics,
                "rows": rows,
                "curves": curve_json,
            });
            let json_path = out.dir().join("eval.json");
            std::fs::write(
                &json_path,
                serde_json::to_string_pretty(&doc).map_err(|e| failed_in("writing JSON", e))?
                    + "\n",
            )
            .map_err(|e| failed_in(format!("writing {}", json_path.display()), e))?;
            out.add_file(json_path);
            let figure_maps: Vec<(String, ndarray::ArrayView2<'_, f32>)> = methods
                .iter()
                .zip(&maps)
                .map(|(m, map)| (m.name().to_string(), map.view()))
                .collect();
            out.figure("eval.png", |path| {
                eval_figure(path, sample, &figure_maps, &curves, s.spec.pixels.range())
            })?;
            let best = |metric: &str| {
                rows.iter()
                    .filter(|r| r.metric == metric)
                    .min_by(|x, y| {
                        let (vx, vy) = if x.better == "lower" {
                            (x.value, y.value)
                        } else {
                            (-x.value, -y.value)
                        };
                        vx.total_cmp(&vy)
                    })
                    .map(|r| format!("{metric}: {} ({:.4})", r.method, r.value))
            };
            let detail = metrics
                .iter()
                .filter_map(|m| best(m.name()))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(out.finish(
                (pred, score),
                serde_json::Value::Object(scores),
                &format!("best {detail}"),
            ))
        })?;
    write_tables(&s.reporter.out, &names)?;
    s.finish(&samples)
}

/// [`explain`] for a batch, for the metrics that re-run the method (`[n, h, w]` maps).
fn explain_batch(
    method: EvalMethod,
    a: &EvalArgs,
    predictor: &dyn Predictor,
    differentiable: Option<&dyn DifferentiableModel>,
    xb: ArrayViewD<'_, f32>,
    targets: &[usize],
    seed: u64,
) -> xai_eval::Result<ArrayD<f32>> {
    let xb = xb
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|e| EvalError::explainer(e.to_string()))?;
    let mut maps = Vec::with_capacity(targets.len());
    for (x, &t) in xb.axis_iter(Axis(0)).zip(targets) {
        maps.push(
            explain(method, a, predictor, differentiable, x, t, seed)
                .map_err(EvalError::explainer)?,
        );
    }
    let views: Vec<_> = maps.iter().map(|m| m.view()).collect();
    ndarray::stack(Axis(0), &views)
        .map(|m| m.into_dyn())
        .map_err(|e| EvalError::explainer(e.to_string()))
}

/// The input's figure: the deletion and insertion curves of every method on one plot each,
/// then the maps side by side over the image.
fn eval_figure(
    path: &Path,
    sample: &Sample,
    maps: &[(String, ndarray::ArrayView2<'_, f32>)],
    curves: &[MethodCurve],
    range: (f32, f32),
) -> std::result::Result<(), String> {
    let mut charts = Vec::new();
    for (metric, title, x_label) in [
        (
            "deletion_auc",
            "deletion (lower is better)",
            "fraction removed",
        ),
        (
            "insertion_auc",
            "insertion (higher is better)",
            "fraction inserted",
        ),
    ] {
        let series: Vec<LineSeries> = curves
            .iter()
            .filter(|(_, m, _)| *m == metric)
            .map(|(name, _, pts)| LineSeries {
                name: name.clone(),
                points: pts.clone(),
            })
            .collect();
        if !series.is_empty() {
            charts.push(LineChart {
                title: title.into(),
                x_label: x_label.into(),
                series,
            });
        }
    }
    // Each map on its own scale: divided by its largest |value|.
    let normalized: Vec<(String, Array2<f32>)> = maps
        .iter()
        .map(|(name, m)| {
            let top = m.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let scaled = if top > 0.0 && top.is_finite() {
                m.mapv(|v| v / top)
            } else {
                m.to_owned()
            };
            (name.clone(), scaled)
        })
        .collect();
    let views: Vec<(String, ndarray::ArrayView2<'_, f32>)> = normalized
        .iter()
        .map(|(n, m)| (n.clone(), m.view()))
        .collect();
    let heat = HeatmapOptions::default()
        .image_range(range.0, range.1)
        .limit(1.0)
        .colorbar_label("attribution / the map's largest |attribution|");
    let maps_img = xai_viz::render_attribution_overlay(sample.x.view(), "input", &views, &heat)
        .map_err(|e| e.to_string())?;
    let img = if charts.is_empty() {
        maps_img
    } else {
        let curves_img = xai_viz::render_line_charts(&charts, Some(&sample.name), (360, 260), None)
            .map_err(|e| e.to_string())?;
        curves_img.stack_below(&maps_img)
    };
    img.save_png(path).map_err(|e| e.to_string())
}
