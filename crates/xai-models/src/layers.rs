//! Stable-Rust layers with batched forward and backward passes.
//!
//! Activations are stored per batch as contiguous `f32` in NHWC order (`[n, h, w, c]`); a flat
//! feature vector is `h = w = 1`. Convolutions are im2col followed by one matrix product
//! (`gemm`), the layout in which both the forward pass and the per-sample weight gradients
//! (`cols_nᵀ · delta_n`) are single matrix products.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cpu::{dispatched, Isa};
use crate::direct;
use crate::gemm::{matmul, Op};
use crate::ops::{self, AvgPool2d, BatchNorm, BinaryOp, GroupConv2d};
use crate::ModelError;

/// Spatial shape of one sample's activation: height, width, channels (NHWC without `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels (features for a flat vector).
    pub c: usize,
}

impl Dims {
    /// Builds spatial dimensions.
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c }
    }

    /// A flat feature vector of length `f`.
    pub fn flat(f: usize) -> Self {
        Self { h: 1, w: 1, c: f }
    }

    /// Number of values per sample (saturating at `usize::MAX`; a [`crate::Network`] checks
    /// with [`Dims::checked_len`] that its dimensions fit).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// Number of values per sample, or `None` when `h * w * c` overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.h.checked_mul(self.w)?.checked_mul(self.c)
    }

    /// The error for dimensions whose number of values overflows `usize`.
    pub(crate) fn check_len(&self, what: &str) -> Result<usize, ModelError> {
        self.checked_len().ok_or_else(|| {
            ModelError::Architecture(format!(
                "{what} of {}x{}x{} values: h * w * c must fit in usize",
                self.h, self.w, self.c
            ))
        })
    }

    /// Whether a sample holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Zero padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// No padding (Keras `'valid'`, PyTorch `padding=0`).
    Valid,
    /// Output size `ceil(input / stride)`; the total padding is split with the extra row/column
    /// at the bottom/right, as Keras/TensorFlow and PyTorch do for even kernels.
    Same,
    /// Explicit padding on each side.
    Explicit {
        /// Rows added above.
        top: usize,
        /// Rows added below.
        bottom: usize,
        /// Columns added on the left.
        left: usize,
        /// Columns added on the right.
        right: usize,
    },
}

/// Padding along one axis: returns (pad_before, output_size).
fn pad_1d(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    vertical: bool,
) -> Option<(usize, usize)> {
    match padding {
        Padding::Valid => (input >= kernel).then(|| (0, (input - kernel) / stride + 1)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            // Overflow (a huge kernel or stride) or an empty input: no window fits.
            let span = out
                .checked_sub(1)?
                .checked_mul(stride)?
                .checked_add(kernel)?;
            let total = span.saturating_sub(input);
            Some((total / 2, out))
        }
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => {
            let (before, after) = if vertical {
                (top, bottom)
            } else {
                (left, right)
            };
            let padded = input.checked_add(before)?.checked_add(after)?;
            (padded >= kernel).then(|| (before, (padded - kernel) / stride + 1))
        }
    }
}

/// The largest input side, window side (dilated) or stride a convolution or pooling accepts.
pub const MAX_WINDOW_EXTENT: usize = 1 << 32;

/// Geometry of a sliding window over an input: padding offsets and output size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) pad_top: usize,
    pub(crate) pad_left: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Window {
    /// The same window as a stride-1 frame for [`direct::conv`] (callers check the stride).
    fn stride1(&self) -> direct::Stride1 {
        direct::Stride1 {
            kh: self.kh,
            kw: self.kw,
            top: self.pad_top as isize,
            left: self.pad_left as isize,
            oh: self.oh,
            ow: self.ow,
        }
    }
}

pub(crate) fn window(
    input: Dims,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    padding: Padding,
) -> Result<Window, ModelError> {
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(ModelError::Architecture(format!(
            "a {kh}x{kw} window with stride {sh}x{sw}: window sizes and strides must be at least 1"
        )));
    }
    // Offsets are computed as signed integers in the kernels: keep every extent far from
    // overflowing them.
    if [input.h, input.w, kh, kw, sh, sw]
        .iter()
        .any(|&v| v > MAX_WINDOW_EXTENT)
    {
        return Err(ModelError::Architecture(format!(
            "a {kh}x{kw} window with stride {sh}x{sw} over a {}x{} input: every extent must be \
             at most MAX_WINDOW_EXTENT = 2^32",
            input.h, input.w
        )));
    }
    if let Padding::Explicit {
        top,
        bottom,
        left,
        right,
    } = padding
    {
        if [top, bottom, left, right]
            .iter()
            .any(|&p| p > input.h.max(input.w).max(kh).max(kw))
        {
            return Err(ModelError::Architecture(format!(
                "padding {padding:?} is larger than both the {}x{} input and the {kh}x{kw} window",
                input.h, input.w
            )));
        }
    }
    let v = pad_1d(input.h, kh, sh, padding, true);
    let h = pad_1d(input.w, kw, sw, padding, false);
    match (v, h) {
        (Some((pad_top, oh)), Some((pad_left, ow))) if oh > 0 && ow > 0 => Ok(Window {
            kh,
            kw,
            sh,
            sw,
            pad_top,
            pad_left,
            oh,
            ow,
        }),
        _ => Err(ModelError::Architecture(format!(
            "a {kh}x{kw} window with stride {sh}x{sw} and padding {padding:?} does not fit an input of {}x{}",
            input.h, input.w
        ))),
    }
}

/// A 2-D convolution with weights in Keras' HWIO layout `[kh, kw, in, out]` and a bias `[out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (filters).
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride along height and width.
    pub stride: (usize, usize),
    /// Padding.
    pub padding: Padding,
    /// Weights, `[kh, kw, in, out]` flattened.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
}

/// 2-D max pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool2d {
    /// Window height and width.
    pub size: (usize, usize),
    /// Stride.
    pub stride: (usize, usize),
    /// Padding (padded positions never win the max).
    pub padding: Padding,
}

/// A fully connected layer `y = x W + b` with `W` stored `[in, out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Weights, `[in, out]` flattened.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
}

/// One layer of a [`crate::Network`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// 2-D max pooling.
    MaxPool2d(MaxPool2d),
    /// Rectified linear unit.
    Relu,
    /// Inverted dropout with drop probability `p` (active only in training).
    Dropout(f32),
    /// Reshape `[h, w, c]` into a flat vector (NHWC order, as Keras' `Flatten`).
    Flatten,
    /// Fully connected layer.
    Dense(Dense),
    /// Softmax over the features of each sample.
    Softmax,
    /// Nearest-neighbour upsampling by an integer factor (Keras `UpSampling2D`).
    Upsample2d(usize),
    /// Convolution with groups (depthwise when `groups = in_channels`) and/or dilation.
    GroupConv2d(GroupConv2d),
    /// 2-D average pooling.
    AvgPool2d(AvgPool2d),
    /// Mean over all spatial positions of each channel, `[h, w, c] -> [1, 1, c]`.
    GlobalAvgPool,
    /// Batch normalisation (γ, β trainable): running statistics when evaluating, the batch's
    /// statistics when training (see [`BatchNorm`]).
    BatchNorm(BatchNorm),
    /// Logistic sigmoid `1 / (1 + e^{-x})`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `x` for `x > 0`, `alpha * x` otherwise.
    LeakyRelu(f32),
    /// `min(max(x, min), max)`; `Clip { min: 0, max: 6 }` is ReLU6.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `clip(alpha * x + beta, 0, 1)` (ONNX `HardSigmoid`).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * clip(x / 6 + 1/2, 0, 1)` (Howard et al. 2019, MobileNetV3, eq. 2).
    HardSwish,
    /// `x − logsumexp(x)` over the features of each sample.
    LogSoftmax,
    /// Elementwise operation between the outputs of two nodes of a graph (see
    /// [`crate::Network::graph`]) with equal dimensions.
    Binary(BinaryOp),
    /// Concatenation of the outputs of several nodes along channels (equal height and width).
    Concat,
}

