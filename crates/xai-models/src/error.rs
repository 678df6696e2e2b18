use std::path::PathBuf;

/// Errors from building, running, training, saving or loading a network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Layers that do not fit together (e.g. a dense layer after a flatten of the wrong size).
    #[error("invalid architecture: {0}")]
    Architecture(String),
    /// Bad input, shape or parameter (see the wrapped error).
    #[error(transparent)]
    Core(#[from] xai_core::CoreError),
    /// A weights file that does not match the network.
    #[error("weights do not match the network: {0}")]
    Weights(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A weights file is missing; says how to make it.
    #[error("weights file {path} not found: {hint}")]
    MissingWeights {
        /// The expected path.
        path: PathBuf,
        /// How to produce it.
        hint: String,
    },
    /// A data set problem while training.
    #[error(transparent)]
    Data(#[from] xai_datasets::DatasetError),
    /// A bug in this crate (an internal invariant did not hold).
    #[error("internal error in xai-models: {0}")]
    Internal(String),
}

impl From<ModelError> for xai_core::CoreError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Core(c) => c,
            other => xai_core::CoreError::Model(other.to_string()),
        }
    }
}
