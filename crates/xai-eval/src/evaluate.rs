//! One entry point that runs a list of named metrics on one input and one map: what a table of
//! `input, method, metric, value` rows is made of.

use ndarray::{ArrayView2, ArrayViewD};
use serde::{Deserialize, Serialize};
use xai_core::Predictor;

use crate::correlation::faithfulness_correlation;
use crate::curves::{
    deletion, insertion, pixel_flipping, region_perturbation, Curve, Direction, Order,
};
use crate::error::{EvalError, Result};
use crate::hyperparams::{
    CurveParams, CurveValidParams, FaithfulnessCorrelationParams,
    FaithfulnessCorrelationValidParams, InfidelityParams, InfidelityValidParams, MprtParams,
    MprtValidParams, RegionParams, RegionValidParams, RoadParams, RoadValidParams,
    SensitivityParams, SensitivityValidParams,
};
use crate::infidelity::infidelity;
use crate::randomisation::{mprt, ModelExplainer, Randomizable};
use crate::road::road;
use crate::sensitivity::{sensitivity, Explainer};

/// The metric names [`Metric::from_name`] accepts, one table key each.
pub const METRIC_NAMES: &[&str] = &[
    "deletion_auc",
    "insertion_auc",
    "pixel_flipping_morf",
    "pixel_flipping_lerf",
    "pixel_flipping_difference",
    "region_perturbation_morf",
    "region_perturbation_lerf",
    "region_perturbation_difference",
    "road_morf",
    "road_lerf",
    "infidelity",
    "max_sensitivity",
    "avg_sensitivity",
    "faithfulness_correlation",
    "mprt",
];

/// A metric with its validated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", content = "params", rename_all = "snake_case")]
pub enum Metric {
    /// Area under the deletion curve over the fraction removed; lower is better.
    DeletionAuc(CurveValidParams),
    /// Area under the insertion curve; higher is better.
    InsertionAuc(CurveValidParams),
    /// Area (unit spacing) under Quantus' pixel-flipping curve, most relevant first; lower is better.
    PixelFlippingMorf(CurveValidParams),
    /// The same, least relevant first; higher is better.
    PixelFlippingLerf(CurveValidParams),
    /// LeRF area minus MoRF area; higher is better.
    PixelFlippingDifference(CurveValidParams),
    /// Mean output drop over the first regions removed, most relevant first; higher is better.
    RegionPerturbationMorf(RegionValidParams),
    /// The same, least relevant first; lower is better.
    RegionPerturbationLerf(RegionValidParams),
    /// MoRF minus LeRF mean drop (ABPC); higher is better.
    RegionPerturbationDifference(RegionValidParams),
    /// Mean accuracy over ROAD's percentages, most relevant imputed first; lower is better.
    RoadMorf(RoadValidParams),
    /// The same, least relevant first; higher is better.
    RoadLerf(RoadValidParams),
    /// Infidelity; lower is better.
    Infidelity(InfidelityValidParams),
    /// Max-sensitivity (needs an [`Explainer`]); lower is better.
    MaxSensitivity(SensitivityValidParams),
    /// Avg-sensitivity (needs an [`Explainer`]); lower is better.
    AvgSensitivity(SensitivityValidParams),
    /// Faithfulness correlation; higher is better.
    FaithfulnessCorrelation(FaithfulnessCorrelationValidParams),
    /// Mean similarity over MPRT's cascade (needs a [`Randomizable`] model and a
    /// [`ModelExplainer`]); lower is better.
    Mprt(MprtValidParams),
}

