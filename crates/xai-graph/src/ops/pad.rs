//! `Pad`: constant, reflect, edge and wrap padding of any axes, with negative pads cropping.
//!
//! The pads come from the `pads` (or opset 1's `paddings`) attribute before opset 11 and from
//! input 1 from opset 11 on, as `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`; the constant
//! from the `value` attribute or input 2; opset 18's `axes` (input 3) names the padded axes.
//!
//! Along each axis, output position `o` reads input position `o - begin`: in constant mode
//! that position when it lies inside the input (the constant otherwise); in the other modes
//! the position mirrored (`reflect`), clamped (`edge`) or wrapped (`wrap`) into the input. The
//! backward pass adds each output element's gradient to the input element it read.

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required, Builder, NodeSpec, Operator};
use crate::ops::shape::checked_elements;
use crate::value::{normalize_axis, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("Pad", build)];

/// How positions outside the input are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// A `Pad` node.
#[derive(Debug)]
struct Pad {
    mode: Mode,
    /// Pads and constant from attributes (before opset 11).
    attr_pads: Option<Vec<i64>>,
    attr_value: f32,
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    let mode = match a.string_or("mode", "constant")?.as_str() {
        "constant" => Mode::Constant,
        "reflect" => Mode::Reflect,
        "edge" => Mode::Edge,
        "wrap" => Mode::Wrap,
        other => {
            return Err(OpError(format!(
                "attribute `mode` is `{other}`, expected constant, reflect, edge or wrap"
            )))
        }
    };
    let attr_pads = if spec.opset < 11 {
        let pads = match a.ints("pads")? {
            Some(p) => p,
            None => a
                .ints("paddings")?
                .ok_or_else(|| OpError("Pad needs the attribute `pads` before opset 11".into()))?,
        };
        if pads.len() % 2 != 0 {
            return Err(OpError(format!(
                "attribute `pads` {pads:?} has an odd length, expected two per axis"
            )));
        }
        Some(pads)
    } else {
        None
    };
    let attr_value = a.float_or("value", 0.0)?;
    Ok(Box::new(Pad {
        mode,
        attr_pads,
        attr_value,
    }))
}

/// One axis's pads.
#[derive(Debug, Clone, Copy)]
struct AxisPad {
    begin: i64,
    end: i64,
}

impl Pad {
    /// The pads of every axis of a tensor of rank `rank`.
    fn pads(&self, inputs: &[Option<&Value>], rank: usize) -> OpResult<Vec<AxisPad>> {
        let pads = match &self.attr_pads {
            Some(p) => p.clone(),
            None => required(inputs, 1, "pads")?.to_i64_vec("pads")?,
        };
        let axes: Vec<usize> = match optional(inputs, 3) {
            Some(a) if self.attr_pads.is_none() => {
                let mut out = Vec::new();
                for ax in a.to_i64_vec("axes")? {
                    let n = normalize_axis(ax, rank, "axis")?;
                    if out.contains(&n) {
                        return Err(OpError(format!("axes repeat axis {ax}")));
                    }
                    out.push(n);
                }
                out
            }
            _ => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(OpError(format!(
                "pads {pads:?} has {} entries, expected {} (two per padded axis of a tensor of \
                 rank {rank})",
                pads.len(),
                2 * axes.len()
            )));
        }
        let mut out = vec![AxisPad { begin: 0, end: 0 }; rank];
        let n = axes.len();
        for (k, &ax) in axes.iter().enumerate() {
            out[ax] = AxisPad {
                begin: pads[k],
                end: pads[k + n],
            };
        }
        Ok(out)
    }

    /// The constant, from input 2 or the attribute.
    fn constant(&self, inputs: &[Option<&Value>]) -> OpResult<f32> {
        match optional(inputs, 2) {
            Some(v) if self.attr_pads.is_none() && !v.is_empty() => {
                let vals = v.to_f32_vec();
                if vals.len() != 1 {
                    return Err(OpError(format!(
                        "constant_value has shape {:?}, expected one value",
                        v.shape()
                    )));
                }
                Ok(vals[0])
            }
            _ => Ok(self.attr_value),
        }
    }

    /// The output shape, checked.
    fn out_shape(shape: &[usize], pads: &[AxisPad]) -> OpResult<Vec<usize>> {
        let out = shape
            .iter()
            .zip(pads)
            .map(|(&d, p)| {
                let n = (d as i128) + p.begin as i128 + p.end as i128;
                usize::try_from(n).map_err(|_| {
                    OpError(format!(
                        "pads ({}, {}) leave a negative size of an axis of size {d}",
                        p.begin, p.end
                    ))
                })
            })
            .collect::<OpResult<Vec<usize>>>()?;
        checked_elements(&out, "Pad's output")?;
        Ok(out)
    }

