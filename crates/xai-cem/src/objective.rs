//! The terms of CEM's objective (Dhurandhar et al. 2018, Eq. 1 for PN and Eq. 3 for PP):
//!
//! ```text
//! c * f_kappa(z) + beta * ||z - a||_1 + ||z - a||_2^2 + gamma * ||AE(z) - z||_2^2
//! ```
//!
//! with `z` the candidate (the PN instance `x0 + delta`, or the PP instance) and `a` the anchor
//! (`x0` for PN, the "no information" instance for PP). The attack loss on the classifier's
//! outputs `p` for the explained class `t` is the hinge
//!
//! ```text
//! PN (Eq. 2):  f_kappa(z) = max(0, p_t - max_{j != t} p_j + kappa)
//! PP (Eq. 4):  f_kappa(z) = max(0, max_{j != t} p_j - p_t + kappa)
//! ```
//!
//! computed on the probabilities as alibi (the paper writes it on logits; any scores work).

use serde::{Deserialize, Serialize};

use crate::hyperparams::Mode;

/// The attack hinge for one sample: its value (without `c`) and the largest non-target class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttackHinge {
    /// `f_kappa(z) >= 0` (Eq. 2 or 4).
    pub value: f32,
    /// The non-target class with the largest output (the first one on ties).
    pub runner_up: usize,
}

impl AttackHinge {
    /// Whether the hinge is active (positive), i.e. has a non-zero gradient.
    pub fn is_active(&self) -> bool {
        self.value > 0.0
    }
}

/// The attack hinge of Eq. 2 (PN) or Eq. 4 (PP) for the outputs of one sample. `outputs` needs
/// at least two entries and `target < outputs.len()`.
pub fn attack_hinge(mode: Mode, outputs: &[f32], target: usize, kappa: f32) -> AttackHinge {
    let mut runner_up = if target == 0 { 1 } else { 0 };
    for (j, v) in outputs.iter().enumerate() {
        if j != target && *v > outputs[runner_up] {
            runner_up = j;
        }
    }
    let margin = outputs[target] - outputs[runner_up];
    let inner = match mode {
        Mode::PertinentNegative => margin + kappa,
        Mode::PertinentPositive => -margin + kappa,
    };
    AttackHinge {
        value: inner.max(0.0),
        runner_up,
    }
}

/// Writes `d (c * f_kappa) / d outputs` into `weights` (length = number of outputs): zero when
/// the hinge is inactive, else `±c` on the target and the runner-up class. These are the output
/// weights of the vector-Jacobian product that gives the attack loss's input gradient.
pub fn attack_output_weights(
    mode: Mode,
    hinge: &AttackHinge,
    target: usize,
    c: f32,
    weights: &mut [f32],
) {
    weights.fill(0.0);
    if !hinge.is_active() {
        return;
    }
    let sign = match mode {
        Mode::PertinentNegative => 1.0,
        Mode::PertinentPositive => -1.0,
    };
    weights[target] = sign * c;
    weights[hinge.runner_up] = -sign * c;
}

/// Whether outputs satisfy the PN or PP condition with margin `kappa` (alibi's `compare`): for
/// PN the arg-max of the outputs, with `kappa` added to the target, is another class; for PP the
/// arg-max, with `kappa` subtracted from the target, is the target. Ties go to the first index.
pub fn satisfies_condition(mode: Mode, outputs: &[f32], target: usize, kappa: f32) -> bool {
    let shift = match mode {
        Mode::PertinentNegative => kappa,
        Mode::PertinentPositive => -kappa,
    };
    let adjusted = |j: usize| {
        if j == target {
            outputs[j] + shift
        } else {
            outputs[j]
        }
    };
    let mut best = 0;
    for j in 1..outputs.len() {
        if adjusted(j) > adjusted(best) {
            best = j;
        }
    }
    match mode {
        Mode::PertinentNegative => best != target,
        Mode::PertinentPositive => best == target,
    }
}

/// `(||z - a||_1, ||z - a||_2^2)`, accumulated in `f64`.
pub fn l1_l2(z: &[f32], anchor: &[f32]) -> (f64, f64) {
    let mut l1 = 0.0f64;
    let mut l2 = 0.0f64;
    for (zi, ai) in z.iter().zip(anchor) {
        let d = (zi - ai) as f64;
        l1 += d.abs();
        l2 += d * d;
    }
    (l1, l2)
}

