//! `Softmax` and `LogSoftmax`.
//!
//! From opset 13 they normalise along `axis` (default -1). Before, the input is coerced to the
//! 2-D `[prod(dims[..axis]), prod(dims[axis..])]` (`axis` default 1) and normalised over the
//! second dimension. Both are computed stably (the maximum of each group subtracted first).
//!
//! Backward: softmax `dx = y (g - Σ g y)`, log-softmax `dx = g - softmax(x) Σ g`, the sums over
//! each normalised group.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, required_f32, Builder, NodeSpec, Operator};
use crate::value::{normalize_axis, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("Softmax", build), ("LogSoftmax", build)];

/// A softmax or log-softmax node.
#[derive(Debug)]
struct Softmax {
    log: bool,
    axis: i64,
    /// Opset < 13: the input is coerced to 2-D at `axis`.
    coerce_2d: bool,
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let log = match spec.op_type.as_str() {
        "Softmax" => false,
        "LogSoftmax" => true,
        other => return Err(OpError(format!("`{other}` is not Softmax or LogSoftmax"))),
    };
    let coerce_2d = spec.opset < 13;
    let axis = spec.attrs.int_or("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Box::new(Softmax {
        log,
        axis,
        coerce_2d,
    }))
}

/// Elements above which groups are processed on rayon's threads.
const PARALLEL_ABOVE: usize = 1 << 15;

impl Softmax {
    /// The input as `[outer, n, inner]`: `n` elements normalised together, `inner` apart.
    fn split(&self, shape: &[usize]) -> OpResult<(usize, usize, usize)> {
        let rank = shape.len();
        if self.coerce_2d {
            // Axis in -rank..=rank (axis = rank coerces to [all, 1]).
            let r = rank as i64;
            let a = if self.axis < 0 {
                self.axis + r
            } else {
                self.axis
            };
            if !(0..=r).contains(&a) {
                return Err(OpError(format!(
                    "attribute `axis` {} is out of range for a tensor of rank {rank} (expected \
                     -{rank}..={rank})",
                    self.axis
                )));
            }
            let a = a as usize;
            Ok((shape[..a].iter().product(), shape[a..].iter().product(), 1))
        } else {
            let a = normalize_axis(self.axis, rank, "attribute `axis`")?;
            Ok((
                shape[..a].iter().product(),
                shape[a],
                shape[a + 1..].iter().product(),
            ))
        }
    }
}

/// The elements of `x` in row-major order.
fn contiguous(x: &ArrayD<f32>) -> Vec<f32> {
    match x.as_slice() {
        Some(s) => s.to_vec(),
        None => x.iter().copied().collect(),
    }
}

/// Runs `f(block_in_a, block_in_b, block_out)` over the blocks of `n * inner` elements, in
/// parallel for large tensors.
fn blocks(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    block: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    if block == 0 {
        return;
    }
    if out.len() > PARALLEL_ABOVE && out.len() > block {
        out.par_chunks_mut(block)
            .zip(a.par_chunks(block))
            .zip(b.par_chunks(block))
            .for_each(|((o, a), b)| f(a, b, o));
    } else {
        out.chunks_mut(block)
            .zip(a.chunks(block))
            .zip(b.chunks(block))
            .for_each(|((o, a), b)| f(a, b, o));
    }
}

