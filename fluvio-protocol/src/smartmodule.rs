//! Naming the SmartModules a chain applies: [`SmartModuleInvocation`] (which
//! module, of which kind, with which parameters), the [`ErrorPolicy`] of a
//! chain, and the [`RecordFailure`] a module reports for one record.
//!
//! These are the one representation used everywhere: producers and the CLI
//! build them, requests carry them as they are, the server and the engine
//! run them. Nothing converts them into a look-alike type on the way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use fluvio_smartmodule::Lookback;
pub use fluvio_smartmodule::abi::SmartModuleKind;

/// Largest SmartModule a server accepts once decompressed.
pub const MAX_WASM_BYTES: u64 = 64 << 20;

/// Where a SmartModule's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmartModuleWasm {
    /// Registered on the server under this name
    /// (`fluvio smart-module create NAME`).
    Predefined(String),
    /// Code that travels with the request. It is gzip-compressed on the
    /// wire and refused past [`MAX_WASM_BYTES`] once decompressed.
    AdHoc {
        /// A name for errors and metrics (usually the file's stem).
        name: String,
        /// The wasm module.
        #[serde(with = "gzip")]
        wasm: Vec<u8>,
    },
}

/// One SmartModule of a chain: the module, the kind the caller expects of
/// it (if any), its parameters and an aggregate's initial accumulator.
///
/// ```
/// use fluvio_protocol::{SmartModuleInvocation, SmartModuleKind};
///
/// let filter = SmartModuleInvocation::predefined("my-filter")
///     .expect_kind(SmartModuleKind::Filter)
///     .param("contains", "a");
/// assert_eq!(filter.name(), "my-filter");
/// assert_eq!(filter.params["contains"], "a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInvocation {
    /// The module's code.
    pub wasm: SmartModuleWasm,
    /// The kind the caller expects; a module of another kind is refused.
    /// `None` accepts the module's own kind.
    pub kind: Option<SmartModuleKind>,
    /// Parameters handed to the module's `init`.
    pub params: BTreeMap<String, String>,
    /// The accumulator an aggregate starts from (empty when not given).
    pub initial_accumulator: Option<Vec<u8>>,
    /// Stored records fed to the module's `look_back` function before a
    /// stream starts (consumer streams only).
    #[serde(default)]
    pub lookback: Option<Lookback>,
}

/// A `.wasm` file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the SmartModule {}: {source}", path.display())]
pub struct WasmFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl SmartModuleInvocation {
    fn new(wasm: SmartModuleWasm) -> SmartModuleInvocation {
        SmartModuleInvocation { wasm, kind: None, params: BTreeMap::new(), initial_accumulator: None, lookback: None }
    }

    /// A module registered on the server under `name`.
    pub fn predefined(name: impl Into<String>) -> SmartModuleInvocation {
        SmartModuleInvocation::new(SmartModuleWasm::Predefined(name.into()))
    }

    /// A module given as wasm bytes, named `name` in errors and metrics.
    pub fn adhoc(name: impl Into<String>, wasm: impl Into<Vec<u8>>) -> SmartModuleInvocation {
        SmartModuleInvocation::new(SmartModuleWasm::AdHoc { name: name.into(), wasm: wasm.into() })
    }

    /// A module read from a `.wasm` file, named after the file's stem.
    pub fn from_file(path: impl AsRef<Path>) -> Result<SmartModuleInvocation, WasmFileError> {
        let path = path.as_ref();
        let wasm = std::fs::read(path).map_err(|source| WasmFileError { path: path.to_path_buf(), source })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        Ok(SmartModuleInvocation::adhoc(name, wasm))
    }

