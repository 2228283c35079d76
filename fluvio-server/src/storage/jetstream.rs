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
//!   again with the next free offset.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use fluvio_protocol::{Batch, ConsumerOffset, ProducerStamp, TopicInfo};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    MAX_PARTITIONS, Partition, PartitionReader, Storage, StorageError, TopicError, TopicSpec, now_ms, validate_name,
};

/// The key-value bucket that holds every topic's settings.
pub const TOPICS_BUCKET: &str = "fluvio-topics";

/// The key-value bucket where each partition's end is noted, once a second
/// while it grows: retention by age can remove every message of a
/// partition, and with them the last offset.
pub const ENDS_BUCKET: &str = "fluvio-ends";

/// The key-value bucket of consumer offsets: one key per consumer, topic
/// and partition (`CONSUMER.TOPIC.PARTITION`, the topic escaped).
pub const CONSUMERS_BUCKET: &str = "fluvio-consumers";

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

/// The settings of a topic as kept in [`TOPICS_BUCKET`], with where its
/// creation or deletion stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicRecord {
    spec: TopicSpec,
    state: TopicState,
    /// When `state` was entered, in milliseconds since the Unix epoch.
    since_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum TopicState {
    Creating,
    Ready,
    Deleting,
}

impl TopicRecord {
    fn new(spec: TopicSpec, state: TopicState) -> TopicRecord {
        TopicRecord { spec, state, since_ms: now_ms() }
    }

    fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a topic record serializes"))
    }

    fn abandoned(&self) -> bool {
        self.state != TopicState::Ready && now_ms().saturating_sub(self.since_ms) > ABANDONED_AFTER.as_millis() as u64
    }
}

/// Topic names may hold `.`, which NATS subjects, stream names and keys
/// use as a separator; `=` is not allowed in topic names, so it stands in.
fn escape(topic: &str) -> String {
    topic.replace('.', "=")
}

fn topic_key(topic: &str) -> String {
    escape(topic)
}

fn offset_key(consumer: &str, topic: &str, partition: u32) -> String {
    format!("{consumer}.{}.{partition}", escape(topic))
}

/// A consumer offset as kept in [`CONSUMERS_BUCKET`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoredOffset {
    offset: i64,
    modified_ms: u64,
}

fn end_key(topic: &str, partition: u32) -> String {
    format!("{}.{partition}", escape(topic))
}

/// The JetStream stream that holds one partition.
pub fn stream_name(topic: &str, partition: u32) -> String {
    format!("fluvio_{}_{partition}", escape(topic))
}

/// The subject a partition's batches are published on.
pub fn data_subject(topic: &str, partition: u32) -> String {
    format!("fluvio.data.{}.{partition}", escape(topic))
}

/// Where a server announces a partition's new end after appending.
fn notify_subject(topic: &str, partition: u32) -> String {
    format!("fluvio.end.{}.{partition}", escape(topic))
}

