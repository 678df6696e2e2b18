//! Reductions over axes: `ReduceMean`, `ReduceSum`, `ReduceMax`, `ReduceMin`, `ReduceProd`,
//! `ReduceL1`, `ReduceL2`, `ReduceSumSquare`, `ReduceLogSum`, `ReduceLogSumExp`, the pools
//! over every spatial axis `GlobalAveragePool` and `GlobalMaxPool`, and the (non-differentiable)
//! `ArgMax`, `ArgMin`.
//!
//! The axes come from the `axes` attribute (`ReduceSum` before opset 13, the others before 18)
//! or from the optional second input (from then on); either form is read at any opset. Empty
//! axes reduce over every axis, or (with `noop_with_empty_axes=1`) return the input unchanged.
//!
//! The input is laid out with the kept axes first and the reduced ones last, so that each
//! output element reduces one contiguous row; the backward pass fills the rows of the gradient
//! in the same layout and transposes it back. `ReduceMax`/`ReduceMin` send each gradient to the
//! first element of its group equal to the result.

use std::borrow::Cow;

use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required, Builder, NodeSpec, Operator};
use crate::value::{normalize_axis, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("ReduceMean", build),
    ("ReduceSum", build),
    ("ReduceMax", build),
    ("ReduceMin", build),
    ("ReduceProd", build),
    ("ReduceL1", build),
    ("ReduceL2", build),
    ("ReduceSumSquare", build),
    ("ReduceLogSum", build),
    ("ReduceLogSumExp", build),
    ("GlobalAveragePool", build),
    ("GlobalMaxPool", build),
    ("ArgMax", build_arg),
    ("ArgMin", build_arg),
];

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

/// A reduction over axes.
#[derive(Debug)]
struct Reduce {
    kind: Kind,
    /// The `axes` attribute (the second input, when present, takes precedence).
    axes_attr: Option<Vec<i64>>,
    /// Global pools: every axis after the first two, kept.
    spatial: bool,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

/// A 0/1 attribute.
fn flag(spec: &NodeSpec, name: &str, default: i64) -> OpResult<bool> {
    match spec.attrs.int_or(name, default)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(OpError(format!(
            "attribute `{name}` is {v}, expected 0 or 1"
        ))),
    }
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let (kind, spatial) = match spec.op_type.as_str() {
        "ReduceMean" => (Kind::Mean, false),
        "ReduceSum" => (Kind::Sum, false),
        "ReduceMax" => (Kind::Max, false),
        "ReduceMin" => (Kind::Min, false),
        "ReduceProd" => (Kind::Prod, false),
        "ReduceL1" => (Kind::L1, false),
        "ReduceL2" => (Kind::L2, false),
        "ReduceSumSquare" => (Kind::SumSquare, false),
        "ReduceLogSum" => (Kind::LogSum, false),
        "ReduceLogSumExp" => (Kind::LogSumExp, false),
        "GlobalAveragePool" => (Kind::Mean, true),
        "GlobalMaxPool" => (Kind::Max, true),
        other => return Err(OpError(format!("`{other}` is not a reduction"))),
    };
    let axes_attr = spec.attrs.ints("axes")?;
    if let Some(axes) = &axes_attr {
        check_distinct(axes, "attribute `axes`")?;
    }
    Ok(Box::new(Reduce {
        kind,
        axes_attr,
        spatial,
        keepdims: spatial || flag(spec, "keepdims", 1)?,
        noop_with_empty_axes: !spatial && flag(spec, "noop_with_empty_axes", 0)?,
    }))
}

fn check_distinct(axes: &[i64], what: &str) -> OpResult<()> {
    for (k, a) in axes.iter().enumerate() {
        if axes[..k].contains(a) {
            return Err(OpError(format!(
                "{what} {axes:?} repeats axis {a}, expected distinct axes"
            )));
        }
    }
    Ok(())
}

/// Elements above which rows are reduced on rayon's threads.
const PARALLEL_ABOVE: usize = 1 << 15;

/// How a tensor of a given shape is reduced.
#[derive(Debug)]
struct Plan {
    /// `None`: the reduction is the identity (`noop_with_empty_axes`).
    perm: Option<Vec<usize>>,
    /// Product of the kept dimensions (number of rows).
    outer: usize,
    /// Product of the reduced dimensions (row length).
    inner: usize,
    /// The output's shape.
    out_shape: Vec<usize>,
}

