//! Fitting and explaining: [`GradientSimilarity`] (configured, not fitted) and
//! [`FittedGradientSimilarity`] (holding the reference set and, with `precompute_grads`, its
//! gradients). `explain` exists only on the fitted type, so explaining before fitting cannot be
//! written.

use ndarray::{Array, ArrayD, ArrayView2, ArrayViewD, Axis, Dimension, IxDyn};
use xai_core::{
    argmax_rows, check_batch, check_finite, CoreError, DifferentiableModel, Explanation, Meta,
    Targets,
};

use crate::error::{GradSimError, Result};
use crate::explanation::SimilarityData;
use crate::gradients::{
    batch_ranges, batched_grads, chunk_grads, slice_batch, validate_targets, GradChunk,
};
use crate::hyperparams::{GradSimValidParams, Task};
use crate::ranking::ScoreCollector;

/// Name of the method in explanations' `meta`.
pub const METHOD_NAME: &str = "GradientSimilarity";

/// Gradient similarity explainer (alibi's `GradientSimilarity`; Charpiat et al. 2019): explains
/// a model's prediction on an instance by the reference (e.g. training) instances whose loss
/// gradients with respect to the model's parameters are most similar to the instance's.
///
/// Built over any [`DifferentiableModel`]; [`GradientSimilarity::fit`] returns a
/// [`FittedGradientSimilarity`], which explains. Explaining before fitting does not compile:
///
/// ```compile_fail
/// use xai_core::{Loss, OutputKind};
/// use xai_testkit::grad_sim_toy::{OutputActivation, TwoLayerMlp};
/// use xai_grad_sim::{GradSimParams, GradientSimilarity};
///
/// let model = TwoLayerMlp::new_random(vec![2], 3, 2, OutputActivation::Softmax, 0).unwrap();
/// let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities)).check().unwrap();
/// let explainer = GradientSimilarity::new(&model, params).unwrap();
/// let x = ndarray::ArrayD::<f32>::zeros(vec![1, 2]);
/// explainer.explain(x.view(), None); // no `explain` before `fit`
/// ```
///
/// while the same calls with `fit` in between do:
///
/// ```
/// use xai_core::{Loss, OutputKind, Targets};
/// use xai_testkit::grad_sim_toy::{OutputActivation, TwoLayerMlp};
/// use xai_grad_sim::{GradSimParams, GradientSimilarity};
///
/// let model = TwoLayerMlp::new_random(vec![2], 3, 2, OutputActivation::Softmax, 0).unwrap();
/// let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities)).check().unwrap();
/// let explainer = GradientSimilarity::new(&model, params).unwrap();
/// let x = ndarray::ArrayD::<f32>::zeros(vec![1, 2]);
/// let fitted = explainer.fit(x.clone(), Targets::Classes(vec![1])).unwrap();
/// fitted.explain(x.view(), None).unwrap();
/// ```
pub struct GradientSimilarity<'m, M: ?Sized> {
    model: &'m M,
    params: GradSimValidParams,
    meta: Meta,
}

impl<'m, M: DifferentiableModel + ?Sized> GradientSimilarity<'m, M> {
    /// An explainer of `model` with validated `params`; fails if the parameter selection names
    /// a group the model does not have.
    pub fn new(model: &'m M, params: GradSimValidParams) -> Result<Self> {
        params.param_selection.validate(&model.parameter_groups())?;
        let meta = Meta::new(
            METHOD_NAME,
            &params,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
        )?;
        Ok(Self {
            model,
            params,
            meta,
        })
    }

    /// The hyperparameters.
    pub fn params(&self) -> &GradSimValidParams {
        &self.params
    }

