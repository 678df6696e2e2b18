//! The layers that real ONNX exports (PyTorch, Keras via tf2onnx) add to the plain chains of
//! [`crate::layers`]: grouped / depthwise / dilated convolution, average pooling, inference batch
//! normalisation, smooth and clipped activations, and the elementwise and concatenation nodes of
//! a graph. Activations are NHWC, as everywhere in this crate; every kernel here is a direct loop
//! whose innermost run goes over contiguous channels.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::layers::{for_each_sample, for_each_window_input, window, Dims, Padding, Window};
use crate::ModelError;

/// A 2-D convolution with groups and dilation (`groups = in_channels` is a depthwise
/// convolution, as in MobileNet). Weights are `[kh, kw, in / groups, out]` (HWIO with the
/// per-group input channels): output channel `o` belongs to group `o / (out / groups)` and reads
/// the input channels of that group. The ungrouped, undilated case is [`crate::Conv2d`] (faster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride along height and width.
    pub stride: (usize, usize),
    /// Dilation along height and width (1 = a dense kernel).
    pub dilation: (usize, usize),
    /// Number of groups; divides both channel counts.
    pub groups: usize,
    /// Padding (of the dilated kernel's extent).
    pub padding: Padding,
    /// Weights, `[kh, kw, in / groups, out]` flattened.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
}

/// Geometry of a grouped convolution on one input.
pub(crate) struct ConvGeom {
    win: Window,
    dh: usize,
    dw: usize,
    ig: usize,
    og: usize,
}

