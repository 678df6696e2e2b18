//! Integrated Gradients: the quadrature rules and the streamed path integral.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use xai_core::DifferentiableModel;

use crate::common::{
    check_inputs_targets, chunks, gradients, per_class, stack_rows, target_outputs, Attributions,
    Baseline, ClassTargets,
};
use crate::error::Result;
use crate::hyperparams::{IntegratedGradientsValidParams, IntegrationMethod};

/// The points `α_s` in `[0, 1]` and weights `w_s` of `method` with `n` steps, exactly as
/// captum's `approximation_methods.py` builds them (Gauss–Legendre: numpy's `leggauss(n)`,
/// computed here by Newton's method on the Legendre polynomial, nodes ascending).
pub(crate) fn quadrature(method: IntegrationMethod, n: usize) -> (Vec<f64>, Vec<f64>) {
    let nf = n as f64;
    let even = |n: usize| vec![1.0 / n as f64; n];
    let linspace = |a: f64, b: f64| -> Vec<f64> {
        if n == 1 {
            return vec![a];
        }
        (0..n)
            .map(|s| a + (b - a) * s as f64 / (nf - 1.0))
            .collect()
    };
    match method {
        IntegrationMethod::RiemannLeft => (linspace(0.0, 1.0 - 1.0 / nf), even(n)),
        IntegrationMethod::RiemannRight => (linspace(1.0 / nf, 1.0), even(n)),
        IntegrationMethod::RiemannMiddle => (linspace(0.5 / nf, 1.0 - 0.5 / nf), even(n)),
        IntegrationMethod::RiemannTrapezoid => {
            let mut w = even(n);
            w[0] /= 2.0;
            w[n - 1] /= 2.0;
            (linspace(0.0, 1.0), w)
        }
        IntegrationMethod::GaussLegendre => {
            let (x, w) = gauss_legendre(n);
            (
                x.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                w.iter().map(|w| 0.5 * w).collect(),
            )
        }
    }
}

