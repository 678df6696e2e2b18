//! Multidirectional (NumPy-style) broadcasting, and its adjoint: summing a gradient back to
//! the shape of a broadcast operand.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::error::{OpError, OpResult};

/// The broadcast shape of `a` and `b` (ONNX multidirectional broadcasting: shapes aligned at
/// the right, each pair of dimensions equal or one of them 1).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 0..rank {
        let da = if k + a.len() >= rank {
            a[k + a.len() - rank]
        } else {
            1
        };
        let db = if k + b.len() >= rank {
            b[k + b.len() - rank]
        } else {
            1
        };
        out[k] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(OpError(format!(
                    "shapes {a:?} and {b:?} do not broadcast (dimension {k} from the left of the \
                     aligned shapes is {da} against {db}; expected equal sizes or 1)"
                )))
            }
        };
    }
    Ok(out)
}

/// The broadcast shape of several operands.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = broadcast_shape(&out, s)?;
    }
    Ok(out)
}

/// A view of `a` broadcast to `shape`.
pub fn broadcast_to<'a, T>(a: &'a ArrayD<T>, shape: &[usize]) -> OpResult<ArrayViewD<'a, T>> {
    a.broadcast(IxDyn(shape)).ok_or_else(|| {
        OpError(format!(
            "a tensor of shape {:?} cannot be broadcast to {shape:?}",
            a.shape()
        ))
    })
}

/// Sums `grad` (shaped like a broadcast result) over the axes along which an operand of shape
/// `shape` was broadcast: the adjoint of broadcasting.
pub fn unbroadcast(grad: ArrayD<f32>, shape: &[usize]) -> OpResult<ArrayD<f32>> {
    if grad.shape() == shape {
        return Ok(grad);
    }
    let rank = grad.ndim();
    if shape.len() > rank {
        return Err(OpError(format!(
            "cannot reduce a gradient of shape {:?} to the higher-rank shape {shape:?}",
            grad.shape()
        )));
    }
    let lead = rank - shape.len();
    let mut g = grad;
    // Leading axes the operand did not have.
    for _ in 0..lead {
        g = g.sum_axis(Axis(0));
    }
    for (k, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[k] != 1 {
            g = g.sum_axis(Axis(k)).insert_axis(Axis(k));
        }
    }
    if g.shape() != shape {
        return Err(OpError(format!(
            "a gradient of shape {:?} does not reduce to the operand's shape {shape:?}",
            g.shape()
        )));
    }
    Ok(g)
}
