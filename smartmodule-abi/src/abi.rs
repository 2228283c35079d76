//! The binary contract between a host and a SmartModule: the record batch
//! layout, the setup blob, the output layout and the names of exports and
//! imports. `docs/abi.md` is the prose version of this module.
//!
//! The batch layout is the one the platform stores on disk and sends on the
//! wire, so a batch read from a log segment goes into guest memory unchanged.
//! Every integer is little-endian. Parsing here never trusts lengths: every
//! read is bounds-checked and a malformed batch yields a [`FormatError`].

use std::fmt;

/// The ABI version this library speaks. A module advertises it by exporting
/// a function named [`abi_version_export`]`(ABI_VERSION)`.
pub const ABI_VERSION: u32 = 1;

/// Prefix of the export that carries the ABI version in its name, so a host
/// can read the version without running any guest code.
pub const ABI_EXPORT_PREFIX: &str = "fluvio_abi_v";

/// The export name that advertises `version`.
pub fn abi_version_export(version: u32) -> String {
    format!("{ABI_EXPORT_PREFIX}{version}")
}

/// Export: `fluvio_reserve(len: i32) -> i32`, a pointer to an input buffer of
/// at least `len` bytes that the host then fills.
pub const EXPORT_RESERVE: &str = "fluvio_reserve";
/// Export: `fluvio_setup(len: i32) -> i64`: reads a setup blob (params and the
/// initial accumulator) from the input buffer. Returns an output location.
pub const EXPORT_SETUP: &str = "fluvio_setup";
/// Export: `fluvio_init() -> i64`, present when the module has an
/// `#[smartmodule(init)]` function. Returns an output location.
pub const EXPORT_INIT: &str = "fluvio_init";

/// The optional `look_back` export: `(input_len: i32, flags: i32) -> i64`,
/// called with batches of stored records before a stream starts; its output
/// area holds errors only.
pub const EXPORT_LOOK_BACK: &str = "fluvio_look_back";
/// The guest's linear memory.
pub const EXPORT_MEMORY: &str = "memory";

/// Import module name for the host functions below.
pub const IMPORT_MODULE: &str = "fluvio";
/// Import: `log(level: i32, ptr: i32, len: i32)`, one UTF-8 log line.
pub const IMPORT_LOG: &str = "log";
/// Import: `panic(ptr: i32, len: i32, record_index: i32)`, called by the panic
/// hook just before the module traps. `record_index` is -1 outside a record.
pub const IMPORT_PANIC: &str = "panic";
/// Import: `out_of_memory(requested: i32)`, called when an allocation fails,
/// just before the module traps.
pub const IMPORT_OUT_OF_MEMORY: &str = "out_of_memory";

/// Flag for a process call: stop at the first record error instead of
/// reporting it and carrying on with the next record.
pub const FLAG_STOP_ON_ERROR: u32 = 1;

/// The five kinds of SmartModule; each has its own process export. The one
/// kind type of the project: hosts send it on the wire as it is (with the
/// `serde` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum ModuleKind {
    /// Keeps or drops each record.
    Filter,
    /// Turns each record into one new record.
    Map,
    /// Turns each record into zero or one record.
    FilterMap,
    /// Turns each record into zero or more records.
    ArrayMap,
    /// Folds each record into an accumulator and emits the accumulator.
    Aggregate,
}

