//! A small synthetic task whose answer is known, for examples, tests and benchmarks: images of
//! faint noise with one bright square, and a black box that reports which quadrant holds it.
//! A faithful explainer selects the patches of the square.

use ndarray::{s, Array2, Array4, ArrayViewD, Ix4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xai_core::{check_batch, CoreError, Predictor};

/// Side of the bright square, in pixels.
pub const SQUARE: usize = 3;

/// `n` single-channel `side x side` images (`[n, 1, side, side]`): uniform noise in `[0, 0.1]`
/// plus a `3 x 3` square of ones placed at random inside one of the four quadrants; and the
/// quadrant of each square (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
///
/// `side` must be even and at least 6 (else an error).
pub fn square_images(
    n: usize,
    side: usize,
    seed: u64,
) -> xai_core::Result<(Array4<f32>, Vec<usize>)> {
    if side < 2 * SQUARE || !side.is_multiple_of(2) {
        return Err(CoreError::param("side", side, "an even number >= 6"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array4::from_shape_simple_fn((n, 1, side, side), || rng.gen_range(0.0..0.1f32));
    let half = side / 2;
    let mut quadrants = Vec::with_capacity(n);
    for i in 0..n {
        let q = rng.gen_range(0..4usize);
        let top = (q / 2) * half + rng.gen_range(0..=half - SQUARE);
        let left = (q % 2) * half + rng.gen_range(0..=half - SQUARE);
        x.slice_mut(s![i, 0, top..top + SQUARE, left..left + SQUARE])
            .fill(1.0);
        quadrants.push(q);
    }
    Ok((x, quadrants))
}

/// The black box of the toy task: softmax over the four quadrants' pixel sums (times
/// `sharpness`), i.e. class probabilities of "where the bright square is".
#[derive(Debug, Clone)]
pub struct QuadrantClassifier {
    shape: [usize; 3],
    sharpness: f32,
}

impl QuadrantClassifier {
    /// For `side x side` single-channel images.
    pub fn new(side: usize, sharpness: f32) -> Self {
        Self {
            shape: [1, side, side],
            sharpness,
        }
    }
}

impl Predictor for QuadrantClassifier {
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn n_outputs(&self) -> usize {
        4
    }

    fn predict(&self, x: ArrayViewD<'_, f32>) -> xai_core::Result<Array2<f32>> {
        let n = check_batch("input", &x, &self.shape)?;
        let x = x
            .into_dimensionality::<Ix4>()
            .map_err(|e| CoreError::Model(e.to_string()))?;
        let half = self.shape[1] / 2;
        let mut out = Array2::zeros((n, 4));
        for i in 0..n {
            for q in 0..4 {
                let (r, c) = ((q / 2) * half, (q % 2) * half);
                out[[i, q]] = self.sharpness * x.slice(s![i, 0, r..r + half, c..c + half]).sum();
            }
            let mut row = out.row_mut(i);
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row.mapv_inplace(|v| v / sum);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_black_box_finds_the_square() {
        let (x, q) = square_images(50, 16, 1).unwrap();
        let f = QuadrantClassifier::new(16, 2.0);
        let p = f.predict(x.view().into_dyn()).unwrap();
        assert_eq!(xai_core::argmax_rows(p.view()), q);
        assert!(square_images(2, 7, 0).is_err());
    }
}
