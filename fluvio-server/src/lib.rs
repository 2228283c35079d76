//! The streaming server: durable topics, a SmartModule registry, and
//! SmartModule chains run for consumers so that only their outputs cross
//! the network.
//!
//! It owns storage behind one boundary ([`storage::Storage`], with the
//! embedded [`storage::local`] backend, and [`storage::jetstream`] for
//! topics kept in a NATS JetStream cluster and served by several servers),
//! the registry ([`registry`]) and the serving of the wire protocol
//! ([`connection`]). The batch format and the
//! protocol come from `fluvio-protocol` and SmartModules run in
//! `fluvio-smartengine`; the server defines neither, and does not depend on
//! the SDK. One connection's bad input never reaches another connection or
//! the stored data: every frame is checked before use, and a malformed one
//! closes only its own connection. It also runs the cluster's connectors,
//! each as its own supervised process ([`connectors`]).

pub mod connection;
pub mod connectors;
pub mod console;
pub mod derived;
pub mod http;
pub mod inflate;
pub mod metrics;
pub mod outbound;
pub mod registry;
pub mod security;
pub mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fluvio_protocol::DEFAULT_MAX_FRAME_BYTES;
use fluvio_smartengine::{Limits, SmartEngine};
use tokio::net::TcpListener;

pub use storage::FlushPolicy;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created or opened.
    #[error("cannot use the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The compiled-module cache could be changed by someone other than the
    /// server, which loads its files as native code.
    #[error("the compiled-module cache {} {reason}; its files are loaded as native code, so it must be the server's own: `chown` it to the server's user and `chmod 700` it (and its parent must not be writable by others)", path.display())]
    UnsafeModuleCache {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The topics could not be opened (or recovered).
    #[error(transparent)]
    Topics(#[from] storage::TopicError),
    /// The JetStream cluster cannot be used.
    #[error(transparent)]
    JetStream(#[from] storage::jetstream::JetStreamError),
    /// The SmartModule registry could not be opened.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The connectors' directory could not be opened.
    #[error(transparent)]
    Connectors(#[from] connectors::ConnectorError),
    /// The derived topics' settings could not be read.
    #[error(transparent)]
    Derived(#[from] derived::DerivedError),
    /// The TLS files or the access file cannot be used, or plain TCP
    /// beyond loopback was not allowed.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}; is another server running there? pick another address with --addr")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; loopback by default.
    pub addr: SocketAddr,
    /// Where topics, registered SmartModules and compiled code live.
    pub data_dir: PathBuf,
    /// Largest frame accepted from a client.
    pub max_frame_bytes: u32,
    /// When appended records are synced to disk.
    pub flush: FlushPolicy,
    /// Default size at which a partition starts a new segment.
    pub segment_bytes: u64,
    /// Memory and CPU caps of every SmartModule.
    pub limits: Limits,
    /// What one client, and all of them together, may hold of the server.
    pub connection_limits: ConnectionLimits,
    /// The `fluvio-connector` program the server runs connectors with.
    pub connector_program: PathBuf,
    /// The hosts and networks (comma-separated: `api.example.com`,
    /// `*.example.com`, `10.0.0.0/8`) the http and mqtt connectors may
    /// reach; any, when `None`.
    pub connector_egress: Option<String>,
    /// Keep topics and the registry in this JetStream cluster instead of
    /// the data directory (which then holds only caches and connectors).
    pub jetstream: Option<storage::jetstream::JetStreamConfig>,
    /// TLS, principals, and whether plain TCP beyond loopback is allowed.
    pub security: security::SecurityConfig,
    /// This server's id in the cluster (Fluvio's SPU id). When `None`: 0 on
    /// a local log; on JetStream, a number derived from the listen
    /// address, the same at every restart.
    pub server_id: Option<i32>,
    /// The HTTP listener (metrics), when one is asked for.
    pub http: Option<http::HttpConfig>,
}

/// Where the `fluvio-connector` program is: `$FLUVIO_CONNECTOR_BIN`, next to
/// the running program (or one directory up, for cargo's test binaries in
/// `deps/`), else looked up on `PATH`.
pub fn default_connector_program() -> PathBuf {
    if let Some(program) = std::env::var_os("FLUVIO_CONNECTOR_BIN") {
        return PathBuf::from(program);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for dir in [Some(dir), dir.parent()].into_iter().flatten() {
            let candidate = dir.join("fluvio-connector");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("fluvio-connector")
}

impl ServerConfig {
    /// Defaults: `127.0.0.1:9003`, flush every batch, 64 MiB frames, 256 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            addr: fluvio_protocol::DEFAULT_ADDR.parse().expect("default address parses"),
            data_dir: data_dir.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            flush: FlushPolicy::EveryBatch,
            segment_bytes: 256 << 20,
            limits: Limits::default(),
            connection_limits: ConnectionLimits::default(),
            connector_program: default_connector_program(),
            connector_egress: None,
            jetstream: None,
            security: security::SecurityConfig::default(),
            server_id: None,
            http: None,
        }
    }
}

/// Bounds on what clients may hold of the server, so that one client (or
/// many) cannot exhaust its memory, threads or file descriptors. Each limit,
/// when reached, gives the client an error naming it and the flag that
/// raises it.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Authenticated connections served at once (on a server without an
    /// access file: all connections); more are answered with an error and
    /// closed.
    pub max_connections: usize,
    /// Connections that have not logged in yet (or are in their TLS
    /// handshake), counted apart from `max_connections`; past it, the
    /// oldest of them is closed to make room for the new one.
    pub max_pre_login_connections: usize,
    /// Connections before login from one address; past it, that address's
    /// oldest is closed to make room.
    pub max_pre_login_per_address: usize,
    /// Streams (consumers) open at once on one connection.
    pub max_streams_per_connection: usize,
    /// SmartModules in one consumer's chain.
    pub max_chain_length: usize,
    /// Memory all running SmartModules may use together: each stage of each
    /// running chain reserves the per-module memory cap.
    pub smartmodule_memory_total: u64,
    /// Bytes of responses queued for one client that is slow to read; its
    /// streams wait while the queue is full.
    pub max_queued_bytes: usize,
    /// How long a write to a client may block before the connection is
    /// closed (a client that stopped reading).
    pub write_timeout: Duration,
    /// How long a connection with no open stream may send nothing before it
    /// is closed. The SDK reconnects on its next request.
    pub idle_timeout: Duration,
    /// On a server that requires credentials, how long a connection has to
    /// authenticate (from its first byte) before it is closed.
    pub login_timeout: Duration,
    /// What one principal may hold at once, on a server with an access
    /// file.
    pub per_principal: connection::quota::PrincipalQuotas,
    /// How many consumer ids may have stored offsets, in all and per
    /// principal.
    pub consumer_ids: connection::consumer_ids::ConsumerIdLimits,
    /// Bytes all compressed batches being checked or read may inflate to
    /// at once (each counts its most, see
    /// [`decompressed_limit`](fluvio_protocol::compression::decompressed_limit));
    /// more wait.
    pub inflate_budget: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            max_pre_login_connections: 1024,
            max_pre_login_per_address: 64,
            max_streams_per_connection: 256,
            max_chain_length: 16,
            smartmodule_memory_total: 16 << 30,
            max_queued_bytes: 64 << 20,
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            login_timeout: Duration::from_secs(10),
            inflate_budget: 1 << 30,
            per_principal: Default::default(),
            consumer_ids: Default::default(),
        }
    }
}

/// Everything a connection needs.
pub struct ServerContext {
    /// The settings.
    pub config: ServerConfig,
    /// Topics and their records.
    pub storage: Arc<dyn storage::Storage>,
    /// Registered SmartModules.
    pub registry: Arc<registry::Registry>,
    /// The SmartModule engine, with its on-disk cache under the data dir.
    pub engine: SmartEngine,
    /// The connectors this server runs.
    pub connectors: connectors::Connectors,
    /// Connections being served now.
    pub open_connections: std::sync::atomic::AtomicUsize,
    /// SmartModule memory reserved by running chains, in bytes.
    pub smartmodule_memory_reserved: std::sync::atomic::AtomicU64,
    /// Where compressed batches are inflated, within the server's budget.
    pub inflater: inflate::Inflater,
    /// The connections that have not logged in yet.
    pub pre_login: Arc<connection::admission::PreLogin>,
    /// What each principal holds of what all share.
    pub quotas: Arc<connection::quota::Quotas>,
    /// Which consumer ids have stored offsets, and whose they are.
    pub consumer_ids: connection::consumer_ids::ConsumerIds,
    /// The TLS side of new connections, when the server serves TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The principals, when connections must authenticate.
    pub access: Option<Arc<security::AccessPolicy>>,
    /// How the server's own connectors reach it (address set at run).
    connector_env: Vec<(String, String)>,
    /// This server, as it announces itself to the cluster.
    pub this_server: fluvio_protocol::requests::ServerDescription,
    /// The derived topics and their pipelines.
    pub derived: derived::Derivations,
    /// What the server counts about itself.
    pub metrics: Arc<metrics::ServerMetrics>,
}

impl ServerContext {
    /// A chain of `invocations` under `policy` whose named modules come
    /// from the registry, reporting its modules' work to the metrics: how
    /// streams, derived topics and the console's tail build theirs.
    pub fn chain_builder(
        &self,
        invocations: impl IntoIterator<Item = fluvio_smartengine::SmartModuleInvocation>,
        policy: fluvio_smartengine::ErrorPolicy,
    ) -> fluvio_smartengine::ChainBuilder {
        let builder = fluvio_smartengine::ChainBuilder::new(&self.engine).invocations(invocations).on_error(policy);
        let registry = Arc::clone(&self.registry);
        self.metrics.watch_chain(builder).resolver(move |name| {
            registry
                .module(name)
                .ok_or_else(|| fluvio_smartengine::EngineError::UnknownModule { name: name.to_string() })
        })
    }
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    context: Arc<ServerContext>,
}

impl Server {
    /// Opens the data directory (recovering every partition), loads the
    /// registry and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Server, StartError> {
        security::check_listen_address(config.addr, &config.security)?;
        let tls = config.security.tls.as_ref().map(security::tls_acceptor).transpose()?;
        let mut access = config.security.access_file.as_deref().map(security::AccessPolicy::load).transpose()?;
        let mut connector_env = Vec::new();
        if let Some(egress) = &config.connector_egress {
            connector_env.push((connectors::EGRESS_ENV.to_string(), egress.clone()));
        }
        if let Some(access) = &mut access {
            // The server's connectors act as an admin of its own, whose token
            // lives only in this process and in theirs.
            let token = access
                .add_internal("fluvio-server connectors", security::Role::Admin, Vec::new())
                .map_err(|source| StartError::DataDir { path: "/dev/urandom".into(), source })?;
            connector_env.push(("FLUVIO_TOKEN".to_string(), token));
        }
        if let Some(files) = &config.security.tls {
            // They reach the server on loopback, a name its certificate need
            // not carry: they trust exactly its certificate instead.
            let cert = std::path::absolute(&files.cert).unwrap_or_else(|_| files.cert.clone());
            connector_env.push(("FLUVIO_TLS_PINNED_CERT".to_string(), cert.to_string_lossy().into_owned()));
        }
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
        let cache_dir = data_dir.join("module-cache");
        private_dir(&cache_dir)?;
        let engine = SmartEngine::with_config(config.limits, Some(cache_dir));
        let (storage, registry, derived_store): (Arc<dyn storage::Storage>, registry::Registry, _) = match &config
            .jetstream
        {
            None => {
                let mut storage =
                    storage::local::LocalStorage::open(&data_dir.join("topics"), config.segment_bytes, config.flush)?;
                let limits = &config.connection_limits;
                storage.reserve_files_for_connections(limits.max_connections + limits.max_pre_login_connections);
                let registry = registry::Registry::open(&data_dir.join("smartmodules"), engine.clone())?;
                (Arc::new(storage), registry, derived::store::DerivedStore::Local(data_dir.join("derived")))
            }
            Some(jetstream) => {
                let storage = storage::jetstream::JetStreamStorage::connect_with_retry(jetstream.clone()).await?;
                let registry = open_shared_registry_with_retry(&storage, &engine).await?;
                let derived_store = derived::store::DerivedStore::Shared(Box::new(storage.derived_buckets()));
                (Arc::new(storage), registry, derived_store)
            }
        };
        let derived = derived::Derivations::open(derived_store).await?;
        let listener =
            TcpListener::bind(config.addr).await.map_err(|source| StartError::Listen { addr: config.addr, source })?;
        let http_listener = match &config.http {
            Some(http) => {
                security::check_listen_address(http.addr, &config.security)?;
                Some(
                    TcpListener::bind(http.addr)
                        .await
                        .map_err(|source| StartError::Listen { addr: http.addr, source })?,
                )
            }
            None => None,
        };
        let metrics = Arc::new(metrics::ServerMetrics::new(config.http.is_some()));
        let compiles = Arc::clone(&metrics);
        engine.on_compile(move |_, took| compiles.compiled(took));
        // Blocking, once at start-up (it may wait for a leftover connector
        // process to stop).
        let connectors = connectors::Connectors::open(&data_dir.join("connectors"), config.connector_program.clone())?;
        let inflater = inflate::Inflater::new(config.connection_limits.inflate_budget);
        let pre_login = connection::admission::PreLogin::new(
            config.connection_limits.max_pre_login_connections,
            config.connection_limits.max_pre_login_per_address,
        );
        let address = listener.local_addr().map_err(|source| StartError::Listen { addr: config.addr, source })?;
        let this_server = fluvio_protocol::requests::ServerDescription {
            id: config.server_id.unwrap_or_else(|| default_server_id(config.jetstream.is_some(), address)),
            address: address.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms: storage::now_ms(),
        };
        let quotas = connection::quota::Quotas::new(config.connection_limits.per_principal);
        let consumer_ids = connection::consumer_ids::ConsumerIds::new(config.connection_limits.consumer_ids);
        let context = ServerContext {
            quotas,
            consumer_ids,
            config,
            storage,
            registry: Arc::new(registry),
            engine,
            connectors,
            open_connections: Default::default(),
            smartmodule_memory_reserved: Default::default(),
            inflater,
            pre_login,
            tls,
            access: access.map(Arc::new),
            connector_env,
            this_server,
            derived,
            metrics,
        };
        Ok(Server { listener, http_listener, context: Arc::new(context) })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address the HTTP listener listens on, when there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener.as_ref().map(|listener| listener.local_addr().expect("a bound listener has an address"))
    }

    /// The shared state.
    pub fn context(&self) -> Arc<ServerContext> {
        Arc::clone(&self.context)
    }

    /// Serves connections, and runs the connectors, until the task is
    /// dropped (which kills the connectors' processes; a clean shutdown
    /// calls [`Connectors::stop_all`](connectors::Connectors::stop_all) first).
    pub async fn run(mut self) {
        let _maintenance = AbortOnDrop(tokio::spawn(maintain(Arc::clone(&self.context))));
        let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(Arc::clone(&self.context))));
        let metrics_public = self.context.config.http.is_some_and(|http| http.metrics_public);
        let _http = self.http_listener.take().map(|listener| {
            AbortOnDrop(tokio::spawn(http::serve(listener, Arc::clone(&self.context), metrics_public)))
        });
        let _connectors = StopConnectorsOnDrop(Arc::clone(&self.context));
        // Connectors reach this server on loopback when it listens on all
        // interfaces.
        let mut addr = self.local_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let cluster = connectors::ClusterAccess { addr: addr.to_string(), env: self.context.connector_env.clone() };
        self.context.connectors.start(cluster).await;
        self.context.derived.start_all(&self.context).await;
        loop {
            match self.listener.accept().await {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let context = Arc::clone(&self.context);
                    tokio::spawn(async move {
                        tracing::debug!(%peer, "connection opened");
                        connection::accept(socket, peer, context).await;
                        tracing::debug!(%peer, "connection closed");
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Makes every partition durable (for a clean shutdown).
    pub async fn sync_all(context: &ServerContext) {
        context.storage.sync_all().await;
    }
}

/// Opens the registry a JetStream cluster shares, again and again while the
/// cluster answers with what may pass (a timeout, no leader yet for the
/// bucket's stream: a freshly formed cluster, or several servers configuring
/// the bucket at once), logging each failure; anything else fails the start.
async fn open_shared_registry_with_retry(
    storage: &storage::jetstream::JetStreamStorage,
    engine: &SmartEngine,
) -> Result<registry::Registry, registry::RegistryError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match registry::Registry::open_shared(storage.context(), storage.metadata_replicas(), engine.clone()).await {
            Err(error @ registry::RegistryError::Shared { .. }) => {
                tracing::warn!("{error}; retrying in {:.1} s", delay.as_secs_f64());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            opened => return opened,
        }
    }
}

/// Makes sure `dir` exists and that nobody but this process's user can put
/// files in it (or replace it): the engine loads its files as native code.
fn private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let unsafe_dir =
        |path: &std::path::Path, reason: String| StartError::UnsafeModuleCache { path: path.to_path_buf(), reason };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|error| unsafe_dir(dir, format!("cannot be created: {error}")))?;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let parent = dir.parent().unwrap_or(dir);
    for (path, is_cache) in [(dir, true), (parent, false)] {
        let meta = std::fs::metadata(path).map_err(|error| unsafe_dir(path, format!("cannot be read: {error}")))?;
        if is_cache && meta.uid() != me {
            return Err(unsafe_dir(path, format!("belongs to user {}, not to the server's user {me}", meta.uid())));
        }
        let writable_by_others = meta.mode() & 0o022 != 0;
        // A sticky, world-writable parent (like /tmp) still lets nobody
        // else rename the cache directory away.
        let sticky = meta.mode() & 0o1000 != 0;
        if writable_by_others && (is_cache || !sticky) {
            return Err(unsafe_dir(
                path,
                format!(
                    "{}is writable by other users (mode {:o})",
                    if is_cache { "" } else { "is in a directory that " },
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Stops a task when its owner is dropped: the server's background tasks
/// with its run future, a pipeline's append with the pipeline.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct StopConnectorsOnDrop(Arc<ServerContext>);

impl Drop for StopConnectorsOnDrop {
    fn drop(&mut self) {
        self.0.connectors.abort_all();
        self.0.derived.stop_all();
    }
}

/// The id a server takes without `--id`: 0 alone on a local log; on
/// JetStream, where several servers share the cluster, FNV-1a of the listen
/// address, so that each server keeps one id across restarts and servers on
/// different addresses almost surely differ.
fn default_server_id(shared: bool, address: SocketAddr) -> i32 {
    if !shared {
        return 0;
    }
    (fnv1a(address.to_string().as_bytes()) & 0x7fff_ffff) as i32
}

/// FNV-1a, 64 bits: a hash that is the same in every process and release,
/// for ids derived from names (servers, pipelines' producer stamps).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Tells the cluster, every [`HEARTBEAT_PERIOD`](storage::HEARTBEAT_PERIOD),
/// that this server is alive; a failed heartbeat is logged and tried again
/// next period.
async fn heartbeat(context: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(storage::HEARTBEAT_PERIOD);
    loop {
        tick.tick().await;
        if let Err(error) = context.storage.announce(&context.this_server).await {
            tracing::warn!(%error, "could not tell the cluster this server is alive");
        }
    }
}

/// Periodic storage upkeep: syncing under the interval flush policy, and
/// retention.
async fn maintain(context: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        context.storage.maintain().await;
    }
}
