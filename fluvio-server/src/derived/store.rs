//! Where derived topics' settings, checkpoints and leases are kept: files
//! in the data directory on a local log (one server, so every lease is its
//! own), or the JetStream cluster's buckets where servers share topics.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::provenance::Position;
use super::{DerivationSpec, DerivedError};
use crate::storage::TopicError;
use crate::storage::jetstream::{DerivedBuckets, pipeline_key};

/// A windowed pipeline's saved state: its chain as of the source offset
/// `next`, every output of the records before it stored. A restart builds
/// the chain from it and runs the source from `next` up to where the
/// output ends again without appending, which brings the windows to where
/// they were; the outputs of those records are the ones already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCheckpoint {
    /// Counts the saves: the two last are kept, in slots by its parity.
    pub generation: u64,
    /// What chain saved it (a hash of its invocations): state is restored
    /// only into the same chain.
    pub fingerprint: u64,
    /// The next source offset.
    pub next: i64,
    /// Each plain aggregate's accumulator, by place in the chain.
    pub accumulators: Vec<(usize, Vec<u8>)>,
    /// Each windowed aggregate's state, by place in the chain.
    pub windows: Vec<(usize, Vec<u8>)>,
}

const WINDOW_CHECKPOINT_MAGIC: &[u8; 4] = b"FWC1";

impl WindowCheckpoint {
    /// The checkpoint as stored.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.windows.iter().chain(&self.accumulators).map(|(_, bytes)| bytes.len() + 8).sum();
        let mut out = Vec::with_capacity(32 + size);
        out.extend_from_slice(WINDOW_CHECKPOINT_MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        for list in [&self.accumulators, &self.windows] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (place, bytes) in list {
                out.extend_from_slice(&(*place as u32).to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// A stored checkpoint; `None` when the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<WindowCheckpoint> {
        let mut rest = bytes.strip_prefix(WINDOW_CHECKPOINT_MAGIC)?;
        let mut take = |len: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(len)?;
            rest = tail;
            Some(head)
        };
        let generation = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let fingerprint = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let next = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
            for _ in 0..count {
                let place = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                let len = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
                list.push((place, take(len)?.to_vec()));
            }
        }
        let [accumulators, windows] = lists;
        rest.is_empty().then_some(WindowCheckpoint { generation, fingerprint, next, accumulators, windows })
    }
}

/// Whose windows a save holds.
#[derive(Debug, Clone, Copy)]
pub enum WindowsOwner<'a> {
    /// A derived topic's pipeline.
    Pipeline {
        /// The derived topic.
        name: &'a str,
        /// The source partition.
        partition: u32,
    },
    /// A consumer id's stream of a partition.
    Consumer {
        /// The consumer id.
        consumer: &'a str,
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: u32,
    },
}

impl WindowsOwner<'_> {
    /// The file or object of save slot `slot` (0 or 1). A consumer's is
    /// named by a hash: consumer ids may hold any character.
    fn object(&self, slot: u64) -> String {
        match self {
            WindowsOwner::Pipeline { name, partition } => format!("{name}.{partition}.windows{slot}"),
            WindowsOwner::Consumer { consumer, topic, partition } => {
                let hash = crate::fnv1a(format!("{consumer}\0{topic}\0{partition}").as_bytes());
                format!("consumer-{hash:016x}.windows{slot}")
            }
        }
    }
}

/// What a pipeline's lease says of the server running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The server's id.
    pub server: i32,
    /// Its address.
    pub address: String,
    /// The next source offset it will read, as of its last renewal.
    pub source_offset: i64,
}

/// A lease held: renewed with the revision it was last written at.
#[derive(Debug)]
pub struct Lease {
    key: String,
    revision: u64,
}

/// The result of asking for a lease.
pub enum Acquired {
    /// Ours now.
    Lease(Lease),
    /// Another server holds it.
    HeldBy(Option<Holder>),
}

/// The store of one server's derived topics.
pub enum DerivedStore {
    /// Files under a directory of the data directory.
    Local(PathBuf),
    /// The buckets of a JetStream cluster.
    Shared(Box<DerivedBuckets>),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DerivedError + '_ {
    move |source| DerivedError::Io { path: path.to_path_buf(), source }
}

fn invalid(path: &Path, error: serde_json::Error) -> DerivedError {
    DerivedError::Io { path: path.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, error) }
}

