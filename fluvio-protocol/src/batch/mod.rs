//! Record batches on the host: building, validating and reading them.
//!
//! Batches are bytes in the one batch layout (`docs/abi.md`) that the
//! platform uses on disk, on the wire and as SmartModule input. How far
//! they were checked is their type:
//!
//! - a [`StoredBatch`], read back from this server's storage, had its
//!   header checked: it can be sent on as it is, but gives no records;
//! - a [`CheckedBatch`] was checked whole (CRC-32C and every record), but
//!   its records may be compressed: what is stored and sent;
//! - a [`Batch`] was checked whole and its records are plain: the only one
//!   that hands out records.
//!
//! Each step up is a method that checks (`verify`, `open`); building a
//! batch ([`BatchBuilder`]) computes its CRC-32C.
//!
//! The layout itself (header fields, record parsing) is defined once, in
//! `smartmodule_abi::abi`, which guests share; the writers that only hosts
//! need ([`encode_record`], [`write_batch_header`]) and the [`RecordIndex`]
//! live here.

pub use smartmodule_abi::abi::encode_record;
use smartmodule_abi::abi::{self, BatchHeader, FormatError, RecordIter, RecordView};

use crate::compression::{COMPRESSION_MASK, Compression, decompressed_limit};
use smartmodule_abi::codec::PutBytes;

/// The byte range of each batch in `bytes`, which holds whole batches back
/// to back (a stream's `Batch` payload). Only each header's length is read
/// here: check each batch with [`Batch::check_sent`]. Ends with an error at
/// the first length that is too short for a header or runs past the end.
pub fn batch_ranges(bytes: &[u8]) -> impl Iterator<Item = Result<std::ops::Range<usize>, FormatError>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let rest = &bytes[at..];
        let Some(len) = rest.get(abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4) else {
            at = bytes.len();
            return Some(Err(FormatError::new(format!("{} bytes after the last batch are not a batch", rest.len()))));
        };
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        if len < abi::BATCH_HEADER_LEN || len > rest.len() {
            at = bytes.len();
            return Some(Err(FormatError::new(format!(
                "a batch says it is {len} bytes long, but {} bytes remain",
                rest.len()
            ))));
        }
        let range = at..at + len;
        at += len;
        Some(Ok(range))
    })
}

/// The header getters every batch type shares: a batch's header was
/// checked when the value was made, whatever else was.
macro_rules! header_getters {
    () => {
        fn header(&self) -> abi::BatchHeader {
            abi::BatchHeader::parse(&self.bytes).expect("the header is checked when the batch is made")
        }

        /// Offset of the first record; record offsets are relative to it.
        pub fn base_offset(&self) -> i64 {
            self.header().base_offset
        }

        /// Timestamp that record timestamps are relative to.
        pub fn base_timestamp(&self) -> i64 {
            self.header().base_timestamp
        }

        /// Number of records.
        pub fn record_count(&self) -> u32 {
            self.header().record_count
        }

        /// Whether the batch holds no record.
        pub fn is_empty(&self) -> bool {
            self.record_count() == 0
        }

        /// How the batch's records are compressed.
        pub fn compression(&self) -> Compression {
            Compression::from_attributes(self.header().attributes).expect("the codec is checked when the batch is made")
        }

        /// The encoded batch.
        pub fn as_bytes(&self) -> &[u8] {
            &self.bytes
        }

        /// The encoded batch, by value.
        pub fn into_bytes(self) -> Vec<u8> {
            self.bytes
        }
    };
}

fn debug_batch(name: &str, f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    let header = abi::BatchHeader::parse(bytes).expect("the header is checked when the batch is made");
    f.debug_struct(name)
        .field("base_offset", &header.base_offset)
        .field("records", &header.record_count)
        .field("bytes", &bytes.len())
        .finish()
}

