//! Saliency and Input × Gradient: one gradient per input and class.

use ndarray::ArrayViewD;
use xai_core::DifferentiableModel;

use crate::common::{
    check_inputs_targets, chunks, gather_rows, gradients, per_class, Attributions, ClassTargets,
};
use crate::error::Result;
use crate::hyperparams::{InputXGradientValidParams, SaliencyValidParams};

/// The gradients of the expanded rows `(input, class)`, `n * k` rows of `len` values each,
/// `batch` rows per model call.
pub(crate) fn row_gradients(
    model: &dyn DifferentiableModel,
    x: &ArrayViewD<'_, f32>,
    targets: &ClassTargets,
    batch: usize,
) -> Result<Vec<f32>> {
    let n = x.shape()[0];
    let total = n * targets.per_input_count();
    let len: usize = x.shape()[1..].iter().product();
    let mut out = Vec::with_capacity(total * len);
    for range in chunks(total, batch) {
        let (rows, classes, inputs) = gather_rows(x, targets, range);
        let g = gradients(model, rows.view(), &classes, &inputs)?;
        out.extend(g.iter().copied());
    }
    Ok(out)
}

/// Saliency (Simonyan, Vedaldi and Zisserman 2014, "Deep Inside Convolutional Networks:
/// Visualising Image Classification Models and Saliency Maps"), as captum's `Saliency`:
/// `|∂f_c(x)/∂x|`, or the signed gradient with `abs = false`.
pub struct Saliency<'m> {
    model: &'m dyn DifferentiableModel,
    params: SaliencyValidParams,
}

impl<'m> Saliency<'m> {
    /// Saliency of `model` with checked parameters.
    pub fn new(model: &'m dyn DifferentiableModel, params: SaliencyValidParams) -> Self {
        Saliency { model, params }
    }

    /// The parameters.
    pub fn params(&self) -> &SaliencyValidParams {
        &self.params
    }

    /// Attributions `[n, k, ..input_shape]` of the inputs `x` (`[n, ..input_shape]`) for
    /// their target classes. Errors: a batch of the wrong shape, empty or not finite; targets
    /// of the wrong count or out of range; a model error or non-finite gradient.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let mut g = row_gradients(self.model, &x, targets, self.params.batch_size)?;
        if self.params.abs {
            g.iter_mut().for_each(|v| *v = v.abs());
        }
        Ok(Attributions {
            values: per_class(g, n, k, &x.shape()[1..]),
            targets: targets.classes().to_owned(),
            delta: None,
        })
    }
}

/// Input × Gradient (Shrikumar, Greenside, Shcherbina and Kundaje 2016, "Not Just a Black
/// Box: Learning Important Features Through Propagating Activation Differences"), as captum's
/// `InputXGradient`: `x ∘ ∂f_c(x)/∂x`.
pub struct InputXGradient<'m> {
    model: &'m dyn DifferentiableModel,
    params: InputXGradientValidParams,
}

impl<'m> InputXGradient<'m> {
    /// Input × Gradient of `model` with checked parameters.
    pub fn new(model: &'m dyn DifferentiableModel, params: InputXGradientValidParams) -> Self {
        InputXGradient { model, params }
    }

    /// The parameters.
    pub fn params(&self) -> &InputXGradientValidParams {
        &self.params
    }

    /// Attributions `[n, k, ..input_shape]`; errors as [`Saliency::attribute`].
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let mut g = row_gradients(self.model, &x, targets, self.params.batch_size)?;
        multiply_by_rows(&mut g, &x, k);
        Ok(Attributions {
            values: per_class(g, n, k, &x.shape()[1..]),
            targets: targets.classes().to_owned(),
            delta: None,
        })
    }
}

/// `g[r] *= x[r / k]` for every expanded row.
pub(crate) fn multiply_by_rows(g: &mut [f32], x: &ArrayViewD<'_, f32>, k: usize) {
    let len: usize = x.shape()[1..].iter().product();
    let flat = x.as_standard_layout();
    let xs = flat.as_slice().expect("standard layout");
    for (r, row) in g.chunks_mut(len.max(1)).enumerate() {
        let xi = &xs[(r / k) * len..(r / k + 1) * len];
        row.iter_mut().zip(xi).for_each(|(a, b)| *a *= b);
    }
}