impl Reduce {
    fn plan(&self, shape: &[usize], inputs: &[Option<&Value>]) -> OpResult<Plan> {
        let rank = shape.len();
        let axes: Vec<usize> = if self.spatial {
            if rank < 2 {
                return Err(OpError(format!(
                    "the input has shape {shape:?}, expected rank 2 or more (N, C, spatial...)"
                )));
            }
            (2..rank).collect()
        } else {
            let raw = match optional(inputs, 1) {
                Some(v) => {
                    let a = v.to_i64_vec("axes (input 1)")?;
                    check_distinct(&a, "axes (input 1)")?;
                    a
                }
                None => self.axes_attr.clone().unwrap_or_default(),
            };
            if raw.is_empty() {
                if self.noop_with_empty_axes {
                    return Ok(Plan {
                        perm: None,
                        outer: shape.iter().product(),
                        inner: 1,
                        out_shape: shape.to_vec(),
                    });
                }
                (0..rank).collect()
            } else {
                let mut v = raw
                    .iter()
                    .map(|&a| normalize_axis(a, rank, "axis"))
                    .collect::<OpResult<Vec<_>>>()?;
                v.sort_unstable();
                v.dedup();
                if v.len() != raw.len() {
                    return Err(OpError(format!(
                        "axes {raw:?} name an axis twice, expected distinct axes"
                    )));
                }
                v
            }
        };
        let reduced: Vec<bool> = (0..rank).map(|d| axes.contains(&d)).collect();
        let mut perm: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).collect();
        perm.extend(axes.iter().copied());
        let outer = (0..rank)
            .filter(|&d| !reduced[d])
            .map(|d| shape[d])
            .product();
        let inner = axes.iter().map(|&d| shape[d]).product();
        let out_shape = (0..rank)
            .filter_map(|d| match (reduced[d], self.keepdims) {
                (false, _) => Some(shape[d]),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        Ok(Plan {
            perm: Some(perm),
            outer,
            inner,
            out_shape,
        })
    }
}

/// The elements of `x` in the order of its axes permuted by `perm` (row-major).
/// Borrowed when `perm` is the identity and `x` is contiguous.
fn permuted<'a, T: Clone>(x: &'a ArrayD<T>, perm: &[usize]) -> Cow<'a, [T]> {
    let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
    if identity {
        if let Some(s) = x.as_slice() {
            return Cow::Borrowed(s);
        }
        return Cow::Owned(x.iter().cloned().collect());
    }
    Cow::Owned(
        x.view()
            .permuted_axes(IxDyn(perm))
            .iter()
            .cloned()
            .collect(),
    )
}

/// `f` of each row of `inner` elements of `data` (`outer` rows).
fn reduce_rows<T: Sync, U: Send>(
    data: &[T],
    outer: usize,
    inner: usize,
    f: impl Fn(&[T]) -> U + Sync + Send,
) -> Vec<U> {
    if inner == 0 {
        return (0..outer).map(|_| f(&[])).collect();
    }
    if data.len() > PARALLEL_ABOVE && outer > 1 {
        data.par_chunks(inner).map(f).collect()
    } else {
        data.chunks(inner).map(f).collect()
    }
}

/// The largest element (NaN if any is NaN; -inf for an empty row).
fn max_f32(r: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for &v in r {
        if v.is_nan() {
            return v;
        }
        if v > m {
            m = v;
        }
    }
    m
}

/// The smallest element (NaN if any is NaN; +inf for an empty row).
fn min_f32(r: &[f32]) -> f32 {
    let mut m = f32::INFINITY;
    for &v in r {
        if v.is_nan() {
            return v;
        }
        if v < m {
            m = v;
        }
    }
    m
}

