//! The stable-Rust convolution and max pooling of `xai-models` as dfdx tape operations, and the
//! dfdx modules built on them, so that CNNs can be written in dfdx on stable Rust (dfdx 0.13's
//! own `Conv2D`/`MaxPool2D` need its `nightly` feature, which no longer builds).
//!
//! [`conv2d`] takes dfdx tensors on the CPU, runs a one-layer [`xai_models::Network`]'s forward
//! pass (im2col + gemm, the kernels every `xai-models` network uses), and records a backward
//! operation on the input's tape with `Tape::add_backward_op` that computes the gradients of the
//! input, the weights and the bias through the same network. Tensors are NCHW (`[n, c, h, w]`)
//! like dfdx's own layers; weights are HWIO (`[kh, kw, in, out]`, Keras' layout, as in
//! [`xai_models::Conv2d`]).
//!
//! ```
//! use dfdx::prelude::*;
//! use xai_dfdx::conv::conv2d;
//! use xai_models::Padding;
//!
//! let dev: Cpu = Default::default();
//! let x: Tensor<(usize, usize, usize, usize), f32, Cpu> =
//!     dev.tensor_from_vec(vec![0.5; 2 * 1 * 5 * 5], (2, 1, 5, 5));
//! let w = dev.tensor_from_vec(vec![0.1f32; 3 * 3 * 1 * 4], (3, 3, 1, 4));
//! let b = dev.tensor_from_vec(vec![0.0f32; 4], (4,));
//! let y = conv2d(x.leaky_trace(), &w, &b, (1, 1), Padding::Same).unwrap();
//! assert_eq!(y.shape(), &(2, 4, 5, 5));
//! let grads = y.sum().backward();
//! assert_eq!(grads.get(&x).shape(), &(2, 1, 5, 5));
//! ```

use dfdx::nn::modules::{ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::nn::Module;
use dfdx::prelude::{
    Const, Cpu, Device, Dtype, HasShape, PutTape, Rank1, Rank4, SplitTape, Storage, Tape, Tensor,
    TensorFromVec,
};
use dfdx::shapes::Shape;
use dfdx::tensor::{CpuError, Gradients};
use ndarray::{Array2, ArrayView4};
use xai_models::{Conv2d as XConv2d, Layer, MaxPool2d as XMaxPool2d, NamedLayer, Network, Padding};

use crate::DfdxError;

type Shape4 = (usize, usize, usize, usize);

fn nhwc_to_nchw(v: &[f32], (n, c, h, w): Shape4) -> Vec<f32> {
    if c == 1 {
        return v.to_vec();
    }
    let mut out = vec![0.0; v.len()];
    for s in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                out[(s * c + ch) * h * w + p] = v[(s * h * w + p) * c + ch];
            }
        }
    }
    out
}

#[allow(clippy::type_complexity)]
/// Runs one `xai-models` layer on an NCHW tensor and records its backward pass on the tape;
/// `params` are the tensors whose gradients receive the layer's weight and bias gradients.
fn layer_op<T: Tape<f32, Cpu>>(
    x: Tensor<Shape4, f32, Cpu, T>,
    layer: Layer,
    params: Option<(&Tensor<Shape4, f32, Cpu>, &Tensor<(usize,), f32, Cpu>)>,
) -> Result<Tensor<Shape4, f32, Cpu, T>, DfdxError> {
    let (n, c, h, w) = *x.shape();
    let net = Network::new(
        "op",
        [c, h, w],
        vec![NamedLayer {
            name: "op".into(),
            layer,
        }],
    )?;
    let out = *net.dims().last().ok_or_else(|| {
        DfdxError::Model(xai_models::ModelError::Internal(
            "a network without dims".into(),
        ))
    })?;
    let out_shape = (n, out.c, out.h, out.w);
    let (x, mut tape) = x.split_tape();
    let x_vec = x.as_vec();
    let x_arr = ArrayView4::from_shape((n, c, h, w), &x_vec)
        .map_err(|e| DfdxError::Model(xai_models::ModelError::Internal(e.to_string())))?;
    let dev = x.device().clone();
    if !T::OWNS_TAPE {
        let y = net.forward(x_arr)?;
        let y = dev.try_tensor_from_vec(y.into_raw_vec_and_offset().0, out_shape)?;
        return Ok(y.put_tape(tape));
    }
    let trace = net.forward_trace(x_arr, None)?;
    let y = dev.try_tensor_from_vec(nhwc_to_nchw(trace.output_flat(), out_shape), out_shape)?;
    let x_ghost = x.ghost();
    let y_ghost = y.ghost();
    let param_ghosts = params.map(|(w, b)| (w.ghost(), b.ghost()));
    tape.add_backward_op(move |grads: &mut Gradients<f32, Cpu>| {
        let dy = grads.get_or_alloc_mut(&y_ghost)?.to_vec();
        let per_sample = dy.len() / n.max(1);
        let dy =
            Array2::from_shape_vec((n, per_sample), dy).map_err(|_| CpuError::WrongNumElements)?;
        // Shapes were validated by the forward pass, so this cannot fail on our input; a
        // failure is reported through dfdx's error type rather than a panic.
        let g = net
            .backward(&trace, dy.view(), true)
            .map_err(|_| CpuError::WrongNumElements)?;
        if let Some(dx) = g.input {
            for (a, d) in grads.get_or_alloc_mut(&x_ghost)?.iter_mut().zip(dx.iter()) {
                *a += d;
            }
        }
        if let Some((wg, bg)) = param_ghosts {
            if let [gw, gb] = g.params.as_slice() {
                for (a, d) in grads.get_or_alloc_mut(&wg)?.iter_mut().zip(gw) {
                    *a += d;
                }
                for (a, d) in grads.get_or_alloc_mut(&bg)?.iter_mut().zip(gb) {
                    *a += d;
                }
            }
        }
        Ok(())
    });
    Ok(y.put_tape(tape))
}

