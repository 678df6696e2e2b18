//! `Resize` (opsets 10 to 19) and the legacy `Upsample` (opsets 7 to 9): nearest-neighbour and
//! (N-)linear interpolation of any axes, with ONNX's coordinate transformations.
//!
//! Both interpolations are separable: along each resized axis, output position `o` maps to a
//! coordinate `x` of the input (the `coordinate_transformation_mode`), which reads one input
//! position (nearest, rounded by `nearest_mode`) or two with weights `1 - f` and `f` (linear,
//! `x` clamped into the input). The forward pass resamples one axis at a time; the backward
//! pass applies the transposed resampling (a scatter-add of the weights) in turn.
//!
//! Inputs: opset 10 reads `X, scales`; opsets 11 on read `X, roi, scales, sizes` (one of
//! `scales` and `sizes`; opset 18 adds `axes` and `keep_aspect_ratio_policy`). `Upsample`
//! reads its scales from the attribute (opset 7) or input 1 (opset 9). Opset 10 and `Upsample`
//! use the asymmetric transformation and round nearest positions as onnxruntime does (down
//! when upsampling, up when downsampling). `cubic` mode and antialiased downsampling are
//! refused with an error.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required, Builder, NodeSpec, Operator};
use crate::ops::shape::checked_elements;
use crate::value::{normalize_axis, Value};

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("Resize", build_resize), ("Upsample", build_upsample)];

/// How a nearest-neighbour coordinate is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opset 10 and `Upsample`: truncation when upsampling, ceiling when downsampling.
    Legacy,
}

/// The interpolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nearest(Nearest),
    Linear,
}

/// `coordinate_transformation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
    TfCropAndResize,
}

/// `keep_aspect_ratio_policy` (opset 18, with `sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Where the scales come from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// `Upsample` opset 7: the `scales` attribute.
    Attr(Vec<f32>),
    /// `Upsample` opset 9, `Resize` opset 10: input 1.
    Input1,
    /// `Resize` opset 11 on: roi (1), scales (2), sizes (3).
    Modern,
}

/// A `Resize` or `Upsample` node.
#[derive(Debug)]
struct Resize {
    mode: Mode,
    coord: Coord,
    source: Source,
    extrapolation: f32,
    axes: Option<Vec<i64>>,
    policy: Policy,
    antialias: bool,
}

fn parse_mode(mode: &str, nearest: Nearest) -> OpResult<Mode> {
    match mode {
        "nearest" => Ok(Mode::Nearest(nearest)),
        "linear" | "bilinear" | "trilinear" => Ok(Mode::Linear),
        other => Err(OpError(format!(
            "attribute `mode` is `{other}`, expected nearest or linear (cubic is not supported)"
        ))),
    }
}

fn build_resize(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    if spec.opset < 11 {
        return Ok(Box::new(Resize {
            mode: parse_mode(&a.string_or("mode", "nearest")?, Nearest::Legacy)?,
            coord: Coord::Asymmetric,
            source: Source::Input1,
            extrapolation: 0.0,
            axes: None,
            policy: Policy::Stretch,
            antialias: false,
        }));
    }
    let nearest = match a.string_or("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => {
            return Err(OpError(format!(
                "attribute `nearest_mode` is `{other}`, expected round_prefer_floor, \
                 round_prefer_ceil, floor or ceil"
            )))
        }
    };
    let coord = match a
        .string_or("coordinate_transformation_mode", "half_pixel")?
        .as_str()
    {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        other => {
            return Err(OpError(format!(
                "attribute `coordinate_transformation_mode` is `{other}`, expected half_pixel, \
                 half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, \
                 tf_half_pixel_for_nn or tf_crop_and_resize"
            )))
        }
    };
    let policy = match a.string_or("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => Policy::Stretch,
        "not_larger" => Policy::NotLarger,
        "not_smaller" => Policy::NotSmaller,
        other => {
            return Err(OpError(format!(
                "attribute `keep_aspect_ratio_policy` is `{other}`, expected stretch, \
                 not_larger or not_smaller"
            )))
        }
    };
    let extrapolation = a.float_or("extrapolation_value", 0.0)?;
    Ok(Box::new(Resize {
        mode: parse_mode(&a.string_or("mode", "nearest")?, nearest)?,
        coord,
        source: Source::Modern,
        extrapolation,
        axes: a.ints("axes")?,
        policy,
        antialias: a.int_or("antialias", 0)? != 0,
    }))
}

