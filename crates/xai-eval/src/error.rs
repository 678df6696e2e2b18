//! The error type of the crate.

use xai_core::CoreError;

/// Everything that can go wrong when configuring or running a metric. Every message says what
/// was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An error from the core traits: a model call, a shape or finiteness check.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A parameter was outside its valid range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// An array (input, attribution map, label map, perturbations) had the wrong shape.
    #[error("{what} has shape {got:?}: expected {expected}")]
    Shape {
        /// Which array.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape that was expected.
        expected: String,
    },
    /// The target class is not one of the model's outputs.
    #[error("target {target} is not an output of the model: expected 0..{n_outputs}")]
    Target {
        /// The target passed.
        target: usize,
        /// The model's number of outputs.
        n_outputs: usize,
    },
    /// A metric needs something the evaluation context does not hold (an explainer to re-run,
    /// a randomisable model, a label map).
    #[error("metric `{metric}` needs {needs}, which the evaluation context does not provide")]
    Missing {
        /// The metric's name.
        metric: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// A metric name that is not one of [`crate::METRIC_NAMES`].
    #[error("unknown metric `{0}`: expected one of {names}", names = crate::METRIC_NAMES.join(", "))]
    UnknownMetric(String),
    /// The explainer passed to a robustness or randomisation metric failed.
    #[error("the explainer failed: {0}")]
    Explainer(String),
    /// The model cannot be randomised as asked.
    #[error("cannot randomise the model: {0}")]
    Randomize(String),
    /// A value the metric computed was NaN or infinite (e.g. a correlation of a constant
    /// series, or a sensitivity relative to an all-zero map).
    #[error("{what} is not finite ({value}): {why}")]
    NonFinite {
        /// What was computed.
        what: &'static str,
        /// The value.
        value: f64,
        /// Why it happens and what to change.
        why: &'static str,
    },
}

impl EvalError {
    /// Wraps an explainer's error (any displayable error) as [`EvalError::Explainer`].
    pub fn explainer(e: impl std::fmt::Display) -> Self {
        EvalError::Explainer(e.to_string())
    }

    pub(crate) fn param(
        name: &'static str,
        value: impl std::fmt::Debug,
        expected: &'static str,
    ) -> Self {
        EvalError::InvalidParameter {
            name,
            value: format!("{value:?}"),
            expected,
        }
    }
}

/// Shorthand for results with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
