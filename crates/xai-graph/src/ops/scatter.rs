//! Index arithmetic and scatters that exporters write around attention masks and windows
//! (Swin's shifted-window mask, ViT's class token): `Mod`, and `ScatterND` with its
//! gradient.
//!
//! `Mod` (`fmod = 0`: the remainder with the divisor's sign, NumPy's `mod`) is not
//! differentiable here (exporters use it on indices and shapes only; its
//! derivative is 1 in `a` almost everywhere, which a float model that needs it can get from
//! `Sub` and `Floor`).

use ndarray::{ArrayD, IxDyn};

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, required, Builder, NodeSpec, Operator};
use crate::ops::binary::broadcast_map;
use crate::value::Value;

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("Mod", build_mod), ("ScatterND", build_scatter_nd)];

/// `Mod`: with `fmod = 0`, the integer remainder with the divisor's sign (Python's `%`);
/// with `fmod = 1`, C's `fmod` (the dividend's sign), on floats or integers.
#[derive(Debug)]
struct Mod {
    fmod: bool,
}

fn build_mod(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let fmod = match spec.attrs.int_or("fmod", 0)? {
        0 => false,
        1 => true,
        v => return Err(OpError(format!("attribute `fmod` is {v}, expected 0 or 1"))),
    };
    Ok(Box::new(Mod { fmod }))
}

