//! `xai similarity`: gradient similarity (`xai_grad_sim`, alibi's `GradientSimilarity`) of each
//! input against a labelled reference set; alibi's two figures per input.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use ndarray::{Array2, Array3, ArrayView1, ArrayView4, Axis, Slice};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xai_core::{argmax_rows, Explanation, Targets};
use xai_grad_sim::{
    merge_reference_blocks, GradSimParams, GradientSimilarity, ReferenceBlock, SimilarityData,
    SimilarityFn, DEFAULT_BATCH_SIZE, DEFAULT_EPS, DEFAULT_N_SIMILAR,
};
use xai_viz::{similarity_class_bars, similarity_grid, ClassGrouping, SimilarityGridOptions};

use crate::cli::CommonArgs;
use crate::error::{failed_in, usage, Result};
use crate::inputs::{read_npy_f32, read_reference, Sample};
use crate::model::Outputs;
use crate::output::{class_name, top, InputResult, Reporter};
use crate::shard::{Manifest, ReferenceShard, Shard};

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
    /// With --shard i/n: split the reference set instead of the inputs. Shard i fits on the i-th
    /// of n blocks of the references (cut at multiples of --batch-size) and scores every input
    /// against it; `xai merge` ranks the blocks' references into exactly what the unsharded run
    /// writes. For reference sets too large for one machine.
    #[arg(long, requires = "shard")]
    pub shard_references: bool,
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

/// The file in which a shard of the references (`--shard i/n --shard-references`) records its
/// block of the reference set and the run's settings, for `xai merge`.
pub const REFERENCES_FILE: &str = "references.json";

/// The subfolder of each input's folder in which a shard of the references writes its part:
/// the explanation against its block (indices counted from the block's first reference), the
/// input (`input.npy`) and the model's outputs for it (`outputs.npy`).
pub const BLOCK_DIR: &str = "reference_block";

/// What drawing and reporting an input's results needs besides its explanation: the references'
/// sources, classes and predicted classes (of a block of them, from `offset`, in a shard of the
/// references; of all of them otherwise), and the run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceContext {
    /// The position of the first reference described here in the whole set.
    pub offset: usize,
    /// How many references the whole set has.
    pub n_references: usize,
    /// Where each reference came from.
    pub sources: Vec<String>,
    /// Each reference's class (its label, or else the model's prediction).
    pub classes: Vec<usize>,
    /// The model's predicted class of each reference.
    pub predictions: Vec<usize>,
    /// Whether the classes are labels (not predictions).
    pub labelled: bool,
    /// The class names of figures and summaries.
    pub names: Option<Vec<String>>,
    /// How many top classes the summaries report.
    pub top_k: usize,
    /// The kernel's name, for the figure's title.
    pub sim_fn: String,
    /// The bit patterns of the pixel values drawn as black and white (bits, so that a merge
    /// draws with exactly the values of the shards).
    pub value_range_bits: [u32; 2],
}

impl ReferenceContext {
    fn value_range(&self) -> (f32, f32) {
        (
            f32::from_bits(self.value_range_bits[0]),
            f32::from_bits(self.value_range_bits[1]),
        )
    }

    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(REFERENCES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            usage(format!(
                "{}: cannot read it ({e}); the shard's folder is incomplete (rerun it)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            usage(format!(
                "{}: not a shard's reference record ({e})",
                path.display()
            ))
        })
    }
}

/// The block of `n_ref` references that `shard` fits on: the shard's part of the chunks of
/// `batch_size` references, so that every block starts at a multiple of `batch_size` and each
/// reference's gradient is computed in the same batch as in the unsharded run.
pub fn reference_block(shard: Shard, n_ref: usize, batch_size: usize) -> std::ops::Range<usize> {
    let chunks = shard.range(n_ref.div_ceil(batch_size.max(1)));
    (chunks.start * batch_size).min(n_ref)..(chunks.end * batch_size).min(n_ref)
}