fn unavailable(action: impl Into<String>, error: impl std::fmt::Display) -> TopicError {
    TopicError::Unavailable { action: action.into(), reason: error.to_string() }
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

/// A connection to each NATS node of the cluster, so that each partition's
/// appends go straight to its stream's Raft leader.
///
/// An append through any node works: a node that does not lead the stream
/// forwards the message across a route to the one that does, and the
/// acknowledgement comes back the same way. That hop makes the cluster read
/// and copy every batch once more; on a busy cluster it is CPU the replicas
/// need (measured in docs/benchmarks.md). The main connection stays the one
/// for everything else, and the fallback whenever the leader's node is not
/// connected.
#[derive(Default)]
struct NodeConnections {
    clients: RwLock<Vec<async_nats::Client>>,
}

impl NodeConnections {
    /// A JetStream context on the node named `leader`, when connected to it.
    fn to(&self, leader: &str) -> Option<jetstream::Context> {
        let clients = self.clients.read().expect("node connections lock");
        clients
            .iter()
            .find(|client| {
                client.connection_state() == async_nats::connection::State::Connected
                    && client.try_server_info().is_some_and(|info| info.server_name == leader)
            })
            .map(|client| jetstream::new(client.clone()))
    }
}

/// Connects to each of `addrs` on its own (not following the cluster: each
/// connection is to be one node's), trying the unreachable ones again every
/// [`NODE_RETRY`] until every node is connected. Once connected, the client
/// reconnects to its node by itself.
async fn connect_nodes(nodes: std::sync::Weak<NodeConnections>, mut pending: Vec<async_nats::ServerAddr>) {
    loop {
        let mut unreachable = Vec::new();
        for addr in pending {
            let connected = async_nats::ConnectOptions::new()
                .name("fluvio-server")
                .ignore_discovered_servers()
                .connection_timeout(Duration::from_secs(2))
                .connect(addr.clone())
                .await;
            let Some(nodes) = nodes.upgrade() else { return };
            match connected {
                Ok(client) => {
                    let name = client.server_info().server_name;
                    let mut clients = nodes.clients.write().expect("node connections lock");
                    // The same node under two addresses needs one connection.
                    if !clients.iter().any(|known| known.try_server_info().is_some_and(|i| i.server_name == name)) {
                        clients.push(client);
                    }
                }
                Err(error) => {
                    tracing::debug!(
                        %error,
                        "cannot connect to NATS node {}:{} yet; its streams' appends go through another node",
                        addr.host(),
                        addr.port()
                    );
                    unreachable.push(addr);
                }
            }
        }
        if unreachable.is_empty() {
            return;
        }
        pending = unreachable;
        tokio::time::sleep(NODE_RETRY).await;
    }
}

impl JetStreamStorage {
    /// Connects to the cluster (any node will do; the client follows the
    /// cluster as nodes come and go) and opens the topics bucket. Fails at
    /// once when no node answers: [`connect_with_retry`](Self::connect_with_retry)
    /// keeps trying.
    pub async fn connect(config: JetStreamConfig) -> Result<JetStreamStorage, JetStreamError> {
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
        let topics_kv = open_bucket(&js, TOPICS_BUCKET, "Fluvio topic settings", replicas)
            .await
            .map_err(|reason| bucket_error(TOPICS_BUCKET, reason))?;
        let ends_kv = open_bucket(&js, ENDS_BUCKET, "Fluvio partition ends", replicas)
            .await
            .map_err(|reason| bucket_error(ENDS_BUCKET, reason))?;
        let consumers_kv = open_bucket(&js, CONSUMERS_BUCKET, "Fluvio consumer offsets", replicas)
            .await
            .map_err(|reason| bucket_error(CONSUMERS_BUCKET, reason))?;
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
                Err(error @ JetStreamError::Url { .. }) => return Err(error),
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

    /// The JetStream context, shared with the registry's object store.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    async fn record(&self, topic: &str) -> Result<Option<(TopicRecord, u64)>, TopicError> {
        let entry = self.topics_kv.entry(topic_key(topic)).await.map_err(|e| unavailable("read topic settings", e))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record: TopicRecord =
                    serde_json::from_slice(&entry.value).map_err(|e| TopicError::CorruptSettings {
                        path: format!("{TOPICS_BUCKET}/{}", entry.key).into(),
                        reason: e.to_string(),
                    })?;
                Some((record, entry.revision))
            }
            _ => None,
        })
    }

    /// The settings of a ready topic: from the watched cache, else from the
    /// bucket (a topic created a moment ago through another server).
    async fn spec(&self, topic: &str) -> Result<TopicSpec, TopicError> {
        if let Some(spec) = self.topics.read().expect("topics lock").get(topic) {
            return Ok(spec.clone());
        }
        match self.record(topic).await? {
            Some((record, _)) if record.state == TopicState::Ready => {
                self.topics.write().expect("topics lock").insert(topic.to_string(), record.spec.clone());
                Ok(record.spec)
            }
            _ => Err(TopicError::NotFound(topic.to_string())),
        }
    }

    fn stream_config(&self, spec: &TopicSpec, partition: u32) -> stream::Config {
        stream::Config {
            name: stream_name(&spec.name, partition),
            description: Some(format!("Fluvio topic {} partition {partition}", spec.name)),
            subjects: vec![data_subject(&spec.name, partition)],
            storage: stream::StorageType::File,
            num_replicas: spec.replication as usize,
            // JetStream wants the window within the age limit.
            duplicate_window: match spec.retention.max_age_ms {
                Some(max_age) => self.config.duplicate_window.min(Duration::from_millis(max_age)),
                None => self.config.duplicate_window,
            },
            max_age: spec.retention.max_age_ms.map(Duration::from_millis).unwrap_or_default(),
            max_bytes: spec.retention.max_bytes.map_or(-1, |b| b.min(i64::MAX as u64) as i64),
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            ..Default::default()
        }
    }

    async fn delete_streams(&self, topic: &str, partitions: u32) -> Result<(), TopicError> {
        for partition in 0..partitions {
            self.delete_stream(topic, partition).await?;
        }
        Ok(())
    }

    /// Deletes one partition's stream; one that is not there is fine.
    async fn delete_stream(&self, topic: &str, partition: u32) -> Result<(), TopicError> {
        let name = stream_name(topic, partition);
        match self.js.delete_stream(&name).await {
            Ok(_) => Ok(()),
            Err(error) => match error.kind() {
                jetstream::context::DeleteStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(())
                }
                _ => Err(unavailable(format!("delete stream {name}"), error)),
            },
        }
    }

    async fn create(&self, spec: TopicSpec) -> Result<(), TopicError> {
        validate_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitionCount(spec.partitions));
        }
        if spec.replication == 0 || spec.replication > MAX_REPLICATION {
            return Err(TopicError::InvalidReplication {
                topic: spec.name.clone(),
                requested: spec.replication,
                reason: format!("JetStream keeps 1 to {MAX_REPLICATION} copies of a stream"),
            });
        }
        let key = topic_key(&spec.name);
        let claim = TopicRecord::new(spec.clone(), TopicState::Creating);
        // The bucket entry is the lock on the name: one creation wins.
        let revision = match self.topics_kv.create(&key, claim.to_bytes()).await {
            Ok(revision) => revision,
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => match self.record(&spec.name).await? {
                Some((existing, revision)) if existing.abandoned() => {
                    tracing::warn!(topic = %spec.name, state = ?existing.state, "taking over a topic whose server stopped while creating or deleting it");
                    self.delete_streams(&spec.name, existing.spec.partitions).await?;
                    self.topics_kv
                        .update(&key, claim.to_bytes(), revision)
                        .await
                        .map_err(|_| TopicError::Exists(spec.name.clone()))?
                }
                _ => return Err(TopicError::Exists(spec.name)),
            },
            Err(error) => return Err(unavailable("record the topic", error)),
        };
        if let Err(error) = self.create_streams(&spec).await {
            let _ = self.delete_streams(&spec.name, spec.partitions).await;
            let _ = self.topics_kv.delete_expect_revision(&key, Some(revision)).await;
            return Err(error);
        }
        let ready = TopicRecord::new(spec.clone(), TopicState::Ready);
        self.topics_kv
            .update(&key, ready.to_bytes(), revision)
            .await
            .map_err(|e| unavailable("record the topic", e))?;
        self.topics.write().expect("topics lock").insert(spec.name.clone(), spec);
        Ok(())
    }

    async fn create_streams(&self, spec: &TopicSpec) -> Result<(), TopicError> {
        for partition in 0..spec.partitions {
            let config = self.stream_config(spec, partition);
            // A stream left by a deletion that did not finish holds old
            // records: a new topic starts empty.
            self.delete_stream(&spec.name, partition).await?;
            let _ = self.ends_kv.purge(end_key(&spec.name, partition)).await;
            if let Err(error) = self.js.create_stream(config).await {
                return Err(match error.kind() {
                    jetstream::context::CreateStreamErrorKind::JetStream(e)
                        if [
                            jetstream::ErrorCode::INSUFFICIENT_RESOURCES,
                            jetstream::ErrorCode::CLUSTER_NO_PEERS,
                            jetstream::ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
                        ]
                        .contains(&e.error_code()) =>
                    {
                        TopicError::InvalidReplication {
                            topic: spec.name.clone(),
                            requested: spec.replication,
                            reason: format!(
                                "the JetStream cluster cannot place {} copies ({e}); use -r with at most the number of JetStream servers running",
                                spec.replication
                            ),
                        }
                    }
                    jetstream::context::CreateStreamErrorKind::JetStream(e) if e.code() < 500 => TopicError::Refused {
                        topic: spec.name.clone(),
                        reason: format!("JetStream refused stream {}: {e}", stream_name(&spec.name, partition)),
                    },
                    _ => unavailable(format!("create stream {}", stream_name(&spec.name, partition)), error),
                });
            }
        }
        Ok(())
    }

    async fn delete(&self, topic: &str) -> Result<(), TopicError> {
        let key = topic_key(topic);
        let (record, revision) = match self.record(topic).await? {
            Some((record, revision)) if record.state == TopicState::Ready || record.abandoned() => (record, revision),
            _ => return Err(TopicError::NotFound(topic.to_string())),
        };
        let deleting = TopicRecord::new(record.spec.clone(), TopicState::Deleting);
        self.topics_kv
            .update(&key, deleting.to_bytes(), revision)
            .await
            .map_err(|_| TopicError::NotFound(topic.to_string()))?;
        self.topics.write().expect("topics lock").remove(topic);
        self.forget_offsets(None, Some(topic)).await?;
        self.delete_streams(topic, record.spec.partitions).await?;
        for partition in 0..record.spec.partitions {
            let _ = self.ends_kv.purge(end_key(topic, partition)).await;
        }
        self.topics_kv.delete(&key).await.map_err(|e| unavailable("remove the topic's settings", e))?;
        self.partitions.lock().expect("partitions lock").retain(|(name, _), _| name != topic);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TopicInfo>, TopicError> {
        let names: Vec<String> = self
            .bucket_keys(TOPICS_BUCKET, "list topics")
            .await?
            .into_iter()
            .map(|key| key.replace('=', "."))
            .collect();
        let mut topics = Vec::new();
        for name in names {
            let Some((record, _)) = self.record(&name).await? else { continue };
            if record.state != TopicState::Ready {
                continue;
            }
            let mut next_offsets = Vec::with_capacity(record.spec.partitions as usize);
            for partition in 0..record.spec.partitions {
                next_offsets.push(self.open_partition(&record.spec, partition).await?.next_offset());
            }
            topics.push(TopicInfo {
                name: record.spec.name.clone(),
                partitions: record.spec.partitions,
                replication: record.spec.replication,
                retention: record.spec.retention,
                next_offsets,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The keys of a bucket, from its stream's subjects: one request, unlike
    /// `kv::Store::keys` (an ordered consumer, which can stall for a long
    /// time on nats-server 2.9 after a node is lost).
    async fn bucket_keys(&self, bucket: &str, action: &str) -> Result<Vec<String>, TopicError> {
        let prefix = format!("$KV.{bucket}.");
        let bucket_stream =
            self.js.get_stream_no_info(format!("KV_{bucket}")).await.map_err(|e| unavailable(action, e))?;
        let mut subjects =
            bucket_stream.info_with_subjects(format!("{prefix}>")).await.map_err(|e| unavailable(action, e))?;
        let mut keys = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.map_err(|e| unavailable(action, e))?;
            if let Some(key) = subject.strip_prefix(&prefix) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }

    /// Every stored consumer offset.
    async fn offsets(&self) -> Result<Vec<ConsumerOffset>, TopicError> {
        let mut offsets = Vec::new();
        for key in self.bucket_keys(CONSUMERS_BUCKET, "list consumer offsets").await? {
            let mut parts = key.splitn(3, '.');
            let (Some(consumer), Some(topic), Some(partition)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(partition) = partition.parse::<u32>() else { continue };
            let value = self.consumers_kv.get(&key).await.map_err(|e| unavailable("read a consumer offset", e))?;
            let Some(stored) = value.and_then(|value| serde_json::from_slice::<StoredOffset>(&value).ok()) else {
                continue;
            };
            offsets.push(ConsumerOffset {
                consumer: consumer.to_string(),
                topic: topic.replace('=', "."),
                partition,
                offset: stored.offset,
                modified_ms: stored.modified_ms,
            });
        }
        offsets.sort_by(|a, b| (&a.consumer, &a.topic, a.partition).cmp(&(&b.consumer, &b.topic, b.partition)));
        Ok(offsets)
    }

    async fn forget_offsets(&self, consumer: Option<&str>, topic: Option<&str>) -> Result<usize, TopicError> {
        let mut forgotten = 0;
        for offset in self.offsets().await? {
            if consumer.is_some_and(|consumer| consumer != offset.consumer)
                || topic.is_some_and(|topic| topic != offset.topic)
            {
                continue;
            }
            self.consumers_kv
                .purge(offset_key(&offset.consumer, &offset.topic, offset.partition))
                .await
                .map_err(|e| unavailable("delete a consumer offset", e))?;
            forgotten += 1;
        }
        Ok(forgotten)
    }

    async fn open_partition(&self, spec: &TopicSpec, partition: u32) -> Result<Arc<JetStreamPartition>, TopicError> {
        if partition >= spec.partitions {
            return Err(TopicError::PartitionNotFound { topic: spec.name.clone(), partition, count: spec.partitions });
        }
        let key = (spec.name.clone(), partition);
        if let Some(open) = self.partitions.lock().expect("partitions lock").get(&key) {
            return Ok(Arc::clone(open));
        }
        let opened =
            JetStreamPartition::open(&self.js, &self.client, &self.ends_kv, &self.nodes, spec, partition).await?;
        let mut partitions = self.partitions.lock().expect("partitions lock");
        Ok(Arc::clone(partitions.entry(key).or_insert(opened)))
    }
}

/// Opens a key-value bucket, creating it when missing. The bucket's stream
/// is made directly, as NATS's key-value layout defines it: async-nats's
/// `create_key_value` first reads account fields that nats-server 2.9 does
/// not send.
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, String> {
    if js.get_key_value(bucket).await.is_ok() {
        read_from_leader(js, &format!("KV_{bucket}")).await?;
        return js.get_key_value(bucket).await.map_err(|e| e.to_string());
    }
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(description.to_string()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            allow_rollup: true,
            deny_delete: true,
            // Reads go to the leader: see `read_from_leader`.
            allow_direct: false,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    // Made here or, meanwhile, by another server.
    js.get_key_value(bucket).await.map_err(|error| match created {
        Ok(_) => error.to_string(),
        Err(create_error) => create_error.to_string(),
    })
}

/// Turns off direct gets on a metadata stream made by an older version.
///
/// With direct gets any replica answers a read, and one that lags says that
/// a topic created or a module registered a moment ago through another
/// server does not exist, or that a deleted one still does. Metadata is read
/// rarely, so every read goes to the stream's leader instead. Stores opened
/// on the stream before this call keep the old setting: open them again.
/// Returns the stream (its cached info may predate the change).
pub(crate) async fn read_from_leader(js: &jetstream::Context, stream_name: &str) -> Result<stream::Stream, String> {
    let failed = |reason: String| format!("cannot configure the stream {stream_name}: {reason}");
    let mut stream = js.get_stream(stream_name).await.map_err(|e| failed(e.to_string()))?;
    let mut config = stream.info().await.map_err(|e| failed(e.to_string()))?.config.clone();
    if config.allow_direct {
        config.allow_direct = false;
        js.update_stream(config).await.map_err(|e| failed(e.to_string()))?;
    }
    Ok(stream)
}

/// Metadata is kept with as many copies as the cluster has nodes, up to
/// three (a node lists every node's client URL, itself included).
fn metadata_replicas(client: &async_nats::Client) -> usize {
    client.server_info().connect_urls.len().clamp(1, 3)
}

/// Keeps the topics cache in step with the bucket: a topic created or
/// deleted through another server is seen here within moments.
async fn watch_topics(
    store: kv::Store,
    topics: Arc<RwLock<HashMap<String, TopicSpec>>>,
    partitions: Arc<OpenPartitions>,
) {
    loop {
        match store.watch_all().await {
            Ok(mut watch) => {
                while let Some(entry) = watch.next().await {
                    let Ok(entry) = entry else { break };
                    let name = entry.key.replace('=', ".");
                    let ready = match entry.operation {
                        kv::Operation::Put => serde_json::from_slice::<TopicRecord>(&entry.value)
                            .ok()
                            .filter(|record| record.state == TopicState::Ready),
                        _ => None,
                    };
                    match ready {
                        Some(record) => {
                            topics.write().expect("topics lock").insert(name, record.spec);
                        }
                        None => {
                            topics.write().expect("topics lock").remove(&name);
                            partitions.lock().expect("partitions lock").retain(|(topic, _), _| *topic != name);
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot watch the topics bucket; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
            let open: Vec<Arc<JetStreamPartition>> =
                self.partitions.lock().expect("partitions lock").values().cloned().collect();
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
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move {
            let stored = StoredOffset { offset, modified_ms: now_ms() };
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

    fn list_offsets(&self) -> BoxFuture<'_, Result<Vec<ConsumerOffset>, TopicError>> {
        Box::pin(self.offsets())
    }

    fn delete_offsets<'a>(
        &'a self,
        consumer: Option<&'a str>,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, TopicError>> {
        Box::pin(self.forget_offsets(consumer, topic))
    }
}

/// Where a partition ends, as last seen.
#[derive(Debug, Clone, Copy)]
struct Tail {
    /// The stream's last sequence (0 when empty).
    last_sequence: u64,
    /// The offset the next record gets.
    next_offset: i64,
}

/// One partition: a JetStream stream of record batches.
pub struct JetStreamPartition {
    stream: stream::Stream<()>,
    stream_name: String,
    subject: String,
    notify_subject: String,
    js: jetstream::Context,
    client: async_nats::Client,
    nodes: Arc<NodeConnections>,
    /// Where appends go: the connection to the stream leader's node, as
    /// last seen; `None` for the main connection.
    publisher: Mutex<Option<jetstream::Context>>,
    /// Serializes this server's appends; other servers are kept out by the
    /// expected-last-sequence check.
    tail: tokio::sync::Mutex<Tail>,
    start_offset: AtomicI64,
    /// The end consumers may read up to (also the watch's value).
    watermark: watch::Sender<i64>,
    /// The last stream sequence known to hold a batch: reads go no further.
    known_last: AtomicU64,
    /// Known batch positions: base offset → (stream sequence, next
    /// offset), to find where a read starts without searching.
    positions: Mutex<BTreeMap<i64, (u64, i64)>>,
    /// Batches appended here lately.
    recent: Mutex<RecentBatches>,
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

/// Most batch positions a partition remembers.
const MAX_POSITIONS: usize = 4096;

/// Most bytes of batches a partition keeps in [`RecentBatches`].
const RECENT_BYTES: usize = 8 << 20;

/// Batches this server appended lately, by stream sequence.
///
/// Consumers mostly follow the end of a partition: those connected to the
/// server that wrote a batch read it from here instead of through NATS. A
/// JetStream message never changes once stored, so an entry stays true
/// until it is evicted.
#[derive(Default)]
struct RecentBatches {
    /// Each batch with its next offset.
    by_sequence: BTreeMap<u64, (Batch, i64)>,
    bytes: usize,
}

impl RecentBatches {
    fn get(&self, sequence: u64) -> Option<(Batch, i64)> {
        self.by_sequence.get(&sequence).cloned()
    }

    fn insert(&mut self, sequence: u64, batch: Batch, next_offset: i64) {
        self.bytes += batch.as_bytes().len();
        if let Some((replaced, _)) = self.by_sequence.insert(sequence, (batch, next_offset)) {
            self.bytes -= replaced.as_bytes().len();
        }
        // Evict the oldest first: most reads follow the end.
        while self.bytes > RECENT_BYTES {
            let Some((_, (evicted, _))) = self.by_sequence.pop_first() else { break };
            self.bytes -= evicted.as_bytes().len();
        }
    }
}

/// What reading one stream message found.
enum Fetched {
    /// A batch, and its next offset (found as it was checked).
    Batch(Batch, i64),
    /// Not a valid batch: skipped (and logged).
    Invalid,
    /// No message at that sequence (removed, or not written yet).
    Missing,
}

impl JetStreamPartition {
    async fn open(
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
        let partition = Arc::new_cyclic(|weak: &std::sync::Weak<JetStreamPartition>| JetStreamPartition {
            stream,
            stream_name,
            subject: data_subject(&spec.name, partition),
            notify_subject,
            js: js.clone(),
            client: client.clone(),
            nodes: Arc::clone(nodes),
            publisher: Mutex::new(None),
            tail: tokio::sync::Mutex::new(Tail { last_sequence: 0, next_offset: 0 }),
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
        let mut tail = partition.tail.lock().await;
        *tail = partition.load_tail().await.map_err(TopicError::Storage)?;
        partition.advance(tail.next_offset, tail.last_sequence);
        drop(tail);
        partition.refresh_start().await.map_err(TopicError::Storage)?;
        Ok(partition)
    }

    fn unavailable(&self, action: &'static str, error: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable { action, stream: self.stream_name.clone(), reason: error.to_string() }
    }

    /// Moves the known end forward (never back).
    fn advance(&self, next_offset: i64, last_sequence: u64) {
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

    fn remember(&self, base_offset: i64, sequence: u64, next_offset: i64) {
        let mut positions = self.positions.lock().expect("positions lock");
        // Forget the oldest: reads mostly follow the end.
        while positions.len() >= MAX_POSITIONS {
            positions.pop_first();
        }
        positions.insert(base_offset, (sequence, next_offset));
    }

    /// The stream's sequence range, `first..=last` (empty when `first > last`).
    /// The answer also names the stream's leader: appends follow it.
    async fn sequences(&self) -> Result<(u64, u64), StorageError> {
        let info = self.stream.get_info().await.map_err(|e| self.unavailable("read the state of", e))?;
        let leader = info.cluster.as_ref().and_then(|cluster| cluster.leader.as_deref());
        *self.publisher.lock().expect("publisher lock") = leader.and_then(|leader| self.nodes.to(leader));
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Reads the message at `sequence`: from any replica, else from the
    /// leader (a replica may not have a message just written yet).
    async fn fetch(&self, sequence: u64) -> Result<Fetched, StorageError> {
        use jetstream::stream::DirectGetErrorKind;
        if let Some((batch, next_offset)) = self.recent.lock().expect("recent batches lock").get(sequence) {
            return Ok(Fetched::Batch(batch, next_offset));
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
        match Batch::from_bytes_with_next_offset(message.payload.to_vec()) {
            Ok((batch, next_offset)) => {
                self.remember(batch.base_offset(), sequence, next_offset);
                Ok(Fetched::Batch(batch, next_offset))
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
    async fn load_tail(&self) -> Result<Tail, StorageError> {
        let (mut first, mut last) = self.sequences().await?;
        let mut sequence = last;
        let mut missing = 0;
        while sequence >= first.max(1) {
            match self.fetch(sequence).await? {
                Fetched::Batch(_, next_offset) => return Ok(Tail { last_sequence: last, next_offset }),
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
                Fetched::Batch(batch, _) => {
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
    async fn refresh_if_due(&self) {
        let now = now_ms();
        if now.saturating_sub(self.last_refresh_ms.load(Ordering::Relaxed)) < POLL_INTERVAL.as_millis() as u64 {
            return;
        }
        self.last_refresh_ms.store(now, Ordering::Relaxed);
        if let Ok((_, last)) = self.sequences().await {
            let known = self.tail.lock().await.last_sequence;
            if last > known
                && let Ok(Fetched::Batch(_, next_offset)) = self.fetch(last).await
            {
                self.advance(next_offset, last);
            }
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
    async fn locate(&self, offset: i64) -> Result<Option<u64>, StorageError> {
        if offset >= self.next_offset() {
            return Ok(None);
        }
        let hint = self.positions.lock().expect("positions lock").range(..=offset).next_back().map(|(_, p)| *p);
        if let Some((sequence, next_offset)) = hint {
            if next_offset > offset {
                return Ok(Some(sequence));
            }
            if next_offset == offset {
                // Where the previous read ended: the next message.
                return Ok(Some(sequence + 1));
            }
        }
        let (first, last) = self.sequences().await?;
        // Offsets grow with sequences: search `first..=last` for the
        // first batch that ends after `offset`.
        let (mut low, mut high) = (first.max(1), last + 1);
        while low < high {
            let middle = low + (high - low) / 2;
            // Invalid or missing messages hold no offsets: look past them.
            let mut probe = middle;
            let next_offset = loop {
                if probe > last {
                    break None;
                }
                match self.fetch(probe).await? {
                    Fetched::Batch(_, next_offset) => break Some(next_offset),
                    _ => probe += 1,
                }
            };
            match next_offset {
                Some(next_offset) if next_offset <= offset => low = probe + 1,
                _ => high = middle,
            }
        }
        Ok((low <= last).then_some(low))
    }

    async fn append_stamped(&self, mut batch: Batch, producer: Option<ProducerStamp>) -> Result<i64, StorageError> {
        let mut tail = self.tail.lock().await;
        let payload_len = batch.as_bytes().len();
        let max_payload = self.client.max_payload();
        // Not through a node whose connection is down (the node may be
        // gone): the append would wait out its timeout there.
        let publisher = self
            .publisher
            .lock()
            .expect("publisher lock")
            .clone()
            .filter(|node| node.client().connection_state() == async_nats::connection::State::Connected);
        let js = publisher.as_ref().unwrap_or(&self.js);
        if payload_len + 256 > max_payload {
            return Err(StorageError::InvalidBatch(format!(
                "the batch is {payload_len} bytes, more than the JetStream cluster's max_payload of {max_payload}; send smaller batches (the producer's batch size), or raise max_payload in nats-server's config"
            )));
        }
        let mut conflicts = 0u32;
        loop {
            batch.set_base_offset(tail.next_offset);
            let mut publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::copy_from_slice(batch.as_bytes()))
                .expected_last_sequence(tail.last_sequence);
            if let Some(stamp) = producer {
                publish = publish.message_id(format!("{:016x}-{}", stamp.id, stamp.sequence));
            }
            let sent = js.send_publish(self.subject.clone(), publish).await;
            let acknowledged = match sent {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            match acknowledged {
                Ok(ack) if ack.duplicate => {
                    // Stored before: answer with the offset it got then.
                    let base_offset = match self.fetch(ack.sequence).await? {
                        Fetched::Batch(stored, _) => stored.base_offset(),
                        _ => return Err(self.unavailable("read back a deduplicated batch from", "it is gone")),
                    };
                    *tail = self.load_tail().await?;
                    self.advance(tail.next_offset, tail.last_sequence);
                    return Ok(base_offset);
                }
                Ok(ack) => {
                    let base_offset = tail.next_offset;
                    tail.last_sequence = ack.sequence;
                    tail.next_offset = batch.next_offset();
                    self.remember(base_offset, ack.sequence, tail.next_offset);
                    // Before consumers are woken: those at the end read it from here.
                    self.recent.lock().expect("recent batches lock").insert(ack.sequence, batch, tail.next_offset);
                    self.advance(tail.next_offset, tail.last_sequence);
                    let mut end = Vec::with_capacity(16);
                    end.extend_from_slice(&tail.next_offset.to_le_bytes());
                    end.extend_from_slice(&tail.last_sequence.to_le_bytes());
                    let _ = self.client.publish(self.notify_subject.clone(), Bytes::from(end)).await;
                    return Ok(base_offset);
                }
                Err(error) if error.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    // Another server appended first: take the offsets after its batch.
                    conflicts += 1;
                    if conflicts > 1000 {
                        return Err(self.unavailable("append to", "too many competing appends"));
                    }
                    *tail = self.load_tail().await?;
                    self.advance(tail.next_offset, tail.last_sequence);
                }
                Err(error) => {
                    // The leader's node may be gone: the next append goes
                    // through the main connection, until the leader is
                    // known again.
                    *self.publisher.lock().expect("publisher lock") = None;
                    return Err(self.unavailable("append to", error));
                }
            }
        }
    }

    async fn read_from(&self, offset: i64, max_bytes: u64) -> Result<Vec<Batch>, StorageError> {
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
                    Fetched::Batch(batch, next_offset) => {
                        if next_offset <= offset {
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

/// Reads a partition onwards for one consumer, with up to [`READ_AHEAD`]
/// messages in flight: each read is a round trip through NATS, so one at a
/// time would bound a consumer by latency. Fetches run as tasks of their
/// own, so that a read that stops at `max_bytes` leaves the ones ahead of
/// it running for the next read rather than wasting them.
struct JetStreamReader {
    partition: Arc<JetStreamPartition>,
    /// The first offset not yet returned.
    offset: i64,
    /// The next sequence to fetch; `None` until located (again).
    next_sequence: Option<u64>,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<Fetched, StorageError>>>,
}

impl JetStreamReader {
    fn restart(&mut self) {
        for fetch in self.in_flight.drain(..) {
            fetch.abort();
        }
        self.next_sequence = None;
    }

    async fn next_batches(&mut self, max_bytes: u64) -> Result<Vec<Batch>, StorageError> {
        if self.next_sequence.is_none() {
            match self.partition.locate(self.offset).await? {
                Some(sequence) => self.next_sequence = Some(sequence),
                None => return Ok(Vec::new()),
            }
        }
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        loop {
            let last = self.partition.known_last.load(Ordering::Relaxed);
            let mut sequence = self.next_sequence.expect("located above");
            while self.in_flight.len() < READ_AHEAD && sequence <= last {
                let partition = Arc::clone(&self.partition);
                self.in_flight.push_back(tokio::spawn(async move { partition.fetch(sequence).await }));
                sequence += 1;
            }
            self.next_sequence = Some(sequence);
            let Some(fetch) = self.in_flight.pop_front() else { return Ok(batches) };
            let fetched = fetch.await.map_err(|e| self.partition.unavailable("read", e));
            match fetched.and_then(|fetched| fetched) {
                Ok(Fetched::Batch(batch, next_offset)) => {
                    if next_offset <= self.offset {
                        continue;
                    }
                    self.offset = next_offset;
                    bytes += batch.as_bytes().len() as u64;
                    batches.push(batch);
                    if bytes >= max_bytes {
                        return Ok(batches);
                    }
                }
                Ok(Fetched::Invalid) => {}
                // Removed by retention meanwhile, or not yet on the replica
                // that answered: locate again on the next call.
                Ok(Fetched::Missing) => {
                    self.restart();
                    return Ok(batches);
                }
                Err(error) => {
                    self.restart();
                    return Err(error);
                }
            }
        }
    }
}

impl PartitionReader for JetStreamReader {
    fn next(&mut self, max_bytes: u64) -> BoxFuture<'_, Result<Vec<Batch>, StorageError>> {
        Box::pin(self.next_batches(max_bytes))
    }
}

impl Drop for JetStreamReader {
    fn drop(&mut self) {
        self.restart();
    }
}

/// Follows a partition's end as other servers announce it.
async fn follow(partition: std::sync::Weak<JetStreamPartition>, mut notifications: async_nats::Subscriber) {
    while let Some(message) = notifications.next().await {
        let Some(partition) = partition.upgrade() else { return };
        if let Ok(end) = <[u8; 16]>::try_from(&message.payload[..]) {
            let next_offset = i64::from_le_bytes(end[..8].try_into().expect("8 bytes"));
            let last_sequence = u64::from_le_bytes(end[8..].try_into().expect("8 bytes"));
            partition.advance(next_offset, last_sequence);
        }
    }
}

impl Partition for JetStreamPartition {
    fn append(&self, batch: Batch, producer: Option<ProducerStamp>) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(self.append_stamped(batch, producer))
    }

    fn read(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Vec<Batch>, StorageError>> {
        Box::pin(self.read_from(offset, max_bytes))
    }

    fn reader(self: Arc<Self>, offset: i64) -> Box<dyn PartitionReader> {
        Box::new(JetStreamReader { partition: self, offset, next_sequence: None, in_flight: VecDeque::new() })
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
