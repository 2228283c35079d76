//! Consumers: streams of records from the partitions of a topic, with
//! SmartModules run on the server so that only their outputs cross the
//! network.
//!
//! The module also gathers, under Fluvio's paths (`consumer::...`), the
//! configuration types a consumer is built from.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use fluvio_protocol::requests::StreamFetchRequest;
use fluvio_protocol::{Batch, ErrorPolicy, Frame, OffsetSpec, RecordFailure, StreamEvent, abi, buffers};

use crate::client::{FAILOVER_TIMEOUT, is_retryable};
use crate::connection::{Connection, EncodedRequest, check};
use crate::{Fluvio, FluvioError};

pub use crate::compat::config::{
    ConsumerConfigBuilder, ConsumerConfigExt, ConsumerConfigExtBuilder, Offset, PartitionConsumer, RecordData,
};
/// Fluvio's names for consumer configs, at Fluvio's paths
/// (`fluvio::consumer::..`); [`ConsumerConfig`] is the native one.
pub use crate::compat::offsets::ConsumerOffset;
pub use fluvio_protocol::{
    Lookback, SmartModuleContextData, SmartModuleExtraParams, SmartModuleInvocation, SmartModuleInvocationWasm,
    SmartModuleKind,
};

/// Receives the records SmartModules failed on under
/// [`ErrorPolicy::DeadLetter`], each with its error.
pub type DeadLetterSink = Arc<dyn Fn(RecordFailure) + Send + Sync>;

/// Where and how a consumer reads.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The partitions to read, as one stream. Empty (the default): every
    /// partition of the topic.
    pub partitions: Vec<u32>,
    /// Where to start.
    pub offset: OffsetSpec,
    /// Wait for new records at the end (`true`) or stop there (`false`).
    pub continuous: bool,
    /// SmartModules the server applies, in order, before sending.
    pub smartmodules: Vec<SmartModuleInvocation>,
    /// What happens when a SmartModule fails on a record: `Fail` ends the
    /// stream with [`FluvioError::RecordFailed`]; `Skip` drops the record on
    /// the server; `DeadLetter` hands it to [`dead_letters`](Self::dead_letters)
    /// (or yields [`FluvioError::DeadLetter`] without one) and goes on.
    pub policy: ErrorPolicy,
    /// Receives dead letters under [`ErrorPolicy::DeadLetter`].
    pub dead_letters: Option<DeadLetterSink>,
    /// Most bytes of stored batches the server reads per step.
    pub max_bytes: u32,
    /// The consumer's id: its offsets are stored on the server under it,
    /// and a stream with an id starts where the id's stored offset is (at
    /// [`offset`](Self::offset) where it has none).
    pub consumer_id: Option<String>,
    /// How offsets are stored, for a stream with a consumer id.
    pub offset_strategy: OffsetManagementStrategy,
    /// Under [`OffsetManagementStrategy::Auto`], how often the position is
    /// stored (and once more when the stream is dropped).
    pub offset_flush: Duration,
}

/// How a stream with a consumer id stores its offsets on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetManagementStrategy {
    /// Never: the id only says where the stream starts.
    None,
    /// When the application says: [`RecordStream::offset_commit`] notes
    /// the position, [`RecordStream::offset_flush`] stores it.
    Manual,
    /// Every record handed out is noted, and the position is stored every
    /// [`ConsumerConfig::offset_flush`] and when the stream is dropped
    /// (at least once: records after the last store are read again).
    #[default]
    Auto,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            partitions: Vec::new(),
            offset: OffsetSpec::Beginning,
            continuous: true,
            smartmodules: Vec::new(),
            policy: ErrorPolicy::Fail,
            dead_letters: None,
            max_bytes: 1 << 20,
            consumer_id: None,
            offset_strategy: OffsetManagementStrategy::default(),
            offset_flush: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("partitions", &self.partitions)
            .field("offset", &self.offset)
            .field("continuous", &self.continuous)
            .field("smartmodules", &self.smartmodules)
            .field("policy", &self.policy)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("max_bytes", &self.max_bytes)
            .field("consumer_id", &self.consumer_id)
            .field("offset_strategy", &self.offset_strategy)
            .field("offset_flush", &self.offset_flush)
            .finish()
    }
}

impl ConsumerConfig {
    /// Adds a partition to read (without any, the stream reads them all).
    pub fn partition(mut self, partition: u32) -> Self {
        self.partitions.push(partition);
        self
    }

    /// Adds a SmartModule for the server to apply.
    pub fn smartmodule(mut self, invocation: SmartModuleInvocation) -> Self {
        self.smartmodules.push(invocation);
        self
    }
}