/// The elastic-net distance `||z - a||_2^2 + beta * ||z - a||_1` that ranks solutions.
pub fn elastic_net(z: &[f32], anchor: &[f32], beta: f32) -> f64 {
    let (l1, l2) = l1_l2(z, anchor);
    l2 + beta as f64 * l1
}

/// `||AE(z) - z||_2^2` given the reconstruction.
pub fn reconstruction_error<'r>(
    reconstruction: impl IntoIterator<Item = &'r f32>,
    z: &[f32],
) -> f64 {
    reconstruction
        .into_iter()
        .zip(z)
        .map(|(r, zi)| {
            let d = (r - zi) as f64;
            d * d
        })
        .sum()
}

/// The objective's terms at one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    /// `c * f_kappa(z)`.
    pub attack: f64,
    /// `||z - a||_2^2`.
    pub l2: f64,
    /// `||z - a||_1` (unweighted).
    pub l1: f64,
    /// `gamma * ||AE(z) - z||_2^2` (0 without an autoencoder).
    pub autoencoder: f64,
    /// `attack + l2 + beta * l1 + autoencoder`.
    pub total: f64,
}

impl LossTerms {
    /// Assembles the terms and their total.
    pub fn new(attack: f64, l1: f64, l2: f64, autoencoder: f64, beta: f32) -> Self {
        Self {
            attack,
            l2,
            l1,
            autoencoder,
            total: attack + l2 + beta as f64 * l1 + autoencoder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hinge_and_weights_by_hand() {
        let p = [0.6f32, 0.3, 0.1];
        let pn = attack_hinge(Mode::PertinentNegative, &p, 0, 0.0);
        assert_eq!(pn.runner_up, 1);
        assert!((pn.value - 0.3).abs() < 1e-6);
        let mut w = [9.0f32; 3];
        attack_output_weights(Mode::PertinentNegative, &pn, 0, 2.0, &mut w);
        assert_eq!(w, [2.0, -2.0, 0.0]);
        let pp = attack_hinge(Mode::PertinentPositive, &p, 0, 0.1);
        assert_eq!(pp.value, 0.0);
        attack_output_weights(Mode::PertinentPositive, &pp, 0, 2.0, &mut w);
        assert_eq!(w, [0.0; 3]);
        let pp = attack_hinge(Mode::PertinentPositive, &p, 2, 0.0);
        assert_eq!(pp.runner_up, 0);
        assert!((pp.value - 0.5).abs() < 1e-6);
        attack_output_weights(Mode::PertinentPositive, &pp, 2, 1.0, &mut w);
        assert_eq!(w, [1.0, 0.0, -1.0]);
    }

    #[test]
    fn condition_uses_kappa_and_first_index_on_ties() {
        let p = [0.5f32, 0.5, 0.0];
        // argmax is 0 (first on ties): not a PN for target 0, a PN for target 1.
        assert!(!satisfies_condition(Mode::PertinentNegative, &p, 0, 0.0));
        assert!(satisfies_condition(Mode::PertinentNegative, &p, 1, 0.0));
        assert!(satisfies_condition(Mode::PertinentPositive, &p, 0, 0.0));
        assert!(!satisfies_condition(Mode::PertinentPositive, &p, 0, 0.01));
        let q = [0.4f32, 0.6];
        assert!(satisfies_condition(Mode::PertinentNegative, &q, 0, 0.1));
        assert!(!satisfies_condition(Mode::PertinentNegative, &q, 0, 0.3));
    }

    #[test]
    fn distances() {
        let (l1, l2) = l1_l2(&[1.0, -2.0], &[0.0, 0.0]);
        assert_eq!((l1, l2), (3.0, 5.0));
        assert_eq!(elastic_net(&[1.0, -2.0], &[0.0, 0.0], 0.5), 6.5);
        assert_eq!(reconstruction_error(&[1.0, 1.0], &[0.0, 3.0]), 5.0);
        let t = LossTerms::new(1.0, 2.0, 3.0, 4.0, 0.5);
        assert_eq!(t.total, 9.0);
    }
}
