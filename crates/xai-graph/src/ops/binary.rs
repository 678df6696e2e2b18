//! Elementwise functions of several tensors, with ONNX multidirectional (NumPy-style)
//! broadcasting: the arithmetic `Add`, `Sub`, `Mul`, `Div`, `Pow` (float, and integer
//! `Add`/`Sub`/`Mul`/`Div` for shape arithmetic), the variadic `Max`, `Min`, `Sum`, `Mean`,
//! `PRelu` (slope broadcast to the input), `Where`, and the non-differentiable comparisons and
//! logic `Equal`, `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`, `Not`, `And`, `Or`, `Xor`
//! (0/1 integer outputs).
//!
//! The backward passes compute each operand's gradient on the broadcast shape and sum it back
//! to the operand's shape ([`unbroadcast`]).

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Axis, IxDyn, Zip};
use rayon::prelude::*;

use crate::broadcast::{broadcast_shape, broadcast_shapes, broadcast_to, unbroadcast};
use crate::error::{OpError, OpResult};
use crate::op::{first_grad, required, Builder, NodeSpec, Operator};
use crate::value::Value;

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("Add", build),
    ("Sub", build),
    ("Mul", build),
    ("Div", build),
    ("Pow", build),
    ("Max", build),
    ("Min", build),
    ("Sum", build),
    ("Mean", build),
    ("PRelu", build),
    ("Where", build),
    ("Equal", build),
    ("Less", build),
    ("Greater", build),
    ("LessOrEqual", build),
    ("GreaterOrEqual", build),
    ("Not", build),
    ("And", build),
    ("Or", build),
    ("Xor", build),
];

/// Two-operand arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

/// Variadic (one or more operands) reductions across inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variadic {
    Max,
    Min,
    Sum,
    Mean,
}

/// Comparisons (0/1 outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

/// Two-operand logic on 0/1 (nonzero = true) tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logic {
    And,
    Or,
    Xor,
}

/// Which operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Arith(Arith),
    Variadic(Variadic),
    PRelu,
    Where,
    Cmp(Cmp),
    Not,
    Logic(Logic),
}

/// An elementwise operator of several tensors.
#[derive(Debug)]
struct Binary {
    kind: Kind,
    /// Opset < 7 `broadcast=1` with an `axis`: the second operand's dimensions are aligned with
    /// the first's starting at this axis (legacy broadcasting).
    legacy_axis: Option<i64>,
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let kind = match spec.op_type.as_str() {
        "Add" => Kind::Arith(Arith::Add),
        "Sub" => Kind::Arith(Arith::Sub),
        "Mul" => Kind::Arith(Arith::Mul),
        "Div" => Kind::Arith(Arith::Div),
        "Pow" => Kind::Arith(Arith::Pow),
        "Max" => Kind::Variadic(Variadic::Max),
        "Min" => Kind::Variadic(Variadic::Min),
        "Sum" => Kind::Variadic(Variadic::Sum),
        "Mean" => Kind::Variadic(Variadic::Mean),
        "PRelu" => Kind::PRelu,
        "Where" => Kind::Where,
        "Equal" => Kind::Cmp(Cmp::Equal),
        "Less" => Kind::Cmp(Cmp::Less),
        "Greater" => Kind::Cmp(Cmp::Greater),
        "LessOrEqual" => Kind::Cmp(Cmp::LessOrEqual),
        "GreaterOrEqual" => Kind::Cmp(Cmp::GreaterOrEqual),
        "Not" => Kind::Not,
        "And" => Kind::Logic(Logic::And),
        "Or" => Kind::Logic(Logic::Or),
        "Xor" => Kind::Logic(Logic::Xor),
        other => {
            return Err(OpError(format!(
                "`{other}` is not an elementwise operator of several tensors"
            )))
        }
    };
    let mut legacy_axis = None;
    if spec.opset < 7 && matches!(kind, Kind::Arith(_) | Kind::Cmp(_) | Kind::Logic(_)) {
        let broadcast = spec.attrs.int_or("broadcast", 0)?;
        if !(0..=1).contains(&broadcast) {
            return Err(OpError(format!(
                "attribute `broadcast` is {broadcast}, expected 0 or 1"
            )));
        }
        if broadcast == 1 {
            legacy_axis = spec.attrs.int("axis")?;
        }
    }
    Ok(Box::new(Binary { kind, legacy_axis }))
}

/// Elements above which elementwise maps run on rayon's threads.
const PARALLEL_ABOVE: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 13;

/// `f` of each pair of elements of two equally long slices, in parallel for long ones.
fn zip_slices<A, B, C, F>(sa: &[A], sb: &[B], f: &F) -> Vec<C>
where
    A: Copy + Sync,
    B: Copy + Sync,
    C: Copy + Default + Send,
    F: Fn(A, B) -> C + Sync,
{
    if sa.len() > PARALLEL_ABOVE {
        let mut out = vec![C::default(); sa.len()];
        out.par_chunks_mut(CHUNK)
            .zip(sa.par_chunks(CHUNK))
            .zip(sb.par_chunks(CHUNK))
            .for_each(|((o, x), y)| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(x, y);
                }
            });
        out
    } else {
        sa.iter().zip(sb).map(|(&x, &y)| f(x, y)).collect()
    }
}

