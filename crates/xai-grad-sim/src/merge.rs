//! Merging explanations computed on disjoint blocks of the reference set into the explanation of
//! the whole set: the way a reference set too large for one machine is explained (each machine
//! fits on its block and explains every test instance; [`merge_reference_blocks`] then gives
//! exactly what one explainer fitted on all references returns).
//!
//! The merge ranks with the same total order as [`crate::FittedGradientSimilarity::explain`]
//! (higher score first, then lower index), so with every score kept it reproduces the full
//! ranking, and in streaming mode (`keep_scores(false)`) it reproduces the top-k and bottom-k:
//! the `k` most similar references overall are each among the `k` most similar of their own
//! block, and likewise for the least similar.

use ndarray::{Array2, ArrayD, Axis, IxDyn};
use xai_core::Explanation;

use crate::error::{GradSimError, Result};
use crate::explanation::SimilarityData;
use crate::hyperparams::GradSimValidParams;
use crate::ranking::ScoreCollector;

/// The explanation of the test instances against one block of the reference set: references
/// `offset..offset + len` of the whole set, with the block's indices counted from 0 (as an
/// explainer fitted on the block alone returns them).
#[derive(Debug, Clone)]
pub struct ReferenceBlock {
    /// The position of the block's first reference in the whole reference set.
    pub offset: usize,
    /// How many references the block holds.
    pub len: usize,
    /// What an explainer fitted on the block's references returned for the test instances
    /// (the same instances, targets and parameters for every block).
    pub explanation: Explanation<SimilarityData>,
}

fn invalid(problem: String) -> GradSimError {
    GradSimError::InvalidReferenceBlocks(problem)
}

/// Merges the explanations of the same test instances against consecutive blocks of the
/// reference set into the explanation against the whole set: the scores of every reference (when
/// kept), the full ranking, and the `n_similar` most and least similar references with their
/// indices in the whole set, scores and instances. Equal, bit for bit, to the explanation of an
/// explainer fitted on all the references when every block's scores equal the whole run's (the
/// same model, parameters and per-sample gradients; see the CLI's sharded runs, whose blocks
/// start at multiples of `batch_size` so that every gradient is computed in the same batch).
///
/// Blocks may come in any order; together they must cover `0..n` once. Errors
/// ([`GradSimError::InvalidReferenceBlocks`]): no block, blocks with different `meta` (method,
/// parameters, version), test instances or test classes, gaps or overlaps, or a block whose
/// arrays do not have the shapes its `len` and parameters give.
pub fn merge_reference_blocks(
    mut blocks: Vec<ReferenceBlock>,
) -> Result<Explanation<SimilarityData>> {
    if blocks.is_empty() {
        return Err(invalid("no reference block to merge".into()));
    }
    blocks.sort_by_key(|b| b.offset);
    let meta = blocks[0].explanation.meta.clone();
    let params: GradSimValidParams = serde_json::from_value(meta.params.clone()).map_err(|e| {
        invalid(format!(
            "the blocks' meta does not hold gradient similarity parameters ({e})"
        ))
    })?;
    let first = &blocks[0].explanation.data;
    let n_test = first.n_test();
    let instance_shape: Vec<usize> = first.most_similar.shape().get(2..).unwrap_or(&[]).to_vec();
    let mut n_ref = 0;
    for (b, block) in blocks.iter().enumerate() {
        let data = &block.explanation.data;
        if block.explanation.meta != meta {
            return Err(invalid(format!(
                "block {b} (references from {}) was explained with other parameters or another \
                 version than the first: {:?} against {:?}",
                block.offset, block.explanation.meta, meta
            )));
        }
        if block.offset != n_ref {
            return Err(invalid(format!(
                "the blocks do not cover the references once: a block starts at {} where \
                 {n_ref} was expected (a gap or an overlap)",
                block.offset
            )));
        }
        if block.len == 0 {
            return Err(invalid(format!("the block at {} is empty", block.offset)));
        }
        n_ref += block.len;
        if data.n_test() != n_test || data.test_classes != first.test_classes {
            return Err(invalid(format!(
                "the block at {} explains other test instances ({} instances, classes {:?}) \
                 than the first ({n_test}, classes {:?})",
                block.offset,
                data.n_test(),
                data.test_classes,
                first.test_classes
            )));
        }
        check_block(block, &params, n_test, &instance_shape)?;
    }
    let k = params.n_similar.min(n_ref);
    let mut collector = ScoreCollector::new(n_test, n_ref, params.n_similar, params.keep_scores);
    for block in &blocks {
        let data = &block.explanation.data;
        match (&data.scores, &data.ordered_indices) {
            (Some(scores), Some(order)) => {
                // Back into reference order, then into the whole set's columns.
                let mut by_ref = Array2::zeros((n_test, block.len));
                for ((i, j), &s) in scores.indexed_iter() {
                    by_ref[[i, order[[i, j]]]] = s;
                }
                collector.add_block(0, block.offset, by_ref.view());
            }
            _ => {
                // Streaming: each row's candidates, every reference once.
                for i in 0..n_test {
                    let mut candidates: Vec<(usize, f32)> = Vec::new();
                    let lists = [
                        (&data.most_similar_indices, &data.most_similar_scores),
                        (&data.least_similar_indices, &data.least_similar_scores),
                    ];
                    for (indices, scores) in lists {
                        for (&r, &s) in indices.row(i).iter().zip(scores.row(i)) {
                            if !candidates.iter().any(|&(c, _)| c == r) {
                                candidates.push((r, s));
                            }
                        }
                    }
                    candidates.sort_by_key(|&(r, _)| r);
                    for (r, s) in candidates {
                        let one = Array2::from_elem((1, 1), s);
                        collector.add_block(i, block.offset + r, one.view());
                    }
                }
            }
        }
    }
    let ranking = collector.finish();
    let gather = |indices: &Array2<usize>| -> Result<ArrayD<f32>> {
        let mut shape = vec![n_test, k];
        shape.extend_from_slice(&instance_shape);
        let mut out = ArrayD::zeros(IxDyn(&shape));
        for ((i, j), &g) in indices.indexed_iter() {
            let image = instance_of(&blocks, i, g)?;
            out.index_axis_mut(Axis(0), i)
                .index_axis_mut(Axis(0), j)
                .assign(&image);
        }
        Ok(out)
    };
    let (most, least) = (
        gather(&ranking.most_indices)?,
        gather(&ranking.least_indices)?,
    );
    let data = ranking.into_data(most, least, first.test_classes.clone());
    Ok(Explanation { meta, data })
}