impl ModuleKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ModuleKind; 5] =
        [ModuleKind::Filter, ModuleKind::Map, ModuleKind::FilterMap, ModuleKind::ArrayMap, ModuleKind::Aggregate];

    /// The export that processes one batch for this kind:
    /// `(input_len: i32, flags: i32) -> i64` returning an output location.
    pub fn process_export(self) -> &'static str {
        match self {
            ModuleKind::Filter => "fluvio_filter",
            ModuleKind::Map => "fluvio_map",
            ModuleKind::FilterMap => "fluvio_filter_map",
            ModuleKind::ArrayMap => "fluvio_array_map",
            ModuleKind::Aggregate => "fluvio_aggregate",
        }
    }

    /// The name users write: `filter`, `map`, `filter-map`, `array-map`, `aggregate`.
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Filter => "filter",
            ModuleKind::Map => "map",
            ModuleKind::FilterMap => "filter-map",
            ModuleKind::ArrayMap => "array-map",
            ModuleKind::Aggregate => "aggregate",
        }
    }

    /// Parses a kind name; accepts `filter_map` as well as `filter-map`.
    pub fn from_name(name: &str) -> Option<ModuleKind> {
        let normalized = name.replace('_', "-");
        Self::ALL.into_iter().find(|kind| kind.name() == normalized)
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// Record batch
// ---------------------------------------------------------------------------

/// Batch header: base offset (i64), batch length (u32), CRC-32C (u32),
/// format version (u8), attributes (u8), reserved (u16), record count (u32),
/// base timestamp (i64).
pub const BATCH_HEADER_LEN: usize = 32;
/// Byte position of the base offset in a batch.
pub const BATCH_BASE_OFFSET_AT: usize = 0;
/// Byte position of the total batch length.
pub const BATCH_LEN_AT: usize = 8;
/// Byte position of the CRC-32C, which covers bytes `BATCH_CRC_FROM..batch_len`.
pub const BATCH_CRC_AT: usize = 12;
/// The CRC covers everything after the CRC field, so the server can assign a
/// base offset to a producer's batch without recomputing it.
pub const BATCH_CRC_FROM: usize = 16;
/// Byte position of the format version.
pub const BATCH_VERSION_AT: usize = 16;
/// Byte position of the attributes byte (reserved for compression; 0 today).
pub const BATCH_ATTRIBUTES_AT: usize = 17;
/// Byte position of the record count.
pub const BATCH_RECORD_COUNT_AT: usize = 20;
/// Byte position of the base timestamp.
pub const BATCH_BASE_TIMESTAMP_AT: usize = 24;
/// The batch format version written by this library.
pub const BATCH_FORMAT_VERSION: u8 = 1;

/// Most bytes of records a compressed batch may hold once decompressed.
pub const MAX_COMPRESSED_BATCH_RECORDS_BYTES: usize = 256 << 20;

/// Record header: record length (u32, bytes after this field), offset delta
/// (u32), timestamp delta (i64), key length (i32, -1 for no key), value length
/// (u32), header count (u32). Then key, value and headers.
pub const RECORD_HEADER_LEN: usize = 28;

pub use crate::codec::FormatError;
use crate::codec::{ByteReader, PutBytes};

/// The fixed fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; records carry deltas from it.
    pub base_offset: i64,
    /// Total length of the batch in bytes, header included.
    pub batch_len: u32,
    /// CRC-32C of bytes `BATCH_CRC_FROM..batch_len`.
    pub crc: u32,
    /// Number of records that follow the header.
    pub record_count: u32,
    /// Timestamp (milliseconds since the Unix epoch) records carry deltas from.
    pub base_timestamp: i64,
    /// The attributes byte: its low three bits name the codec the records
    /// are compressed with (0: not compressed). Guests only ever see
    /// uncompressed batches.
    pub attributes: u8,
}

impl BatchHeader {
    /// Parses and checks a header at the start of `bytes`. The batch may be
    /// followed by more bytes (a log segment holds batches back to back).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(FormatError::new(format!(
                "a batch header needs {BATCH_HEADER_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut reader = ByteReader::new(&bytes[..BATCH_HEADER_LEN]);
        let base_offset = reader.i64("base offset")?;
        let batch_len = reader.u32("batch length")?;
        let crc = reader.u32("crc")?;
        let version = reader.u8("format version")?;
        if version != BATCH_FORMAT_VERSION {
            return Err(FormatError::new(format!(
                "batch format version {version} is not supported (expected {BATCH_FORMAT_VERSION})"
            )));
        }
        let attributes = reader.u8("attributes")?;
        let _reserved = reader.u16("reserved")?;
        let record_count = reader.u32("record count")?;
        let base_timestamp = reader.i64("base timestamp")?;
        let header = BatchHeader { base_offset, batch_len, crc, record_count, base_timestamp, attributes };
        if (header.batch_len as usize) < BATCH_HEADER_LEN || header.batch_len as usize > bytes.len() {
            return Err(FormatError::new(format!(
                "batch length {} is outside {BATCH_HEADER_LEN}..={} available bytes",
                header.batch_len,
                bytes.len()
            )));
        }
        // Every record takes at least its header, so a count larger than
        // that is a lie that would make readers allocate absurd indexes. A
        // compressed batch's records are checked once decompressed; its
        // count is only bounded by what it may decompress to.
        let room = if header.attributes & 0x07 == 0 {
            header.batch_len as usize - BATCH_HEADER_LEN
        } else {
            MAX_COMPRESSED_BATCH_RECORDS_BYTES
        };
        let max_records = room / RECORD_HEADER_LEN;
        if header.record_count as usize > max_records {
            return Err(FormatError::new(format!(
                "record count {} cannot fit in a batch of {} bytes",
                header.record_count, header.batch_len
            )));
        }
        Ok(header)
    }
}

