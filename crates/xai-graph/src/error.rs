//! Errors of the graph engine.

use xai_core::CoreError;

/// What an operator reports when its inputs or attributes do not fit: the executor adds the
/// node's name and operator type ([`GraphError::Node`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        OpError(message.into())
    }
}

impl From<ndarray::ShapeError> for OpError {
    fn from(e: ndarray::ShapeError) -> Self {
        OpError(format!("shape error: {e}"))
    }
}

/// Result of an operator's forward or backward pass.
pub type OpResult<T> = std::result::Result<T, OpError>;

/// Errors of building or running a [`crate::Graph`] or a [`crate::GraphModel`]. Every message
/// names the node (and its operator) or the value that was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// No operator of this type is registered.
    #[error(
        "operator `{op_type}` (node `{node}`) is not supported by the graph engine; it reads: {known}"
    )]
    UnknownOp {
        /// The ONNX operator type, e.g. `NonMaxSuppression`.
        op_type: String,
        /// The node's name.
        node: String,
        /// The operator types the engine reads, comma-separated.
        known: String,
    },
    /// A node's operator refused its attributes or inputs, or failed while running.
    #[error("node `{node}` ({op_type}): {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// Its operator type.
        op_type: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// The graph itself is malformed (an undefined value, a cycle, a missing output).
    #[error("invalid graph: {0}")]
    Invalid(String),
    /// A batch, weight or target had the wrong shape (or another core error).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<GraphError> for CoreError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::Core(c) => c,
            other => CoreError::Model(other.to_string()),
        }
    }
}

/// Result with [`GraphError`].
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
