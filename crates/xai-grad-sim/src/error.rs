//! The error type of the crate.

use xai_core::CoreError;

/// Everything that can go wrong when configuring, fitting or running a gradient similarity
/// explainer. Every message says what was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum GradSimError {
    /// An error from the core traits: a model, a loss, a shape or finiteness check.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A hyperparameter was outside its valid range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// `fit` was given no reference instances.
    #[error("the reference set is empty: `fit` needs at least one reference instance")]
    EmptyReferenceSet,
    /// `explain` was given no test instances.
    #[error("the test batch is empty: `explain` needs at least one instance")]
    EmptyTestBatch,
    /// The number of targets did not match the number of instances.
    #[error("{got} {what} targets for {n_instances} instances: expected {expected}")]
    TargetCount {
        /// Which targets ("reference" or "test").
        what: &'static str,
        /// How many targets were passed.
        got: usize,
        /// How many instances they belong to.
        n_instances: usize,
        /// What a valid count is.
        expected: String,
    },
    /// The targets' kind does not fit the task (e.g. class labels for a regression task).
    #[error("{what} targets are {got}, which a {task} task cannot use: expected {expected}")]
    TargetsDoNotFitTask {
        /// Which targets ("reference" or "test").
        what: &'static str,
        /// The kind of targets passed.
        got: &'static str,
        /// The task, `classification` or `regression`.
        task: &'static str,
        /// What the task accepts.
        expected: &'static str,
    },
    /// A target value was out of range or not finite.
    #[error("{what} target of instance {index} is invalid: {problem}")]
    InvalidTarget {
        /// Which targets ("reference" or "test").
        what: &'static str,
        /// Index of the offending instance.
        index: usize,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// `explain` was called without targets on a regression task.
    #[error(
        "a regression task needs explicit test targets `y` (the model's prediction is only a \
         default for classification)"
    )]
    MissingRegressionTargets,
    /// The model returned gradients for the wrong number of samples.
    #[error("the model returned per-sample gradients for {got} samples, expected {expected}")]
    GradientCount {
        /// Samples covered by the returned gradients.
        got: usize,
        /// Samples in the batch passed to the model.
        expected: usize,
    },
    /// The model's gradient of an instance contained NaN or infinity.
    #[error(
        "the model's loss gradient for {what} instance {index} is not finite (squared norm \
         {squared_norm}): expected finite gradients; check the model's weights and inputs"
    )]
    NonFiniteGradient {
        /// Which instances ("reference" or "test").
        what: &'static str,
        /// Index of the instance.
        index: usize,
        /// The squared norm that was found.
        squared_norm: f32,
    },
    /// Explanations of blocks of the reference set that do not merge
    /// ([`crate::merge_reference_blocks`]).
    #[error("merging reference blocks: {0}")]
    InvalidReferenceBlocks(String),
}

/// Shorthand for results with [`GradSimError`].
pub type Result<T, E = GradSimError> = std::result::Result<T, E>;
