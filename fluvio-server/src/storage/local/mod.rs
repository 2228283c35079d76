//! The embedded storage backend: topics in a directory on local disk.
//!
//! Each topic is `DIR/NAME/`, with its settings in `topic.json` and one
//! [`PartitionLog`] per partition in `DIR/NAME/PARTITION/`. `topic.json` is
//! written last and atomically ([`fluvio_fs::write_atomic`]), so a topic
//! directory without it is an interrupted creation, removed at the next
//! start, and a power cut never leaves it empty.
//!
//! The files, one job each: this one keeps the topics; [`segment_log`] is
//! a partition's log of segments (`segment_log/segment.rs` a segment's
//! files and their recovery checks), [`offsets`] the consumers' offsets and
//! [`producers`] the journal of each producer's latest batches.

pub mod offsets;
pub mod producers;
pub mod segment_log;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use fluvio_protocol::{RetentionSpec, TopicInfo};
use futures::future::BoxFuture;

use super::{
    MAX_PARTITIONS, MAX_TOTAL_PARTITIONS, OwnedOffset, Partition, SEGMENT_BYTES_RANGE, Storage, StorageError,
    TopicError, TopicSpec, validate_name,
};
use offsets::OffsetLog;
use segment_log::{FlushPolicy, LogConfig, PartitionLog};

/// The name of a topic's settings file.
pub const TOPIC_SETTINGS_FILE: &str = "topic.json";

/// A topic and its open partitions.
struct Topic {
    spec: TopicSpec,
    partitions: Vec<Arc<PartitionLog>>,
}

/// Every topic of a server, on local disk.
pub struct LocalStorage {
    dir: PathBuf,
    default_segment_bytes: u64,
    flush: FlushPolicy,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Topics whose files could not be opened at start, with why: not
    /// served, names not reusable, files untouched.
    unopened: RwLock<std::collections::HashMap<String, String>>,
    /// Most partitions over all topics: [`MAX_TOTAL_PARTITIONS`], or fewer
    /// when the process may not open that many files.
    max_total_partitions: usize,
    /// Where consumers have got to.
    offsets: OffsetLog,
    /// The one server using this directory, once it has announced itself.
    this_server: RwLock<Option<fluvio_protocol::requests::ServerDescription>>,
}

/// Files kept for everything but partitions and connections: SmartModule
/// caches, connectors, readers opening a segment, the offsets log.
const FILES_FOR_THE_REST: u64 = 512;

/// Files an open partition holds: its active segment's log and index, and
/// its producer journal.
const FILES_PER_PARTITION: u64 = 3;

/// How many partitions fit in an open-file limit of `files` once
/// `connections` (one file each) and the rest are set aside, at most
/// [`MAX_TOTAL_PARTITIONS`]. Under a small limit the rest and the
/// connections get a quarter of the files each, so that partitions keep
/// half.
fn partitions_within(files: u64, connections: u64) -> usize {
    let set_aside = FILES_FOR_THE_REST.min(files / 4) + connections.min(files / 4);
    let partitions = files.saturating_sub(set_aside) / FILES_PER_PARTITION;
    (partitions as usize).clamp(1, MAX_TOTAL_PARTITIONS)
}

/// This process's open-file limit.
fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 }
}

fn partition_limit() -> usize {
    partitions_within(open_file_limit(), 0)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TopicError + '_ {
    move |source| TopicError::Storage(StorageError::Io { path: path.to_path_buf(), source })
}

impl LocalStorage {
    /// Sets aside one open file for each of `connections` (the server's
    /// limits on authenticated connections and connections before login),
    /// so that partitions created later never take the files accepting a
    /// connection needs.
    pub fn reserve_files_for_connections(&mut self, connections: usize) {
        self.max_total_partitions = partitions_within(open_file_limit(), connections as u64);
    }