impl Kind {
    /// The reduction of one row.
    fn row(self, r: &[f32]) -> f32 {
        match self {
            Kind::Sum => r.iter().sum(),
            Kind::Mean => r.iter().sum::<f32>() / r.len() as f32,
            Kind::Max => max_f32(r),
            Kind::Min => min_f32(r),
            Kind::Prod => r.iter().product(),
            Kind::L1 => r.iter().map(|v| v.abs()).sum(),
            Kind::L2 => r.iter().map(|v| v * v).sum::<f32>().sqrt(),
            Kind::SumSquare => r.iter().map(|v| v * v).sum(),
            Kind::LogSum => r.iter().sum::<f32>().ln(),
            Kind::LogSumExp => {
                let m = max_f32(r);
                if m.is_infinite() {
                    return m;
                }
                m + r.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
            }
        }
    }

    /// The gradient `dx` of one row `x` given its result `y` and the output gradient `g` (`x`
    /// may be empty for `Sum`, `Mean` and `LogSum`, which do not read it).
    fn row_grad(self, x: &[f32], y: f32, g: f32, dx: &mut [f32]) {
        match self {
            Kind::Sum => dx.fill(g),
            Kind::Mean => dx.fill(g / dx.len() as f32),
            Kind::Max | Kind::Min => {
                dx.fill(0.0);
                if let Some(j) = x.iter().position(|&v| v == y) {
                    dx[j] = g;
                }
            }
            Kind::Prod => {
                let zeros = x.iter().filter(|&&v| v == 0.0).count();
                match zeros {
                    0 => dx.iter_mut().zip(x).for_each(|(d, &v)| *d = g * y / v),
                    1 => {
                        dx.fill(0.0);
                        if let Some(j) = x.iter().position(|&v| v == 0.0) {
                            let others: f32 = x
                                .iter()
                                .enumerate()
                                .filter(|&(k, _)| k != j)
                                .map(|(_, &v)| v)
                                .product();
                            dx[j] = g * others;
                        }
                    }
                    _ => dx.fill(0.0),
                }
            }
            Kind::L1 => dx.iter_mut().zip(x).for_each(|(d, &v)| {
                *d = if v > 0.0 {
                    g
                } else if v < 0.0 {
                    -g
                } else {
                    0.0
                }
            }),
            Kind::L2 => dx
                .iter_mut()
                .zip(x)
                .for_each(|(d, &v)| *d = if y > 0.0 { g * v / y } else { 0.0 }),
            Kind::SumSquare => dx.iter_mut().zip(x).for_each(|(d, &v)| *d = 2.0 * g * v),
            Kind::LogSum => {
                let s = y.exp();
                dx.fill(g / s);
            }
            Kind::LogSumExp => dx
                .iter_mut()
                .zip(x)
                .for_each(|(d, &v)| *d = g * (v - y).exp()),
        }
    }

    fn row_i64(self, r: &[i64]) -> OpResult<i64> {
        Ok(match self {
            Kind::Sum => r.iter().fold(0i64, |a, &v| a.wrapping_add(v)),
            Kind::Max => r.iter().copied().max().unwrap_or(i64::MIN),
            Kind::Min => r.iter().copied().min().unwrap_or(i64::MAX),
            Kind::Prod => r.iter().fold(1i64, |a, &v| a.wrapping_mul(v)),
            Kind::SumSquare => r
                .iter()
                .fold(0i64, |a, &v| a.wrapping_add(v.wrapping_mul(v))),
            Kind::L1 => r
                .iter()
                .fold(0i64, |a, &v| a.wrapping_add(v.wrapping_abs())),
            other => {
                return Err(OpError(format!(
                    "{other:?} of an integer tensor is not supported, expected a float tensor"
                )))
            }
        })
    }
}

