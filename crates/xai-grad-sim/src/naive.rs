//! The slow reference path: what alibi does (its backends can only give the gradient of a whole
//! batch, so it loops over instances one at a time) written plainly, for tests and benchmarks.
//!
//! Every instance's gradient is requested from the model on its own (a batch of one), expanded
//! to a flat vector with [`xai_core::PerSampleGrads::to_flat`], and the kernels are evaluated on
//! the flat vectors with `f64` accumulation. Memory is `n * n_params` floats, so this is for
//! small models only.

use ndarray::{Array2, ArrayViewD, Axis};
use xai_core::{check_batch, check_finite, DifferentiableModel, Targets};

use crate::error::{GradSimError, Result};
use crate::gradients::validate_targets;
use crate::hyperparams::GradSimValidParams;

/// Flattened per-sample gradients `[n, n_params]`, one model call per instance.
pub fn naive_flat_gradients<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: &GradSimValidParams,
    x: ArrayViewD<'_, f32>,
    targets: &Targets,
) -> Result<Array2<f32>> {
    let n = check_batch("inputs `x`", &x, model.input_shape())?;
    check_finite("inputs `x`", &x)?;
    validate_targets(
        "instance",
        targets,
        n,
        model.n_outputs(),
        params.task,
        false,
    )?;
    let mut rows: Vec<ndarray::Array1<f32>> = Vec::with_capacity(n);
    for i in 0..n {
        let xi = x.slice_axis(Axis(0), ndarray::Slice::from(i..i + 1));
        let grads = model.per_sample_grads(
            xi,
            &targets.select(&[i])?,
            &params.loss,
            &params.param_selection,
        )?;
        if grads.n_samples() != 1 {
            return Err(GradSimError::GradientCount {
                got: grads.n_samples(),
                expected: 1,
            });
        }
        rows.push(grads.to_flat().row(0).to_owned());
    }
    let n_params = rows.first().map_or(0, |r| r.len());
    let mut out = Array2::zeros((n, n_params));
    for (i, r) in rows.iter().enumerate() {
        if r.len() != n_params {
            return Err(xai_core::CoreError::shape(
                format!("flattened gradient of instance {i}"),
                &[r.len()],
                format!("[{n_params}] like instance 0"),
            )
            .into());
        }
        out.row_mut(i).assign(r);
    }
    Ok(out)
}

/// Scores `[n_test, n_ref]` in reference order (entry `[i, j]`: test `i` against reference
/// `j`), computed the naive way with the kernel, loss, parameter selection and `eps` of
/// `params`. `y_test` must hold one target per test instance.
pub fn naive_scores<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: &GradSimValidParams,
    x_ref: ArrayViewD<'_, f32>,
    y_ref: &Targets,
    x_test: ArrayViewD<'_, f32>,
    y_test: &Targets,
) -> Result<Array2<f32>> {
    let g_ref = naive_flat_gradients(model, params, x_ref, y_ref)?;
    let g_test = naive_flat_gradients(model, params, x_test, y_test)?;
    let dot64 = |a: ndarray::ArrayView1<'_, f32>, b: ndarray::ArrayView1<'_, f32>| -> f64 {
        a.iter()
            .zip(b.iter())
            .map(|(&u, &v)| u as f64 * v as f64)
            .sum()
    };
    let ref_sq: Vec<f64> = g_ref.rows().into_iter().map(|r| dot64(r, r)).collect();
    let test_sq: Vec<f64> = g_test.rows().into_iter().map(|r| dot64(r, r)).collect();
    let eps = params.eps as f64;
    let mut scores = Array2::zeros((g_test.nrows(), g_ref.nrows()));
    for (i, t) in g_test.rows().into_iter().enumerate() {
        for (j, r) in g_ref.rows().into_iter().enumerate() {
            let dot = dot64(t, r);
            let s = match params.sim_fn {
                crate::SimilarityFn::GradDot => dot,
                crate::SimilarityFn::GradCos => {
                    (dot / (test_sq[i].sqrt() * ref_sq[j].sqrt() + eps)).clamp(-1.0, 1.0)
                }
                crate::SimilarityFn::GradAsymDot => dot / (ref_sq[j] + eps),
            };
            scores[[i, j]] = s as f32;
        }
    }
    Ok(scores)
}
