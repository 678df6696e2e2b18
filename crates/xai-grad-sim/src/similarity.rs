//! The three similarity kernels on loss gradients (Charpiat et al. 2019, section 2; alibi's
//! `alibi.explainers.similarity.metrics`).
//!
//! With `g = ∇_θ L(f_θ(x), y)` the gradient of a test instance and `g'` that of a reference
//! instance:
//!
//! * `grad_dot`: `k(z, z') = g · g'` (symmetric);
//! * `grad_cos`: `k(z, z') = g · g' / (‖g‖ ‖g'‖ + ε)` (symmetric, in `[-1, 1]`);
//! * `grad_asym_dot`: `k(z, z') = g · g' / (‖g'‖² + ε)`, the influence of the reference on the
//!   test instance, normalised by the reference's squared norm as in alibi (`asym_dot(X, Y)`
//!   with `X` the test and `Y` the reference gradients).
//!
//! All three are functions of the inner products and squared norms only, so they are computed
//! from [`xai_core::PerSampleGrads::gram`] and [`xai_core::PerSampleGrads::squared_norms`]
//! without ever expanding a factored gradient.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, ArrayView1, ArrayView2, Zip};
use serde::{Deserialize, Serialize};

use crate::error::GradSimError;

/// A similarity kernel between two instances' loss gradients (alibi's `sim_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityFn {
    /// `g · g'`, the plain inner product (Charpiat et al. 2019, eq. 3).
    GradDot,
    /// `g · g' / (‖g‖ ‖g'‖ + ε)`, the cosine (Charpiat et al. 2019, eq. 4). Hanawa et al. (2021)
    /// found it the only gradient kernel that passes the identical class test reliably.
    GradCos,
    /// `g · g' / (‖g'‖² + ε)`, the asymmetric kernel: how much the loss at the test instance
    /// changes when a parameter update changes the reference's loss by one unit.
    GradAsymDot,
}

impl SimilarityFn {
    /// All kernels, in alibi's order.
    pub const ALL: [SimilarityFn; 3] = [
        SimilarityFn::GradDot,
        SimilarityFn::GradCos,
        SimilarityFn::GradAsymDot,
    ];

    /// alibi's name: `grad_dot`, `grad_cos` or `grad_asym_dot`.
    pub fn name(self) -> &'static str {
        match self {
            SimilarityFn::GradDot => "grad_dot",
            SimilarityFn::GradCos => "grad_cos",
            SimilarityFn::GradAsymDot => "grad_asym_dot",
        }
    }

    /// The kernel of one pair, from the inner product `dot = g · g'` and the squared norms of
    /// the test (`test_sq = ‖g‖²`) and reference (`ref_sq = ‖g'‖²`) gradients.
    ///
    /// The cosine is clamped to `[-1, 1]`: the inner product and the norms are summed in
    /// different orders, and rounding could otherwise take `cos(g, g)` a hair above 1.
    #[inline]
    pub fn from_dot(self, dot: f32, test_sq: f32, ref_sq: f32, eps: f32) -> f32 {
        // A zero denominator (eps = 0 and a zero gradient, whose dot products are 0 too) scores
        // 0: a gradient without a direction is like nothing, rather than NaN.
        let ratio = |num: f32, den: f32| if den > 0.0 { num / den } else { 0.0 };
        match self {
            SimilarityFn::GradDot => dot,
            SimilarityFn::GradCos => {
                ratio(dot, test_sq.sqrt() * ref_sq.sqrt() + eps).clamp(-1.0, 1.0)
            }
            SimilarityFn::GradAsymDot => ratio(dot, ref_sq + eps),
        }
    }

    /// The kernel for every pair of a block: `dot[i, j] = g_i · g'_j` with `test_sq[i] = ‖g_i‖²`
    /// and `ref_sq[j] = ‖g'_j‖²`.
    pub fn from_gram(
        self,
        dot: ArrayView2<'_, f32>,
        test_sq: ArrayView1<'_, f32>,
        ref_sq: ArrayView1<'_, f32>,
        eps: f32,
    ) -> Array2<f32> {
        let mut out = dot.to_owned();
        if self == SimilarityFn::GradDot {
            return out;
        }
        for (mut row, &t) in out.rows_mut().into_iter().zip(test_sq.iter()) {
            Zip::from(&mut row)
                .and(&ref_sq)
                .for_each(|v, &r| *v = self.from_dot(*v, t, r, eps));
        }
        out
    }
}

impl fmt::Display for SimilarityFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimilarityFn {
    type Err = GradSimError;

    /// Parses alibi's names `grad_dot`, `grad_cos` and `grad_asym_dot`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimilarityFn::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| GradSimError::InvalidParameter {
                name: "sim_fn",
                value: s.to_string(),
                expected: "one of 'grad_dot', 'grad_cos', 'grad_asym_dot'",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn names_round_trip() {
        for f in SimilarityFn::ALL {
            assert_eq!(f.name().parse::<SimilarityFn>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        let err = "grad_sin".parse::<SimilarityFn>().unwrap_err();
        assert!(err.to_string().contains("grad_cos"), "{err}");
    }

    #[test]
    fn kernels_match_their_definitions() {
        // g = (3, 4), g' = (4, 0): dot 12, norms 5 and 4.
        let dot = array![[12.0f32]];
        let t = array![25.0f32];
        let r = array![16.0f32];
        let eps = 0.0;
        let k = |f: SimilarityFn| f.from_gram(dot.view(), t.view(), r.view(), eps)[[0, 0]];
        assert_eq!(k(SimilarityFn::GradDot), 12.0);
        assert!((k(SimilarityFn::GradCos) - 0.6).abs() < 1e-7);
        assert!((k(SimilarityFn::GradAsymDot) - 0.75).abs() < 1e-7);
    }

    #[test]
    fn zero_gradients_score_zero_with_eps() {
        let f = SimilarityFn::GradCos;
        assert_eq!(f.from_dot(0.0, 0.0, 4.0, 1e-7), 0.0);
        assert_eq!(SimilarityFn::GradAsymDot.from_dot(0.0, 1.0, 0.0, 1e-7), 0.0);
    }

    #[test]
    fn zero_gradients_score_zero_without_eps_too() {
        for f in [SimilarityFn::GradCos, SimilarityFn::GradAsymDot] {
            for (t, r) in [(0.0, 4.0), (4.0, 0.0), (0.0, 0.0)] {
                let v = f.from_dot(0.0, t, r, 0.0);
                assert_eq!(v, 0.0, "{f:?} with norms {t}, {r}");
            }
        }
    }
}
