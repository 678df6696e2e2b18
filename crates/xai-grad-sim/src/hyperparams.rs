//! Hyperparameters: a builder ([`GradSimParams`]) with alibi's defaults, checked into
//! [`GradSimValidParams`].

use serde::{Deserialize, Serialize};
use xai_core::{Loss, ParamSelection};

use crate::error::{GradSimError, Result};
use crate::similarity::SimilarityFn;

/// The kind of task the model solves (alibi's `task`). It decides which targets are accepted and
/// what `explain` uses when no targets are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Targets are class indices or probability rows; without targets `explain` uses the model's
    /// predicted class (the argmax of its outputs).
    #[default]
    Classification,
    /// Targets are real-valued rows; `explain` requires them.
    Regression,
}

impl Task {
    /// alibi's name of the task.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// Default for `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Default for `n_similar` (alibi returns the 5 most and 5 least similar instances).
pub const DEFAULT_N_SIMILAR: usize = 5;
/// Default for `eps`, the stabiliser alibi adds to the denominators of `grad_cos` and
/// `grad_asym_dot` (`alibi.explainers.similarity.metrics`).
pub const DEFAULT_EPS: f32 = 1e-7;

/// Validated hyperparameters of [`crate::GradientSimilarity`]. Build them with
/// [`GradSimParams`] and [`GradSimParams::check`]; every field is serialised into the
/// explanation's `meta`. Deserialising runs the same checks, so a `batch_size` of 0 read from a
/// file is an error, not a checked value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct GradSimValidParams {
    pub(crate) loss: Loss,
    pub(crate) sim_fn: SimilarityFn,
    pub(crate) task: Task,
    pub(crate) precompute_grads: bool,
    pub(crate) batch_size: usize,
    pub(crate) n_similar: usize,
    pub(crate) keep_scores: bool,
    pub(crate) param_selection: ParamSelection,
    pub(crate) eps: f32,
}

impl Serialize for GradSimValidParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        GradSimValidParams::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for GradSimValidParams {
    /// Reads the fields, then validates them with [`GradSimParams::check`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let unchecked = GradSimValidParams::deserialize(d)?;
        GradSimParams(unchecked)
            .check()
            .map_err(serde::de::Error::custom)
    }
}

impl GradSimValidParams {
    /// The loss `L(f(x), y)` whose parameter gradients are compared.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The similarity kernel.
    pub fn sim_fn(&self) -> SimilarityFn {
        self.sim_fn
    }

    /// Classification or regression.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Whether `fit` computes and stores the reference gradients (alibi's `precompute_grads`).
    pub fn precompute_grads(&self) -> bool {
        self.precompute_grads
    }

    /// Number of instances per call to the model's per-sample gradients.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// How many most and least similar references each explanation reports.
    pub fn n_similar(&self) -> usize {
        self.n_similar
    }

    /// Whether explanations keep the full `[n_test, n_ref]` score matrix and ordering.
    pub fn keep_scores(&self) -> bool {
        self.keep_scores
    }

    /// Which parameters the gradients are taken with respect to.
    pub fn param_selection(&self) -> &ParamSelection {
        &self.param_selection
    }

    /// Stabiliser added to the denominators of `grad_cos` and `grad_asym_dot`.
    pub fn eps(&self) -> f32 {
        self.eps
    }
}

/// Builder for the hyperparameters of [`crate::GradientSimilarity`], with alibi's defaults:
/// `sim_fn = grad_dot`, `task = classification`, `precompute_grads = false`, 5 most/least
/// similar instances, `eps = 1e-7`. Beyond alibi: `batch_size` (gradients are computed for whole
/// batches), `keep_scores` (turn off to keep only the running top-k/bottom-k, for very large
/// reference sets) and `param_selection` (gradients with respect to some parameter groups only).
///
/// ```
/// use xai_core::{Loss, OutputKind};
/// use xai_grad_sim::{GradSimParams, SimilarityFn};
///
/// let params = GradSimParams::new(Loss::CrossEntropy(OutputKind::Probabilities))
///     .sim_fn(SimilarityFn::GradCos)
///     .precompute_grads(true)
///     .check()
///     .unwrap();
/// assert_eq!(params.n_similar(), 5);
/// assert!(GradSimParams::new(Loss::MeanSquaredError).batch_size(0).check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradSimParams(GradSimValidParams);

impl GradSimParams {
    /// Starts from alibi's defaults with the loss the model was trained with (alibi's `loss_fn`,
    /// e.g. `Loss::CrossEntropy(OutputKind::Probabilities)` for Keras' `categorical_crossentropy`
    /// on a softmax output).
    pub fn new(loss: Loss) -> Self {
        Self(GradSimValidParams {
            loss,
            sim_fn: SimilarityFn::GradDot,
            task: Task::Classification,
            precompute_grads: false,
            batch_size: DEFAULT_BATCH_SIZE,
            n_similar: DEFAULT_N_SIMILAR,
            keep_scores: true,
            param_selection: ParamSelection::All,
            eps: DEFAULT_EPS,
        })
    }

