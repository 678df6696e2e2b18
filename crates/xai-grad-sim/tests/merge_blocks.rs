//! `merge_reference_blocks`: explanations of the same test instances against consecutive blocks
//! of the references, merged, equal the explanation against all references bit for bit (blocks
//! starting at multiples of `batch_size`, so every reference gradient comes from the same batch),
//! with and without kept scores and stored gradients; blocks that do not tile the set are errors.

mod common;

use common::*;
use ndarray::{ArrayD, Axis, Slice};
use proptest::prelude::*;
use xai_core::{Explanation, Targets};
use xai_grad_sim::{
    merge_reference_blocks, GradSimError, GradSimParams, GradSimValidParams, GradientSimilarity,
    ReferenceBlock, SimilarityData, SimilarityFn,
};

fn params(
    sim_fn: SimilarityFn,
    batch_size: usize,
    n_similar: usize,
    keep: bool,
    pre: bool,
) -> GradSimValidParams {
    GradSimParams::new(ce_probs())
        .sim_fn(sim_fn)
        .batch_size(batch_size)
        .n_similar(n_similar)
        .keep_scores(keep)
        .precompute_grads(pre)
        .check()
        .unwrap()
}

fn explain(
    model_seed: u64,
    p: &GradSimValidParams,
    x_ref: ArrayD<f32>,
    labels: &[usize],
    x_test: &ArrayD<f32>,
) -> Explanation<SimilarityData> {
    let model = softmax_model(model_seed);
    GradientSimilarity::new(&model, p.clone())
        .unwrap()
        .fit(x_ref, Targets::Classes(labels.to_vec()))
        .unwrap()
        .explain(x_test.view(), None)
        .unwrap()
}

/// The blocks `[cuts[i], cuts[i + 1])`, explained one by one.
fn blocks(
    model_seed: u64,
    p: &GradSimValidParams,
    x_ref: &ArrayD<f32>,
    labels: &[usize],
    x_test: &ArrayD<f32>,
    cuts: &[usize],
) -> Vec<ReferenceBlock> {
    cuts.windows(2)
        .map(|w| ReferenceBlock {
            offset: w[0],
            len: w[1] - w[0],
            explanation: explain(
                model_seed,
                p,
                x_ref
                    .slice_axis(Axis(0), Slice::from(w[0]..w[1]))
                    .to_owned(),
                &labels[w[0]..w[1]],
                x_test,
            ),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn merged_blocks_equal_the_whole_run(
        model_seed in 0u64..1000, data_seed in 0u64..1000, n_ref in 1usize..24,
        n_test in 1usize..4, batch_size in 1usize..6, n_similar in 1usize..8,
        keep in any::<bool>(), pre in any::<bool>(), cos in any::<bool>(),
        cut_seed in any::<u64>(), reverse in any::<bool>(),
    ) {
        let (x_ref, labels) = random_data(n_ref, data_seed);
        let (x_test, _) = random_data(n_test, data_seed + 7919);
        let sim_fn = if cos { SimilarityFn::GradCos } else { SimilarityFn::GradDot };
        let p = params(sim_fn, batch_size, n_similar, keep, pre);
        let whole = explain(model_seed, &p, x_ref.clone(), &labels, &x_test);
        // Cuts at multiples of the batch size, chosen by the seed.
        let chunks = n_ref.div_ceil(batch_size);
        let mut cuts = vec![0];
        for c in 1..chunks {
            if (cut_seed >> (c % 64)) & 1 == 1 {
                cuts.push(c * batch_size);
            }
        }
        cuts.push(n_ref);
        let mut parts = blocks(model_seed, &p, &x_ref, &labels, &x_test, &cuts);
        if reverse {
            parts.reverse();
        }
        let merged = merge_reference_blocks(parts).unwrap();
        prop_assert_eq!(merged, whole);
    }
}

#[test]
fn blocks_that_do_not_tile_the_references_are_errors() {
    let (x_ref, labels) = random_data(9, 1);
    let (x_test, _) = random_data(2, 2);
    let p = params(SimilarityFn::GradDot, 3, 2, true, false);
    let parts = blocks(5, &p, &x_ref, &labels, &x_test, &[0, 3, 6, 9]);
    let err = |parts: Vec<ReferenceBlock>| match merge_reference_blocks(parts) {
        Err(GradSimError::InvalidReferenceBlocks(m)) => m,
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(err(Vec::new()).contains("no reference block"));
    let gap = vec![parts[0].clone(), parts[2].clone()];
    assert!(err(gap).contains("a gap or an overlap"));
    let twice = vec![parts[0].clone(), parts[0].clone(), parts[1].clone()];
    assert!(err(twice).contains("a gap or an overlap"));
    let mut wrong_len = parts.clone();
    wrong_len[1].len = 4;
    wrong_len[2].offset = 7;
    assert!(err(wrong_len).contains("shape"));
    let other = blocks(
        5,
        &params(SimilarityFn::GradCos, 3, 2, true, false),
        &x_ref,
        &labels,
        &x_test,
        &[0, 3],
    );
    let mixed = vec![other[0].clone(), parts[1].clone(), parts[2].clone()];
    assert!(err(mixed).contains("other parameters"));
    let (x_other, _) = random_data(3, 3);
    let mut fewer = blocks(5, &p, &x_ref, &labels, &x_other, &[0, 3]);
    fewer.extend(parts[1..].iter().cloned());
    assert!(err(fewer).contains("other test instances"));
    let mut bad_index = parts.clone();
    bad_index[0].explanation.data.most_similar_indices[[0, 0]] = 3;
    assert!(err(bad_index).contains("names reference 3"));
    // The merge of the three blocks is the whole run.
    let whole = explain(5, &p, x_ref.clone(), &labels, &x_test);
    assert_eq!(merge_reference_blocks(parts).unwrap(), whole);
}
