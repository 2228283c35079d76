//! A partition's appends, pipelined: one task per partition sends this
//! server's batches in the order they came, with up to
//! [`APPENDS_IN_FLIGHT`] waiting for their acknowledgements, as JetStream's
//! own clients publish.
//!
//! Each batch states where it goes: the stream sequence it follows
//! (`Nats-Expected-Last-Sequence`, predicted from the appends still in
//! flight) and, behind another append in flight, that append's message id
//! (`Nats-Expected-Last-Msg-Id`). The second check is what keeps the order:
//! when another server takes the sequence an append expected, that append
//! fails, and the sequence check alone would let the next one through, into
//! the place of the batch before it. With both, every append behind a
//! failed one fails too. Appends that lost their place go again after the
//! pipeline drains and the tail is read back, in their first order, before
//! anything newer, except a producer's batch sent behind one of its own whose
//! outcome is unknown (no acknowledgement, no leader): that one is refused,
//! so that the producer sends both again in order
//! ([`ProduceRequest::follows`](fluvio_protocol::requests::ProduceRequest::follows)).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use fluvio_protocol::{CheckedBatch, ProducerStamp};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::names::AnnouncedEnd;
use super::partition::{Fetched, JetStreamPartition, Tail};
use crate::storage::{FailedBatches, StorageError};

/// Appends of one partition a server keeps in flight at once: as many as
/// the connection's produce requests ([`MAX_PRODUCES_IN_FLIGHT`](crate::connection::MAX_PRODUCES_IN_FLIGHT)),
/// and as many as the peer benchmark's direct publish.
pub const APPENDS_IN_FLIGHT: usize = 16;

/// Times one append may lose its place to another server's before it is
/// refused.
const MAX_CONFLICTS: u32 = 1000;

/// An append waiting for its turn, and where its answer goes.
pub(super) struct AppendRequest {
    pub(super) batch: CheckedBatch,
    pub(super) producer: Option<ProducerStamp>,
    /// The same producer's batch sent before this one, unanswered then.
    pub(super) follows: Option<u64>,
    /// Only where the partition ends here (an exclusive writer's append).
    pub(super) expected_next: Option<i64>,
    pub(super) answer: oneshot::Sender<Result<i64, StorageError>>,
    conflicts: u32,
}

impl AppendRequest {
    pub(super) fn new(
        batch: CheckedBatch,
        (producer, follows): (Option<ProducerStamp>, Option<u64>),
        expected_next: Option<i64>,
    ) -> (AppendRequest, oneshot::Receiver<Result<i64, StorageError>>) {
        let (answer, answered) = oneshot::channel();
        (AppendRequest { batch, producer, follows, expected_next, answer, conflicts: 0 }, answered)
    }

    fn answer(self, outcome: Result<i64, StorageError>) {
        // The caller may have gone: the append still happened (or not).
        let _ = self.answer.send(outcome);
    }
}

/// An append sent, waiting for its acknowledgement.
struct Sent {
    request: AppendRequest,
    base_offset: i64,
    /// The stream sequence it will have if stored.
    sequence: u64,
    acknowledged: BoxFuture<'static, Result<PublishAck, async_nats::jetstream::context::PublishError>>,
}

/// Where a partition's appends stand.
struct Pipeline {
    /// Where the partition ends once every append sent is stored.
    tail: Tail,
    /// The message id of the last append sent: the next one, while it is
    /// in flight, is sent only behind it.
    last_message_id: String,
    in_flight: VecDeque<Sent>,
    /// Appends to send, in order.
    waiting: VecDeque<AppendRequest>,
    /// Appends that lost their place, in order: they go again before
    /// anything waiting, once the pipeline has drained.
    retry: Vec<AppendRequest>,
    /// The predicted tail is wrong or unknown: nothing more is sent until
    /// every append in flight is answered and the tail is read back.
    resync: bool,
    /// Producer batches whose append failed with an unknown outcome (or
    /// was refused): the same producer's batches sent behind them are
    /// refused rather than stored ahead of them.
    failed: FailedBatches,
    message_ids: MessageIds,
}

impl Pipeline {
    fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty() && self.retry.is_empty()
    }
}

/// Message ids for appends without a producer's stamp: unique to this
/// partition's task, so they never meet another message's in JetStream's
/// deduplication.
struct MessageIds {
    nonce: u64,
    count: u64,
}

impl MessageIds {
    fn new() -> MessageIds {
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        MessageIds { nonce, count: 0 }
    }

    fn next(&mut self) -> String {
        self.count += 1;
        format!("server-{:016x}-{}", self.nonce, self.count)
    }
}

/// The message id of an append: the producer's stamp, so that a batch sent
/// again is stored once, or an id of its own.
fn message_id(producer: Option<ProducerStamp>, ids: &mut MessageIds) -> String {
    match producer {
        Some(stamp) => format!("{:016x}-{}", stamp.id, stamp.sequence),
        None => ids.next(),
    }
}

