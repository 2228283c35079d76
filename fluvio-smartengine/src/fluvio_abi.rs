//! Fluvio's own guest ABI, the engine's second: modules built with Fluvio's
//! `fluvio-smartmodule` crate (crates.io 0.50.x, and the releases before it
//! whose glue reads protocol version 22 or older) run unchanged.
//!
//! Such a module exports `memory`, `alloc(len) -> ptr`, one of `filter`, `map`, `filter_map`, `array_map`, `aggregate` and
//! optionally `init` and `look_back`, each `(ptr, len, version) -> i32`, and
//! imports `env.copy_records(ptr, len)`, through which it hands its answer
//! to the host. The host writes an input in Fluvio's encoding (big-endian
//! integers, zigzag varints inside records, `u32`-counted lists,
//! `u16`-counted strings and maps) into a buffer from `alloc`, which the
//! guest takes over and frees; the return value is the number of output
//! records, or a negative status.
//!
//! This file is the encoding, on both sides, with no wasm runtime: every
//! length and count read from the guest is checked against the bytes it
//! came in. [`crate::instance`] drives the calls.
//!
//! The host speaks protocol version 22 ([`PROTOCOL_VERSION`]), the one
//! Fluvio kept for compatibility: its inputs carry the deprecated
//! parameter and join fields that older glue still reads, and the base
//! timestamp that newer glue reads. A guest's answer keeps each record's
//! offset delta; the host takes timestamps and headers from the input
//! record of that offset (Fluvio's records carry no header bodies).

use fluvio_protocol::batch::{RecordIndex, encode_record, write_batch_header};
use fluvio_protocol::{ModuleKind, SmartModuleExtraParams};
use smartmodule_abi::abi::{self, FormatError, RecordView};

/// The protocol version the host passes to every call.
pub(crate) const PROTOCOL_VERSION: i16 = 22;
/// The module of the one import.
pub(crate) const IMPORT_MODULE: &str = "env";
/// The one import: `copy_records(ptr, len)`.
pub(crate) const IMPORT_COPY_RECORDS: &str = "copy_records";
/// `alloc(len) -> ptr`.
pub(crate) const EXPORT_ALLOC: &str = "alloc";
/// `init(ptr, len, version) -> status`.
pub(crate) const EXPORT_INIT: &str = "init";
/// `look_back(ptr, len, version) -> status`.
pub(crate) const EXPORT_LOOK_BACK: &str = "look_back";

/// The export that processes records for `kind`.
pub(crate) fn process_export(kind: ModuleKind) -> &'static str {
    match kind {
        ModuleKind::Filter => "filter",
        ModuleKind::Map => "map",
        ModuleKind::FilterMap => "filter_map",
        ModuleKind::ArrayMap => "array_map",
        ModuleKind::Aggregate => "aggregate",
    }
}

/// What a negative status from a process call means.
pub(crate) fn transform_status(status: i32) -> String {
    match status {
        -11 => "the module could not decode its input (DecodingBaseInput)".into(),
        -22 => "the module could not decode the input records (DecodingRecords)".into(),
        -33 => "the module could not encode its output (EncodingOutput)".into(),
        -44 => "the module could not parse its parameters (ParsingExtraParams)".into(),
        -55 => "the module expected a right-hand record for a join (UndefinedRightRecord)".into(),
        other => format!("the module failed with status {other} (UnknownError)"),
    }
}

/// What a negative status from `init` means, when it handed no error.
pub(crate) fn init_status(status: i32) -> String {
    match status {
        -10 => "the module could not decode its init input (DecodingInput)".into(),
        -11 => "the module could not encode its init output (EncodingOutput)".into(),
        other => format!("init failed with status {other}"),
    }
}

/// What a negative status from `look_back` means, when it handed no error.
pub(crate) fn look_back_status(status: i32) -> String {
    match status {
        -66 => "the module could not decode its look-back input (DecodingBaseInput)".into(),
        -77 => "the module could not decode the look-back records (DecodingRecords)".into(),
        -88 => "the module could not encode its look-back output (EncodingOutput)".into(),
        other => format!("look_back failed with status {other}"),
    }
}

