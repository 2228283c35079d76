//! Naming the SmartModules a chain applies: [`SmartModuleInvocation`] (which
//! module, of which kind, with which parameters), the [`ErrorPolicy`] of a
//! chain, and the [`RecordFailure`] a module reports for one record.
//!
//! These are the one representation used everywhere: producers and the CLI
//! build them, requests carry them as they are, the server and the engine
//! run them. Nothing converts them into a look-alike type on the way. Their
//! shape is Fluvio's (`wasm`, `kind`, `params`), so Fluvio code that builds
//! one with a struct literal compiles here.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a module does with records, as its exports say (a registered
/// module's kind, and the kind a chain checks against).
pub use smartmodule_abi::abi::ModuleKind;
pub use smartmodule_abi::params::{Lookback, SmartModuleExtraParams};

/// Largest SmartModule a server accepts once decompressed.
pub const MAX_WASM_BYTES: u64 = 64 << 20;

/// Most bytes the ad hoc modules of one chain may inflate to together: a
/// request of a few MiB cannot make a host inflate gigabytes however many
/// modules it names.
pub const MAX_CHAIN_WASM_BYTES: u64 = 64 << 20;

/// Where a SmartModule's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmartModuleInvocationWasm {
    /// Registered on the server under this name
    /// (`fluvio smart-module create NAME`).
    Predefined(String),
    /// Code that travels with the request (raw, or gzip-compressed as
    /// Fluvio's `adhoc_from_bytes` makes it). It is gzip-compressed on the
    /// wire, and stays compressed when a request is decoded: it is inflated
    /// only by [`adhoc_wasm`](SmartModuleInvocationWasm::adhoc_wasm), once
    /// whoever runs it has checked the request, and refused past
    /// [`MAX_WASM_BYTES`]. Errors and metrics name it `adhoc-` and the
    /// start of its hash.
    AdHoc(#[serde(with = "gzip")] Vec<u8>),
    /// Code that travels with the request, with a name for errors and
    /// metrics (usually the file's stem).
    AdHocNamed {
        /// The name.
        name: String,
        /// The wasm module.
        #[serde(with = "gzip")]
        wasm: Vec<u8>,
    },
}

impl SmartModuleInvocationWasm {
    /// Ad hoc code from wasm bytes (gzip-compressed bytes are accepted too).
    pub fn adhoc_from_bytes(bytes: &[u8]) -> std::io::Result<SmartModuleInvocationWasm> {
        Ok(SmartModuleInvocationWasm::AdHoc(bytes.to_vec()))
    }

    /// The wasm of an ad hoc module, decompressed when it is compressed (as
    /// it is after travelling in a request), at most [`MAX_WASM_BYTES`];
    /// `None` for a registered one.
    pub fn adhoc_wasm(&self) -> Option<Result<Cow<'_, [u8]>, std::io::Error>> {
        self.adhoc_wasm_within(MAX_WASM_BYTES)
    }

    /// As [`adhoc_wasm`](Self::adhoc_wasm), refusing more than `limit`
    /// bytes (and never more than [`MAX_WASM_BYTES`]) once decompressed.
    pub fn adhoc_wasm_within(&self, limit: u64) -> Option<Result<Cow<'_, [u8]>, std::io::Error>> {
        let bytes = match self {
            SmartModuleInvocationWasm::Predefined(_) => return None,
            SmartModuleInvocationWasm::AdHoc(bytes) | SmartModuleInvocationWasm::AdHocNamed { wasm: bytes, .. } => {
                bytes
            }
        };
        Some(gzip::inflate_if_compressed(bytes, limit.min(MAX_WASM_BYTES)))
    }
}

/// What a module is asked to be, and the initial accumulator of an
/// aggregate, by Fluvio's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmartModuleKind {
    /// A filter.
    Filter,
    /// A map.
    Map,
    /// An array-map.
    ArrayMap,
    /// A filter-map.
    FilterMap,
    /// An aggregate, starting from `accumulator`.
    Aggregate {
        /// The initial accumulator.
        accumulator: Vec<u8>,
    },
    /// Whatever the module is; the data is used if it is an aggregate.
    Generic(SmartModuleContextData),
}

impl Default for SmartModuleKind {
    fn default() -> Self {
        SmartModuleKind::Generic(SmartModuleContextData::None)
    }
}

