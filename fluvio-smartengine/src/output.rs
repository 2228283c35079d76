//! Decoding what a SmartModule answers: the output area it points at in
//! its memory, checked against that memory and against the input batch,
//! turned into an output batch. Everything here reads bytes a hostile
//! module wrote, so every length, index and range is checked; it needs no
//! wasm runtime, so it is fuzzed on its own (`fuzz/`).

use fluvio_protocol::ModuleKind;
use fluvio_protocol::batch::{RecordIndex, encode_record, write_batch_header};
use smartmodule_abi::abi::{self, FormatError, RecordView};
use smartmodule_abi::codec::ByteReader;

/// An error a guest reported for one record of a batch (or, with index
/// [`abi::NO_RECORD`], for its setup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    /// Index of the record in the batch the guest was given.
    pub index: u32,
    /// The error's kind: the guest error type's name.
    pub kind: String,
    /// The error's message.
    pub message: String,
}

/// An output area decoded: the output batch and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedOutput {
    /// The output records in the batch layout, header written, CRC not.
    pub batch: Vec<u8>,
    /// How many records the output batch holds.
    pub records_out: u32,
    /// Each record error the module reported.
    pub errors: Vec<GuestError>,
    /// The value of the last output record (the accumulator, for aggregates).
    pub last_value: Option<Vec<u8>>,
    /// Where the module wants its next input: pointer and capacity.
    pub next_input: (u32, u32),
}

/// Why an output area was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    /// The module said it could not read the batch, with its reason.
    BadInput(String),
    /// The output area breaks the ABI.
    Invalid(FormatError),
}

impl From<FormatError> for OutputError {
    fn from(error: FormatError) -> Self {
        OutputError::Invalid(error)
    }
}

/// Decodes the answer of a module of `kind` to `batch` (indexed by
/// `records`): the output area at `location` in `memory`, in answer
/// `layout` (agreed at setup). The output batch may grow to the input's
/// size plus `memory_limit` and no further.
pub fn decode_output(
    kind: ModuleKind,
    layout: u32,
    memory: &[u8],
    location: u64,
    batch: &[u8],
    records: &RecordIndex,
    memory_limit: u64,
) -> Result<DecodedOutput, OutputError> {
    let output = OutputArea::locate(memory, location)?;
    let next_input = output.next_input(memory.len())?;
    if output.status == abi::STATUS_BAD_INPUT {
        let errors = output.errors(records.len() as u32).unwrap_or_default();
        let reason = errors.first().map_or("no reason given", |e| e.message.as_str());
        return Err(OutputError::BadInput(reason.to_string()));
    }
    if output.status != abi::STATUS_OK && output.status != abi::STATUS_STOPPED {
        return Err(FormatError::new(format!("unknown status {}", output.status)).into());
    }
    let errors = output.errors(records.len() as u32)?;
    let limit = output_limit(batch, memory_limit);
    let (batch, last_value) = match (kind, layout) {
        (ModuleKind::Filter, abi::ANSWER_LAYOUT_1) => decode_filter(&output, batch, records),
        (ModuleKind::Filter, _) => decode_filter_bitmap(&output, batch, records),
        (kind, abi::ANSWER_LAYOUT_1) => decode_records(kind, &output, batch, records, limit),
        (kind, _) => decode_output_records(kind, &output, batch, records, limit),
    }?;
    Ok(DecodedOutput { batch, records_out: output.entry_count, errors, last_value, next_input })
}

/// The output area a guest pointed at, checked against its memory.
pub(crate) struct OutputArea<'m> {
    pub(crate) status: u32,
    next_ptr: u32,
    next_cap: u32,
    entry_count: u32,
    error_count: u32,
    entries: &'m [u8],
    errors: &'m [u8],
}

