//! ROAD, RemOve And Debias (Rong et al. 2022; Quantus' `ROAD`): the most (or least) relevant
//! pixels are imputed from their neighbours by noisy linear imputation, and the curve is whether
//! the model still predicts the target at each percentage imputed.

use ndarray::{Array3, ArrayView3, ArrayViewD};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use xai_core::Predictor;

use crate::curves::{Curve, CurveScore, Direction, Order};
use crate::error::{EvalError, Result};
use crate::hyperparams::RoadValidParams;
use crate::perturb::{broadcast_map, ranking, require_image, Sample};

/// The eight neighbours and their weights (Rong et al.'s and Quantus' `offset_weight`): 1/6 for
/// the four direct neighbours, 1/12 for the diagonals, `(row offset, column offset, weight)`.
const NEIGHBOURS: [(isize, isize, f64); 8] = [
    (1, 1, 1.0 / 12.0),
    (0, 1, 1.0 / 6.0),
    (-1, 1, 1.0 / 12.0),
    (1, -1, 1.0 / 12.0),
    (0, -1, 1.0 / 6.0),
    (-1, -1, 1.0 / 12.0),
    (1, 0, 1.0 / 6.0),
    (-1, 0, 1.0 / 6.0),
];

/// A seed for the `i`-th of several independent streams drawn from one seed (SplitMix64 of the
/// pair), so that work split over threads draws the same numbers whatever the thread count.
pub(crate) fn stream_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Noisy linear imputation (Quantus' `noisy_linear_imputation`): every pixel in `pixels` (flat
/// `row * w + col` indices, all channels) takes the weighted mean of its eight neighbours, known
/// or imputed — a sparse linear system per channel — plus `noise * N(0, 1)`.
///
/// The system `(D − W) v = W_known x` (`D` the summed weights of each pixel's in-image
/// neighbours, `W` the weights between imputed pixels) is symmetric positive definite whenever
/// every connected group of imputed pixels touches a known one, and is solved by conjugate
/// gradients (matrix-free, at most `max_iterations`, stopping at `tolerance` relative residual)
/// where Quantus calls scipy's direct `spsolve`. A group with no known neighbour (an image
/// imputed entirely) makes the system singular, where `spsolve` fails; conjugate gradients from
/// zero then give that group zeros.
pub fn noisy_linear_imputation(
    x: ArrayView3<'_, f32>,
    pixels: &[usize],
    noise: f32,
    seed: u64,
    max_iterations: usize,
    tolerance: f64,
) -> Result<Array3<f32>> {
    let (c, h, w) = x.dim();
    let n = pixels.len();
    let mut var = vec![usize::MAX; h * w];
    for (i, p) in pixels.iter().enumerate() {
        if *p >= h * w {
            return Err(EvalError::param("pixels", p, "pixel indices below h * w"));
        }
        if var[*p] != usize::MAX {
            return Err(EvalError::param("pixels", p, "distinct pixel indices"));
        }
        var[*p] = i;
    }
    // Per variable: the diagonal, and the imputed and known neighbours as compressed rows.
    let mut diag = vec![0.0f64; n];
    let (mut link_start, mut link_var, mut link_w) =
        (Vec::with_capacity(n + 1), Vec::new(), Vec::new());
    let (mut known_start, mut known_px, mut known_w) =
        (Vec::with_capacity(n + 1), Vec::new(), Vec::new());
    link_start.push(0);
    known_start.push(0);
    for (i, p) in pixels.iter().enumerate() {
        let (r, col) = ((p / w) as isize, (p % w) as isize);
        for (dr, dc, wt) in NEIGHBOURS {
            let (rr, cc) = (r + dr, col + dc);
            if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                continue;
            }
            diag[i] += wt;
            let q = rr as usize * w + cc as usize;
            if var[q] == usize::MAX {
                known_px.push(q);
                known_w.push(wt);
            } else {
                link_var.push(var[q]);
                link_w.push(wt);
            }
        }
        link_start.push(link_var.len());
        known_start.push(known_px.len());
    }
    let apply = |v: &[f64], out: &mut [f64]| {
        for i in 0..n {
            let mut s = diag[i] * v[i];
            for k in link_start[i]..link_start[i + 1] {
                s -= link_w[k] * v[link_var[k]];
            }
            out[i] = s;
        }
    };
    let mut result = x.to_owned();
    let mut rng = StdRng::seed_from_u64(seed);
    for ch in 0..c {
        let plane = x.index_axis(ndarray::Axis(0), ch);
        let plane = plane.as_standard_layout();
        let flat = plane.as_slice().expect("standard layout");
        let b: Vec<f64> = (0..n)
            .map(|i| {
                (known_start[i]..known_start[i + 1])
                    .map(|k| known_w[k] * f64::from(flat[known_px[k]]))
                    .sum()
            })
            .collect();
        let v = conjugate_gradient(&apply, &b, max_iterations, tolerance);
        for (i, p) in pixels.iter().enumerate() {
            let z: f64 = if noise > 0.0 {
                StandardNormal.sample(&mut rng)
            } else {
                0.0
            };
            result[[ch, p / w, p % w]] = (v[i] + f64::from(noise) * z) as f32;
        }
    }
    Ok(result)
}