/// What a layer's backward pass needs from its forward pass.
#[derive(Debug, Clone)]
pub(crate) enum Cache {
    /// Nothing beyond the stored input and output activations.
    None,
    /// im2col matrix of the input, `[n * oh * ow, kh * kw * in]`.
    Cols(Vec<f32>),
    /// Dropout: which elements were kept, and the scale 1/(1-p) applied to them.
    Keep { kept: Vec<bool>, scale: f32 },
    /// Batch norm in training: the batch's statistics, which the backward pass differentiates
    /// through and the running statistics are updated from.
    BatchStats(ops::BatchStats),
}

/// A stride-1 convolution's kernels packed for [`direct::conv_packed`]: for the forward pass
/// (weights and bias) and for the input gradient (flipped, channels swapped), each built on
/// first use. A [`crate::Network`] keeps one per layer ([`KernelCache`]) and empties them
/// whenever its layers can change, so packing happens once per set of weights, not once per
/// call and chunk.
#[derive(Debug, Default)]
pub(crate) struct ConvKernels {
    forward: std::sync::OnceLock<direct::PackedKernel>,
    transposed: std::sync::OnceLock<direct::PackedKernel>,
    /// The forward kernel transformed for Winograd's F(2x2, 3x3) or F(4x4, 3x3)
    /// ([`direct::winograd`]), for 3x3 convolutions with enough channels.
    winograd: std::sync::OnceLock<direct::winograd::WinogradKernel>,
    /// The transposed kernel transformed for Winograd, for the input gradient of those layers.
    winograd_transposed: std::sync::OnceLock<direct::winograd::WinogradKernel>,
}

/// One [`ConvKernels`] per layer of a network. Cloning gives empty slots (the clone packs its
/// own kernels on first use, so a clone whose weights are then changed never sees stale ones),
/// and every cache compares equal: it is derived state, not part of the network's value.
#[derive(Debug, Default)]
pub(crate) struct KernelCache(Vec<ConvKernels>);

impl KernelCache {
    /// Empty slots for `layers` layers.
    pub(crate) fn new(layers: usize) -> Self {
        Self((0..layers).map(|_| ConvKernels::default()).collect())
    }

    /// Layer `i`'s slots; `None` past the end (callers then pack into a temporary).
    pub(crate) fn get(&self, i: usize) -> Option<&ConvKernels> {
        self.0.get(i)
    }
}

impl Clone for KernelCache {
    fn clone(&self) -> Self {
        Self::new(self.0.len())
    }
}

impl PartialEq for KernelCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Per-sample (weight, bias) gradients, `[n, weight len]` and `[n, bias len]` flattened.
pub(crate) type PerSampleParams = (Vec<f32>, Vec<f32>);

/// Gradients of one parameterised layer.
#[derive(Debug, Clone)]
pub(crate) struct LayerGrads {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Conv2d {
    /// A convolution with Glorot-uniform weights and zero bias (Keras' default initialisation).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
        rng: &mut impl Rng,
    ) -> Self {
        let fan_in = kernel.0 * kernel.1 * in_channels;
        let fan_out = kernel.0 * kernel.1 * out_channels;
        Self {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            weight: glorot(rng, fan_in, fan_out, fan_in * out_channels),
            bias: vec![0.0; out_channels],
        }
    }

    fn patch_len(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.in_channels
    }

    fn window(&self, input: Dims) -> Result<Window, ModelError> {
        if input.c != self.in_channels {
            return Err(ModelError::Architecture(format!(
                "conv expects {} input channels, got {}",
                self.in_channels, input.c
            )));
        }
        window(input, self.kernel, self.stride, self.padding)
    }

    /// im2col: one row per output position, `kh * kw * in` columns ordered (ky, kx, channel).
    fn im2col(&self, x: &[f32], n: usize, input: Dims, win: &Window) -> Vec<f32> {
        let k = self.patch_len();
        let per_sample = win.oh * win.ow * k;
        let mut cols = vec![0.0f32; n * per_sample];
        for_each_sample(&mut cols, per_sample, x, input.len(), |(cols_n, x_n)| {
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    let row = &mut cols_n[(oy * win.ow + ox) * k..(oy * win.ow + ox + 1) * k];
                    for_each_kernel_row_run(win, input, oy, ox, |src, dst, len| {
                        row[dst..dst + len].copy_from_slice(&x_n[src..src + len]);
                    });
                }
            }
        });
        cols
    }

    /// The im2col patches of the input `x` for the weight gradients: the forward pass's
    /// (`Cache::Cols`, strided convolutions) or, after a direct convolution, built again now.
    fn patches<'a>(
        &self,
        x: &[f32],
        cache: &'a Cache,
        n: usize,
        input: Dims,
        win: &Window,
    ) -> std::borrow::Cow<'a, [f32]> {
        match cache {
            Cache::Cols(cols) => std::borrow::Cow::Borrowed(cols.as_slice()),
            _ => std::borrow::Cow::Owned(self.im2col(x, n, input, win)),
        }
    }

    /// col2im: scatter-adds patch gradients back onto the input positions.
    fn col2im(&self, dcols: &[f32], n: usize, input: Dims, win: &Window) -> Vec<f32> {
        let k = self.patch_len();
        let per_sample = win.oh * win.ow * k;
        let mut dx = vec![0.0f32; n * input.len()];
        for_each_sample(
            &mut dx,
            input.len(),
            dcols,
            per_sample,
            |(dx_n, dcols_n)| col2im_sample(dx_n, dcols_n, k, input, win),
        );
        dx
    }
}

/// One sample of [`Conv2d::col2im`]: adds each patch row of `dcols_n` (`k` values per output
/// position) onto the input positions it was copied from.
#[inline(always)]
fn col2im_sample_with<I: Isa>(
    _: I,
    dx_n: &mut [f32],
    dcols_n: &[f32],
    k: usize,
    input: Dims,
    win: &Window,
) {
    for oy in 0..win.oh {
        for ox in 0..win.ow {
            let row = &dcols_n[(oy * win.ow + ox) * k..(oy * win.ow + ox + 1) * k];
            for_each_kernel_row_run(win, input, oy, ox, |dst, src, len| {
                let run = dx_n[dst..dst + len].iter_mut().zip(&row[src..src + len]);
                for (d, s) in run {
                    *d += s;
                }
            });
        }
    }
}

dispatched! {
    /// [`col2im_sample_with`] for this CPU (see [`crate::cpu`]).
    fn col2im_sample(dx_n: &mut [f32], dcols_n: &[f32], k: usize, input: Dims, win: &Window) =
        col2im_sample_with;
}

