//! Consumer offsets on local disk: where each consumer has got to in each
//! partition, kept as durably as records are.
//!
//! Every commit is one JSON line appended to `consumer-offsets.log` and
//! synced before it is acknowledged, so a commit survives kill -9 and a
//! power cut. At start the lines are replayed (the last one for a
//! partition wins); a line torn by a crash mid-write is skipped. When the
//! file holds many more lines than live offsets, it is rewritten
//! atomically with one line per offset.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use fluvio_protocol::ConsumerOffset;
use serde::{Deserialize, Serialize};

use crate::storage::{OwnedOffset, StorageError, now_ms};

/// The name of the offsets file in a server's data directory.
pub const OFFSETS_FILE: &str = "consumer-offsets.log";

/// Lines beyond the live offsets the file may hold before it is rewritten.
const SLACK_LINES: usize = 4096;

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Commit {
        consumer: String,
        topic: String,
        partition: u32,
        offset: i64,
        modified_ms: u64,
        /// The principal that committed it (absent in lines written before
        /// owners were, and on servers without an access file).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    Delete {
        consumer: String,
        topic: String,
        partition: u32,
    },
}

type Key = (String, String, u32);

/// A consumer's position, when it was stored and by whom.
#[derive(Debug, Clone)]
struct Committed {
    offset: i64,
    modified_ms: u64,
    owner: Option<String>,
}

impl Committed {
    /// The log line that stores this position under `key`.
    fn line(&self, (consumer, topic, partition): &Key) -> Line {
        Line::Commit {
            consumer: consumer.clone(),
            topic: topic.clone(),
            partition: *partition,
            offset: self.offset,
            modified_ms: self.modified_ms,
            owner: self.owner.clone(),
        }
    }
}

struct State {
    file: File,
    offsets: BTreeMap<Key, Committed>,
    lines: usize,
}

