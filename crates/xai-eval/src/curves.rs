//! Perturbation curves: deletion and insertion (Petsiuk et al. 2018, RISE), pixel flipping
//! (Bach et al. 2015; Quantus' `PixelFlipping`) and region perturbation (Samek et al. 2016;
//! Quantus' `RegionPerturbation`), most- or least-relevant first.

use ndarray::{ArrayView2, ArrayViewD};
use serde::{Deserialize, Serialize};
use xai_core::Predictor;

use crate::error::Result;
use crate::hyperparams::{CurveValidParams, RegionValidParams};
use crate::perturb::{
    broadcast_map, feature_groups, fill_values, group_scores, patches, ranking, require_image,
    trapezoid, trapezoid_unit, Sample,
};

/// Whether a larger or a smaller score means a better explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Lower is better (deletion AUC, MoRF curves, infidelity, sensitivity, MPRT similarity).
    LowerIsBetter,
    /// Higher is better (insertion AUC, LeRF curves, faithfulness correlation).
    HigherIsBetter,
}

/// The order in which features are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Most relevant first (largest attribution first).
    Morf,
    /// Least relevant first.
    Lerf,
}

/// A curve: `x` is the fraction of features removed (deletion, insertion), the step number
/// (pixel flipping, region perturbation), the percentage (ROAD) or the number of randomised
/// layers (MPRT); `y` the score at that point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Abscissae.
    pub x: Vec<f64>,
    /// Values.
    pub y: Vec<f64>,
}

/// A curve and the number summarising it, with the direction that is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveScore {
    /// The curve.
    pub curve: Curve,
    /// The summary: an area under the curve, or the curve's mean where stated.
    pub value: f64,
    /// Which way is better.
    pub direction: Direction,
}

/// Removes (or inserts) ranked feature groups `per_step` at a time and returns, for steps
/// `first..=n_steps`, the number of groups changed and the target output.
fn ranked_curve(
    sample: &Sample<'_>,
    groups: &[Vec<usize>],
    order: &[usize],
    start: &[f32],
    source: &[f32],
    per_step: usize,
    first_step: usize,
    max_groups: usize,
    batch_size: usize,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let total = order.len().min(max_groups);
    let n_steps = total.div_ceil(per_step);
    let counts: Vec<usize> = (first_step..=n_steps)
        .map(|k| (k * per_step).min(total))
        .collect();
    let mut cur = start.to_vec();
    let mut applied = 0usize;
    let y = sample.sequence(counts.len(), batch_size, |i, buf| {
        while applied < counts[i] {
            for e in &groups[order[applied]] {
                cur[*e] = source[*e];
            }
            applied += 1;
        }
        buf.copy_from_slice(&cur);
        Ok(())
    })?;
    Ok((counts, y))
}

struct Ranked {
    groups: Vec<Vec<usize>>,
    order: Vec<usize>,
    fill: Vec<f32>,
}

fn rank(
    sample: &Sample<'_>,
    map: ArrayViewD<'_, f32>,
    segments: Option<ArrayView2<'_, usize>>,
    params: &CurveValidParams,
    order: Order,
) -> Result<Ranked> {
    let map = broadcast_map(&sample.shape, map)?;
    let groups = feature_groups(sample, params.features, segments)?;
    let scores = group_scores(&groups, &map, params.abs);
    let order = ranking(&scores, order == Order::Morf);
    let fill = fill_values(sample, params.baseline)?;
    Ok(Ranked {
        groups,
        order,
        fill,
    })
}

/// The deletion curve (RISE): the target output as the most relevant features are replaced by
/// the baseline, `features_in_step` at a time (or more, to stay within `max_steps`), from the intact input (fraction 0) to the fully
/// removed one (fraction 1); its area over the fraction removed. Lower is better.
pub fn deletion(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    segments: Option<ArrayView2<'_, usize>>,
    params: &CurveValidParams,
) -> Result<CurveScore> {
    let sample = Sample::new(model, x, target)?;
    let r = rank(&sample, map, segments, params, Order::Morf)?;
    let (counts, y) = ranked_curve(
        &sample,
        &r.groups,
        &r.order,
        &sample.x,
        &r.fill,
        params.step_for(r.groups.len()),
        0,
        usize::MAX,
        params.batch_size,
    )?;
    Ok(fraction_curve(
        counts,
        y,
        r.groups.len(),
        Direction::LowerIsBetter,
    ))
}

