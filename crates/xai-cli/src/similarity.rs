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
use crate::inputs::read_reference;
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
    /// Gradients with respect to these parameter groups only: names or patterns with `*`
    /// (e.g. `fc.*` or `layer4.*,fc.*`), comma-separated; alibi recommends a selection for large
    /// models. The groups are listed in the error for a pattern that matches none.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PATTERN,...",
        conflicts_with = "last_layers"
    )]
    pub params: Option<Vec<String>>,
    /// Gradients with respect to the parameters of the last K layers only (a layer: the groups
    /// that share a name up to the last `.`, e.g. `fc.weight` and `fc.bias`), e.g. 1 for the
    /// classifier head.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub last_layers: Option<u32>,
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The layer a parameter group belongs to: its name up to the last `.`.
fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

/// The parameter selection of `--params` / `--last-layers` among the model's `groups`.
fn param_selection(
    a: &SimilarityArgs,
    groups: &[xai_core::ParamGroup],
) -> Result<xai_core::ParamSelection> {
    let listed = || {
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let shown = names.len().min(12);
        format!(
            "{}{}",
            names[names.len() - shown..].join(", "),
            if names.len() > shown {
                format!(" (the last {shown} of {})", names.len())
            } else {
                String::new()
            }
        )
    };
    let selected: Vec<String> = if let Some(patterns) = &a.params {
        let mut picked = Vec::new();
        for p in patterns {
            let hits: Vec<&str> = groups
                .iter()
                .map(|g| g.name.as_str())
                .filter(|n| glob_match(p, n))
                .collect();
            if hits.is_empty() {
                return Err(usage(format!(
                    "--params: `{p}` matches no parameter group of the model; its groups are {}",
                    listed()
                )));
            }
            picked.extend(hits.into_iter().map(str::to_string));
        }
        groups
            .iter()
            .filter(|g| picked.contains(&g.name))
            .map(|g| g.name.clone())
            .collect()
    } else if let Some(k) = a.last_layers {
        let mut layers: Vec<&str> = Vec::new();
        for g in groups {
            let l = layer_of(&g.name);
            if layers.last() != Some(&l) {
                layers.push(l);
            }
        }
        if groups.is_empty() {
            return Err(usage("--last-layers: the model has no parameters"));
        }
        let keep = &layers[layers.len().saturating_sub(k as usize)..];
        groups
            .iter()
            .filter(|g| keep.contains(&layer_of(&g.name)))
            .map(|g| g.name.clone())
            .collect()
    } else {
        return Ok(xai_core::ParamSelection::All);
    };
    Ok(xai_core::ParamSelection::Groups(selected))
}

/// One line on the gradients' size: the selected parameters and, with `precompute`, the bytes
/// the stored reference gradients take at most (full rows; dense layers of shipped networks
/// are stored factored, smaller).
fn memory_estimate(
    groups: &[xai_core::ParamGroup],
    selection: &xai_core::ParamSelection,
    n_ref: usize,
    batch_size: usize,
    precompute: bool,
) -> String {
    let total: usize = groups.iter().map(|g| g.len()).sum();
    let selected: usize = groups
        .iter()
        .filter(|g| selection.contains(&g.name))
        .map(|g| g.len())
        .sum();
    let bytes = |floats: usize| {
        let b = floats as f64 * 4.0;
        match b {
            b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
            b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
            b => format!("{:.1} kB", b / 1e3),
        }
    };
    let mut line = format!(
        "gradients over {selected} of the model's {total} parameters ({} per sample)",
        bytes(selected)
    );
    if precompute {
        line.push_str(&format!(
            "; the {n_ref} precomputed reference gradients take at most {}",
            bytes(selected.saturating_mul(n_ref))
        ));
    } else {
        line.push_str(&format!(
            "; {} per batch of {batch_size} (not stored: --precompute-grads stores them)",
            bytes(selected.saturating_mul(batch_size))
        ));
    }
    line
}

fn grayscale(x: ArrayView4<'_, f32>) -> Array3<f32> {
    x.mean_axis(Axis(1))
        .unwrap_or_else(|| Array3::zeros((x.len_of(Axis(0)), x.shape()[2], x.shape()[3])))
}

