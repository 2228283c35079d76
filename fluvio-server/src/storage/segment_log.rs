//! Durable storage of one topic partition: an append-only log of record
//! batches split into segments, each with an offset index.
//!
//! A segment is two files named after its base offset:
//! `00000000000000000000.log` holds batches back to back, exactly as they
//! travel on the wire; `00000000000000000000.index` holds one entry per batch
//! (base offset, position, length, record count, largest timestamp). Beside
//! the segments, `producers.journal` remembers each producer's latest batch
//! (see [`super::producers`]).
//!
//! On open the last segment is scanned batch by batch and every CRC is
//! checked; a torn or corrupt tail (a crash in the middle of a write) is
//! truncated, and its index rebuilt. A batch is acknowledged only after it
//! and its index entry were written (and, under the default flush policy,
//! synced), so recovery never loses an acknowledged batch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fluvio_protocol::{Batch, ProducerStamp, RetentionSpec};
use fluvio_smartmodule::abi;
use fluvio_smartmodule::codec::{ByteReader, FormatError, PutBytes};
use futures::future::BoxFuture;

use super::producers::ProducerJournal;
use super::{Partition, StorageError, StoredRun};

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

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

const INDEX_ENTRY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    base_offset: i64,
    position: u64,
    len: u32,
    record_count: u32,
    /// When the server appended the batch (milliseconds since the epoch).
    appended_ms: i64,
}

impl IndexEntry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_ENTRY_LEN);
        out.put_i64(self.base_offset);
        out.put_u64(self.position);
        out.put_u32(self.len);
        out.put_u32(self.record_count);
        out.put_i64(self.appended_ms);
        out
    }

    fn decode(reader: &mut ByteReader<'_>) -> Result<IndexEntry, FormatError> {
        Ok(IndexEntry {
            base_offset: reader.i64("index base offset")?,
            position: reader.u64("index position")?,
            len: reader.u32("index batch length")?,
            record_count: reader.u32("index record count")?,
            appended_ms: reader.i64("index append time")?,
        })
    }

    fn next_offset(&self) -> i64 {
        self.base_offset + self.record_count as i64
    }
}

#[derive(Debug)]
struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    index_path: PathBuf,
    entries: Vec<IndexEntry>,
    size: u64,
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf) {
        (dir.join(format!("{base_offset:020}.log")), dir.join(format!("{base_offset:020}.index")))
    }

    /// When the segment's newest batch was appended.
    fn last_append_ms(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.appended_ms).max()
    }
}

/// The active segment's files, shared so that a sync can run without the
/// log lock (`&File` implements `Write`).
struct Active {
    log: Arc<File>,
    index: Arc<File>,
}

impl Active {
    fn open(log_path: &Path, index_path: &Path) -> Result<Active, StorageError> {
        Ok(Active { log: Arc::new(open_append(log_path)?), index: Arc::new(open_append(index_path)?) })
    }
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

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Scans a segment's log file: every batch whose header, records and CRC
/// check out, up to the first that does not. Returns the entries and the
/// length of the valid prefix.
fn scan_segment(log_path: &Path) -> Result<(Vec<IndexEntry>, u64, u64), StorageError> {
    let mut file = File::open(log_path).map_err(io_error(log_path))?;
    let metadata = file.metadata().map_err(io_error(log_path))?;
    let file_len = metadata.len();
    // When each batch was appended is lost with the index; the segment's
    // last write is a time no batch in it is younger than.
    let last_write_ms = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(now_ms, |age| age.as_millis() as i64);
    let mut bytes = Vec::with_capacity(file_len as usize);
    file.read_to_end(&mut bytes).map_err(io_error(log_path))?;
    let mut entries = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        let rest = &bytes[position..];
        let Ok(header) = abi::BatchHeader::parse(rest) else { break };
        let len = header.batch_len as usize;
        let Ok(batch) = Batch::from_bytes(rest[..len].to_vec()) else { break };
        entries.push(entry_for(&batch, position as u64, last_write_ms));
        position += len;
    }
    Ok((entries, position as u64, file_len))
}

