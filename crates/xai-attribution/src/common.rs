//! What every method shares: the target classes ([`ClassTargets`]), baselines ([`Baseline`]),
//! the result ([`Attributions`]), and the checks and batched model calls behind them.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use xai_core::{argmax_rows, DifferentiableModel, Predictor};

use crate::error::{AttributionError, Result};

/// The classes to explain: `k >= 1` classes for each of `n` inputs (captum's `target`, one
/// class per input; several classes per input give attributions `[n, k, ..input_shape]`,
/// class slot `j` of input `i` at `[i, j]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassTargets {
    classes: Array2<usize>,
}

impl ClassTargets {
    /// One class per input (`k = 1`).
    pub fn one_per_input(classes: Vec<usize>) -> Self {
        let n = classes.len();
        ClassTargets {
            classes: Array2::from_shape_vec((n, 1), classes).expect("n x 1"),
        }
    }

    /// The same number `k >= 1` of classes for every input. Errors: rows of different lengths
    /// or an empty row ([`AttributionError::TargetWidth`]).
    pub fn per_input(classes: Vec<Vec<usize>>) -> Result<Self> {
        let k = classes.first().map(|r| r.len()).unwrap_or(1);
        for (i, row) in classes.iter().enumerate() {
            if row.len() != k || row.is_empty() {
                return Err(AttributionError::TargetWidth {
                    input: i,
                    got: row.len(),
                    expected: k.max(1),
                });
            }
        }
        let n = classes.len();
        let flat: Vec<usize> = classes.into_iter().flatten().collect();
        Ok(ClassTargets {
            classes: Array2::from_shape_vec((n, k), flat).expect("n x k"),
        })
    }

    /// The model's predicted class (the argmax of its outputs) for each input of `x`.
    pub fn predicted(model: &dyn Predictor, x: ArrayViewD<'_, f32>) -> Result<Self> {
        Self::top_k(model, x, 1)
    }

    /// The `k` highest-scoring classes of each input, best first (ties: the lower class).
    pub fn top_k(model: &dyn Predictor, x: ArrayViewD<'_, f32>, k: usize) -> Result<Self> {
        if k == 0 || k > model.n_outputs() {
            return Err(AttributionError::param(
                "k",
                k,
                format!("1..={} (the model's outputs)", model.n_outputs()),
            ));
        }
        check_inputs(model, &x)?;
        let out = model.predict(x)?;
        if k == 1 {
            return Ok(Self::one_per_input(argmax_rows(out.view())));
        }
        let rows = out
            .axis_iter(Axis(0))
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx.truncate(k);
                idx
            })
            .collect();
        Self::per_input(rows)
    }

    /// The classes, `[n, k]`.
    pub fn classes(&self) -> ArrayView2<'_, usize> {
        self.classes.view()
    }

    /// Number of inputs `n`.
    pub fn n_inputs(&self) -> usize {
        self.classes.nrows()
    }

    /// Classes per input `k`.
    pub fn per_input_count(&self) -> usize {
        self.classes.ncols()
    }

    /// Checks the targets against `n` inputs and a model with `n_outputs` outputs.
    pub(crate) fn check(&self, n: usize, n_outputs: usize) -> Result<()> {
        if self.n_inputs() != n {
            return Err(AttributionError::TargetCount {
                got: self.n_inputs(),
                n_inputs: n,
            });
        }
        for ((i, _), &c) in self.classes.indexed_iter() {
            if c >= n_outputs {
                return Err(AttributionError::TargetOutOfRange {
                    input: i,
                    class: c,
                    n_outputs,
                });
            }
        }
        Ok(())
    }

    /// The class of row `r = i * k + j`.
    pub(crate) fn row_class(&self, r: usize) -> usize {
        let k = self.per_input_count();
        self.classes[[r / k, r % k]]
    }
}

/// The reference input of Integrated Gradients and occlusion (captum's `baselines`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Baseline {
    /// Every element of every input replaced by this value (captum's scalar baseline; `0` is
    /// captum's default).
    Value(f32),
    /// One input-shaped reference (`[..input_shape]`) for all inputs.
    Shared(ArrayD<f32>),
    /// One reference per input, `[n, ..input_shape]`.
    PerInput(ArrayD<f32>),
    /// Zeros (captum's default).
    #[default]
    Zero,
}

