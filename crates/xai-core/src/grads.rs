use ndarray::{s, Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// A named group of a model's parameters (one layer's weight or bias).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamGroup {
    /// Name, e.g. `"dense1.weight"`.
    pub name: String,
    /// Shape of the parameter tensor.
    pub shape: Vec<usize>,
}

impl ParamGroup {
    /// Number of scalar parameters in the group.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the group holds no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which parameters a per-sample gradient is taken with respect to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ParamSelection {
    /// Every trainable parameter.
    #[default]
    All,
    /// Only the named groups (see [`crate::DifferentiableModel::parameter_groups`]), e.g. the last
    /// layers, as alibi users do by restricting the model's trainable variables.
    Groups(Vec<String>),
}

impl ParamSelection {
    /// Whether the group called `name` is selected.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            ParamSelection::All => true,
            ParamSelection::Groups(g) => g.iter().any(|n| n == name),
        }
    }

    /// Checks that every named group exists in `groups`.
    pub fn validate(&self, groups: &[ParamGroup]) -> Result<()> {
        if let ParamSelection::Groups(names) = self {
            if names.is_empty() {
                return Err(CoreError::Empty("parameter selection".into()));
            }
            for n in names {
                if !groups.iter().any(|g| &g.name == n) {
                    let known: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
                    return Err(CoreError::param(
                        "parameter selection",
                        n,
                        format!("one of {known:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One block of per-sample gradients, for `n` samples.
#[derive(Debug, Clone, PartialEq)]
pub enum GradBlock {
    /// Gradients stored in full, `[n, p]`.
    Full {
        /// Name of the parameter group.
        name: String,
        /// Row `i` is sample `i`'s gradient.
        values: Array2<f32>,
    },
    /// A factored dense-layer gradient: sample `i`'s gradient is the outer product
    /// `inputs[i] ⊗ deltas[i]` (flattened row-major as `[i_dim, o_dim]`), where `inputs` are the
    /// layer's inputs and `deltas` the gradient of the loss with respect to its outputs.
    /// Inner products factor as `<a_i ⊗ d_i, a_j ⊗ d_j> = (a_i · a_j)(d_i · d_j)`, so the
    /// `i_dim * o_dim` values are never expanded.
    Outer {
        /// Name of the parameter group.
        name: String,
        /// `[n, i_dim]`.
        inputs: Array2<f32>,
        /// `[n, o_dim]`.
        deltas: Array2<f32>,
    },
}

impl GradBlock {
    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        match self {
            GradBlock::Full { values, .. } => values.nrows(),
            GradBlock::Outer { inputs, .. } => inputs.nrows(),
        }
    }

    /// Number of parameters the block covers.
    pub fn n_params(&self) -> usize {
        match self {
            GradBlock::Full { values, .. } => values.ncols(),
            GradBlock::Outer { inputs, deltas, .. } => inputs.ncols() * deltas.ncols(),
        }
    }

    /// Name of the parameter group.
    pub fn name(&self) -> &str {
        match self {
            GradBlock::Full { name, .. } | GradBlock::Outer { name, .. } => name,
        }
    }

    /// Floats held in memory by this block.
    pub fn stored_floats(&self) -> usize {
        match self {
            GradBlock::Full { values, .. } => values.len(),
            GradBlock::Outer { inputs, deltas, .. } => inputs.len() + deltas.len(),
        }
    }

    /// Inner products of every sample of `self` with every sample of `other`, `[n_self, n_other]`.
    fn gram(&self, other: &GradBlock) -> Result<Array2<f32>> {
        match (self, other) {
            (GradBlock::Full { values: a, .. }, GradBlock::Full { values: b, .. })
                if a.ncols() == b.ncols() =>
            {
                Ok(a.dot(&b.t()))
            }
            (
                GradBlock::Outer {
                    inputs: ai,
                    deltas: ad,
                    ..
                },
                GradBlock::Outer {
                    inputs: bi,
                    deltas: bd,
                    ..
                },
            ) if ai.ncols() == bi.ncols() && ad.ncols() == bd.ncols() => {
                let mut g = ai.dot(&bi.t());
                g *= &ad.dot(&bd.t());
                Ok(g)
            }
            _ => {
                let a = self.to_full();
                let b = other.to_full();
                if a.ncols() != b.ncols() {
                    return Err(CoreError::shape(
                        format!("gradient block `{}`", other.name()),
                        b.shape(),
                        format!("[n, {}] to match block `{}`", a.ncols(), self.name()),
                    ));
                }
                Ok(a.dot(&b.t()))
            }
        }
    }

    /// Squared L2 norm of each sample's gradient.
    fn squared_norms(&self) -> Array1<f32> {
        match self {
            GradBlock::Full { values, .. } => values.map_axis(Axis(1), |r| r.dot(&r)),
            GradBlock::Outer { inputs, deltas, .. } => {
                let a = inputs.map_axis(Axis(1), |r| r.dot(&r));
                let d = deltas.map_axis(Axis(1), |r| r.dot(&r));
                a * d
            }
        }
    }

    /// The block expanded to `[n, p]`.
    pub fn to_full(&self) -> Array2<f32> {
        match self {
            GradBlock::Full { values, .. } => values.clone(),
            GradBlock::Outer { inputs, deltas, .. } => {
                let (n, i_dim) = inputs.dim();
                let o_dim = deltas.ncols();
                let mut out = Array2::zeros((n, i_dim * o_dim));
                for s in 0..n {
                    let mut row = out.row_mut(s);
                    for a in 0..i_dim {
                        let x = inputs[[s, a]];
                        let mut seg = row.slice_mut(s![a * o_dim..(a + 1) * o_dim]);
                        seg.zip_mut_with(&deltas.row(s), |o, d| *o = x * d);
                    }
                }
                out
            }
        }
    }

    fn select(&self, indices: &[usize]) -> GradBlock {
        match self {
            GradBlock::Full { name, values } => GradBlock::Full {
                name: name.clone(),
                values: values.select(Axis(0), indices),
            },
            GradBlock::Outer {
                name,
                inputs,
                deltas,
            } => GradBlock::Outer {
                name: name.clone(),
                inputs: inputs.select(Axis(0), indices),
                deltas: deltas.select(Axis(0), indices),
            },
        }
    }
}

/// Per-sample gradients of a loss with respect to a model's (selected) parameters: blocks in the
/// order of [`crate::DifferentiableModel::parameter_groups`], each holding all samples.
///
/// The flattened gradient of sample `i` is the concatenation of its rows in every block
/// ([`PerSampleGrads::to_flat`]); inner products and norms are computed block by block
/// ([`PerSampleGrads::gram`], [`PerSampleGrads::squared_norms`]) so factored blocks are never
/// expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct PerSampleGrads {
    blocks: Vec<GradBlock>,
    n_samples: usize,
}

impl PerSampleGrads {
    /// Builds the gradients from blocks that must all cover the same number of samples.
    pub fn new(blocks: Vec<GradBlock>) -> Result<Self> {
        let n_samples = blocks.first().map(|b| b.n_samples()).unwrap_or(0);
        for b in &blocks {
            if b.n_samples() != n_samples {
                return Err(CoreError::shape(
                    format!("gradient block `{}`", b.name()),
                    &[b.n_samples()],
                    format!("[{n_samples}] samples like the first block"),
                ));
            }
            if let GradBlock::Outer { inputs, deltas, .. } = b {
                if inputs.nrows() != deltas.nrows() {
                    return Err(CoreError::shape(
                        format!("deltas of block `{}`", b.name()),
                        deltas.shape(),
                        format!("{} rows like its inputs", inputs.nrows()),
                    ));
                }
            }
        }
        Ok(Self { blocks, n_samples })
    }

    /// The blocks.
    pub fn blocks(&self) -> &[GradBlock] {
        &self.blocks
    }

    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Length of one flattened gradient.
    pub fn n_params(&self) -> usize {
        self.blocks.iter().map(|b| b.n_params()).sum()
    }

    /// Floats held in memory (factored blocks hold far fewer than `n_samples * n_params`).
    pub fn stored_floats(&self) -> usize {
        self.blocks.iter().map(|b| b.stored_floats()).sum()
    }

    /// Inner products `<g_i, h_j>` of every sample of `self` with every sample of `other`,
    /// `[self.n_samples(), other.n_samples()]`. Both must come from the same parameters.
    pub fn gram(&self, other: &PerSampleGrads) -> Result<Array2<f32>> {
        if self.blocks.len() != other.blocks.len() {
            return Err(CoreError::shape(
                "gradient blocks",
                &[other.blocks.len()],
                format!(
                    "[{}] blocks (both gradients must cover the same parameters)",
                    self.blocks.len()
                ),
            ));
        }
        let mut total = Array2::zeros((self.n_samples, other.n_samples));
        for (a, b) in self.blocks.iter().zip(&other.blocks) {
            total += &a.gram(b)?;
        }
        Ok(total)
    }

    /// Squared L2 norm of each sample's flattened gradient.
    pub fn squared_norms(&self) -> Array1<f32> {
        let mut total = Array1::zeros(self.n_samples);
        for b in &self.blocks {
            total += &b.squared_norms();
        }
        total
    }

    /// Flattened gradients, `[n_samples, n_params]` (expands factored blocks).
    pub fn to_flat(&self) -> Array2<f32> {
        let mut out = Array2::zeros((self.n_samples, self.n_params()));
        let mut offset = 0;
        for b in &self.blocks {
            let full = b.to_full();
            out.slice_mut(s![.., offset..offset + full.ncols()])
                .assign(&full);
            offset += full.ncols();
        }
        out
    }

    /// The gradients of the samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> PerSampleGrads {
        PerSampleGrads {
            blocks: self.blocks.iter().map(|b| b.select(indices)).collect(),
            n_samples: indices.len(),
        }
    }

    /// Concatenates the samples of several gradient sets over the same parameters.
    pub fn concat(parts: &[PerSampleGrads]) -> Result<PerSampleGrads> {
        let Some(first) = parts.first() else {
            return Err(CoreError::Empty("list of gradient sets".into()));
        };
        let mut blocks = Vec::with_capacity(first.blocks.len());
        for (k, b0) in first.blocks.iter().enumerate() {
            let same = |p: &PerSampleGrads| p.blocks.get(k).map(|b| b.name() == b0.name());
            if parts.iter().any(|p| same(p) != Some(true)) {
                return Err(CoreError::InvalidParameter {
                    name: "gradient sets".into(),
                    value: "blocks that differ".into(),
                    expected: "sets over the same parameter groups".into(),
                });
            }
            let stack = |f: &dyn Fn(&GradBlock) -> Option<&Array2<f32>>| -> Result<Array2<f32>> {
                let views: Vec<_> = parts
                    .iter()
                    .map(|p| f(&p.blocks[k]).map(|a| a.view()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| CoreError::Serialize("gradient blocks of mixed form".into()))?;
                ndarray::concatenate(Axis(0), &views)
                    .map_err(|e| CoreError::Serialize(format!("cannot stack gradients: {e}")))
            };
            blocks.push(match b0 {
                GradBlock::Full { name, .. } => GradBlock::Full {
                    name: name.clone(),
                    values: stack(&|b| match b {
                        GradBlock::Full { values, .. } => Some(values),
                        _ => None,
                    })?,
                },
                GradBlock::Outer { name, .. } => GradBlock::Outer {
                    name: name.clone(),
                    inputs: stack(&|b| match b {
                        GradBlock::Outer { inputs, .. } => Some(inputs),
                        _ => None,
                    })?,
                    deltas: stack(&|b| match b {
                        GradBlock::Outer { deltas, .. } => Some(deltas),
                        _ => None,
                    })?,
                },
            });
        }
        PerSampleGrads::new(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arr(n: usize, m: usize, v: &[f32]) -> Array2<f32> {
        Array2::from_shape_fn((n, m), |(i, j)| v[(i * m + j) % v.len()] + 0.1 * i as f32)
    }

    proptest! {
        #[test]
        fn factored_gram_equals_expanded(v in proptest::collection::vec(-2.0f32..2.0, 1..40)) {
            let g = PerSampleGrads::new(vec![
                GradBlock::Outer { name: "w".into(), inputs: arr(3, 5, &v), deltas: arr(3, 4, &v[v.len() / 2..]) },
                GradBlock::Full { name: "b".into(), values: arr(3, 4, &v) },
            ]).unwrap();
            let h = g.select(&[2, 0]);
            let flat_g = g.to_flat();
            let flat_h = h.to_flat();
            let expect = flat_g.dot(&flat_h.t());
            let got = g.gram(&h).unwrap();
            for (a, b) in got.iter().zip(expect.iter()) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
            let norms = g.squared_norms();
            for i in 0..3 {
                let r = flat_g.row(i);
                prop_assert!((norms[i] - r.dot(&r)).abs() <= 1e-4 * (1.0 + norms[i]));
            }
            prop_assert_eq!(g.n_params(), 5 * 4 + 4);
            let joined = PerSampleGrads::concat(&[g.select(&[0]), g.select(&[1, 2])]).unwrap();
            prop_assert_eq!(joined, g);
        }
    }

    #[test]
    fn mismatched_blocks_are_errors() {
        let a = GradBlock::Full {
            name: "a".into(),
            values: Array2::zeros((2, 3)),
        };
        let b = GradBlock::Full {
            name: "b".into(),
            values: Array2::zeros((3, 3)),
        };
        assert!(PerSampleGrads::new(vec![a.clone(), b]).is_err());
        let g = PerSampleGrads::new(vec![a]).unwrap();
        let h = PerSampleGrads::new(vec![GradBlock::Full {
            name: "a".into(),
            values: Array2::zeros((2, 4)),
        }])
        .unwrap();
        assert!(g.gram(&h).is_err());
        let sel = ParamSelection::Groups(vec!["nope".into()]);
        let groups = vec![ParamGroup {
            name: "a".into(),
            shape: vec![3],
        }];
        assert!(sel
            .validate(&groups)
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }
}