impl<'m> OutputArea<'m> {
    /// The answer layout a setup answer says the guest took: its one entry,
    /// or layout 1 from a guest that answers with none.
    pub(crate) fn chosen_layout(&self) -> Result<u32, FormatError> {
        match (self.entry_count, self.entries) {
            (0, []) => Ok(abi::ANSWER_LAYOUT_1),
            (1, &[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
            (count, entries) => Err(FormatError::new(format!(
                "a setup answer holds at most one entry (the answer layout), not {count} in {} bytes",
                entries.len()
            ))),
        }
    }

    pub(crate) fn locate(memory: &'m [u8], location: u64) -> Result<OutputArea<'m>, FormatError> {
        let (ptr, len) = abi::unpack_location(location);
        let area = ByteReader::at(memory, ptr as usize).bytes(len as usize, "output area").map_err(|_| {
            FormatError::new(format!("output area {ptr:#x}+{len} is outside guest memory ({} bytes)", memory.len()))
        })?;
        let mut header = ByteReader::new(area);
        let status = header.u32("output status")?;
        let next_ptr = header.u32("next input pointer")?;
        let next_cap = header.u32("next input capacity")?;
        let entry_count = header.u32("entry count")?;
        let error_count = header.u32("error count")?;
        let entries_len = header.u32("entries length")? as usize;
        let entries = header.bytes(entries_len, "output entries")?;
        let errors = &area[header.position()..];
        Ok(OutputArea { status, next_ptr, next_cap, entry_count, error_count, entries, errors })
    }

    pub(crate) fn next_input(&self, memory_len: usize) -> Result<(u32, u32), FormatError> {
        let end = self.next_ptr as u64 + self.next_cap as u64;
        if end > memory_len as u64 {
            return Err(FormatError::new(format!(
                "next input buffer {:#x}+{} is outside guest memory ({memory_len} bytes)",
                self.next_ptr, self.next_cap
            )));
        }
        Ok((self.next_ptr, self.next_cap))
    }

    /// The record errors. Indexes must be below `record_count` or be
    /// [`abi::NO_RECORD`].
    pub(crate) fn errors(&self, record_count: u32) -> Result<Vec<GuestError>, FormatError> {
        let mut errors = Vec::with_capacity(self.error_count.min(1024) as usize);
        let mut reader = ByteReader::new(self.errors);
        for _ in 0..self.error_count {
            let index = reader.u32("error record index")?;
            if index >= record_count && index != abi::NO_RECORD {
                return Err(FormatError::new(format!(
                    "error for record index {index}, but the batch has {record_count} records"
                )));
            }
            let kind = reader.len_prefixed("error kind")?;
            let message = reader.len_prefixed("error message")?;
            errors.push(GuestError {
                index,
                kind: String::from_utf8_lossy(kind).into_owned(),
                message: String::from_utf8_lossy(message).into_owned(),
            });
        }
        Ok(errors)
    }
}

fn start_output(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..abi::BATCH_HEADER_LEN]);
    out
}

fn finish_output(out: &mut [u8], records: &RecordIndex, count: u32) {
    let header = records.header();
    write_batch_header(out, header.base_offset, count, header.base_timestamp);
}

/// A filter answers with the indexes it keeps; the kept records are copied
/// from the host's own copy of the input.
pub(crate) fn decode_filter(
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    if output.entries.len() != output.entry_count as usize * 4 {
        return Err(FormatError::new(format!(
            "{} filter entries need {} bytes, got {}",
            output.entry_count,
            output.entry_count as u64 * 4,
            output.entries.len()
        )));
    }
    let mut out = start_output(input);
    let mut previous: Option<u32> = None;
    let mut entries = ByteReader::new(output.entries);
    for _ in 0..output.entry_count {
        let index = entries.u32("filter entry")?;
        if let Some(previous) = previous.filter(|p| index <= *p) {
            return Err(FormatError::new(format!(
                "filter kept record {index} after record {previous}; indexes must increase"
            )));
        }
        let record = records.bytes(input, index as usize).ok_or_else(|| {
            FormatError::new(format!("filter kept record {index}, but the batch has {} records", records.len()))
        })?;
        out.extend_from_slice(record);
        previous = Some(index);
    }
    finish_output(&mut out, records, output.entry_count);
    Ok((out, None))
}

/// A filter answers in layout 2 with a bitmap: record `i` is kept when bit
/// `i % 8` of byte `i / 8` is set. Kept records that follow each other in
/// the input go to the output in one copy.
pub(crate) fn decode_filter_bitmap(
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    let count = records.len();
    let bitmap = output.entries;
    if bitmap.len() != count.div_ceil(8) {
        return Err(FormatError::new(format!(
            "a filter's bitmap for {count} records takes {} bytes, not {}",
            count.div_ceil(8),
            bitmap.len()
        )));
    }
    if !count.is_multiple_of(8) && bitmap[bitmap.len() - 1] >> (count % 8) != 0 {
        return Err(FormatError::new(format!("the filter kept a record past the batch's last ({count} records)")));
    }
    let kept: u32 = bitmap.iter().map(|byte| byte.count_ones()).sum();
    if kept != output.entry_count {
        return Err(FormatError::new(format!(
            "the filter says it kept {} records, but its bitmap keeps {kept}",
            output.entry_count
        )));
    }
    let mut out = start_output(input);
    let mut copy = |first: usize, end: usize| {
        // Every index is below `count`, so the span exists.
        if let Some(span) = records.span(input, first, end) {
            out.extend_from_slice(span);
        }
    };
    // The first record of the run of kept records being gathered.
    let mut run: Option<usize> = None;
    for (at, &byte) in bitmap.iter().enumerate() {
        // Whole bytes that go on a run, or on a gap, change nothing.
        if (byte == 0xff && run.is_some()) || (byte == 0 && run.is_none()) {
            continue;
        }
        for bit in 0..8 {
            let index = at * 8 + bit;
            match (byte >> bit & 1 != 0, run) {
                (true, None) => run = Some(index),
                (false, Some(first)) if index < count => {
                    copy(first, index);
                    run = None;
                }
                _ => {}
            }
        }
    }
    if let Some(first) = run {
        copy(first, count);
    }
    finish_output(&mut out, records, kept);
    Ok((out, None))
}

/// Words an entry that goes back in the batch, or repeats a record where
/// the kind allows one output per record.
#[cold]
fn out_of_order(kind: ModuleKind, n: u32, index: u32, previous: u32) -> FormatError {
    if index < previous {
        FormatError::new(format!("entry {n} is for record {index} after record {previous}; records must not go back"))
    } else {
        FormatError::new(format!(
            "entry {n} is a second output for record {index}; a {kind} module gives at most one per record"
        ))
    }
}

/// A key or value of an entry: its bytes, and their range in the input
/// batch when they are input bytes.
type EntryData<'a> = (&'a [u8], Option<(usize, usize)>);

