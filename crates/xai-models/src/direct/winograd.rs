//! Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions, in
//! the forward pass and for the input gradient (itself a 3x3 stride-1 convolution with the
//! flipped, transposed kernel) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR, section 4 and eq. 8: `Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A`; the matrices of
//! F(4x4, 3x3) are those of their section 5).
//!
//! Each `m x m` block of output pixels (a *tile*, `m` = 2 or 4) is computed from the
//! `(m + 2) x (m + 2)` input patch `d` above it: the patch is transformed to `V = B^T d B` and the
//! kernel to `U = G g G^T` (per input and output channel), the `(m + 2)^2` positions `ξν` of the
//! tile multiply as independent matrix products over the channels, `M[ξν] = V[ξν] U[ξν]`
//! (tiles x ci times ci x co), and the output tile is `A^T M A`. F(2x2, 3x3) takes 16
//! multiply-adds per input/output channel pair for 4 output pixels instead of 36 (2.25x fewer);
//! F(4x4, 3x3) takes 36 for 16 (4x fewer), for a few more operations per tile and channel in
//! the transforms and a transformed kernel 4x the size of the kernel (16/9 for F(2x2, 3x3)).
//!
//! The products are 1x1 convolutions of the transformed tiles, so they run on the direct
//! convolution's kernels ([`super::channel_blocks`]), which run at the CPU's multiply-add peak.
//! F(2x2, 3x3)'s `B` and `A` have entries 0 and ±1 and its `G` entries ±1/2; F(4x4, 3x3)'s have
//! entries up to 8 and 1/24, so its rounding error is larger (about 1e-6 of the largest output
//! against about 2e-7; both tested against the direct convolution and the definition). Which one
//! a layer takes depends on its channel counts only ([`Tile::for_channels`]).

use rayon::prelude::*;

use super::{channel_blocks, pad_into, with_frame, Packed, PackedKernel, Stride1};
use crate::cpu::{dispatched_avx512, Isa};
use crate::layers::Dims;

/// Input channels from which a 3x3 convolution takes this path: below, the transforms cost
/// more than the multiply-adds they save (the first layer of an image network has 1 or 3).
const MIN_IN_CHANNELS: usize = 16;
/// Output channels from which a 3x3 convolution takes this path.
const MIN_OUT_CHANNELS: usize = 16;
/// Output tiles (2 x 2 pixels) per sample from which a convolution of many channels takes this
/// path. The transformed kernel is 16/9 the size of the kernel, and a small image (a ResNet's
/// 8 x 8 and 4 x 4 stages, 16 and 4 tiles) reads all of it for few multiply-adds: with 256 or 512
/// channels, one image at a time, those layers are bound by reading weights and Winograd made a
/// ResNet-18 slower (measured, docs/BENCHMARKS.md).
const MIN_TILES: usize = 64;
/// Channel pairs (`ci * co`) up to which the transformed kernel (16 `ci x co` planes, 1 MiB at
/// this size) stays in L2, so that the path pays at any image size.
const MAX_CHANNEL_PAIRS_ANY_SIZE: usize = 128 * 128;
/// Floats of transformed input and products (`16 x tiles x (ci + co)`) one block of tiles may
/// hold: about 512 KiB, half of a Zen 4/5 core's L2 cache.
const BLOCK_FLOATS: usize = 1 << 17;
/// Channels transformed together (one 512-bit vector, or two 256-bit ones).
const LANES: usize = 16;
/// Channel pairs (`ci * co`) up to which a layer takes F(4x4, 3x3): its transformed kernel (36
/// `ci x co` planes, 576 KiB at this size) and a block of tiles then share a core's L2 cache. A
/// larger kernel is read from L3 once per block of tiles, and F(2x2, 3x3)'s smaller one pays more.
const F4_MAX_CHANNEL_PAIRS: usize = 64 * 64;

/// The output tile of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    /// F(2x2, 3x3): 2 x 2 output pixels from a 4 x 4 patch, 16 products.
    F2,
    /// F(4x4, 3x3): 4 x 4 output pixels from a 6 x 6 patch, 36 products.
    F4,
}

impl Tile {
    /// The tile for a layer of `ci` input and `co` output channels: F(4x4, 3x3) up to
    /// [`F4_MAX_CHANNEL_PAIRS`], F(2x2, 3x3) above. Channel counts only, so a layer's cached
    /// kernel serves every image size and batch.
    pub(crate) fn for_channels(ci: usize, co: usize) -> Self {
        if ci * co <= F4_MAX_CHANNEL_PAIRS && setting() != Setting::OnlyF2 {
            Tile::F4
        } else {
            Tile::F2
        }
    }

