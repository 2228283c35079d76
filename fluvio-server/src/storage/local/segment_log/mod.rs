//! Durable storage of one topic partition: an append-only log of record
//! batches split into segments, each with an offset index.
//!
//! A segment is two files named after its base offset:
//! `00000000000000000000.log` holds batches back to back, exactly as they
//! travel on the wire; `00000000000000000000.index` holds one entry per batch
//! (base offset, position, length, record count, largest timestamp). Beside
//! the segments, `producers.journal` remembers each producer's latest batches
//! (see [`super::producers`]).
//!
//! On open the last segment is scanned batch by batch and every CRC is
//! checked; a torn or corrupt tail (a crash in the middle of a write) is
//! truncated, and its index rebuilt. A batch is acknowledged only after it
//! and its index entry were written (and, under the default flush policy,
//! synced), so recovery never loses an acknowledged batch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fluvio_protocol::{CheckedBatch, ProducerStamp, RetentionSpec, StoredBatch};
use futures::future::BoxFuture;

use super::producers::ProducerJournal;
use crate::storage::{Partition, StorageError, StoredRun};
pub(crate) use segment::read_at;
use segment::{
    Active, INDEX_ENTRY_LEN, IndexEntry, Segment, check_contiguous, entry_for, io_error, read_index, scan_segment,
    sync_dir, write_index,
};

/// When appended data is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `fsync` every batch before acknowledging it. The default: an
    /// acknowledged record survives a killed server and a power cut.
    EveryBatch,
    /// `fsync` at most once per interval; acknowledged records survive a
    /// killed server (the OS has them) but the last interval may be lost
    /// on power loss.
    Interval(Duration),
    /// Never `fsync`; leave it to the OS. Survives a killed server, not a
    /// power cut.
    Os,
}

/// A flush policy that is not `every-batch`, `interval:MILLISECONDS` or `os`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flush policy {0:?}; use every-batch, interval:MILLISECONDS or os")]
pub struct UnknownFlushPolicy(pub String);

impl std::str::FromStr for FlushPolicy {
    type Err = UnknownFlushPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "every-batch" => Ok(FlushPolicy::EveryBatch),
            "os" => Ok(FlushPolicy::Os),
            _ => match text.strip_prefix("interval:").and_then(|ms| ms.parse::<u64>().ok()) {
                Some(ms) => Ok(FlushPolicy::Interval(Duration::from_millis(ms))),
                None => Err(UnknownFlushPolicy(text.to_string())),
            },
        }
    }
}

/// Settings of one partition log.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Size at which a new segment starts.
    pub segment_bytes: u64,
    /// Retention by age and size.
    pub retention: RetentionSpec,
    /// When to sync.
    pub flush: FlushPolicy,
}

struct LogState {
    segments: Vec<Segment>,
    active: Active,
    next_offset: i64,
    last_sync: Instant,
}

