//! Where each producer's latest batches went, kept on disk beside a
//! partition's log: a batch sent again after a lost acknowledgement is
//! stored once, even when the server was killed (or lost power) between
//! storing it and acknowledging it. A producer keeps several batches of a
//! partition in flight and, when their answers are lost, sends all of them
//! again in order, so each producer's last [`BATCHES_PER_PRODUCER`] are
//! remembered, not only its latest.
//!
//! The journal, `producers.journal`, is a sequence of 28-byte entries:
//! producer id (u64), batch sequence (u64), base offset (i64), CRC-32C of
//! the 24 bytes before it (u32), little-endian. An entry is written before
//! its batch and synced before the log, so a batch on disk always has its
//! entry on disk; an entry whose batch did not make it (its base offset is
//! at or past the recovered log's end) is dropped at open. A torn last
//! entry is dropped too. The file is rewritten with the entries remembered
//! at open and whenever it grows past [`COMPACT_AT_BYTES`] (or twice its
//! compacted size, if that is more).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fluvio_protocol::ProducerStamp;

use crate::storage::StorageError;

const ENTRY_LEN: usize = 28;

/// Size past which the journal is rewritten with the entries remembered.
pub const COMPACT_AT_BYTES: u64 = 8 << 20;

/// Most producers a partition remembers; past it the one that stored a
/// batch least recently is forgotten (a retry is only ever of a producer's
/// latest batches, and comes soon after them).
pub const MAX_REMEMBERED_PRODUCERS: usize = 100_000;

/// Batches remembered of each producer: as many as a connection's produce
/// requests in flight ([`MAX_PRODUCES_IN_FLIGHT`](crate::connection::MAX_PRODUCES_IN_FLIGHT)),
/// the most a producer can have stored unanswered when the server stops.
pub const BATCHES_PER_PRODUCER: usize = crate::connection::MAX_PRODUCES_IN_FLIGHT;

/// The file name of a partition's journal.
pub const JOURNAL_FILE: &str = "producers.journal";

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

/// One journal entry.
pub(crate) fn encode(id: u64, sequence: u64, base_offset: i64) -> [u8; ENTRY_LEN] {
    let mut entry = [0u8; ENTRY_LEN];
    entry[0..8].copy_from_slice(&id.to_le_bytes());
    entry[8..16].copy_from_slice(&sequence.to_le_bytes());
    entry[16..24].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&entry[..24]);
    entry[24..28].copy_from_slice(&crc.to_le_bytes());
    entry
}

fn decode(entry: &[u8]) -> Option<(u64, u64, i64)> {
    let field = |at: usize| <[u8; 8]>::try_from(&entry[at..at + 8]).expect("8 bytes");
    let crc = u32::from_le_bytes(entry[24..28].try_into().expect("4 bytes"));
    (crc32c::crc32c(&entry[..24]) == crc)
        .then(|| (u64::from_le_bytes(field(0)), u64::from_le_bytes(field(8)), i64::from_le_bytes(field(16))))
}

/// Each producer's latest batches, at most [`MAX_REMEMBERED_PRODUCERS`]
/// producers: the one that stored a batch least recently goes first.
#[derive(Default)]
struct Remembered {
    /// Producer id → its last batches (sequence, base offset), oldest
    /// first, and when it last stored one.
    latest: HashMap<u64, (VecDeque<(u64, i64)>, u64)>,
    /// When → producer id, oldest first.
    by_age: BTreeMap<u64, u64>,
    clock: u64,
    /// Batches remembered, all producers together.
    batches: usize,
}

impl Remembered {
    /// Where producer `id`'s batch `sequence` went, if it is remembered.
    fn find(&self, id: u64, sequence: u64) -> Option<i64> {
        let (batches, _) = self.latest.get(&id)?;
        batches.iter().rev().find(|(stored, _)| *stored == sequence).map(|(_, base)| *base)
    }

    fn insert(&mut self, id: u64, sequence: u64, base_offset: i64) {
        match self.latest.get(&id) {
            Some((_, stored)) => {
                self.by_age.remove(stored);
            }
            None if self.latest.len() >= MAX_REMEMBERED_PRODUCERS => {
                if let Some((_, oldest)) = self.by_age.pop_first()
                    && let Some((forgotten, _)) = self.latest.remove(&oldest)
                {
                    self.batches -= forgotten.len();
                }
            }
            None => {}
        }
        self.clock += 1;
        let (batches, stored) = self.latest.entry(id).or_default();
        if batches.len() == BATCHES_PER_PRODUCER {
            batches.pop_front();
            self.batches -= 1;
        }
        batches.push_back((sequence, base_offset));
        self.batches += 1;
        *stored = self.clock;
        self.by_age.insert(self.clock, id);
    }