/// The model's predicted class of each sample of `x`, `batch_size` samples per call (the calls
/// cut at the same samples in a shard of the references as in the whole run).
fn predicted_classes(
    model: &dyn xai_core::Predictor,
    x: ArrayView4<'_, f32>,
    batch_size: usize,
) -> Result<Vec<usize>> {
    let mut classes = Vec::with_capacity(x.len_of(Axis(0)));
    for chunk in x.axis_chunks_iter(Axis(0), batch_size.max(1)) {
        let out = model
            .predict(chunk.into_dyn())
            .map_err(|e| failed_in("running the model on the references", e))?;
        classes.extend(argmax_rows(out.view()));
    }
    Ok(classes)
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
    // A shard of the references explains every input against its block of them.
    let reference_shard = s.shard.filter(|_| a.shard_references);
    let samples = if reference_shard.is_some() {
        s.read_all_inputs(&a.common.input)?
    } else {
        s.read_inputs(&a.common.input)?
    };
    let spinner = s.progress.spinner("reading the reference set");
    let refs = read_reference(&a.reference, a.reference_labels.as_deref(), &s.spec)?;
    spinner.finish_and_clear();
    let n_ref = refs.x.len_of(Axis(0));
    let block = match reference_shard {
        Some(shard) => reference_block(shard, n_ref, a.batch_size),
        None => 0..n_ref,
    };
    let x_block = refs.x.slice_axis(Axis(0), Slice::from(block.clone()));
    let k_out = s.model.n_outputs();
    let ref_preds = predicted_classes(s.model.predictor(), x_block, a.batch_size)?;
    let ref_classes = match &refs.classes {
        Some(c) => c[block.clone()].to_vec(),
        None => ref_preds.clone(),
    };
    if let Some(bad) = ref_classes.iter().find(|&&c| c >= k_out) {
        return Err(usage(format!(
            "reference label {bad} is not a class of the model, which has {k_out} outputs \
             (label subfolders must be class indices 0..={}, or names of at most {k_out} classes)",
            k_out - 1
        )));
    }
    let estimate = memory_estimate(
        &groups,
        &selection,
        block.len(),
        a.batch_size,
        a.precompute_grads,
    );
    if s.progress.enabled() || a.params.is_some() || a.last_layers.is_some() {
        eprintln!("{estimate}");
    }
    let (lo, hi) = s.spec.pixels.range();
    let ctx = ReferenceContext {
        offset: block.start,
        n_references: n_ref,
        sources: refs.sources[block.clone()].to_vec(),
        classes: ref_classes.clone(),
        predictions: ref_preds,
        labelled: refs.classes.is_some(),
        // The reference set's class names when no --class-names were given.
        names: s.class_names.clone().or(refs.class_names.clone()),
        top_k: s.top_k,
        sim_fn: SimilarityFn::from(a.sim_fn).name().to_string(),
        value_range_bits: [lo.to_bits(), hi.to_bits()],
    };
    let explainer = GradientSimilarity::new(model, params).map_err(usage)?;
    let fitted = if block.is_empty() {
        // More shards than chunks of references: this one has none.
        None
    } else {
        // Reference gradients are reported chunk by chunk by the library (with
        // --precompute-grads; otherwise fitting only checks and stores the set).
        let bar = if a.precompute_grads {
            s.progress.bar(block.len(), "reference gradients")
        } else {
            indicatif::ProgressBar::hidden()
        };
        let fitted = explainer
            .fit_with_progress(
                x_block.to_owned(),
                Targets::Classes(ref_classes),
                Some(&mut |p: &xai_grad_sim::Progress| bar.set_position(p.done as u64)),
            )
            .map_err(|e| failed_in("fitting on the reference set", e))?;
        bar.finish_and_clear();
        Some(fitted)
    };
    let names = ctx.names.as_deref();
    s.reporter
        .each_input(&s.progress, &samples, "similarity", |sample| {
            let outputs = s.model.predict_one(sample.x.view())?;
            let explanation = match &fitted {
                Some(f) => Some(
                    f.explain(sample.x.view().insert_axis(Axis(0)).into_dyn(), None)
                        .map_err(|e| failed_in(format!("explaining {}", sample.source), e))?,
                ),
                None => None,
            };
            if reference_shard.is_none() {
                let e = explanation.ok_or_else(|| usage("the reference set is empty"))?;
                return write_input(&s.reporter, sample, &e, &ctx, &outputs);
            }
            // A shard of the references: its part, for `xai merge`.
            let mut out = s.reporter.input(sample, names)?;
            out.set_top(&outputs, s.top_k);
            if let Some(e) = &explanation {
                out.save(e, Some(BLOCK_DIR))?;
            }
            out.array(
                &format!("{BLOCK_DIR}/input.npy"),
                &sample.x.clone().into_dyn(),
            )?;
            out.array(
                &format!("{BLOCK_DIR}/outputs.npy"),
                &ndarray::ArrayD::from_shape_vec(vec![outputs.len()], outputs.clone())
                    .map_err(|e| failed_in("writing the outputs", e))?,
            )?;
            let detail = format!(
                "scored against references {}..{} of {n_ref} (merge the shards with `xai merge`)",
                block.start, block.end
            );
            let result = json!({
                "method": "GradientSimilarity",
                "n_references": n_ref,
                "reference_block": [block.start, block.end],
            });
            Ok(out.finish(top(ArrayView1::from(&outputs)), result, &detail))
        })?;
    match reference_shard {
        Some(_) => {
            let path = s.reporter.out.join(REFERENCES_FILE);
            let text = serde_json::to_string(&ctx)
                .map_err(|e| failed_in("writing the references' record", e))?;
            std::fs::write(&path, text + "\n")
                .map_err(|e| failed_in(format!("writing {}", path.display()), e))?;
            s.finish_with(
                &samples,
                Some(ReferenceShard {
                    offset: block.start,
                    len: block.len(),
                    n_references: n_ref,
                }),
            )
        }
        None => s.finish(&samples),
    }
}

