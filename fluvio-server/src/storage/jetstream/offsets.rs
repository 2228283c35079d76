//! Consumer offsets, one key per consumer, topic and partition in the
//! consumers bucket.

use fluvio_protocol::ConsumerOffset;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::names::{offset_key, parse_offset_key};
use super::{CONSUMERS_BUCKET, JetStreamStorage, unavailable};
use crate::storage::{OwnedOffset, TopicError};

/// A consumer offset as kept in [`CONSUMERS_BUCKET`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredOffset {
    pub(super) offset: i64,
    pub(super) modified_ms: u64,
    /// The principal that committed it (absent in values stored before
    /// owners were, and on servers without an access file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) owner: Option<String>,
}

/// The keys of a bucket, from its stream's subjects: one request, unlike
/// `kv::Store::keys` (an ordered consumer, which can stall for a long time
/// on nats-server 2.9 after a node is lost).
pub(super) async fn bucket_keys(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    action: &str,
) -> Result<Vec<String>, TopicError> {
    let prefix = format!("$KV.{bucket}.");
    let bucket_stream = js.get_stream_no_info(format!("KV_{bucket}")).await.map_err(|e| unavailable(action, e))?;
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

impl JetStreamStorage {
    /// The keys of a bucket ([`bucket_keys`]).
    pub(super) async fn bucket_keys(&self, bucket: &str, action: &str) -> Result<Vec<String>, TopicError> {
        bucket_keys(&self.js, bucket, action).await
    }

    /// Every stored consumer offset.
    pub(super) async fn offsets(&self) -> Result<Vec<OwnedOffset>, TopicError> {
        let mut offsets = Vec::new();
        for key in self.bucket_keys(CONSUMERS_BUCKET, "list consumer offsets").await? {
            let Some((consumer, topic, partition)) = parse_offset_key(&key) else { continue };
            let value = self.consumers_kv.get(&key).await.map_err(|e| unavailable("read a consumer offset", e))?;
            let Some(stored) = value.and_then(|value| serde_json::from_slice::<StoredOffset>(&value).ok()) else {
                continue;
            };
            offsets.push(OwnedOffset {
                offset: ConsumerOffset {
                    consumer: consumer.to_string(),
                    topic,
                    partition,
                    offset: stored.offset,
                    modified_ms: stored.modified_ms,
                },
                owner: stored.owner,
            });
        }
        offsets.sort_by(|a, b| {
            let (a, b) = (&a.offset, &b.offset);
            (&a.consumer, &a.topic, a.partition).cmp(&(&b.consumer, &b.topic, b.partition))
        });
        Ok(offsets)
    }

    pub(super) async fn forget_offsets(
        &self,
        consumer: Option<&str>,
        topic: Option<&str>,
        partition: Option<u32>,
    ) -> Result<usize, TopicError> {
        let mut forgotten = 0;
        for OwnedOffset { offset, .. } in self.offsets().await? {
            if consumer.is_some_and(|consumer| consumer != offset.consumer)
                || topic.is_some_and(|topic| topic != offset.topic)
                || partition.is_some_and(|partition| partition != offset.partition)
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
}