/// ReLU in place, `max(x, 0)`, vectorised for this CPU.
#[inline(always)]
fn relu_with<I: Isa>(_: I, x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

dispatched! {
    /// [`relu_with`] for this CPU (see [`crate::cpu`]).
    fn relu(x: &mut [f32]) = relu_with;
}

/// ReLU's backward pass in place: `dy` where the output `y` is positive, 0 elsewhere.
#[inline(always)]
fn relu_backward_with<I: Isa>(_: I, y: &[f32], dy: &mut [f32]) {
    // A multiply by the 0/1 mask rather than `if o <= 0 { g = 0 }` (or any select): LLVM turns
    // those into masked stores (`vmaskmovps`), which are microcoded and slow on AMD cores. Same
    // values wherever `dy` is finite.
    for (g, o) in dy.iter_mut().zip(y) {
        *g *= f32::from(u8::from(*o > 0.0));
    }
}

dispatched! {
    /// [`relu_backward_with`] for this CPU (see [`crate::cpu`]).
    fn relu_backward(y: &[f32], dy: &mut [f32]) = relu_backward_with;
}

/// `acc += x` elementwise (equal lengths), vectorised for this CPU.
#[inline(always)]
fn add_assign_with<I: Isa>(_: I, acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

dispatched! {
    /// [`add_assign_with`] for this CPU (see [`crate::cpu`]).
    pub(crate) fn add_assign(acc: &mut [f32], x: &[f32]) = add_assign_with;
}

impl Dense {
    /// A dense layer with Glorot-uniform weights and zero bias.
    pub fn new(in_features: usize, out_features: usize, rng: &mut impl Rng) -> Self {
        Self {
            in_features,
            out_features,
            weight: glorot(rng, in_features, out_features, in_features * out_features),
            bias: vec![0.0; out_features],
        }
    }
}

impl MaxPool2d {
    /// A square pooling window whose stride equals its size.
    pub fn new(size: usize, padding: Padding) -> Self {
        Self {
            size: (size, size),
            stride: (size, size),
            padding,
        }
    }
}

fn glorot(rng: &mut impl Rng, fan_in: usize, fan_out: usize, len: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    (0..len).map(|_| rng.gen_range(-limit..limit)).collect()
}

/// Forward mode: evaluation, or training with a random source for dropout.
pub(crate) enum Mode<'a> {
    Eval,
    Train(&'a mut rand::rngs::StdRng),
}

impl Layer {
    /// Output dimensions for an input of `input` dimensions, or an error if the layer does not fit.
    pub fn output_dims(&self, input: Dims) -> Result<Dims, ModelError> {
        input.check_len("an input")?;
        Ok(match self {
            Layer::Conv2d(conv) => {
                let win = conv.window(input)?;
                let (kh, kw) = conv.kernel;
                let weights = [kh, kw, conv.in_channels, conv.out_channels]
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d));
                if weights != Some(conv.weight.len()) || conv.bias.len() != conv.out_channels {
                    return Err(ModelError::Architecture(format!(
                        "conv {kh}x{kw}x{}x{} needs {} weights and {} biases, got {} and {}",
                        conv.in_channels,
                        conv.out_channels,
                        weights.map_or("more than usize::MAX".into(), |w| w.to_string()),
                        conv.out_channels,
                        conv.weight.len(),
                        conv.bias.len()
                    )));
                }
                Dims::new(win.oh, win.ow, conv.out_channels)
            }
            Layer::MaxPool2d(pool) => {
                let win = window(input, pool.size, pool.stride, pool.padding)?;
                Dims::new(win.oh, win.ow, input.c)
            }
            Layer::Dropout(p) => {
                if !(0.0..1.0).contains(p) {
                    return Err(ModelError::Architecture(format!(
                        "dropout rate {p}: expected a probability in [0, 1)"
                    )));
                }
                input
            }
            Layer::Relu | Layer::Softmax => input,
            Layer::Flatten => Dims::flat(input.len()),
            Layer::Dense(d) => {
                if input.len() != d.in_features {
                    return Err(ModelError::Architecture(format!(
                        "dense layer expects {} input features, got {} ({}x{}x{})",
                        d.in_features,
                        input.len(),
                        input.h,
                        input.w,
                        input.c
                    )));
                }
                let weights = d.in_features.checked_mul(d.out_features);
                if weights != Some(d.weight.len()) || d.bias.len() != d.out_features {
                    return Err(ModelError::Architecture(format!(
                        "dense {}x{} needs {} weights and {} biases, got {} and {}",
                        d.in_features,
                        d.out_features,
                        weights.map_or("more than usize::MAX".into(), |w| w.to_string()),
                        d.out_features,
                        d.weight.len(),
                        d.bias.len()
                    )));
                }
                Dims::flat(d.out_features)
            }
            Layer::Upsample2d(f) => {
                let up = |s: usize| s.checked_mul(*f);
                match (up(input.h), up(input.w)) {
                    (Some(h), Some(w)) if *f > 0 && h.checked_mul(w).is_some() => {
                        Dims::new(h, w, input.c)
                    }
                    _ => {
                        return Err(ModelError::Architecture(format!(
                        "upsampling a {}x{} input by {f}: the factor must be at least 1 and the \
                             output size must fit in usize",
                        input.h, input.w
                    )))
                    }
                }
            }
            Layer::GroupConv2d(g) => g.output_dims(input)?,
            Layer::AvgPool2d(p) => p.output_dims(input)?,
            Layer::GlobalAvgPool => Dims::new(1, 1, input.c),
            Layer::BatchNorm(b) => b.output_dims(input)?,
            Layer::LeakyRelu(alpha) => {
                if alpha.is_nan() {
                    return Err(ModelError::Architecture(
                        "leaky ReLU slope NaN: expected a number".into(),
                    ));
                }
                input
            }
            Layer::Clip { min, max } => {
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(ModelError::Architecture(format!(
                        "clip bounds [{min}, {max}]: expected min <= max, neither NaN"
                    )));
                }
                input
            }
            Layer::HardSigmoid { alpha, beta } => {
                if alpha.is_nan() || beta.is_nan() {
                    return Err(ModelError::Architecture(format!(
                        "hard sigmoid alpha {alpha}, beta {beta}: expected numbers, not NaN"
                    )));
                }
                input
            }
            Layer::Sigmoid
            | Layer::Tanh
            | Layer::HardSwish
            | Layer::LogSoftmax
            | Layer::Binary(_)
            | Layer::Concat => input,
        })
    }

    /// Output dimensions of a layer reading the outputs of several nodes (a graph's
    /// [`Layer::Binary`] and [`Layer::Concat`]; other layers read exactly one).
    pub fn output_dims_multi(&self, inputs: &[Dims]) -> Result<Dims, ModelError> {
        let arity_ok = match self.arity() {
            Some(k) => inputs.len() == k,
            None => !inputs.is_empty(),
        };
        if !arity_ok {
            return Err(ModelError::Architecture(format!(
                "{self:?} takes {} inputs, given {}",
                self.arity()
                    .map_or_else(|| "one or more".to_string(), |k| k.to_string()),
                inputs.len()
            )));
        }
        match self {
            Layer::Binary(op) => {
                if inputs[0] != inputs[1] {
                    return Err(ModelError::Architecture(format!(
                        "{op:?} of tensors with different dimensions {:?} and {:?}",
                        inputs[0], inputs[1]
                    )));
                }
                Ok(inputs[0])
            }
            Layer::Concat => {
                let (h, w) = (inputs[0].h, inputs[0].w);
                if inputs.iter().any(|d| (d.h, d.w) != (h, w)) {
                    return Err(ModelError::Architecture(format!(
                        "Concat along channels of tensors with different heights/widths {inputs:?}"
                    )));
                }
                let c = inputs
                    .iter()
                    .try_fold(0usize, |a, d| a.checked_add(d.c))
                    .ok_or_else(|| {
                        ModelError::Architecture(format!(
                            "Concat of {inputs:?}: the number of channels overflows usize"
                        ))
                    })?;
                Ok(Dims::new(h, w, c))
            }
            _ => self.output_dims(inputs[0]),
        }
    }

    /// Number of inputs the layer reads: 2 for [`Layer::Binary`], any positive number for
    /// [`Layer::Concat`] (`None`), 1 for every other layer.
    pub fn arity(&self) -> Option<usize> {
        match self {
            Layer::Binary(_) => Some(2),
            Layer::Concat => None,
            _ => Some(1),
        }
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        match self {
            Layer::Conv2d(c) => c.weight.len() + c.bias.len(),
            Layer::Dense(d) => d.weight.len() + d.bias.len(),
            Layer::GroupConv2d(g) => g.weight.len() + g.bias.len(),
            Layer::BatchNorm(b) => b.gamma.len() + b.beta.len(),
            _ => 0,
        }
    }

    /// Shapes of (weight, bias) for parameterised layers.
    pub fn param_shapes(&self) -> Option<(Vec<usize>, Vec<usize>)> {
        match self {
            Layer::Conv2d(c) => Some((
                vec![c.kernel.0, c.kernel.1, c.in_channels, c.out_channels],
                vec![c.out_channels],
            )),
            Layer::Dense(d) => Some((vec![d.in_features, d.out_features], vec![d.out_features])),
            Layer::GroupConv2d(g) => Some((
                vec![
                    g.kernel.0,
                    g.kernel.1,
                    g.in_channels / g.groups.max(1),
                    g.out_channels,
                ],
                vec![g.out_channels],
            )),
            Layer::BatchNorm(b) => Some((vec![b.gamma.len()], vec![b.beta.len()])),
            _ => None,
        }
    }

    /// (weight, bias) slices of a parameterised layer.
    pub fn params(&self) -> Option<(&[f32], &[f32])> {
        match self {
            Layer::Conv2d(c) => Some((&c.weight, &c.bias)),
            Layer::Dense(d) => Some((&d.weight, &d.bias)),
            Layer::GroupConv2d(g) => Some((&g.weight, &g.bias)),
            Layer::BatchNorm(b) => Some((&b.gamma, &b.beta)),
            _ => None,
        }
    }

    /// Mutable (weight, bias) of a parameterised layer.
    pub fn params_mut(&mut self) -> Option<(&mut Vec<f32>, &mut Vec<f32>)> {
        match self {
            Layer::Conv2d(c) => Some((&mut c.weight, &mut c.bias)),
            Layer::Dense(d) => Some((&mut d.weight, &mut d.bias)),
            Layer::GroupConv2d(g) => Some((&mut g.weight, &mut g.bias)),
            Layer::BatchNorm(b) => Some((&mut b.gamma, &mut b.beta)),
            _ => None,
        }
    }

    /// Whether the layer maps each value on its own (ReLU, dropout, flatten), so that it can
    /// work in place on its input.
    pub(crate) fn is_elementwise(&self) -> bool {
        matches!(self, Layer::Relu | Layer::Dropout(_) | Layer::Flatten)
    }

    /// Whether the layer's training-mode forward pass mixes the samples of a batch (batch
    /// statistics), so that a training pass cannot run as independent chunks of samples:
    /// [`Layer::BatchNorm`], which normalises with the batch's statistics in training. For a
    /// network with such a layer, [`crate::Network::forward_trace`] with an `rng` runs the whole
    /// batch as one chunk.
    pub fn mixes_samples_in_training(&self) -> bool {
        matches!(self, Layer::BatchNorm(_))
    }

    /// Whether the backward pass reads the layer's own output (ReLU's mask, softmax's
    /// probabilities, max pooling's maxima), which must then be kept in the trace.
    pub(crate) fn backward_reads_output(&self) -> bool {
        matches!(
            self,
            Layer::Relu
                | Layer::Softmax
                | Layer::MaxPool2d(_)
                | Layer::Sigmoid
                | Layer::Tanh
                | Layer::Clip { .. }
                | Layer::HardSigmoid { .. }
                | Layer::LogSoftmax
        )
    }

    /// In-place forward pass of an elementwise layer (see [`Layer::is_elementwise`]); other
    /// layers leave `x` unchanged.
    pub(crate) fn forward_in_place(&self, x: &mut [f32], mode: &mut Mode<'_>) -> Cache {
        match (self, mode) {
            (Layer::Relu, _) => {
                relu(x);
                Cache::None
            }
            (Layer::Dropout(p), Mode::Train(rng)) => {
                let keep = 1.0 - p;
                let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
                // `rng.gen::<f32>() < keep` for every element, without a call per element: the
                // same 32-bit words drawn in blocks, and `gen::<f32>()`'s value `(u >> 8) / 2^24`
                // compared as an integer, `(u >> 8) < ceil(keep * 2^24)`. The masks are the
                // same bits as one `gen` per element, and the loop below has no branch.
                let threshold = (keep as f64 * 16_777_216.0).ceil() as u32;
                let mut kept = vec![false; x.len()];
                let mut words = [0u32; 256];
                for (xs, ks) in x.chunks_mut(256).zip(kept.chunks_mut(256)) {
                    let words = &mut words[..xs.len()];
                    rng.fill(words);
                    for ((v, k), u) in xs.iter_mut().zip(ks.iter_mut()).zip(words.iter()) {
                        let keep = (u >> 8) < threshold;
                        *k = keep;
                        *v = if keep { *v * scale } else { 0.0 };
                    }
                }
                Cache::Keep { kept, scale }
            }
            _ => Cache::None,
        }
    }

    /// In-place backward pass of an elementwise layer, given its output `y`.
    pub(crate) fn backward_in_place(&self, y: &[f32], cache: &Cache, dy: &mut [f32]) {
        match (self, cache) {
            (Layer::Relu, _) => relu_backward(y, dy),
            (Layer::Dropout(_), Cache::Keep { kept, scale }) => {
                for (g, k) in dy.iter_mut().zip(kept) {
                    *g = if *k { *g * scale } else { 0.0 };
                }
            }
            _ => {}
        }
    }

    /// Inference of a `Conv2d -> Relu -> MaxPool2d` run (2x2 windows, stride 2, no padding) in
    /// one pass, when the convolution takes Winograd's F(4x4, 3x3)
    /// ([`direct::winograd::conv_relu_max_pool2`]): the same bits as the three layers one after
    /// another, without writing and reading back the convolution's output (PyTorch's MNIST
    /// example's `conv2 -> relu -> max_pool2d`). `None` when the layers are not such a run.
    pub(crate) fn forward_conv_relu_max_pool(
        layers: [&Layer; 3],
        x: &[f32],
        n: usize,
        input: Dims,
        kernels: &ConvKernels,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let [Layer::Conv2d(conv), Layer::Relu, Layer::MaxPool2d(pool)] = layers else {
            return Ok(None);
        };
        let unpadded = matches!(
            pool.padding,
            Padding::Valid
                | Padding::Explicit {
                    top: 0,
                    bottom: 0,
                    left: 0,
                    right: 0
                }
        );
        if conv.stride != (1, 1) || pool.size != (2, 2) || pool.stride != (2, 2) || !unpadded {
            return Ok(None);
        }
        let out_dims = layers[0].output_dims(input)?;
        let (ci, co) = (conv.in_channels, conv.out_channels);
        if !direct::winograd::applies(conv.kernel, ci, co, (out_dims.h, out_dims.w))
            || direct::winograd::Tile::for_channels(ci, co) != direct::winograd::Tile::F4
        {
            return Ok(None);
        }
        let pooled = layers[2].output_dims(out_dims)?;
        if (pooled.h, pooled.w) != (out_dims.h / 2, out_dims.w / 2) {
            return Ok(None);
        }
        let win = conv.window(input)?;
        let kernel = kernels.winograd.get_or_init(|| {
            direct::winograd::WinogradKernel::new(&conv.weight, ci, co, Some(&conv.bias))
        });
        Ok(Some(direct::winograd::conv_relu_max_pool2(
            x,
            n,
            input,
            kernel,
            &win.stride1(),
        )))
    }

    /// Forward pass of a batch of `n` samples. Returns the output and what backward needs.
    /// `kernels` holds this layer's packed convolution kernels (see [`ConvKernels`]); they are
    /// packed from the layer's current weights on first use.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        n: usize,
        input: Dims,
        mode: &mut Mode<'_>,
        keep_cache: bool,
        kernels: &ConvKernels,
    ) -> Result<(Vec<f32>, Cache), ModelError> {
        let out_dims = self.output_dims(input)?;
        Ok(match self {
            // Stride 1, 3x3 with enough channels: Winograd's F(2x2, 3x3), 2.25x fewer
            // multiply-adds than the direct convolution below (also when weight gradients will
            // be needed: they build their im2col patches from the stored input).
            Layer::Conv2d(conv)
                if conv.stride == (1, 1)
                    && direct::winograd::applies(
                        conv.kernel,
                        conv.in_channels,
                        conv.out_channels,
                        (out_dims.h, out_dims.w),
                    ) =>
            {
                let win = conv.window(input)?;
                let kernel = kernels.winograd.get_or_init(|| {
                    direct::winograd::WinogradKernel::new(
                        &conv.weight,
                        conv.in_channels,
                        conv.out_channels,
                        Some(&conv.bias),
                    )
                });
                let out = direct::winograd::conv(x, n, input, kernel, &win.stride1());
                (out, Cache::None)
            }
            // Other stride-1 windows: a direct convolution, also when weight gradients will be
            // needed (`Conv2d::patches`).
            Layer::Conv2d(conv) if conv.stride == (1, 1) => {
                let win = conv.window(input)?;
                let kernel = kernels.forward.get_or_init(|| {
                    direct::PackedKernel::new(&conv.weight, conv.out_channels, Some(&conv.bias))
                });
                let out = direct::conv_packed(x, n, input, kernel, &win.stride1());
                (out, Cache::None)
            }
            Layer::Conv2d(conv) => {
                let win = conv.window(input)?;
                let cols = conv.im2col(x, n, input, &win);
                let rows = n * win.oh * win.ow;
                let mut out = Vec::with_capacity(rows * conv.out_channels);
                for _ in 0..rows {
                    out.extend_from_slice(&conv.bias);
                }
                matmul(
                    &cols,
                    (rows, conv.patch_len()),
                    Op::N,
                    &conv.weight,
                    (conv.patch_len(), conv.out_channels),
                    Op::N,
                    &mut out,
                    true,
                );
                (
                    out,
                    if keep_cache {
                        Cache::Cols(cols)
                    } else {
                        Cache::None
                    },
                )
            }
            Layer::MaxPool2d(pool) => {
                let win = window(input, pool.size, pool.stride, pool.padding)?;
                // The backward pass finds each window's winner again from the input and the
                // output, so the forward pass stays a vectorised max.
                (max_pool_forward(x, n, input, &win), Cache::None)
            }
            Layer::Relu | Layer::Dropout(_) | Layer::Flatten => {
                let mut out = x.to_vec();
                let cache = self.forward_in_place(&mut out, mode);
                (out, cache)
            }
            Layer::Dense(d) => {
                let mut out = Vec::with_capacity(n * d.out_features);
                for _ in 0..n {
                    out.extend_from_slice(&d.bias);
                }
                matmul(
                    x,
                    (n, d.in_features),
                    Op::N,
                    &d.weight,
                    (d.in_features, d.out_features),
                    Op::N,
                    &mut out,
                    true,
                );
                (out, Cache::None)
            }
            Layer::Softmax => {
                let f = out_dims.len();
                let mut out = x.to_vec();
                for row in out.chunks_mut(f) {
                    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    for v in row.iter_mut() {
                        *v /= sum;
                    }
                }
                (out, Cache::None)
            }
            Layer::Upsample2d(f) => (upsample_forward(x, n, input, *f), Cache::None),
            Layer::GroupConv2d(g) => (g.forward(x, n, input)?, Cache::None),
            Layer::AvgPool2d(p) => (p.forward(x, n, input)?, Cache::None),
            Layer::GlobalAvgPool => (ops::global_avg_forward(x, n, input), Cache::None),
            Layer::BatchNorm(b) => match mode {
                Mode::Train(_) => {
                    let (out, stats) = b.forward_train(x, input)?;
                    (out, Cache::BatchStats(stats))
                }
                Mode::Eval => (b.forward(x, input)?, Cache::None),
            },
            Layer::Sigmoid => (x.iter().map(|&v| ops::sigmoid(v)).collect(), Cache::None),
            Layer::Tanh => (x.iter().map(|v| v.tanh()).collect(), Cache::None),
            Layer::LeakyRelu(a) => (
                x.iter().map(|&v| if v > 0.0 { v } else { a * v }).collect(),
                Cache::None,
            ),
            Layer::Clip { min, max } => (
                x.iter().map(|&v| v.max(*min).min(*max)).collect(),
                Cache::None,
            ),
            Layer::HardSigmoid { alpha, beta } => (
                x.iter()
                    .map(|&v| (alpha * v + beta).clamp(0.0, 1.0))
                    .collect(),
                Cache::None,
            ),
            Layer::HardSwish => (
                x.iter()
                    .map(|&v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0))
                    .collect(),
                Cache::None,
            ),
            Layer::LogSoftmax => {
                let f = out_dims.len();
                let mut out = x.to_vec();
                for row in out.chunks_mut(f.max(1)) {
                    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
                    row.iter_mut().for_each(|v| *v -= lse);
                }
                (out, Cache::None)
            }
            Layer::Binary(_) | Layer::Concat => {
                return Err(ModelError::Internal(format!(
                    "{self:?} reads several inputs; it runs only inside a graph"
                )))
            }
        })
    }

    /// Backward pass: given the layer's input `x` and output `y`, its cache and the gradient `dy`
    /// of the loss with respect to `y`, returns the gradient with respect to the layer's input.
    /// (`x` is read only by max pooling; elementwise layers that ran in place may pass an empty
    /// slice.)
    /// `kernels` as in [`Layer::forward`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_input(
        &self,
        x: &[f32],
        y: &[f32],
        cache: &Cache,
        dy: &[f32],
        n: usize,
        input: Dims,
        kernels: &ConvKernels,
    ) -> Result<Vec<f32>, ModelError> {
        let out_dims = self.output_dims(input)?;
        Ok(match self {
            // The transposed convolution of a 3x3 one is 3x3 too: Winograd where the forward
            // pass would take it with the channel counts swapped.
            Layer::Conv2d(conv)
                if conv.stride == (1, 1)
                    && 4 * input.h * input.w <= 5 * out_dims.h * out_dims.w
                    && direct::winograd::applies(
                        conv.kernel,
                        conv.out_channels,
                        conv.in_channels,
                        (input.h, input.w),
                    ) =>
            {
                let win = conv.window(input)?;
                let kernel = kernels.winograd_transposed.get_or_init(|| {
                    direct::winograd::WinogradKernel::new(
                        &direct::flip_transpose(
                            &conv.weight,
                            conv.kernel,
                            conv.in_channels,
                            conv.out_channels,
                        ),
                        conv.out_channels,
                        conv.in_channels,
                        None,
                    )
                });
                direct::winograd::conv(dy, n, out_dims, kernel, &win.stride1().transposed(input))
            }
            Layer::Conv2d(conv)
                if conv.stride == (1, 1)
                    && 4 * input.h * input.w <= 5 * out_dims.h * out_dims.w =>
            {
                // Direct, unless most of the transposed convolution would multiply the zero
                // border of a 'valid' convolution's output gradient (e.g. 13x13 from 11x11:
                // im2col + gemm + col2im is then faster).
                let win = conv.window(input)?;
                let kernel = kernels.transposed.get_or_init(|| {
                    direct::PackedKernel::transposed(
                        &conv.weight,
                        conv.kernel,
                        conv.in_channels,
                        conv.out_channels,
                    )
                });
                direct::conv_packed(dy, n, out_dims, kernel, &win.stride1().transposed(input))
            }
            Layer::Conv2d(conv) => {
                let win = conv.window(input)?;
                let rows = n * win.oh * win.ow;
                let mut dcols = vec![0.0f32; rows * conv.patch_len()];
                matmul(
                    dy,
                    (rows, conv.out_channels),
                    Op::N,
                    &conv.weight,
                    (conv.patch_len(), conv.out_channels),
                    Op::T,
                    &mut dcols,
                    false,
                );
                conv.col2im(&dcols, n, input, &win)
            }
            Layer::MaxPool2d(pool) => {
                let win = window(input, pool.size, pool.stride, pool.padding)?;
                max_pool_backward(x, y, dy, n, input, &win)
            }
            Layer::Relu | Layer::Dropout(_) | Layer::Flatten => {
                let mut dx = dy.to_vec();
                self.backward_in_place(y, cache, &mut dx);
                dx
            }
            Layer::Dense(d) => {
                let mut dx = vec![0.0f32; n * d.in_features];
                matmul(
                    dy,
                    (n, d.out_features),
                    Op::N,
                    &d.weight,
                    (d.in_features, d.out_features),
                    Op::T,
                    &mut dx,
                    false,
                );
                dx
            }
            Layer::Softmax => {
                let f = out_dims.len();
                let mut dx = vec![0.0f32; dy.len()];
                for ((dx_r, y_r), dy_r) in dx.chunks_mut(f).zip(y.chunks(f)).zip(dy.chunks(f)) {
                    let dot: f32 = y_r.iter().zip(dy_r).map(|(a, b)| a * b).sum();
                    for j in 0..f {
                        dx_r[j] = y_r[j] * (dy_r[j] - dot);
                    }
                }
                dx
            }
            Layer::Upsample2d(f) => upsample_backward(dy, n, input, *f),
            Layer::GroupConv2d(g) => g.backward_input(dy, n, input)?,
            Layer::AvgPool2d(p) => p.backward_input(dy, n, input)?,
            Layer::GlobalAvgPool => ops::global_avg_backward(dy, n, input),
            Layer::BatchNorm(b) => match cache {
                Cache::BatchStats(stats) => b.backward_input_train(x, dy, input, stats),
                _ => b.backward_input(dy, input),
            },
            Layer::Sigmoid => dy.iter().zip(y).map(|(g, s)| g * s * (1.0 - s)).collect(),
            Layer::Tanh => dy.iter().zip(y).map(|(g, t)| g * (1.0 - t * t)).collect(),
            Layer::LeakyRelu(a) => dy
                .iter()
                .zip(x)
                .map(|(g, v)| if *v > 0.0 { *g } else { a * g })
                .collect(),
            Layer::Clip { min, max } => dy
                .iter()
                .zip(y)
                .map(|(g, v)| f32::from(u8::from(*v > *min && *v < *max)) * g)
                .collect(),
            Layer::HardSigmoid { alpha, .. } => dy
                .iter()
                .zip(y)
                .map(|(g, v)| f32::from(u8::from(*v > 0.0 && *v < 1.0)) * alpha * g)
                .collect(),
            Layer::HardSwish => dy
                .iter()
                .zip(x)
                .map(|(g, v)| {
                    let d = if *v <= -3.0 {
                        0.0
                    } else if *v >= 3.0 {
                        1.0
                    } else {
                        v / 3.0 + 0.5
                    };
                    g * d
                })
                .collect(),
            Layer::LogSoftmax => {
                let f = out_dims.len().max(1);
                let mut dx = vec![0.0f32; dy.len()];
                for ((dx_r, y_r), dy_r) in dx.chunks_mut(f).zip(y.chunks(f)).zip(dy.chunks(f)) {
                    let s: f32 = dy_r.iter().sum();
                    for j in 0..dx_r.len() {
                        dx_r[j] = dy_r[j] - y_r[j].exp() * s;
                    }
                }
                dx
            }
            Layer::Binary(_) | Layer::Concat => {
                return Err(ModelError::Internal(format!(
                    "{self:?} reads several inputs; it runs only inside a graph"
                )))
            }
        })
    }

    /// Gradients of the batch's summed loss with respect to this layer's parameters.
    pub(crate) fn backward_params(
        &self,
        x: &[f32],
        cache: &Cache,
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<Option<LayerGrads>, ModelError> {
        Ok(match self {
            Layer::Conv2d(conv) => {
                let win = conv.window(input)?;
                let cols = conv.patches(x, cache, n, input, &win);
                let rows = n * win.oh * win.ow;
                let mut dw = vec![0.0f32; conv.weight.len()];
                matmul(
                    &cols,
                    (rows, conv.patch_len()),
                    Op::T,
                    dy,
                    (rows, conv.out_channels),
                    Op::N,
                    &mut dw,
                    false,
                );
                Some(LayerGrads {
                    weight: dw,
                    bias: column_sums(dy, conv.out_channels),
                })
            }
            Layer::Dense(d) => {
                let mut dw = vec![0.0f32; d.weight.len()];
                matmul(
                    x,
                    (n, d.in_features),
                    Op::T,
                    dy,
                    (n, d.out_features),
                    Op::N,
                    &mut dw,
                    false,
                );
                Some(LayerGrads {
                    weight: dw,
                    bias: column_sums(dy, d.out_features),
                })
            }
            Layer::GroupConv2d(_) | Layer::BatchNorm(_) => {
                if let (Layer::BatchNorm(bn), Cache::BatchStats(stats)) = (self, cache) {
                    // Training: through the batch's statistics.
                    let (weight, bias) = bn.param_grads_train(x, dy, input, stats);
                    return Ok(Some(LayerGrads { weight, bias }));
                }
                let (w, b) = self.per_sample_params(x, dy, n, input)?.ok_or_else(|| {
                    ModelError::Internal("no per-sample gradients of a parameterised layer".into())
                })?;
                let wl = w.len() / n.max(1);
                let bl = b.len() / n.max(1);
                Some(LayerGrads {
                    weight: column_sums(&w, wl.max(1)),
                    bias: column_sums(&b, bl.max(1)),
                })
            }
            _ => None,
        })
    }

    /// Per-sample (weight, bias) gradients, `[n, weight len]` and `[n, bias len]`, of the layers
    /// that compute them from their input and output gradient alone ([`Layer::GroupConv2d`],
    /// [`Layer::BatchNorm`]); `None` for other layers.
    pub(crate) fn per_sample_params(
        &self,
        x: &[f32],
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<Option<PerSampleParams>, ModelError> {
        Ok(match self {
            Layer::GroupConv2d(g) => Some(g.per_sample(x, dy, n, input)?),
            Layer::BatchNorm(b) => Some(b.per_sample(x, dy, n, input)),
            _ => None,
        })
    }

    /// Per-sample weight and bias gradients of a conv layer: `[n, kh*kw*in*out]` and `[n, out]`.
    pub(crate) fn conv_per_sample(
        conv: &Conv2d,
        x: &[f32],
        cache: &Cache,
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let win = conv.window(input)?;
        let cols = conv.patches(x, cache, n, input, &win);
        let cols = cols.as_ref();
        let positions = win.oh * win.ow;
        let k = conv.patch_len();
        let o = conv.out_channels;
        let mut dw = vec![0.0f32; n * k * o];
        let mut db = vec![0.0f32; n * o];
        let one = |(s, (dw_n, db_n)): (usize, (&mut [f32], &mut [f32]))| {
            let cols_n = &cols[s * positions * k..(s + 1) * positions * k];
            let dy_n = &dy[s * positions * o..(s + 1) * positions * o];
            matmul(
                cols_n,
                (positions, k),
                Op::T,
                dy_n,
                (positions, o),
                Op::N,
                dw_n,
                false,
            );
            db_n.copy_from_slice(&column_sums(dy_n, o));
        };
        if crate::parallel::inner_parallelism() && n > 1 {
            dw.par_chunks_mut(k * o)
                .zip(db.par_chunks_mut(o))
                .enumerate()
                .for_each(one);
        } else {
            dw.chunks_mut(k * o)
                .zip(db.chunks_mut(o))
                .enumerate()
                .for_each(one);
        }
        Ok((dw, db))
    }
}

/// For output position `(oy, ox)` of a convolution window, calls `f(input_offset, patch_offset,
/// len)` once per in-bounds kernel row: the in-bounds kernel columns of a kernel row read one
/// contiguous run of `len` values of the input row (NHWC), at `input_offset` within the sample and
/// `patch_offset` within the im2col row. im2col copies these runs; col2im adds them back.
fn for_each_kernel_row_run(
    win: &Window,
    input: Dims,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let c = input.c;
    let ix0 = (ox * win.sw) as isize - win.pad_left as isize;
    let kx0 = (-ix0).max(0) as usize;
    let kx1 = ((input.w as isize - ix0).max(0) as usize).min(win.kw);
    if kx0 >= kx1 {
        return;
    }
    for ky in 0..win.kh {
        let iy = (oy * win.sh + ky) as isize - win.pad_top as isize;
        if iy < 0 || iy >= input.h as isize {
            continue;
        }
        let input_offset = (iy as usize * input.w + (ix0 + kx0 as isize) as usize) * c;
        f(input_offset, (ky * win.kw + kx0) * c, (kx1 - kx0) * c);
    }
}

/// Calls `f` on each sample's pair of (output, input) chunks, on rayon's threads unless the
/// caller runs serially (see [`crate::parallel`]).
pub(crate) fn for_each_sample<A: Send, B: Sync>(
    out: &mut [A],
    out_len: usize,
    input: &[B],
    in_len: usize,
    f: impl Fn((&mut [A], &[B])) + Send + Sync,
) {
    if out_len == 0 || in_len == 0 {
        return;
    }
    if crate::parallel::inner_parallelism() && out.len() > out_len {
        out.par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .for_each(f);
    } else {
        out.chunks_mut(out_len)
            .zip(input.chunks(in_len))
            .for_each(f);
    }
}

fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let mut s = vec![0.0f32; cols];
    for row in m.chunks(cols) {
        for (a, b) in s.iter_mut().zip(row) {
            *a += b;
        }
    }
    s
}

