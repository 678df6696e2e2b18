//! The command's errors: one line on stderr each, exit code 2 for what the user can fix (a
//! missing or unreadable file, not an image, not ONNX, a shape that does not fit the model, an
//! option out of range), 1 for a failure while explaining.

/// An error of the `xai` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Something the user can fix (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A method failed on valid input (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    /// The message on one line (line breaks of nested messages become `; `).
    pub fn one_line(&self) -> String {
        let s = self.to_string();
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Shorthand for results of the command.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// A usage error from anything printable.
pub fn usage(msg: impl std::fmt::Display) -> CliError {
    CliError::Usage(msg.to_string())
}

/// A usage error that says what was being done: `"<context>: <error>"`.
pub fn usage_in(context: impl std::fmt::Display, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{context}: {e}"))
}

/// A failure while explaining: `"<context>: <error>"`.
pub fn failed_in(context: impl std::fmt::Display, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{context}: {e}"))
}