    /// Sets the loss.
    pub fn loss(mut self, loss: Loss) -> Self {
        self.0.loss = loss;
        self
    }

    /// Sets the similarity kernel (default `GradDot`).
    pub fn sim_fn(mut self, sim_fn: SimilarityFn) -> Self {
        self.0.sim_fn = sim_fn;
        self
    }

    /// Sets the task (default classification).
    pub fn task(mut self, task: Task) -> Self {
        self.0.task = task;
        self
    }

    /// Whether `fit` computes and stores the reference gradients in the model's compact form
    /// (default `false`: they are recomputed chunk by chunk at every `explain`).
    pub fn precompute_grads(mut self, precompute: bool) -> Self {
        self.0.precompute_grads = precompute;
        self
    }

    /// Instances per call to the model's batched per-sample gradients (default 64, must be > 0).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.0.batch_size = batch_size;
        self
    }

    /// Number of most and least similar references to report (default 5, must be > 0; capped at
    /// the size of the reference set).
    pub fn n_similar(mut self, n_similar: usize) -> Self {
        self.0.n_similar = n_similar;
        self
    }

    /// Whether explanations keep the full score matrix and ordering (default `true`). With
    /// `false` only the running top-k/bottom-k per test instance is kept, so memory does not grow
    /// with the reference set.
    pub fn keep_scores(mut self, keep: bool) -> Self {
        self.0.keep_scores = keep;
        self
    }

    /// Restricts the gradients to some parameter groups (default all).
    pub fn param_selection(mut self, selection: ParamSelection) -> Self {
        self.0.param_selection = selection;
        self
    }

    /// Stabiliser added to the denominators of `grad_cos` and `grad_asym_dot` (default `1e-7`,
    /// as alibi; must be finite and >= 0).
    pub fn eps(mut self, eps: f32) -> Self {
        self.0.eps = eps;
        self
    }

    /// Validates the parameters. The parameter selection is checked against the model's groups
    /// later, in [`crate::GradientSimilarity::new`].
    pub fn check(self) -> Result<GradSimValidParams> {
        let p = &self.0;
        if p.batch_size == 0 {
            return Err(GradSimError::InvalidParameter {
                name: "batch_size",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if p.n_similar == 0 {
            return Err(GradSimError::InvalidParameter {
                name: "n_similar",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if !p.eps.is_finite() || p.eps < 0.0 {
            return Err(GradSimError::InvalidParameter {
                name: "eps",
                value: p.eps.to_string(),
                expected: "a finite number >= 0",
            });
        }
        if let ParamSelection::Groups(groups) = &p.param_selection {
            if groups.is_empty() {
                return Err(GradSimError::InvalidParameter {
                    name: "param_selection",
                    value: "Groups([])".into(),
                    expected: "at least one parameter group name, or ParamSelection::All",
                });
            }
        }
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xai_core::OutputKind;

    #[test]
    fn defaults_follow_alibi() {
        let p = GradSimParams::new(Loss::CrossEntropy(OutputKind::Logits))
            .check()
            .unwrap();
        assert_eq!(p.sim_fn(), SimilarityFn::GradDot);
        assert_eq!(p.task(), Task::Classification);
        assert!(!p.precompute_grads());
        assert_eq!(p.n_similar(), 5);
        assert_eq!(p.eps(), 1e-7);
        assert!(p.keep_scores());
        assert_eq!(p.param_selection(), &ParamSelection::All);
    }

    #[test]
    fn invalid_parameters_are_typed_errors() {
        let base = GradSimParams::new(Loss::MeanSquaredError);
        let err = base.clone().batch_size(0).check().unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");
        let err = base.clone().n_similar(0).check().unwrap_err();
        assert!(err.to_string().contains("n_similar"), "{err}");
        for eps in [-1.0, f32::NAN, f32::INFINITY] {
            let err = base.clone().eps(eps).check().unwrap_err();
            assert!(err.to_string().contains("eps"), "{err}");
        }
        let err = base
            .param_selection(ParamSelection::Groups(vec![]))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("param_selection"), "{err}");
    }

    #[test]
    fn params_serialise_with_alibi_names() {
        let p = GradSimParams::new(Loss::MeanSquaredError)
            .sim_fn(SimilarityFn::GradAsymDot)
            .task(Task::Regression)
            .check()
            .unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["sim_fn"], "grad_asym_dot");
        assert_eq!(json["task"], "regression");
        assert_eq!(json["precompute_grads"], false);
        assert_eq!(json["batch_size"], 64);
    }

    #[test]
    fn deserialising_runs_the_checks() {
        let p = GradSimParams::new(Loss::MeanSquaredError).check().unwrap();
        let json = serde_json::to_value(&p).unwrap();
        let back: GradSimValidParams = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, p);
        for (field, value) in [
            ("batch_size", serde_json::json!(0)),
            ("n_similar", serde_json::json!(0)),
            ("eps", serde_json::json!(-1.0)),
        ] {
            let mut bad = json.clone();
            bad[field] = value;
            let err = serde_json::from_value::<GradSimValidParams>(bad).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
