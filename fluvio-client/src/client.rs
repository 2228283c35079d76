//! Connections to a server, and the admin API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use fluvio_protocol::messages::{
    AuthenticateRequest, AuthenticateResponse, CommitOffsetRequest, ConnectorLogsRequest, ConnectorLogsResponse,
    CreateConnectorRequest, CreateSmartModuleRequest, CreateTopicRequest, DeleteConsumerRequest, Empty,
    FetchOffsetRequest, FetchOffsetResponse, NameRequest,
};
use fluvio_protocol::{
    ApiKind, ConnectorInfo, ConsumerOffset, DEFAULT_ADDR, DEFAULT_MAX_FRAME_BYTES, ErrorResponse, Frame, RESPONSE_BIT,
    RetentionSpec, SmartModuleInfo, TopicInfo,
};

use crate::FluvioError;
use crate::config::RetryPolicy;
use crate::security::{Security, TlsPolicy};

/// How long opening a connection (TCP, then TLS) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type Pending = Arc<Mutex<PendingRequests>>;

/// Requests waiting for responses, and whether the connection has closed:
/// both under one lock, so that no request is registered after the reader
/// has given up (it would wait for ever).
#[derive(Default)]
struct PendingRequests {
    senders: HashMap<u32, mpsc::Sender<Result<Frame, FluvioError>>>,
    closed: Option<FluvioError>,
}