/// A 2-D convolution of `x` (`[n, c, h, w]`) with `weight` (`[kh, kw, c, out]`) and `bias`
/// (`[out]`), recorded on `x`'s tape; the weight and bias gradients are accumulated into the
/// gradients of `weight` and `bias` (their ids) when the tape is run backward.
///
/// Returns an error if the shapes do not fit together or the window does not fit the input.
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: Tensor<Shape4, f32, Cpu, T>,
    weight: &Tensor<Shape4, f32, Cpu>,
    bias: &Tensor<(usize,), f32, Cpu>,
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor<Shape4, f32, Cpu, T>, DfdxError> {
    let (_, c, _, _) = *x.shape();
    let (kh, kw, wc, out_c) = *weight.shape();
    if wc != c || bias.shape().0 != out_c {
        return Err(DfdxError::Shape(xai_core::CoreError::shape(
            "conv2d weight and bias",
            &[kh, kw, wc, out_c, bias.shape().0],
            format!("weight [kh, kw, {c}, out] and bias [out] for an input with {c} channels"),
        )));
    }
    let layer = Layer::Conv2d(XConv2d {
        in_channels: c,
        out_channels: out_c,
        kernel: (kh, kw),
        stride,
        padding,
        weight: weight.as_vec(),
        bias: bias.as_vec(),
    });
    layer_op(x, layer, Some((weight, bias)))
}

/// Max pooling over `size × size` windows with stride `size` (`xai_models::MaxPool2d`), recorded
/// on `x`'s tape.
pub fn max_pool2d<T: Tape<f32, Cpu>>(
    x: Tensor<Shape4, f32, Cpu, T>,
    size: usize,
    padding: Padding,
) -> Result<Tensor<Shape4, f32, Cpu, T>, DfdxError> {
    if size == 0 {
        return Err(DfdxError::Shape(xai_core::CoreError::param(
            "pool size",
            size,
            "at least 1",
        )));
    }
    layer_op(x, Layer::MaxPool2d(XMaxPool2d::new(size, padding)), None)
}

fn to_dynamic<S: Shape<Concrete = [usize; 4]>, T: Tape<f32, Cpu>>(
    x: Tensor<S, f32, Cpu, T>,
) -> Result<Tensor<Shape4, f32, Cpu, T>, CpuError> {
    let [n, c, h, w] = x.shape().concrete();
    let (x, tape) = x.split_tape();
    // The same data under a dynamic shape: a contiguous NCHW buffer, the tape's gradients for
    // it flow back through the identity below.
    let dynamic: Tensor<Shape4, f32, Cpu> =
        x.device().try_tensor_from_vec(x.as_vec(), (n, c, h, w))?;
    if !T::OWNS_TAPE {
        return Ok(dynamic.put_tape(tape));
    }
    let mut tape = tape;
    let (xg, dg) = (x.ghost(), dynamic.ghost());
    tape.add_backward_op(move |grads: &mut Gradients<f32, Cpu>| {
        let d = grads.get_or_alloc_mut(&dg)?.to_vec();
        for (a, b) in grads.get_or_alloc_mut(&xg)?.iter_mut().zip(&d) {
            *a += b;
        }
        Ok(())
    });
    Ok(dynamic.put_tape(tape))
}

