use std::path::PathBuf;

/// Errors raised by the core traits and types. Every message says what was wrong and what was
/// expected, so that a user can fix the call without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An array had the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// Which argument was wrong, e.g. "input".
        what: String,
        /// The shape that was passed.
        got: Vec<usize>,
        /// A description of the expected shape, e.g. "[n, 1, 28, 28]".
        expected: String,
    },
    /// A set that must not be empty was empty.
    #[error("{0} is empty; at least one element is required")]
    Empty(String),
    /// An input contained NaN or infinity.
    #[error("{what} contains a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Which argument was wrong.
        what: String,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A parameter was outside its valid range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: String,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// Labels or targets did not fit the model's outputs.
    #[error("targets are invalid: {0}")]
    InvalidTargets(String),
    /// A model failed to evaluate (e.g. an ONNX runtime error).
    #[error("model evaluation failed: {0}")]
    Model(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising an explanation failed.
    #[error("serialisation failed: {0}")]
    Serialize(String),
}

/// Shorthand for results with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    /// Builds a [`CoreError::ShapeMismatch`].
    pub fn shape(what: impl Into<String>, got: &[usize], expected: impl Into<String>) -> Self {
        CoreError::ShapeMismatch {
            what: what.into(),
            got: got.to_vec(),
            expected: expected.into(),
        }
    }

    /// Builds a [`CoreError::InvalidParameter`].
    pub fn param(
        name: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        CoreError::InvalidParameter {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