/// The records of one stored batch, as a consumer receives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerBatch {
    /// The partition they come from.
    pub partition: u32,
    /// The records (SmartModule outputs, when the stream has a chain).
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last stored record these came from: where a
    /// stream restarted after them continues.
    pub next_offset: i64,
}

/// A record as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The partition it comes from.
    pub partition: u32,
    /// Offset in the partition (of the source record, for SmartModule outputs).
    pub offset: i64,
    /// Timestamp, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Headers.
    pub headers: Vec<(Bytes, Bytes)>,
}

/// The name Fluvio code uses for a consumed record.
pub type Record = ConsumerRecord;

impl ConsumerRecord {
    /// The partition it comes from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its offset in the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Its timestamp, milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The key's bytes, if it has a key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The key, if it has one, as [`RecordBytes`].
    pub fn get_key(&self) -> Option<&RecordBytes> {
        self.key.as_deref().map(RecordBytes::new)
    }

    /// The value, as [`RecordBytes`].
    pub fn get_value(&self) -> &RecordBytes {
        RecordBytes::new(&self.value)
    }
}

impl AsRef<[u8]> for ConsumerRecord {
    fn as_ref(&self) -> &[u8] {
        &self.value
    }
}

/// A record's key or value, borrowed: bytes, with text views. (Fluvio
/// calls it `RecordData`, which is also the name of the guest library's
/// owned record data; the SDK keeps Fluvio's name as an alias in
/// [`compat`](crate::compat::config::RecordData).)
#[repr(transparent)]
#[derive(PartialEq, Eq, Hash)]
pub struct RecordBytes([u8]);

impl RecordBytes {
    /// Views bytes as record data.
    pub fn new(bytes: &[u8]) -> &RecordBytes {
        // SAFETY: `RecordBytes` is `repr(transparent)` over `[u8]`, so the
        // two references have the same layout and metadata (the length).
        unsafe { &*(bytes as *const [u8] as *const RecordBytes) }
    }

    /// The bytes as UTF-8 text, or why they are not.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// The bytes as text, with invalid UTF-8 replaced by `�`.
    pub fn as_utf8_lossy_string(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for RecordBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for RecordBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for RecordBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_utf8_lossy_string())
    }
}

impl std::fmt::Display for RecordBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_utf8_lossy_string())
    }
}

/// A stream of records from one or more partitions of a topic. Ends after
/// the last record when not continuous, or after an error; dropping it
/// closes its connections and stops the server's work for it.
///
/// With several partitions, records of one partition arrive in offset
/// order, and the partitions take turns a stored batch at a time; each
/// record says its partition.
pub struct RecordStream {
    parts: Vec<PartitionStream>,
    /// The partition read from first, so that none starves.
    turn: usize,
    /// Where the stream has got to, for a stream with a consumer id.
    offsets: Option<Arc<OffsetTracker>>,
    /// Stores the position now and then, under the `Auto` strategy.
    auto_flusher: Option<tokio::task::JoinHandle<()>>,
}

/// A consumer's position in each partition, and what of it is stored.
struct OffsetTracker {
    fluvio: Fluvio,
    consumer: String,
    topic: String,
    strategy: OffsetManagementStrategy,
    state: std::sync::Mutex<OffsetState>,
    /// One store at a time, in order.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct OffsetState {
    /// The first offset not yet handed out, per partition.
    delivered: std::collections::BTreeMap<u32, i64>,
    /// What to store at the next flush.
    committed: std::collections::BTreeMap<u32, i64>,
    /// What the server has.
    stored: std::collections::BTreeMap<u32, i64>,
}

impl OffsetTracker {
    fn delivered(&self, partition: u32, offset: i64) {
        let mut state = self.state.lock().expect("offsets lock");
        state.delivered.insert(partition, offset);
        if self.strategy == OffsetManagementStrategy::Auto {
            state.committed.insert(partition, offset);
        }
    }

    async fn flush(&self) -> Result<(), FluvioError> {
        let _one_at_a_time = self.flushing.lock().await;
        let due: Vec<(u32, i64)> = {
            let state = self.state.lock().expect("offsets lock");
            state.committed.iter().filter(|(p, o)| state.stored.get(p) != Some(o)).map(|(p, o)| (*p, *o)).collect()
        };
        for (partition, offset) in due {
            self.fluvio.commit_offset(&self.consumer, &self.topic, partition, offset).await?;
            self.state.lock().expect("offsets lock").stored.insert(partition, offset);
        }
        Ok(())
    }
}

