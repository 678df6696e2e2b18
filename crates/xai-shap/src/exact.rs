//! Exact Shapley values by enumerating all `2^M` coalitions (Shapley 1953):
//! `φ_i = Σ_{S ⊆ N∖{i}} |S|! (M - |S| - 1)! / M! · (v(S ∪ {i}) - v(S))`.
//! For small games (`M <= 20`): tests, references, and checking estimators.

use ndarray::Array2;

use crate::error::{Result, ShapError};
use crate::game::CoalitionGame;
use crate::hyperparams::Link;
use crate::sampling::binomial;

/// Largest number of players [`exact_shapley_values`] accepts.
pub const MAX_EXACT_PLAYERS: usize = 20;

/// Exact Shapley values of `game` for `labels` (after `link`), `[n_labels, n_players]`,
/// evaluating the game on all `2^M` coalitions in batches of `batch_size`.
pub fn exact_shapley_values(
    game: &dyn CoalitionGame,
    labels: &[usize],
    link: Link,
    batch_size: usize,
) -> Result<Array2<f64>> {
    let m = game.n_players();
    if m > MAX_EXACT_PLAYERS {
        return Err(ShapError::param(
            "number of players",
            m,
            format!("at most {MAX_EXACT_PLAYERS} for exact enumeration"),
        ));
    }
    if batch_size == 0 {
        return Err(ShapError::param("batch_size", 0, "at least 1"));
    }
    let n_outputs = game.n_outputs();
    if let Some(&label) = labels.iter().find(|&&l| l >= n_outputs) {
        return Err(ShapError::LabelOutOfRange { label, n_outputs });
    }
    let total = 1usize << m;
    let mut v = Array2::<f64>::zeros((total, labels.len()));
    let mut start = 0;
    while start < total {
        let end = (start + batch_size).min(total);
        let masks = Array2::from_shape_fn((end - start, m), |(r, j)| (start + r) >> j & 1 == 1);
        let out = game.evaluate(masks.view())?;
        if out.shape() != [end - start, n_outputs] {
            return Err(ShapError::BatchShape {
                what: "coalition function".into(),
                got: out.shape().to_vec(),
                expected: format!("[{}, {n_outputs}]", end - start),
            });
        }
        for r in 0..end - start {
            for (k, &l) in labels.iter().enumerate() {
                let value = out[[r, l]];
                v[[start + r, k]] = link.apply(value).filter(|x| x.is_finite()).ok_or(
                    ShapError::NonFiniteOutput {
                        label: l,
                        coalition: start + r,
                        value,
                    },
                )?;
            }
        }
        start = end;
    }
    // weight of a coalition of size s not containing i: 1 / (M C(M-1, s))
    let weights: Vec<f64> = (0..m.max(1))
        .map(|s| 1.0 / (m as f64 * binomial(m - 1, s)))
        .collect();
    let mut phi = Array2::<f64>::zeros((labels.len(), m));
    for mask in 0..total {
        let s = (mask as u64).count_ones() as usize;
        for i in 0..m {
            if mask >> i & 1 == 0 {
                let with = mask | 1 << i;
                for k in 0..labels.len() {
                    phi[[k, i]] += weights[s] * (v[[with, k]] - v[[mask, k]]);
                }
            }
        }
    }
    Ok(phi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::FnGame;
    use ndarray::ArrayView2;

    #[test]
    fn glove_game() {
        // v(S) = 1 if S holds player 0 and one of players 1, 2: φ = (2/3, 1/6, 1/6)
        let game = FnGame::new(3, 1, |c: ArrayView2<'_, bool>| {
            Ok(Array2::from_shape_fn((c.nrows(), 1), |(r, _)| {
                (c[[r, 0]] && (c[[r, 1]] || c[[r, 2]])) as u8 as f64
            }))
        });
        let phi = exact_shapley_values(&game, &[0], Link::Identity, 3).unwrap();
        for (got, want) in phi.iter().zip([2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0]) {
            assert!((got - want).abs() < 1e-12, "{phi:?}");
        }
        assert!(exact_shapley_values(&game, &[1], Link::Identity, 3).is_err());
        assert!(exact_shapley_values(&game, &[0], Link::Identity, 0).is_err());
    }
}
