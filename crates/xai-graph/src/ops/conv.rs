//! Convolutions: `Conv` (1-D and 2-D, grouped, depthwise, dilated, strided, any padding) on
//! `xai-models`' kernels — the direct convolution, Winograd F(4x4, 3x3) / F(2x2, 3x3) and the
//! AVX-512 paths stay the implementation — and `ConvTranspose` (2-D, direct loops).
//!
//! `Conv` runs a one-layer [`Network`] per input size (cached, so its packed and transformed
//! kernels are made once); its backward pass is the network's input gradient (the transposed
//! convolution) and, only when asked for, its weight and bias gradients (im2col + gemm),
//! converted between ONNX's `[M, C/group, kh, kw]` and the layer's `[kh, kw, C/group, M]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, Array4, ArrayD, ArrayView4, Axis, IxDyn};
use rayon::prelude::*;
use xai_core::DifferentiableModel;
use xai_models::{Conv2d, GroupConv2d, Layer, NamedLayer, Network, Padding};

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required_f32, Attrs, Builder, NodeSpec, Operator};
use crate::value::Value;

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("Conv", build_conv),
    ("ConvTranspose", build_conv_transpose),
];

/// The largest kernel extent, stride, dilation, pad or group count accepted (as the importer).
const MAX_EXTENT: i64 = 1 << 16;

/// How the input is padded.
#[derive(Debug, Clone, PartialEq)]
enum AutoPad {
    /// `pads` as given: `[h_begin, w_begin, h_end, w_end]`.
    Explicit([usize; 4]),
    /// Output `ceil(in / stride)`, the odd pixel at the end (`SAME_UPPER`) or the start.
    Same { upper: bool },
}

/// Geometry attributes shared by `Conv` and `ConvTranspose`, for two spatial axes (1-D
/// operators get a height of 1).
#[derive(Debug, Clone)]
struct Geometry {
    /// 1-D operator (input `[n, c, l]`).
    one_d: bool,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    group: usize,
    pad: AutoPad,
}

fn extent(v: i64, lo: i64, what: &str) -> OpResult<usize> {
    if (lo..=MAX_EXTENT).contains(&v) {
        Ok(v as usize)
    } else {
        Err(OpError(format!(
            "{what} is {v}, expected a value in {lo}..={MAX_EXTENT}"
        )))
    }
}

impl Geometry {
    fn read(a: &Attrs, weight_shape: Option<&[usize]>) -> OpResult<Self> {
        let spatial = match (a.ints("kernel_shape")?, weight_shape) {
            (Some(k), _) => k.len(),
            (None, Some(w)) if w.len() >= 3 => w.len() - 2,
            _ => return Err(OpError(
                "the kernel shape is unknown: no `kernel_shape` attribute and no constant weight"
                    .into(),
            )),
        };
        if !(1..=2).contains(&spatial) {
            return Err(OpError(format!(
                "{spatial} spatial dimensions; the engine convolves 1-D and 2-D inputs"
            )));
        }
        let one_d = spatial == 1;
        let pair = |name: &str, default: i64, lo: i64| -> OpResult<(usize, usize)> {
            let v = a.ints(name)?.unwrap_or_else(|| vec![default; spatial]);
            if v.len() != spatial {
                return Err(OpError(format!(
                    "attribute `{name}` = {v:?} has {} values, expected {spatial}",
                    v.len()
                )));
            }
            let f = |x: i64| extent(x, lo, &format!("attribute `{name}`"));
            Ok(if one_d {
                (1, f(v[0])?)
            } else {
                (f(v[0])?, f(v[1])?)
            })
        };
        let kernel = match a.ints("kernel_shape")? {
            Some(_) => pair("kernel_shape", 1, 1)?,
            None => {
                let w = weight_shape.unwrap_or(&[]);
                let f = |x: usize| extent(x as i64, 1, "the weight's kernel size");
                if one_d {
                    (1, f(w[2])?)
                } else {
                    (f(w[2])?, f(w[3])?)
                }
            }
        };
        let stride = pair("strides", 1, 1)?;
        let dilation = pair("dilations", 1, 1)?;
        let group = extent(a.int_or("group", 1)?, 1, "attribute `group`")?;
        let pad = match a.string_or("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => {
                let p = a.ints("pads")?.unwrap_or_else(|| vec![0; 2 * spatial]);
                if p.len() != 2 * spatial {
                    return Err(OpError(format!(
                        "attribute `pads` = {p:?} has {} values, expected {}",
                        p.len(),
                        2 * spatial
                    )));
                }
                let f = |x: i64| extent(x, 0, "attribute `pads`");
                AutoPad::Explicit(if one_d {
                    [0, f(p[0])?, 0, f(p[1])?]
                } else {
                    [f(p[0])?, f(p[1])?, f(p[2])?, f(p[3])?]
                })
            }
            "VALID" => AutoPad::Explicit([0; 4]),
            "SAME_UPPER" => AutoPad::Same { upper: true },
            "SAME_LOWER" => AutoPad::Same { upper: false },
            other => {
                return Err(OpError(format!(
                    "attribute `auto_pad` is `{other}`, expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"
                )))
            }
        };
        Ok(Geometry {
            one_d,
            kernel,
            stride,
            dilation,
            group,
            pad,
        })
    }

    /// Explicit pads `[top, left, bottom, right]` for an input of `h x w`.
    fn pads(&self, h: usize, w: usize) -> [usize; 4] {
        match &self.pad {
            AutoPad::Explicit(p) => *p,
            AutoPad::Same { upper } => {
                let split = |size: usize, k: usize, s: usize, d: usize| {
                    let ext = (k - 1) * d + 1;
                    let out = size.div_ceil(s);
                    let total = ((out.max(1) - 1) * s + ext).saturating_sub(size);
                    let small = total / 2;
                    if *upper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                };
                let (t, b) = split(h, self.kernel.0, self.stride.0, self.dilation.0);
                let (l, r) = split(w, self.kernel.1, self.stride.1, self.dilation.1);
                [t, l, b, r]
            }
        }
    }

    /// The input as `[n, c, h, w]` (a 1-D input gets a height of 1).
    fn as_4d<'a>(&self, x: &'a ArrayD<f32>) -> OpResult<ArrayView4<'a, f32>> {
        let rank = if self.one_d { 3 } else { 4 };
        if x.ndim() != rank {
            return Err(OpError(format!(
                "the input has shape {:?}, expected rank {rank} ([n, c, {}])",
                x.shape(),
                if self.one_d { "l" } else { "h, w" }
            )));
        }
        let v = x.view();
        let v = if self.one_d {
            v.insert_axis(Axis(2))
        } else {
            v
        };
        v.into_dimensionality()
            .map_err(|e| OpError(format!("input: {e}")))
    }
}