/// Offset one past the last record's: hops record lengths, every hop
/// bounds-checked (a stored batch's records were not checked again).
fn next_offset_of(bytes: &[u8], header: &BatchHeader) -> i64 {
    if header.attributes & COMPRESSION_MASK != 0 {
        // Compressed batches are numbered 0, 1, 2... (checked when stored).
        return header.base_offset.saturating_add(header.record_count as i64);
    }
    let end = (header.batch_len as usize).min(bytes.len());
    let mut last = None;
    let mut at = abi::BATCH_HEADER_LEN;
    for _ in 0..header.record_count {
        let Some(len) = bytes.get(at..at + 4) else { break };
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        if at + 4 + len > end {
            break;
        }
        last = Some(at);
        at += 4 + len;
    }
    match last.and_then(|at| bytes.get(at + 4..at + 8)) {
        Some(delta) => {
            header.base_offset.saturating_add(u32::from_le_bytes(delta.try_into().expect("four bytes")) as i64 + 1)
        }
        None => header.base_offset,
    }
}

fn check_length(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = abi::BatchHeader::parse(bytes)?;
    if header.batch_len as usize != bytes.len() {
        return Err(FormatError::new(format!(
            "batch says it is {} bytes long but {} bytes were given",
            header.batch_len,
            bytes.len()
        )));
    }
    Ok(header)
}

/// The CRC-32C a batch carries: of everything after the CRC field.
fn batch_crc(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &bytes[abi::BATCH_CRC_FROM..]) as u32
}

fn check_length_and_crc(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = check_length(bytes)?;
    let computed = batch_crc(bytes);
    if computed != header.crc {
        return Err(FormatError::new(format!(
            "batch CRC mismatch: stored {:#010x}, computed {computed:#010x}; the batch is corrupt",
            header.crc
        )));
    }
    Ok(header)
}

/// Checks every record of an uncompressed batch whose header, length and
/// CRC are checked, and returns its next offset (one past its last
/// record's, or its base offset when empty).
fn check_plain_records(bytes: &[u8], header: &BatchHeader) -> Result<i64, FormatError> {
    let (_, records) = RecordIter::new(bytes)?;
    let mut next_offset = header.base_offset;
    for record in records {
        next_offset = header.base_offset.saturating_add(record?.offset_delta as i64 + 1);
    }
    Ok(next_offset)
}

/// A compressed batch's records, decompressed and checked: they must parse,
/// match the header's count and be numbered 0, 1, 2, ... (so the header
/// alone says where the batch ends).
fn open_compressed(bytes: &[u8], header: &BatchHeader) -> Result<Batch, FormatError> {
    let codec = Compression::from_attributes(header.attributes)?;
    let compressed = &bytes[abi::BATCH_HEADER_LEN..];
    let records = codec.decompress(compressed, decompressed_limit(compressed.len()))?;
    let mut plain = Vec::with_capacity(abi::BATCH_HEADER_LEN + records.len());
    plain.extend_from_slice(&bytes[..abi::BATCH_HEADER_LEN]);
    plain.extend_from_slice(&records);
    let len = u32::try_from(plain.len()).map_err(|_| FormatError::new("a decompressed batch over 4 GiB"))?;
    plain[abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
    plain[abi::BATCH_ATTRIBUTES_AT] = 0;
    let (_, iter) = RecordIter::new(&plain)?;
    let mut count = 0u32;
    for (position, record) in iter.enumerate() {
        let record = record?;
        if record.offset_delta as usize != position {
            return Err(FormatError::new(format!(
                "a compressed batch must number its records 0, 1, 2...; record {position} has delta {}",
                record.offset_delta
            )));
        }
        count += 1;
    }
    if count != header.record_count {
        return Err(FormatError::new("a compressed batch's records do not match its record count"));
    }
    Ok(Batch::seal_host_written(plain))
}

/// A batch read back from this server's own storage, whose header alone
/// was checked: its CRC and records were checked when it was stored, and
/// a reader that sends it on as it is need not pay for that again. It tells
/// where it lies and gives its bytes, but no records:
/// [`verify`](Self::verify) checks it whole and [`open`](Self::open) also
/// decompresses it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredBatch {
    bytes: Vec<u8>,
    /// Found once, as the batch is taken: a server asks it of every batch
    /// it sends, and a JetStream read finds it in its check anyway.
    next_offset: i64,
}

