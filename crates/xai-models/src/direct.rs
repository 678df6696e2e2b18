//! Direct convolution for stride-1 windows, the forward pass and the input gradient.
//!
//! im2col followed by a matrix product copies every input value `kh * kw` times and, for the
//! small images CEM's autoencoder sees one at a time (16 channels over 28x28), spends about half
//! of its time outside the multiply-adds: copying patches, packing operands, zeroing buffers and
//! scattering them back (col2im). Here each sample is copied once into a zero-padded buffer and
//! every output pixel's channels are accumulated in registers straight from it.
//!
//! The input gradient of a stride-1 convolution is itself a stride-1 convolution of the output
//! gradient with the kernel flipped in both spatial axes and its channel axes swapped
//! (`dx[i] = sum_k dy[i + pad - k] w[k]`), so both passes share one kernel.
//!
//! Results equal im2col + matrix product up to the order of the floating-point sums.

use rayon::prelude::*;

use crate::cpu::{dispatched, dispatched_avx512, fma, Isa};
use crate::gemm::{dot, dots4};
use crate::layers::Dims;

pub(crate) mod winograd;

/// Output channels accumulated together on the AVX-512 path: two 16-lane vectors per output
/// pixel, eight pixels at once (16 of the 32 vector registers).
const WIDEST: usize = 32;
/// Output channels accumulated together: two 8-lane vectors per output pixel.
const WIDE: usize = 16;
/// Output channels accumulated together when fewer than [`WIDE`] are left.
const NARROW: usize = 8;
/// Multiply-adds per sample from which a convolution of fewer samples than threads splits each
/// sample's output rows across the threads (below, a task costs more than it saves: a 16 x 16 x
/// 32 -> 32 layer has 2.4 M).
const ROW_SPLIT_MACS: usize = 1 << 18;

/// A stride-1 window: kernel size, where the input sits inside the zero-padded frame (its
/// top-left corner; negative values crop), and the output size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stride1 {
    pub kh: usize,
    pub kw: usize,
    pub top: isize,
    pub left: isize,
    pub oh: usize,
    pub ow: usize,
}

impl Stride1 {
    fn padded_h(&self) -> usize {
        self.oh + self.kh - 1
    }

    fn padded_w(&self) -> usize {
        self.ow + self.kw - 1
    }

    /// The window of the input gradient of a convolution with this window over `input`: the
    /// output gradient (`oh x ow`) in a frame that puts `kh - 1 - top` zero rows above it, and an
    /// output of the input's size.
    pub(crate) fn transposed(&self, input: Dims) -> Stride1 {
        Stride1 {
            kh: self.kh,
            kw: self.kw,
            top: self.kh as isize - 1 - self.top,
            left: self.kw as isize - 1 - self.left,
            oh: input.h,
            ow: input.w,
        }
    }
}

thread_local! {
    /// Each thread's zero-padded copy of the sample it is convolving, kept between calls: an
    /// iterative method (CEM) convolves one image per layer thousands of times, and a fresh
    /// buffer each time costs allocation, zeroing and page faults.
    static FRAME: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's frame buffer resized to `len` (contents unspecified: [`pad_into`]
/// overwrites all of it).
fn with_frame<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    FRAME.with(|cell| match cell.try_borrow_mut() {
        Ok(mut frame) => {
            frame.resize(len, 0.0);
            f(&mut frame[..len])
        }
        // Not reachable (no convolution runs inside another on one thread), but a fresh buffer
        // is always correct.
        Err(_) => f(&mut vec![0.0f32; len]),
    })
}

/// Copies one NHWC sample into `frame` (`ph x pw` pixels of `c` channels, zero elsewhere) with
/// its top-left pixel at (`top`, `left`).
fn pad_into(frame: &mut [f32], src: &[f32], input: Dims, win: &Stride1) {
    frame.fill(0.0);
    let (ph, pw, c) = (win.padded_h(), win.padded_w(), input.c);
    let x0 = win.left.max(0) as usize;
    let src_x0 = (-win.left).max(0) as usize;
    if src_x0 >= input.w || x0 >= pw {
        return;
    }
    let len = (input.w - src_x0).min(pw - x0);
    for sy in 0..input.h {
        let y = sy as isize + win.top;
        if y < 0 || y >= ph as isize {
            continue;
        }
        let dst = (y as usize * pw + x0) * c;
        let src_start = (sy * input.w + src_x0) * c;
        frame[dst..dst + len * c].copy_from_slice(&src[src_start..src_start + len * c]);
    }
}