/// Max pooling of a batch, vectorised over channels. A window that saw only NaN keeps NaN.
fn max_pool_forward(x: &[f32], n: usize, input: Dims, win: &Window) -> Vec<f32> {
    let c = input.c;
    let per_out = win.oh * win.ow * c;
    // `max_pool_sample` writes every output value.
    let mut out = crate::buffers::overwritten(n * per_out);
    for_each_sample(&mut out, per_out, x, input.len(), |(out_n, x_n)| {
        max_pool_sample(out_n, x_n, input, win);
    });
    out
}

/// One sample of [`max_pool_forward`].
#[inline(always)]
fn max_pool_sample_with<I: Isa>(_: I, out_n: &mut [f32], x_n: &[f32], input: Dims, win: &Window) {
    let c = input.c;
    for oy in 0..win.oh {
        for ox in 0..win.ow {
            let o_base = (oy * win.ow + ox) * c;
            let o = &mut out_n[o_base..o_base + c];
            let mut first = true;
            for_each_window_input(win, input, oy, ox, |i_base| {
                let v = &x_n[i_base..i_base + c];
                if first {
                    o.copy_from_slice(v);
                    first = false;
                } else {
                    // `max` keeps the non-NaN operand, so NaN survives only if all are NaN.
                    o.iter_mut().zip(v).for_each(|(a, b)| *a = a.max(*b));
                }
            });
            if first {
                // A window wholly in the padding: 0, as before outputs were recycled.
                o.fill(0.0);
            }
        }
    }
}

