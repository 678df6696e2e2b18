//! Bilinear upsampling of a patch grid to the image size, as PyTorch's
//! `nn.Upsample(size=(h, w), mode="bilinear", align_corners=False)` which omnixai's default
//! selection model applies to the sampled weights, written as a fixed sparse linear map
//! (two taps per axis) with its transpose for the backward pass.

use ndarray::{Array2, ArrayView2};

use crate::error::{L2xError, Result};

/// The two source indices and weights of one output index along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Taps {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// PyTorch's `upsample_bilinear2d` coordinates for `align_corners=False` and a given output size
/// (computed in `f32` as PyTorch does for `float` tensors): the source coordinate of output `o`
/// is `max(scale * (o + 0.5) - 0.5, 0)` with `scale = in / out`; its floor and the next index
/// (clamped to the last) are weighted `1 - λ` and `λ`.
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let lambda = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            Taps {
                i0,
                i1,
                w0: 1.0 - lambda,
                w1: lambda,
            }
        })
        .collect()
}

/// Bilinear upsampling of single-channel `in_h x in_w` maps to `out_h x out_w`
/// (PyTorch `align_corners=False`), batched over rows of `[n, h * w]` matrices (row-major maps).
#[derive(Debug, Clone, PartialEq)]
pub struct BilinearUpsample {
    input: (usize, usize),
    output: (usize, usize),
    rows: Vec<Taps>,
    cols: Vec<Taps>,
}

impl BilinearUpsample {
    /// The map from `input` = `(in_h, in_w)` to `output` = `(out_h, out_w)`; every size must
    /// be at least 1.
    pub fn new(input: (usize, usize), output: (usize, usize)) -> Result<Self> {
        if input.0 == 0 || input.1 == 0 || output.0 == 0 || output.1 == 0 {
            return Err(L2xError::shape(
                "upsampling sizes (in_h, in_w, out_h, out_w)",
                &[input.0, input.1, output.0, output.1],
                "every size >= 1",
            ));
        }
        Ok(Self {
            input,
            output,
            rows: taps(input.0, output.0),
            cols: taps(input.1, output.1),
        })
    }

    /// `(in_h, in_w)`.
    pub fn input_size(&self) -> (usize, usize) {
        self.input
    }

    /// `(out_h, out_w)`.
    pub fn output_size(&self) -> (usize, usize) {
        self.output
    }

    fn check(&self, x: &ArrayView2<'_, f32>, len: usize, what: &str) -> Result<()> {
        if x.ncols() != len {
            return Err(L2xError::shape(what, x.shape(), format!("[n, {len}]")));
        }
        Ok(())
    }

