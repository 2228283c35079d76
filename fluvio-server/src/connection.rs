//! One client connection: reads frames, answers requests in order, and runs
//! each stream (consumer) in a task of its own. Produce requests run side
//! by side (up to [`MAX_PRODUCES_IN_FLIGHT`]): a client that sends batches
//! for several partitions at once, or several producers sharing one
//! connection, gets their appends done together, not one after another,
//! and each answer as soon as its append is done, so that a partition
//! waiting on a slow store holds up no other. Appends to the same
//! partition still run one after the other, in the order their requests
//! came.
//!
//! This is the only place where errors become wire [`ErrorCode`]s: the
//! stores, the registry and the engine return their own error types, and
//! [`ServerError`]'s conversions below decide what a client is told.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fluvio_protocol::messages::{
    AuthenticateRequest, AuthenticateResponse, CommitOffsetRequest, ConnectorLogsRequest, ConnectorLogsResponse,
    CreateConnectorRequest, CreateSmartModuleRequest, CreateTopicRequest, DeleteConsumerRequest, Empty,
    FetchOffsetRequest, FetchOffsetResponse, NameRequest, ProduceRequest, ProduceResponse, StreamFetchRequest,
};
use fluvio_protocol::{
    ApiKind, Batch, BatchBuilder, ErrorCode, ErrorResponse, Frame, FrameError, OffsetSpec, PROTOCOL_VERSION,
    RESPONSE_BIT, SmartModuleInvocationWasm, StreamEvent,
};
use fluvio_smartengine::{ChainBuilder, ChainWorker, EngineError};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use crate::ServerContext;
use crate::connectors::ConnectorError;
use crate::outbound::{FrameWriter, Outbound, Tail};
use crate::registry::RegistryError;
use crate::security::{AccessPolicy, Principal, Role};
use crate::storage::{StorageError, TopicError, TopicSpec};

/// An error as a client is told it: a code and a message that says what was
/// wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServerError {
    /// The error code sent to the client.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl ServerError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServerError {
        ServerError { code, message: message.into() }
    }

    /// The error as sent on the wire.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse { code: self.code, message: self.message.clone() }
    }
}

