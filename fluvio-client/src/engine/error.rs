//! Errors of the SmartModule engine.

use fluvio_smartmodule::abi::{FormatError, SmartModuleKind};

/// Everything that can go wrong loading or running a SmartModule, other
/// than a per-record error (see [`RecordFailure`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The bytes are not a valid WebAssembly module.
    #[error("not a valid WebAssembly module: {reason}")]
    InvalidWasm {
        /// What the validator found.
        reason: String,
    },
    /// A valid module, but not a SmartModule built with `fluvio-smartmodule`.
    #[error("not a SmartModule: {reason}")]
    NotASmartModule {
        /// What is missing, and what to do.
        reason: String,
    },
    /// A SmartModule built for an ABI version this host does not speak.
    #[error(
        "SmartModule uses ABI version {found}, but this host supports version {}; rebuild the module against a fluvio-smartmodule release that matches this host",
        supported.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedAbiVersion {
        /// The version the module advertises.
        found: u32,
        /// The versions this host supports.
        supported: Vec<u32>,
    },
    /// An export the ABI needs has the wrong type.
    #[error("SmartModule export `{name}` has type {found}, expected {expected}")]
    BadExport {
        /// Export name.
        name: String,
        /// What the module has.
        found: String,
        /// What the ABI needs.
        expected: String,
    },
    /// The module imports something the host does not provide.
    #[error(
        "SmartModule imports `{module}.{name}`, which this host does not provide; SmartModules run sandboxed and may import only the `fluvio` log and panic functions"
    )]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// The module is of another kind than the caller asked for.
    #[error(
        "SmartModule `{module}` is a {found}, but it was given as a {expected}; use --{found} or --smartmodule instead"
    )]
    KindMismatch {
        /// Module name.
        module: String,
        /// The kind asked for.
        expected: SmartModuleKind,
        /// The module's real kind.
        found: SmartModuleKind,
    },
    /// Instantiation failed for a reason other than the ones above.
    #[error("SmartModule `{module}` could not be started: {reason}")]
    Instantiation {
        /// Module name.
        module: String,
        /// The runtime's explanation.
        reason: String,
    },
    /// The module used more than its CPU budget on one batch.
    #[error(
        "SmartModule `{module}` exceeded its CPU limit of {limit} fuel units on one batch (an infinite loop?); raise the limit or fix the module"
    )]
    CpuLimitExceeded {
        /// Module name.
        module: String,
        /// The budget per batch.
        limit: u64,
    },
    /// The module tried to use more memory than its cap.
    #[error("SmartModule `{module}` exceeded its memory limit of {limit_bytes} bytes{}", requested.map(|r| format!(" (an allocation of {r} bytes failed)")).unwrap_or_default())]
    MemoryLimitExceeded {
        /// Module name.
        module: String,
        /// The cap.
        limit_bytes: u64,
        /// The failed allocation, when the module reported it.
        requested: Option<u64>,
    },
    /// The module panicked outside any record (in setup or init).
    #[error("SmartModule `{module}` panicked: {message}")]
    Panic {
        /// Module name.
        module: String,
        /// The panic message, with its source location.
        message: String,
    },
    /// The module trapped (stack overflow, division by zero, unreachable...).
    #[error("SmartModule `{module}` trapped: {message}")]
    Trap {
        /// Module name.
        module: String,
        /// The runtime's description of the trap.
        message: String,
    },
    /// The module's output breaks the ABI (out-of-range pointer, length,
    /// record index or input range).
    #[error("SmartModule `{module}` returned invalid output: {reason}")]
    InvalidOutput {
        /// Module name.
        module: String,
        /// What was out of range.
        reason: String,
    },
    /// `init` returned an error, or setup refused the parameters.
    #[error("SmartModule `{module}` failed to initialize: {message}")]
    InitFailed {
        /// Module name.
        module: String,
        /// The error's message, for example a missing parameter.
        message: String,
    },
    /// The input batch is malformed.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] FormatError),
}

impl EngineError {
    /// The module this error is about, when it is about one.
    pub fn module(&self) -> Option<&str> {
        match self {
            EngineError::KindMismatch { module, .. }
            | EngineError::Instantiation { module, .. }
            | EngineError::CpuLimitExceeded { module, .. }
            | EngineError::MemoryLimitExceeded { module, .. }
            | EngineError::Panic { module, .. }
            | EngineError::Trap { module, .. }
            | EngineError::InvalidOutput { module, .. }
            | EngineError::InitFailed { module, .. } => Some(module),
            _ => None,
        }
    }
}

/// One record a SmartModule failed on: what a dead-letter sink receives, and
/// what a chain with the `fail` policy reports after its last good output.
/// It travels to consumers as is, in stream events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordFailure {
    /// Name of the module that failed.
    pub module: String,
    /// Offset of the record.
    pub offset: i64,
    /// Timestamp of the record.
    pub timestamp: i64,
    /// The error's kind: the guest error type's name, or `panic`.
    pub kind: String,
    /// The error's message.
    pub message: String,
    /// The record's key, if any.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
}

impl RecordFailure {
    /// The first 32 bytes of the key as text, for messages.
    pub fn key_preview(&self) -> Option<String> {
        self.key.as_ref().map(|key| {
            let shown = String::from_utf8_lossy(&key[..key.len().min(32)]).into_owned();
            if key.len() > 32 { format!("{shown}…") } else { shown }
        })
    }
}

impl std::fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmartModule `{}` failed on the record at offset {}", self.module, self.offset)?;
        if let Some(key) = self.key_preview() {
            write!(f, " (key {key:?})")?;
        }
        write!(f, ": {} [{}]", self.message, self.kind)
    }
}

impl std::error::Error for RecordFailure {}
