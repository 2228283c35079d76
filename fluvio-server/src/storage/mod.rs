//! Where topics and their records are kept, behind one boundary.
//!
//! The connection and stream code sees only the [`Storage`] and
//! [`Partition`] traits: create, delete and list topics; append a batch to a
//! partition, read batches from an offset, follow its end. A backend owns
//! everything else, durability, recovery and retention included. The
//! embedded backend is [`local::LocalStorage`]: a directory of topics, each
//! partition a [`local::segment_log::PartitionLog`] on local disk. The distributed
//! backend, [`jetstream::JetStreamStorage`], implements the same two traits
//! on a NATS JetStream cluster, for several servers and replicated topics.

pub mod jetstream;
pub mod local;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use fluvio_protocol::requests::ServerDescription;
use fluvio_protocol::{CheckedBatch, ConsumerOffset, ProducerStamp, RetentionSpec, StoredBatch, TopicInfo};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use local::segment_log::FlushPolicy;

/// One partition's records, wherever they are stored.
pub trait Partition: Send + Sync + 'static {
    /// Appends a producer's batch (records numbered 0, 1, 2, ...), gives it
    /// the next offsets and stores it durably per the backend's policy.
    /// Returns the offset of its first record.
    /// With a `producer` stamp, a batch stored before under the same stamp
    /// is not stored again: the offset it got then is returned (within the
    /// backend's deduplication window).
    fn append(&self, batch: CheckedBatch, producer: Option<ProducerStamp>) -> BoxFuture<'_, Result<i64, StorageError>>;

    /// Starts an [`append`](Self::append) and resolves once the batch has
    /// its place in the partition's order, to the append's outcome: an
    /// append started after this resolves is stored after this batch. A
    /// writer that must keep its batches in order, but not wait for each
    /// to be stored (a connection's produce requests), starts the next one
    /// here. A backend that keeps several appends of a partition in flight
    /// (JetStream) places the batch as it is queued; by default the append
    /// runs to its end first.
    ///
    /// `follows` is the sequence of the same producer's batch sent just
    /// before this one and unanswered then ([`ProduceRequest::follows`](fluvio_protocol::requests::ProduceRequest::follows)):
    /// a backend that keeps appends in flight refuses this one when that
    /// one failed after it was placed, so that the producer can send both
    /// again in order. By default the one before has its outcome before
    /// this one is placed, and the connection checks.
    fn place(
        &self,
        batch: CheckedBatch,
        producer: Option<ProducerStamp>,
        _follows: Option<u64>,
    ) -> BoxFuture<'_, PlacedAppend> {
        Box::pin(async move {
            let outcome = self.append(batch, producer).await;
            PlacedAppend::answered(outcome)
        })
    }

    /// Appends a batch only where the partition ends at `expected_next`,
    /// for a writer that must be the only one (a derived topic's
    /// pipeline): when another write came first, nothing is stored and the
    /// answer is [`StorageError::NotAtEnd`]. By default the end is checked
    /// and the batch appended, which holds where one process owns the
    /// partition (the local log); a shared backend checks in the append.
    fn append_at(
        &self,
        batch: CheckedBatch,
        producer: Option<ProducerStamp>,
        expected_next: i64,
    ) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            let end = self.next_offset();
            if end != expected_next {
                return Err(StorageError::NotAtEnd { expected: expected_next, end });
            }
            self.append(batch, producer).await
        })
    }

    /// Whole stored batches, starting with the one that holds `offset` (or
    /// the first still stored, if retention removed `offset`), up to about
    /// `max_bytes` (at least one batch when there is one). They come as
    /// stored: a reader that needs their records opens them
    /// ([`StoredBatch::open`]), which checks them again.
    fn read(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>>;

    /// Whole stored batches that start exactly at `offset` and lie back to
    /// back in one file, as that file's byte range, up to about `max_bytes`
    /// (at least one batch): a consumer without SmartModules gets them
    /// straight from the file (`sendfile` on plain TCP), never copied
    /// through this process. `None` where the backend does not keep batches
    /// in files, and where [`read`](Self::read) must decide (nothing
    /// readable yet, `offset` inside a batch or removed by retention).
    fn read_run(&self, _offset: i64, _max_bytes: u64) -> BoxFuture<'_, Result<Option<StoredRun>, StorageError>> {
        Box::pin(async { Ok(None) })
    }

    /// Bytes the partition takes in this server's storage, where it knows
    /// (the local log: its segment files); `None` where the store keeps
    /// that count itself (JetStream reports its streams' bytes).
    fn stored_bytes(&self) -> Option<u64> {
        None
    }

    /// Offset of the first record still stored.
    fn start_offset(&self) -> i64;

    /// Offset the next record will get.
    fn next_offset(&self) -> i64;

    /// Follows the offset consumers may read up to, as records are appended.
    fn subscribe(&self) -> watch::Receiver<i64>;

    /// A reader for one consumer that reads on from `offset`, batch after
    /// batch. Where each read is a round trip (JetStream), the reader keeps
    /// reads in flight ahead of the consumer; by default it just calls
    /// [`read`](Self::read).
    fn reader(self: Arc<Self>, offset: i64) -> Box<dyn PartitionReader> {
        Box::new(PlainReader { partition: self, offset })
    }
}