    /// For each axis, the input position each output position reads (non-constant modes).
    fn index_maps(
        &self,
        shape: &[usize],
        out: &[usize],
        pads: &[AxisPad],
    ) -> OpResult<Vec<Vec<usize>>> {
        shape
            .iter()
            .zip(out)
            .zip(pads)
            .map(|((&d, &n), p)| {
                if d == 0 && n > 0 {
                    return Err(OpError(format!(
                        "{:?} padding of an empty axis is not defined",
                        self.mode
                    )));
                }
                let di = d as i128;
                Ok((0..n)
                    .map(|o| {
                        let j = o as i128 - p.begin as i128;
                        let j = match self.mode {
                            Mode::Edge | Mode::Constant => j.clamp(0, di - 1),
                            Mode::Wrap => j.rem_euclid(di),
                            Mode::Reflect => {
                                if di == 1 {
                                    0
                                } else {
                                    let period = 2 * (di - 1);
                                    let m = j.rem_euclid(period);
                                    if m >= di {
                                        period - m
                                    } else {
                                        m
                                    }
                                }
                            }
                        };
                        j as usize
                    })
                    .collect())
            })
            .collect()
    }
}

/// The region of the output that holds input data, and the input region it holds (constant
/// mode; crops make the input region smaller than the input).
fn constant_regions(shape: &[usize], out: &[usize], pads: &[AxisPad]) -> (Vec<Slice>, Vec<Slice>) {
    let mut out_r = Vec::with_capacity(shape.len());
    let mut in_r = Vec::with_capacity(shape.len());
    for ((&d, &n), p) in shape.iter().zip(out).zip(pads) {
        let b = p.begin as i128;
        let lo = b.max(0);
        let hi = (b + d as i128).min(n as i128);
        if hi <= lo {
            out_r.push(Slice::new(0, Some(0), 1));
            in_r.push(Slice::new(0, Some(0), 1));
        } else {
            out_r.push(Slice::new(lo as isize, Some(hi as isize), 1));
            in_r.push(Slice::new((lo - b) as isize, Some((hi - b) as isize), 1));
        }
    }
    (out_r, in_r)
}

fn pad_constant<T: Clone>(a: &ArrayD<T>, out: &[usize], pads: &[AxisPad], value: T) -> ArrayD<T> {
    let (out_r, in_r) = constant_regions(a.shape(), out, pads);
    let mut y = ArrayD::from_elem(IxDyn(out), value);
    y.slice_each_axis_mut(|d| out_r[d.axis.index()])
        .assign(&a.slice_each_axis(|d| in_r[d.axis.index()]));
    y
}

fn pad_gather<T: Clone>(a: &ArrayD<T>, maps: &[Vec<usize>]) -> ArrayD<T> {
    let mut y = a.clone();
    for (k, m) in maps.iter().enumerate() {
        let identity = m.len() == y.shape()[k] && m.iter().enumerate().all(|(i, &j)| i == j);
        if !identity {
            y = y.select(Axis(k), m);
        }
    }
    if y.is_standard_layout() {
        y
    } else {
        y.as_standard_layout().into_owned()
    }
}

