//! The client of a cluster: which server is in use, moving to the next
//! when it goes away, and sending any request with retries. The transport
//! is [`crate::connection`]; the admin calls ([`crate::admin`]), producers
//! and consumers are built on [`Fluvio::send`] and the connections opened
//! here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fluvio_protocol::Request;
use fluvio_protocol::requests::{ProduceRequest, ProduceResponse, ServerInfoRequest, ServerInfoResponse};

use crate::FluvioError;
use crate::connection::{Connection, EncodedRequest, open_any, response};
use crate::profile::FluvioClusterConfig;
use crate::retry::RetryPolicy;
use crate::security::Security;

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
    /// The release of the server first connected to.
    platform_version: semver::Version,
}

impl std::fmt::Debug for Fluvio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fluvio").field("addr", &self.addr()).field("addrs", &self.shared.addrs).finish()
    }
}

/// How long a client keeps trying the cluster's servers before giving up
/// on a request, a batch or a stream.
pub(crate) const FAILOVER_TIMEOUT: std::time::Duration = fluvio_protocol::RETRY_HORIZON;

/// Whether an error means "try again, maybe on another server": the
/// connection broke, or the server's storage was briefly unavailable.
/// The release a server says it is.
async fn server_version(connection: &Connection) -> Result<semver::Version, FluvioError> {
    let frame = connection.request(EncodedRequest::new(ServerInfoRequest)).await?;
    let info: ServerInfoResponse = response(frame)?;
    semver::Version::parse(&info.version).map_err(|error| {
        FluvioError::Protocol(format!("the server's version {:?} is not a version: {error}", info.version))
    })
}

pub(crate) fn is_retryable(error: &FluvioError) -> bool {
    matches!(
        error,
        FluvioError::ConnectionLost { .. }
            | FluvioError::Connect { .. }
            | FluvioError::Producer(crate::ProducerError::Timeout(_))
    ) || error.code() == Some(fluvio_protocol::ErrorCode::Unavailable)
}