impl Baseline {
    /// Checks the baseline's shape against `n` inputs of shape `input_shape`, and that it is
    /// finite.
    pub(crate) fn check(&self, n: usize, input_shape: &[usize]) -> Result<()> {
        match self {
            Baseline::Zero => Ok(()),
            Baseline::Value(v) => {
                if v.is_finite() {
                    Ok(())
                } else {
                    Err(AttributionError::NonFinite {
                        what: "the baseline",
                        index: 0,
                        value: *v,
                    })
                }
            }
            Baseline::Shared(b) => {
                if b.shape() != input_shape {
                    return Err(AttributionError::Shape {
                        what: "the shared baseline",
                        got: b.shape().to_vec(),
                        expected: format!("{input_shape:?} (one input)"),
                    });
                }
                check_finite("the baseline", &b.view())
            }
            Baseline::PerInput(b) => {
                let mut want = vec![n];
                want.extend_from_slice(input_shape);
                if b.shape() != want.as_slice() {
                    return Err(AttributionError::Shape {
                        what: "the per-input baselines",
                        got: b.shape().to_vec(),
                        expected: format!("{want:?} (one baseline per input)"),
                    });
                }
                check_finite("the baseline", &b.view())
            }
        }
    }

    /// The baseline of input `i` as a flat vector of `len` values (row-major).
    pub(crate) fn row(&self, i: usize, len: usize) -> Vec<f32> {
        match self {
            Baseline::Zero => vec![0.0; len],
            Baseline::Value(v) => vec![*v; len],
            Baseline::Shared(b) => b.iter().copied().collect(),
            Baseline::PerInput(b) => b.index_axis(Axis(0), i).iter().copied().collect(),
        }
    }

    /// A short description for logs and explanations (`0`, `value 0.5`, `shared image`,
    /// `per input`).
    pub fn describe(&self) -> String {
        match self {
            Baseline::Zero => "0".into(),
            Baseline::Value(v) => format!("value {v}"),
            Baseline::Shared(_) => "shared image".into(),
            Baseline::PerInput(_) => "per input".into(),
        }
    }
}

/// Attributions of a batch: `values` is `[n, k, ..input_shape]` (input `i`, its `j`-th target
/// class), `targets` the `[n, k]` classes, and `delta`, for the methods that have one, the
/// convergence delta (completeness error) `Σ attribution − (f(x)_c − f(baseline)_c)`: `[n, k]`
/// for Integrated Gradients, `[n, k, samples]` (one per noisy sample or baseline draw) for
/// NoiseTunnel over Integrated Gradients and for GradientSHAP, as captum returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributions {
    /// `[n, k, ..input_shape]`.
    pub values: ArrayD<f32>,
    /// `[n, k]` target classes.
    pub targets: Array2<usize>,
    /// The convergence delta, where the method has one (see above).
    pub delta: Option<ArrayD<f32>>,
}

impl Attributions {
    /// The attributions of input `i` for its `j`-th target class, `[..input_shape]`.
    pub fn get(&self, i: usize, j: usize) -> ArrayViewD<'_, f32> {
        self.values
            .index_axis(Axis(0), i)
            .index_axis_move(Axis(0), j)
    }
}

// ---------------------------------------------------------------------------------------------
// Crate-internal helpers.

