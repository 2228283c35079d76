//! Fluvio's consumer-offset calls: [`Fluvio::consumer_offsets`] and
//! [`Fluvio::delete_consumer_offset`], with Fluvio's [`ConsumerOffset`]
//! (fields `consumer_id`, `modified_time`) and [`ReplicaKey`]; and
//! [`Fluvio::connect_with_profile`]. The native calls are
//! [`Fluvio::list_consumers`] and [`Fluvio::delete_consumer`].

use std::time::{Duration, SystemTime};

use fluvio_protocol::requests::DeleteConsumerOffsetRequest;

use crate::partitioning::PartitionId;
use crate::profile::ConfigFile;
use crate::{Fluvio, FluvioError};

/// A consumer's stored offset in one partition, as Fluvio shapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOffset {
    /// The consumer's id.
    pub consumer_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: PartitionId,
    /// The offset the consumer reads next.
    pub offset: i64,
    /// When it was stored.
    pub modified_time: SystemTime,
}

impl From<fluvio_protocol::ConsumerOffset> for ConsumerOffset {
    fn from(stored: fluvio_protocol::ConsumerOffset) -> ConsumerOffset {
        ConsumerOffset {
            consumer_id: stored.consumer,
            topic: stored.topic,
            partition: stored.partition,
            offset: stored.offset,
            modified_time: SystemTime::UNIX_EPOCH + Duration::from_millis(stored.modified_ms),
        }
    }
}

/// A partition of a topic, as Fluvio names one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaKey {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: PartitionId,
}

impl ReplicaKey {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: PartitionId) -> ReplicaKey {
        ReplicaKey { topic: topic.into(), partition }
    }
}

impl<S: Into<String>> From<(S, PartitionId)> for ReplicaKey {
    fn from((topic, partition): (S, PartitionId)) -> ReplicaKey {
        ReplicaKey::new(topic, partition)
    }
}

impl Fluvio {
    /// Connects to the cluster of the profile `profile` of the profile file
    /// (`~/.fluvio/config`), with the environment's credentials over the
    /// profile's.
    pub async fn connect_with_profile(profile: &str) -> Result<Fluvio, FluvioError> {
        let path = ConfigFile::default_path();
        let file = ConfigFile::load(&path)?.ok_or_else(|| {
            FluvioError::Config(format!(
                "no profile file at {}; add a profile with `fluvio profile add`",
                path.display()
            ))
        })?;
        let cluster = file
            .cluster(Some(profile))?
            .cloned()
            .ok_or_else(|| FluvioError::Config(format!("profile {profile:?} names no cluster")))?;
        Fluvio::connect_with_config(&crate::profile::with_environment(cluster)).await
    }

    /// Every stored consumer offset this client may see, Fluvio's way.
    pub async fn consumer_offsets(&self) -> Result<Vec<ConsumerOffset>, FluvioError> {
        Ok(self.list_consumers().await?.into_iter().map(ConsumerOffset::from).collect())
    }

    /// Forgets `consumer_id`'s stored offset in one partition.
    pub async fn delete_consumer_offset(
        &self,
        consumer_id: impl Into<String>,
        replica_id: impl Into<ReplicaKey>,
    ) -> Result<(), FluvioError> {
        let ReplicaKey { topic, partition } = replica_id.into();
        self.send(DeleteConsumerOffsetRequest { consumer: consumer_id.into(), topic, partition }).await?;
        Ok(())
    }
}