/// A dfdx module: a 2-D convolution with `I` input and `O` output channels and a `KH × KW`
/// kernel (HWIO weights, Keras' layout), stride and padding as in `xai_models::Conv2d`. Accepts
/// NCHW batches with static or dynamic dimensions and returns dynamic ones.
///
/// Its parameters are visible to dfdx (`weight`, `bias`) for optimisers, safetensors and
/// [`crate::DfdxModel::parameter_groups`].
#[derive(Debug, Clone)]
pub struct Conv2d<
    const I: usize,
    const O: usize,
    const KH: usize,
    const KW: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// `[KH, KW, I, O]`.
    pub weight: Tensor<Rank4<KH, KW, I, O>, E, D>,
    /// `[O]`.
    pub bias: Tensor<Rank1<O>, E, D>,
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Padding mode.
    pub padding: Padding,
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize>
    Conv2d<I, O, KH, KW, f32, Cpu>
{
    /// A convolution with Glorot-uniform weights and zero biases, like `xai_models::Conv2d::new`,
    /// from a seed.
    pub fn new(dev: &Cpu, stride: (usize, usize), padding: Padding, seed: u64) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let c = XConv2d::new(I, O, (KH, KW), stride, padding, &mut rng);
        Self {
            weight: dev.tensor_from_vec(c.weight, (Const, Const, Const, Const)),
            bias: dev.tensor_from_vec(c.bias, (Const,)),
            stride,
            padding,
        }
    }
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for Conv2d<I, O, KH, KW, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<I, O, KH, KW, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // The stride and padding are not tensors: a visitor that builds a new module copies
        // them from the module it visits, so they are carried through `Default` values here and
        // a rebuilt module keeps `(1, 1)` and `Valid`; `DfdxModel` never rebuilds modules.
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(weight, bias)| Conv2d {
                weight,
                bias,
                stride: (1, 1),
                padding: Padding::Valid,
            },
        )
    }
}

impl<S, T, const I: usize, const O: usize, const KH: usize, const KW: usize>
    Module<Tensor<S, f32, Cpu, T>> for Conv2d<I, O, KH, KW, f32, Cpu>
where
    S: Shape<Concrete = [usize; 4]>,
    T: Tape<f32, Cpu>,
{
    type Output = Tensor<Shape4, f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        let x = to_dynamic(x)?;
        let dev = x.device().clone();
        let w: Tensor<Shape4, f32, Cpu> =
            dev.try_tensor_from_vec(self.weight.as_vec(), (KH, KW, I, O))?;
        let b: Tensor<(usize,), f32, Cpu> = dev.try_tensor_from_vec(self.bias.as_vec(), (O,))?;
        let (x, mut tape) = x.split_tape();
        if T::OWNS_TAPE {
            // The op accumulates into the dynamic copies' gradients; this passes them on to the
            // module's own (statically shaped) weight and bias. The tape runs its operations in
            // reverse order, so it is recorded before the op to run after the op's backward pass.
            let (wg, bg, swg, sbg) = (w.ghost(), b.ghost(), self.weight.ghost(), self.bias.ghost());
            tape.add_backward_op(move |grads: &mut Gradients<f32, Cpu>| {
                let d = grads.get_or_alloc_mut(&wg)?.to_vec();
                for (a, v) in grads.get_or_alloc_mut(&swg)?.iter_mut().zip(&d) {
                    *a += v;
                }
                let d = grads.get_or_alloc_mut(&bg)?.to_vec();
                for (a, v) in grads.get_or_alloc_mut(&sbg)?.iter_mut().zip(&d) {
                    *a += v;
                }
                Ok(())
            });
        }
        conv2d(x.put_tape(tape), &w, &b, self.stride, self.padding)
            .map_err(|_| CpuError::WrongNumElements)
    }
}

/// A dfdx module: max pooling over `size × size` windows with stride `size`
/// (`xai_models::MaxPool2d`), on NCHW batches.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window size and stride.
    pub size: usize,
    /// Padding mode (`Same` keeps a partial last window).
    pub padding: Padding,
}

impl<S, T> Module<Tensor<S, f32, Cpu, T>> for MaxPool2d
where
    S: Shape<Concrete = [usize; 4]>,
    T: Tape<f32, Cpu>,
{
    type Output = Tensor<Shape4, f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        max_pool2d(to_dynamic(x)?, self.size, self.padding).map_err(|_| CpuError::WrongNumElements)
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for MaxPool2d {
    type To<E2: Dtype, D2: Device<E2>> = MaxPool2d;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        _: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(MaxPool2d {
            size: 2,
            padding: Padding::Valid,
        }))
    }
}