impl Drop for RecordStream {
    fn drop(&mut self) {
        if let Some(flusher) = self.auto_flusher.take() {
            flusher.abort();
            // The last position is stored on the way out, as far as the
            // runtime still runs.
            if let (Some(tracker), Ok(runtime)) = (self.offsets.clone(), tokio::runtime::Handle::try_current()) {
                runtime.spawn(async move {
                    if let Err(error) = tracker.flush().await {
                        tracing::warn!(%error, consumer = %tracker.consumer, "could not store the consumer's offsets");
                    }
                });
            }
        }
    }
}

/// The stream of one partition, on a connection of its own.
struct PartitionStream {
    fluvio: Fluvio,
    request: StreamFetchRequest,
    connection: Arc<Connection>,
    responses: Responses,
    buffered: VecDeque<ConsumerRecord>,
    sink: Option<DeadLetterSink>,
    next_offset: Option<i64>,
    done: bool,
    /// Moving to another server after the connection broke.
    reconnecting: Option<BoxFuture<'static, Result<Opened, FluvioError>>>,
    /// When moving gives up (set at the first failure of a series).
    give_up_at: Option<tokio::time::Instant>,
    /// A response read while waiting for the stream to start, not yet
    /// handled.
    held: Option<Result<StreamResponse, FluvioError>>,
    /// The value of the last record received, kept when the chain ends in
    /// a module that may be an aggregate: that value is the aggregate's
    /// accumulator, and a stream moved to another server (or to the same
    /// one, restarted) goes on from it instead of from the initial one.
    last_output: Option<Bytes>,
}

/// Whether the last module of `chain` may be an aggregate: one asked for as
/// an aggregate, or of any kind. Giving any other module an accumulator
/// changes nothing, since only aggregates read it.
fn may_end_in_aggregate(chain: &[SmartModuleInvocation]) -> bool {
    chain
        .last()
        .is_some_and(|last| matches!(last.kind, SmartModuleKind::Aggregate { .. } | SmartModuleKind::Generic(_)))
}

type Opened = (Arc<Connection>, Responses);

/// Opens a stream connection, trying the servers after `after` first, and
/// sends the stream's request on it.
async fn open_stream(
    fluvio: Fluvio,
    after: Option<String>,
    request: StreamFetchRequest,
) -> Result<Opened, FluvioError> {
    let connection = Arc::new(fluvio.open_connection_after(after.as_deref()).await?);
    let partition = request.partition;
    let (_, frames) = connection.send(EncodedRequest::new(request)).await?;
    Ok((connection, decode_responses(partition, frames)))
}

impl Fluvio {
    /// Streams records from `topic`: from the partitions the config names,
    /// or from all of them. Each partition's stream has a connection of its
    /// own.
    pub async fn consumer_stream(&self, topic: &str, config: ConsumerConfig) -> Result<RecordStream, FluvioError> {
        let mut partitions = config.partitions.clone();
        if partitions.is_empty() {
            partitions = (0..self.topic_info(topic).await?.partitions).collect();
        }
        let mut seen = std::collections::HashSet::new();
        partitions.retain(|partition| seen.insert(*partition));
        let mut starts = Vec::with_capacity(partitions.len());
        for &partition in &partitions {
            let stored = match &config.consumer_id {
                Some(consumer) => self.fetch_offset(consumer, topic, partition).await?,
                None => None,
            };
            starts.push(stored.map_or(config.offset, OffsetSpec::Absolute));
        }
        let opening = partitions.iter().zip(starts).map(|(&partition, offset)| {
            let request = StreamFetchRequest {
                topic: topic.to_string(),
                partition,
                offset,
                continuous: config.continuous,
                chain: config.smartmodules.clone(),
                policy: config.policy,
                max_bytes: config.max_bytes,
                consumer_id: config.consumer_id.clone(),
            };
            let sink = config.dead_letters.clone();
            async move {
                let (connection, responses) = open_stream(self.clone(), None, request.clone()).await?;
                Ok::<_, FluvioError>(PartitionStream {
                    fluvio: self.clone(),
                    request,
                    connection,
                    responses,
                    buffered: VecDeque::new(),
                    sink,
                    next_offset: None,
                    done: false,
                    reconnecting: None,
                    give_up_at: None,
                    held: None,
                    last_output: None,
                })
            }
        });
        let mut parts = futures::future::try_join_all(opening).await?;
        // Where each partition starts is fixed before this returns, so that
        // records produced afterwards reach a stream that starts at the end.
        let starting = parts.iter_mut().map(PartitionStream::wait_until_started);
        let _ = tokio::time::timeout(FAILOVER_TIMEOUT, futures::future::join_all(starting)).await;
        let offsets = config.consumer_id.map(|consumer| {
            Arc::new(OffsetTracker {
                fluvio: self.clone(),
                consumer,
                topic: topic.to_string(),
                strategy: config.offset_strategy,
                state: Default::default(),
                flushing: Default::default(),
            })
        });
        let auto_flusher = match &offsets {
            Some(tracker) if tracker.strategy == OffsetManagementStrategy::Auto => {
                let tracker = Arc::clone(tracker);
                let period = config.offset_flush.max(Duration::from_millis(10));
                Some(tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        if let Err(error) = tracker.flush().await {
                            tracing::warn!(%error, consumer = %tracker.consumer, "could not store the consumer's offsets");
                        }
                    }
                }))
            }
            _ => None,
        };
        Ok(RecordStream { parts, turn: 0, offsets, auto_flusher })
    }
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for part in &self.parts {
            list.entry(&format_args!(
                "partition {} at {:?} via {}",
                part.request.partition,
                part.next_offset,
                part.connection.addr()
            ));
        }
        list.finish()
    }
}