/// `Conv`.
#[derive(Debug)]
struct Conv {
    /// `None` until the weight's shape is known (no `kernel_shape`, weight computed at run time).
    geom: Option<Geometry>,
    attrs: Attrs,
    /// The weight in ONNX layout when it is a constant (the usual case).
    weight: Option<ArrayD<f32>>,
    bias: Option<Vec<f32>>,
    /// One-layer networks by input `[c, h, w]`.
    nets: Mutex<HashMap<[usize; 3], Arc<Network>>>,
}

fn build_conv(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let weight = match spec.constant(1) {
        Some(Value::F32(w)) => Some(w.clone()),
        Some(Value::I64(_)) => return Err(OpError("the weight is an integer tensor".into())),
        None => None,
    };
    let geom = match (&weight, spec.attrs.ints("kernel_shape")?) {
        (None, None) => None,
        (w, _) => Some(Geometry::read(&spec.attrs, w.as_ref().map(|w| w.shape()))?),
    };
    if let (Some(w), Some(g)) = (&weight, &geom) {
        check_weight(g, w.shape())?;
    }
    let bias = spec.constant(2).map(|b| b.to_f32_vec());
    Ok(Box::new(Conv {
        geom,
        attrs: spec.attrs.clone(),
        weight,
        bias,
        nets: Mutex::new(HashMap::new()),
    }))
}

fn check_weight(geom: &Geometry, w: &[usize]) -> OpResult<()> {
    let rank = if geom.one_d { 3 } else { 4 };
    let kernel_ok = if geom.one_d {
        w.len() == 3 && w[2] == geom.kernel.1
    } else {
        w.len() == 4 && w[2] == geom.kernel.0 && w[3] == geom.kernel.1
    };
    if w.len() != rank || !kernel_ok || w[0] == 0 || w[1] == 0 || !w[0].is_multiple_of(geom.group) {
        return Err(OpError(format!(
            "the weight has shape {w:?}, expected rank {rank} [M, C/group, {}] with M a multiple of group = {}",
            if geom.one_d { format!("{}", geom.kernel.1) } else { format!("{}, {}", geom.kernel.0, geom.kernel.1) },
            geom.group
        )));
    }
    Ok(())
}

