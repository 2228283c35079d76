//! The wire protocol between clients and the server (`docs/protocol.md`).
//!
//! Every message is a frame: a length, a versioned header with a request
//! kind and a correlation id, a control part encoded with bincode (serde),
//! and a payload of raw bytes. Record batches travel as payload, in the one
//! batch layout, so the server sends what it read from disk without
//! re-encoding it. Both sides refuse frames larger than their limit before
//! reading them.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::{RecordFailure, SmartModuleKind};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Frames larger than this are refused unless configured otherwise.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 << 20;
/// Bytes after the length prefix and before the control part: version
/// (u16), kind (u16), correlation id (u32), control length (u32).
pub const FRAME_HEADER_LEN: usize = 12;
/// The address clients connect to by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9003";

/// What a frame carries. A response uses its request's kind with
/// [`RESPONSE_BIT`] set; errors use [`ApiKind::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ApiKind {
    /// Create a topic.
    CreateTopic = 1,
    /// Delete a topic and its data.
    DeleteTopic = 2,
    /// List topics.
    ListTopics = 3,
    /// Append one batch to a partition.
    Produce = 4,
    /// Stream records from a partition, optionally through SmartModules.
    StreamFetch = 5,
    /// Register a SmartModule.
    CreateSmartModule = 6,
    /// List registered SmartModules.
    ListSmartModules = 7,
    /// Delete a registered SmartModule.
    DeleteSmartModule = 8,
    /// Download a registered SmartModule's wasm.
    GetSmartModule = 9,
    /// An error answer to any request.
    Error = 0x7fff,
}

/// Set in the kind of every frame a server sends in answer to a request.
pub const RESPONSE_BIT: u16 = 0x8000;

impl ApiKind {
    /// The kind with this number, if there is one.
    pub fn from_u16(kind: u16) -> Option<ApiKind> {
        Some(match kind & !RESPONSE_BIT {
            1 => ApiKind::CreateTopic,
            2 => ApiKind::DeleteTopic,
            3 => ApiKind::ListTopics,
            4 => ApiKind::Produce,
            5 => ApiKind::StreamFetch,
            6 => ApiKind::CreateSmartModule,
            7 => ApiKind::ListSmartModules,
            8 => ApiKind::DeleteSmartModule,
            9 => ApiKind::GetSmartModule,
            0x7fff => ApiKind::Error,
            _ => return None,
        })
    }
}

/// One frame, decoded up to its control part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the sender.
    pub version: u16,
    /// The raw kind (with [`RESPONSE_BIT`] for responses).
    pub kind: u16,
    /// Matches a response to its request.
    pub correlation_id: u32,
    /// bincode-encoded control message.
    pub control: Vec<u8>,
    /// Raw bytes: record batches, wasm.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The limit.
        limit: u32,
    },
    /// The frame's header or control part is malformed.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl Frame {
    /// A frame of `kind` with a control message and a payload.
    pub fn new<T: Serialize>(kind: u16, correlation_id: u32, control: &T, payload: Vec<u8>) -> Frame {
        Frame { version: PROTOCOL_VERSION, kind, correlation_id, control: encode(control), payload }
    }

    /// Decodes the control part as `T`.
    pub fn control<T: for<'de> Deserialize<'de>>(&self) -> Result<T, FrameError> {
        decode(&self.control)
    }

    /// Whether the frame is a response.
    pub fn is_response(&self) -> bool {
        self.kind & RESPONSE_BIT != 0
    }

    /// Encoded size, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + FRAME_HEADER_LEN + self.control.len() + self.payload.len()
    }

    /// Writes the frame.
    pub async fn write<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> Result<(), FrameError> {
        let len = FRAME_HEADER_LEN + self.control.len() + self.payload.len();
        let mut head = Vec::with_capacity(4 + FRAME_HEADER_LEN + self.control.len());
        head.extend_from_slice(&(len as u32).to_le_bytes());
        head.extend_from_slice(&self.version.to_le_bytes());
        head.extend_from_slice(&self.kind.to_le_bytes());
        head.extend_from_slice(&self.correlation_id.to_le_bytes());
        head.extend_from_slice(&(self.control.len() as u32).to_le_bytes());
        head.extend_from_slice(&self.control);
        writer.write_all(&head).await?;
        writer.write_all(&self.payload).await?;
        Ok(())
    }

    /// Reads one frame, refusing any larger than `max_bytes` before reading
    /// its body.
    pub async fn read<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: u32) -> Result<Frame, FrameError> {
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(len);
        if len > max_bytes {
            return Err(FrameError::TooLarge { size: len as u64, limit: max_bytes });
        }
        if (len as usize) < FRAME_HEADER_LEN {
            return Err(FrameError::Malformed(format!(
                "frame of {len} bytes is shorter than its {FRAME_HEADER_LEN}-byte header"
            )));
        }
        let mut body = vec![0u8; len as usize];
        reader.read_exact(&mut body).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                FrameError::Malformed(format!("connection closed inside a frame of {len} bytes"))
            } else {
                e.into()
            }
        })?;
        let version = u16::from_le_bytes([body[0], body[1]]);
        let kind = u16::from_le_bytes([body[2], body[3]]);
        let correlation_id = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
        let control_len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
        if control_len > body.len() - FRAME_HEADER_LEN {
            return Err(FrameError::Malformed(format!("control part of {control_len} bytes runs past the frame")));
        }
        let payload = body.split_off(FRAME_HEADER_LEN + control_len);
        let control = body.split_off(FRAME_HEADER_LEN);
        Ok(Frame { version, kind, correlation_id, control, payload })
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 16 << 20 }>()
}

