//! The identical class test of Hanawa et al. (2021, "Evaluation of similarity-based
//! explanations", section 4): a similarity passes for a test instance when the reference it
//! ranks most similar has the same class as the test instance. The score of a similarity is the
//! fraction of test instances for which it passes; Hanawa et al. report that `grad_cos` passes
//! almost always while `grad_dot` often fails, because large-norm outliers dominate it.
//!
//! All three kernels are evaluated from one pass over the gradients: they differ only in how the
//! inner products are normalised.

use ndarray::{Array2, ArrayViewD, Dimension};
use serde::{Deserialize, Serialize};
use xai_core::{argmax_rows, DifferentiableModel, Targets};

use crate::algorithm::{FittedGradientSimilarity, GradientSimilarity};
use crate::error::{GradSimError, Result};
use crate::gradients::batched_grads;
use crate::hyperparams::GradSimValidParams;
use crate::ranking::ScoreCollector;
use crate::similarity::SimilarityFn;

/// The identical class test result of one kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdenticalClassResult {
    /// The kernel.
    pub sim_fn: SimilarityFn,
    /// Test instances whose most similar reference has their class.
    pub n_identical: usize,
    /// `n_identical / n_test`.
    pub fraction: f64,
    /// For each test instance, the index of its most similar reference.
    pub top_reference: Vec<usize>,
}

/// The identical class test for all three kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdenticalClassReport {
    /// Number of test instances.
    pub n_test: usize,
    /// Number of reference instances.
    pub n_references: usize,
    /// The class each test instance was compared with (its label, or the model's prediction).
    pub test_classes: Vec<usize>,
    /// One result per kernel, in the order of [`SimilarityFn::ALL`].
    pub results: Vec<IdenticalClassResult>,
}

impl IdenticalClassReport {
    /// The result of one kernel.
    pub fn result(&self, sim_fn: SimilarityFn) -> Option<&IdenticalClassResult> {
        self.results.iter().find(|r| r.sim_fn == sim_fn)
    }
}

impl<M: DifferentiableModel + ?Sized> FittedGradientSimilarity<'_, M> {
    /// Runs the identical class test of Hanawa et al. (2021) on `x_test` for every kernel
    /// (whatever `sim_fn` the explainer was configured with), against this explainer's
    /// reference set, whose targets must be classes (class indices, or probability rows whose
    /// argmax is the class).
    ///
    /// `test_labels` are the classes the test instances' gradients are taken for and compared
    /// with; `None` uses the model's predictions (the explained class, as in Hanawa et al.).
    pub fn identical_class_test(
        &self,
        x_test: ArrayViewD<'_, f32>,
        test_labels: Option<&[usize]>,
    ) -> Result<IdenticalClassReport> {
        let ref_classes = reference_classes(self.reference_targets())?;
        let x_test = self.as_test_batch(x_test)?;
        let n_test = x_test.len_of(ndarray::Axis(0));
        let test_classes = match test_labels {
            Some(labels) => {
                // `explain` would broadcast a single label; here every instance needs its own.
                if labels.len() != n_test {
                    return Err(GradSimError::TargetCount {
                        what: "test",
                        got: labels.len(),
                        n_instances: n_test,
                        expected: format!("{n_test}, one label per test instance"),
                    });
                }
                labels.to_vec()
            }
            None => self.predict_classes(x_test.view())?,
        };
        let batch = self.prepare_test(x_test, Some(&Targets::Classes(test_classes.clone())))?;
        let params = self.params();
        let test_grads = batched_grads(
            self.model(),
            params,
            "test",
            batch.x.view(),
            &batch.targets,
            |_, _| {},
        )?;
        let mut collectors: Vec<(SimilarityFn, ScoreCollector)> = SimilarityFn::ALL
            .into_iter()
            .map(|f| {
                (
                    f,
                    ScoreCollector::new(n_test, self.n_references(), 1, false),
                )
            })
            .collect();
        let eps = params.eps();
        self.for_each_gram_block(&test_grads, |test, reference, dot| {
            for (sim_fn, collector) in &mut collectors {
                let scores = sim_fn.from_gram(
                    dot,
                    test.squared_norms.view(),
                    reference.squared_norms.view(),
                    eps,
                );
                collector.add_block(test.offset, reference.offset, scores.view());
            }
        })?;
        let results = collectors
            .into_iter()
            .map(|(sim_fn, collector)| {
                let ranking = collector.finish();
                let top_reference: Vec<usize> = ranking.most_indices.column(0).to_vec();
                let n_identical = top_reference
                    .iter()
                    .zip(&test_classes)
                    .filter(|(&r, &c)| ref_classes[r] == c)
                    .count();
                IdenticalClassResult {
                    sim_fn,
                    n_identical,
                    fraction: n_identical as f64 / n_test as f64,
                    top_reference,
                }
            })
            .collect();
        Ok(IdenticalClassReport {
            n_test,
            n_references: self.n_references(),
            test_classes,
            results,
        })
    }
}

/// The class of each reference: its index, or the argmax of its probability row.
fn reference_classes(targets: &Targets) -> Result<Vec<usize>> {
    match targets {
        Targets::Classes(c) => Ok(c.clone()),
        Targets::Probabilities(p) => Ok(argmax_rows(p.view())),
        Targets::Values(_) => Err(GradSimError::TargetsDoNotFitTask {
            what: "reference",
            got: "regression values",
            task: "identical class test (classification)",
            expected: "class indices or probability rows",
        }),
    }
}

/// The identical class test of Hanawa et al. (2021) from scratch: fits an explainer of `model`
/// with `params` (its `sim_fn` is ignored: all three kernels are tested) on references `x_ref`
/// with classes `ref_labels`, and tests `x_test` with classes `test_labels` (`None`: the model's
/// predictions).
pub fn identical_class_test<M: DifferentiableModel + ?Sized, D: Dimension>(
    model: &M,
    params: GradSimValidParams,
    x_ref: ndarray::Array<f32, D>,
    ref_labels: &[usize],
    x_test: ArrayViewD<'_, f32>,
    test_labels: Option<&[usize]>,
) -> Result<IdenticalClassReport> {
    let explainer = GradientSimilarity::new(model, params)?;
    let fitted = explainer.fit(x_ref, Targets::Classes(ref_labels.to_vec()))?;
    fitted.identical_class_test(x_test, test_labels)
}

/// One-hot rows for class labels (a convenience for callers holding labels that want
/// probability targets like alibi's `to_categorical`).
pub fn one_hot(labels: &[usize], n_classes: usize) -> Result<Array2<f32>> {
    let mut out = Array2::zeros((labels.len(), n_classes));
    for (i, &c) in labels.iter().enumerate() {
        if c >= n_classes {
            return Err(GradSimError::InvalidTarget {
                what: "label",
                index: i,
                problem: format!("class {c} is out of range: expected a class in 0..{n_classes}"),
            });
        }
        out[[i, c]] = 1.0;
    }
    Ok(out)
}
