//! Producers: batch records, spread them over a topic's partitions,
//! optionally run SmartModules on them in this process (the `smartengine`
//! feature), and send only the outputs.
//!
//! The module also gathers, under Fluvio's paths (`producer::...`), the
//! configuration types a producer is built from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};

use fluvio_protocol::requests::ProduceRequest;
use fluvio_protocol::{Batch, BatchBuilder, ErrorPolicy, ProducerStamp, SmartModuleInvocation};

use crate::client::{BatchTurn, Turn};
use crate::consumer::DeadLetterSink;
use crate::partitioning::{PartitionId, Partitioner, PartitionerConfig, SiphashRoundRobinPartitioner};
use crate::{Fluvio, FluvioError};

/// Fluvio's names for a producer's config, at Fluvio's paths
/// (`fluvio::producer::..`); [`ProducerConfig`] is the native one.
pub use crate::compat::config::{TopicProducerConfig, TopicProducerConfigBuilder};
pub use crate::error::ProducerError;
pub use crate::retry::{DeliverySemantic, RetryPolicy, RetryStrategy};
pub use fluvio_protocol::Compression;

/// The chain a producer runs. Without the engine no chain can exist, so the
/// type is then empty and the code that would run one is unreachable.
#[cfg(feature = "smartengine")]
type Chain = fluvio_smartengine::ChainWorker;
#[cfg(not(feature = "smartengine"))]
enum Chain {}

/// How a producer batches and transforms records.
#[derive(Clone)]
pub struct ProducerConfig {
    /// The partition to write every record to. `None` (the default)
    /// leaves each record's partition to [`partitioner`](Self::partitioner).
    pub partition: Option<u32>,
    /// Chooses each record's partition when [`partition`](Self::partition)
    /// is `None`. The default is Fluvio's
    /// ([`SiphashRoundRobinPartitioner`]): a record with a key goes to the
    /// partition its key hashes to (the same key, the same partition, as
    /// in Fluvio, for as long as the topic has the same partition count);
    /// records without one go to each partition in turn.
    pub partitioner: Arc<dyn Partitioner + Send + Sync>,
    /// A batch is sent once it holds this many bytes of records. Records
    /// that queued up while the partition's batches were on their way may
    /// make a batch of up to eight times this, and at most 512 KiB unless
    /// this is larger.
    pub batch_bytes: usize,
    /// A batch is sent at the latest this long after its first record.
    pub linger: Duration,
    /// SmartModules applied, in order, before records are sent (needs the
    /// `smartengine` feature).
    pub smartmodules: Vec<SmartModuleInvocation>,
    /// What to do when a SmartModule fails on a record.
    pub policy: ErrorPolicy,
    /// Under [`ErrorPolicy::DeadLetter`], receives each record a SmartModule
    /// failed on; without one, dead letters are only counted.
    pub dead_letters: Option<DeadLetterSink>,
    /// Whether a batch the cluster did not acknowledge is sent again.
    pub delivery_semantic: DeliverySemantic,
    /// How batches are compressed before they are sent (and stored).
    pub compression: Compression,
    /// The largest batch sent in one request. A record larger than this on
    /// its own is refused by `send` ([`ProducerError::RecordTooLarge`]).
    /// 1 MiB by default, as in Fluvio (and NATS's default message limit).
    pub max_request_size: usize,
    /// `send` waits while this many batches (of `batch_bytes`) are queued
    /// for each partition of the topic (8 by default: 512 KiB of the
    /// default batches, what one coalesced batch may carry, so that a
    /// producer held up by its store sends the backlog in one append).
    pub batch_queue_size: usize,
    /// Batches of one partition sent before the first of them is answered
    /// (4 by default; 0 counts as 1). They are stored in the order they were
    /// sent, retries included: each names the batch before it, and the
    /// server refuses a batch whose predecessor failed, so that both are
    /// sent again in order. More in flight hide the store's round trip (a
    /// replicated JetStream stream acknowledges after a majority of its
    /// servers has the batch).
    pub max_batches_in_flight: usize,
    /// How long the server may take to answer a batch (30 s by default:
    /// longer than the server's own waits on its store, so that a slow
    /// store is reported by the server rather than guessed at here). An
    /// attempt not answered by then fails: under at-least-once it is sent again (the
    /// producer stamps each batch, so a slow first attempt that did store it
    /// does not store it twice); under at-most-once its records fail with
    /// [`ProducerError::Timeout`].
    pub timeout: Duration,
    /// Fluvio's isolation level. Both levels behave the same here: the
    /// server acknowledges a batch once it is stored (on JetStream, once the
    /// stream has it on a majority of its servers), which is Fluvio's
    /// `ReadCommitted`, and consumers only ever see stored records.
    pub isolation: Isolation,
    /// Told of each batch the server acknowledged, in the producer's
    /// background task (a slow callback holds up that partition's next
    /// batch).
    pub callback: Option<SharedProducerCallback>,
}

