//! A segment's files: the log of batches as they arrived and the index
//! of where each batch is, with the checks recovery makes when it scans a
//! log whose index is missing or behind.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fluvio_protocol::CheckedBatch;
use smartmodule_abi::abi;
use smartmodule_abi::codec::{ByteReader, FormatError, PutBytes};

use super::now_ms;
use crate::storage::StorageError;

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

pub(super) const INDEX_ENTRY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) base_offset: i64,
    pub(super) position: u64,
    pub(super) len: u32,
    pub(super) record_count: u32,
    /// When the server appended the batch (milliseconds since the epoch).
    pub(super) appended_ms: i64,
}

impl IndexEntry {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_ENTRY_LEN);
        out.put_i64(self.base_offset);
        out.put_u64(self.position);
        out.put_u32(self.len);
        out.put_u32(self.record_count);
        out.put_i64(self.appended_ms);
        out
    }

    pub(super) fn decode(reader: &mut ByteReader<'_>) -> Result<IndexEntry, FormatError> {
        Ok(IndexEntry {
            base_offset: reader.i64("index base offset")?,
            position: reader.u64("index position")?,
            len: reader.u32("index batch length")?,
            record_count: reader.u32("index record count")?,
            appended_ms: reader.i64("index append time")?,
        })
    }

    pub(super) fn next_offset(&self) -> i64 {
        self.base_offset + self.record_count as i64
    }
}

#[derive(Debug)]
pub(super) struct Segment {
    pub(super) base_offset: i64,
    pub(super) log_path: PathBuf,
    pub(super) index_path: PathBuf,
    pub(super) entries: Vec<IndexEntry>,
    pub(super) size: u64,
}

impl Segment {
    pub(super) fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf) {
        (dir.join(format!("{base_offset:020}.log")), dir.join(format!("{base_offset:020}.index")))
    }

    /// When the segment's newest batch was appended.
    pub(super) fn last_append_ms(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.appended_ms).max()
    }
}

/// The active segment's files, shared so that a sync can run without the
/// log lock (`&File` implements `Write`).
pub(super) struct Active {
    pub(super) log: Arc<File>,
    pub(super) index: Arc<File>,
}

impl Active {
    pub(super) fn open(log_path: &Path, index_path: &Path) -> Result<Active, StorageError> {
        Ok(Active { log: Arc::new(open_append(log_path)?), index: Arc::new(open_append(index_path)?) })
    }
}

/// Scans a segment's log file: every batch whose header, records and CRC
/// check out, up to the first that does not. Returns the entries and the
/// length of the valid prefix. It reads one batch at a time, so a segment
/// of many GiB is scanned in the memory of its largest batch.
pub(super) fn scan_segment(log_path: &Path) -> Result<(Vec<IndexEntry>, u64, u64), StorageError> {
    let file = File::open(log_path).map_err(io_error(log_path))?;
    let metadata = file.metadata().map_err(io_error(log_path))?;
    let file_len = metadata.len();
    // When each batch was appended is lost with the index; the segment's
    // last write is a time no batch in it is younger than.
    let last_write_ms = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(now_ms, |age| age.as_millis() as i64);
    let mut entries = Vec::new();
    let mut position = 0u64;
    while position + abi::BATCH_HEADER_LEN as u64 <= file_len {
        // The batch's length, from its header; the whole batch is checked
        // once read.
        let Ok(head) = read_at(&file, position, abi::BATCH_HEADER_LEN) else { break };
        let len = u32::from_le_bytes(head[abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4].try_into().expect("four bytes"));
        let len = u64::from(len);
        if len < abi::BATCH_HEADER_LEN as u64 || position + len > file_len {
            break;
        }
        let Ok(bytes) = read_at(&file, position, len as usize) else { break };
        let Ok(batch) = CheckedBatch::from_bytes(bytes) else { break };
        entries.push(entry_for(&batch, position, last_write_ms));
        position += len;
    }
    Ok((entries, position, file_len))
}

/// Offsets must run on without gap or overlap from the segment's first
/// offset (its file name): a batch's CRC does not cover its base offset, so
/// a damaged one passes every other check and would hand out offsets twice.
pub(super) fn check_contiguous(log_path: &Path, segment_base: i64, entries: &[IndexEntry]) -> Result<(), StorageError> {
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
pub(super) fn entry_for(batch: &CheckedBatch, position: u64, appended_ms: i64) -> IndexEntry {
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

pub(super) fn read_index(index_path: &Path) -> Option<Vec<IndexEntry>> {
    let bytes = fs::read(index_path).ok()?;
    if bytes.len() % INDEX_ENTRY_LEN != 0 {
        return None;
    }
    let mut reader = ByteReader::new(&bytes);
    (0..bytes.len() / INDEX_ENTRY_LEN).map(|_| IndexEntry::decode(&mut reader).ok()).collect()
}

pub(super) fn write_index(index_path: &Path, entries: &[IndexEntry]) -> Result<(), StorageError> {
    let bytes: Vec<u8> = entries.iter().flat_map(IndexEntry::encode).collect();
    fluvio_fs::write_atomic(index_path, &bytes).map_err(io_error(index_path))
}

pub(super) fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fluvio_fs::sync_dir(dir).map_err(io_error(dir))
}