/// One TCP connection with requests multiplexed by correlation id.
pub(crate) struct Connection {
    addr: String,
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Pending,
    next_id: AtomicU32,
    bytes_received: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    pub(crate) async fn open(addr: &str, security: &Security) -> Result<Connection, FluvioError> {
        let connect_error = |reason: String| FluvioError::Connect { addr: addr.to_string(), reason };
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("timed out after {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = socket.set_nodelay(true);
        let connection = match security.tls_for(addr)? {
            None => {
                let (reader, writer) = socket.into_split();
                Connection::start(addr, reader, Box::new(writer))
            }
            Some((connector, name)) => {
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, socket))
                    .await
                    .map_err(|_| FluvioError::Tls {
                        addr: addr.to_string(),
                        reason: format!(
                            "no TLS handshake in {} s; is the server serving TLS?",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    })?
                    .map_err(|e| FluvioError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
                let (reader, writer) = tokio::io::split(tls);
                Connection::start(addr, reader, Box::new(writer))
            }
        };
        if let Some(token) = &security.token {
            let response = connection
                .request(ApiKind::Authenticate, &AuthenticateRequest { token: token.clone() }, Vec::new())
                .await?;
            let principal: AuthenticateResponse = control(&response)?;
            tracing::debug!(%addr, principal = %principal.principal, role = %principal.role, "authenticated");
        }
        Ok(connection)
    }

    /// Starts the task that reads responses from `reader`.
    fn start<R>(addr: &str, reader: R, writer: Box<dyn AsyncWrite + Send + Unpin>) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        // Small reads (a frame's prefix and header) come from the buffer.
        let mut reader = tokio::io::BufReader::with_capacity(64 << 10, reader);
        let pending: Pending = Arc::default();
        let bytes_received = Arc::new(AtomicU64::new(0));
        let reader = {
            let pending = Arc::clone(&pending);
            let bytes_received = Arc::clone(&bytes_received);
            let addr = addr.to_string();
            tokio::spawn(async move {
                let lost = |reason: String| FluvioError::ConnectionLost { addr: addr.clone(), reason };
                let reason = loop {
                    match Frame::read(&mut reader, DEFAULT_MAX_FRAME_BYTES.max(256 << 20)).await {
                        Ok(frame) => {
                            bytes_received.fetch_add(frame.encoded_len() as u64, Ordering::Relaxed);
                            if frame.correlation_id == 0 && frame.kind == ApiKind::Error as u16 | RESPONSE_BIT {
                                // The server's last word before closing: what
                                // it refuses here it refuses on a retry too.
                                break match frame.control::<ErrorResponse>() {
                                    Ok(error) => FluvioError::Server { code: error.code, message: error.message },
                                    Err(_) => lost("the server closed the connection".into()),
                                };
                            }
                            let sender =
                                pending.lock().expect("pending lock").senders.get(&frame.correlation_id).cloned();
                            if let Some(sender) = sender {
                                // A full queue stops this reader, and with it
                                // the socket: the server then waits (TCP's own
                                // flow control) instead of the client holding a
                                // whole partition in memory.
                                let _ = sender.send(Ok(frame)).await;
                            }
                        }
                        // A TLS alert (the server refused this client's
                        // certificate, which TLS 1.3 says after the
                        // handshake) is refused again on a retry.
                        Err(fluvio_protocol::FrameError::Io(error))
                            if error.get_ref().is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>()) =>
                        {
                            break FluvioError::Tls { addr: addr.clone(), reason: error.to_string() };
                        }
                        Err(error) => break lost(error.to_string()),
                    }
                };
                let mut pending = pending.lock().expect("pending lock");
                for (_, sender) in pending.senders.drain() {
                    // A full queue gets no error; its receiver sees the
                    // channel close, which it reads as the same loss.
                    let _ = sender.try_send(Err(reason.clone()));
                }
                // A server that closes an idle connection, or goes away,
                // fails the requests sent afterwards at once.
                pending.closed = Some(reason);
            })
        };
        Connection {
            addr: addr.to_string(),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU32::new(1),
            bytes_received,
            reader,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Sends a request and returns the channel its responses arrive on.
    pub(crate) async fn send<T: serde::Serialize>(
        &self,
        kind: ApiKind,
        control: &T,
        payload: Vec<u8>,
    ) -> Result<(u32, mpsc::Receiver<Result<Frame, FluvioError>>), FluvioError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        let (sender, receiver) = mpsc::channel(RESPONSES_AHEAD);
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if let Some(reason) = &pending.closed {
                return Err(reason.clone());
            }
            pending.senders.insert(id, sender);
        }
        let frame = Frame::new(kind as u16, id, control, payload);
        let mut writer = self.writer.lock().await;
        if let Err(error) = frame.write(&mut *writer).await {
            self.pending.lock().expect("pending lock").senders.remove(&id);
            return Err(FluvioError::ConnectionLost { addr: self.addr.clone(), reason: error.to_string() });
        }
        drop(writer);
        fluvio_protocol::buffers::give(frame.payload);
        Ok((id, receiver))
    }

    /// Stops routing responses for `id`.
    pub(crate) fn forget(&self, id: u32) {
        self.pending.lock().expect("pending lock").senders.remove(&id);
    }

    /// Sends a request and waits for its one response.
    pub(crate) async fn request<T: serde::Serialize>(
        &self,
        kind: ApiKind,
        control: &T,
        payload: Vec<u8>,
    ) -> Result<Frame, FluvioError> {
        let (id, mut responses) = self.send(kind, control, payload).await?;
        let response = responses.recv().await;
        self.forget(id);
        let frame = response
            .unwrap_or_else(|| Err(FluvioError::ConnectionLost { addr: self.addr.clone(), reason: "closed".into() }))?;
        check(frame)
    }
}