/// Fluvio's isolation levels; see [`ProducerConfig::isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// Acknowledged once the leader has the batch (Fluvio's default).
    #[default]
    ReadUncommitted,
    /// Acknowledged once the batch is committed to the replicas.
    ReadCommitted,
}

/// A batch the server acknowledged, as a [`ProducerCallback`] is told of
/// it (Fluvio's fields).
#[derive(Debug, Clone)]
pub struct ProduceCompletionBatchEvent {
    /// The batch's size as sent (after SmartModules and compression).
    pub bytes_size: u64,
    /// Records in the batch as sent.
    pub records_len: u64,
    /// The partition it went to.
    pub partition: PartitionId,
    /// When the batch was handed to the server.
    pub created_at: Instant,
    /// How long the server took to acknowledge it (retries included).
    pub elapsed: Duration,
    /// The offset the server gave the batch's first record.
    pub base_offset: i64,
}

/// Told of each acknowledged batch ([`ProducerConfig::callback`]).
pub trait ProducerCallback: Send + Sync {
    /// Called once per acknowledged batch. An error is logged; it does not
    /// fail the batch, which is stored.
    fn finished(&self, event: ProduceCompletionBatchEvent) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// A callback as a producer config holds it.
pub type SharedProducerCallback = Arc<dyn ProducerCallback>;

/// What a producer has sent (Fluvio's `ClientMetrics`, for a producer).
#[derive(Debug, Default)]
pub struct ClientMetrics {
    producer_client: RecordCounter,
    consumer: RecordCounter,
    producer_connector: RecordCounter,
}

impl ClientMetrics {
    /// Records and bytes this producer has had acknowledged.
    pub fn producer_client(&self) -> &RecordCounter {
        &self.producer_client
    }

    /// Always zero for a producer (Fluvio counts consumers here too).
    pub fn consumer(&self) -> &RecordCounter {
        &self.consumer
    }

    /// Always zero for a producer of an application (Fluvio counts
    /// connectors' producers here).
    pub fn producer_connector(&self) -> &RecordCounter {
        &self.producer_connector
    }
}

/// Records and bytes counted.
#[derive(Debug, Default)]
pub struct RecordCounter {
    /// Records.
    pub records: AtomicU64,
    /// Bytes of batches as sent.
    pub bytes: AtomicU64,
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("partition", &self.partition)
            .field("batch_bytes", &self.batch_bytes)
            .field("linger", &self.linger)
            .field("smartmodules", &self.smartmodules)
            .field("policy", &self.policy)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("delivery_semantic", &self.delivery_semantic)
            .field("compression", &self.compression)
            .field("max_request_size", &self.max_request_size)
            .field("batch_queue_size", &self.batch_queue_size)
            .field("max_batches_in_flight", &self.max_batches_in_flight)
            .field("timeout", &self.timeout)
            .field("isolation", &self.isolation)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            partition: None,
            partitioner: Arc::new(SiphashRoundRobinPartitioner::new()),
            batch_bytes: 64 << 10,
            linger: Duration::from_millis(5),
            smartmodules: Vec::new(),
            policy: ErrorPolicy::Fail,
            dead_letters: None,
            delivery_semantic: DeliverySemantic::default(),
            compression: Compression::None,
            max_request_size: 1 << 20,
            batch_queue_size: 8,
            max_batches_in_flight: 4,
            timeout: fluvio_protocol::RETRY_HORIZON,
            isolation: Isolation::default(),
            callback: None,
        }
    }
}

impl ProducerConfig {
    /// Adds a SmartModule to apply before sending.
    pub fn smartmodule(mut self, invocation: SmartModuleInvocation) -> Self {
        self.smartmodules.push(invocation);
        self
    }
}

/// How many records in a row share one [`Answers`]: one allocation for
/// this many records, where a channel each cost an allocation, a free and
/// a send with a wake check a record (about 7% of the CPU of a process
/// producing to a server in it).
const ANSWERS_PER_GROUP: usize = 64;

/// The answers of up to [`ANSWERS_PER_GROUP`] records queued in a row for
/// one partition. Each record's [`ProduceOutput`] and its place in the
/// queue share it; the batch that carries a record sets its answer, and
/// then wakes the group's waiters once.
struct Answers {
    slots: [OnceLock<Result<RecordMetadata, FluvioError>>; ANSWERS_PER_GROUP],
    answered: Notify,
}

impl Answers {
    fn new() -> Arc<Answers> {
        Arc::new(Answers { slots: std::array::from_fn(|_| OnceLock::new()), answered: Notify::new() })
    }
}

/// Where a queued record's answer goes: its slot in a group of answers.
/// Dropped unanswered (the producer dropped with the record still
/// queued, or its batch's task stopped), it answers that the record was
/// not sent, so that no `wait` waits forever.
struct Ack {
    answers: Arc<Answers>,
    slot: usize,
}