/// Gauss–Legendre nodes (ascending) and weights on `[-1, 1]`: Newton's method on `P_n` from
/// the Chebyshev-like guesses `cos(π (i + 3/4) / (n + 1/2))`, `w = 2 / ((1 − x²) P_n'(x)²)`.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let nf = n as f64;
    // P_n(z) and P_n'(z) by the three-term recurrence.
    let legendre = |z: f64| -> (f64, f64) {
        let (mut p0, mut p1) = (1.0f64, z);
        if n == 0 {
            return (1.0, 0.0);
        }
        for j in 2..=n {
            let jf = j as f64;
            let p2 = ((2.0 * jf - 1.0) * z * p1 - (jf - 1.0) * p0) / jf;
            p0 = p1;
            p1 = p2;
        }
        // P_n' = n (z P_n − P_{n−1}) / (z² − 1).
        (p1, nf * (z * p1 - p0) / (z * z - 1.0))
    };
    let mut xs = vec![0.0; n];
    let mut ws = vec![0.0; n];
    for i in 0..n {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        for _ in 0..100 {
            let (p, dp) = legendre(z);
            let dz = p / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        let (_, dp) = legendre(z);
        xs[i] = z;
        ws[i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    // The guesses descend from near 1; numpy returns the nodes ascending.
    xs.reverse();
    ws.reverse();
    (xs, ws)
}

/// Rows of an Integrated Gradients problem: `m` rows, row `r` with input `x(r)`, baseline
/// `b(r)` (flat, `len` values), target class `class(r)`, belonging to input `input(r)`.
pub(crate) struct PathRows<'a> {
    pub shape: &'a [usize],
    pub m: usize,
    pub x: &'a dyn Fn(usize) -> &'a [f32],
    pub b: &'a dyn Fn(usize) -> &'a [f32],
    pub class: &'a dyn Fn(usize) -> usize,
    pub input: &'a dyn Fn(usize) -> usize,
}

/// Integrated Gradients of `rows`, streamed: at most `internal_batch_size` interpolants
/// `b + α_s (x − b)` go to the model at once, and `Σ_s w_s ∂f_c/∂x(b + α_s (x − b))` is
/// accumulated per row. Returns the attributions (`m` rows, flat) and, per row, the
/// convergence delta `Σ attr − (f(x)_c − f(b)_c)` (captum's `compute_convergence_delta`).
pub(crate) fn integrate(
    model: &dyn DifferentiableModel,
    rows: &PathRows<'_>,
    params: &IntegratedGradientsValidParams,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let len: usize = rows.shape.iter().product();
    let steps = params.n_steps;
    let (alphas, weights) = quadrature(params.method, steps);
    let mut acc = vec![0.0f32; rows.m * len];
    for range in chunks(rows.m * steps, params.internal_batch_size) {
        let count = range.len();
        let mut data = Vec::with_capacity(count * len);
        let mut classes = Vec::with_capacity(count);
        let mut inputs = Vec::with_capacity(count);
        for p in range.clone() {
            let (r, s) = (p / steps, p % steps);
            let alpha = alphas[s] as f32;
            let (x, b) = ((rows.x)(r), (rows.b)(r));
            data.extend(x.iter().zip(b).map(|(&x, &b)| b + alpha * (x - b)));
            classes.push((rows.class)(r));
            inputs.push((rows.input)(r));
        }
        let batch = stack_rows(data, count, rows.shape);
        let g = gradients(model, batch.view(), &classes, &inputs)?;
        let g = g.as_standard_layout();
        let gs = g.as_slice().expect("standard layout");
        for (q, p) in range.enumerate() {
            let (r, s) = (p / steps, p % steps);
            let w = weights[s] as f32;
            let dst = &mut acc[r * len..(r + 1) * len];
            dst.iter_mut()
                .zip(&gs[q * len..(q + 1) * len])
                .for_each(|(a, g)| *a += g * w);
        }
    }
    if params.multiply_by_inputs {
        for r in 0..rows.m {
            let (x, b) = ((rows.x)(r), (rows.b)(r));
            acc[r * len..(r + 1) * len]
                .iter_mut()
                .zip(x.iter().zip(b))
                .for_each(|(a, (x, b))| *a *= x - b);
        }
    }
    let delta = convergence_delta(model, rows, &acc, params.internal_batch_size)?;
    Ok((acc, delta))
}

/// `Σ attr_r − (f(x_r)_c − f(b_r)_c)` per row, the forward passes `batch` rows at a time.
pub(crate) fn convergence_delta(
    model: &dyn DifferentiableModel,
    rows: &PathRows<'_>,
    attr: &[f32],
    batch: usize,
) -> Result<Vec<f32>> {
    let len: usize = rows.shape.iter().product();
    let mut delta = Vec::with_capacity(rows.m);
    // Half a batch of inputs and half of baselines per call.
    for range in chunks(rows.m, batch.div_ceil(2)) {
        let count = range.len();
        let mut data = Vec::with_capacity(2 * count * len);
        for r in range.clone() {
            data.extend_from_slice((rows.x)(r));
        }
        for r in range.clone() {
            data.extend_from_slice((rows.b)(r));
        }
        let classes: Vec<usize> = range
            .clone()
            .chain(range.clone())
            .map(|r| (rows.class)(r))
            .collect();
        let inputs: Vec<usize> = range
            .clone()
            .chain(range.clone())
            .map(|r| (rows.input)(r))
            .collect();
        let out = target_outputs(
            model,
            stack_rows(data, 2 * count, rows.shape).view(),
            &classes,
            &inputs,
        )?;
        for (q, r) in range.enumerate() {
            let sum: f64 = attr[r * len..(r + 1) * len].iter().map(|&v| v as f64).sum();
            delta.push((sum - (out[q] as f64 - out[count + q] as f64)) as f32);
        }
    }
    Ok(delta)
}

/// Baselines resolved to flat rows, one per input (or one shared by all).
pub(crate) struct BaselineRows {
    shared: Option<Vec<f32>>,
    per_input: Option<ArrayD<f32>>,
    len: usize,
}

impl BaselineRows {
    pub(crate) fn new(baseline: &Baseline, len: usize) -> Self {
        match baseline {
            Baseline::PerInput(b) => BaselineRows {
                shared: None,
                per_input: Some(b.as_standard_layout().into_owned()),
                len,
            },
            other => BaselineRows {
                shared: Some(other.row(0, len)),
                per_input: None,
                len,
            },
        }
    }

    pub(crate) fn get(&self, i: usize) -> &[f32] {
        match (&self.shared, &self.per_input) {
            (Some(s), _) => s,
            (None, Some(b)) => {
                &b.as_slice().expect("standard layout")[i * self.len..(i + 1) * self.len]
            }
            (None, None) => unreachable!("one of the two is set"),
        }
    }
}

/// Integrated Gradients (Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep
/// Networks", eq. 1 and its Riemann approximation eq. 3), as captum 0.9's
/// `IntegratedGradients`:
///
/// `IG_c(x) = (x − b) ∘ ∫₀¹ ∂f_c(b + α (x − b))/∂x dα ≈ (x − b) ∘ Σ_s w_s ∂f_c(b + α_s (x − b))/∂x`
///
/// with the points and weights of [`IntegrationMethod`]. At most `internal_batch_size`
/// interpolants are evaluated at once (the weighted sums are accumulated batch by batch; the
/// `n_steps` interpolants of an input are never all held). The convergence delta
/// `Σ_i IG_c(x)_i − (f_c(x) − f_c(b))` (completeness, the paper's axiom) is returned per input
/// and class.
pub struct IntegratedGradients<'m> {
    model: &'m dyn DifferentiableModel,
    params: IntegratedGradientsValidParams,
}