/// The first record of a batch whose offset delta is not its position (a
/// produced batch must number records 0, 1, 2, ...).
fn misnumbered(batch: &Batch) -> Option<(usize, i64)> {
    if batch.compression() != fluvio_protocol::Compression::None {
        // Checked when the batch was built: compressed ones are numbered 0, 1, 2...
        return None;
    }
    let base = batch.base_offset();
    batch
        .records()
        .enumerate()
        .map(|(position, record)| (position, record.offset - base))
        .find(|(p, d)| *d != *p as i64)
}

/// Offsets must run on without gap or overlap from the segment's first
/// offset (its file name): a batch's CRC does not cover its base offset, so
/// a damaged one passes every other check and would hand out offsets twice.
fn check_contiguous(log_path: &Path, segment_base: i64, entries: &[IndexEntry]) -> Result<(), StorageError> {
    let mut expected = segment_base;
    for entry in entries {
        if entry.base_offset != expected {
            return Err(StorageError::Corrupt {
                path: log_path.to_path_buf(),
                position: entry.position,
                reason: format!(
                    "the batch starts at offset {}, where offset {expected} was expected; restore the partition from a backup, or move the topic's directory away",
                    entry.base_offset
                ),
            });
        }
        expected = entry.next_offset();
    }
    Ok(())
}

/// `appended_ms` is when the server stored the batch: retention by age
/// counts from it, never from the producer's record timestamps (one record
/// stamped in the future would otherwise hold retention back for ever).
fn entry_for(batch: &Batch, position: u64, appended_ms: i64) -> IndexEntry {
    IndexEntry {
        base_offset: batch.base_offset(),
        position,
        len: batch.as_bytes().len() as u32,
        record_count: batch.record_count(),
        appended_ms,
    }
}

/// A segment's index, when it is whole; `None` sends the caller to rebuild
/// it from the log.
/// Reads `len` bytes at `position` into a new buffer, without zeroing it
/// first (a consumer reading a partition from the start reads every stored
/// byte once; zeroing would touch each of them a second time).
pub(crate) fn read_at(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut bytes = fluvio_protocol::buffers::take(len);
    while bytes.len() < len {
        let missing = len - bytes.len();
        let at = libc::off_t::try_from(position + bytes.len() as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "position past what pread takes"))?;
        // SAFETY: the destination is the vector's spare capacity, `missing`
        // bytes long; pread writes at most that many and returns how many.
        let read = unsafe { libc::pread(file.as_raw_fd(), bytes.as_mut_ptr().add(bytes.len()).cast(), missing, at) };
        match read {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            // SAFETY: pread initialized `read` more bytes (at most `missing`).
            read => unsafe { bytes.set_len(bytes.len() + read as usize) },
        }
    }
    Ok(bytes)
}

fn read_index(index_path: &Path) -> Option<Vec<IndexEntry>> {
    let bytes = fs::read(index_path).ok()?;
    if bytes.len() % INDEX_ENTRY_LEN != 0 {
        return None;
    }
    let mut reader = ByteReader::new(&bytes);
    (0..bytes.len() / INDEX_ENTRY_LEN).map(|_| IndexEntry::decode(&mut reader).ok()).collect()
}