impl RecordStream {
    /// Bytes received from the servers on this stream's connections.
    pub fn bytes_received(&self) -> u64 {
        self.parts.iter().map(|part| part.connection.bytes_received()).sum()
    }

    /// The partitions this stream reads.
    pub fn partitions(&self) -> Vec<u32> {
        self.parts.iter().map(|part| part.request.partition).collect()
    }

    /// Where a stream of one partition continues: the offset after the last
    /// stored record the server has processed for it. `None` before the
    /// server has said, and for a stream of several partitions (see
    /// [`next_offsets`](Self::next_offsets)).
    pub fn next_offset(&self) -> Option<i64> {
        match self.parts.as_slice() {
            [part] => part.next_offset,
            _ => None,
        }
    }

    /// Notes the stream's position (every record handed out so far) as
    /// the one to store at the next [`offset_flush`](Self::offset_flush).
    /// Needs a consumer id.
    pub fn offset_commit(&mut self) -> Result<(), FluvioError> {
        let tracker = self.tracker()?;
        let mut state = tracker.state.lock().expect("offsets lock");
        state.committed = state.delivered.clone();
        Ok(())
    }

    /// Stores the committed position on the server; a stream started later
    /// with the same consumer id resumes there. Needs a consumer id.
    pub async fn offset_flush(&mut self) -> Result<(), FluvioError> {
        self.tracker()?.flush().await
    }

    fn tracker(&self) -> Result<Arc<OffsetTracker>, FluvioError> {
        self.offsets.clone().ok_or_else(|| {
            FluvioError::InvalidRequest(
                "this stream has no consumer id, so it has no offsets to store; set `consumer_id` in its config".into(),
            )
        })
    }

    /// Where the stream continues in each of its partitions.
    pub fn next_offsets(&self) -> Vec<(u32, Option<i64>)> {
        self.parts.iter().map(|part| (part.request.partition, part.next_offset)).collect()
    }

    /// The records the server sent for the next stored batch, with the
    /// offset the stream continues from after them in their partition:
    /// what a sink commits once it has durably written the records. Records
    /// already taken one by one (through `Stream`) are not returned again.
    /// `None` once the stream has ended.
    pub async fn next_batch(&mut self) -> Option<Result<ConsumerBatch, FluvioError>> {
        std::future::poll_fn(|cx| match self.poll_part(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Some(Ok(index))) => {
                let part = &mut self.parts[index];
                // The buffer itself, not a copy: a frame's records are
                // about a megabyte.
                let records = Vec::from(std::mem::take(&mut part.buffered));
                let batch = ConsumerBatch {
                    partition: part.request.partition,
                    records,
                    next_offset: part.next_offset.unwrap_or_default(),
                };
                if let Some(tracker) = &self.offsets {
                    tracker.delivered(batch.partition, batch.next_offset);
                }
                self.turn = (index + 1) % self.parts.len();
                Poll::Ready(Some(Ok(batch)))
            }
        })
        .await
    }

    /// Finds a partition with records buffered, starting with the one
    /// whose turn it is. `Ready(None)`: every partition's stream has ended.
    fn poll_part(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<usize, FluvioError>>> {
        let count = self.parts.len();
        let mut ended = true;
        for step in 0..count {
            let index = (self.turn + step) % count;
            let part = &mut self.parts[index];
            match part.poll_frame(cx) {
                Poll::Pending => ended = false,
                Poll::Ready(Some(error)) => {
                    self.turn = (index + 1) % count;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) if part.buffered.is_empty() => {}
                Poll::Ready(None) => {
                    self.turn = index;
                    return Poll::Ready(Some(Ok(index)));
                }
            }
        }
        if ended { Poll::Ready(None) } else { Poll::Pending }
    }
}