/// Whether an append failed because the stream did not end where it
/// expected: another server wrote first, or an append before it failed.
fn lost_its_place(kind: PublishErrorKind) -> bool {
    matches!(kind, PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId)
}

/// Runs a partition's appends until the partition is dropped. Holds the
/// partition only while appends are in flight, so that dropping it (and
/// with it the sender of `requests`) ends the task.
pub(super) async fn run_appends(
    partition: Weak<JetStreamPartition>,
    mut requests: mpsc::Receiver<AppendRequest>,
    tail: Tail,
) {
    let mut pipeline = Pipeline {
        tail,
        last_message_id: String::new(),
        in_flight: VecDeque::new(),
        waiting: VecDeque::new(),
        retry: Vec::new(),
        resync: false,
        failed: FailedBatches::default(),
        message_ids: MessageIds::new(),
    };
    while let Some(request) = requests.recv().await {
        pipeline.waiting.push_back(request);
        let Some(partition) = partition.upgrade() else { return };
        partition.drive(&mut pipeline, &mut requests).await;
    }
}

/// The acknowledgement of the oldest append in flight.
async fn oldest_acknowledged(
    in_flight: &mut VecDeque<Sent>,
) -> Result<PublishAck, async_nats::jetstream::context::PublishError> {
    match in_flight.front_mut() {
        Some(sent) => sent.acknowledged.as_mut().await,
        None => std::future::pending().await,
    }
}

impl JetStreamPartition {
    /// Sends and answers appends until none is waiting or in flight.
    async fn drive(self: &Arc<Self>, pipeline: &mut Pipeline, requests: &mut mpsc::Receiver<AppendRequest>) {
        loop {
            while pipeline.waiting.len() < APPENDS_IN_FLIGHT
                && let Ok(request) = requests.try_recv()
            {
                pipeline.waiting.push_back(request);
            }
            self.send_what_may_go(pipeline).await;
            if pipeline.is_idle() {
                return;
            }
            tokio::select! {
                biased;
                outcome = oldest_acknowledged(&mut pipeline.in_flight), if !pipeline.in_flight.is_empty() => {
                    let sent = pipeline.in_flight.pop_front().expect("an append is in flight");
                    self.acknowledged(pipeline, sent, outcome).await;
                }
                // The sender lives in the partition, which `self` holds:
                // the channel cannot close here.
                Some(request) = requests.recv(), if pipeline.waiting.len() < APPENDS_IN_FLIGHT => {
                    pipeline.waiting.push_back(request);
                }
            }
        }
    }

    /// Sends waiting appends, in order, as far as the pipeline allows.
    async fn send_what_may_go(&self, pipeline: &mut Pipeline) {
        loop {
            if pipeline.resync {
                if !pipeline.in_flight.is_empty() {
                    return;
                }
                // Those that lost their place came before anything waiting.
                for request in pipeline.retry.drain(..).rev() {
                    pipeline.waiting.push_front(request);
                }
                if pipeline.waiting.is_empty() {
                    return;
                }
                match self.load_tail().await {
                    Ok(tail) => {
                        pipeline.tail = tail;
                        self.advance(tail.next_offset, tail.last_sequence);
                        pipeline.resync = false;
                    }
                    Err(error) => {
                        // The next one is answered with it; the one after
                        // tries again.
                        let request = pipeline.waiting.pop_front().expect("an append is waiting");
                        Self::failed(pipeline, request, error);
                        continue;
                    }
                }
            }
            if pipeline.in_flight.len() >= APPENDS_IN_FLIGHT {
                return;
            }
            let Some(request) = pipeline.waiting.front() else { return };
            // An exclusive writer's append is checked against the end as
            // stored, not as predicted.
            if request.expected_next.is_some() && !pipeline.in_flight.is_empty() {
                return;
            }
            let request = pipeline.waiting.pop_front().expect("an append is waiting");
            self.send(pipeline, request).await;
        }
    }