impl std::fmt::Debug for StoredBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_batch("StoredBatch", f, &self.bytes)
    }
}

impl StoredBatch {
    /// Takes a batch this process stored, checking its header, its length
    /// and its codec only.
    pub fn from_storage(bytes: Vec<u8>) -> Result<StoredBatch, FormatError> {
        let header = check_length(&bytes)?;
        Compression::from_attributes(header.attributes)?;
        Ok(StoredBatch::with_next_offset(bytes, &header))
    }

    fn with_next_offset(bytes: Vec<u8>, header: &BatchHeader) -> StoredBatch {
        let next_offset = next_offset_of(&bytes, header);
        StoredBatch { bytes, next_offset }
    }

    /// Takes a batch read from storage that others may write as well (a
    /// JetStream stream): header, length, codec and CRC-32C are checked,
    /// and an uncompressed batch's records. A compressed batch's records
    /// are checked when it is [`open`](Self::open)ed (its next offset comes
    /// from its header, as compressed batches number their records 0, 1,
    /// 2...), so that a reader inflates nothing it only passes on, and the
    /// one that opens it decides where the inflating runs.
    pub fn from_shared_storage(bytes: Vec<u8>) -> Result<StoredBatch, FormatError> {
        let header = check_length_and_crc(&bytes)?;
        Compression::from_attributes(header.attributes)?;
        if header.attributes & COMPRESSION_MASK != 0 {
            return Ok(StoredBatch::with_next_offset(bytes, &header));
        }
        // The CRC once: checking it a second time took 1.3% of the CPU of
        // a JetStream consume (server and client in one process).
        let next_offset = check_plain_records(&bytes, &header)?;
        Ok(StoredBatch { bytes, next_offset })
    }

    /// The batch checked whole, as [`CheckedBatch::from_bytes`] checks one:
    /// what a reader does where the bytes on disk may have changed since
    /// they were stored.
    pub fn verify(self) -> Result<CheckedBatch, FormatError> {
        CheckedBatch::from_bytes(self.bytes)
    }

    /// The batch checked whole and decompressed, for code that reads its
    /// records.
    pub fn open(self) -> Result<Batch, FormatError> {
        self.verify()?.open()
    }

    header_getters!();

    /// Offset one past the last record's, or the base offset when empty.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
}

impl From<CheckedBatch> for StoredBatch {
    fn from(batch: CheckedBatch) -> StoredBatch {
        let header = batch.header();
        StoredBatch::with_next_offset(batch.bytes, &header)
    }
}

impl From<Batch> for StoredBatch {
    fn from(batch: Batch) -> StoredBatch {
        let header = batch.header();
        StoredBatch::with_next_offset(batch.bytes, &header)
    }
}

/// A batch checked whole (header, length, CRC-32C and every record, a
/// compressed one's after decompressing them), whose records may still be
/// compressed: what a server stores and a producer sends. It hands out no
/// records; [`open`](Self::open) gives the [`Batch`] that does.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckedBatch {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for CheckedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_batch("CheckedBatch", f, &self.bytes)
    }
}