/// Writes one input's results (its explanation against all the references, the two figures)
/// into its folder and returns its report line: the same code for a whole run and for `xai
/// merge`, so that both write the same bytes.
fn write_input(
    reporter: &Reporter,
    sample: &Sample,
    e: &Explanation<SimilarityData>,
    ctx: &ReferenceContext,
    outputs: &[f32],
) -> Result<InputResult> {
    let names = ctx.names.as_deref();
    let prediction @ (pred, _) = top(ArrayView1::from(outputs));
    let mut out = reporter.input(sample, names)?;
    out.set_top(outputs, ctx.top_k);
    out.save(e, None)?;
    let x = sample.x.view().insert_axis(Axis(0));
    let (_, c, h, w) = x.dim();
    // The references drawn, as a set of their own (the explanation holds them).
    let shown: Vec<usize> = e.data.most_similar_indices.row(0).to_vec();
    let k = shown.len();
    let shown_x = e
        .data
        .most_similar
        .index_axis(Axis(0), 0)
        .to_shape((k, c, h, w))
        .map_err(|err| failed_in("reading the most similar references", err))?
        .to_owned();
    let mut compact = e.clone();
    compact.data.most_similar_indices = Array2::from_shape_fn((1, k), |(_, j)| j);
    let caption = |r: usize| {
        format!(
            "label {}, pred {}",
            class_name(names, ctx.classes[r]),
            class_name(names, ctx.predictions[r])
        )
    };
    out.figure("most_similar.png", |path| {
        similarity_grid(
            path,
            grayscale(x).view(),
            grayscale(shown_x.view()).view(),
            &compact,
            &SimilarityGridOptions {
                k,
                test_titles: Some(vec![format!(
                    "{}: pred {}",
                    sample.name,
                    class_name(names, pred)
                )]),
                reference_captions: Some(shown.iter().map(|&r| caption(r)).collect()),
                title: Some(format!(
                    "Most similar references ({}), most similar first",
                    ctx.sim_fn
                )),
                value_range: Some(ctx.value_range()),
            },
        )
    })?;
    let mut groupings = vec![ClassGrouping {
        name: if ctx.labelled {
            "reference label".into()
        } else {
            "reference prediction".into()
        },
        reference_classes: ctx.classes.clone(),
        highlight: Some(vec![pred]),
    }];
    if ctx.labelled {
        groupings.push(ClassGrouping {
            name: "reference prediction".into(),
            reference_classes: ctx.predictions.clone(),
            highlight: Some(vec![pred]),
        });
    }
    out.figure("score_by_class.png", |path| {
        similarity_class_bars(
            path,
            e,
            &groupings,
            Some("Mean similarity of the references, by class"),
        )
    })?;
    let most: Vec<_> = (0..k)
        .map(|j| {
            let r = shown[j];
            json!({
                "index": r,
                "score": e.data.most_similar_scores[[0, j]],
                "source": ctx.sources[r],
                "class": ctx.classes[r],
            })
        })
        .collect();
    let best = shown[0];
    let detail = format!(
        "most similar of {} references: {} ({}, score {:.4e})",
        ctx.n_references,
        ctx.sources[best],
        class_name(names, ctx.classes[best]),
        e.data.most_similar_scores[[0, 0]],
    );
    let result = json!({
        "method": "GradientSimilarity",
        "n_references": ctx.n_references,
        "most_similar": most,
    });
    Ok(out.finish(prediction, result, &detail))
}

