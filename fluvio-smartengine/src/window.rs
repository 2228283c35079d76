//! Event-time windows around an aggregate: the host keeps one accumulator
//! per (key, window) and hands the module the right one, so that any
//! aggregate, unchanged, becomes "per key per window".
//!
//! How a batch goes through a windowed stage:
//!
//! 1. Each record's group key and event time are read (from the record, or
//!    through JSON pointers into its value). A record the window cannot
//!    place is that record's error under the chain's policy.
//! 2. The record joins every window it falls in that is still open, or is
//!    counted late (and handed over as a dead letter under that policy).
//!    A window stays open until the watermark, the highest event time seen
//!    minus the lateness, reaches its end.
//! 3. The records a (key, window) received are folded by one call of the
//!    module, starting from that window's accumulator, when the window
//!    closes or the batch ends. A closing window is emitted at the record
//!    that moved the watermark past it: key = the group key, value = the
//!    final accumulator, timestamp = the window's start, with
//!    `window-start` and `window-end` headers.
//!
//! The state changes of a batch are journaled, so that a batch that fails
//! (a limit, or a record error under the `fail` policy, which reruns the
//! batch up to that record) leaves the state as it was. Between batches the
//! state can be saved ([`WindowState::snapshot`]) and restored, which is how
//! a derived topic's windows survive a restart.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use fluvio_protocol::batch::{RecordIndex, encode_record, write_batch_header};
use fluvio_protocol::{ErrorPolicy, RecordFailure};
use smartmodule_abi::abi::{self, RecordView};
use smartmodule_abi::codec::{ByteReader, PutBytes};
use smartmodule_abi::params::{Window, WindowEmit, WindowShape};

use crate::EngineError;

/// The header naming an emitted window's start, in epoch milliseconds.
pub const WINDOW_START_HEADER: &str = "window-start";
/// The header naming an emitted window's end (exclusive), in epoch milliseconds.
pub const WINDOW_END_HEADER: &str = "window-end";

/// The record's error kind when its group key cannot be read.
pub const KEY_ERROR: &str = "window-key";
/// The record's error kind when its event time cannot be read.
pub const TIME_ERROR: &str = "window-time";
/// The error kind of a record that came after its windows closed.
pub const LATE_ERROR: &str = "late";

/// Bytes a (key, window) costs besides its key, accumulator and records:
/// the map entries and the closing index.
const GROUP_OVERHEAD: usize = 128;
/// Bytes a held record costs besides its encoding.
const HELD_OVERHEAD: usize = 48;

type GroupKey = Option<Vec<u8>>;
/// A group key, numbered: windows are found by `(KeyId, start)`, which
/// hashes and compares without touching the key's bytes.
type KeyId = u32;
type GroupId = (KeyId, i64);
/// Hashing for maps keyed by numbers the window made itself.
type FastHash = foldhash::fast::RandomState;

/// The group keys of the open windows, numbered. A key's number is freed
/// once no window of it is open (at the end of a batch, so that a batch
/// undone finds its keys where they were).
#[derive(Default)]
struct Keys {
    /// Keyed records' keys (seeded hashing: keys come from producers).
    ids: HashMap<Vec<u8>, KeyId, FastHash>,
    /// The number of records without a key, if one is open.
    keyless: Option<KeyId>,
    /// Each number's key and open windows.
    entries: Vec<(GroupKey, u32)>,
    free: Vec<KeyId>,
    /// Numbers whose last window closed, freed at the end of the batch.
    unreferenced: Vec<KeyId>,
}

impl Keys {
    fn find(&self, key: Option<&[u8]>) -> Option<KeyId> {
        match key {
            None => self.keyless,
            Some(key) => self.ids.get(key).copied(),
        }
    }