/// One partition's log. Appends are serialized; reads copy what they need
/// to know under a short lock and read the files without it.
///
/// Syncing is a group commit: an append writes under the log lock, then
/// waits for a sync that covers it. One `fsync`, taken outside the log lock,
/// covers every append written before it, so concurrent producers share
/// syncs instead of queueing behind each other's.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    state: Mutex<LogState>,
    /// Held while syncing; appends that find their data already synced by
    /// the holder return without syncing again.
    sync_lock: Mutex<()>,
    /// Every record below this offset is on disk.
    synced: AtomicI64,
    /// The next offset consumers may read up to: advanced only once the
    /// flush policy is satisfied.
    watermark: tokio::sync::watch::Sender<i64>,
    /// Set when a sync failed: what was written since the last good sync
    /// may or may not be on disk, so the partition takes no more appends
    /// until the server restarts and recovery reads what the disk kept.
    failed: Mutex<Option<String>>,
    /// Each producer's last stamped batch and where it was stored, so that
    /// a batch sent again after a lost acknowledgement is stored once, also
    /// across a crash (kept in a journal beside the log).
    producers: Mutex<ProducerJournal>,
    /// The journal's file, for syncing without the producers' lock (held
    /// across whole appends), and whether it has entries not yet synced.
    journal_file: Mutex<Arc<File>>,
    journal_dirty: std::sync::atomic::AtomicBool,
    /// Makes the next sync fail, as a failing disk would: a real fsync error
    /// cannot be caused on demand on this machine's filesystems.
    #[cfg(test)]
    fail_next_sync: std::sync::atomic::AtomicBool,
    /// Runs between a read's plan and its opening of the files, where
    /// retention may delete a planned segment.
    #[cfg(test)]
    between_plan_and_open: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// What [`PartitionLog::open`] found and repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the last segment.
    pub truncated_bytes: u64,
    /// Batches found in the log.
    pub batches: u64,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering from a crash.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(PartitionLog, Recovery), StorageError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut bases: Vec<i64> = fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let mut recovery = Recovery::default();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let last = bases.len() - 1;
        for (i, base_offset) in bases.into_iter().enumerate() {
            let (log_path, index_path) = Segment::paths(dir, base_offset);
            if !log_path.exists() {
                File::create(&log_path).map_err(io_error(&log_path))?;
            }
            let log_len = fs::metadata(&log_path).map_err(io_error(&log_path))?.len();
            let trusted = if i == last {
                None
            } else {
                read_index(&index_path).filter(|e| e.last().map_or(0, |l| l.position + l.len as u64) == log_len)
            };
            let entries = match trusted {
                Some(entries) => entries,
                None => {
                    let (entries, valid_len, file_len) = scan_segment(&log_path)?;
                    if valid_len < file_len {
                        tracing::warn!(path = %log_path.display(), valid_len, file_len, "truncating a torn or corrupt log tail");
                        let file = OpenOptions::new().write(true).open(&log_path).map_err(io_error(&log_path))?;
                        file.set_len(valid_len).map_err(io_error(&log_path))?;
                        file.sync_all().map_err(io_error(&log_path))?;
                        recovery.truncated_bytes += file_len - valid_len;
                    }
                    write_index(&index_path, &entries)?;
                    entries
                }
            };
            check_contiguous(&log_path, base_offset, &entries)?;
            if let Some(previous) = segments.last()
                && let (Some(end), Some(first)) = (previous.entries.last(), entries.first())
                && end.next_offset() != first.base_offset
            {
                return Err(StorageError::Corrupt {
                    path: log_path,
                    position: 0,
                    reason: format!(
                        "the segment starts at offset {}, but the one before it ends at {}",
                        first.base_offset,
                        end.next_offset()
                    ),
                });
            }
            recovery.batches += entries.len() as u64;
            let size = entries.last().map_or(0, |l| l.position + l.len as u64);
            segments.push(Segment { base_offset, log_path, index_path, entries, size });
        }
        let active_segment = segments.last().expect("at least one segment");
        let next_offset = active_segment.entries.last().map_or(active_segment.base_offset, IndexEntry::next_offset);
        let active = Active::open(&active_segment.log_path, &active_segment.index_path)?;
        let journal = ProducerJournal::open(dir, next_offset)?;
        sync_dir(dir)?;
        let (watermark, _) = tokio::sync::watch::channel(next_offset);
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(LogState { segments, active, next_offset, last_sync: Instant::now() }),
            sync_lock: Mutex::new(()),
            synced: AtomicI64::new(next_offset),
            watermark,
            failed: Mutex::new(None),
            journal_file: Mutex::new(journal.file()),
            journal_dirty: std::sync::atomic::AtomicBool::new(false),
            producers: Mutex::new(journal),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            between_plan_and_open: Mutex::new(None),
        };
        Ok((log, recovery))
    }

    /// Appends a producer's batch: checks that its offset deltas are
    /// `0..n`, gives it the next base offset, writes it and its index entry,
    /// and syncs per the flush policy. Returns the base offset.
    pub fn append(&self, batch: CheckedBatch) -> Result<i64, StorageError> {
        self.append_with(batch, None)
    }

    /// Appends a batch, recording `producer`'s stamp in the journal first
    /// when there is one.
    fn append_with(
        &self,
        batch: CheckedBatch,
        producer: Option<(ProducerStamp, &mut ProducerJournal)>,
    ) -> Result<i64, StorageError> {
        let (base_offset, next) = self.write(batch, producer)?;
        let synced = match self.config.flush {
            FlushPolicy::EveryBatch => self.sync_through(next),
            FlushPolicy::Interval(interval) if self.state.lock().last_sync.elapsed() >= interval => self.sync(),
            _ => Ok(()),
        };
        if let Err(error) = synced {
            return Err(self.fail(error));
        }
        self.publish(next);
        Ok(base_offset)
    }

    /// Makes every record below `next` readable (and wakes consumers).
    fn publish(&self, next: i64) {
        self.watermark.send_if_modified(|watermark| {
            let advanced = next > *watermark;
            if advanced {
                *watermark = next;
            }
            advanced
        });
    }

    /// After a failed sync: the batches written since the last good sync
    /// were never acknowledged and must not be read (a producer retrying one
    /// would store it twice), so they are cut from the files, best effort,
    /// and the partition refuses appends until the server is restarted.
    fn fail(&self, error: StorageError) -> StorageError {
        let message = format!(
            "partition {} stopped after a failed sync ({error}); check the disk, then restart the server, which recovers what the disk kept",
            self.dir.display()
        );
        {
            let mut failed = self.failed.lock();
            if failed.is_some() {
                return error;
            }
            tracing::error!("{message}");
            *failed = Some(message);
        }
        let synced = self.synced.load(Ordering::Acquire);
        let mut state = self.state.lock();
        let segment = state.segments.last_mut().expect("active segment");
        let keep = segment.entries.partition_point(|e| e.next_offset() <= synced);
        if keep < segment.entries.len() {
            let cut = segment.entries[keep];
            segment.entries.truncate(keep);
            segment.size = cut.position;
            let _ = state.active.log.set_len(cut.position);
            let _ = state.active.index.set_len(keep as u64 * INDEX_ENTRY_LEN as u64);
            state.next_offset = cut.base_offset;
        }
        error
    }

    fn check_not_failed(&self) -> Result<(), StorageError> {
        match &*self.failed.lock() {
            Some(message) => {
                Err(StorageError::Io { path: self.dir.clone(), source: io::Error::other(message.clone()) })
            }
            None => Ok(()),
        }
    }

    /// Writes a batch (and its index entry) without syncing or making it
    /// readable. Returns its base offset and the next offset after it.
    fn write(
        &self,
        mut batch: CheckedBatch,
        producer: Option<(ProducerStamp, &mut ProducerJournal)>,
    ) -> Result<(i64, i64), StorageError> {
        self.check_not_failed()?;
        let count = batch.record_count();
        if count == 0 {
            return Err(StorageError::InvalidBatch("a batch must hold at least one record".into()));
        }
        if let Some((record, delta)) = batch.misnumbered() {
            return Err(StorageError::InvalidBatch(format!(
                "record {record} has offset delta {delta}; a produced batch must number its records 0, 1, 2, ..."
            )));
        }
        let mut state = self.state.lock();
        let base_offset = state.next_offset;
        batch.set_base_offset(base_offset);
        if state.segments.last().expect("active segment").size >= self.config.segment_bytes {
            self.roll(&mut state)?;
        }
        if let Some((stamp, journal)) = producer {
            // Before the batch: a batch on disk always has its entry there.
            journal.record(stamp, base_offset)?;
            *self.journal_file.lock() = journal.file();
            self.journal_dirty.store(true, Ordering::Release);
        }
        let segment = state.segments.last().expect("active segment");
        let entry = entry_for(&batch, segment.size, now_ms());
        let (log_path, index_path) = (segment.log_path.clone(), segment.index_path.clone());
        let index_len = segment.entries.len() as u64 * INDEX_ENTRY_LEN as u64;
        let written = (&*state.active.log)
            .write_all(batch.as_bytes())
            .map_err(io_error(&log_path))
            .and_then(|()| (&*state.active.index).write_all(&entry.encode()).map_err(io_error(&index_path)));
        if let Err(error) = written {
            // Cut a partial write so the files match the in-memory index;
            // if even that fails, recovery at the next start does it.
            let _ = state.active.log.set_len(entry.position);
            let _ = state.active.index.set_len(index_len);
            return Err(error);
        }
        let segment = state.segments.last_mut().expect("active segment");
        segment.size += entry.len as u64;
        segment.entries.push(entry);
        state.next_offset = entry.next_offset();
        Ok((base_offset, state.next_offset))
    }

    /// Returns once every record below `target` is on disk, syncing if no
    /// one else already did.
    fn sync_through(&self, target: i64) -> Result<(), StorageError> {
        let _syncing = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.sync_locked()
    }

    /// Syncs what is written now; the caller holds `sync_lock`.
    fn sync_locked(&self) -> Result<(), StorageError> {
        self.check_not_failed()?;
        #[cfg(test)]
        if self.fail_next_sync.swap(false, Ordering::Relaxed) {
            return Err(StorageError::Io { path: self.dir.clone(), source: io::Error::other("injected sync failure") });
        }
        let (log, index, upto, path) = {
            let state = self.state.lock();
            let path = state.segments.last().expect("active segment").log_path.clone();
            (Arc::clone(&state.active.log), Arc::clone(&state.active.index), state.next_offset, path)
        };
        let started = Instant::now();
        // The journal first: every batch below `upto` wrote its entry before
        // `upto` was read, to this file or to one compaction synced.
        if self.journal_dirty.swap(false, Ordering::AcqRel) {
            let journal = Arc::clone(&self.journal_file.lock());
            if let Err(source) = journal.sync_data() {
                self.journal_dirty.store(true, Ordering::Release);
                return Err(StorageError::Io { path: self.dir.join(super::producers::JOURNAL_FILE), source });
            }
        }
        log.sync_data().map_err(io_error(&path))?;
        index.sync_data().map_err(io_error(&path))?;
        crate::metrics::observe_sync(started.elapsed());
        self.synced.fetch_max(upto, Ordering::Release);
        self.state.lock().last_sync = Instant::now();
        Ok(())
    }

    fn roll(&self, state: &mut LogState) -> Result<(), StorageError> {
        let base_offset = state.next_offset;
        let (log_path, index_path) = Segment::paths(&self.dir, base_offset);
        state.active.log.sync_all().map_err(io_error(&log_path))?;
        state.active.index.sync_all().map_err(io_error(&index_path))?;
        // Everything so far is in the segment just synced.
        self.synced.fetch_max(state.next_offset, Ordering::Release);
        state.active = Active::open(&log_path, &index_path)?;
        sync_dir(&self.dir)?;
        state.segments.push(Segment { base_offset, log_path, index_path, entries: Vec::new(), size: 0 });
        self.apply_retention_locked(state);
        Ok(())
    }

    /// Deletes segments past the retention limits. The active segment is
    /// never deleted.
    pub fn apply_retention(&self) {
        let mut state = self.state.lock();
        self.apply_retention_locked(&mut state);
    }

    fn apply_retention_locked(&self, state: &mut LogState) {
        let retention = self.config.retention;
        let now = now_ms();
        while state.segments.len() > 1 {
            let total: u64 = state.segments.iter().map(|s| s.size).sum();
            let oldest = &state.segments[0];
            let too_big = retention.max_bytes.is_some_and(|max| total > max);
            let too_old =
                retention.max_age_ms.is_some_and(|max| oldest.last_append_ms().is_some_and(|ts| now - ts > max as i64));
            if !(too_big || too_old) {
                break;
            }
            let oldest = state.segments.remove(0);
            tracing::info!(segment = %oldest.log_path.display(), too_big, too_old, "retention: deleting segment");
            let _ = fs::remove_file(&oldest.log_path);
            let _ = fs::remove_file(&oldest.index_path);
        }
    }

    /// Offset of the first record still stored.
    pub fn start_offset(&self) -> i64 {
        let state = self.state.lock();
        state.segments[0].entries.first().map_or(state.segments[0].base_offset, |e| e.base_offset)
    }

    /// Offset the next record will get.
    pub fn next_offset(&self) -> i64 {
        self.state.lock().next_offset
    }

    /// Follows the next offset as records are appended.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.watermark.subscribe()
    }

    /// Total bytes of all segments.
    pub fn size(&self) -> u64 {
        self.state.lock().segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.state.lock().segments.len()
    }

    /// Reads whole stored batches starting with the one that holds `offset`
    /// (or the first stored one, if `offset` was deleted by retention), up to
    /// about `max_bytes` (always at least one batch when there is one).
    ///
    /// Only acknowledged batches are read: a batch written but not yet
    /// synced (under `every-batch`) may still fail, and must not reach a
    /// consumer before its producer hears it is stored.
    pub fn read(&self, offset: i64, max_bytes: u64) -> Result<Vec<StoredBatch>, StorageError> {
        let readable = *self.watermark.borrow();
        let plan: Vec<(PathBuf, IndexEntry)> = {
            let state = self.state.lock();
            let mut plan = Vec::new();
            let mut bytes = 0u64;
            'segments: for segment in &state.segments {
                if segment.entries.last().is_none_or(|last| last.next_offset() <= offset) {
                    continue;
                }
                let start = segment.entries.partition_point(|e| e.next_offset() <= offset);
                for entry in &segment.entries[start..] {
                    if entry.next_offset() > readable {
                        break 'segments;
                    }
                    if !plan.is_empty() && bytes + entry.len as u64 > max_bytes {
                        break 'segments;
                    }
                    bytes += entry.len as u64;
                    plan.push((segment.log_path.clone(), *entry));
                }
            }
            plan
        };
        #[cfg(test)]
        if let Some(hook) = self.between_plan_and_open.lock().take() {
            hook();
        }
        let mut batches = Vec::with_capacity(plan.len());
        let mut open: Option<(PathBuf, File)> = None;
        for (path, entry) in plan {
            if open.as_ref().is_none_or(|(p, _)| *p != path) {
                match File::open(&path) {
                    Ok(file) => open = Some((path.clone(), file)),
                    // Retention deleted the segment after we planned: the
                    // caller reads again from the new start.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(StorageError::Io { path, source: e }),
                }
            }
            let (_, file) = open.as_ref().expect("file opened above");
            let bytes = read_at(file, entry.position, entry.len as usize).map_err(io_error(&path))?;
            // Checked whole when appended and when recovered; consumers
            // check the CRC again themselves.
            let batch = StoredBatch::from_storage(bytes).map_err(|e| StorageError::Corrupt {
                path: path.clone(),
                position: entry.position,
                reason: e.reason,
            })?;
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Whole acknowledged batches that start exactly at `offset`, back to
    /// back in one segment file, up to about `max_bytes` (at least one
    /// batch); `None` when there is none such (see [`Partition::read_run`]).
    pub fn read_run(&self, offset: i64, max_bytes: u64) -> Result<Option<StoredRun>, StorageError> {
        let readable = *self.watermark.borrow();
        let (path, position, len, next_offset) = {
            let state = self.state.lock();
            let Some(segment) =
                state.segments.iter().find(|s| s.entries.last().is_some_and(|l| l.next_offset() > offset))
            else {
                return Ok(None);
            };
            let start = segment.entries.partition_point(|e| e.next_offset() <= offset);
            let first = segment.entries[start];
            if first.base_offset != offset || first.next_offset() > readable {
                return Ok(None);
            }
            let (mut len, mut next_offset) = (first.len as u64, first.next_offset());
            for entry in &segment.entries[start + 1..] {
                // Appends are contiguous within a segment; the check keeps
                // a run to bytes the index vouches for even if one is not.
                if entry.next_offset() > readable
                    || len + entry.len as u64 > max_bytes
                    || entry.position != first.position + len
                {
                    break;
                }
                len += entry.len as u64;
                next_offset = entry.next_offset();
            }
            (segment.log_path.clone(), first.position, len, next_offset)
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            // Retention deleted the segment meanwhile: `read` finds the new
            // start.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::Io { path, source: e }),
        };
        let len = usize::try_from(len).expect("a run is at most max_bytes plus one batch");
        Ok(Some(StoredRun { file: Arc::new(file), path, position, len, next_offset }))
    }

    /// Under the interval flush policy, syncs when the last sync is older
    /// than the interval (appends alone would leave a quiet partition's last
    /// writes unsynced).
    pub fn sync_if_due(&self) -> Result<(), StorageError> {
        let FlushPolicy::Interval(interval) = self.config.flush else { return Ok(()) };
        if self.state.lock().last_sync.elapsed() < interval {
            return Ok(());
        }
        self.sync()
    }

    /// Syncs everything written so far (for the interval policy and shutdown).
    pub fn sync(&self) -> Result<(), StorageError> {
        let _syncing = self.sync_lock.lock();
        self.sync_locked()
    }
}