/// The weights `[kh, kw, ci, co]` of output channels `cb..cb + lanes` as one contiguous
/// `[kh, kw, ci, lanes]` block (zeros past `co`): a block's weights then stay in the L1 cache
/// while it sweeps the image (strided rows of the whole kernel would map to a few cache sets).
fn channel_block(weight: &[f32], co: usize, cb: usize, lanes: usize) -> Vec<f32> {
    let keep = lanes.min(co - cb);
    let mut block = vec![0.0f32; weight.len() / co * lanes];
    for (dst, src) in block.chunks_exact_mut(lanes).zip(weight.chunks_exact(co)) {
        dst[..keep].copy_from_slice(&src[cb..cb + keep]);
    }
    block
}

/// A kernel `[kh, kw, ci, co]` (and bias) laid out for [`conv_packed`]: blocks of output
/// channels, each a contiguous [`channel_block`] with its bias (or zeros), or the plain weights
/// when there is one output channel. Packing copies the weights once; a layer keeps its packed
/// kernels between calls (`crate::network::Network`'s kernel cache), so a batch-1 call (CEM's
/// iterations, a gradient per image) does not re-lay out megabytes of weights each time.
#[derive(Debug, Clone)]
pub(crate) struct PackedKernel {
    /// `kh * kw * ci * co`: the length of the weights it was packed from.
    len: usize,
    co: usize,
    layout: Packed,
}

#[derive(Debug, Clone)]
enum Packed {
    /// One output channel: the weights as they are, and the bias.
    Single(Vec<f32>, f32),
    /// (first channel, [`channel_block`], bias or zeros), of [`WIDEST`] (on the AVX-512 path),
    /// [`WIDE`] or [`NARROW`] lanes.
    Blocks(Vec<(usize, Vec<f32>, Vec<f32>)>),
}

impl PackedKernel {
    /// Packs `weight` (`[kh, kw, ci, co]`) and an optional bias for this CPU: blocks of
    /// [`WIDEST`] channels where [`conv_packed`] will take the AVX-512 path, of [`WIDE`]
    /// otherwise, then [`WIDE`] or [`NARROW`] (zero-padded) for what is left.
    pub(crate) fn new(weight: &[f32], co: usize, bias: Option<&[f32]>) -> Self {
        Self::with_widest(weight, co, bias, widest_lanes())
    }

    fn with_widest(weight: &[f32], co: usize, bias: Option<&[f32]>, widest: usize) -> Self {
        if co == 1 {
            return Self {
                len: weight.len(),
                co,
                layout: Packed::Single(weight.to_vec(), bias.map_or(0.0, |b| b[0])),
            };
        }
        let mut blocks = Vec::new();
        let mut cb = 0;
        while cb < co {
            let left = co - cb;
            // 17-24 channels left go as 16 + 8 rather than 32 (fewer zero lanes).
            let lanes = if widest == WIDEST && left > WIDE + NARROW {
                WIDEST
            } else if left > NARROW {
                WIDE
            } else {
                NARROW
            };
            let mut init = vec![0.0f32; lanes];
            if let Some(b) = bias {
                let keep = lanes.min(left);
                init[..keep].copy_from_slice(&b[cb..cb + keep]);
            }
            blocks.push((cb, channel_block(weight, co, cb, lanes), init));
            cb += lanes;
        }
        Self {
            len: weight.len(),
            co,
            layout: Packed::Blocks(blocks),
        }
    }

    /// The packed weights of the input-gradient convolution of a convolution with weights
    /// `weight` (`[kh, kw, ci, co]`): [`flip_transpose`], `ci` output channels, no bias.
    pub(crate) fn transposed(weight: &[f32], kernel: (usize, usize), ci: usize, co: usize) -> Self {
        Self::new(&flip_transpose(weight, kernel, ci, co), ci, None)
    }
}

/// The widest channel block the kernels of this CPU use: [`WIDEST`] with AVX-512, [`WIDE`]
/// otherwise.
fn widest_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::Avx512::detect().is_some() {
        return WIDEST;
    }
    WIDE
}