    fn intern(&mut self, key: Option<&[u8]>) -> KeyId {
        if let Some(id) = self.find(key) {
            return id;
        }
        let owned = key.map(<[u8]>::to_vec);
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = (owned.clone(), 0);
                id
            }
            None => {
                self.entries.push((owned.clone(), 0));
                (self.entries.len() - 1) as KeyId
            }
        };
        match owned {
            None => self.keyless = Some(id),
            Some(key) => {
                self.ids.insert(key, id);
            }
        }
        // Freed at the batch's end unless a window of it opens.
        self.unreferenced.push(id);
        id
    }

    fn key(&self, id: KeyId) -> &GroupKey {
        &self.entries[id as usize].0
    }

    fn retain(&mut self, id: KeyId) {
        self.entries[id as usize].1 += 1;
    }

    fn release(&mut self, id: KeyId) {
        let count = &mut self.entries[id as usize].1;
        *count -= 1;
        if *count == 0 {
            self.unreferenced.push(id);
        }
    }

    /// Frees the numbers of keys with no open window.
    fn sweep(&mut self) {
        for id in std::mem::take(&mut self.unreferenced) {
            let (key, count) = &mut self.entries[id as usize];
            if *count != 0 {
                continue;
            }
            // A number listed twice is freed once: the second time its key
            // is gone already.
            match key.take() {
                Some(key) => {
                    self.ids.remove(&key);
                }
                None if self.keyless == Some(id) => self.keyless = None,
                None => continue,
            }
            self.free.push(id);
        }
    }
}

/// One record a (key, window) received and has not folded yet (or, for a
/// session, every record, for folding again when sessions merge).
#[derive(Debug, Clone)]
struct Held {
    /// Place in the stream, across batches: the order records are folded in.
    seq: u64,
    /// Index in the batch being processed; `None` for an earlier batch's.
    at: Option<u32>,
    /// The record's offset, for errors.
    offset: i64,
    /// The record, encoded with an absolute timestamp (base 0); its offset
    /// delta is written when it is folded.
    bytes: Vec<u8>,
}

/// One open (key, window).
#[derive(Debug, Clone)]
struct Group {
    end: i64,
    /// Sessions: the latest event time.
    last: i64,
    accumulator: Vec<u8>,
    records: Vec<Held>,
    /// How many of `records` are folded into `accumulator`.
    folded: usize,
    /// Records folded without an error: a window whose every record
    /// failed is not emitted, as if they had not been there.
    folds: u64,
}

impl Group {
    fn bytes(&self, keys: &Keys, id: KeyId) -> usize {
        GROUP_OVERHEAD
            + keys.key(id).as_ref().map_or(0, Vec::len)
            + self.accumulator.len()
            + self.records.iter().map(|held| held.bytes.len() + HELD_OVERHEAD).sum::<usize>()
    }
}

/// What one call of the module made of a (key, window)'s records.
pub(crate) struct Folded {
    /// The accumulator after them.
    pub accumulator: Vec<u8>,
    /// The accumulator after each record it did not fail on, by the
    /// record's index among those handed over.
    pub values: Vec<(u32, Vec<u8>)>,
    /// The records it failed on, by index, with their errors.
    pub failures: Vec<(u32, RecordFailure)>,
}

/// Folds a batch of one (key, window)'s records (offset deltas 0, 1, ...,
/// timestamps absolute) into an accumulator with the module; with `true`,
/// the accumulator after each record is wanted too.
pub(crate) type Fold<'a> = dyn FnMut(&[u8], &[u8], bool) -> Result<Folded, EngineError> + 'a;

/// What a batch (or the end of the input) made a windowed stage emit.
pub(crate) struct WindowOutput {
    /// The emitted records, in the batch layout, offsets relative to the
    /// input's base offset.
    pub batch: Vec<u8>,
    /// Records that failed (key, time, the module, or late under
    /// `dead-letter`), in stream order.
    pub failures: Vec<RecordFailure>,
    /// Records dropped as late.
    pub late: u64,
    /// Records emitted.
    pub emitted: u64,
}

/// An emitted record before it is written, with what orders it.
struct Emitted {
    /// The input record it is emitted at.
    at: u32,
    /// 0: a record's update (`every-record`); 1: a window closing.
    phase: u8,
    end: i64,
    start: i64,
    key: GroupKey,
    value: Vec<u8>,
}

impl Emitted {
    fn order(&self) -> (u32, u8, i64, i64, &GroupKey) {
        (self.at, self.phase, self.end, self.start, &self.key)
    }
}

/// A record's group key (borrowed from the batch when it is the record's
/// own) and event time.
type Placed<'a> = (Option<Cow<'a, [u8]>>, i64);

/// What a batch changed, to undo it.
#[derive(Default)]
struct Journal {
    /// Each (key, window) touched, as it was before the batch.
    groups: HashMap<GroupId, Option<Group>, FastHash>,
}