impl GroupConv2d {
    /// Checks the channels, groups and parameter lengths and returns the window geometry.
    pub(crate) fn geom(&self, input: Dims) -> Result<ConvGeom, ModelError> {
        let arch = |m: String| Err(ModelError::Architecture(m));
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return arch(format!(
                "{} groups do not divide {} input and {} output channels",
                self.groups, self.in_channels, self.out_channels
            ));
        }
        if input.c != self.in_channels {
            return arch(format!(
                "grouped conv expects {} input channels, got {}",
                self.in_channels, input.c
            ));
        }
        let (kh, kw) = self.kernel;
        let (dh, dw) = self.dilation;
        let ig = self.in_channels / self.groups;
        let weights = [kh, kw, ig, self.out_channels]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if weights != Some(self.weight.len()) || self.bias.len() != self.out_channels {
            return arch(format!(
                "grouped conv weights of {} values and bias of {} (expected {kh}x{kw}x{ig}x{} and {})",
                self.weight.len(),
                self.bias.len(),
                self.out_channels,
                self.out_channels
            ));
        }
        if dh == 0 || dw == 0 || self.stride.0 == 0 || self.stride.1 == 0 || kh == 0 || kw == 0 {
            return arch("zero kernel, stride or dilation".into());
        }
        let span = |k: usize, d: usize| (k - 1).checked_mul(d).and_then(|v| v.checked_add(1));
        let (Some(eh), Some(ew)) = (span(kh, dh), span(kw, dw)) else {
            return arch(format!(
                "a {kh}x{kw} kernel dilated {dh}x{dw}: its extent must fit in usize"
            ));
        };
        let extent = (eh, ew);
        let win = window(input, extent, self.stride, self.padding)?;
        Ok(ConvGeom {
            win,
            dh,
            dw,
            ig,
            og: self.out_channels / self.groups,
        })
    }

    /// Calls `f(input_offset, output_offset, tap)` for every in-bounds (output position, kernel
    /// tap) pair of one sample; offsets are NHWC within the sample, `tap = ky * kw + kx`.
    fn for_each_tap(&self, g: &ConvGeom, input: Dims, mut f: impl FnMut(usize, usize, usize)) {
        let w = &g.win;
        let (kh, kw) = self.kernel;
        for oy in 0..w.oh {
            for ky in 0..kh {
                let iy = (oy * w.sh + ky * g.dh) as isize - w.pad_top as isize;
                if iy < 0 || iy >= input.h as isize {
                    continue;
                }
                for ox in 0..w.ow {
                    let o = (oy * w.ow + ox) * self.out_channels;
                    for kx in 0..kw {
                        let ix = (ox * w.sw + kx * g.dw) as isize - w.pad_left as isize;
                        if ix < 0 || ix >= input.w as isize {
                            continue;
                        }
                        f(
                            (iy as usize * input.w + ix as usize) * input.c,
                            o,
                            ky * kw + kx,
                        );
                    }
                }
            }
        }
    }

    /// Forward pass of a batch.
    pub(crate) fn forward(&self, x: &[f32], n: usize, input: Dims) -> Result<Vec<f32>, ModelError> {
        let g = self.geom(input)?;
        let oc = self.out_channels;
        let per_out = g.win.oh * g.win.ow * oc;
        let mut out = Vec::with_capacity(n * per_out);
        for _ in 0..n * g.win.oh * g.win.ow {
            out.extend_from_slice(&self.bias);
        }
        let wlen = g.ig * oc;
        for_each_sample(&mut out, per_out, x, input.len(), |(out_n, x_n)| {
            self.for_each_tap(&g, input, |i, o, tap| {
                let xi = &x_n[i..i + input.c];
                let wk = &self.weight[tap * wlen..(tap + 1) * wlen];
                let on = &mut out_n[o..o + oc];
                if g.ig == 1 && g.og == 1 {
                    for ((a, xv), wv) in on.iter_mut().zip(xi).zip(wk) {
                        *a += xv * wv;
                    }
                } else {
                    for grp in 0..self.groups {
                        for icl in 0..g.ig {
                            let xv = xi[grp * g.ig + icl];
                            let wr = &wk[icl * oc + grp * g.og..icl * oc + (grp + 1) * g.og];
                            for (a, wv) in on[grp * g.og..(grp + 1) * g.og].iter_mut().zip(wr) {
                                *a += xv * wv;
                            }
                        }
                    }
                }
            });
        });
        Ok(out)
    }

    /// Gradient with respect to the input.
    pub(crate) fn backward_input(
        &self,
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<Vec<f32>, ModelError> {
        let g = self.geom(input)?;
        let oc = self.out_channels;
        let per_out = g.win.oh * g.win.ow * oc;
        let mut dx = vec![0.0f32; n * input.len()];
        let wlen = g.ig * oc;
        for_each_sample(&mut dx, input.len(), dy, per_out, |(dx_n, dy_n)| {
            self.for_each_tap(&g, input, |i, o, tap| {
                let wk = &self.weight[tap * wlen..(tap + 1) * wlen];
                let dyo = &dy_n[o..o + oc];
                let dxi = &mut dx_n[i..i + input.c];
                if g.ig == 1 && g.og == 1 {
                    for ((d, gv), wv) in dxi.iter_mut().zip(dyo).zip(wk) {
                        *d += gv * wv;
                    }
                } else {
                    for grp in 0..self.groups {
                        let dyg = &dyo[grp * g.og..(grp + 1) * g.og];
                        for icl in 0..g.ig {
                            let wr = &wk[icl * oc + grp * g.og..icl * oc + (grp + 1) * g.og];
                            let s: f32 = dyg.iter().zip(wr).map(|(a, b)| a * b).sum();
                            dxi[grp * g.ig + icl] += s;
                        }
                    }
                }
            });
        });
        Ok(dx)
    }

    /// Per-sample weight and bias gradients, `[n, kh * kw * in/groups * out]` and `[n, out]`.
    pub(crate) fn per_sample(
        &self,
        x: &[f32],
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let g = self.geom(input)?;
        let oc = self.out_channels;
        let per_out = g.win.oh * g.win.ow * oc;
        let wl = self.weight.len();
        let wlen = g.ig * oc;
        let mut dw = vec![0.0f32; n * wl];
        let mut db = vec![0.0f32; n * oc];
        let one = |(s, (dw_n, db_n)): (usize, (&mut [f32], &mut [f32]))| {
            let x_n = &x[s * input.len()..(s + 1) * input.len()];
            let dy_n = &dy[s * per_out..(s + 1) * per_out];
            self.for_each_tap(&g, input, |i, o, tap| {
                let xi = &x_n[i..i + input.c];
                let dyo = &dy_n[o..o + oc];
                let dwk = &mut dw_n[tap * wlen..(tap + 1) * wlen];
                if g.ig == 1 && g.og == 1 {
                    for ((d, xv), gv) in dwk.iter_mut().zip(xi).zip(dyo) {
                        *d += xv * gv;
                    }
                } else {
                    for grp in 0..self.groups {
                        for icl in 0..g.ig {
                            let xv = xi[grp * g.ig + icl];
                            let row = &mut dwk[icl * oc + grp * g.og..icl * oc + (grp + 1) * g.og];
                            for (d, gv) in row.iter_mut().zip(&dyo[grp * g.og..(grp + 1) * g.og]) {
                                *d += xv * gv;
                            }
                        }
                    }
                }
            });
            for row in dy_n.chunks(oc) {
                for (b, v) in db_n.iter_mut().zip(row) {
                    *b += v;
                }
            }
        };
        if crate::parallel::inner_parallelism() && n > 1 {
            dw.par_chunks_mut(wl)
                .zip(db.par_chunks_mut(oc))
                .enumerate()
                .for_each(one);
        } else {
            dw.chunks_mut(wl)
                .zip(db.chunks_mut(oc))
                .enumerate()
                .for_each(one);
        }
        Ok((dw, db))
    }

    /// Output dimensions.
    pub(crate) fn output_dims(&self, input: Dims) -> Result<Dims, ModelError> {
        let g = self.geom(input)?;
        Ok(Dims::new(g.win.oh, g.win.ow, self.out_channels))
    }
}