/// The kernel flipped in both spatial axes with its channel axes swapped,
/// `[kh, kw, co, ci]` from `[kh, kw, ci, co]`: the weights of the input-gradient convolution.
pub(crate) fn flip_transpose(
    weight: &[f32],
    (kh, kw): (usize, usize),
    ci: usize,
    co: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; weight.len()];
    for ky in 0..kh {
        for kx in 0..kw {
            let src_tap = ((kh - 1 - ky) * kw + (kw - 1 - kx)) * ci * co;
            let dst_tap = (ky * kw + kx) * co * ci;
            for i in 0..ci {
                for o in 0..co {
                    out[dst_tap + o * ci + i] = weight[src_tap + i * co + o];
                }
            }
        }
    }
    out
}

/// Accumulates `B` adjacent output pixels of one row times the `L` output channels of a
/// [`channel_block`]: `acc[j][l] = sum over (ky, kx, c) of frame[oy + ky, ox0 + j + kx, c] w[ky, kx, c, l]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<I: Isa, const L: usize, const B: usize>(
    isa: I,
    frame: &[f32],
    pw: usize,
    ci: usize,
    weight: &[f32],
    (kh, kw): (usize, usize),
    (oy, ox0): (usize, usize),
    init: &[f32; L],
) -> [[f32; L]; B] {
    let mut acc = [*init; B];
    let run = kw * ci;
    for ky in 0..kh {
        // For a stride of one, kernel row `ky` of pixel `ox0 + j` reads `kw * ci` contiguous
        // values of frame row `oy + ky`, starting `j * ci` after pixel `ox0`'s.
        let start = ((oy + ky) * pw + ox0) * ci;
        let xs = &frame[start..start + (B - 1) * ci + run];
        let ws = &weight[ky * run * L..(ky + 1) * run * L];
        for t in 0..run {
            // SAFETY: `t < run`, so `t * L + L <= run * L = ws.len()` and
            // `j * ci + t < (B - 1) * ci + run = xs.len()` for every `j < B`.
            let w: &[f32; L] = unsafe { &*ws.as_ptr().add(t * L).cast::<[f32; L]>() };
            for (j, acc_j) in acc.iter_mut().enumerate() {
                // SAFETY: `j * ci + t < xs.len()`, as above.
                let xv = unsafe { *xs.get_unchecked(j * ci + t) };
                for l in 0..L {
                    acc_j[l] = fma(isa, xv, w[l], acc_j[l]);
                }
            }
        }
    }
    acc
}

/// One output row of the `L` channels of a [`channel_block`] that starts at channel `cb`:
/// `blocks(ox)` computes `B` adjacent pixels from `ox` on, `single(ox)` one pixel (used when the
/// row is narrower than `B`).
#[inline(always)]
fn row_blocks<const L: usize, const B: usize>(
    ow: usize,
    cb: usize,
    co: usize,
    out_row: &mut [f32],
    blocks: impl Fn(usize) -> [[f32; L]; B],
    single: impl Fn(usize) -> [[f32; L]; 1],
) {
    let keep = L.min(co - cb);
    let mut store = |ox: usize, acc: &[[f32; L]]| {
        for (j, a) in acc.iter().enumerate() {
            let at = (ox + j) * co + cb;
            if keep == L {
                // A fixed-size copy: a few vector moves instead of a call to `memcpy`.
                let dst: &mut [f32; L] = (&mut out_row[at..at + L]).try_into().expect("L");
                *dst = *a;
            } else {
                out_row[at..at + keep].copy_from_slice(&a[..keep]);
            }
        }
    };
    if ow < B {
        for ox in 0..ow {
            store(ox, &single(ox));
        }
        return;
    }
    // Whole blocks; a last, overlapping block ends at the row's end (its overlap is computed
    // twice, to the same values), which is faster than single pixels.
    let mut ox = 0;
    loop {
        let start = ox.min(ow - B);
        store(start, &blocks(start));
        ox += B;
        if ox >= ow {
            break;
        }
    }
}

