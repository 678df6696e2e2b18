//! Pooling: `MaxPool` (with dilations and the optional `Indices` output) and `AveragePool`
//! (`count_include_pad`) on 1-D and 2-D inputs, with `ceil_mode` and every `auto_pad`, as
//! PyTorch and onnxruntime compute them (a last window that would start in the end padding is
//! dropped; with `count_include_pad` the divisor counts the explicit padding, not the part of
//! a window that `ceil_mode` lets hang past it). Planes run on rayon's threads.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, required_f32, Builder, NodeSpec, Operator};
use crate::value::Value;

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[("MaxPool", build), ("AveragePool", build)];

const MAX_EXTENT: i64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pad {
    Explicit([usize; 4]),
    Same { upper: bool },
    Valid,
}

/// A pooling operator.
#[derive(Debug)]
struct Pool {
    max: bool,
    one_d: bool,
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pad: Pad,
    ceil: bool,
    count_include_pad: bool,
    indices_output: bool,
    /// `Indices` in column-major order within a plane (`storage_order = 1`).
    column_major: bool,
}

/// One axis's geometry on a given input size.
#[derive(Debug, Clone, Copy)]
struct Axis1 {
    size: usize,
    out: usize,
    pad_begin: usize,
    pad_end: usize,
    k: usize,
    s: usize,
    d: usize,
}

impl Axis1 {
    fn new(
        size: usize,
        k: usize,
        s: usize,
        d: usize,
        pad: Pad,
        vertical: bool,
        ceil: bool,
    ) -> OpResult<Self> {
        let ext = (k - 1) * d + 1;
        let (pad_begin, pad_end, out) = match pad {
            Pad::Explicit(p) => {
                let (b, e) = if vertical { (p[0], p[2]) } else { (p[1], p[3]) };
                let span = size + b + e;
                if span < ext {
                    return Err(OpError(format!(
                        "the window ({ext} with dilation) is larger than the padded input ({span})"
                    )));
                }
                let mut out = if ceil {
                    (span - ext).div_ceil(s) + 1
                } else {
                    (span - ext) / s + 1
                };
                // A last window that starts in the end padding is dropped.
                if ceil && (out - 1) * s >= size + b {
                    out -= 1;
                }
                (b, e, out)
            }
            Pad::Same { upper } => {
                let out = size.div_ceil(s);
                let total = ((out.max(1) - 1) * s + ext).saturating_sub(size);
                let small = total / 2;
                if upper {
                    (small, total - small, out)
                } else {
                    (total - small, small, out)
                }
            }
            Pad::Valid => {
                if size < ext {
                    return Err(OpError(format!(
                        "the window ({ext}) is larger than the input ({size})"
                    )));
                }
                (0, 0, (size - ext) / s + 1)
            }
        };
        Ok(Axis1 {
            size,
            out,
            pad_begin,
            pad_end,
            k,
            s,
            d,
        })
    }