/// Reads one key or value of a map-like entry: inline bytes in the output
/// area, or a range of the input batch.
#[inline(always)]
fn entry_data<'a>(
    tag: u8,
    entries: &mut ByteReader<'a>,
    input: &'a [u8],
) -> Result<Option<EntryData<'a>>, FormatError> {
    match tag {
        abi::DATA_NONE => Ok(None),
        abi::DATA_INLINE => Ok(Some((entries.len_prefixed("inline bytes")?, None))),
        abi::DATA_INPUT_RANGE => {
            let start = entries.u32("input range start")? as usize;
            let len = entries.u32("input range length")? as usize;
            let bytes = ByteReader::at(input, start).bytes(len, "input range").map_err(|_| {
                FormatError::new(format!("input range {start}+{len} is outside the {}-byte batch", input.len()))
            })?;
            Ok(Some((bytes, Some((start, len)))))
        }
        other => Err(FormatError::new(format!("unknown data tag {other}"))),
    }
}

#[inline(always)]
fn le_u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// What an output record must have of its source: offset delta, timestamp
/// delta and header count.
#[inline(always)]
fn stamp(record: &[u8]) -> (u32, i64, u32) {
    let timestamp_delta = i64::from_le_bytes(record[8..16].try_into().expect("eight bytes"));
    (le_u32_at(record, 4), timestamp_delta, le_u32_at(record, 24))
}

/// Equal bytes; the usual empty header lists without a call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// Key, value and headers of a record in the batch layout: where its
/// headers start and the value's range, or `None` when the key and value
/// lengths claim more than the record holds.
#[inline(always)]
fn record_body(record: &[u8]) -> Option<(usize, (usize, usize))> {
    let key_len = match i32::from_le_bytes(record[16..20].try_into().expect("four bytes")) {
        -1 => 0,
        len => usize::try_from(len).ok()?,
    };
    let value_len = le_u32_at(record, 20) as usize;
    let value_start = abi::RECORD_HEADER_LEN.checked_add(key_len)?;
    let headers_start = value_start.checked_add(value_len)?;
    (headers_start <= record.len()).then_some((headers_start, (value_start, value_len)))
}

/// Whether input record `index` has the encoded `headers`.
fn same_headers(records: &RecordIndex, input: &[u8], index: usize, headers: &[u8]) -> bool {
    records
        .bytes(input, index)
        .is_some_and(|source| record_body(source).is_some_and(|(start, _)| same_bytes(&source[start..], headers)))
}

/// Words a record of layout 2 that no input record it may come from has
/// the offset delta, timestamp delta and headers of.
#[cold]
fn no_source(n: u32, record: &[u8], first_source: usize) -> FormatError {
    FormatError::new(format!(
        "entry {n} is the output of no input record from record {first_source} on: none has its offset delta {}, timestamp delta {} and headers",
        le_u32_at(record, 4),
        i64::from_le_bytes(record[8..16].try_into().expect("eight bytes")),
    ))
}