/// What a [`SmartModuleKind::Generic`] module is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmartModuleContextData {
    /// Nothing.
    #[default]
    None,
    /// An aggregate's initial accumulator.
    Aggregate {
        /// The initial accumulator.
        accumulator: Vec<u8>,
    },
}

impl SmartModuleKind {
    /// The kind the module must be, or `None` for any.
    pub fn expected(&self) -> Option<ModuleKind> {
        Some(match self {
            SmartModuleKind::Filter => ModuleKind::Filter,
            SmartModuleKind::Map => ModuleKind::Map,
            SmartModuleKind::ArrayMap => ModuleKind::ArrayMap,
            SmartModuleKind::FilterMap => ModuleKind::FilterMap,
            SmartModuleKind::Aggregate { .. } => ModuleKind::Aggregate,
            SmartModuleKind::Generic(_) => return None,
        })
    }

    /// The accumulator an aggregate starts from, if one was given.
    pub fn initial_accumulator(&self) -> Option<&[u8]> {
        match self {
            SmartModuleKind::Aggregate { accumulator }
            | SmartModuleKind::Generic(SmartModuleContextData::Aggregate { accumulator }) => Some(accumulator),
            _ => None,
        }
    }
}

/// One SmartModule of a chain: the module, the kind the caller expects of
/// it (with an aggregate's initial accumulator), and its parameters (with
/// its look-back).
///
/// ```
/// use fluvio_protocol::{ModuleKind, SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind};
///
/// let filter = SmartModuleInvocation::predefined("my-filter")
///     .expect_kind(ModuleKind::Filter)
///     .param("contains", "a");
/// assert_eq!(filter.name(), "my-filter");
/// assert_eq!(filter.params.get("contains").map(String::as_str), Some("a"));
///
/// // As Fluvio code writes it:
/// let same = SmartModuleInvocation {
///     wasm: SmartModuleInvocationWasm::Predefined("my-filter".into()),
///     kind: SmartModuleKind::Filter,
///     params: [("contains", "a")].into_iter().collect(),
/// };
/// assert_eq!(same, filter);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInvocation {
    /// The module's code.
    pub wasm: SmartModuleInvocationWasm,
    /// The kind the caller expects (a module of another kind is refused),
    /// with an aggregate's initial accumulator.
    pub kind: SmartModuleKind,
    /// Parameters handed to the module's `init`, and its look-back.
    pub params: SmartModuleExtraParams,
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
    fn new(wasm: SmartModuleInvocationWasm) -> SmartModuleInvocation {
        SmartModuleInvocation { wasm, kind: SmartModuleKind::default(), params: SmartModuleExtraParams::default() }
    }

    /// A module registered on the server under `name`.
    pub fn predefined(name: impl Into<String>) -> SmartModuleInvocation {
        SmartModuleInvocation::new(SmartModuleInvocationWasm::Predefined(name.into()))
    }

    /// A module given as wasm bytes, named `name` in errors and metrics.
    pub fn adhoc(name: impl Into<String>, wasm: impl Into<Vec<u8>>) -> SmartModuleInvocation {
        SmartModuleInvocation::new(SmartModuleInvocationWasm::AdHocNamed { name: name.into(), wasm: wasm.into() })
    }

    /// A module read from a `.wasm` file, named after the file's stem.
    pub fn from_file(path: impl AsRef<Path>) -> Result<SmartModuleInvocation, WasmFileError> {
        let path = path.as_ref();
        let wasm = std::fs::read(path).map_err(|source| WasmFileError { path: path.to_path_buf(), source })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        Ok(SmartModuleInvocation::adhoc(name, wasm))
    }

    /// Requires the module to be of `kind` (an initial accumulator given
    /// before is kept).
    pub fn expect_kind(mut self, kind: ModuleKind) -> SmartModuleInvocation {
        let accumulator = self.kind.initial_accumulator().map(<[u8]>::to_vec);
        self.kind = match kind {
            ModuleKind::Filter => SmartModuleKind::Filter,
            ModuleKind::Map => SmartModuleKind::Map,
            ModuleKind::ArrayMap => SmartModuleKind::ArrayMap,
            ModuleKind::FilterMap => SmartModuleKind::FilterMap,
            ModuleKind::Aggregate => SmartModuleKind::Aggregate { accumulator: accumulator.unwrap_or_default() },
        };
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> SmartModuleInvocation {
        self.params.insert(name, value);
        self
    }

    /// Has the module's `look_back` function fed stored records before a
    /// stream starts (consumer streams only).
    pub fn lookback(mut self, lookback: Lookback) -> SmartModuleInvocation {
        self.params.set_lookback(Some(lookback));
        self
    }

    /// Runs an aggregate per key per window of event time (see
    /// [`Window`](crate::window::Window)) instead of once over the stream.
    pub fn window(mut self, window: crate::window::Window) -> SmartModuleInvocation {
        self.params.set_window(Some(window));
        self
    }

    /// Sets an aggregate's initial accumulator.
    pub fn initial_accumulator(mut self, value: impl Into<Vec<u8>>) -> SmartModuleInvocation {
        let accumulator = value.into();
        self.kind = match self.kind {
            SmartModuleKind::Aggregate { .. } => SmartModuleKind::Aggregate { accumulator },
            _ => SmartModuleKind::Generic(SmartModuleContextData::Aggregate { accumulator }),
        };
        self
    }

    /// The module's name: the registered name, the ad hoc module's name,
    /// or `adhoc-` and a hash of its wasm when it has none (the same hash
    /// whether the wasm is at hand compressed or not; an unnamed module
    /// that is compressed is inflated for it).
    pub fn name(&self) -> Cow<'_, str> {
        match &self.wasm {
            SmartModuleInvocationWasm::Predefined(name) | SmartModuleInvocationWasm::AdHocNamed { name, .. } => {
                Cow::Borrowed(name)
            }
            SmartModuleInvocationWasm::AdHoc(bytes) => {
                let inflated = self.wasm.adhoc_wasm().and_then(Result::ok);
                Cow::Owned(adhoc_name(inflated.as_deref().unwrap_or(bytes)))
            }
        }
    }

    /// [`name`](Self::name), for a caller that has inflated the module's
    /// `wasm` already: an unnamed module is not inflated a second time.
    pub fn name_given_wasm(&self, wasm: &[u8]) -> Cow<'_, str> {
        match &self.wasm {
            SmartModuleInvocationWasm::AdHoc(_) => Cow::Owned(adhoc_name(wasm)),
            _ => self.name(),
        }
    }
}