    /// The in-bounds taps of output position `o`: (input index, tap index).
    #[inline]
    fn taps(&self, o: usize) -> impl Iterator<Item = usize> + '_ {
        let start = (o * self.s) as isize - self.pad_begin as isize;
        (0..self.k).filter_map(move |t| {
            let i = start + (t * self.d) as isize;
            (i >= 0 && (i as usize) < self.size).then_some(i as usize)
        })
    }

    /// The divisor of `count_include_pad`: the window's positions inside the explicit padding.
    fn padded_count(&self, o: usize) -> usize {
        let start = (o * self.s) as isize - self.pad_begin as isize;
        let end = (start + self.k as isize).min((self.size + self.pad_end) as isize);
        (end - start).max(0) as usize
    }
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a = &spec.attrs;
    let max = spec.op_type == "MaxPool";
    let kernel = a
        .ints("kernel_shape")?
        .ok_or_else(|| OpError("attribute `kernel_shape` is required".into()))?;
    let spatial = kernel.len();
    if !(1..=2).contains(&spatial) {
        return Err(OpError(format!(
            "`kernel_shape` = {kernel:?}: the engine pools 1-D and 2-D inputs"
        )));
    }
    let one_d = spatial == 1;
    let ext = |v: i64, lo: i64, what: &str| -> OpResult<usize> {
        if (lo..=MAX_EXTENT).contains(&v) {
            Ok(v as usize)
        } else {
            Err(OpError(format!(
                "attribute `{what}` has {v}, expected {lo}..={MAX_EXTENT}"
            )))
        }
    };
    let pair = |name: &str, lo: i64| -> OpResult<(usize, usize)> {
        let v = a.ints(name)?.unwrap_or_else(|| vec![1; spatial]);
        if v.len() != spatial {
            return Err(OpError(format!(
                "attribute `{name}` = {v:?}, expected {spatial} values"
            )));
        }
        Ok(if one_d {
            (1, ext(v[0], lo, name)?)
        } else {
            (ext(v[0], lo, name)?, ext(v[1], lo, name)?)
        })
    };
    let kernel = if one_d {
        (1, ext(kernel[0], 1, "kernel_shape")?)
    } else {
        (
            ext(kernel[0], 1, "kernel_shape")?,
            ext(kernel[1], 1, "kernel_shape")?,
        )
    };
    let stride = pair("strides", 1)?;
    let dilation = pair("dilations", 1)?;
    if !max && dilation != (1, 1) {
        return Err(OpError(format!(
            "AveragePool with dilations {dilation:?} is not supported, expected 1"
        )));
    }
    let pad = match a.string_or("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" | "" => {
            let p = a.ints("pads")?.unwrap_or_else(|| vec![0; 2 * spatial]);
            if p.len() != 2 * spatial {
                return Err(OpError(format!(
                    "attribute `pads` = {p:?}, expected {} values",
                    2 * spatial
                )));
            }
            let f = |v: i64| ext(v, 0, "pads");
            Pad::Explicit(if one_d {
                [0, f(p[0])?, 0, f(p[1])?]
            } else {
                [f(p[0])?, f(p[1])?, f(p[2])?, f(p[3])?]
            })
        }
        "VALID" => Pad::Valid,
        "SAME_UPPER" => Pad::Same { upper: true },
        "SAME_LOWER" => Pad::Same { upper: false },
        other => {
            return Err(OpError(format!(
            "attribute `auto_pad` is `{other}`, expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"
        )))
        }
    };
    Ok(Box::new(Pool {
        max,
        one_d,
        kernel,
        stride,
        dilation,
        pad,
        ceil: a.int_or("ceil_mode", 0)? != 0,
        count_include_pad: a.int_or("count_include_pad", 0)? != 0,
        indices_output: max && spec.n_outputs > 1,
        column_major: a.int_or("storage_order", 0)? == 1,
    }))
}

struct Geometry {
    n: usize,
    c: usize,
    h: Axis1,
    w: Axis1,
}

impl Pool {
    fn geometry(&self, x: &ArrayD<f32>) -> OpResult<Geometry> {
        let s = x.shape();
        let (n, c, h, w) = match (self.one_d, s) {
            (true, &[n, c, l]) => (n, c, 1, l),
            (false, &[n, c, h, w]) => (n, c, h, w),
            _ => {
                return Err(OpError(format!(
                    "the input has shape {s:?}, expected [n, c, {}]",
                    if self.one_d { "l" } else { "h, w" }
                )))
            }
        };
        Ok(Geometry {
            n,
            c,
            h: Axis1::new(
                h,
                self.kernel.0,
                self.stride.0,
                self.dilation.0,
                self.pad,
                true,
                self.ceil,
            )?,
            w: Axis1::new(
                w,
                self.kernel.1,
                self.stride.1,
                self.dilation.1,
                self.pad,
                false,
                self.ceil,
            )?,
        })
    }

    fn out_shape(&self, g: &Geometry) -> Vec<usize> {
        if self.one_d {
            vec![g.n, g.c, g.w.out]
        } else {
            vec![g.n, g.c, g.h.out, g.w.out]
        }
    }

    /// Output value and (for max) the flat in-plane index of the winner, per output position.
    fn plane(&self, g: &Geometry, x: &[f32], out: &mut [f32], arg: &mut [usize]) {
        let iw = g.w.size;
        for oy in 0..g.h.out {
            for ox in 0..g.w.out {
                let o = oy * g.w.out + ox;
                if self.max {
                    let mut best = f32::NEG_INFINITY;
                    let mut at = usize::MAX;
                    for y in g.h.taps(oy) {
                        for xx in g.w.taps(ox) {
                            let v = x[y * iw + xx];
                            if v > best || at == usize::MAX {
                                best = v;
                                at = y * iw + xx;
                            }
                        }
                    }
                    // A window wholly in the padding (only possible with pads at least the
                    // window's size) gives 0, as `xai-models`' pooling does.
                    out[o] = if at == usize::MAX { 0.0 } else { best };
                    arg[o] = at;
                } else {
                    let mut sum = 0.0f32;
                    let mut count = 0usize;
                    for y in g.h.taps(oy) {
                        for xx in g.w.taps(ox) {
                            sum += x[y * iw + xx];
                            count += 1;
                        }
                    }
                    let div = if self.count_include_pad {
                        g.h.padded_count(oy) * g.w.padded_count(ox)
                    } else {
                        count
                    };
                    out[o] = if div == 0 { 0.0 } else { sum / div as f32 };
                }
            }
        }
    }
}

