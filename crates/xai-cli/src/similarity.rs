//! `xai similarity`: gradient similarity (`xai_grad_sim`, alibi's `GradientSimilarity`) of each
//! input against a labelled reference set; alibi's two figures per input.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::{Array3, ArrayView4, Axis};
use serde_json::json;
use xai_core::{argmax_rows, Targets};
use xai_grad_sim::{
    GradSimParams, GradientSimilarity, SimilarityFn, DEFAULT_BATCH_SIZE, DEFAULT_EPS,
    DEFAULT_N_SIMILAR,
};
use xai_viz::{similarity_class_bars, similarity_grid, ClassGrouping, SimilarityGridOptions};

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, Result};
use crate::inputs::{read_inputs, read_reference};
use crate::model::Outputs;
use crate::output::class_name;

/// The similarity kernel (the values are alibi's names, with dashes).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimFnArg {
    /// g · g' (alibi's default).
    GradDot,
    /// g · g' / (|g| |g'|): the cosine.
    GradCos,
    /// g · g' / |g'|²: the asymmetric kernel.
    GradAsymDot,
}

impl From<SimFnArg> for SimilarityFn {
    fn from(a: SimFnArg) -> Self {
        match a {
            SimFnArg::GradDot => SimilarityFn::GradDot,
            SimFnArg::GradCos => SimilarityFn::GradCos,
            SimFnArg::GradAsymDot => SimilarityFn::GradAsymDot,
        }
    }
}

/// `xai similarity` flags. Defaults are the library's (alibi's).
#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// Model, inputs, output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The reference set: a folder with one subfolder per class (the subfolder names are the
    /// labels: class indices when they are numbers, otherwise classes 0, 1, ... in name order),
    /// or images / `.npy` arrays / flat folders, labelled by --reference-labels or else by the
    /// model's predictions.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE|DIR")]
    pub reference: Vec<PathBuf>,
    /// A `.npy` array of one class index per reference sample.
    #[arg(long, value_name = "FILE.npy")]
    pub reference_labels: Option<PathBuf>,
    /// The similarity kernel.
    #[arg(long, value_enum, default_value_t = SimFnArg::GradDot)]
    pub sim_fn: SimFnArg,
    /// Compute and store the reference gradients once (faster for many inputs, more memory).
    #[arg(long)]
    pub precompute_grads: bool,
    /// Samples per per-sample-gradient call.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// How many most (and least) similar references to report and draw.
    #[arg(long, default_value_t = DEFAULT_N_SIMILAR)]
    pub n_similar: usize,
    /// Stabiliser of the grad-cos and grad-asym-dot denominators.
    #[arg(long, default_value_t = DEFAULT_EPS)]
    pub eps: f32,
}

fn grayscale(x: ArrayView4<'_, f32>) -> Array3<f32> {
    x.mean_axis(Axis(1))
        .unwrap_or_else(|| Array3::zeros((x.len_of(Axis(0)), x.shape()[2], x.shape()[3])))
}