    /// Every producer's entries, producers oldest first and each one's
    /// batches in order: the order a journal keeps, so that a reopened
    /// partition remembers the same batches and forgets the same producers
    /// first.
    fn oldest_first(&self) -> impl Iterator<Item = [u8; ENTRY_LEN]> + '_ {
        self.by_age
            .values()
            .flat_map(|id| self.latest[id].0.iter().map(|(sequence, base)| encode(*id, *sequence, *base)))
    }
}

/// A partition's producers and the journal that keeps them.
pub struct ProducerJournal {
    path: PathBuf,
    file: Arc<File>,
    latest: Remembered,
    written_bytes: u64,
}

impl ProducerJournal {
    /// Reads the journal in `dir` (if any), keeping the entries whose
    /// batches are below `next_offset`, and rewrites it compacted.
    pub fn open(dir: &Path, next_offset: i64) -> Result<ProducerJournal, StorageError> {
        let path = dir.join(JOURNAL_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io_error(&path)(error)),
        };
        let mut latest = Remembered::default();
        for entry in bytes.chunks_exact(ENTRY_LEN) {
            // A bad entry can only be a torn last write: nothing after it
            // was acknowledged.
            let Some((id, sequence, base_offset)) = decode(entry) else { break };
            if base_offset < next_offset {
                latest.insert(id, sequence, base_offset);
            }
        }
        let (file, written_bytes) = rewrite(&path, &latest)?;
        Ok(ProducerJournal { path, file, latest, written_bytes })
    }

    /// Where the batch `stamp` names was stored, if it was.
    pub fn find(&self, stamp: ProducerStamp) -> Option<i64> {
        self.latest.find(stamp.id, stamp.sequence)
    }

    /// Writes the entry for a batch about to be stored at `base_offset`
    /// (not synced: the log's sync does that, first).
    pub fn record(&mut self, stamp: ProducerStamp, base_offset: i64) -> Result<(), StorageError> {
        self.latest.insert(stamp.id, stamp.sequence, base_offset);
        let compacted_bytes = (self.latest.batches * ENTRY_LEN) as u64;
        if self.written_bytes >= COMPACT_AT_BYTES.max(2 * compacted_bytes) {
            return self.compact();
        }
        (&*self.file).write_all(&encode(stamp.id, stamp.sequence, base_offset)).map_err(io_error(&self.path))?;
        self.written_bytes += ENTRY_LEN as u64;
        Ok(())
    }

    /// The file entries are written to now, for syncing.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Replaces the journal with the entries remembered.
    fn compact(&mut self) -> Result<(), StorageError> {
        (self.file, self.written_bytes) = rewrite(&self.path, &self.latest)?;
        Ok(())
    }
}