impl Metric {
    /// The metric called `name` (one of [`METRIC_NAMES`]) with its default parameters.
    pub fn from_name(name: &str) -> Result<Metric> {
        let curve = || CurveParams::new().check();
        let region = || RegionParams::new().check();
        let road = || RoadParams::new().check();
        let sens = || SensitivityParams::new().check();
        Ok(match name {
            "deletion_auc" => Metric::DeletionAuc(curve()?),
            "insertion_auc" => Metric::InsertionAuc(curve()?),
            "pixel_flipping_morf" => Metric::PixelFlippingMorf(curve()?),
            "pixel_flipping_lerf" => Metric::PixelFlippingLerf(curve()?),
            "pixel_flipping_difference" => Metric::PixelFlippingDifference(curve()?),
            "region_perturbation_morf" => Metric::RegionPerturbationMorf(region()?),
            "region_perturbation_lerf" => Metric::RegionPerturbationLerf(region()?),
            "region_perturbation_difference" => Metric::RegionPerturbationDifference(region()?),
            "road_morf" => Metric::RoadMorf(road()?),
            "road_lerf" => Metric::RoadLerf(road()?),
            "infidelity" => Metric::Infidelity(InfidelityParams::new().check()?),
            "max_sensitivity" => Metric::MaxSensitivity(sens()?),
            "avg_sensitivity" => Metric::AvgSensitivity(sens()?),
            "faithfulness_correlation" => {
                Metric::FaithfulnessCorrelation(FaithfulnessCorrelationParams::new().check()?)
            }
            "mprt" => Metric::Mprt(MprtParams::new().check()?),
            other => return Err(EvalError::UnknownMetric(other.to_string())),
        })
    }

    /// The metric's table key (one of [`METRIC_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::DeletionAuc(_) => "deletion_auc",
            Metric::InsertionAuc(_) => "insertion_auc",
            Metric::PixelFlippingMorf(_) => "pixel_flipping_morf",
            Metric::PixelFlippingLerf(_) => "pixel_flipping_lerf",
            Metric::PixelFlippingDifference(_) => "pixel_flipping_difference",
            Metric::RegionPerturbationMorf(_) => "region_perturbation_morf",
            Metric::RegionPerturbationLerf(_) => "region_perturbation_lerf",
            Metric::RegionPerturbationDifference(_) => "region_perturbation_difference",
            Metric::RoadMorf(_) => "road_morf",
            Metric::RoadLerf(_) => "road_lerf",
            Metric::Infidelity(_) => "infidelity",
            Metric::MaxSensitivity(_) => "max_sensitivity",
            Metric::AvgSensitivity(_) => "avg_sensitivity",
            Metric::FaithfulnessCorrelation(_) => "faithfulness_correlation",
            Metric::Mprt(_) => "mprt",
        }
    }

    /// Which way is better.
    pub fn direction(&self) -> Direction {
        use Direction::*;
        match self {
            Metric::InsertionAuc(_)
            | Metric::PixelFlippingLerf(_)
            | Metric::PixelFlippingDifference(_)
            | Metric::RegionPerturbationMorf(_)
            | Metric::RegionPerturbationDifference(_)
            | Metric::RoadLerf(_)
            | Metric::FaithfulnessCorrelation(_) => HigherIsBetter,
            _ => LowerIsBetter,
        }
    }
}

/// One input, its attribution map and the output explained.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// One sample shaped like the model's input (no batch axis).
    pub x: ArrayViewD<'a, f32>,
    /// Its attribution map: the input's shape, or `[1, h, w]` / `[h, w]` for an image.
    pub map: ArrayViewD<'a, f32>,
    /// The output (class) explained.
    pub target: usize,
    /// A label map `[h, w]` (superpixels) for curves with `Features::Segments`.
    pub segments: Option<ArrayView2<'a, usize>>,
}

/// What the metrics run on: the model, and what robustness and randomisation need.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The model explained.
    pub model: &'a dyn Predictor,
    /// The method that produced the map, to re-run on noisy inputs (sensitivities).
    pub explainer: Option<&'a dyn Explainer>,
    /// The model in randomisable form (MPRT).
    pub randomizable: Option<&'a dyn Randomizable>,
    /// The method, runnable on a randomised model (MPRT).
    pub model_explainer: Option<&'a dyn ModelExplainer>,
}

impl<'a> Context<'a> {
    /// A context with the model only (every metric but the sensitivities and MPRT).
    pub fn new(model: &'a dyn Predictor) -> Self {
        Self {
            model,
            explainer: None,
            randomizable: None,
            model_explainer: None,
        }
    }
}

/// A metric's result on one input (serialisable for JSON tables).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricValue {
    /// The metric's table key.
    pub metric: &'static str,
    /// The score.
    pub value: f64,
    /// Which way is better.
    pub direction: Direction,
    /// The curve behind the score, where there is one (for the difference metrics, the MoRF
    /// curve).
    pub curve: Option<Curve>,
}