impl CheckedBatch {
    /// Checks `bytes` (exactly one batch) and takes them as they are,
    /// compressed or not.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<CheckedBatch, FormatError> {
        CheckedBatch::from_bytes_with_next_offset(bytes).map(|(batch, _)| batch)
    }

    /// Checks `bytes` as [`from_bytes`](Self::from_bytes) does, and also
    /// returns the batch's [`next_offset`](Self::next_offset), found in the
    /// same pass over the records (a reader of a store that needs both
    /// would otherwise walk every batch twice).
    pub fn from_bytes_with_next_offset(bytes: Vec<u8>) -> Result<(CheckedBatch, i64), FormatError> {
        let header = check_length_and_crc(&bytes)?;
        if header.attributes & COMPRESSION_MASK != 0 {
            open_compressed(&bytes, &header)?;
            let batch = CheckedBatch { bytes };
            let next_offset = batch.next_offset();
            return Ok((batch, next_offset));
        }
        let next_offset = check_plain_records(&bytes, &header)?;
        Ok((CheckedBatch { bytes }, next_offset))
    }

    /// The batch with its records decompressed (a copy), or itself, now a
    /// [`Batch`], when they are not compressed.
    pub fn open(self) -> Result<Batch, FormatError> {
        let header = self.header();
        if header.attributes & COMPRESSION_MASK == 0 {
            return Ok(Batch { bytes: self.bytes });
        }
        open_compressed(&self.bytes, &header)
    }

    /// Moves the batch to a new base offset (a server does this when it
    /// appends a producer's batch). The CRC does not cover the base offset,
    /// so it stays valid.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.bytes[abi::BATCH_BASE_OFFSET_AT..abi::BATCH_BASE_OFFSET_AT + 8]
            .copy_from_slice(&base_offset.to_le_bytes());
    }

    /// The first record whose offset delta is not its position, as
    /// `(position, delta)`: a produced batch must number its records 0, 1,
    /// 2, ... (a compressed one was made to when it was checked).
    pub fn misnumbered(&self) -> Option<(usize, i64)> {
        if self.compression() != Compression::None {
            return None;
        }
        let (_, records) = RecordIter::new(&self.bytes).ok()?;
        records
            .map_while(Result::ok)
            .enumerate()
            .map(|(position, record)| (position, record.offset_delta as i64))
            .find(|(position, delta)| *delta != *position as i64)
    }

    header_getters!();

    /// Offset one past the last record's, or the base offset when empty.
    /// Hops from record length to record length (no record is parsed and
    /// nothing is allocated).
    pub fn next_offset(&self) -> i64 {
        next_offset_of(&self.bytes, &self.header())
    }
}

impl From<Batch> for CheckedBatch {
    fn from(batch: Batch) -> CheckedBatch {
        CheckedBatch { bytes: batch.bytes }
    }
}

/// A record batch checked whole, with its records uncompressed: the one
/// batch type that hands out records. Built by [`BatchBuilder`], checked
/// from bytes by [`from_bytes`](Self::from_bytes), opened from a
/// [`CheckedBatch`] or a [`StoredBatch`], or sealed from bytes host code
/// wrote itself ([`seal_host_written`](Self::seal_host_written)).
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_batch("Batch", f, &self.bytes)
    }
}