impl Ack {
    /// The record's output: a share of the same slot.
    fn output(&self) -> ProduceOutput {
        ProduceOutput { answers: Arc::clone(&self.answers), slot: self.slot }
    }

    /// Answers the record. Its group's waiters are woken by the batch
    /// ([`WakeWhenAnswered`]), once for all its records.
    fn send(self, answer: Result<RecordMetadata, FluvioError>) {
        let _ = self.answers.slots[self.slot].set(answer);
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        let slot = &self.answers.slots[self.slot];
        if slot.get().is_none() {
            let dropped = FluvioError::InvalidRequest("the producer was dropped before the record was sent".into());
            let _ = slot.set(Err(dropped));
            self.answers.answered.notify_waiters();
        }
    }
}

/// Wakes the waiters of each group of answers a batch's records belong
/// to, once each, when the batch is done with (answered, failed, or its
/// task stopped).
struct WakeWhenAnswered(Vec<Arc<Answers>>);

impl WakeWhenAnswered {
    fn of(acks: &[Option<Ack>]) -> WakeWhenAnswered {
        let mut groups: Vec<Arc<Answers>> = Vec::new();
        // A batch's records were queued in a row: their groups follow
        // each other.
        for ack in acks.iter().flatten() {
            if !groups.last().is_some_and(|last| Arc::ptr_eq(last, &ack.answers)) {
                groups.push(Arc::clone(&ack.answers));
            }
        }
        WakeWhenAnswered(groups)
    }
}

impl Drop for WakeWhenAnswered {
    fn drop(&mut self) {
        for answers in &self.0 {
            answers.answered.notify_waiters();
        }
    }
}

/// What a record counts for in a batch's size: its key and value, and 32
/// bytes besides.
fn queued_bytes(key: Option<&[u8]>, value: &[u8]) -> usize {
    value.len() + key.map_or(0, <[u8]>::len) + 32
}

struct PendingRecord {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
    ack: Ack,
}

impl PendingRecord {
    /// What the record counts for in a batch's size.
    fn queued_bytes(&self) -> usize {
        queued_bytes(self.key.as_deref(), &self.value)
    }
}

/// Records waiting to be sent to one partition.
#[derive(Default)]
struct Pending {
    records: Vec<PendingRecord>,
    bytes: usize,
    first_at: Option<Instant>,
    /// Batches of this partition on their way, at most
    /// `max_batches_in_flight`.
    in_flight: usize,
    /// Where the newest batch on its way stands: the next one is sent
    /// after it.
    newest: Option<watch::Receiver<Turn>>,
    /// The group of answers the next record joins, and its next free slot.
    answers: Option<(Arc<Answers>, usize)>,
}

impl Pending {
    /// A slot for the answer of the record queued next.
    fn next_ack(&mut self) -> Ack {
        match &mut self.answers {
            Some((answers, next)) if *next < ANSWERS_PER_GROUP => {
                let ack = Ack { answers: Arc::clone(answers), slot: *next };
                *next += 1;
                ack
            }
            _ => {
                let answers = Answers::new();
                self.answers = Some((Arc::clone(&answers), 1));
                Ack { answers, slot: 0 }
            }
        }
    }
}

/// Records that queued up for a partition while its batches were on their
/// way go in one batch of up to this many `batch_bytes`: when the store is
/// what limits, fewer and larger appends (one fsync, one JetStream message
/// each) carry more. As much as `send` lets queue for one partition by
/// default, so that what queued behind a slow store goes in one append
/// rather than a full batch and a small one. (With four batches let queue,
/// a producer on a three-copy JetStream stream sent appends of at most
/// 256 KiB, and the NATS nodes spent a fifth to a third more CPU on the
/// same records than with 512 KiB ones: they work per message.)
const COALESCED_BATCHES: usize = 8;

/// A batch grows past `batch_bytes` only up to this size: stores take
/// messages up to a limit (NATS's default `max_payload` is 1 MiB), and a
/// backlog must not turn into a batch the store refuses.
const MAX_COALESCED_BYTES: usize = 512 << 10;

/// The largest batch a backlog goes out in, for a producer's `batch_bytes`
/// (never above its `max_request_size`).
fn coalesced_batch_limit(batch_bytes: usize, max_request_size: usize) -> usize {
    batch_bytes.saturating_mul(COALESCED_BATCHES).min(MAX_COALESCED_BYTES).max(batch_bytes).min(max_request_size)
}

impl Pending {
    /// Takes the oldest records, as many as fit in `max_bytes` (at least
    /// one, however large); what is left goes in the next batch.
    fn take_batch(&mut self, max_bytes: usize) -> Vec<PendingRecord> {
        let mut bytes = 0;
        let mut count = 0;
        for record in &self.records {
            if count > 0 && bytes + record.queued_bytes() > max_bytes {
                break;
            }
            bytes += record.queued_bytes();
            count += 1;
        }
        self.bytes -= bytes;
        if count == self.records.len() {
            self.first_at = None;
            // The next batch is likely as long: start it at this one's
            // capacity rather than growing it from nothing again.
            return std::mem::replace(&mut self.records, Vec::with_capacity(count));
        }
        self.records.drain(..count).collect()
    }
}