dispatched! {
    /// [`max_pool_sample_with`] for this CPU (see [`crate::cpu`]).
    fn max_pool_sample(out_n: &mut [f32], x_n: &[f32], input: Dims, win: &Window) =
        max_pool_sample_with;
}

/// Calls `f` with the flat offset (within a sample, NHWC) of each in-bounds input position of
/// output position `(oy, ox)`'s window, in row-major window order.
pub(crate) fn for_each_window_input(
    win: &Window,
    input: Dims,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize),
) {
    // Only the window's in-bounds rows and columns are visited: a window much larger than the
    // input (possible with 'same' padding) costs no more than the input.
    let in_bounds = |o: usize, s: usize, pad: usize, k: usize, len: usize| {
        let start = o * s;
        let k0 = pad.saturating_sub(start);
        let k1 = len.saturating_add(pad).saturating_sub(start).min(k);
        (k0, k1)
    };
    let (ky0, ky1) = in_bounds(oy, win.sh, win.pad_top, win.kh, input.h);
    let (kx0, kx1) = in_bounds(ox, win.sw, win.pad_left, win.kw, input.w);
    for ky in ky0..ky1 {
        let iy = oy * win.sh + ky - win.pad_top;
        for kx in kx0..kx1 {
            let ix = ox * win.sw + kx - win.pad_left;
            f((iy * input.w + ix) * input.c);
        }
    }
}