/// 2-D average pooling (ONNX `AveragePool`, Keras `AveragePooling2D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvgPool2d {
    /// Window height and width.
    pub size: (usize, usize),
    /// Stride.
    pub stride: (usize, usize),
    /// Padding.
    pub padding: Padding,
    /// Whether padded positions count in the divisor (ONNX `count_include_pad`, PyTorch's
    /// default); otherwise each window is divided by its number of in-bounds inputs.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    fn window(&self, input: Dims) -> Result<Window, ModelError> {
        window(input, self.size, self.stride, self.padding)
    }

    /// Output dimensions.
    pub(crate) fn output_dims(&self, input: Dims) -> Result<Dims, ModelError> {
        let w = self.window(input)?;
        Ok(Dims::new(w.oh, w.ow, input.c))
    }

    fn divisor(&self, win: &Window, input: Dims, oy: usize, ox: usize) -> f32 {
        if self.count_include_pad {
            self.size.0 as f32 * self.size.1 as f32
        } else {
            let mut k = 0usize;
            for_each_window_input(win, input, oy, ox, |_| k += 1);
            k.max(1) as f32
        }
    }

    /// Forward pass of a batch.
    pub(crate) fn forward(&self, x: &[f32], n: usize, input: Dims) -> Result<Vec<f32>, ModelError> {
        let win = self.window(input)?;
        let c = input.c;
        let per_out = win.oh * win.ow * c;
        let mut out = vec![0.0f32; n * per_out];
        for_each_sample(&mut out, per_out, x, input.len(), |(out_n, x_n)| {
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    let o = &mut out_n[(oy * win.ow + ox) * c..(oy * win.ow + ox + 1) * c];
                    for_each_window_input(&win, input, oy, ox, |i| {
                        for (a, v) in o.iter_mut().zip(&x_n[i..i + c]) {
                            *a += v;
                        }
                    });
                    let inv = 1.0 / self.divisor(&win, input, oy, ox);
                    o.iter_mut().for_each(|a| *a *= inv);
                }
            }
        });
        Ok(out)
    }

    /// Gradient with respect to the input.
    pub(crate) fn backward_input(
        &self,
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> Result<Vec<f32>, ModelError> {
        let win = self.window(input)?;
        let c = input.c;
        let per_out = win.oh * win.ow * c;
        let mut dx = vec![0.0f32; n * input.len()];
        for_each_sample(&mut dx, input.len(), dy, per_out, |(dx_n, dy_n)| {
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    let g = &dy_n[(oy * win.ow + ox) * c..(oy * win.ow + ox + 1) * c];
                    let inv = 1.0 / self.divisor(&win, input, oy, ox);
                    for_each_window_input(&win, input, oy, ox, |i| {
                        for (d, v) in dx_n[i..i + c].iter_mut().zip(g) {
                            *d += v * inv;
                        }
                    });
                }
            }
        });
        Ok(dx)
    }
}

