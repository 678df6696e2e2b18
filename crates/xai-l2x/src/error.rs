//! The crate's error type.

use std::path::PathBuf;

/// Errors from configuring, training, running, saving or loading an L2X explainer.
///
/// Every message says what was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum L2xError {
    /// `k = 0`: nothing would be selected.
    #[error("k = 0 is invalid: L2X must select at least one patch (expected 1 <= k <= the number of patches)")]
    ZeroK,
    /// `k` exceeds the number of patches of the selection model's grid.
    #[error(
        "k = {k} is larger than the number of patches the selection model scores ({n_patches}); expected 1 <= k <= {n_patches}"
    )]
    KTooLarge {
        /// The requested number of patches.
        k: usize,
        /// Patches available.
        n_patches: usize,
    },
    /// The Gumbel-softmax temperature is not a finite positive number.
    #[error("tau = {0} is invalid: the Gumbel-softmax temperature must be a finite number > 0")]
    InvalidTau(f32),
    /// Another parameter is out of range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: String,
        /// The value given, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// No training images.
    #[error("the training data is empty: L2X needs at least one training image, shaped [n, c, h, w] with n >= 1")]
    EmptyTrainingData,
    /// An array (or a model's input/output shape) does not fit.
    #[error("{what} has shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// What was wrong, e.g. "images".
        what: String,
        /// The shape found.
        got: Vec<usize>,
        /// The expected shape.
        expected: String,
    },
    /// The black box was declared to output probabilities but a row is not a distribution.
    #[error(
        "row {row} of the black box's outputs is not a probability vector (min {min}, sum {sum}); \
         expected non-negative values summing to 1, or declare `black_box_outputs(OutputKind::Logits)`"
    )]
    NotProbabilities {
        /// The first offending row.
        row: usize,
        /// Its smallest value.
        min: f32,
        /// Its sum.
        sum: f32,
    },
    /// An operation that needs class labels on a regression explainer.
    #[error("{0} needs class labels, but this explainer was trained in regression mode")]
    RequiresClassification(&'static str),
    /// A saved explainer that cannot be read back.
    #[error("saved L2X explainer at {path}: {reason}")]
    Saved {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from the core types (shapes, losses, the black box).
    #[error(transparent)]
    Core(#[from] xai_core::CoreError),
    /// An error from a network of `xai-models` (architecture, weights, files).
    #[error(transparent)]
    Model(#[from] xai_models::ModelError),
}

impl L2xError {
    /// Builds an [`L2xError::ShapeMismatch`].
    pub fn shape(what: impl Into<String>, got: &[usize], expected: impl Into<String>) -> Self {
        L2xError::ShapeMismatch {
            what: what.into(),
            got: got.to_vec(),
            expected: expected.into(),
        }
    }

    /// Builds an [`L2xError::InvalidParameter`].
    pub fn param(
        name: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        L2xError::InvalidParameter {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Shorthand for results with [`L2xError`].
pub type Result<T, E = L2xError> = std::result::Result<T, E>;