/// `f` of each element of a slice, in parallel for long ones.
fn map_slice<A, C, F>(sa: &[A], f: &F) -> Vec<C>
where
    A: Copy + Sync,
    C: Copy + Default + Send,
    F: Fn(A) -> C + Sync,
{
    if sa.len() > PARALLEL_ABOVE {
        let mut out = vec![C::default(); sa.len()];
        out.par_chunks_mut(CHUNK)
            .zip(sa.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x);
                }
            });
        out
    } else {
        sa.iter().map(|&x| f(x)).collect()
    }
}

/// `f(a, b)` elementwise with multidirectional broadcasting: contiguous slices when the shapes
/// are equal or one operand is a single number, broadcast views otherwise (split over the
/// leading axes on rayon's threads for large outputs).
pub(crate) fn broadcast_map<A, B, C, F>(a: &ArrayD<A>, b: &ArrayD<B>, f: F) -> OpResult<ArrayD<C>>
where
    A: Copy + Sync,
    B: Copy + Sync,
    C: Copy + Default + Send + Sync,
    F: Fn(A, B) -> C + Sync,
{
    let shape = broadcast_shape(a.shape(), b.shape())?;
    if a.shape() == shape.as_slice() {
        if let Some(sa) = a.as_slice() {
            if b.shape() == shape.as_slice() {
                if let Some(sb) = b.as_slice() {
                    return Ok(ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        zip_slices(sa, sb, &f),
                    )?);
                }
            }
            if b.len() == 1 {
                if let Some(&s) = b.iter().next() {
                    return Ok(ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        map_slice(sa, &|x| f(x, s)),
                    )?);
                }
            }
        }
    }
    if b.shape() == shape.as_slice() && a.len() == 1 {
        if let (Some(sb), Some(&s)) = (b.as_slice(), a.iter().next()) {
            return Ok(ArrayD::from_shape_vec(
                IxDyn(&shape),
                map_slice(sb, &|y| f(s, y)),
            )?);
        }
    }
    let av = broadcast_to(a, &shape)?;
    let bv = broadcast_to(b, &shape)?;
    broadcast_views(av, bv, &shape, &f)
}

/// `f` over two views of the same shape, split over the leading axes for large outputs.
fn broadcast_views<A, B, C, F>(
    av: ArrayViewD<'_, A>,
    bv: ArrayViewD<'_, B>,
    shape: &[usize],
    f: &F,
) -> OpResult<ArrayD<C>>
where
    A: Copy + Sync,
    B: Copy + Sync,
    C: Copy + Default + Send + Sync,
    F: Fn(A, B) -> C + Sync,
{
    let n: usize = shape.iter().product();
    let rank = shape.len();
    if n <= PARALLEL_ABOVE || rank < 2 {
        return Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)));
    }
    // The leading `k` axes (at least 64 slices when the rank allows) are the parallel ones.
    let mut k = 1;
    let mut outer = shape[0];
    while k < rank - 1 && outer < 64 {
        outer *= shape[k];
        k += 1;
    }
    let inner = n / outer.max(1);
    let inner_shape = &shape[k..];
    let mut out = vec![C::default(); n];
    out.par_chunks_mut(inner.max(1))
        .enumerate()
        .try_for_each(|(o, chunk)| -> OpResult<()> {
            let mut va = av.view();
            let mut vb = bv.view();
            let mut idx = vec![0; k];
            let mut rem = o;
            for d in (0..k).rev() {
                idx[d] = rem % shape[d];
                rem /= shape[d];
            }
            for &i in &idx {
                va = va.index_axis_move(Axis(0), i);
                vb = vb.index_axis_move(Axis(0), i);
            }
            let mut ov = ArrayViewMutD::from_shape(IxDyn(inner_shape), chunk)?;
            Zip::from(&mut ov)
                .and(&va)
                .and(&vb)
                .for_each(|o, &x, &y| *o = f(x, y));
            Ok(())
        })?;
    Ok(ArrayD::from_shape_vec(IxDyn(shape), out)?)
}

/// `x^e`, with the squares that normalisation layers use computed exactly.
#[inline]
fn pow(x: f32, e: f32) -> f32 {
    if e == 2.0 {
        x * x
    } else if e == 1.0 {
        x
    } else {
        x.powf(e)
    }
}

/// `d x^e / dx`.
#[inline]
fn pow_dbase(x: f32, e: f32) -> f32 {
    if e == 0.0 {
        0.0
    } else if e == 2.0 {
        2.0 * x
    } else if e == 1.0 {
        1.0
    } else {
        e * x.powf(e - 1.0)
    }
}

fn arith_f32(op: Arith, a: &ArrayD<f32>, b: &ArrayD<f32>) -> OpResult<ArrayD<f32>> {
    match op {
        Arith::Add => broadcast_map(a, b, |x, y| x + y),
        Arith::Sub => broadcast_map(a, b, |x, y| x - y),
        Arith::Mul => broadcast_map(a, b, |x, y| x * y),
        Arith::Div => broadcast_map(a, b, |x, y| x / y),
        Arith::Pow => broadcast_map(a, b, pow),
    }
}