/// Wasm bytes, decompressed when they are a gzip stream (at most
/// [`MAX_WASM_BYTES`]); raw wasm is returned as it is.
pub fn decompress_wasm(bytes: &[u8]) -> Result<Cow<'_, [u8]>, std::io::Error> {
    gzip::inflate_if_compressed(bytes, MAX_WASM_BYTES)
}

/// The name of an unnamed ad hoc module: `adhoc-` and a hash of its wasm.
fn adhoc_name(wasm: &[u8]) -> String {
    format!("adhoc-{:016x}", stable_hash(wasm))
}

/// A stable 64-bit hash of bytes (FNV-1a): the same bytes give the same
/// number in every process and release (std's hasher is seeded at
/// random). It names unnamed modules, and producers place keys with it.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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
    /// Moves the record's key and value out into a one-record batch, sent
    /// as a frame's payload: a control message is capped at
    /// [`MAX_CONTROL_BYTES`](crate::frame::MAX_CONTROL_BYTES), a record is
    /// not. [`restore_record`](Self::restore_record) puts them back.
    pub fn into_control_and_payload(mut self) -> (RecordFailure, Vec<u8>) {
        let mut builder = crate::BatchBuilder::new(self.offset, self.timestamp);
        builder.push_value(self.key.as_deref(), &self.value);
        self.key = None;
        self.value = Vec::new();
        (self, builder.finish().into_bytes())
    }

    /// Takes the key and value back from the payload
    /// [`into_control_and_payload`](Self::into_control_and_payload) made.
    pub fn restore_record(&mut self, payload: Vec<u8>) -> Result<(), smartmodule_abi::abi::FormatError> {
        let batch = crate::Batch::from_bytes(payload)?;
        let record = batch
            .records()
            .next()
            .ok_or_else(|| smartmodule_abi::abi::FormatError::new("a failed record's payload holds no record"))?;
        self.key = record.key.map(<[u8]>::to_vec);
        self.value = record.value.to_vec();
        Ok(())
    }

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
/// compressed. Decoding keeps it compressed: a request names modules it
/// may not be allowed to run, so nothing is inflated before the host has
/// checked it, and then at most a set number of bytes.
mod gzip {
    use std::io::Read;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

