//! FISTA with projected shrinkage-thresholding (Dhurandhar et al. 2018, Sec. 3.1, Eq. 5-7;
//! Beck & Teboulle 2009), written as allocation-free elementwise operations on flat slices.
//!
//! One iteration, for the smooth part `g` of the objective (attack loss, L2 and autoencoder
//! terms) and the L1 weight `beta`:
//!
//! ```text
//! x_{k+1} = Π( S_beta( y_k - lr_k * clip(∇g(y_k)) ) )                      (Eq. 5)
//! y_{k+1} = Π( x_{k+1} + k/(k+3) * (x_{k+1} - x_k) )                       (Eq. 6)
//! ```
//!
//! where `S_beta` is the elementwise shrinkage-thresholding operator around the anchor `a`
//! (the original instance for PN, the "no information" instance for PP), clipped to the feature
//! range (Eq. 7, [`shrinkage_threshold`]), and `Π` the projection onto the PN or PP set
//! ([`Projection`]). As alibi, `k` in the momentum weight is the number of gradient steps taken
//! *including* the current one, and the learning rate decays as TensorFlow's
//! `polynomial_decay(lr, k, max_iterations, 0, power = 0.5)`.

/// The learning rate after `step` gradient steps: `lr_init * sqrt(1 - step / max_iterations)`
/// (TensorFlow's `polynomial_decay` with end rate 0 and power 0.5, as alibi).
pub fn learning_rate(lr_init: f32, step: usize, max_iterations: usize) -> f32 {
    let k = step.min(max_iterations) as f32;
    lr_init * (1.0 - k / max_iterations as f32).sqrt()
}

/// The FISTA momentum weight `k / (k + 3)` (Eq. 6) with `k` the number of gradient steps taken.
pub fn momentum_weight(steps_taken: usize) -> f32 {
    let k = steps_taken as f32;
    k / (k + 3.0)
}

/// The projected shrinkage-thresholding operator of Eq. 7 for one feature:
///
/// ```text
///            | min(v - beta, max)   if v - a >  beta
/// S(v)   =   | a                    if |v - a| <= beta
///            | max(v + beta, min)   if v - a < -beta
/// ```
///
/// i.e. the proximal operator of `beta * |z - a|` restricted to `[min, max]`; for an anchor `a`
/// inside `[min, max]` it equals `clamp(a + sign(v - a) * max(|v - a| - beta, 0), min, max)`.
///
/// Written without data-dependent branches (`anchor + max(d - beta, 0) + min(d + beta, 0)`,
/// then the clamp) so the loop over features vectorises; inside the threshold the result is
/// exactly `anchor`.
#[inline]
pub fn shrinkage_threshold(value: f32, anchor: f32, beta: f32, min: f32, max: f32) -> f32 {
    let diff = value - anchor;
    let shrunk = anchor + (diff - beta).max(0.0) + (diff + beta).min(0.0);
    shrunk.max(min).min(max)
}

/// The projection `Π` onto the set a PN or a PP may take, for one instance.
#[derive(Debug, Clone, Copy)]
pub enum Projection<'a> {
    /// PN: a feature may only move *away* from its "no information" value (an addition). A
    /// candidate value `z` with `|z - no_info| <= |x0 - no_info|` is reset to the original `x0`,
    /// as alibi does.
    AddOnly {
        /// The original instance `x0`.
        original: &'a [f32],
        /// The "no information" values.
        no_info: &'a [f32],
    },
    /// PP: a feature may only lie between its "no information" value (nothing kept) and its
    /// original value (all kept): the Euclidean projection clamps it to that segment.
    KeepOnly {
        /// `min(no_info, x0)` per feature (with `no_info` clipped to the feature range).
        lower: &'a [f32],
        /// `max(no_info, x0)` per feature.
        upper: &'a [f32],
    },
}

impl Projection<'_> {
    /// Projects the value `z` of feature `i`.
    #[inline]
    pub fn apply(&self, i: usize, z: f32) -> f32 {
        match self {
            Projection::AddOnly { original, no_info } => add_only(z, original[i], no_info[i]),
            Projection::KeepOnly { lower, upper } => keep_only(z, lower[i], upper[i]),
        }
    }
}

/// PN projection of one feature: `z` if it is farther from `no_info` than `original`, else
/// `original`.
#[inline]
fn add_only(z: f32, original: f32, no_info: f32) -> f32 {
    if (z - no_info).abs() > (original - no_info).abs() {
        z
    } else {
        original
    }
}

/// PP projection of one feature: `z` clamped to `[lower, upper]` (`lower <= upper`).
#[inline]
fn keep_only(z: f32, lower: f32, upper: f32) -> f32 {
    z.max(lower).min(upper)
}

/// The fixed per-instance data of one FISTA run.
#[derive(Debug, Clone, Copy)]
pub struct FistaGeometry<'a> {
    /// The point the L1/L2 distances are measured from and the shrinkage pulls towards.
    pub anchor: &'a [f32],
    /// Per-feature lower bounds of the feature range.
    pub min: &'a [f32],
    /// Per-feature upper bounds of the feature range.
    pub max: &'a [f32],
    /// The L1 weight, used as the shrinkage threshold.
    pub beta: f32,
    /// The projection onto the PN or PP set.
    pub projection: Projection<'a>,
}