/// Decoded stream responses a consumer may have waiting, beyond those still
/// in frames: enough to keep decoding ahead of a consumer that reads as fast.
const DECODED_AHEAD: usize = 4;

/// One stream response, decoded: the event, and for a `Batch` its records.
struct StreamResponse {
    event: StreamEvent,
    records: VecDeque<ConsumerRecord>,
}

type Responses = mpsc::Receiver<Result<StreamResponse, FluvioError>>;

/// Decodes a stream's responses on a task of its own, so that checking
/// batches and slicing them into records runs beside the code that consumes
/// the records, not in turn with it. Ends when the connection's responses
/// end or the stream is dropped.
fn decode_responses(partition: u32, mut frames: mpsc::Receiver<Result<Frame, FluvioError>>) -> Responses {
    let (decoded, responses) = mpsc::channel(DECODED_AHEAD);
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if decoded.send(frame.and_then(|frame| decode(frame, partition))).await.is_err() {
                break;
            }
        }
    });
    responses
}

fn decode(frame: Frame, partition: u32) -> Result<StreamResponse, FluvioError> {
    let mut frame = check(frame)?;
    let mut event: StreamEvent = frame.control()?;
    // A failed record's key and value travel in the payload (they may be
    // larger than a control message may be).
    if let StreamEvent::DeadLetter(failure) | StreamEvent::Failed(failure) = &mut event
        && !frame.payload.is_empty()
    {
        failure
            .restore_record(std::mem::take(&mut frame.payload))
            .map_err(|error| FluvioError::Protocol(format!("the server sent an invalid failed record: {error}")))?;
    }
    let mut records = Vec::new();
    if let StreamEvent::Batch { .. } = event {
        let invalid = |error| FluvioError::Protocol(format!("the server sent an invalid batch: {error}"));
        // Keys and values are slices of the payload's one buffer; each
        // batch's records are checked as they are read (one pass).
        let payload = Bytes::from_owner(buffers::Recycled(std::mem::take(&mut frame.payload)));
        // Room for the whole frame's records at once: grown batch by batch,
        // the vector was copied as often as it doubled. What the headers
        // claim is bounded by what the bytes can hold.
        let claimed: usize = fluvio_protocol::batch_ranges(&payload)
            .map_while(Result::ok)
            .filter_map(|range| abi::BatchHeader::parse(&payload[range]).ok())
            .map(|header| header.record_count as usize)
            .sum();
        records.reserve_exact(claimed.min(payload.len() / 16));
        for range in fluvio_protocol::batch_ranges(&payload) {
            let range = range.map_err(invalid)?;
            let bytes = match Batch::check_sent(&payload[range.clone()]).map_err(invalid)? {
                None => payload.slice(range),
                Some(decompressed) => Bytes::from(decompressed.into_bytes()),
            };
            push_records(&bytes, partition, &mut records).map_err(invalid)?;
        }
    }
    // Without a copy: the records start at the vector's front.
    Ok(StreamResponse { event, records: VecDeque::from(records) })
}

/// Appends the records of one checked batch (header, length and CRC) to
/// `records`, checking each record as it is read.
fn push_records(bytes: &Bytes, partition: u32, records: &mut Vec<ConsumerRecord>) -> Result<(), abi::FormatError> {
    let (header, views) = abi::RecordIter::new(bytes)?;
    // Straight from the parsed views (no intermediate record): this loop
    // runs once per record a consumer receives.
    for view in views {
        let view = view?;
        let offset = header.base_offset.saturating_add(view.offset_delta as i64);
        let timestamp = header.base_timestamp.saturating_add(view.timestamp_delta);
        push_record(records, (partition, offset, timestamp), bytes, &view);
    }
    Ok(())
}

