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
/// `records`): the output area at `location` in `memory`. The output batch
/// may grow to the input's size plus `memory_limit` and no further.
pub fn decode_output(
    kind: ModuleKind,
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
    let (batch, last_value) = match kind {
        ModuleKind::Filter => decode_filter(&output, batch, records),
        kind => decode_records(kind, &output, batch, records, output_limit(batch, memory_limit)),
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
    // An indexed record holds at least its fixed fields.
    let head = records.bytes(input, index as usize)?.get(..abi::RECORD_HEADER_LEN)?;
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