impl Partition for PartitionLog {
    // File I/O and fsync block; `block_in_place` lets the runtime move its
    // other tasks off this thread meanwhile, without a thread hop per call.
    fn append(&self, batch: CheckedBatch, producer: Option<ProducerStamp>) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            let Some(stamp) = producer else {
                return tokio::task::block_in_place(|| PartitionLog::append(self, batch));
            };
            // A stopped partition answers no retry from its memory: the
            // batch it remembers may have been cut.
            self.check_not_failed()?;
            // Held across the append: a retry racing its original waits
            // for it and then finds it.
            let mut producers = self.producers.lock();
            if let Some(base_offset) = producers.find(stamp) {
                return Ok(base_offset);
            }
            tokio::task::block_in_place(|| self.append_with(batch, Some((stamp, &mut producers))))
        })
    }

    fn read(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Vec<StoredBatch>, StorageError>> {
        Box::pin(async move { tokio::task::block_in_place(|| PartitionLog::read(self, offset, max_bytes)) })
    }

    fn read_run(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Option<StoredRun>, StorageError>> {
        Box::pin(async move { PartitionLog::read_run(self, offset, max_bytes) })
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.size())
    }

    fn start_offset(&self) -> i64 {
        PartitionLog::start_offset(self)
    }

    fn next_offset(&self) -> i64 {
        PartitionLog::next_offset(self)
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        PartitionLog::subscribe(self)
    }
}

mod segment;
#[cfg(test)]
mod tests;