/// One record of a batch, borrowed from the batch bytes. Positions are
/// relative to the start of the batch so that a reader can re-slice the
/// same bytes elsewhere (the guest refers to input ranges by position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record, record-length field included.
    pub bytes: &'a [u8],
    /// Position of `bytes` in the batch.
    pub start: usize,
    /// Offset delta from the batch's base offset.
    pub offset_delta: u32,
    /// Timestamp delta from the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Position and length of the key in the batch, if there is a key.
    pub key: Option<(usize, usize)>,
    /// Position and length of the value in the batch.
    pub value: (usize, usize),
    /// Position and length of the encoded headers in the batch.
    pub headers: (usize, usize),
    /// Number of headers.
    pub header_count: u32,
}

/// Parses the record that starts at `at` in `batch` (limited to `end`).
#[inline(always)]
pub fn parse_record(batch: &[u8], at: usize, end: usize) -> Result<RecordView<'_>, FormatError> {
    // Every host and guest reads each record through here. Every record
    // that reads at all is read by the fast path, so a view comes from one
    // place and a caller's loop keeps its fields in registers: with a
    // second path that built views too (whose result comes back through
    // memory), the two met in memory, and the guest's loop read a field
    // back wider than it was written, a store-forwarding stall a record.
    // The long way only words why a record is refused.
    match parse_record_fast(&batch[..end], at) {
        Some(view) => Ok(view),
        None => Err(refusal(batch, at, end)),
    }
}

/// Why the record at `at` cannot be read.
#[cold]
#[inline(never)]
fn refusal(batch: &[u8], at: usize, end: usize) -> FormatError {
    match parse_record_checked(batch, at, end) {
        Err(error) => error,
        // The two parses agree (a test holds them to it); should they
        // not, the record is refused rather than read two ways.
        Ok(_) => FormatError::new(format!("record at byte {at} could not be read")),
    }
}

#[inline]
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// A well-formed record, or `None` for anything else (which
/// [`parse_record_checked`] then words the refusal of). Headers, which
/// few records have, are walked out of line.
#[inline(always)]
fn parse_record_fast(batch: &[u8], at: usize) -> Option<RecordView<'_>> {
    let head = batch.get(at..)?.get(..RECORD_HEADER_LEN)?;
    let record_len = le_u32(head, 0) as usize;
    let bytes = batch.get(at..)?.get(..record_len.checked_add(4)?)?;
    if record_len < RECORD_HEADER_LEN - 4 {
        return None;
    }
    let header_count = le_u32(head, 24);
    let key_len = le_u32(head, 16) as i32;
    let value_len = le_u32(head, 20) as usize;
    let key_bytes = match key_len {
        -1 => 0,
        len if len >= 0 => len as usize,
        _ => return None,
    };
    // Key, value and headers fill the rest of the record exactly.
    let headers_at = RECORD_HEADER_LEN.checked_add(key_bytes)?.checked_add(value_len)?;
    let headers_len = bytes.len().checked_sub(headers_at)?;
    if headers_len != 0 || header_count != 0 {
        let headers = &bytes[headers_at..];
        if !headers_fill(headers, header_count) {
            return None;
        }
    }
    let key = (key_len >= 0).then_some((at + RECORD_HEADER_LEN, key_bytes));
    let value_start = at + RECORD_HEADER_LEN + key_bytes;
    Some(RecordView {
        bytes,
        start: at,
        offset_delta: le_u32(head, 4),
        timestamp_delta: i64::from_le_bytes(head[8..16].try_into().expect("eight bytes")),
        key,
        value: (value_start, value_len),
        headers: (value_start + value_len, headers_len),
        header_count,
    })
}

