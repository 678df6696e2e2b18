//! Shape and data-movement operators: `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`,
//! `Transpose`, `Split`, `Slice`, `Gather`, `Concat`, `Shape`, `Size`, `Cast`, `CastLike`,
//! `ConstantOfShape`, `Expand`, `Constant`, `Range` and `Tile`.
//!
//! Every operator moves or copies elements without arithmetic, so each works on float and
//! integer tensors alike (shape subgraphs run them on small `i64` tensors at run time); the
//! backward passes route the gradient back to where each element came from (a reshape, an
//! inverse permutation, a scatter-add, a sum over broadcast or tiled copies).

use ndarray::{concatenate, ArrayD, ArrayViewD, Axis, IxDyn, Slice as NdSlice};

use crate::broadcast::{broadcast_shape, unbroadcast};
use crate::error::{OpError, OpResult};
use crate::op::{first_grad, grad_or_zeros, optional, required, Attr, Builder, NodeSpec, Operator};
use crate::value::{normalize_axis, reshape, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("Reshape", build_reshape),
    ("Flatten", build_flatten),
    ("Squeeze", build_squeeze),
    ("Unsqueeze", build_unsqueeze),
    ("Transpose", build_transpose),
    ("Split", build_split),
    ("Slice", build_slice),
    ("Gather", build_gather),
    ("Concat", build_concat),
    ("Shape", build_shape),
    ("Size", build_size),
    ("Cast", build_cast),
    ("CastLike", build_cast_like),
    ("ConstantOfShape", build_constant_of_shape),
    ("Expand", build_expand),
    ("Constant", build_constant),
    ("Range", build_range),
    ("Tile", build_tile),
];

/// The most elements an operator that creates data (`ConstantOfShape`, `Expand`, `Tile`,
/// `Range`, `Gather`, `Pad`, `Resize`) may produce: 2^28 (1 GiB of `f32`). Larger requests are
/// refused with an [`OpError`] instead of an allocation failure.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// The number of elements of a tensor of `shape`, or an error naming `what` when the count
/// overflows or exceeds [`MAX_ELEMENTS`].
pub fn checked_elements(shape: &[usize], what: &str) -> OpResult<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            OpError(format!(
                "{what} of shape {shape:?} would hold more than {MAX_ELEMENTS} elements"
            ))
        })?;
    Ok(n)
}

/// Applies a generic expression to the array inside a [`Value`], keeping its element type.
macro_rules! each_type {
    ($v:expr, $a:ident => $e:expr) => {
        match $v {
            Value::F32($a) => Value::F32($e),
            Value::I64($a) => Value::I64($e),
        }
    };
}

/// `a` in standard (row-major) layout, copying only when it is not.
fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// A view copied into a standard-layout array.
fn owned<T: Clone>(v: ArrayViewD<'_, T>) -> ArrayD<T> {
    v.as_standard_layout().into_owned()
}

/// Non-negative dimensions from a shape tensor's values.
fn dims(values: &[i64], what: &str) -> OpResult<Vec<usize>> {
    values
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| OpError(format!("{what} holds {d}, expected non-negative sizes")))
        })
        .collect()
}

/// Normalizes a list of axes against `rank`, refusing repeats.
fn normalize_axes(axes: &[i64], rank: usize, what: &str) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank, what)?;
        if out.contains(&n) {
            return Err(OpError(format!("{what} {axes:?} repeats axis {a}")));
        }
        out.push(n);
    }
    Ok(out)
}

/// Input `i` as integers when present and not empty (ONNX marks an omitted optional input by
/// an empty name, some exporters by an empty tensor).
fn optional_ints(inputs: &[Option<&Value>], i: usize, what: &str) -> OpResult<Option<Vec<i64>>> {
    match optional(inputs, i) {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => Ok(Some(v.to_i64_vec(what)?)),
        None => Ok(None),
    }
}

/// The backward pass of operators that only change the shape: the gradient reshaped to the
/// data input's shape.
fn reshape_back(
    inputs: &[Option<&Value>],
    output_grads: &[Option<&ArrayD<f32>>],
) -> OpResult<Vec<Option<ArrayD<f32>>>> {
    let mut grads = vec![None; inputs.len()];
    if let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) {
        grads[0] = Some(reshape(g, x.shape())?);
    }
    Ok(grads)
}

/// No gradient for any input.
fn no_grads(inputs: &[Option<&Value>]) -> Vec<Option<ArrayD<f32>>> {
    vec![None; inputs.len()]
}

// ---------------------------------------------------------------------------------------------
// Reshape

/// `Reshape`: the data with the shape of input 1 (`0` copies the input's dimension unless
/// `allowzero`, one `-1` is inferred).
#[derive(Debug)]
struct Reshape {
    allowzero: bool,
}

fn build_reshape(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let allowzero = spec.opset >= 14 && spec.attrs.int_or("allowzero", 0)? != 0;
    Ok(Box::new(Reshape { allowzero }))
}

/// The shape a `Reshape` to `shape` gives a tensor of shape `input`.
fn reshape_target(input: &[usize], shape: &[i64], allowzero: bool) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 => {
                if infer.is_some() {
                    return Err(OpError(format!(
                        "the target shape {shape:?} has more than one -1"
                    )));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                OpError(format!(
                    "the target shape {shape:?} copies dimension {i} (0) of the input's shape \
                     {input:?}, which has no such dimension"
                ))
            })?),
            d if d < 0 => {
                return Err(OpError(format!(
                    "the target shape {shape:?} holds {d}, expected sizes, 0 or -1"
                )))
            }
            d => out.push(usize::try_from(d).map_err(|_| OpError(format!("size {d} too large")))?),
        }
    }
    if allowzero && infer.is_some() && shape.contains(&0) {
        return Err(OpError(format!(
            "the target shape {shape:?} has both 0 and -1 with allowzero = 1"
        )));
    }
    let total: usize = input.iter().product();
    if let Some(i) = infer {
        let known = out
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != i)
            .try_fold(1usize, |p, (_, &d)| p.checked_mul(d))
            .unwrap_or(0);
        if known == 0 || !total.is_multiple_of(known) {
            return Err(OpError(format!(
                "cannot infer the -1 of the target shape {shape:?} for an input of shape \
                 {input:?} ({total} elements)"
            )));
        }
        out[i] = total / known;
    }
    let n = out.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
    if n != Some(total) {
        return Err(OpError(format!(
            "cannot reshape a tensor of shape {input:?} ({total} elements) to {shape:?}"
        )));
    }
    Ok(out)
}

impl Operator for Reshape {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let shape = required(inputs, 1, "shape")?.to_i64_vec("the target shape")?;
        let target = reshape_target(x.shape(), &shape, self.allowzero)?;
        Ok(vec![x.reshaped(&target)?])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        reshape_back(inputs, output_grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Flatten

/// `Flatten`: a 2-D tensor of the dimensions before `axis` and from `axis` on.
#[derive(Debug)]
struct Flatten {
    axis: i64,
}

fn build_flatten(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Flatten {
        axis: spec.attrs.int_or("axis", 1)?,
    }))
}

impl Operator for Flatten {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "input")?;
        let rank = x.shape().len();
        let axis = if self.axis < 0 {
            self.axis + rank as i64
        } else {
            self.axis
        };
        if !(0..=rank as i64).contains(&axis) {
            return Err(OpError(format!(
                "axis {} is out of range for a tensor of rank {rank} (expected -{rank}..={rank})",
                self.axis
            )));
        }
        let axis = axis as usize;
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis..].iter().product();
        Ok(vec![x.reshaped(&[outer, inner])?])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        reshape_back(inputs, output_grads)
    }
}

// ---------------------------------------------------------------------------------------------
// Squeeze, Unsqueeze