/// Every consumer offset of a server, in one append-only file.
pub struct OffsetLog {
    path: PathBuf,
    state: Mutex<State>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

impl OffsetLog {
    /// Opens (or creates) the offsets file in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<OffsetLog, StorageError> {
        let path = dir.join(OFFSETS_FILE);
        let mut offsets = BTreeMap::new();
        let mut lines = 0;
        let (text, existed) = match std::fs::read(&path) {
            Ok(text) => (text, true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (Vec::new(), false),
            Err(error) => return Err(io(&path)(error)),
        };
        // Only whole lines count: a commit is acknowledged once its line,
        // newline included, is synced. What follows the last newline is a
        // line torn by a crash mid-append.
        let whole = text.iter().rposition(|&byte| byte == b'\n').map_or(0, |last| last + 1);
        for (number, line) in
            text[..whole].split(|&byte| byte == b'\n').enumerate().filter(|(_, line)| !line.is_empty())
        {
            lines += 1;
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Commit { consumer, topic, partition, offset, modified_ms, owner }) => {
                    offsets.insert((consumer, topic, partition), Committed { offset, modified_ms, owner });
                }
                Ok(Line::Delete { consumer, topic, partition }) => {
                    offsets.remove(&(consumer, topic, partition));
                }
                // A damaged line (a disk's doing): skipped, named.
                Err(error) => {
                    tracing::warn!(file = %path.display(), line = number + 1, %error, "skipping an unreadable consumer-offset line")
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        if whole < text.len() {
            // The torn line goes before anything is appended: the next
            // commit must start a line of its own, or it is lost with the
            // torn one at the next start.
            tracing::warn!(file = %path.display(), bytes = text.len() - whole, "dropping a consumer-offset line torn by a crash");
            file.set_len(whole as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        if !existed {
            // A new file's name is durable only once its directory is.
            fluvio_fs::sync_dir(dir).map_err(io(dir))?;
        }
        let log = OffsetLog { path, state: Mutex::new(State { file, offsets, lines }) };
        let mut state = log.state.lock();
        log.compact_if_due(&mut state)?;
        drop(state);
        Ok(log)
    }

    /// Stores a consumer's offset in a partition, durably, with the
    /// principal that committed it.
    pub fn commit(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        offset: i64,
        owner: Option<&str>,
    ) -> Result<(), StorageError> {
        let key = (consumer.to_string(), topic.to_string(), partition);
        let committed = Committed { offset, modified_ms: now_ms(), owner: owner.map(str::to_string) };
        let mut state = self.state.lock();
        self.append(&mut state, &[committed.line(&key)])?;
        state.offsets.insert(key, committed);
        self.compact_if_due(&mut state)
    }

    /// A consumer's stored offset in a partition.
    pub fn get(&self, consumer: &str, topic: &str, partition: u32) -> Option<i64> {
        let state = self.state.lock();
        state.offsets.get(&(consumer.to_string(), topic.to_string(), partition)).map(|c| c.offset)
    }

    /// Every stored offset, by consumer, topic and partition.
    pub fn list(&self) -> Vec<OwnedOffset> {
        let state = self.state.lock();
        state
            .offsets
            .iter()
            .map(|((consumer, topic, partition), committed)| OwnedOffset {
                offset: ConsumerOffset {
                    consumer: consumer.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: committed.offset,
                    modified_ms: committed.modified_ms,
                },
                owner: committed.owner.clone(),
            })
            .collect()
    }

    /// Forgets the offsets of `consumer` (any, when `None`) in `topic` (any,
    /// when `None`) and `partition` (any, when `None`), durably. Returns how
    /// many were forgotten.
    pub fn delete(
        &self,
        consumer: Option<&str>,
        topic: Option<&str>,
        partition: Option<u32>,
    ) -> Result<usize, StorageError> {
        let mut state = self.state.lock();
        let doomed: Vec<Key> = state
            .offsets
            .keys()
            .filter(|(c, t, p)| {
                consumer.is_none_or(|consumer| c == consumer)
                    && topic.is_none_or(|topic| t == topic)
                    && partition.is_none_or(|partition| *p == partition)
            })
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let lines: Vec<Line> = doomed
            .iter()
            .map(|(consumer, topic, partition)| Line::Delete {
                consumer: consumer.clone(),
                topic: topic.clone(),
                partition: *partition,
            })
            .collect();
        self.append(&mut state, &lines)?;
        for key in &doomed {
            state.offsets.remove(key);
        }
        self.compact_if_due(&mut state)?;
        Ok(doomed.len())
    }

    fn append(&self, state: &mut State, lines: &[Line]) -> Result<(), StorageError> {
        let mut text = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut text, line).expect("an offset line serializes");
            text.push(b'\n');
        }
        state.file.write_all(&text).map_err(io(&self.path))?;
        state.file.sync_data().map_err(io(&self.path))?;
        state.lines += lines.len();
        Ok(())
    }

    /// Rewrites the file with one line per live offset when it has grown
    /// well past that.
    fn compact_if_due(&self, state: &mut State) -> Result<(), StorageError> {
        if state.lines <= state.offsets.len() * 2 + SLACK_LINES {
            return Ok(());
        }
        let mut text = Vec::new();
        for (key, committed) in &state.offsets {
            serde_json::to_writer(&mut text, &committed.line(key)).expect("an offset line serializes");
            text.push(b'\n');
        }
        fluvio_fs::write_atomic(&self.path, &text).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent() {
            fluvio_fs::sync_dir(dir).map_err(io(dir))?;
        }
        state.file = OpenOptions::new().append(true).open(&self.path).map_err(io(&self.path))?;
        state.lines = state.offsets.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fluvio-offsets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commits_and_deletes_survive_reopening_and_compaction() {
        let dir = temp_dir("reopen");
        let log = OffsetLog::open(&dir).unwrap();
        log.commit("app", "t", 0, 5, None).unwrap();
        log.commit("app", "t", 1, 7, None).unwrap();
        log.commit("other", "t", 0, 1, None).unwrap();
        log.commit("app", "t", 0, 9, None).unwrap();
        assert_eq!(log.delete(Some("other"), None, None).unwrap(), 1);
        drop(log);
        let log = OffsetLog::open(&dir).unwrap();
        assert_eq!(
            (log.get("app", "t", 0), log.get("app", "t", 1), log.get("other", "t", 0)),
            (Some(9), Some(7), None)
        );
        // Enough commits to be rewritten, and the last one still wins.
        for offset in 0..(SLACK_LINES as i64 + 100) {
            log.commit("app", "t", 0, offset, None).unwrap();
        }
        let lines = std::fs::read_to_string(dir.join(OFFSETS_FILE)).unwrap().lines().count();
        assert!(lines < SLACK_LINES, "{lines} lines after compaction");
        drop(log);
        let log = OffsetLog::open(&dir).unwrap();
        assert_eq!(log.get("app", "t", 0), Some(SLACK_LINES as i64 + 99));
        assert_eq!(log.list().len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = temp_dir("torn");
        let log = OffsetLog::open(&dir).unwrap();
        log.commit("app", "t", 0, 3, None).unwrap();
        drop(log);
        let mut file = OpenOptions::new().append(true).open(dir.join(OFFSETS_FILE)).unwrap();
        file.write_all(br#"{"op":"commit","consumer":"app","topic":"t","parti"#).unwrap();
        drop(file);
        let log = OffsetLog::open(&dir).unwrap();
        assert_eq!(log.get("app", "t", 0), Some(3));
        // The torn line is gone before the next commit is appended.
        log.commit("app", "t", 0, 4, None).unwrap();
        drop(log);
        let text = std::fs::read_to_string(dir.join(OFFSETS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|line| serde_json::from_str::<Line>(line).is_ok()), "{text}");
        assert_eq!(OffsetLog::open(&dir).unwrap().get("app", "t", 0), Some(4));
        // A whole line without its newline was never acknowledged: dropped.
        let mut file = OpenOptions::new().append(true).open(dir.join(OFFSETS_FILE)).unwrap();
        file.write_all(br#"{"op":"commit","consumer":"app","topic":"t","partition":0,"offset":99,"modified_ms":1}"#)
            .unwrap();
        drop(file);
        let log = OffsetLog::open(&dir).unwrap();
        assert_eq!(log.get("app", "t", 0), Some(4));
        log.commit("app", "t", 0, 5, None).unwrap();
        drop(log);
        assert_eq!(OffsetLog::open(&dir).unwrap().get("app", "t", 0), Some(5));
    }
}
