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
    /// The topic does not exist, or is not among those the client's
    /// credentials may use (Fluvio's variant of this name).
    #[error(
        "topic {0:?} not found; create it with `fluvio topic create {0}` (if it exists, your credentials may not use it)"
    )]
    TopicNotFound(String),
    /// The topic has no partition of this number (Fluvio's variant of this
    /// name).
    #[error("topic {0:?} has no partition {1}; `fluvio partition list` shows its partitions")]
    PartitionNotFound(String, u32),
    /// Never returned by this client: a cluster here has no SPUs to look
    /// up. Kept so that Fluvio code matching on it compiles.
    #[error("SPU {0} not found")]
    SPUNotFound(i32),
    /// An offset below zero was asked for (Fluvio's variant of this name).
    #[error("offset {0} is negative; offsets start at 0")]
    NegativeOffset(i64),
    /// A consumer's config was refused when it was built (Fluvio's variant
    /// of this name).
    #[error("consumer config: {0}")]
    ConsumerConfig(String),
    /// A producer could not take or send a record (Fluvio's variant of this
    /// name).
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// An error of the application's, for example from a producer callback
    /// (Fluvio's variant of this name).
    #[error("{0}")]
    Other(String),
}

/// Why a producer refused a record, as Fluvio names the cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// A record alone is larger than the producer's `max_request_size`,
    /// which this holds.
    #[error(
        "a record is larger than the producer's max request size of {0} bytes; raise `max_request_size` or split the record"
    )]
    RecordTooLarge(usize),
    /// The server did not answer a batch within the producer's `timeout`,
    /// and the delivery semantic allowed no more tries.
    #[error("the server did not answer within {0:?} (the producer's timeout)")]
    Timeout(std::time::Duration),
    /// The producer's partitioner chose a partition the topic does not have.
    #[error("the producer's partitioner chose partition {partition} of topic {topic:?}, which has {count} partitions")]
    InvalidPartition {
        /// The topic.
        topic: String,
        /// The partition chosen.
        partition: u32,
        /// How many the topic has.
        count: u32,
    },
}

impl FluvioError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            FluvioError::Server { code, .. } => Some(*code),
            FluvioError::TopicNotFound(_) => Some(ErrorCode::TopicNotFound),
            FluvioError::PartitionNotFound(..) => Some(ErrorCode::PartitionNotFound),
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
