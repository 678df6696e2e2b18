//! Building blocks for adapters that wrap another framework's model (dfdx, burn, ...) as a
//! [`crate::DifferentiableModel`].
//!
//! Frameworks with a tape (dfdx, burn) give the gradient of a *summed* loss; none has per-sample
//! gradients built in (no `vmap`). Two ways to get them, both here:
//!
//! * [`per_sample_from_rows`] — generic: the gradient of sample `i`'s loss is the summed gradient
//!   of a batch holding only row `i`. Rows run in parallel on rayon's threads; the result depends
//!   only on each row's own gradient, so it is the same for any number of threads.
//! * [`linear_weight_block`] — where the structure is known: a dense layer `y = W x + b`'s
//!   per-sample weight gradient is the outer product of its input and the gradient of the loss
//!   with respect to its output, which one batched backward pass gives for every sample at once
//!   (the losses are independent, so row `i` of the summed output gradient is sample `i`'s). It is
//!   stored factored ([`GradBlock::Outer`]), never expanded.

use std::collections::HashMap;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD};
use rayon::prelude::*;

use crate::{
    check_batch, CoreError, DifferentiableModel, GradBlock, ParamGroup, ParamSelection,
    PerSampleGrads, Result,
};

/// A named tensor's shape and its values, row-major.
pub type NamedTensor = (Vec<usize>, Vec<f32>);

/// Every tensor of an f32 safetensors file (e.g. one written by `xai_models::save_weights`), by
/// name: how weights move between `xai-models` and another framework. The error says what was
/// wrong (not safetensors, or a tensor of another dtype).
pub fn read_f32_safetensors(
    bytes: &[u8],
) -> std::result::Result<HashMap<String, NamedTensor>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            ));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// [`DifferentiableModel::input_gradient`] for a model whose tape computes pullbacks
/// ([`DifferentiableModel::predict_and_input_gradient`]): checks the batch and the weights'
/// shape `[n, n_outputs]`, then pulls the fixed weights back through one forward/backward pass.
pub fn input_gradient_by_pullback<M: DifferentiableModel + ?Sized>(
    model: &M,
    x: ArrayViewD<'_, f32>,
    output_weights: ArrayView2<'_, f32>,
) -> Result<ArrayD<f32>> {
    let n = check_batch("input", &x, model.input_shape())?;
    if output_weights.dim() != (n, model.n_outputs()) {
        return Err(CoreError::shape(
            "output weights",
            output_weights.shape(),
            format!("[{n}, {}]", model.n_outputs()),
        ));
    }
    let mut w = |_: ArrayView2<'_, f32>| Ok(output_weights.to_owned());
    model.predict_and_input_gradient(x, &mut w).map(|r| r.1)
}

/// How a dense layer stores its weight matrix, which fixes the order of its flattened gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[in, out]` (Keras, burn, `xai-models`' `Dense`): element `[a, o]` multiplies input `a`
    /// into output `o`.
    InOut,
    /// `[out, in]` (PyTorch, dfdx): element `[o, a]` multiplies input `a` into output `o`.
    OutIn,
}

/// The per-sample gradients of a dense layer's weight, factored: sample `s`'s gradient of
/// `y = W x + b` is `x_s ⊗ δ_s` (in [`WeightLayout::InOut`] order, `δ_s ⊗ x_s` in
/// [`WeightLayout::OutIn`] order), where `inputs` (`[n, in]`) are the layer's inputs and
/// `output_grads` (`[n, out]`) the gradients of each sample's loss with respect to its outputs.
///
/// The bias gradient is `output_grads` itself (a [`GradBlock::Full`]).
pub fn linear_weight_block(
    name: impl Into<String>,
    inputs: Array2<f32>,
    output_grads: Array2<f32>,
    layout: WeightLayout,
) -> Result<GradBlock> {
    let name = name.into();
    if inputs.nrows() != output_grads.nrows() {
        return Err(CoreError::shape(
            format!("output gradients of `{name}`"),
            output_grads.shape(),
            format!("[{}, out] (one row per input row)", inputs.nrows()),
        ));
    }
    Ok(match layout {
        WeightLayout::InOut => GradBlock::Outer {
            name,
            inputs,
            deltas: output_grads,
        },
        WeightLayout::OutIn => GradBlock::Outer {
            name,
            inputs: output_grads,
            deltas: inputs,
        },
    })
}

/// Per-sample gradients from a function that returns the gradient of one sample's loss.
///
/// `row_grads(i)` must return the gradient of sample `i`'s loss for every group of `groups`, in
/// that order, each flattened (row-major) to the group's length; typically the summed gradient of
/// a framework's tape for a batch holding only row `i`. Rows `0..n` are evaluated in parallel;
/// the groups that `selection` names become [`GradBlock::Full`] blocks in `groups` order.
///
/// Errors: an unknown group in `selection`, a gradient of the wrong length, or the first error
/// that `row_grads` returns.
pub fn per_sample_from_rows<F>(
    groups: &[ParamGroup],
    selection: &ParamSelection,
    n: usize,
    row_grads: F,
) -> Result<PerSampleGrads>
where
    F: Fn(usize) -> Result<Vec<Vec<f32>>> + Sync,
{
    selection.validate(groups)?;
    let rows: Vec<Vec<Vec<f32>>> = (0..n)
        .into_par_iter()
        .map(|i| checked_row(groups, i, row_grads(i)?))
        .collect::<Result<_>>()?;
    assemble(groups, selection, rows)
}