fn arith_i64(op: Arith, a: &ArrayD<i64>, b: &ArrayD<i64>) -> OpResult<ArrayD<i64>> {
    match op {
        Arith::Add => broadcast_map(a, b, |x: i64, y| x.wrapping_add(y)),
        Arith::Sub => broadcast_map(a, b, |x: i64, y| x.wrapping_sub(y)),
        Arith::Mul => broadcast_map(a, b, |x: i64, y| x.wrapping_mul(y)),
        Arith::Div => {
            if b.iter().any(|&v| v == 0) {
                return Err(OpError(
                    "integer Div by zero (the divisor holds a 0), expected nonzero divisors".into(),
                ));
            }
            // ONNX integer division truncates toward zero, as Rust's.
            broadcast_map(a, b, |x: i64, y| x.wrapping_div(y))
        }
        Arith::Pow => Err(OpError(
            "Pow of an integer base is not supported, expected a float base".into(),
        )),
    }
}

/// The legacy (opset < 7, `broadcast=1`, `axis`) shape of the second operand: its dimensions
/// placed at `axis` of the first operand's rank.
fn legacy_shape(axis: i64, a_rank: usize, b_shape: &[usize]) -> OpResult<Vec<usize>> {
    let ax = crate::value::normalize_axis(axis, a_rank.max(1), "attribute `axis`")?;
    if ax + b_shape.len() > a_rank {
        return Err(OpError(format!(
            "attribute `axis` {axis} places the second operand's {} dimensions past the first's \
             rank {a_rank}, expected axis + rank(B) <= rank(A)",
            b_shape.len()
        )));
    }
    let mut s = vec![1; a_rank];
    s[ax..ax + b_shape.len()].copy_from_slice(b_shape);
    Ok(s)
}

/// Nonzero elements as `true`.
fn truthy(v: &Value) -> ArrayD<bool> {
    match v {
        Value::I64(a) => a.mapv(|x| x != 0),
        Value::F32(a) => a.mapv(|x| x != 0.0),
    }
}

fn cmp<T: PartialOrd + PartialEq + Copy>(c: Cmp) -> impl Fn(T, T) -> i64 + Sync {
    move |x: T, y: T| {
        let r = match c {
            Cmp::Equal => x == y,
            Cmp::Less => x < y,
            Cmp::Greater => x > y,
            Cmp::LessOrEqual => x <= y,
            Cmp::GreaterOrEqual => x >= y,
        };
        r as i64
    }
}

/// The present inputs, at least one.
fn present<'a>(inputs: &[Option<&'a Value>]) -> OpResult<Vec<&'a Value>> {
    let v: Vec<&Value> = inputs.iter().copied().flatten().collect();
    if v.is_empty() {
        return Err(OpError("no inputs, expected at least one".into()));
    }
    Ok(v)
}

fn mixed_types(a: &Value, b: &Value) -> OpError {
    OpError(format!(
        "operands are {} and {} tensors, expected the same element type",
        a.type_name(),
        b.type_name()
    ))
}

impl Binary {
    /// The second operand, reshaped for legacy broadcasting when the node asks for it.
    fn second(&self, a: &Value, b: &Value) -> OpResult<Option<Value>> {
        match self.legacy_axis {
            None => Ok(None),
            Some(axis) => {
                let s = legacy_shape(axis, a.shape().len(), b.shape())?;
                Ok(Some(b.reshaped(&s)?))
            }
        }
    }

    fn forward_arith(&self, op: Arith, inputs: &[Option<&Value>]) -> OpResult<Value> {
        let a = required(inputs, 0, "A")?;
        let b0 = required(inputs, 1, "B")?;
        let reshaped = self.second(a, b0)?;
        let b = reshaped.as_ref().unwrap_or(b0);
        Ok(match (a, b) {
            (Value::F32(x), Value::F32(y)) => Value::F32(arith_f32(op, x, y)?),
            (Value::I64(x), Value::I64(y)) => Value::I64(arith_i64(op, x, y)?),
            // Pow's exponent may have another type than its base (opset 12+).
            (Value::F32(x), Value::I64(e)) if op == Arith::Pow => {
                Value::F32(broadcast_map(x, e, |x, e| {
                    x.powi(e.clamp(-1 << 30, 1 << 30) as i32)
                })?)
            }
            _ => return Err(mixed_types(a, b)),
        })
    }