/// Everything a producer has queued.
struct Queue {
    /// One per partition of the topic.
    partitions: Vec<Pending>,
    flush_requested: bool,
    queued: u64,
}

impl Queue {
    fn bytes(&self) -> usize {
        self.partitions.iter().map(|p| p.bytes).sum()
    }
}

struct Shared {
    fluvio: Fluvio,
    topic: String,
    config: ProducerConfig,
    chain: Option<Chain>,
    partitions: u32,
    pending: Mutex<Queue>,
    wake: Notify,
    sent: watch::Sender<u64>,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
    bytes_sent: AtomicU64,
    metrics: Arc<ClientMetrics>,
    producer_id: u64,
    next_sequence: AtomicU64,
}

/// A producer id unlikely to be any other producer's, ever.
fn new_producer_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Sends records to a topic: batches them per partition, and sends each
/// batch once it is full, once `linger` has passed, or on `flush`.
pub struct TopicProducer {
    shared: Arc<Shared>,
    flusher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TopicProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicProducer")
            .field("topic", &self.shared.topic)
            .field("partition", &self.shared.config.partition)
            .field("partitions", &self.shared.partitions)
            .field("smartmodules", &self.shared.config.smartmodules.len())
            .finish()
    }
}

impl Drop for TopicProducer {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

/// A record accepted by a producer; `wait` tells where it was stored.
pub struct ProduceOutput {
    answers: Arc<Answers>,
    slot: usize,
}

impl std::fmt::Debug for ProduceOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProduceOutput").field("answer", &self.answers.slots[self.slot].get()).finish()
    }
}

/// Where a produced record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    partition: u32,
    offset: Option<i64>,
    /// How many records the producer's SmartModules made from it (stored
    /// from `offset` on).
    count: u32,
}

impl RecordMetadata {
    /// The partition the record went to.
    pub fn partition_id(&self) -> u32 {
        self.partition
    }

    /// The record's offset in its partition: that of the first record the
    /// producer's SmartModules made from it. `-1` when they made none (a
    /// filter dropped it); [`stored_offset`](Self::stored_offset) says the
    /// same with an `Option`.
    pub fn offset(&self) -> i64 {
        self.offset.unwrap_or(-1)
    }

    /// The record's offset, or `None` when the producer's SmartModules
    /// dropped it.
    pub fn stored_offset(&self) -> Option<i64> {
        self.offset
    }
}

/// A record's key, as [`TopicProducer::send`] takes it: [`RecordKey::NULL`]
/// for none, or anything that converts into bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordKey(Option<Vec<u8>>);

impl RecordKey {
    /// No key.
    pub const NULL: RecordKey = RecordKey(None);

    /// A key that may be absent.
    pub fn from_option(key: Option<impl Into<Vec<u8>>>) -> RecordKey {
        RecordKey(key.map(Into::into))
    }

    /// The key's bytes, if there is a key.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

impl<K: Into<Vec<u8>>> From<K> for RecordKey {
    fn from(key: K) -> Self {
        RecordKey(Some(key.into()))
    }
}

impl ProduceOutput {
    /// Waits until the record's batch is acknowledged, and tells where the
    /// record was stored.
    pub async fn wait(self) -> Result<RecordMetadata, FluvioError> {
        let slot = &self.answers.slots[self.slot];
        loop {
            // Listening before looking: an answer set after the look
            // wakes this wait.
            let mut answered = std::pin::pin!(self.answers.answered.notified());
            answered.as_mut().enable();
            if let Some(answer) = slot.get() {
                return answer.clone();
            }
            answered.await;
        }
    }