/// [`per_sample_from_rows`] with the rows evaluated one after another, on the calling thread.
///
/// For frameworks whose tape cannot run on rayon's threads: burn holds a global autodiff lock
/// during `backward` while its CPU kernels run on rayon, so a rayon worker that steals a second
/// row's closure inside the first row's backward pass waits for a lock its own thread holds.
/// The result is the same as [`per_sample_from_rows`]'s (each row's gradient depends on that row
/// alone); `row_grads` may still parallelise inside a row.
pub fn per_sample_from_rows_sequential<F>(
    groups: &[ParamGroup],
    selection: &ParamSelection,
    n: usize,
    mut row_grads: F,
) -> Result<PerSampleGrads>
where
    F: FnMut(usize) -> Result<Vec<Vec<f32>>>,
{
    selection.validate(groups)?;
    let rows: Vec<Vec<Vec<f32>>> = (0..n)
        .map(|i| checked_row(groups, i, row_grads(i)?))
        .collect::<Result<_>>()?;
    assemble(groups, selection, rows)
}

/// Checks that sample `i`'s gradients have one vector per group, each of the group's length.
fn checked_row(groups: &[ParamGroup], i: usize, g: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
    if g.len() != groups.len() {
        return Err(CoreError::shape(
            format!("gradients of sample {i}"),
            &[g.len()],
            format!("[{}] parameter groups", groups.len()),
        ));
    }
    for (v, group) in g.iter().zip(groups) {
        if v.len() != group.len() {
            return Err(CoreError::shape(
                format!("gradient of `{}` for sample {i}", group.name),
                &[v.len()],
                format!("[{}] (the group's shape {:?})", group.len(), group.shape),
            ));
        }
    }
    Ok(g)
}

