//! The stable-Rust convolution as a dfdx operation, so that dfdx models (which need dfdx's
//! `nightly` feature for their own `Conv2D`) can use it on stable Rust.
//!
//! [`conv2d`] takes dfdx tensors on the CPU, runs [`crate::Conv2d`]'s im2col + gemm forward pass,
//! and records a backward operation on the input's tape with `Tape::add_backward_op`, which
//! computes the gradients of the input, the weights and the bias with the same kernels as
//! [`crate::Network`]. Tensors are NCHW (`[n, c, h, w]`) like dfdx's own layers; weights are
//! HWIO (`[kh, kw, in, out]`, Keras' layout, as in [`crate::Conv2d`]).
//!
//! ```
//! use dfdx::prelude::*;
//! use xai_models::dfdx_ops::conv2d;
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

use dfdx::prelude::{Cpu, HasShape, PutTape, SplitTape, Tape, Tensor, TensorFromVec};

use crate::layers::{Conv2d, Dims, Layer, Padding};
use crate::ModelError;

type Shape4 = (usize, usize, usize, usize);

fn nchw_to_nhwc(v: &[f32], (n, c, h, w): Shape4) -> Vec<f32> {
    if c == 1 {
        return v.to_vec();
    }
    let mut out = vec![0.0; v.len()];
    for s in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                out[(s * h * w + p) * c + ch] = v[(s * c + ch) * h * w + p];
            }
        }
    }
    out
}

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
) -> Result<Tensor<Shape4, f32, Cpu, T>, ModelError> {
    let (n, c, h, w) = *x.shape();
    let (kh, kw, wc, out_c) = *weight.shape();
    if wc != c || bias.shape().0 != out_c {
        return Err(ModelError::Architecture(format!(
            "conv2d: input has {c} channels, weight is {:?}, bias is {:?}: expected weight [kh, kw, {c}, out] and bias [out]",
            weight.shape(),
            bias.shape()
        )));
    }
    let conv = Conv2d {
        in_channels: c,
        out_channels: out_c,
        kernel: (kh, kw),
        stride,
        padding,
        weight: weight.as_vec(),
        bias: bias.as_vec(),
    };
    let layer = Layer::Conv2d(conv);
    let in_dims = Dims::new(h, w, c);
    let out_dims = layer.output_dims(in_dims)?;
    let (x, mut tape) = x.split_tape();
    let x_nhwc = nchw_to_nhwc(&x.as_vec(), (n, c, h, w));
    let mut mode = crate::layers::Mode::Eval;
    let (y_nhwc, cache) = layer.forward(&x_nhwc, n, in_dims, &mut mode, T::OWNS_TAPE)?;
    let out_shape = (n, out_c, out_dims.h, out_dims.w);
    let dev = x.device().clone();
    let y = dev.tensor_from_vec(nhwc_to_nchw(&y_nhwc, out_shape), out_shape);
    if T::OWNS_TAPE {
        let (x_ghost, w_ghost, b_ghost, y_ghost) =
            (x.ghost(), weight.ghost(), bias.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let dy_nchw: Vec<f32> = grads.get_or_alloc_mut(&y_ghost)?.to_vec();
            let dy = nchw_to_nhwc(&dy_nchw, out_shape);
            let (dx, param_grads) = match (
                layer.backward_input(&x_nhwc, &y_nhwc, &cache, &dy, n, in_dims),
                layer.backward_params(&x_nhwc, &cache, &dy, n, in_dims),
            ) {
                (Ok(dx), Ok(Some(p))) => (dx, p),
                // Shapes were validated in the forward pass, so the kernels cannot fail here.
                _ => unreachable!("conv2d backward on shapes validated in its forward pass"),
            };
            let dx = nhwc_to_nchw(&dx, (n, c, h, w));
            for (g, d) in grads.get_or_alloc_mut(&x_ghost)?.iter_mut().zip(&dx) {
                *g += d;
            }
            for (g, d) in grads
                .get_or_alloc_mut(&w_ghost)?
                .iter_mut()
                .zip(&param_grads.weight)
            {
                *g += d;
            }
            for (g, d) in grads
                .get_or_alloc_mut(&b_ghost)?
                .iter_mut()
                .zip(&param_grads.bias)
            {
                *g += d;
            }
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
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
        let conv = Conv2d::new(2, 3, (2, 3), (1, 2), Padding::Same, &mut rng);
        let mut conv = conv;
        conv.bias = (0..3).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let net = crate::Network::new(
            "c",
            [2, 5, 6],
            vec![crate::NamedLayer {
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
        assert!(conv2d(x, &w, &b, (1, 1), Padding::Valid).is_err());
    }
}