    /// Waits as [`wait`](Self::wait) does, and tells where each record the
    /// producer's SmartModules made from this one was stored (none when
    /// they dropped it, several from an array-map), as Fluvio's
    /// `wait_all` does.
    pub async fn wait_all(self) -> Result<Vec<RecordMetadata>, FluvioError> {
        let stored = self.wait().await?;
        let Some(first) = stored.offset else { return Ok(Vec::new()) };
        Ok((0..i64::from(stored.count))
            .map(|k| RecordMetadata { partition: stored.partition, offset: Some(first + k), count: 1 })
            .collect())
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Fluvio {
    /// A producer for `topic`, with default settings: records with a key
    /// go to the partition their key hashes to, the others to each
    /// partition in turn, a batch at a time.
    pub async fn topic_producer(&self, topic: impl Into<String>) -> Result<TopicProducer, FluvioError> {
        self.topic_producer_with(&topic.into(), ProducerConfig::default()).await
    }

    /// A producer with settings. SmartModules are loaded (registered ones
    /// fetched from the server) and initialized now, so a bad module or
    /// parameter fails here.
    pub async fn topic_producer_with(&self, topic: &str, config: ProducerConfig) -> Result<TopicProducer, FluvioError> {
        let info = self.topic_info(topic).await?;
        if let Some(partition) = config.partition
            && partition >= info.partitions
        {
            return Err(FluvioError::PartitionNotFound(topic.to_string(), partition));
        }
        let partitions = info.partitions.max(1);
        if let Some(invocation) = config.smartmodules.iter().find(|s| s.params.lookback().is_some()) {
            return Err(FluvioError::InvalidRequest(format!(
                "SmartModule {:?} has a lookback, which only consumer streams give (they read it from the partition); drop it from the producer's SmartModules",
                invocation.name()
            )));
        }
        if let Some(invocation) = config.smartmodules.iter().find(|s| s.params.window().is_some()) {
            return Err(FluvioError::InvalidRequest(format!(
                "SmartModule {:?} has a window, whose state lives with a stream on the server; window it in a consumer stream or a derived topic instead of the producer",
                invocation.name()
            )));
        }
        let chain = if config.smartmodules.is_empty() { None } else { Some(self.producer_chain(&config).await?) };
        let (sent, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            fluvio: self.clone(),
            topic: topic.to_string(),
            config,
            chain,
            partitions,
            pending: Mutex::new(Queue {
                partitions: (0..partitions).map(|_| Pending::default()).collect(),
                flush_requested: false,
                queued: 0,
            }),
            wake: Notify::new(),
            sent,
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            metrics: Arc::default(),
            producer_id: new_producer_id(),
            next_sequence: AtomicU64::new(0),
        });
        let flusher = tokio::spawn(flush_loop(Arc::clone(&shared)));
        Ok(TopicProducer { shared, flusher })
    }
}

impl Fluvio {
    #[cfg(feature = "smartengine")]
    async fn producer_chain(&self, config: &ProducerConfig) -> Result<Chain, FluvioError> {
        crate::local_chain(Some(self), config.smartmodules.clone(), config.policy).await
    }

    #[cfg(not(feature = "smartengine"))]
    async fn producer_chain(&self, _config: &ProducerConfig) -> Result<Chain, FluvioError> {
        Err(FluvioError::InvalidRequest(
            "producer-side SmartModules need the `smartengine` feature of fluvio-client; enable it, or have consumers apply the SmartModules on the server".into(),
        ))
    }
}

impl TopicProducer {
    /// Queues a record. It is sent with its batch, when the batch is full,
    /// when `linger` has passed, or on [`flush`](Self::flush). The key is
    /// [`RecordKey::NULL`] or anything that converts into bytes (`&str`,
    /// `String`, `Vec<u8>`...).
    pub async fn send(
        &self,
        key: impl Into<RecordKey>,
        value: impl Into<Vec<u8>>,
    ) -> Result<ProduceOutput, FluvioError> {
        let (key, value, timestamp) = (key.into().0, value.into(), now_ms());
        let config = &self.shared.config;
        let record_bytes = queued_bytes(key.as_deref(), &value);
        if record_bytes > config.max_request_size {
            return Err(FluvioError::Producer(ProducerError::RecordTooLarge(config.max_request_size)));
        }
        let batch_bytes = config.batch_bytes;
        // Keep at most a few batches queued: wait for the flusher otherwise.
        let most_queued =
            batch_bytes.saturating_mul(config.batch_queue_size.max(1)).saturating_mul(self.shared.partitions as usize);
        loop {
            let queued_bytes = self.shared.pending.lock().expect("pending lock").bytes();
            if queued_bytes < most_queued {
                break;
            }
            self.shared.wake.notify_one();
            let mut sent = self.shared.sent.subscribe();
            let _ = tokio::time::timeout(Duration::from_millis(50), sent.changed()).await;
        }
        let output;
        let full = {
            let mut queue = self.shared.pending.lock().expect("pending lock");
            let partition = match self.shared.config.partition {
                Some(partition) => partition,
                None => {
                    let config = PartitionerConfig::new(self.shared.partitions);
                    let chosen = self.shared.config.partitioner.partition(&config, key.as_deref(), &value);
                    if chosen >= self.shared.partitions {
                        return Err(FluvioError::Producer(ProducerError::InvalidPartition {
                            topic: self.shared.topic.clone(),
                            partition: chosen,
                            count: self.shared.partitions,
                        }));
                    }
                    chosen
                }
            };
            queue.queued += 1;
            let pending = &mut queue.partitions[partition as usize];
            let was_short = pending.bytes < batch_bytes;
            pending.bytes += record_bytes;
            pending.first_at.get_or_insert_with(Instant::now);
            let ack = pending.next_ack();
            output = ack.output();
            pending.records.push(PendingRecord { key, value, timestamp, ack });
            // The flusher is woken once per batch, when it fills (and for
            // its first record, to start its linger): records added to a
            // full batch that waits for those on their way would wake it
            // for nothing, once each.
            (was_short && pending.bytes >= batch_bytes) || pending.records.len() == 1
        };
        if full {
            self.shared.wake.notify_one();
        }
        Ok(output)
    }

