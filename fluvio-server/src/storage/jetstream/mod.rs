//! The distributed storage backend: topics kept in a NATS JetStream
//! cluster, so that any number of stateless servers serve them and a topic
//! survives the loss of a machine.
//!
//! - Each partition is a JetStream stream (file storage, `replicas` = the
//!   topic's replication factor) with one subject; **one JetStream message
//!   holds one record batch** in the layout of `docs/abi.md`, so JetStream's
//!   per-message cost is paid once per batch.
//! - Offsets stay dense and unique with several writers: an append states
//!   the stream sequence it expects to follow (`Nats-Expected-Last-Sequence`)
//!   and, when another server got there first, reloads the tail and tries
//!   again with the next free offset. A server keeps up to
//!   [`APPENDS_IN_FLIGHT`] appends of a partition in flight, each stating
//!   the one before it (`Nats-Expected-Last-Msg-Id`), so that one that
//!   fails takes every later one with it and they go again in order.
//! - A producer's stamp ([`ProducerStamp`]) is the message id
//!   (`Nats-Msg-Id`), so a batch sent again after a lost acknowledgement is
//!   recognised by JetStream's deduplication and stored once.
//! - Topic settings live in the key-value bucket [`TOPICS_BUCKET`]; every
//!   server watches it, so a topic created or deleted through one server is
//!   seen by all.
//! - After an append a server publishes the partition's new end on a plain
//!   NATS subject, so that consumers on other servers wake at once; a slow
//!   poll covers notifications lost while a node was down.
//!
//! A message that is not a valid batch (written by something else) is
//! skipped with an error naming its stream and sequence; it never stops a
//! server.
//!
//! The files, one job each: this one connects and implements [`Storage`];
//! `names` (stream names, subjects, keys), `nodes` (node connections and
//! the shared buckets), `topics` (settings, streams, the watch), `offsets`
//! (consumer offsets), `partition` (the end and the start), `appends`
//! (a partition's appends in flight),
//! `positions` (where batches are, and the search for an offset) and
//! `reader` (a consumer's reads ahead). The pure parts are unit-tested
//! without a NATS server; the rest by `tests/jetstream.rs` against a real
//! cluster.

mod appends;
mod derived;
mod names;
mod nodes;
mod offsets;
mod partition;
mod positions;
mod reader;
mod servers;
mod topics;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use fluvio_protocol::TopicInfo;
use futures::future::BoxFuture;

use super::{OwnedOffset, Partition, Storage, TopicError, TopicSpec, now_ms};
pub use appends::APPENDS_IN_FLIGHT;
use names::offset_key;
pub use names::{data_subject, stream_name};
pub(crate) use nodes::read_from_leader;
use nodes::{NodeConnections, connect_nodes, metadata_replicas, open_bucket};
use offsets::StoredOffset;
pub use partition::JetStreamPartition;
use topics::watch_topics;

use crate::storage::SERVER_TTL;
pub use derived::{CHECKPOINTS_BUCKET, DERIVED_BUCKET, DerivedBuckets, LEASE_TTL, LEASES_BUCKET, pipeline_key};
use fluvio_protocol::requests::ServerDescription;

/// The key-value bucket that holds every topic's settings.
pub const TOPICS_BUCKET: &str = "fluvio-topics";

/// The key-value bucket where each partition's end is noted, once a second
/// while it grows: retention by age can remove every message of a
/// partition, and with them the last offset.
pub const ENDS_BUCKET: &str = "fluvio-ends";

/// The key-value bucket of consumer offsets: one key per consumer, topic
/// and partition (`CONSUMER.TOPIC.PARTITION`, the topic escaped).
pub const CONSUMERS_BUCKET: &str = "fluvio-consumers";

/// The key-value bucket of the servers alive: one key per server id,
/// written every [`HEARTBEAT_PERIOD`](crate::storage::HEARTBEAT_PERIOD) and
/// dropped by the cluster [`SERVER_TTL`] after the last write (so no
/// server compares its clock with another's).
pub const SERVERS_BUCKET: &str = "fluvio-servers";