fn write_index(index_path: &Path, entries: &[IndexEntry]) -> Result<(), StorageError> {
    let bytes: Vec<u8> = entries.iter().flat_map(IndexEntry::encode).collect();
    fluvio_fs::write_atomic(index_path, &bytes).map_err(io_error(index_path))
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fluvio_fs::sync_dir(dir).map_err(io_error(dir))
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
    pub fn append(&self, batch: Batch) -> Result<i64, StorageError> {
        self.append_with(batch, None)
    }

    /// Appends a batch, recording `producer`'s stamp in the journal first
    /// when there is one.
    fn append_with(
        &self,
        batch: Batch,
        producer: Option<(ProducerStamp, &mut ProducerJournal)>,
    ) -> Result<i64, StorageError> {
        let (base_offset, next) = self.write(batch, producer)?;
        let synced = match self.config.flush {
            FlushPolicy::EveryBatch => self.sync_through(next),
            FlushPolicy::Interval(interval) if self.state.lock().expect("log lock").last_sync.elapsed() >= interval => {
                self.sync()
            }
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
            let mut failed = self.failed.lock().expect("failed lock");
            if failed.is_some() {
                return error;
            }
            tracing::error!("{message}");
            *failed = Some(message);
        }
        let synced = self.synced.load(Ordering::Acquire);
        let mut state = self.state.lock().expect("log lock");
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
        match &*self.failed.lock().expect("failed lock") {
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
        mut batch: Batch,
        producer: Option<(ProducerStamp, &mut ProducerJournal)>,
    ) -> Result<(i64, i64), StorageError> {
        self.check_not_failed()?;
        let count = batch.record_count();
        if count == 0 {
            return Err(StorageError::InvalidBatch("a batch must hold at least one record".into()));
        }
        if let Some((record, delta)) = misnumbered(&batch) {
            return Err(StorageError::InvalidBatch(format!(
                "record {record} has offset delta {delta}; a produced batch must number its records 0, 1, 2, ..."
            )));
        }
        let mut state = self.state.lock().expect("log lock");
        let base_offset = state.next_offset;
        batch.set_base_offset(base_offset);
        if state.segments.last().expect("active segment").size >= self.config.segment_bytes {
            self.roll(&mut state)?;
        }
        if let Some((stamp, journal)) = producer {
            // Before the batch: a batch on disk always has its entry there.
            journal.record(stamp, base_offset)?;
            *self.journal_file.lock().expect("journal lock") = journal.file();
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
        let _syncing = self.sync_lock.lock().expect("sync lock");
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
            let state = self.state.lock().expect("log lock");
            let path = state.segments.last().expect("active segment").log_path.clone();
            (Arc::clone(&state.active.log), Arc::clone(&state.active.index), state.next_offset, path)
        };
        // The journal first: every batch below `upto` wrote its entry before
        // `upto` was read, to this file or to one compaction synced.
        if self.journal_dirty.swap(false, Ordering::AcqRel) {
            let journal = Arc::clone(&self.journal_file.lock().expect("journal lock"));
            if let Err(source) = journal.sync_data() {
                self.journal_dirty.store(true, Ordering::Release);
                return Err(StorageError::Io { path: self.dir.join(super::producers::JOURNAL_FILE), source });
            }
        }
        log.sync_data().map_err(io_error(&path))?;
        index.sync_data().map_err(io_error(&path))?;
        self.synced.fetch_max(upto, Ordering::Release);
        self.state.lock().expect("log lock").last_sync = Instant::now();
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
        let mut state = self.state.lock().expect("log lock");
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
        let state = self.state.lock().expect("log lock");
        state.segments[0].entries.first().map_or(state.segments[0].base_offset, |e| e.base_offset)
    }

    /// Offset the next record will get.
    pub fn next_offset(&self) -> i64 {
        self.state.lock().expect("log lock").next_offset
    }

    /// Follows the next offset as records are appended.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.watermark.subscribe()
    }

    /// Total bytes of all segments.
    pub fn size(&self) -> u64 {
        self.state.lock().expect("log lock").segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.state.lock().expect("log lock").segments.len()
    }

    /// Reads whole stored batches starting with the one that holds `offset`
    /// (or the first stored one, if `offset` was deleted by retention), up to
    /// about `max_bytes` (always at least one batch when there is one).
    ///
    /// Only acknowledged batches are read: a batch written but not yet
    /// synced (under `every-batch`) may still fail, and must not reach a
    /// consumer before its producer hears it is stored.
    pub fn read(&self, offset: i64, max_bytes: u64) -> Result<Vec<Batch>, StorageError> {
        let readable = *self.watermark.borrow();
        let plan: Vec<(PathBuf, IndexEntry)> = {
            let state = self.state.lock().expect("log lock");
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
        if let Some(hook) = self.between_plan_and_open.lock().expect("hook lock").take() {
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
            let batch = Batch::from_stored_bytes(bytes).map_err(|e| StorageError::Corrupt {
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
            let state = self.state.lock().expect("log lock");
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
        if self.state.lock().expect("log lock").last_sync.elapsed() < interval {
            return Ok(());
        }
        self.sync()
    }

    /// Syncs everything written so far (for the interval policy and shutdown).
    pub fn sync(&self) -> Result<(), StorageError> {
        let _syncing = self.sync_lock.lock().expect("sync lock");
        self.sync_locked()
    }
}

impl Partition for PartitionLog {
    // File I/O and fsync block; `block_in_place` lets the runtime move its
    // other tasks off this thread meanwhile, without a thread hop per call.
    fn append(&self, batch: Batch, producer: Option<ProducerStamp>) -> BoxFuture<'_, Result<i64, StorageError>> {
        Box::pin(async move {
            let Some(stamp) = producer else {
                return tokio::task::block_in_place(|| PartitionLog::append(self, batch));
            };
            // A stopped partition answers no retry from its memory: the
            // batch it remembers may have been cut.
            self.check_not_failed()?;
            // Held across the append: a retry racing its original waits
            // for it and then finds it.
            let mut producers = self.producers.lock().expect("producers lock");
            if let Some(base_offset) = producers.find(stamp) {
                return Ok(base_offset);
            }
            tokio::task::block_in_place(|| self.append_with(batch, Some((stamp, &mut producers))))
        })
    }

    fn read(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Vec<Batch>, StorageError>> {
        Box::pin(async move { tokio::task::block_in_place(|| PartitionLog::read(self, offset, max_bytes)) })
    }

    fn read_run(&self, offset: i64, max_bytes: u64) -> BoxFuture<'_, Result<Option<StoredRun>, StorageError>> {
        Box::pin(async move { PartitionLog::read_run(self, offset, max_bytes) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::BatchBuilder;

    fn config() -> LogConfig {
        LogConfig { segment_bytes: 1 << 20, retention: RetentionSpec::default(), flush: FlushPolicy::EveryBatch }
    }

    fn batch(values: &[&str]) -> Batch {
        let mut builder = BatchBuilder::new(0, now_ms());
        for v in values {
            builder.push_value(None, v.as_bytes());
        }
        builder.finish()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fluvio-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_segment_deleted_by_retention_between_a_reads_plan_and_its_open_reads_again_from_the_new_start() {
        let dir = temp_dir("retention-race");
        let small = LogConfig { segment_bytes: 64, ..config() };
        let (log, _) = PartitionLog::open(&dir, small).unwrap();
        let log = Arc::new(log);
        for n in 0..6 {
            log.append(batch(&[&format!("record {n}")])).unwrap();
        }
        assert!(log.state.lock().unwrap().segments.len() >= 4, "one batch per segment");
        // Retention that keeps only the newest segments, run right after
        // the read planned to start in the oldest one.
        let racing = Arc::clone(&log);
        *log.between_plan_and_open.lock().unwrap() = Some(Box::new(move || {
            let mut state = racing.state.lock().unwrap();
            while state.segments.len() > 2 {
                let oldest = state.segments.remove(0);
                fs::remove_file(&oldest.log_path).unwrap();
                fs::remove_file(&oldest.index_path).unwrap();
            }
        }));
        // Not an error and no records from a deleted file: nothing, so
        // the stream loop reads again (the watermark is past its offset).
        assert!(log.read(0, 1 << 20).unwrap().is_empty());
        assert!(*log.watermark.borrow() > 0);
        let again = log.read(0, 1 << 20).unwrap();
        let first = again.first().expect("the records left").base_offset();
        assert_eq!(first, log.start_offset());
        assert_eq!(again.last().unwrap().next_offset(), log.next_offset(), "read through to the end");
    }

    #[test]
    fn a_run_is_the_file_bytes_of_whole_batches_from_a_batch_start() {
        use std::os::unix::fs::FileExt;
        let dir = temp_dir("runs");
        let small = LogConfig { segment_bytes: 300, ..config() };
        let (log, _) = PartitionLog::open(&dir, small).unwrap();
        let batches: Vec<Batch> = (0..8).map(|n| batch(&[&format!("record {n}a"), &format!("record {n}b")])).collect();
        for batch in &batches {
            log.append(batch.clone()).unwrap();
        }
        let stored = log.read(0, u64::MAX).unwrap();
        assert_eq!(stored.len(), 8);
        assert!(log.segment_count() > 1, "several segments");

        // Runs follow one another to the end, each within one segment and
        // each the stored batches' exact bytes.
        let (mut offset, mut seen) = (0, Vec::new());
        while let Some(run) = log.read_run(offset, 1 << 20).unwrap() {
            let mut bytes = vec![0; run.len];
            run.file.read_exact_at(&mut bytes, run.position).unwrap();
            seen.extend_from_slice(&bytes);
            assert!(run.next_offset > offset);
            offset = run.next_offset;
        }
        assert_eq!(offset, 16, "to the end");
        let expected: Vec<u8> = stored.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
        assert_eq!(seen, expected);

        // At least one batch, whatever the limit; more only within it.
        let one = log.read_run(0, 1).unwrap().unwrap();
        assert_eq!((one.len, one.next_offset), (stored[0].as_bytes().len(), 2));
        let two = stored[0].as_bytes().len() + stored[1].as_bytes().len();
        let run = log.read_run(0, two as u64).unwrap().unwrap();
        assert!(run.next_offset <= 4);
        // Inside a batch, past the end: the caller reads batches instead.
        assert!(log.read_run(1, 1 << 20).unwrap().is_none());
        assert!(log.read_run(16, 1 << 20).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_batch_resent_after_a_crash_is_stored_once() {
        let dir = temp_dir("resent-after-crash");
        let stamp = ProducerStamp { id: 42, sequence: 3 };
        {
            // Stored, then the server dies before it can acknowledge.
            let (log, _) = PartitionLog::open(&dir, config()).unwrap();
            Partition::append(&log, batch(&["x"]), None).await.unwrap();
            assert_eq!(Partition::append(&log, batch(&["a", "b"]), Some(stamp)).await.unwrap(), 1);
        }
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(
            Partition::append(&log, batch(&["a", "b"]), Some(stamp)).await.unwrap(),
            1,
            "found, not stored again"
        );
        assert_eq!(log.next_offset(), 3);
        let next = ProducerStamp { id: 42, sequence: 4 };
        assert_eq!(Partition::append(&log, batch(&["c"]), Some(next)).await.unwrap(), 3);
        // A journal entry whose batch did not reach the log is forgotten.
        drop(log);
        let journal = dir.join(super::super::producers::JOURNAL_FILE);
        let mut bytes = fs::read(&journal).unwrap();
        bytes.extend(super::super::producers::encode(9, 0, 4));
        fs::write(&journal, bytes).unwrap();
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        let lost = ProducerStamp { id: 9, sequence: 0 };
        assert_eq!(Partition::append(&log, batch(&["d"]), Some(lost)).await.unwrap(), 4, "stored now");
        assert_eq!(log.next_offset(), 5);
    }

    #[test]
    fn a_batch_whose_base_offset_was_damaged_is_reported_not_served() {
        let dir = temp_dir("offset-damage");
        {
            let (log, _) = PartitionLog::open(&dir, config()).unwrap();
            for value in ["a", "b", "c"] {
                log.append(batch(&[value])).unwrap();
            }
        }
        // The second batch's base offset says 0 again: its CRC still
        // checks out.
        let log_path = dir.join(format!("{:020}.log", 0));
        let mut bytes = fs::read(&log_path).unwrap();
        let first_len = abi::BatchHeader::parse(&bytes).unwrap().batch_len as usize;
        bytes[first_len..first_len + 8].copy_from_slice(&0i64.to_le_bytes());
        fs::write(&log_path, &bytes).unwrap();
        let _ = fs::remove_file(dir.join(format!("{:020}.index", 0)));
        let error = PartitionLog::open(&dir, config()).err().expect("a damaged offset is refused");
        let message = error.to_string();
        assert!(matches!(error, StorageError::Corrupt { .. }), "{message}");
        assert!(message.contains("where offset 1 was expected"), "{message}");
        // Nothing was cut.
        assert_eq!(fs::read(&log_path).unwrap(), bytes);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_written_but_not_acknowledged_are_not_read() {
        let dir = temp_dir("unacknowledged");
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        log.append(batch(&["acknowledged"])).unwrap();
        let (base, next) = log.write(batch(&["in flight"]), None).unwrap();
        assert_eq!((base, next), (1, 2));
        assert_eq!(all_values(&log, 0), [(0, "acknowledged".to_string())]);
        assert!(log.read(1, u64::MAX).unwrap().is_empty());
        log.publish(next);
        assert_eq!(all_values(&log, 0), [(0, "acknowledged".to_string()), (1, "in flight".to_string())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_sync_stops_the_partition_and_never_shows_the_unacknowledged_batch() {
        let dir = temp_dir("failed-sync");
        {
            let (log, _) = PartitionLog::open(&dir, config()).unwrap();
            log.append(batch(&["kept"])).unwrap();
            log.fail_next_sync.store(true, Ordering::Relaxed);
            let error = log.append(batch(&["lost"])).unwrap_err();
            assert!(error.to_string().contains("injected sync failure"), "{error}");
            assert_eq!(all_values(&log, 0), [(0, "kept".to_string())]);
            let refused = log.append(batch(&["after"])).unwrap_err();
            assert!(refused.to_string().contains("restart the server"), "{refused}");
            assert_eq!(log.next_offset(), 1);
        }
        // After a restart the partition takes appends again, and the batch
        // whose sync failed is not there to be read, nor stored twice when
        // its producer sends it again.
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(log.append(batch(&["lost"])).unwrap(), 1);
        assert_eq!(all_values(&log, 0), [(0, "kept".to_string()), (1, "lost".to_string())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn all_values(log: &PartitionLog, from: i64) -> Vec<(i64, String)> {
        log.read(from, u64::MAX)
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn appends_assign_offsets_and_survive_reopen() {
        let dir = temp_dir("reopen");
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(log.append(batch(&["a", "b"])).unwrap(), 0);
        assert_eq!(log.append(batch(&["c"])).unwrap(), 2);
        drop(log);
        let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(recovery, Recovery { truncated_bytes: 0, batches: 2 });
        assert_eq!(log.next_offset(), 3);
        assert_eq!(all_values(&log, 0), vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        assert_eq!(all_values(&log, 2), vec![(2, "c".into())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_appends_share_syncs_and_stay_consistent() {
        let dir = temp_dir("group-commit");
        let log = Arc::new(PartitionLog::open(&dir, LogConfig { segment_bytes: 4096, ..config() }).unwrap().0);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| (log.append(batch(&[&format!("t{t}-{i}")])).unwrap(), format!("t{t}-{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let acknowledged: Vec<(i64, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(log.next_offset(), 200);
        assert_eq!(*log.subscribe().borrow(), 200, "consumers may read everything acknowledged");
        assert!(log.synced.load(Ordering::Acquire) >= 200);
        drop(log);
        let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        let stored = all_values(&log, 0);
        assert_eq!(stored.len(), 200);
        for (offset, value) in acknowledged {
            assert_eq!(stored[offset as usize], (offset, value));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_truncated_and_earlier_batches_kept() {
        let dir = temp_dir("torn");
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        log.append(batch(&["kept"])).unwrap();
        log.append(batch(&["torn"])).unwrap();
        drop(log);
        let log_path = dir.join(format!("{:020}.log", 0));
        let len = fs::metadata(&log_path).unwrap().len();
        OpenOptions::new().write(true).open(&log_path).unwrap().set_len(len - 3).unwrap();
        let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
        assert!(recovery.truncated_bytes > 0);
        assert_eq!(all_values(&log, 0), vec![(0, "kept".into())]);
        assert_eq!(log.append(batch(&["after"])).unwrap(), 1);
        assert_eq!(all_values(&log, 0), vec![(0, "kept".into()), (1, "after".into())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_bytes_in_the_tail_are_truncated() {
        let dir = temp_dir("corrupt");
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        log.append(batch(&["one"])).unwrap();
        log.append(batch(&["two"])).unwrap();
        drop(log);
        let log_path = dir.join(format!("{:020}.log", 0));
        let mut bytes = fs::read(&log_path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&log_path, bytes).unwrap();
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        assert_eq!(all_values(&log, 0), vec![(0, "one".into())]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_roll_and_retention_deletes_the_oldest() {
        let dir = temp_dir("retention");
        let config = LogConfig {
            segment_bytes: 200,
            retention: RetentionSpec { max_bytes: Some(600), ..Default::default() },
            flush: FlushPolicy::Os,
        };
        let (log, _) = PartitionLog::open(&dir, config).unwrap();
        let value = "x".repeat(100);
        for _ in 0..20 {
            log.append(batch(&[&value])).unwrap();
        }
        assert!(log.segment_count() > 1);
        assert!(log.size() <= 600 + 200, "size {}", log.size());
        let start = log.start_offset();
        assert!(start > 0);
        // Reading from a deleted offset starts at the first stored one.
        assert_eq!(all_values(&log, 0).first().unwrap().0, start);
        assert_eq!(all_values(&log, 0).last().unwrap().0, 19);
        drop(log);
        let (log, _) = PartitionLog::open(&dir, config).unwrap();
        assert_eq!(log.start_offset(), start);
        assert_eq!(log.next_offset(), 20);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// One batch of 120 bytes fills a segment; segments go 300 ms after
    /// their last append.
    fn age_config() -> LogConfig {
        LogConfig {
            segment_bytes: 100,
            retention: RetentionSpec { max_age_ms: Some(300), ..Default::default() },
            flush: FlushPolicy::Os,
        }
    }

    #[test]
    fn retention_by_age_deletes_old_segments() {
        let dir = temp_dir("age");
        let config = age_config();
        let (log, _) = PartitionLog::open(&dir, config).unwrap();
        log.append(batch(&[&"o".repeat(120)])).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        log.append(batch(&[&"n".repeat(120)])).unwrap();
        log.append(batch(&["new"])).unwrap();
        log.apply_retention();
        assert_eq!(log.start_offset(), 1, "the segment appended 400 ms ago is past 300 ms");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retention_by_age_counts_from_the_append_not_the_record_timestamps() {
        let dir = temp_dir("age-stamps");
        let config = age_config();
        let (log, _) = PartitionLog::open(&dir, config).unwrap();
        // Stamped a year ahead, and an hour ago: neither stamp counts.
        let mut future = BatchBuilder::new(0, now_ms() + 365 * 24 * 3_600_000);
        future.push_value(None, &[b'f'; 120]);
        log.append(future.finish()).unwrap();
        let mut past = BatchBuilder::new(0, now_ms() - 3_600_000);
        past.push_value(None, &[b'p'; 120]);
        log.append(past.finish()).unwrap();
        log.append(batch(&["new"])).unwrap();
        log.apply_retention();
        assert_eq!(log.start_offset(), 0, "nothing was appended more than 300 ms ago");
        std::thread::sleep(std::time::Duration::from_millis(400));
        log.append(batch(&["newer"])).unwrap();
        log.apply_retention();
        assert_eq!(log.start_offset(), 2, "both old segments went, the future-stamped one too");
        // After a crash that loses the indexes, the segments' last writes stand in.
        drop(log);
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "index") {
                fs::remove_file(path).unwrap();
            }
        }
        let (log, _) = PartitionLog::open(&dir, config).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        log.append(batch(&["last"])).unwrap();
        log.apply_retention();
        assert_eq!(log.start_offset(), 4, "rebuilt segments age from their last write");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_with_wrong_deltas_are_refused() {
        let dir = temp_dir("deltas");
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        let mut builder = BatchBuilder::new(0, 0);
        builder.push(0, 0, None, b"a", &[]);
        builder.push(5, 0, None, b"b", &[]);
        let error = log.append(builder.finish()).unwrap_err();
        assert!(error.to_string().contains("offset delta 5"), "{error}");
        assert_eq!(log.next_offset(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
