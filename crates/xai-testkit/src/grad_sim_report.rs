//! The MNIST example of alibi (`similarity_explanations_mnist`) as one call, for
//! `cargo xtask demo similarity` and the `toy_similarity` example: fit on a labelled reference
//! set, explain labelled test instances, run the identical class test, time both steps and
//! optionally write everything to a folder.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayD, ArrayViewD, Axis};
use serde::{Deserialize, Serialize};
use xai_core::{argmax_rows, CoreError, DifferentiableModel, Explanation, Targets};

use xai_grad_sim::GradSimValidParams;
use xai_grad_sim::GradientSimilarity;
use xai_grad_sim::IdenticalClassReport;
use xai_grad_sim::Result;
use xai_grad_sim::SimilarityData;

/// Everything the demo produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoReport {
    /// The explanation of the test instances.
    pub explanation: Explanation<SimilarityData>,
    /// The identical class test on the same test instances, with their labels.
    pub identical_class: IdenticalClassReport,
    /// Label of each test instance.
    pub test_labels: Vec<usize>,
    /// The model's prediction for each test instance.
    pub test_predictions: Vec<usize>,
    /// Labels of each test instance's most similar references, `[n_test][k]`.
    pub most_similar_labels: Vec<Vec<usize>>,
    /// Labels of each test instance's least similar references, `[n_test][k]`.
    pub least_similar_labels: Vec<Vec<usize>>,
    /// Seconds spent in `fit`.
    pub fit_seconds: f64,
    /// Seconds spent in `explain`.
    pub explain_seconds: f64,
    /// Floats held by stored reference gradients (0 without `precompute_grads`).
    pub stored_gradient_floats: usize,
    /// Files written, when an output folder was given.
    pub files: Vec<PathBuf>,
}

/// Runs the demo: fits a [`GradientSimilarity`] of `model` with `params` on `x_ref` (classes
/// `ref_labels`), explains `x_test` with their labels `test_labels` as targets (as alibi's
/// example does with `y_sample`), and runs the identical class test on them. With `out_dir`,
/// writes `explanation.json`, the explanation's arrays as `.npy` files and
/// `identical_class.json` there.
pub fn similarity_demo<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: GradSimValidParams,
    x_ref: ArrayD<f32>,
    ref_labels: &[usize],
    x_test: ArrayViewD<'_, f32>,
    test_labels: &[usize],
    out_dir: Option<&Path>,
) -> Result<DemoReport> {
    let explainer = GradientSimilarity::new(model, params)?;
    let start = Instant::now();
    let fitted = explainer.fit(x_ref, Targets::Classes(ref_labels.to_vec()))?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let explanation =
        fitted.explain(x_test.view(), Some(&Targets::Classes(test_labels.to_vec())))?;
    let explain_seconds = start.elapsed().as_secs_f64();
    let identical_class = fitted.identical_class_test(x_test.view(), Some(test_labels))?;
    let batch = fitted.as_test_batch(x_test.view())?;
    let test_predictions = argmax_rows(model.predict(batch.view())?.view());
    let labels_of = |indices: &ndarray::Array2<usize>| -> Vec<Vec<usize>> {
        indices
            .axis_iter(Axis(0))
            .map(|row| row.iter().map(|&r| ref_labels[r]).collect())
            .collect()
    };
    let mut report = DemoReport {
        most_similar_labels: labels_of(&explanation.data.most_similar_indices),
        least_similar_labels: labels_of(&explanation.data.least_similar_indices),
        explanation,
        identical_class,
        test_labels: test_labels.to_vec(),
        test_predictions,
        fit_seconds,
        explain_seconds,
        stored_gradient_floats: fitted.stored_gradient_floats(),
        files: Vec::new(),
    };
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).map_err(|source| CoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = dir.join("explanation.json");
        report.explanation.save_json(&json)?;
        report.files.push(json);
        report.files.extend(report.explanation.save_npy(dir)?);
        let ict = dir.join("identical_class.json");
        let text = serde_json::to_string_pretty(&report.identical_class)
            .map_err(|e| CoreError::Serialize(e.to_string()))?;
        std::fs::write(&ict, text).map_err(|source| CoreError::Io {
            path: ict.clone(),
            source,
        })?;
        report.files.push(ict);
    }
    Ok(report)
}