    /// The `meta` every explanation of this explainer carries.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Fits the explainer on a reference set (alibi's `fit(X_train, Y_train)`): `x_ref` of shape
    /// `[n_ref, ..input_shape]` and one target per instance (class indices or probability rows
    /// for classification, value rows for regression).
    ///
    /// With `precompute_grads`, the reference gradients are computed here, `batch_size`
    /// instances per model call, and stored in the model's compact form (factored blocks stay
    /// factored). Otherwise they are recomputed chunk by chunk at each `explain`.
    ///
    /// Errors on an empty set, a wrong shape, NaN/infinite inputs, targets that do not match
    /// the instances, the model's outputs or the task, and non-finite model gradients.
    pub fn fit<D: Dimension>(
        &self,
        x_ref: Array<f32, D>,
        y_ref: Targets,
    ) -> Result<FittedGradientSimilarity<'m, M>> {
        self.fit_with_progress(x_ref, y_ref, None)
    }

    /// [`GradientSimilarity::fit`], reporting progress to `progress` after each chunk of
    /// `batch_size` reference gradients ([`Stage::ReferenceGradients`]; nothing is reported
    /// without `precompute_grads`, where `fit` only checks and stores the set).
    pub fn fit_with_progress<D: Dimension>(
        &self,
        x_ref: Array<f32, D>,
        y_ref: Targets,
        mut progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<FittedGradientSimilarity<'m, M>> {
        let x_ref = x_ref.into_dyn();
        let n_ref = check_batch(
            "reference inputs `x_ref`",
            &x_ref.view(),
            self.model.input_shape(),
        )?;
        if n_ref == 0 {
            return Err(GradSimError::EmptyReferenceSet);
        }
        check_finite("reference inputs `x_ref`", &x_ref.view())?;
        validate_targets(
            "reference",
            &y_ref,
            n_ref,
            self.model.n_outputs(),
            self.params.task,
            false,
        )?;
        let stored = if self.params.precompute_grads {
            Some(batched_grads(
                self.model,
                &self.params,
                "reference",
                x_ref.view(),
                &y_ref,
                |done, total| report(&mut progress, Stage::ReferenceGradients, done, total),
            )?)
        } else {
            None
        };
        Ok(FittedGradientSimilarity {
            model: self.model,
            params: self.params.clone(),
            meta: self.meta.clone(),
            x_ref,
            y_ref,
            stored,
        })
    }
}

/// A gradient similarity explainer fitted on a reference set; see [`GradientSimilarity`].
pub struct FittedGradientSimilarity<'m, M: ?Sized> {
    model: &'m M,
    params: GradSimValidParams,
    meta: Meta,
    x_ref: ArrayD<f32>,
    y_ref: Targets,
    stored: Option<Vec<GradChunk>>,
}

impl<M: ?Sized> std::fmt::Debug for GradientSimilarity<'_, M> {
    /// The parameters (the model need not implement `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradientSimilarity")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl<M: ?Sized> std::fmt::Debug for FittedGradientSimilarity<'_, M> {
    /// The parameters and the reference set's size (the model need not implement `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FittedGradientSimilarity")
            .field("params", &self.params)
            .field("reference_shape", &self.x_ref.shape())
            .field(
                "stored_gradient_chunks",
                &self.stored.as_ref().map(Vec::len),
            )
            .finish_non_exhaustive()
    }
}

/// A batch of test instances ready for gradients.
pub(crate) struct TestBatch<'a> {
    pub(crate) x: ArrayViewD<'a, f32>,
    pub(crate) targets: Targets,
    pub(crate) classes: Option<Vec<usize>>,
}

impl<'m, M: DifferentiableModel + ?Sized> FittedGradientSimilarity<'m, M> {
    /// The hyperparameters.
    pub fn params(&self) -> &GradSimValidParams {
        &self.params
    }

