//! The error consumer streams yield under Fluvio's [`ConsumerStream`]
//! trait: Fluvio's `ErrorCode` (at `fluvio::dataplane::link::ErrorCode`),
//! so that programs naming `impl Stream<Item = Result<ConsumerRecord,
//! ErrorCode>>` in their signatures compile unchanged.
//!
//! Fluvio's enum has many variants, most for its own cluster's internals
//! (SPUs, leaders, table formats). The ones a stream here can end with are
//! kept, by Fluvio's names and shapes; every other failure is
//! [`ErrorCode::Other`] with this project's full message, so nothing a
//! [`FluvioError`] says is lost. The enum is `non_exhaustive`, as Fluvio's
//! is, so Fluvio code matching on it already has a catch-all arm.
//!
//! [`ConsumerStream`]: crate::ConsumerStream

use bytes::Bytes;

use crate::FluvioError;
use fluvio_protocol::ErrorCode as WireCode;

/// Why a consumer stream's item failed (Fluvio's `ErrorCode`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Anything without a variant of its own, with the full message.
    #[error("{0}")]
    Other(String),
    /// The offset asked for is past the partition's end or before its
    /// start.
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// The connection's principal may not read the topic.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The server could not read its storage; the message says what.
    #[error("storage error: {0}")]
    StorageError(String),
    /// The topic does not exist (or the credentials may not use it).
    #[error("the topic was not found")]
    TopicNotFound,
    /// No SmartModule of the name is registered.
    #[error("SmartModule {name} was not found")]
    SmartModuleNotFound {
        /// What the server said, naming the module.
        name: String,
    },
    /// A SmartModule could not be loaded (bad wasm, wrong kind, limits).
    #[error("SmartModule is invalid: {error}")]
    SmartModuleInvalid {
        /// Why.
        error: String,
        /// The module, when known.
        name: Option<String>,
    },
    /// A SmartModule failed on a record.
    #[error("SmartModule transform error {0}")]
    SmartModuleRuntimeError(SmartModuleTransformRuntimeError),
}

/// A SmartModule's failure on one record (Fluvio's type of this name).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{hint} (offset {offset})")]
pub struct SmartModuleTransformRuntimeError {
    /// For people: the module, the error's kind and its message.
    pub hint: String,
    /// The record's offset.
    pub offset: i64,
    /// The record's key.
    pub record_key: Option<Bytes>,
    /// The record's value.
    pub record_value: Bytes,
}

impl ErrorCode {
    /// Whether this is no error (Fluvio's call; every value here is one).
    pub fn is_ok(&self) -> bool {
        false
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        !self.is_ok()
    }
}

impl From<FluvioError> for ErrorCode {
    fn from(error: FluvioError) -> Self {
        match error {
            FluvioError::TopicNotFound(_) => ErrorCode::TopicNotFound,
            FluvioError::RecordFailed(failure) | FluvioError::DeadLetter(failure) => {
                ErrorCode::SmartModuleRuntimeError(SmartModuleTransformRuntimeError {
                    hint: format!("SmartModule {:?} failed: {}: {}", failure.module, failure.kind, failure.message),
                    offset: failure.offset,
                    record_key: failure.key.map(Bytes::from),
                    record_value: Bytes::from(failure.value),
                })
            }
            FluvioError::Server { code, message } => match code {
                WireCode::TopicNotFound => ErrorCode::TopicNotFound,
                WireCode::PermissionDenied | WireCode::Unauthenticated => ErrorCode::PermissionDenied(message),
                WireCode::Storage => ErrorCode::StorageError(message),
                WireCode::SmartModuleNotFound => ErrorCode::SmartModuleNotFound { name: message },
                WireCode::InvalidSmartModule => ErrorCode::SmartModuleInvalid { error: message, name: None },
                _ => ErrorCode::Other(message),
            },
            other => ErrorCode::Other(other.to_string()),
        }
    }
}

impl From<ErrorCode> for FluvioError {
    /// Back into the SDK's error, for `?` in functions returning
    /// [`FluvioError`].
    fn from(error: ErrorCode) -> Self {
        match error {
            ErrorCode::Other(message) => FluvioError::Other(message),
            other => FluvioError::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::RecordFailure;

    #[test]
    fn a_record_failure_keeps_its_record_and_says_which_module() {
        let failure = RecordFailure {
            module: "parse".into(),
            offset: 7,
            timestamp: 0,
            kind: "ParseIntError".into(),
            message: "invalid digit".into(),
            key: Some(b"k".to_vec()),
            value: b"x1".to_vec(),
        };
        let ErrorCode::SmartModuleRuntimeError(error) = ErrorCode::from(FluvioError::RecordFailed(Box::new(failure)))
        else {
            panic!("not a runtime error");
        };
        assert_eq!(error.offset, 7);
        assert_eq!(error.record_key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&error.record_value[..], b"x1");
        assert_eq!(error.hint, "SmartModule \"parse\" failed: ParseIntError: invalid digit");
    }

    #[test]
    fn failures_without_a_variant_keep_the_whole_message() {
        let lost = FluvioError::ConnectionLost { addr: "127.0.0.1:1".into(), reason: "reset".into() };
        let message = lost.to_string();
        assert_eq!(ErrorCode::from(lost), ErrorCode::Other(message.clone()));
        let refused = FluvioError::Server { code: WireCode::Storage, message: "disk full".into() };
        assert_eq!(ErrorCode::from(refused).to_string(), "storage error: disk full");
        assert_eq!(FluvioError::from(ErrorCode::Other(message.clone())).to_string(), message);
    }
}
