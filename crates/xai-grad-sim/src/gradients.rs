//! Batched per-sample loss gradients and the checks on the targets they are taken against.

use ndarray::{Array1, ArrayViewD, Axis, Slice};
use xai_core::{CoreError, DifferentiableModel, PerSampleGrads, Targets};

use crate::error::{GradSimError, Result};
use crate::hyperparams::{GradSimValidParams, Task};

/// Per-sample gradients of a contiguous run of instances, in the model's compact form, with
/// their squared norms.
#[derive(Debug, Clone)]
pub(crate) struct GradChunk {
    /// Index of the chunk's first instance in the whole set.
    pub(crate) offset: usize,
    /// The gradients, one row per instance, as the model returned them.
    pub(crate) grads: PerSampleGrads,
    /// `‖g_i‖²` of each instance of the chunk.
    pub(crate) squared_norms: Array1<f32>,
}

/// Name of a [`Targets`] variant, for messages.
fn targets_kind(t: &Targets) -> &'static str {
    match t {
        Targets::Classes(_) => "class indices",
        Targets::Probabilities(_) => "probability rows",
        Targets::Values(_) => "regression values",
    }
}

/// Checks `targets` for `n_instances` instances of a model with `n_outputs` outputs: the count
/// (one per instance, or a single one to broadcast when `allow_broadcast`), the kind for the
/// task, class indices in range, rows of the right width and finite values.
pub(crate) fn validate_targets(
    what: &'static str,
    targets: &Targets,
    n_instances: usize,
    n_outputs: usize,
    task: Task,
    allow_broadcast: bool,
) -> Result<()> {
    let got = targets.len();
    if got != n_instances && !(allow_broadcast && got == 1) {
        return Err(GradSimError::TargetCount {
            what,
            got,
            n_instances,
            expected: if allow_broadcast {
                format!("{n_instances}, one per instance, or a single one for all")
            } else {
                format!("{n_instances}, one per instance")
            },
        });
    }
    match (task, targets) {
        (Task::Classification, Targets::Values(_)) => {
            return Err(GradSimError::TargetsDoNotFitTask {
                what,
                got: targets_kind(targets),
                task: task.name(),
                expected: "class indices or probability (e.g. one-hot) rows",
            })
        }
        (Task::Regression, Targets::Classes(_) | Targets::Probabilities(_)) => {
            return Err(GradSimError::TargetsDoNotFitTask {
                what,
                got: targets_kind(targets),
                task: task.name(),
                expected: "regression values, one row of model outputs per instance",
            })
        }
        _ => {}
    }
    match targets {
        Targets::Classes(classes) => {
            if let Some((index, &c)) = classes.iter().enumerate().find(|(_, &c)| c >= n_outputs) {
                return Err(GradSimError::InvalidTarget {
                    what,
                    index,
                    problem: format!(
                        "class {c} is out of range: expected a class in 0..{n_outputs} for a \
                         model with {n_outputs} outputs"
                    ),
                });
            }
        }
        Targets::Probabilities(rows) | Targets::Values(rows) => {
            if rows.ncols() != n_outputs {
                return Err(CoreError::shape(
                    format!("{what} targets"),
                    rows.shape(),
                    format!("[n, {n_outputs}] (one column per model output)"),
                )
                .into());
            }
            for (index, row) in rows.rows().into_iter().enumerate() {
                if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                    return Err(GradSimError::InvalidTarget {
                        what,
                        index,
                        problem: format!("it contains {v}: expected finite values"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The per-sample gradients of instances `offset..offset + x.len_of(0)` (the batch `x` with its
/// `targets`) as one chunk, checked: one gradient per instance, all finite.
pub(crate) fn chunk_grads<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: &GradSimValidParams,
    what: &'static str,
    x: ArrayViewD<'_, f32>,
    targets: &Targets,
    offset: usize,
) -> Result<GradChunk> {
    let n = x.len_of(Axis(0));
    let grads = model.per_sample_grads(x, targets, &params.loss, &params.param_selection)?;
    if grads.n_samples() != n {
        return Err(GradSimError::GradientCount {
            got: grads.n_samples(),
            expected: n,
        });
    }
    let squared_norms = grads.squared_norms();
    if let Some((i, &sq)) = squared_norms
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(GradSimError::NonFiniteGradient {
            what,
            index: offset + i,
            squared_norm: sq,
        });
    }
    Ok(GradChunk {
        offset,
        grads,
        squared_norms,
    })
}

/// Ranges `start..end` covering `0..n` in steps of `batch_size`.
pub(crate) fn batch_ranges(n: usize, batch_size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n)
        .step_by(batch_size.max(1))
        .map(move |start| (start, (start + batch_size).min(n)))
}

/// Instances `start..end` of a batch and their targets.
pub(crate) fn slice_batch<'a>(
    x: &'a ArrayViewD<'_, f32>,
    targets: &Targets,
    start: usize,
    end: usize,
) -> Result<(ArrayViewD<'a, f32>, Targets)> {
    let xs = x.slice_axis(Axis(0), Slice::from(start..end));
    let indices: Vec<usize> = (start..end).collect();
    Ok((xs, targets.select(&indices)?))
}

/// Per-sample gradients of every instance of `x`, computed `batch_size` instances at a time.
pub(crate) fn batched_grads<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: &GradSimValidParams,
    what: &'static str,
    x: ArrayViewD<'_, f32>,
    targets: &Targets,
    mut done: impl FnMut(usize, usize),
) -> Result<Vec<GradChunk>> {
    let n = x.len_of(Axis(0));
    batch_ranges(n, params.batch_size)
        .map(|(start, end)| {
            let (xs, ts) = slice_batch(&x, targets, start, end)?;
            let chunk = chunk_grads(model, params, what, xs, &ts, start)?;
            done(end, n);
            Ok(chunk)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn targets_are_checked_for_count_kind_range_and_finiteness() {
        let c = Task::Classification;
        let ok = Targets::Classes(vec![0, 2]);
        assert!(validate_targets("reference", &ok, 2, 3, c, false).is_ok());
        let err = validate_targets("reference", &ok, 3, 3, c, false).unwrap_err();
        assert!(
            matches!(err, GradSimError::TargetCount { got: 2, .. }),
            "{err}"
        );
        let one = Targets::Classes(vec![1]);
        assert!(validate_targets("test", &one, 4, 3, c, true).is_ok());
        assert!(validate_targets("test", &one, 4, 3, c, false).is_err());
        let err = validate_targets("reference", &ok, 2, 2, c, false).unwrap_err();
        assert!(err.to_string().contains("class 2 is out of range"), "{err}");
        let values = Targets::Values(array![[1.0f32], [2.0]]);
        assert!(matches!(
            validate_targets("reference", &values, 2, 1, c, false),
            Err(GradSimError::TargetsDoNotFitTask { .. })
        ));
        assert!(validate_targets("reference", &values, 2, 1, Task::Regression, false).is_ok());
        assert!(matches!(
            validate_targets("reference", &ok, 2, 3, Task::Regression, false),
            Err(GradSimError::TargetsDoNotFitTask { .. })
        ));
        let wide = Targets::Probabilities(array![[0.5f32, 0.5]]);
        assert!(matches!(
            validate_targets("test", &wide, 1, 3, c, false),
            Err(GradSimError::Core(CoreError::ShapeMismatch { .. }))
        ));
        let nan = Targets::Values(array![[1.0f32], [f32::NAN]]);
        let err = validate_targets("test", &nan, 2, 1, Task::Regression, false).unwrap_err();
        assert!(
            matches!(err, GradSimError::InvalidTarget { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn batch_ranges_cover_everything_once() {
        let r: Vec<_> = batch_ranges(7, 3).collect();
        assert_eq!(r, vec![(0, 3), (3, 6), (6, 7)]);
        assert_eq!(batch_ranges(0, 3).count(), 0);
    }
}