    /// Queues each `(key, value)` in turn, as [`send`](Self::send) does.
    pub async fn send_all<K, V, I>(&self, records: I) -> Result<Vec<ProduceOutput>, FluvioError>
    where
        K: Into<RecordKey>,
        V: Into<Vec<u8>>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut outputs = Vec::new();
        for (key, value) in records {
            outputs.push(self.send(key, value).await?);
        }
        Ok(outputs)
    }

    /// The topic the producer writes to (Fluvio's `topic()`).
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// The number of partitions the producer spreads records over (all of
    /// the topic's, unless the config names one).
    pub fn partition_count(&self) -> u32 {
        self.shared.partitions
    }

    /// Sends everything queued and waits until it is acknowledged.
    pub async fn flush(&self) -> Result<(), FluvioError> {
        let target = {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            pending.flush_requested = true;
            pending.queued
        };
        self.shared.wake.notify_one();
        let mut sent = self.shared.sent.subscribe();
        sent.wait_for(|done| *done >= target)
            .await
            .map_err(|_| FluvioError::InvalidRequest("the producer stopped".into()))?;
        Ok(())
    }

    /// Records dropped by SmartModules under the `skip` policy so far.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Records handed to the dead-letter sink so far.
    pub fn dead_lettered(&self) -> u64 {
        self.shared.dead_lettered.load(Ordering::Relaxed)
    }