impl Operator for Reduce {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let plan = self.plan(x.shape(), inputs)?;
        let Some(perm) = &plan.perm else {
            return Ok(vec![x.clone()]);
        };
        let y = match x {
            Value::F32(a) => {
                let data = permuted(a, perm);
                let kind = self.kind;
                let out = reduce_rows(&data, plan.outer, plan.inner, |r| kind.row(r));
                Value::F32(ArrayD::from_shape_vec(IxDyn(&plan.out_shape), out)?)
            }
            Value::I64(a) => {
                let data = permuted(a, perm);
                let kind = self.kind;
                let out = reduce_rows(&data, plan.outer, plan.inner, |r| kind.row_i64(r))
                    .into_iter()
                    .collect::<OpResult<Vec<i64>>>()?;
                Value::I64(ArrayD::from_shape_vec(IxDyn(&plan.out_shape), out)?)
            }
        };
        Ok(vec![y])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let (Some(g), Some(Value::F32(x)), Some(Value::F32(y))) = (
            first_grad(output_grads),
            inputs.first().copied().flatten(),
            outputs.first().copied(),
        ) else {
            return Ok(grads);
        };
        let plan = self.plan(x.shape(), inputs)?;
        let Some(perm) = &plan.perm else {
            grads[0] = Some(g.clone());
            return Ok(grads);
        };
        if g.len() != plan.outer || y.len() != plan.outer {
            return Err(OpError(format!(
                "the output gradient has shape {:?}, expected {:?}",
                g.shape(),
                plan.out_shape
            )));
        }
        let gv: Vec<f32> = g.iter().copied().collect();
        let yv: Vec<f32> = y.iter().copied().collect();
        let kind = self.kind;
        let needs_x = !matches!(kind, Kind::Sum | Kind::Mean | Kind::LogSum);
        // Sum, Mean and LogSum need only the row length and the result.
        let data: Cow<[f32]> = if needs_x {
            permuted(x, perm)
        } else {
            Cow::Borrowed(&[])
        };
        let mut dx = vec![0.0f32; x.len()];
        let inner = plan.inner;
        if inner > 0 {
            let job = |(o, d): (usize, &mut [f32])| {
                let r = data.get(o * inner..(o + 1) * inner).unwrap_or(&[]);
                kind.row_grad(r, yv[o], gv[o], d);
            };
            if dx.len() > PARALLEL_ABOVE {
                dx.par_chunks_mut(inner).enumerate().for_each(job);
            } else {
                dx.chunks_mut(inner).enumerate().for_each(job);
            }
        }
        let pshape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        let dp = ArrayD::from_shape_vec(IxDyn(&pshape), dx)?;
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
        grads[0] = Some(if identity {
            dp
        } else {
            dp.permuted_axes(IxDyn(&inv))
                .as_standard_layout()
                .into_owned()
        });
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        // The axes input is a setting.
        index == 0
    }
}

/// `ArgMax` / `ArgMin`: the index of the first (or last) extreme element along an axis.
#[derive(Debug)]
struct Arg {
    max: bool,
    axis: i64,
    keepdims: bool,
    select_last_index: bool,
}

fn build_arg(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let max = match spec.op_type.as_str() {
        "ArgMax" => true,
        "ArgMin" => false,
        other => return Err(OpError(format!("`{other}` is not ArgMax or ArgMin"))),
    };
    Ok(Box::new(Arg {
        max,
        axis: spec.attrs.int_or("axis", 0)?,
        keepdims: flag(spec, "keepdims", 1)?,
        select_last_index: flag(spec, "select_last_index", 0)?,
    }))
}

impl Arg {
    fn best<T: PartialOrd + Copy>(&self, lane: impl Iterator<Item = T>) -> i64 {
        let mut best: Option<(usize, T)> = None;
        for (k, v) in lane.enumerate() {
            let better = match best {
                None => true,
                Some((_, b)) => {
                    if self.select_last_index {
                        if self.max {
                            v >= b
                        } else {
                            v <= b
                        }
                    } else if self.max {
                        v > b
                    } else {
                        v < b
                    }
                }
            };
            if better {
                best = Some((k, v));
            }
        }
        best.map_or(0, |(k, _)| k as i64)
    }

    fn run<T: PartialOrd + Copy>(&self, x: &ArrayD<T>, ax: usize) -> ArrayD<i64> {
        let out = x.map_axis(Axis(ax), |lane| self.best(lane.iter().copied()));
        if self.keepdims {
            out.insert_axis(Axis(ax))
        } else {
            out
        }
    }
}