/// One pass over a batch.
struct Pass {
    policy: ErrorPolicy,
    emitted: Vec<Emitted>,
    failures: Vec<(u32, RecordFailure)>,
    late: u64,
    /// Under `fail`: the first record that failed, where the batch stops.
    stop: Option<(u32, RecordFailure)>,
}

/// The open windows of one windowed aggregate, and its watermark.
pub(crate) struct WindowState {
    module: String,
    window: Window,
    lateness: i64,
    /// The accumulator a new window starts from.
    initial: Vec<u8>,
    groups: HashMap<GroupId, Group, FastHash>,
    /// Open windows by end: which close as the watermark moves.
    closing: BTreeSet<(i64, i64, KeyId)>,
    /// Sessions: the starts of each key's open sessions.
    sessions: HashMap<KeyId, BTreeSet<i64>, FastHash>,
    keys: Keys,
    /// The highest event time seen.
    max_time: Option<i64>,
    /// Records seen, for the fold order.
    seq: u64,
    /// The offset of the last record seen.
    last_offset: i64,
    /// What the open windows take, as the memory cap counts it.
    bytes: usize,
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl WindowState {
    /// No open window yet.
    pub(crate) fn new(module: &str, window: Window, initial: Vec<u8>) -> WindowState {
        WindowState {
            module: module.to_string(),
            lateness: millis(window.lateness),
            window,
            initial,
            groups: HashMap::default(),
            closing: BTreeSet::new(),
            sessions: HashMap::default(),
            keys: Keys::default(),
            max_time: None,
            seq: 0,
            last_offset: -1,
            bytes: 0,
        }
    }

    /// Open (key, window) pairs.
    pub(crate) fn open_windows(&self) -> usize {
        self.groups.len()
    }

    fn watermark(&self) -> Option<i64> {
        self.max_time.map(|max| max.saturating_sub(self.lateness))
    }

    fn insert(&mut self, id: GroupId, group: Group) {
        self.closing.insert((group.end, id.1, id.0));
        if matches!(self.window.shape, WindowShape::Session { .. }) {
            self.sessions.entry(id.0).or_default().insert(id.1);
        }
        self.keys.retain(id.0);
        self.groups.insert(id, group);
    }

    fn remove(&mut self, id: &GroupId) -> Option<Group> {
        let group = self.groups.remove(id)?;
        self.keys.release(id.0);
        self.closing.remove(&(group.end, id.1, id.0));
        if let Some(starts) = self.sessions.get_mut(&id.0) {
            starts.remove(&id.1);
            if starts.is_empty() {
                self.sessions.remove(&id.0);
            }
        }
        Some(group)
    }

    fn touch(&self, journal: &mut Journal, id: &GroupId) {
        journal.groups.entry(*id).or_insert_with(|| self.groups.get(id).cloned());
    }

    fn new_group(&self, end: i64, last: i64) -> Group {
        Group { end, last, accumulator: self.initial.clone(), records: Vec::new(), folded: 0, folds: 0 }
    }

    /// Runs a batch through the windows: `fold` calls the module. With
    /// `finish`, every open window is emitted after the batch (the end of
    /// the input). The state is left as it was when this fails.
    pub(crate) fn process(
        &mut self,
        input: &[u8],
        policy: ErrorPolicy,
        finish: bool,
        limit_bytes: u64,
        fold: &mut Fold<'_>,
    ) -> Result<WindowOutput, EngineError> {
        let records = RecordIndex::new(input)?;
        let header = *records.header();
        let mut limit = records.len() as u32;
        let mut stopped: Option<RecordFailure> = None;
        loop {
            let mut journal = Journal::default();
            let saved = (self.max_time, self.seq, self.last_offset);
            let pass = self.pass(input, &records, limit, policy, finish, fold, &mut journal);
            let pass = match pass {
                Ok(pass) => pass,
                Err(error) => {
                    self.rollback(journal, saved);
                    self.keys.sweep();
                    return Err(error);
                }
            };
            if let Some((at, failure)) = pass.stop {
                // Under `fail` the batch ends before that record: the
                // records before it go through again, without it.
                self.rollback(journal, saved);
                limit = at;
                stopped = Some(failure);
                continue;
            }
            // What the batch changed, in bytes.
            let mut bytes = self.bytes;
            for (id, before) in &journal.groups {
                bytes -= before.as_ref().map_or(0, |group| group.bytes(&self.keys, id.0));
                bytes += self.groups.get(id).map_or(0, |group| group.bytes(&self.keys, id.0));
            }
            if bytes as u64 > limit_bytes {
                let keys = self.groups.len();
                self.rollback(journal, saved);
                self.keys.sweep();
                return Err(EngineError::WindowStateTooLarge {
                    module: self.module.clone(),
                    keys,
                    bytes: bytes as u64,
                    limit_bytes,
                });
            }
            self.bytes = bytes;
            self.keys.sweep();
            // Records of this batch that sessions hold are an earlier
            // batch's from now on (other windows hold none between batches).
            if matches!(self.window.shape, WindowShape::Session { .. }) {
                for id in journal.groups.keys() {
                    if let Some(group) = self.groups.get_mut(id) {
                        group.records.iter_mut().for_each(|held| held.at = None);
                    }
                }
            }
            let mut failures = pass.failures;
            failures.sort_by_key(|(at, _)| *at);
            let mut failures: Vec<RecordFailure> = failures.into_iter().map(|(_, failure)| failure).collect();
            failures.extend(stopped);
            let mut emitted = pass.emitted;
            emitted.sort_by(|a, b| a.order().cmp(&b.order()));
            let count = emitted.len() as u64;
            let batch = write_emitted(input, &records, header, &emitted)?;
            return Ok(WindowOutput { batch, failures, late: pass.late, emitted: count });
        }
    }

    fn rollback(&mut self, journal: Journal, (max_time, seq, last_offset): (Option<i64>, u64, i64)) {
        for (id, before) in journal.groups {
            self.remove(&id);
            if let Some(group) = before {
                self.insert(id, group);
            }
        }
        self.max_time = max_time;
        self.seq = seq;
        self.last_offset = last_offset;
    }

    #[allow(clippy::too_many_arguments)]
    fn pass(
        &mut self,
        input: &[u8],
        records: &RecordIndex,
        limit: u32,
        policy: ErrorPolicy,
        finish: bool,
        fold: &mut Fold<'_>,
        journal: &mut Journal,
    ) -> Result<Pass, EngineError> {
        let header = records.header();
        let mut pass = Pass { policy, emitted: Vec::new(), failures: Vec::new(), late: 0, stop: None };
        for at in 0..limit {
            let view = records.view(input, at as usize)?;
            let offset = header.base_offset.saturating_add(view.offset_delta as i64);
            let timestamp = header.base_timestamp.saturating_add(view.timestamp_delta);
            self.last_offset = offset;
            let placed = self.place(input, &view, timestamp);
            let (key, time) = match placed {
                Ok(placed) => placed,
                Err((kind, message)) => {
                    let failure = self.failure(input, &view, offset, timestamp, kind, message);
                    match policy {
                        ErrorPolicy::Fail => {
                            pass.stop = Some((at, failure));
                            return Ok(pass);
                        }
                        ErrorPolicy::Skip => pass.failures.push((at, failure)),
                        ErrorPolicy::DeadLetter => pass.failures.push((at, failure)),
                    }
                    continue;
                }
            };
            let seq = self.seq;
            self.seq += 1;
            let held = Held { seq, at: Some(at), offset, bytes: reencode(input, &view, timestamp) };
            let key = key.as_deref();
            let joined = match self.window.shape {
                WindowShape::Session { gap } => self.join_session(key, time, millis(gap), held, journal),
                _ => self.join_windows(key, time, held, journal),
            };
            if !joined {
                pass.late += 1;
                if policy == ErrorPolicy::DeadLetter {
                    let watermark = self.watermark().unwrap_or(i64::MIN);
                    let message = format!(
                        "event time {time} is behind the watermark {watermark} (the highest event time seen, minus a lateness of {}ms): its windows have closed",
                        self.lateness
                    );
                    pass.failures.push((at, self.failure(input, &view, offset, timestamp, LATE_ERROR, message)));
                }
                continue;
            }
            let before = self.watermark();
            self.max_time = Some(self.max_time.map_or(time, |max| max.max(time)));
            let watermark = self.watermark();
            if watermark > before {
                let watermark = watermark.expect("a time was just seen");
                while let Some(first) = self.closing.first() {
                    if first.0 > watermark {
                        break;
                    }
                    let (_, start, key) = *first;
                    self.close((key, start), at, fold, journal, &mut pass)?;
                    if policy == ErrorPolicy::Fail && pass.stop.is_some() {
                        return Ok(pass);
                    }
                }
            }
        }
        // The batch's records are folded before it ends: the state between
        // batches holds accumulators, not records (but sessions').
        let touched: Vec<GroupId> = journal.groups.keys().filter(|id| self.groups.contains_key(*id)).copied().collect();
        for id in touched {
            self.flush(&id, fold, &mut pass)?;
            if policy == ErrorPolicy::Fail && pass.stop.is_some() {
                return Ok(pass);
            }
        }
        if finish {
            let at = limit.saturating_sub(1);
            while let Some(&(_, start, key)) = self.closing.first() {
                self.close((key, start), at, fold, journal, &mut pass)?;
                if policy == ErrorPolicy::Fail && pass.stop.is_some() {
                    return Ok(pass);
                }
            }
        }
        Ok(pass)
    }

    /// The record's group key and event time, or why they cannot be read.
    fn place<'a>(
        &self,
        input: &'a [u8],
        view: &RecordView<'_>,
        timestamp: i64,
    ) -> Result<Placed<'a>, (&'static str, String)> {
        let record_key = || view.key.map(|(start, len)| Cow::Borrowed(&input[start..start + len]));
        if self.window.key.is_none() && self.window.time.is_none() {
            return Ok((record_key(), timestamp));
        }
        let value = &input[view.value.0..view.value.0 + view.value.1];
        let what = if self.window.key.is_some() { KEY_ERROR } else { TIME_ERROR };
        let json: serde_json::Value = serde_json::from_slice(value)
            .map_err(|error| (what, format!("the window reads the value as JSON, and it is not: {error}")))?;
        let key = match &self.window.key {
            None => record_key(),
            Some(pointer) => match json.pointer(pointer) {
                Some(serde_json::Value::String(text)) => Some(Cow::Owned(text.as_bytes().to_vec())),
                Some(other) => Some(Cow::Owned(other.to_string().into_bytes())),
                None => {
                    return Err((KEY_ERROR, format!("the window's key pointer {pointer} names nothing in the value")));
                }
            },
        };
        let time = match &self.window.time {
            None => timestamp,
            Some(pointer) => match json.pointer(pointer) {
                Some(found) => event_time(found)
                    .map_err(|reason| (TIME_ERROR, format!("the window's time at {pointer} {reason}")))?,
                None => {
                    return Err((
                        TIME_ERROR,
                        format!("the window's time pointer {pointer} names nothing in the value"),
                    ));
                }
            },
        };
        Ok((key, time))
    }

    fn failure(
        &self,
        input: &[u8],
        view: &RecordView<'_>,
        offset: i64,
        timestamp: i64,
        kind: &str,
        message: String,
    ) -> RecordFailure {
        RecordFailure {
            module: self.module.clone(),
            offset,
            timestamp,
            kind: kind.to_string(),
            message,
            key: view.key.map(|(start, len)| input[start..start + len].to_vec()),
            value: input[view.value.0..view.value.0 + view.value.1].to_vec(),
        }
    }

    /// Adds a record to the tumbling or hopping windows it falls in that
    /// are open; `false` when none is (the record is late).
    fn join_windows(&mut self, key: Option<&[u8]>, time: i64, held: Held, journal: &mut Journal) -> bool {
        let (size, advance) = match self.window.shape {
            WindowShape::Tumbling { size } => (millis(size), millis(size)),
            WindowShape::Hopping { size, advance } => (millis(size), millis(advance)),
            WindowShape::Session { .. } => unreachable!("sessions join sessions"),
        };
        let watermark = self.watermark();
        let first = time.saturating_sub(size).div_euclid(advance).saturating_add(1);
        let last = time.div_euclid(advance);
        let mut joined = false;
        let mut held = Some(held);
        let mut key_id = self.keys.find(key);
        for k in first..=last {
            let start = k.saturating_mul(advance);
            let end = start.saturating_add(size);
            if watermark.is_some_and(|watermark| end <= watermark) {
                continue;
            }
            let key_id = *key_id.get_or_insert_with(|| self.keys.intern(key));
            let id = (key_id, start);
            self.touch(journal, &id);
            if !self.groups.contains_key(&id) {
                let group = self.new_group(end, time);
                self.insert(id, group);
            }
            let group = self.groups.get_mut(&id).expect("the window was just opened");
            // The last window takes the record itself; the others a copy.
            let record = if k == last { held.take() } else { held.clone() };
            group.records.push(record.expect("taken by the last window only"));
            joined = true;
        }
        joined
    }

    /// Adds a record to its key's session, opening, extending or merging
    /// sessions; `false` when the record is behind the watermark.
    fn join_session(&mut self, key: Option<&[u8]>, time: i64, gap: i64, held: Held, journal: &mut Journal) -> bool {
        if self.watermark().is_some_and(|watermark| time < watermark) {
            return false;
        }
        let key = self.keys.intern(key);
        let touching: Vec<i64> = self.sessions.get(&key).map_or_else(Vec::new, |starts| {
            starts
                .iter()
                .copied()
                .filter(|start| {
                    let group = &self.groups[&(key, *start)];
                    time > start.saturating_sub(gap) && time < group.end
                })
                .collect()
        });
        let mut merged = self.new_group(time.saturating_add(gap), time);
        let mut start = time;
        match touching.as_slice() {
            [] => {}
            [only] => {
                let id = (key, *only);
                self.touch(journal, &id);
                merged = self.remove(&id).expect("an open session");
                start = start.min(*only);
            }
            several => {
                // Records are folded in stream order, so the merged
                // session folds its records again from the start.
                for session in several {
                    let id = (key, *session);
                    self.touch(journal, &id);
                    let group = self.remove(&id).expect("an open session");
                    start = start.min(*session);
                    merged.last = merged.last.max(group.last);
                    merged.records.extend(group.records);
                }
                merged.records.sort_by_key(|held| held.seq);
                merged.accumulator = self.initial.clone();
                merged.folded = 0;
                merged.folds = 0;
            }
        }
        merged.last = merged.last.max(time);
        merged.end = merged.last.saturating_add(gap);
        merged.records.push(held);
        let id = (key, start);
        self.touch(journal, &id);
        self.insert(id, merged);
        true
    }

    /// Folds a (key, window)'s new records into its accumulator.
    fn flush(&mut self, id: &GroupId, fold: &mut Fold<'_>, pass: &mut Pass) -> Result<(), EngineError> {
        let every_record = self.window.emit == WindowEmit::EveryRecord;
        let session = matches!(self.window.shape, WindowShape::Session { .. });
        let Some(group) = self.groups.get_mut(id) else { return Ok(()) };
        if group.folded == group.records.len() {
            return Ok(());
        }
        let pending = &group.records[group.folded..];
        let mut batch = vec![0u8; abi::BATCH_HEADER_LEN];
        for (index, held) in pending.iter().enumerate() {
            let start = batch.len();
            batch.extend_from_slice(&held.bytes);
            batch[start + 4..start + 8].copy_from_slice(&(index as u32).to_le_bytes());
        }
        write_batch_header(&mut batch, 0, pending.len() as u32, 0);
        let folded = fold(&group.accumulator, &batch, every_record)?;
        group.accumulator = folded.accumulator;
        group.folds += (pending.len() - folded.failures.len()) as u64;
        if every_record {
            for (index, value) in folded.values {
                if let Some(at) = pending.get(index as usize).and_then(|held| held.at) {
                    let key = self.keys.key(id.0).clone();
                    pass.emitted.push(Emitted { at, phase: 0, end: group.end, start: id.1, key, value });
                }
            }
        }
        let mut failed = Vec::new();
        for (index, mut failure) in folded.failures {
            let Some(held) = pending.get(index as usize) else { continue };
            failure.offset = held.offset;
            failed.push(group.folded + index as usize);
            // A record of an earlier batch failing again (a module that
            // is not deterministic) was reported then.
            if let Some(at) = held.at {
                if pass.policy != ErrorPolicy::Fail {
                    pass.failures.push((at, failure));
                } else if pass.stop.as_ref().is_none_or(|(stop, _)| at < *stop) {
                    pass.stop = Some((at, failure));
                }
            }
        }
        if session {
            // A failed record is not folded again when sessions merge.
            for index in failed.into_iter().rev() {
                group.records.remove(index);
            }
            group.folded = group.records.len();
        } else {
            group.records.clear();
            group.folded = 0;
        }
        Ok(())
    }

    /// Folds a (key, window)'s last records and emits it at record `at`.
    fn close(
        &mut self,
        id: GroupId,
        at: u32,
        fold: &mut Fold<'_>,
        journal: &mut Journal,
        pass: &mut Pass,
    ) -> Result<(), EngineError> {
        self.flush(&id, fold, pass)?;
        self.touch(journal, &id);
        let group = self.remove(&id).expect("a closing window is open");
        if group.folds == 0 {
            return Ok(());
        }
        let key = self.keys.key(id.0).clone();
        pass.emitted.push(Emitted { at, phase: 1, end: group.end, start: id.1, key, value: group.accumulator });
        Ok(())
    }

    /// The state, as [`restore`](Self::restore) reads it: between batches,
    /// every open window's accumulator (and a session's records), the
    /// highest event time seen and the record count.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes + 64);
        out.put_u8(SNAPSHOT_VERSION);
        out.put_u8(u8::from(self.max_time.is_some()));
        out.put_i64(self.max_time.unwrap_or(0));
        out.put_u64(self.seq);
        out.put_i64(self.last_offset);
        // In a fixed order, so that the same state gives the same bytes.
        let mut ids: Vec<&GroupId> = self.groups.keys().collect();
        ids.sort_by(|a, b| (self.keys.key(a.0), a.1).cmp(&(self.keys.key(b.0), b.1)));
        out.put_u64(ids.len() as u64);
        for id in ids {
            let group = &self.groups[id];
            match self.keys.key(id.0) {
                Some(key) => {
                    out.put_u8(1);
                    out.put_len_prefixed(key);
                }
                None => out.put_u8(0),
            }
            out.put_i64(id.1);
            out.put_i64(group.end);
            out.put_i64(group.last);
            out.put_len_prefixed(&group.accumulator);
            out.put_u64(group.folds);
            out.put_u32(group.records.len() as u32);
            for held in &group.records {
                out.put_u64(held.seq);
                out.put_i64(held.offset);
                out.put_len_prefixed(&held.bytes);
            }
        }
        out
    }

    /// Replaces the state with a [`snapshot`](Self::snapshot).
    pub(crate) fn restore(&mut self, snapshot: &[u8]) -> Result<(), EngineError> {
        let damaged = |error: abi::FormatError| EngineError::WindowStateDamaged {
            module: self.module.clone(),
            reason: error.reason,
        };
        let mut fresh = WindowState::new(&self.module, self.window.clone(), self.initial.clone());
        let mut reader = ByteReader::new(snapshot);
        let version = reader.u8("version").map_err(damaged)?;
        if version != SNAPSHOT_VERSION {
            return Err(damaged(abi::FormatError::new(format!("unknown version {version}"))));
        }
        let (has_max, max) = (reader.u8("watermark").map_err(damaged)?, reader.i64("watermark").map_err(damaged)?);
        fresh.max_time = (has_max != 0).then_some(max);
        fresh.seq = reader.u64("record count").map_err(damaged)?;
        fresh.last_offset = reader.i64("last offset").map_err(damaged)?;
        let count = reader.u64("window count").map_err(damaged)?;
        for _ in 0..count {
            let key = match reader.u8("key").map_err(damaged)? {
                0 => None,
                _ => Some(reader.len_prefixed("key").map_err(damaged)?.to_vec()),
            };
            let start = reader.i64("start").map_err(damaged)?;
            let end = reader.i64("end").map_err(damaged)?;
            let last = reader.i64("last").map_err(damaged)?;
            let accumulator = reader.len_prefixed("accumulator").map_err(damaged)?.to_vec();
            let folds = reader.u64("fold count").map_err(damaged)?;
            let held_count = reader.u32("record count").map_err(damaged)?;
            let mut records = Vec::new();
            for _ in 0..held_count {
                let seq = reader.u64("record").map_err(damaged)?;
                let offset = reader.i64("record").map_err(damaged)?;
                let bytes = reader.len_prefixed("record").map_err(damaged)?.to_vec();
                if bytes.len() < abi::RECORD_HEADER_LEN {
                    return Err(damaged(abi::FormatError::new("a held record is shorter than its header")));
                }
                records.push(Held { seq, at: None, offset, bytes });
            }
            let folded = records.len();
            let group = Group { end, last, accumulator, records, folded, folds };
            let key = fresh.keys.intern(key.as_deref());
            fresh.bytes += group.bytes(&fresh.keys, key);
            fresh.insert((key, start), group);
        }
        reader.finish("window state").map_err(damaged)?;
        fresh.keys.sweep();
        *self = fresh;
        Ok(())
    }
}