/// Gradient of max pooling: each output's gradient goes to the first input of its window that
/// equals the output (the winner of the forward pass; the first one on ties), or to the window's
/// first in-bounds input when none does (a window of NaN).
fn max_pool_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    n: usize,
    input: Dims,
    win: &Window,
) -> Vec<f32> {
    let c = input.c;
    let per_out = win.oh * win.ow * c;
    let mut dx = vec![0.0f32; n * input.len()];
    let route = |s: usize, dx_n: &mut [f32]| {
        let x_n = &x[s * input.len()..(s + 1) * input.len()];
        let y_n = &y[s * per_out..(s + 1) * per_out];
        let dy_n = &dy[s * per_out..(s + 1) * per_out];
        max_pool_route(x_n, (y_n, dy_n), dx_n, input, win);
    };
    if crate::parallel::inner_parallelism() && n > 1 {
        dx.par_chunks_mut(input.len())
            .enumerate()
            .for_each(|(s, dx_n)| route(s, dx_n));
    } else {
        dx.chunks_mut(input.len())
            .enumerate()
            .for_each(|(s, dx_n)| route(s, dx_n));
    }
    dx
}

/// One sample of [`max_pool_backward`]: routes `dy_n` (the gradient of the outputs `y_n`) to
/// the winning inputs of `x_n`, adding into `dx_n`.
#[inline(always)]
fn max_pool_route_with<I: Isa>(
    _: I,
    x_n: &[f32],
    (y_n, dy_n): (&[f32], &[f32]),
    dx_n: &mut [f32],
    input: Dims,
    win: &Window,
) {
    let c = input.c;
    let mut routed = vec![false; c];
    for oy in 0..win.oh {
        for ox in 0..win.ow {
            let o_base = (oy * win.ow + ox) * c;
            routed.fill(false);
            let mut first = None;
            for_each_window_input(win, input, oy, ox, |i_base| {
                first.get_or_insert(i_base);
                // Branch-free over the channels, so that it vectorises.
                let lanes = dx_n[i_base..i_base + c]
                    .iter_mut()
                    .zip(routed.iter_mut())
                    .zip(&x_n[i_base..i_base + c])
                    .zip(&y_n[o_base..o_base + c])
                    .zip(&dy_n[o_base..o_base + c]);
                for ((((d, r), xv), yv), g) in lanes {
                    let hit = !*r & (*xv == *yv);
                    *d += if hit { *g } else { 0.0 };
                    *r |= hit;
                }
            });
            if let Some(i_base) = first {
                for ch in 0..c {
                    if !routed[ch] {
                        dx_n[i_base + ch] += dy_n[o_base + ch];
                    }
                }
            }
        }
    }
}

