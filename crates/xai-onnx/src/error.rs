use std::path::PathBuf;

use xai_core::CoreError;

/// Errors from loading, importing, running or exporting an ONNX model. Every message names what
/// was wrong and, where it helps, what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The model file does not exist.
    #[error("ONNX model file {path} not found")]
    FileNotFound {
        /// The path that was given.
        path: PathBuf,
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
    /// The bytes are not an ONNX model (not a `ModelProto`, or one without a graph).
    #[error("{what} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The file (or "the bytes") that was read.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The model's declared input does not fit the options (per-sample shape and layout).
    #[error(
        "the model's input `{input}` is declared as {declared}, but the options expect \
         {expected} ({layout} of a sample of shape {shape:?}); set the input shape (or the \
         number of features) and layout to match the model"
    )]
    InputShapeMismatch {
        /// The name of the model's input.
        input: String,
        /// The declared shape, e.g. `[N, 28, 28, 1]` (symbolic dimensions by name).
        declared: String,
        /// The shape the options imply, e.g. `[N, 1, 28, 28]`.
        expected: String,
        /// The layout from the options (`nchw`/`nhwc` layout, or `features`).
        layout: String,
        /// The per-sample shape from the options, `[c, h, w]` or `[n_features]`.
        shape: Vec<usize>,
    },
    /// A graph the importer cannot turn into `xai-models` layers (the tract back end may still
    /// run it).
    #[error("cannot import ONNX node `{node}` ({op}): {reason}")]
    UnsupportedOp {
        /// The ONNX operator type, e.g. `LSTM`.
        op: String,
        /// The node's name (or its first output when unnamed).
        node: String,
        /// What about it is not supported.
        reason: String,
    },
    /// A tensor's external data (ONNX `data_location = EXTERNAL`) could not be read: a location
    /// outside the model's folder, a byte range past the end of the file or of the wrong size,
    /// or a model with external data given as bytes.
    #[error(
        "cannot read the external data of tensor `{tensor}` (location `{location}`): {reason}"
    )]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// Its `location` key, as written in the model.
        location: String,
        /// What was wrong, and what was expected.
        reason: String,
    },
    /// A model-level feature the importer or exporter does not handle.
    #[error("unsupported ONNX model: {0}")]
    Unsupported(String),
    /// tract failed to load, optimise or run the model.
    #[error("tract could not {action}: {message}")]
    Tract {
        /// What was being done ("load the model", "run the model", ...).
        action: String,
        /// tract's error chain.
        message: String,
    },
    /// Gradients were asked of a model run by tract.
    #[error(
        "gradients are not available: this ONNX model is run by tract, which computes outputs \
         only{reason}; white-box methods need a model the importer can read (Backend::Import)"
    )]
    NotDifferentiable {
        /// Why the importer could not take it, when known (starts with "; ").
        reason: String,
    },
    /// An option had an invalid value.
    #[error("option `{name}` = {value} is invalid: expected {expected}")]
    InvalidOption {
        /// Option name.
        name: String,
        /// The value passed, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// A network could not be written as ONNX.
    #[error("cannot export network `{network}` to ONNX: {reason}")]
    Export {
        /// The network's name.
        network: String,
        /// What could not be exported.
        reason: String,
    },
    /// A shape, model or parameter error from `xai-core` (e.g. a batch of the wrong shape).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error from `xai-models` while building the imported network.
    #[error(transparent)]
    Model(#[from] xai_models::ModelError),
}

/// Shorthand for results with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

impl OnnxError {
    pub(crate) fn option(
        name: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        OnnxError::InvalidOption {
            name: name.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    pub(crate) fn tract(action: impl Into<String>, e: impl std::fmt::Debug) -> Self {
        // tract's Debug output of an anyhow-style error prints the whole context chain.
        OnnxError::Tract {
            action: action.into(),
            message: format!("{e:?}"),
        }
    }
}

impl From<OnnxError> for CoreError {
    fn from(e: OnnxError) -> Self {
        match e {
            OnnxError::Core(c) => c,
            OnnxError::Model(m) => m.into(),
            other => CoreError::Model(other.to_string()),
        }
    }
}