/// Whether `headers` are exactly `count` encoded headers.
#[cold]
#[inline(never)]
fn headers_fill(headers: &[u8], count: u32) -> bool {
    let mut reader = ByteReader::new(headers);
    skip_headers(&mut reader, count).is_ok() && reader.remaining() == 0
}

/// Reads past `count` encoded headers.
fn skip_headers(reader: &mut ByteReader<'_>, count: u32) -> Result<(), FormatError> {
    for _ in 0..count {
        reader.len_prefixed("header key")?;
        reader.len_prefixed("header value")?;
    }
    Ok(())
}

#[cold]
fn parse_record_checked(batch: &[u8], at: usize, end: usize) -> Result<RecordView<'_>, FormatError> {
    let batch = &batch[..end];
    let mut reader = ByteReader::at(batch, at);
    let record_len = reader.u32("record length")? as usize;
    if record_len < RECORD_HEADER_LEN - 4 {
        return Err(FormatError::new(format!("record at byte {at} is shorter than its header")));
    }
    // Everything else is read within the record's own bytes, so a field
    // that claims more than the record holds is caught here.
    let bytes = ByteReader::at(batch, at).bytes(4usize.saturating_add(record_len), "record")?;
    let mut fields = ByteReader::at(bytes, 4);
    let offset_delta = fields.u32("offset delta")?;
    let timestamp_delta = fields.i64("timestamp delta")?;
    let key_len = fields.i32("key length")?;
    let value_len = fields.u32("value length")? as usize;
    let header_count = fields.u32("header count")?;
    let key = match key_len {
        -1 => None,
        len if len < 0 => return Err(FormatError::new(format!("record at byte {at} has key length {key_len}"))),
        len => {
            let start = fields.position();
            fields.bytes(len as usize, "record key")?;
            Some((at + start, len as usize))
        }
    };
    let value = (at + fields.position(), value_len);
    fields.bytes(value_len, "record value")?;
    let headers_start = fields.position();
    // Walk the headers once so that later readers can index them freely.
    skip_headers(&mut fields, header_count)?;
    if fields.remaining() != 0 {
        return Err(FormatError::new(format!(
            "record at byte {at} has {} trailing bytes after its headers",
            fields.remaining()
        )));
    }
    let headers = (at + headers_start, bytes.len() - headers_start);
    Ok(RecordView { bytes, start: at, offset_delta, timestamp_delta, key, value, headers, header_count })
}

/// Iterates over the records of one batch, checking every length.
pub struct RecordIter<'a> {
    batch: &'a [u8],
    pos: usize,
    end: usize,
    remaining: u32,
}

impl<'a> RecordIter<'a> {
    /// Iterates over the records of the batch at the start of `batch`.
    #[inline]
    pub fn new(batch: &'a [u8]) -> Result<(BatchHeader, RecordIter<'a>), FormatError> {
        let header = BatchHeader::parse(batch)?;
        if header.attributes & 0x07 != 0 {
            return Err(FormatError::new("the batch is compressed; its records must be decompressed first"));
        }
        let iter =
            RecordIter { batch, pos: BATCH_HEADER_LEN, end: header.batch_len as usize, remaining: header.record_count };
        Ok((header, iter))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, FormatError>;

    // Inlined into the caller's loop so that the record's fields stay in
    // registers (returned through memory, they cost a store-forwarding
    // stall per record).
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return if self.pos != self.end {
                self.pos = self.end;
                Some(Err(FormatError::new("batch has bytes after its last record")))
            } else {
                None
            };
        }
        self.remaining -= 1;
        match parse_record(self.batch, self.pos, self.end) {
            Ok(record) => {
                self.pos += record.bytes.len();
                Some(Ok(record))
            }
            Err(error) => {
                self.remaining = 0;
                self.pos = self.end;
                Some(Err(error))
            }
        }
    }
}