/// Softmax (or log-softmax) of one block `[n, inner]` along its first axis.
fn forward_block(x: &[f32], out: &mut [f32], n: usize, inner: usize, log: bool) {
    if inner == 1 {
        let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let m = if m.is_finite() { m } else { 0.0 };
        let mut s = 0.0f32;
        for (o, &v) in out.iter_mut().zip(x) {
            let e = (v - m).exp();
            *o = e;
            s += e;
        }
        if log {
            let ls = s.ln();
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v - m - ls;
            }
        } else {
            let inv = 1.0 / s;
            out.iter_mut().for_each(|o| *o *= inv);
        }
        return;
    }
    let mut m = vec![f32::NEG_INFINITY; inner];
    for k in 0..n {
        for (mi, &v) in m.iter_mut().zip(&x[k * inner..(k + 1) * inner]) {
            *mi = mi.max(v);
        }
    }
    m.iter_mut().for_each(|v| {
        if !v.is_finite() {
            *v = 0.0
        }
    });
    let mut s = vec![0.0f32; inner];
    for k in 0..n {
        let row = k * inner..(k + 1) * inner;
        for (((o, &v), &mi), si) in out[row.clone()]
            .iter_mut()
            .zip(&x[row])
            .zip(&m)
            .zip(s.iter_mut())
        {
            let e = (v - mi).exp();
            *o = e;
            *si += e;
        }
    }
    if log {
        let ls: Vec<f32> = s.iter().map(|v| v.ln()).collect();
        for k in 0..n {
            let row = k * inner..(k + 1) * inner;
            for (((o, &v), &mi), &l) in out[row.clone()].iter_mut().zip(&x[row]).zip(&m).zip(&ls) {
                *o = v - mi - l;
            }
        }
    } else {
        let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
        for k in 0..n {
            for (o, &i) in out[k * inner..(k + 1) * inner].iter_mut().zip(&inv) {
                *o *= i;
            }
        }
    }
}

/// The gradient of one block given the output `y` and its gradient `g`.
fn backward_block(y: &[f32], g: &[f32], dx: &mut [f32], n: usize, inner: usize, log: bool) {
    let mut s = vec![0.0f32; inner];
    for k in 0..n {
        let row = k * inner..(k + 1) * inner;
        for ((si, &gv), &yv) in s.iter_mut().zip(&g[row.clone()]).zip(&y[row]) {
            *si += if log { gv } else { gv * yv };
        }
    }
    for k in 0..n {
        let row = k * inner..(k + 1) * inner;
        for (((d, &gv), &yv), &si) in dx[row.clone()]
            .iter_mut()
            .zip(&g[row.clone()])
            .zip(&y[row])
            .zip(&s)
        {
            *d = if log {
                gv - yv.exp() * si
            } else {
                yv * (gv - si)
            };
        }
    }
}