dispatched! {
    /// [`max_pool_route_with`] for this CPU (see [`crate::cpu`]).
    fn max_pool_route(
        x_n: &[f32],
        y_dy: (&[f32], &[f32]),
        dx_n: &mut [f32],
        input: Dims,
        win: &Window,
    ) = max_pool_route_with;
}

fn upsample_forward(x: &[f32], n: usize, input: Dims, f: usize) -> Vec<f32> {
    let (oh, ow, c) = (input.h * f, input.w * f, input.c);
    let mut out = vec![0.0f32; n * oh * ow * c];
    for s in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let src = s * input.len() + ((oy / f) * input.w + ox / f) * c;
                let dst = s * oh * ow * c + (oy * ow + ox) * c;
                out[dst..dst + c].copy_from_slice(&x[src..src + c]);
            }
        }
    }
    out
}

fn upsample_backward(dy: &[f32], n: usize, input: Dims, f: usize) -> Vec<f32> {
    let (oh, ow, c) = (input.h * f, input.w * f, input.c);
    let mut dx = vec![0.0f32; n * input.len()];
    for s in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = s * input.len() + ((oy / f) * input.w + ox / f) * c;
                let src = s * oh * ow * c + (oy * ow + ox) * c;
                for ch in 0..c {
                    dx[dst + ch] += dy[src + ch];
                }
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatched_loops_equal_portable() {
        // Maxima, comparisons and sums in the same order: bit-identical on every path.
        use crate::cpu::Portable;
        let input = Dims::new(6, 7, 5);
        let x: Vec<f32> = (0..input.len()).map(|i| (i as f32 * 0.37).sin()).collect();
        let win = window(input, (2, 2), (2, 2), Padding::Same).unwrap();
        let per_out = win.oh * win.ow * input.c;
        let (mut got, mut want) = (vec![0.0; per_out], vec![0.0; per_out]);
        max_pool_sample(&mut got, &x, input, &win);
        max_pool_sample_with(Portable, &mut want, &x, input, &win);
        assert_eq!(got, want);
        let dy: Vec<f32> = (0..per_out).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut dx, mut dx_p) = (vec![0.0; input.len()], vec![0.0; input.len()]);
        max_pool_route(&x, (&got, &dy), &mut dx, input, &win);
        max_pool_route_with(Portable, &x, (&got, &dy), &mut dx_p, input, &win);
        assert_eq!(dx, dx_p);
        let (mut r, mut r_p) = (x.clone(), x.clone());
        relu(&mut r);
        relu_with(Portable, &mut r_p);
        assert_eq!(r, r_p);
        let (mut g, mut g_p) = (x.clone(), x.clone());
        relu_backward(&r, &mut g);
        relu_backward_with(Portable, &r, &mut g_p);
        assert_eq!(g, g_p);
        let conv_win = window(input, (3, 3), (1, 1), Padding::Same).unwrap();
        let k = 3 * 3 * input.c;
        let dcols: Vec<f32> = (0..input.h * input.w * k)
            .map(|i| (i as f32 * 0.05).sin())
            .collect();
        let (mut d, mut d_p) = (vec![0.0; input.len()], vec![0.0; input.len()]);
        col2im_sample(&mut d, &dcols, k, input, &conv_win);
        col2im_sample_with(Portable, &mut d_p, &dcols, k, input, &conv_win);
        assert_eq!(d, d_p);
    }

    #[test]
    fn same_padding_matches_keras_for_even_kernels() {
        // Keras: a 2x2 'same' conv on 28x28 pads 0 above/left and 1 below/right.
        assert_eq!(pad_1d(28, 2, 1, Padding::Same, true), Some((0, 28)));
        assert_eq!(pad_1d(28, 3, 1, Padding::Same, true), Some((1, 28)));
        assert_eq!(pad_1d(7, 2, 2, Padding::Same, true), Some((0, 4)));
        assert_eq!(pad_1d(24, 5, 1, Padding::Valid, true), Some((0, 20)));
        assert_eq!(pad_1d(3, 5, 1, Padding::Valid, true), None);
    }
}
