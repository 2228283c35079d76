//! Topics: named sets of partitions, each a [`PartitionLog`], kept under
//! `DATA_DIR/topics/NAME/` with the topic's settings in `topic.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use fluvio_client::protocol::{ErrorCode, RetentionSpec, TopicInfo};
use serde::{Deserialize, Serialize};

use crate::ServerError;
use crate::storage::{FlushPolicy, LogConfig, PartitionLog};

/// A topic's settings, as stored in `topic.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// The name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Retention.
    pub retention: RetentionSpec,
}

/// A topic and its open partitions.
pub struct Topic {
    /// Its settings.
    pub spec: TopicSpec,
    /// One log per partition.
    pub partitions: Vec<Arc<PartitionLog>>,
}

/// Every topic of a server.
pub struct TopicStore {
    dir: PathBuf,
    default_segment_bytes: u64,
    flush: FlushPolicy,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
}

/// Checks a topic name: 1 to 200 characters from `a-z A-Z 0-9 . _ -`, not
/// `.` or `..`, so that it is also a safe directory name.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("name {name:?} must be 1 to 200 characters long"));
    }
    if name == "." || name == ".." || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(format!("name {name:?} may only use letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

impl TopicStore {
    /// Opens every topic under `dir`, recovering each partition.
    pub fn open(dir: &Path, default_segment_bytes: u64, flush: FlushPolicy) -> Result<TopicStore, ServerError> {
        std::fs::create_dir_all(dir).map_err(|e| ServerError::storage(dir, e))?;
        let store =
            TopicStore { dir: dir.to_path_buf(), default_segment_bytes, flush, topics: RwLock::new(BTreeMap::new()) };
        for entry in std::fs::read_dir(dir).map_err(|e| ServerError::storage(dir, e))? {
            let path = entry.map_err(|e| ServerError::storage(dir, e))?.path();
            let spec_path = path.join("topic.json");
            if !spec_path.exists() {
                // A topic whose creation or deletion was interrupted.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let text = std::fs::read_to_string(&spec_path).map_err(|e| ServerError::storage(&spec_path, e))?;
            let spec: TopicSpec = serde_json::from_str(&text).map_err(|e| {
                ServerError::new(ErrorCode::Storage, format!("{} is unreadable: {e}", spec_path.display()))
            })?;
            let topic = store.open_topic(spec)?;
            store.topics.write().expect("topics lock").insert(topic.spec.name.clone(), Arc::new(topic));
        }
        Ok(store)
    }

    fn log_config(&self, retention: RetentionSpec) -> LogConfig {
        LogConfig {
            segment_bytes: retention.segment_bytes.unwrap_or(self.default_segment_bytes),
            retention,
            flush: self.flush,
        }
    }

    fn open_topic(&self, spec: TopicSpec) -> Result<Topic, ServerError> {
        let mut partitions = Vec::with_capacity(spec.partitions as usize);
        for partition in 0..spec.partitions {
            let dir = self.dir.join(&spec.name).join(partition.to_string());
            let (log, recovery) = PartitionLog::open(&dir, self.log_config(spec.retention))?;
            if recovery.truncated_bytes > 0 {
                tracing::warn!(topic = %spec.name, partition, bytes = recovery.truncated_bytes, "recovered partition: cut a torn tail");
            }
            partitions.push(Arc::new(log));
        }
        Ok(Topic { spec, partitions })
    }

    /// Creates a topic.
    pub fn create(&self, spec: TopicSpec) -> Result<(), ServerError> {
        validate_name(&spec.name)
            .map_err(|m| ServerError::new(ErrorCode::InvalidTopicName, format!("invalid topic {m}")))?;
        if spec.partitions == 0 || spec.partitions > 1024 {
            return Err(ServerError::new(
                ErrorCode::InvalidRequest,
                format!("a topic needs 1 to 1024 partitions, not {}", spec.partitions),
            ));
        }
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(&spec.name) {
            return Err(ServerError::new(ErrorCode::TopicExists, format!("topic {:?} already exists", spec.name)));
        }
        let dir = self.dir.join(&spec.name);
        let topic = self.open_topic(spec.clone())?;
        // topic.json is written last: a topic without it is unfinished and
        // removed on the next start.
        let spec_path = dir.join("topic.json");
        let tmp = dir.join("topic.json.tmp");
        let text = serde_json::to_string_pretty(&spec).expect("spec serializes");
        std::fs::write(&tmp, text).map_err(|e| ServerError::storage(&tmp, e))?;
        std::fs::rename(&tmp, &spec_path).map_err(|e| ServerError::storage(&spec_path, e))?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| ServerError::storage(&dir, e))?;
        topics.insert(spec.name.clone(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<(), ServerError> {
        let removed = self.topics.write().expect("topics lock").remove(name);
        if removed.is_none() {
            return Err(not_found(name));
        }
        let dir = self.dir.join(name);
        std::fs::remove_file(dir.join("topic.json")).map_err(|e| ServerError::storage(&dir, e))?;
        std::fs::remove_dir_all(&dir).map_err(|e| ServerError::storage(&dir, e))?;
        Ok(())
    }

    /// The topic, or a "not found" error naming it.
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, ServerError> {
        self.topics.read().expect("topics lock").get(name).cloned().ok_or_else(|| not_found(name))
    }

    /// A partition of a topic.
    pub fn partition(&self, name: &str, partition: u32) -> Result<Arc<PartitionLog>, ServerError> {
        let topic = self.get(name)?;
        topic.partitions.get(partition as usize).cloned().ok_or_else(|| {
            ServerError::new(
                ErrorCode::PartitionNotFound,
                format!(
                    "topic {name:?} has {} partition(s); partition {partition} does not exist",
                    topic.partitions.len()
                ),
            )
        })
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<TopicInfo> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .map(|t| TopicInfo {
                name: t.spec.name.clone(),
                partitions: t.spec.partitions,
                retention: t.spec.retention,
                next_offsets: t.partitions.iter().map(|p| p.next_offset()).collect(),
            })
            .collect()
    }

    /// Every partition of every topic, for periodic retention and syncing.
    pub fn all_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.topics.read().expect("topics lock").values().flat_map(|t| t.partitions.clone()).collect()
    }
}

fn not_found(name: &str) -> ServerError {
    ServerError::new(
        ErrorCode::TopicNotFound,
        format!("topic {name:?} not found; create it with `fluvio topic create {name}`"),
    )
}