/// Conjugate gradients for a symmetric positive (semi-)definite operator, from zero.
fn conjugate_gradient(
    apply: &dyn Fn(&[f64], &mut [f64]),
    b: &[f64],
    max_iterations: usize,
    tolerance: f64,
) -> Vec<f64> {
    let n = b.len();
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut ap = vec![0.0; n];
    let b_norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    if b_norm == 0.0 {
        return x;
    }
    let mut rr = r.iter().map(|v| v * v).sum::<f64>();
    for _ in 0..max_iterations {
        if rr.sqrt() <= tolerance * b_norm {
            break;
        }
        apply(&p, &mut ap);
        let pap: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
        if pap <= 0.0 || !pap.is_finite() {
            break;
        }
        let alpha = rr / pap;
        for i in 0..n {
            x[i] += alpha * p[i];
            r[i] -= alpha * ap[i];
        }
        let rr_new = r.iter().map(|v| v * v).sum::<f64>();
        let beta = rr_new / rr;
        for i in 0..n {
            p[i] = r[i] + beta * p[i];
        }
        rr = rr_new;
    }
    x
}

/// The ROAD curve: for each percentage `p`, the `floor(h * w * p / 100)` most (MoRF) or least
/// (LeRF) relevant pixels — ranked by the map summed over channels — are imputed by
/// [`noisy_linear_imputation`], and the point is 1 when the model's argmax is still `target`,
/// else 0 (Quantus' per-image accuracy). The value is the curve's mean over the percentages.
/// MoRF: lower is better; LeRF (in Rong et al., not in Quantus): higher is better.
///
/// Each percentage's imputation is independent and runs on rayon's threads with its own noise
/// stream, derived from the seed and the percentage's position, so results do not depend on the
/// thread count. For one-channel inputs the pixels ranked are Quantus' exactly; for
/// several channels Quantus ranks the flattened map but imputes pixel indices (mixing channels
/// in), where here a pixel's channels are ranked and imputed together.
pub fn road(
    model: &dyn Predictor,
    x: ArrayViewD<'_, f32>,
    map: ArrayViewD<'_, f32>,
    target: usize,
    order: Order,
    params: &RoadValidParams,
) -> Result<CurveScore> {
    let sample = Sample::new(model, x.view(), target)?;
    let (c, h, w) = require_image(&sample, "ROAD")?;
    let map = broadcast_map(&sample.shape, map)?;
    let scores: Vec<f64> = (0..h * w)
        .map(|p| (0..c).map(|ch| f64::from(map[ch * h * w + p])).sum())
        .collect();
    let ranked = ranking(&scores, order == Order::Morf);
    let x3 = ArrayView3::from_shape((c, h, w), &sample.x[..]).expect("checked shape");
    let imputed: Vec<Array3<f32>> = params
        .percentages
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let k = ((h * w) as f64 * p / 100.0) as usize;
            noisy_linear_imputation(
                x3,
                &ranked[..k],
                params.noise,
                stream_seed(params.seed, i as u64),
                params.max_iterations,
                params.tolerance,
            )
        })
        .collect::<Result<_>>()?;
    let len = sample.len();
    let mut y = Vec::with_capacity(imputed.len());
    for chunk in imputed.chunks(params.batch_size) {
        let mut buf = Vec::with_capacity(chunk.len() * len);
        for a in chunk {
            buf.extend(a.iter().copied());
        }
        let preds = sample.predict_argmax(&buf, chunk.len())?;
        y.extend(
            preds
                .into_iter()
                .map(|p| if p == target { 1.0 } else { 0.0 }),
        );
    }
    let value = y.iter().sum::<f64>() / y.len() as f64;
    Ok(CurveScore {
        curve: Curve {
            x: params.percentages.clone(),
            y,
        },
        value,
        direction: match order {
            Order::Morf => Direction::LowerIsBetter,
            Order::Lerf => Direction::HigherIsBetter,
        },
    })
}
