use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis};

use crate::{CoreError, Loss, ParamGroup, ParamSelection, PerSampleGrads, Result, Targets};

/// A black-box model: a batch of inputs in, a batch of outputs out.
///
/// Inputs are `f32` arrays of shape `[n, ..input_shape()]`; outputs are `[n, n_outputs()]`
/// (class scores, probabilities or regression values, whatever the model produces).
/// The trait is object safe, so explainers can hold a `&dyn Predictor`.
pub trait Predictor: Send + Sync {
    /// Shape of one input sample, without the batch axis (e.g. `[1, 28, 28]`).
    fn input_shape(&self) -> &[usize];

    /// Number of outputs per sample (e.g. 10 class probabilities).
    fn n_outputs(&self) -> usize;

    /// Evaluates the model on a batch `x` of shape `[n, ..input_shape()]`.
    ///
    /// Implementations must return an error, never panic, on a batch of the wrong shape; use
    /// [`check_batch`].
    fn predict(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>>;
}

/// A predictor whose gradients are available (a white-box model).
pub trait DifferentiableModel: Predictor {
    /// The gradient of `sum_{i,j} output_weights[i, j] * f(x)_i[j]` with respect to the input
    /// batch `x`: a vector-Jacobian product, one per sample. Returns an array shaped like `x`.
    fn input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: ArrayView2<'_, f32>,
    ) -> Result<ArrayD<f32>>;

    /// The outputs `f(x)` and the vector-Jacobian product `∂(Σ w ∘ f(x))/∂x` for weights `w`
    /// that depend on those outputs (a pullback): `output_weights` receives `f(x)` and returns
    /// `w`, `[n, n_outputs]`. Methods whose loss weights come from the model's own outputs (CEM's
    /// hinge, an autoencoder's residual) get both from one forward pass.
    ///
    /// The default calls [`Predictor::predict`] and then [`DifferentiableModel::input_gradient`]
    /// (two forward passes); models that keep their forward pass, such as `xai-models`'
    /// networks, override it. A weight matrix that is all zeros may skip the backward pass and
    /// return a zero gradient.
    fn predict_and_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        output_weights: &mut dyn FnMut(ArrayView2<'_, f32>) -> Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, ArrayD<f32>)> {
        let outputs = self.predict(x.view())?;
        let weights = output_weights(outputs.view())?;
        let grad = if weights.iter().all(|w| *w == 0.0) {
            ArrayD::zeros(x.raw_dim())
        } else {
            self.input_gradient(x, weights.view())?
        };
        Ok((outputs, grad))
    }

    /// The model's parameter groups (e.g. `conv1.weight`, `dense2.bias`), in the order used by
    /// flattened gradients.
    fn parameter_groups(&self) -> Vec<ParamGroup>;

    /// Per-sample gradients of `loss(f(x_i), target_i)` with respect to the selected parameters,
    /// one row per sample. The model chooses each block's form (full or factored, see
    /// [`PerSampleGrads`]); a model without a better way can return a single full block.
    fn per_sample_grads(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
        selection: &ParamSelection,
    ) -> Result<PerSampleGrads>;

    /// Per-sample loss values and the gradient of each sample's loss with respect to its input
    /// (the batch's losses are independent, so this is the gradient of their sum).
    ///
    /// The default evaluates the model once for the loss gradient with respect to the outputs and
    /// then calls [`DifferentiableModel::input_gradient`].
    fn loss_input_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &Targets,
        loss: &Loss,
    ) -> Result<(ndarray::Array1<f32>, ArrayD<f32>)> {
        let outputs = self.predict(x.view())?;
        let (values, grad_outputs) = loss.value_and_grad(outputs.view(), targets)?;
        let grad = self.input_gradient(x, grad_outputs.view())?;
        Ok((values, grad))
    }
}

/// Checks that `x` is a batch of samples of shape `input_shape`, i.e. has shape
/// `[n, ..input_shape]`, and returns `n`.
pub fn check_batch(what: &str, x: &ArrayViewD<'_, f32>, input_shape: &[usize]) -> Result<usize> {
    let shape = x.shape();
    if shape.len() != input_shape.len() + 1 || &shape[1..] != input_shape {
        return Err(CoreError::shape(
            what,
            shape,
            format!("[n, {}]", join_dims(input_shape)),
        ));
    }
    Ok(shape[0])
}

/// Returns an error naming the first NaN or infinite element of `x`.
pub fn check_finite(what: &str, x: &ArrayViewD<'_, f32>) -> Result<()> {
    if let Some((index, value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CoreError::NonFinite {
            what: what.to_string(),
            index,
            value: *value,
        });
    }
    Ok(())
}

