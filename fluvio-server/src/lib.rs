//! The streaming server: durable topics, a SmartModule registry, and
//! SmartModule chains run for consumers so that only their outputs cross
//! the network.
//!
//! It owns storage ([`storage`], [`topics`]), the registry ([`registry`]) and
//! the serving of the wire protocol ([`connection`]). It reuses the engine,
//! the batch format and the protocol types of `fluvio-client`, and defines
//! none of its own. One connection's bad input never reaches another
//! connection or the stored data: every frame is checked before use, and a
//! malformed one closes only its own connection.

#![warn(missing_docs)]

pub mod connection;
pub mod registry;
pub mod storage;
pub mod topics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fluvio_client::engine::{Limits, SmartEngine};
use fluvio_client::protocol::{DEFAULT_MAX_FRAME_BYTES, ErrorCode, ErrorResponse};
use tokio::net::TcpListener;

pub use storage::FlushPolicy;

/// An error the server answers a request with.
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

    pub(crate) fn storage(path: &Path, error: std::io::Error) -> ServerError {
        ServerError::new(ErrorCode::Storage, format!("storage error on {}: {error}", path.display()))
    }

    /// The error as sent on the wire.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse { code: self.code, message: self.message.clone() }
    }
}

impl From<storage::StorageError> for ServerError {
    fn from(error: storage::StorageError) -> Self {
        match error {
            storage::StorageError::InvalidBatch(message) => ServerError::new(ErrorCode::InvalidBatch, message),
            other => ServerError::new(ErrorCode::Storage, other.to_string()),
        }
    }
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
}

impl ServerConfig {
    /// Defaults: `127.0.0.1:9003`, flush every batch, 64 MiB frames, 256 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            addr: fluvio_client::protocol::DEFAULT_ADDR.parse().expect("default address parses"),
            data_dir: data_dir.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            flush: FlushPolicy::EveryBatch,
            segment_bytes: 256 << 20,
            limits: Limits::default(),
        }
    }
}

/// Everything a connection needs.
pub struct ServerContext {
    /// The settings.
    pub config: ServerConfig,
    /// Topics.
    pub topics: topics::TopicStore,
    /// Registered SmartModules.
    pub registry: registry::Registry,
    /// The SmartModule engine, with its on-disk cache under the data dir.
    pub engine: SmartEngine,
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: TcpListener,
    context: Arc<ServerContext>,
}

impl Server {
    /// Opens the data directory (recovering every partition), loads the
    /// registry and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::storage(&data_dir, e))?;
        let engine = SmartEngine::with_config(config.limits, Some(data_dir.join("module-cache")));
        let topics = topics::TopicStore::open(&data_dir.join("topics"), config.segment_bytes, config.flush)?;
        let registry = registry::Registry::open(&data_dir.join("smartmodules"), engine.clone())?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| ServerError::new(ErrorCode::Storage, format!("cannot listen on {}: {e}", config.addr)))?;
        Ok(Server { listener, context: Arc::new(ServerContext { config, topics, registry, engine }) })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state.
    pub fn context(&self) -> Arc<ServerContext> {
        Arc::clone(&self.context)
    }

    /// Serves connections until the task is dropped.
    pub async fn run(self) {
        let _maintenance = AbortOnDrop(tokio::spawn(maintain(Arc::clone(&self.context))));
        loop {
            match self.listener.accept().await {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let context = Arc::clone(&self.context);
                    tokio::spawn(async move {
                        tracing::debug!(%peer, "connection opened");
                        connection::serve(socket, context).await;
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

    /// Syncs every partition (for a clean shutdown).
    pub fn sync_all(context: &ServerContext) {
        for partition in context.topics.all_partitions() {
            if let Err(error) = partition.sync() {
                tracing::error!(%error, "sync on shutdown failed");
            }
        }
    }
}

/// Stops a background task when the server's run future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Periodic work: syncing under the interval flush policy, and retention.
async fn maintain(context: Arc<ServerContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        let context = Arc::clone(&context);
        let _ = tokio::task::spawn_blocking(move || {
            let partitions = context.topics.all_partitions();
            for partition in &partitions {
                if let Err(error) = partition.sync_if_due() {
                    tracing::error!(%error, "periodic sync failed");
                }
            }
            if ticks.is_multiple_of(50) {
                for partition in &partitions {
                    partition.apply_retention();
                }
            }
        })
        .await;
    }
}