pub(crate) fn check_finite(what: &'static str, x: &ArrayViewD<'_, f32>) -> Result<()> {
    if let Some((index, value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(AttributionError::NonFinite {
            what,
            index,
            value: *value,
        });
    }
    Ok(())
}

/// Checks a batch: `[n, ..input_shape]`, `n > 0`, finite. Returns `n`.
pub(crate) fn check_inputs(model: &dyn Predictor, x: &ArrayViewD<'_, f32>) -> Result<usize> {
    let n = xai_core::check_batch("input", x, model.input_shape())?;
    if n == 0 {
        return Err(AttributionError::EmptyBatch);
    }
    check_finite("the input", x)?;
    Ok(n)
}

/// Checks inputs and targets; returns `(n, k)`.
pub(crate) fn check_inputs_targets(
    model: &dyn Predictor,
    x: &ArrayViewD<'_, f32>,
    targets: &ClassTargets,
) -> Result<(usize, usize)> {
    let n = check_inputs(model, x)?;
    targets.check(n, model.n_outputs())?;
    Ok((n, targets.per_input_count()))
}

/// `[m]` rows of length `len` stacked into `[m, ..shape]`.
pub(crate) fn stack_rows(rows: Vec<f32>, m: usize, shape: &[usize]) -> ArrayD<f32> {
    let mut full = vec![m];
    full.extend_from_slice(shape);
    ArrayD::from_shape_vec(IxDyn(&full), rows).expect("rows sized from the shape")
}

/// One-hot output weights for a batch of rows with classes `classes`.
pub(crate) fn one_hot(classes: &[usize], n_outputs: usize) -> Array2<f32> {
    let mut w = Array2::zeros((classes.len(), n_outputs));
    for (r, &c) in classes.iter().enumerate() {
        w[[r, c]] = 1.0;
    }
    w
}

/// The gradients `∂f_c/∂x` of a batch of rows (`[m, ..input_shape]`, classes per row), in
/// one call; checked for shape and finiteness (`inputs[r]` names the input of row `r`).
pub(crate) fn gradients(
    model: &dyn DifferentiableModel,
    x: ArrayViewD<'_, f32>,
    classes: &[usize],
    inputs: &[usize],
) -> Result<ArrayD<f32>> {
    let w = one_hot(classes, model.n_outputs());
    let g = model.input_gradient(x.view(), w.view())?;
    if g.shape() != x.shape() {
        return Err(xai_core::CoreError::Model(format!(
            "the model returned an input gradient of shape {:?} for a batch of shape {:?}",
            g.shape(),
            x.shape()
        ))
        .into());
    }
    check_model_finite("gradient", &g.view(), inputs)?;
    Ok(g)
}

/// The outputs `f(x)_c` of a batch of rows (classes per row).
pub(crate) fn target_outputs(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    classes: &[usize],
    inputs: &[usize],
) -> Result<Vec<f32>> {
    let out = model.predict(x)?;
    let vals: Vec<f32> = classes
        .iter()
        .enumerate()
        .map(|(r, &c)| out[[r, c]])
        .collect();
    for (r, v) in vals.iter().enumerate() {
        if !v.is_finite() {
            return Err(AttributionError::NonFiniteModelOutput {
                what: "output",
                input: inputs[r],
                value: *v,
            });
        }
    }
    Ok(vals)
}

/// Errors on the first non-finite value of a `[m, ..]` model result (row `r` belongs to input
/// `inputs[r]`).
pub(crate) fn check_model_finite(
    what: &'static str,
    a: &ArrayViewD<'_, f32>,
    inputs: &[usize],
) -> Result<()> {
    let per_row = a.len() / a.shape().first().copied().unwrap_or(1).max(1);
    if let Some((index, value)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(AttributionError::NonFiniteModelOutput {
            what,
            input: inputs.get(index / per_row.max(1)).copied().unwrap_or(0),
            value: *value,
        });
    }
    Ok(())
}

/// `[n*k, ..]` row-major values reshaped to `[n, k, ..input_shape]`.
pub(crate) fn per_class(values: Vec<f32>, n: usize, k: usize, shape: &[usize]) -> ArrayD<f32> {
    let mut full = vec![n, k];
    full.extend_from_slice(shape);
    ArrayD::from_shape_vec(IxDyn(&full), values).expect("sized from the shape")
}

/// Rows `range` of the expanded batch (row `r` = input `r / k`) as `[m, ..input_shape]`,
/// with their classes and inputs.
pub(crate) fn gather_rows(
    x: &ArrayViewD<'_, f32>,
    targets: &ClassTargets,
    range: std::ops::Range<usize>,
) -> (ArrayD<f32>, Vec<usize>, Vec<usize>) {
    let k = targets.per_input_count();
    let shape = &x.shape()[1..];
    let len: usize = shape.iter().product();
    let m = range.len();
    let mut data = Vec::with_capacity(m * len);
    let mut classes = Vec::with_capacity(m);
    let mut inputs = Vec::with_capacity(m);
    for r in range {
        let i = r / k;
        data.extend(x.index_axis(Axis(0), i).iter().copied());
        classes.push(targets.row_class(r));
        inputs.push(i);
    }
    (stack_rows(data, m, shape), classes, inputs)
}

/// Chunks `0..total` into ranges of at most `size`.
pub(crate) fn chunks(total: usize, size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = size.max(1);
    (0..total.div_ceil(size)).map(move |c| c * size..((c + 1) * size).min(total))
}

/// The random generator of input `i`'s sample `s` under `seed` (splitmix64 of the three), so
/// that the draws of a sample do not depend on batch sizes, thread counts or the other inputs.
pub(crate) fn sample_rng(seed: u64, i: usize, s: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mut z = seed
        ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (s as u64)
            .wrapping_add(1)
            .wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    rand::rngs::StdRng::seed_from_u64(z)
}

/// Gaussian noise `N(0, stdev²)` into `out`.
pub(crate) fn fill_normal(rng: &mut rand::rngs::StdRng, stdev: f32, out: &mut [f32]) {
    use rand::Rng;
    for v in out {
        let z: f32 = rng.sample(rand_distr::StandardNormal);
        *v = z * stdev;
    }
}