    /// Opens every topic under `dir`, recovering each partition.
    pub fn open(dir: &Path, default_segment_bytes: u64, flush: FlushPolicy) -> Result<LocalStorage, TopicError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let store = LocalStorage {
            dir: dir.to_path_buf(),
            default_segment_bytes,
            flush,
            topics: RwLock::default(),
            unopened: RwLock::default(),
            max_total_partitions: partition_limit(),
            offsets: OffsetLog::open(dir)?,
            this_server: RwLock::new(None),
        };
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if !path.is_dir() {
                continue;
            }
            let spec_path = path.join(TOPIC_SETTINGS_FILE);
            if !spec_path.exists() {
                // A topic whose creation or deletion was interrupted.
                tracing::warn!(dir = %path.display(), "removing an unfinished topic directory");
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let opened = fluvio_fs::remove_leftovers(&path)
                .map_err(io_error(&path))
                .and_then(|_| read_settings(&spec_path))
                .and_then(|spec| store.open_topic(spec));
            match opened {
                Ok(topic) => {
                    store.topics.write().insert(topic.spec.name.clone(), Arc::new(topic));
                }
                // One broken topic must not keep the others from being
                // served: it is set aside, its files untouched.
                Err(error) => {
                    tracing::error!(topic = %name, %error, "a topic could not be opened; serving the others");
                    store.unopened.write().insert(name, error.to_string());
                }
            }
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

    fn open_topic(&self, spec: TopicSpec) -> Result<Topic, TopicError> {
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
    pub fn create(&self, spec: TopicSpec) -> Result<(), TopicError> {
        validate_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitionCount(spec.partitions));
        }
        if spec.replication != 1 {
            return Err(TopicError::InvalidReplication {
                topic: spec.name,
                requested: spec.replication,
                reason: "the embedded local log keeps one copy on this machine; use -r 1, or run the servers on a JetStream cluster (`fluvio-server --jetstream URLS`) for replicated topics".into(),
            });
        }
        if let Some(segment_bytes) = spec.retention.segment_bytes
            && !SEGMENT_BYTES_RANGE.contains(&segment_bytes)
        {
            return Err(TopicError::Refused {
                topic: spec.name,
                reason: format!(
                    "a segment size of {segment_bytes} bytes is outside {} to {} bytes",
                    SEGMENT_BYTES_RANGE.start(),
                    SEGMENT_BYTES_RANGE.end()
                ),
            });
        }
        let mut topics = self.topics.write();
        if topics.contains_key(&spec.name) {
            return Err(TopicError::Exists(spec.name));
        }
        if let Some(error) = self.unopened(&spec.name) {
            return Err(error);
        }
        let held: usize = topics.values().map(|topic| topic.partitions.len()).sum();
        if held + spec.partitions as usize > self.max_total_partitions {
            return Err(TopicError::Refused {
                topic: spec.name,
                reason: format!(
                    "this server holds {held} partitions and takes at most {} (three open files each, within its open-file limit and at most {MAX_TOTAL_PARTITIONS}); delete topics you no longer need, create this one with fewer partitions, or raise the limit (`ulimit -n`)",
                    self.max_total_partitions
                ),
            });
        }
        let topic = self.open_topic(spec.clone())?;
        // The settings are written last: a topic without them is unfinished
        // and removed on the next start.
        let spec_path = self.dir.join(&spec.name).join(TOPIC_SETTINGS_FILE);
        let text = serde_json::to_string_pretty(&spec).expect("a topic spec serializes");
        fluvio_fs::write_atomic(&spec_path, text.as_bytes()).map_err(io_error(&spec_path))?;
        fluvio_fs::sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        topics.insert(spec.name.clone(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<(), TopicError> {
        // The files of a topic that could not be opened are left for the
        // operator to repair or move away.
        if let Some(error) = self.unopened(name) {
            return Err(error);
        }
        if self.topics.write().remove(name).is_none() {
            return Err(TopicError::NotFound(name.to_string()));
        }
        // First, so that a topic created again under this name never finds
        // the old one's consumers, even after a crash right here.
        self.offsets.delete(None, Some(name), None)?;
        let dir = self.dir.join(name);
        // Without its settings the directory is an unfinished topic, so a
        // crash in the middle of removing it finishes the job at the next start.
        let spec_path = dir.join(TOPIC_SETTINGS_FILE);
        std::fs::remove_file(&spec_path).map_err(io_error(&spec_path))?;
        std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(())
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(topic) = self.topics.read().get(name) {
            return Ok(Arc::clone(topic));
        }
        Err(self.unopened(name).unwrap_or_else(|| TopicError::NotFound(name.to_string())))
    }

    /// The error for a topic set aside at start, if `name` is one.
    fn unopened(&self, name: &str) -> Option<TopicError> {
        let unopened = self.unopened.read();
        unopened.get(name).map(|reason| TopicError::Unopened { topic: name.to_string(), reason: reason.clone() })
    }

    /// Topics whose files could not be opened at start, with why.
    pub fn unopened_topics(&self) -> Vec<(String, String)> {
        let unopened = self.unopened.read();
        let mut list: Vec<_> = unopened.iter().map(|(name, reason)| (name.clone(), reason.clone())).collect();
        list.sort();
        list
    }

    /// A partition of a topic.
    pub fn partition_log(&self, name: &str, partition: u32) -> Result<Arc<PartitionLog>, TopicError> {
        let topic = self.topic(name)?;
        topic.partitions.get(partition as usize).cloned().ok_or_else(|| TopicError::PartitionNotFound {
            topic: name.to_string(),
            partition,
            count: topic.spec.partitions,
        })
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<TopicInfo> {
        self.topics
            .read()
            .values()
            .map(|t| TopicInfo {
                name: t.spec.name.clone(),
                partitions: t.spec.partitions,
                replication: t.spec.replication,
                retention: t.spec.retention,
                next_offsets: t.partitions.iter().map(|p| p.next_offset()).collect(),
            })
            .collect()
    }

    fn all_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.topics.read().values().flat_map(|t| t.partitions.clone()).collect()
    }
}

/// Reads a topic's settings file, naming the file when it cannot.
fn read_settings(path: &Path) -> Result<TopicSpec, TopicError> {
    let corrupt = |reason: String| TopicError::CorruptSettings { path: path.to_path_buf(), reason };
    let text = std::fs::read(path).map_err(|e| corrupt(e.to_string()))?;
    if text.is_empty() {
        return Err(corrupt("the file is empty".into()));
    }
    serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))
}

impl Storage for LocalStorage {
    fn create_topic(&self, spec: TopicSpec) -> BoxFuture<'_, Result<(), TopicError>> {
        Box::pin(async move { tokio::task::block_in_place(|| self.create(spec)) })
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        Box::pin(async move { tokio::task::block_in_place(|| self.delete(name)) })
    }