/// Appends the record `view` shows in `bytes`, writing its fields where
/// it lies in `records`: key and value are cloned straight into their
/// places and cut there. Built apart and moved in, the record was copied
/// with loads wider than the stores that had just written its fields
/// (the `Bytes` a slice makes, the empty headers, the record's own), a
/// store-forwarding stall each, which together took 70% of the client's
/// decoding in a JetStream consume's profile.
#[inline(always)]
fn push_record(
    records: &mut Vec<ConsumerRecord>,
    (partition, offset, timestamp): (u32, i64, i64),
    bytes: &Bytes,
    view: &abi::RecordView<'_>,
) {
    records.reserve(1);
    let slot = records.spare_capacity_mut()[0].as_mut_ptr();
    // SAFETY: `slot` is the vector's first unused place, within its
    // capacity; every field is written before the length takes it in. A
    // panic in between (a range outside `bytes`, which the view was
    // checked against) leaves it outside, unread and not dropped: what
    // was cloned into it leaks, and nothing is freed twice.
    unsafe {
        std::ptr::addr_of_mut!((*slot).partition).write(partition);
        std::ptr::addr_of_mut!((*slot).offset).write(offset);
        std::ptr::addr_of_mut!((*slot).timestamp).write(timestamp);
        let headers = std::ptr::addr_of_mut!((*slot).headers);
        match view.header_count {
            0 => headers.write(Vec::new()),
            count => headers.write(
                abi::iter_headers(&bytes[view.headers.0..][..view.headers.1], count)
                    .map(|(name, value)| (bytes.slice_ref(name), bytes.slice_ref(value)))
                    .collect(),
            ),
        }
        let value = std::ptr::addr_of_mut!((*slot).value);
        clone_into(value, bytes);
        cut(&mut *value, view.value);
        let key = std::ptr::addr_of_mut!((*slot).key);
        key.write(None);
        if let Some(range) = view.key {
            // Overwritten without a drop: an empty `Bytes` owns nothing.
            let key = (*key).insert(Bytes::new());
            clone_into(key, bytes);
            cut(key, range);
        }
        records.set_len(records.len() + 1);
    }
}

/// Clones `bytes` into `place`, whose old contents are not dropped. The
/// clone is made by a call through the `Bytes` vtable, which writes it
/// into a temporary word by word; moved from there with the compiler's
/// usual 16-byte loads, each load waits for two of those stores to land
/// (a store-forwarding stall). Moved a word at a time, each load is fed
/// by the one store that wrote its word.
///
/// # Safety
///
/// `place` must be valid for writes and aligned for a `Bytes`.
#[inline(always)]
unsafe fn clone_into(place: *mut Bytes, bytes: &Bytes) {
    const WORD: usize = std::mem::size_of::<usize>();
    const WORDS: usize = std::mem::size_of::<Bytes>() / WORD;
    const _: () = assert!(
        std::mem::size_of::<Bytes>().is_multiple_of(WORD)
            && std::mem::align_of::<Bytes>() >= std::mem::align_of::<usize>()
    );
    let fresh = std::mem::ManuallyDrop::new(bytes.clone());
    // Words as `MaybeUninit`, which keeps the pointers' provenance.
    let from = (&*fresh as *const Bytes).cast::<std::mem::MaybeUninit<usize>>();
    let to = place.cast::<std::mem::MaybeUninit<usize>>();
    for word in 0..WORDS {
        // SAFETY: both are `WORDS` aligned words (asserted above); a
        // volatile read is not merged with the next into a wider load.
        unsafe { to.add(word).write(from.add(word).read_volatile()) };
    }
}

/// Cuts `part` down to its `len` bytes from `start`, where it lies.
#[inline(always)]
fn cut(part: &mut Bytes, (start, len): (usize, usize)) {
    bytes::Buf::advance(part, start);
    part.truncate(len);
}

impl PartitionStream {
    /// Reads responses until the server says where the stream starts. Any
    /// other response (an error, say) is kept for the stream to handle as
    /// it would have.
    async fn wait_until_started(&mut self) {
        while self.next_offset.is_none() && self.held.is_none() && !self.done {
            let Some(response) = self.responses.recv().await else { return };
            match response {
                Ok(response) if matches!(response.event, StreamEvent::Started { .. }) => {
                    let _ = self.on_response(response);
                }
                other => self.held = Some(other),
            }
        }
    }

    /// Starts moving the stream to another server (or the same one, back):
    /// it resumes at the first offset not yet delivered. `Err` when the
    /// time for that has run out.
    fn reconnect(&mut self, error: FluvioError) -> Result<(), FluvioError> {
        let now = tokio::time::Instant::now();
        let give_up_at = *self.give_up_at.get_or_insert(now + FAILOVER_TIMEOUT);
        if now >= give_up_at {
            return Err(error);
        }
        tracing::debug!(%error, "stream interrupted; resuming");
        let mut request = self.request.clone();
        if let Some(next_offset) = self.next_offset {
            request.offset = OffsetSpec::Absolute(next_offset);
        }
        if let (Some(accumulator), Some(last)) = (&self.last_output, request.chain.last_mut()) {
            *last = last.clone().initial_accumulator(accumulator.to_vec());
        }
        let fluvio = self.fluvio.clone();
        let failed = self.connection.addr().to_string();
        // The first attempt goes at once; later ones pace themselves.
        let pause = if self.reconnecting.is_some() { Duration::from_millis(200) } else { Duration::ZERO };
        self.reconnecting = Some(Box::pin(async move {
            tokio::time::sleep(pause).await;
            open_stream(fluvio, Some(failed), request).await
        }));
        Ok(())
    }