impl Operator for Pool {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required_f32(inputs, 0, "X")?
            .as_standard_layout()
            .into_owned();
        let g = self.geometry(&x)?;
        // Pads read from a file can make the output far larger than the input: bounded
        // before anything is allocated.
        crate::ops::shape::checked_elements(&[g.n, g.c, g.h.out, g.w.out], "the pooled output")?;
        let xs = x.as_slice().expect("standard layout");
        let in_plane = g.h.size * g.w.size;
        let out_plane = g.h.out * g.w.out;
        let mut y = vec![0.0f32; g.n * g.c * out_plane];
        let mut arg = vec![0usize; if self.indices_output { y.len() } else { 0 }];
        if self.indices_output {
            y.par_chunks_mut(out_plane.max(1))
                .zip(arg.par_chunks_mut(out_plane.max(1)))
                .enumerate()
                .for_each(|(p, (out, a))| self.plane(&g, &xs[p * in_plane..][..in_plane], out, a));
        } else {
            y.par_chunks_mut(out_plane.max(1))
                .enumerate()
                .for_each_init(
                    || vec![0usize; out_plane],
                    |a, (p, out)| self.plane(&g, &xs[p * in_plane..][..in_plane], out, a),
                );
        }
        let shape = self.out_shape(&g);
        let mut outs = vec![Value::F32(ArrayD::from_shape_vec(IxDyn(&shape), y)?)];
        if self.indices_output {
            // Flat indices into the input (NCHW), as onnxruntime returns them.
            let idx: Vec<i64> = arg
                .iter()
                .enumerate()
                .map(|(o, &a)| {
                    let within = if self.column_major {
                        (a % g.w.size) * g.h.size + a / g.w.size
                    } else {
                        a
                    };
                    ((o / out_plane.max(1)) * in_plane + within) as i64
                })
                .collect();
            outs.push(Value::I64(ArrayD::from_shape_vec(IxDyn(&shape), idx)?));
        }
        Ok(outs)
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
        let g = self.geometry(&x)?;
        let dy = dy.as_standard_layout().into_owned();
        let xs = x.as_slice().expect("standard layout");
        let gs = dy.as_slice().expect("standard layout");
        let in_plane = g.h.size * g.w.size;
        let out_plane = g.h.out * g.w.out;
        let iw = g.w.size;
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(in_plane.max(1))
            .enumerate()
            .for_each(|(p, d)| {
                let gp = &gs[p * out_plane..][..out_plane];
                if self.max {
                    let mut out = vec![0.0; out_plane];
                    let mut arg = vec![0usize; out_plane];
                    self.plane(&g, &xs[p * in_plane..][..in_plane], &mut out, &mut arg);
                    for (o, &a) in arg.iter().enumerate() {
                        if a != usize::MAX {
                            d[a] += gp[o];
                        }
                    }
                } else {
                    for oy in 0..g.h.out {
                        for ox in 0..g.w.out {
                            let count = g.h.taps(oy).count() * g.w.taps(ox).count();
                            let div = if self.count_include_pad {
                                g.h.padded_count(oy) * g.w.padded_count(ox)
                            } else {
                                count
                            };
                            if div == 0 {
                                continue;
                            }
                            let v = gp[oy * g.w.out + ox] / div as f32;
                            for y in g.h.taps(oy) {
                                for xx in g.w.taps(ox) {
                                    d[y * iw + xx] += v;
                                }
                            }
                        }
                    }
                }
            });
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(x.shape()), dx)?);
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Attr, Attrs};
    use crate::testing::{check_gradients, random_input};

    fn run(op: &str, attrs: Attrs, x: ArrayD<f32>) -> ArrayD<f32> {
        let op = build(&NodeSpec::new(op, attrs, 1)).unwrap();
        match op.forward(&[Some(&Value::F32(x))]).unwrap().remove(0) {
            Value::F32(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn ceil_mode_matches_pytorch() {
        // torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 1x1x6x6 arange: output 3x3 (floor: 2x2).
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 6, 6]), (0..36).map(|v| v as f32).collect())
            .unwrap();
        let attrs = Attrs::new()
            .with("kernel_shape", Attr::Ints(vec![3, 3]))
            .with("strides", Attr::Ints(vec![2, 2]))
            .with("ceil_mode", Attr::Int(1));
        let y = run("MaxPool", attrs.clone(), x.clone());
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![14., 16., 17., 26., 28., 29., 32., 34., 35.]
        );
        // AveragePool(3, 2, ceil_mode=True, count_include_pad=False): the last window is 2 wide.
        let y = run("AveragePool", attrs.clone(), x.clone());
        assert_eq!(y[[0, 0, 0, 2]], (4. + 5. + 10. + 11. + 16. + 17.) / 6.0);
        // With padding 1 and count_include_pad, the divisor counts the pad but not the overhang:
        // torch.nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True) -> 4x4,
        // window (3, 3) covers input rows 5..6 and pad row 6 only (its divisor is 2 x 2 = 4).
        let attrs = attrs
            .with("pads", Attr::Ints(vec![1, 1, 1, 1]))
            .with("count_include_pad", Attr::Int(1));
        let y = run("AveragePool", attrs, x);
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        assert_eq!(y[[0, 0, 3, 3]], 35.0 / 4.0);
        assert_eq!(y[[0, 0, 0, 0]], (0. + 1. + 6. + 7.) / 9.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (op, extra) in [
            ("MaxPool", Attrs::new()),
            (
                "MaxPool",
                Attrs::new()
                    .with("ceil_mode", Attr::Int(1))
                    .with("pads", Attr::Ints(vec![1, 0, 1, 1])),
            ),
            (
                "MaxPool",
                Attrs::new().with("dilations", Attr::Ints(vec![2, 1])),
            ),
            (
                "AveragePool",
                Attrs::new()
                    .with("pads", Attr::Ints(vec![1, 1, 1, 1]))
                    .with("count_include_pad", Attr::Int(1)),
            ),
            ("AveragePool", Attrs::new().with("ceil_mode", Attr::Int(1))),
            (
                "AveragePool",
                Attrs::new().with("auto_pad", Attr::String("SAME_UPPER".into())),
            ),
        ] {
            let attrs = extra
                .with("kernel_shape", Attr::Ints(vec![3, 2]))
                .with("strides", Attr::Ints(vec![2, 2]));
            check_gradients(
                op,
                attrs,
                vec![Value::F32(random_input(&[2, 3, 7, 6], 3, -1.0, 1.0))],
                &[0],
                2e-2,
            );
        }
        check_gradients(
            "MaxPool",
            Attrs::new().with("kernel_shape", Attr::Ints(vec![2])),
            vec![Value::F32(random_input(&[1, 2, 9], 4, -1.0, 1.0))],
            &[0],
            2e-2,
        );
    }

    #[test]
    fn indices_and_errors() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2, 2]), vec![1., 4., 3., 2., 5., 6., 8., 7.])
            .unwrap();
        let mut spec = NodeSpec::new(
            "MaxPool",
            Attrs::new().with("kernel_shape", Attr::Ints(vec![2, 2])),
            1,
        );
        spec.n_outputs = 2;
        let op = build(&spec).unwrap();
        let out = op.forward(&[Some(&Value::F32(x))]).unwrap();
        assert_eq!(out[0].to_f32_vec(), vec![4.0, 8.0]);
        assert_eq!(out[1].to_i64_vec("i").unwrap(), vec![1, 6]);
        assert!(build(&NodeSpec::new("MaxPool", Attrs::new(), 1)).is_err());
        // Pads that would make an output of 2^34 values are refused before allocating.
        let huge = Attrs::new()
            .with("kernel_shape", Attr::Ints(vec![1, 1]))
            .with("pads", Attr::Ints(vec![65536; 4]));
        let op = build(&NodeSpec::new("MaxPool", huge, 1)).unwrap();
        let e = op
            .forward(&[Some(&Value::F32(ArrayD::zeros(IxDyn(&[1, 1, 2, 2]))))])
            .unwrap_err();
        assert!(e.0.contains("more than"), "{e}");
        let big = Attrs::new().with("kernel_shape", Attr::Ints(vec![5, 5]));
        let op = build(&NodeSpec::new("MaxPool", big, 1)).unwrap();
        assert!(op
            .forward(&[Some(&Value::F32(ArrayD::zeros(IxDyn(&[1, 1, 3, 3]))))])
            .is_err());
    }
}