/// A stride-1 convolution of a batch of `n` NHWC samples of `input` dimensions with weights
/// `[kh, kw, ci, co]` and an optional bias: `[n, oh, ow, co]`. Packs the kernel first
/// ([`PackedKernel::new`]); the layers keep packed kernels and call [`conv_packed`].
#[cfg(test)]
pub(crate) fn conv(
    x: &[f32],
    n: usize,
    input: Dims,
    weight: &[f32],
    co: usize,
    bias: Option<&[f32]>,
    win: &Stride1,
) -> Vec<f32> {
    conv_packed(x, n, input, &PackedKernel::new(weight, co, bias), win)
}

/// A stride-1 convolution of a batch of `n` NHWC samples of `input` dimensions with a packed
/// kernel (weights `[kh, kw, ci, co]` and bias): `[n, oh, ow, co]`.
///
/// Internal invariants (slice lengths) are checked with `assert!`: callers size every buffer
/// from validated shapes.
pub(crate) fn conv_packed(
    x: &[f32],
    n: usize,
    input: Dims,
    kernel: &PackedKernel,
    win: &Stride1,
) -> Vec<f32> {
    let (ci, co) = (input.c, kernel.co);
    assert_eq!(x.len(), n * input.len(), "direct conv: input length");
    assert_eq!(
        kernel.len,
        win.kh * win.kw * ci * co,
        "direct conv: weights"
    );
    let out_len = win.oh * win.ow * co;
    // Every path below writes every output value.
    let mut out = crate::buffers::overwritten(n * out_len);
    if out_len == 0 || input.is_empty() {
        let mut bias = vec![0.0f32; co];
        match &kernel.layout {
            Packed::Single(_, b0) => bias[0] = *b0,
            Packed::Blocks(blocks) => {
                for (cb, _, init) in blocks {
                    let keep = init.len().min(co - cb);
                    bias[*cb..cb + keep].copy_from_slice(&init[..keep]);
                }
            }
        }
        for px in out.chunks_mut(co.max(1)) {
            px.copy_from_slice(&bias);
        }
        return out;
    }
    let frame_len = win.padded_h() * win.padded_w() * ci;
    match &kernel.layout {
        Packed::Single(weight, b0) => {
            // One output channel: each kernel row is a dot product of `kw * ci` contiguous
            // values, computed for four adjacent pixels at once.
            let one = |(out_n, x_n): (&mut [f32], &[f32])| {
                with_frame(frame_len, |frame| {
                    pad_into(frame, x_n, input, win);
                    one_channel(frame, weight, ci, *b0, win, out_n);
                });
            };
            for_each_sample(&mut out, out_len, x, input.len(), one);
        }
        Packed::Blocks(blocks) => {
            let macs = win.oh * win.ow * co * win.kh * win.kw * ci;
            if n < rayon::current_num_threads()
                && macs >= ROW_SPLIT_MACS
                && crate::parallel::inner_parallelism_for(macs)
                && win.oh > 1
            {
                // Fewer samples than threads (one image: CEM's iterations, a batch-1 gradient):
                // each sample's output rows are split across the threads instead, all reading
                // the one padded frame. Every output value is computed as on one thread.
                let rows_per_task = win.oh.div_ceil(2 * rayon::current_num_threads());
                for (out_n, x_n) in out.chunks_mut(out_len).zip(x.chunks(input.len())) {
                    with_frame(frame_len, |frame| {
                        pad_into(frame, x_n, input, win);
                        let frame = &*frame;
                        out_n
                            .par_chunks_mut(rows_per_task * win.ow * co)
                            .enumerate()
                            .for_each(|(k, rows)| {
                                channel_blocks(frame, blocks, ci, co, win, k * rows_per_task, rows)
                            });
                    });
                }
                return out;
            }
            let one = |(out_n, x_n): (&mut [f32], &[f32])| {
                with_frame(frame_len, |frame| {
                    pad_into(frame, x_n, input, win);
                    channel_blocks(frame, blocks, ci, co, win, 0, out_n);
                });
            };
            for_each_sample(&mut out, out_len, x, input.len(), one);
        }
    }
    out
}