fn build_upsample(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    let source = if spec.opset < 9 {
        Source::Attr(
            a.floats("scales")?
                .ok_or_else(|| OpError("Upsample needs the attribute `scales`".into()))?,
        )
    } else {
        Source::Input1
    };
    Ok(Box::new(Resize {
        mode: parse_mode(&a.string_or("mode", "nearest")?, Nearest::Legacy)?,
        coord: Coord::Asymmetric,
        source,
        extrapolation: 0.0,
        axes: None,
        policy: Policy::Stretch,
        antialias: false,
    }))
}

/// One axis of the resampling: for each output position, its input taps and weights.
#[derive(Debug)]
struct AxisPlan {
    taps: Vec<Vec<(usize, f32)>>,
    /// Output positions outside the crop (`tf_crop_and_resize`): the extrapolation value.
    outside: Vec<usize>,
    identity: bool,
}

/// Per axis of the input: the output size, the scale, the crop (`tf_crop_and_resize`) and the
/// resized length before rounding.
#[derive(Debug)]
struct Lengths {
    out: Vec<usize>,
    scale: Vec<f32>,
    roi: Vec<(f32, f32)>,
    length: Vec<f32>,
}

/// Input `i` as floats when present and not empty.
fn optional_floats(inputs: &[Option<&Value>], i: usize) -> Option<Vec<f32>> {
    optional(inputs, i)
        .filter(|v| !v.is_empty())
        .map(|v| v.to_f32_vec())
}