// ---------------------------------------------------------------------------
// Writing (host to guest)
// ---------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put_record_data(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    // Fluvio's strings are u16-counted; longer ones cannot be said.
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// One record in Fluvio's layout: a varint length, then attributes, the
/// timestamp and offset deltas, the key, the value and a header count of 0.
fn put_record(out: &mut Vec<u8>, scratch: &mut Vec<u8>, batch: &[u8], record: &RecordView<'_>) {
    scratch.clear();
    scratch.push(0);
    put_varint(scratch, record.timestamp_delta);
    put_varint(scratch, i64::from(record.offset_delta));
    match record.key {
        Some((start, len)) => {
            scratch.push(1);
            put_record_data(scratch, &batch[start..start + len]);
        }
        None => scratch.push(0),
    }
    put_record_data(scratch, &batch[record.value.0..record.value.0 + record.value.1]);
    put_varint(scratch, 0);
    put_varint(out, scratch.len() as i64);
    out.extend_from_slice(scratch);
}

/// Encodes a `SmartModuleInput` (protocol version 22) of the records of
/// `batch` at `selected`, with, for an aggregate, the accumulator after it
/// (a `SmartModuleAggregateInput`).
pub(crate) fn encode_input(
    batch: &[u8],
    records: &RecordIndex,
    selected: &[usize],
    accumulator: Option<&[u8]>,
) -> Result<Vec<u8>, FormatError> {
    let header = records.header();
    let mut raw = Vec::with_capacity(batch.len() + 16);
    raw.extend_from_slice(&(selected.len() as u32).to_be_bytes());
    let mut scratch = Vec::new();
    for &index in selected {
        put_record(&mut raw, &mut scratch, batch, &records.view(batch, index)?);
    }
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
    out.extend_from_slice(&raw);
    // The deprecated parameters (an empty map, no look-back) and join
    // record, which glue up to version 22 reads.
    out.extend_from_slice(&0u16.to_be_bytes());
    out.push(0);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    if let Some(accumulator) = accumulator {
        out.extend_from_slice(&(accumulator.len() as u32).to_be_bytes());
        out.extend_from_slice(accumulator);
    }
    Ok(out)
}

/// Encodes a `SmartModuleInitInput`: the parameters and the look-back.
pub(crate) fn encode_init_input(params: &SmartModuleExtraParams) -> Vec<u8> {
    let mut out = Vec::new();
    let count = params.len().min(u16::MAX as usize);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for (name, value) in params.iter().take(count) {
        put_string(&mut out, name);
        put_string(&mut out, value);
    }
    match params.lookback() {
        Some(lookback) => {
            out.push(1);
            out.extend_from_slice(&lookback.last.to_be_bytes());
            match lookback.age {
                Some(age) => {
                    out.push(1);
                    out.extend_from_slice(&age.as_secs().to_be_bytes());
                    out.extend_from_slice(&age.subsec_nanos().to_be_bytes());
                }
                None => out.push(0),
            }
        }
        None => out.push(0),
    }
    out
}

// ---------------------------------------------------------------------------
// Reading (guest to host)
// ---------------------------------------------------------------------------

/// Reads Fluvio's encoding from bytes a guest wrote, checking every length.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            FormatError::new(format!("{what} of {len} bytes runs past the {}-byte answer", self.bytes.len()))
        })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }

    fn bool(&mut self, what: &str) -> Result<bool, FormatError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(FormatError::new(format!("{what} is {other}, not a bool"))),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn varint(&mut self, what: &str) -> Result<i64, FormatError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.u8(what)?;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(FormatError::new(format!("{what} is a varint longer than ten bytes")))
    }

    fn record_data(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| FormatError::new(format!("{what} has length {len}")))?;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let len = u16::from_be_bytes(self.array(what)?) as usize;
        Ok(String::from_utf8_lossy(self.take(len, what)?).into_owned())
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// A `u32` count of items of at least `min_len` bytes each: a count the
    /// bytes left cannot hold is refused before anything is allocated.
    fn count(&mut self, min_len: usize, what: &str) -> Result<usize, FormatError> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(min_len) > self.bytes.len() - self.at {
            return Err(FormatError::new(format!("{what} says {count}, more than the answer holds")));
        }
        Ok(count)
    }

    fn finish(&self, what: &str) -> Result<(), FormatError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            extra => Err(FormatError::new(format!("{extra} bytes follow the {what}"))),
        }
    }
}

/// One record of a guest's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestRecord<'a> {
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

fn read_record<'a>(reader: &mut Reader<'a>) -> Result<GuestRecord<'a>, FormatError> {
    let len = reader.varint("record length")?;
    let len = usize::try_from(len).map_err(|_| FormatError::new(format!("a record has length {len}")))?;
    let mut record = Reader::new(reader.take(len, "record")?);
    record.u8("record attributes")?;
    record.varint("timestamp delta")?;
    let offset_delta = record.varint("offset delta")?;
    let key = if record.bool("key presence")? { Some(record.record_data("key")?) } else { None };
    let value = record.record_data("value")?;
    record.varint("header count")?;
    record.finish("record")?;
    Ok(GuestRecord { offset_delta, key, value })
}