/// Most copies JetStream keeps of a stream.
pub const MAX_REPLICATION: u32 = 5;

/// How long a topic left half-created or half-deleted (its server died
/// meanwhile) blocks its name before another creation takes it over.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// How often a partition with followers checks the stream's end, in case a
/// notification was lost.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often a server tries again to connect to a NATS node it could not
/// reach.
const NODE_RETRY: Duration = Duration::from_secs(10);

/// Direct gets in flight at once while reading a partition.
const READ_AHEAD: usize = 16;

/// How a server uses a JetStream cluster.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The cluster's client URLs (`nats://host:4222`), any of which will do.
    pub urls: Vec<String>,
    /// How long JetStream remembers a producer's stamp to drop a resent
    /// batch.
    pub duplicate_window: Duration,
}

impl JetStreamConfig {
    /// A config for comma-separated URLs (`nats://h1:4222,nats://h2:4222`),
    /// with a two-minute deduplication window.
    pub fn new(urls: &str) -> JetStreamConfig {
        JetStreamConfig {
            urls: urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect(),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// Why a server could not start on a JetStream cluster.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// No URL given, or one that does not parse.
    #[error("invalid JetStream URL {url:?}: {reason}; give nats://HOST:PORT, comma-separated for several")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A duplicate window the SDK's retries outlast.
    #[error(
        "a duplicate window of {window_secs} s is shorter than the {horizon_secs} s a producer may send a batch again: a late resend would be stored twice; give --duplicate-window-secs {horizon_secs} or more"
    )]
    DuplicateWindow {
        /// The window asked for.
        window_secs: u64,
        /// The SDK's retry horizon.
        horizon_secs: u64,
    },
    /// No node of the cluster answered.
    #[error(
        "cannot reach the JetStream cluster at {urls}: {reason}; is nats-server running there with -js (JetStream)?"
    )]
    Connect {
        /// The URLs tried.
        urls: String,
        /// What NATS said.
        reason: String,
    },
    /// A node answered, but JetStream is not enabled or has no leader yet.
    #[error(
        "the NATS server at {urls} does not offer JetStream: {reason}; start nats-server with -js, and in a cluster wait for a majority of its nodes"
    )]
    NoJetStream {
        /// The URLs tried.
        urls: String,
        /// What NATS said.
        reason: String,
    },
}

/// The partitions a server has open, by topic and number.
type OpenPartitions = Mutex<HashMap<(String, u32), Arc<JetStreamPartition>>>;

/// Every topic, in a JetStream cluster.
pub struct JetStreamStorage {
    config: JetStreamConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    topics_kv: kv::Store,
    ends_kv: kv::Store,
    consumers_kv: kv::Store,
    servers_kv: kv::Store,
    derived: DerivedBuckets,
    /// Ready topics, kept current by watching the bucket.
    topics: Arc<RwLock<HashMap<String, TopicSpec>>>,
    partitions: Arc<OpenPartitions>,
    watcher: tokio::task::JoinHandle<()>,
    nodes: Arc<NodeConnections>,
    node_connector: tokio::task::JoinHandle<()>,
}

impl Drop for JetStreamStorage {
    fn drop(&mut self) {
        self.watcher.abort();
        self.node_connector.abort();
    }
}