/// Encodes a control message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode_config()).expect("control messages always encode")
}

/// Decodes a control message, which must use all of `bytes`.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| FrameError::Malformed(format!("cannot decode control message: {e}")))?;
    if used != bytes.len() {
        return Err(FrameError::Malformed(format!("{} bytes left after the control message", bytes.len() - used)));
    }
    Ok(value)
}

/// Compresses wasm for the wire (ad hoc modules are sent with every stream).
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses wasm, refusing output larger than `limit` bytes.
pub fn decompress(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(bytes).take(limit + 1);
    decoder.read_to_end(&mut out).map_err(|e| format!("cannot decompress SmartModule: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("SmartModule is larger than {limit} bytes once decompressed"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Control messages
// ---------------------------------------------------------------------------

/// Error codes a server answers with. Each has a message for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A topic with that name exists.
    TopicExists,
    /// No topic with that name.
    TopicNotFound,
    /// The topic name is not allowed.
    InvalidTopicName,
    /// The topic has no such partition.
    PartitionNotFound,
    /// The request's parameters are invalid.
    InvalidRequest,
    /// A record batch failed validation.
    InvalidBatch,
    /// No registered SmartModule with that name.
    SmartModuleNotFound,
    /// A SmartModule with that name is registered.
    SmartModuleExists,
    /// The SmartModule is not valid (bad wasm, wrong ABI, wrong kind...).
    InvalidSmartModule,
    /// A SmartModule failed while running (limits, traps, record errors).
    SmartModuleFailed,
    /// The frame was too large, malformed, or of an unknown kind or version.
    BadFrame,
    /// The server could not read or write its storage.
    Storage,
}

/// The control part of an [`ApiKind::Error`] frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What kind of error.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

/// Create a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    /// The name.
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Retention.
    pub retention: RetentionSpec,
}

/// How long a topic keeps records. A segment is deleted when it is entirely
/// older than `max_age_ms`, or when the partition is larger than `max_bytes`
/// (oldest segments first). The active segment is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// Age limit in milliseconds; none when `None`.
    pub max_age_ms: Option<u64>,
    /// Size limit per partition in bytes; none when `None`.
    pub max_bytes: Option<u64>,
    /// Segment size at which a new segment starts; server default when `None`.
    pub segment_bytes: Option<u64>,
}

/// Delete a topic, or a SmartModule: the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRequest {
    /// The name.
    pub name: String,
}

/// A topic as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Retention settings.
    pub retention: RetentionSpec,
    /// The next offset of each partition.
    pub next_offsets: Vec<i64>,
}

/// Append a batch (the payload) to a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// The answer to a produce: where the batch's records now are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Number of records appended.
    pub record_count: u32,
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    /// The first record still stored.
    Beginning,
    /// After the last record: only new records.
    End,
    /// An absolute offset.
    Absolute(i64),
    /// `n` records before the end.
    FromEnd(u64),
}

/// Where a SmartModule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleSource {
    /// Registered on the server under this name.
    Registered(String),
    /// Ad hoc: gzip-compressed wasm bytes.
    AdHoc {
        /// A name for errors and metrics (the file name, usually).
        name: String,
        /// gzip-compressed wasm.
        compressed_wasm: Vec<u8>,
    },
}

/// One SmartModule of a chain, as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Where the module comes from.
    pub source: ModuleSource,
    /// The kind the user asked for; `None` to accept the module's own.
    pub kind: Option<WireKind>,
    /// Parameters for `init`.
    pub params: Vec<(String, String)>,
    /// An aggregate's initial accumulator.
    pub initial_accumulator: Option<Vec<u8>>,
}

