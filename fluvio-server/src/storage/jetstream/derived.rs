//! What servers sharing a cluster keep of derived topics, as bytes in
//! three key-value buckets: each derived topic's settings, each pipeline's
//! checkpoint, and each pipeline's lease (which server runs it); and, in an
//! object store (they can be larger than a message), the saved windows of
//! windowed pipelines. The derived-topic code owns what the bytes mean.

use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::unavailable;
use crate::storage::TopicError;

/// The bucket of derived topics' settings, one key per topic.
pub const DERIVED_BUCKET: &str = "fluvio-derived";

/// The bucket of pipelines' checkpoints, one key per pipeline.
pub const CHECKPOINTS_BUCKET: &str = "fluvio-derived-checkpoints";

/// The bucket of pipelines' leases, one key per pipeline, dropped by the
/// cluster [`LEASE_TTL`] after its holder last renewed it.
pub const LEASES_BUCKET: &str = "fluvio-derived-leases";

/// The object store of windowed pipelines' saved windows, two objects per
/// pipeline (the last two saves).
pub const WINDOWS_BUCKET: &str = "fluvio-derived-windows";

/// How long a lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(6);

/// The three buckets.
#[derive(Clone)]
pub struct DerivedBuckets {
    pub(super) js: async_nats::jetstream::Context,
    pub(super) specs: kv::Store,
    pub(super) checkpoints: kv::Store,
    pub(super) leases: kv::Store,
    pub(super) windows: object_store::ObjectStore,
}

/// Opens (creating it if no server has) the object store of saved windows.
pub(super) async fn open_windows(
    js: &async_nats::jetstream::Context,
    replicas: usize,
) -> Result<object_store::ObjectStore, String> {
    if let Ok(store) = js.get_object_store(WINDOWS_BUCKET).await {
        return Ok(store);
    }
    let config = object_store::Config {
        bucket: WINDOWS_BUCKET.to_string(),
        description: Some("Fluvio derived topics' saved windows".into()),
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        // Another server may have created it meanwhile.
        Err(error) => js.get_object_store(WINDOWS_BUCKET).await.map_err(|_| error.to_string()),
    }
}

/// A pipeline's key: its topic and partition (both allowed in a key).
pub fn pipeline_key(topic: &str, partition: u32) -> String {
    format!("{topic}.{partition}")
}

impl DerivedBuckets {
    /// Every derived topic's settings.
    pub async fn specs(&self) -> Result<Vec<Bytes>, TopicError> {
        let mut values = Vec::new();
        for key in super::offsets::bucket_keys(&self.js, DERIVED_BUCKET, "list derived topics").await? {
            if let Some(value) = self.specs.get(&key).await.map_err(|e| unavailable("read a derived topic", e))? {
                values.push(value);
            }
        }
        Ok(values)
    }

    /// Stores a derived topic's settings; `false` when a topic of that
    /// name has settings already.
    pub async fn create_spec(&self, name: &str, value: Bytes) -> Result<bool, TopicError> {
        match self.specs.create(name, value).await {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(unavailable("store a derived topic", error)),
        }
    }

    /// Forgets a derived topic's settings.
    pub async fn delete_spec(&self, name: &str) -> Result<(), TopicError> {
        self.specs.purge(name).await.map_err(|e| unavailable("delete a derived topic", e))
    }

    /// A pipeline's checkpoint.
    pub async fn checkpoint(&self, key: &str) -> Result<Option<Bytes>, TopicError> {
        self.checkpoints.get(key).await.map_err(|e| unavailable("read a pipeline's checkpoint", e))
    }

    /// Stores a pipeline's checkpoint.
    pub async fn put_checkpoint(&self, key: &str, value: Bytes) -> Result<(), TopicError> {
        self.checkpoints.put(key, value).await.map_err(|e| unavailable("store a pipeline's checkpoint", e))?;
        Ok(())
    }

    /// Forgets a pipeline's checkpoint.
    pub async fn delete_checkpoint(&self, key: &str) -> Result<(), TopicError> {
        self.checkpoints.purge(key).await.map_err(|e| unavailable("delete a pipeline's checkpoint", e))
    }

    /// A pipeline's saved windows under `name`, if there are.
    pub async fn windows(&self, name: &str) -> Result<Option<Vec<u8>>, TopicError> {
        let mut object = match self.windows.get(name).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(unavailable("read a pipeline's windows", error)),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| unavailable("read a pipeline's windows", e))?;
        Ok(Some(bytes))
    }

    /// Saves a pipeline's windows under `name`.
    pub async fn put_windows(&self, name: &str, bytes: &[u8]) -> Result<(), TopicError> {
        let mut reader = bytes;
        self.windows.put(name, &mut reader).await.map_err(|e| unavailable("save a pipeline's windows", e))?;
        Ok(())
    }

    /// Forgets a pipeline's saved windows under `name`.
    pub async fn delete_windows(&self, name: &str) -> Result<(), TopicError> {
        match self.windows.delete(name).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable("delete a pipeline's windows", error)),
        }
    }

    /// Takes a pipeline's lease, when nobody holds it: its revision (the
    /// lease's epoch), or `None` when it is held.
    pub async fn acquire(&self, key: &str, value: Bytes) -> Result<Option<u64>, TopicError> {
        match self.leases.create(key, value).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(unavailable("take a pipeline's lease", error)),
        }
    }

    /// Renews a lease held since `revision`: its new revision, or `None`
    /// when it was lost (expired, and perhaps taken by another server).
    pub async fn renew(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>, TopicError> {
        match self.leases.update(key, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(unavailable("renew a pipeline's lease", error)),
        }
    }

    /// Gives up a lease held since `revision` (best effort: it expires
    /// anyway); a lease another server took meanwhile is left alone.
    pub async fn release(&self, key: &str, revision: u64) {
        let _ = self.leases.purge_expect_revision(key, Some(revision)).await;
    }

    /// What a lease's holder wrote in it last, if it is held.
    pub async fn lease(&self, key: &str) -> Result<Option<Bytes>, TopicError> {
        self.leases.get(key).await.map_err(|e| unavailable("read a pipeline's lease", e))
    }
}