/// Map-like kinds answer in layout 2 with their output records as they go
/// into the output batch, each a record of the batch layout or a
/// [`abi::RECORD_REFERENCE`] to an input record that goes on whole. A
/// record's source is the first input record from the last entry's on
/// (after it, unless the kind is an array-map) with the record's offset
/// delta, timestamp delta and headers; there must be one.
/// The records pass the checks in place and go to the output in one copy
/// per stretch between references.
pub(crate) fn decode_output_records(
    kind: ModuleKind,
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
    limit: usize,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    let repeats_allowed = kind == ModuleKind::ArrayMap;
    let entries = output.entries;
    let mut out = start_output(input);
    out.reserve(entries.len());
    let mut at = 0usize;
    // The guest's records from `pending` to `at` go to the output as they are.
    let mut pending = 0usize;
    // The source of the last entry, or -1 before the first.
    let mut previous: i64 = -1;
    let mut last_value = None;
    for n in 0..output.entry_count {
        let first_word = entries.get(at..at + 4).ok_or_else(|| {
            FormatError::new(format!("entry {n} starts at byte {at}, past the {}-byte entries", entries.len()))
        })?;
        let word = u32::from_le_bytes(first_word.try_into().expect("four bytes"));
        let first_source = (previous + i64::from(!repeats_allowed)).max(0) as usize;
        if word & abi::RECORD_REFERENCE != 0 {
            let index = word & !abi::RECORD_REFERENCE;
            if (index as usize) < first_source {
                return Err(out_of_order(kind, n, index, previous as u32));
            }
            let record = records.bytes(input, index as usize).ok_or_else(|| {
                FormatError::new(format!(
                    "entry {n} passes on record {index}, but the batch has {} records",
                    records.len()
                ))
            })?;
            out.extend_from_slice(&entries[pending..at]);
            out.extend_from_slice(record);
            if out.len() > limit {
                return Err(output_too_large(limit, n));
            }
            at += 4;
            pending = at;
            previous = i64::from(index);
            if n + 1 == output.entry_count {
                let (start, len) = records.view(input, index as usize)?.value;
                last_value = Some(&input[start..start + len]);
            }
            continue;
        }
        let record_len = word as usize;
        let record = entries.get(at..).and_then(|rest| rest.get(..record_len.checked_add(4)?)).ok_or_else(|| {
            FormatError::new(format!("entry {n}, a record of {record_len} bytes, runs past the entries"))
        })?;
        if record.len() < abi::RECORD_HEADER_LEN {
            return Err(FormatError::new(format!(
                "entry {n}, a record of {record_len} bytes, is shorter than its header"
            )));
        }
        let (headers_start, (value_start, value_len)) = record_body(record).ok_or_else(|| {
            FormatError::new(format!("entry {n}'s key and value lengths claim more than its {record_len} bytes"))
        })?;
        // The earliest input record that fits: with two alike (the same
        // offset delta, which a batch should not have, and the same
        // timestamp and headers) either gives the same output.
        let wanted = stamp(record);
        // Without headers (the usual record), the stamp says all: a source
        // whose header count is 0 holds no header bytes (the guest refuses
        // a record with bytes after its value), so the output record must
        // end with its value, checked once here rather than against each
        // source it is compared with.
        let plain = wanted.2 == 0;
        if plain && headers_start != record.len() {
            return Err(no_source(n, record, first_source));
        }
        let mut index = first_source;
        loop {
            let head = records.head(input, index).ok_or_else(|| no_source(n, record, first_source))?;
            // Compared as numbers: a slice comparison is a call to `memcmp`.
            if stamp(head) == wanted && (plain || same_headers(records, input, index, &record[headers_start..])) {
                break;
            }
            index += 1;
        }
        at += record.len();
        previous = index as i64;
        if n + 1 == output.entry_count {
            last_value = Some(&record[value_start..value_start + value_len]);
        }
    }
    if at != entries.len() {
        return Err(FormatError::new(format!(
            "{} entries end at byte {at} of {} entry bytes",
            output.entry_count,
            entries.len()
        )));
    }
    out.extend_from_slice(&entries[pending..at]);
    if out.len() > limit {
        return Err(output_too_large(limit, output.entry_count));
    }
    finish_output(&mut out, records, output.entry_count);
    Ok((out, last_value.map(<[u8]>::to_vec)))
}

