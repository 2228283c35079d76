//! CLI errors and exit codes.
//!
//! Exit codes scripts can rely on: 0 success, 1 an operation failed (the
//! message says why), 2 bad usage (reported by the argument parser), 3 no
//! server to talk to.

use fluvio_client::FluvioError;

/// A failed command: the message printed after `error: `, and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// What went wrong and what to do.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

/// Exit code: the operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: no server answered.
pub const EXIT_NO_SERVER: u8 = 3;

impl CliError {
    /// An operation failure.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: EXIT_FAILED }
    }
}

impl From<FluvioError> for CliError {
    fn from(error: FluvioError) -> Self {
        let code = if matches!(error, FluvioError::Connect { .. }) { EXIT_NO_SERVER } else { EXIT_FAILED };
        CliError { message: error.to_string(), code }
    }
}

impl From<fluvio_client::engine::EngineError> for CliError {
    fn from(error: fluvio_client::engine::EngineError) -> Self {
        CliError::failed(error.to_string())
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