/// `Squeeze` (`unsqueeze: false`) or `Unsqueeze`: axes from input 1 (opset 13 on) or the
/// `axes` attribute.
#[derive(Debug)]
struct Squeeze {
    unsqueeze: bool,
    attr_axes: Option<Vec<i64>>,
}

fn build_squeeze(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Squeeze {
        unsqueeze: false,
        attr_axes: spec.attrs.ints("axes")?,
    }))
}

fn build_unsqueeze(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let attr_axes = spec.attrs.ints("axes")?;
    if spec.opset < 13 && attr_axes.is_none() {
        return Err(OpError(
            "Unsqueeze needs the attribute `axes` before opset 13".into(),
        ));
    }
    Ok(Box::new(Squeeze {
        unsqueeze: true,
        attr_axes,
    }))
}

impl Operator for Squeeze {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let axes = match optional(inputs, 1) {
            Some(v) => Some(v.to_i64_vec("axes")?),
            None => self.attr_axes.clone(),
        };
        let shape = x.shape();
        let out: Vec<usize> = if self.unsqueeze {
            let axes = axes.ok_or_else(|| OpError("Unsqueeze needs axes (input 1)".into()))?;
            let rank = shape.len() + axes.len();
            let axes = normalize_axes(&axes, rank, "axis")?;
            let mut rest = shape.iter();
            (0..rank)
                .map(|k| {
                    if axes.contains(&k) {
                        1
                    } else {
                        rest.next().copied().unwrap_or(1)
                    }
                })
                .collect()
        } else {
            match axes {
                None => shape.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let axes = normalize_axes(&axes, shape.len(), "axis")?;
                    for &a in &axes {
                        if shape[a] != 1 {
                            return Err(OpError(format!(
                                "cannot squeeze axis {a} of shape {shape:?}: its size is not 1"
                            )));
                        }
                    }
                    shape
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| !axes.contains(k))
                        .map(|(_, &d)| d)
                        .collect()
                }
            }
        };
        Ok(vec![x.reshaped(&out)?])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        reshape_back(inputs, output_grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Transpose

/// `Transpose` by `perm` (default: the axes reversed).
#[derive(Debug)]
struct Transpose {
    perm: Option<Vec<usize>>,
}

fn build_transpose(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let perm = match spec.attrs.ints("perm")? {
        None => None,
        Some(p) => {
            let n = p.len();
            let mut seen = vec![false; n];
            let mut out = Vec::with_capacity(n);
            for &a in &p {
                let k = usize::try_from(a)
                    .ok()
                    .filter(|&k| k < n && !seen[k])
                    .ok_or_else(|| OpError(format!("perm {p:?} is not a permutation of 0..{n}")))?;
                seen[k] = true;
                out.push(k);
            }
            Some(out)
        }
    };
    Ok(Box::new(Transpose { perm }))
}

impl Transpose {
    fn perm(&self, rank: usize) -> OpResult<Vec<usize>> {
        match &self.perm {
            None => Ok((0..rank).rev().collect()),
            Some(p) if p.len() == rank => Ok(p.clone()),
            Some(p) => Err(OpError(format!(
                "perm {p:?} has {} axes, the input has rank {rank}",
                p.len()
            ))),
        }
    }
}

impl Operator for Transpose {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let perm = self.perm(x.shape().len())?;
        Ok(vec![
            each_type!(x, a => owned(a.view().permuted_axes(IxDyn(&perm)))),
        ])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) {
            let perm = self.perm(x.ndim())?;
            if g.ndim() != perm.len() {
                return Err(OpError(format!(
                    "gradient of rank {} for a transpose of rank {}",
                    g.ndim(),
                    perm.len()
                )));
            }
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            grads[0] = Some(owned(g.view().permuted_axes(IxDyn(&inv))));
        }
        Ok(grads)
    }
}

// ---------------------------------------------------------------------------------------------
// Split

/// `Split` along `axis`: sizes from input 1 (opset 13 on) or the `split` attribute, else
/// `num_outputs` (opset 18) parts of `ceil(dim / n)`, else equal parts, one per output.
#[derive(Debug)]
struct Split {
    axis: i64,
    attr_split: Option<Vec<i64>>,
    num_outputs: Option<usize>,
    n_outputs: usize,
}

fn build_split(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let num_outputs = match spec.attrs.int("num_outputs")? {
        None => None,
        Some(n) if n >= 1 && n as usize == spec.n_outputs => Some(n as usize),
        Some(n) => {
            return Err(OpError(format!(
                "num_outputs is {n}, the node declares {} outputs",
                spec.n_outputs
            )))
        }
    };
    if spec.n_outputs == 0 {
        return Err(OpError("Split declares no output".into()));
    }
    Ok(Box::new(Split {
        axis: spec.attrs.int_or("axis", 0)?,
        attr_split: spec.attrs.ints("split")?,
        num_outputs,
        n_outputs: spec.n_outputs,
    }))
}

impl Split {
    fn sizes(&self, inputs: &[Option<&Value>], dim: usize) -> OpResult<Vec<usize>> {
        let n = self.n_outputs;
        let sizes = match optional_ints(inputs, 1, "split")?.or_else(|| self.attr_split.clone()) {
            Some(s) => dims(&s, "split")?,
            None => match self.num_outputs {
                Some(k) => {
                    let chunk = dim.div_ceil(k);
                    let mut left = dim;
                    (0..k)
                        .map(|_| {
                            let c = chunk.min(left);
                            left -= c;
                            c
                        })
                        .collect()
                }
                None => {
                    if !dim.is_multiple_of(n) {
                        return Err(OpError(format!(
                            "cannot split an axis of size {dim} into {n} equal parts"
                        )));
                    }
                    vec![dim / n; n]
                }
            },
        };
        if sizes.len() != n || sizes.iter().sum::<usize>() != dim {
            return Err(OpError(format!(
                "split sizes {sizes:?} do not divide an axis of size {dim} into {n} outputs"
            )));
        }
        Ok(sizes)
    }
}

impl Operator for Split {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "input")?;
        let axis = normalize_axis(self.axis, x.shape().len(), "axis")?;
        let sizes = self.sizes(inputs, x.shape()[axis])?;
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for s in sizes {
            let sl = NdSlice::from(start..start + s);
            out.push(each_type!(x, a => owned(a.slice_axis(Axis(axis), sl))));
            start += s;
        }
        Ok(out)
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if let Some(Value::F32(x)) = optional(inputs, 0) {
            if output_grads.iter().all(|g| g.is_none()) {
                return Ok(grads);
            }
            let axis = normalize_axis(self.axis, x.ndim(), "axis")?;
            let parts: Vec<ArrayD<f32>> = (0..outputs.len())
                .map(|k| grad_or_zeros(output_grads, outputs, k))
                .collect::<OpResult<_>>()?;
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            grads[0] = Some(concatenate(Axis(axis), &views)?);
        }
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Slice

/// `Slice`'s `(starts, ends, axes)` attributes (before opset 10).
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// `Slice`: starts, ends, axes, steps from inputs 1-4 (opset 10 on) or attributes (before).
#[derive(Debug)]
struct Slice {
    /// `(starts, ends, axes)` before opset 10.
    attrs: Option<SliceAttrs>,
}

fn build_slice(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let attrs = if spec.opset < 10 {
        let starts = spec.attrs.ints("starts")?;
        let ends = spec.attrs.ints("ends")?;
        match (starts, ends) {
            (Some(s), Some(e)) => Some((s, e, spec.attrs.ints("axes")?)),
            _ => {
                return Err(OpError(
                    "Slice needs `starts` and `ends` before opset 10".into(),
                ))
            }
        }
    } else {
        None
    };
    Ok(Box::new(Slice { attrs }))
}

