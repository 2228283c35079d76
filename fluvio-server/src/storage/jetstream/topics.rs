//! Topics: their settings in the topics bucket (where the bucket entry is
//! the lock on a name while it is created or deleted), one stream per
//! partition, and every server's cache of them kept in step by a watch.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use fluvio_protocol::TopicInfo;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::names::{data_subject, end_key, stream_name, topic_key};
use super::partition::JetStreamPartition;
use super::{ABANDONED_AFTER, JetStreamStorage, MAX_REPLICATION, OpenPartitions, TOPICS_BUCKET, unavailable};
use crate::storage::{MAX_PARTITIONS, Partition, TopicError, TopicSpec, now_ms, validate_name};

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

impl JetStreamStorage {
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
    pub(super) async fn spec(&self, topic: &str) -> Result<TopicSpec, TopicError> {
        if let Some(spec) = self.topics.read().get(topic) {
            return Ok(spec.clone());
        }
        match self.record(topic).await? {
            Some((record, _)) if record.state == TopicState::Ready => {
                self.topics.write().insert(topic.to_string(), record.spec.clone());
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
            // JetStream wants the window within the age limit; topics
            // with a shorter age than the retry horizon are refused.
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

    pub(super) async fn create(&self, spec: TopicSpec) -> Result<(), TopicError> {
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
        if let Some(max_age) = spec.retention.max_age_ms.map(Duration::from_millis)
            && max_age < fluvio_protocol::RETRY_HORIZON
        {
            // JetStream keeps its duplicate window within a stream's age
            // limit: a shorter age would silently let a resend through.
            return Err(TopicError::Refused {
                topic: spec.name.clone(),
                reason: format!(
                    "on JetStream a topic's records must be kept at least {} s, the time a producer may send a batch again; with a retention age of {:.1} s a resent batch could be stored twice. Keep records longer, or limit the topic by size",
                    fluvio_protocol::RETRY_HORIZON.as_secs(),
                    max_age.as_secs_f64()
                ),
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
        self.topics.write().insert(spec.name.clone(), spec);
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

    pub(super) async fn delete(&self, topic: &str) -> Result<(), TopicError> {
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
        self.topics.write().remove(topic);
        self.forget_offsets(None, Some(topic), None).await?;
        self.delete_streams(topic, record.spec.partitions).await?;
        for partition in 0..record.spec.partitions {
            let _ = self.ends_kv.purge(end_key(topic, partition)).await;
        }
        self.topics_kv.delete(&key).await.map_err(|e| unavailable("remove the topic's settings", e))?;
        self.partitions.lock().retain(|(name, _), _| name != topic);
        Ok(())
    }

    pub(super) async fn list(&self) -> Result<Vec<TopicInfo>, TopicError> {
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

    pub(super) async fn open_partition(
        &self,
        spec: &TopicSpec,
        partition: u32,
    ) -> Result<Arc<JetStreamPartition>, TopicError> {
        if partition >= spec.partitions {
            return Err(TopicError::PartitionNotFound { topic: spec.name.clone(), partition, count: spec.partitions });
        }
        let key = (spec.name.clone(), partition);
        if let Some(open) = self.partitions.lock().get(&key) {
            return Ok(Arc::clone(open));
        }
        let opened =
            JetStreamPartition::open(&self.js, &self.client, &self.ends_kv, &self.nodes, spec, partition).await?;
        let mut partitions = self.partitions.lock();
        Ok(Arc::clone(partitions.entry(key).or_insert(opened)))
    }
}

/// Keeps the topics cache in step with the bucket: a topic created or
/// deleted through another server is seen here within moments.
pub(super) async fn watch_topics(
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
                            topics.write().insert(name, record.spec);
                        }
                        None => {
                            topics.write().remove(&name);
                            partitions.lock().retain(|(topic, _), _| *topic != name);
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot watch the topics bucket; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
