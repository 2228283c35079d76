//! Records as a SmartModule sees them.
//!
//! Inside a module, [`RecordData`] borrows from the batch the host wrote into
//! guest memory, so reading a record copies no payload. Returning a key or
//! value unchanged (`record.key.clone()`) keeps that link, and the ABI glue
//! then tells the host "same bytes as the input" instead of copying them back.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::abi;

/// The bytes of a record key or value.
///
/// Cheap to clone when it refers to input bytes; converts from `String`,
/// `&str`, `Vec<u8>` and `&[u8]`; derefs to `&[u8]`.
#[derive(Clone)]
pub struct RecordData {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Owned(Vec<u8>),
    /// A range of a shared input buffer: the batch the host handed in.
    Shared {
        buffer: Arc<Vec<u8>>,
        start: u32,
        len: u32,
    },
}

impl RecordData {
    /// Data that refers to `len` bytes at `start` in a shared input buffer.
    pub(crate) fn shared(buffer: &Arc<Vec<u8>>, start: usize, len: usize) -> RecordData {
        debug_assert!(start + len <= buffer.len());
        RecordData { repr: Repr::Shared { buffer: Arc::clone(buffer), start: start as u32, len: len as u32 } }
    }

    /// Makes these bytes `len` bytes at `start` in `buffer`, keeping the
    /// reference it already holds when it is to the same buffer: the glue
    /// moves one record along a batch this way, with no reference count
    /// taken and given back per record.
    #[inline]
    pub(crate) fn point_at(&mut self, buffer: &Arc<Vec<u8>>, start: usize, len: usize) {
        debug_assert!(start + len <= buffer.len());
        match &mut self.repr {
            Repr::Shared { buffer: held, start: held_start, len: held_len } if Arc::ptr_eq(held, buffer) => {
                *held_start = start as u32;
                *held_len = len as u32;
            }
            _ => *self = RecordData::shared(buffer, start, len),
        }
    }

    /// The position of these bytes in `input` when they are an unchanged
    /// range of it; the ABI glue uses this to avoid copying them back.
    pub(crate) fn range_in(&self, input: &Arc<Vec<u8>>) -> Option<(u32, u32)> {
        match &self.repr {
            Repr::Shared { buffer, start, len } if Arc::ptr_eq(buffer, input) => Some((*start, *len)),
            _ => None,
        }
    }

    /// Detaches these bytes from any input buffer, so that holding them does
    /// not keep a whole batch alive.
    pub(crate) fn detach(&mut self) {
        if let Repr::Shared { .. } = self.repr {
            self.repr = Repr::Owned(self.as_slice().to_vec());
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.repr {
            Repr::Owned(bytes) => bytes,
            Repr::Shared { buffer, start, len } => &buffer[*start as usize..(*start + *len) as usize],
        }
    }

    /// Whether the bytes hold `byte`: the answer of `<[u8]>::contains`,
    /// which this stands in front of, so `record.value.contains(&b'#')`
    /// runs it. In a module built with WebAssembly SIMD (`+simd128`, as
    /// the SmartModule template builds) it looks at 16 bytes a step, where
    /// the standard library's looks at four.
    #[inline]
    pub fn contains(&self, byte: &u8) -> bool {
        crate::search::contains_byte(self.as_slice(), *byte)
    }

    /// The bytes as UTF-8 text, or why they are not.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self.as_slice())
    }

    /// The bytes as text, with invalid UTF-8 replaced by U+FFFD.
    pub fn as_utf8_lossy_string(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_slice())
    }

    /// The owned vector these bytes are, if they are one that starts at
    /// `ptr`: the glue takes a value the allocator placed in the output
    /// area this way (see `guest::placement`).
    pub(crate) fn take_owned_at(&mut self, ptr: *const u8) -> Option<Vec<u8>> {
        match &mut self.repr {
            Repr::Owned(bytes) if std::ptr::eq(bytes.as_ptr(), ptr) => Some(std::mem::take(bytes)),
            _ => None,
        }
    }

    /// The bytes as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Owned(bytes) => bytes,
            Repr::Shared { .. } => self.as_slice().to_vec(),
        }
    }
}

impl Default for RecordData {
    fn default() -> Self {
        RecordData { repr: Repr::Owned(Vec::new()) }
    }
}

impl Deref for RecordData {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for RecordData {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for RecordData {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RecordData {}

impl std::hash::Hash for RecordData {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl fmt::Debug for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_utf8_lossy_string())
    }
}

impl fmt::Display for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_utf8_lossy_string())
    }
}

impl<T: Into<Vec<u8>>> From<T> for RecordData {
    fn from(bytes: T) -> Self {
        RecordData { repr: Repr::Owned(bytes.into()) }
    }
}

/// One record header: a UTF-8 name and arbitrary bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value.
    pub value: RecordData,
}

