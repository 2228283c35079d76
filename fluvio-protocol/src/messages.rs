//! The parts of the wire protocol's control messages that more than one
//! message uses: error codes, stream events, and what topics, consumers,
//! SmartModules and connectors look like when listed (`docs/protocol.md`).
//! The requests and their responses are in [`requests`](crate::requests).

use serde::{Deserialize, Serialize};

use crate::smartmodule::{ModuleKind, RecordFailure};

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
    /// A connector with that name exists.
    ConnectorExists,
    /// No connector with that name.
    ConnectorNotFound,
    /// The connector's config was refused (the message says why), or its
    /// program could not be run.
    InvalidConnector,
    /// The storage behind the server (a JetStream cluster) did not answer
    /// in time or has no quorum; the request may be retried, here or on
    /// another server.
    Unavailable,
    /// No stored offsets for that consumer.
    ConsumerNotFound,
    /// A server resource limit was reached (connections, streams on one
    /// connection, chain length, SmartModule memory); the message names the
    /// limit and the flag that raises it.
    LimitReached,
    /// The server requires credentials (a token or a client certificate)
    /// and the connection has presented none, or ones it does not know.
    Unauthenticated,
    /// The connection's principal may not do this (its role, or the topics
    /// it is allowed).
    PermissionDenied,
}

/// The control part of an [`ApiKind::Error`](crate::ApiKind::Error) frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What kind of error.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
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

/// A topic as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Copies kept of each partition.
    pub replication: u32,
    /// Retention settings.
    pub retention: RetentionSpec,
    /// The next offset of each partition.
    pub next_offsets: Vec<i64>,
}

/// A producer's identity and the number of one of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerStamp {
    /// Random, chosen when the producer starts.
    pub id: u64,
    /// 0, 1, 2... for the producer's batches in order.
    pub sequence: u64,
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
    /// `n` records after the first still stored (at most the end).
    FromBeginning(u64),
}

/// One event of a stream; the payload of a `Batch` event is a record batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// The stream starts at `offset` (its [`OffsetSpec`] resolved), sent
    /// first: a client that reconnects resumes from here when no batch has
    /// arrived yet.
    Started {
        /// The first offset the stream reads.
        offset: i64,
    },
    /// The payload is one or more record batches back to back (stored
    /// batches as they are, or a SmartModule chain's output). `next_offset`
    /// is where the stream continues.
    Batch {
        /// Offset after the last stored record these batches came from.
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

/// One stored consumer offset, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffset {
    /// The consumer's id.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The offset the consumer reads next.
    pub offset: i64,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// A registered SmartModule as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartModuleInfo {
    /// The name.
    pub name: String,
    /// Its kind.
    pub kind: ModuleKind,
    /// Size of the wasm in bytes.
    pub size: u64,
    /// `SmartModuleStatus` when it validated and compiled.
    pub status: String,
    /// Whether it has an `init` function.
    pub has_init: bool,
}

/// A connector as listed (never with its secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// Its name (`meta.name`).
    pub name: String,
    /// Its type (`meta.type`), such as `sql-sink`.
    pub kind: String,
    /// The topic it reads or writes.
    pub topic: String,
    /// What it is doing, for people: `running`, `restarting in 4s`...
    pub status: String,
    /// Process id while it runs.
    pub pid: Option<u32>,
    /// How many times it was restarted after stopping on its own.
    pub restarts: u32,
}