impl DerivedStore {
    fn spec_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.json"))
    }

    fn checkpoint_path(dir: &Path, name: &str, partition: u32) -> PathBuf {
        dir.join(format!("{name}.{partition}.checkpoint"))
    }

    /// Every derived topic's settings.
    pub async fn load(&self) -> Result<Vec<DerivationSpec>, DerivedError> {
        match self {
            DerivedStore::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
                let mut specs = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
                    let path = entry.map_err(io_error(dir))?.path();
                    if path.extension().is_some_and(|extension| extension == "json") {
                        let text = std::fs::read(&path).map_err(io_error(&path))?;
                        specs.push(serde_json::from_slice(&text).map_err(|error| invalid(&path, error))?);
                    }
                }
                Ok(specs)
            }
            DerivedStore::Shared(buckets) => {
                let mut specs = Vec::new();
                for value in buckets.specs().await? {
                    match serde_json::from_slice(&value) {
                        Ok(spec) => specs.push(spec),
                        Err(error) => {
                            tracing::error!(%error, "a derived topic's settings in the cluster are unreadable")
                        }
                    }
                }
                Ok(specs)
            }
        }
    }

    /// Stores a new derived topic's settings; refused when they exist.
    pub async fn create(&self, spec: &DerivationSpec) -> Result<(), DerivedError> {
        let text = serde_json::to_vec_pretty(spec).expect("settings serialize");
        let created = match self {
            DerivedStore::Local(dir) => {
                let path = Self::spec_path(dir, &spec.name);
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut file) => {
                        std::io::Write::write_all(&mut file, &text).map_err(io_error(&path))?;
                        true
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(error) => return Err(io_error(&path)(error)),
                }
            }
            DerivedStore::Shared(buckets) => buckets.create_spec(&spec.name, Bytes::from(text)).await?,
        };
        if created { Ok(()) } else { Err(DerivedError::Topic(TopicError::Exists(spec.name.clone()))) }
    }

    /// Forgets a derived topic's settings and its pipelines' checkpoints.
    pub async fn remove(&self, name: &str, partitions: u32) -> Result<(), DerivedError> {
        match self {
            DerivedStore::Local(dir) => {
                let path = Self::spec_path(dir, name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io_error(&path)(error)),
                }
                for partition in 0..partitions {
                    let _ = std::fs::remove_file(Self::checkpoint_path(dir, name, partition));
                    for slot in 0..2 {
                        let _ = std::fs::remove_file(dir.join(WindowsOwner::Pipeline { name, partition }.object(slot)));
                    }
                }
            }
            DerivedStore::Shared(buckets) => {
                buckets.delete_spec(name).await?;
                for partition in 0..partitions {
                    buckets.delete_checkpoint(&pipeline_key(name, partition)).await?;
                    for slot in 0..2 {
                        buckets.delete_windows(&WindowsOwner::Pipeline { name, partition }.object(slot)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The progress a pipeline noted last, if any.
    pub async fn checkpoint(&self, name: &str, partition: u32) -> Result<Option<Position>, DerivedError> {
        let bytes = match self {
            DerivedStore::Local(dir) => {
                std::fs::read(Self::checkpoint_path(dir, name, partition)).ok().map(Bytes::from)
            }
            DerivedStore::Shared(buckets) => buckets.checkpoint(&pipeline_key(name, partition)).await?,
        };
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Notes a pipeline's progress. On a local log the file is replaced
    /// whole by a rename, so that it is never half written; it is synced
    /// only when `durable` (a routed pipeline resumes from it, so it must
    /// survive a power loss; otherwise it only saves reading records again).
    pub async fn save_checkpoint(
        &self,
        name: &str,
        partition: u32,
        position: &Position,
        durable: bool,
    ) -> Result<(), DerivedError> {
        let text = serde_json::to_vec(position).expect("a position serializes");
        match self {
            DerivedStore::Local(dir) => {
                let path = Self::checkpoint_path(dir, name, partition);
                let temporary = path.with_extension("checkpoint.tmp");
                let mut file = std::fs::File::create(&temporary).map_err(io_error(&temporary))?;
                std::io::Write::write_all(&mut file, &text).map_err(io_error(&temporary))?;
                if durable {
                    file.sync_data().map_err(io_error(&temporary))?;
                }
                drop(file);
                std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
                if durable {
                    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_error(dir))?;
                }
                Ok(())
            }
            DerivedStore::Shared(buckets) => {
                Ok(buckets.put_checkpoint(&pipeline_key(name, partition), Bytes::from(text)).await?)
            }
        }
    }

    /// The saved windows of `owner` (the last two saves that read back),
    /// the latest first.
    pub async fn window_checkpoints(&self, owner: WindowsOwner<'_>) -> Result<Vec<WindowCheckpoint>, DerivedError> {
        let mut found = Vec::new();
        for slot in 0..2 {
            let object = owner.object(slot);
            let bytes = match self {
                DerivedStore::Local(dir) => std::fs::read(dir.join(&object)).ok(),
                DerivedStore::Shared(buckets) => buckets.windows(&object).await?,
            };
            match bytes.as_deref().map(WindowCheckpoint::decode) {
                Some(Some(checkpoint)) => found.push(checkpoint),
                Some(None) => tracing::warn!(object, "saved windows that do not read back are ignored"),
                None => {}
            }
        }
        found.sort_by_key(|checkpoint| std::cmp::Reverse(checkpoint.generation));
        Ok(found)
    }

    /// Forgets `owner`'s saved windows.
    pub async fn remove_windows(&self, owner: WindowsOwner<'_>) -> Result<(), DerivedError> {
        for slot in 0..2 {
            let object = owner.object(slot);
            match self {
                DerivedStore::Local(dir) => {
                    let path = dir.join(object);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => return Err(io_error(&path)(error)),
                    }
                }
                DerivedStore::Shared(buckets) => buckets.delete_windows(&object).await?,
            }
        }
        Ok(())
    }

    /// Saves `owner`'s windows over the older of its two saves, durably.
    pub async fn save_window_checkpoint(
        &self,
        owner: WindowsOwner<'_>,
        checkpoint: &WindowCheckpoint,
    ) -> Result<(), DerivedError> {
        let object = owner.object(checkpoint.generation % 2);
        let bytes = checkpoint.encode();
        match self {
            DerivedStore::Local(dir) => {
                let path = dir.join(object);
                let written = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || fluvio_fs::write_atomic(&path, &bytes)
                })
                .await
                .map_err(|error| io_error(&path)(std::io::Error::other(error)))?;
                written.map_err(io_error(&path))
            }
            DerivedStore::Shared(buckets) => Ok(buckets.put_windows(&object, &bytes).await?),
        }
    }

    /// Asks for a pipeline's lease. On a local log it is always granted:
    /// one server owns the data directory.
    pub async fn acquire(&self, name: &str, partition: u32, holder: &Holder) -> Result<Acquired, DerivedError> {
        let key = pipeline_key(name, partition);
        match self {
            DerivedStore::Local(_) => Ok(Acquired::Lease(Lease { key, revision: 0 })),
            DerivedStore::Shared(buckets) => {
                let value = Bytes::from(serde_json::to_vec(holder).expect("a holder serializes"));
                match buckets.acquire(&key, value).await? {
                    Some(revision) => Ok(Acquired::Lease(Lease { key, revision })),
                    None => {
                        let holder = buckets.lease(&key).await?.and_then(|bytes| serde_json::from_slice(&bytes).ok());
                        Ok(Acquired::HeldBy(holder))
                    }
                }
            }
        }
    }

    /// Renews a lease; `false` when it was lost.
    pub async fn renew(&self, lease: &mut Lease, holder: &Holder) -> Result<bool, DerivedError> {
        match self {
            DerivedStore::Local(_) => Ok(true),
            DerivedStore::Shared(buckets) => {
                let value = Bytes::from(serde_json::to_vec(holder).expect("a holder serializes"));
                match buckets.renew(&lease.key, value, lease.revision).await? {
                    Some(revision) => {
                        lease.revision = revision;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
    }

    /// Gives a lease up, so that another server may take it at once.
    pub async fn release(&self, lease: Lease) {
        if let DerivedStore::Shared(buckets) = self {
            buckets.release(&lease.key, lease.revision).await;
        }
    }

    /// Whether several servers share these derived topics.
    pub fn is_shared(&self) -> bool {
        matches!(self, DerivedStore::Shared(_))
    }
}