/// Runs `xai similarity`.
pub fn run(a: &SimilarityArgs) -> Result<()> {
    let s = a.common.session(Outputs::ForLoss)?;
    let model = s.model.differentiable("similarity", "")?;
    let groups = model.parameter_groups();
    let selection = param_selection(a, &groups)?;
    let params = GradSimParams::new(s.model.loss())
        .param_selection(selection.clone())
        .sim_fn(a.sim_fn.into())
        .precompute_grads(a.precompute_grads)
        .batch_size(a.batch_size)
        .n_similar(a.n_similar)
        .eps(a.eps)
        .check()
        .map_err(usage)?;
    let samples = s.read_inputs(&a.common.input)?;
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
    let estimate = memory_estimate(&groups, &selection, n_ref, a.batch_size, a.precompute_grads);
    if s.progress.enabled() || a.params.is_some() || a.last_layers.is_some() {
        eprintln!("{estimate}");
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
        })?;
    s.finish(&samples)
}

#[cfg(test)]
mod selection_tests {
    use super::*;
    use crate::cli::{parse_minimal, Command};

    fn group(name: &str, shape: &[usize]) -> xai_core::ParamGroup {
        xai_core::ParamGroup {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    fn args(extra: &[&str]) -> SimilarityArgs {
        let mut all = vec!["--reference", "r"];
        all.extend_from_slice(extra);
        match parse_minimal("similarity", &all) {
            Ok(Command::Similarity(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patterns_and_last_layers_select_groups() {
        assert!(glob_match("fc.*", "fc.weight"));
        assert!(glob_match("*.bias", "layer4.1.bias"));
        assert!(glob_match("layer*.conv2*", "layer4.1.conv2.weight"));
        assert!(!glob_match("fc.*", "conv1.weight"));
        assert!(glob_match("fc.weight", "fc.weight"));
        let groups = [
            group("conv1.weight", &[8, 3, 3, 3]),
            group("layer1.0.weight", &[8, 8, 3, 3]),
            group("layer1.0.bias", &[8]),
            group("fc.weight", &[10, 8]),
            group("fc.bias", &[10]),
        ];
        let names = |sel: xai_core::ParamSelection| match sel {
            xai_core::ParamSelection::Groups(g) => g,
            xai_core::ParamSelection::All => vec!["<all>".into()],
        };
        assert_eq!(
            names(param_selection(&args(&["--last-layers", "1"]), &groups).unwrap()),
            ["fc.weight", "fc.bias"]
        );
        assert_eq!(
            names(param_selection(&args(&["--last-layers", "2"]), &groups).unwrap()),
            ["layer1.0.weight", "layer1.0.bias", "fc.weight", "fc.bias"]
        );
        assert_eq!(
            names(param_selection(&args(&["--params", "*.bias,conv1.*"]), &groups).unwrap()),
            ["conv1.weight", "layer1.0.bias", "fc.bias"]
        );
        let e = param_selection(&args(&["--params", "head.*"]), &groups).unwrap_err();
        assert!(
            e.one_line().contains("matches no parameter group"),
            "{}",
            e.one_line()
        );
        assert!(e.one_line().contains("fc.bias"), "{}", e.one_line());
        let sel = xai_core::ParamSelection::Groups(vec!["fc.weight".into(), "fc.bias".into()]);
        let line = memory_estimate(&groups, &sel, 10_000, 64, true);
        assert!(
            line.contains("over 90 of the model's 890 parameters (0.4 kB per sample)"),
            "{line}"
        );
        assert!(
            line.contains("10000 precomputed reference gradients take at most 3.6 MB"),
            "{line}"
        );
        let all = memory_estimate(
            &groups,
            &xai_core::ParamSelection::All,
            10,
            25_000_000,
            false,
        );
        assert!(all.contains("89.00 GB per batch of 25000000"), "{all}");
        assert!(parse_minimal(
            "similarity",
            &["--reference", "r", "--params", "fc.*", "--last-layers", "1"]
        )
        .is_err());
    }
}