/// The ndarray slice of one axis of size `dim` for an ONNX `(start, end, step)`.
fn slice_axis_plan(dim: usize, start: i64, end: i64, step: i64) -> OpResult<NdSlice> {
    if step == 0 {
        return Err(OpError("Slice step 0 is not allowed".into()));
    }
    let d = dim as i128;
    let (mut s, mut e, t) = (start as i128, end as i128, step as i128);
    if s < 0 {
        s += d;
    }
    if e < 0 {
        e += d;
    }
    let empty = NdSlice::new(0, Some(0), 1);
    if d == 0 {
        return Ok(empty);
    }
    if t > 0 {
        s = s.clamp(0, d);
        e = e.clamp(0, d);
        if e <= s {
            return Ok(empty);
        }
        let n = (e - s - 1) / t + 1;
        let step = if n <= 1 { 1 } else { t };
        Ok(NdSlice::new(
            s as isize,
            Some((s + (n - 1) * step + 1) as isize),
            step as isize,
        ))
    } else {
        s = s.clamp(0, d - 1);
        e = e.clamp(-1, d - 1);
        if s <= e {
            return Ok(empty);
        }
        let n = (s - e - 1) / (-t) + 1;
        let step = if n <= 1 { -1 } else { t };
        let lo = s + (n - 1) * step;
        Ok(NdSlice::new(
            lo as isize,
            Some((s + 1) as isize),
            step as isize,
        ))
    }
}

impl Slice {
    fn plan(&self, inputs: &[Option<&Value>], shape: &[usize]) -> OpResult<Vec<NdSlice>> {
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                required(inputs, 1, "starts")?.to_i64_vec("starts")?,
                required(inputs, 2, "ends")?.to_i64_vec("ends")?,
                optional_ints(inputs, 3, "axes")?,
                optional_ints(inputs, 4, "steps")?,
            ),
        };
        let n = starts.len();
        let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; n]);
        if ends.len() != n || axes.len() != n || steps.len() != n {
            return Err(OpError(format!(
                "Slice's starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} \
                 differ in length"
            )));
        }
        let axes = normalize_axes(&axes, shape.len(), "axis")?;
        let mut plan = vec![NdSlice::from(..); shape.len()];
        for k in 0..n {
            plan[axes[k]] = slice_axis_plan(shape[axes[k]], starts[k], ends[k], steps[k])?;
        }
        Ok(plan)
    }
}

impl Operator for Slice {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let plan = self.plan(inputs, x.shape())?;
        Ok(vec![
            each_type!(x, a => owned(a.slice_each_axis(|d| plan[d.axis.index()]))),
        ])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) {
            let plan = self.plan(inputs, x.shape())?;
            let mut dx = ArrayD::zeros(x.shape());
            let mut region = dx.slice_each_axis_mut(|d| plan[d.axis.index()]);
            if region.shape() != g.shape() {
                return Err(OpError(format!(
                    "gradient of shape {:?} for a slice of shape {:?}",
                    g.shape(),
                    region.shape()
                )));
            }
            region.assign(g);
            grads[0] = Some(dx);
        }
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Gather

/// `Gather` along `axis` with indices of any rank (negative indices count from the end).
#[derive(Debug)]
struct Gather {
    axis: i64,
}

fn build_gather(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Gather {
        axis: spec.attrs.int_or("axis", 0)?,
    }))
}

impl Gather {
    /// The axis, the indices normalized into `0..dim`, and the output shape.
    fn plan(
        &self,
        data_shape: &[usize],
        indices: &Value,
    ) -> OpResult<(usize, Vec<usize>, Vec<usize>)> {
        let axis = normalize_axis(self.axis, data_shape.len(), "axis")?;
        let dim = data_shape[axis];
        let idx = indices
            .to_i64_vec("indices")?
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + dim as i64 } else { i };
                usize::try_from(j).ok().filter(|&j| j < dim).ok_or_else(|| {
                    OpError(format!(
                        "index {i} is out of range for axis {axis} of size {dim}"
                    ))
                })
            })
            .collect::<OpResult<Vec<usize>>>()?;
        let mut out = data_shape[..axis].to_vec();
        out.extend_from_slice(indices.shape());
        out.extend_from_slice(&data_shape[axis + 1..]);
        checked_elements(&out, "Gather's output")?;
        Ok((axis, idx, out))
    }
}

impl Operator for Gather {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let (axis, idx, out) = self.plan(x.shape(), indices)?;
        Ok(vec![
            each_type!(x, a => reshape(&a.select(Axis(axis), &idx), &out)?),
        ])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        let (Some(g), Some(Value::F32(x)), Some(indices)) = (
            first_grad(output_grads),
            optional(inputs, 0),
            optional(inputs, 1),
        ) else {
            return Ok(grads);
        };
        let (axis, idx, _) = self.plan(x.shape(), indices)?;
        let mut flat_shape = x.shape().to_vec();
        flat_shape[axis] = idx.len();
        let g = reshape(g, &flat_shape)?;
        let mut dx = ArrayD::<f32>::zeros(x.shape());
        for (j, &i) in idx.iter().enumerate() {
            let mut dst = dx.index_axis_mut(Axis(axis), i);
            dst += &g.index_axis(Axis(axis), j);
        }
        grads[0] = Some(dx);
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Concat

/// `Concat` of every input along `axis`.
#[derive(Debug)]
struct Concat {
    axis: i64,
}

fn build_concat(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let axis = spec
        .attrs
        .int("axis")?
        .ok_or_else(|| OpError("Concat needs the attribute `axis`".into()))?;
    Ok(Box::new(Concat { axis }))
}

impl Operator for Concat {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let xs: Vec<&Value> = inputs.iter().flatten().copied().collect();
        let first = xs
            .first()
            .ok_or_else(|| OpError("Concat has no input".into()))?;
        let rank = first.shape().len();
        if rank == 0 {
            return Err(OpError("Concat of scalars (rank 0) is not defined".into()));
        }
        let axis = normalize_axis(self.axis, rank, "axis")?;
        for x in &xs {
            let s = x.shape();
            let fits = s.len() == rank
                && s.iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(k, (a, b))| k == axis || a == b);
            if !fits {
                return Err(OpError(format!(
                    "cannot concatenate shapes {:?} and {s:?} along axis {axis}",
                    first.shape()
                )));
            }
        }
        let out = match first {
            Value::F32(_) => {
                let views = xs
                    .iter()
                    .map(|x| x.f32("a Concat input").map(|a| a.view()))
                    .collect::<OpResult<Vec<_>>>()?;
                Value::F32(concatenate(Axis(axis), &views)?)
            }
            Value::I64(_) => {
                let views = xs
                    .iter()
                    .map(|x| x.i64("a Concat input").map(|a| a.view()))
                    .collect::<OpResult<Vec<_>>>()?;
                Value::I64(concatenate(Axis(axis), &views)?)
            }
        };
        Ok(vec![out])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        let Some(g) = first_grad(output_grads) else {
            return Ok(grads);
        };
        let axis = normalize_axis(self.axis, g.ndim(), "axis")?;
        let mut start = 0;
        for (k, x) in inputs.iter().enumerate() {
            let Some(x) = x else { continue };
            let len = x.shape().get(axis).copied().unwrap_or(0);
            if start + len > g.shape()[axis] {
                return Err(OpError(format!(
                    "gradient of shape {:?} is too small for Concat's inputs",
                    g.shape()
                )));
            }
            if x.is_float() {
                grads[k] = Some(owned(
                    g.slice_axis(Axis(axis), NdSlice::from(start..start + len)),
                ));
            }
            start += len;
        }
        Ok(grads)
    }
}

// ---------------------------------------------------------------------------------------------
// Shape, Size

/// `Shape` (dimensions `start..end`, opset 15) or `Size`: integer outputs, no gradient.
#[derive(Debug)]
struct ShapeOf {
    size: bool,
    start: i64,
    end: Option<i64>,
}