/// One FISTA iteration (Eq. 5-6) in place: `x` holds `x_k` and becomes `x_{k+1}`, `y` holds
/// `y_k` and becomes `y_{k+1}`; `grad` is the (clipped) gradient of the smooth part at `y_k`.
/// `steps_taken` counts this step (it is `k + 1` for the `k`-th iteration from 0).
pub fn fista_step(
    geometry: &FistaGeometry<'_>,
    x: &mut [f32],
    y: &mut [f32],
    grad: &[f32],
    learning_rate: f32,
    steps_taken: usize,
) {
    let momentum = momentum_weight(steps_taken);
    let FistaGeometry {
        anchor,
        min,
        max,
        beta,
        projection,
    } = *geometry;
    let n = x.len();
    debug_assert!(y.len() == n && grad.len() == n && anchor.len() == n);
    // One loop per projection, so that the per-feature body has no enum dispatch.
    let step = |i: usize, x_prev: f32, y_cur: f32, project: &dyn Fn(usize, f32) -> f32| {
        let stepped = y_cur - learning_rate * grad[i];
        let shrunk = shrinkage_threshold(stepped, anchor[i], beta, min[i], max[i]);
        let x_next = project(i, shrunk);
        let y_next = project(i, x_next + momentum * (x_next - x_prev));
        (x_next, y_next)
    };
    match projection {
        Projection::AddOnly { original, no_info } => {
            for i in 0..n {
                let (x_next, y_next) =
                    step(i, x[i], y[i], &|i, z| add_only(z, original[i], no_info[i]));
                x[i] = x_next;
                y[i] = y_next;
            }
        }
        Projection::KeepOnly { lower, upper } => {
            for i in 0..n {
                let (x_next, y_next) =
                    step(i, x[i], y[i], &|i, z| keep_only(z, lower[i], upper[i]));
                x[i] = x_next;
                y[i] = y_next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn closed_form(value: f32, anchor: f32, beta: f32, min: f32, max: f32) -> f32 {
        let d = value - anchor;
        (anchor + d.signum() * (d.abs() - beta).max(0.0)).clamp(min, max)
    }

    proptest! {
        #[test]
        fn shrinkage_matches_closed_form_and_is_the_prox(
            value in -3.0f32..3.0,
            anchor_frac in 0.0f32..1.0,
            beta in 0.0f32..1.0,
            min in -2.0f32..0.0,
            width in 0.0f32..3.0,
        ) {
            let max = min + width;
            let anchor = min + anchor_frac * width;
            let s = shrinkage_threshold(value, anchor, beta, min, max);
            let c = closed_form(value, anchor, beta, min, max);
            prop_assert!((s - c).abs() <= 1e-5, "S = {s}, closed form = {c}");
            prop_assert!(s >= min && s <= max);
            // The proximal objective 0.5 (z - v)^2 + beta |z - a| is minimal at s on [min, max].
            let prox = |z: f32| 0.5 * (z - value).powi(2) + beta * (z - anchor).abs();
            for k in 0..=64 {
                let z = min + width * k as f32 / 64.0;
                prop_assert!(prox(s) <= prox(z) + 1e-4, "prox({s}) = {} > prox({z}) = {}", prox(s), prox(z));
            }
        }

        #[test]
        fn projections_keep_their_sets(
            z in -3.0f32..3.0, x0 in -1.0f32..1.0, no_info in -1.5f32..1.5,
        ) {
            let original = [x0];
            let ni = [no_info];
            let pn = Projection::AddOnly { original: &original, no_info: &ni }.apply(0, z);
            prop_assert!((pn - no_info).abs() >= (x0 - no_info).abs());
            prop_assert!(pn == z || pn == x0);
            let lower = [x0.min(no_info)];
            let upper = [x0.max(no_info)];
            let pp = Projection::KeepOnly { lower: &lower, upper: &upper }.apply(0, z);
            prop_assert!((pp - no_info).abs() <= (x0 - no_info).abs() + 1e-6);
            prop_assert!((pp - x0).abs() <= (x0 - no_info).abs() + 1e-6);
        }
    }

    #[test]
    fn learning_rate_decays_as_polynomial_decay() {
        assert_eq!(learning_rate(0.01, 0, 100), 0.01);
        assert!((learning_rate(0.01, 75, 100) - 0.005).abs() < 1e-7);
        assert_eq!(learning_rate(0.01, 100, 100), 0.0);
        assert_eq!(learning_rate(0.01, 200, 100), 0.0);
        assert_eq!(momentum_weight(0), 0.0);
        assert_eq!(momentum_weight(1), 0.25);
    }

    #[test]
    fn one_step_by_hand() {
        // PN around x0 = [0, 0.5], no_info = -1, range [-0.5, 0.5], beta = 0.1.
        let x0 = [0.0f32, 0.5];
        let no_info = [-1.0f32, -1.0];
        let min = [-0.5f32; 2];
        let max = [0.5f32; 2];
        let g = FistaGeometry {
            anchor: &x0,
            min: &min,
            max: &max,
            beta: 0.1,
            projection: Projection::AddOnly {
                original: &x0,
                no_info: &no_info,
            },
        };
        let mut x = x0;
        let mut y = x0;
        // Gradient -30 on feature 0 moves it by +0.3, shrunk to +0.2; feature 1 would go to
        // 0.5 - 0.3 (towards no_info: a removal), reset to x0.
        fista_step(&g, &mut x, &mut y, &[-30.0, 30.0], 0.01, 1);
        assert!((x[0] - 0.2).abs() < 1e-6, "{x:?}");
        assert_eq!(x[1], 0.5);
        // y = x + 0.25 (x - x_prev)
        assert!((y[0] - 0.25).abs() < 1e-6, "{y:?}");
        assert_eq!(y[1], 0.5);
    }
}