impl Resize {
    /// Per axis of the input: output size, scale and crop.
    fn sizes(&self, inputs: &[Option<&Value>], shape: &[usize]) -> OpResult<Lengths> {
        let rank = shape.len();
        let axes: Vec<usize> = match &self.axes {
            None => (0..rank).collect(),
            Some(a) => {
                let mut out = Vec::new();
                for &ax in a {
                    let n = normalize_axis(ax, rank, "axis")?;
                    if out.contains(&n) {
                        return Err(OpError(format!("axes {a:?} repeat axis {ax}")));
                    }
                    out.push(n);
                }
                out
            }
        };
        let n = axes.len();
        let mut roi = vec![(0.0f32, 1.0f32); rank];
        let (scales, sizes) = match &self.source {
            Source::Attr(s) => (Some(s.clone()), None),
            Source::Input1 => (Some(required(inputs, 1, "scales")?.to_f32_vec()), None),
            Source::Modern => {
                if self.coord == Coord::TfCropAndResize {
                    if let Some(r) = optional_floats(inputs, 1) {
                        if r.len() != 2 * n {
                            return Err(OpError(format!(
                                "roi has {} values, expected {} (starts and ends of {n} axes)",
                                r.len(),
                                2 * n
                            )));
                        }
                        for (k, &ax) in axes.iter().enumerate() {
                            roi[ax] = (r[k], r[k + n]);
                        }
                    }
                }
                let sizes = match optional(inputs, 3).filter(|v| !v.is_empty()) {
                    Some(v) => Some(v.to_i64_vec("sizes")?),
                    None => None,
                };
                (optional_floats(inputs, 2), sizes)
            }
        };
        let mut out = shape.to_vec();
        let mut scale = vec![1.0f32; rank];
        // The resized lengths before rounding (ONNX's reference uses `scale * length` in the
        // align_corners and pytorch_half_pixel transformations).
        let mut length: Vec<f32> = shape.iter().map(|&d| d as f32).collect();
        match (scales, sizes) {
            (Some(_), Some(_)) => {
                return Err(OpError(
                    "Resize has both scales and sizes, expected one".into(),
                ))
            }
            (None, None) => {
                return Err(OpError("Resize needs scales or sizes".into()));
            }
            (Some(s), None) => {
                if s.len() != n {
                    return Err(OpError(format!(
                        "scales {s:?} has {} values, expected {n}",
                        s.len()
                    )));
                }
                for (k, &ax) in axes.iter().enumerate() {
                    let sc = s[k];
                    if !(sc.is_finite() && sc > 0.0) {
                        return Err(OpError(format!(
                            "scale {sc} of axis {ax} is not a positive number"
                        )));
                    }
                    let (r0, r1) = roi[ax];
                    let len = (shape[ax] as f32 * (r1 - r0) * sc).floor();
                    if !(0.0..=crate::ops::shape::MAX_ELEMENTS as f32).contains(&len) {
                        return Err(OpError(format!(
                            "scale {sc} gives axis {ax} of size {} the size {len}",
                            shape[ax]
                        )));
                    }
                    out[ax] = len as usize;
                    scale[ax] = sc;
                    length[ax] = shape[ax] as f32 * sc;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != n {
                    return Err(OpError(format!(
                        "sizes {sz:?} has {} values, expected {n}",
                        sz.len()
                    )));
                }
                let mut target = Vec::with_capacity(n);
                for &v in &sz {
                    target.push(usize::try_from(v).map_err(|_| {
                        OpError(format!(
                            "sizes {sz:?} holds {v}, expected non-negative sizes"
                        ))
                    })?);
                }
                checked_elements(&target, "Resize's sizes")?;
                if self.policy == Policy::Stretch {
                    for (k, &ax) in axes.iter().enumerate() {
                        out[ax] = target[k];
                        length[ax] = target[k] as f32;
                        scale[ax] = if shape[ax] == 0 {
                            1.0
                        } else {
                            target[k] as f32 / shape[ax] as f32
                        };
                    }
                } else {
                    let ratios = axes
                        .iter()
                        .zip(&target)
                        .filter(|(ax, _)| shape[**ax] > 0)
                        .map(|(&ax, &t)| t as f32 / shape[ax] as f32);
                    let s = if self.policy == Policy::NotLarger {
                        ratios.fold(f32::INFINITY, f32::min)
                    } else {
                        ratios.fold(0.0, f32::max)
                    };
                    let s = if s.is_finite() { s } else { 1.0 };
                    for &ax in &axes {
                        out[ax] = (s * shape[ax] as f32).round() as usize;
                        scale[ax] = s;
                        length[ax] = s * shape[ax] as f32;
                    }
                }
            }
        }
        for (k, (&i, &o)) in shape.iter().zip(&out).enumerate() {
            if i == 0 && o > 0 {
                return Err(OpError(format!(
                    "cannot resize axis {k} of size 0 to size {o}"
                )));
            }
            if self.antialias && o < i && self.mode == Mode::Linear {
                return Err(OpError(
                    "antialiased downsampling (antialias = 1) is not supported".into(),
                ));
            }
        }
        checked_elements(&out, "Resize's output")?;
        Ok(Lengths {
            out,
            scale,
            roi,
            length,
        })
    }

    /// The input coordinate of output position `o` (`lf`: the resized length before
    /// rounding).
    fn coordinate(
        &self,
        o: usize,
        in_len: usize,
        out_len: usize,
        s: f32,
        roi: (f32, f32),
        lf: f32,
    ) -> f32 {
        let (x, li, lo) = (o as f32, in_len as f32, out_len as f32);
        match self.coord {
            Coord::HalfPixel => (x + 0.5) / s - 0.5,
            Coord::HalfPixelSymmetric => {
                let adjustment = lo / (s * li);
                let offset = li / 2.0 * (1.0 - adjustment);
                offset + (x + 0.5) / s - 0.5
            }
            Coord::PytorchHalfPixel => {
                if lf > 1.0 {
                    (x + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            Coord::AlignCorners => {
                if lf == 1.0 {
                    0.0
                } else {
                    x * (li - 1.0) / (lf - 1.0)
                }
            }
            Coord::Asymmetric => x / s,
            Coord::TfHalfPixelForNn => (x + 0.5) / s,
            Coord::TfCropAndResize => {
                if out_len > 1 {
                    roi.0 * (li - 1.0) + x * (roi.1 - roi.0) * (li - 1.0) / (lo - 1.0)
                } else {
                    0.5 * (roi.0 + roi.1) * (li - 1.0)
                }
            }
        }
    }

    /// The resampling plan of one axis.
    fn axis_plan(
        &self,
        in_len: usize,
        out_len: usize,
        s: f32,
        roi: (f32, f32),
        lf: f32,
    ) -> AxisPlan {
        let last = in_len.saturating_sub(1) as f32;
        let mut taps = Vec::with_capacity(out_len);
        let mut outside = Vec::new();
        for o in 0..out_len {
            let x = self.coordinate(o, in_len, out_len, s, roi, lf);
            if self.coord == Coord::TfCropAndResize && !(0.0..=last).contains(&x) {
                outside.push(o);
                taps.push(vec![(0, 0.0)]);
                continue;
            }
            let t = match self.mode {
                Mode::Nearest(n) => {
                    let r = match n {
                        Nearest::RoundPreferFloor => {
                            if x == x.floor() + 0.5 {
                                x.floor()
                            } else {
                                x.round()
                            }
                        }
                        Nearest::RoundPreferCeil => {
                            if x == x.floor() + 0.5 {
                                x.ceil()
                            } else {
                                x.round()
                            }
                        }
                        Nearest::Floor => x.floor(),
                        Nearest::Ceil => x.ceil(),
                        Nearest::Legacy => {
                            if s < 1.0 {
                                x.ceil()
                            } else {
                                x.trunc()
                            }
                        }
                    };
                    let i = (if r.is_nan() { 0.0 } else { r.clamp(0.0, last) }) as usize;
                    vec![(i, 1.0)]
                }
                Mode::Linear => {
                    let xc = if x.is_nan() { 0.0 } else { x.clamp(0.0, last) };
                    let i0 = xc.floor() as usize;
                    let i1 = (i0 + 1).min(in_len.saturating_sub(1));
                    let f = xc - i0 as f32;
                    if i1 == i0 || f == 0.0 {
                        vec![(i0, 1.0)]
                    } else {
                        vec![(i0, 1.0 - f), (i1, f)]
                    }
                }
            };
            taps.push(t);
        }
        let identity = out_len == in_len
            && outside.is_empty()
            && taps
                .iter()
                .enumerate()
                .all(|(o, t)| t.len() == 1 && t[0] == (o, 1.0));
        AxisPlan {
            taps,
            outside,
            identity,
        }
    }

    /// The plan of every axis.
    fn plan(&self, inputs: &[Option<&Value>], shape: &[usize]) -> OpResult<Vec<AxisPlan>> {
        let Lengths {
            out,
            scale,
            roi,
            length,
        } = self.sizes(inputs, shape)?;
        Ok((0..shape.len())
            .map(|k| self.axis_plan(shape[k], out[k], scale[k], roi[k], length[k]))
            .collect())
    }
}

/// Resamples axis `k` of `a` by `plan` (weights).
fn resample(a: &ArrayD<f32>, k: usize, plan: &AxisPlan) -> ArrayD<f32> {
    let mut shape = a.shape().to_vec();
    shape[k] = plan.taps.len();
    let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (o, t) in plan.taps.iter().enumerate() {
        let mut dst = y.index_axis_mut(Axis(k), o);
        for &(i, w) in t {
            if w != 0.0 {
                dst.scaled_add(w, &a.index_axis(Axis(k), i));
            }
        }
    }
    y
}

/// The transpose of [`resample`]: scatter-adds `g` (resampled shape) back to `in_len`.
fn resample_transpose(g: &ArrayD<f32>, k: usize, plan: &AxisPlan, in_len: usize) -> ArrayD<f32> {
    let mut shape = g.shape().to_vec();
    shape[k] = in_len;
    let mut dx = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (o, t) in plan.taps.iter().enumerate() {
        let src = g.index_axis(Axis(k), o);
        for &(i, w) in t {
            if w != 0.0 {
                dx.index_axis_mut(Axis(k), i).scaled_add(w, &src);
            }
        }
    }
    dx
}

/// The input positions of a nearest-neighbour plan.
fn nearest_indices(plan: &AxisPlan) -> Vec<usize> {
    plan.taps
        .iter()
        .map(|t| t.first().map_or(0, |&(i, _)| i))
        .collect()
}

fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

impl Operator for Resize {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "X")?;
        let plans = self.plan(inputs, x.shape())?;
        let nearest = matches!(self.mode, Mode::Nearest(_));
        let y = match x {
            Value::F32(a) => {
                let mut y = a.clone();
                for (k, p) in plans.iter().enumerate() {
                    if p.identity {
                        continue;
                    }
                    y = if nearest {
                        y.select(Axis(k), &nearest_indices(p))
                    } else {
                        resample(&y, k, p)
                    };
                }
                for (k, p) in plans.iter().enumerate() {
                    for &o in &p.outside {
                        y.index_axis_mut(Axis(k), o).fill(self.extrapolation);
                    }
                }
                Value::F32(standard(y))
            }
            Value::I64(a) => {
                if !nearest {
                    return Err(OpError(
                        "linear Resize of an integer tensor is not supported".into(),
                    ));
                }
                let mut y = a.clone();
                for (k, p) in plans.iter().enumerate() {
                    if !p.identity {
                        y = y.select(Axis(k), &nearest_indices(p));
                    }
                }
                for (k, p) in plans.iter().enumerate() {
                    for &o in &p.outside {
                        y.index_axis_mut(Axis(k), o).fill(self.extrapolation as i64);
                    }
                }
                Value::I64(standard(y))
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
        let plans = self.plan(inputs, x.shape())?;
        let out: Vec<usize> = plans.iter().map(|p| p.taps.len()).collect();
        if g.shape() != out.as_slice() {
            return Err(OpError(format!(
                "gradient of shape {:?} for a Resize output of shape {out:?}",
                g.shape()
            )));
        }
        let mut acc = g.clone();
        for (k, p) in plans.iter().enumerate() {
            for &o in &p.outside {
                acc.index_axis_mut(Axis(k), o).fill(0.0);
            }
        }
        for (k, p) in plans.iter().enumerate().rev() {
            if !p.identity {
                acc = resample_transpose(&acc, k, p, x.shape()[k]);
            }
        }
        grads[0] = Some(acc);
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
    use crate::testing::{check_gradients_spec, random_input};

    fn f(shape: &[usize], v: Vec<f32>) -> Value {
        Value::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
    }

    fn fl(v: &[f32]) -> Value {
        f(&[v.len()], v.to_vec())
    }

    fn i(v: &[i64]) -> Value {
        Value::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap())
    }

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        pairs.iter().fold(Attrs::new(), |a, (k, v)| {
            a.with(k, Attr::String(v.to_string()))
        })
    }

    fn resize(a: Attrs, opset: i64, inputs: &[Option<&Value>]) -> OpResult<Value> {
        let mut s = NodeSpec::new("Resize", a, inputs.len());
        s.opset = opset;
        s.present_inputs = inputs.iter().map(|v| v.is_some()).collect();
        Ok(build_resize(&s)?.forward(inputs)?.remove(0))
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    fn x_2x4() -> Value {
        f(&[1, 1, 2, 4], (1..=8).map(|v| v as f32).collect())
    }

    fn x_4x4() -> Value {
        f(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect())
    }

    #[test]
    fn nearest_spec_examples() {
        // resize_upsample_scales_nearest: [[1,2],[3,4]] by (2, 3).
        let x = f(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let sc = fl(&[1.0, 1.0, 2.0, 3.0]);
        let y = resize(
            attrs(&[("mode", "nearest")]),
            13,
            &[Some(&x), None, Some(&sc)],
        )
        .unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 6]);
        assert_eq!(
            &y.to_f32_vec()[..12],
            &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        // resize_downsample_scales_nearest: scales 0.6 -> [[1, 3]].
        let sc = fl(&[1.0, 1.0, 0.6, 0.6]);
        let y = resize(Attrs::new(), 13, &[Some(&x_2x4()), None, Some(&sc)]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 3.0]);
        // Opset 10 (scales as input 1) gives the same.
        let y = resize(Attrs::new(), 10, &[Some(&x_2x4()), Some(&sc)]).unwrap();
        assert_eq!(y.to_f32_vec(), vec![1.0, 3.0]);
        // resize_upsample_sizes_nearest_ceil_half_pixel: 4x4 -> 8x8, first row.
        let a = attrs(&[
            ("coordinate_transformation_mode", "half_pixel"),
            ("nearest_mode", "ceil"),
        ]);
        let y = resize(
            a,
            13,
            &[Some(&x_4x4()), None, None, Some(&i(&[1, 1, 8, 8]))],
        )
        .unwrap();
        assert_eq!(
            &y.to_f32_vec()[..8],
            &[1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0]
        );
        // resize_upsample_sizes_nearest_floor_align_corners: first row.
        let a = attrs(&[
            ("coordinate_transformation_mode", "align_corners"),
            ("nearest_mode", "floor"),
        ]);
        let y = resize(
            a,
            13,
            &[Some(&x_4x4()), None, None, Some(&i(&[1, 1, 8, 8]))],
        )
        .unwrap();
        assert_eq!(
            &y.to_f32_vec()[..8],
            &[1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0]
        );
        // resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric: first row.
        let a = attrs(&[
            ("coordinate_transformation_mode", "asymmetric"),
            ("nearest_mode", "round_prefer_ceil"),
        ]);
        let y = resize(
            a,
            13,
            &[Some(&x_4x4()), None, None, Some(&i(&[1, 1, 8, 8]))],
        )
        .unwrap();
        assert_eq!(
            &y.to_f32_vec()[..8],
            &[1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0]
        );
        // Integer data, nearest.
        let xi = Value::I64(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![5, 6]).unwrap());
        let y = resize(Attrs::new(), 13, &[Some(&xi), None, Some(&fl(&[1.0, 2.0]))]).unwrap();
        assert_eq!(
            y,
            Value::I64(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![5, 5, 6, 6]).unwrap())
        );
    }

    #[test]
    fn linear_spec_examples() {
        let x = f(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let sc = fl(&[1.0, 1.0, 2.0, 2.0]);
        // resize_upsample_scales_linear (half_pixel).
        let y = resize(
            attrs(&[("mode", "linear")]),
            13,
            &[Some(&x), None, Some(&sc)],
        )
        .unwrap();
        close(
            &y.to_f32_vec(),
            &[
                1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75,
                4.0,
            ],
        );
        // resize_upsample_scales_linear_align_corners.
        let a = attrs(&[
            ("mode", "linear"),
            ("coordinate_transformation_mode", "align_corners"),
        ]);
        let y = resize(a, 13, &[Some(&x), None, Some(&sc)]).unwrap();
        let third = 1.0 / 3.0;
        close(
            &y.to_f32_vec()[..4],
            &[1.0, 1.0 + third, 1.0 + 2.0 * third, 2.0],
        );
        // resize_downsample_scales_linear: 2x4 by 0.6 -> [[2.6666665, 4.3333331]].
        let sc = fl(&[1.0, 1.0, 0.6, 0.6]);
        let y = resize(
            attrs(&[("mode", "linear")]),
            13,
            &[Some(&x_2x4()), None, Some(&sc)],
        )
        .unwrap();
        close(&y.to_f32_vec(), &[2.666_666_5, 4.333_333]);
        // resize_downsample_scales_linear_align_corners -> [[1, 3.142857]].
        let a = attrs(&[
            ("mode", "linear"),
            ("coordinate_transformation_mode", "align_corners"),
        ]);
        let y = resize(a, 13, &[Some(&x_2x4()), None, Some(&sc)]).unwrap();
        close(&y.to_f32_vec(), &[1.0, 3.142_857]);
        // resize_downsample_sizes_linear_pytorch_half_pixel: 4x4 -> 3x1.
        let a = attrs(&[
            ("mode", "linear"),
            ("coordinate_transformation_mode", "pytorch_half_pixel"),
        ]);
        let y = resize(
            a,
            13,
            &[Some(&x_4x4()), None, None, Some(&i(&[1, 1, 3, 1]))],
        )
        .unwrap();
        close(&y.to_f32_vec(), &[1.666_666_7, 7.0, 12.333_333]);
        // resize_tf_crop_and_resize: roi [0,0,0.4,0.6,1,1,0.6,0.8], sizes 3x3.
        let a = attrs(&[
            ("mode", "linear"),
            ("coordinate_transformation_mode", "tf_crop_and_resize"),
        ]);
        let roi = fl(&[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 0.6, 0.8]);
        let y = resize(
            a.clone(),
            13,
            &[Some(&x_4x4()), Some(&roi), None, Some(&i(&[1, 1, 3, 3]))],
        )
        .unwrap();
        close(
            &y.to_f32_vec(),
            &[7.6, 7.9, 8.2, 8.8, 9.1, 9.4, 10.0, 10.3, 10.6],
        );
        // resize_tf_crop_and_resize_extrapolation_value: roi [0,0,0.4,0.6,1,1,1.2,1.7].
        let roi = fl(&[0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 1.7]);
        let a = a.with("extrapolation_value", Attr::Float(10.0));
        let y = resize(
            a,
            13,
            &[Some(&x_4x4()), Some(&roi), None, Some(&i(&[1, 1, 3, 3]))],
        )
        .unwrap();
        close(
            &y.to_f32_vec(),
            &[7.6, 10.0, 10.0, 12.400_001, 10.0, 10.0, 10.0, 10.0, 10.0],
        );
        // Opset 18 axes and keep_aspect_ratio_policy (resize_upsample_sizes_nearest_not_larger):
        // 2x2 to at most 7x8 keeps the ratio: 7x7.
        let a = attrs(&[("keep_aspect_ratio_policy", "not_larger")])
            .with("axes", Attr::Ints(vec![2, 3]));
        let y = resize(a, 18, &[Some(&x), None, None, Some(&i(&[7, 8]))]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 7, 7]);
        let a = attrs(&[("keep_aspect_ratio_policy", "not_smaller")])
            .with("axes", Attr::Ints(vec![-2, -1]));
        let y = resize(a, 18, &[Some(&x), None, None, Some(&i(&[7, 8]))]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 8, 8]);
    }

