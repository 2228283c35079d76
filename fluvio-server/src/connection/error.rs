//! Errors as a client is told them: the one place where the server's error
//! types become wire [`ErrorCode`]s. The stores, the registry and the engine
//! return their own error types; the conversions here decide what a client
//! is told.

use fluvio_protocol::{ApiKind, ErrorCode, ErrorResponse, Frame, RESPONSE_BIT};
use fluvio_smartengine::EngineError;

use crate::connectors::ConnectorError;
use crate::derived::DerivedError;
use crate::registry::RegistryError;
use crate::storage::{StorageError, TopicError};

/// An error as a client is told it: a code and a message that says what was
/// wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServerError {
    /// The error code sent to the client.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl ServerError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServerError {
        ServerError { code, message: message.into() }
    }

    /// The error as sent on the wire.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse { code: self.code, message: self.message.clone() }
    }
}

impl From<StorageError> for ServerError {
    fn from(error: StorageError) -> Self {
        let code = match error {
            StorageError::InvalidBatch(_) => ErrorCode::InvalidBatch,
            StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::NotAtEnd { .. } => {
                ErrorCode::Storage
            }
            StorageError::Unavailable { .. } => ErrorCode::Unavailable,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<TopicError> for ServerError {
    fn from(error: TopicError) -> Self {
        let code = match &error {
            TopicError::Exists(_) => ErrorCode::TopicExists,
            TopicError::NotFound(_) => ErrorCode::TopicNotFound,
            TopicError::InvalidName(_) => ErrorCode::InvalidTopicName,
            TopicError::InvalidPartitionCount(_)
            | TopicError::InvalidReplication { .. }
            | TopicError::Refused { .. } => ErrorCode::InvalidRequest,
            TopicError::Unavailable { .. } | TopicError::Storage(StorageError::Unavailable { .. }) => {
                ErrorCode::Unavailable
            }
            TopicError::PartitionNotFound { .. } => ErrorCode::PartitionNotFound,
            TopicError::CorruptSettings { .. } | TopicError::Unopened { .. } => ErrorCode::Storage,
            TopicError::Storage(StorageError::InvalidBatch(_)) => ErrorCode::InvalidBatch,
            TopicError::Storage(_) => ErrorCode::Storage,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<RegistryError> for ServerError {
    fn from(error: RegistryError) -> Self {
        let code = match &error {
            RegistryError::InvalidName(_) => ErrorCode::InvalidRequest,
            RegistryError::Exists(_) => ErrorCode::SmartModuleExists,
            RegistryError::NotFound(_) => ErrorCode::SmartModuleNotFound,
            RegistryError::Invalid(_) => ErrorCode::InvalidSmartModule,
            RegistryError::Io { .. } => ErrorCode::Storage,
            RegistryError::Shared { .. } => ErrorCode::Unavailable,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<DerivedError> for ServerError {
    fn from(error: DerivedError) -> Self {
        let code = match error {
            DerivedError::Topic(error) => return error.into(),
            DerivedError::Registry(error) => return error.into(),
            DerivedError::Chain { error: EngineError::UnknownModule { .. }, .. } => ErrorCode::SmartModuleNotFound,
            DerivedError::Chain { .. } => ErrorCode::InvalidSmartModule,
            DerivedError::SourceNotFound { .. } => ErrorCode::TopicNotFound,
            DerivedError::Io { .. } => ErrorCode::Storage,
            DerivedError::ReadOnly { .. } => ErrorCode::PermissionDenied,
            DerivedError::Cycle(_)
            | DerivedError::AdHocModule { .. }
            | DerivedError::NoDeadLetterTopic(_)
            | DerivedError::DeadLetterTopic { .. }
            | DerivedError::NotDerived(_)
            | DerivedError::TopicInUse { .. }
            | DerivedError::ModuleInUse { .. } => ErrorCode::InvalidRequest,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<ConnectorError> for ServerError {
    fn from(error: ConnectorError) -> Self {
        let code = match &error {
            ConnectorError::Exists(_) => ErrorCode::ConnectorExists,
            ConnectorError::NotFound(_) => ErrorCode::ConnectorNotFound,
            ConnectorError::Invalid(_) | ConnectorError::Name(_) | ConnectorError::Program { .. } => {
                ErrorCode::InvalidConnector
            }
            ConnectorError::Io { .. } => ErrorCode::Storage,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<EngineError> for ServerError {
    /// For errors starting a chain: the module is unknown or invalid. A
    /// chain that fails while running is reported by [`running_chain_failed`].
    fn from(error: EngineError) -> Self {
        let code = match &error {
            EngineError::UnknownModule { .. } => ErrorCode::SmartModuleNotFound,
            _ => ErrorCode::InvalidSmartModule,
        };
        ServerError::new(code, error.to_string())
    }
}

/// A chain failed while running.
pub(super) fn running_chain_failed(error: EngineError) -> ServerError {
    ServerError::new(ErrorCode::SmartModuleFailed, error.to_string())
}

/// The frame that answers request `correlation_id` with `error`.
pub(super) fn error_frame(correlation_id: u32, error: &ServerError) -> Frame {
    Frame::new(ApiKind::Error as u16 | RESPONSE_BIT, correlation_id, &error.to_response(), Vec::new())
}

/// A frame that could not be understood.
pub(super) fn bad_frame(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorCode::BadFrame, message)
}

/// A server resource limit was reached.
pub(super) fn limit_reached(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorCode::LimitReached, message)
}
