//! Faithfulness correlation (Bhatt et al. 2020; Quantus' `FaithfulnessCorrelation`): the
//! correlation, over random subsets of features, between the attribution of the subset and the
//! output drop when the subset is removed.

use ndarray::ArrayViewD;
use rand::rngs::StdRng;
use rand::SeedableRng;
use xai_core::Predictor;

use crate::error::{EvalError, Result};
use crate::hyperparams::{Baseline, FaithfulnessCorrelationValidParams, Similarity};
use crate::perturb::{broadcast_map, fill_values, similarity, Sample};

/// Faithfulness correlation, higher is better: `nr_runs` subsets of `subset_size` input
/// elements drawn without replacement (one seeded stream, drawn in order), each replaced by the
/// baseline; the correlation (Pearson by default, as Quantus) between `Σ a[subset]` and
/// `f(x) − f(x_subset removed)`. Invariant to positive scaling of the map.
pub fn faithfulness_correlation(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    params: &FaithfulnessCorrelationValidParams,
) -> Result<f64> {
    let n = x.len();
    if params.subset_size > n {
        return Err(EvalError::param(
            "subset_size",
            params.subset_size,
            "at most the number of input elements",
        ));
    }
    let mut rng = StdRng::seed_from_u64(params.seed);
    let subsets: Vec<Vec<usize>> = (0..params.nr_runs)
        .map(|_| rand::seq::index::sample(&mut rng, n, params.subset_size).into_vec())
        .collect();
    faithfulness_correlation_with_subsets(
        model,
        x,
        map,
        target,
        &subsets,
        params.baseline,
        params.similarity,
        params.batch_size,
    )
}

/// [`faithfulness_correlation`] on the subsets given (flat element indices of the input, e.g.
/// Quantus' draws for the agreement tests).
pub fn faithfulness_correlation_with_subsets(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    subsets: &[Vec<usize>],
    baseline: Baseline,
    similarity_fn: Similarity,
    batch_size: usize,
) -> Result<f64> {
    let sample = Sample::new(model, x, target)?;
    let a = broadcast_map(&sample.shape, map)?;
    if subsets.len() < 2 {
        return Err(EvalError::param(
            "subsets",
            subsets.len(),
            "at least 2 subsets (a correlation needs two points)",
        ));
    }
    if let Some(bad) = subsets.iter().flatten().find(|i| **i >= sample.len()) {
        return Err(EvalError::param(
            "subsets",
            bad,
            "element indices below the input's size",
        ));
    }
    if batch_size == 0 {
        return Err(EvalError::param(
            "batch_size",
            batch_size,
            "at least 1 input per model call",
        ));
    }
    let fill = fill_values(&sample, baseline)?;
    let y0 = f64::from(sample.original_output()?);
    let ys = sample.sequence(subsets.len(), batch_size, |k, buf| {
        buf.copy_from_slice(&sample.x);
        for e in &subsets[k] {
            buf[*e] = fill[*e];
        }
        Ok(())
    })?;
    let deltas: Vec<f64> = ys.iter().map(|y| y0 - f64::from(*y)).collect();
    let sums: Vec<f64> = subsets
        .iter()
        .map(|s| s.iter().map(|e| f64::from(a[*e])).sum())
        .collect();
    let r = similarity(similarity_fn, &sums, &deltas);
    if !r.is_finite() {
        return Err(EvalError::NonFinite {
            what: "faithfulness correlation",
            value: r,
            why: "the attribution sums or the output drops are constant over the subsets",
        });
    }
    Ok(r)
}