    /// Upsamples each row of `x` (`[n, in_h * in_w]`) to `[n, out_h * out_w]`.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (ih, iw) = self.input;
        let (oh, ow) = self.output;
        self.check(&x, ih * iw, "map to upsample")?;
        let n = x.nrows();
        let mut out = Array2::<f32>::zeros((n, oh * ow));
        // Columns first into a [ih, ow] buffer, then rows.
        let mut tmp = vec![0.0f32; ih * ow];
        for s in 0..n {
            let src = x.row(s);
            for r in 0..ih {
                for (c, t) in self.cols.iter().enumerate() {
                    tmp[r * ow + c] = t.w0 * src[r * iw + t.i0] + t.w1 * src[r * iw + t.i1];
                }
            }
            let mut dst = out.row_mut(s);
            for (y, t) in self.rows.iter().enumerate() {
                for c in 0..ow {
                    dst[y * ow + c] = t.w0 * tmp[t.i0 * ow + c] + t.w1 * tmp[t.i1 * ow + c];
                }
            }
        }
        Ok(out)
    }

    /// The transpose of [`BilinearUpsample::forward`]: the gradient with respect to the small
    /// maps (`[n, in_h * in_w]`) of `Σ dy ⊙ forward(x)` for `dy` of shape `[n, out_h * out_w]`.
    pub fn backward(&self, dy: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (ih, iw) = self.input;
        let (oh, ow) = self.output;
        self.check(&dy, oh * ow, "upsampled gradient")?;
        let n = dy.nrows();
        let mut out = Array2::<f32>::zeros((n, ih * iw));
        let mut tmp = vec![0.0f32; ih * ow];
        for s in 0..n {
            tmp.iter_mut().for_each(|v| *v = 0.0);
            let g = dy.row(s);
            for (y, t) in self.rows.iter().enumerate() {
                for c in 0..ow {
                    let v = g[y * ow + c];
                    tmp[t.i0 * ow + c] += t.w0 * v;
                    tmp[t.i1 * ow + c] += t.w1 * v;
                }
            }
            let mut dst = out.row_mut(s);
            for r in 0..ih {
                for (c, t) in self.cols.iter().enumerate() {
                    let v = tmp[r * ow + c];
                    dst[r * iw + t.i0] += t.w0 * v;
                    dst[r * iw + t.i1] += t.w1 * v;
                }
            }
        }
        Ok(out)
    }

    /// For every output pixel (row-major), the input cell ("patch") with the largest bilinear
    /// weight, i.e. the nearest cell centre (ties to the lower index). This partitions the
    /// image into patches; a hard selection of patches becomes a binary pixel mask through it.
    pub fn regions(&self) -> Vec<usize> {
        let (_, iw) = self.input;
        let pick = |t: &Taps| if t.w0 >= t.w1 { t.i0 } else { t.i1 };
        let mut out = Vec::with_capacity(self.output.0 * self.output.1);
        for ty in &self.rows {
            for tx in &self.cols {
                out.push(pick(ty) * iw + pick(tx));
            }
        }
        out
    }

    /// The dense matrix `[out_h * out_w, in_h * in_w]` of the map (for inspection and tests).
    pub fn matrix(&self) -> Array2<f32> {
        let (_, iw) = self.input;
        let (oh, ow) = self.output;
        let mut m = Array2::zeros((oh * ow, self.input.0 * iw));
        for (y, ty) in self.rows.iter().enumerate() {
            for (x, tx) in self.cols.iter().enumerate() {
                for (r, wr) in [(ty.i0, ty.w0), (ty.i1, ty.w1)] {
                    for (c, wc) in [(tx.i0, tx.w0), (tx.i1, tx.w1)] {
                        m[[y * ow + x, r * iw + c]] += wr * wc;
                    }
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn matches_pytorch_reference_values() {
        // torch.nn.Upsample(size=4, mode="bilinear", align_corners=False) of [[1, 2], [3, 4]].
        let up = BilinearUpsample::new((2, 2), (4, 4)).unwrap();
        let x = Array2::from_shape_vec((1, 4), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = up.forward(x.view()).unwrap();
        let expected = [
            1.0, 1.25, 1.75, 2.0, //
            1.5, 1.75, 2.25, 2.5, //
            2.5, 2.75, 3.25, 3.5, //
            3.0, 3.25, 3.75, 4.0,
        ];
        assert!(close(y.as_slice().unwrap(), &expected, 1e-6), "{y}");
        // 11 -> 28 (omnixai's MNIST grid): scale 11/28; output 1 reads source 0.0893,
        // output 27 reads source 10.30, clamped onto the last cell.
        let t = taps(11, 28);
        assert_eq!((t[0].i0, t[0].i1, t[0].w0), (0, 1, 1.0));
        assert!((t[1].w1 - (11.0f32 / 28.0 * 1.5 - 0.5)).abs() < 1e-6);
        assert_eq!((t[27].i0, t[27].i1), (10, 10));
        assert!((t[27].w0 + t[27].w1 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn preserves_constants_and_regions_partition_the_image() {
        let up = BilinearUpsample::new((11, 11), (28, 28)).unwrap();
        let ones = Array2::ones((1, 121));
        let y = up.forward(ones.view()).unwrap();
        assert!(y.iter().all(|v| (v - 1.0).abs() < 1e-6));
        let regions = up.regions();
        assert_eq!(regions.len(), 784);
        let mut counts = [0usize; 121];
        for &r in &regions {
            counts[r] += 1;
        }
        // 28 / 11: every cell owns 2 or 3 rows and 2 or 3 columns.
        assert!(counts.iter().all(|&c| (4..=9).contains(&c)), "{counts:?}");
        // The region of a pixel is the cell with the largest weight in the dense matrix.
        let m = up.matrix();
        for (p, &r) in regions.iter().enumerate() {
            let row = m.row(p);
            let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(row[r], best, "pixel {p}");
        }
        assert!(BilinearUpsample::new((0, 3), (4, 4)).is_err());
        assert!(up.forward(Array2::zeros((1, 100)).view()).is_err());
        assert!(up.backward(Array2::zeros((1, 100)).view()).is_err());
    }

    #[test]
    fn backward_matches_finite_differences() {
        let up = BilinearUpsample::new((3, 4), (7, 5)).unwrap();
        let x = Array2::from_shape_fn((2, 12), |(i, j)| ((i * 12 + j) as f32 * 0.37).sin());
        let c = Array2::from_shape_fn((2, 35), |(i, j)| ((i * 35 + j) as f32 * 0.61).cos());
        let f = |x: &Array2<f32>| -> f64 {
            up.forward(x.view())
                .unwrap()
                .iter()
                .zip(c.iter())
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let g = up.backward(c.view()).unwrap();
        let h = 1e-2f32;
        for i in 0..2 {
            for j in 0..12 {
                let mut p = x.clone();
                p[[i, j]] += h;
                let mut m = x.clone();
                m[[i, j]] -= h;
                let fd = (f(&p) - f(&m)) / (2.0 * h as f64);
                assert!(
                    (fd - g[[i, j]] as f64).abs() < 1e-3,
                    "[{i},{j}] {fd} vs {}",
                    g[[i, j]]
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn backward_is_the_transpose(
            ih in 1usize..6, iw in 1usize..6, oh in 1usize..12, ow in 1usize..12,
            seed in 0u32..1000,
        ) {
            let up = BilinearUpsample::new((ih, iw), (oh, ow)).unwrap();
            let x = Array2::from_shape_fn((2, ih * iw), |(i, j)| ((seed as usize + i * 31 + j) as f32 * 0.7).sin());
            let y = Array2::from_shape_fn((2, oh * ow), |(i, j)| ((seed as usize + i * 17 + j) as f32 * 1.3).cos());
            let ux = up.forward(x.view()).unwrap();
            let uty = up.backward(y.view()).unwrap();
            let lhs: f32 = ux.iter().zip(y.iter()).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(uty.iter()).map(|(a, b)| a * b).sum();
            prop_assert!((lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
            // And forward is the dense matrix.
            let m = up.matrix();
            let dense: Vec<f32> = x.dot(&m.t()).iter().copied().collect();
            let ux: Vec<f32> = ux.iter().copied().collect();
            prop_assert!(close(&ux, &dense, 1e-5));
        }
    }
}