impl From<StorageError> for ServerError {
    fn from(error: StorageError) -> Self {
        let code = match error {
            StorageError::InvalidBatch(_) => ErrorCode::InvalidBatch,
            StorageError::Io { .. } | StorageError::Corrupt { .. } => ErrorCode::Storage,
            StorageError::Unavailable { .. } => ErrorCode::Unavailable,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<TopicError> for ServerError {
    fn from(error: TopicError) -> Self {
        let code = match &error {
            TopicError::Exists(_) => ErrorCode::TopicExists,
            TopicError::NotFound(_) => ErrorCode::TopicNotFound,
            TopicError::InvalidName(_) => ErrorCode::InvalidTopicName,
            TopicError::InvalidPartitionCount(_)
            | TopicError::InvalidReplication { .. }
            | TopicError::Refused { .. } => ErrorCode::InvalidRequest,
            TopicError::Unavailable { .. } | TopicError::Storage(StorageError::Unavailable { .. }) => {
                ErrorCode::Unavailable
            }
            TopicError::PartitionNotFound { .. } => ErrorCode::PartitionNotFound,
            TopicError::CorruptSettings { .. } | TopicError::Unopened { .. } => ErrorCode::Storage,
            TopicError::Storage(StorageError::InvalidBatch(_)) => ErrorCode::InvalidBatch,
            TopicError::Storage(_) => ErrorCode::Storage,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<RegistryError> for ServerError {
    fn from(error: RegistryError) -> Self {
        let code = match &error {
            RegistryError::InvalidName(_) => ErrorCode::InvalidRequest,
            RegistryError::Exists(_) => ErrorCode::SmartModuleExists,
            RegistryError::NotFound(_) => ErrorCode::SmartModuleNotFound,
            RegistryError::Invalid(_) => ErrorCode::InvalidSmartModule,
            RegistryError::Io { .. } => ErrorCode::Storage,
            RegistryError::Shared { .. } => ErrorCode::Unavailable,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<ConnectorError> for ServerError {
    fn from(error: ConnectorError) -> Self {
        let code = match &error {
            ConnectorError::Exists(_) => ErrorCode::ConnectorExists,
            ConnectorError::NotFound(_) => ErrorCode::ConnectorNotFound,
            ConnectorError::Invalid(_) | ConnectorError::Name(_) | ConnectorError::Program { .. } => {
                ErrorCode::InvalidConnector
            }
            ConnectorError::Io { .. } => ErrorCode::Storage,
        };
        ServerError::new(code, error.to_string())
    }
}

impl From<EngineError> for ServerError {
    /// For errors starting a chain: the module is unknown or invalid. A
    /// chain that fails while running is reported by [`running_chain_failed`].
    fn from(error: EngineError) -> Self {
        let code = match &error {
            EngineError::UnknownModule { .. } => ErrorCode::SmartModuleNotFound,
            _ => ErrorCode::InvalidSmartModule,
        };
        ServerError::new(code, error.to_string())
    }
}

fn running_chain_failed(error: EngineError) -> ServerError {
    ServerError::new(ErrorCode::SmartModuleFailed, error.to_string())
}

fn error_frame(correlation_id: u32, error: &ServerError) -> Frame {
    Frame::new(ApiKind::Error as u16 | RESPONSE_BIT, correlation_id, &error.to_response(), Vec::new())
}

fn bad_frame(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorCode::BadFrame, message)
}

fn limit_reached(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorCode::LimitReached, message)
}

/// Bytes one stream may have queued for its client, not yet written: a
/// stream reads ahead of the socket by this much and no more, so a fast
/// reader of a long partition keeps a few MiB in flight rather than the
/// connection's whole budget (and the memory churn that comes with it).
const STREAM_AHEAD_BYTES: usize = 4 << 20;

/// What a queued frame holds until it is written: its share of the
/// connection's budget and, for a stream's frames, of the stream's.
type Permits = (tokio::sync::OwnedSemaphorePermit, Option<tokio::sync::OwnedSemaphorePermit>);

/// The most bytes of stored batches one frame of a stream without
/// SmartModules carries: large enough that per-frame costs vanish, small
/// enough that a client reading a few frames ahead holds little memory.
const RUN_BYTES: u64 = 256 << 10;

/// The frames waiting to be written to one client, bounded in bytes: a
/// client that stops reading holds at most `max_queued_bytes` of the
/// server's memory, and its streams wait (they do not read ahead) until it
/// reads again or the write timeout closes the connection.
#[derive(Clone)]
struct Outgoing {
    frames: mpsc::UnboundedSender<(Outbound, Permits)>,
    budget: Arc<Semaphore>,
    max_queued_bytes: u32,
}

impl Outgoing {
    /// Queues a frame; `Err` once the connection is closing.
    async fn send(&self, frame: Frame) -> Result<(), ()> {
        self.send_within(frame.into(), None).await
    }

    /// Queues a frame that also counts against `stream`'s own budget until
    /// it is written.
    async fn send_within(&self, frame: Outbound, stream: Option<&Arc<Semaphore>>) -> Result<(), ()> {
        // A frame larger than the whole budget waits for the queue to empty.
        let size = frame.encoded_len();
        let cost = |limit: u32| u32::try_from(size).unwrap_or(u32::MAX).min(limit).max(1);
        let stream = match stream {
            Some(budget) => {
                let cost = cost(STREAM_AHEAD_BYTES as u32);
                Some(Arc::clone(budget).acquire_many_owned(cost).await.map_err(|_| ())?)
            }
            None => None,
        };
        let connection =
            Arc::clone(&self.budget).acquire_many_owned(cost(self.max_queued_bytes)).await.map_err(|_| ())?;
        self.frames.send((frame, (connection, stream))).map_err(|_| ())
    }

    /// Resolves once the connection is closing.
    async fn closed(&self) {
        self.frames.closed().await
    }
}

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted socket: the TLS handshake first when the server
/// serves TLS (a client certificate naming a principal authenticates the
/// connection), then [`serve`].
pub async fn accept(socket: TcpStream, peer: std::net::SocketAddr, context: Arc<ServerContext>) {
    let Some(acceptor) = context.tls.clone() else {
        let (reader, writer) = socket.into_split();
        return serve(reader, writer, None, context).await;
    };
    // A client speaking plain frames to a TLS port is told so in its own
    // language, instead of waiting on a handshake that never comes.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
            let error = bad_frame(
                "this server accepts only TLS connections: give the client TLS settings with the server's CA (`tls` of the profile in ~/.fluvio/config, or FLUVIO_TLS_CA)",
            );
            let mut socket = socket;
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, error_frame(0, &error).write(&mut socket)).await;
            let _ = socket.shutdown().await;
            return;
        }
        Ok(Ok(1)) => {}
        _ => return,
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not finished in {} s", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    let principal = match (&context.access, tls.get_ref().1.peer_certificates()) {
        (Some(access), Some([leaf, ..])) => {
            let principal = access.by_certificate(leaf);
            if principal.is_none() {
                tracing::info!(%peer, "a client certificate names no principal of the access file");
            }
            principal
        }
        _ => None,
    };
    let (reader, writer) = tokio::io::split(tls);
    serve(reader, writer, principal, context).await
}

/// Produce requests one connection may have in flight at once. Only
/// appends to different partitions run together: a connection's batches
/// for one partition are stored in the order they came.
pub const MAX_PRODUCES_IN_FLIGHT: usize = 16;

/// Who a connection acts as.
#[derive(Clone)]
struct Session {
    access: Option<Arc<AccessPolicy>>,
    principal: Option<Arc<Principal>>,
}

impl Session {
    /// The principal, or `None` on a server that needs no credentials
    /// (where everyone may do everything).
    fn principal(&self) -> Result<Option<&Principal>, ServerError> {
        if self.access.is_none() {
            return Ok(None);
        }
        match &self.principal {
            Some(principal) => Ok(Some(principal)),
            None => Err(ServerError::new(
                ErrorCode::Unauthenticated,
                "this server requires credentials: give a token (FLUVIO_TOKEN, or `token` in your profile in ~/.fluvio/config) or a client certificate",
            )),
        }
    }

    /// Refuses a principal that is not an admin.
    fn require_admin(&self, kind: ApiKind) -> Result<(), ServerError> {
        match self.principal()? {
            Some(principal) if principal.role != Role::Admin => Err(ServerError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{:?} is a client; {kind:?} needs the admin role (ask an admin, or use an admin's token)",
                    principal.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a topic the principal may not use.
    fn require_topic(&self, topic: &str) -> Result<(), ServerError> {
        match self.principal()? {
            Some(principal) if !principal.may_use_topic(topic) => Err(ServerError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{:?} may not use topic {topic:?}; its topics are {:?} (an admin grants more in the access file)",
                    principal.name, principal.topics
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a listing may show this topic to the principal (without
    /// building the refusal `require_topic` would send).
    fn may_see(&self, topic: &str) -> bool {
        match self.principal() {
            Ok(None) => true,
            Ok(Some(principal)) => principal.may_use_topic(topic),
            Err(_) => false,
        }
    }

    /// Answers an `Authenticate` request; `Err` closes the connection.
    fn authenticate(&mut self, frame: &Frame) -> Result<AuthenticateResponse, ServerError> {
        let request: AuthenticateRequest = decode(frame)?;
        let Some(access) = &self.access else {
            return Ok(AuthenticateResponse { principal: String::new(), role: Role::Admin.name().to_string() });
        };
        match access.by_token(&request.token) {
            Some(principal) => {
                let response =
                    AuthenticateResponse { principal: principal.name.clone(), role: principal.role.name().to_string() };
                self.principal = Some(principal);
                Ok(response)
            }
            None => Err(ServerError::new(
                ErrorCode::Unauthenticated,
                "the token is not known to this server; check FLUVIO_TOKEN or the `token` of your profile",
            )),
        }
    }
}

/// Serves one connection until the client closes it, sends a frame that
/// cannot be understood (answered with an error, then closed), stays idle
/// past the idle timeout, or stops reading past the write timeout.
pub async fn serve<R, W>(reader: R, mut writer: W, principal: Option<Arc<Principal>>, context: Arc<ServerContext>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: FrameWriter + 'static,
{
    let mut session = Session { access: context.access.clone(), principal };
    let limits = context.config.connection_limits.clone();
    let open = context.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _counted = CountedConnection(Arc::clone(&context));
    // Small reads (a frame's prefix and header) come from the buffer.
    let mut reader = tokio::io::BufReader::with_capacity(64 << 10, reader);
    let (queue, mut outgoing) = mpsc::unbounded_channel::<(Outbound, Permits)>();
    let max_queued_bytes = u32::try_from(limits.max_queued_bytes).unwrap_or(u32::MAX).max(1);
    let budget = Arc::new(Semaphore::new(max_queued_bytes as usize));
    let frames = Outgoing { frames: queue, budget: Arc::clone(&budget), max_queued_bytes };
    let write_timeout = limits.write_timeout;
    let mut writer_task = tokio::spawn(async move {
        while let Some((frame, _permit)) = outgoing.recv().await {
            match tokio::time::timeout(write_timeout, frame.write(&mut writer)).await {
                Ok(Ok(())) => frame.recycle(),
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::info!(
                        "a client read nothing for {} s; closing its connection",
                        write_timeout.as_secs_f64()
                    );
                    break;
                }
            }
        }
        // Wakes streams waiting for queue space: the connection is closing.
        budget.close();
        let _ = writer.shutdown().await;
    });
    if open > limits.max_connections {
        // Answer the client's first request with why, then close.
        if let Ok(Ok(frame)) =
            tokio::time::timeout(Duration::from_secs(5), Frame::read(&mut reader, context.config.max_frame_bytes)).await
        {
            let error = limit_reached(format!(
                "the server already serves its limit of {} connections; try again later, or raise --max-connections",
                limits.max_connections
            ));
            let _ = frames.send(error_frame(frame.correlation_id, &error)).await;
        }
        drop(frames);
        let _ = writer_task.await;
        return;
    }
    let mut streams: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // Produce requests being handled, answered as they end, and the bytes of
    // their batches: at most a quarter of the frame limit is held this way
    // before the next frame is read, so that a connection holds little
    // more than one largest frame, as when it handled one at a time.
    let mut produces = InFlightProduces::default();
    let produce_byte_budget = context.config.max_frame_bytes as usize / 4;
    'requests: loop {
        while produces.len() >= MAX_PRODUCES_IN_FLIGHT || produces.bytes > produce_byte_budget {
            let Some(response) = produces.next().await else { break };
            if frames.send(response).await.is_err() {
                break 'requests;
            }
        }
        streams.retain(|stream| !stream.is_finished());
        // An idle connection (no stream, no request) is closed after the
        // idle timeout; one with streams or appends in flight is busy by
        // definition.
        let idle = streams.is_empty() && produces.is_empty();
        let idle_timeout = if idle { limits.idle_timeout } else { Duration::MAX };
        let read = tokio::time::timeout(idle_timeout, Frame::read(&mut reader, context.config.max_frame_bytes));
        tokio::pin!(read);
        // Answers go out as their appends finish, while the next frame is
        // read: the read is polled to its end, never dropped half done.
        let read = loop {
            tokio::select! {
                read = &mut read => break read,
                Some(response) = produces.next(), if !produces.is_empty() => {
                    if frames.send(response).await.is_err() {
                        break 'requests;
                    }
                }
                // The writer gave up on the client (it stopped reading).
                _ = &mut writer_task => break 'requests,
            }
        };
        let frame = match read {
            Ok(Ok(frame)) => frame,
            Ok(Err(FrameError::Closed)) => break,
            Ok(Err(FrameError::Io(_))) => break,
            Ok(Err(error)) => {
                let _ = frames.send(error_frame(0, &bad_frame(format!("{error}; closing the connection")))).await;
                break;
            }
            Err(_) => {
                tracing::debug!("closing a connection idle for {} s", limits.idle_timeout.as_secs_f64());
                break;
            }
        };
        let correlation_id = frame.correlation_id;
        if frame.version != PROTOCOL_VERSION {
            let message = format!(
                "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                frame.version
            );
            let _ = frames.send(error_frame(correlation_id, &bad_frame(message))).await;
            break;
        }
        let kind = match ApiKind::from_u16(frame.kind) {
            Some(kind) if !frame.is_response() && kind != ApiKind::Error => kind,
            _ => {
                let error = bad_frame(format!("unknown request kind {}", frame.kind));
                if frames.send(error_frame(correlation_id, &error)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if kind == ApiKind::Authenticate {
            let answer = match session.authenticate(&frame) {
                Ok(response) => respond(kind, correlation_id, &response, Vec::new()),
                Err(error) => {
                    // A wrong token ends the connection: guessing costs a
                    // connection (and the limit on them) per try.
                    tracing::info!("a connection presented an unknown token");
                    let _ = frames.send(error_frame(correlation_id, &error)).await;
                    break;
                }
            };
            if frames.send(answer).await.is_err() {
                break;
            }
            continue;
        }
        if kind == ApiKind::StreamFetch {
            if streams.len() >= limits.max_streams_per_connection {
                let error = limit_reached(format!(
                    "this connection already has its limit of {} streams open; close one, open another connection, or raise --max-streams-per-connection",
                    limits.max_streams_per_connection
                ));
                if frames.send(error_frame(correlation_id, &error)).await.is_err() {
                    break;
                }
                continue;
            }
            match frame.control::<StreamFetchRequest>() {
                Ok(request) if let Err(error) = session.require_topic(&request.topic) => {
                    if frames.send(error_frame(correlation_id, &error)).await.is_err() {
                        break;
                    }
                }
                Ok(request) => {
                    let context = Arc::clone(&context);
                    let frames = frames.clone();
                    streams.push(tokio::spawn(async move {
                        if let Err(error) = stream(&context, request, correlation_id, &frames).await {
                            let _ = frames.send(error_frame(correlation_id, &error)).await;
                        }
                    }));
                }
                Err(error) => {
                    let _ = frames.send(error_frame(correlation_id, &bad_frame(error.to_string()))).await;
                }
            }
            continue;
        }
        if kind == ApiKind::Produce {
            let bytes = frame.payload.len();
            let (context, session) = (Arc::clone(&context), session.clone());
            // A request that does not decode fails in `handle`, touching
            // no partition: it waits for nothing.
            let partition = frame.control::<ProduceRequest>().ok().map(|request| (request.topic, request.partition));
            let (before, done) = produces.enter(partition);
            // A task of its own: an append runs to its end even when the
            // client goes away meanwhile (dropped halfway, a local log's
            // append would leave the partition to recovery).
            let append = tokio::spawn(async move {
                before.await;
                let answer = handle(&context, &session, kind, frame)
                    .await
                    .unwrap_or_else(|error| error_frame(correlation_id, &error));
                drop(done);
                answer
            });
            produces.push(bytes, async move {
                append.await.unwrap_or_else(|error| {
                    let reason = format!("the append failed inside the server: {error}");
                    error_frame(correlation_id, &ServerError::new(ErrorCode::Storage, reason))
                })
            });
            continue;
        }
        // Other requests are answered in order, after the appends before
        // them: what a client sent earlier is done when it gets this answer.
        while let Some(response) = produces.next().await {
            if frames.send(response).await.is_err() {
                break 'requests;
            }
        }
        let response =
            handle(&context, &session, kind, frame).await.unwrap_or_else(|error| error_frame(correlation_id, &error));
        if frames.send(response).await.is_err() {
            break;
        }
    }
    for stream in streams {
        stream.abort();
    }
    drop(frames);
    if !writer_task.is_finished() {
        let _ = writer_task.await;
    }
}

/// A produce request's answer, with the bytes of its batch.
type ProduceAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = (Frame, usize)> + Send>>;

/// A connection's produce requests being carried out, answered as they
/// end, and the bytes of their batches.
#[derive(Default)]
struct InFlightProduces {
    answers: futures::stream::FuturesUnordered<ProduceAnswer>,
    bytes: usize,
    /// For each partition with an append in flight, the latest one's end:
    /// the next append to that partition waits for it.
    latest_appends: std::collections::HashMap<(String, u32), AppendEnd>,
}

/// Closes when its append ends (its sender is dropped, also if the task
/// panics): it never carries a value.
type AppendEnd = tokio::sync::watch::Receiver<()>;

impl InFlightProduces {
    /// Enters an append to `partition` in its order: returns what it must
    /// wait for before it starts (the append to the same partition before
    /// it, if one is in flight), and what it drops when it ends.
    fn enter(
        &mut self,
        partition: Option<(String, u32)>,
    ) -> (impl std::future::Future<Output = ()> + Send + 'static, tokio::sync::watch::Sender<()>) {
        let (done, end) = tokio::sync::watch::channel(());
        let before = partition.and_then(|partition| self.latest_appends.insert(partition, end));
        // Ended appends are forgotten once they could crowd the map.
        if self.latest_appends.len() > MAX_PRODUCES_IN_FLIGHT {
            self.latest_appends.retain(|_, end| end.has_changed().is_ok());
        }
        let before = async move {
            if let Some(mut before) = before {
                // Never sent to: this returns once the sender is gone.
                let _ = before.changed().await;
            }
        };
        (before, done)
    }

    fn push(&mut self, bytes: usize, answer: impl std::future::Future<Output = Frame> + Send + 'static) {
        self.bytes += bytes;
        self.answers.push(Box::pin(async move { (answer.await, bytes) }));
    }

    fn len(&self) -> usize {
        self.answers.len()
    }

    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The answer of an append that is done; `None` when none is in
    /// flight. Cancel-safe: an answer is only taken when it is returned.
    async fn next(&mut self) -> Option<Frame> {
        let (answer, bytes) = self.answers.next().await?;
        self.bytes -= bytes;
        Some(answer)
    }
}

/// Counts a connection as open until dropped.
struct CountedConnection(Arc<ServerContext>);

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// SmartModule memory set aside for one stream's chain: every stage may
/// grow to the per-module memory cap, so that much is reserved from the
/// server's total while the stream runs.
struct MemoryReservation {
    context: Arc<ServerContext>,
    bytes: u64,
}

impl MemoryReservation {
    fn take(context: &Arc<ServerContext>, stages: usize) -> Result<MemoryReservation, ServerError> {
        let bytes = context.config.limits.memory_bytes.saturating_mul(stages as u64);
        let total = context.config.connection_limits.smartmodule_memory_total;
        let reserved = context.smartmodule_memory_reserved.fetch_add(bytes, Ordering::Relaxed);
        let reservation = MemoryReservation { context: Arc::clone(context), bytes };
        if reserved.saturating_add(bytes) > total {
            return Err(limit_reached(format!(
                "the server's SmartModules may use {total} bytes of memory in all, and {reserved} are reserved by running streams; this stream's {stages} module(s) need {bytes} more. Try again later, or raise --smartmodule-memory-total"
            )));
        }
        Ok(reservation)
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.context.smartmodule_memory_reserved.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn respond<T: serde::Serialize>(kind: ApiKind, correlation_id: u32, control: &T, payload: Vec<u8>) -> Frame {
    Frame::new(kind as u16 | RESPONSE_BIT, correlation_id, control, payload)
}

fn decode<T: for<'de> serde::Deserialize<'de>>(frame: &Frame) -> Result<T, ServerError> {
    frame.control().map_err(|e| bad_frame(e.to_string()))
}

/// Requests only an admin may make: they change what everyone sees.
fn needs_admin(kind: ApiKind) -> bool {
    matches!(
        kind,
        ApiKind::CreateTopic
            | ApiKind::DeleteTopic
            | ApiKind::CreateSmartModule
            | ApiKind::DeleteSmartModule
            | ApiKind::CreateConnector
            | ApiKind::ListConnectors
            | ApiKind::DeleteConnector
            | ApiKind::ConnectorLogs
            | ApiKind::DeleteConsumer
    )
}

async fn handle(context: &ServerContext, session: &Session, kind: ApiKind, frame: Frame) -> Result<Frame, ServerError> {
    let id = frame.correlation_id;
    session.principal()?;
    if needs_admin(kind) {
        session.require_admin(kind)?;
    }
    match kind {
        ApiKind::CreateTopic => {
            let request: CreateTopicRequest = decode(&frame)?;
            let spec = TopicSpec {
                name: request.name,
                partitions: request.partitions,
                replication: request.replication,
                retention: request.retention,
            };
            context.storage.create_topic(spec).await?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::DeleteTopic => {
            let request: NameRequest = decode(&frame)?;
            context.storage.delete_topic(&request.name).await?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::ListTopics => {
            decode::<Empty>(&frame)?;
            let mut topics = context.storage.list_topics().await?;
            topics.retain(|topic| session.may_see(&topic.name));
            Ok(respond(kind, id, &topics, Vec::new()))
        }
        ApiKind::Produce => {
            let request: ProduceRequest = decode(&frame)?;
            session.require_topic(&request.topic)?;
            let partition = context.storage.partition(&request.topic, request.partition).await?;
            let batch = Batch::from_bytes(frame.payload)
                .map_err(|e| ServerError::new(ErrorCode::InvalidBatch, format!("invalid batch: {e}")))?;
            let record_count = batch.record_count();
            let base_offset = partition.append(batch, request.producer).await?;
            Ok(respond(kind, id, &ProduceResponse { base_offset, record_count }, Vec::new()))
        }
        // Registering compiles the module: blocking work.
        ApiKind::CreateSmartModule => {
            let request: CreateSmartModuleRequest = decode(&frame)?;
            let info = context.registry.create(&request.name, frame.payload).await?;
            Ok(respond(kind, id, &info, Vec::new()))
        }
        ApiKind::ListSmartModules => {
            decode::<Empty>(&frame)?;
            Ok(respond(kind, id, &context.registry.list().await?, Vec::new()))
        }
        ApiKind::DeleteSmartModule => {
            let request: NameRequest = decode(&frame)?;
            context.registry.delete(&request.name).await?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::GetSmartModule => {
            let request: NameRequest = decode(&frame)?;
            let (module, wasm) = context.registry.get(&request.name).await?;
            Ok(respond(kind, id, &crate::registry::info(&request.name, &module), wasm))
        }
        ApiKind::CreateConnector => {
            let request: CreateConnectorRequest = decode(&frame)?;
            let info = context.connectors.create(request).await?;
            Ok(respond(kind, id, &info, Vec::new()))
        }
        ApiKind::ListConnectors => {
            decode::<Empty>(&frame)?;
            Ok(respond(kind, id, &context.connectors.list().await, Vec::new()))
        }
        ApiKind::DeleteConnector => {
            let request: NameRequest = decode(&frame)?;
            context.connectors.delete(&request.name).await?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::ConnectorLogs => {
            let request: ConnectorLogsRequest = decode(&frame)?;
            let (text, next_offset) = context.connectors.logs(&request.name, request.offset).await?;
            Ok(respond(kind, id, &ConnectorLogsResponse { next_offset }, text))
        }
        ApiKind::CommitOffset => {
            let request: CommitOffsetRequest = decode(&frame)?;
            session.require_topic(&request.topic)?;
            check_consumer(&request.consumer)?;
            let partition = context.storage.partition(&request.topic, request.partition).await?;
            let end = partition.next_offset();
            if request.offset < 0 || request.offset > end {
                return Err(ServerError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "cannot commit offset {} for consumer {:?}: partition {} of topic {:?} holds offsets up to {end}",
                        request.offset, request.consumer, request.partition, request.topic
                    ),
                ));
            }
            context.storage.commit_offset(&request.consumer, &request.topic, request.partition, request.offset).await?;
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::FetchOffset => {
            let request: FetchOffsetRequest = decode(&frame)?;
            session.require_topic(&request.topic)?;
            check_consumer(&request.consumer)?;
            context.storage.partition(&request.topic, request.partition).await?;
            let offset = context.storage.fetch_offset(&request.consumer, &request.topic, request.partition).await?;
            Ok(respond(kind, id, &FetchOffsetResponse { offset }, Vec::new()))
        }
        ApiKind::ListConsumers => {
            decode::<Empty>(&frame)?;
            let mut offsets = context.storage.list_offsets().await?;
            offsets.retain(|offset| session.may_see(&offset.topic));
            Ok(respond(kind, id, &offsets, Vec::new()))
        }
        ApiKind::DeleteConsumer => {
            let request: DeleteConsumerRequest = decode(&frame)?;
            check_consumer(&request.consumer)?;
            let forgotten = context.storage.delete_offsets(Some(&request.consumer), request.topic.as_deref()).await?;
            if forgotten == 0 {
                let place = request.topic.map_or_else(String::new, |topic| format!(" in topic {topic:?}"));
                return Err(ServerError::new(
                    ErrorCode::ConsumerNotFound,
                    format!("consumer {:?} has no stored offsets{place}; see `fluvio consumer list`", request.consumer),
                ));
            }
            Ok(respond(kind, id, &Empty, Vec::new()))
        }
        ApiKind::StreamFetch | ApiKind::Authenticate | ApiKind::Error => Err(bad_frame("unexpected request kind")),
    }
}

fn check_consumer(id: &str) -> Result<(), ServerError> {
    crate::storage::validate_consumer_id(id).map_err(|e| ServerError::new(ErrorCode::InvalidRequest, e.to_string()))
}

/// Starts the chain a stream asked for on a worker thread: predefined
/// modules come from the registry, ad hoc ones are compiled there (or found
/// in the engine's caches).
async fn start_chain(context: &ServerContext, request: &StreamFetchRequest) -> Result<ChainWorker, ServerError> {
    let registered: Vec<String> = request
        .chain
        .iter()
        .filter_map(|invocation| match &invocation.wasm {
            SmartModuleInvocationWasm::Predefined(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    context.registry.prepare(registered.iter().map(String::as_str)).await?;
    let registry = Arc::clone(&context.registry);
    let chain = ChainBuilder::new(&context.engine)
        .invocations(request.chain.iter().cloned())
        .on_error(request.policy)
        .resolver(move |name| {
            registry.module(name).ok_or_else(|| EngineError::UnknownModule { name: name.to_string() })
        })
        .spawn()
        .await?;
    Ok(chain)
}

/// Feeds each module that asked for a look-back the stored records it
/// wants (those before `end`, where the stream's reading may start), before
/// the stream's first batch. Records are the partition's own, not the
/// output of earlier modules.
async fn look_back(
    partition: &Arc<dyn crate::storage::Partition>,
    chain: &ChainWorker,
    request: &StreamFetchRequest,
    end: i64,
) -> Result<(), ServerError> {
    for (stage, invocation) in request.chain.iter().enumerate() {
        let Some(lookback) = invocation.params.lookback().copied() else { continue };
        let start = partition.start_offset();
        let from = match lookback.last {
            0 => start,
            last => (end - last.min(i64::MAX as u64) as i64).max(start),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let oldest = lookback.age.map(|age| now.saturating_sub(age.as_millis()) as i64);
        let mut reader = Arc::clone(partition).reader(from);
        let mut next = from;
        while next < end {
            let batches = reader.next(1 << 20).await?;
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                next = batch.next_offset();
                let batch = opened(batch)?;
                let mut kept = BatchBuilder::new(batch.base_offset().max(from), batch.base_timestamp());
                let base = batch.base_offset().max(from);
                for record in batch.records() {
                    let wanted = record.offset >= from
                        && record.offset < end
                        && oldest.is_none_or(|oldest| record.timestamp >= oldest);
                    if wanted {
                        let delta = (record.offset - base) as u32;
                        kept.push(delta, record.timestamp, record.key, record.value, &record.headers);
                    }
                }
                if !kept.is_empty() {
                    chain.look_back(stage, kept.finish()).await.map_err(running_chain_failed)?;
                }
            }
        }
    }
    Ok(())
}

/// A stored batch, checked whole and decompressed, for code that reads its
/// records (storage reads skip the checks a consumer makes itself).
fn opened(batch: Batch) -> Result<Batch, ServerError> {
    batch.verified().and_then(Batch::decompressed).map_err(|e| ServerError::new(ErrorCode::Storage, e.to_string()))
}

/// Streams a partition to the client, through the requested chain. Returns
/// quietly when the client goes away.
async fn stream(
    context: &Arc<ServerContext>,
    request: StreamFetchRequest,
    id: u32,
    frames: &Outgoing,
) -> Result<(), ServerError> {
    let max_chain = context.config.connection_limits.max_chain_length;
    if request.chain.len() > max_chain {
        return Err(limit_reached(format!(
            "a chain of {} SmartModules is longer than this server's limit of {max_chain}; shorten it, or raise --max-chain-length",
            request.chain.len()
        )));
    }
    let _memory =
        if request.chain.is_empty() { None } else { Some(MemoryReservation::take(context, request.chain.len())?) };
    let partition = context.storage.partition(&request.topic, request.partition).await?;
    // Where to start is decided as the request arrives: "the end" is the
    // end when the consumer asked, not once its modules have compiled.
    let start = partition.start_offset();
    let end = partition.next_offset();
    let mut offset = match request.offset {
        OffsetSpec::Beginning => start,
        OffsetSpec::End => end,
        OffsetSpec::Absolute(offset) => offset.max(start),
        OffsetSpec::FromEnd(n) => (end - n.min(i64::MAX as u64) as i64).max(start),
        OffsetSpec::FromBeginning(n) => start.saturating_add(n.min(i64::MAX as u64) as i64).min(end),
    };
    let chain = if request.chain.is_empty() { None } else { Some(start_chain(context, &request).await?) };
    if let Some(chain) = &chain {
        look_back(&partition, chain, &request, end).await?;
    }
    let max_bytes = (request.max_bytes as u64).clamp(1, 16 << 20);
    let mut watermark = partition.subscribe();
    let mut reader = partition.reader(offset);
    // `false` once the client is gone: the stream then just ends.
    let ahead = Arc::new(Semaphore::new(STREAM_AHEAD_BYTES));
    let ahead = &ahead;
    let send_with = |event: StreamEvent, payload: Vec<u8>, tail: Vec<Tail>| async move {
        let frame = Outbound { frame: respond(ApiKind::StreamFetch, id, &event, payload), tail };
        frames.send_within(frame, Some(ahead)).await.is_ok()
    };
    let send = |event: StreamEvent, payload: Vec<u8>| send_with(event, payload, Vec::new());
    if !send(StreamEvent::Started { offset }, Vec::new()).await {
        return Ok(());
    }
    loop {
        if chain.is_none() {
            // Stored batches as they lie in their file, several per frame.
            if let Some(run) = reader.next_run(max_bytes.min(RUN_BYTES)).await? {
                offset = run.next_offset;
                if !send_with(StreamEvent::Batch { next_offset: offset }, Vec::new(), vec![Tail::Stored(run)]).await {
                    return Ok(());
                }
                continue;
            }
        }
        let batches = reader.next(max_bytes).await?;
        if batches.is_empty() {
            if *watermark.borrow() > offset {
                // The end moved, but the records are not readable here
                // yet (a replica behind its leader): ask again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            if !request.continuous {
                send(StreamEvent::End { next_offset: offset }, Vec::new()).await;
                return Ok(());
            }
            tokio::select! {
                changed = watermark.wait_for(|next| *next > offset) => {
                    if changed.is_err() { return Ok(()); }
                }
                _ = frames.closed() => return Ok(()),
            }
            continue;
        }
        let Some(chain) = chain.as_ref() else {
            // One frame for the whole read. A stored batch goes out as it
            // is read, unless the stream starts inside it.
            let mut tail = Vec::with_capacity(batches.len());
            for batch in batches {
                let batch = if batch.base_offset() < offset { opened(batch)?.trimmed_to(offset) } else { batch };
                offset = batch.next_offset();
                if !batch.is_empty() {
                    tail.push(Tail::Memory(batch.into_bytes()));
                }
            }
            if !tail.is_empty() && !send_with(StreamEvent::Batch { next_offset: offset }, Vec::new(), tail).await {
                return Ok(());
            }
            continue;
        };
        for batch in batches {
            // Modules see every record: the batch is checked whole first.
            let batch = opened(batch)?.trimmed_to(offset);
            offset = batch.next_offset();
            let result = chain.process(batch).await.map_err(running_chain_failed)?;
            for letter in result.dead_letters {
                let (letter, record) = letter.into_control_and_payload();
                if !send(StreamEvent::DeadLetter(letter), record).await {
                    return Ok(());
                }
            }
            let (output, failure) = (result.batch, result.failure);
            if !output.is_empty() && !send(StreamEvent::Batch { next_offset: offset }, output.into_bytes()).await {
                return Ok(());
            }
            if let Some(failure) = failure {
                let (failure, record) = failure.into_control_and_payload();
                send(StreamEvent::Failed(failure), record).await;
                return Ok(());
            }
        }
    }
}