/// The insertion curve (RISE): the target output as the most relevant features of the input are
/// put back into the baseline (an all-removed input, or the blurred image), from fraction 0 to
/// the intact input; its area over the fraction inserted. Higher is better.
pub fn insertion(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    segments: Option<ArrayView2<'_, usize>>,
    params: &CurveValidParams,
) -> Result<CurveScore> {
    let sample = Sample::new(model, x, target)?;
    let r = rank(&sample, map, segments, params, Order::Morf)?;
    let (counts, y) = ranked_curve(
        &sample,
        &r.groups,
        &r.order,
        &r.fill,
        &sample.x,
        params.step_for(r.groups.len()),
        0,
        usize::MAX,
        params.batch_size,
    )?;
    Ok(fraction_curve(
        counts,
        y,
        r.groups.len(),
        Direction::HigherIsBetter,
    ))
}

fn fraction_curve(counts: Vec<usize>, y: Vec<f32>, n: usize, direction: Direction) -> CurveScore {
    let x: Vec<f64> = counts.iter().map(|c| *c as f64 / n.max(1) as f64).collect();
    let y: Vec<f64> = y.into_iter().map(f64::from).collect();
    let value = trapezoid(&x, &y);
    CurveScore {
        curve: Curve { x, y },
        value,
        direction,
    }
}

/// Pixel flipping as Quantus' `PixelFlipping`: the target output after each step of
/// `features_in_step` removals (cumulative; the intact input is not a point), and its area with
/// unit spacing (Quantus' `return_auc_per_sample`). MoRF: lower is better; LeRF (not in
/// Quantus, which flips most relevant first only): higher is better.
pub fn pixel_flipping(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    segments: Option<ArrayView2<'_, usize>>,
    order: Order,
    params: &CurveValidParams,
) -> Result<CurveScore> {
    let sample = Sample::new(model, x, target)?;
    let r = rank(&sample, map, segments, params, order)?;
    let (counts, y) = ranked_curve(
        &sample,
        &r.groups,
        &r.order,
        &sample.x,
        &r.fill,
        params.step_for(r.groups.len()),
        1,
        usize::MAX,
        params.batch_size,
    )?;
    let y: Vec<f64> = y.into_iter().map(f64::from).collect();
    let value = trapezoid_unit(&y);
    Ok(CurveScore {
        curve: Curve {
            x: (1..=counts.len()).map(|k| k as f64).collect(),
            y,
        },
        value,
        direction: match order {
            Order::Morf => Direction::LowerIsBetter,
            Order::Lerf => Direction::HigherIsBetter,
        },
    })
}

/// Region perturbation as Quantus' `RegionPerturbation`: square patches (the image padded to a
/// multiple of `patch_size` as Quantus pads it) ranked by their summed attribution, replaced one
/// more at a time; the curve is `f(x) − f(x_k)` for the first `regions_evaluation` regions.
/// The value is the curve's mean (AOPC over the evaluated regions; Quantus returns the curve
/// only). MoRF: higher is better; LeRF: lower is better. Quantus' `"mean"` baseline is the mean
/// of the edge-padded image; here the unpadded input's.
pub fn region_perturbation(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    order: Order,
    params: &RegionValidParams,
) -> Result<CurveScore> {
    let sample = Sample::new(model, x, target)?;
    let (c, h, w) = require_image(&sample, "region perturbation")?;
    let map = broadcast_map(&sample.shape, map)?;
    let groups = patches(c, h, w, params.patch_size);
    let scores = group_scores(&groups, &map, false);
    let ranked = ranking(&scores, order == Order::Morf);
    let fill = fill_values(&sample, params.baseline)?;
    let y0 = f64::from(sample.original_output()?);
    let (counts, y) = ranked_curve(
        &sample,
        &groups,
        &ranked,
        &sample.x,
        &fill,
        1,
        1,
        params.regions_evaluation,
        params.batch_size,
    )?;
    let y: Vec<f64> = y.into_iter().map(|v| y0 - f64::from(v)).collect();
    let value = y.iter().sum::<f64>() / y.len().max(1) as f64;
    Ok(CurveScore {
        curve: Curve {
            x: (1..=counts.len()).map(|k| k as f64).collect(),
            y,
        },
        value,
        direction: match order {
            Order::Morf => Direction::HigherIsBetter,
            Order::Lerf => Direction::LowerIsBetter,
        },
    })
}