/// Opens a connection to the first address that answers, trying them in
/// turn from `start`.
async fn open_any(addrs: &[String], start: usize, security: &Security) -> Result<(Connection, usize), FluvioError> {
    let mut last_error = None;
    for step in 0..addrs.len() {
        let index = (start + step) % addrs.len();
        match Connection::open(&addrs[index], security).await {
            Ok(connection) => return Ok((connection, index)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.expect("at least one address"))
}

/// Turns an error frame into an error.
pub(crate) fn check(frame: Frame) -> Result<Frame, FluvioError> {
    if frame.kind == ApiKind::Error as u16 | RESPONSE_BIT {
        let error: ErrorResponse = frame.control()?;
        return Err(FluvioError::Server { code: error.code, message: error.message });
    }
    Ok(frame)
}

pub(crate) fn control<T: for<'de> serde::Deserialize<'de>>(frame: &Frame) -> Result<T, FluvioError> {
    Ok(frame.control()?)
}

/// Responses to one request (a stream's frames, for a consumer) read from
/// the socket but not yet taken: about 2 MiB of stored batches.
const RESPONSES_AHEAD: usize = 32;

/// Where a client finds its cluster: one address (`host:port`), or several
/// comma-separated (servers sharing a JetStream cluster), with the TLS and
/// token to use there. In a profile file it is a `[cluster.NAME]` table.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FluvioClusterConfig {
    /// The address or addresses.
    #[serde(alias = "addr")]
    pub endpoint: String,
    /// TLS, and how the server's certificate is checked.
    #[serde(default)]
    pub tls: TlsPolicy,
    /// The token presented to a server that requires credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for FluvioClusterConfig {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioClusterConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The name Fluvio code uses for [`FluvioClusterConfig`].
pub type FluvioConfig = FluvioClusterConfig;

impl FluvioClusterConfig {
    /// A config for `addr`: plain TCP, no token.
    pub fn new(addr: impl Into<String>) -> FluvioClusterConfig {
        FluvioClusterConfig { endpoint: addr.into(), tls: TlsPolicy::Disabled, token: None }
    }

    /// The cluster this process is configured for, as [`Fluvio::connect`]
    /// uses it: `$FLUVIO_ADDR`, else the current profile of
    /// `~/.fluvio/config` (or `$FLUVIO_PROFILE`), else the local cluster;
    /// `$FLUVIO_TOKEN` and `$FLUVIO_TLS_*` over the profile's credentials.
    pub fn load() -> Result<FluvioClusterConfig, FluvioError> {
        crate::profile::configured_cluster()
    }

    /// The same config using TLS as `tls` says.
    pub fn with_tls(mut self, tls: impl Into<TlsPolicy>) -> FluvioClusterConfig {
        self.tls = tls.into();
        self
    }

    /// The same config presenting `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> FluvioClusterConfig {
        self.token = Some(token.into());
        self
    }
}

/// The home of the `fluvio` command: `$FLUVIO_HOME`, or `~/.fluvio`.
pub fn fluvio_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("FLUVIO_HOME") {
        return home.into();
    }
    let user_home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    user_home.join(".fluvio")
}

/// The address a client uses when given none: `$FLUVIO_ADDR`, else the
/// address of the local cluster `fluvio cluster start` runs (recorded in
/// `server.addr` under [`fluvio_home`]), else `127.0.0.1:9003`.
pub fn default_addr() -> String {
    if let Ok(addr) = std::env::var("FLUVIO_ADDR")
        && !addr.trim().is_empty()
    {
        return addr;
    }
    local_addr()
}

/// The local cluster's address: recorded by `fluvio cluster start`, else
/// the default.
pub(crate) fn local_addr() -> String {
    if let Ok(addr) = std::fs::read_to_string(fluvio_home().join("server.addr")) {
        let addr = addr.trim();
        if !addr.is_empty() {
            return addr.to_string();
        }
    }
    DEFAULT_ADDR.to_string()
}

/// A client of a cluster: admin requests, producers and consumers.
///
/// It talks to one server at a time. Given several addresses
/// (`"h1:9003,h2:9003"`, servers sharing a JetStream cluster), it moves to
/// the next when its server goes away: requests are sent again there,
/// producers resend unacknowledged batches (stored once, by their producer
/// stamp) and consumer streams resume at the first offset they have not
/// delivered.
///
/// ```no_run
/// # async fn run() -> Result<(), fluvio_client::FluvioError> {
/// use fluvio_client::{Fluvio, RecordKey};
/// let fluvio = Fluvio::connect_to("127.0.0.1:9003").await?;
/// fluvio.create_topic("greetings", 1).await?;
/// let producer = fluvio.topic_producer("greetings").await?;
/// producer.send(RecordKey::NULL, "hello").await?;
/// producer.flush().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Fluvio {
    shared: Arc<Shared>,
}