/// The selected groups of checked per-row gradients as [`GradBlock::Full`] blocks.
fn assemble(
    groups: &[ParamGroup],
    selection: &ParamSelection,
    rows: Vec<Vec<Vec<f32>>>,
) -> Result<PerSampleGrads> {
    let n = rows.len();
    let blocks = (0..groups.len())
        .filter(|&k| selection.contains(&groups[k].name))
        .map(|k| {
            let len = groups[k].len();
            let mut values = Array2::zeros((n, len));
            for (i, row) in rows.iter().enumerate() {
                values
                    .row_mut(i)
                    .as_slice_mut()
                    .expect("a fresh standard-layout array")
                    .copy_from_slice(&row[k]);
            }
            GradBlock::Full {
                name: groups[k].name.clone(),
                values,
            }
        })
        .collect();
    PerSampleGrads::new(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Axis};
    use proptest::prelude::*;

    /// A linear model `y = W x` with `W` `[out, in]`; the loss of sample `s` is `c_s · y_s`, so
    /// its weight gradient is `c_s ⊗ x_s` in `[out, in]` order.
    fn linear_rows(x: &Array2<f32>, c: &Array2<f32>, i: usize) -> Vec<Vec<f32>> {
        let mut g = Vec::new();
        for o in 0..c.ncols() {
            for a in 0..x.ncols() {
                g.push(c[[i, o]] * x[[i, a]]);
            }
        }
        vec![g, c.row(i).to_vec()]
    }

    proptest! {
        #[test]
        fn factored_and_row_paths_agree(
            v in proptest::collection::vec(-2.0f32..2.0, 6..30),
            n in 1usize..6,
        ) {
            let x = Array2::from_shape_fn((n, 3), |(i, j)| v[(i * 3 + j) % v.len()]);
            let c = Array2::from_shape_fn((n, 2), |(i, j)| v[(i * 5 + j + 1) % v.len()] - 0.5);
            let groups = vec![
                ParamGroup { name: "w".into(), shape: vec![2, 3] },
                ParamGroup { name: "b".into(), shape: vec![2] },
            ];
            let rows = per_sample_from_rows(&groups, &ParamSelection::All, n, |i| {
                Ok(linear_rows(&x, &c, i))
            })
            .unwrap();
            let factored = PerSampleGrads::new(vec![
                linear_weight_block("w", x.clone(), c.clone(), WeightLayout::OutIn).unwrap(),
                GradBlock::Full { name: "b".into(), values: c.clone() },
            ])
            .unwrap();
            let (a, b) = (rows.to_flat(), factored.to_flat());
            prop_assert_eq!(a.dim(), b.dim());
            for (p, q) in a.iter().zip(b.iter()) {
                prop_assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()));
            }
            // The [in, out] layout is the transpose of each sample's gradient matrix.
            let io = linear_weight_block("w", x.clone(), c.clone(), WeightLayout::InOut).unwrap();
            let io = io.to_full();
            for s in 0..n {
                for o in 0..2 {
                    for i in 0..3 {
                        prop_assert_eq!(io[[s, i * 2 + o]], b[[s, o * 3 + i]]);
                    }
                }
            }
        }
    }

    #[test]
    fn selection_keeps_named_groups_in_order() {
        let groups = vec![
            ParamGroup {
                name: "a".into(),
                shape: vec![2],
            },
            ParamGroup {
                name: "b".into(),
                shape: vec![1],
            },
        ];
        let f = |i: usize| Ok(vec![vec![i as f32, 1.0], vec![-(i as f32)]]);
        let sel = ParamSelection::Groups(vec!["b".into()]);
        let g = per_sample_from_rows(&groups, &sel, 3, f).unwrap();
        assert_eq!(g.blocks().len(), 1);
        assert_eq!(g.to_flat(), array![[0.0f32], [-1.0], [-2.0]]);
        let all = per_sample_from_rows(&groups, &ParamSelection::All, 3, f).unwrap();
        assert_eq!(
            all.to_flat().index_axis(Axis(0), 2),
            array![2.0f32, 1.0, -2.0]
        );
        // The sequential path builds the same blocks, calling the rows in order.
        let mut calls = Vec::new();
        let seq = per_sample_from_rows_sequential(&groups, &sel, 3, |i| {
            calls.push(i);
            f(i)
        })
        .unwrap();
        assert_eq!(calls, vec![0, 1, 2]);
        assert_eq!(seq.to_flat(), g.to_flat());
        let seq_all = per_sample_from_rows_sequential(&groups, &ParamSelection::All, 3, f).unwrap();
        assert_eq!(seq_all.to_flat(), all.to_flat());
    }

    #[test]
    fn sequential_rows_report_the_same_errors() {
        let groups = vec![ParamGroup {
            name: "w".into(),
            shape: vec![2, 2],
        }];
        let err = per_sample_from_rows_sequential(&groups, &ParamSelection::All, 2, |_| {
            Ok(vec![vec![0.0; 3]])
        })
        .unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
        let err = per_sample_from_rows_sequential(&groups, &ParamSelection::All, 2, |_| {
            Ok(vec![vec![0.0; 4], vec![0.0; 1]])
        })
        .unwrap_err();
        assert!(err.to_string().contains("parameter groups"), "{err}");
        let mut calls = 0;
        let err = per_sample_from_rows_sequential(&groups, &ParamSelection::All, 3, |i| {
            calls += 1;
            if i == 1 {
                Err(CoreError::Model("row 1 failed".into()))
            } else {
                Ok(vec![vec![0.0; 4]])
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("row 1 failed"), "{err}");
        assert_eq!(calls, 2, "stops at the first failing row");
        let sel = ParamSelection::Groups(vec!["v".into()]);
        assert!(
            per_sample_from_rows_sequential(&groups, &sel, 1, |_| Ok(vec![vec![0.0; 4]])).is_err()
        );
    }

    #[test]
    fn wrong_lengths_and_errors_are_reported() {
        let groups = vec![ParamGroup {
            name: "w".into(),
            shape: vec![2, 2],
        }];
        let err =
            per_sample_from_rows(&groups, &ParamSelection::All, 2, |_| Ok(vec![vec![0.0; 3]]))
                .unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
        let err = per_sample_from_rows(&groups, &ParamSelection::All, 2, |i| {
            if i == 1 {
                Err(CoreError::Model("row 1 failed".into()))
            } else {
                Ok(vec![vec![0.0; 4]])
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("row 1 failed"), "{err}");
        let sel = ParamSelection::Groups(vec!["v".into()]);
        assert!(per_sample_from_rows(&groups, &sel, 1, |_| Ok(vec![vec![0.0; 4]])).is_err());
        let bad = linear_weight_block(
            "w",
            Array2::zeros((2, 3)),
            Array2::zeros((3, 1)),
            WeightLayout::InOut,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn safetensors_round_trip_and_errors() {
        use safetensors::tensor::{Dtype, TensorView};
        let w: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = vec![7u8, 8];
        let bytes = safetensors::serialize(
            [(
                "dense.weight",
                TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap(),
            )],
            &None,
        )
        .unwrap();
        let t = read_f32_safetensors(&bytes).unwrap();
        assert_eq!(
            t["dense.weight"],
            (vec![2, 3], vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0])
        );
        let bytes = safetensors::serialize(
            [("mask", TensorView::new(Dtype::U8, vec![2], &b).unwrap())],
            &None,
        )
        .unwrap();
        let err = read_f32_safetensors(&bytes).unwrap_err();
        assert!(
            err.contains("`mask`") && err.contains("expected F32"),
            "{err}"
        );
        assert!(read_f32_safetensors(b"not safetensors").is_err());
    }
}