    /// Bytes of record batches sent to the server so far (after
    /// SmartModules: what crossed the network).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    /// Records and bytes the server has acknowledged (Fluvio's metrics).
    pub fn metrics(&self) -> Arc<ClientMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Fluvio keeps a failed batch's error and fails later sends with it
    /// until this is called. Here each record's error goes to its own
    /// [`ProduceOutput`] and later sends are not failed by it, so there is
    /// nothing to clear.
    pub async fn clear_errors(&self) {}
}

/// Sends each partition's batches as they fill or linger out. Partitions
/// are independent: each has up to `max_batches_in_flight` batches on their
/// way, sent in order ([`Fluvio::send_in_turn`]), and a partition waiting on
/// a slow answer holds up no other.
async fn flush_loop(shared: Arc<Shared>) {
    let mut on_their_way = futures::stream::FuturesUnordered::new();
    loop {
        // The batches due now, or how long until the next one is.
        let (due, wait) = {
            let mut queue = shared.pending.lock().expect("pending lock");
            let flush = queue.flush_requested;
            let mut due = Vec::new();
            let mut wait = Duration::from_secs(3600);
            let mut unsent = false;
            for (partition, pending) in queue.partitions.iter_mut().enumerate() {
                let Some(first) = pending.first_at else { continue };
                let left = shared.config.linger.saturating_sub(first.elapsed());
                let ready = flush || pending.bytes >= shared.config.batch_bytes || left.is_zero();
                if pending.in_flight >= shared.config.max_batches_in_flight.max(1) {
                    // Looked at again when a batch on the way is answered.
                    unsent = true;
                } else if ready {
                    pending.in_flight += 1;
                    let (mine, newest) = watch::channel(Turn::Waiting);
                    let turn = BatchTurn { before: pending.newest.replace(newest), mine };
                    due.push((
                        partition as u32,
                        pending.take_batch(coalesced_batch_limit(
                            shared.config.batch_bytes,
                            shared.config.max_request_size,
                        )),
                        turn,
                    ));
                } else {
                    wait = wait.min(left);
                }
            }
            if due.is_empty() && !unsent {
                queue.flush_requested = false;
            }
            (due, wait)
        };
        for (partition, records, turn) in due {
            let count = records.len() as u64;
            let shared = &shared;
            on_their_way.push(async move {
                send_records(shared, partition, records, turn).await;
                (partition, count)
            });
        }
        tokio::select! {
            Some((partition, count)) = on_their_way.next(), if !on_their_way.is_empty() => {
                shared.pending.lock().expect("pending lock").partitions[partition as usize].in_flight -= 1;
                shared.sent.send_modify(|sent| *sent += count);
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the chain (if any) over `records`, sends the outputs as one batch,
/// and answers every record's acknowledgement.
async fn send_records(shared: &Shared, partition: u32, records: Vec<PendingRecord>, turn: BatchTurn) {
    let base_timestamp = records[0].timestamp;
    let mut builder = BatchBuilder::new(0, base_timestamp);
    for (i, record) in records.iter().enumerate() {
        builder.push(i as u32, record.timestamp, record.key.as_deref(), &record.value, &[]);
    }
    let input = builder.finish();
    let mut acks: Vec<Option<Ack>> = records.into_iter().map(|r| Some(r.ack)).collect();
    // Dropped on every way out of this function, after the answers below
    // are set. (An answer left unset, the task stopped, is set and woken
    // by its own `Ack` as it is dropped.)
    let _wake = WakeWhenAnswered::of(&acks);
    // For each input record: the index of its first output record, and
    // how many outputs it made.
    let mut first_output: Vec<(Option<u32>, u32)> = vec![(None, 0); acks.len()];
    let batch: Batch = match &shared.chain {
        None => {
            for (i, slot) in first_output.iter_mut().enumerate() {
                *slot = (Some(i as u32), 1);
            }
            input
        }
        Some(chain) => match transform(shared, chain, input, &mut acks, &mut first_output).await {
            Some(batch) => batch,
            None => return,
        },
    };
    if batch.is_empty() {
        for ack in acks.into_iter().flatten() {
            ack.send(Ok(RecordMetadata { partition, offset: None, count: 0 }));
        }
        return;
    }
    // One stamp per batch, kept across retries: a batch resent after a
    // lost acknowledgement (or through another server) is stored once.
    let stamp =
        ProducerStamp { id: shared.producer_id, sequence: shared.next_sequence.fetch_add(1, Ordering::Relaxed) };
    let records_len = u64::from(batch.record_count());
    let batch = batch.compressed(shared.config.compression);
    let bytes_size = batch.as_bytes().len() as u64;
    shared.bytes_sent.fetch_add(bytes_size, Ordering::Relaxed);
    let request = ProduceRequest {
        topic: shared.topic.clone(),
        partition,
        producer: Some(stamp),
        follows: None,
        batch: batch.into_bytes(),
    };
    let policy = shared.config.delivery_semantic.retry_policy();
    let created_at = Instant::now();
    let result = shared.fluvio.send_in_turn(request, turn, &policy, shared.config.timeout).await;
    if let Ok(response) = &result {
        let counter = &shared.metrics.producer_client;
        counter.records.fetch_add(records_len, Ordering::Relaxed);
        counter.bytes.fetch_add(bytes_size, Ordering::Relaxed);
        if let Some(callback) = &shared.config.callback {
            let event = ProduceCompletionBatchEvent {
                bytes_size,
                records_len,
                partition,
                created_at,
                elapsed: created_at.elapsed(),
                base_offset: response.base_offset,
            };
            if let Err(error) = callback.finished(event).await {
                tracing::warn!(%error, topic = %shared.topic, partition, "the producer's callback failed");
            }
        }
    }
    for (ack, (first, count)) in acks.into_iter().zip(first_output) {
        let Some(ack) = ack else { continue };
        ack.send(match &result {
            Ok(response) => {
                Ok(RecordMetadata { partition, offset: first.map(|j| response.base_offset + j as i64), count })
            }
            Err(error) => Err(error.clone()),
        });
    }
}

/// Runs the producer's chain over a batch and renumbers the outputs 0, 1,
/// 2... as the server requires, noting each input record's first output.
/// Records the chain failed on get their error now. `None` when the whole
/// batch failed (every acknowledgement has been answered).
#[cfg(feature = "smartengine")]
async fn transform(
    shared: &Shared,
    chain: &Chain,
    input: Batch,
    acks: &mut [Option<Ack>],
    first_output: &mut [(Option<u32>, u32)],
) -> Option<Batch> {
    let output = match chain.process(input).await {
        Ok(output) => output,
        Err(error) => {
            for ack in acks.iter_mut().filter_map(Option::take) {
                ack.send(Err(FluvioError::Engine(error.clone())));
            }
            return None;
        }
    };
    shared.skipped.fetch_add(output.skipped, Ordering::Relaxed);
    shared.dead_lettered.fetch_add(output.dead_letters.len() as u64, Ordering::Relaxed);
    if output.skipped > 0 {
        tracing::warn!(topic = %shared.topic, skipped = output.skipped, "SmartModules skipped records that failed");
    }
    if let Some(sink) = &shared.config.dead_letters {
        output.dead_letters.into_iter().for_each(|letter| sink(letter));
    }
    let mut renumbered = BatchBuilder::new(0, output.batch.base_timestamp());
    for (j, record) in output.batch.records().enumerate() {
        if let Some((first, count)) = first_output.get_mut(record.offset as usize) {
            first.get_or_insert(j as u32);
            *count += 1;
        }
        renumbered.push(j as u32, record.timestamp, record.key, record.value, &record.headers);
    }
    if let Some(failure) = output.failure {
        // Under `fail`, the failed record and everything after it were not sent.
        for ack in acks.iter_mut().skip(failure.offset as usize).filter_map(Option::take) {
            ack.send(Err(FluvioError::RecordFailed(Box::new(failure.clone()))));
        }
    }
    Some(renumbered.finish())
}

#[cfg(not(feature = "smartengine"))]
async fn transform(
    _: &Shared,
    chain: &Chain,
    _: Batch,
    _: &mut [Option<Ack>],
    _: &mut [(Option<u32>, u32)],
) -> Option<Batch> {
    match *chain {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(values: &[usize]) -> Pending {
        let mut pending = Pending::default();
        for (i, &len) in values.iter().enumerate() {
            let ack = pending.next_ack();
            let record = PendingRecord { key: None, value: vec![i as u8; len], timestamp: 0, ack };
            pending.bytes += record.queued_bytes();
            pending.records.push(record);
        }
        pending.first_at = Some(Instant::now());
        pending
    }

    #[test]
    fn a_backlog_goes_out_in_batches_no_larger_than_the_limit_oldest_first() {
        // Each record counts its value plus 32 bytes: 100 bytes each.
        let mut pending = queued(&[68; 10]);
        let first = pending.take_batch(350);
        assert_eq!(first.iter().map(|r| r.value[0]).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(pending.bytes, 700);
        assert!(pending.first_at.is_some(), "what is left is still due");
        let second = pending.take_batch(350);
        assert_eq!(second.iter().map(|r| r.value[0]).collect::<Vec<_>>(), [3, 4, 5]);
        let rest = pending.take_batch(10_000);
        assert_eq!(rest.len(), 4);
        assert_eq!((pending.bytes, pending.records.len(), pending.first_at), (0, 0, None));
    }

    #[test]
    fn a_backlog_grows_a_batch_up_to_half_a_mebibyte_but_never_below_the_batch_size() {
        let no_cap = usize::MAX;
        assert_eq!(coalesced_batch_limit(64 << 10, no_cap), 512 << 10);
        assert_eq!(coalesced_batch_limit(16 << 10, no_cap), 128 << 10);
        assert_eq!(coalesced_batch_limit(256 << 10, no_cap), 512 << 10);
        assert_eq!(coalesced_batch_limit(4 << 20, no_cap), 4 << 20);
        assert_eq!(coalesced_batch_limit(4 << 20, 1 << 20), 1 << 20, "never above the max request size");
        assert_eq!(coalesced_batch_limit(64 << 10, 100 << 10), 100 << 10);
    }

    #[test]
    fn by_default_what_may_queue_for_a_partition_fits_one_coalesced_batch() {
        let config = ProducerConfig::default();
        let may_queue = config.batch_bytes * config.batch_queue_size;
        assert_eq!(may_queue, coalesced_batch_limit(config.batch_bytes, config.max_request_size));
    }

    /// The outputs of `count` records queued in a row, and their acks.
    fn outputs_and_acks(pending: &mut Pending, count: usize) -> (Vec<ProduceOutput>, Vec<Option<Ack>>) {
        (0..count)
            .map(|_| {
                let ack = pending.next_ack();
                (ack.output(), Some(ack))
            })
            .unzip()
    }

    #[tokio::test]
    async fn each_record_of_a_batch_spanning_groups_hears_its_own_answer() {
        let mut pending = Pending::default();
        // Three groups: 64, 64 and 2 records.
        let (outputs, acks) = outputs_and_acks(&mut pending, 2 * ANSWERS_PER_GROUP + 2);
        let groups = WakeWhenAnswered::of(&acks);
        assert_eq!(groups.0.len(), 3);
        // Waiting before the answers come.
        let waits: Vec<_> = outputs.into_iter().map(|output| tokio::spawn(output.wait())).collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (offset, ack) in acks.into_iter().flatten().enumerate() {
            ack.send(Ok(RecordMetadata { partition: 3, offset: Some(100 + offset as i64), count: 1 }));
        }
        drop(groups);
        for (offset, wait) in waits.into_iter().enumerate() {
            let answer = tokio::time::timeout(Duration::from_secs(10), wait).await.expect("woken").unwrap().unwrap();
            assert_eq!((answer.partition_id(), answer.offset()), (3, 100 + offset as i64));
        }
    }

    #[tokio::test]
    async fn a_record_whose_answer_is_dropped_hears_that_it_was_not_sent() {
        let mut pending = Pending::default();
        let (mut outputs, mut acks) = outputs_and_acks(&mut pending, 2);
        let wait = tokio::spawn(outputs.remove(1).wait());
        tokio::task::yield_now().await;
        // The producer's queue dropped with the record in it.
        drop(acks.remove(1));
        let error = tokio::time::timeout(Duration::from_secs(10), wait).await.expect("woken").unwrap().unwrap_err();
        assert!(error.to_string().contains("dropped before the record was sent"), "{error}");
        // The other record of the group is not answered by it.
        acks[0].take().unwrap().send(Ok(RecordMetadata { partition: 0, offset: Some(7), count: 1 }));
        assert_eq!(outputs.remove(0).wait().await.unwrap().offset(), 7);
    }

    #[test]
    fn a_record_larger_than_the_limit_is_a_batch_of_its_own() {
        let mut pending = queued(&[1000, 68]);
        assert_eq!(pending.take_batch(350).len(), 1);
        assert_eq!(pending.take_batch(350).len(), 1);
        assert!(pending.records.is_empty());
    }
}