/// `xai merge` of the shards of the references of one `xai similarity` run (`shards` in shard
/// order, their manifests checked against each other): ranks every input's references from all
/// the blocks ([`merge_reference_blocks`]) and writes exactly what the unsharded run writes into
/// `out`. Returns the number of inputs.
pub fn merge_reference_shards(shards: &[(&Manifest, &Path)], out: &Path) -> Result<usize> {
    let (first, first_dir) = shards[0];
    let mut blocks: Vec<(ReferenceShard, &Path)> = Vec::new();
    for (m, d) in shards {
        let Some(r) = m.references else {
            return Err(usage(format!(
                "{} and {}: a shard of the inputs and a shard of the references \
                 (--shard-references) do not merge",
                first_dir.display(),
                d.display()
            )));
        };
        if m.inputs != first.inputs || m.n_inputs != m.inputs.len() {
            return Err(usage(format!(
                "{} and {}: shards of the references hold every input, but these hold different \
                 inputs (rerun the shard)",
                first_dir.display(),
                d.display()
            )));
        }
        blocks.push((r, d));
    }
    // The references' record of the whole set.
    let mut ctx: Option<ReferenceContext> = None;
    for (r, d) in &blocks {
        let part = ReferenceContext::read(d)?;
        if part.offset != r.offset || part.sources.len() != r.len {
            return Err(usage(format!(
                "{}: {REFERENCES_FILE} does not describe the shard's block of references",
                d.display()
            )));
        }
        match &mut ctx {
            None => ctx = Some(part),
            Some(all) => {
                let same_run = ReferenceContext {
                    offset: all.offset,
                    sources: Vec::new(),
                    classes: Vec::new(),
                    predictions: Vec::new(),
                    ..part.clone()
                } == ReferenceContext {
                    sources: Vec::new(),
                    classes: Vec::new(),
                    predictions: Vec::new(),
                    ..all.clone()
                };
                if !same_run || part.offset != all.offset + all.sources.len() {
                    return Err(usage(format!(
                        "{}: its block of references does not follow the previous shard's, or \
                         its settings differ (rerun the shards with one command line)",
                        d.display()
                    )));
                }
                all.sources.extend(part.sources);
                all.classes.extend(part.classes);
                all.predictions.extend(part.predictions);
            }
        }
    }
    let ctx = ctx.ok_or_else(|| usage("xai merge: no shard folder given"))?;
    if ctx.sources.len() != ctx.n_references {
        return Err(usage(format!(
            "the shards cover {} of the {} references (rerun the missing shard)",
            ctx.sources.len(),
            ctx.n_references
        )));
    }
    let names: Vec<String> = first.inputs.iter().map(|i| i.name.clone()).collect();
    crate::shard::prepare_merge_folder(out, &names)?;
    let reporter = Reporter::new(out.to_path_buf(), false)?;
    for input in &first.inputs {
        let part = |d: &Path, file: &str| d.join(&input.name).join(BLOCK_DIR).join(file);
        let x = read_npy_f32(&part(first_dir, "input.npy"))?;
        let outputs = read_npy_f32(&part(first_dir, "outputs.npy"))?;
        let mut parts = Vec::new();
        for (r, d) in &blocks {
            let same = |file: &str| -> Result<bool> {
                let read = |p: PathBuf| {
                    std::fs::read(&p).map_err(|e| {
                        usage(format!(
                            "{}: cannot read it ({e}); the shard's folder is incomplete (rerun it)",
                            p.display()
                        ))
                    })
                };
                Ok(read(part(d, file))? == read(part(first_dir, file))?)
            };
            if !same("input.npy")? || !same("outputs.npy")? {
                return Err(usage(format!(
                    "{} and {}: the input {} or the model's outputs for it differ between the \
                     shards",
                    first_dir.display(),
                    d.display(),
                    input.source
                )));
            }
            if r.len > 0 {
                parts.push(ReferenceBlock {
                    offset: r.offset,
                    len: r.len,
                    explanation: read_block_explanation(&d.join(&input.name).join(BLOCK_DIR))?,
                });
            }
        }
        let e = merge_reference_blocks(parts)
            .map_err(|e| usage(format!("merging the explanations of {}: {e}", input.source)))?;
        let dims = x.shape().to_vec();
        let x = x
            .into_shape_with_order((dims[0], dims[1], dims[2]))
            .map_err(|_| usage(format!("{}: not a [c, h, w] input", input.source)))?;
        let sample = Sample {
            source: input.source.clone(),
            name: input.name.clone(),
            x,
            label: None,
            index: input.index,
        };
        write_input(
            &reporter,
            &sample,
            &e,
            &ctx,
            outputs.as_slice().unwrap_or(&[]),
        )?;
    }
    Manifest {
        shard: None,
        references: None,
        ..first.clone()
    }
    .write(out)?;
    Ok(first.inputs.len())
}

