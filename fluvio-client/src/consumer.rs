//! Consumers: streams of records from a partition, with SmartModules run on
//! the server so that only their outputs cross the network.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use fluvio_protocol::messages::StreamFetchRequest;
use fluvio_protocol::{
    ApiKind, Batch, ErrorPolicy, Frame, OffsetSpec, RecordFailure, SmartModuleInvocation, StreamEvent,
};

use crate::client::{Connection, FAILOVER_TIMEOUT, check, control};
use crate::{Fluvio, FluvioError};

/// Receives the records SmartModules failed on under
/// [`ErrorPolicy::DeadLetter`], each with its error.
pub type DeadLetterSink = Arc<dyn Fn(RecordFailure) + Send + Sync>;

/// Where and how a consumer reads.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The partition.
    pub partition: u32,
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
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            partition: 0,
            offset: OffsetSpec::Beginning,
            continuous: true,
            smartmodules: Vec::new(),
            policy: ErrorPolicy::Fail,
            dead_letters: None,
            max_bytes: 1 << 20,
        }
    }
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("continuous", &self.continuous)
            .field("smartmodules", &self.smartmodules)
            .field("policy", &self.policy)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl ConsumerConfig {
    /// Adds a SmartModule for the server to apply.
    pub fn smartmodule(mut self, invocation: SmartModuleInvocation) -> Self {
        self.smartmodules.push(invocation);
        self
    }
}

/// The records of one stored batch, as a consumer receives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerBatch {
    /// The records (SmartModule outputs, when the stream has a chain).
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last stored record these came from: where a
    /// stream restarted after them continues.
    pub next_offset: i64,
}

/// A record as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Offset in the partition (of the source record, for SmartModule outputs).
    pub offset: i64,
    /// Timestamp, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A stream of records. Ends after the last record when not continuous, or
/// after an error; dropping it closes its connection and stops the server's
/// work for it.
pub struct ConsumerStream {
    fluvio: Fluvio,
    request: StreamFetchRequest,
    connection: Arc<Connection>,
    responses: mpsc::UnboundedReceiver<Result<Frame, FluvioError>>,
    buffered: VecDeque<ConsumerRecord>,
    sink: Option<DeadLetterSink>,
    next_offset: Option<i64>,
    done: bool,
    /// Moving to another server after the connection broke.
    reconnecting: Option<BoxFuture<'static, Result<Opened, FluvioError>>>,
    /// When moving gives up (set at the first failure of a series).
    give_up_at: Option<tokio::time::Instant>,
}

type Opened = (Arc<Connection>, mpsc::UnboundedReceiver<Result<Frame, FluvioError>>);

/// Opens a stream connection, trying the servers after `after` first, and
/// sends the stream's request on it.
async fn open_stream(
    fluvio: Fluvio,
    after: Option<String>,
    request: StreamFetchRequest,
) -> Result<Opened, FluvioError> {
    let connection = Arc::new(fluvio.open_connection_after(after.as_deref()).await?);
    let (_, responses) = connection.send(ApiKind::StreamFetch, &request, Vec::new()).await?;
    Ok((connection, responses))
}

impl Fluvio {
    /// Streams records from `topic`. Each stream has a connection of its own.
    pub async fn consumer_stream(&self, topic: &str, config: ConsumerConfig) -> Result<ConsumerStream, FluvioError> {
        let request = StreamFetchRequest {
            topic: topic.to_string(),
            partition: config.partition,
            offset: config.offset,
            continuous: config.continuous,
            chain: config.smartmodules,
            policy: config.policy,
            max_bytes: config.max_bytes,
        };
        let (connection, responses) = open_stream(self.clone(), None, request.clone()).await?;
        Ok(ConsumerStream {
            fluvio: self.clone(),
            request,
            connection,
            responses,
            buffered: VecDeque::new(),
            sink: config.dead_letters,
            next_offset: None,
            done: false,
            reconnecting: None,
            give_up_at: None,
        })
    }
}

impl std::fmt::Debug for ConsumerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerStream")
            .field("addr", &self.connection.addr())
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

impl ConsumerStream {
    /// Bytes received from the server on this stream's connection.
    pub fn bytes_received(&self) -> u64 {
        self.connection.bytes_received()
    }

    /// Where the stream continues: the offset after the last stored record
    /// the server has processed for it.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// The records the server sent for the next stored batch, with the
    /// offset the stream continues from after them: what a sink commits
    /// once it has durably written the records. Records already taken one
    /// by one (through `Stream`) are not returned again. `None` once the
    /// stream has ended.
    pub async fn next_batch(&mut self) -> Option<Result<ConsumerBatch, FluvioError>> {
        std::future::poll_fn(|cx| match self.poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) if self.buffered.is_empty() => Poll::Ready(None),
            Poll::Ready(None) => {
                let records = self.buffered.drain(..).collect();
                let next_offset = self.next_offset.unwrap_or_default();
                Poll::Ready(Some(Ok(ConsumerBatch { records, next_offset })))
            }
        })
        .await
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
            let result = match self.responses.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let addr = self.connection.addr().to_string();
                    Err(FluvioError::ConnectionLost { addr, reason: "the stream closed".into() })
                }
                Poll::Ready(Some(Err(error))) => Err(error),
                Poll::Ready(Some(Ok(frame))) => self.on_frame(frame),
            };
            match result {
                Ok(()) => {
                    // Records arrive again: a later failure gets its own time.
                    self.give_up_at = None;
                }
                Err(error @ FluvioError::DeadLetter(_)) => return Poll::Ready(Some(error)),
                Err(error) if crate::client::is_retryable(&error) => {
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

    /// Handles one frame: buffers its records, or returns the error it
    /// carries.
    fn on_frame(&mut self, frame: Frame) -> Result<(), FluvioError> {
        let frame = check(frame)?;
        let event: StreamEvent = control(&frame)?;
        match event {
            StreamEvent::Started { offset } => {
                self.next_offset.get_or_insert(offset);
                Ok(())
            }
            StreamEvent::Batch { next_offset } => {
                let batch = Batch::from_bytes(frame.payload)
                    .map_err(|error| FluvioError::Protocol(format!("the server sent an invalid batch: {error}")))?;
                self.next_offset = Some(next_offset);
                self.buffered.extend(batch.records().map(|r| ConsumerRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.to_vec(),
                    headers: r.headers.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
                }));
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

impl Stream for ConsumerStream {
    type Item = Result<ConsumerRecord, FluvioError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(record) = self.buffered.pop_front() {
            return Poll::Ready(Some(Ok(record)));
        }
        match self.poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => Poll::Ready(self.buffered.pop_front().map(Ok)),
        }
    }
}