    fn backward_arith(
        &self,
        op: Arith,
        inputs: &[Option<&Value>],
        y: &ArrayD<f32>,
        g: &ArrayD<f32>,
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let a_val = required(inputs, 0, "A")?;
        let b0 = required(inputs, 1, "B")?;
        let reshaped = self.second(a_val, b0)?;
        let b_val = reshaped.as_ref().unwrap_or(b0);
        let Value::F32(a) = a_val else {
            return Ok(grads);
        };
        let b_f32 = match b_val {
            Value::F32(b) => Some(b),
            Value::I64(_) => None,
        };
        let (da, db) = match (op, b_f32) {
            (Arith::Add, Some(_)) => (Some(g.clone()), Some(g.clone())),
            (Arith::Sub, Some(_)) => (Some(g.clone()), Some(g.mapv(|v| -v))),
            (Arith::Mul, Some(b)) => (
                Some(broadcast_map(g, b, |g, b| g * b)?),
                Some(broadcast_map(g, a, |g, a| g * a)?),
            ),
            (Arith::Div, Some(b)) => (
                Some(broadcast_map(g, b, |g, b| g / b)?),
                Some(broadcast_map(
                    &broadcast_map(g, y, |g, y| -g * y)?,
                    b,
                    |t, b| t / b,
                )?),
            ),
            (Arith::Pow, Some(e)) => {
                let d = broadcast_map(a, e, pow_dbase)?;
                let da = broadcast_map(g, &d, |g, d| g * d)?;
                let gy = broadcast_map(g, y, |g, y| g * y)?;
                let de = broadcast_map(&gy, a, |t, a| if a > 0.0 { t * a.ln() } else { 0.0 })?;
                (Some(da), Some(de))
            }
            (Arith::Pow, None) => {
                let Value::I64(e) = b_val else {
                    return Ok(grads);
                };
                let d = broadcast_map(a, e, |x, e| {
                    if e == 0 {
                        0.0
                    } else {
                        e as f32 * x.powi((e - 1).clamp(-1 << 30, 1 << 30) as i32)
                    }
                })?;
                (Some(broadcast_map(g, &d, |g, d| g * d)?), None)
            }
            _ => (None, None),
        };
        if let Some(da) = da {
            grads[0] = Some(unbroadcast(da, a.shape())?);
        }
        if let (Some(db), Some(b)) = (db, b_f32) {
            let db = unbroadcast(db, b.shape())?;
            grads[1] = Some(if db.shape() == b0.shape() {
                db
            } else {
                crate::value::reshape(&db, b0.shape())?
            });
        }
        Ok(grads)
    }

    fn forward_variadic(&self, op: Variadic, inputs: &[Option<&Value>]) -> OpResult<Value> {
        let vals = present(inputs)?;
        let first = vals[0];
        match first {
            Value::F32(_) => {
                let arrays = vals
                    .iter()
                    .map(|v| v.f32("every operand (the first is float)"))
                    .collect::<OpResult<Vec<_>>>()?;
                let mut acc = arrays[0].clone();
                for x in &arrays[1..] {
                    acc = match op {
                        Variadic::Max => {
                            broadcast_map(
                                &acc,
                                x,
                                |a: f32, b| {
                                    if b > a || a.is_nan() {
                                        b
                                    } else {
                                        a
                                    }
                                },
                            )?
                        }
                        Variadic::Min => {
                            broadcast_map(
                                &acc,
                                x,
                                |a: f32, b| {
                                    if b < a || a.is_nan() {
                                        b
                                    } else {
                                        a
                                    }
                                },
                            )?
                        }
                        Variadic::Sum | Variadic::Mean => broadcast_map(&acc, x, |a, b| a + b)?,
                    };
                }
                if op == Variadic::Mean {
                    let n = arrays.len() as f32;
                    acc.mapv_inplace(|v| v / n);
                }
                Ok(Value::F32(acc))
            }
            Value::I64(_) => {
                let arrays = vals
                    .iter()
                    .map(|v| v.i64("every operand (the first is integer)"))
                    .collect::<OpResult<Vec<_>>>()?;
                let mut acc = arrays[0].clone();
                for x in &arrays[1..] {
                    acc = match op {
                        Variadic::Max => broadcast_map(&acc, x, |a: i64, b| a.max(b))?,
                        Variadic::Min => broadcast_map(&acc, x, |a: i64, b| a.min(b))?,
                        Variadic::Sum => broadcast_map(&acc, x, |a: i64, b| a.wrapping_add(b))?,
                        Variadic::Mean => {
                            return Err(OpError(
                                "Mean of integer tensors is not supported, expected floats".into(),
                            ))
                        }
                    };
                }
                Ok(Value::I64(acc))
            }
        }
    }

    fn backward_variadic(
        &self,
        op: Variadic,
        inputs: &[Option<&Value>],
        y: &ArrayD<f32>,
        g: &ArrayD<f32>,
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let n = inputs.iter().flatten().count() as f32;
        // Max/Min: which output elements an earlier operand already took.
        let mut taken = ArrayD::<bool>::from_elem(y.shape(), false);
        for (i, v) in inputs.iter().enumerate() {
            let Some(Value::F32(x)) = v else { continue };
            let full = match op {
                Variadic::Sum => g.clone(),
                Variadic::Mean => g.mapv(|v| v / n),
                Variadic::Max | Variadic::Min => {
                    let xb = broadcast_to(x, y.shape())?;
                    let mut d = ArrayD::<f32>::zeros(y.shape());
                    Zip::from(&mut d)
                        .and(&mut taken)
                        .and(&xb)
                        .and(y)
                        .and(g)
                        .for_each(|d, t, &x, &y, &g| {
                            if !*t && x == y {
                                *t = true;
                                *d = g;
                            }
                        });
                    d
                }
            };
            grads[i] = Some(unbroadcast(full, x.shape())?);
        }
        Ok(grads)
    }