    /// Output pixels per tile side (`m`).
    fn side(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Input pixels per patch side (`m + 2`).
    fn patch(self) -> usize {
        self.side() + 2
    }

    /// Products per tile, `(m + 2)^2`.
    fn positions(self) -> usize {
        self.patch() * self.patch()
    }
}

thread_local! {
    /// Each thread's transformed tiles and products, kept between calls as the direct
    /// convolution keeps its frame.
    static TILES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether a convolution (groups 1, stride 1, dilation 1) with this kernel size, these channel
/// counts and an output of `oh x ow` pixels takes the Winograd path: 3x3, at least
/// [`MIN_IN_CHANNELS`] and [`MIN_OUT_CHANNELS`], and either [`MIN_TILES`] output tiles or at most
/// [`MAX_CHANNEL_PAIRS_ANY_SIZE`] channel pairs. Geometry only, never the batch size, so that an
/// image gives the same bits alone and in any batch.
pub(crate) fn applies(
    kernel: (usize, usize),
    ci: usize,
    co: usize,
    (oh, ow): (usize, usize),
) -> bool {
    kernel == (3, 3)
        && ci >= MIN_IN_CHANNELS
        && co >= MIN_OUT_CHANNELS
        && (oh.div_ceil(2) * ow.div_ceil(2) >= MIN_TILES || ci * co <= MAX_CHANNEL_PAIRS_ANY_SIZE)
        && enabled()
}

/// The setting of the environment variable `XAI_WINOGRAD` when the first convolution runs (read
/// once per process): `0` or `off` runs the direct convolution, `f2` F(2x2, 3x3) on every
/// qualifying layer; unset or anything else, the default. For measuring the paths against each
/// other in one binary, as `XAI_MAX_CPU_ISA` caps the instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Default,
    Off,
    OnlyF2,
}

fn setting() -> Setting {
    static SETTING: std::sync::OnceLock<Setting> = std::sync::OnceLock::new();
    *SETTING.get_or_init(|| match std::env::var("XAI_WINOGRAD").as_deref() {
        Ok("0") | Ok("off") | Ok("OFF") => Setting::Off,
        Ok("f2") | Ok("F2") => Setting::OnlyF2,
        _ => Setting::Default,
    })
}

/// Whether the Winograd path is on (see [`Setting`]).
fn enabled() -> bool {
    setting() != Setting::Off
}

/// A 3x3 kernel transformed for [`conv`]: `U[ξν] = G g G^T` for each of the tile's positions,
/// each packed as a 1x1 kernel (`ci -> co`) for the direct convolution's channel blocks, and the
/// bias, added after the output transform.
#[derive(Debug, Clone)]
pub(crate) struct WinogradKernel {
    tile: Tile,
    ci: usize,
    co: usize,
    positions: Vec<PackedKernel>,
    bias: Vec<f32>,
}

/// `G` of F(2x2, 3x3), rows `[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]`.
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` of F(4x4, 3x3) (Lavin & Gray 2016, section 5).
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

impl WinogradKernel {
    /// Transforms `weight` (`[3, 3, ci, co]`) for the tile of [`Tile::for_channels`] and keeps
    /// `bias` (`[co]`, zeros when `None`).
    pub(crate) fn new(weight: &[f32], ci: usize, co: usize, bias: Option<&[f32]>) -> Self {
        Self::with_tile(Tile::for_channels(ci, co), weight, ci, co, bias)
    }

    /// As [`WinogradKernel::new`] with the tile given.
    pub(crate) fn with_tile(
        tile: Tile,
        weight: &[f32],
        ci: usize,
        co: usize,
        bias: Option<&[f32]>,
    ) -> Self {
        assert_eq!(weight.len(), 9 * ci * co, "winograd: weights");
        assert!(
            co >= MIN_OUT_CHANNELS,
            "winograd: at least 16 output channels"
        );
        // G g G^T, computed in f64 and rounded once.
        let g_rows: &[[f64; 3]] = match tile {
            Tile::F2 => &G2,
            Tile::F4 => &G4,
        };
        let a = tile.patch();
        let pair = ci * co;
        let mut u = vec![vec![0.0f32; pair]; a * a];
        for p in 0..pair {
            let g = |ky: usize, kx: usize| weight[(ky * 3 + kx) * pair + p] as f64;
            for (xi, g_xi) in g_rows.iter().enumerate() {
                // (G g) row xi.
                let gg: [f64; 3] =
                    std::array::from_fn(|kx| (0..3).map(|ky| g_xi[ky] * g(ky, kx)).sum());
                for (nu, g_nu) in g_rows.iter().enumerate() {
                    let v: f64 = (0..3).map(|kx| gg[kx] * g_nu[kx]).sum();
                    u[xi * a + nu][p] = v as f32;
                }
            }
        }
        let positions = u
            .iter()
            .map(|plane| PackedKernel::new(plane, co, None))
            .collect();
        Self {
            tile,
            ci,
            co,
            positions,
            bias: bias.map_or_else(|| vec![0.0; co], <[f32]>::to_vec),
        }
    }
}

/// The channel blocks of a packed 1x1 kernel (`co >= MIN_OUT_CHANNELS > 1`, so never
/// [`Packed::Single`]).
fn blocks(kernel: &PackedKernel) -> &[(usize, Vec<f32>, Vec<f32>)] {
    match &kernel.layout {
        Packed::Blocks(blocks) => blocks,
        Packed::Single(..) => unreachable!("winograd kernels have at least 16 output channels"),
    }
}

/// The forward pass of a 3x3 stride-1 convolution of `n` NHWC samples with a transformed kernel:
/// `[n, oh, ow, co]`, equal to [`super::conv_packed`] with the untransformed kernel up to
/// rounding.
///
/// Samples run on rayon's threads; with fewer samples than threads and a large layer (see
/// [`crate::parallel::inner_parallelism_for`]), each sample's blocks of tile rows do. Every
/// output value is computed by the same operations either way.
pub(crate) fn conv(
    x: &[f32],
    n: usize,
    input: Dims,
    kernel: &WinogradKernel,
    win: &Stride1,
) -> Vec<f32> {
    conv_with(x, n, input, kernel, win, false)
}

/// [`conv`] followed by ReLU and 2x2 max pooling with stride 2 and no padding, in one pass for
/// inference: `[n, oh / 2, ow / 2, co]` (rows and columns rounded down), the same bits as the
/// three layers one after another (ReLU's `max(v, 0)` leaves no NaN, and a maximum of numbers
/// does not depend on its order), without writing and reading back the convolution's output.
/// For [`Tile::F4`] kernels, whose 4 x 4 tiles hold whole pooling windows.
pub(crate) fn conv_relu_max_pool2(
    x: &[f32],
    n: usize,
    input: Dims,
    kernel: &WinogradKernel,
    win: &Stride1,
) -> Vec<f32> {
    assert_eq!(
        kernel.tile,
        Tile::F4,
        "winograd: pooling in F(4x4) tiles only"
    );
    conv_with(x, n, input, kernel, win, true)
}

/// [`conv`], or with `pooled` [`conv_relu_max_pool2`].
fn conv_with(
    x: &[f32],
    n: usize,
    input: Dims,
    kernel: &WinogradKernel,
    win: &Stride1,
    pooled: bool,
) -> Vec<f32> {
    let (ci, co) = (kernel.ci, kernel.co);
    let (side, positions) = (kernel.tile.side(), kernel.tile.positions());
    assert_eq!(input.c, ci, "winograd: input channels");
    assert_eq!((win.kh, win.kw), (3, 3), "winograd: 3x3 windows only");
    assert_eq!(x.len(), n * input.len(), "winograd: input length");
    // Output rows and columns, and the convolution's rows and columns they need.
    let (out_h, out_w, conv_h) = if pooled {
        (win.oh / 2, win.ow / 2, 2 * (win.oh / 2))
    } else {
        (win.oh, win.ow, win.oh)
    };
    // Output rows per tile row.
    let rows_per_tile = if pooled { side / 2 } else { side };
    let out_len = out_h * out_w * co;
    if out_len == 0 {
        return Vec::new();
    }
    // The output transforms write every output value.
    let mut out = crate::buffers::overwritten(n * out_len);
    // The frame covers whole tiles: zero rows (columns) below (right of) the input where the
    // output height (width) is not a multiple of the tile side.
    let (th, tw) = (conv_h.div_ceil(side), win.ow.div_ceil(side));
    let tiled = Stride1 {
        oh: side * th,
        ow: side * tw,
        ..*win
    };
    let frame_len = tiled.padded_h() * tiled.padded_w() * ci;
    // Whole tile rows per block, as many as fit in BLOCK_FLOATS (at least one).
    let rows_per_block = (BLOCK_FLOATS / (positions * tw * (ci + co))).clamp(1, th);
    let block_out = rows_per_tile * rows_per_block * out_w * co;
    let macs = win.oh * win.ow * co * 9 * ci;
    let threads = rayon::current_num_threads();
    let shape = Shape { out_w, pooled };
    if n < threads
        && macs >= super::ROW_SPLIT_MACS
        && crate::parallel::inner_parallelism_for(macs)
        && th > 1
    {
        // At least two blocks per thread, also for the deep layers of a ResNet (4 x 4 tiles of
        // 512 channels fit one block). Blocking does not change any value (each tile's sums run
        // in the same order), so the split pass equals the serial one.
        let rows_per_task = rows_per_block.min(th.div_ceil(2 * threads)).max(1);
        for (out_n, x_n) in out.chunks_mut(out_len).zip(x.chunks(input.len())) {
            with_frame(frame_len, |frame| {
                pad_into(frame, x_n, input, &tiled);
                let frame = &*frame;
                out_n
                    .par_chunks_mut(rows_per_tile * rows_per_task * out_w * co)
                    .enumerate()
                    .for_each(|(b, rows)| {
                        tile_rows(frame, kernel, &tiled, shape, b * rows_per_task, rows)
                    });
            });
        }
        return out;
    }
    let one = |(out_n, x_n): (&mut [f32], &[f32])| {
        with_frame(frame_len, |frame| {
            pad_into(frame, x_n, input, &tiled);
            for (b, rows) in out_n.chunks_mut(block_out).enumerate() {
                tile_rows(frame, kernel, &tiled, shape, b * rows_per_block, rows);
            }
        });
    };
    super::for_each_sample(&mut out, out_len, x, input.len(), one);
    out
}

/// What [`tile_rows`] writes: rows of `out_w` pixels of the convolution, or with `pooled` of its
/// ReLU's 2x2 maxima.
#[derive(Debug, Clone, Copy)]
struct Shape {
    out_w: usize,
    pooled: bool,
}

/// The output rows of tile rows `ty0..` of one sample (`out_rows`: whole rows of `out_w x co`,
/// the last block's possibly short of a whole tile row) from its zero-padded `frame` (`tiled`:
/// the window widened to whole tiles).
fn tile_rows(
    frame: &[f32],
    kernel: &WinogradKernel,
    tiled: &Stride1,
    Shape { out_w, pooled }: Shape,
    ty0: usize,
    out_rows: &mut [f32],
) {
    let (ci, co, tile) = (kernel.ci, kernel.co, kernel.tile);
    let tw = tiled.ow / tile.side();
    let rows = out_rows.len() / (out_w * co);
    let conv_rows = if pooled { 2 * rows } else { rows };
    let tile_rows = conv_rows.div_ceil(tile.side());
    let tiles = tile_rows * tw;
    let (v_len, m_len) = (tile.positions() * tiles * ci, tile.positions() * tiles * co);
    let mut run = |buf: &mut Vec<f32>| {
        buf.resize(v_len + m_len, 0.0);
        let (v, m) = buf.split_at_mut(v_len);
        let shape = (ty0, tile_rows, tw);
        match tile {
            Tile::F2 => input_transform(frame, tiled.padded_w(), ci, shape, v),
            Tile::F4 => input_transform_f4(frame, tiled.padded_w(), ci, shape, v),
        }
        // The products V[ξν] U[ξν] as 1x1 convolutions over a one-row image of `tiles` pixels.
        let one_row = Stride1 {
            kh: 1,
            kw: 1,
            top: 0,
            left: 0,
            oh: 1,
            ow: tiles,
        };
        for ((v_pos, m_pos), u) in v
            .chunks_exact(tiles * ci)
            .zip(m.chunks_exact_mut(tiles * co))
            .zip(&kernel.positions)
        {
            channel_blocks(v_pos, blocks(u), ci, co, &one_row, 0, m_pos);
        }
        let shape = (rows, out_w, tw);
        match (tile, pooled) {
            (Tile::F2, false) => output_transform(m, &kernel.bias, shape, out_rows),
            (Tile::F4, false) => output_transform_f4(m, &kernel.bias, shape, out_rows),
            (Tile::F4, true) => {
                output_transform_f4_relu_max_pool2(m, &kernel.bias, shape, out_rows)
            }
            (Tile::F2, true) => unreachable!("pooling in F(4x4) tiles only"),
        }
    };
    TILES.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        // Not reachable (no transform runs inside another on one thread); a fresh buffer is
        // always correct.
        Err(_) => run(&mut Vec::new()),
    });
}

/// `V = B^T d B` of the tiles in tile rows `ty0..ty0 + tile_rows` (`tw` per row) of a frame
/// `pw` pixels wide, into `v` (`[16][tiles][ci]`), with
/// `B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`. Additions only, so every
/// instruction-set path gives the same bits.
#[inline(always)]
fn input_transform_with<I: Isa>(
    _: I,
    frame: &[f32],
    pw: usize,
    ci: usize,
    (ty0, tile_rows, tw): (usize, usize, usize),
    v: &mut [f32],
) {
    let tiles = tile_rows * tw;
    let plane = tiles * ci;
    for t in 0..tiles {
        let (ty, tx) = (ty0 + t / tw, t % tw);
        let corner = (2 * ty * pw + 2 * tx) * ci;
        let rows = [
            corner,
            corner + pw * ci,
            corner + 2 * pw * ci,
            corner + 3 * pw * ci,
        ];
        let mut c0 = 0;
        // Whole vectors of channels: straight-line code on values that stay in registers (a
        // loop over the 16 positions with copies into an array ran at a third of this speed).
        while c0 + LANES <= ci {
            let mut bt_d = [[[0.0f32; LANES]; 4]; 4];
            for j in 0..4 {
                let d = |i: usize| lanes(frame, rows[i] + j * ci + c0);
                let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
                for l in 0..LANES {
                    bt_d[0][j][l] = d0[l] - d2[l];
                    bt_d[1][j][l] = d1[l] + d2[l];
                    bt_d[2][j][l] = d2[l] - d1[l];
                    bt_d[3][j][l] = d1[l] - d3[l];
                }
            }
            for (i, [t0, t1, t2, t3]) in bt_d.iter().enumerate() {
                let mut out = [[0.0f32; LANES]; 4];
                for l in 0..LANES {
                    out[0][l] = t0[l] - t2[l];
                    out[1][l] = t1[l] + t2[l];
                    out[2][l] = t2[l] - t1[l];
                    out[3][l] = t1[l] - t3[l];
                }
                for (j, o) in out.iter().enumerate() {
                    store_lanes(v, (4 * i + j) * plane + t * ci + c0, o);
                }
            }
            c0 += LANES;
        }
        // The last channels, fewer than a vector.
        if c0 < ci {
            let len = ci - c0;
            let mut d = [[0.0f32; LANES]; 16];
            for (k, dk) in d.iter_mut().enumerate() {
                let at = rows[k / 4] + (k % 4) * ci + c0;
                dk[..len].copy_from_slice(&frame[at..at + len]);
            }
            for (k, ok) in transform_4x4_in(&d).iter().enumerate() {
                let at = k * plane + t * ci + c0;
                v[at..at + len].copy_from_slice(&ok[..len]);
            }
        }
    }
}

/// [`LANES`] values from `at` on, as an array (a bounds check and vector loads).
#[inline(always)]
fn lanes(s: &[f32], at: usize) -> [f32; LANES] {
    <[f32; LANES]>::try_from(&s[at..at + LANES]).expect("lanes")
}

/// Stores [`LANES`] values at `at` (a bounds check and vector stores).
#[inline(always)]
fn store_lanes(s: &mut [f32], at: usize, v: &[f32; LANES]) {
    let dst: &mut [f32; LANES] = (&mut s[at..at + LANES]).try_into().expect("lanes");
    *dst = *v;
}

/// Writes the vectors `y` (channels `c0..c0 + LANES` of pixels `ox0..` of output row `oy`) into
/// `rows x ow` pixels of `co` channels, dropping pixels past them.
#[inline(always)]
fn store_row(
    y: &[[f32; LANES]],
    (oy, ox0): (usize, usize),
    (rows, ow, co): (usize, usize, usize),
    c0: usize,
    out_rows: &mut [f32],
) {
    if oy < rows {
        for (j, yj) in y.iter().enumerate() {
            let ox = ox0 + j;
            if ox < ow {
                store_lanes(out_rows, (oy * ow + ox) * co + c0, yj);
            }
        }
    }
}

dispatched_avx512! {
    /// [`input_transform_with`] for this CPU: AVX-512 where it is, otherwise AVX2 or portable.
    fn input_transform(
        frame: &[f32],
        pw: usize,
        ci: usize,
        tiles: (usize, usize, usize),
        v: &mut [f32],
    ) = input_transform_with;
}

/// `B^T d B` for [`LANES`] channels at once (`d[4 i + j]`: patch row `i`, column `j`).
#[inline(always)]
fn transform_4x4_in(d: &[[f32; LANES]; 16]) -> [[f32; LANES]; 16] {
    let mut t = [[0.0f32; LANES]; 16];
    // Rows: t = B^T d.
    for j in 0..4 {
        for l in 0..LANES {
            let (d0, d1, d2, d3) = (d[j][l], d[4 + j][l], d[8 + j][l], d[12 + j][l]);
            t[j][l] = d0 - d2;
            t[4 + j][l] = d1 + d2;
            t[8 + j][l] = d2 - d1;
            t[12 + j][l] = d1 - d3;
        }
    }
    // Columns: V = t B.
    let mut v = [[0.0f32; LANES]; 16];
    for i in 0..4 {
        for l in 0..LANES {
            let (t0, t1, t2, t3) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            v[4 * i][l] = t0 - t2;
            v[4 * i + 1][l] = t1 + t2;
            v[4 * i + 2][l] = t2 - t1;
            v[4 * i + 3][l] = t1 - t3;
        }
    }
    v
}

/// `Y = A^T M A + bias` of each tile, with `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`, written to the
/// output rows it covers (`rows` of `ow` pixels; a tile's pixels past them are dropped).
/// Additions only, so every instruction-set path gives the same bits.
#[inline(always)]
fn output_transform_with<I: Isa>(
    _: I,
    m: &[f32],
    bias: &[f32],
    (rows, ow, tw): (usize, usize, usize),
    out_rows: &mut [f32],
) {
    let co = bias.len();
    let tiles = rows.div_ceil(2) * tw;
    let plane = tiles * co;
    for t in 0..tiles {
        let (ty, tx) = (t / tw, t % tw);
        let mut c0 = 0;
        // Whole vectors of channels: straight-line code on values that stay in registers.
        while c0 + LANES <= co {
            let b = lanes(bias, c0);
            let mut at_m = [[[0.0f32; LANES]; 4]; 2];
            for j in 0..4 {
                let mv = |i: usize| lanes(m, (4 * i + j) * plane + t * co + c0);
                let (m0, m1, m2, m3) = (mv(0), mv(1), mv(2), mv(3));
                for l in 0..LANES {
                    at_m[0][j][l] = m0[l] + m1[l] + m2[l];
                    at_m[1][j][l] = m1[l] - m2[l] - m3[l];
                }
            }
            for (i, [s0, s1, s2, s3]) in at_m.iter().enumerate() {
                let mut y = [[0.0f32; LANES]; 2];
                for l in 0..LANES {
                    y[0][l] = s0[l] + s1[l] + s2[l] + b[l];
                    y[1][l] = s1[l] - s2[l] - s3[l] + b[l];
                }
                store_row(&y, (2 * ty + i, 2 * tx), (rows, ow, co), c0, out_rows);
            }
            c0 += LANES;
        }
        // The last channels, fewer than a vector.
        if c0 < co {
            let len = co - c0;
            let mk: [_; 16] = gather_tail(m, plane, t * co + c0, len);
            let b = gather_tail::<1>(bias, 0, c0, len)[0];
            let y = transform_4x4_out(&mk, &b);
            store_tile_tail(&y, 2, (ty, tx), (rows, ow, co), (c0, len), out_rows);
        }
    }
}

dispatched_avx512! {
    /// [`output_transform_with`] for this CPU: AVX-512 where it is, otherwise AVX2 or portable.
    fn output_transform(
        m: &[f32],
        bias: &[f32],
        shape: (usize, usize, usize),
        out_rows: &mut [f32],
    ) = output_transform_with;
}

/// `A^T M A + bias` for [`LANES`] channels at once: the tile's pixels (0,0), (0,1), (1,0), (1,1).
#[inline(always)]
fn transform_4x4_out(m: &[[f32; LANES]; 16], bias: &[f32; LANES]) -> [[f32; LANES]; 4] {
    // Rows: s = A^T M (2 x 4).
    let mut s = [[0.0f32; LANES]; 8];
    for j in 0..4 {
        for l in 0..LANES {
            let (m0, m1, m2, m3) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
            s[j][l] = m0 + m1 + m2;
            s[4 + j][l] = m1 - m2 - m3;
        }
    }
    // Columns: Y = s A.
    let mut y = [[0.0f32; LANES]; 4];
    for i in 0..2 {
        for l in 0..LANES {
            let (s0, s1, s2, s3) = (
                s[4 * i][l],
                s[4 * i + 1][l],
                s[4 * i + 2][l],
                s[4 * i + 3][l],
            );
            y[2 * i][l] = s0 + s1 + s2 + bias[l];
            y[2 * i + 1][l] = s1 - s2 - s3 + bias[l];
        }
    }
    y
}

/// Runs `$body` once for each index listed, with `$i` bound to it: a loop unrolled in the
/// source, so that the 6x6 transforms index their arrays with constants and keep them in
/// registers (LLVM keeps these loops rolled, with every intermediate vector zeroed, stored to
/// and reloaded from the stack).
macro_rules! unroll {
    ($i:ident in [$($n:literal),*] => $body:block) => {{
        $({
            let $i: usize = $n;
            $body
        })*
    }};
}

/// `B^T d` of F(4x4, 3x3) on six values, with
/// `B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
/// [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]` (Lavin & Gray 2016, section 5), in an operation
/// order every instruction-set path repeats (Rust never fuses a multiply and an add on its own),
/// so all give the same bits.
#[inline(always)]
fn bt6(d0: f32, d1: f32, d2: f32, d3: f32, d4: f32, d5: f32) -> [f32; 6] {
    let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
    let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
    [
        4.0 * d0 - 5.0 * d2 + d4,
        a + b,
        a - b,
        c + e,
        c - e,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// `A^T m` of F(4x4, 3x3) on six values, with
/// `A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]`.
#[inline(always)]
fn at6(m0: f32, m1: f32, m2: f32, m3: f32, m4: f32, m5: f32) -> [f32; 4] {
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m5,
    ]
}

/// `B^T d B` of one 6x6 patch for [`LANES`] channels (`d[6 i + j]`: patch row `i`, column `j`),
/// `V[6 k + j]`.
#[inline(always)]
fn transform_6x6_in(d: &[[f32; LANES]; 36]) -> [[f32; LANES]; 36] {
    let mut t = [[0.0f32; LANES]; 36];
    for j in 0..6 {
        for l in 0..LANES {
            let c = |i: usize| d[6 * i + j][l];
            for (k, o) in bt6(c(0), c(1), c(2), c(3), c(4), c(5)).iter().enumerate() {
                t[6 * k + j][l] = *o;
            }
        }
    }
    let mut v = [[0.0f32; LANES]; 36];
    for k in 0..6 {
        for l in 0..LANES {
            let r = |j: usize| t[6 * k + j][l];
            for (j, o) in bt6(r(0), r(1), r(2), r(3), r(4), r(5)).iter().enumerate() {
                v[6 * k + j][l] = *o;
            }
        }
    }
    v
}

/// `A^T M A + bias` of one tile for [`LANES`] channels (`m[6 i + j]`), the 4x4 pixels row by
/// row.
#[inline(always)]
fn transform_6x6_out(m: &[[f32; LANES]; 36], bias: &[f32; LANES]) -> [[f32; LANES]; 16] {
    let mut s = [[0.0f32; LANES]; 24];
    for j in 0..6 {
        for l in 0..LANES {
            let c = |i: usize| m[6 * i + j][l];
            for (r, o) in at6(c(0), c(1), c(2), c(3), c(4), c(5)).iter().enumerate() {
                s[6 * r + j][l] = *o;
            }
        }
    }
    let mut y = [[0.0f32; LANES]; 16];
    for r in 0..4 {
        for l in 0..LANES {
            let q = |j: usize| s[6 * r + j][l];
            for (c, o) in at6(q(0), q(1), q(2), q(3), q(4), q(5)).iter().enumerate() {
                y[4 * r + c][l] = *o + bias[l];
            }
        }
    }
    y
}

/// `len` (at most [`LANES`]) values at `at + k * plane` for each of the `P` positions `k`, as
/// vectors padded with zeros: the last channels of a tile, fewer than a vector.
#[inline(always)]
fn gather_tail<const P: usize>(
    m: &[f32],
    plane: usize,
    at: usize,
    len: usize,
) -> [[f32; LANES]; P] {
    std::array::from_fn(|k| {
        let mut v = [0.0f32; LANES];
        v[..len].copy_from_slice(&m[at + k * plane..at + k * plane + len]);
        v
    })
}

/// Writes the first `len` channels (from channel `c0`) of a `side x side` output tile `y` (row
/// by row) at tile `(ty, tx)` of `rows x ow` pixels of `co` channels; pixels past them are
/// dropped.
#[inline(always)]
fn store_tile_tail(
    y: &[[f32; LANES]],
    side: usize,
    (ty, tx): (usize, usize),
    (rows, ow, co): (usize, usize, usize),
    (c0, len): (usize, usize),
    out_rows: &mut [f32],
) {
    for (k, yk) in y.iter().enumerate() {
        let (oy, ox) = (side * ty + k / side, side * tx + k % side);
        if oy < rows && ox < ow {
            let to = (oy * ow + ox) * co + c0;
            out_rows[to..to + len].copy_from_slice(&yk[..len]);
        }
    }
}

/// `A^T M` of F(4x4, 3x3) (see [`at6`]) for the [`LANES`] channels at `at` of one tile of `m`
/// (`[36][tiles][co]`, `plane = tiles * co`): `[6 r + j]`, row `r` of 4, column `j` of 6.
#[inline(always)]
fn f4_columns(m: &[f32], plane: usize, at: usize) -> [[f32; LANES]; 24] {
    let mut at_m = [[0.0f32; LANES]; 24];
    unroll!(j in [0, 1, 2, 3, 4, 5] => {
        let mv = |i: usize| lanes(m, (6 * i + j) * plane + at);
        let (m0, m1, m2, m3, m4, m5) = (mv(0), mv(1), mv(2), mv(3), mv(4), mv(5));
        for l in 0..LANES {
            let o = at6(m0[l], m1[l], m2[l], m3[l], m4[l], m5[l]);
            for r in 0..4 {
                at_m[6 * r + j][l] = o[r];
            }
        }
    });
    at_m
}

/// `V = B^T d B` of F(4x4, 3x3) (see [`bt6`]) of the tiles in tile rows `ty0..ty0 + tile_rows`
/// (`tw` per row) of a frame `pw` pixels wide, into `v` (`[36][tiles][ci]`).
#[inline(always)]
fn input_transform_f4_with<I: Isa>(
    _: I,
    frame: &[f32],
    pw: usize,
    ci: usize,
    (ty0, tile_rows, tw): (usize, usize, usize),
    v: &mut [f32],
) {
    let tiles = tile_rows * tw;
    let plane = tiles * ci;
    for t in 0..tiles {
        let (ty, tx) = (ty0 + t / tw, t % tw);
        let corner = (4 * ty * pw + 4 * tx) * ci;
        let at = |i: usize, j: usize| corner + (i * pw + j) * ci;
        let mut c0 = 0;
        // Whole vectors of channels: straight-line code, a column of the patch at a time.
        while c0 + LANES <= ci {
            let mut bt_d = [[0.0f32; LANES]; 36];
            unroll!(j in [0, 1, 2, 3, 4, 5] => {
                let d = |i: usize| lanes(frame, at(i, j) + c0);
                let (d0, d1, d2, d3, d4, d5) = (d(0), d(1), d(2), d(3), d(4), d(5));
                for l in 0..LANES {
                    let o = bt6(d0[l], d1[l], d2[l], d3[l], d4[l], d5[l]);
                    for k in 0..6 {
                        bt_d[6 * k + j][l] = o[k];
                    }
                }
            });
            unroll!(k in [0, 1, 2, 3, 4, 5] => {
                let mut out = [[0.0f32; LANES]; 6];
                for l in 0..LANES {
                    let r = |j: usize| bt_d[6 * k + j][l];
                    let o = bt6(r(0), r(1), r(2), r(3), r(4), r(5));
                    for j in 0..6 {
                        out[j][l] = o[j];
                    }
                }
                for (j, o) in out.iter().enumerate() {
                    store_lanes(v, (6 * k + j) * plane + t * ci + c0, o);
                }
            });
            c0 += LANES;
        }
        // The last channels, fewer than a vector.
        if c0 < ci {
            let len = ci - c0;
            let mut d = [[0.0f32; LANES]; 36];
            for (k, dk) in d.iter_mut().enumerate() {
                let from = at(k / 6, k % 6) + c0;
                dk[..len].copy_from_slice(&frame[from..from + len]);
            }
            for (k, ok) in transform_6x6_in(&d).iter().enumerate() {
                let to = k * plane + t * ci + c0;
                v[to..to + len].copy_from_slice(&ok[..len]);
            }
        }
    }
}

dispatched_avx512! {
    /// [`input_transform_f4_with`] for this CPU: AVX-512 where it is, otherwise AVX2 or
    /// portable.
    fn input_transform_f4(
        frame: &[f32],
        pw: usize,
        ci: usize,
        tiles: (usize, usize, usize),
        v: &mut [f32],
    ) = input_transform_f4_with;
}

/// `Y = A^T M A + bias` of F(4x4, 3x3) (see [`at6`]) of each tile, written to the output rows it
/// covers (`rows` of `ow` pixels; a tile's pixels past them are dropped).
#[inline(always)]
fn output_transform_f4_with<I: Isa>(
    _: I,
    m: &[f32],
    bias: &[f32],
    (rows, ow, tw): (usize, usize, usize),
    out_rows: &mut [f32],
) {
    let co = bias.len();
    let tiles = rows.div_ceil(4) * tw;
    let plane = tiles * co;
    for t in 0..tiles {
        let (ty, tx) = (t / tw, t % tw);
        let mut c0 = 0;
        // Whole vectors of channels: straight-line code, a column of the tile at a time.
        while c0 + LANES <= co {
            let b = lanes(bias, c0);
            let at_m = f4_columns(m, plane, t * co + c0);
            unroll!(r in [0, 1, 2, 3] => {
                let mut y = [[0.0f32; LANES]; 4];
                for l in 0..LANES {
                    let q = |j: usize| at_m[6 * r + j][l];
                    let o = at6(q(0), q(1), q(2), q(3), q(4), q(5));
                    for c in 0..4 {
                        y[c][l] = o[c] + b[l];
                    }
                }
                store_row(&y, (4 * ty + r, 4 * tx), (rows, ow, co), c0, out_rows);
            });
            c0 += LANES;
        }
        // The last channels, fewer than a vector.
        if c0 < co {
            let len = co - c0;
            let mk: [_; 36] = gather_tail(m, plane, t * co + c0, len);
            let b = gather_tail::<1>(bias, 0, c0, len)[0];
            let y = transform_6x6_out(&mk, &b);
            store_tile_tail(&y, 4, (ty, tx), (rows, ow, co), (c0, len), out_rows);
        }
    }
}

dispatched_avx512! {
    /// [`output_transform_f4_with`] for this CPU: AVX-512 where it is, otherwise AVX2 or
    /// portable.
    fn output_transform_f4(
        m: &[f32],
        bias: &[f32],
        shape: (usize, usize, usize),
        out_rows: &mut [f32],
    ) = output_transform_f4_with;
}

/// [`output_transform_f4_with`] followed by ReLU and 2x2 max pooling with stride 2: each tile's
/// four windows (`rows x ow` pooled pixels; windows past them are dropped).
#[inline(always)]
fn output_transform_f4_relu_max_pool2_with<I: Isa>(
    _: I,
    m: &[f32],
    bias: &[f32],
    (rows, ow, tw): (usize, usize, usize),
    out_rows: &mut [f32],
) {
    let co = bias.len();
    let tiles = (2 * rows).div_ceil(4) * tw;
    let plane = tiles * co;
    for t in 0..tiles {
        let (ty, tx) = (t / tw, t % tw);
        let mut c0 = 0;
        // Whole vectors of channels: straight-line code, a column of the tile at a time.
        while c0 + LANES <= co {
            let b = lanes(bias, c0);
            let at_m = f4_columns(m, plane, t * co + c0);
            unroll!(pr in [0, 1] => {
                let mut p = [[0.0f32; LANES]; 2];
                for l in 0..LANES {
                    let q = |r: usize, j: usize| at_m[6 * r + j][l];
                    let (r0, r1) = (2 * pr, 2 * pr + 1);
                    let y0 = at6(q(r0, 0), q(r0, 1), q(r0, 2), q(r0, 3), q(r0, 4), q(r0, 5));
                    let y1 = at6(q(r1, 0), q(r1, 1), q(r1, 2), q(r1, 3), q(r1, 4), q(r1, 5));
                    // ReLU as the layer computes it, then the window's maximum.
                    let v = |y: f32| (y + b[l]).max(0.0);
                    for pc in 0..2 {
                        let (c0, c1) = (2 * pc, 2 * pc + 1);
                        p[pc][l] = v(y0[c0]).max(v(y0[c1])).max(v(y1[c0])).max(v(y1[c1]));
                    }
                }
                store_row(&p, (2 * ty + pr, 2 * tx), (rows, ow, co), c0, out_rows);
            });
            c0 += LANES;
        }
        // The last channels, fewer than a vector.
        if c0 < co {
            let len = co - c0;
            let mk: [_; 36] = gather_tail(m, plane, t * co + c0, len);
            let b = gather_tail::<1>(bias, 0, c0, len)[0];
            let y = transform_6x6_out(&mk, &b);
            for k in 0..4 {
                let (pr, pc) = (k / 2, k % 2);
                let (py, px) = (2 * ty + pr, 2 * tx + pc);
                if py < rows && px < ow {
                    let at = |r: usize, c: usize| &y[4 * (2 * pr + r) + 2 * pc + c];
                    let mut p = [0.0f32; LANES];
                    for (l, pl) in p.iter_mut().enumerate() {
                        let v = |r: usize, c: usize| at(r, c)[l].max(0.0);
                        *pl = v(0, 0).max(v(0, 1)).max(v(1, 0)).max(v(1, 1));
                    }
                    let to = (py * ow + px) * co + c0;
                    out_rows[to..to + len].copy_from_slice(&p[..len]);
                }
            }
        }
    }
}

dispatched_avx512! {
    /// [`output_transform_f4_relu_max_pool2_with`] for this CPU: AVX-512 where it is, otherwise
    /// AVX2 or portable.
    fn output_transform_f4_relu_max_pool2(
        m: &[f32],
        bias: &[f32],
        shape: (usize, usize, usize),
        out_rows: &mut [f32],
    ) = output_transform_f4_relu_max_pool2_with;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(len: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    /// Every window shape the layers produce (odd and even outputs, padding on any side, crops)
    /// and channel counts that are and are not multiples of the vector width: Winograd equals
    /// the direct convolution up to rounding.
    #[test]
    fn winograd_equals_the_direct_convolution() {
        let mut rng = StdRng::seed_from_u64(3);
        for &(h, w, ci, co, top, left, oh, ow, n) in &[
            (26, 26, 32, 64, 0, 0, 24, 24, 3),
            (28, 28, 16, 16, 1, 1, 28, 28, 2),
            (7, 9, 17, 33, 1, 0, 7, 7, 1),
            (5, 5, 16, 40, 0, 1, 4, 5, 2),
            (1, 1, 24, 16, 1, 1, 1, 1, 2),
            (9, 6, 20, 19, 2, 1, 9, 6, 1),
            (6, 6, 16, 16, -1, -1, 2, 2, 1),
        ] {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh: 3,
                kw: 3,
                top,
                left,
                oh,
                ow,
            };
            let x = random(n * input.len(), &mut rng);
            let weight = random(9 * ci * co, &mut rng);
            let bias = random(co, &mut rng);
            let direct = super::super::conv(&x, n, input, &weight, co, Some(&bias), &win);
            let scale = direct.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            for (tile, tol) in [(Tile::F2, 4e-7), (Tile::F4, 2e-6)] {
                let kernel = WinogradKernel::with_tile(tile, &weight, ci, co, Some(&bias));
                let wino = conv(&x, n, input, &kernel, &win);
                assert_eq!(direct.len(), wino.len());
                for (i, (a, b)) in direct.iter().zip(&wino).enumerate() {
                    assert!(
                        (a - b).abs() <= tol * scale.max(1.0) * (ci as f32).sqrt(),
                        "{tile:?} {h}x{w}x{ci}->{co} at {i}: direct {a}, winograd {b}"
                    );
                }
            }
        }
    }

    /// The fused convolution, ReLU and 2x2 max pooling gives the bits of the three one after
    /// another (ReLU as `max(v, 0)`, then each window's maximum), for even and odd outputs
    /// (the last row or column dropped) and channel tails.
    #[test]
    fn fused_relu_and_max_pooling_equal_the_layers_one_after_another() {
        let mut rng = StdRng::seed_from_u64(8);
        for &(h, w, ci, co, top, left, oh, ow, n) in &[
            (26, 26, 32, 64, 0, 0, 24, 24, 2),
            (7, 9, 17, 33, 1, 0, 7, 7, 1),
            (5, 5, 16, 40, 0, 1, 4, 5, 2),
            (9, 6, 20, 19, 2, 1, 9, 6, 1),
            (3, 3, 16, 16, 0, 0, 1, 1, 1),
        ] {
            let input = Dims::new(h, w, ci);
            let win = Stride1 {
                kh: 3,
                kw: 3,
                top,
                left,
                oh,
                ow,
            };
            let x = random(n * input.len(), &mut rng);
            let kernel = WinogradKernel::with_tile(
                Tile::F4,
                &random(9 * ci * co, &mut rng),
                ci,
                co,
                Some(&random(co, &mut rng)),
            );
            let y = conv(&x, n, input, &kernel, &win);
            let (ph, pw) = (oh / 2, ow / 2);
            let mut want = vec![0.0f32; n * ph * pw * co];
            for s in 0..n {
                for py in 0..ph {
                    for px in 0..pw {
                        for c in 0..co {
                            let v = |dy: usize, dx: usize| {
                                y[((s * oh + 2 * py + dy) * ow + 2 * px + dx) * co + c].max(0.0)
                            };
                            want[((s * ph + py) * pw + px) * co + c] =
                                v(0, 0).max(v(0, 1)).max(v(1, 0)).max(v(1, 1));
                        }
                    }
                }
            }
            let got = conv_relu_max_pool2(&x, n, input, &kernel, &win);
            assert!(got == want, "{h}x{w}x{ci}->{co}: fused differs");
        }
    }

    /// A one-image pass split by tile rows across the threads gives the same bits as the same
    /// pass on one thread, with either tile: a wide layer (40 x 40 x 64), a deep one whose tiles
    /// fit one block (8 x 8 x 256, split into blocks of one tile row) and odd output heights
    /// (7 x 7 and 11 x 11, the last block short of a whole tile row).
    #[test]
    fn one_image_split_by_tile_rows_equals_one_thread() {
        let mut rng = StdRng::seed_from_u64(5);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        for &(side, ci, co) in &[(40, 64, 64), (8, 256, 256), (7, 96, 80), (11, 48, 64)] {
            let input = Dims::new(side, side, ci);
            let win = Stride1 {
                kh: 3,
                kw: 3,
                top: 1,
                left: 1,
                oh: side,
                ow: side,
            };
            let x = random(input.len(), &mut rng);
            let weight = random(9 * ci * co, &mut rng);
            for tile in [Tile::F2, Tile::F4] {
                let kernel = WinogradKernel::with_tile(tile, &weight, ci, co, None);
                let split = pool.install(|| conv(&x, 1, input, &kernel, &win));
                let serial = crate::parallel::serial(|| conv(&x, 1, input, &kernel, &win));
                assert!(
                    split == serial,
                    "{tile:?} {side}x{side}x{ci}: the split pass differs"
                );
                if tile == Tile::F4 {
                    let fused = |k: &WinogradKernel| conv_relu_max_pool2(&x, 1, input, k, &win);
                    let split = pool.install(|| fused(&kernel));
                    let serial = crate::parallel::serial(|| fused(&kernel));
                    assert!(
                        split == serial,
                        "{side}x{side}x{ci}: the split fused pass differs"
                    );
                }
            }
        }
    }

    #[test]
    fn small_channel_counts_take_the_larger_tile() {
        assert_eq!(Tile::for_channels(32, 64), Tile::F4);
        assert_eq!(Tile::for_channels(64, 64), Tile::F4);
        assert_eq!(Tile::for_channels(64, 128), Tile::F2);
        assert_eq!(Tile::for_channels(256, 256), Tile::F2);
    }

    #[test]
    fn small_kernels_and_channel_counts_keep_the_direct_path() {
        assert!(applies((3, 3), 16, 16, (8, 8)));
        assert!(applies((3, 3), 256, 256, (16, 16)));
        // Many channels on a small image: reading the weights dominates; the direct path.
        assert!(!applies((3, 3), 256, 256, (8, 8)));
        assert!(!applies((3, 3), 15, 64, (8, 8)));
        assert!(!applies((3, 3), 64, 8, (8, 8)));
        assert!(!applies((2, 2), 64, 64, (8, 8)));
        assert!(!applies((3, 1), 64, 64, (8, 8)));
    }
}