impl Operator for Mod {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let fmod = self.fmod;
        Ok(vec![match (a, b) {
            (Value::I64(x), Value::I64(y)) => {
                if y.iter().any(|&v| v == 0) {
                    return Err(OpError("integer Mod by zero".into()));
                }
                Value::I64(broadcast_map(x, y, move |p: i64, q: i64| {
                    let r = p.wrapping_rem(q);
                    if !fmod && r != 0 && ((r < 0) != (q < 0)) {
                        r + q
                    } else {
                        r
                    }
                })?)
            }
            (Value::F32(x), Value::F32(y)) => {
                Value::F32(broadcast_map(x, y, move |p: f32, q: f32| {
                    let r = p % q;
                    if !fmod && r != 0.0 && ((r < 0.0) != (q < 0.0)) {
                        r + q
                    } else {
                        r
                    }
                })?)
            }
            (a, b) => {
                return Err(OpError(format!(
                    "Mod of a {} and a {} tensor; expected two tensors of one type",
                    a.type_name(),
                    b.type_name()
                )))
            }
        }])
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

/// `ScatterND` (opsets 11-18): a copy of `data` with the slices that `indices` (`[..., k]`)
/// name replaced by (or, with `reduction`, combined with) `updates`.
#[derive(Debug)]
struct ScatterNd {
    reduction: Reduction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn build_scatter_nd(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let reduction = match spec.attrs.string_or("reduction", "none")?.as_str() {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => {
            return Err(OpError(format!(
                "attribute `reduction` is `{other}`, expected none, add, mul, max or min"
            )))
        }
    };
    Ok(Box::new(ScatterNd { reduction }))
}

/// For each index tuple: the flat offset of its slice in `data` and the slice's length.
fn slices(data_shape: &[usize], indices: &ArrayD<i64>) -> OpResult<(Vec<usize>, usize)> {
    let k = *indices
        .shape()
        .last()
        .ok_or_else(|| OpError("indices is a scalar, expected [..., k]".into()))?;
    if k > data_shape.len() || k == 0 {
        return Err(OpError(format!(
            "indices have last dimension {k}, expected 1..={} (the data's rank)",
            data_shape.len()
        )));
    }
    let slice_len: usize = data_shape[k..].iter().product();
    let idx = indices.as_standard_layout();
    let flat = idx.as_slice().expect("standard layout");
    let mut offsets = Vec::with_capacity(flat.len() / k);
    for tuple in flat.chunks(k) {
        let mut off = 0usize;
        for (d, &i) in tuple.iter().enumerate() {
            let dim = data_shape[d] as i64;
            let i = if i < 0 { i + dim } else { i };
            if !(0..dim).contains(&i) {
                return Err(OpError(format!(
                    "index {tuple:?} is out of range for data of shape {data_shape:?}"
                )));
            }
            off = off * data_shape[d] + i as usize;
        }
        offsets.push(off * slice_len);
    }
    Ok((offsets, slice_len))
}

fn check_updates(data_shape: &[usize], indices: &ArrayD<i64>, updates: &[usize]) -> OpResult<()> {
    let q = indices.ndim();
    let k = indices.shape()[q - 1];
    let expected: Vec<usize> = indices.shape()[..q - 1]
        .iter()
        .chain(&data_shape[k..])
        .copied()
        .collect();
    if updates != expected.as_slice() {
        return Err(OpError(format!(
            "updates have shape {updates:?}, expected {expected:?} (indices.shape[:-1] + data.shape[k:])"
        )));
    }
    Ok(())
}

fn scatter<T: Copy>(
    data: &mut [T],
    updates: &[T],
    offsets: &[usize],
    len: usize,
    f: impl Fn(T, T) -> T,
) {
    for (j, &off) in offsets.iter().enumerate() {
        for t in 0..len {
            data[off + t] = f(data[off + t], updates[j * len + t]);
        }
    }
}

impl Operator for ScatterNd {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?.i64("indices")?;
        let updates = required(inputs, 2, "updates")?;
        check_updates(data.shape(), indices, updates.shape())?;
        let (offsets, len) = slices(data.shape(), indices)?;
        let r = self.reduction;
        Ok(vec![match (data, updates) {
            (Value::F32(d), Value::F32(u)) => {
                let mut out = d.as_standard_layout().into_owned();
                let u = u.as_standard_layout();
                scatter(
                    out.as_slice_mut().expect("owned"),
                    u.as_slice().expect("standard"),
                    &offsets,
                    len,
                    |a, b| match r {
                        Reduction::None => b,
                        Reduction::Add => a + b,
                        Reduction::Mul => a * b,
                        Reduction::Max => a.max(b),
                        Reduction::Min => a.min(b),
                    },
                );
                Value::F32(out)
            }
            (Value::I64(d), Value::I64(u)) => {
                let mut out = d.as_standard_layout().into_owned();
                let u = u.as_standard_layout();
                scatter(
                    out.as_slice_mut().expect("owned"),
                    u.as_slice().expect("standard"),
                    &offsets,
                    len,
                    |a, b| match r {
                        Reduction::None => b,
                        Reduction::Add => a.wrapping_add(b),
                        Reduction::Mul => a.wrapping_mul(b),
                        Reduction::Max => a.max(b),
                        Reduction::Min => a.min(b),
                    },
                );
                Value::I64(out)
            }
            (d, u) => {
                return Err(OpError(format!(
                    "data is a {} tensor and updates a {} tensor; expected one type",
                    d.type_name(),
                    u.type_name()
                )))
            }
        }])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let Some(g) = first_grad(output_grads) else {
            return Ok(grads);
        };
        if self.reduction != Reduction::None && self.reduction != Reduction::Add {
            return Err(OpError(format!(
                "the gradient of ScatterND with reduction {:?} is not supported (none and add are)",
                self.reduction
            )));
        }
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?.i64("indices")?;
        let updates = required(inputs, 2, "updates")?;
        let (offsets, len) = slices(data.shape(), indices)?;
        let g = g.as_standard_layout().into_owned();
        let gs = g.as_slice().expect("standard layout");
        // Updates: the output gradient at their slices.
        let mut du = Vec::with_capacity(offsets.len() * len);
        for &off in &offsets {
            du.extend_from_slice(&gs[off..off + len]);
        }
        // Data: the output gradient, zero where a slice was overwritten (reduction none).
        let mut dd = gs.to_vec();
        if self.reduction == Reduction::None {
            for &off in &offsets {
                dd[off..off + len].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        if data.is_float() {
            grads[0] = Some(ArrayD::from_shape_vec(IxDyn(data.shape()), dd)?);
        }
        if updates.is_float() {
            grads[2] = Some(ArrayD::from_shape_vec(IxDyn(updates.shape()), du)?);
        }
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index != 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients_spec, random_input};

    #[test]
    fn mod_follows_the_divisor_sign_or_fmod() {
        let op = build_mod(&NodeSpec::new("Mod", Attrs::new(), 2)).unwrap();
        let a = Value::I64(ndarray::arr1(&[-4i64, 7, 5, -3]).into_dyn());
        let b = Value::I64(ndarray::arr1(&[3i64, -3, 8, -2]).into_dyn());
        let y = op.forward(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y[0].to_i64_vec("y").unwrap(), vec![2, -2, 5, -1]);
        let f = build_mod(&NodeSpec::new(
            "Mod",
            Attrs::new().with("fmod", Attr::Int(1)),
            2,
        ))
        .unwrap();
        let y = f.forward(&[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y[0].to_i64_vec("y").unwrap(), vec![-1, 1, 5, -1]);
        let zero = Value::I64(ndarray::arr1(&[0i64]).into_dyn());
        assert!(op.forward(&[Some(&a), Some(&zero)]).is_err());
    }

    #[test]
    fn scatter_nd_matches_the_spec_example_and_gradients() {
        // The spec's first example: data [8], indices [[4], [3], [1], [7]].
        let op = build_scatter_nd(&NodeSpec::new("ScatterND", Attrs::new(), 3)).unwrap();
        let data = Value::F32(ndarray::arr1(&[1.0f32, 2., 3., 4., 5., 6., 7., 8.]).into_dyn());
        let idx = Value::I64(ndarray::arr2(&[[4i64], [3], [1], [7]]).into_dyn());
        let upd = Value::F32(ndarray::arr1(&[9.0f32, 10., 11., 12.]).into_dyn());
        let y = op.forward(&[Some(&data), Some(&idx), Some(&upd)]).unwrap();
        assert_eq!(y[0].to_f32_vec(), vec![1., 11., 3., 10., 9., 6., 7., 12.]);
        let bad = Value::I64(ndarray::arr2(&[[8i64]]).into_dyn());
        let one = Value::F32(ndarray::arr1(&[1.0f32]).into_dyn());
        assert!(op.forward(&[Some(&data), Some(&bad), Some(&one)]).is_err());
        for reduction in ["none", "add"] {
            let spec = NodeSpec::new(
                "ScatterND",
                Attrs::new().with("reduction", Attr::String(reduction.into())),
                3,
            );
            let data = Value::F32(random_input(&[4, 3, 2], 1, -1.0, 1.0));
            let idx = Value::I64(ndarray::arr2(&[[0i64, 1], [3, 2]]).into_dyn());
            let upd = Value::F32(random_input(&[2, 2], 2, -1.0, 1.0));
            check_gradients_spec(&spec, vec![data, idx, upd], &[0, 2], 2e-2);
        }
    }
}