/// Producer batches that failed lately, by stamp: a batch that follows one
/// of them is refused, so that the producer sends both again in order.
/// Holds the last [`FailedBatches::CAPACITY`]: a batch that follows
/// another was sent before that one was answered, so it comes soon after.
#[derive(Debug, Default)]
pub struct FailedBatches {
    stamps: std::collections::VecDeque<ProducerStamp>,
}

impl FailedBatches {
    /// Failures remembered.
    pub const CAPACITY: usize = 256;

    /// Notes that the batch stamped `stamp` failed (or was refused).
    pub fn note(&mut self, stamp: ProducerStamp) {
        if self.stamps.len() == Self::CAPACITY {
            self.stamps.pop_front();
        }
        self.stamps.push_back(stamp);
    }

    /// Whether a batch stamped `stamp`, sent behind the same producer's
    /// batch `follows`, must be refused: that one failed.
    pub fn refuses(&self, stamp: Option<ProducerStamp>, follows: Option<u64>) -> bool {
        match (stamp, follows) {
            (Some(stamp), Some(follows)) => {
                self.stamps.iter().any(|failed| failed.id == stamp.id && failed.sequence == follows)
            }
            _ => false,
        }
    }

    /// The error a refused batch is answered with.
    pub fn refusal(follows: Option<u64>) -> String {
        format!(
            "the producer's batch {} sent before this one failed, so this one was not stored either; send them again in their order",
            follows.unwrap_or_default()
        )
    }
}

/// An append that has its place in its partition's order
/// ([`Partition::place`]), on its way to being stored.
pub struct PlacedAppend(BoxFuture<'static, Result<i64, StorageError>>);

impl PlacedAppend {
    /// An append whose outcome `outcome` resolves to.
    pub fn new(outcome: impl std::future::Future<Output = Result<i64, StorageError>> + Send + 'static) -> PlacedAppend {
        PlacedAppend(Box::pin(outcome))
    }

    /// An append already answered.
    pub fn answered(outcome: Result<i64, StorageError>) -> PlacedAppend {
        PlacedAppend::new(std::future::ready(outcome))
    }

    /// Waits until the batch is stored: the offset of its first record.
    pub async fn stored(self) -> Result<i64, StorageError> {
        self.0.await
    }
}

/// Stored batches back to back in one file: bytes `position..position +
/// len` of `file` hold whole batches, as they were checked and appended.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The segment file, open (retention may unlink it meanwhile; the open
    /// file keeps its bytes).
    pub file: Arc<std::fs::File>,
    /// Its path, for errors.
    pub path: PathBuf,
    /// Where the first batch starts.
    pub position: u64,
    /// Bytes of the run.
    pub len: usize,
    /// The offset after the run's last record.
    pub next_offset: i64,
}