/// The most bytes a module's output batch may take: its input passed
/// through whole, plus as much new data as its memory could hold. Entries
/// may point at input bytes, so without a limit a few bytes of entries
/// could repeat one large record until the host runs out of memory.
fn output_limit(input: &[u8], memory_limit: u64) -> usize {
    input.len().saturating_add(usize::try_from(memory_limit).unwrap_or(usize::MAX))
}

/// The fixed fields of record `index` when it has no headers; `None` for
/// one that has some, whose output the general path encodes.
fn plain_record_head<'a>(records: &RecordIndex, input: &'a [u8], index: u32) -> Option<&'a [u8]> {
    let head = records.head(input, index as usize)?;
    (head[24..28] == [0; 4]).then_some(head)
}

#[cold]
fn output_too_large(limit: usize, entry: u32) -> FormatError {
    FormatError::new(format!(
        "the output grew past {limit} bytes at entry {entry} (the input plus the module's memory cap)"
    ))
}

/// Map-like kinds answer with entries; a record whose key and value are
/// the source's own bytes is copied whole from the host's input. A map,
/// filter-map or aggregate answers at most once per record; an array-map
/// may answer several times for one record, in order.
pub(crate) fn decode_records(
    kind: ModuleKind,
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
    limit: usize,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    let repeats_allowed = kind == ModuleKind::ArrayMap;
    let mut entries = ByteReader::new(output.entries);
    let mut out = start_output(input);
    // The record of the last entry, or -1 before the first: entries go
    // forward through the batch.
    let mut previous: i64 = -1;
    let mut last_value = None;
    // Entries for one source record are consecutive (array-map), so the
    // last parsed source is reused.
    let mut source_cache: Option<(u32, RecordView<'_>)> = None;
    for n in 0..output.entry_count {
        // An entry's fixed part (record index, key tag, value tag, two
        // spare bytes) is read with one bounds check.
        let fixed = entries.bytes(8, "entry record index and tags")?;
        // One four-byte load: an array built of the bytes one by one was
        // compiled to byte stores read back as a word, a store-forwarding
        // stall that took a third of the decoder's time.
        let index = u32::from_le_bytes(fixed[..4].try_into().expect("eight bytes were taken"));
        let (key_tag, value_tag) = (fixed[4], fixed[5]);
        if i64::from(index) <= previous && (i64::from(index) < previous || !repeats_allowed) {
            return Err(out_of_order(kind, n, index, previous as u32));
        }
        previous = i64::from(index);
        if (index as usize) >= records.len() {
            return Err(FormatError::new(format!(
                "entry {n} is for record {index}, but the batch has {} records",
                records.len()
            )));
        }
        // The usual entry, a new value without a key for a record without
        // headers, goes straight from the source's fixed fields: the
        // general path below carries too much for the compiler to keep in
        // registers.
        if key_tag == abi::DATA_NONE
            && value_tag == abi::DATA_INLINE
            && let Some(head) = plain_record_head(records, input, index)
        {
            let value = entries.len_prefixed("inline bytes")?;
            let offset_delta = u32::from_le_bytes(head[4..8].try_into().expect("four bytes"));
            let timestamp_delta = i64::from_le_bytes(head[8..16].try_into().expect("eight bytes"));
            encode_record(&mut out, offset_delta, timestamp_delta, None, value, 0, &[]);
            if out.len() > limit {
                return Err(output_too_large(limit, n));
            }
            if n + 1 == output.entry_count {
                last_value = Some(value.to_vec());
            }
            continue;
        }
        if source_cache.as_ref().is_none_or(|(cached, _)| *cached != index) {
            source_cache = Some((index, records.view(input, index as usize)?));
        }
        let source = &source_cache.as_ref().expect("cached above").1;
        let key = entry_data(key_tag, &mut entries, input)?;
        let value = entry_data(value_tag, &mut entries, input)?
            .ok_or_else(|| FormatError::new(format!("entry {n} has no value")))?;
        let unchanged = key.map(|k| k.1) == source.key.map(Some) && value.1 == Some(source.value);
        if unchanged {
            out.extend_from_slice(source.bytes);
        } else {
            let headers = &input[source.headers.0..source.headers.0 + source.headers.1];
            encode_record(
                &mut out,
                source.offset_delta,
                source.timestamp_delta,
                key.map(|k| k.0),
                value.0,
                source.header_count,
                headers,
            );
        }
        if out.len() > limit {
            return Err(output_too_large(limit, n));
        }
        if n + 1 == output.entry_count {
            last_value = Some(value.0.to_vec());
        }
    }
    entries.finish(&format!("{} entries", output.entry_count))?;
    finish_output(&mut out, records, output.entry_count);
    Ok((out, last_value))
}
