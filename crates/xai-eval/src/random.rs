//! The random attribution baseline every method is compared to.

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A map of `shape` with independent `U(0, 1)` values from `seed` (Quantus' random baseline
/// draws uniform values too): a method that does not beat it on a metric carries no information
/// the metric can see.
pub fn random_attribution(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Drawn in the array's (row-major) order.
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.gen::<f32>())
}