    /// Sends one append after those in flight, or answers it at once where
    /// it cannot go.
    async fn send(&self, pipeline: &mut Pipeline, mut request: AppendRequest) {
        if pipeline.failed.refuses(request.producer, request.follows) {
            tracing::debug!(stream = %self.stream_name(), follows = ?request.follows, "an append follows a failed one; refused");
            let refusal = self.unavailable("append to", FailedBatches::refusal(request.follows));
            return Self::failed(pipeline, request, refusal);
        }
        if let Some(expected) = request.expected_next
            && pipeline.tail.next_offset != expected
        {
            // This server's view may be behind: look before refusing.
            match self.load_tail().await {
                Ok(tail) => {
                    pipeline.tail = tail;
                    self.advance(tail.next_offset, tail.last_sequence);
                }
                Err(error) => return Self::failed(pipeline, request, error),
            }
            if pipeline.tail.next_offset != expected {
                return request.answer(Err(StorageError::NotAtEnd { expected, end: pipeline.tail.next_offset }));
            }
        }
        let payload_len = request.batch.as_bytes().len();
        let max_payload = self.client.max_payload();
        if payload_len + 256 > max_payload {
            return request.answer(Err(StorageError::InvalidBatch(format!(
                "the batch is {payload_len} bytes, more than the JetStream cluster's max_payload of {max_payload}; send smaller batches (the producer's batch size), or raise max_payload in nats-server's config"
            ))));
        }
        let base_offset = pipeline.tail.next_offset;
        request.batch.set_base_offset(base_offset);
        let message_id = message_id(request.producer, &mut pipeline.message_ids);
        let mut publish = PublishMessage::build()
            .payload(Bytes::copy_from_slice(request.batch.as_bytes()))
            .expected_last_sequence(pipeline.tail.last_sequence)
            .message_id(&message_id);
        if !pipeline.in_flight.is_empty() {
            publish = publish.expected_last_message_id(&pipeline.last_message_id);
        }
        let js = self.append_context();
        match js.send_publish(self.subject.clone(), publish).await {
            Ok(acknowledgement) => {
                let sequence = pipeline.tail.last_sequence + 1;
                pipeline.tail = Tail { last_sequence: sequence, next_offset: request.batch.next_offset() };
                pipeline.last_message_id = message_id;
                let acknowledged = Box::pin(PublishAckFuture::into_future(acknowledgement));
                tracing::trace!(in_flight = pipeline.in_flight.len() + 1, "append sent");
                pipeline.in_flight.push_back(Sent { request, base_offset, sequence, acknowledged });
            }
            Err(error) => {
                // Whether it left is not known: read the tail back first.
                pipeline.resync = true;
                self.forget_publisher();
                Self::failed(pipeline, request, self.unavailable("append to", error));
            }
        }
    }

    /// Answers an append with an error. When it may pass (the batch may be
    /// sent again), the same producer's batches behind it are refused: they
    /// would be stored ahead of it.
    fn failed(pipeline: &mut Pipeline, request: AppendRequest, error: StorageError) {
        if let (Some(stamp), StorageError::Unavailable { .. }) = (request.producer, &error) {
            pipeline.failed.note(stamp);
        }
        request.answer(Err(error));
    }

    /// Answers the oldest append in flight, or sends it back to wait.
    async fn acknowledged(
        &self,
        pipeline: &mut Pipeline,
        sent: Sent,
        outcome: Result<PublishAck, async_nats::jetstream::context::PublishError>,
    ) {
        let Sent { mut request, base_offset, sequence, .. } = sent;
        match outcome {
            Ok(ack) if ack.duplicate => {
                // Stored before, under the same stamp: answer with the
                // offset it got then. The stream did not grow, so the
                // appends behind it lose their place.
                pipeline.resync = true;
                let stored = match self.fetch(ack.sequence).await {
                    Ok(Fetched::Batch(stored)) => Ok(stored.base_offset()),
                    Ok(_) => Err(self.unavailable("read back a deduplicated batch from", "it is gone")),
                    Err(error) => Err(error),
                };
                request.answer(stored);
            }
            Ok(ack) => {
                if ack.sequence != sequence {
                    // Cannot happen with the sequence stated; if it does,
                    // the prediction is wrong from here on.
                    pipeline.resync = true;
                }
                let next_offset = request.batch.next_offset();
                self.remember(base_offset, ack.sequence, next_offset);
                let AppendRequest { batch, answer, .. } = request;
                // Before consumers are woken: those at the end read it from here.
                self.recent.lock().insert(ack.sequence, batch.into());
                self.advance(next_offset, ack.sequence);
                let end = AnnouncedEnd { next_offset, last_sequence: ack.sequence };
                let _ = self.client.publish(self.notify_subject.clone(), Bytes::copy_from_slice(&end.to_bytes())).await;
                let _ = answer.send(Ok(base_offset));
            }
            Err(error) if lost_its_place(error.kind()) => {
                tracing::debug!(stream = %self.stream_name(), %error, in_flight = pipeline.in_flight.len(), "an append lost its place; it goes again");
                pipeline.resync = true;
                request.conflicts += 1;
                if request.conflicts > MAX_CONFLICTS {
                    let error = self.unavailable("append to", "too many competing appends");
                    return Self::failed(pipeline, request, error);
                }
                pipeline.retry.push(request);
            }
            Err(error) => {
                // The leader's node may be gone: the next append goes
                // through the main connection, until the leader is known
                // again. Whether this one was stored is not known.
                tracing::debug!(stream = %self.stream_name(), %error, "an append failed; the tail is read back");
                pipeline.resync = true;
                self.forget_publisher();
                Self::failed(pipeline, request, self.unavailable("append to", error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_the_stamp_or_unique() {
        let mut ids = MessageIds::new();
        let stamp = ProducerStamp { id: 0xab, sequence: 7 };
        assert_eq!(message_id(Some(stamp), &mut ids), "00000000000000ab-7");
        let first = message_id(None, &mut ids);
        let second = message_id(None, &mut ids);
        assert_ne!(first, second);
        assert_ne!(MessageIds::new().next(), MessageIds::new().next(), "two partitions' tasks share no ids");
    }
}