/// Mean over the spatial positions of each channel: `[h, w, c] -> [1, 1, c]`.
pub(crate) fn global_avg_forward(x: &[f32], n: usize, input: Dims) -> Vec<f32> {
    let c = input.c;
    let mut out = vec![0.0f32; n * c];
    let inv = 1.0 / (input.h * input.w).max(1) as f32;
    for (o, x_n) in out.chunks_mut(c).zip(x.chunks(input.len().max(1))) {
        for row in x_n.chunks(c) {
            for (a, v) in o.iter_mut().zip(row) {
                *a += v;
            }
        }
        o.iter_mut().for_each(|a| *a *= inv);
    }
    out
}

/// Gradient of [`global_avg_forward`].
pub(crate) fn global_avg_backward(dy: &[f32], n: usize, input: Dims) -> Vec<f32> {
    let c = input.c;
    let inv = 1.0 / (input.h * input.w).max(1) as f32;
    let mut dx = vec![0.0f32; n * input.len()];
    for (d_n, g) in dx.chunks_mut(input.len().max(1)).zip(dy.chunks(c)) {
        for row in d_n.chunks_mut(c) {
            for (d, v) in row.iter_mut().zip(g) {
                *d = v * inv;
            }
        }
    }
    dx
}

/// Batch normalisation (Ioffe & Szegedy 2015): `y = γ (x − μ) / √(σ² + ε) + β` per channel.
/// `γ` and `β` are the layer's weight and bias parameters.
///
/// Evaluation (prediction, input and per-sample gradients) uses the running statistics `μ`,
/// `σ²` (Alg. 2, step 10), which are fixed. A training forward pass ([`crate::train()`]) uses
/// the statistics of the whole batch over samples and positions (Alg. 1; the biased variance,
/// as PyTorch), differentiates through them (Ioffe & Szegedy 2015, section 3), and afterwards
/// moves the running statistics towards them with PyTorch's momentum update
/// `r ← (1 − m) r + m b` (m = [`BatchNorm::DEFAULT_MOMENTUM`], the running variance from the
/// unbiased batch variance), see [`crate::Network::update_batch_norm_statistics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// Scale γ, `[c]` (the layer's "weight").
    pub gamma: Vec<f32>,
    /// Shift β, `[c]` (the layer's "bias").
    pub beta: Vec<f32>,
    /// Running mean μ, `[c]`.
    pub mean: Vec<f32>,
    /// Running variance σ², `[c]`.
    pub var: Vec<f32>,
    /// ε added to the variance.
    pub eps: f32,
}

/// The statistics of one batch seen by a [`BatchNorm`] layer in a training forward pass, kept in
/// the trace for the backward pass and the running-statistics update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchStats {
    /// Per-channel mean over the batch's samples and positions.
    pub mean: Vec<f32>,
    /// Per-channel biased variance (divided by `count`).
    pub var: Vec<f32>,
    /// `1 / √(var + ε)`.
    pub inv_std: Vec<f32>,
    /// Values per channel the statistics are over (samples × positions).
    pub count: usize,
}

impl BatchNorm {
    /// PyTorch's default momentum of the running-statistics update (`torch.nn.BatchNorm2d`).
    pub const DEFAULT_MOMENTUM: f32 = 0.1;

    /// PyTorch's default ε (`torch.nn.BatchNorm2d`).
    pub const DEFAULT_EPS: f32 = 1e-5;