impl fmt::Display for DemoReport {
    /// A plain-text summary: per test instance its label, prediction and the labels and scores
    /// of its most similar references; then the identical class test and timings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = &self.explanation.meta;
        writeln!(
            f,
            "{} ({}), sim_fn = {}",
            meta.name, meta.version, meta.params["sim_fn"]
        )?;
        let data = &self.explanation.data;
        for i in 0..data.n_test() {
            write!(
                f,
                "test {i}: label {} prediction {} | most similar:",
                self.test_labels[i], self.test_predictions[i]
            )?;
            for (j, label) in self.most_similar_labels[i].iter().enumerate() {
                write!(
                    f,
                    " #{} (label {label}, score {:.4})",
                    data.most_similar_indices[[i, j]],
                    data.most_similar_scores[[i, j]]
                )?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "identical class test ({} test, {} references):",
            self.identical_class.n_test, self.identical_class.n_references
        )?;
        for r in &self.identical_class.results {
            writeln!(
                f,
                "  {:<14} {:>3}/{} = {:.3}",
                r.sim_fn.name(),
                r.n_identical,
                self.identical_class.n_test,
                r.fraction
            )?;
        }
        writeln!(
            f,
            "fit {:.3} s, explain {:.3} s, stored gradient floats {}",
            self.fit_seconds, self.explain_seconds, self.stored_gradient_floats
        )?;
        for file in &self.files {
            writeln!(f, "wrote {}", file.display())?;
        }
        Ok(())
    }
}

/// One timing and memory measurement of fit + explain (for `docs/BENCHMARKS.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleMeasurement {
    /// Number of reference instances.
    pub n_references: usize,
    /// Number of explained test instances.
    pub n_test: usize,
    /// Whether the reference gradients were stored (`precompute_grads`).
    pub precompute_grads: bool,
    /// Whether full score rows were kept (`keep_scores`).
    pub keep_scores: bool,
    /// Seconds spent in `fit`.
    pub fit_seconds: f64,
    /// Seconds spent in `explain`.
    pub explain_seconds: f64,
    /// Bytes held by the stored reference gradients.
    pub stored_gradient_bytes: usize,
    /// Bytes the same gradients would take fully expanded (`n_references * n_params * 4`).
    pub expanded_gradient_bytes: usize,
    /// The process's peak resident set size after explaining (Linux `VmHWM`), if readable.
    /// It is a process-wide high-water mark: measure one configuration per process.
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), where available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fits on `x_ref`/`y_ref` and explains `x_test`/`y_test` once, timing both steps and recording
/// the memory the stored gradients take against their expanded size.
pub fn measure_scale<M: DifferentiableModel + ?Sized>(
    model: &M,
    params: GradSimValidParams,
    x_ref: ArrayD<f32>,
    y_ref: Targets,
    x_test: ArrayViewD<'_, f32>,
    y_test: Option<&Targets>,
) -> Result<ScaleMeasurement> {
    let n_params: usize = model
        .parameter_groups()
        .iter()
        .filter(|g| params.param_selection().contains(&g.name))
        .map(|g| g.len())
        .sum();
    let (precompute_grads, keep_scores) = (params.precompute_grads(), params.keep_scores());
    let explainer = GradientSimilarity::new(model, params)?;
    let start = Instant::now();
    let fitted = explainer.fit(x_ref, y_ref)?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let explanation = fitted.explain(x_test, y_test)?;
    let explain_seconds = start.elapsed().as_secs_f64();
    let n_references = fitted.n_references();
    Ok(ScaleMeasurement {
        n_references,
        n_test: explanation.data.n_test(),
        precompute_grads,
        keep_scores,
        fit_seconds,
        explain_seconds,
        stored_gradient_bytes: fitted.stored_gradient_floats() * std::mem::size_of::<f32>(),
        expanded_gradient_bytes: n_references * n_params * std::mem::size_of::<f32>(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