/// The error a transform reported, for the record at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransformError {
    pub hint: String,
    pub offset: i64,
}

/// A process call's answer (`SmartModuleOutput`, or for an aggregate
/// `SmartModuleAggregateOutput`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestOutput<'a> {
    pub successes: Vec<GuestRecord<'a>>,
    pub error: Option<TransformError>,
    pub accumulator: Option<&'a [u8]>,
}

/// Decodes a process call's answer.
pub(crate) fn decode_output(bytes: &[u8], kind: ModuleKind) -> Result<GuestOutput<'_>, FormatError> {
    let mut reader = Reader::new(bytes);
    let count = reader.count(1, "output record count")?;
    let mut successes = Vec::with_capacity(count);
    for _ in 0..count {
        successes.push(read_record(&mut reader)?);
    }
    let error = if reader.bool("error presence")? {
        let hint = reader.string("error hint")?;
        let offset = reader.i64("error offset")?;
        reader.u8("error kind")?;
        if reader.bool("error key presence")? {
            reader.record_data("error key")?;
        }
        reader.record_data("error value")?;
        Some(TransformError { hint, offset })
    } else {
        None
    };
    let accumulator = if kind == ModuleKind::Aggregate { Some(reader.bytes("accumulator")?) } else { None };
    reader.finish("output")?;
    Ok(GuestOutput { successes, error, accumulator })
}

/// The hint of an `init` error (`SmartModuleInitOutput`).
pub(crate) fn decode_init_error(bytes: &[u8]) -> Result<String, FormatError> {
    let mut reader = Reader::new(bytes);
    let hint = reader.string("init error hint")?;
    reader.finish("init error")?;
    Ok(hint)
}

/// The hint and record offset of a `look_back` error
/// (`SmartModuleLookbackOutput`).
pub(crate) fn decode_look_back_error(bytes: &[u8]) -> Result<TransformError, FormatError> {
    let mut reader = Reader::new(bytes);
    let hint = reader.string("look-back error hint")?;
    let offset = reader.i64("look-back error offset")?;
    if reader.bool("look-back error key presence")? {
        reader.record_data("look-back error key")?;
    }
    reader.record_data("look-back error value")?;
    reader.finish("look-back error")?;
    Ok(TransformError { hint, offset })
}

/// Appends the guest's answer records to `out` (a batch under way), each
/// taking the timestamp and headers of the input record `sources` gives for
/// it; a record whose key and value are its source's is copied whole.
/// Returns the value of the last record written.
pub(crate) fn append_outputs<'b>(
    out: &mut Vec<u8>,
    batch: &'b [u8],
    successes: &[GuestRecord<'_>],
    mut source_of: impl FnMut(&GuestRecord<'_>) -> Result<RecordView<'b>, FormatError>,
    limit: usize,
) -> Result<Option<Vec<u8>>, FormatError> {
    let mut last_value = None;
    for record in successes {
        let source = source_of(record)?;
        let source_key = source.key.map(|(start, len)| &batch[start..start + len]);
        let source_value = &batch[source.value.0..source.value.0 + source.value.1];
        if record.key == source_key && record.value == source_value {
            out.extend_from_slice(source.bytes);
        } else {
            let headers = &batch[source.headers.0..source.headers.0 + source.headers.1];
            encode_record(
                out,
                source.offset_delta,
                source.timestamp_delta,
                record.key,
                record.value,
                source.header_count,
                headers,
            );
        }
        if out.len() > limit {
            return Err(FormatError::new(format!(
                "the output grew past {limit} bytes (the input plus the module's memory cap)"
            )));
        }
        last_value = Some(record.value);
    }
    Ok(last_value.map(<[u8]>::to_vec))
}

/// The input record whose offset delta a guest's answer record carries,
/// searched forward from `*next` among `selected` (answers keep the input's
/// order), parsed once: the caller copies from the view it gets.
pub(crate) fn source_by_offset<'b>(
    batch: &'b [u8],
    records: &RecordIndex,
    selected: &[usize],
    next: &mut usize,
    record: &GuestRecord<'_>,
) -> Result<RecordView<'b>, FormatError> {
    while let Some(&index) = selected.get(*next) {
        let view = records.view(batch, index)?;
        let delta = i64::from(view.offset_delta);
        if delta == record.offset_delta {
            return Ok(view);
        }
        if delta > record.offset_delta {
            break;
        }
        *next += 1;
    }
    Err(FormatError::new(format!(
        "an answer record has offset delta {}, which no input record after the previous answer has",
        record.offset_delta
    )))
}