    /// A fresh layer over `channels` channels as PyTorch initialises one: `γ = 1`, `β = 0`,
    /// running mean 0 and variance 1, `ε = 1e-5`.
    pub fn new(channels: usize) -> Self {
        Self {
            gamma: vec![1.0; channels],
            beta: vec![0.0; channels],
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
            eps: Self::DEFAULT_EPS,
        }
    }

    /// Per-channel mean and biased variance of a batch (NHWC rows of `input.c` values), summed
    /// in f64 with the mean subtracted before squaring.
    pub(crate) fn batch_stats(&self, x: &[f32], input: Dims) -> Result<BatchStats, ModelError> {
        self.check(input)?;
        let c = input.c.max(1);
        let count = x.len() / c;
        if count == 0 {
            return Err(ModelError::Internal(
                "batch statistics of an empty batch".into(),
            ));
        }
        let mut sum = vec![0.0f64; c];
        for row in x.chunks(c) {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += *v as f64;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        let mut sq = vec![0.0f64; c];
        for row in x.chunks(c) {
            for ((s, v), m) in sq.iter_mut().zip(row).zip(&mean) {
                let d = *v as f64 - m;
                *s += d * d;
            }
        }
        let var: Vec<f64> = sq.iter().map(|s| s / count as f64).collect();
        Ok(BatchStats {
            mean: mean.iter().map(|&m| m as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
            inv_std: var
                .iter()
                .map(|&v| (1.0 / (v + self.eps as f64).sqrt()) as f32)
                .collect(),
            count,
        })
    }

    /// Training forward pass: normalises with the batch's own statistics (Ioffe & Szegedy 2015,
    /// Alg. 1), which it returns for the backward pass and the running update.
    pub(crate) fn forward_train(
        &self,
        x: &[f32],
        input: Dims,
    ) -> Result<(Vec<f32>, BatchStats), ModelError> {
        let stats = self.batch_stats(x, input)?;
        let c = input.c.max(1);
        let mut out = x.to_vec();
        for row in out.chunks_mut(c) {
            for ch in 0..row.len() {
                row[ch] =
                    (row[ch] - stats.mean[ch]) * stats.inv_std[ch] * self.gamma[ch] + self.beta[ch];
            }
        }
        Ok((out, stats))
    }

    /// Per-channel `Σ dy` and `Σ dy · x̂` over the batch, with `x̂ = (x − μ_B) / √(σ²_B + ε)`:
    /// the gradients of β and γ of a training pass.
    fn train_sums(&self, x: &[f32], dy: &[f32], c: usize, stats: &BatchStats) -> [Vec<f64>; 2] {
        let mut sum_dy = vec![0.0f64; c];
        let mut sum_dy_xhat = vec![0.0f64; c];
        for (xr, gr) in x.chunks(c).zip(dy.chunks(c)) {
            for ch in 0..c {
                let xhat = (xr[ch] - stats.mean[ch]) * stats.inv_std[ch];
                sum_dy[ch] += gr[ch] as f64;
                sum_dy_xhat[ch] += (gr[ch] * xhat) as f64;
            }
        }
        [sum_dy, sum_dy_xhat]
    }

    /// Input gradient of a training pass, through the batch mean and variance (Ioffe & Szegedy
    /// 2015, section 3): `dx = γ/(M √(σ²_B + ε)) · (M dy − Σ dy − x̂ Σ dy x̂)` per channel, with
    /// `M` values per channel in the batch.
    pub(crate) fn backward_input_train(
        &self,
        x: &[f32],
        dy: &[f32],
        input: Dims,
        stats: &BatchStats,
    ) -> Vec<f32> {
        let c = input.c.max(1);
        let [sum_dy, sum_dy_xhat] = self.train_sums(x, dy, c, stats);
        let m = stats.count as f32;
        let mean_dy: Vec<f32> = sum_dy.iter().map(|s| (*s / m as f64) as f32).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|s| (*s / m as f64) as f32).collect();
        let scale: Vec<f32> = (0..c)
            .map(|ch| self.gamma[ch] * stats.inv_std[ch])
            .collect();
        let mut dx = dy.to_vec();
        for (dr, xr) in dx.chunks_mut(c).zip(x.chunks(c)) {
            for ch in 0..c {
                let xhat = (xr[ch] - stats.mean[ch]) * stats.inv_std[ch];
                dr[ch] = scale[ch] * (dr[ch] - mean_dy[ch] - xhat * mean_dy_xhat[ch]);
            }
        }
        dx
    }

    /// Summed gradients of γ and β of a training pass: `Σ dy · x̂` and `Σ dy`.
    pub(crate) fn param_grads_train(
        &self,
        x: &[f32],
        dy: &[f32],
        input: Dims,
        stats: &BatchStats,
    ) -> (Vec<f32>, Vec<f32>) {
        let [sum_dy, sum_dy_xhat] = self.train_sums(x, dy, input.c.max(1), stats);
        (
            sum_dy_xhat.iter().map(|&v| v as f32).collect(),
            sum_dy.iter().map(|&v| v as f32).collect(),
        )
    }

    /// Moves the running statistics towards a training batch's, as PyTorch does:
    /// `μ ← (1 − m) μ + m μ_B`, `σ² ← (1 − m) σ² + m σ²_B · M / (M − 1)` (the unbiased batch
    /// variance; the biased one when `M = 1`).
    pub(crate) fn update_running(
        &mut self,
        stats: &BatchStats,
        momentum: f32,
    ) -> Result<(), ModelError> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(ModelError::Internal(format!(
                "batch norm momentum {momentum}, expected a value in [0, 1]"
            )));
        }
        let c = self.mean.len();
        if stats.mean.len() != c || stats.var.len() != c || self.var.len() != c {
            return Err(ModelError::Internal(format!(
                "batch statistics of {} channels for a batch norm of {c}",
                stats.mean.len()
            )));
        }
        let m = momentum as f64;
        let unbias = if stats.count > 1 {
            stats.count as f64 / (stats.count - 1) as f64
        } else {
            1.0
        };
        for ch in 0..c {
            self.mean[ch] = ((1.0 - m) * self.mean[ch] as f64 + m * stats.mean[ch] as f64) as f32;
            self.var[ch] =
                ((1.0 - m) * self.var[ch] as f64 + m * stats.var[ch] as f64 * unbias) as f32;
        }
        Ok(())
    }

    fn check(&self, input: Dims) -> Result<(), ModelError> {
        let c = input.c;
        if [&self.gamma, &self.beta, &self.mean, &self.var]
            .iter()
            .any(|v| v.len() != c)
        {
            return Err(ModelError::Architecture(format!(
                "batch norm statistics of lengths {}/{}/{}/{} on {c} channels",
                self.gamma.len(),
                self.beta.len(),
                self.mean.len(),
                self.var.len()
            )));
        }
        Ok(())
    }

    /// `1 / √(σ² + ε)` per channel.
    pub fn inv_std(&self) -> Vec<f32> {
        self.var
            .iter()
            .map(|v| 1.0 / (v + self.eps).sqrt())
            .collect()
    }

    pub(crate) fn output_dims(&self, input: Dims) -> Result<Dims, ModelError> {
        self.check(input)?;
        Ok(input)
    }

    pub(crate) fn forward(&self, x: &[f32], input: Dims) -> Result<Vec<f32>, ModelError> {
        self.check(input)?;
        let inv = self.inv_std();
        let c = input.c;
        let mut out = x.to_vec();
        for row in out.chunks_mut(c.max(1)) {
            for ch in 0..row.len() {
                row[ch] = (row[ch] - self.mean[ch]) * inv[ch] * self.gamma[ch] + self.beta[ch];
            }
        }
        Ok(out)
    }

    pub(crate) fn backward_input(&self, dy: &[f32], input: Dims) -> Vec<f32> {
        let inv = self.inv_std();
        let mut dx = dy.to_vec();
        for row in dx.chunks_mut(input.c.max(1)) {
            for ch in 0..row.len() {
                row[ch] *= inv[ch] * self.gamma[ch];
            }
        }
        dx
    }

    /// Per-sample gradients of γ and β, `[n, c]` each.
    pub(crate) fn per_sample(
        &self,
        x: &[f32],
        dy: &[f32],
        n: usize,
        input: Dims,
    ) -> (Vec<f32>, Vec<f32>) {
        let c = input.c;
        let inv = self.inv_std();
        let mut dg = vec![0.0f32; n * c];
        let mut dbeta = vec![0.0f32; n * c];
        let len = input.len().max(1);
        for s in 0..n {
            let xs = &x[s * len..(s + 1) * len];
            let gs = &dy[s * len..(s + 1) * len];
            let (g_row, b_row) = (&mut dg[s * c..(s + 1) * c], &mut dbeta[s * c..(s + 1) * c]);
            for (xr, gr) in xs.chunks(c).zip(gs.chunks(c)) {
                for ch in 0..c {
                    g_row[ch] += gr[ch] * (xr[ch] - self.mean[ch]) * inv[ch];
                    b_row[ch] += gr[ch];
                }
            }
        }
        (dg, dbeta)
    }
}