struct Shared {
    addrs: Vec<String>,
    security: Security,
    /// The connection in use and the index of its address.
    current: Mutex<(Arc<Connection>, usize)>,
    /// Serializes moving to another server, so that concurrent failures
    /// move once.
    failover: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Fluvio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fluvio").field("addr", &self.addr()).field("addrs", &self.shared.addrs).finish()
    }
}

/// How long a client keeps trying the cluster's servers before giving up
/// on a request, a batch or a stream.
pub(crate) const FAILOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether an error means "try again, maybe on another server": the
/// connection broke, or the server's storage was briefly unavailable.
pub(crate) fn is_retryable(error: &FluvioError) -> bool {
    matches!(error, FluvioError::ConnectionLost { .. } | FluvioError::Connect { .. })
        || error.code() == Some(fluvio_protocol::ErrorCode::Unavailable)
}

impl Fluvio {
    /// Connects to the cluster this machine uses, as the `fluvio` command
    /// does: `$FLUVIO_ADDR`, else the local cluster started by `fluvio
    /// cluster start`, else `127.0.0.1:9003` (see [`default_addr`]).
    pub async fn connect() -> Result<Fluvio, FluvioError> {
        Fluvio::connect_with_config(&FluvioClusterConfig::load()?).await
    }

    /// Connects to the cluster a config names, with its TLS and token.
    pub async fn connect_with_config(config: &FluvioClusterConfig) -> Result<Fluvio, FluvioError> {
        let addr = &config.endpoint;
        let addrs: Vec<String> = addr.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect();
        if addrs.is_empty() {
            return Err(FluvioError::InvalidRequest(format!("no server address in {addr:?}")));
        }
        let security = Security::new(&config.tls, config.token.clone())?;
        let (connection, index) = open_any(&addrs, 0, &security).await?;
        Ok(Fluvio {
            shared: Arc::new(Shared {
                addrs,
                security,
                current: Mutex::new((Arc::new(connection), index)),
                failover: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Connects to the server at `addr` (`host:port`), or to the first of
    /// several comma-separated addresses that answers. TLS and token come
    /// from the environment (`FLUVIO_TOKEN`, `FLUVIO_TLS_*`), and from the
    /// current profile when it names exactly this address.
    pub async fn connect_to(addr: &str) -> Result<Fluvio, FluvioError> {
        Fluvio::connect_with_config(&crate::profile::cluster_at(addr)).await
    }

    /// The same as [`connect`](Self::connect).
    pub async fn connect_default() -> Result<Fluvio, FluvioError> {
        Fluvio::connect().await
    }

    /// The address of the server in use.
    pub fn addr(&self) -> String {
        self.connection().addr().to_string()
    }

    /// Every address this client may use.
    pub fn addrs(&self) -> &[String] {
        &self.shared.addrs
    }

    /// Bytes received from the server on this client's admin and producer
    /// connection (consumers use connections of their own).
    pub fn bytes_received(&self) -> u64 {
        self.connection().bytes_received()
    }

    pub(crate) fn connection(&self) -> Arc<Connection> {
        Arc::clone(&self.shared.current.lock().expect("connection lock").0)
    }

    /// Opens a new connection (for a consumer stream of its own): to the
    /// server in use if it answers, else to the next one that does; after
    /// a failure on `after`, to the servers after it first.
    pub(crate) async fn open_connection_after(&self, after: Option<&str>) -> Result<Connection, FluvioError> {
        let start = match after.and_then(|failed| self.shared.addrs.iter().position(|a| a == failed)) {
            Some(index) => index + 1,
            None => self.shared.current.lock().expect("connection lock").1,
        };
        Ok(open_any(&self.shared.addrs, start, &self.shared.security).await?.0)
    }

    /// Moves to another server after `failed` broke: the next address that
    /// answers (the same one too, if it came back). A no-op when another
    /// task has already moved.
    pub(crate) async fn fail_over(&self, failed: &Arc<Connection>) -> Result<(), FluvioError> {
        let _moving = self.shared.failover.lock().await;
        let index = {
            let current = self.shared.current.lock().expect("connection lock");
            if !Arc::ptr_eq(&current.0, failed) {
                return Ok(());
            }
            current.1
        };
        let (connection, index) = open_any(&self.shared.addrs, index + 1, &self.shared.security).await?;
        tracing::info!(addr = %connection.addr(), "moved to another server");
        *self.shared.current.lock().expect("connection lock") = (Arc::new(connection), index);
        Ok(())
    }

    /// Sends a request; when the server goes away (or its storage is
    /// briefly unavailable), sends it again, on another server if there is
    /// one, for up to [`FAILOVER_TIMEOUT`].
    pub(crate) async fn request<T: serde::Serialize>(
        &self,
        kind: ApiKind,
        control: &T,
        payload: Vec<u8>,
    ) -> Result<Frame, FluvioError> {
        self.request_with(kind, control, payload, &RetryPolicy::default()).await
    }

    /// Sends a request, and sends it again as `policy` says when the server
    /// goes away or its storage is briefly unavailable.
    pub(crate) async fn request_with<T: serde::Serialize>(
        &self,
        kind: ApiKind,
        control: &T,
        payload: Vec<u8>,
        policy: &RetryPolicy,
    ) -> Result<Frame, FluvioError> {
        let deadline = tokio::time::Instant::now() + policy.timeout;
        let mut delay = policy.initial_delay;
        let mut retries = 0;
        loop {
            let connection = self.connection();
            let error = match connection.request(kind, control, payload.clone()).await {
                Ok(frame) => return Ok(frame),
                Err(error) if is_retryable(&error) => error,
                Err(error) => return Err(error),
            };
            if retries >= policy.max_retries || tokio::time::Instant::now() + delay > deadline {
                return Err(error);
            }
            retries += 1;
            tracing::debug!(%error, "request failed; retrying");
            let lost = matches!(error, FluvioError::ConnectionLost { .. });
            if lost {
                let _ = self.fail_over(&connection).await;
            }
            // The first move to another server is immediate; a connection
            // lost again and again (a server that closes every connection)
            // waits like any other retry instead of spinning.
            if !lost || retries > 1 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_delay);
            }
        }
    }

    /// Creates a topic with `partitions` partitions, one copy and no
    /// retention limit.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), FluvioError> {
        self.create_topic_with(name, partitions, RetentionSpec::default()).await
    }

    /// Creates a topic whose partitions are each kept in `replication`
    /// copies (a JetStream cluster; the local log keeps one).
    pub async fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        replication: u32,
        retention: RetentionSpec,
    ) -> Result<(), FluvioError> {
        let request = CreateTopicRequest { name: name.to_string(), partitions, replication, retention };
        self.request(ApiKind::CreateTopic, &request, Vec::new()).await?;
        Ok(())
    }

    /// Creates a topic with retention settings.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        retention: RetentionSpec,
    ) -> Result<(), FluvioError> {
        self.create_replicated_topic(name, partitions, 1, retention).await
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), FluvioError> {
        self.request(ApiKind::DeleteTopic, &NameRequest { name: name.to_string() }, Vec::new()).await?;
        Ok(())
    }