/// A dfdx module: flattens an NCHW batch to `[n, N]` in `C, H, W` order (PyTorch's and dfdx's
/// order), so that a `Linear<N, _>` can follow a convolution. `N` must equal `c * h * w` of its
/// input; otherwise `try_forward` returns an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlattenTo<const N: usize>;

impl<S, T, const N: usize> Module<Tensor<S, f32, Cpu, T>> for FlattenTo<N>
where
    S: Shape<Concrete = [usize; 4]>,
    T: Tape<f32, Cpu>,
{
    type Output = Tensor<(usize, Const<N>), f32, Cpu, T>;
    type Error = CpuError;

    fn try_forward(&self, x: Tensor<S, f32, Cpu, T>) -> Result<Self::Output, CpuError> {
        let [n, c, h, w] = x.shape().concrete();
        if c * h * w != N {
            return Err(CpuError::WrongNumElements);
        }
        let (x, tape) = x.split_tape();
        let flat: Tensor<(usize, Const<N>), f32, Cpu> =
            x.device().try_tensor_from_vec(x.as_vec(), (n, Const))?;
        if !T::OWNS_TAPE {
            return Ok(flat.put_tape(tape));
        }
        let mut tape = tape;
        let (xg, fg) = (x.ghost(), flat.ghost());
        tape.add_backward_op(move |grads: &mut Gradients<f32, Cpu>| {
            let d = grads.get_or_alloc_mut(&fg)?.to_vec();
            for (a, b) in grads.get_or_alloc_mut(&xg)?.iter_mut().zip(&d) {
                *a += b;
            }
            Ok(())
        });
        Ok(flat.put_tape(tape))
    }
}

impl<E: Dtype, D: Device<E>, const N: usize> TensorCollection<E, D> for FlattenTo<N> {
    type To<E2: Dtype, D2: Device<E2>> = FlattenTo<N>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        _: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(FlattenTo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;
    use ndarray::Array4;
    use rand::{Rng, SeedableRng};
    use xai_core::{DifferentiableModel, Predictor};

    #[test]
    fn matches_the_network_forward_and_backward() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut conv = XConv2d::new(2, 3, (2, 3), (1, 2), Padding::Same, &mut rng);
        conv.bias = (0..3).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let net = Network::new(
            "c",
            [2, 5, 6],
            vec![NamedLayer {
                name: "conv".into(),
                layer: Layer::Conv2d(conv.clone()),
            }],
        )
        .unwrap();
        let x = Array4::from_shape_fn((2, 2, 5, 6), |_| rng.gen_range(-1.0f32..1.0));
        let dev: Cpu = Default::default();
        let xt = dev.tensor_from_vec(x.iter().copied().collect(), (2, 2, 5, 6));
        let wt = dev.tensor_from_vec(conv.weight.clone(), (2, 3, 2, 3));
        let bt = dev.tensor_from_vec(conv.bias.clone(), (3,));
        let y = conv2d(xt.leaky_trace(), &wt, &bt, (1, 2), Padding::Same).unwrap();
        // Forward: the network outputs [n, c*h*w] in CHW order, the dfdx tensor is NCHW.
        let want = net.predict(x.view().into_dyn()).unwrap();
        for (a, b) in y.as_vec().iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-5);
        }
        // Backward of sum(y * m) for a fixed m: input gradient equals the network's.
        let m_vec: Vec<f32> = (0..y.as_vec().len())
            .map(|i| ((i % 7) as f32) - 3.0)
            .collect();
        let m = dev.tensor_from_vec(m_vec.clone(), *y.shape());
        let grads = (y * m).sum().backward();
        let gx = grads.get(&xt).as_vec();
        let wts = ndarray::Array2::from_shape_vec((2, m_vec.len() / 2), m_vec).unwrap();
        let want = net.input_gradient(x.view().into_dyn(), wts.view()).unwrap();
        for (a, b) in gx.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert_eq!(grads.get(&wt).as_vec().len(), conv.weight.len());
        assert!(grads.get(&bt).as_vec().iter().any(|v| *v != 0.0));
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev: Cpu = Default::default();
        let x = dev.tensor_from_vec(vec![0.0f32; 16], (1, 1, 4, 4));
        let w = dev.tensor_from_vec(vec![0.0f32; 18], (3, 3, 2, 1));
        let b = dev.tensor_from_vec(vec![0.0f32; 1], (1,));
        assert!(conv2d(x.clone(), &w, &b, (1, 1), Padding::Valid).is_err());
        assert!(max_pool2d(x.clone(), 0, Padding::Valid).is_err());
        let f = FlattenTo::<15>;
        assert!(f.try_forward(x).is_err());
    }
}
