//! One partition: a JetStream stream of record batches, one batch per
//! message. Appends state the sequence they follow, so offsets stay dense
//! with several servers writing; the end is followed through other
//! servers' announcements and a slow poll; the start moves only forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use fluvio_protocol::{CheckedBatch, ProducerStamp, StoredBatch};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::appends::{APPENDS_IN_FLIGHT, AppendRequest, run_appends};
use super::names::{AnnouncedEnd, data_subject, end_key, notify_subject, stream_name};
use super::nodes::NodeConnections;
use super::positions::{BatchPositions, RecentBatches, first_sequence_ending_after};
use super::reader::JetStreamReader;
use super::{POLL_INTERVAL, READ_AHEAD, unavailable};
use crate::storage::{Partition, PartitionReader, PlacedAppend, StorageError, TopicError, TopicSpec, now_ms};

/// Where a partition ends, as last seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tail {
    /// The stream's last sequence (0 when empty).
    pub(super) last_sequence: u64,
    /// The offset the next record gets.
    pub(super) next_offset: i64,
}

/// One partition: a JetStream stream of record batches.
pub struct JetStreamPartition {
    stream: stream::Stream<()>,
    stream_name: String,
    pub(super) subject: String,
    pub(super) notify_subject: String,
    js: jetstream::Context,
    pub(super) client: async_nats::Client,
    nodes: Arc<NodeConnections>,
    /// Where appends go: the connection to the stream leader's node, as
    /// last seen; `None` for the main connection.
    publisher: Mutex<Option<jetstream::Context>>,
    /// This server's appends, in the order they are sent (`appends.rs`);
    /// other servers are kept out by the expected-last-sequence check.
    appends: mpsc::Sender<AppendRequest>,
    start_offset: AtomicI64,
    /// The end consumers may read up to (also the watch's value).
    watermark: watch::Sender<i64>,
    /// The last stream sequence known to hold a batch: reads go no further.
    pub(super) known_last: AtomicU64,
    /// Where batches seen are, to find where a read starts without
    /// searching.
    positions: Mutex<BatchPositions>,
    /// Batches appended here lately.
    pub(super) recent: Mutex<RecentBatches>,
    last_refresh_ms: AtomicU64,
    follower: tokio::task::JoinHandle<()>,
    /// Where this partition's end is noted, and the end noted last.
    ends: kv::Store,
    end_key: String,
    noted_end: AtomicI64,
}

impl Drop for JetStreamPartition {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// What reading one stream message found.
pub(super) enum Fetched {
    /// A batch (its next offset found as it was checked).
    Batch(StoredBatch),
    /// Not a valid batch: skipped (and logged).
    Invalid,
    /// No message at that sequence (removed, or not written yet).
    Missing,
}

impl JetStreamPartition {
    pub(super) async fn open(
        js: &jetstream::Context,
        client: &async_nats::Client,
        ends: &kv::Store,
        nodes: &Arc<NodeConnections>,
        spec: &TopicSpec,
        partition: u32,
    ) -> Result<Arc<JetStreamPartition>, TopicError> {
        let stream_name = stream_name(&spec.name, partition);
        let stream = js.get_stream_no_info(&stream_name).await.map_err(|e| unavailable("open the stream", e))?;
        let notify_subject = notify_subject(&spec.name, partition);
        // Subscribed before the end is read, so that no append falls
        // between the two.
        let notifications = client
            .subscribe(notify_subject.clone())
            .await
            .map_err(|e| unavailable(format!("follow stream {stream_name}"), e))?;
        let (watermark, _) = watch::channel(0);
        let (appends, requests) = mpsc::channel(APPENDS_IN_FLIGHT);
        let partition = Arc::new_cyclic(|weak: &std::sync::Weak<JetStreamPartition>| JetStreamPartition {
            stream,
            stream_name,
            subject: data_subject(&spec.name, partition),
            notify_subject,
            js: js.clone(),
            client: client.clone(),
            nodes: Arc::clone(nodes),
            publisher: Mutex::new(None),
            appends,
            start_offset: AtomicI64::new(0),
            watermark,
            known_last: AtomicU64::new(0),
            positions: Mutex::default(),
            recent: Mutex::default(),
            last_refresh_ms: AtomicU64::new(0),
            follower: tokio::spawn(follow(weak.clone(), notifications)),
            ends: ends.clone(),
            end_key: end_key(&spec.name, partition),
            noted_end: AtomicI64::new(0),
        });
        let tail = partition.load_tail().await.map_err(TopicError::Storage)?;
        partition.advance(tail.next_offset, tail.last_sequence);
        tokio::spawn(run_appends(Arc::downgrade(&partition), requests, tail));
        partition.refresh_start().await.map_err(TopicError::Storage)?;
        Ok(partition)
    }