/// ONNX `[M, C/g, kh, kw]` to the layer's `[kh, kw, C/g, M]`.
fn oihw_to_hwio(w: &ArrayD<f32>, kh: usize, kw: usize) -> Vec<f32> {
    let (m, cg) = (w.shape()[0], w.shape()[1]);
    let w = w.as_standard_layout();
    let src = w.as_slice().expect("standard layout");
    let mut out = vec![0.0; src.len()];
    for o in 0..m {
        for i in 0..cg {
            for y in 0..kh {
                for x in 0..kw {
                    out[((y * kw + x) * cg + i) * m + o] = src[((o * cg + i) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// The layer's `[kh, kw, C/g, M]` back to ONNX `[M, C/g, kh, kw]`.
fn hwio_to_oihw(src: &[f32], m: usize, cg: usize, kh: usize, kw: usize) -> Vec<f32> {
    let mut out = vec![0.0; src.len()];
    for o in 0..m {
        for i in 0..cg {
            for y in 0..kh {
                for x in 0..kw {
                    out[((o * cg + i) * kh + y) * kw + x] = src[((y * kw + x) * cg + i) * m + o];
                }
            }
        }
    }
    out
}

impl Conv {
    fn weight<'a>(&'a self, inputs: &[Option<&'a Value>]) -> OpResult<&'a ArrayD<f32>> {
        match &self.weight {
            Some(w) => Ok(w),
            None => {
                let w = required_f32(inputs, 1, "W")?;
                check_weight(&self.geometry(inputs)?, w.shape())?;
                Ok(w)
            }
        }
    }

    /// The geometry, read from the run-time weight's shape when the node gives no
    /// `kernel_shape` and no constant weight.
    fn geometry(&self, inputs: &[Option<&Value>]) -> OpResult<Geometry> {
        match &self.geom {
            Some(g) => Ok(g.clone()),
            None => {
                let w = required_f32(inputs, 1, "W")?;
                Geometry::read(&self.attrs, Some(w.shape()))
            }
        }
    }

    fn bias(&self, inputs: &[Option<&Value>], m: usize) -> OpResult<Vec<f32>> {
        let b = match (&self.bias, optional(inputs, 2)) {
            (Some(b), _) => b.clone(),
            (None, Some(v)) => v.to_f32_vec(),
            (None, None) => vec![0.0; m],
        };
        if b.len() != m {
            return Err(OpError(format!(
                "the bias has {} values, expected {m} (one per output channel)",
                b.len()
            )));
        }
        Ok(b)
    }

    /// The one-layer network for inputs `[c, h, w]`.
    fn network(
        &self,
        inputs: &[Option<&Value>],
        c: usize,
        h: usize,
        w: usize,
    ) -> OpResult<Arc<Network>> {
        let key = [c, h, w];
        let cached = self.weight.is_some();
        if cached {
            if let Some(net) = self
                .nets
                .lock()
                .map_err(|_| OpError("a lock was poisoned".into()))?
                .get(&key)
            {
                return Ok(net.clone());
            }
        }
        let weight = self.weight(inputs)?;
        let (m, cg) = (weight.shape()[0], weight.shape()[1]);
        let g = &self.geometry(inputs)?;
        if cg * g.group != c {
            return Err(OpError(format!(
                "the input has {c} channels, the weight expects {cg} x group {} = {}",
                g.group,
                cg * g.group
            )));
        }
        let (kh, kw) = g.kernel;
        let [top, left, bottom, right] = g.pads(h, w);
        let padding = Padding::Explicit {
            top,
            bottom,
            left,
            right,
        };
        let hwio = oihw_to_hwio(weight, kh, kw);
        let bias = self.bias(inputs, m)?;
        let layer = if g.group == 1 && g.dilation == (1, 1) {
            Layer::Conv2d(Conv2d {
                in_channels: c,
                out_channels: m,
                kernel: (kh, kw),
                stride: g.stride,
                padding,
                weight: hwio,
                bias,
            })
        } else {
            Layer::GroupConv2d(GroupConv2d {
                in_channels: c,
                out_channels: m,
                kernel: (kh, kw),
                stride: g.stride,
                dilation: g.dilation,
                groups: g.group,
                padding,
                weight: hwio,
                bias,
            })
        };
        let net = Network::new(
            "conv",
            [c, h, w],
            vec![NamedLayer {
                name: "conv".into(),
                layer,
            }],
        )
        .map_err(|e| {
            OpError(format!(
                "the convolution does not fit the input [{c}, {h}, {w}]: {e}"
            ))
        })?;
        let net = Arc::new(net);
        if cached {
            self.nets
                .lock()
                .map_err(|_| OpError("a lock was poisoned".into()))?
                .insert(key, net.clone());
        }
        Ok(net)
    }

    fn output_shape(&self, one_d: bool, net: &Network, n: usize) -> OpResult<Vec<usize>> {
        let d = *net
            .dims()
            .last()
            .ok_or_else(|| OpError("the convolution has no output dimensions".into()))?;
        Ok(if one_d {
            vec![n, d.c, d.w]
        } else {
            vec![n, d.c, d.h, d.w]
        })
    }
}

impl Operator for Conv {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?;
        let geom = self.geometry(inputs)?;
        let x4 = geom.as_4d(x)?;
        let (n, c, h, w) = x4.dim();
        let net = self.network(inputs, c, h, w)?;
        let shape = self.output_shape(geom.one_d, &net, n)?;
        crate::ops::shape::checked_elements(&shape, "the convolution's output")?;
        let y = if n == 0 {
            Array2::zeros((0, shape[1..].iter().product()))
        } else {
            net.forward(x4).map_err(|e| OpError(e.to_string()))?
        };
        let y = y
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|e| OpError(e.to_string()))?;
        Ok(vec![Value::F32(y)])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let all = vec![true; inputs.len()];
        self.backward_wanted(inputs, outputs, output_grads, &all)
    }

    fn backward_wanted(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
        wanted: &[bool],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let Some(dy) = first_grad(output_grads) else {
            return Ok(grads);
        };
        let x = required_f32(inputs, 0, "X")?;
        let geom = self.geometry(inputs)?;
        let x4 = geom.as_4d(x)?;
        let (n, c, h, w) = x4.dim();
        if n == 0 {
            return Ok(grads);
        }
        let net = self.network(inputs, c, h, w)?;
        let dy2 = dy
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, dy.len() / n))
            .map_err(|e| OpError(e.to_string()))?;
        let want_x = wanted.first().copied().unwrap_or(false);
        let want_params = wanted.iter().skip(1).any(|&b| b);
        let err = |e: xai_models::ModelError| OpError(e.to_string());
        if want_params {
            let trace = net.forward_trace(x4, None).map_err(err)?;
            let g = net.backward(&trace, dy2.view(), want_x).map_err(err)?;
            if let Some(dx) = g.input {
                grads[0] = Some(reshape_like(dx.into_dyn(), x.shape())?);
            }
            let weight = self.weight(inputs)?;
            let (m, cg) = (weight.shape()[0], weight.shape()[1]);
            if let [gw, gb] = g.params.as_slice() {
                let (kh, kw) = geom.kernel;
                let oihw = hwio_to_oihw(gw, m, cg, kh, kw);
                if wanted.get(1).copied().unwrap_or(false) {
                    grads[1] = Some(ArrayD::from_shape_vec(IxDyn(weight.shape()), oihw)?);
                }
                if wanted.get(2).copied().unwrap_or(false) && inputs.len() > 2 {
                    grads[2] = Some(ArrayD::from_shape_vec(IxDyn(&[m]), gb.clone())?);
                }
            }
        } else if want_x {
            let dx = net
                .input_gradient(x4.into_dyn(), dy2.view())
                .map_err(|e| OpError(e.to_string()))?;
            grads[0] = Some(reshape_like(dx, x.shape())?);
        }
        Ok(grads)
    }
}

fn reshape_like(a: ArrayD<f32>, shape: &[usize]) -> OpResult<ArrayD<f32>> {
    a.into_shape_with_order(IxDyn(shape))
        .map_err(|e| OpError(e.to_string()))
}

/// `ConvTranspose` (2-D): `y[n, o, ih·s − pad + kh·d, iw·s − pad + kw·d] += x[n, i, ih, iw] ·
/// W[i, o_in_group, kh, kw]`, with `output_padding` and `output_shape` as the spec says.
#[derive(Debug)]
struct ConvTranspose {
    /// `None` until the weight's shape is known.
    geom: Option<Geometry>,
    attrs: Attrs,
    output_padding: (usize, usize),
    output_shape: Option<(usize, usize)>,
}

fn build_conv_transpose(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let wshape = spec.constant(1).map(|w| w.shape().to_vec());
    let geom = match (&wshape, spec.attrs.ints("kernel_shape")?) {
        (None, None) => None,
        (w, _) => Some(transpose_geometry(&spec.attrs, w.as_deref())?),
    };
    let op = spec
        .attrs
        .ints("output_padding")?
        .unwrap_or_else(|| vec![0, 0]);
    let output_padding = match op.as_slice() {
        [a, b] => (
            extent(*a, 0, "output_padding")?,
            extent(*b, 0, "output_padding")?,
        ),
        _ => {
            return Err(OpError(format!(
                "attribute `output_padding` = {op:?}, expected 2 values"
            )))
        }
    };
    let output_shape = match spec.attrs.ints("output_shape")? {
        None => None,
        Some(v) => match v.as_slice() {
            [a, b] => Some((
                extent(*a, 1, "output_shape")?,
                extent(*b, 1, "output_shape")?,
            )),
            [_, _, a, b] => Some((
                extent(*a, 1, "output_shape")?,
                extent(*b, 1, "output_shape")?,
            )),
            _ => {
                return Err(OpError(format!(
                    "attribute `output_shape` = {v:?}, expected 2 values"
                )))
            }
        },
    };
    Ok(Box::new(ConvTranspose {
        geom,
        attrs: spec.attrs.clone(),
        output_padding,
        output_shape,
    }))
}

fn transpose_geometry(a: &Attrs, wshape: Option<&[usize]>) -> OpResult<Geometry> {
    let geom = Geometry::read(a, wshape)?;
    if geom.one_d {
        return Err(OpError(
            "1-D ConvTranspose is not supported, expected a 2-D one".into(),
        ));
    }
    Ok(geom)
}

struct TGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    mg: usize,
    cg: usize,
    oh: usize,
    ow: usize,
    pad_t: isize,
    pad_l: isize,
}

impl ConvTranspose {
    fn geom(&self, wt: &ArrayD<f32>) -> OpResult<Geometry> {
        match &self.geom {
            Some(g) => Ok(g.clone()),
            None => transpose_geometry(&self.attrs, Some(wt.shape())),
        }
    }

    fn geometry(&self, x: &ArrayD<f32>, wt: &ArrayD<f32>) -> OpResult<(Geometry, TGeom)> {
        let [n, c, h, w] = <[usize; 4]>::try_from(x.shape()).map_err(|_| {
            OpError(format!(
                "the input has shape {:?}, expected [n, c, h, w]",
                x.shape()
            ))
        })?;
        let geom = self.geom(wt)?;
        let g = &geom;
        let ws = wt.shape();
        if ws.len() != 4
            || ws[0] != c
            || ws[2] != g.kernel.0
            || ws[3] != g.kernel.1
            || c % g.group != 0
        {
            return Err(OpError(format!(
                "the weight has shape {ws:?}, expected [{c}, M/group, {}, {}] with {c} divisible by group {}",
                g.kernel.0, g.kernel.1, g.group
            )));
        }
        let mg = ws[1];
        let m = mg * g.group;
        let cg = c / g.group;
        let full =
            |i: usize, s: usize, k: usize, d: usize, op: usize| (i - 1) * s + (k - 1) * d + 1 + op;
        let fh = full(
            h.max(1),
            g.stride.0,
            g.kernel.0,
            g.dilation.0,
            self.output_padding.0,
        );
        let fw = full(
            w.max(1),
            g.stride.1,
            g.kernel.1,
            g.dilation.1,
            self.output_padding.1,
        );
        let (oh, ow, pad_t, pad_l) = match (self.output_shape, &g.pad) {
            (Some((oh, ow)), pad) => {
                // Total padding from the requested size; SAME_UPPER puts the odd pixel at the end.
                let th = fh as isize - oh as isize;
                let tw = fw as isize - ow as isize;
                // The spec: SAME_UPPER puts the smaller half first, otherwise the larger.
                let upper = matches!(pad, AutoPad::Same { upper: true });
                let first = |t: isize| {
                    if upper {
                        t.div_euclid(2)
                    } else {
                        t - t.div_euclid(2)
                    }
                };
                (oh, ow, first(th), first(tw))
            }
            (None, AutoPad::Explicit([t, l, b, r])) => {
                if fh < t + b || fw < l + r {
                    return Err(OpError("the pads exceed the output".into()));
                }
                (fh - t - b, fw - l - r, *t as isize, *l as isize)
            }
            (None, AutoPad::Same { upper }) => {
                let (oh, ow) = (h * g.stride.0, w * g.stride.1);
                let th = fh as isize - oh as isize;
                let tw = fw as isize - ow as isize;
                let first = |t: isize| {
                    if *upper {
                        t.div_euclid(2)
                    } else {
                        t - t.div_euclid(2)
                    }
                };
                (oh, ow, first(th), first(tw))
            }
        };
        Ok((
            geom.clone(),
            TGeom {
                n,
                c,
                h,
                w,
                m,
                mg,
                cg,
                oh,
                ow,
                pad_t,
                pad_l,
            },
        ))
    }

    /// Visits every (input position, kernel row, kernel column, output position) of a plane.
    #[inline]
    fn taps(g: &Geometry, t: &TGeom, mut f: impl FnMut(usize, usize, usize, usize)) {
        for ih in 0..t.h {
            for kh in 0..g.kernel.0 {
                let oy = (ih * g.stride.0 + kh * g.dilation.0) as isize - t.pad_t;
                if oy < 0 || oy >= t.oh as isize {
                    continue;
                }
                for iw in 0..t.w {
                    for kw in 0..g.kernel.1 {
                        let ox = (iw * g.stride.1 + kw * g.dilation.1) as isize - t.pad_l;
                        if ox < 0 || ox >= t.ow as isize {
                            continue;
                        }
                        f(ih * t.w + iw, kh, kw, oy as usize * t.ow + ox as usize);
                    }
                }
            }
        }
    }
}

impl Operator for ConvTranspose {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let wt = required_f32(inputs, 1, "W")?
            .as_standard_layout()
            .into_owned();
        let (geom, t) = self.geometry(&x, &wt)?;
        let bias = optional(inputs, 2).map(|b| b.to_f32_vec());
        if let Some(b) = &bias {
            if b.len() != t.m {
                return Err(OpError(format!(
                    "the bias has {} values, expected {}",
                    b.len(),
                    t.m
                )));
            }
        }
        let (kh_n, kw_n) = geom.kernel;
        crate::ops::shape::checked_elements(
            &[t.n, t.m, t.oh, t.ow],
            "the transposed convolution's output",
        )?;
        let xs = x.as_slice().expect("standard layout");
        let ws = wt.as_slice().expect("standard layout");
        let plane = t.oh * t.ow;
        let mut y = vec![0.0f32; t.n * t.m * plane];
        y.par_chunks_mut(plane).enumerate().for_each(|(so, out)| {
            let (s, o) = (so / t.m, so % t.m);
            let (gi, oo) = (o / t.mg, o % t.mg);
            if let Some(b) = &bias {
                out.iter_mut().for_each(|v| *v = b[o]);
            }
            for ic in 0..t.cg {
                let i = gi * t.cg + ic;
                let xp = &xs[(s * t.c + i) * t.h * t.w..][..t.h * t.w];
                let wk = &ws[(i * t.mg + oo) * kh_n * kw_n..][..kh_n * kw_n];
                Self::taps(&geom, &t, |ip, kh, kw, op| {
                    out[op] += xp[ip] * wk[kh * kw_n + kw]
                });
            }
        });
        Ok(vec![Value::F32(
            Array4::from_shape_vec((t.n, t.m, t.oh, t.ow), y)?.into_dyn(),
        )])
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        _outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let Some(dy) = first_grad(output_grads) else {
            return Ok(grads);
        };
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let wt = required_f32(inputs, 1, "W")?
            .as_standard_layout()
            .into_owned();
        let (geom, t) = self.geometry(&x, &wt)?;
        let dy = dy.as_standard_layout().into_owned();
        let (kh_n, kw_n) = geom.kernel;
        let xs = x.as_slice().expect("standard layout");
        let ws = wt.as_slice().expect("standard layout");
        let gs = dy.as_slice().expect("standard layout");
        let plane = t.oh * t.ow;
        // dX[s, i] = Σ_o Σ_taps dY[s, o] W[i, o].
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(t.h * t.w)
            .enumerate()
            .for_each(|(si, out)| {
                let (s, i) = (si / t.c, si % t.c);
                let gi = i / t.cg;
                for oo in 0..t.mg {
                    let o = gi * t.mg + oo;
                    let gp = &gs[(s * t.m + o) * plane..][..plane];
                    let wk = &ws[(i * t.mg + oo) * kh_n * kw_n..][..kh_n * kw_n];
                    Self::taps(&geom, &t, |ip, kh, kw, op| {
                        out[ip] += gp[op] * wk[kh * kw_n + kw]
                    });
                }
            });
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(x.shape()), dx)?);
        // dW[i, oo] = Σ_s Σ_taps X[s, i] dY[s, o].
        let mut dw = vec![0.0f32; ws.len()];
        dw.par_chunks_mut(kh_n * kw_n)
            .enumerate()
            .for_each(|(io, out)| {
                let (i, oo) = (io / t.mg, io % t.mg);
                let o = (i / t.cg) * t.mg + oo;
                for s in 0..t.n {
                    let xp = &xs[(s * t.c + i) * t.h * t.w..][..t.h * t.w];
                    let gp = &gs[(s * t.m + o) * plane..][..plane];
                    Self::taps(&geom, &t, |ip, kh, kw, op| {
                        out[kh * kw_n + kw] += xp[ip] * gp[op]
                    });
                }
            });
        grads[1] = Some(ArrayD::from_shape_vec(IxDyn(wt.shape()), dw)?);
        if inputs.len() > 2 && optional(inputs, 2).is_some() {
            let db: Vec<f32> = (0..t.m)
                .map(|o| {
                    (0..t.n)
                        .map(|s| gs[(s * t.m + o) * plane..][..plane].iter().sum::<f32>())
                        .sum()
                })
                .collect();
            grads[2] = Some(ArrayD::from_shape_vec(IxDyn(&[t.m]), db)?);
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients_spec, random_input};

    /// The definition of a 2-D convolution, for reference.
    fn reference_conv(
        x: &ArrayD<f32>,
        w: &ArrayD<f32>,
        b: &[f32],
        stride: usize,
        pad: [usize; 4],
        dil: usize,
        group: usize,
    ) -> ArrayD<f32> {
        let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        let oh = (h + pad[0] + pad[2] - (kh - 1) * dil - 1) / stride + 1;
        let ow = (wd + pad[1] + pad[3] - (kw - 1) * dil - 1) / stride + 1;
        let mg = m / group;
        let mut y = ArrayD::zeros(IxDyn(&[n, m, oh, ow]));
        for s in 0..n {
            for o in 0..m {
                let g = o / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[o];
                        for ic in 0..cg {
                            let i = g * cg + ic;
                            assert!(i < c);
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * stride + ky * dil) as isize - pad[0] as isize;
                                    let ix = (ox * stride + kx * dil) as isize - pad[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        acc += x[[s, i, iy as usize, ix as usize]]
                                            * w[[o, ic, ky, kx]];
                                    }
                                }
                            }
                        }
                        y[[s, o, oy, ox]] = acc;
                    }
                }
            }
        }
        y
    }

    fn conv_spec(attrs: Attrs, w: &ArrayD<f32>, b: &ArrayD<f32>, constant: bool) -> NodeSpec {
        let mut spec = NodeSpec::new("Conv", attrs, 3);
        if constant {
            spec.constant_inputs = vec![
                None,
                Some(Value::F32(w.clone())),
                Some(Value::F32(b.clone())),
            ];
        }
        spec
    }

    #[test]
    fn conv_matches_the_definition() {
        for (c, m, group, stride, dil, pads, k) in [
            (3, 4, 1, 1, 1, [1, 1, 1, 1], 3),
            (4, 6, 2, 2, 1, [0, 1, 1, 0], 3),
            (4, 4, 4, 1, 2, [2, 2, 2, 2], 3),
            (2, 3, 1, 2, 1, [0, 0, 0, 0], 1),
            (16, 16, 1, 1, 1, [1, 1, 1, 1], 3), // the Winograd path
        ] {
            let x = random_input(&[2, c, 9, 8], 1, -1.0, 1.0);
            let w = random_input(&[m, c / group, k, k], 2, -1.0, 1.0);
            let b = random_input(&[m], 3, -1.0, 1.0);
            let attrs = Attrs::new()
                .with("group", Attr::Int(group as i64))
                .with("strides", Attr::Ints(vec![stride as i64; 2]))
                .with("dilations", Attr::Ints(vec![dil as i64; 2]))
                .with("pads", Attr::Ints(pads.iter().map(|&p| p as i64).collect()));
            let op = build_conv(&conv_spec(attrs, &w, &b, true)).unwrap();
            let (xv, wv, bv) = (
                Value::F32(x.clone()),
                Value::F32(w.clone()),
                Value::F32(b.clone()),
            );
            let y = op.forward(&[Some(&xv), Some(&wv), Some(&bv)]).unwrap();
            let expected = reference_conv(&x, &w, b.as_slice().unwrap(), stride, pads, dil, group);
            let Value::F32(y) = &y[0] else { panic!() };
            assert_eq!(y.shape(), expected.shape());
            let err = (y - &expected).iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!(err < 1e-4, "group {group} stride {stride}: max error {err}");
        }
    }

    #[test]
    fn conv_gradients_match_finite_differences() {
        for (group, constant, same) in [(1, true, false), (2, true, true), (1, false, false)] {
            let x = random_input(&[2, 4, 5, 6], 4, -1.0, 1.0);
            let w = random_input(&[4, 4 / group, 3, 3], 5, -1.0, 1.0);
            let b = random_input(&[4], 6, -1.0, 1.0);
            let mut attrs = Attrs::new()
                .with("group", Attr::Int(group as i64))
                .with("strides", Attr::Ints(vec![1, 2]));
            attrs = if same {
                attrs.with("auto_pad", Attr::String("SAME_UPPER".into()))
            } else {
                attrs.with("pads", Attr::Ints(vec![1, 0, 1, 2]))
            };
            // A constant weight is baked into the operator: only the input varies.
            let wrt: &[usize] = if constant { &[0] } else { &[0, 1, 2] };
            let spec = conv_spec(attrs.clone(), &w, &b, constant);
            check_gradients_spec(
                &spec,
                vec![
                    Value::F32(x.clone()),
                    Value::F32(w.clone()),
                    Value::F32(b.clone()),
                ],
                wrt,
                2e-2,
            );
            // Its parameter gradients equal those of the run-time-weight path.
            let ins = [Value::F32(x), Value::F32(w), Value::F32(b)];
            let refs: Vec<Option<&Value>> = ins.iter().map(Some).collect();
            let baked = build_conv(&conv_spec(
                attrs.clone(),
                &ins[1].f32("w").unwrap().clone(),
                &ins[2].f32("b").unwrap().clone(),
                true,
            ))
            .unwrap();
            let free = build_conv(&conv_spec(
                attrs,
                &ins[1].f32("w").unwrap().clone(),
                &ins[2].f32("b").unwrap().clone(),
                false,
            ))
            .unwrap();
            let y = baked.forward(&refs).unwrap();
            let dy = random_input(y[0].shape(), 9, -1.0, 1.0);
            let outs: Vec<&Value> = y.iter().collect();
            let a = baked.backward(&refs, &outs, &[Some(&dy)]).unwrap();
            let b2 = free.backward(&refs, &outs, &[Some(&dy)]).unwrap();
            for k in 0..3 {
                let (a, b2) = (a[k].as_ref().unwrap(), b2[k].as_ref().unwrap());
                assert!(
                    (a - b2).iter().all(|d| d.abs() < 1e-4),
                    "gradient {k} differs"
                );
            }
        }
    }

    #[test]
    fn conv_1d_and_errors() {
        let x = random_input(&[1, 2, 7], 7, -1.0, 1.0);
        let w = random_input(&[3, 2, 3], 8, -1.0, 1.0);
        let b = random_input(&[3], 9, -1.0, 1.0);
        let spec = conv_spec(
            Attrs::new().with("pads", Attr::Ints(vec![1, 1])),
            &w,
            &b,
            true,
        );
        check_gradients_spec(
            &spec,
            vec![
                Value::F32(x.clone()),
                Value::F32(w.clone()),
                Value::F32(b.clone()),
            ],
            &[0],
            2e-2,
        );
        let free = conv_spec(
            Attrs::new().with("pads", Attr::Ints(vec![1, 1])),
            &w,
            &b,
            false,
        );
        check_gradients_spec(
            &free,
            vec![
                Value::F32(x.clone()),
                Value::F32(w.clone()),
                Value::F32(b.clone()),
            ],
            &[0, 1, 2],
            2e-2,
        );
        let op = build_conv(&spec).unwrap();
        let y = op.forward(&[Some(&Value::F32(x)), None, None]).unwrap();
        assert_eq!(y[0].shape(), &[1, 3, 7]);
        // A 4-D input to a 1-D convolution, and a weight of the wrong rank.
        let bad = Value::F32(random_input(&[1, 2, 3, 3], 1, 0.0, 1.0));
        assert!(op.forward(&[Some(&bad), None, None]).is_err());
        let mut spec = NodeSpec::new("Conv", Attrs::new(), 2);
        spec.constant_inputs = vec![None, Some(Value::F32(random_input(&[3, 2], 1, 0.0, 1.0)))];
        assert!(build_conv(&spec).is_err());
        // Channels that do not match the weight.
        let w = random_input(&[3, 2, 3, 3], 8, -1.0, 1.0);
        let spec = conv_spec(Attrs::new(), &w, &ArrayD::zeros(IxDyn(&[3])), true);
        let op = build_conv(&spec).unwrap();
        let x3 = Value::F32(random_input(&[1, 5, 6, 6], 1, 0.0, 1.0));
        assert!(op.forward(&[Some(&x3), None, None]).is_err());
    }

    #[test]
    fn conv_transpose_is_the_adjoint_of_conv() {
        // <conv(x), y> = <x, conv_transpose(y)> for the same weights (no bias).
        let (c, m) = (3, 4);
        let x = random_input(&[1, c, 7, 6], 10, -1.0, 1.0);
        let w = random_input(&[m, c, 3, 3], 11, -1.0, 1.0);
        let attrs = Attrs::new()
            .with("strides", Attr::Ints(vec![2, 2]))
            .with("pads", Attr::Ints(vec![1, 1, 1, 1]));
        let conv = build_conv(&conv_spec(
            attrs.clone(),
            &w,
            &ArrayD::zeros(IxDyn(&[m])),
            true,
        ))
        .unwrap();
        let Value::F32(cx) = conv
            .forward(&[Some(&Value::F32(x.clone())), None, None])
            .unwrap()
            .remove(0)
        else {
            panic!()
        };
        let y = random_input(cx.shape(), 12, -1.0, 1.0);
        // ConvTranspose's weight is [C_in_of_transpose = m, c, k, k]: the same tensor.
        let ct = build_conv_transpose(&NodeSpec::new(
            "ConvTranspose",
            attrs.with("output_shape", Attr::Ints(vec![7, 6])),
            2,
        ))
        .unwrap();
        let Value::F32(ty) = ct
            .forward(&[Some(&Value::F32(y.clone())), Some(&Value::F32(w))])
            .unwrap()
            .remove(0)
        else {
            panic!()
        };
        assert_eq!(ty.shape(), x.shape());
        let lhs: f32 = (&cx * &y).sum();
        let rhs: f32 = (&x * &ty).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn conv_transpose_gradients_match_finite_differences() {
        let x = random_input(&[2, 4, 3, 4], 13, -1.0, 1.0);
        let w = random_input(&[4, 3, 3, 2], 14, -1.0, 1.0);
        let b = random_input(&[6], 15, -1.0, 1.0);
        let spec = NodeSpec::new(
            "ConvTranspose",
            Attrs::new()
                .with("group", Attr::Int(2))
                .with("strides", Attr::Ints(vec![2, 1]))
                .with("pads", Attr::Ints(vec![1, 0, 0, 1]))
                .with("output_padding", Attr::Ints(vec![1, 0])),
            3,
        );
        check_gradients_spec(
            &spec,
            vec![Value::F32(x), Value::F32(w), Value::F32(b)],
            &[0, 1, 2],
            2e-2,
        );
    }
}