/// Checks one block's arrays against its length and the parameters.
fn check_block(
    block: &ReferenceBlock,
    params: &GradSimValidParams,
    n_test: usize,
    instance_shape: &[usize],
) -> Result<()> {
    let data = &block.explanation.data;
    let k = params.n_similar.min(block.len);
    let at = block.offset;
    let mut image_shape = vec![n_test, k];
    image_shape.extend_from_slice(instance_shape);
    for (name, shape, want) in [
        (
            "most_similar_indices",
            data.most_similar_indices.shape(),
            &[n_test, k][..],
        ),
        (
            "most_similar_scores",
            data.most_similar_scores.shape(),
            &[n_test, k][..],
        ),
        (
            "least_similar_indices",
            data.least_similar_indices.shape(),
            &[n_test, k][..],
        ),
        (
            "least_similar_scores",
            data.least_similar_scores.shape(),
            &[n_test, k][..],
        ),
        ("most_similar", data.most_similar.shape(), &image_shape[..]),
        (
            "least_similar",
            data.least_similar.shape(),
            &image_shape[..],
        ),
    ] {
        if shape != want {
            return Err(invalid(format!(
                "the block at {at} of {} references has `{name}` of shape {shape:?}, expected \
                 {want:?}",
                block.len
            )));
        }
    }
    let out_of_range = data
        .most_similar_indices
        .iter()
        .chain(data.least_similar_indices.iter())
        .chain(data.ordered_indices.iter().flatten())
        .find(|&&r| r >= block.len);
    if let Some(r) = out_of_range {
        return Err(invalid(format!(
            "the block at {at} names reference {r}, but holds {} (indices count from the block's \
             first reference)",
            block.len
        )));
    }
    match (&data.scores, &data.ordered_indices, params.keep_scores) {
        (Some(s), Some(o), true) => {
            if s.dim() != (n_test, block.len) || o.dim() != (n_test, block.len) {
                return Err(invalid(format!(
                    "the block at {at} of {} references has scores of shape {:?} and ordered \
                     indices of shape {:?}, expected [{n_test}, {}] for both",
                    block.len,
                    s.shape(),
                    o.shape(),
                    block.len
                )));
            }
            for row in o.rows() {
                let mut seen = vec![false; block.len];
                for &r in row {
                    if std::mem::replace(&mut seen[r], true) {
                        return Err(invalid(format!(
                            "the block at {at} ranks reference {r} twice for one test instance"
                        )));
                    }
                }
            }
        }
        (None, None, false) => {}
        (s, _, keep) => {
            return Err(invalid(format!(
                "the block at {at} {} scores, but its parameters say keep_scores = {keep}",
                if s.is_some() { "holds" } else { "lacks" }
            )))
        }
    }
    Ok(())
}

/// The instance of reference `g` (an index into the whole set) that test row `i`'s lists in its
/// block hold.
fn instance_of(
    blocks: &[ReferenceBlock],
    i: usize,
    g: usize,
) -> Result<ndarray::ArrayViewD<'_, f32>> {
    let block = blocks
        .iter()
        .find(|b| (b.offset..b.offset + b.len).contains(&g))
        .ok_or_else(|| invalid(format!("reference {g} is in no block")))?;
    let local = g - block.offset;
    let data = &block.explanation.data;
    for (indices, images) in [
        (&data.most_similar_indices, &data.most_similar),
        (&data.least_similar_indices, &data.least_similar),
    ] {
        if let Some(j) = indices.row(i).iter().position(|&r| r == local) {
            return Ok(images.index_axis(Axis(0), i).index_axis_move(Axis(0), j));
        }
    }
    Err(invalid(format!(
        "reference {g} ranks among the most or least similar overall for test instance {i}, but \
         is not among its block's (the blocks' scores do not agree with their rankings)"
    )))
}