    /// Where appends go: the connection to the stream leader's node, when
    /// it is known and up, else the main connection. Not through a node
    /// whose connection is down (the node may be gone): the append would
    /// wait out its timeout there.
    pub(super) fn append_context(&self) -> jetstream::Context {
        self.publisher
            .lock()
            .clone()
            .filter(|node| node.client().connection_state() == async_nats::connection::State::Connected)
            .unwrap_or_else(|| self.js.clone())
    }

    /// Sends appends through the main connection until the stream's
    /// leader is known again.
    pub(super) fn forget_publisher(&self) {
        *self.publisher.lock() = None;
    }

    /// The JetStream stream that holds the partition.
    pub(super) fn stream_name(&self) -> &str {
        &self.stream_name
    }

    pub(super) fn unavailable(&self, action: &'static str, error: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable { action, stream: self.stream_name.clone(), reason: error.to_string() }
    }

    /// Moves the known end forward (never back).
    pub(super) fn advance(&self, next_offset: i64, last_sequence: u64) {
        self.known_last.fetch_max(last_sequence, Ordering::Relaxed);
        self.watermark.send_if_modified(|current| {
            if next_offset > *current {
                *current = next_offset;
                true
            } else {
                false
            }
        });
    }

    pub(super) fn remember(&self, base_offset: i64, sequence: u64, next_offset: i64) {
        self.positions.lock().remember(base_offset, sequence, next_offset);
    }

    /// The stream's sequence range, `first..=last` (empty when `first > last`).
    /// The answer also names the stream's leader: appends follow it.
    async fn sequences(&self) -> Result<(u64, u64), StorageError> {
        let info = self.stream.get_info().await.map_err(|e| self.unavailable("read the state of", e))?;
        let leader = info.cluster.as_ref().and_then(|cluster| cluster.leader.as_deref());
        *self.publisher.lock() = leader.and_then(|leader| self.nodes.to(leader));
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Reads the message at `sequence`: from any replica, else from the
    /// leader (a replica may not have a message just written yet).
    pub(super) async fn fetch(&self, sequence: u64) -> Result<Fetched, StorageError> {
        use jetstream::stream::DirectGetErrorKind;
        if let Some(batch) = self.recent.lock().get(sequence) {
            return Ok(Fetched::Batch(batch));
        }
        let message = match self.stream.direct_get(sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => {
                match self.stream.get_raw_message(sequence).await {
                    Ok(message) => message,
                    Err(error) if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                        return Ok(Fetched::Missing);
                    }
                    Err(error) => return Err(self.unavailable("read", error)),
                }
            }
            Err(error) => return Err(self.unavailable("read", error)),
        };
        // Header and CRC only for a compressed batch: whoever opens it
        // inflates it, off the runtime and within the server's budget.
        // Into a kept buffer: a stream hands its batches' buffers back once
        // they are sent, and a fresh one per message would be faulted in.
        let mut bytes = fluvio_protocol::buffers::take(message.payload.len());
        bytes.extend_from_slice(&message.payload);
        match StoredBatch::from_shared_storage(bytes) {
            Ok(batch) => {
                self.remember(batch.base_offset(), sequence, batch.next_offset());
                Ok(Fetched::Batch(batch))
            }
            Err(error) => {
                tracing::error!(
                    "message {sequence} of JetStream stream {} is not a valid record batch ({error}); skipping it",
                    self.stream_name
                );
                Ok(Fetched::Invalid)
            }
        }
    }