/// Iterates over `(key, value)` pairs of encoded headers (already checked
/// by [`parse_record`]; a malformed list ends early).
pub fn iter_headers(encoded: &[u8], count: u32) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut reader = ByteReader::new(encoded);
    (0..count).map_while(move |_| {
        let key = reader.len_prefixed("header key").ok()?;
        let value = reader.len_prefixed("header value").ok()?;
        Some((key, value))
    })
}

/// Appends one header (or any name-value pair: a param, an error's kind
/// and message) to an encoded list.
pub fn encode_header(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.put_len_prefixed(key);
    out.put_len_prefixed(value);
}

/// The fixed fields of a record of `record_len` bytes (its length field
/// aside) whose key is `key_len` bytes long (-1: no key), with a value of
/// `value_len` bytes and `header_count` headers, as the batch layout has
/// them. Made as one array: a push per field pays a capacity check each,
/// and the engine writes a record per output.
#[inline(always)]
pub fn record_head(
    record_len: usize,
    offset_delta: u32,
    timestamp_delta: i64,
    key_len: i32,
    value_len: usize,
    header_count: u32,
) -> [u8; RECORD_HEADER_LEN] {
    let mut head = [0u8; RECORD_HEADER_LEN];
    head[0..4].copy_from_slice(&(record_len as u32).to_le_bytes());
    head[4..8].copy_from_slice(&offset_delta.to_le_bytes());
    head[8..16].copy_from_slice(&timestamp_delta.to_le_bytes());
    head[16..20].copy_from_slice(&key_len.to_le_bytes());
    head[20..24].copy_from_slice(&(value_len as u32).to_le_bytes());
    head[24..28].copy_from_slice(&header_count.to_le_bytes());
    head
}

/// Appends one record to `out` in the batch layout. Hosts build output
/// batches with it, and the guest glue its answers in layout 2.
/// `encoded_headers` is a list written with [`encode_header`] holding
/// `header_count` headers.
#[inline]
pub fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: u32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: &[u8],
    header_count: u32,
    encoded_headers: &[u8],
) {
    let key_len = key.map_or(0, <[u8]>::len);
    let record_len = RECORD_HEADER_LEN - 4 + key_len + value.len() + encoded_headers.len();
    let key_len_field = key.map_or(-1, |k| k.len() as i32);
    let head = record_head(record_len, offset_delta, timestamp_delta, key_len_field, value.len(), header_count);
    // One reserve, then the parts moved in with no capacity check each:
    // with an append per part, the record took 73 instructions beside its
    // copies (cachegrind, the engine's native column).
    out.reserve(record_len + 4);
    let at = out.len();
    // SAFETY: `reserve` made room for the record's `record_len + 4` bytes
    // past `at`: its fixed fields, key, value and headers, which the moves
    // below write one after the other, each reading within its own slice.
    unsafe {
        let dst = out.as_mut_ptr().add(at);
        std::ptr::copy_nonoverlapping(head.as_ptr(), dst, RECORD_HEADER_LEN);
        let mut written = RECORD_HEADER_LEN;
        if let Some(key) = key {
            std::ptr::copy_nonoverlapping(key.as_ptr(), dst.add(written), key.len());
            written += key.len();
        }
        move_short_or_long(value, dst.add(written));
        written += value.len();
        if !encoded_headers.is_empty() {
            std::ptr::copy_nonoverlapping(encoded_headers.as_ptr(), dst.add(written), encoded_headers.len());
            written += encoded_headers.len();
        }
        debug_assert_eq!(written, record_len + 4);
        out.set_len(at + written);
    }
}