fn build_shape(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let (start, end) = if spec.opset >= 15 {
        (spec.attrs.int_or("start", 0)?, spec.attrs.int("end")?)
    } else {
        (0, None)
    };
    Ok(Box::new(ShapeOf {
        size: false,
        start,
        end,
    }))
}

fn build_size(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(ShapeOf {
        size: true,
        start: 0,
        end: None,
    }))
}

impl Operator for ShapeOf {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let shape = x.shape();
        if self.size {
            return Ok(vec![Value::I64(ArrayD::from_elem(
                IxDyn(&[]),
                x.len() as i64,
            ))]);
        }
        let r = shape.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(self.start);
        let end = clamp(self.end.unwrap_or(r)).max(start);
        let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
        Ok(vec![Value::I64(ArrayD::from_shape_vec(
            IxDyn(&[dims.len()]),
            dims,
        )?)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        _output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        Ok(no_grads(inputs))
    }

    fn is_differentiable(&self) -> bool {
        false
    }

    fn is_parameter_input(&self, _index: usize) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Cast, CastLike

/// The element type a `Cast` converts to (`TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CastTo {
    /// FLOAT, DOUBLE, FLOAT16, BFLOAT16: stored as `f32`.
    Float,
    /// INT8 .. UINT64 (wrapping to the width), BOOL (non-zero to 1).
    Int(IntType),
}

/// An integer element type, stored as `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntType {
    U8,
    I8,
    U16,
    I16,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl IntType {
    /// Wraps an `i64` to this width (as C's conversions and NumPy's `astype` do).
    fn narrow(self, v: i64) -> i64 {
        match self {
            IntType::U8 => v as u8 as i64,
            IntType::I8 => v as i8 as i64,
            IntType::U16 => v as u16 as i64,
            IntType::I16 => v as i16 as i64,
            IntType::I32 => v as i32 as i64,
            IntType::U32 => v as u32 as i64,
            IntType::I64 | IntType::U64 => v,
            IntType::Bool => (v != 0) as i64,
        }
    }
}

/// The target of `to` (a `TensorProto.DataType` number).
fn cast_target(to: i64) -> OpResult<CastTo> {
    Ok(match to {
        1 | 10 | 11 | 16 => CastTo::Float,
        2 => CastTo::Int(IntType::U8),
        3 => CastTo::Int(IntType::I8),
        4 => CastTo::Int(IntType::U16),
        5 => CastTo::Int(IntType::I16),
        6 => CastTo::Int(IntType::I32),
        7 => CastTo::Int(IntType::I64),
        9 => CastTo::Int(IntType::Bool),
        12 => CastTo::Int(IntType::U32),
        13 => CastTo::Int(IntType::U64),
        other => {
            return Err(OpError(format!(
                "Cast to data type {other} is not supported (expected a float, integer or bool \
                 type: 1-7, 9-13 or 16)"
            )))
        }
    })
}

/// `Cast` to a fixed type, or `CastLike` (`to: None`: the type of input 1).
#[derive(Debug)]
struct Cast {
    to: Option<CastTo>,
}

fn build_cast(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let to = spec
        .attrs
        .int("to")?
        .ok_or_else(|| OpError("Cast needs the attribute `to`".into()))?;
    Ok(Box::new(Cast {
        to: Some(cast_target(to)?),
    }))
}

fn build_cast_like(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Cast { to: None }))
}

impl Cast {
    fn target(&self, inputs: &[Option<&Value>]) -> OpResult<CastTo> {
        match self.to {
            Some(t) => Ok(t),
            None => Ok(match required(inputs, 1, "target_type")? {
                Value::F32(_) => CastTo::Float,
                Value::I64(_) => CastTo::Int(IntType::I64),
            }),
        }
    }
}

impl Operator for Cast {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "input")?;
        let out = match (self.target(inputs)?, x) {
            (CastTo::Float, Value::F32(a)) => Value::F32(a.clone()),
            (CastTo::Float, Value::I64(a)) => Value::F32(a.mapv(|v| v as f32)),
            (CastTo::Int(IntType::Bool), Value::F32(a)) => {
                Value::I64(a.mapv(|v| (v != 0.0) as i64))
            }
            // Truncation toward zero (NaN to 0, saturating at the ends of i64), then wrapping.
            (CastTo::Int(t), Value::F32(a)) => Value::I64(a.mapv(|v| t.narrow(v.trunc() as i64))),
            (CastTo::Int(t), Value::I64(a)) => Value::I64(a.mapv(|v| t.narrow(v))),
        };
        Ok(vec![out])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if self.target(inputs)? == CastTo::Float {
            if let (Some(g), Some(Value::F32(_))) = (first_grad(output_grads), optional(inputs, 0))
            {
                grads[0] = Some(g.clone());
            }
        }
        Ok(grads)
    }

    fn is_differentiable(&self) -> bool {
        // CastLike's target is only known at run time; its backward pass checks.
        !matches!(self.to, Some(CastTo::Int(_)))
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// ConstantOfShape

/// `ConstantOfShape`: a tensor of the shape in input 0 filled with `value` (float 0 by
/// default).
#[derive(Debug)]
struct ConstantOfShape {
    value: Value,
}

fn build_constant_of_shape(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let value = match spec.attrs.tensor("value")? {
        None => Value::F32(ArrayD::zeros(IxDyn(&[]))),
        Some(v) if v.len() == 1 => v.clone(),
        Some(v) => {
            return Err(OpError(format!(
                "attribute `value` has shape {:?}, expected one element",
                v.shape()
            )))
        }
    };
    Ok(Box::new(ConstantOfShape { value }))
}

impl Operator for ConstantOfShape {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let shape = dims(
            &required(inputs, 0, "input")?.to_i64_vec("the shape")?,
            "the shape",
        )?;
        checked_elements(&shape, "ConstantOfShape's output")?;
        let out = match &self.value {
            Value::F32(a) => Value::F32(ArrayD::from_elem(
                IxDyn(&shape),
                a.iter().copied().next().unwrap_or(0.0),
            )),
            Value::I64(a) => Value::I64(ArrayD::from_elem(
                IxDyn(&shape),
                a.iter().copied().next().unwrap_or(0),
            )),
        };
        Ok(vec![out])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        _output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        Ok(no_grads(inputs))
    }

    fn is_differentiable(&self) -> bool {
        false
    }

    fn is_parameter_input(&self, _index: usize) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Expand

/// `Expand`: the input broadcast (both ways) with the shape in input 1.
#[derive(Debug)]
struct Expand;

fn build_expand(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Expand))
}

impl Operator for Expand {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "input")?;
        let shape = dims(
            &required(inputs, 1, "shape")?.to_i64_vec("the shape")?,
            "the shape",
        )?;
        let out = broadcast_shape(x.shape(), &shape)?;
        checked_elements(&out, "Expand's output")?;
        let bad = || OpError(format!("cannot expand shape {:?} to {out:?}", x.shape()));
        Ok(vec![
            each_type!(x, a => owned(a.broadcast(IxDyn(&out)).ok_or_else(bad)?)),
        ])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) {
            grads[0] = Some(unbroadcast(g.clone(), x.shape())?);
        }
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Constant

/// `Constant`: the value of one of `value`, `value_float(s)`, `value_int(s)`.
#[derive(Debug)]
struct Constant {
    value: Value,
}