impl Batch {
    /// Checks `bytes` (exactly one batch): header, every record's lengths
    /// and the CRC-32C; a compressed batch is checked and returned
    /// decompressed.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Batch, FormatError> {
        CheckedBatch::from_bytes(bytes)?.open()
    }

    /// Checks the header, the length and the CRC of a batch whose records
    /// the caller reads once anyway, each checked as it is read with
    /// [`try_records`](Self::try_records) (a consumer: one pass over the
    /// records instead of two). A compressed batch is checked whole, as
    /// [`from_bytes`](Self::from_bytes) does, and returned decompressed (it
    /// is decompressed once, for the check and the reader both).
    pub fn from_sent_bytes(bytes: Vec<u8>) -> Result<Batch, FormatError> {
        let header = check_length_and_crc(&bytes)?;
        if header.attributes & COMPRESSION_MASK != 0 {
            return open_compressed(&bytes, &header);
        }
        Ok(Batch { bytes })
    }

    /// [`from_sent_bytes`](Self::from_sent_bytes) for a batch the caller
    /// keeps where it is (one of a run: [`batch_ranges`]): `None` when the
    /// bytes are read as they are, with records checked as they are read;
    /// the batch decompressed and checked whole (a copy) when its records
    /// are compressed.
    pub fn check_sent(bytes: &[u8]) -> Result<Option<Batch>, FormatError> {
        let header = check_length_and_crc(bytes)?;
        if header.attributes & COMPRESSION_MASK != 0 {
            return open_compressed(bytes, &header).map(Some);
        }
        Ok(None)
    }

    /// The same batch with its records compressed with `codec`, to send or
    /// store. Only a batch numbered 0, 1, 2... (as producers send them) is
    /// compressed; another, or an empty one, is returned as it is, as is
    /// one that compresses so well that its readers would refuse to
    /// inflate it (see [`decompressed_limit`]): it is sent uncompressed.
    pub fn compressed(self, codec: Compression) -> CheckedBatch {
        if codec == Compression::None || self.is_empty() {
            return self.into();
        }
        let base = self.base_offset();
        if self.records().enumerate().any(|(position, record)| record.offset - base != position as i64) {
            return self.into();
        }
        let records = &self.bytes[abi::BATCH_HEADER_LEN..];
        let packed = codec.compress(records);
        if records.len() > decompressed_limit(packed.len()) {
            return self.into();
        }
        let mut bytes = Vec::with_capacity(abi::BATCH_HEADER_LEN + packed.len());
        bytes.extend_from_slice(&self.bytes[..abi::BATCH_HEADER_LEN]);
        bytes.extend_from_slice(&packed);
        let len = bytes.len() as u32;
        bytes[abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
        bytes[abi::BATCH_ATTRIBUTES_AT] = codec.code();
        Batch::seal_host_written(bytes).into()
    }

    /// Takes bytes that host code wrote with this module's writers
    /// ([`write_batch_header`], [`encode_record`], or whole records copied
    /// from a checked batch), and computes the CRC. The bytes are trusted,
    /// not checked: never call this on bytes from a client, a guest or a
    /// file.
    pub fn seal_host_written(mut bytes: Vec<u8>) -> Batch {
        let crc = batch_crc(&bytes);
        bytes[abi::BATCH_CRC_AT..abi::BATCH_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        Batch { bytes }
    }

    /// Moves the batch to a new base offset. The CRC does not cover the
    /// base offset, so it stays valid.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.bytes[abi::BATCH_BASE_OFFSET_AT..abi::BATCH_BASE_OFFSET_AT + 8]
            .copy_from_slice(&base_offset.to_le_bytes());
    }

    header_getters!();

    /// Offset one past the last record's, or the base offset when empty.
    /// Hops from record length to record length (no record is parsed and
    /// nothing is allocated).
    pub fn next_offset(&self) -> i64 {
        next_offset_of(&self.bytes, &self.header())
    }

    /// The records, borrowed from the batch.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        // Only bytes sealed by hand (`seal_host_written`) can fail here;
        // their records end at the damage.
        self.try_records().map_while(Result::ok)
    }

    /// The records, each checked as it is read: for a batch taken with
    /// [`from_sent_bytes`](Self::from_sent_bytes), which does not walk the
    /// records up front.
    pub fn try_records(&self) -> impl Iterator<Item = Result<RecordRef<'_>, FormatError>> {
        let bytes = &self.bytes;
        let (first_error, records) = match RecordIter::new(bytes) {
            Ok((header, records)) => (None, Some((header, records))),
            Err(error) => (Some(Err(error)), None),
        };
        first_error.into_iter().chain(records.into_iter().flat_map(move |(header, records)| {
            records.map(move |view| view.map(|view| RecordRef::new(bytes, &view, &header)))
        }))
    }

    /// Keeps the records at or after `offset`, so that a consumer starting
    /// inside a stored batch sees (and SmartModules process) only what it
    /// asked for. Offsets and timestamps are unchanged.
    pub fn trimmed_to(self, offset: i64) -> Batch {
        if self.base_offset() >= offset {
            return self;
        }
        self.keeping(|record| record.offset >= offset)
    }

    /// The batch without its records at or after `offset` (the batch
    /// itself when it has none there).
    pub fn ending_before(self, offset: i64) -> Batch {
        if self.next_offset() <= offset {
            return self;
        }
        self.keeping(|record| record.offset < offset)
    }

    /// A batch of the same base offset and timestamp holding the records
    /// `keep` says, their offsets unchanged.
    fn keeping(&self, keep: impl Fn(&RecordRef<'_>) -> bool) -> Batch {
        let mut builder = BatchBuilder::new(self.base_offset(), self.base_timestamp());
        for record in self.records().filter(|record| keep(record)) {
            builder.push(
                (record.offset - self.base_offset()) as u32,
                record.timestamp,
                record.key,
                record.value,
                &record.headers,
            );
        }
        builder.finish()
    }
}

