//! Test helpers: random inputs and the check of an operator's backward pass against central
//! finite differences (every operator family's tests use it).

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};

use crate::op::{Attrs, NodeSpec};
use crate::value::Value;

/// A tensor of `shape` with values uniform in `[lo, hi)`, from `seed`.
pub(crate) fn random_input(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|_| rng.gen_range(lo..hi)).collect(),
    )
    .expect("sized from the shape")
}

/// Checks an operator (built from `op_type` and `attrs`, every input a run-time input) as
/// [`check_gradients_spec`] does.
pub(crate) fn check_gradients(
    op_type: &str,
    attrs: Attrs,
    inputs: Vec<Value>,
    wrt: &[usize],
    tol: f32,
) {
    let spec = NodeSpec::new(op_type, attrs, inputs.len());
    check_gradients_spec(&spec, inputs, wrt, tol);
}

/// Builds the operator of `spec`, runs it forward on `inputs`, and checks the backward pass's
/// gradients with respect to the inputs listed in `wrt` against central finite differences of
/// `L = Σ w ∘ y` over every float output (fixed random `w`): each element within `tol`
/// relative to `max(1, |analytic|, |numeric|)`.
pub(crate) fn check_gradients_spec(spec: &NodeSpec, inputs: Vec<Value>, wrt: &[usize], tol: f32) {
    let op = crate::ops::build(spec)
        .unwrap_or_else(|e| panic!("{}: building failed: {e:?}", spec.op_type));
    let refs: Vec<Option<&Value>> = inputs.iter().map(Some).collect();
    let outputs = op
        .forward(&refs)
        .unwrap_or_else(|e| panic!("{}: {e}", spec.op_type));
    let weights: Vec<Option<ArrayD<f32>>> = outputs
        .iter()
        .enumerate()
        .map(|(k, o)| match o {
            Value::F32(a) => Some(random_input(a.shape(), 100 + k as u64, -1.0, 1.0)),
            Value::I64(_) => None,
        })
        .collect();
    let loss = |inputs: &[Value]| -> f64 {
        let refs: Vec<Option<&Value>> = inputs.iter().map(Some).collect();
        let outs = op.forward(&refs).expect("forward");
        outs.iter()
            .zip(&weights)
            .filter_map(|(o, w)| match (o, w) {
                (Value::F32(a), Some(w)) => Some(
                    a.iter()
                        .zip(w.iter())
                        .map(|(&a, &w)| a as f64 * w as f64)
                        .sum::<f64>(),
                ),
                _ => None,
            })
            .sum()
    };
    let out_refs: Vec<&Value> = outputs.iter().collect();
    let grad_refs: Vec<Option<&ArrayD<f32>>> = weights.iter().map(|w| w.as_ref()).collect();
    let grads = op
        .backward(&refs, &out_refs, &grad_refs)
        .unwrap_or_else(|e| panic!("{}: backward: {e}", spec.op_type));
    assert_eq!(
        grads.len(),
        inputs.len(),
        "{}: one gradient per input",
        spec.op_type
    );
    for &i in wrt {
        let Value::F32(x) = &inputs[i] else {
            panic!("input {i} is not a float tensor")
        };
        let analytic = grads[i].clone().unwrap_or_else(|| ArrayD::zeros(x.shape()));
        assert_eq!(
            analytic.shape(),
            x.shape(),
            "{}: gradient shape of input {i}",
            spec.op_type
        );
        let eps = 1e-3f32;
        for k in 0..x.len() {
            let mut plus = inputs.clone();
            let mut minus = inputs.clone();
            if let (Value::F32(p), Value::F32(m)) = (&mut plus[i], &mut minus[i]) {
                p.as_slice_mut().expect("standard layout")[k] += eps;
                m.as_slice_mut().expect("standard layout")[k] -= eps;
            }
            let numeric = ((loss(&plus) - loss(&minus)) / (2.0 * eps as f64)) as f32;
            let a = analytic.as_standard_layout()[IxDyn(&unravel(k, x.shape()))];
            let scale = 1f32.max(a.abs()).max(numeric.abs());
            assert!(
                (a - numeric).abs() <= tol * scale,
                "{}: d/d input {i}[{k}]: backward {a}, finite difference {numeric}",
                spec.op_type
            );
        }
    }
}

fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = k % shape[d];
        k /= shape[d];
    }
    idx
}
