//! The control messages of the wire protocol: requests, responses, stream
//! events and error codes (`docs/protocol.md`). Each travels as the bincode
//! control part of a [`Frame`](crate::Frame); record batches and wasm travel
//! as the frame's payload.

use serde::{Deserialize, Serialize};

use crate::smartmodule::{ErrorPolicy, ModuleKind, RecordFailure, SmartModuleInvocation};

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

/// Create a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    /// The name.
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Copies kept of each partition (at least 1; more than 1 needs a
    /// replicated backend such as JetStream).
    pub replication: u32,
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

/// Present a token; sent first on a connection to a server that requires
/// credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateRequest {
    /// The secret token.
    pub token: String,
}

impl std::fmt::Debug for AuthenticateRequest {
    /// Never prints the token: requests end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateRequest").field("token", &"<redacted>").finish()
    }
}

/// Who a connection acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateResponse {
    /// The principal's name.
    pub principal: String,
    /// Its role: `admin` or `client`.
    pub role: String,
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
    /// Copies kept of each partition.
    pub replication: u32,
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
    /// Who sent the batch and its place in that producer's sequence: a
    /// batch sent again with the same stamp (after a lost acknowledgement)
    /// is stored once, and answered with the offsets it got the first time.
    pub producer: Option<ProducerStamp>,
}

/// A producer's identity and the number of one of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerStamp {
    /// Random, chosen when the producer starts.
    pub id: u64,
    /// 0, 1, 2... for the producer's batches in order.
    pub sequence: u64,
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
    /// `n` records after the first still stored (at most the end).
    FromBeginning(u64),
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
    pub chain: Vec<SmartModuleInvocation>,
    /// What to do when a module fails on a record; dead letters come back
    /// to the consumer as [`StreamEvent::DeadLetter`]s.
    pub policy: ErrorPolicy,
    /// Most bytes of stored batches to read per step.
    pub max_bytes: u32,
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

/// Store where a consumer has got to in a partition: the offset it reads
/// next (one past the last record it has processed). A later commit
/// replaces an earlier one, even with a lower offset (to read again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffsetRequest {
    /// The consumer's id: 1 to 200 characters from `a-z A-Z 0-9 _ -`.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The offset the consumer reads next; at most the partition's end.
    pub offset: i64,
}

/// Read a consumer's stored offset in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOffsetRequest {
    /// The consumer's id.
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// The answer to [`FetchOffsetRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOffsetResponse {
    /// The stored offset; `None` when the consumer has committed none there.
    pub offset: Option<i64>,
}

/// Forget a consumer's stored offsets: in one topic, or in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteConsumerRequest {
    /// The consumer's id.
    pub consumer: String,
    /// Only this topic's offsets; every topic's when `None`.
    pub topic: Option<String>,
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
    pub kind: ModuleKind,
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

/// Hand a connector to the cluster, which runs it as its own process and
/// restarts it when it stops. The cluster checks the config first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateConnectorRequest {
    /// The config file's text (Fluvio's connector config format).
    pub config: String,
    /// Values of the secrets the config names, as `(NAME, value)`.
    pub secrets: Vec<(String, String)>,
}

/// Secrets never appear in debug output.
impl std::fmt::Debug for CreateConnectorRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CreateConnectorRequest").field("config", &self.config).field("secrets", &names).finish()
    }
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

/// Read a connector's log from a byte offset; the payload of the answer is
/// the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorLogsRequest {
    /// The connector.
    pub name: String,
    /// Where to start reading.
    pub offset: u64,
}

/// Where the next read of a connector's log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorLogsResponse {
    /// Offset after the returned text; pass it to the next request.
    pub next_offset: u64,
}