/// A record: an optional key, a value, headers, and the offset and timestamp
/// the record has in its topic partition.
///
/// `key` and `value` are public fields, as in Fluvio, so `record.key.clone()`
/// and `record.value.as_ref()` work as users expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record key, if it has one.
    pub key: Option<RecordData>,
    /// The record value.
    pub value: RecordData,
    offset: i64,
    timestamp: i64,
    headers: Vec<Header>,
}

impl Record {
    /// A record with a value and no key, at offset 0 with timestamp 0.
    /// Meant for native unit tests of SmartModule functions.
    pub fn new(value: impl Into<RecordData>) -> Record {
        Record { key: None, value: value.into(), offset: 0, timestamp: 0, headers: Vec::new() }
    }

    /// A record with a key and a value.
    pub fn new_key_value(key: impl Into<RecordData>, value: impl Into<RecordData>) -> Record {
        Record { key: Some(key.into()), ..Record::new(value) }
    }

    /// The same record at another offset.
    pub fn with_offset(mut self, offset: i64) -> Record {
        self.offset = offset;
        self
    }

    /// The same record with another timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Record {
        self.timestamp = timestamp;
        self
    }

    /// The same record with one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<RecordData>) -> Record {
        self.headers.push(Header { key: key.into(), value: value.into() });
        self
    }

    /// The key, if the record has one.
    pub fn key(&self) -> Option<&RecordData> {
        self.key.as_ref()
    }

    /// The value.
    pub fn value(&self) -> &RecordData {
        &self.value
    }

    /// The offset of this record in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The record's headers, in the order they were written.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Makes this record the one `view` shows in the batch held in
    /// `buffer`, reusing what it holds (see [`RecordData::point_at`]).
    #[inline(always)]
    pub(crate) fn refill(
        &mut self,
        buffer: &Arc<Vec<u8>>,
        view: &abi::RecordView<'_>,
        base_offset: i64,
        base_timestamp: i64,
    ) {
        match (view.key, &mut self.key) {
            (Some((start, len)), Some(key)) => key.point_at(buffer, start, len),
            (Some((start, len)), key) => *key = Some(RecordData::shared(buffer, start, len)),
            (None, key) => *key = None,
        }
        self.value.point_at(buffer, view.value.0, view.value.1);
        self.offset = base_offset.wrapping_add(view.offset_delta as i64);
        self.timestamp = base_timestamp.wrapping_add(view.timestamp_delta);
        // Records without headers, the common case, leave the empty vector be.
        if view.header_count != 0 || !self.headers.is_empty() {
            let encoded = &buffer[view.headers.0..view.headers.0 + view.headers.1];
            self.headers = abi::iter_headers(encoded, view.header_count)
                .map(|(k, v)| Header { key: String::from_utf8_lossy(k).into_owned(), value: RecordData::from(v) })
                .collect();
        }
    }
}

/// A record together with its position in the stream, for functions that
/// want `offset()` and `timestamp()`. It derefs to [`Record`], so a function
/// may take `&SmartModuleRecord` wherever it could take `&Record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartModuleRecord {
    inner_record: Record,
}

impl SmartModuleRecord {
    /// A record at `base_offset` plus the record's own offset, stamped
    /// `base_timestamp` plus its own timestamp (a batch's base and a
    /// record's deltas, as Fluvio builds them; `Record::new` starts both at
    /// zero).
    pub fn new(record: Record, base_offset: i64, base_timestamp: i64) -> SmartModuleRecord {
        let offset = base_offset.wrapping_add(record.offset);
        let timestamp = base_timestamp.wrapping_add(record.timestamp);
        SmartModuleRecord { inner_record: Record { offset, timestamp, ..record } }
    }

    /// Wraps a record whose offset and timestamp are already absolute.
    pub(crate) fn wrap(record: Record) -> SmartModuleRecord {
        SmartModuleRecord { inner_record: record }
    }

    /// The wrapped record.
    pub fn into_inner(self) -> Record {
        self.inner_record
    }

    /// The offset of this record in its partition.
    pub fn offset(&self) -> i64 {
        self.inner_record.offset
    }

    /// The record's timestamp in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.inner_record.timestamp
    }

    /// The key, if the record has one.
    pub fn key(&self) -> Option<&RecordData> {
        self.inner_record.key.as_ref()
    }

    /// The value.
    pub fn value(&self) -> &RecordData {
        &self.inner_record.value
    }
}

impl Deref for SmartModuleRecord {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.inner_record
    }
}

impl std::ops::DerefMut for SmartModuleRecord {
    fn deref_mut(&mut self) -> &mut Record {
        &mut self.inner_record
    }
}

impl From<Record> for SmartModuleRecord {
    fn from(record: Record) -> Self {
        SmartModuleRecord::wrap(record)
    }
}

impl AsRef<Record> for SmartModuleRecord {
    fn as_ref(&self) -> &Record {
        &self.inner_record
    }
}