/// Reads a shard's explanation against its block: `explanation.json`, with the float arrays
/// from their `.npy` files (exact, where JSON's decimal floats might not read back to the same
/// bits).
fn read_block_explanation(dir: &Path) -> Result<Explanation<SimilarityData>> {
    let path = dir.join("explanation.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        usage(format!(
            "{}: cannot read it ({e}); the shard's folder is incomplete (rerun it)",
            path.display()
        ))
    })?;
    let mut e: Explanation<SimilarityData> = serde_json::from_str(&text).map_err(|e| {
        usage(format!(
            "{}: not a similarity explanation ({e})",
            path.display()
        ))
    })?;
    let two = |name: &str| -> Result<Array2<f32>> {
        read_npy_f32(&dir.join(format!("{name}.npy")))?
            .into_dimensionality()
            .map_err(|_| usage(format!("{}: {name}.npy is not a matrix", dir.display())))
    };
    if e.data.scores.is_some() {
        e.data.scores = Some(two("scores")?);
    }
    e.data.most_similar_scores = two("most_similar_scores")?;
    e.data.least_similar_scores = two("least_similar_scores")?;
    e.data.most_similar = read_npy_f32(&dir.join("most_similar.npy"))?;
    e.data.least_similar = read_npy_f32(&dir.join("least_similar.npy"))?;
    Ok(e)
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