impl Operator for Pad {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "data")?;
        let pads = self.pads(inputs, x.shape().len())?;
        let out = Self::out_shape(x.shape(), &pads)?;
        let value = self.constant(inputs)?;
        let y = if self.mode == Mode::Constant {
            match x {
                Value::F32(a) => Value::F32(pad_constant(a, &out, &pads, value)),
                Value::I64(a) => Value::I64(pad_constant(a, &out, &pads, value as i64)),
            }
        } else {
            let maps = self.index_maps(x.shape(), &out, &pads)?;
            match x {
                Value::F32(a) => Value::F32(pad_gather(a, &maps)),
                Value::I64(a) => Value::I64(pad_gather(a, &maps)),
            }
        };
        Ok(vec![y])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let (Some(g), Some(Value::F32(x))) = (first_grad(output_grads), optional(inputs, 0)) else {
            return Ok(grads);
        };
        let pads = self.pads(inputs, x.ndim())?;
        let out = Self::out_shape(x.shape(), &pads)?;
        if g.shape() != out.as_slice() {
            return Err(OpError(format!(
                "gradient of shape {:?} for a Pad output of shape {out:?}",
                g.shape()
            )));
        }
        let dx = if self.mode == Mode::Constant {
            let (out_r, in_r) = constant_regions(x.shape(), &out, &pads);
            let mut dx = ArrayD::<f32>::zeros(x.shape());
            dx.slice_each_axis_mut(|d| in_r[d.axis.index()])
                .assign(&g.slice_each_axis(|d| out_r[d.axis.index()]));
            dx
        } else {
            // Scatter-add along one axis at a time (the maps are separable).
            let maps = self.index_maps(x.shape(), &out, &pads)?;
            let mut acc = g.clone();
            for (k, m) in maps.iter().enumerate() {
                let mut shape = acc.shape().to_vec();
                shape[k] = x.shape()[k];
                let mut next = ArrayD::<f32>::zeros(IxDyn(&shape));
                for (o, &j) in m.iter().enumerate() {
                    let mut dst = next.index_axis_mut(Axis(k), j);
                    dst += &acc.index_axis(Axis(k), o);
                }
                acc = next;
            }
            acc
        };
        grads[0] = Some(dx);
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, check_gradients_spec, random_input};

    fn f(shape: &[usize], v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn i(v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    fn run(attrs: Attrs, inputs: &[Option<&Value>]) -> OpResult<Value> {
        let op = build(&NodeSpec::new("Pad", attrs, inputs.len()))?;
        Ok(op.forward(inputs)?.remove(0))
    }

    fn mode(m: &str) -> Attrs {
        Attrs::new().with("mode", Attr::String(m.into()))
    }

    /// The ONNX spec's example input.
    fn spec_x() -> Value {
        f(&[3, 2], vec![1.0, 1.2, 2.3, 3.4, 4.5, 5.7])
    }

    #[test]
    fn spec_examples() {
        let x = spec_x();
        let pads = i(&[0, 2, 0, 0]);
        let c = f(&[], vec![0.0]);
        let y = run(Attrs::new(), &[Some(&x), Some(&pads), Some(&c)]).unwrap();
        assert_eq!(
            y.to_f32_vec(),
            vec![0.0, 0.0, 1.0, 1.2, 0.0, 0.0, 2.3, 3.4, 0.0, 0.0, 4.5, 5.7]
        );
        let y = run(mode("reflect"), &[Some(&x), Some(&pads)]).unwrap();
        assert_eq!(
            y.to_f32_vec(),
            vec![1.0, 1.2, 1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7]
        );
        let y = run(mode("edge"), &[Some(&x), Some(&pads)]).unwrap();
        assert_eq!(
            y.to_f32_vec(),
            vec![1.0, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7]
        );
        // wrap (opset 19): pads [2, 1, 1, 1] on the 3x2 input.
        let y = run(mode("wrap"), &[Some(&x), Some(&i(&[2, 1, 1, 1]))]).unwrap();
        assert_eq!(y.shape(), &[6, 4]);
        assert_eq!(
            &y.to_f32_vec()[..8],
            &[3.4, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5]
        );
    }

    #[test]
    fn constants_crops_axes_and_opsets() {
        let x = f(&[1, 3], vec![1.0, 2.0, 3.0]);
        // Negative pads crop.
        let y = run(Attrs::new(), &[Some(&x), Some(&i(&[0, -1, 1, 1]))]).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_f32_vec(), vec![2.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
        let c = f(&[1], vec![7.0]);
        let y = run(Attrs::new(), &[Some(&x), Some(&i(&[0, 1, 0, 0])), Some(&c)]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![7.0, 1.0, 2.0, 3.0]);
        // Opset 18 axes.
        let y = run(
            Attrs::new(),
            &[Some(&x), Some(&i(&[2, 0])), None, Some(&i(&[-1]))],
        )
        .unwrap();
        assert_eq!(y.to_f32_vec(), vec![0.0, 0.0, 1.0, 2.0, 3.0]);
        // Integer data.
        let y = run(Attrs::new(), &[Some(&i(&[4, 5])), Some(&i(&[1, 0]))]).unwrap();
        assert_eq!(y, i(&[0, 4, 5]));
        // Opset 2 attributes.
        let mut s = NodeSpec::new(
            "Pad",
            mode("constant")
                .with("pads", Attr::Ints(vec![0, 0, 0, 1]))
                .with("value", Attr::Float(-1.0)),
            1,
        );
        s.opset = 2;
        let y = build(&s).unwrap().forward(&[Some(&x)]).unwrap().remove(0);
        assert_eq!(y.to_f32_vec(), vec![1.0, 2.0, 3.0, -1.0]);
        // Errors.
        assert!(run(Attrs::new(), &[Some(&x), Some(&i(&[0, 1]))]).is_err());
        assert!(run(Attrs::new(), &[Some(&x), Some(&i(&[0, -2, 0, -2]))]).is_err());
        assert!(run(Attrs::new(), &[Some(&x), Some(&i(&[0, 1 << 40, 0, 0]))]).is_err());
        assert!(run(mode("edge"), &[Some(&f(&[0], vec![])), Some(&i(&[1, 1]))]).is_err());
        assert!(build(&NodeSpec::new("Pad", mode("mirror"), 2)).is_err());
        s.attrs = Attrs::new().with("pads", Attr::Ints(vec![1]));
        assert!(build(&s).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        for m in ["constant", "reflect", "edge", "wrap"] {
            check_gradients(
                "Pad",
                mode(m),
                vec![
                    Value::F32(random_input(&[2, 3, 4], 1, -1.0, 1.0)),
                    i(&[0, 2, -1, 1, 3, 1]),
                ],
                &[0],
                1e-2,
            );
        }
        let mut s = NodeSpec::new("Pad", mode("reflect"), 4);
        s.present_inputs = vec![true, true, false, true];
        check_gradients_spec(
            &s,
            vec![
                Value::F32(random_input(&[2, 5], 2, -1.0, 1.0)),
                i(&[3, -1]),
                f(&[], vec![0.0]),
                i(&[1]),
            ],
            &[0],
            1e-2,
        );
    }
}