/// An elementwise binary operation between two tensors of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b` (a residual connection).
    Add,
    /// `a − b`.
    Sub,
    /// `a · b` (e.g. a gate).
    Mul,
    /// `a / b`.
    Div,
}

impl BinaryOp {
    pub(crate) fn forward(self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let f = |x: f32, y: f32| match self {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
        };
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    }

    /// Gradients with respect to `a` and `b` (each only when `need` says so).
    pub(crate) fn backward(
        self,
        a: &[f32],
        b: &[f32],
        dy: &[f32],
        need: [bool; 2],
    ) -> [Option<Vec<f32>>; 2] {
        let da = need[0].then(|| match self {
            BinaryOp::Add | BinaryOp::Sub => dy.to_vec(),
            BinaryOp::Mul => dy.iter().zip(b).map(|(g, y)| g * y).collect(),
            BinaryOp::Div => dy.iter().zip(b).map(|(g, y)| g / y).collect(),
        });
        let db = need[1].then(|| match self {
            BinaryOp::Add => dy.to_vec(),
            BinaryOp::Sub => dy.iter().map(|g| -g).collect(),
            BinaryOp::Mul => dy.iter().zip(a).map(|(g, x)| g * x).collect(),
            BinaryOp::Div => dy
                .iter()
                .zip(a)
                .zip(b)
                .map(|((g, x), y)| -g * x / (y * y))
                .collect(),
        });
        [da, db]
    }
}