impl Operator for Arg {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let ax = normalize_axis(self.axis, x.shape().len(), "attribute `axis`")?;
        if x.shape()[ax] == 0 {
            return Err(OpError(format!(
                "axis {ax} of the input (shape {:?}) is empty, expected at least one element",
                x.shape()
            )));
        }
        Ok(vec![Value::I64(match x {
            Value::F32(a) => self.run(a, ax),
            Value::I64(a) => self.run(a, ax),
        })])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        _output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        Ok(vec![None; inputs.len()])
    }

    fn is_differentiable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, check_gradients_spec, random_input};

    fn f(shape: &[usize], v: &[f32]) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    fn ints(v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    fn run(spec: &NodeSpec, inputs: &[Value]) -> OpResult<Value> {
        let op = build(spec).or_else(|_| build_arg(spec))?;
        let refs: Vec<Option<&Value>> = inputs.iter().map(Some).collect();
        Ok(op.forward(&refs)?.remove(0))
    }

    fn attr_spec(op: &str, axes: Option<&[i64]>, keepdims: i64, opset: i64) -> NodeSpec {
        let mut a = Attrs::new().with("keepdims", Attr::Int(keepdims));
        if let Some(ax) = axes {
            a = a.with("axes", Attr::Ints(ax.to_vec()));
        }
        let mut s = NodeSpec::new(op, a, 1);
        s.opset = opset;
        s
    }

    #[test]
    fn values_keepdims_negative_axes_and_opsets() {
        // [[1, 2, 3], [4, 5, 6]]
        let x = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = run(
            &attr_spec("ReduceSum", Some(&[1]), 1, 11),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[2, 1], &[6.0, 15.0]));
        let y = run(
            &attr_spec("ReduceMean", Some(&[-2]), 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[3], &[2.5, 3.5, 4.5]));
        let y = run(
            &attr_spec("ReduceMax", None, 1, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[1, 1], &[6.0]));
        let y = run(
            &attr_spec("ReduceMin", None, 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[], &[1.0]));
        let y = run(
            &attr_spec("ReduceProd", Some(&[0]), 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[3], &[4.0, 10.0, 18.0]));
        let y = run(
            &attr_spec("ReduceSumSquare", Some(&[1]), 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(y, f(&[2], &[14.0, 77.0]));
        let y = run(
            &attr_spec("ReduceL2", Some(&[1]), 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert!((y.to_f32_vec()[0] - 14f32.sqrt()).abs() < 1e-6);
        let y = run(
            &attr_spec("ReduceL1", Some(&[1]), 0, 13),
            &[f(&[1, 2], &[-1.0, 2.0])],
        )
        .unwrap();
        assert_eq!(y, f(&[1], &[3.0]));
        let y = run(
            &attr_spec("ReduceLogSumExp", Some(&[1]), 0, 13),
            std::slice::from_ref(&x),
        )
        .unwrap();
        let expect = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        assert!((y.to_f32_vec()[0] - expect).abs() < 1e-5);
        // Axes as an input: ReduceSum from opset 13, the others from 18.
        let s = NodeSpec::new("ReduceSum", Attrs::new().with("keepdims", Attr::Int(0)), 2);
        assert_eq!(
            run(&s, &[x.clone(), ints(&[0])]).unwrap(),
            f(&[3], &[5.0, 7.0, 9.0])
        );
        let s = NodeSpec::new("ReduceMean", Attrs::new(), 2);
        assert_eq!(
            run(&s, &[x.clone(), ints(&[-1])]).unwrap(),
            f(&[2, 1], &[2.0, 5.0])
        );
        // Empty axes input: everything, or nothing with noop_with_empty_axes.
        assert_eq!(
            run(&s, &[x.clone(), ints(&[])]).unwrap(),
            f(&[1, 1], &[3.5])
        );
        let noop = NodeSpec::new(
            "ReduceSum",
            Attrs::new().with("noop_with_empty_axes", Attr::Int(1)),
            1,
        );
        assert_eq!(run(&noop, std::slice::from_ref(&x)).unwrap(), x);
        // Three axes, the middle one kept.
        let x3 = Value::F32(random_input(&[2, 3, 4], 1, -1.0, 1.0));
        let y = run(
            &attr_spec("ReduceSum", Some(&[0, 2]), 1, 11),
            std::slice::from_ref(&x3),
        )
        .unwrap();
        let Value::F32(a) = &x3 else { panic!() };
        let expect = a.sum_axis(Axis(2)).sum_axis(Axis(0));
        assert_eq!(y.shape(), &[1, 3, 1]);
        for (u, v) in y.to_f32_vec().iter().zip(expect.iter()) {
            assert!((u - v).abs() < 1e-5);
        }
        // Integers (shape arithmetic).
        let s = attr_spec("ReduceProd", None, 0, 13);
        assert_eq!(
            run(&s, &[ints(&[2, 3, 4])]).unwrap(),
            Value::I64(ndarray::arr0(24).into_dyn())
        );
    }

    #[test]
    fn errors_not_panics() {
        let x = f(&[2, 3], &[1.0; 6]);
        assert!(run(
            &attr_spec("ReduceSum", Some(&[2]), 1, 11),
            std::slice::from_ref(&x)
        )
        .is_err());
        assert!(run(
            &attr_spec("ReduceSum", Some(&[-3]), 1, 11),
            std::slice::from_ref(&x)
        )
        .is_err());
        let s = NodeSpec::new("ReduceMean", Attrs::new(), 2);
        assert!(run(&s, &[x.clone(), ints(&[0, -2])]).is_err());
        assert!(run(&s, &[x.clone(), ints(&[5])]).is_err());
        let bad = NodeSpec::new("ReduceMean", Attrs::new().with("keepdims", Attr::Int(3)), 1);
        let e = build(&bad).unwrap_err();
        assert!(e.0.contains("keepdims"), "{e}");
        assert!(build(&attr_spec("ReduceMax", Some(&[1, 1]), 1, 11)).is_err());
        let gp = NodeSpec::new("GlobalAveragePool", Attrs::new(), 1);
        assert!(run(&gp, &[f(&[3], &[1.0; 3])]).is_err());
        assert!(run(&attr_spec("ReduceMean", None, 1, 13), &[ints(&[1, 2])]).is_err());
    }

    #[test]
    fn global_pools_and_argmax() {
        let x = Value::F32(random_input(&[2, 3, 4, 5], 2, -1.0, 1.0));
        let Value::F32(a) = &x else { panic!() };
        let gap = run(
            &NodeSpec::new("GlobalAveragePool", Attrs::new(), 1),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(gap.shape(), &[2, 3, 1, 1]);
        let expect = a.mean_axis(Axis(3)).unwrap().mean_axis(Axis(2)).unwrap();
        for (u, v) in gap.to_f32_vec().iter().zip(expect.iter()) {
            assert!((u - v).abs() < 1e-5);
        }
        let gmp = run(
            &NodeSpec::new("GlobalMaxPool", Attrs::new(), 1),
            std::slice::from_ref(&x),
        )
        .unwrap();
        assert_eq!(gmp.shape(), &[2, 3, 1, 1]);
        assert_eq!(
            gmp.to_f32_vec()[0],
            a.index_axis(Axis(0), 0)
                .index_axis(Axis(0), 0)
                .fold(f32::MIN, |m, &v| m.max(v))
        );

        let v = f(&[2, 3], &[1.0, 5.0, 5.0, 7.0, 0.0, 7.0]);
        let am = NodeSpec::new("ArgMax", Attrs::new().with("axis", Attr::Int(1)), 1);
        assert_eq!(
            run(&am, std::slice::from_ref(&v)).unwrap(),
            Value::I64(ndarray::arr2(&[[1i64], [0]]).into_dyn())
        );
        let last = NodeSpec::new(
            "ArgMax",
            Attrs::new()
                .with("axis", Attr::Int(-1))
                .with("keepdims", Attr::Int(0))
                .with("select_last_index", Attr::Int(1)),
            1,
        );
        assert_eq!(run(&last, std::slice::from_ref(&v)).unwrap(), ints(&[2, 2]));
        let amin = NodeSpec::new("ArgMin", Attrs::new().with("keepdims", Attr::Int(0)), 1);
        assert_eq!(
            run(&amin, std::slice::from_ref(&v)).unwrap(),
            ints(&[0, 1, 0])
        );
        let bad = NodeSpec::new("ArgMax", Attrs::new().with("axis", Attr::Int(2)), 1);
        assert!(run(&bad, &[v]).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        type Case<'a> = (&'a [usize], Option<&'a [i64]>, i64);
        let cases: &[Case] = &[
            (&[3, 4], Some(&[1]), 1),
            (&[3, 4], Some(&[0]), 0),
            (&[2, 3, 4], Some(&[0, 2]), 0),
            (&[2, 3, 4], Some(&[-2]), 1),
            (&[2, 3, 4], None, 0),
        ];
        for (k, (shape, axes, keep)) in cases.iter().enumerate() {
            let x = random_input(shape, k as u64, -2.0, 2.0);
            let pos = random_input(shape, 50 + k as u64, 0.5, 1.5);
            for op in [
                "ReduceMean",
                "ReduceSum",
                "ReduceMax",
                "ReduceMin",
                "ReduceL2",
                "ReduceSumSquare",
                "ReduceLogSumExp",
                "ReduceL1",
            ] {
                let spec = attr_spec(op, *axes, *keep, 13);
                check_gradients_spec(&spec, vec![Value::F32(x.clone())], &[0], 1e-2);
            }
            for op in ["ReduceProd", "ReduceLogSum"] {
                let spec = attr_spec(op, *axes, *keep, 13);
                check_gradients_spec(&spec, vec![Value::F32(pos.clone())], &[0], 1e-2);
            }
            // Axes as an input (opset 18).
            if let Some(ax) = axes {
                check_gradients(
                    "ReduceMean",
                    Attrs::new().with("keepdims", Attr::Int(*keep)),
                    vec![Value::F32(x.clone()), ints(ax)],
                    &[0],
                    1e-2,
                );
            }
        }
        // A zero in a product.
        let mut z = random_input(&[2, 3], 9, 0.5, 1.5);
        z[[0, 1]] = 0.0;
        check_gradients_spec(
            &attr_spec("ReduceProd", Some(&[1]), 1, 13),
            vec![Value::F32(z)],
            &[0],
            1e-2,
        );
        for op in ["GlobalAveragePool", "GlobalMaxPool"] {
            check_gradients(
                op,
                Attrs::new(),
                vec![Value::F32(random_input(&[2, 3, 3, 2], 4, -1.0, 1.0))],
                &[0],
                1e-2,
            );
        }
    }

    #[test]
    fn large_tensors_take_the_parallel_paths() {
        let x = random_input(&[4, 64, 16, 16], 5, -1.0, 1.0);
        let xv = Value::F32(x.clone());
        let gap = build(&NodeSpec::new("GlobalAveragePool", Attrs::new(), 1)).unwrap();
        let y = gap.forward(&[Some(&xv)]).unwrap();
        let g = ArrayD::from_elem(IxDyn(&[4, 64, 1, 1]), 1.0f32);
        let d = gap.backward(&[Some(&xv)], &[&y[0]], &[Some(&g)]).unwrap();
        assert!(d[0]
            .as_ref()
            .unwrap()
            .iter()
            .all(|&v| (v - 1.0 / 256.0).abs() < 1e-9));
        // Over axis 1 (a transposed layout): one gradient per group, at a maximum.
        let mx = build(&attr_spec("ReduceMax", Some(&[1]), 0, 13)).unwrap();
        let y = mx.forward(&[Some(&xv)]).unwrap();
        let Value::F32(yv) = &y[0] else { panic!() };
        let expect = x.fold_axis(Axis(1), f32::MIN, |m, &v| m.max(v));
        assert_eq!(yv, &expect);
        let g = ArrayD::from_elem(IxDyn(&[4, 16, 16]), 1.0f32);
        let d = mx.backward(&[Some(&xv)], &[&y[0]], &[Some(&g)]).unwrap();
        let d = d[0].as_ref().unwrap();
        assert_eq!(d.sum_axis(Axis(1)), g);
        assert!(ndarray::Zip::from(d)
            .and(&x)
            .and_broadcast(&expect.clone().insert_axis(Axis(1)))
            .all(|&d, &x, &m| d == 0.0 || x == m));
    }

    #[test]
    fn max_gradient_goes_to_the_first_tie() {
        let op = build(&attr_spec("ReduceMax", Some(&[1]), 0, 13)).unwrap();
        let x = f(&[1, 3], &[2.0, 5.0, 5.0]);
        let y = op.forward(&[Some(&x)]).unwrap();
        let g = ArrayD::from_elem(IxDyn(&[1]), 1.0f32);
        let d = op.backward(&[Some(&x)], &[&y[0]], &[Some(&g)]).unwrap();
        assert_eq!(
            d[0].as_ref().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![0.0, 1.0, 0.0]
        );
    }
}