    /// Compresses raw wasm; bytes that are compressed already (decoded from
    /// a request, or handed over compressed) go as they are.
    pub fn serialize<S: Serializer>(wasm: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if wasm.starts_with(&GZIP_MAGIC) {
            wasm.serialize(serializer)
        } else {
            crate::Compression::Gzip.compress(wasm).serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(deserializer)
    }

    /// The bytes, decompressed if they are a gzip stream, refusing more
    /// than `limit` bytes once decompressed.
    pub fn inflate_if_compressed(bytes: &[u8], limit: u64) -> Result<std::borrow::Cow<'_, [u8]>, std::io::Error> {
        if !bytes.starts_with(&GZIP_MAGIC) {
            if bytes.len() as u64 > limit {
                return Err(std::io::Error::other(format!("the SmartModule is larger than {limit} bytes")));
            }
            return Ok(std::borrow::Cow::Borrowed(bytes));
        }
        let mut wasm = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(limit + 1)
            .read_to_end(&mut wasm)
            .map_err(|e| std::io::Error::other(format!("cannot decompress the SmartModule: {e}")))?;
        if wasm.len() as u64 > limit {
            return Err(std::io::Error::other(format!(
                "the SmartModule is larger than {limit} bytes once decompressed"
            )));
        }
        Ok(std::borrow::Cow::Owned(wasm))
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
            .expect_kind(ModuleKind::Aggregate)
            .param("k", "v")
            .initial_accumulator("0")
            .lookback(Lookback::last(3));
        assert_eq!(invocation.kind, SmartModuleKind::Aggregate { accumulator: b"0".to_vec() });
        let bytes = encode(&invocation);
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        let decoded = decode::<SmartModuleInvocation>(&bytes).unwrap();
        // The wasm stays compressed until it is asked for.
        assert!(matches!(&decoded.wasm, SmartModuleInvocationWasm::AdHocNamed { wasm, .. } if wasm.len() < 2_000));
        assert_eq!(decoded.wasm.adhoc_wasm().unwrap().unwrap().as_ref(), vec![7u8; 100_000].as_slice());
        assert_eq!(
            (decoded.name(), &decoded.kind, &decoded.params),
            (invocation.name(), &invocation.kind, &invocation.params)
        );
        // Sent on again, it is not compressed twice.
        assert_eq!(encode(&decoded), bytes);
    }

    #[test]
    fn decompression_bombs_are_kept_compressed_and_refused_when_inflated() {
        // A gzip stream that inflates past the limit.
        let huge = vec![0u8; MAX_WASM_BYTES as usize + 1];
        let bytes = encode(&SmartModuleInvocationWasm::AdHocNamed { name: "bomb".into(), wasm: huge });
        assert!(bytes.len() < 1 << 20);
        let decoded = decode::<SmartModuleInvocationWasm>(&bytes).expect("decoding inflates nothing");
        let error = decoded.adhoc_wasm().unwrap().unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
        let error = decoded.adhoc_wasm_within(1_000).unwrap().unwrap_err();
        assert!(error.to_string().contains("larger than 1000 bytes"), "{error}");
    }

    #[test]
    fn an_unnamed_module_has_one_name_compressed_or_not() {
        let raw = SmartModuleInvocation::new(SmartModuleInvocationWasm::AdHoc(b"\0asm\x01\0\0\0".to_vec()));
        let travelled = decode::<SmartModuleInvocation>(&encode(&raw)).unwrap();
        assert_ne!(raw.wasm, travelled.wasm, "it travelled compressed");
        assert_eq!(raw.name(), travelled.name());
    }

    #[test]
    fn ad_hoc_wasm_may_come_compressed_and_unnamed() {
        use std::io::Write;
        let wasm = b"\0asm\x01\0\0\0".to_vec();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&wasm).unwrap();
        let compressed = SmartModuleInvocationWasm::AdHoc(encoder.finish().unwrap());
        assert_eq!(compressed.adhoc_wasm().unwrap().unwrap().as_ref(), wasm.as_slice());
        let raw = SmartModuleInvocationWasm::adhoc_from_bytes(&wasm).unwrap();
        assert_eq!(raw.adhoc_wasm().unwrap().unwrap().as_ref(), wasm.as_slice());
        let invocation = SmartModuleInvocation { wasm: raw, kind: SmartModuleKind::Filter, params: Default::default() };
        assert!(invocation.name().starts_with("adhoc-"), "{}", invocation.name());
        assert_eq!(invocation.kind.expected(), Some(ModuleKind::Filter));
        assert!(SmartModuleInvocationWasm::Predefined("x".into()).adhoc_wasm().is_none());
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