/// Reads a partition onwards, for one consumer.
pub trait PartitionReader: Send {
    /// The next stored batches, up to about `max_bytes` (at least one batch
    /// when there is one); empty at the end. The first may start before
    /// the reader's offset (batches are whole).
    fn next(&mut self, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>>;

    /// The next stored batches as a run of one file
    /// ([`Partition::read_run`]); `None`: call [`next`](Self::next).
    fn next_run(&mut self, _max_bytes: u64) -> BoxFuture<'_, Result<Option<StoredRun>, StorageError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The default reader: one [`Partition::read`] after the other.
struct PlainReader<P: ?Sized> {
    partition: Arc<P>,
    offset: i64,
}

impl<P: Partition + ?Sized> PartitionReader for PlainReader<P> {
    fn next(&mut self, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>> {
        Box::pin(async move {
            let batches = self.partition.read(self.offset, max_bytes).await?;
            if let Some(last) = batches.last() {
                self.offset = self.offset.max(last.next_offset());
            }
            Ok(batches)
        })
    }

    fn next_run(&mut self, max_bytes: u64) -> BoxFuture<'_, Result<Option<StoredRun>, StorageError>> {
        Box::pin(async move {
            let run = self.partition.read_run(self.offset, max_bytes).await?;
            if let Some(run) = &run {
                self.offset = self.offset.max(run.next_offset);
            }
            Ok(run)
        })
    }
}

/// Topics and their partitions, wherever they are stored.
pub trait Storage: Send + Sync {
    /// Creates a topic.
    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<(), TopicError>>;

    /// Deletes a topic and its records.
    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), TopicError>>;

    /// Every topic, sorted by name.
    fn list_topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>, TopicError>>;

    /// One partition of a topic.
    fn partition<'a>(&'a self, topic: &'a str, partition: u32)
    -> BoxFuture<'a, Result<Arc<dyn Partition>, TopicError>>;

    /// Periodic upkeep: syncs that are due, and retention (removing what is
    /// past a topic's age or size limit). The server calls it a few times a
    /// second.
    fn maintain(&self) -> BoxFuture<'_, ()>;

    /// Makes everything appended so far durable (for a clean shutdown).
    fn sync_all(&self) -> BoxFuture<'_, ()>;

    /// Stores, durably, the offset `consumer` reads next in a partition
    /// (the caller has checked the id, the partition and the offset), with
    /// the principal that committed it (`None` on a server without an
    /// access file), which the consumer-id quota counts.
    fn commit_offset<'a>(
        &'a self,
        consumer: &'a str,
        topic: &'a str,
        partition: u32,
        offset: i64,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TopicError>>;

    /// The offset `consumer` committed last in a partition, if any.
    fn fetch_offset<'a>(
        &'a self,
        consumer: &'a str,
        topic: &'a str,
        partition: u32,
    ) -> BoxFuture<'a, Result<Option<i64>, TopicError>>;

    /// Every stored consumer offset, sorted by consumer, topic and
    /// partition.
    fn list_offsets(&self) -> BoxFuture<'_, Result<Vec<OwnedOffset>, TopicError>>;

    /// Forgets the offsets of `consumer` (every consumer's, when `None`) in
    /// `topic` (in every topic, when `None`) and `partition` (every one,
    /// when `None`). Returns how many there were.
    fn delete_offsets<'a>(
        &'a self,
        consumer: Option<&'a str>,
        topic: Option<&'a str>,
        partition: Option<u32>,
    ) -> BoxFuture<'a, Result<usize, TopicError>>;

    /// Tells the cluster that `server` is alive. The server calls it every
    /// [`HEARTBEAT_PERIOD`]; a server not heard of for [`SERVER_TTL`] is
    /// no longer listed by [`servers`](Self::servers).
    fn announce<'a>(&'a self, server: &'a ServerDescription) -> BoxFuture<'a, Result<(), TopicError>>;

    /// The servers alive now, sorted by id.
    fn servers(&self) -> BoxFuture<'_, Result<Vec<ServerDescription>, TopicError>>;
}

/// How often a server tells the cluster it is alive.
pub const HEARTBEAT_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a server stays listed after its last heartbeat: three missed
/// heartbeats.
pub const SERVER_TTL: std::time::Duration = std::time::Duration::from_secs(6);

/// A stored consumer offset and the principal that committed it last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedOffset {
    /// The offset, as clients see it.
    pub offset: ConsumerOffset,
    /// The principal that committed it; `None` when committed on a server
    /// without an access file (or before owners were stored).
    pub owner: Option<String>,
}

/// Milliseconds since the Unix epoch, for the times metadata records
/// (when an offset was committed, when a topic changed state).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A consumer id that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consumer id {0:?} must be 1 to 200 characters from letters, digits, '_' and '-'")]
pub struct ConsumerIdError(pub String);

/// Checks a consumer id: 1 to 200 characters from `a-z A-Z 0-9 _ -` (no
/// `.`: it separates the parts of a key in a JetStream bucket).
pub fn validate_consumer_id(id: &str) -> Result<(), ConsumerIdError> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return Err(ConsumerIdError(id.to_string()));
    }
    Ok(())
}

/// A topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// The name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Copies kept of each partition.
    #[serde(default = "one")]
    pub replication: u32,
    /// Retention.
    pub retention: RetentionSpec,
}

fn one() -> u32 {
    1
}