/// Concatenation along channels (NHWC's last axis) of tensors with equal height and width.
pub(crate) fn concat_forward(inputs: &[&[f32]], n: usize, dims: &[Dims]) -> Vec<f32> {
    let c_out: usize = dims.iter().map(|d| d.c).sum();
    let positions = dims.first().map(|d| d.h * d.w).unwrap_or(0);
    let mut out = Vec::with_capacity(n * positions * c_out);
    for p in 0..n * positions {
        for (x, d) in inputs.iter().zip(dims) {
            out.extend_from_slice(&x[p * d.c..(p + 1) * d.c]);
        }
    }
    out
}

/// Splits a gradient of [`concat_forward`] back onto its inputs.
pub(crate) fn concat_backward(
    dy: &[f32],
    n: usize,
    dims: &[Dims],
    need: &[bool],
) -> Vec<Option<Vec<f32>>> {
    let c_out: usize = dims.iter().map(|d| d.c).sum();
    let positions = dims.first().map(|d| d.h * d.w).unwrap_or(0);
    let mut offset = 0;
    let mut out = Vec::with_capacity(dims.len());
    for (d, &nd) in dims.iter().zip(need) {
        if nd {
            let mut g = Vec::with_capacity(n * positions * d.c);
            for p in 0..n * positions {
                g.extend_from_slice(&dy[p * c_out + offset..p * c_out + offset + d.c]);
            }
            out.push(Some(g));
        } else {
            out.push(None);
        }
        offset += d.c;
    }
    out
}

/// Logistic sigmoid, numerically safe for large |x|.
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