/// Runs `xai similarity`.
pub fn run(a: &SimilarityArgs) -> Result<()> {
    let s = a.common.session(Outputs::ForLoss)?;
    let model = s.model.differentiable("similarity", "")?;
    let params = GradSimParams::new(s.model.loss())
        .sim_fn(a.sim_fn.into())
        .precompute_grads(a.precompute_grads)
        .batch_size(a.batch_size)
        .n_similar(a.n_similar)
        .eps(a.eps)
        .check()
        .map_err(usage)?;
    let samples = read_inputs(&a.common.input, &s.spec)?;
    let spinner = s.progress.spinner("reading the reference set");
    let refs = read_reference(&a.reference, a.reference_labels.as_deref(), &s.spec)?;
    spinner.finish_and_clear();
    let n_ref = refs.x.len_of(Axis(0));
    let k_out = s.model.n_outputs();
    let ref_preds = argmax_rows(
        s.model
            .predictor()
            .predict(refs.x.view().into_dyn())
            .map_err(|e| failed_in("running the model on the references", e))?
            .view(),
    );
    let ref_classes = refs.classes.clone().unwrap_or_else(|| ref_preds.clone());
    if let Some(bad) = ref_classes.iter().find(|&&c| c >= k_out) {
        return Err(usage(format!(
            "reference label {bad} is not a class of the model, which has {k_out} outputs \
             (label subfolders must be class indices 0..={}, or names of at most {k_out} classes)",
            k_out - 1
        )));
    }
    let names: Option<Vec<String>> = s.class_names.clone().or(refs.class_names.clone());
    let names = names.as_deref();
    let explainer = GradientSimilarity::new(model, params).map_err(usage)?;
    // Reference gradients are reported chunk by chunk by the library (with --precompute-grads;
    // otherwise fitting only checks and stores the set).
    let bar = if a.precompute_grads {
        s.progress.bar(n_ref, "reference gradients")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let fitted = explainer
        .fit_with_progress(
            refs.x.clone(),
            Targets::Classes(ref_classes.clone()),
            Some(&mut |p: &xai_grad_sim::Progress| bar.set_position(p.done as u64)),
        )
        .map_err(|e| failed_in("fitting on the reference set", e))?;
    bar.finish_and_clear();
    let ref_gray = grayscale(refs.x.view());
    let captions: Vec<String> = ref_classes
        .iter()
        .zip(&ref_preds)
        .map(|(l, p)| {
            format!(
                "label {}, pred {}",
                class_name(names, *l),
                class_name(names, *p)
            )
        })
        .collect();
    s.reporter
        .each_input(&s.progress, &samples, "similarity", |sample| {
            let x = sample.x.view().insert_axis(Axis(0));
            let e = fitted
                .explain(x.into_dyn(), None)
                .map_err(|e| failed_in(format!("explaining {}", sample.source), e))?;
            let prediction @ (pred, _) = s.model.prediction(sample.x.view())?;
            // The reference set's class names when no --class-names were given.
            let mut out = s.reporter.input(sample, names)?;
            out.set_top(&s.model.predict_one(sample.x.view())?, s.top_k);
            out.save(&e, None)?;
            let k = e.data.most_similar_indices.ncols();
            out.figure("most_similar.png", |path| {
                similarity_grid(
                    path,
                    grayscale(x).view(),
                    ref_gray.view(),
                    &e,
                    &SimilarityGridOptions {
                        k,
                        test_titles: Some(vec![format!(
                            "{}: pred {}",
                            sample.name,
                            class_name(names, pred)
                        )]),
                        reference_captions: Some(captions.clone()),
                        title: Some(format!(
                            "Most similar references ({}), most similar first",
                            SimilarityFn::from(a.sim_fn).name()
                        )),
                        value_range: Some(s.spec.pixels.range()),
                    },
                )
            })?;
            let mut groupings = vec![ClassGrouping {
                name: if refs.classes.is_some() {
                    "reference label".into()
                } else {
                    "reference prediction".into()
                },
                reference_classes: ref_classes.clone(),
                highlight: Some(vec![pred]),
            }];
            if refs.classes.is_some() {
                groupings.push(ClassGrouping {
                    name: "reference prediction".into(),
                    reference_classes: ref_preds.clone(),
                    highlight: Some(vec![pred]),
                });
            }
            out.figure("score_by_class.png", |path| {
                similarity_class_bars(
                    path,
                    &e,
                    &groupings,
                    Some("Mean similarity of the references, by class"),
                )
            })?;
            let most: Vec<_> = (0..k)
                .map(|j| {
                    let r = e.data.most_similar_indices[[0, j]];
                    json!({
                        "index": r,
                        "score": e.data.most_similar_scores[[0, j]],
                        "source": refs.sources[r],
                        "class": ref_classes[r],
                    })
                })
                .collect();
            let best = e.data.most_similar_indices[[0, 0]];
            let detail = format!(
                "most similar of {n_ref} references: {} ({}, score {:.4e})",
                refs.sources[best],
                class_name(names, ref_classes[best]),
                e.data.most_similar_scores[[0, 0]],
            );
            let result = json!({
                "method": "GradientSimilarity",
                "n_references": n_ref,
                "most_similar": most,
            });
            Ok(out.finish(prediction, result, &detail))
        })
}