/// The layout of [`WindowState::snapshot`].
const SNAPSHOT_VERSION: u8 = 1;

/// The record again, its timestamp absolute (a batch of base 0 holds
/// records from batches of different bases), its offset delta 0.
fn reencode(input: &[u8], view: &RecordView<'_>, timestamp: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(view.bytes.len());
    let key = view.key.map(|(start, len)| &input[start..start + len]);
    let value = &input[view.value.0..view.value.0 + view.value.1];
    let headers = &input[view.headers.0..view.headers.0 + view.headers.1];
    encode_record(&mut out, 0, timestamp, key, value, view.header_count, headers);
    out
}

/// The emitted records in the batch layout, at the offsets of the records
/// they were emitted at, timestamped with the window's start.
fn write_emitted(
    input: &[u8],
    records: &RecordIndex,
    header: abi::BatchHeader,
    emitted: &[Emitted],
) -> Result<Vec<u8>, EngineError> {
    let mut out = vec![0u8; abi::BATCH_HEADER_LEN];
    let mut headers = Vec::new();
    for record in emitted {
        let offset_delta = match records.len() {
            0 => 0,
            _ => records.view(input, record.at as usize)?.offset_delta,
        };
        headers.clear();
        abi::encode_header(&mut headers, WINDOW_START_HEADER.as_bytes(), record.start.to_string().as_bytes());
        abi::encode_header(&mut headers, WINDOW_END_HEADER.as_bytes(), record.end.to_string().as_bytes());
        encode_record(
            &mut out,
            offset_delta,
            record.start.saturating_sub(header.base_timestamp),
            record.key.as_deref(),
            &record.value,
            2,
            &headers,
        );
    }
    write_batch_header(&mut out, header.base_offset, emitted.len() as u32, header.base_timestamp);
    Ok(out)
}