fn build_constant(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    let mut found = Vec::new();
    for (name, attr) in a.0.iter() {
        let v = match (name.as_str(), attr) {
            ("value", Attr::Tensor(v)) => v.clone(),
            ("value_float", Attr::Float(f)) => Value::F32(ArrayD::from_elem(IxDyn(&[]), *f)),
            ("value_float", Attr::Int(i)) => Value::F32(ArrayD::from_elem(IxDyn(&[]), *i as f32)),
            ("value_floats", Attr::Floats(f)) => {
                Value::F32(ArrayD::from_shape_vec(IxDyn(&[f.len()]), f.clone())?)
            }
            ("value_floats", Attr::Float(f)) => Value::F32(ArrayD::from_elem(IxDyn(&[1]), *f)),
            ("value_int", Attr::Int(i)) => Value::I64(ArrayD::from_elem(IxDyn(&[]), *i)),
            ("value_ints", Attr::Ints(v)) => {
                Value::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone())?)
            }
            ("value_ints", Attr::Int(i)) => Value::I64(ArrayD::from_elem(IxDyn(&[1]), *i)),
            (
                "value" | "value_float" | "value_floats" | "value_int" | "value_ints"
                | "sparse_value" | "value_string" | "value_strings",
                other,
            ) => {
                return Err(OpError(format!(
                    "Constant's attribute `{name}` ({other:?}) is not supported (expected a \
                     numeric tensor, float(s) or int(s))"
                )))
            }
            _ => continue,
        };
        found.push(v);
    }
    match found.len() {
        1 => Ok(Box::new(Constant {
            value: found.remove(0),
        })),
        n => Err(OpError(format!(
            "Constant needs exactly one value attribute, it has {n}"
        ))),
    }
}

impl Operator for Constant {
    fn forward(&self, _inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        Ok(vec![self.value.clone()])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        _output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        Ok(no_grads(inputs))
    }

    fn is_differentiable(&self) -> bool {
        false
    }

    fn is_parameter_input(&self, _index: usize) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Range

/// `Range(start, limit, delta)`: integers when all three are, floats otherwise.
#[derive(Debug)]
struct Range;

fn build_range(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Range))
}

/// The one element of a scalar input.
fn scalar<'a>(inputs: &[Option<&'a Value>], i: usize, what: &str) -> OpResult<&'a Value> {
    let v = required(inputs, i, what)?;
    if v.len() != 1 {
        return Err(OpError(format!(
            "{what} has shape {:?}, expected a scalar",
            v.shape()
        )));
    }
    Ok(v)
}

