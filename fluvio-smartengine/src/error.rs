//! Errors of the SmartModule engine.

use std::path::PathBuf;

use fluvio_protocol::ModuleKind;
use smartmodule_abi::abi::FormatError;

/// Everything that can go wrong loading or running a SmartModule, other
/// than a per-record error (see [`RecordFailure`](crate::RecordFailure)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A `.wasm` file could not be read.
    #[error("cannot read the SmartModule {}: {reason}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// An invocation names a registered module that the chain's resolver
    /// does not know.
    #[error(
        "SmartModule {name:?} is not registered; register it with `fluvio smart-module create {name} --wasm-file FILE`"
    )]
    UnknownModule {
        /// The name asked for.
        name: String,
    },
    /// The thread a [`ChainWorker`](crate::ChainWorker) runs its chain on is
    /// gone (it panicked, or could not be started).
    #[error("the SmartModule chain's worker thread {reason}")]
    WorkerGone {
        /// What happened to it.
        reason: String,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("not a valid WebAssembly module: {reason}")]
    InvalidWasm {
        /// What the validator found.
        reason: String,
    },
    /// The module's shape is past one of the engine's structural limits,
    /// so it was refused before compiling (see
    /// [`StructureLimits`](crate::StructureLimits)).
    #[error(
        "SmartModule `{module}` has {found} {limit}{}, above this host's limit of {max} (`{}`); it was refused before compiling, since compiling such a module takes far longer than its size suggests. A module built by rustc stays far below this limit: check how this one was made",
        function.map(|index| format!(" (in defined function {index})")).unwrap_or_default(),
        limit.field()
    )]
    TooComplex {
        /// Module name.
        module: String,
        /// Which limit.
        limit: crate::StructureLimit,
        /// What the module has (for a per-function limit: at least this).
        found: u64,
        /// The limit.
        max: u64,
        /// The defined function, for a per-function limit.
        function: Option<u32>,
    },
    /// Compiling the module took longer than the engine allows.
    #[error(
        "SmartModule `{module}` took longer than this host's limit of {limit_ms} ms to compile; it was refused. A module built by rustc compiles in a few seconds at most: check how this one was made"
    )]
    CompileTimeLimitExceeded {
        /// Module name.
        module: String,
        /// The limit, in milliseconds.
        limit_ms: u64,
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
        expected: ModuleKind,
        /// The module's real kind.
        found: ModuleKind,
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
    /// One call into the module ran longer than the wall-clock limit.
    #[error(
        "SmartModule `{module}` ran longer than its time limit of {limit_ms} ms on one call (an infinite loop, or a machine too busy for the limit?); raise the limit or fix the module"
    )]
    TimeLimitExceeded {
        /// Module name.
        module: String,
        /// The limit per call, in milliseconds.
        limit_ms: u64,
    },
    /// The module panicked on more records of one batch than a batch
    /// allows.
    #[error("SmartModule `{module}` panicked on more than {limit} records of one batch; fix the module")]
    TooManyPanics {
        /// Module name.
        module: String,
        /// The most panics allowed per batch.
        limit: usize,
    },
    /// The module was stopped mid-call because nobody wants its output any
    /// more (its stream was closed).
    #[error("SmartModule `{module}` was stopped because its stream was closed")]
    Cancelled {
        /// Module name.
        module: String,
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
    /// A module's `look_back` function failed on a stored record, so the
    /// stream it was warming up for could not start.
    #[error("SmartModule `{module}` failed in look_back at offset {offset}: {message}")]
    LookBackFailed {
        /// Module name.
        module: String,
        /// The stored record's offset.
        offset: i64,
        /// The error's message.
        message: String,
    },
    /// A look-back was asked of a module without a `look_back` function.
    #[error(
        "SmartModule `{module}` has no look_back function, so it cannot be given a lookback; add a #[smartmodule(look_back)] function or drop the lookback"
    )]
    NoLookBack {
        /// Module name.
        module: String,
    },
    /// The input batch is malformed.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] FormatError),
    /// A window was given to a module that is not an aggregate.
    #[error(
        "SmartModule `{module}` is a {kind}, and only an aggregate can run in a window; drop the window or use an aggregate"
    )]
    WindowNeedsAggregate {
        /// Module name.
        module: String,
        /// What the module is.
        kind: ModuleKind,
    },
    /// The open windows' accumulators outgrew the chain's memory cap.
    #[error(
        "the open windows of SmartModule `{module}` hold {keys} keys in {bytes} bytes, over the {limit_bytes}-byte memory cap; use shorter windows or less lateness, group by fewer keys, or raise the memory limit"
    )]
    WindowStateTooLarge {
        /// Module name.
        module: String,
        /// Open (key, window) pairs.
        keys: usize,
        /// Bytes they take.
        bytes: u64,
        /// The cap.
        limit_bytes: u64,
    },
    /// Saved window state that does not read back.
    #[error("the saved window state of SmartModule `{module}` is damaged: {reason}")]
    WindowStateDamaged {
        /// Module name.
        module: String,
        /// What is wrong.
        reason: String,
    },
}

impl EngineError {
    /// The module this error is about, when it is about one.
    pub fn module(&self) -> Option<&str> {
        match self {
            EngineError::KindMismatch { module, .. }
            | EngineError::TooComplex { module, .. }
            | EngineError::CompileTimeLimitExceeded { module, .. }
            | EngineError::Instantiation { module, .. }
            | EngineError::CpuLimitExceeded { module, .. }
            | EngineError::TimeLimitExceeded { module, .. }
            | EngineError::Cancelled { module }
            | EngineError::TooManyPanics { module, .. }
            | EngineError::MemoryLimitExceeded { module, .. }
            | EngineError::Panic { module, .. }
            | EngineError::Trap { module, .. }
            | EngineError::InvalidOutput { module, .. }
            | EngineError::InitFailed { module, .. }
            | EngineError::LookBackFailed { module, .. }
            | EngineError::NoLookBack { module }
            | EngineError::WindowNeedsAggregate { module, .. }
            | EngineError::WindowStateTooLarge { module, .. }
            | EngineError::WindowStateDamaged { module, .. }
            | EngineError::UnknownModule { name: module } => Some(module),
            _ => None,
        }
    }
}