    /// Lists topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, FluvioError> {
        let frame = self.request(ApiKind::ListTopics, &Empty, Vec::new()).await?;
        control(&frame)
    }

    /// One topic's settings and partitions, or `TopicNotFound`.
    pub async fn topic_info(&self, topic: &str) -> Result<TopicInfo, FluvioError> {
        let topics = self.list_topics().await?;
        topics.into_iter().find(|t| t.name == topic).ok_or_else(|| FluvioError::Server {
            code: fluvio_protocol::ErrorCode::TopicNotFound,
            message: if self.shared.security.presents_credentials() {
                format!("topic {topic:?} not found, or not among the topics your credentials may use")
            } else {
                format!("topic {topic:?} not found; create it with `fluvio topic create {topic}`")
            },
        })
    }

    /// Stores, on the server, the offset `consumer` reads next in a
    /// partition: a stream with that consumer id resumes there.
    pub async fn commit_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), FluvioError> {
        let request =
            CommitOffsetRequest { consumer: consumer.to_string(), topic: topic.to_string(), partition, offset };
        self.request(ApiKind::CommitOffset, &request, Vec::new()).await?;
        Ok(())
    }

    /// The offset `consumer` committed last in a partition, if any.
    pub async fn fetch_offset(&self, consumer: &str, topic: &str, partition: u32) -> Result<Option<i64>, FluvioError> {
        let request = FetchOffsetRequest { consumer: consumer.to_string(), topic: topic.to_string(), partition };
        let frame = self.request(ApiKind::FetchOffset, &request, Vec::new()).await?;
        Ok(control::<FetchOffsetResponse>(&frame)?.offset)
    }

    /// Every consumer's stored offsets.
    pub async fn list_consumers(&self) -> Result<Vec<ConsumerOffset>, FluvioError> {
        let frame = self.request(ApiKind::ListConsumers, &Empty, Vec::new()).await?;
        control(&frame)
    }

    /// Forgets a consumer's stored offsets, in one topic or in all.
    pub async fn delete_consumer(&self, consumer: &str, topic: Option<&str>) -> Result<(), FluvioError> {
        let request = DeleteConsumerRequest { consumer: consumer.to_string(), topic: topic.map(str::to_string) };
        self.request(ApiKind::DeleteConsumer, &request, Vec::new()).await?;
        Ok(())
    }

    /// Registers a SmartModule; the server validates it first.
    pub async fn create_smartmodule(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo, FluvioError> {
        let frame = self
            .request(ApiKind::CreateSmartModule, &CreateSmartModuleRequest { name: name.to_string() }, wasm)
            .await?;
        control(&frame)
    }

    /// Lists registered SmartModules.
    pub async fn list_smartmodules(&self) -> Result<Vec<SmartModuleInfo>, FluvioError> {
        let frame = self.request(ApiKind::ListSmartModules, &Empty, Vec::new()).await?;
        control(&frame)
    }

    /// Deletes a registered SmartModule.
    pub async fn delete_smartmodule(&self, name: &str) -> Result<(), FluvioError> {
        self.request(ApiKind::DeleteSmartModule, &NameRequest { name: name.to_string() }, Vec::new()).await?;
        Ok(())
    }

    /// Downloads a registered SmartModule's wasm.
    pub async fn get_smartmodule(&self, name: &str) -> Result<(SmartModuleInfo, Vec<u8>), FluvioError> {
        let frame = self.request(ApiKind::GetSmartModule, &NameRequest { name: name.to_string() }, Vec::new()).await?;
        Ok((control(&frame)?, frame.payload))
    }

    /// Hands a connector to the cluster, which checks its config, runs it
    /// as its own process and restarts it when it stops. `secrets` are the
    /// values of the secrets the config names.
    pub async fn create_connector(
        &self,
        config: &str,
        secrets: Vec<(String, String)>,
    ) -> Result<ConnectorInfo, FluvioError> {
        let request = CreateConnectorRequest { config: config.to_string(), secrets };
        let frame = self.request(ApiKind::CreateConnector, &request, Vec::new()).await?;
        control(&frame)
    }

    /// Lists the cluster's connectors and what each is doing.
    pub async fn list_connectors(&self) -> Result<Vec<ConnectorInfo>, FluvioError> {
        let frame = self.request(ApiKind::ListConnectors, &Empty, Vec::new()).await?;
        control(&frame)
    }

    /// Stops a connector and deletes it.
    pub async fn delete_connector(&self, name: &str) -> Result<(), FluvioError> {
        self.request(ApiKind::DeleteConnector, &NameRequest { name: name.to_string() }, Vec::new()).await?;
        Ok(())
    }

    /// Part of a connector's log from byte `offset`, and the offset to read
    /// from next (an empty text means nothing new yet).
    pub async fn connector_logs(&self, name: &str, offset: u64) -> Result<(Vec<u8>, u64), FluvioError> {
        let request = ConnectorLogsRequest { name: name.to_string(), offset };
        let frame = self.request(ApiKind::ConnectorLogs, &request, Vec::new()).await?;
        let response: ConnectorLogsResponse = control(&frame)?;
        Ok((frame.payload, response.next_offset))
    }
}