    /// Reads frames until records are buffered, an error arrives, or the
    /// stream ends. `Ready(None)`: records are buffered, or the stream is
    /// done.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<FluvioError>> {
        loop {
            if !self.buffered.is_empty() || self.done {
                return Poll::Ready(None);
            }
            if let Some(reconnecting) = self.reconnecting.as_mut() {
                match reconnecting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok((connection, responses))) => {
                        self.reconnecting = None;
                        self.connection = connection;
                        self.responses = responses;
                    }
                    Poll::Ready(Err(error)) => {
                        if let Err(error) = self.reconnect(error) {
                            self.reconnecting = None;
                            self.done = true;
                            return Poll::Ready(Some(error));
                        }
                    }
                }
                continue;
            }
            let polled = match self.held.take() {
                Some(response) => Poll::Ready(Some(response)),
                None => self.responses.poll_recv(cx),
            };
            let result = match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let addr = self.connection.addr().to_string();
                    Err(FluvioError::ConnectionLost { addr, reason: "the stream closed".into() })
                }
                Poll::Ready(Some(Err(error))) => Err(error),
                Poll::Ready(Some(Ok(response))) => self.on_response(response),
            };
            match result {
                Ok(()) => {
                    // Records arrive again: a later failure gets its own time.
                    self.give_up_at = None;
                }
                Err(error @ FluvioError::DeadLetter(_)) => return Poll::Ready(Some(error)),
                Err(error) if is_retryable(&error) => {
                    if let Err(error) = self.reconnect(error) {
                        self.done = true;
                        return Poll::Ready(Some(error));
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Poll::Ready(Some(error));
                }
            }
        }
    }

    /// Handles one decoded response: buffers its records, or returns the
    /// error it carries.
    fn on_response(&mut self, response: StreamResponse) -> Result<(), FluvioError> {
        let StreamResponse { event, records } = response;
        match event {
            StreamEvent::Started { offset } => {
                self.next_offset.get_or_insert(offset);
                Ok(())
            }
            StreamEvent::Batch { next_offset } => {
                // Frames are read only once the buffer is empty.
                debug_assert!(self.buffered.is_empty());
                if may_end_in_aggregate(&self.request.chain)
                    && let Some(last) = records.back()
                {
                    // A copy: a slice would hold the whole frame's buffer.
                    self.last_output = Some(Bytes::copy_from_slice(&last.value));
                }
                self.buffered = records;
                self.next_offset = Some(next_offset);
                Ok(())
            }
            StreamEvent::DeadLetter(failure) => match &self.sink {
                Some(sink) => {
                    sink(failure);
                    Ok(())
                }
                None => Err(FluvioError::DeadLetter(Box::new(failure))),
            },
            StreamEvent::Failed(failure) => Err(FluvioError::RecordFailed(Box::new(failure))),
            StreamEvent::End { next_offset } => {
                self.next_offset = Some(next_offset);
                self.done = true;
                Ok(())
            }
        }
    }
}

impl Stream for RecordStream {
    type Item = Result<ConsumerRecord, FluvioError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let index = match self.parts.get(self.turn).is_some_and(|part| !part.buffered.is_empty()) {
            true => self.turn,
            false => match self.poll_part(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(index))) => index,
            },
        };
        let stream = &mut *self;
        let count = stream.parts.len();
        let part = &mut stream.parts[index];
        let record = part.buffered.pop_front();
        if let Some(tracker) = &stream.offsets {
            // The first offset not wholly handed out: one source record can
            // have several outputs, and a filter's gaps count as read.
            let next = part.buffered.front().map(|next| next.offset).or(part.next_offset);
            if let Some(next) = next {
                tracker.delivered(part.request.partition, next);
            }
        }
        if part.buffered.is_empty() {
            stream.turn = (index + 1) % count;
        }
        Poll::Ready(record.map(Ok))
    }
}

