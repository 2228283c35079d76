//! Produce requests: an append's handler, and a connection's appends in
//! flight. Up to [`MAX_PRODUCES_IN_FLIGHT`] run side by side, each answered
//! as soon as it is done, so that a partition waiting on a slow store holds
//! up no other. Appends to the same partition are placed in the order their
//! requests came: the next one starts once the one before has its place in
//! the partition's order ([`Partition::place`](crate::storage::Partition::place)),
//! which for the local log is when it is written, and for JetStream when it
//! is queued to be sent behind the others in flight.

use std::sync::Arc;

use parking_lot::Mutex;

use fluvio_protocol::requests::{ProduceRequest, ProduceResponse};
use fluvio_protocol::{ErrorCode, Frame};
use futures::StreamExt;

use super::dispatch::{Handle, frame_for};
use super::error::{ServerError, error_frame};
use super::outgoing::Outgoing;
use super::session::Session;
use crate::ServerContext;
use crate::storage::FailedBatches;

/// Produce requests one connection may have in flight at once. A
/// connection's batches for one partition are stored in the order they
/// came.
pub const MAX_PRODUCES_IN_FLIGHT: usize = 16;

impl Handle for ProduceRequest {
    async fn handle(self, context: &ServerContext, session: &Session) -> Result<ProduceResponse, ServerError> {
        produce(self, context, session, None).await
    }
}

/// Dropped once an append has its place in its partition's order, or will
/// never have one: the connection's next append to that partition starts
/// then. It never carries a value.
type Placed = tokio::sync::watch::Sender<()>;

/// What orders a connection's appends: the signal its next append to the
/// partition waits for, and the connection's failed batches.
struct InOrder<'a> {
    placed: Placed,
    failed: &'a Mutex<FailedBatches>,
}

/// Carries out a produce request. In a connection's order, drops `placed`
/// once the batch has its place in the partition's order, and refuses a
/// batch that follows one of the same producer's batches that failed.
async fn produce(
    request: ProduceRequest,
    context: &ServerContext,
    session: &Session,
    in_order: Option<InOrder<'_>>,
) -> Result<ProduceResponse, ServerError> {
    let (stamp, follows) = (request.producer, request.follows);
    let (placed, failed) = match in_order {
        Some(InOrder { placed, failed }) => (Some(placed), Some(failed)),
        None => (None, None),
    };
    // A failure that may pass is noted before the next append is let go,
    // so that the same producer's batch behind this one sees it.
    let note_if_failed = |error: Option<&ServerError>| {
        if let (Some(error), Some(failed), Some(stamp)) = (error, failed, stamp)
            && error.code == ErrorCode::Unavailable
        {
            failed.lock().note(stamp);
        }
    };
    let placing = async {
        if failed.is_some_and(|failed| failed.lock().refuses(stamp, follows)) {
            return Err(ServerError::new(ErrorCode::Unavailable, FailedBatches::refusal(follows)));
        }
        session.require_topic(&request.topic)?;
        context.derived.check_writable(&request.topic)?;
        let partition = context.storage.partition(&request.topic, request.partition).await?;
        let batch = context
            .inflater
            .check(request.batch)
            .await
            .map_err(|e| ServerError::new(ErrorCode::InvalidBatch, format!("invalid batch: {e}")))?;
        let (record_count, bytes) = (batch.record_count(), batch.as_bytes().len() as u64);
        Ok((partition.place(batch, stamp, follows).await, record_count, bytes))
    }
    .await;
    note_if_failed(placing.as_ref().err());
    drop(placed);
    let (placed_append, record_count, bytes) = placing?;
    let stored = placed_append.stored().await.map_err(ServerError::from);
    note_if_failed(stored.as_ref().err());
    let base_offset = stored?;
    context.metrics.appended(&request.topic, request.partition, u64::from(record_count), bytes);
    Ok(ProduceResponse { base_offset, record_count })
}

/// A produce request's answer, with the bytes of its batch.
type ProduceAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = (Frame, usize)> + Send>>;

