//! How well CEM does on a set of inputs: how often a PN / PP is found and how large the
//! perturbations are ([`evaluate_quality`]).

use std::time::Instant;

use ndarray::{ArrayViewD, Axis, Slice};
use serde::Serialize;
use xai_core::{check_batch, CoreError, Explanation};

use xai_cem::Cem;
use xai_cem::CemData;
use xai_cem::Mode;
use xai_cem::Result;

/// The outcome for one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceQuality {
    /// The classifier's prediction for the instance.
    pub x_pred: usize,
    /// The PN / PP's predicted class, if found.
    pub pred: Option<usize>,
    /// `||delta||_1` of the perturbation (`PN - X`, or `PP -` the "nothing kept" instance).
    pub l1: Option<f64>,
    /// `||delta||_2`.
    pub l2: Option<f64>,
    /// Number of features the perturbation changes.
    pub n_changed: Option<usize>,
}

/// Found rate and perturbation sizes over a set of inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// PN or PP.
    pub mode: Mode,
    /// Number of instances explained.
    pub n_instances: usize,
    /// Number for which a PN / PP was found.
    pub n_found: usize,
    /// `n_found / n_instances`.
    pub found_rate: f64,
    /// Mean `||delta||_1` over the found ones.
    pub mean_l1: Option<f64>,
    /// Mean `||delta||_2` over the found ones.
    pub mean_l2: Option<f64>,
    /// Mean number of changed features over the found ones.
    pub mean_changed: Option<f64>,
    /// Wall-clock seconds for all explanations.
    pub seconds_total: f64,
    /// `seconds_total / n_instances`.
    pub seconds_per_instance: f64,
    /// One entry per instance, in input order.
    pub per_instance: Vec<InstanceQuality>,
}

impl std::fmt::Display for QualityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        write!(
            f,
            "{}: found {}/{} ({:.1}%), mean L1 {}, mean L2 {}, mean changed features {}, {:.3} s per instance",
            self.mode,
            self.n_found,
            self.n_instances,
            100.0 * self.found_rate,
            show(self.mean_l1),
            show(self.mean_l2),
            show(self.mean_changed),
            self.seconds_per_instance
        )
    }
}

/// Explains every instance of `xs` (`[n, ..input_shape]`) with `cem`, `batch_size` instances per
/// [`Cem::explain_batch`] call, and reports how often a PN / PP was found and the mean L1 / L2
/// size of the perturbation.
pub fn evaluate_quality(
    cem: &Cem<'_>,
    xs: ArrayViewD<'_, f32>,
    batch_size: usize,
) -> Result<QualityReport> {
    let n = check_batch("instances", &xs, cem.input_shape())?;
    if n == 0 {
        return Err(CoreError::Empty("instances to evaluate".into()).into());
    }
    if batch_size == 0 {
        return Err(xai_cem::CemError::InvalidParameter {
            name: "batch_size",
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    let start = Instant::now();
    let mut explanations = Vec::with_capacity(n);
    for chunk_start in (0..n).step_by(batch_size) {
        let end = (chunk_start + batch_size).min(n);
        let chunk = xs.slice_axis(Axis(0), Slice::from(chunk_start..end));
        explanations.extend(cem.explain_batch(chunk, None)?);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(QualityReport::from_explanations(
        cem.params().mode(),
        &explanations,
        seconds,
    ))
}

impl QualityReport {
    /// The report for explanations already computed (all of the same mode), which took
    /// `seconds_total` seconds.
    pub fn from_explanations(
        mode: Mode,
        explanations: &[Explanation<CemData>],
        seconds_total: f64,
    ) -> Self {
        let n = explanations.len();
        let per_instance: Vec<InstanceQuality> = explanations
            .iter()
            .map(|e| {
                let delta = e.data.delta();
                InstanceQuality {
                    x_pred: e.data.x_pred,
                    pred: e.data.pertinent.as_ref().map(|p| p.pred),
                    l1: delta
                        .as_ref()
                        .map(|d| d.iter().map(|v| v.abs() as f64).sum()),
                    l2: delta
                        .as_ref()
                        .map(|d| d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()),
                    n_changed: delta
                        .as_ref()
                        .map(|d| d.iter().filter(|v| **v != 0.0).count()),
                }
            })
            .collect();
        let found: Vec<&InstanceQuality> =
            per_instance.iter().filter(|q| q.pred.is_some()).collect();
        let mean = |f: &dyn Fn(&InstanceQuality) -> f64| {
            if found.is_empty() {
                None
            } else {
                Some(found.iter().map(|q| f(q)).sum::<f64>() / found.len() as f64)
            }
        };
        QualityReport {
            mode,
            n_instances: n,
            n_found: found.len(),
            found_rate: if n == 0 {
                0.0
            } else {
                found.len() as f64 / n as f64
            },
            mean_l1: mean(&|q| q.l1.unwrap_or(0.0)),
            mean_l2: mean(&|q| q.l2.unwrap_or(0.0)),
            mean_changed: mean(&|q| q.n_changed.unwrap_or(0) as f64),
            seconds_total,
            seconds_per_instance: if n == 0 {
                0.0
            } else {
                seconds_total / n as f64
            },
            per_instance,
        }
    }
}