    /// Requires the module to be of `kind`.
    pub fn expect_kind(mut self, kind: SmartModuleKind) -> SmartModuleInvocation {
        self.kind = Some(kind);
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> SmartModuleInvocation {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Has the module's `look_back` function fed stored records before a
    /// stream starts.
    pub fn lookback(mut self, lookback: Lookback) -> SmartModuleInvocation {
        self.lookback = Some(lookback);
        self
    }

    /// Sets an aggregate's initial accumulator.
    pub fn initial_accumulator(mut self, value: impl Into<Vec<u8>>) -> SmartModuleInvocation {
        self.initial_accumulator = Some(value.into());
        self
    }

    /// The module's name: the registered name, or the ad hoc module's name.
    pub fn name(&self) -> &str {
        match &self.wasm {
            SmartModuleWasm::Predefined(name) | SmartModuleWasm::AdHoc { name, .. } => name,
        }
    }
}

/// What a chain does when a module fails on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum ErrorPolicy {
    /// Emit the outputs for the records before the failed one, then report
    /// the failure; the stream ends there. The default.
    #[default]
    Fail,
    /// Drop the failed record, count it, and carry on.
    Skip,
    /// Hand the failed record and its error to whoever runs the chain (a
    /// consumer receives it as a dead letter), and carry on.
    DeadLetter,
}

impl ErrorPolicy {
    /// Every policy, in a fixed order.
    pub const ALL: [ErrorPolicy; 3] = [ErrorPolicy::Fail, ErrorPolicy::Skip, ErrorPolicy::DeadLetter];

    /// The policy's name as users write it: `fail`, `skip`, `dead-letter`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorPolicy::Fail => "fail",
            ErrorPolicy::Skip => "skip",
            ErrorPolicy::DeadLetter => "dead-letter",
        }
    }
}

impl std::fmt::Display for ErrorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is not `fail`, `skip` or `dead-letter`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error policy {0:?}; use fail, skip or dead-letter")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for ErrorPolicy {
    type Err = UnknownPolicy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ErrorPolicy::ALL.into_iter().find(|policy| policy.name() == name).ok_or_else(|| UnknownPolicy(name.to_string()))
    }
}

/// One record a SmartModule failed on: what a dead-letter consumer
/// receives, and what a chain with the `fail` policy reports after its last
/// good output. It travels to consumers as is, in stream events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Ad hoc wasm is sent with every stream that uses it, so it travels
/// compressed; decompression stops at [`MAX_WASM_BYTES`], so a small
/// request cannot make the server allocate without bound.
mod gzip {
    use std::io::{Read, Write};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(wasm: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(wasm).expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail").serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let compressed = Vec::<u8>::deserialize(deserializer)?;
        let limit = super::MAX_WASM_BYTES;
        let mut wasm = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .take(limit + 1)
            .read_to_end(&mut wasm)
            .map_err(|e| serde::de::Error::custom(format!("cannot decompress the SmartModule: {e}")))?;
        if wasm.len() as u64 > limit {
            return Err(serde::de::Error::custom(format!(
                "the SmartModule is larger than {limit} bytes once decompressed"
            )));
        }
        Ok(wasm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode};

    #[test]
    fn invocations_travel_as_they_are_and_wasm_compressed() {
        let wasm = vec![7u8; 100_000];
        let invocation = SmartModuleInvocation::adhoc("m", wasm)
            .expect_kind(SmartModuleKind::Aggregate)
            .param("k", "v")
            .initial_accumulator("0");
        let bytes = encode(&invocation);
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        assert_eq!(decode::<SmartModuleInvocation>(&bytes).unwrap(), invocation);
    }

    #[test]
    fn decompression_bombs_are_refused() {
        // Build the message by hand: a gzip stream that inflates past the limit.
        let huge = vec![0u8; MAX_WASM_BYTES as usize + 1];
        let bytes = encode(&SmartModuleWasm::AdHoc { name: "bomb".into(), wasm: huge });
        assert!(bytes.len() < 1 << 20);
        let error = decode::<SmartModuleWasm>(&bytes).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn policies_parse_by_name() {
        for policy in ErrorPolicy::ALL {
            assert_eq!(policy.name().parse::<ErrorPolicy>().unwrap(), policy);
        }
        assert_eq!(
            "retry".parse::<ErrorPolicy>().unwrap_err().to_string(),
            "unknown error policy \"retry\"; use fail, skip or dead-letter"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = SmartModuleInvocation::from_file("/nonexistent/dir/m.wasm").unwrap_err();
        assert!(error.to_string().contains("/nonexistent/dir/m.wasm"), "{error}");
    }
}