impl<'m> IntegratedGradients<'m> {
    /// Integrated Gradients of `model` with checked parameters.
    pub fn new(model: &'m dyn DifferentiableModel, params: IntegratedGradientsValidParams) -> Self {
        IntegratedGradients { model, params }
    }

    /// The parameters.
    pub fn params(&self) -> &IntegratedGradientsValidParams {
        &self.params
    }

    /// Attributions `[n, k, ..input_shape]` and the convergence delta `[n, k]` of the inputs
    /// `x` for their target classes, from `baseline`. Errors: a batch or baseline of the
    /// wrong shape or not finite, targets of the wrong count or out of range, a model error or
    /// non-finite outputs.
    pub fn attribute(
        &self,
        x: ArrayViewD<'_, f32>,
        targets: &ClassTargets,
        baseline: &Baseline,
    ) -> Result<Attributions> {
        let (n, k) = check_inputs_targets(self.model, &x, targets)?;
        let shape = x.shape()[1..].to_vec();
        baseline.check(n, &shape)?;
        let len: usize = shape.iter().product();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let bases = BaselineRows::new(baseline, len);
        let x_row = |r: usize| &xs[(r / k) * len..(r / k + 1) * len];
        let b_row = |r: usize| bases.get(r / k);
        let class = |r: usize| targets.row_class(r);
        let input = |r: usize| r / k;
        let rows = PathRows {
            shape: &shape,
            m: n * k,
            x: &x_row,
            b: &b_row,
            class: &class,
            input: &input,
        };
        let (attr, delta) = integrate(self.model, &rows, &self.params)?;
        Ok(Attributions {
            values: per_class(attr, n, k, &shape),
            targets: targets.classes().to_owned(),
            delta: Some(ArrayD::from_shape_vec(IxDyn(&[n, k]), delta).expect("n x k")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_numpy_leggauss() {
        // numpy.polynomial.legendre.leggauss(n) mapped to [0, 1], printed by numpy 2.
        let cases: [(usize, [f64; 3], [f64; 3]); 3] = [
            (
                2,
                [0.21132486540518713, 0.7886751345948129, 0.0],
                [0.5, 0.5, 0.0],
            ),
            (
                5,
                [0.04691007703066802, 0.23076534494715845, 0.5],
                [
                    0.11846344252809464,
                    0.23931433524968315,
                    0.28444444444444433,
                ],
            ),
            (
                50,
                [
                    0.0005667977899644905,
                    0.002984015283954644,
                    0.00732295797599708,
                ],
                [
                    0.0014543112765789633,
                    0.003379899597872283,
                    0.005295274191825748,
                ],
            ),
        ];
        for (n, a, w) in cases {
            let (alphas, weights) = quadrature(IntegrationMethod::GaussLegendre, n);
            assert_eq!(alphas.len(), n);
            for j in 0..n.min(3) {
                assert!(
                    (alphas[j] - a[j]).abs() < 1e-13,
                    "n={n} alpha {j}: {}",
                    alphas[j]
                );
                assert!(
                    (weights[j] - w[j]).abs() < 1e-13,
                    "n={n} weight {j}: {}",
                    weights[j]
                );
            }
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        }
        let (a, w) = quadrature(IntegrationMethod::GaussLegendre, 1);
        assert_eq!((a, w), (vec![0.5], vec![1.0]));
        let (a, _) = quadrature(IntegrationMethod::GaussLegendre, 50);
        assert!((a[49] - 0.9994332022100355).abs() < 1e-13);
    }

    #[test]
    fn riemann_rules_as_captum() {
        let (a, w) = quadrature(IntegrationMethod::RiemannLeft, 4);
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75]);
        assert_eq!(w, vec![0.25; 4]);
        let (a, _) = quadrature(IntegrationMethod::RiemannRight, 4);
        assert_eq!(a, vec![0.25, 0.5, 0.75, 1.0]);
        let (a, _) = quadrature(IntegrationMethod::RiemannMiddle, 4);
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        let (a, w) = quadrature(IntegrationMethod::RiemannTrapezoid, 3);
        assert_eq!(a, vec![0.0, 0.5, 1.0]);
        let third = 1.0 / 3.0;
        assert_eq!(w, vec![third / 2.0, third, third / 2.0]);
    }
}