/// Writes `latest` as the whole journal, durably (a new file, synced, then
/// renamed over the old one), and opens it for appending.
fn rewrite(path: &Path, latest: &Remembered) -> Result<(Arc<File>, u64), StorageError> {
    let bytes: Vec<u8> = latest.oldest_first().flatten().collect();
    fluvio_fs::write_atomic(path, &bytes).map_err(io_error(path))?;
    let file = OpenOptions::new().append(true).open(path).map_err(io_error(path))?;
    Ok((Arc::new(file), bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fluvio-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn stamp(id: u64, sequence: u64) -> ProducerStamp {
        ProducerStamp { id, sequence }
    }

    #[test]
    fn entries_survive_reopening_and_those_past_the_log_end_are_dropped() {
        let dir = dir("reopen");
        let mut journal = ProducerJournal::open(&dir, 0).unwrap();
        journal.record(stamp(7, 0), 0).unwrap();
        journal.record(stamp(7, 1), 10).unwrap();
        journal.record(stamp(8, 0), 20).unwrap();
        journal.record(stamp(9, 0), 30).unwrap();
        drop(journal);
        // The log ended at 30: the batch of producer 9 never made it.
        let journal = ProducerJournal::open(&dir, 30).unwrap();
        assert_eq!(journal.find(stamp(7, 1)), Some(10));
        assert_eq!(journal.find(stamp(7, 0)), Some(0), "a producer's earlier batch is remembered too");
        assert_eq!(journal.find(stamp(7, 2)), None);
        assert_eq!(journal.find(stamp(8, 0)), Some(20));
        assert_eq!(journal.find(stamp(9, 0)), None);
        // Compacted at open: the entries of the batches that made it.
        assert_eq!(std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len(), 3 * ENTRY_LEN as u64);
    }

    #[test]
    fn a_producers_last_batches_are_remembered_across_reopening_and_older_ones_forgotten() {
        let dir = dir("in-flight");
        let mut journal = ProducerJournal::open(&dir, 0).unwrap();
        let sent = BATCHES_PER_PRODUCER as u64 + 4;
        for sequence in 0..sent {
            journal.record(stamp(5, sequence), sequence as i64 * 10).unwrap();
            journal.record(stamp(6, sequence), sequence as i64 * 10 + 5).unwrap();
        }
        let check = |journal: &ProducerJournal| {
            for sequence in 0..sent {
                let remembered = sequence >= sent - BATCHES_PER_PRODUCER as u64;
                let expected = remembered.then_some(sequence as i64 * 10);
                assert_eq!(journal.find(stamp(5, sequence)), expected, "batch {sequence}");
            }
            assert_eq!(journal.find(stamp(6, sent - 1)), Some((sent as i64 - 1) * 10 + 5));
        };
        check(&journal);
        drop(journal);
        let journal = ProducerJournal::open(&dir, i64::MAX).unwrap();
        check(&journal);
        let entries = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len() / ENTRY_LEN as u64;
        assert_eq!(entries, 2 * BATCHES_PER_PRODUCER as u64, "compacted to the remembered batches");
    }

    #[test]
    fn a_torn_last_entry_is_dropped() {
        let dir = dir("torn");
        let mut journal = ProducerJournal::open(&dir, 0).unwrap();
        journal.record(stamp(1, 5), 0).unwrap();
        journal.record(stamp(2, 5), 4).unwrap();
        drop(journal);
        let path = dir.join(JOURNAL_FILE);
        let length = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(length - 3).unwrap();
        let journal = ProducerJournal::open(&dir, 100).unwrap();
        assert_eq!(journal.find(stamp(1, 5)), Some(0));
        assert_eq!(journal.find(stamp(2, 5)), None);
        // A damaged entry in the middle ends the reading there too.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(ProducerJournal::open(&dir, 100).unwrap().find(stamp(1, 5)), None);
    }

    #[test]
    fn past_the_most_producers_the_least_recent_is_forgotten_not_all() {
        let dir = dir("many");
        let mut journal = ProducerJournal::open(&dir, 0).unwrap();
        let active = 1u64 << 40;
        journal.record(stamp(active, 0), 0).unwrap();
        for id in 1..MAX_REMEMBERED_PRODUCERS as u64 {
            journal.record(stamp(id, 0), id as i64).unwrap();
        }
        // The active producer stores again; one more new producer comes.
        journal.record(stamp(active, 1), 1_000_000).unwrap();
        journal.record(stamp(1 << 41, 0), 1_000_001).unwrap();
        assert_eq!(journal.find(stamp(active, 1)), Some(1_000_000), "a retry of the active producer");
        assert_eq!(journal.find(stamp(1, 0)), None, "the least recent is forgotten");
        assert_eq!(journal.find(stamp(2, 0)), Some(2));
        // Reopened, the journal keeps the same producers, in the same order.
        drop(journal);
        let mut journal = ProducerJournal::open(&dir, i64::MAX).unwrap();
        assert_eq!(journal.find(stamp(active, 1)), Some(1_000_000));
        journal.record(stamp(1 << 42, 0), 1_000_002).unwrap();
        assert_eq!(journal.find(stamp(2, 0)), None, "next to go after a reopen");
        assert_eq!(journal.find(stamp(3, 0)), Some(3));
    }

    #[test]
    fn the_journal_is_compacted_as_it_grows() {
        let dir = dir("compact");
        let mut journal = ProducerJournal::open(&dir, 0).unwrap();
        let entries = COMPACT_AT_BYTES / ENTRY_LEN as u64 + 10;
        for sequence in 0..entries {
            journal.record(stamp(3, sequence), sequence as i64).unwrap();
        }
        assert!(std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len() < COMPACT_AT_BYTES / 2);
        drop(journal);
        let journal = ProducerJournal::open(&dir, i64::MAX).unwrap();
        assert_eq!(journal.find(stamp(3, entries - 1)), Some(entries as i64 - 1));
    }
}