    fn list_topics(&self) -> BoxFuture<'_, Result<Vec<TopicInfo>, TopicError>> {
        Box::pin(async move { Ok(self.list()) })
    }

    fn partition<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
    ) -> BoxFuture<'a, Result<Arc<dyn Partition>, TopicError>> {
        Box::pin(async move { Ok(self.partition_log(topic, partition)? as Arc<dyn Partition>) })
    }

    fn maintain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tokio::task::block_in_place(|| {
                for partition in self.all_partitions() {
                    if let Err(error) = partition.sync_if_due() {
                        tracing::error!(%error, "periodic sync failed");
                    }
                    partition.apply_retention();
                }
            })
        })
    }

    fn sync_all(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tokio::task::block_in_place(|| {
                for partition in self.all_partitions() {
                    if let Err(error) = partition.sync() {
                        tracing::error!(%error, "sync failed");
                    }
                }
            })
        })
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
            tokio::task::block_in_place(|| self.offsets.commit(consumer, topic, partition, offset, owner))?;
            Ok(())
        })
    }

    fn fetch_offset<'a>(
        &'a self,
        consumer: &'a str,
        topic: &'a str,
        partition: u32,
    ) -> BoxFuture<'a, Result<Option<i64>, TopicError>> {
        Box::pin(async move { Ok(self.offsets.get(consumer, topic, partition)) })
    }

    fn list_offsets(&self) -> BoxFuture<'_, Result<Vec<OwnedOffset>, TopicError>> {
        Box::pin(async move { Ok(self.offsets.list()) })
    }

    fn delete_offsets<'a>(
        &'a self,
        consumer: Option<&'a str>,
        topic: Option<&'a str>,
        partition: Option<u32>,
    ) -> BoxFuture<'a, Result<usize, TopicError>> {
        Box::pin(async move { Ok(tokio::task::block_in_place(|| self.offsets.delete(consumer, topic, partition))?) })
    }

    /// A data directory serves one server (the offsets log and segments
    /// are its alone), so the cluster is that server.
    fn announce<'a>(
        &'a self,
        server: &'a fluvio_protocol::requests::ServerDescription,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        *self.this_server.write() = Some(server.clone());
        Box::pin(async { Ok(()) })
    }

    fn servers(&self) -> BoxFuture<'_, Result<Vec<fluvio_protocol::requests::ServerDescription>, TopicError>> {
        let servers = self.this_server.read().iter().cloned().collect();
        Box::pin(async move { Ok(servers) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fluvio-topics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn spec(name: &str) -> TopicSpec {
        TopicSpec { name: name.into(), partitions: 2, replication: 1, retention: RetentionSpec::default() }
    }

    fn batch(values: &[&str]) -> fluvio_protocol::CheckedBatch {
        let mut builder = fluvio_protocol::BatchBuilder::new(0, 0);
        for value in values {
            builder.push_value(None, value.as_bytes());
        }
        builder.finish().into()
    }

    #[test]
    fn settings_survive_restarts_and_no_temporary_file_is_left() {
        let dir = temp_dir("restart");
        let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
        store.create(spec("a")).unwrap();
        store.create(spec("b")).unwrap();
        drop(store);
        for _ in 0..3 {
            let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
            let names: Vec<String> = store.list().into_iter().map(|t| t.name).collect();
            assert_eq!(names, ["a", "b"]);
        }
        for topic in ["a", "b"] {
            let files: Vec<String> = std::fs::read_dir(dir.join(topic))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(fluvio_fs::TEMP_SUFFIX))
                .collect();
            assert!(files.is_empty(), "{files:?}");
            assert_eq!(read_settings(&dir.join(topic).join(TOPIC_SETTINGS_FILE)).unwrap(), spec(topic));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_topic_with_an_empty_or_truncated_settings_file_is_set_aside_and_the_others_served() {
        let dir = temp_dir("corrupt");
        let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
        store.create(spec("events")).unwrap();
        store.create(spec("healthy")).unwrap();
        drop(store);
        let settings = dir.join("events").join(TOPIC_SETTINGS_FILE);
        let whole = std::fs::read(&settings).unwrap();
        for (broken, why) in [(Vec::new(), "empty"), (whole[..whole.len() / 2].to_vec(), "EOF")] {
            std::fs::write(&settings, &broken).unwrap();
            let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
            store.partition_log("healthy", 0).unwrap().append(batch(&["fine"])).unwrap();
            let error = store.partition_log("events", 0).err().expect("the broken topic is not served");
            let message = error.to_string();
            assert!(matches!(error, TopicError::Unopened { .. }), "{message}");
            assert!(message.contains(&settings.display().to_string()), "{message}");
            assert!(message.contains(why), "{message}");
            // Its name stays taken, and its files stay, until it is repaired.
            assert!(matches!(store.create(spec("events")), Err(TopicError::Unopened { .. })));
            assert!(matches!(store.delete("events"), Err(TopicError::Unopened { .. })));
            assert_eq!(store.unopened_topics().len(), 1);
        }
        assert!(dir.join("events").join("0").exists());
        std::fs::write(&settings, &whole).unwrap();
        let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
        assert!(store.partition_log("events", 0).is_ok());
        assert!(store.unopened_topics().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_names_and_partition_counts_are_refused() {
        let dir = temp_dir("names");
        let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
        assert!(matches!(store.create(spec("../escape")), Err(TopicError::InvalidName(_))));
        let none = TopicSpec { partitions: 0, ..spec("zero") };
        assert!(matches!(store.create(none), Err(TopicError::InvalidPartitionCount(0))));
        store.create(spec("t")).unwrap();
        assert!(matches!(store.create(spec("t")), Err(TopicError::Exists(_))));
        assert!(matches!(store.partition_log("t", 2), Err(TopicError::PartitionNotFound { count: 2, .. })));
        assert!(matches!(store.delete("nope"), Err(TopicError::NotFound(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segment_sizes_and_the_total_partition_count_are_bounded() {
        let dir = temp_dir("bounds");
        let store = LocalStorage::open(&dir, 1 << 20, FlushPolicy::EveryBatch).unwrap();
        for segment_bytes in [0, 100, u64::MAX] {
            let retention = RetentionSpec { segment_bytes: Some(segment_bytes), ..Default::default() };
            let error = store.create(TopicSpec { retention, ..spec("seg") }).unwrap_err();
            assert!(matches!(error, TopicError::Refused { .. }), "{error}");
            assert!(error.to_string().contains(&format!("segment size of {segment_bytes} bytes")), "{error}");
        }
        assert!(!dir.join("seg").exists(), "a refused topic leaves nothing on disk");
        let retention = RetentionSpec { segment_bytes: Some(1 << 20), ..Default::default() };
        store.create(TopicSpec { retention, ..spec("seg") }).unwrap();

        assert!(store.max_total_partitions >= 1 && store.max_total_partitions <= MAX_TOTAL_PARTITIONS);
        // Three files a partition, and one for each connection the server
        // may have, out of the open-file limit.
        assert_eq!(partitions_within(20_000, 0), (20_000 - 512) / 3);
        assert_eq!(partitions_within(20_000, 2048), (20_000 - 512 - 2048) / 3);
        assert_eq!(partitions_within(1024, 2048), (1024 - 256 - 256) / 3);
        assert_eq!(partitions_within(8, 2048), 1);
        assert_eq!(partitions_within(u64::MAX, 0), MAX_TOTAL_PARTITIONS);
        // Up to the server's total, topic after topic; then a clear refusal
        // (a small total here, to keep the test's open files few).
        let mut store = store;
        store.max_total_partitions = 40;
        let per_topic = 16;
        let mut created = 2; // `seg` has 2 partitions.
        let mut n = 0;
        while created + per_topic as usize <= store.max_total_partitions {
            store.create(TopicSpec { partitions: per_topic, ..spec(&format!("wide-{n}")) }).unwrap();
            created += per_topic as usize;
            n += 1;
        }
        let error = store.create(TopicSpec { partitions: per_topic, ..spec("one-too-many") }).unwrap_err();
        assert!(matches!(error, TopicError::Refused { .. }), "{error}");
        assert!(error.to_string().contains(&format!("holds {created} partitions")), "{error}");
        assert!(!dir.join("one-too-many").exists());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