/// One record of a [`Batch`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// Headers as `(name, value)`.
    pub headers: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> RecordRef<'a> {
    #[inline]
    fn new(batch: &'a [u8], view: &RecordView<'a>, header: &BatchHeader) -> RecordRef<'a> {
        let (hstart, hlen) = view.headers;
        RecordRef {
            // Saturating: the fields come from outside, and an absurd timestamp
            // must not overflow (a panic with overflow checks).
            offset: header.base_offset.saturating_add(view.offset_delta as i64),
            timestamp: header.base_timestamp.saturating_add(view.timestamp_delta),
            key: view.key.map(|(start, len)| &batch[start..start + len]),
            value: &batch[view.value.0..view.value.0 + view.value.1],
            headers: match view.header_count {
                0 => Vec::new(),
                count => abi::iter_headers(&batch[hstart..hstart + hlen], count).collect(),
            },
        }
    }
}

/// Builds a batch record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    base_offset: i64,
    base_timestamp: i64,
    record_count: u32,
}

impl BatchBuilder {
    /// An empty batch at `base_offset` whose timestamps count from `base_timestamp`.
    pub fn new(base_offset: i64, base_timestamp: i64) -> BatchBuilder {
        let mut bytes = Vec::with_capacity(4096);
        bytes.resize(abi::BATCH_HEADER_LEN, 0);
        BatchBuilder { bytes, base_offset, base_timestamp, record_count: 0 }
    }

    /// Appends a record at `base_offset + offset_delta` with an absolute timestamp.
    pub fn push(
        &mut self,
        offset_delta: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], &[u8])],
    ) {
        let mut encoded_headers = Vec::new();
        for (name, value) in headers {
            abi::encode_header(&mut encoded_headers, name, value);
        }
        encode_record(
            &mut self.bytes,
            offset_delta,
            timestamp - self.base_timestamp,
            key,
            value,
            headers.len() as u32,
            &encoded_headers,
        );
        self.record_count += 1;
    }

    /// Appends a record at the next offset delta (the record count so far),
    /// with the batch's base timestamp.
    pub fn push_value(&mut self, key: Option<&[u8]>, value: &[u8]) {
        let delta = self.record_count;
        let timestamp = self.base_timestamp;
        self.push(delta, timestamp, key, value, &[]);
    }

    /// Number of records so far.
    pub fn len(&self) -> u32 {
        self.record_count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes written so far, header included.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Finishes the batch: writes the header and the CRC.
    pub fn finish(self) -> Batch {
        let mut bytes = self.bytes;
        write_batch_header(&mut bytes, self.base_offset, self.record_count, self.base_timestamp);
        Batch::seal_host_written(bytes)
    }
}

/// Where each record of a batch starts, found by hopping from record length
/// to record length. Cheaper than parsing every record: a host whose batch
/// is already validated indexes it this way and parses only the records it
/// needs ([`RecordIndex::view`]). Every hop is bounds-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIndex {
    header: BatchHeader,
    starts: Vec<u32>,
}