/// A connection's produce requests being carried out, answered as they
/// end, and the bytes of their batches.
#[derive(Default)]
pub(super) struct InFlightProduces {
    answers: futures::stream::FuturesUnordered<ProduceAnswer>,
    bytes: usize,
    /// For each partition with an append in flight, whether the latest one
    /// has its place: the next append to that partition waits for it.
    latest_appends: std::collections::HashMap<(String, u32), AppendPlaced>,
    /// Batches of this connection's producers that failed lately.
    failed: Arc<Mutex<FailedBatches>>,
}

/// Closes once its append has its place in the partition's order (the
/// [`Placed`] sender is dropped, also when the append fails first or its
/// task panics).
type AppendPlaced = tokio::sync::watch::Receiver<()>;

impl InFlightProduces {
    /// Starts an append, in order after the connection's earlier appends
    /// to the same partition. It runs in a task of its own: an append runs
    /// to its end even when the client goes away meanwhile (dropped halfway,
    /// a local log's append would leave the partition to recovery).
    pub(super) fn start(&mut self, context: &Arc<ServerContext>, session: &Session, id: u32, request: ProduceRequest) {
        let bytes = request.batch.len();
        let (before, placed) = self.enter((request.topic.clone(), request.partition));
        let (context, session, failed) = (Arc::clone(context), session.clone(), Arc::clone(&self.failed));
        let append = tokio::spawn(async move {
            before.await;
            let outcome = async {
                session.principal()?;
                produce(request, &context, &session, Some(InOrder { placed, failed: &failed })).await
            };
            frame_for::<ProduceRequest>(id, outcome.await)
        });
        self.push(bytes, async move {
            append.await.unwrap_or_else(|error| {
                let reason = format!("the append failed inside the server: {error}");
                error_frame(id, &ServerError::new(ErrorCode::Storage, reason))
            })
        });
    }

    /// Enters an append to `partition` in its order: returns what it must
    /// wait for before it starts (the placing of the append to the same
    /// partition before it, if one is in flight), and what it drops once it
    /// has its own place.
    fn enter(&mut self, partition: (String, u32)) -> (impl std::future::Future<Output = ()> + Send + 'static, Placed) {
        let (placed, is_placed) = tokio::sync::watch::channel(());
        let before = self.latest_appends.insert(partition, is_placed);
        // Placed appends are forgotten once they could crowd the map.
        if self.latest_appends.len() > MAX_PRODUCES_IN_FLIGHT {
            self.latest_appends.retain(|_, placed| placed.has_changed().is_ok());
        }
        let before = async move {
            if let Some(mut before) = before {
                // Never sent to: this returns once the sender is gone.
                let _ = before.changed().await;
            }
        };
        (before, placed)
    }

    /// Sends the answers of appends that end while too many are in flight
    /// (by count, or by the bytes of their batches); `Err` once the
    /// connection is closing.
    pub(super) async fn answer_while_full(&mut self, frames: &Outgoing, byte_budget: usize) -> Result<(), ()> {
        while self.len() >= MAX_PRODUCES_IN_FLIGHT || self.bytes > byte_budget {
            let Some(response) = self.next().await else { break };
            frames.send(response).await?;
        }
        Ok(())
    }

    /// Waits for every append in flight and sends its answer; `Err` once
    /// the connection is closing.
    pub(super) async fn answer_all(&mut self, frames: &Outgoing) -> Result<(), ()> {
        while let Some(response) = self.next().await {
            frames.send(response).await?;
        }
        Ok(())
    }

    fn push(&mut self, bytes: usize, answer: impl std::future::Future<Output = Frame> + Send + 'static) {
        self.bytes += bytes;
        self.answers.push(Box::pin(async move { (answer.await, bytes) }));
    }

    pub(super) fn len(&self) -> usize {
        self.answers.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The answer of an append that is done; `None` when none is in
    /// flight. Cancel-safe: an answer is only taken when it is returned.
    pub(super) async fn next(&mut self) -> Option<Frame> {
        let (answer, bytes) = self.answers.next().await?;
        self.bytes -= bytes;
        Some(answer)
    }
}