/// Copies `bytes` to `dst`. Up to 16 bytes go as two fixed-size moves that
/// overlap (or byte by byte, under 4): in a module, a copy of a length
/// known only at run time is a `memory.copy`, which the engine compiles to
/// a call into the runtime, and an aggregate's accumulator is a few bytes
/// long (4% fewer instructions a record for the benchmark's count).
///
/// # Safety
///
/// `dst` must be valid for writes of `bytes.len()` bytes that do not
/// overlap `bytes`.
#[inline(always)]
unsafe fn move_short_or_long(bytes: &[u8], dst: *mut u8) {
    let len = bytes.len();
    let src = bytes.as_ptr();
    // SAFETY: each move reads within `bytes` and writes within
    // `dst..dst + len`, which the caller vouches for.
    unsafe {
        if len > 16 {
            std::ptr::copy_nonoverlapping(src, dst, len);
        } else if len >= 8 {
            dst.cast::<u64>().write_unaligned(src.cast::<u64>().read_unaligned());
            dst.add(len - 8).cast::<u64>().write_unaligned(src.add(len - 8).cast::<u64>().read_unaligned());
        } else if len >= 4 {
            dst.cast::<u32>().write_unaligned(src.cast::<u32>().read_unaligned());
            dst.add(len - 4).cast::<u32>().write_unaligned(src.add(len - 4).cast::<u32>().read_unaligned());
        } else {
            for i in 0..len {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Output area (guest to host)
// ---------------------------------------------------------------------------

/// Output header: status, next input pointer, next input capacity, entry
/// count, error count, entries length (all u32). Entries, then errors.
pub const OUTPUT_HEADER_LEN: usize = 24;

/// Status: every record was processed (record errors, if any, are listed).
pub const STATUS_OK: u32 = 0;
/// Status: processing stopped at the first record error, which is listed.
pub const STATUS_STOPPED: u32 = 1;
/// Status: setup or init failed; the error is listed with index [`NO_RECORD`].
pub const STATUS_SETUP_FAILED: u32 = 2;
/// Status: the input was not a valid batch.
pub const STATUS_BAD_INPUT: u32 = 3;

/// The record index used in errors that belong to no record.
pub const NO_RECORD: u32 = u32::MAX;

/// Answer layout 1: a filter answers with the indexes it keeps, map-like
/// kinds with entries that name a source record and tag a key and a value.
/// Every host and guest of ABI version 1 speaks it.
pub const ANSWER_LAYOUT_1: u32 = 1;
/// Answer layout 2: a filter answers with a bitmap of the records it keeps,
/// map-like kinds with their output records in the batch layout (or
/// [`RECORD_REFERENCE`]s to input records passed on whole), which the host
/// checks and copies without re-encoding. A host offers it in the setup
/// blob; a guest that speaks it says so in its setup answer.
pub const ANSWER_LAYOUT_2: u32 = 2;
/// The newest answer layout this library speaks.
pub const NEWEST_ANSWER_LAYOUT: u32 = ANSWER_LAYOUT_2;
/// In answer layout 2, an entry whose first word has this bit set is not a
/// record but a reference: the low 31 bits are the index of an input record
/// that goes to the output whole. (A record's length never has it set: a
/// batch is smaller than 2 GiB.)
pub const RECORD_REFERENCE: u32 = 1 << 31;

/// Tag of a missing key in a map-like entry.
pub const DATA_NONE: u8 = 0;
/// Tag of bytes written inline in the output: `u32 len`, then the bytes.
pub const DATA_INLINE: u8 = 1;
/// Tag of bytes that stand unchanged in the input batch: `u32 start, u32 len`.
pub const DATA_INPUT_RANGE: u8 = 2;

/// Packs an output location into the i64 a process export returns.
#[inline]
pub fn pack_location(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Unpacks the i64 a process export returns into `(ptr, len)`.
#[inline]
pub fn unpack_location(location: u64) -> (u32, u32) {
    ((location >> 32) as u32, location as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PutBytes;

    /// A small deterministic generator: the test needs variety, not secrecy.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % below.max(1)
        }
    }

    fn record(random: &mut Lcg) -> Vec<u8> {
        let key: Option<Vec<u8>> = (random.next(2) == 0).then(|| vec![b'k'; random.next(5) as usize]);
        let value = vec![b'v'; random.next(40) as usize];
        let mut headers = Vec::new();
        let header_count = random.next(3) as u32;
        for _ in 0..header_count {
            encode_header(&mut headers, b"h", &vec![b'x'; random.next(4) as usize]);
        }
        let key_len = key.as_ref().map_or(0, Vec::len);
        let mut out = Vec::new();
        out.put_u32((RECORD_HEADER_LEN - 4 + key_len + value.len() + headers.len()) as u32);
        out.put_u32(random.next(1000) as u32);
        out.put_i64(random.next(1000) as i64 - 500);
        out.put_i32(key.as_ref().map_or(-1, |k| k.len() as i32));
        out.put_u32(value.len() as u32);
        out.put_u32(header_count);
        out.extend_from_slice(key.as_deref().unwrap_or_default());
        out.extend_from_slice(&value);
        out.extend_from_slice(&headers);
        out
    }

    /// A record goes in exactly as its fields say, whatever its value's
    /// length (moved in short pieces up to 16 bytes, copied past that),
    /// with or without key and headers, after whatever the buffer held.
    #[test]
    fn encoded_records_hold_exactly_their_fields() {
        let source: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37).wrapping_add(1)).collect();
        // Key, encoded headers and their count.
        type Parts<'a> = (Option<&'a [u8]>, &'a [u8], u32);
        let parts: [Parts<'_>; 3] =
            [(None, &[], 0), (Some(b"key"), &[], 0), (Some(b""), b"\0\0\0\x01h\0\0\0\x02vv", 1)];
        for start in 0..4 {
            for len in 0..=source.len() - start {
                for already in [0usize, 3, 15] {
                    for (key, headers, header_count) in parts {
                        let value = &source[start..start + len];
                        let mut out = vec![0xAA; already];
                        encode_record(&mut out, 7, -3, key, value, header_count, headers);
                        let key_len = key.map_or(0, <[u8]>::len);
                        let mut expected = vec![0xAA; already];
                        expected.put_u32((RECORD_HEADER_LEN - 4 + key_len + len + headers.len()) as u32);
                        expected.put_u32(7);
                        expected.put_i64(-3);
                        expected.put_i32(key.map_or(-1, |k| k.len() as i32));
                        expected.put_u32(len as u32);
                        expected.put_u32(header_count);
                        expected.extend_from_slice(key.unwrap_or_default());
                        expected.extend_from_slice(value);
                        expected.extend_from_slice(headers);
                        assert_eq!(out, expected, "value of {len} from {start} after {already}, key {key:?}");
                    }
                }
            }
        }
    }

    /// The fast path must read every record exactly as the checked one
    /// does, and refuse exactly what it refuses: well-formed records and
    /// records with a byte changed, a length changed, or bytes cut off.
    #[test]
    fn the_fast_parse_agrees_with_the_checked_one_on_good_and_damaged_records() {
        let mut random = Lcg(7);
        let mut refused = 0;
        for round in 0..20_000 {
            let mut bytes = vec![0u8; random.next(3) as usize];
            let at = bytes.len();
            bytes.extend(record(&mut random));
            bytes.extend(vec![0u8; random.next(3) as usize]);
            let mut end = at + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize + 4;
            match round % 4 {
                0 => {}
                1 => {
                    let position = at + random.next((end - at) as u64) as usize;
                    bytes[position] = random.next(256) as u8;
                }
                2 => {
                    // A length field (record, key, value or header count) off by a little.
                    let field = [0, 16, 20, 24][random.next(4) as usize];
                    let old = u32::from_le_bytes(bytes[at + field..at + field + 4].try_into().unwrap());
                    let new = old.wrapping_add(random.next(5) as u32).wrapping_sub(2);
                    bytes[at + field..at + field + 4].copy_from_slice(&new.to_le_bytes());
                }
                _ => end = at + random.next((end - at) as u64) as usize,
            }
            let end = end.min(bytes.len());
            let fast = parse_record(&bytes, at, end);
            let checked = parse_record_checked(&bytes, at, end);
            match (&fast, &checked) {
                (Ok(fast), Ok(checked)) => assert_eq!(fast, checked, "round {round}"),
                (Err(fast), Err(checked)) => {
                    assert_eq!(fast.reason, checked.reason, "round {round}");
                    refused += 1;
                }
                _ => panic!("round {round}: fast {fast:?}, checked {checked:?}"),
            }
        }
        // Most damaged records are refused; the test covers both outcomes.
        assert!(refused > 5_000, "{refused} refused");
    }
}