/// Fluvio's consumer stream: a [`Stream`] of records whose offsets are
/// committed and flushed through futures, as in Fluvio's current API
/// (`stream.offset_commit().await?`). [`Fluvio::consumer_with_config`]
/// returns one ([`MultiplePartitionConsumerStream`]); this project's own
/// [`RecordStream`] keeps its synchronous `offset_commit` beside it.
pub trait ConsumerStream: Stream<Item = Result<ConsumerRecord, crate::dataplane::link::ErrorCode>> + Unpin {
    /// Notes the position of the last record handed out as the one to
    /// store. Needs a consumer id (`offset_consumer`).
    fn offset_commit(&mut self) -> BoxFuture<'_, Result<(), FluvioError>>;

    /// Stores the committed position on the server and waits for it to be
    /// acknowledged.
    fn offset_flush(&mut self) -> BoxFuture<'_, Result<(), FluvioError>>;
}

/// The stream Fluvio's consumer calls return: a [`RecordStream`] under
/// Fluvio's [`ConsumerStream`] trait. It dereferences to the
/// [`RecordStream`], so this project's extras (`bytes_received`,
/// `next_batch`, ...) stay at hand.
#[derive(Debug)]
pub struct MultiplePartitionConsumerStream {
    inner: RecordStream,
}

impl MultiplePartitionConsumerStream {
    /// Fluvio's trait over `stream`.
    pub fn new(stream: RecordStream) -> MultiplePartitionConsumerStream {
        MultiplePartitionConsumerStream { inner: stream }
    }

    /// The stream underneath.
    pub fn into_inner(self) -> RecordStream {
        self.inner
    }
}

impl std::ops::Deref for MultiplePartitionConsumerStream {
    type Target = RecordStream;

    fn deref(&self) -> &RecordStream {
        &self.inner
    }
}

impl std::ops::DerefMut for MultiplePartitionConsumerStream {
    fn deref_mut(&mut self) -> &mut RecordStream {
        &mut self.inner
    }
}

impl Stream for MultiplePartitionConsumerStream {
    type Item = Result<ConsumerRecord, crate::dataplane::link::ErrorCode>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| item.map(|item| item.map_err(Into::into)))
    }
}

impl ConsumerStream for MultiplePartitionConsumerStream {
    fn offset_commit(&mut self) -> BoxFuture<'_, Result<(), FluvioError>> {
        let committed = self.inner.offset_commit();
        Box::pin(async move { committed })
    }

    fn offset_flush(&mut self) -> BoxFuture<'_, Result<(), FluvioError>> {
        Box::pin(self.inner.offset_flush())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fluvio_protocol::BatchBuilder;

    use super::{ConsumerRecord, push_records};

    #[test]
    fn records_are_cut_from_the_batch_with_their_keys_values_and_headers() {
        let mut builder = BatchBuilder::new(100, 1_000);
        builder.push(0, 1_000, None, b"plain", &[]);
        builder.push(1, 1_005, Some(b"key-1"), b"", &[(b"h", b"v"), (b"name", b"")]);
        builder.push(3, 990, Some(b""), b"value with an empty key", &[]);
        let bytes = Bytes::from(builder.finish().into_bytes());
        // Records already in the vector stay as they were.
        let earlier = ConsumerRecord {
            partition: 9,
            offset: 1,
            timestamp: 2,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"v"),
            headers: Vec::new(),
        };
        let mut records = vec![earlier];
        push_records(&bytes, 4, &mut records).unwrap();
        let seen: Vec<_> = records
            .iter()
            .map(|r| {
                let headers: Vec<_> = r.headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                (r.partition, r.offset, r.timestamp, r.key.as_deref().map(<[u8]>::to_vec), r.value.to_vec(), headers)
            })
            .collect();
        let header = |n: &[u8], v: &[u8]| (n.to_vec(), v.to_vec());
        assert_eq!(
            seen,
            vec![
                (9, 1, 2, Some(b"k".to_vec()), b"v".to_vec(), vec![]),
                (4, 100, 1_000, None, b"plain".to_vec(), vec![]),
                (4, 101, 1_005, Some(b"key-1".to_vec()), Vec::new(), vec![header(b"h", b"v"), header(b"name", b"")]),
                (4, 103, 990, Some(Vec::new()), b"value with an empty key".to_vec(), vec![]),
            ]
        );
        // The records hold the batch's buffer, not copies of it, and keep
        // it alive.
        let batch = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        for record in &records[1..] {
            assert!(batch.contains(&(record.value.as_ptr() as usize)));
        }
        drop(bytes);
        assert_eq!(&records[3].value[..], b"value with an empty key");
    }
}