/// An event time from JSON: epoch milliseconds, or an RFC 3339 string.
fn event_time(value: &serde_json::Value) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().filter(|f| f.is_finite() && f.abs() < 9.2e18).map(|f| f.floor() as i64))
            .ok_or_else(|| format!("is {number}, which is not epoch milliseconds")),
        serde_json::Value::String(text) => parse_rfc3339(text)
            .ok_or_else(|| format!("is {text:?}, which is not an RFC 3339 time (2024-05-01T12:00:00Z)")),
        other => Err(format!("is {other}, neither epoch milliseconds nor an RFC 3339 string")),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as epoch milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if bytes[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return None;
        }
        let fraction = &text[start..at.min(start + 3)];
        millis = fraction.parse::<i64>().ok()? * 10i64.pow(3 - fraction.len() as u32);
    }
    let offset_minutes = match bytes.get(at)? {
        b'Z' | b'z' if at + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == bytes.len() && bytes[at + 3] == b':' => {
            let minutes = digits(at + 1..at + 3)? * 60 + digits(at + 4..at + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_epoch_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Some(1_714_564_800_000));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00.25+02:00"), Some(1_714_564_800_250));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_rfc3339("2024-05-01 12:00:00Z"), Some(1_714_564_800_000));
        for bad in ["2024-05-01", "2024-13-01T00:00:00Z", "2024-05-01T12:00:00", "2024-05-01T12:00:00.Z", "yesterday"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_times_come_as_numbers_or_text() {
        assert_eq!(event_time(&serde_json::json!(1_500)), Ok(1_500));
        assert_eq!(event_time(&serde_json::json!(1_500.7)), Ok(1_500));
        assert_eq!(event_time(&serde_json::json!("1970-01-01T00:00:01Z")), Ok(1_000));
        assert!(event_time(&serde_json::json!(true)).unwrap_err().contains("neither"));
        assert!(event_time(&serde_json::json!("soon")).unwrap_err().contains("not an RFC 3339 time"));
    }
}
