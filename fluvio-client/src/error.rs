//! The SDK's error type.

use fluvio_protocol::{ErrorCode, FrameError, RecordFailure, WasmFileError};
#[cfg(feature = "smartengine")]
use fluvio_smartengine::EngineError;

/// Everything an SDK call can fail with. Each message says what went wrong
/// and, where it can, what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FluvioError {
    /// No server answered at the address.
    #[error(
        "cannot connect to a Fluvio server at {addr}: {reason}; is one running? start one with `fluvio cluster start`"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The TLS handshake with the server failed: its certificate was not
    /// trusted or not for this name, or it does not serve TLS.
    #[error(
        "TLS with {addr} failed: {reason}; check the CA certificate and domain of your profile (or FLUVIO_TLS_CA, FLUVIO_TLS_DOMAIN)"
    )]
    Tls {
        /// The server's address.
        addr: String,
        /// rustls's reason.
        reason: String,
    },
    /// The client's configuration (profile file, environment, TLS files)
    /// cannot be used.
    #[error("{0}")]
    Config(String),
    /// The connection broke or the server closed it.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        /// The server's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server refused the request.
    #[error("{message}")]
    Server {
        /// The error code; `ErrorCode::TopicNotFound` and friends.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A SmartModule could not be loaded or failed while running in this
    /// process.
    #[cfg(feature = "smartengine")]
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A SmartModule failed on a record under the `fail` policy. On a
    /// consumer stream this ends the stream.
    #[error("{0}")]
    RecordFailed(Box<RecordFailure>),
    /// A SmartModule failed on a record under the `dead-letter` policy. On a
    /// consumer stream this item is followed by more records.
    #[error("dead letter: {0}")]
    DeadLetter(Box<RecordFailure>),
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A local file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A request was invalid before it was sent.
    #[error("{0}")]
    InvalidRequest(String),
}

impl FluvioError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            FluvioError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<WasmFileError> for FluvioError {
    fn from(error: WasmFileError) -> Self {
        FluvioError::File { path: error.path.display().to_string(), reason: error.source.to_string() }
    }
}

impl From<FrameError> for FluvioError {
    fn from(error: FrameError) -> Self {
        FluvioError::Protocol(error.to_string())
    }
}