impl Operator for Softmax {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "input")?;
        let (_, n, inner) = self.split(x.shape())?;
        let data = contiguous(x);
        let mut out = vec![0.0f32; data.len()];
        let log = self.log;
        blocks(&data, &data, &mut out, n * inner, |x, _, o| {
            forward_block(x, o, n, inner, log)
        });
        Ok(vec![Value::F32(ArrayD::from_shape_vec(
            IxDyn(x.shape()),
            out,
        )?)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let (Some(g), Some(Value::F32(y))) = (first_grad(output_grads), outputs.first().copied())
        else {
            return Ok(grads);
        };
        if g.shape() != y.shape() {
            return Err(OpError(format!(
                "the output gradient has shape {:?}, expected the output's shape {:?}",
                g.shape(),
                y.shape()
            )));
        }
        let (_, n, inner) = self.split(y.shape())?;
        let yv = contiguous(y);
        let gv = contiguous(g);
        let mut dx = vec![0.0f32; yv.len()];
        let log = self.log;
        blocks(&yv, &gv, &mut dx, n * inner, |y, g, d| {
            backward_block(y, g, d, n, inner, log)
        });
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(y.shape()), dx)?);
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients_spec, random_input};

    fn spec(op: &str, axis: Option<i64>, opset: i64) -> NodeSpec {
        let mut a = Attrs::new();
        if let Some(ax) = axis {
            a = a.with("axis", Attr::Int(ax));
        }
        let mut s = NodeSpec::new(op, a, 1);
        s.opset = opset;
        s
    }

    fn run(s: &NodeSpec, x: &ArrayD<f32>) -> OpResult<Vec<f32>> {
        let op = build(s)?;
        Ok(op.forward(&[Some(&Value::F32(x.clone()))])?[0].to_f32_vec())
    }

    #[test]
    fn values_along_an_axis() {
        let x = ndarray::arr2(&[[1.0f32, 2.0, 3.0], [0.0, 0.0, 1000.0]]).into_dyn();
        let y = run(&spec("Softmax", None, 13), &x).unwrap();
        let e: Vec<f32> = [1f32, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        for k in 0..3 {
            assert!((y[k] - e[k] / s).abs() < 1e-6);
        }
        // Stable for large inputs.
        assert_eq!(&y[3..], &[0.0, 0.0, 1.0]);
        let ly = run(&spec("LogSoftmax", None, 13), &x).unwrap();
        assert!((ly[0] - (1.0 - s.ln())).abs() < 1e-5);
        assert_eq!(ly[5], 0.0);
        // Axis 0 (and -2) of a [2, 3] tensor: over the columns.
        let y0 = run(&spec("Softmax", Some(0), 13), &x).unwrap();
        let y2 = run(&spec("Softmax", Some(-2), 13), &x).unwrap();
        assert_eq!(y0, y2);
        assert!((y0[0] - 1f32.exp() / (1f32.exp() + 1.0)).abs() < 1e-6);
        assert!((y0[0] + y0[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn opset_variants() {
        let x = random_input(&[2, 3, 4], 1, -2.0, 2.0);
        // Opset 13, axis 1: each [3] fibre sums to one.
        let y = run(&spec("Softmax", Some(1), 13), &x).unwrap();
        let y = ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), y).unwrap();
        let sums = y.sum_axis(ndarray::Axis(1));
        assert!(sums.iter().all(|v| (v - 1.0).abs() < 1e-5));
        // Opset 11, default axis 1: each batch element's 12 values sum to one.
        let y = run(&spec("Softmax", None, 11), &x).unwrap();
        for b in 0..2 {
            let s: f32 = y[b * 12..(b + 1) * 12].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        // Opset 11, axis 2 on [2, 3, 4]: rows of 4, as opset 13's last axis.
        let y11 = run(&spec("LogSoftmax", Some(2), 11), &x).unwrap();
        let y13 = run(&spec("LogSoftmax", None, 13), &x).unwrap();
        assert_eq!(y11, y13);
        // Out-of-range axes.
        assert!(run(&spec("Softmax", Some(3), 13), &x).is_err());
        assert!(run(&spec("Softmax", Some(-4), 13), &x).is_err());
        assert!(run(&spec("Softmax", Some(4), 11), &x).is_err());
        assert!(build(&NodeSpec::new(
            "Softmax",
            Attrs::new().with("axis", Attr::Float(1.5)),
            1
        ))
        .is_err());
    }

    #[test]
    fn large_inputs_take_the_parallel_path() {
        let x = random_input(&[64, 16, 48], 3, -3.0, 3.0);
        for axis in [-1, 1, 0] {
            let y = run(&spec("Softmax", Some(axis), 13), &x).unwrap();
            let y = ArrayD::from_shape_vec(IxDyn(&[64, 16, 48]), y).unwrap();
            let ax = if axis < 0 { 2 } else { axis as usize };
            assert!(y
                .sum_axis(ndarray::Axis(ax))
                .iter()
                .all(|v| (v - 1.0).abs() < 1e-4));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cases: &[(&[usize], Option<i64>, i64)] = &[
            (&[2, 5], None, 13),
            (&[2, 3, 4], Some(1), 13),
            (&[2, 3, 4], Some(0), 13),
            (&[2, 3, 4], None, 11),
            (&[2, 3, 4], Some(2), 11),
            (&[6], Some(0), 13),
        ];
        for (k, (shape, axis, opset)) in cases.iter().enumerate() {
            let x = random_input(shape, k as u64, -2.0, 2.0);
            for op in ["Softmax", "LogSoftmax"] {
                check_gradients_spec(
                    &spec(op, *axis, *opset),
                    vec![Value::F32(x.clone())],
                    &[0],
                    1e-2,
                );
            }
        }
    }
}
