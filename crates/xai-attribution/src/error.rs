//! The error type of the crate.

use xai_core::CoreError;

/// Everything that can go wrong when configuring or running an attribution method. Every
/// message says what was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// An error from the core traits: a model error, a shape or finiteness check.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A hyperparameter was outside its valid range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name (captum's where captum has it).
        name: &'static str,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// The batch to explain had no inputs.
    #[error("the input batch is empty: at least one input is required")]
    EmptyBatch,
    /// The number of target rows did not match the number of inputs.
    #[error("{got} target rows for {n_inputs} inputs: expected one row of classes per input")]
    TargetCount {
        /// Rows of targets passed.
        got: usize,
        /// Inputs in the batch.
        n_inputs: usize,
    },
    /// A target class was not one of the model's outputs.
    #[error(
        "target class {class} of input {input} is out of range: the model has {n_outputs} \
         outputs (expected 0..{n_outputs})"
    )]
    TargetOutOfRange {
        /// Index of the input.
        input: usize,
        /// The class asked for.
        class: usize,
        /// The model's number of outputs.
        n_outputs: usize,
    },
    /// Several classes per input were given with different counts, or none.
    #[error("input {input} has {got} target classes, expected {expected} (the same number, at least 1, for every input)")]
    TargetWidth {
        /// Index of the input.
        input: usize,
        /// Its number of classes.
        got: usize,
        /// The number the first input has (or 1).
        expected: usize,
    },
    /// An array argument had the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The shape passed.
        got: Vec<usize>,
        /// The expected shape.
        expected: String,
    },
    /// An array argument held NaN or infinity.
    #[error("{what} contains a non-finite value ({value}) at flat index {index}: expected finite values")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// The model returned NaN or infinity (an output or a gradient).
    #[error("the model returned a non-finite {what} ({value}) for input {input}: expected finite outputs and gradients; check the model and the input's range")]
    NonFiniteModelOutput {
        /// "output", "gradient" or "layer activation".
        what: &'static str,
        /// Index of the input.
        input: usize,
        /// The offending value.
        value: f32,
    },
    /// A layer's activation cannot be used by the method.
    #[error("layer `{layer}` has activations of shape {shape:?}: {problem}")]
    Layer {
        /// The layer's name.
        layer: String,
        /// Its activation's shape (batch first).
        shape: Vec<usize>,
        /// What is wrong and what was expected.
        problem: String,
    },
}

/// Shorthand for results with [`AttributionError`].
pub type Result<T, E = AttributionError> = std::result::Result<T, E>;

impl AttributionError {
    pub(crate) fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        AttributionError::InvalidParameter {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