impl RecordIndex {
    /// Indexes the batch at the start of `batch`.
    pub fn new(batch: &[u8]) -> Result<RecordIndex, FormatError> {
        let header = BatchHeader::parse(batch)?;
        let body = &batch[..header.batch_len as usize];
        // `parse` bounded the count by what the batch can hold.
        let mut starts = vec![0u32; header.record_count as usize];
        let mut at = abi::BATCH_HEADER_LEN;
        // A plain loop over a slice of known length: every record costs a
        // read, two comparisons and a store, which the host pays for each
        // batch a module runs on.
        for start in &mut starts {
            let Some(&[a, b, c, d]) = body.get(at..at.wrapping_add(4)) else {
                return Err(FormatError::new(format!(
                    "record length (4 bytes) at byte {at} is past the end ({} bytes)",
                    body.len()
                )));
            };
            let record_len = u32::from_le_bytes([a, b, c, d]) as usize;
            if record_len < abi::RECORD_HEADER_LEN - 4 {
                return Err(FormatError::new(format!("record at byte {at} is shorter than its header")));
            }
            let next = at + 4 + record_len;
            if next > body.len() {
                return Err(FormatError::new(format!(
                    "record ({record_len} bytes) at byte {} is past the end ({} bytes)",
                    at + 4,
                    body.len()
                )));
            }
            *start = at as u32;
            at = next;
        }
        if at != body.len() {
            return Err(FormatError::new("batch has bytes after its last record"));
        }
        Ok(RecordIndex { header, starts })
    }

    /// The batch's header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The whole encoded record `index` (record-length field included).
    #[inline]
    pub fn bytes<'a>(&self, batch: &'a [u8], index: usize) -> Option<&'a [u8]> {
        let start = *self.starts.get(index)? as usize;
        let end = self.starts.get(index + 1).map_or(self.header.batch_len as usize, |next| *next as usize);
        batch.get(start..end)
    }

    /// The fixed fields of record `index` (record-length field included):
    /// every indexed record holds them, so this needs one lookup and one
    /// bounds check where [`RecordIndex::bytes`] needs two of each.
    #[inline]
    pub fn head<'a>(&self, batch: &'a [u8], index: usize) -> Option<&'a [u8]> {
        let start = *self.starts.get(index)? as usize;
        batch.get(start..start.checked_add(abi::RECORD_HEADER_LEN)?)
    }

    /// Records `first` up to but not including `end`, encoded, back to back.
    #[inline]
    pub fn span<'a>(&self, batch: &'a [u8], first: usize, end: usize) -> Option<&'a [u8]> {
        if first >= end {
            return None;
        }
        let start = *self.starts.get(first)? as usize;
        let stop = match self.starts.get(end) {
            Some(next) => *next as usize,
            None if end == self.starts.len() => self.header.batch_len as usize,
            None => return None,
        };
        batch.get(start..stop)
    }

    /// Where record `index` starts in the batch.
    #[inline]
    pub fn start(&self, index: usize) -> Option<usize> {
        self.starts.get(index).map(|start| *start as usize)
    }

    /// Record `index`, parsed and checked.
    #[inline]
    pub fn view<'a>(&self, batch: &'a [u8], index: usize) -> Result<RecordView<'a>, FormatError> {
        let start = *self.starts.get(index).ok_or_else(|| FormatError::new(format!("no record {index}")))? as usize;
        abi::parse_record(batch, start, self.header.batch_len as usize)
    }
}

/// Writes a batch header at the start of `out` (which must hold at least
/// `abi::BATCH_HEADER_LEN` bytes, the records following). The CRC is left at
/// zero: [`Batch::seal_host_written`] fills it in.
pub fn write_batch_header(out: &mut [u8], base_offset: i64, record_count: u32, base_timestamp: i64) {
    let batch_len = out.len() as u32;
    let mut header = Vec::with_capacity(abi::BATCH_HEADER_LEN);
    header.put_i64(base_offset);
    header.put_u32(batch_len);
    header.put_u32(0); // CRC
    header.put_u8(abi::BATCH_FORMAT_VERSION);
    header.put_u8(0); // attributes
    header.put_u16(0); // reserved
    header.put_u32(record_count);
    header.put_i64(base_timestamp);
    out[..abi::BATCH_HEADER_LEN].copy_from_slice(&header);
}

#[cfg(test)]
mod tests;
