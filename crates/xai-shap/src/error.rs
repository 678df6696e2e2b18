//! The crate's error type.

use xai_core::CoreError;

/// Everything that can go wrong in this crate. Every message says what was wrong and what was
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum ShapError {
    /// An error from the core traits (shape checks, model failures, serialisation).
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
        expected: String,
    },
    /// An image had the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which argument was wrong, e.g. "image".
        what: String,
        /// The shape that was passed.
        got: Vec<usize>,
        /// A description of the expected shape.
        expected: String,
    },
    /// A label to explain does not exist among the model's outputs.
    #[error("label {label} is out of range for a model with {n_outputs} outputs (expected 0..{n_outputs})")]
    LabelOutOfRange {
        /// The label asked for.
        label: usize,
        /// The model's number of outputs.
        n_outputs: usize,
    },
    /// The logit link was asked for on values that are not probabilities.
    #[error(
        "the logit link needs model outputs in [0, 1]; output {label} of coalition {coalition} is {value} \
         (use `Link::Identity` for logits or scores)"
    )]
    LogitDomain {
        /// The model output (label) index.
        label: usize,
        /// Index of the coalition evaluated (0 = all features absent, 1 = all present, then the samples).
        coalition: usize,
        /// The offending value.
        value: f64,
    },
    /// The coalition function returned a non-finite value.
    #[error("the model returned a non-finite value ({value}) for output {label} of coalition {coalition}; expected finite outputs")]
    NonFiniteOutput {
        /// The model output (label) index.
        label: usize,
        /// Index of the coalition within the evaluated batch.
        coalition: usize,
        /// The offending value.
        value: f64,
    },
    /// Drawing a figure failed.
    #[error("drawing the figure {path} failed: {message}")]
    Figure {
        /// The file being drawn.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A coalition function or masker returned a batch of the wrong shape.
    #[error("{what} returned shape {got:?}, expected {expected}")]
    BatchShape {
        /// Which component was wrong (e.g. "masker", "coalition function").
        what: String,
        /// The shape returned.
        got: Vec<usize>,
        /// The expected shape.
        expected: String,
    },
    /// An error while explaining one row of several.
    #[error("row {row}: {source}")]
    Row {
        /// The row (explained instance) index.
        row: usize,
        /// What went wrong there.
        source: Box<ShapError>,
    },
    /// A file (CSV, JSON) could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong and what was expected.
        message: String,
    },
}

/// Shorthand for results with [`ShapError`].
pub type Result<T, E = ShapError> = std::result::Result<T, E>;

impl ShapError {
    /// Builds a [`ShapError::InvalidParameter`].
    pub fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        ShapError::InvalidParameter {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Builds a [`ShapError::Shape`].
    pub fn shape(what: impl Into<String>, got: &[usize], expected: impl Into<String>) -> Self {
        ShapError::Shape {
            what: what.into(),
            got: got.to_vec(),
            expected: expected.into(),
        }
    }
}