impl Operator for Range {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let start = scalar(inputs, 0, "start")?;
        let limit = scalar(inputs, 1, "limit")?;
        let delta = scalar(inputs, 2, "delta")?;
        let too_long = |n: String| {
            OpError(format!(
                "Range would have {n} elements, more than {MAX_ELEMENTS}"
            ))
        };
        if let (Value::I64(s), Value::I64(l), Value::I64(d)) = (start, limit, delta) {
            let (s, l, d) = (
                s.iter().copied().next().unwrap_or(0) as i128,
                l.iter().copied().next().unwrap_or(0) as i128,
                d.iter().copied().next().unwrap_or(0) as i128,
            );
            if d == 0 {
                return Err(OpError("Range's delta is 0".into()));
            }
            let diff = l - s;
            let n = if (diff > 0) != (d > 0) || diff == 0 {
                0
            } else {
                (diff.abs() + d.abs() - 1) / d.abs()
            };
            if n > MAX_ELEMENTS as i128 {
                return Err(too_long(n.to_string()));
            }
            let v: Vec<i64> = (0..n).map(|k| (s + k * d) as i64).collect();
            return Ok(vec![Value::I64(ArrayD::from_shape_vec(
                IxDyn(&[v.len()]),
                v,
            )?)]);
        }
        let first = |v: &Value| v.to_f32_vec().first().copied().unwrap_or(0.0) as f64;
        let (s, l, d) = (first(start), first(limit), first(delta));
        if d == 0.0 || !(s.is_finite() && l.is_finite() && d.is_finite()) {
            return Err(OpError(format!(
                "Range({s}, {l}, {d}) needs finite bounds and a non-zero delta"
            )));
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > MAX_ELEMENTS as f64 {
            return Err(too_long(n.to_string()));
        }
        let v: Vec<f32> = (0..n as usize).map(|k| (s + k as f64 * d) as f32).collect();
        Ok(vec![Value::F32(ArrayD::from_shape_vec(
            IxDyn(&[v.len()]),
            v,
        )?)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        _output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        Ok(no_grads(inputs))
    }

    fn is_differentiable(&self) -> bool {
        false
    }

    fn is_parameter_input(&self, _index: usize) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Tile

/// `Tile`: the input repeated `repeats[k]` times along each axis `k`.
#[derive(Debug)]
struct Tile;

fn build_tile(_spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    Ok(Box::new(Tile))
}

impl Tile {
    fn repeats(inputs: &[Option<&Value>], shape: &[usize]) -> OpResult<Vec<usize>> {
        let r = dims(
            &required(inputs, 1, "repeats")?.to_i64_vec("repeats")?,
            "repeats",
        )?;
        if r.len() != shape.len() {
            return Err(OpError(format!(
                "repeats {r:?} has {} entries, the input has rank {}",
                r.len(),
                shape.len()
            )));
        }
        Ok(r)
    }
}

/// `[r0, d0, r1, d1, ...]` for repeats `r` and shape `d`.
fn interleave(r: &[usize], d: &[usize]) -> Vec<usize> {
    r.iter().zip(d).flat_map(|(&r, &d)| [r, d]).collect()
}

fn tile<T: Clone>(a: &ArrayD<T>, r: &[usize], out: &[usize]) -> OpResult<ArrayD<T>> {
    let ones: Vec<usize> = vec![1; r.len()];
    let lifted = reshape(a, &interleave(&ones, a.shape()))?;
    let wide = interleave(r, a.shape());
    let b = lifted
        .broadcast(IxDyn(&wide))
        .ok_or_else(|| OpError(format!("cannot tile shape {:?} by {r:?}", a.shape())))?;
    reshape(&owned(b), out)
}

impl Operator for Tile {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "input")?;
        let r = Self::repeats(inputs, x.shape())?;
        let out: Vec<usize> = r.iter().zip(x.shape()).map(|(&r, &d)| r * d).collect();
        checked_elements(&interleave(&r, x.shape()), "Tile's output")?;
        Ok(vec![each_type!(x, a => tile(a, &r, &out)?)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = no_grads(inputs);
        if let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) {
            let r = Self::repeats(inputs, x.shape())?;
            let mut s = reshape(g, &interleave(&r, x.shape()))?;
            for k in (0..r.len()).rev() {
                s = s.sum_axis(Axis(2 * k));
            }
            grads[0] = Some(standard(s));
        }
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Attrs;
    use crate::testing::{check_gradients, check_gradients_spec, random_input};

    fn f(shape: &[usize], v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn i(v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    fn i0(v: i64) -> Value {
        Value::I64(ArrayD::from_elem(IxDyn(&[]), v))
    }

    fn iota(shape: &[usize]) -> Value {
        let n = shape.iter().product();
        f(shape, (0..n).map(|k| k as f32).collect())
    }

    fn spec(op: &str, attrs: Attrs, n_inputs: usize, opset: i64) -> NodeSpec {
        let mut s = NodeSpec::new(op, attrs, n_inputs);
        s.opset = opset;
        s
    }

    fn run_spec(spec: &NodeSpec, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        crate::ops::build(spec)
            .map_err(|e| OpError(format!("{e:?}")))?
            .forward(inputs)
    }

    fn run(op: &str, attrs: Attrs, inputs: &[&Value]) -> OpResult<Value> {
        let s = NodeSpec::new(op, attrs, inputs.len());
        let ins: Vec<Option<&Value>> = inputs.iter().copied().map(Some).collect();
        Ok(run_spec(&s, &ins)?.remove(0))
    }

    fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }

    #[test]
    fn reshape_copies_zero_infers_minus_one_and_refuses_wrong_counts() {
        let x = iota(&[2, 3, 4]);
        let y = run("Reshape", Attrs::new(), &[&x, &i(&[0, -1])]).unwrap();
        assert_eq!(y.shape(), &[2, 12]);
        let y = run("Reshape", Attrs::new(), &[&x, &i(&[4, 0, 2])]).unwrap();
        assert_eq!(y.shape(), &[4, 3, 2]);
        assert!(run("Reshape", Attrs::new(), &[&x, &i(&[5, -1])]).is_err());
        assert!(run("Reshape", Attrs::new(), &[&x, &i(&[-1, -1])]).is_err());
        assert!(run("Reshape", Attrs::new(), &[&x, &i(&[7, 2])]).is_err());
        assert!(run("Reshape", Attrs::new(), &[&x, &i(&[0, 0, 0, 0])]).is_err());
        // allowzero: a 0 is a zero-sized dimension.
        let empty = f(&[0, 3], vec![]);
        let az = Attrs::new().with("allowzero", Attr::Int(1));
        let y = run("Reshape", az.clone(), &[&empty, &i(&[3, 0])]).unwrap();
        assert_eq!(y.shape(), &[3, 0]);
        assert!(run("Reshape", az, &[&x, &i(&[0, -1])]).is_err());
        // Integer data (shape subgraphs).
        let y = run("Reshape", Attrs::new(), &[&i(&[1, 2, 3, 4]), &i(&[2, 2])]).unwrap();
        assert_eq!(y, Value::I64(ndarray::arr2(&[[1, 2], [3, 4]]).into_dyn()));
        check_gradients(
            "Reshape",
            Attrs::new(),
            vec![
                Value::F32(random_input(&[2, 3, 2], 1, -1.0, 1.0)),
                i(&[3, -1]),
            ],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn flatten_squeeze_unsqueeze() {
        let x = iota(&[2, 3, 4, 5]);
        let flat = |axis| run("Flatten", Attrs::new().with("axis", Attr::Int(axis)), &[&x]);
        assert_eq!(flat(0).unwrap().shape(), &[1, 120]);
        assert_eq!(flat(2).unwrap().shape(), &[6, 20]);
        assert_eq!(flat(-1).unwrap().shape(), &[24, 5]);
        assert_eq!(flat(4).unwrap().shape(), &[120, 1]);
        assert!(flat(5).is_err());
        assert!(flat(-5).is_err());

        let x = iota(&[1, 3, 1, 2]);
        assert_eq!(
            run("Squeeze", Attrs::new(), &[&x]).unwrap().shape(),
            &[3, 2]
        );
        assert_eq!(
            run("Squeeze", Attrs::new(), &[&x, &i(&[-2])])
                .unwrap()
                .shape(),
            &[1, 3, 2]
        );
        assert!(run("Squeeze", Attrs::new(), &[&x, &i(&[1])]).is_err());
        assert!(run("Squeeze", Attrs::new(), &[&x, &i(&[4])]).is_err());
        let old = spec("Squeeze", Attrs::new().with("axes", ints(&[0, 2])), 1, 11);
        assert_eq!(run_spec(&old, &[Some(&x)]).unwrap()[0].shape(), &[3, 2]);

        let x = iota(&[3, 4]);
        let y = run("Unsqueeze", Attrs::new(), &[&x, &i(&[0, -1])]).unwrap();
        assert_eq!(y.shape(), &[1, 3, 4, 1]);
        let y = run("Unsqueeze", Attrs::new(), &[&x, &i(&[1, 3])]).unwrap();
        assert_eq!(y.shape(), &[3, 1, 4, 1]);
        assert!(run("Unsqueeze", Attrs::new(), &[&x, &i(&[0, 0])]).is_err());
        assert!(run("Unsqueeze", Attrs::new(), &[&x, &i(&[4])]).is_err());
        let old = spec("Unsqueeze", Attrs::new().with("axes", ints(&[0])), 1, 11);
        assert_eq!(run_spec(&old, &[Some(&x)]).unwrap()[0].shape(), &[1, 3, 4]);
        assert!(crate::ops::build(&spec("Unsqueeze", Attrs::new(), 1, 11)).is_err());
        // A scalar unsqueezed (shape subgraphs: Gather -> Unsqueeze -> Concat).
        let y = run("Unsqueeze", Attrs::new(), &[&i0(7), &i(&[0])]).unwrap();
        assert_eq!(y, i(&[7]));

        let r = || Value::F32(random_input(&[2, 1, 3], 2, -1.0, 1.0));
        check_gradients("Flatten", Attrs::new(), vec![r()], &[0], 1e-2);
        check_gradients("Squeeze", Attrs::new(), vec![r(), i(&[1])], &[0], 1e-2);
        check_gradients("Unsqueeze", Attrs::new(), vec![r(), i(&[-1])], &[0], 1e-2);
    }

    #[test]
    fn transpose_permutes_and_checks_perm() {
        let x = iota(&[2, 3, 4]);
        let y = run(
            "Transpose",
            Attrs::new().with("perm", ints(&[1, 2, 0])),
            &[&x],
        )
        .unwrap();
        assert_eq!(y.shape(), &[3, 4, 2]);
        let Value::F32(a) = &y else { panic!() };
        // y[j, k, i] = x[i, j, k] = 12 i + 4 j + k.
        assert_eq!(a[[2, 1, 1]], 12.0 + 8.0 + 1.0);
        assert!(a.is_standard_layout());
        let y = run("Transpose", Attrs::new(), &[&x]).unwrap();
        assert_eq!(y.shape(), &[4, 3, 2]);
        let y = run("Transpose", Attrs::new(), &[&i(&[1, 2])]).unwrap();
        assert_eq!(y, i(&[1, 2]));
        for bad in [vec![0, 0, 1], vec![0, 1, 3], vec![0, -1, 2]] {
            assert!(crate::ops::build(&NodeSpec::new(
                "Transpose",
                Attrs::new().with("perm", ints(&bad)),
                1
            ))
            .is_err());
        }
        assert!(run("Transpose", Attrs::new().with("perm", ints(&[1, 0])), &[&x]).is_err());
        check_gradients(
            "Transpose",
            Attrs::new().with("perm", ints(&[2, 0, 3, 1])),
            vec![Value::F32(random_input(&[2, 3, 2, 4], 3, -1.0, 1.0))],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn split_by_sizes_count_and_num_outputs() {
        let x = iota(&[2, 6]);
        let mut s = spec("Split", Attrs::new().with("axis", Attr::Int(-1)), 2, 13);
        s.n_outputs = 2;
        let y = run_spec(&s, &[Some(&x), Some(&i(&[2, 4]))]).unwrap();
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(
            y[1].to_f32_vec(),
            vec![2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]
        );
        assert!(run_spec(&s, &[Some(&x), Some(&i(&[2, 3]))]).is_err());
        // Equal parts, one per output.
        s.n_outputs = 3;
        let y = run_spec(&s, &[Some(&x), None]).unwrap();
        assert_eq!(y.len(), 3);
        assert_eq!(y[2].to_f32_vec(), vec![4.0, 5.0, 10.0, 11.0]);
        s.n_outputs = 4;
        assert!(run_spec(&s, &[Some(&x), None]).is_err());
        // Opset 18: num_outputs, the last part smaller.
        let mut s18 = spec(
            "Split",
            Attrs::new()
                .with("axis", Attr::Int(1))
                .with("num_outputs", Attr::Int(4)),
            1,
            18,
        );
        s18.n_outputs = 4;
        let y = run_spec(&s18, &[Some(&x)]).unwrap();
        let widths: Vec<usize> = y.iter().map(|v| v.shape()[1]).collect();
        assert_eq!(widths, vec![2, 2, 2, 0]);
        // Before opset 13: the `split` attribute.
        let mut s11 = spec("Split", Attrs::new().with("split", ints(&[1, 1])), 1, 11);
        s11.n_outputs = 2;
        let y = run_spec(&s11, &[Some(&x)]).unwrap();
        assert_eq!(y[1].to_f32_vec(), vec![6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        let mut g = spec("Split", Attrs::new().with("axis", Attr::Int(1)), 2, 13);
        g.n_outputs = 3;
        check_gradients_spec(
            &g,
            vec![
                Value::F32(random_input(&[2, 6, 2], 4, -1.0, 1.0)),
                i(&[1, 3, 2]),
            ],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn slice_follows_the_spec() {
        // ONNX's examples: data [[1,2,3,4],[5,6,7,8]].
        let x = f(&[2, 4], (1..=8).map(|v| v as f32).collect());
        let y = run(
            "Slice",
            Attrs::new(),
            &[&x, &i(&[1, 0]), &i(&[2, 3]), &i(&[0, 1]), &i(&[1, 2])],
        )
        .unwrap();
        assert_eq!(y.to_f32_vec(), vec![5.0, 7.0]);
        let y = run("Slice", Attrs::new(), &[&x, &i(&[0, 1]), &i(&[-1, 1000])]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![2.0, 3.0, 4.0]);
        // Negative steps: reversed, clamping at the ends.
        let v = iota(&[5]);
        let sl = |s: i64, e: i64, t: i64| {
            run(
                "Slice",
                Attrs::new(),
                &[&v, &i(&[s]), &i(&[e]), &i(&[0]), &i(&[t])],
            )
            .unwrap()
            .to_f32_vec()
        };
        assert_eq!(sl(-1, i64::MIN, -1), vec![4.0, 3.0, 2.0, 1.0, 0.0]);
        assert_eq!(sl(i64::MAX, -6, -2), vec![4.0, 2.0, 0.0]);
        assert_eq!(sl(3, 0, -1), vec![3.0, 2.0, 1.0]);
        assert_eq!(sl(1, i64::MAX, 3), vec![1.0, 4.0]);
        assert_eq!(sl(0, i64::MAX, i64::MAX), vec![0.0]);
        assert_eq!(sl(4, -100, i64::MIN), vec![4.0]);
        assert_eq!(sl(2, 2, 1), Vec::<f32>::new());
        assert_eq!(sl(-2, -1, 1), vec![3.0]);
        assert!(run(
            "Slice",
            Attrs::new(),
            &[&v, &i(&[0]), &i(&[1]), &i(&[0]), &i(&[0])]
        )
        .is_err());
        assert!(run("Slice", Attrs::new(), &[&v, &i(&[0]), &i(&[1]), &i(&[1])]).is_err());
        assert!(run("Slice", Attrs::new(), &[&v, &i(&[0, 1]), &i(&[1])]).is_err());
        // Integer data: the shape subgraph's `shape[2:]`.
        let s = run(
            "Slice",
            Attrs::new(),
            &[&i(&[1, 3, 224, 224]), &i(&[2]), &i(&[i64::MAX])],
        )
        .unwrap();
        assert_eq!(s, i(&[224, 224]));
        // Opset 9: attributes.
        let old = spec(
            "Slice",
            Attrs::new()
                .with("starts", ints(&[1]))
                .with("ends", ints(&[-1]))
                .with("axes", ints(&[-1])),
            1,
            9,
        );
        let y = run_spec(&old, &[Some(&x)]).unwrap();
        assert_eq!(y[0].to_f32_vec(), vec![2.0, 3.0, 6.0, 7.0]);
        check_gradients(
            "Slice",
            Attrs::new(),
            vec![
                Value::F32(random_input(&[3, 5, 4], 5, -1.0, 1.0)),
                i(&[-1, 1]),
                i(&[0, i64::MAX]),
                i(&[1, 2]),
                i(&[-2, 2]),
            ],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn gather_with_negative_and_nd_indices() {
        let x = iota(&[3, 4]);
        let idx = Value::I64(ndarray::arr2(&[[0, -1], [1, 1]]).into_dyn());
        let y = run("Gather", Attrs::new(), &[&x, &idx]).unwrap();
        assert_eq!(y.shape(), &[2, 2, 4]);
        assert_eq!(&y.to_f32_vec()[4..8], &[8.0, 9.0, 10.0, 11.0]);
        let y = run(
            "Gather",
            Attrs::new().with("axis", Attr::Int(-1)),
            &[&x, &i(&[3, 0])],
        )
        .unwrap();
        assert_eq!(y.to_f32_vec(), vec![3.0, 0.0, 7.0, 4.0, 11.0, 8.0]);
        // A scalar index drops the axis (shape subgraphs: Shape -> Gather).
        let y = run("Gather", Attrs::new(), &[&i(&[1, 3, 224, 224]), &i0(-2)]).unwrap();
        assert_eq!(y, i0(224));
        assert!(run("Gather", Attrs::new(), &[&x, &i(&[3])]).is_err());
        assert!(run("Gather", Attrs::new(), &[&x, &i(&[-4])]).is_err());
        assert!(run(
            "Gather",
            Attrs::new().with("axis", Attr::Int(2)),
            &[&x, &i(&[0])]
        )
        .is_err());
        // Repeated indices: the gradient adds up.
        check_gradients(
            "Gather",
            Attrs::new().with("axis", Attr::Int(1)),
            vec![
                Value::F32(random_input(&[2, 4, 3], 6, -1.0, 1.0)),
                Value::I64(ndarray::arr2(&[[0, 2], [-1, 0], [2, 2]]).into_dyn()),
            ],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn concat_any_axis() {
        let a = iota(&[2, 2]);
        let b = iota(&[2, 1]);
        let y = run(
            "Concat",
            Attrs::new().with("axis", Attr::Int(-1)),
            &[&a, &b],
        )
        .unwrap();
        assert_eq!(y.to_f32_vec(), vec![0.0, 1.0, 0.0, 2.0, 3.0, 1.0]);
        assert!(run("Concat", Attrs::new().with("axis", Attr::Int(0)), &[&a, &b]).is_err());
        assert!(run("Concat", Attrs::new().with("axis", Attr::Int(2)), &[&a, &a]).is_err());
        assert!(run(
            "Concat",
            Attrs::new().with("axis", Attr::Int(0)),
            &[&a, &i(&[1, 2])]
        )
        .is_err());
        assert!(crate::ops::build(&NodeSpec::new("Concat", Attrs::new(), 2)).is_err());
        let y = run(
            "Concat",
            Attrs::new().with("axis", Attr::Int(0)),
            &[&i(&[1]), &i(&[-1, 4])],
        )
        .unwrap();
        assert_eq!(y, i(&[1, -1, 4]));
        check_gradients(
            "Concat",
            Attrs::new().with("axis", Attr::Int(1)),
            vec![
                Value::F32(random_input(&[2, 3, 2], 7, -1.0, 1.0)),
                Value::F32(random_input(&[2, 1, 2], 8, -1.0, 1.0)),
                Value::F32(random_input(&[2, 2, 2], 9, -1.0, 1.0)),
            ],
            &[0, 1, 2],
            1e-2,
        );
    }

    #[test]
    fn shape_size_and_cast() {
        let x = iota(&[2, 3, 4]);
        assert_eq!(run("Shape", Attrs::new(), &[&x]).unwrap(), i(&[2, 3, 4]));
        let s = Attrs::new().with("start", Attr::Int(-2));
        assert_eq!(run("Shape", s.clone(), &[&x]).unwrap(), i(&[3, 4]));
        let s = s.with("end", Attr::Int(-1));
        assert_eq!(run("Shape", s.clone(), &[&x]).unwrap(), i(&[3]));
        let s = Attrs::new().with("start", Attr::Int(5));
        assert_eq!(run("Shape", s, &[&x]).unwrap(), i(&[]));
        // Before opset 15 start and end do not exist.
        let old = spec("Shape", Attrs::new().with("start", Attr::Int(1)), 1, 13);
        assert_eq!(run_spec(&old, &[Some(&x)]).unwrap()[0], i(&[2, 3, 4]));
        assert_eq!(run("Size", Attrs::new(), &[&x]).unwrap(), i0(24));
        let op = crate::ops::build(&NodeSpec::new("Shape", Attrs::new(), 1)).unwrap();
        assert!(!op.is_differentiable());

        let x = f(&[5], vec![-2.7, -0.5, 0.0, 1.9, 300.0]);
        let to = |t: i64| Attrs::new().with("to", Attr::Int(t));
        assert_eq!(run("Cast", to(7), &[&x]).unwrap(), i(&[-2, 0, 0, 1, 300]));
        assert_eq!(run("Cast", to(9), &[&x]).unwrap(), i(&[1, 1, 0, 1, 1]));
        assert_eq!(
            run("Cast", to(2), &[&i(&[300, -1])]).unwrap(),
            i(&[44, 255])
        );
        assert_eq!(
            run("Cast", to(1), &[&i(&[3, -1])]).unwrap(),
            f(&[2], vec![3.0, -1.0])
        );
        assert_eq!(run("Cast", to(11), &[&x]).unwrap(), x);
        assert!(crate::ops::build(&NodeSpec::new("Cast", to(8), 1)).is_err());
        assert!(crate::ops::build(&NodeSpec::new("Cast", Attrs::new(), 1)).is_err());
        let op = crate::ops::build(&NodeSpec::new("Cast", to(7), 1)).unwrap();
        assert!(!op.is_differentiable());
        let y = run("CastLike", Attrs::new(), &[&x, &i(&[0])]).unwrap();
        assert_eq!(y, i(&[-2, 0, 0, 1, 300]));
        check_gradients(
            "Cast",
            to(1),
            vec![Value::F32(random_input(&[3, 2], 10, -1.0, 1.0))],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn constant_of_shape_constant_expand_range_tile() {
        let y = run("ConstantOfShape", Attrs::new(), &[&i(&[2, 3])]).unwrap();
        assert_eq!(y, f(&[2, 3], vec![0.0; 6]));
        let one = Value::I64(ndarray::arr1(&[1i64]).into_dyn());
        let y = run(
            "ConstantOfShape",
            Attrs::new().with("value", Attr::Tensor(one)),
            &[&i(&[])],
        )
        .unwrap();
        assert_eq!(y, i0(1));
        assert!(run("ConstantOfShape", Attrs::new(), &[&i(&[1 << 20, 1 << 20])]).is_err());
        assert!(run(
            "ConstantOfShape",
            Attrs::new(),
            &[&i(&[i64::MAX, i64::MAX])]
        )
        .is_err());
        assert!(run("ConstantOfShape", Attrs::new(), &[&i(&[-1])]).is_err());

        let c = |a: Attrs| run("Constant", a, &[]);
        assert_eq!(
            c(Attrs::new().with("value_int", Attr::Int(4))).unwrap(),
            i0(4)
        );
        assert_eq!(
            c(Attrs::new().with("value_ints", ints(&[1, 2]))).unwrap(),
            i(&[1, 2])
        );
        assert_eq!(
            c(Attrs::new().with("value_floats", Attr::Floats(vec![0.5]))).unwrap(),
            f(&[1], vec![0.5])
        );
        assert_eq!(
            c(Attrs::new().with("value", Attr::Tensor(i(&[3])))).unwrap(),
            i(&[3])
        );
        assert!(c(Attrs::new()).is_err());
        assert!(c(Attrs::new()
            .with("value_int", Attr::Int(1))
            .with("value_float", Attr::Float(1.0)))
        .is_err());

        let x = f(&[3, 1], vec![1.0, 2.0, 3.0]);
        let y = run("Expand", Attrs::new(), &[&x, &i(&[2, 1, 6])]).unwrap();
        assert_eq!(y.shape(), &[2, 3, 6]);
        let y = run("Expand", Attrs::new(), &[&x, &i(&[1, 1])]).unwrap();
        assert_eq!(y.shape(), &[3, 1]);
        assert!(run("Expand", Attrs::new(), &[&x, &i(&[2, 4])]).is_err());
        assert!(run("Expand", Attrs::new(), &[&x, &i(&[1 << 30, 1 << 30])]).is_err());
        check_gradients(
            "Expand",
            Attrs::new(),
            vec![
                Value::F32(random_input(&[3, 1], 11, -1.0, 1.0)),
                i(&[2, 3, 4]),
            ],
            &[0],
            1e-2,
        );

        assert_eq!(
            run("Range", Attrs::new(), &[&i0(1), &i0(10), &i0(3)]).unwrap(),
            i(&[1, 4, 7])
        );
        assert_eq!(
            run("Range", Attrs::new(), &[&i0(10), &i0(4), &i0(-3)]).unwrap(),
            i(&[10, 7])
        );
        assert_eq!(
            run("Range", Attrs::new(), &[&i0(1), &i0(0), &i0(1)]).unwrap(),
            i(&[])
        );
        let s = |v: f32| f(&[], vec![v]);
        assert_eq!(
            run("Range", Attrs::new(), &[&s(0.0), &s(1.0), &s(0.25)]).unwrap(),
            f(&[4], vec![0.0, 0.25, 0.5, 0.75])
        );
        assert!(run("Range", Attrs::new(), &[&i0(0), &i0(1), &i0(0)]).is_err());
        assert!(run("Range", Attrs::new(), &[&i0(0), &i0(i64::MAX), &i0(1)]).is_err());
        assert!(run("Range", Attrs::new(), &[&s(0.0), &s(1e12), &s(1.0)]).is_err());

        let x = f(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = run("Tile", Attrs::new(), &[&x, &i(&[1, 2])]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
        let y = run("Tile", Attrs::new(), &[&x, &i(&[2, 1])]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        let y = run("Tile", Attrs::new(), &[&i(&[5, 6]), &i(&[3])]).unwrap();
        assert_eq!(y, i(&[5, 6, 5, 6, 5, 6]));
        assert_eq!(
            run("Tile", Attrs::new(), &[&x, &i(&[0, 2])])
                .unwrap()
                .shape(),
            &[0, 4]
        );
        assert!(run("Tile", Attrs::new(), &[&x, &i(&[2])]).is_err());
        assert!(run("Tile", Attrs::new(), &[&x, &i(&[1 << 20, 1 << 20])]).is_err());
        check_gradients(
            "Tile",
            Attrs::new(),
            vec![Value::F32(random_input(&[2, 3], 12, -1.0, 1.0)), i(&[3, 2])],
            &[0],
            1e-2,
        );
    }

    #[test]
    fn shape_subgraph_folds_and_runs() {
        use crate::graph::{GraphBuilder, NodeDef};
        let node = |op: &str, attrs: Attrs, ins: &[&str], out: &str| NodeDef {
            op_type: op.into(),
            name: out.into(),
            attrs,
            inputs: ins.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.into()],
        };
        // y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
        let graph = GraphBuilder::new()
            .input("x")
            .constant("zero", i0(0))
            .constant("axes", i(&[0]))
            .constant("minus1", i(&[-1]))
            .node(node("Shape", Attrs::new(), &["x"], "s"))
            .node(node("Gather", Attrs::new(), &["s", "zero"], "n"))
            .node(node("Unsqueeze", Attrs::new(), &["n", "axes"], "n1"))
            .node(node(
                "Concat",
                Attrs::new().with("axis", Attr::Int(0)),
                &["n1", "minus1"],
                "shape",
            ))
            .node(node("Reshape", Attrs::new(), &["x", "shape"], "y"))
            .output("y")
            .build()
            .unwrap();
        let x = iota(&[2, 3, 4]);
        let y = graph.run(vec![x]).unwrap();
        assert_eq!(y[0].shape(), &[2, 12]);
    }
}