impl Fluvio {
    /// Connects to the cluster this machine uses, as the `fluvio` command
    /// does: `$FLUVIO_ADDR`, else the local cluster started by `fluvio
    /// cluster start`, else `127.0.0.1:9003` (see [`default_addr`](crate::default_addr)).
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
        let connection = Arc::new(connection);
        let platform_version = server_version(&connection).await?;
        Ok(Fluvio {
            shared: Arc::new(Shared {
                addrs,
                security,
                current: Mutex::new((connection, index)),
                failover: tokio::sync::Mutex::new(()),
                platform_version,
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

    /// Whether connections to the cluster use TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.shared.security.uses_tls()
    }

    /// The release of the server this client first connected to (Fluvio's
    /// `platform_version`).
    pub fn platform_version(&self) -> &semver::Version {
        &self.shared.platform_version
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

    /// Sends any request and waits for its answer. When the server goes
    /// away (or its storage is briefly unavailable) the request is sent
    /// again, on another server if there is one, for up to 30 seconds.
    ///
    /// Every admin call of this type is this call with its request type; a
    /// request kind with no method of its own is sent the same way.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), fluvio_client::FluvioError> {
    /// use fluvio_client::protocol::requests::ListTopicsRequest;
    /// let fluvio = fluvio_client::Fluvio::connect().await?;
    /// let listed = fluvio.send(ListTopicsRequest).await?;
    /// println!("{} topics", listed.topics.len());
    /// # Ok(()) }
    /// ```
    pub async fn send<R: Request>(&self, request: R) -> Result<R::Response, FluvioError> {
        self.send_with(request, &RetryPolicy::default()).await
    }

    /// Sends a request, and sends it again as `policy` says when the server
    /// goes away or its storage is briefly unavailable.
    pub(crate) async fn send_with<R: Request>(
        &self,
        request: R,
        policy: &RetryPolicy,
    ) -> Result<R::Response, FluvioError> {
        self.send_within(request, policy, None).await
    }

    /// As [`send_with`](Self::send_with); with an `answer_timeout`, an
    /// attempt the server has not answered by then counts as failed (and is
    /// retried if the policy allows).
    pub(crate) async fn send_within<R: Request>(
        &self,
        request: R,
        policy: &RetryPolicy,
        answer_timeout: Option<Duration>,
    ) -> Result<R::Response, FluvioError> {
        let request = EncodedRequest::new(request);
        let mut retries = Retries::new(policy);
        loop {
            let connection = self.connection();
            let attempt = connection.request(request.clone());
            let answer = match answer_timeout {
                None => attempt.await,
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or(Err(FluvioError::Producer(crate::ProducerError::Timeout(limit)))),
            };
            let error = match answer {
                Ok(frame) => return response(frame),
                Err(error) => error,
            };
            let Some(delay) = retries.pause_after(&error) else { return Err(error) };
            self.before_retry(&error, &connection, delay, retries.count).await;
        }
    }

    /// Moves to another server when the connection was lost, and pauses
    /// `delay` before a retry. The first move to another server is
    /// immediate; a connection lost again and again (a server that closes
    /// every connection) waits like any other retry instead of spinning.
    async fn before_retry(&self, error: &FluvioError, connection: &Arc<Connection>, delay: Duration, retries: usize) {
        tracing::debug!(%error, "request failed; retrying");
        let lost = matches!(error, FluvioError::ConnectionLost { .. });
        if lost {
            let _ = self.fail_over(connection).await;
        }
        if !lost || retries > 1 {
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends a producer's batch in its partition's order, as
    /// [`send_within`](Self::send_within) sends a request: it is written
    /// after the batch before it (`turn`), and names that one while it is
    /// unanswered, so that the server refuses this one if that one failed.
    /// A retry waits until the batch before it is answered, so that retries
    /// keep the order too.
    pub(crate) async fn send_in_turn(
        &self,
        mut request: ProduceRequest,
        turn: BatchTurn,
        policy: &RetryPolicy,
        answer_timeout: Duration,
    ) -> Result<ProduceResponse, FluvioError> {
        let mut retries = Retries::new(policy);
        let BatchTurn { mut before, mine } = turn;
        let sequence = request.producer.map(|stamp| stamp.sequence).unwrap_or_default();
        loop {
            if let Some(before) = &mut before {
                let first = matches!(*mine.borrow(), Turn::Waiting);
                if first {
                    // Written after the batch before it (or once that one
                    // ended without being written).
                    let _ = before.wait_for(|turn| !matches!(turn, Turn::Waiting)).await;
                }
                if !first || matches!(*before.borrow(), Turn::Failed) {
                    // After the batch before it is answered: it failed, and
                    // is sent again first.
                    while before.changed().await.is_ok() {}
                }
                // Answered (its sender is gone), it needs no naming.
                request.follows = match *before.borrow() {
                    Turn::Written(sequence) if before.has_changed().is_ok() => Some(sequence),
                    _ => None,
                };
            }
            let connection = self.connection();
            let written = || {
                mine.send_replace(Turn::Written(sequence));
            };
            let attempt = connection.request_then(EncodedRequest::new(request.clone()), written);
            let answer = tokio::time::timeout(answer_timeout, attempt)
                .await
                .unwrap_or(Err(FluvioError::Producer(crate::ProducerError::Timeout(answer_timeout))));
            let error = match answer {
                Ok(frame) => return response(frame),
                Err(error) => error,
            };
            let Some(delay) = retries.pause_after(&error) else { return Err(error) };
            mine.send_replace(Turn::Failed);
            self.before_retry(&error, &connection, delay, retries.count).await;
        }
    }
}

/// A request's retries under its [`RetryPolicy`]: whether a failed attempt
/// is sent again, and after which pause.
struct Retries<P> {
    pauses: P,
    deadline: tokio::time::Instant,
    /// Retries made so far.
    count: usize,
}

impl Retries<()> {
    fn new(policy: &RetryPolicy) -> Retries<impl Iterator<Item = Duration>> {
        Retries { pauses: policy.iter(), deadline: tokio::time::Instant::now() + policy.timeout, count: 0 }
    }
}

impl<P: Iterator<Item = Duration>> Retries<P> {
    /// The pause before sending again after `error`; `None` when the error
    /// is not one to retry, or the policy's retries or time are spent.
    fn pause_after(&mut self, error: &FluvioError) -> Option<Duration> {
        if !is_retryable(error) {
            return None;
        }
        let delay = self.pauses.next()?;
        if tokio::time::Instant::now() + delay > self.deadline {
            return None;
        }
        self.count += 1;
        Some(delay)
    }
}

/// Where a producer's batch stands, as the batch after it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Not written yet.
    Waiting,
    /// Written (first or again), unanswered, with its stamp sequence.
    Written(u64),
    /// Failed, to be sent again: the batch after it waits until it is
    /// answered.
    Failed,
}

/// A producer's batch's place in its partition's order: the batch before
/// it, and what tells the batch after it where this one stands. Each
/// carries its batch's [`Turn`], and closes once the batch is answered.
pub(crate) struct BatchTurn {
    /// The batch before it, if the partition has one in flight.
    pub(crate) before: Option<tokio::sync::watch::Receiver<Turn>>,
    /// This batch's, for the batch after it.
    pub(crate) mine: tokio::sync::watch::Sender<Turn>,
}