    /// Finds the end: the last valid batch's next offset.
    pub(super) async fn load_tail(&self) -> Result<Tail, StorageError> {
        let (mut first, mut last) = self.sequences().await?;
        let mut sequence = last;
        let mut missing = 0;
        while sequence >= first.max(1) {
            match self.fetch(sequence).await? {
                Fetched::Batch(batch) => return Ok(Tail { last_sequence: last, next_offset: batch.next_offset() }),
                // Not a batch: holds no offsets, look before it.
                Fetched::Invalid => sequence -= 1,
                // Not readable although the stream says it is there. Going
                // back past it would pair this `last` with an older batch's
                // end, and the next append would reuse offsets: look again.
                Fetched::Missing => {
                    missing += 1;
                    if missing > 20 {
                        return Err(self.unavailable("read the end of", format!("message {sequence} cannot be read")));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (first, last) = self.sequences().await?;
                    sequence = last;
                }
            }
        }
        // Empty: nothing stored yet, or retention removed everything, and
        // the offsets with it: the end noted last says where they stopped.
        let mut next_offset = *self.watermark.borrow();
        if last > 0
            && let Ok(Some(noted)) = self.ends.get(&self.end_key).await
            && let Ok(noted) = <[u8; 8]>::try_from(&noted[..])
        {
            next_offset = next_offset.max(i64::from_le_bytes(noted));
        }
        Ok(Tail { last_sequence: last, next_offset })
    }

    /// Moves the partition's start up to the first batch the stream holds.
    ///
    /// The start only ever moves forward, and only to an offset a batch
    /// proves: a start too high would hide stored records from consumers
    /// reading from the beginning, while one too low costs them nothing
    /// (reads begin at the first batch there is).
    async fn refresh_start(&self) -> Result<(), StorageError> {
        let (first, last) = self.sequences().await?;
        let mut sequence = first.max(1);
        while sequence <= last {
            match self.fetch(sequence).await? {
                Fetched::Batch(batch) => {
                    self.start_offset.fetch_max(batch.base_offset(), Ordering::Relaxed);
                    return Ok(());
                }
                Fetched::Invalid => sequence += 1,
                // Not readable yet where the read went (a replica behind
                // its leader, a leader just elected), or removed by
                // retention meanwhile: the start is not known this time.
                // Looking past it would take the next batch's offset for
                // the start, and hide this one's records.
                Fetched::Missing => return Ok(()),
            }
        }
        // No batch left. Only an answer that has seen every message this
        // server knows of says the stream is empty rather than behind.
        if last >= self.known_last.load(Ordering::Relaxed) {
            self.start_offset.fetch_max(*self.watermark.borrow(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Catches up with appends made through other servers whose
    /// notification was lost, and with retention, at most every
    /// [`POLL_INTERVAL`].
    pub(super) async fn refresh_if_due(&self) {
        let now = now_ms();
        if now.saturating_sub(self.last_refresh_ms.load(Ordering::Relaxed)) < POLL_INTERVAL.as_millis() as u64 {
            return;
        }
        self.last_refresh_ms.store(now, Ordering::Relaxed);
        if let Ok((_, last)) = self.sequences().await
            && last > self.known_last.load(Ordering::Relaxed)
            && let Ok(Fetched::Batch(batch)) = self.fetch(last).await
        {
            self.advance(batch.next_offset(), last);
        }
        if let Err(error) = self.refresh_start().await {
            tracing::debug!(%error, "cannot refresh a partition's start");
        }
        let end = self.next_offset();
        if end > self.noted_end.load(Ordering::Relaxed)
            && self.ends.put(&self.end_key, Bytes::copy_from_slice(&end.to_le_bytes())).await.is_ok()
        {
            self.noted_end.fetch_max(end, Ordering::Relaxed);
        }
    }

    /// The stream sequence of the batch holding `offset`, or of the first
    /// batch after it; `None` when nothing at or after `offset` is known.
    pub(super) async fn locate(&self, offset: i64) -> Result<Option<u64>, StorageError> {
        if offset >= self.next_offset() {
            return Ok(None);
        }
        if let Some(sequence) = self.positions.lock().sequence_for(offset) {
            return Ok(Some(sequence));
        }
        let (first, last) = self.sequences().await?;
        first_sequence_ending_after(first, last, offset, |sequence| async move {
            Ok(match self.fetch(sequence).await? {
                Fetched::Batch(batch) => Some(batch.next_offset()),
                Fetched::Invalid | Fetched::Missing => None,
            })
        })
        .await
    }

    /// Appends a batch after those this server has in flight; with
    /// `expected_next`, only where the partition ends there (an exclusive
    /// writer's append: an append through another server in between is not
    /// retried after but answered with [`StorageError::NotAtEnd`]). Resolves
    /// once the batch has its place in this server's order, to its outcome.
    async fn place_stamped(
        &self,
        batch: CheckedBatch,
        (producer, follows): (Option<ProducerStamp>, Option<u64>),
        expected_next: Option<i64>,
    ) -> PlacedAppend {
        let (request, answered) = AppendRequest::new(batch, (producer, follows), expected_next);
        let closed = self.appends.send(request).await.is_err();
        let stream = self.stream_name.clone();
        let gone = move || StorageError::Unavailable {
            action: "append to",
            stream,
            reason: "the partition was closed before the append was answered".into(),
        };
        if closed {
            return PlacedAppend::answered(Err(gone()));
        }
        PlacedAppend::new(async move { answered.await.unwrap_or_else(|_| Err(gone())) })
    }

    async fn read_from(&self, offset: i64, max_bytes: u64) -> Result<Vec<StoredBatch>, StorageError> {
        let Some(mut sequence) = self.locate(offset).await? else { return Ok(Vec::new()) };
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        loop {
            let last = self.known_last.load(Ordering::Relaxed);
            if sequence > last {
                return Ok(batches);
            }
            // Several reads in flight: one round trip per batch would
            // bound a consumer by latency.
            let wave_end = last.min(sequence + READ_AHEAD as u64 - 1);
            let fetched = futures::future::join_all((sequence..=wave_end).map(|s| self.fetch(s))).await;
            for result in fetched {
                sequence += 1;
                match result? {
                    Fetched::Batch(batch) => {
                        if batch.next_offset() <= offset {
                            continue;
                        }
                        bytes += batch.as_bytes().len() as u64;
                        batches.push(batch);
                        if bytes >= max_bytes {
                            return Ok(batches);
                        }
                    }
                    Fetched::Invalid => {}
                    // Removed by retention meanwhile, or not yet on the
                    // leader: the caller asks again.
                    Fetched::Missing => return Ok(batches),
                }
            }
        }
    }
}

/// Follows a partition's end as other servers announce it.
async fn follow(partition: std::sync::Weak<JetStreamPartition>, mut notifications: async_nats::Subscriber) {
    while let Some(message) = notifications.next().await {
        let Some(partition) = partition.upgrade() else { return };
        if let Some(end) = AnnouncedEnd::from_bytes(&message.payload) {
            partition.advance(end.next_offset, end.last_sequence);
        }
    }
}

impl Partition for JetStreamPartition {
    fn append(&self, batch: CheckedBatch, producer: Option<ProducerStamp>) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move { self.place_stamped(batch, (producer, None), None).await.stored().await })
    }

    fn place(
        &self,
        batch: CheckedBatch,
        producer: Option<ProducerStamp>,
        follows: Option<u64>,
    ) -> BoxFuture<'_, PlacedAppend> {
        Box::pin(self.place_stamped(batch, (producer, follows), None))
    }

    fn append_at(
        &self,
        batch: CheckedBatch,
        producer: Option<ProducerStamp>,
        expected_next: i64,
    ) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move { self.place_stamped(batch, (producer, None), Some(expected_next)).await.stored().await })
    }

    fn read(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>> {
        Box::pin(self.read_from(offset, max_bytes))
    }

    fn reader(self: Arc<Self>, offset: i64) -> Box<dyn PartitionReader> {
        Box::new(JetStreamReader::new(self, offset))
    }

    fn start_offset(&self) -> i64 {
        self.start_offset.load(Ordering::Relaxed)
    }

    fn next_offset(&self) -> i64 {
        *self.watermark.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.watermark.subscribe()
    }
}
