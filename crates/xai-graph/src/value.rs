//! [`Value`]: the tensors that flow through a graph.

use ndarray::{ArrayD, IxDyn};

use crate::error::{OpError, OpResult};

/// A tensor in a graph: `f32` data (activations, weights; the differentiable values) or `i64`
/// data (shapes, indices, axes; booleans are stored as 0/1).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Floating-point data (FLOAT, DOUBLE and FLOAT16 read as `f32`).
    F32(ArrayD<f32>),
    /// Integer data (INT64, INT32, ..., BOOL as 0/1).
    I64(ArrayD<i64>),
}

impl Value {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(a) => a.shape(),
            Value::I64(a) => a.shape(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the data is floating point.
    pub fn is_float(&self) -> bool {
        matches!(self, Value::F32(_))
    }

    /// The element type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::F32(_) => "float",
            Value::I64(_) => "int64",
        }
    }

    /// The float data, or an error naming `what`.
    pub fn f32(&self, what: &str) -> OpResult<&ArrayD<f32>> {
        match self {
            Value::F32(a) => Ok(a),
            Value::I64(_) => Err(OpError(format!(
                "{what} is an integer tensor, expected a float tensor"
            ))),
        }
    }

    /// The integer data, or an error naming `what`.
    pub fn i64(&self, what: &str) -> OpResult<&ArrayD<i64>> {
        match self {
            Value::I64(a) => Ok(a),
            Value::F32(_) => Err(OpError(format!(
                "{what} is a float tensor, expected an integer tensor"
            ))),
        }
    }

    /// The values as integers (floats that are whole numbers are accepted too), flattened.
    pub fn to_i64_vec(&self, what: &str) -> OpResult<Vec<i64>> {
        match self {
            Value::I64(a) => Ok(a.iter().copied().collect()),
            Value::F32(a) => a
                .iter()
                .map(|&v| {
                    if v.is_finite() && v.fract() == 0.0 {
                        Ok(v as i64)
                    } else {
                        Err(OpError(format!("{what} holds {v}, expected whole numbers")))
                    }
                })
                .collect(),
        }
    }

    /// The values as floats (integers converted), flattened.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            Value::F32(a) => a.iter().copied().collect(),
            Value::I64(a) => a.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The same data with another shape of as many elements (row-major order).
    pub fn reshaped(&self, shape: &[usize]) -> OpResult<Value> {
        Ok(match self {
            Value::F32(a) => Value::F32(reshape(a, shape)?),
            Value::I64(a) => Value::I64(reshape(a, shape)?),
        })
    }
}

/// `a` with another shape of as many elements, row-major (copies only when `a` is not
/// contiguous).
pub fn reshape<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> OpResult<ArrayD<T>> {
    let n: usize = shape.iter().product();
    if n != a.len() {
        return Err(OpError(format!(
            "cannot reshape a tensor of shape {:?} ({} elements) to {shape:?} ({n} elements)",
            a.shape(),
            a.len()
        )));
    }
    let data: Vec<T> = match a.as_slice() {
        Some(s) => s.to_vec(),
        None => a.iter().cloned().collect(),
    };
    Ok(ArrayD::from_shape_vec(IxDyn(shape), data)?)
}

/// Converts an axis that may be negative (counted from the end) into `0..rank`.
pub fn normalize_axis(axis: i64, rank: usize, what: &str) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(OpError(format!(
            "{what} {axis} is out of range for a tensor of rank {rank} (expected -{rank}..{rank})"
        )))
    }
}