/// Starts an output batch with `batch`'s header (rewritten by
/// [`finish_batch`]).
pub(crate) fn start_batch(batch: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len());
    out.extend_from_slice(&batch[..abi::BATCH_HEADER_LEN]);
    out
}

/// Writes the output batch's header: the input's base offset and timestamp,
/// `count` records.
pub(crate) fn finish_batch(out: &mut [u8], records: &RecordIndex, count: u32) {
    let header = records.header();
    write_batch_header(out, header.base_offset, count, header.base_timestamp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::BatchBuilder;

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(100, 5_000);
        for (i, value) in values.iter().enumerate() {
            let key = (i % 2 == 0).then_some(b"k".as_slice());
            builder.push(i as u32, 5_000 + i as i64, key, value.as_bytes(), &[]);
        }
        builder.finish().into_bytes()
    }

    /// A guest's answer, written as Fluvio's encoder writes one.
    fn answer(records: &[GuestRecord<'_>], error: Option<(&str, i64)>, accumulator: Option<&[u8]>) -> Vec<u8> {
        let mut out = (records.len() as u32).to_be_bytes().to_vec();
        for GuestRecord { offset_delta: delta, key, value } in records {
            let mut inner = vec![0];
            put_varint(&mut inner, 0);
            put_varint(&mut inner, *delta);
            match key {
                Some(key) => {
                    inner.push(1);
                    put_record_data(&mut inner, key);
                }
                None => inner.push(0),
            }
            put_record_data(&mut inner, value);
            put_varint(&mut inner, 0);
            put_varint(&mut out, inner.len() as i64);
            out.extend_from_slice(&inner);
        }
        match error {
            Some((hint, offset)) => {
                out.push(1);
                put_string(&mut out, hint);
                out.extend_from_slice(&offset.to_be_bytes());
                out.push(0);
                out.push(0);
                put_record_data(&mut out, b"v");
            }
            None => out.push(0),
        }
        if let Some(accumulator) = accumulator {
            out.extend_from_slice(&(accumulator.len() as u32).to_be_bytes());
            out.extend_from_slice(accumulator);
        }
        out
    }

    fn record<'a>(offset_delta: i64, key: Option<&'a [u8]>, value: &'a [u8]) -> GuestRecord<'a> {
        GuestRecord { offset_delta, key, value }
    }

    #[test]
    fn varints_are_zigzag_and_match_fluvio_for_small_values() {
        // Bytes Fluvio's encoder writes for these values.
        for (value, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (63, vec![126]), (64, vec![128, 1])] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(Reader::new(&out).varint("v").unwrap(), value);
        }
        for value in [i64::MIN, -300, 300, i64::from(i32::MAX), i64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Reader::new(&out).varint("v").unwrap(), value);
        }
        let error = Reader::new(&[0x80; 11]).varint("v").unwrap_err();
        assert!(error.reason.contains("longer than ten bytes"), "{error}");
    }

    #[test]
    fn the_input_holds_each_selected_record_and_the_batch_position() {
        let bytes = batch(&["a", "bb", "ccc"]);
        let records = RecordIndex::new(&bytes).unwrap();
        let input = encode_input(&bytes, &records, &[0, 2], Some(b"7")).unwrap();
        let mut reader = Reader::new(&input);
        assert_eq!(reader.i64("base offset").unwrap(), 100);
        let raw = reader.bytes("raw").unwrap();
        let mut raw = Reader::new(raw);
        assert_eq!(raw.u32("count").unwrap(), 2);
        let first = read_record(&mut raw).unwrap();
        assert_eq!(first, GuestRecord { offset_delta: 0, key: Some(b"k"), value: b"a" });
        let second = read_record(&mut raw).unwrap();
        assert_eq!(second, GuestRecord { offset_delta: 2, key: Some(b"k"), value: b"ccc" });
        raw.finish("raw").unwrap();
        // Empty parameters, no look-back, no join record.
        assert_eq!(reader.take(7, "deprecated fields").unwrap(), [0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reader.i64("base timestamp").unwrap(), 5_000);
        assert_eq!(reader.bytes("accumulator").unwrap(), b"7");
        reader.finish("input").unwrap();
    }

    #[test]
    fn init_input_carries_params_and_the_lookback() {
        let mut params = SmartModuleExtraParams::default();
        params.insert("contains", "a");
        params.set_lookback(Some(fluvio_protocol::Lookback::age(std::time::Duration::from_millis(1500), Some(9))));
        let input = encode_init_input(&params);
        let mut reader = Reader::new(&input);
        assert_eq!(u16::from_be_bytes(reader.array("count").unwrap()), 1);
        assert_eq!(reader.string("name").unwrap(), "contains");
        assert_eq!(reader.string("value").unwrap(), "a");
        assert!(reader.bool("lookback").unwrap());
        assert_eq!(u64::from_be_bytes(reader.array("last").unwrap()), 9);
        assert!(reader.bool("age").unwrap());
        assert_eq!(u64::from_be_bytes(reader.array("secs").unwrap()), 1);
        assert_eq!(reader.u32("nanos").unwrap(), 500_000_000);
        reader.finish("init input").unwrap();
    }

    #[test]
    fn answers_decode_and_become_records_of_their_sources() {
        let bytes = batch(&["a", "bb", "ccc"]);
        let records = RecordIndex::new(&bytes).unwrap();
        let reply = answer(&[record(0, Some(b"k"), b"a"), record(2, None, b"CCC")], Some(("bad", 101)), None);
        let output = decode_output(&reply, ModuleKind::Map).unwrap();
        assert_eq!(output.error, Some(TransformError { hint: "bad".into(), offset: 101 }));
        let selected = [0, 1, 2];
        let mut next = 0;
        let mut out = start_batch(&bytes);
        let last = append_outputs(
            &mut out,
            &bytes,
            &output.successes,
            |record| source_by_offset(&bytes, &records, &selected, &mut next, record),
            usize::MAX,
        )
        .unwrap();
        finish_batch(&mut out, &records, 2);
        assert_eq!(last.as_deref(), Some(b"CCC".as_slice()));
        let written = fluvio_protocol::Batch::seal_host_written(out);
        let got: Vec<String> =
            written.records().map(|r| format!("{} {} {:?} {:?}", r.offset, r.timestamp, r.key, r.value)).collect();
        assert_eq!(got, [format!("100 5000 {:?} {:?}", Some(b"k"), b"a"), format!("102 5002 None {:?}", b"CCC")]);
        // An answer for an offset no input has is refused.
        let reply = answer(&[record(7, None, b"x")], None, None);
        let output = decode_output(&reply, ModuleKind::Map).unwrap();
        let mut next = 0;
        let error = append_outputs(
            &mut start_batch(&bytes),
            &bytes,
            &output.successes,
            |record| source_by_offset(&bytes, &records, &selected, &mut next, record),
            usize::MAX,
        )
        .unwrap_err();
        assert!(error.reason.contains("offset delta 7"), "{error}");
    }

    #[test]
    fn an_aggregate_answer_carries_its_accumulator_and_damage_is_refused() {
        let reply = answer(&[record(0, None, b"3")], None, Some(b"3"));
        let output = decode_output(&reply, ModuleKind::Aggregate).unwrap();
        assert_eq!(output.accumulator, Some(b"3".as_slice()));
        // A count the answer cannot hold, a cut answer, trailing bytes.
        let mut huge = reply.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_output(&huge, ModuleKind::Aggregate).unwrap_err().reason.contains("more than the answer holds"));
        for cut in 0..reply.len() {
            assert!(decode_output(&reply[..cut], ModuleKind::Aggregate).is_err(), "cut at {cut}");
        }
        let mut longer = reply.clone();
        longer.push(0);
        assert!(decode_output(&longer, ModuleKind::Aggregate).is_err());
        assert!(decode_output(&reply, ModuleKind::Map).is_err(), "a map's answer has no accumulator");
    }

    #[test]
    fn init_and_look_back_errors_decode() {
        let mut init = Vec::new();
        put_string(&mut init, "Missing param contains");
        assert_eq!(decode_init_error(&init).unwrap(), "Missing param contains");
        let mut look_back = Vec::new();
        put_string(&mut look_back, "empty");
        look_back.extend_from_slice(&42i64.to_be_bytes());
        look_back.push(0);
        put_record_data(&mut look_back, b"");
        assert_eq!(decode_look_back_error(&look_back).unwrap(), TransformError { hint: "empty".into(), offset: 42 });
    }
}