/// One sample's output (`oh x ow`, one channel) from its zero-padded `frame`: per pixel, one
/// dot product per kernel row, four adjacent pixels at once.
#[inline(always)]
fn one_channel_with<I: Isa>(
    isa: I,
    frame: &[f32],
    weight: &[f32],
    ci: usize,
    b0: f32,
    win: &Stride1,
    out_n: &mut [f32],
) {
    let run = win.kw * ci;
    let pw = win.padded_w();
    for (oy, out_row) in out_n.chunks_exact_mut(win.ow).enumerate() {
        let mut ox = 0;
        while ox < win.ow {
            let width = (win.ow - ox).min(4);
            let mut sums = [b0; 4];
            for ky in 0..win.kh {
                let w_row = &weight[ky * run..(ky + 1) * run];
                let start = ((oy + ky) * pw + ox) * ci;
                let row = |j: usize| &frame[start + j * ci..start + j * ci + run];
                if width == 4 {
                    let d = dots4(isa, w_row, [row(0), row(1), row(2), row(3)]);
                    for (s, v) in sums.iter_mut().zip(d) {
                        *s += v;
                    }
                } else {
                    for (j, s) in sums.iter_mut().enumerate().take(width) {
                        *s += dot(isa, w_row, row(j));
                    }
                }
            }
            out_row[ox..ox + width].copy_from_slice(&sums[..width]);
            ox += width;
        }
    }
}

dispatched! {
    /// [`one_channel_with`] for this CPU.
    fn one_channel(
        frame: &[f32],
        weight: &[f32],
        ci: usize,
        b0: f32,
        win: &Stride1,
        out_n: &mut [f32],
    ) = one_channel_with;
}

/// Output rows `oy0..` of one sample (`out_rows`: whole rows of `ow x co`, up to `oh`) from its
/// zero-padded `frame`, one [`channel_block`] (first channel, weights, bias) at a time. Blocks of [`WIDEST`] lanes take explicit
/// AVX-512 code where `I` is [`crate::cpu::Avx512`], eight pixels at once (four or one on
/// narrower rows); every other block, the portable compilation's included, the generic
/// [`block`]. Each output value is the same sequence of multiply-adds on every path.
#[inline(always)]
fn channel_blocks_with<I: Isa>(
    isa: I,
    frame: &[f32],
    blocks: &[(usize, Vec<f32>, Vec<f32>)],
    ci: usize,
    co: usize,
    win: &Stride1,
    oy0: usize,
    out_rows: &mut [f32],
) {
    for (cb, wb, init) in blocks {
        let cb = *cb;
        for (dy, out_row) in out_rows.chunks_exact_mut(win.ow * co).enumerate() {
            let oy = oy0 + dy;
            if let Ok(init) = <&[f32; WIDEST]>::try_from(init.as_slice()) {
                #[cfg(target_arch = "x86_64")]
                if I::AVX512 {
                    let (pw, taps, ow) = (win.padded_w(), (win.kh, win.kw), win.ow);
                    // SAFETY: only the `Avx512` token has `AVX512`, and it exists only where
                    // the CPU has AVX-512F (`cpu::Avx512::detect`); the slices' lengths are
                    // checked inside.
                    let b = |ox: usize| unsafe {
                        avx512::block32::<8>(frame, pw, ci, wb, taps, (oy, ox), init)
                    };
                    let b4 = |ox: usize| unsafe {
                        avx512::block32::<4>(frame, pw, ci, wb, taps, (oy, ox), init)
                    };
                    let b1 = |ox: usize| unsafe {
                        avx512::block32::<1>(frame, pw, ci, wb, taps, (oy, ox), init)
                    };
                    if ow >= 8 {
                        row_blocks::<WIDEST, 8>(ow, cb, co, out_row, b, b1);
                    } else {
                        row_blocks::<WIDEST, 4>(ow, cb, co, out_row, b4, b1);
                    }
                    continue;
                }
                generic_row::<I, WIDEST, 4>(isa, frame, wb, init, (ci, co, cb), win, oy, out_row);
            } else if let Ok(init) = <&[f32; WIDE]>::try_from(init.as_slice()) {
                generic_row::<I, WIDE, 4>(isa, frame, wb, init, (ci, co, cb), win, oy, out_row);
            } else if let Ok(init) = <&[f32; NARROW]>::try_from(init.as_slice()) {
                generic_row::<I, NARROW, 8>(isa, frame, wb, init, (ci, co, cb), win, oy, out_row);
            }
        }
    }
}