/// Index of the largest value in each row (the predicted class for class scores).
pub fn argmax_rows(outputs: ArrayView2<'_, f32>) -> Vec<usize> {
    outputs
        .axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

fn join_dims(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A [`Predictor`] made from a closure, for models that exist only as a function.
///
/// The closure receives batches already checked against `input_shape` and must return
/// `[n, n_outputs]`; a wrong output shape is reported as an error.
pub struct FnPredictor<F> {
    input_shape: Vec<usize>,
    n_outputs: usize,
    f: F,
}

impl<F> FnPredictor<F>
where
    F: Fn(ArrayViewD<'_, f32>) -> Result<Array2<f32>> + Send + Sync,
{
    /// Wraps `f` as a predictor of samples shaped `input_shape` with `n_outputs` outputs.
    pub fn new(input_shape: Vec<usize>, n_outputs: usize, f: F) -> Self {
        Self {
            input_shape,
            n_outputs,
            f,
        }
    }
}

impl<F> Predictor for FnPredictor<F>
where
    F: Fn(ArrayViewD<'_, f32>) -> Result<Array2<f32>> + Send + Sync,
{
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.input_shape)?;
        let out = (self.f)(x)?;
        if out.shape() != [n, self.n_outputs] {
            return Err(CoreError::Model(format!(
                "the prediction function returned shape {:?}, expected [{n}, {}]",
                out.shape(),
                self.n_outputs
            )));
        }
        Ok(out)
    }
}

/// A [`Predictor`] that passes every call to `inner` and adds up the time spent in it and the
/// rows evaluated: how much of an explanation's time is the model's, and how many model
/// evaluations a method made. Safe to share across threads.
pub struct TimedPredictor<'a> {
    inner: &'a dyn Predictor,
    nanos: std::sync::atomic::AtomicU64,
    rows: std::sync::atomic::AtomicU64,
}

impl<'a> TimedPredictor<'a> {
    /// Wraps `inner`, with both counters at zero.
    pub fn new(inner: &'a dyn Predictor) -> Self {
        Self {
            inner,
            nanos: 0.into(),
            rows: 0.into(),
        }
    }

    /// Time spent in `inner.predict` since the last [`TimedPredictor::reset`].
    pub fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Rows (model evaluations) passed to `inner.predict` since the last reset.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets both counters to zero.
    pub fn reset(&self) {
        self.nanos.store(0, std::sync::atomic::Ordering::Relaxed);
        self.rows.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Predictor for TimedPredictor<'_> {
    fn input_shape(&self) -> &[usize] {
        self.inner.input_shape()
    }

    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        let start = std::time::Instant::now();
        let rows = x.shape().first().copied().unwrap_or(0) as u64;
        let out = self.inner.predict(x);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn fn_predictor_checks_shapes() {
        let p = FnPredictor::new(vec![2], 1, |x: ArrayViewD<'_, f32>| {
            Ok(x.into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .sum_axis(Axis(1))
                .insert_axis(Axis(1)))
        });
        let err = p
            .predict(array![[1.0f32, 2.0, 3.0]].view().into_dyn())
            .unwrap_err();
        assert_eq!(err.to_string(), "input has shape [1, 3], expected [n, 2]");
        let bad = FnPredictor::new(vec![2], 3, |x: ArrayViewD<'_, f32>| {
            Ok(Array2::zeros((x.shape()[0], 1)))
        });
        assert!(matches!(
            bad.predict(array![[1.0f32, 2.0]].view().into_dyn()),
            Err(CoreError::Model(_))
        ));
    }

    #[test]
    fn timed_predictor_counts_rows_and_passes_outputs_through() {
        let p = FnPredictor::new(vec![2], 1, |x: ArrayViewD<'_, f32>| {
            Ok(x.into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .sum_axis(Axis(1))
                .insert_axis(Axis(1)))
        });
        let timed = TimedPredictor::new(&p);
        let x = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let out = timed.predict(x.view().into_dyn()).unwrap();
        assert_eq!(out, array![[3.0f32], [7.0], [11.0]]);
        timed.predict(x.view().into_dyn()).unwrap();
        assert_eq!(timed.rows(), 6);
        // Errors pass through too, and the counters reset.
        assert!(timed.predict(array![[1.0f32]].view().into_dyn()).is_err());
        timed.reset();
        assert_eq!(timed.rows(), 0);
        assert_eq!(timed.elapsed(), std::time::Duration::ZERO);
    }

    #[test]
    fn finite_check_names_index() {
        let x = array![1.0f32, f32::NAN].into_dyn();
        let err = check_finite("x", &x.view()).unwrap_err();
        assert!(err.to_string().contains("flat index 1"), "{err}");
    }

    #[test]
    fn argmax_picks_first_maximum() {
        let o = array![[0.1f32, 0.7, 0.2], [0.5, 0.5, 0.0]];
        assert_eq!(argmax_rows(o.view()), vec![1, 0]);
    }
}