    #[test]
    fn upsample_and_errors() {
        let x = f(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let mut s = NodeSpec::new(
            "Upsample",
            attrs(&[("mode", "nearest")]).with("scales", Attr::Floats(vec![1.0, 1.0, 2.0, 3.0])),
            1,
        );
        s.opset = 7;
        let y = build_upsample(&s).unwrap().forward(&[Some(&x)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 4, 6]);
        assert_eq!(&y[0].to_f32_vec()[..6], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        // Opset 9: scales as input; linear (asymmetric).
        let mut s = NodeSpec::new("Upsample", attrs(&[("mode", "linear")]), 2);
        s.opset = 9;
        let sc = fl(&[1.0, 1.0, 2.0, 2.0]);
        let y = build_upsample(&s)
            .unwrap()
            .forward(&[Some(&x), Some(&sc)])
            .unwrap();
        close(
            &y[0].to_f32_vec()[..8],
            &[1.0, 1.5, 2.0, 2.0, 2.0, 2.5, 3.0, 3.0],
        );
        s.opset = 7;
        assert!(build_upsample(&s).is_err());
        // Errors: cubic, both or neither of scales and sizes, wrong lengths, huge sizes.
        assert!(resize(attrs(&[("mode", "cubic")]), 13, &[Some(&x)]).is_err());
        assert!(resize(Attrs::new(), 13, &[Some(&x), None, None, None]).is_err());
        let sz = i(&[1, 1, 4, 4]);
        assert!(resize(Attrs::new(), 13, &[Some(&x), None, Some(&sc), Some(&sz)]).is_err());
        assert!(resize(Attrs::new(), 13, &[Some(&x), None, Some(&fl(&[2.0]))]).is_err());
        assert!(resize(
            Attrs::new(),
            13,
            &[Some(&x), None, Some(&fl(&[1.0, 1.0, -1.0, 1.0]))]
        )
        .is_err());
        let huge = i(&[1, 1, 1 << 20, 1 << 20]);
        assert!(resize(Attrs::new(), 13, &[Some(&x), None, None, Some(&huge)]).is_err());
        let xi = Value::I64(ArrayD::zeros(IxDyn(&[1, 2])));
        assert!(resize(
            attrs(&[("mode", "linear")]),
            13,
            &[Some(&xi), None, Some(&fl(&[1.0, 2.0]))]
        )
        .is_err());
        // Empty scales with sizes (exporters write both, one empty).
        let empty = fl(&[]);
        let y = resize(
            Attrs::new(),
            13,
            &[Some(&x), Some(&empty), Some(&empty), Some(&sz)],
        )
        .unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        let op = build_resize(&NodeSpec::new("Resize", Attrs::new(), 3)).unwrap();
        assert!(op.is_parameter_input(0) && !op.is_parameter_input(2));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = || Value::F32(random_input(&[1, 2, 3, 4], 1, -1.0, 1.0));
        let cases: Vec<(Attrs, Value)> = vec![
            (attrs(&[("mode", "linear")]), fl(&[1.0, 1.0, 2.0, 1.5])),
            (attrs(&[("mode", "linear")]), fl(&[1.0, 1.0, 0.6, 0.7])),
            (
                attrs(&[
                    ("mode", "linear"),
                    ("coordinate_transformation_mode", "align_corners"),
                ]),
                fl(&[1.0, 1.0, 2.0, 2.0]),
            ),
            (
                attrs(&[
                    ("mode", "linear"),
                    ("coordinate_transformation_mode", "pytorch_half_pixel"),
                ]),
                fl(&[1.0, 1.0, 1.7, 0.5]),
            ),
            (attrs(&[("mode", "nearest")]), fl(&[1.0, 1.0, 2.0, 0.5])),
            (
                attrs(&[("coordinate_transformation_mode", "asymmetric")]),
                fl(&[1.0, 1.0, 3.0, 2.0]),
            ),
            // N-linear: the channel axis too.
            (attrs(&[("mode", "linear")]), fl(&[1.0, 1.5, 1.0, 2.0])),
        ];
        for (a, sc) in cases {
            let mut s = NodeSpec::new("Resize", a, 3);
            s.opset = 13;
            check_gradients_spec(&s, vec![x(), fl(&[]), sc], &[0], 1e-2);
        }
        let mut s = NodeSpec::new(
            "Resize",
            attrs(&[
                ("mode", "linear"),
                ("coordinate_transformation_mode", "tf_crop_and_resize"),
            ]),
            4,
        );
        s.opset = 13;
        check_gradients_spec(
            &s,
            vec![
                x(),
                fl(&[0.0, 0.0, 0.2, -0.1, 1.0, 1.0, 0.9, 1.3]),
                fl(&[]),
                i(&[1, 2, 4, 5]),
            ],
            &[0],
            1e-2,
        );
        let mut s = NodeSpec::new("Upsample", attrs(&[("mode", "linear")]), 2);
        s.opset = 9;
        check_gradients_spec(&s, vec![x(), fl(&[1.0, 1.0, 2.0, 2.0])], &[0], 1e-2);
    }
}