/// [`SmartModuleKind`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKind {
    /// Filter.
    Filter,
    /// Map.
    Map,
    /// Filter-map.
    FilterMap,
    /// Array-map.
    ArrayMap,
    /// Aggregate.
    Aggregate,
}

impl From<SmartModuleKind> for WireKind {
    fn from(kind: SmartModuleKind) -> Self {
        match kind {
            SmartModuleKind::Filter => WireKind::Filter,
            SmartModuleKind::Map => WireKind::Map,
            SmartModuleKind::FilterMap => WireKind::FilterMap,
            SmartModuleKind::ArrayMap => WireKind::ArrayMap,
            SmartModuleKind::Aggregate => WireKind::Aggregate,
        }
    }
}

impl From<WireKind> for SmartModuleKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::Filter => SmartModuleKind::Filter,
            WireKind::Map => SmartModuleKind::Map,
            WireKind::FilterMap => SmartModuleKind::FilterMap,
            WireKind::ArrayMap => SmartModuleKind::ArrayMap,
            WireKind::Aggregate => SmartModuleKind::Aggregate,
        }
    }
}

/// Error policy on the wire; dead letters go back to the consumer as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WirePolicy {
    /// Stop at the first failed record.
    #[default]
    Fail,
    /// Drop failed records.
    Skip,
    /// Send failed records to the consumer as dead letters and go on.
    DeadLetter,
}

/// Start streaming records from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFetchRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Where to start.
    pub offset: OffsetSpec,
    /// Keep waiting for new records at the end (`false`: stop at the end).
    pub continuous: bool,
    /// SmartModules to run on the server, in order.
    pub chain: Vec<Invocation>,
    /// What to do when a module fails on a record.
    pub policy: WirePolicy,
    /// Most bytes of stored batches to read per step.
    pub max_bytes: u32,
}

/// One event of a stream; the payload of a `Batch` event is a record batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// The payload is a batch of (transformed) records. `next_offset` is
    /// where the stream continues.
    Batch {
        /// Offset after the last stored record this batch came from.
        next_offset: i64,
    },
    /// A record a SmartModule failed on, under the dead-letter policy.
    DeadLetter(RecordFailure),
    /// A SmartModule failed on a record under the fail policy; the stream ends.
    Failed(RecordFailure),
    /// The stream reached the end (when not continuous); it ends.
    End {
        /// Offset after the last record.
        next_offset: i64,
    },
}

/// Register a SmartModule; the payload is the wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSmartModuleRequest {
    /// The name.
    pub name: String,
}

/// A registered SmartModule as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInfo {
    /// The name.
    pub name: String,
    /// Its kind.
    pub kind: WireKind,
    /// Size of the wasm in bytes.
    pub size: u64,
    /// `SmartModuleStatus` when it validated and compiled.
    pub status: String,
    /// Whether it has an `init` function.
    pub has_init: bool,
}

/// An empty control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frame =
            Frame::new(ApiKind::Produce as u16, 7, &ProduceRequest { topic: "t".into(), partition: 0 }, vec![1, 2, 3]);
        let mut bytes = Vec::new();
        frame.write(&mut bytes).await.unwrap();
        assert_eq!(bytes.len(), frame.encoded_len());
        let read = Frame::read(&mut bytes.as_slice(), DEFAULT_MAX_FRAME_BYTES).await.unwrap();
        assert_eq!(read, frame);
        assert_eq!(read.control::<ProduceRequest>().unwrap().topic, "t");
    }

    #[tokio::test]
    async fn oversize_and_malformed_frames_are_refused() {
        let frame = Frame::new(1, 1, &Empty, vec![0; 100]);
        let mut bytes = Vec::new();
        frame.write(&mut bytes).await.unwrap();
        assert!(matches!(Frame::read(&mut bytes.as_slice(), 50).await, Err(FrameError::TooLarge { .. })));
        assert!(matches!(Frame::read(&mut &bytes[..20], 1000).await, Err(FrameError::Malformed(_))));
        let mut lying = bytes.clone();
        lying[12..16].copy_from_slice(&9999u32.to_le_bytes());
        assert!(matches!(Frame::read(&mut lying.as_slice(), 1000).await, Err(FrameError::Malformed(_))));
        assert!(matches!(Frame::read(&mut &[][..], 1000).await, Err(FrameError::Closed)));
    }

    #[test]
    fn compression_round_trips_and_limits_size() {
        let wasm = vec![7u8; 100_000];
        let compressed = compress(&wasm);
        assert!(compressed.len() < 1_000);
        assert_eq!(decompress(&compressed, 200_000).unwrap(), wasm);
        assert!(decompress(&compressed, 1_000).unwrap_err().contains("larger than"));
    }
}
