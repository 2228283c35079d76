//! The language every part of the platform speaks: the record batch format,
//! the frames and messages of the wire protocol, and the names of the
//! SmartModules a chain applies.
//!
//! - [`Batch`] and [`BatchBuilder`] hold records in the one batch layout
//!   (`docs/abi.md`) used unchanged on disk, on the wire and as SmartModule
//!   input; [`RecordRef`] borrows one record from a batch.
//! - [`Frame`] is the unit of the wire protocol (`docs/protocol.md`);
//!   [`requests`] are its requests, each one type naming its response type
//!   ([`Request`]), and [`messages`] the stream events, listings and
//!   [`ErrorCode`]s they share.
//! - [`SmartModuleInvocation`], [`SmartModuleKind`], [`ErrorPolicy`] and
//!   [`RecordFailure`] name the SmartModules a producer, a consumer or the
//!   server runs, and what they report.
//!
//! - [`units`] reads the sizes and durations people write (`64KiB`, `10s`)
//!   for the command, connector configs and the server alike;
//!   [`secrets_file`] reads and writes the connector secrets file.
//!
//! This crate owns formats only. It does no I/O of its own (the `tokio`
//! feature adds frame reading and writing over tokio streams) and knows
//! nothing of wasm runtimes, storage or connections.
//!
//! ```
//! use fluvio_protocol::{Batch, BatchBuilder};
//!
//! let mut builder = BatchBuilder::new(0, 1_700_000_000_000);
//! builder.push_value(Some(b"key"), b"value");
//! let batch = Batch::from_bytes(builder.finish().into_bytes()).unwrap();
//! let record = batch.records().next().unwrap();
//! assert_eq!((record.offset, record.key, record.value), (0, Some(&b"key"[..]), &b"value"[..]));
//! ```

pub mod batch;
pub mod buffers;
pub mod compression;
pub mod frame;
pub mod messages;
pub mod requests;
pub mod secrets_file;
pub mod smartmodule;
pub mod units;
pub mod window;

pub use batch::{Batch, BatchBuilder, CheckedBatch, RecordRef, StoredBatch, batch_ranges};
pub use compression::Compression;
pub use frame::{ApiKind, DEFAULT_ADDR, DEFAULT_MAX_FRAME_BYTES, Frame, FrameError, PROTOCOL_VERSION, RESPONSE_BIT};
pub use messages::{
    ConnectorInfo, ConsumerOffset, ErrorCode, ErrorResponse, OffsetSpec, ProducerStamp, RetentionSpec, SmartModuleInfo,
    StreamEvent, TopicInfo,
};
pub use requests::{AnyRequest, Message, Request};

/// The partition a key goes to among `partitions`, as Fluvio's producer
/// puts it: SipHash-2-4 with zero keys over the key hashed as Rust hashes a
/// byte slice (its length as eight little-endian bytes, as on the 64-bit
/// machines Fluvio runs on, then the bytes), modulo the count. The same
/// key lands on the same partition in every process and release, for as
/// long as the topic has the same partition count. Producers and derived
/// topics route keys with it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher::new();
    hasher.write(&(key.len() as u64).to_le_bytes());
    hasher.write(key);
    (hasher.finish() % u64::from(partitions.max(1))) as u32
}

/// How long the SDK goes on sending a batch the cluster did not
/// acknowledge (to the same server, or another of the cluster). A server
/// that drops resent batches must remember each producer's batch at least
/// this long, or a late resend is stored twice.
pub const RETRY_HORIZON: std::time::Duration = std::time::Duration::from_secs(30);
pub use smartmodule::{
    ErrorPolicy, Lookback, MAX_CHAIN_WASM_BYTES, MAX_WASM_BYTES, ModuleKind, RecordFailure, SmartModuleContextData,
    SmartModuleExtraParams, SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind, WasmFileError,
};
/// The batch layout itself (header, record parsing), shared with guests.
pub use smartmodule_abi::abi;