/// Runs `metrics` on one input and map, in order. A metric that needs what `ctx` lacks is an
/// [`EvalError::Missing`] error (ask for the metrics the context supports).
pub fn evaluate(
    ctx: &Context<'_>,
    input: &Input<'_>,
    metrics: &[Metric],
) -> Result<Vec<MetricValue>> {
    metrics
        .iter()
        .map(|m| evaluate_one(ctx, input, m))
        .collect()
}

fn evaluate_one(ctx: &Context<'_>, input: &Input<'_>, metric: &Metric) -> Result<MetricValue> {
    let (model, x, map, t, seg) = (
        ctx.model,
        input.x.view(),
        input.map.view(),
        input.target,
        input.segments,
    );
    let name = metric.name();
    let (value, curve) = match metric {
        Metric::DeletionAuc(p) => {
            let s = deletion(model, x, map, t, seg, p)?;
            (s.value, Some(s.curve))
        }
        Metric::InsertionAuc(p) => {
            let s = insertion(model, x, map, t, seg, p)?;
            (s.value, Some(s.curve))
        }
        Metric::PixelFlippingMorf(p) | Metric::PixelFlippingLerf(p) => {
            let order = if matches!(metric, Metric::PixelFlippingMorf(_)) {
                Order::Morf
            } else {
                Order::Lerf
            };
            let s = pixel_flipping(model, x, map, t, seg, order, p)?;
            (s.value, Some(s.curve))
        }
        Metric::PixelFlippingDifference(p) => {
            let morf = pixel_flipping(model, x.view(), map.view(), t, seg, Order::Morf, p)?;
            let lerf = pixel_flipping(model, x, map, t, seg, Order::Lerf, p)?;
            (lerf.value - morf.value, Some(morf.curve))
        }
        Metric::RegionPerturbationMorf(p) | Metric::RegionPerturbationLerf(p) => {
            let order = if matches!(metric, Metric::RegionPerturbationMorf(_)) {
                Order::Morf
            } else {
                Order::Lerf
            };
            let s = region_perturbation(model, x, map, t, order, p)?;
            (s.value, Some(s.curve))
        }
        Metric::RegionPerturbationDifference(p) => {
            let morf = region_perturbation(model, x.view(), map.view(), t, Order::Morf, p)?;
            let lerf = region_perturbation(model, x, map, t, Order::Lerf, p)?;
            (morf.value - lerf.value, Some(morf.curve))
        }
        Metric::RoadMorf(p) | Metric::RoadLerf(p) => {
            let order = if matches!(metric, Metric::RoadMorf(_)) {
                Order::Morf
            } else {
                Order::Lerf
            };
            let s = road(model, x, map, t, order, p)?;
            (s.value, Some(s.curve))
        }
        Metric::Infidelity(p) => (infidelity(model, x, map, t, p)?, None),
        Metric::MaxSensitivity(p) | Metric::AvgSensitivity(p) => {
            let explainer = ctx.explainer.ok_or(EvalError::Missing {
                metric: name,
                needs: "an explainer to re-run on noisy inputs",
            })?;
            let s = sensitivity(explainer, x, map, t, p)?;
            let v = if matches!(metric, Metric::MaxSensitivity(_)) {
                s.max
            } else {
                s.avg
            };
            (v, None)
        }
        Metric::FaithfulnessCorrelation(p) => {
            (faithfulness_correlation(model, x, map, t, p)?, None)
        }
        Metric::Mprt(p) => {
            let r = ctx.randomizable.ok_or(EvalError::Missing {
                metric: name,
                needs: "a randomisable model (e.g. an xai_models::Network)",
            })?;
            let e = ctx.model_explainer.ok_or(EvalError::Missing {
                metric: name,
                needs: "a model explainer to re-run on the randomised models",
            })?;
            let s = mprt(r, e, x, map, t, p)?;
            (s.value, Some(s.curve))
        }
    };
    Ok(MetricValue {
        metric: name,
        value,
        direction: metric.direction(),
        curve,
    })
}