impl JetStreamStorage {
    /// Connects to the cluster (any node will do; the client follows the
    /// cluster as nodes come and go) and opens the topics bucket. Fails at
    /// once when no node answers: [`connect_with_retry`](Self::connect_with_retry)
    /// keeps trying.
    pub async fn connect(config: JetStreamConfig) -> Result<JetStreamStorage, JetStreamError> {
        if config.duplicate_window < fluvio_protocol::RETRY_HORIZON {
            return Err(JetStreamError::DuplicateWindow {
                window_secs: config.duplicate_window.as_secs(),
                horizon_secs: fluvio_protocol::RETRY_HORIZON.as_secs(),
            });
        }
        let urls = config.urls.join(",");
        let mut addrs = Vec::new();
        for url in &config.urls {
            let addr: async_nats::ServerAddr = url
                .parse()
                .map_err(|e: std::io::Error| JetStreamError::Url { url: url.clone(), reason: e.to_string() })?;
            addrs.push(addr);
        }
        if addrs.is_empty() {
            return Err(JetStreamError::Url { url: String::new(), reason: "no URL given".into() });
        }
        let client = async_nats::ConnectOptions::new()
            .name("fluvio-server")
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs.clone())
            .await
            .map_err(|e| JetStreamError::Connect { urls: urls.clone(), reason: e.to_string() })?;
        let js = jetstream::new(client.clone());
        // The account's JetStream info: answered once JetStream runs and (in
        // a cluster) has a leader. Read loosely: its fields vary by version.
        js.request::<_, (), serde_json::Value>("INFO", &())
            .await
            .map_err(|e| JetStreamError::NoJetStream { urls: urls.clone(), reason: e.to_string() })?;
        let replicas = metadata_replicas(&client);
        let bucket_error = |bucket: &str, reason: String| JetStreamError::NoJetStream {
            urls: urls.clone(),
            reason: format!("cannot open the bucket {bucket}: {reason}"),
        };
        let topics_kv = open_bucket(&js, TOPICS_BUCKET, "Fluvio topic settings", replicas, Duration::ZERO)
            .await
            .map_err(|reason| bucket_error(TOPICS_BUCKET, reason))?;
        let ends_kv = open_bucket(&js, ENDS_BUCKET, "Fluvio partition ends", replicas, Duration::ZERO)
            .await
            .map_err(|reason| bucket_error(ENDS_BUCKET, reason))?;
        let consumers_kv = open_bucket(&js, CONSUMERS_BUCKET, "Fluvio consumer offsets", replicas, Duration::ZERO)
            .await
            .map_err(|reason| bucket_error(CONSUMERS_BUCKET, reason))?;
        let servers_kv = open_bucket(&js, SERVERS_BUCKET, "Fluvio servers alive", replicas, SERVER_TTL)
            .await
            .map_err(|reason| bucket_error(SERVERS_BUCKET, reason))?;
        let derived = DerivedBuckets {
            js: js.clone(),
            specs: open_bucket(&js, DERIVED_BUCKET, "Fluvio derived topics", replicas, Duration::ZERO)
                .await
                .map_err(|reason| bucket_error(DERIVED_BUCKET, reason))?,
            checkpoints: open_bucket(&js, CHECKPOINTS_BUCKET, "Fluvio pipeline checkpoints", replicas, Duration::ZERO)
                .await
                .map_err(|reason| bucket_error(CHECKPOINTS_BUCKET, reason))?,
            leases: open_bucket(&js, LEASES_BUCKET, "Fluvio pipeline leases", replicas, LEASE_TTL)
                .await
                .map_err(|reason| bucket_error(LEASES_BUCKET, reason))?,
            windows: derived::open_windows(&js, replicas)
                .await
                .map_err(|reason| bucket_error(derived::WINDOWS_BUCKET, reason))?,
        };
        let topics: Arc<RwLock<HashMap<String, TopicSpec>>> = Arc::default();
        let partitions: Arc<OpenPartitions> = Arc::default();
        let watcher = tokio::spawn(watch_topics(topics_kv.clone(), Arc::clone(&topics), Arc::clone(&partitions)));
        // The configured nodes and those the cluster told of.
        let discovered = client.server_info().connect_urls.into_iter().filter_map(|url| url.parse().ok());
        let mut node_addrs: Vec<async_nats::ServerAddr> = Vec::new();
        for addr in addrs.into_iter().chain(discovered) {
            if !node_addrs.iter().any(|known| known.host() == addr.host() && known.port() == addr.port()) {
                node_addrs.push(addr);
            }
        }
        let nodes: Arc<NodeConnections> = Arc::default();
        let node_connector = tokio::spawn(connect_nodes(Arc::downgrade(&nodes), node_addrs));
        Ok(JetStreamStorage {
            config,
            client,
            js,
            topics_kv,
            ends_kv,
            consumers_kv,
            servers_kv,
            derived,
            topics,
            partitions,
            watcher,
            nodes,
            node_connector,
        })
    }

    /// [`connect`](Self::connect), again and again until the cluster
    /// answers, logging each failure with what to check.
    pub async fn connect_with_retry(config: JetStreamConfig) -> Result<JetStreamStorage, JetStreamError> {
        let mut delay = Duration::from_millis(500);
        loop {
            match JetStreamStorage::connect(config.clone()).await {
                Ok(storage) => return Ok(storage),
                Err(error @ (JetStreamError::Url { .. } | JetStreamError::DuplicateWindow { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::error!("{error}; retrying in {:.1} s", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// How many copies the cluster's metadata buckets get.
    pub fn metadata_replicas(&self) -> usize {
        metadata_replicas(&self.client)
    }

    /// Where the servers keep derived topics' settings, checkpoints and
    /// leases.
    pub fn derived_buckets(&self) -> DerivedBuckets {
        self.derived.clone()
    }

    /// The JetStream context, shared with the registry's object store.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }
}

impl Storage for JetStreamStorage {
    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<(), TopicError>> {
        Box::pin(self.create(spec))
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(self.delete(name))
    }

    fn list_topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>, TopicError>> {
        Box::pin(self.list())
    }

    fn partition<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
    ) -> BoxFuture<'a, Result<Arc<dyn Partition>, TopicError>> {
        Box::pin(async move {
            let spec = self.spec(topic).await?;
            Ok(self.open_partition(&spec, partition).await? as Arc<dyn Partition>)
        })
    }

    /// JetStream applies retention itself; this refreshes each open
    /// partition's start (what retention removed).
    fn maintain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let open: Vec<Arc<JetStreamPartition>> = self.partitions.lock().values().cloned().collect();
            for partition in open {
                partition.refresh_if_due().await;
            }
        })
    }

    /// Every acknowledged append is already stored by a majority.
    fn sync_all(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn commit_offset<'a>(
        &'a self,
        consumer: &'a str,
        topic: &'a str,
        partition: u32,
        offset: i64,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            let stored = StoredOffset { offset, modified_ms: now_ms(), owner: owner.map(str::to_string) };
            let value = serde_json::to_vec(&stored).expect("an offset serializes");
            self.consumers_kv
                .put(offset_key(consumer, topic, partition), value.into())
                .await
                .map_err(|e| unavailable("store a consumer offset", e))?;
            Ok(())
        })
    }

    fn fetch_offset<'a>(
        &'a self,
        consumer: &'a str,
        topic: &'a str,
        partition: u32,
    ) -> BoxFuture<'a, Result<Option<i64>, TopicError>> {
        Box::pin(async move {
            let value = self
                .consumers_kv
                .get(offset_key(consumer, topic, partition))
                .await
                .map_err(|e| unavailable("read a consumer offset", e))?;
            Ok(value.and_then(|value| serde_json::from_slice::<StoredOffset>(&value).ok()).map(|s| s.offset))
        })
    }

    fn list_offsets(&self) -> BoxFuture<'_, Result<Vec<OwnedOffset>, TopicError>> {
        Box::pin(self.offsets())
    }

    fn delete_offsets<'a>(
        &'a self,
        consumer: Option<&'a str>,
        topic: Option<&'a str>,
        partition: Option<u32>,
    ) -> BoxFuture<'a, Result<usize, TopicError>> {
        Box::pin(self.forget_offsets(consumer, topic, partition))
    }

    fn announce<'a>(&'a self, server: &'a ServerDescription) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(self.announce_server(server))
    }

    fn servers(&self) -> BoxFuture<'_, Result<Vec<ServerDescription>, TopicError>> {
        Box::pin(self.live_servers())
    }
}

/// The cluster did not do `action`: a node is down or a stream has no
/// leader; the client may retry, here or on another server.
fn unavailable(action: impl Into<String>, error: impl std::fmt::Display) -> TopicError {
    TopicError::Unavailable { action: action.into(), reason: error.to_string() }
}