    /// PRelu's slope shape: unidirectionally broadcastable to `x`, or (older exporters) a
    /// vector of one slope per channel (axis 1).
    fn prelu_slope_shape(x: &[usize], s: &[usize]) -> OpResult<Vec<usize>> {
        if broadcast_shape(x, s).ok().as_deref() == Some(x) {
            return Ok(s.to_vec());
        }
        if s.len() == 1 && x.len() >= 2 && x[1] == s[0] {
            let mut shape = vec![1; x.len() - 1];
            shape[0] = s[0];
            return Ok(shape);
        }
        Err(OpError(format!(
            "PRelu's slope of shape {s:?} does not broadcast to the input's shape {x:?}, expected \
             a shape unidirectionally broadcastable to it (or one slope per channel)"
        )))
    }

    fn prelu_operands<'a>(
        inputs: &[Option<&'a Value>],
    ) -> OpResult<(&'a ArrayD<f32>, &'a ArrayD<f32>, Vec<usize>)> {
        let x = required(inputs, 0, "X")?.f32("X")?;
        let s = required(inputs, 1, "slope")?.f32("slope")?;
        let shape = Self::prelu_slope_shape(x.shape(), s.shape())?;
        Ok((x, s, shape))
    }
}

/// The condition and the two branches of `Where`, with the output shape.
fn where_operands<'a>(
    inputs: &[Option<&'a Value>],
) -> OpResult<(ArrayD<bool>, &'a Value, &'a Value, Vec<usize>)> {
    let c = truthy(required(inputs, 0, "condition")?);
    let x = required(inputs, 1, "X")?;
    let y = required(inputs, 2, "Y")?;
    let shape = broadcast_shapes(&[c.shape(), x.shape(), y.shape()])?;
    Ok((c, x, y, shape))
}

fn select<T: Copy>(
    c: &ArrayD<bool>,
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    shape: &[usize],
) -> OpResult<ArrayD<T>> {
    let cb = broadcast_to(c, shape)?;
    let xb = broadcast_to(x, shape)?;
    let yb = broadcast_to(y, shape)?;
    Ok(Zip::from(&cb)
        .and(&xb)
        .and(&yb)
        .map_collect(|&c, &x, &y| if c { x } else { y }))
}

impl Operator for Binary {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let y = match self.kind {
            Kind::Arith(op) => self.forward_arith(op, inputs)?,
            Kind::Variadic(op) => self.forward_variadic(op, inputs)?,
            Kind::PRelu => {
                let (x, s, shape) = Self::prelu_operands(inputs)?;
                let s = crate::value::reshape(s, &shape)?;
                Value::F32(broadcast_map(
                    x,
                    &s,
                    |x, s| if x < 0.0 { s * x } else { x },
                )?)
            }
            Kind::Where => {
                let (c, x, y, shape) = where_operands(inputs)?;
                match (x, y) {
                    (Value::F32(x), Value::F32(y)) => Value::F32(select(&c, x, y, &shape)?),
                    (Value::I64(x), Value::I64(y)) => Value::I64(select(&c, x, y, &shape)?),
                    _ => return Err(mixed_types(x, y)),
                }
            }
            Kind::Cmp(c) => {
                let a = required(inputs, 0, "A")?;
                let b0 = required(inputs, 1, "B")?;
                let reshaped = self.second(a, b0)?;
                let b = reshaped.as_ref().unwrap_or(b0);
                Value::I64(match (a, b) {
                    (Value::F32(x), Value::F32(y)) => broadcast_map(x, y, cmp::<f32>(c))?,
                    (Value::I64(x), Value::I64(y)) => broadcast_map(x, y, cmp::<i64>(c))?,
                    _ => return Err(mixed_types(a, b)),
                })
            }
            Kind::Not => Value::I64(truthy(required(inputs, 0, "X")?).mapv(|v| (!v) as i64)),
            Kind::Logic(l) => {
                let a0 = required(inputs, 0, "A")?;
                let b0 = required(inputs, 1, "B")?;
                let reshaped = self.second(a0, b0)?;
                let a = truthy(a0);
                let b = truthy(reshaped.as_ref().unwrap_or(b0));
                Value::I64(broadcast_map(&a, &b, move |x: bool, y: bool| {
                    (match l {
                        Logic::And => x && y,
                        Logic::Or => x || y,
                        Logic::Xor => x != y,
                    }) as i64
                })?)
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
        match self.kind {
            Kind::Arith(op) => return self.backward_arith(op, inputs, y, g),
            Kind::Variadic(op) => return self.backward_variadic(op, inputs, y, g),
            Kind::PRelu => {
                let (x, s0, shape) = Self::prelu_operands(inputs)?;
                let s = crate::value::reshape(s0, &shape)?;
                let d = broadcast_map(x, &s, |x, s| if x < 0.0 { s } else { 1.0 })?;
                grads[0] = Some(broadcast_map(g, &d, |g, d| g * d)?);
                let ds = broadcast_map(g, x, |g, x| if x < 0.0 { g * x } else { 0.0 })?;
                let ds = unbroadcast(ds, &shape)?;
                grads[1] = Some(crate::value::reshape(&ds, s0.shape())?);
            }
            Kind::Where => {
                let (c, x, yv, shape) = where_operands(inputs)?;
                let cb = broadcast_to(&c, &shape)?;
                if let Value::F32(x) = x {
                    let d = Zip::from(&cb)
                        .and(g)
                        .map_collect(|&c, &g| if c { g } else { 0.0 });
                    grads[1] = Some(unbroadcast(d, x.shape())?);
                }
                if let Value::F32(yv) = yv {
                    let d = Zip::from(&cb)
                        .and(g)
                        .map_collect(|&c, &g| if c { 0.0 } else { g });
                    grads[2] = Some(unbroadcast(d, yv.shape())?);
                }
            }
            Kind::Cmp(_) | Kind::Not | Kind::Logic(_) => {}
        }
        Ok(grads)
    }