/// Output row `oy` of the `L` channels from `cb` on of one [`channel_block`] (`(ci, co, cb)`:
/// input and output channels, first channel) with the generic [`block`] of `B` pixels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn generic_row<I: Isa, const L: usize, const B: usize>(
    isa: I,
    frame: &[f32],
    weight: &[f32],
    init: &[f32; L],
    (ci, co, cb): (usize, usize, usize),
    win: &Stride1,
    oy: usize,
    out_row: &mut [f32],
) {
    let (pw, taps) = (win.padded_w(), (win.kh, win.kw));
    row_blocks::<L, B>(
        win.ow,
        cb,
        co,
        out_row,
        |ox| block::<I, L, B>(isa, frame, pw, ci, weight, taps, (oy, ox), init),
        |ox| block::<I, L, 1>(isa, frame, pw, ci, weight, taps, (oy, ox), init),
    );
}

dispatched_avx512! {
    /// [`channel_blocks_with`] for this CPU: AVX-512 where [`crate::cpu::Avx512::detect`] finds
    /// it, otherwise AVX2 + FMA or the portable compilation.
    fn channel_blocks(
        frame: &[f32],
        blocks: &[(usize, Vec<f32>, Vec<f32>)],
        ci: usize,
        co: usize,
        win: &Stride1,
        oy0: usize,
        out_rows: &mut [f32],
    ) = channel_blocks_with;
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::block`] for a block of 32 output channels and `B` adjacent pixels in explicit
    /// AVX-512 code: `2 B` accumulators of 16 lanes, each weight row loaded once as two vectors
    /// and each input value broadcast once. The same multiply-adds in the same order as
    /// `block::<_, 32, B>` with fused multiply-adds, so the results are bit-identical.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX-512F. (The slice bounds are checked here.)
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block32<const B: usize>(
        frame: &[f32],
        pw: usize,
        ci: usize,
        weight: &[f32],
        (kh, kw): (usize, usize),
        (oy, ox0): (usize, usize),
        init: &[f32; 32],
    ) -> [[f32; 32]; B] {
        let run = kw * ci;
        assert!(weight.len() >= kh * run * 32, "block32: weights");
        assert!(
            kh == 0 || ((oy + kh - 1) * pw + ox0) * ci + (B - 1) * ci + run <= frame.len(),
            "block32: frame"
        );
        let mut out = [[0.0f32; 32]; B];
        // SAFETY: the loads read `ws[t * 32 .. t * 32 + 32]` with `t < run` inside kernel row
        // `ky < kh` (`weight.len() >= kh * run * 32`, asserted) and `xs[j * ci + t]` with
        // `j < B`, `t < run`, inside frame row `oy + ky` (the last such index is below the
        // bound asserted above); the caller guarantees AVX-512F. Unaligned loads throughout.
        unsafe {
            let i0 = _mm512_loadu_ps(init.as_ptr());
            let i1 = _mm512_loadu_ps(init.as_ptr().add(16));
            let mut acc = [[i0, i1]; B];
            for ky in 0..kh {
                let xs = frame.as_ptr().add(((oy + ky) * pw + ox0) * ci);
                let ws = weight.as_ptr().add(ky * run * 32);
                for t in 0..run {
                    let w0 = _mm512_loadu_ps(ws.add(t * 32));
                    let w1 = _mm512_loadu_ps(ws.add(t * 32 + 16));
                    for (j, acc_j) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(*xs.add(j * ci + t));
                        acc_j[0] = _mm512_fmadd_ps(xv, w0, acc_j[0]);
                        acc_j[1] = _mm512_fmadd_ps(xv, w1, acc_j[1]);
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                _mm512_storeu_ps(o.as_mut_ptr(), a[0]);
                _mm512_storeu_ps(o.as_mut_ptr().add(16), a[1]);
            }
        }
        out
    }
}

/// Calls `f` on each sample's (output, input) pair, on rayon's threads unless the caller runs
/// serially (see [`crate::parallel`]).
fn for_each_sample(
    out: &mut [f32],
    out_len: usize,
    x: &[f32],
    in_len: usize,
    f: impl Fn((&mut [f32], &[f32])) + Send + Sync,
) {
    if crate::parallel::inner_parallelism() && out.len() > out_len {
        out.par_chunks_mut(out_len)
            .zip(x.par_chunks(in_len))
            .for_each(f);
    } else {
        out.chunks_mut(out_len).zip(x.chunks(in_len)).for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: out[s, oy, ox, o] = b[o] + sum w[ky, kx, c, o] x[s, oy + ky - top, ox + kx - left, c].
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        n: usize,
        input: Dims,
        w: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        win: &Stride1,
    ) -> Vec<f32> {
        let ci = input.c;
        let mut out = vec![0.0f32; n * win.oh * win.ow * co];
        for s in 0..n {
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    for o in 0..co {
                        let mut acc = bias.map_or(0.0, |b| b[o]);
                        for ky in 0..win.kh {
                            for kx in 0..win.kw {
                                let iy = (oy + ky) as isize - win.top;
                                let ix = (ox + kx) as isize - win.left;
                                if iy < 0
                                    || ix < 0
                                    || iy >= input.h as isize
                                    || ix >= input.w as isize
                                {
                                    continue;
                                }
                                for c in 0..ci {
                                    let xv = x[s * input.len()
                                        + ((iy as usize * input.w + ix as usize) * ci)
                                        + c];
                                    acc += xv * w[((ky * win.kw + kx) * ci + c) * co + o];
                                }
                            }
                        }
                        out[((s * win.oh + oy) * win.ow + ox) * co + o] = acc;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed) * 0.731).sin())
            .collect()
    }

    #[test]
    fn matches_the_definition_for_every_channel_blocking_and_padding() {
        // (h, w, ci, co, kh, kw, top, left, oh, ow): same, valid, even kernels, cropping frames,
        // one output channel, channel counts that are and are not multiples of the blocks.
        let cases = [
            (7, 9, 3, 16, 3, 3, 1, 1, 7, 9),
            (7, 9, 1, 1, 3, 3, 1, 1, 7, 9),
            (6, 5, 16, 1, 3, 3, 1, 1, 6, 5),
            (8, 8, 4, 20, 3, 3, 0, 0, 6, 6),
            (8, 8, 2, 5, 2, 2, 0, 0, 8, 8),
            (9, 7, 5, 40, 5, 5, 2, 2, 9, 7),
            (6, 6, 3, 9, 3, 3, 2, 2, 8, 8),
            (6, 6, 3, 8, 3, 3, -1, -1, 2, 2),
        ];
        for (k, &(h, w, ci, co, kh, kw, top, left, oh, ow)) in cases.iter().enumerate() {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh,
                kw,
                top,
                left,
                oh,
                ow,
            };
            let n = 3;
            let x = values(n * input.len(), k as f32);
            let wt = values(kh * kw * ci * co, 100.0 + k as f32);
            let b = values(co, 7.0);
            for bias in [None, Some(b.as_slice())] {
                let got = conv(&x, n, input, &wt, co, bias, &win);
                let want = naive(&x, n, input, &wt, co, bias, &win);
                assert_eq!(got.len(), want.len());
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-4, "case {k}: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn dispatched_kernels_match_portable() {
        // Both per-sample kernels, chosen at run time, against their portable compilation: equal
        // up to the summation order and fusing of the multiply-adds.
        use crate::cpu::Portable;
        for &(h, w, ci, co, k) in &[
            (7usize, 9usize, 3usize, 20usize, 3usize),
            (6, 5, 16, 1, 3),
            (8, 8, 1, 64, 2),
            (9, 7, 5, 9, 5),
            (5, 11, 4, 88, 3),
            (3, 3, 6, 40, 3),
        ] {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh: k,
                kw: k,
                top: (k / 2) as isize,
                left: (k / 2) as isize,
                oh: h,
                ow: w,
            };
            let x = values(input.len(), 1.0);
            let wt = values(k * k * ci * co, 2.0);
            let bias = values(co, 3.0);
            let mut frame = vec![0.0f32; win.padded_h() * win.padded_w() * ci];
            pad_into(&mut frame, &x, input, &win);
            let mut got = vec![0.0f32; h * w * co];
            let mut want = vec![0.0f32; h * w * co];
            if co == 1 {
                one_channel(&frame, &wt, ci, bias[0], &win, &mut got);
                one_channel_with(Portable, &frame, &wt, ci, bias[0], &win, &mut want);
            } else {
                let packed = PackedKernel::new(&wt, co, Some(&bias));
                let Packed::Blocks(blocks) = &packed.layout else {
                    panic!("{co} output channels are packed in blocks");
                };
                channel_blocks(&frame, blocks, ci, co, &win, 0, &mut got);
                channel_blocks_with(Portable, &frame, blocks, ci, co, &win, 0, &mut want);
            }
            let terms = (k * k * ci) as f32;
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-5 * (1.0 + terms), "{g} vs {e}");
            }
        }
    }

    #[test]
    fn every_channel_blocking_gives_bit_identical_results() {
        // Blocks of 32 channels (the AVX-512 path where the CPU has it), of 16 and of 8: the
        // same multiply-adds in the same order for each output value, so the same bits, on
        // rows wide enough for eight-pixel blocks, for four and for single pixels.
        for &(h, w, ci, co) in &[
            (6usize, 19usize, 3usize, 64usize),
            (4, 4, 16, 72),
            (5, 6, 2, 33),
            (3, 2, 5, 40),
            (7, 9, 1, 20),
        ] {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh: 3,
                kw: 3,
                top: 1,
                left: 1,
                oh: h,
                ow: w,
            };
            let x = values(2 * input.len(), 4.0);
            let wt = values(9 * ci * co, 5.0);
            let bias = values(co, 6.0);
            let results: Vec<Vec<f32>> = [WIDEST, WIDE]
                .iter()
                .map(|&widest| {
                    let packed = PackedKernel::with_widest(&wt, co, Some(&bias), widest);
                    conv_packed(&x, 2, input, &packed, &win)
                })
                .collect();
            assert!(
                results[0] == results[1],
                "{h}x{w}x{ci} -> {co}: 32-channel blocks differ from 16-channel blocks"
            );
            let want = naive(&x, 2, input, &wt, co, Some(&bias), &win);
            for (g, e) in results[0].iter().zip(&want) {
                assert!((g - e).abs() < 1e-4, "{g} vs {e}");
            }
        }
    }

    #[test]
    fn one_sample_split_by_rows_equals_one_thread() {
        // One sample on several threads: its output rows are split across them (when the layer
        // is large enough); the values must be those of the single-threaded pass, bit for bit.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        for &(h, w, ci, co) in &[(21usize, 13usize, 16usize, 64usize), (11, 30, 8, 40)] {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh: 3,
                kw: 3,
                top: 1,
                left: 1,
                oh: h,
                ow: w,
            };
            assert!(h * w * co * 9 * ci >= ROW_SPLIT_MACS);
            let x = values(input.len(), 8.0);
            let wt = values(9 * ci * co, 9.0);
            let bias = values(co, 10.0);
            let packed = PackedKernel::new(&wt, co, Some(&bias));
            let split = pool.install(|| conv_packed(&x, 1, input, &packed, &win));
            let serial = pool
                .install(|| crate::parallel::serial(|| conv_packed(&x, 1, input, &packed, &win)));
            assert!(split == serial, "{h}x{w}x{ci} -> {co}: row split differs");
            let want = naive(&x, 1, input, &wt, co, Some(&bias), &win);
            for (g, e) in split.iter().zip(&want) {
                assert!((g - e).abs() < 1e-3, "{g} vs {e}");
            }
        }
    }

    #[test]
    fn transposed_window_gives_the_input_gradient() {
        // <conv(x), dy> = <x, conv_T(dy)> for every x, dy: check with random x, dy.
        for &(h, w, ci, co, kh, top, oh) in &[
            (7usize, 6usize, 3usize, 16usize, 3usize, 1isize, 7usize),
            (8, 8, 16, 1, 3, 0, 6),
            (8, 8, 1, 16, 2, 0, 8),
        ] {
            let input = Dims::new(h, w, ci);
            let ow = oh + w - h;
            let win = Stride1 {
                kh,
                kw: kh,
                top,
                left: top,
                oh,
                ow,
            };
            let x = values(input.len(), 1.0);
            let wt = values(kh * kh * ci * co, 2.0);
            let dy = values(oh * ow * co, 3.0);
            let y = conv(&x, 1, input, &wt, co, None, &win);
            let dx = conv(
                &dy,
                1,
                Dims::new(oh, ow, co),
                &flip_transpose(&wt, (kh, kh), ci, co),
                ci,
                None,
                &win.transposed(input),
            );
            let lhs: f32 = y.iter().zip(&dy).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }
}