    /// The `meta` every explanation carries.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The explained model.
    pub fn model(&self) -> &'m M {
        self.model
    }

    /// Number of reference instances.
    pub fn n_references(&self) -> usize {
        self.x_ref.len_of(Axis(0))
    }

    /// The reference inputs, `[n_ref, ..input_shape]`.
    pub fn reference_inputs(&self) -> &ArrayD<f32> {
        &self.x_ref
    }

    /// The reference targets.
    pub fn reference_targets(&self) -> &Targets {
        &self.y_ref
    }

    /// Whether the reference gradients are stored (`precompute_grads`).
    pub fn has_stored_gradients(&self) -> bool {
        self.stored.is_some()
    }

    /// Floats held by the stored reference gradients (0 without `precompute_grads`); with
    /// factored blocks this is far below `n_ref * n_params`.
    pub fn stored_gradient_floats(&self) -> usize {
        self.stored.as_ref().map_or(0, |chunks| {
            chunks
                .iter()
                .map(|c| c.grads.stored_floats() + c.squared_norms.len())
                .sum()
        })
    }

    /// Explains test instances (alibi's `explain(X, Y)`): scores every reference against each
    /// test instance with the configured kernel and ranks them.
    ///
    /// `x` is one instance (`input_shape`) or a batch (`[n, ..input_shape]`). `y` holds one
    /// target per instance or a single target for all; without it a classification task uses
    /// the model's predicted class (argmax of its outputs) and a regression task fails.
    ///
    /// Test gradients are computed `batch_size` at a time, and scores come from block-wise
    /// inner products of the compact gradients ([`xai_core::PerSampleGrads::gram`]) against the
    /// stored reference gradients, or against reference gradients recomputed chunk by chunk.
    pub fn explain(
        &self,
        x: ArrayViewD<'_, f32>,
        y: Option<&Targets>,
    ) -> Result<Explanation<SimilarityData>> {
        self.explain_with_progress(x, y, None)
    }

    /// [`FittedGradientSimilarity::explain`], reporting progress to `progress`: after each chunk
    /// of test gradients ([`Stage::TestGradients`]), then after each chunk of references scored
    /// ([`Stage::Scores`]; with reference gradients recomputed, as without `precompute_grads`,
    /// this is the long part).
    pub fn explain_with_progress(
        &self,
        x: ArrayViewD<'_, f32>,
        y: Option<&Targets>,
        mut progress: Option<&mut dyn FnMut(&Progress)>,
    ) -> Result<Explanation<SimilarityData>> {
        let batch = self.prepare_test(x, y)?;
        let test_grads = batched_grads(
            self.model,
            &self.params,
            "test",
            batch.x.view(),
            &batch.targets,
            |done, total| report(&mut progress, Stage::TestGradients, done, total),
        )?;
        let n_test = batch.x.len_of(Axis(0));
        let mut collector = ScoreCollector::new(
            n_test,
            self.n_references(),
            self.params.n_similar,
            self.params.keep_scores,
        );
        let (sim_fn, eps) = (self.params.sim_fn, self.params.eps);
        let n_ref = self.n_references();
        let last_test = test_grads.len().saturating_sub(1);
        self.for_each_gram_block(&test_grads, |test, reference, dot| {
            let scores = sim_fn.from_gram(
                dot,
                test.squared_norms.view(),
                reference.squared_norms.view(),
                eps,
            );
            collector.add_block(test.offset, reference.offset, scores.view());
            if std::ptr::eq(test, &test_grads[last_test]) {
                let done = reference.offset + reference.squared_norms.len();
                report(&mut progress, Stage::Scores, done, n_ref);
            }
        })?;
        let ranking = collector.finish();
        let most = self.gather_references(&ranking.most_indices)?;
        let least = self.gather_references(&ranking.least_indices)?;
        let data = ranking.into_data(most, least, batch.classes);
        Ok(Explanation {
            meta: self.meta.clone(),
            data,
        })
    }

    /// Checks the test inputs (one instance or a batch; non-empty; finite) and returns them as
    /// a batch `[n, ..input_shape]`.
    pub fn as_test_batch<'a>(&self, x: ArrayViewD<'a, f32>) -> Result<ArrayViewD<'a, f32>> {
        let input_shape = self.model.input_shape();
        let x = if x.shape() == input_shape {
            x.insert_axis(Axis(0))
        } else {
            x
        };
        let n_test = check_batch("test inputs `x` (one instance or a batch)", &x, input_shape)?;
        if n_test == 0 {
            return Err(GradSimError::EmptyTestBatch);
        }
        check_finite("test inputs `x`", &x)?;
        Ok(x)
    }

    /// Checks the test inputs and resolves their targets.
    pub(crate) fn prepare_test<'a>(
        &self,
        x: ArrayViewD<'a, f32>,
        y: Option<&Targets>,
    ) -> Result<TestBatch<'a>> {
        let x = self.as_test_batch(x)?;
        let n_test = x.len_of(Axis(0));
        let targets = match y {
            Some(y) => {
                validate_targets(
                    "test",
                    y,
                    n_test,
                    self.model.n_outputs(),
                    self.params.task,
                    true,
                )?;
                if y.len() == n_test {
                    y.clone()
                } else {
                    y.select(&vec![0; n_test])?
                }
            }
            None => match self.params.task {
                Task::Regression => return Err(GradSimError::MissingRegressionTargets),
                Task::Classification => Targets::Classes(self.predict_classes(x.view())?),
            },
        };
        let classes = match &targets {
            Targets::Classes(c) => Some(c.clone()),
            _ => None,
        };
        Ok(TestBatch {
            x,
            targets,
            classes,
        })
    }

    /// The model's predicted class for each instance, `batch_size` at a time.
    pub(crate) fn predict_classes(&self, x: ArrayViewD<'_, f32>) -> Result<Vec<usize>> {
        let n = x.len_of(Axis(0));
        let mut classes = Vec::with_capacity(n);
        for (start, end) in batch_ranges(n, self.params.batch_size) {
            let xs = x.slice_axis(Axis(0), ndarray::Slice::from(start..end));
            let outputs = self.model.predict(xs)?;
            if outputs.nrows() != end - start {
                return Err(CoreError::Model(format!(
                    "the model returned {} output rows for a batch of {}",
                    outputs.nrows(),
                    end - start
                ))
                .into());
            }
            classes.extend(argmax_rows(outputs.view()));
        }
        Ok(classes)
    }

    /// Calls `visit(test_chunk, reference_chunk, dot)` for every pair of a test chunk and a
    /// reference chunk, with `dot[i, j] = g_test_i · g_ref_j`. Reference gradients are the
    /// stored ones or are recomputed here, one chunk at a time (only one chunk is alive at once).
    pub(crate) fn for_each_gram_block(
        &self,
        test_grads: &[GradChunk],
        mut visit: impl FnMut(&GradChunk, &GradChunk, ArrayView2<'_, f32>),
    ) -> Result<()> {
        let mut visit_reference = |reference: &GradChunk| -> Result<()> {
            for test in test_grads {
                let dot = test.grads.gram(&reference.grads)?;
                visit(test, reference, dot.view());
            }
            Ok(())
        };
        match &self.stored {
            Some(chunks) => {
                // The products of stored chunks are independent: compute a window of them on
                // rayon's threads, then visit them in order.
                use rayon::prelude::*;
                let window = 2 * rayon::current_num_threads().max(1);
                for group in chunks.chunks(window) {
                    let grams: Vec<Result<Vec<ndarray::Array2<f32>>>> = group
                        .par_iter()
                        .map(|reference| {
                            test_grads
                                .iter()
                                .map(|test| Ok(test.grads.gram(&reference.grads)?))
                                .collect()
                        })
                        .collect();
                    for (reference, dots) in group.iter().zip(grams) {
                        for (test, dot) in test_grads.iter().zip(dots?) {
                            visit(test, reference, dot.view());
                        }
                    }
                }
                Ok(())
            }
            None => {
                let x_ref = self.x_ref.view();
                for (start, end) in batch_ranges(self.n_references(), self.params.batch_size) {
                    let (xs, ys) = slice_batch(&x_ref, &self.y_ref, start, end)?;
                    let chunk = chunk_grads(self.model, &self.params, "reference", xs, &ys, start)?;
                    visit_reference(&chunk)?;
                }
                Ok(())
            }
        }
    }

    /// The reference instances at `indices[[i, j]]`, as `[n_test, k, ..input_shape]`.
    fn gather_references(&self, indices: &ndarray::Array2<usize>) -> Result<ArrayD<f32>> {
        let (n_test, k) = indices.dim();
        let flat: Vec<usize> = indices.iter().copied().collect();
        let picked = self.x_ref.select(Axis(0), &flat);
        let mut shape = vec![n_test, k];
        shape.extend_from_slice(&self.x_ref.shape()[1..]);
        picked.into_shape_with_order(IxDyn(&shape)).map_err(|e| {
            CoreError::shape("gathered reference instances", &[flat.len()], e.to_string()).into()
        })
    }
}

/// What a progress report of [`GradientSimilarity::fit_with_progress`] or
/// [`FittedGradientSimilarity::explain_with_progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Per-sample gradients of the reference set (`fit` with `precompute_grads`).
    ReferenceGradients,
    /// Per-sample gradients of the test instances.
    TestGradients,
    /// References scored against every test instance (recomputing their gradients when they
    /// were not stored).
    Scores,
}

/// A progress report: `done` of `total` instances of `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// What is being counted.
    pub stage: Stage,
    /// Instances finished so far in this stage.
    pub done: usize,
    /// Instances in this stage.
    pub total: usize,
}

fn report(
    progress: &mut Option<&mut dyn FnMut(&Progress)>,
    stage: Stage,
    done: usize,
    total: usize,
) {
    if let Some(f) = progress.as_mut() {
        f(&Progress { stage, done, total });
    }
}