    fn is_differentiable(&self) -> bool {
        !matches!(self.kind, Kind::Cmp(_) | Kind::Not | Kind::Logic(_))
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        match self.kind {
            // The exponent is a setting, as Where's condition.
            Kind::Arith(Arith::Pow) => index == 0,
            Kind::Where => index != 0,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, random_input};
    use ndarray::{arr1, arr2};

    fn f(v: ArrayD<f32>) -> Value {
        Value::F32(v)
    }

    fn i(v: &[i64], shape: &[usize]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    fn run(op: &str, inputs: &[Value]) -> OpResult<Value> {
        run_spec(&NodeSpec::new(op, Attrs::new(), inputs.len()), inputs)
    }

    fn run_spec(spec: &NodeSpec, inputs: &[Value]) -> OpResult<Value> {
        let op = build(spec)?;
        let refs: Vec<Option<&Value>> = inputs.iter().map(Some).collect();
        Ok(op.forward(&refs)?.remove(0))
    }

    #[test]
    fn arithmetic_broadcasts() {
        let a = f(arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn());
        let b = f(arr1(&[10.0f32, 20.0, 30.0]).into_dyn());
        let c = f(arr2(&[[2.0f32], [4.0]]).into_dyn());
        let y = run("Add", &[a.clone(), b.clone()]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_f32_vec(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        let y = run("Sub", &[b.clone(), a.clone()]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![9.0, 18.0, 27.0, 6.0, 15.0, 24.0]);
        let y = run("Mul", &[a.clone(), c.clone()]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![2.0, 4.0, 6.0, 16.0, 20.0, 24.0]);
        let y = run("Div", &[a.clone(), c.clone()]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]);
        let y = run("Pow", &[a.clone(), c.clone()]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 4.0, 9.0, 256.0, 625.0, 1296.0]);
        // [2, 1] with [3] broadcasts to [2, 3].
        let y = run("Add", &[c.clone(), b.clone()]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_f32_vec(), vec![12.0, 22.0, 32.0, 14.0, 24.0, 34.0]);
        // A scalar.
        let s = f(ndarray::arr0(2.0f32).into_dyn());
        let y = run("Mul", &[s, a.clone()]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        // Integer exponent with a float base.
        let y = run("Pow", &[a.clone(), i(&[2], &[1])]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 4.0, 9.0, 16.0, 25.0, 36.0]);
        // Shapes that do not broadcast.
        let bad = f(arr1(&[1.0f32, 2.0]).into_dyn());
        assert!(run("Add", &[a.clone(), bad.clone()]).is_err());
        assert!(run("Max", &[a, bad]).is_err());
    }

    #[test]
    fn large_tensors_take_the_parallel_paths() {
        let a = random_input(&[4, 64, 32, 16], 1, -1.0, 1.0);
        let b = random_input(&[64, 1, 16], 2, -1.0, 1.0);
        let y = run("Mul", &[f(a.clone()), f(b.clone())]).unwrap();
        let Value::F32(y) = y else { panic!() };
        let bb = b.broadcast(a.shape()).unwrap();
        let expect = &a * &bb;
        assert_eq!(y, expect);
        let y = run("Add", &[f(a.clone()), f(a.clone())]).unwrap();
        assert_eq!(y, f(&a * 2.0));
    }

    #[test]
    fn integer_arithmetic_for_shapes() {
        let a = i(&[7, -7, 6, 9], &[4]);
        let b = i(&[2, 2, -4, 3], &[4]);
        assert_eq!(
            run("Add", &[a.clone(), b.clone()]).unwrap(),
            i(&[9, -5, 2, 12], &[4])
        );
        assert_eq!(
            run("Sub", &[a.clone(), b.clone()]).unwrap(),
            i(&[5, -9, 10, 6], &[4])
        );
        assert_eq!(
            run("Mul", &[a.clone(), b.clone()]).unwrap(),
            i(&[14, -14, -24, 27], &[4])
        );
        // Truncation toward zero.
        assert_eq!(
            run("Div", &[a.clone(), b.clone()]).unwrap(),
            i(&[3, -3, -1, 3], &[4])
        );
        assert!(run("Div", &[a.clone(), i(&[0], &[1])]).is_err());
        assert!(run("Add", &[a.clone(), f(arr1(&[1.0f32]).into_dyn())]).is_err());
        assert_eq!(
            run("Max", &[a.clone(), b.clone()]).unwrap(),
            i(&[7, 2, 6, 9], &[4])
        );
        assert_eq!(
            run("Min", &[a.clone(), b.clone()]).unwrap(),
            i(&[2, -7, -4, 3], &[4])
        );
        assert_eq!(
            run("Sum", &[a.clone(), b.clone(), a]).unwrap(),
            i(&[16, -12, 8, 21], &[4])
        );
    }

    #[test]
    fn legacy_broadcast_axis() {
        let a = f(random_input(&[2, 3, 4], 1, -1.0, 1.0));
        let b = f(arr1(&[1.0f32, 2.0, 3.0]).into_dyn());
        let mut spec = NodeSpec::new(
            "Add",
            Attrs::new()
                .with("broadcast", Attr::Int(1))
                .with("axis", Attr::Int(1)),
            2,
        );
        spec.opset = 6;
        let y = run_spec(&spec, &[a.clone(), b.clone()]).unwrap();
        let (Value::F32(av), Value::F32(yv)) = (&a, &y) else {
            panic!()
        };
        assert_eq!(yv[[1, 2, 3]], av[[1, 2, 3]] + 3.0);
        crate::testing::check_gradients_spec(&spec, vec![a.clone(), b], &[0, 1], 1e-2);
        let bad = NodeSpec {
            attrs: Attrs::new().with("broadcast", Attr::Int(2)),
            ..spec
        };
        let e = build(&bad).unwrap_err();
        assert!(e.0.contains("broadcast"), "{e}");
    }

    #[test]
    fn variadic_max_min_sum_mean() {
        let a = f(arr1(&[1.0f32, 5.0, 3.0]).into_dyn());
        let b = f(arr1(&[4.0f32, 2.0, 3.0]).into_dyn());
        let c = f(ndarray::arr0(2.5f32).into_dyn());
        assert_eq!(
            run("Max", &[a.clone(), b.clone(), c.clone()])
                .unwrap()
                .to_f32_vec(),
            vec![4.0, 5.0, 3.0]
        );
        assert_eq!(
            run("Min", &[a.clone(), b.clone(), c.clone()])
                .unwrap()
                .to_f32_vec(),
            vec![1.0, 2.0, 2.5]
        );
        assert_eq!(
            run("Sum", &[a.clone(), b.clone(), c.clone()])
                .unwrap()
                .to_f32_vec(),
            vec![7.5, 9.5, 8.5]
        );
        assert_eq!(
            run("Mean", &[a.clone(), b.clone()]).unwrap().to_f32_vec(),
            vec![2.5, 3.5, 3.0]
        );
        assert_eq!(run("Max", std::slice::from_ref(&a)).unwrap(), a);
        // Ties go to the first operand.
        let op = build(&NodeSpec::new("Max", Attrs::new(), 2)).unwrap();
        let y = op.forward(&[Some(&a), Some(&b)]).unwrap();
        let g = ArrayD::from_elem(IxDyn(&[3]), 1.0f32);
        let gr = op
            .backward(&[Some(&a), Some(&b)], &[&y[0]], &[Some(&g)])
            .unwrap();
        assert_eq!(
            gr[0]
                .as_ref()
                .unwrap()
                .to_owned()
                .into_raw_vec_and_offset()
                .0,
            vec![0.0, 1.0, 1.0]
        );
        assert_eq!(
            gr[1]
                .as_ref()
                .unwrap()
                .to_owned()
                .into_raw_vec_and_offset()
                .0,
            vec![1.0, 0.0, 0.0]
        );
        assert!(run("Sum", &[]).is_err());
    }

    #[test]
    fn prelu_where_comparisons_logic() {
        let x = f(arr2(&[[-2.0f32, 1.0], [3.0, -4.0]]).into_dyn());
        let s = f(arr1(&[0.5f32, 0.25]).into_dyn());
        assert_eq!(
            run("PRelu", &[x.clone(), s]).unwrap().to_f32_vec(),
            vec![-1.0, 1.0, 3.0, -1.0]
        );
        // One slope per channel of an NCHW tensor.
        let x4 = f(random_input(&[1, 2, 2, 2], 3, -1.0, 1.0));
        let s2 = f(arr1(&[0.1f32, 0.2]).into_dyn());
        let y = run("PRelu", &[x4.clone(), s2]).unwrap();
        assert_eq!(y.shape(), &[1, 2, 2, 2]);
        assert!(run(
            "PRelu",
            &[x.clone(), f(arr1(&[1.0f32, 2.0, 3.0]).into_dyn())]
        )
        .is_err());

        let c = i(&[1, 0], &[2]);
        let a = f(arr2(&[[1.0f32, 2.0], [3.0, 4.0]]).into_dyn());
        let b = f(ndarray::arr0(-1.0f32).into_dyn());
        assert_eq!(
            run("Where", &[c.clone(), a.clone(), b.clone()])
                .unwrap()
                .to_f32_vec(),
            vec![1.0, -1.0, 3.0, -1.0]
        );
        assert_eq!(
            run("Where", &[c, i(&[1, 2], &[2]), i(&[7], &[1])]).unwrap(),
            i(&[1, 7], &[2])
        );

        let p = f(arr1(&[1.0f32, 2.0, 3.0]).into_dyn());
        let q = f(arr1(&[2.0f32, 2.0, 2.0]).into_dyn());
        assert_eq!(
            run("Equal", &[p.clone(), q.clone()]).unwrap(),
            i(&[0, 1, 0], &[3])
        );
        assert_eq!(
            run("Less", &[p.clone(), q.clone()]).unwrap(),
            i(&[1, 0, 0], &[3])
        );
        assert_eq!(
            run("Greater", &[p.clone(), q.clone()]).unwrap(),
            i(&[0, 0, 1], &[3])
        );
        assert_eq!(
            run("LessOrEqual", &[p.clone(), q.clone()]).unwrap(),
            i(&[1, 1, 0], &[3])
        );
        assert_eq!(
            run("GreaterOrEqual", &[p.clone(), q]).unwrap(),
            i(&[0, 1, 1], &[3])
        );
        assert_eq!(
            run("Equal", &[i(&[1, 2], &[2]), i(&[2], &[1])]).unwrap(),
            i(&[0, 1], &[2])
        );
        assert!(run("Less", &[p, i(&[2], &[1])]).is_err());
        let t = i(&[1, 1, 0, 0], &[4]);
        let u = i(&[1, 0, 1, 0], &[4]);
        assert_eq!(
            run("And", &[t.clone(), u.clone()]).unwrap(),
            i(&[1, 0, 0, 0], &[4])
        );
        assert_eq!(
            run("Or", &[t.clone(), u.clone()]).unwrap(),
            i(&[1, 1, 1, 0], &[4])
        );
        assert_eq!(run("Xor", &[t.clone(), u]).unwrap(), i(&[0, 1, 1, 0], &[4]));
        assert_eq!(run("Not", &[t]).unwrap(), i(&[0, 0, 1, 1], &[4]));
        let op = build(&NodeSpec::new("Less", Attrs::new(), 2)).unwrap();
        assert!(!op.is_differentiable());
        let pow = build(&NodeSpec::new("Pow", Attrs::new(), 2)).unwrap();
        assert!(pow.is_parameter_input(0) && !pow.is_parameter_input(1));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[2, 3], &[2, 3]),
            (&[2, 3, 4], &[4]),
            (&[3, 1], &[1, 4]),
            (&[2, 1, 3], &[]),
            (&[1], &[2, 3]),
        ];
        for (k, (sa, sb)) in shapes.iter().enumerate() {
            let a = random_input(sa, k as u64, -2.0, 2.0);
            let b = random_input(sb, 10 + k as u64, -2.0, 2.0);
            for op in ["Add", "Sub", "Mul", "Max", "Min", "Sum", "Mean"] {
                check_gradients(
                    op,
                    Attrs::new(),
                    vec![f(a.clone()), f(b.clone())],
                    &[0, 1],
                    1e-2,
                );
            }
            let bpos = random_input(sb, 20 + k as u64, 0.5, 2.0);
            check_gradients(
                "Div",
                Attrs::new(),
                vec![f(a.clone()), f(bpos.clone())],
                &[0, 1],
                1e-2,
            );
            let apos = random_input(sa, 30 + k as u64, 0.5, 2.0);
            check_gradients(
                "Pow",
                Attrs::new(),
                vec![f(apos), f(b.clone())],
                &[0, 1],
                2e-2,
            );
        }
        let a = random_input(&[2, 3], 1, -1.0, 1.0);
        let b = random_input(&[3], 2, -1.0, 1.0);
        let c = random_input(&[2, 1], 3, -1.0, 1.0);
        for op in ["Max", "Min", "Sum", "Mean"] {
            check_gradients(
                op,
                Attrs::new(),
                vec![f(a.clone()), f(b.clone()), f(c.clone())],
                &[0, 1, 2],
                1e-2,
            );
        }
        check_gradients(
            "Pow",
            Attrs::new(),
            vec![f(a.clone()), i(&[3], &[1])],
            &[0],
            1e-2,
        );
        check_gradients(
            "Pow",
            Attrs::new(),
            vec![f(a.clone()), f(ndarray::arr0(2.0f32).into_dyn())],
            &[0],
            1e-2,
        );
        let x = random_input(&[2, 3, 2, 2], 5, -1.0, 1.0);
        for s in [
            random_input(&[3, 1, 1], 6, 0.0, 0.5),
            random_input(&[3], 6, 0.0, 0.5),
            random_input(&[1], 7, 0.0, 0.5),
        ] {
            check_gradients(
                "PRelu",
                Attrs::new(),
                vec![f(x.clone()), f(s)],
                &[0, 1],
                1e-2,
            );
        }
        let cond = i(&[1, 0, 0], &[3]);
        check_gradients(
            "Where",
            Attrs::new(),
            vec![cond.clone(), f(a.clone()), f(c.clone())],
            &[1, 2],
            1e-2,
        );
        check_gradients("Where", Attrs::new(), vec![cond, f(b), f(a)], &[1, 2], 1e-2);
    }
}