/// Storage failures of one partition.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("storage i/o error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A batch was refused.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The JetStream cluster did not answer, or could not store the batch
    /// with a majority of its copies.
    #[error("the JetStream cluster could not {action} stream {stream}: {reason}; the request can be retried")]
    Unavailable {
        /// What was being done.
        action: &'static str,
        /// The JetStream stream.
        stream: String,
        /// What NATS said.
        reason: String,
    },
    /// An exclusive append found the partition ending elsewhere than its
    /// writer expected: another writer came first.
    #[error(
        "the partition ends at offset {end}, not at {expected} where this writer expected it: another writer came first"
    )]
    NotAtEnd {
        /// Where the writer expected the end.
        expected: i64,
        /// Where it is.
        end: i64,
    },
    /// A stored batch failed its checks when read back.
    #[error("stored batch at byte {position} of {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the batch starts in it.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// A topic with that name exists.
    #[error("topic {0:?} already exists")]
    Exists(String),
    /// No topic with that name.
    #[error("topic {0:?} not found; create it with `fluvio topic create {0}`")]
    NotFound(String),
    /// The name is not allowed.
    #[error("invalid topic {0}")]
    InvalidName(#[from] NameError),
    /// The backend cannot keep that many copies.
    #[error("topic {topic:?} cannot have {requested} copies: {reason}")]
    InvalidReplication {
        /// The topic.
        topic: String,
        /// The replication factor asked for.
        requested: u32,
        /// Why, and what to do.
        reason: String,
    },
    /// The backend refused the topic's settings.
    #[error("topic {topic:?} was refused: {reason}")]
    Refused {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The JetStream cluster did not answer a metadata request.
    #[error("the JetStream cluster could not {action}: {reason}; the request can be retried")]
    Unavailable {
        /// What was being done.
        action: String,
        /// What NATS said.
        reason: String,
    },
    /// The partition count is outside what a topic may have.
    #[error("a topic needs 1 to {MAX_PARTITIONS} partitions, not {0}")]
    InvalidPartitionCount(u32),
    /// The topic has no such partition.
    #[error("topic {topic:?} has {count} partition(s); partition {partition} does not exist")]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        count: u32,
    },
    /// The topic's files are on disk but could not be opened when the
    /// server started; the server serves every other topic and keeps these
    /// files untouched.
    #[error(
        "topic {topic:?} could not be opened when the server started, so it is not served and its name is taken: {reason}. Its files are kept; once repaired, restart the server"
    )]
    Unopened {
        /// The topic.
        topic: String,
        /// Why it could not be opened.
        reason: String,
    },
    /// A topic's stored settings cannot be read back.
    #[error(
        "the settings of a topic, {}, are unreadable ({reason}); restore the file from a backup, or move the directory {} away to drop the topic",
        path.display(),
        path.parent().map_or_else(|| path.display().to_string(), |dir| dir.display().to_string())
    )]
    CorruptSettings {
        /// The settings file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Storage failed under the operation.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// Most partitions one server's local log holds, over all topics: each open
/// partition keeps two files open for as long as the server runs.
pub const MAX_TOTAL_PARTITIONS: usize = 8192;

/// The range a topic's segment size must fall in. Below it, a partition
/// becomes thousands of tiny files; above it, retention can only ever
/// delete huge pieces at once.
pub const SEGMENT_BYTES_RANGE: std::ops::RangeInclusive<u64> = (1 << 20)..=(16 << 30);

/// A topic or SmartModule name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 200 characters.
    #[error("name {0:?} must be 1 to 200 characters long")]
    Length(String),
    /// A character outside `a-z A-Z 0-9 . _ -`, or `.`/`..`.
    #[error("name {0:?} may only use letters, digits, '.', '_' and '-'")]
    Characters(String),
}

/// Checks a topic or SmartModule name: 1 to 200 characters from
/// `a-z A-Z 0-9 . _ -`, not `.` or `..`, so that it is also a safe file name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 200 {
        return Err(NameError::Length(name.to_string()));
    }
    if name == "." || name == ".." || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(NameError::Characters(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_refused_only_behind_its_own_producers_failed_batch() {
        let mut failed = FailedBatches::default();
        failed.note(ProducerStamp { id: 7, sequence: 4 });
        let behind = Some(ProducerStamp { id: 7, sequence: 5 });
        assert!(failed.refuses(behind, Some(4)), "sent behind the failed batch");
        assert!(!failed.refuses(behind, Some(3)), "sent behind another batch");
        assert!(!failed.refuses(behind, None), "sent after the failed batch was answered");
        assert!(!failed.refuses(Some(ProducerStamp { id: 8, sequence: 5 }), Some(4)), "another producer");
        assert!(!failed.refuses(None, Some(4)), "an unstamped batch");
    }

    #[test]
    fn failed_batches_keep_the_latest_only() {
        let mut failed = FailedBatches::default();
        for sequence in 0..FailedBatches::CAPACITY as u64 + 1 {
            failed.note(ProducerStamp { id: 1, sequence });
        }
        let stamp = Some(ProducerStamp { id: 1, sequence: 1000 });
        assert!(!failed.refuses(stamp, Some(0)), "the oldest is forgotten");
        assert!(failed.refuses(stamp, Some(1)));
        assert!(failed.refuses(stamp, Some(FailedBatches::CAPACITY as u64)));
    }
}
