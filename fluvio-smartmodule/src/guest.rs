//! The ABI glue that `#[smartmodule]` wires a user's function into.
//!
//! Everything here runs inside the module. The host calls one process export
//! per batch; the driver walks the batch in place, calls the user's function
//! for each record, and writes an output area (see [`crate::abi`]) that the
//! host reads back. Nothing here is public API: the macro's expansion is the
//! only caller, and native code (tests, benchmarks) reaches it through
//! [`native`].

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::abi;
use crate::codec::{ByteReader, PutBytes};
use crate::error::{Error, Result};
use crate::params::SmartModuleExtraParams;
use crate::record::{Record, RecordData, SmartModuleRecord};

struct GuestState {
    /// The buffer the host writes batches and setup blobs into. Shared so
    /// that records can borrow from it; replaced when user code keeps a
    /// piece of it past the end of a batch.
    input: Arc<Vec<u8>>,
    output: Vec<u8>,
    errors: Vec<u8>,
    params: SmartModuleExtraParams,
    accumulator: Option<RecordData>,
    /// The answer layout agreed at setup: the newest both sides speak.
    layout: u32,
}

thread_local! {
    static STATE: RefCell<GuestState> = RefCell::new(GuestState {
        input: Arc::new(Vec::new()),
        output: Vec::new(),
        errors: Vec::new(),
        params: SmartModuleExtraParams::default(),
        accumulator: None,
        layout: abi::ANSWER_LAYOUT_1,
    });
    /// Index of the record being processed, for panic reports; -1 outside one.
    static CURRENT_RECORD: Cell<i32> = const { Cell::new(-1) };
}

/// The answer layout agreed at setup, for modules that write their own
/// answers (the hostile test modules).
pub fn answer_layout() -> u32 {
    STATE.with(|state| state.borrow().layout)
}

/// Makes the input buffer at least `len` bytes long and returns where it starts.
pub fn reserve(len: i32) -> *mut u8 {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let len = len.max(0) as usize;
        if Arc::get_mut(&mut state.input).is_none() {
            state.input = Arc::new(Vec::new());
        }
        let buffer = Arc::get_mut(&mut state.input).expect("input buffer was just made unique");
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        buffer.as_mut_ptr()
    })
}

/// The output area of the last call, as `(ptr, len)` packed for the host.
pub fn output_location() -> i64 {
    STATE.with(|state| {
        let state = state.borrow();
        abi::pack_location(state.output.as_ptr() as usize as u32, state.output.len() as u32) as i64
    })
}

/// Reads the setup blob (params, initial accumulator) and installs the panic hook.
pub fn setup(len: i32) -> i64 {
    install_panic_hook();
    let result = STATE.with(|state| {
        let mut state = state.borrow_mut();
        let blob = &state.input[..(len.max(0) as usize).min(state.input.len())];
        match parse_setup(blob) {
            Ok(setup) => {
                state.params = setup.params;
                state.accumulator = setup.accumulator;
                state.layout = setup.offered_layout.clamp(abi::ANSWER_LAYOUT_1, abi::NEWEST_ANSWER_LAYOUT);
                Ok(())
            }
            Err(error) => Err(error),
        }
    });
    match result {
        Ok(()) => finish_setup(Ok(())),
        Err(error) => {
            let mut writer = OutputWriter::take();
            writer.fault(abi::NO_RECORD, "bad-setup", &error.to_string());
            writer.finish(abi::STATUS_SETUP_FAILED);
            output_location()
        }
    }
}

/// The module's typed options (`#[smartmodule(kind, params)]`), built from
/// the params from setup. Options that cannot be built are a panic: the
/// batch fails with the reason, as Fluvio fails it with
/// `ParsingExtraParams`.
pub fn typed_params<T>() -> T
where
    T: TryFrom<SmartModuleExtraParams>,
    T::Error: std::fmt::Display,
{
    let params = STATE.with(|state| state.borrow().params.clone());
    match T::try_from(params) {
        Ok(options) => options,
        Err(error) => panic!("the module's parameters do not fit its options: {error}"),
    }
}

/// Runs the user's init function with the params from setup.
pub fn init<F: InitFn>(f: F) -> i64 {
    let params = STATE.with(|state| state.borrow().params.clone());
    finish_setup(f.call_init(params))
}

fn finish_setup(result: Result<()>) -> i64 {
    let mut writer = OutputWriter::take();
    // A host that offered a newer layout learns from this entry that it
    // was taken; hosts that offer none expect no entry.
    if writer.layout != abi::ANSWER_LAYOUT_1 {
        writer.output.put_u32(writer.layout);
        writer.entries += 1;
    }
    let status = match result {
        Ok(()) => abi::STATUS_OK,
        Err(error) => {
            writer.error(abi::NO_RECORD, &error);
            abi::STATUS_SETUP_FAILED
        }
    };
    writer.finish(status);
    output_location()
}

/// What a setup blob holds.
#[derive(Debug)]
pub struct Setup {
    /// The module's parameters, with the look-back.
    pub params: SmartModuleExtraParams,
    /// The accumulator an aggregate starts from.
    pub accumulator: Option<RecordData>,
    /// The newest answer layout the host reads ([`abi::ANSWER_LAYOUT_1`]
    /// from a host that names none).
    pub offered_layout: u32,
}

/// Decodes a setup blob (what the host's `encode_setup` writes). Public so
/// that it can be fuzzed natively.
pub fn parse_setup(blob: &[u8]) -> std::result::Result<Setup, abi::FormatError> {
    let mut reader = ByteReader::new(blob);
    let count = reader.u32("param count")?;
    let mut params = SmartModuleExtraParams::default();
    for _ in 0..count {
        let key = reader.len_prefixed("param name")?;
        let value = reader.len_prefixed("param value")?;
        params.insert(String::from_utf8_lossy(key), String::from_utf8_lossy(value));
    }
    let accumulator = match reader.i32("accumulator length")? {
        len if len < 0 => None,
        len => Some(RecordData::from(reader.bytes(len as usize, "accumulator")?)),
    };
    // The look-back comes last; hosts that predate it send nothing here.
    if reader.remaining() > 0 && reader.u8("look-back flag")? == 1 {
        let last = reader.u64("look-back count")?;
        let age = match reader.i64("look-back age")? {
            ms if ms < 0 => None,
            ms => Some(std::time::Duration::from_millis(ms as u64)),
        };
        params.set_lookback(Some(crate::params::Lookback { last, age }));
    }
    // The newest answer layout the host reads; hosts that predate layout 2
    // send nothing here.
    let offered_layout = if reader.remaining() > 0 { reader.u32("answer layout")? } else { abi::ANSWER_LAYOUT_1 };
    Ok(Setup { params, accumulator, offered_layout })
}

/// Writes the output area. Takes the buffers out of the state for the
/// duration of a batch so that user code never runs under a state borrow.
struct OutputWriter {
    output: Vec<u8>,
    errors: Vec<u8>,
    entries: u32,
    error_count: u32,
    layout: u32,
}

impl OutputWriter {
    fn take() -> OutputWriter {
        let (mut output, mut errors, layout) = STATE.with(|state| {
            let mut state = state.borrow_mut();
            (std::mem::take(&mut state.output), std::mem::take(&mut state.errors), state.layout)
        });
        output.clear();
        errors.clear();
        output.resize(abi::OUTPUT_HEADER_LEN, 0);
        OutputWriter { output, errors, entries: 0, error_count: 0, layout }
    }

    /// Makes room for a filter's answer to a batch of `record_count`
    /// records: in layout 2, a bitmap with every record left out.
    fn start_filter(&mut self, record_count: u32) {
        if self.layout != abi::ANSWER_LAYOUT_1 {
            self.output.resize(abi::OUTPUT_HEADER_LEN + (record_count as usize).div_ceil(8), 0);
        }
    }

    #[inline]
    fn kept(&mut self, index: u32) {
        if self.layout == abi::ANSWER_LAYOUT_1 {
            self.output.put_u32(index);
        } else {
            // Record i is bit i % 8 of byte i / 8; `start_filter` sized the map.
            self.output[abi::OUTPUT_HEADER_LEN + index as usize / 8] |= 1 << (index % 8);
        }
        self.entries += 1;
    }

    /// Writes a map-like output in `LAYOUT`; answers where its value's
    /// bytes went, so that the aggregate can read its last accumulator
    /// back. Always inlined: where the answer goes unused (every kind but
    /// the aggregate) it then costs nothing. The layout is a constant so
    /// that a kind's loop holds one layout's writer, not both (see
    /// [`in_layout`]).
    #[inline(always)]
    fn record<const LAYOUT: u32>(
        &mut self,
        index: u32,
        source: &abi::RecordView<'_>,
        key: Option<&RecordData>,
        value: &RecordData,
        input: &Arc<Vec<u8>>,
    ) -> ValueAt {
        if LAYOUT == abi::ANSWER_LAYOUT_1 {
            self.entry(index, key, value, input)
        } else {
            self.output_record(index, source, key, value, input)
        }
    }

    /// Writes an output record in layout 2: a reference to its source when
    /// key and value are the source's own, otherwise the record as it goes
    /// into the output batch, with the source's offset, timestamp and
    /// headers.
    #[inline(always)]
    fn output_record(
        &mut self,
        index: u32,
        source: &abi::RecordView<'_>,
        key: Option<&RecordData>,
        value: &RecordData,
        input: &Arc<Vec<u8>>,
    ) -> ValueAt {
        self.entries += 1;
        let value_range = value.range_in(input);
        let source_value = (source.value.0 as u32, source.value.1 as u32);
        if value_range == Some(source_value) {
            let key_unchanged = match (key, source.key) {
                (None, None) => true,
                (Some(key), Some((start, len))) => key.range_in(input) == Some((start as u32, len as u32)),
                _ => false,
            };
            if key_unchanged {
                self.output.put_u32(abi::RECORD_REFERENCE | index);
                return ValueAt::Input(source_value.0, source_value.1);
            }
        }
        let headers = &input[source.headers.0..source.headers.0 + source.headers.1];
        let key = key.map(|key| key.as_ref());
        // The value follows the fixed fields and the key.
        let value_start = self.output.len() + abi::RECORD_HEADER_LEN + key.map_or(0, <[u8]>::len);
        abi::encode_record(
            &mut self.output,
            source.offset_delta,
            source.timestamp_delta,
            key,
            value,
            source.header_count,
            headers,
        );
        ValueAt::Output(value_start as u32, value.len() as u32)
    }

    /// Offers the allocator the room for the value of `source`'s output
    /// record: past its fixed fields and a key as long as the source's
    /// (see [`placement`]).
    #[inline(always)]
    fn offer_value_room(&mut self, source: &abi::RecordView<'_>) {
        self.settle_placement();
        let before_value = abi::RECORD_HEADER_LEN + source.key.map_or(0, |key| key.1);
        // Room for a value as long as the source's; a longer one that
        // does not fit is allocated elsewhere and copied, as without.
        self.output.reserve(before_value + source.value.1 + 64);
        let at = self.output.len() + before_value;
        let room = self.output.capacity() - at;
        // SAFETY: `at` is within the capacity reserved above.
        placement::offer(unsafe { self.output.as_mut_ptr().add(at) }, room);
    }

    /// Takes a value the allocator placed at `placed` as the value of
    /// `source`'s output record, writing the record's fixed fields and key
    /// before it. Answers whether it did; when not, the placed block is
    /// something else that lives on, and the output area is left to it
    /// ([`OutputWriter::escape`]).
    #[inline(always)]
    fn take_placed(
        &mut self,
        placed: *mut u8,
        source: &abi::RecordView<'_>,
        key: Option<&RecordData>,
        value: &mut RecordData,
        input: &Arc<Vec<u8>>,
    ) -> bool {
        let key_len = key.map(|key| key.len());
        let room_for_key = source.key.map_or(0, |key| key.1);
        if key_len.unwrap_or(0) != room_for_key {
            self.escape();
            return false;
        }
        let Some(value) = value.take_owned_at(placed) else {
            self.escape();
            return false;
        };
        let headers = &input[source.headers.0..source.headers.0 + source.headers.1];
        let record_len = abi::RECORD_HEADER_LEN - 4 + room_for_key + value.len() + headers.len();
        let head = abi::record_head(
            record_len,
            source.offset_delta,
            source.timestamp_delta,
            key_len.map_or(-1, |len| len as i32),
            value.len(),
            source.header_count,
        );
        let at = self.output.len();
        // SAFETY: the value lies at `at + RECORD_HEADER_LEN + room_for_key`
        // in the output area's capacity (where `offer_value_room` offered
        // it, within the room it gave); the fixed fields and the key go
        // in the bytes before it, which nothing else uses.
        unsafe {
            let dst = self.output.as_mut_ptr().add(at);
            std::ptr::copy_nonoverlapping(head.as_ptr(), dst, abi::RECORD_HEADER_LEN);
            if let Some(key) = key {
                std::ptr::copy_nonoverlapping(key.as_ptr(), dst.add(abi::RECORD_HEADER_LEN), room_for_key);
            }
            self.output.set_len(at + abi::RECORD_HEADER_LEN + room_for_key + value.len());
        }
        // Its bytes are the output area's now.
        std::mem::forget(value);
        placement::taken();
        if !headers.is_empty() {
            self.output.extend_from_slice(headers);
        }
        self.entries += 1;
        true
    }

    /// Before the output area is written to or moved: a block placed in
    /// it that still lives (held by an error, say) keeps it.
    #[inline(always)]
    fn settle_placement(&mut self) {
        if placement::close().is_some() {
            self.escape();
        }
    }

    /// A placed block lives on outside the output area: the area cannot
    /// move or be freed under it, so it is left as it is for good and the
    /// output goes on in a copy. Placing stops (see [`placement`]), so
    /// this happens at most once in a module's life.
    #[cold]
    fn escape(&mut self) {
        placement::escaped();
        let mut copy = Vec::with_capacity(self.output.capacity());
        copy.extend_from_slice(&self.output);
        std::mem::forget(std::mem::replace(&mut self.output, copy));
    }

    /// Writes a map-like entry in layout 1.
    #[inline(always)]
    fn entry(&mut self, index: u32, key: Option<&RecordData>, value: &RecordData, input: &Arc<Vec<u8>>) -> ValueAt {
        let key_range = key.and_then(|k| k.range_in(input));
        let value_range = value.range_in(input);
        let key_tag = match (key, key_range) {
            (None, _) => abi::DATA_NONE,
            (Some(_), Some(_)) => abi::DATA_INPUT_RANGE,
            (Some(_), None) => abi::DATA_INLINE,
        };
        let value_tag = if value_range.is_some() { abi::DATA_INPUT_RANGE } else { abi::DATA_INLINE };
        let out = &mut self.output;
        // The common entry (no key, a value) goes in as one fixed part and
        // the value's bytes: an append per field pays a capacity check each.
        match key {
            None => {
                let inline_len = if value_range.is_some() { 0 } else { value.len() };
                out.reserve(16 + inline_len);
                let mut fixed = [0u8; 16];
                fixed[0..4].copy_from_slice(&index.to_le_bytes());
                fixed[4] = key_tag;
                fixed[5] = value_tag;
                match value_range {
                    Some((start, len)) => {
                        fixed[8..12].copy_from_slice(&start.to_le_bytes());
                        fixed[12..16].copy_from_slice(&len.to_le_bytes());
                        out.extend_from_slice(&fixed);
                    }
                    None => {
                        fixed[8..12].copy_from_slice(&(inline_len as u32).to_le_bytes());
                        out.extend_from_slice(&fixed[..12]);
                        out.extend_from_slice(value);
                    }
                }
            }
            Some(key) => {
                out.put_u32(index);
                out.extend_from_slice(&[key_tag, value_tag, 0, 0]);
                write_data(out, key, key_range);
                write_data(out, value, value_range);
            }
        }
        self.entries += 1;
        match value_range {
            Some((start, len)) => ValueAt::Input(start, len),
            // A value's bytes are an entry's last.
            None => ValueAt::Output((self.output.len() - value.len()) as u32, value.len() as u32),
        }
    }

    /// The bytes of a value written by [`OutputWriter::record`].
    fn written_value<'a>(&'a self, at: ValueAt, input: &'a [u8]) -> &'a [u8] {
        match at {
            ValueAt::Input(start, len) => &input[start as usize..start as usize + len as usize],
            ValueAt::Output(start, len) => &self.output[start as usize..start as usize + len as usize],
        }
    }

    fn error(&mut self, index: u32, error: &Error) {
        let (kind, message) = (crate::error::kind_of(error), crate::error::message_of(error));
        self.fault(index, &kind, &message);
    }

    /// An error the glue itself found, with its own kind.
    fn fault(&mut self, index: u32, kind: &str, message: &str) {
        self.errors.put_u32(index);
        abi::encode_header(&mut self.errors, kind.as_bytes(), message.as_bytes());
        self.error_count += 1;
    }

    /// Writes the header, hands the buffers back, and prepares the input
    /// buffer for the next batch.
    fn finish(mut self, status: u32) {
        self.settle_placement();
        let entries_len = (self.output.len() - abi::OUTPUT_HEADER_LEN) as u32;
        self.output.extend_from_slice(&self.errors);
        STATE.with(|state| {
            let mut state = state.borrow_mut();
            if Arc::get_mut(&mut state.input).is_none() {
                // User code kept a piece of the last batch; leave it be and
                // give the host a fresh buffer of the same size.
                let capacity = state.input.len();
                state.input = Arc::new(vec![0; capacity]);
            }
            let next_ptr = state.input.as_ptr() as usize as u32;
            let next_cap = state.input.len() as u32;
            let header = &mut self.output[..abi::OUTPUT_HEADER_LEN];
            for (i, word) in
                [status, next_ptr, next_cap, self.entries, self.error_count, entries_len].into_iter().enumerate()
            {
                header[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            state.output = self.output;
            state.errors = self.errors;
        });
    }
}

/// Where an entry's value went: a range of the input batch, or of the
/// output area.
#[derive(Clone, Copy)]
enum ValueAt {
    Input(u32, u32),
    Output(u32, u32),
}

#[inline]
fn write_data(out: &mut Vec<u8>, data: &RecordData, range: Option<(u32, u32)>) {
    match range {
        Some((start, len)) => {
            out.put_u32(start);
            out.put_u32(len);
        }
        None => out.put_len_prefixed(data),
    }
}

/// Walks the batch in the input buffer and calls `each` for every record.
// The loop keeps its own index on purpose: see the note at the loop.
#[allow(clippy::explicit_counter_loop)]
fn drive(
    input_len: i32,
    flags: i32,
    filter: bool,
    mut each: impl FnMut(u32, &abi::RecordView<'_>, &SmartModuleRecord, &Arc<Vec<u8>>, &mut OutputWriter) -> Result<()>,
) {
    let stop_on_error = flags as u32 & abi::FLAG_STOP_ON_ERROR != 0;
    let input = STATE.with(|state| Arc::clone(&state.borrow().input));
    let mut writer = OutputWriter::take();
    let len = (input_len.max(0) as usize).min(input.len());
    let batch = &input[..len];
    let (header, records) = match abi::RecordIter::new(batch) {
        Ok(parsed) => parsed,
        Err(error) => {
            writer.fault(abi::NO_RECORD, "bad-batch", &error.to_string());
            drop(input);
            writer.finish(abi::STATUS_BAD_INPUT);
            return;
        }
    };
    if filter {
        writer.start_filter(header.record_count);
    }
    let mut status = abi::STATUS_OK;
    // One record, moved along the batch: user code sees it only by
    // reference, so nothing it keeps (a clone) refers to the reused parts.
    let mut record = SmartModuleRecord::wrap(Record::new(RecordData::default()));
    // A counter of our own rather than `enumerate()` or `zip`: their `next`
    // is not inlined, and a record view returned through memory costs a
    // store-forwarding stall per record.
    let mut next_index: u32 = 0;
    for view in records {
        let index = next_index;
        next_index += 1;
        let view = match view {
            Ok(view) => view,
            Err(error) => {
                writer.fault(abi::NO_RECORD, "bad-batch", &error.to_string());
                status = abi::STATUS_BAD_INPUT;
                break;
            }
        };
        record.refill(&input, &view, header.base_offset, header.base_timestamp);
        CURRENT_RECORD.with(|current| current.set(index as i32));
        let result = each(index, &view, &record, &input, &mut writer);
        CURRENT_RECORD.with(|current| current.set(-1));
        if let Err(error) = result {
            writer.error(index, &error);
            if stop_on_error {
                status = abi::STATUS_STOPPED;
                break;
            }
        }
    }
    drop(record);
    drop(input);
    writer.finish(status);
}

/// Processes one batch with a filter.
pub fn run_filter<A, F: FilterFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    drive(input_len, flags, true, |index, _, record, _, out| {
        if f.call_filter(record)? {
            out.kept(index);
        }
        Ok(())
    });
    output_location()
}

/// Calls `$run::<LAYOUT, ..>($args)` with the layout agreed at setup as a
/// constant, so that a kind's loop holds one layout's writer: with both
/// in one loop, the map's wasm took 34 instructions a record more in
/// layout 1 and 9 more in layout 2 (cachegrind).
macro_rules! in_layout {
    ($run:ident($($arg:expr),*)) => {
        match answer_layout() {
            abi::ANSWER_LAYOUT_1 => $run::<{ abi::ANSWER_LAYOUT_1 }, _, _>($($arg),*),
            _ => $run::<{ abi::ANSWER_LAYOUT_2 }, _, _>($($arg),*),
        }
    };
}

/// Processes one batch with a map.
pub fn run_map<A, F: MapFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    fn run<const LAYOUT: u32, A, F: MapFn<A>>(input_len: i32, flags: i32, f: F) {
        drive(input_len, flags, false, |index, view, record, input, out| {
            map_one::<LAYOUT, _>(out, index, view, input, || f.call_map(record))
        });
    }
    in_layout!(run(input_len, flags, f));
    output_location()
}

/// Processes one batch with a filter-map.
pub fn run_filter_map<A, F: FilterMapFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    fn run<const LAYOUT: u32, A, F: FilterMapFn<A>>(input_len: i32, flags: i32, f: F) {
        drive(input_len, flags, false, |index, view, record, input, out| {
            map_one::<LAYOUT, _>(out, index, view, input, || f.call_filter_map(record))
        });
    }
    in_layout!(run(input_len, flags, f));
    output_location()
}

/// What a map (a record, always) or a filter-map (a record or none)
/// answers with, read where it lies.
trait MapAnswer {
    /// The new key and value, if the function answered with a record.
    fn record(&mut self) -> Option<(Option<&RecordData>, &mut RecordData)>;
}

impl MapAnswer for (Option<RecordData>, RecordData) {
    #[inline(always)]
    fn record(&mut self) -> Option<(Option<&RecordData>, &mut RecordData)> {
        Some((self.0.as_ref(), &mut self.1))
    }
}

impl MapAnswer for Option<(Option<RecordData>, RecordData)> {
    #[inline(always)]
    fn record(&mut self) -> Option<(Option<&RecordData>, &mut RecordData)> {
        self.as_mut().and_then(MapAnswer::record)
    }
}

/// Runs `call` for record `index` and writes the output record it answers
/// with, if any. In layout 2 its new value may be placed where the output
/// record goes, and is then taken there (see [`placement`]).
///
/// The answer is read where the function wrote it, through references:
/// moved whole (into an `Option`, or out of the `Result`), it was copied
/// with loads wider than the function's stores of it, a store-forwarding
/// stall a record that took a third of the map's glue in its profile.
#[inline(always)]
fn map_one<const LAYOUT: u32, A: MapAnswer>(
    out: &mut OutputWriter,
    index: u32,
    view: &abi::RecordView<'_>,
    input: &Arc<Vec<u8>>,
    call: impl FnOnce() -> Result<A>,
) -> Result<()> {
    if LAYOUT == abi::ANSWER_LAYOUT_1 {
        if let Some((key, value)) = call()?.record() {
            out.record::<LAYOUT>(index, view, key, value, input);
        }
        return Ok(());
    }
    out.offer_value_room(view);
    let mut answer = call();
    let placed = placement::close();
    // A block placed for an error, or for a record left out, is freed by
    // the time the output area is next written to, unless the function
    // kept it (see `offer_value_room`).
    let record = match &mut answer {
        Ok(answer) => answer.record(),
        Err(_) => return answer.map(|_| ()),
    };
    let Some((key, value)) = record else { return Ok(()) };
    if let Some(placed) = placed
        && out.take_placed(placed, view, key, value, input)
    {
        return Ok(());
    }
    out.record::<LAYOUT>(index, view, key, value, input);
    Ok(())
}

/// Processes one batch with an array-map.
pub fn run_array_map<A, F: ArrayMapFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    fn run<const LAYOUT: u32, A, F: ArrayMapFn<A>>(input_len: i32, flags: i32, f: F) {
        drive(input_len, flags, false, |index, view, record, input, out| {
            for (key, value) in f.call_array_map(record)? {
                out.record::<LAYOUT>(index, view, key.as_ref(), &value, input);
            }
            Ok(())
        });
    }
    in_layout!(run(input_len, flags, f));
    output_location()
}

/// Processes one batch with an aggregate. The accumulator lives in the
/// module between batches; each record's output is the new accumulator.
pub fn run_aggregate<A, F: AggregateFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    in_layout!(aggregate(input_len, flags, f));
    output_location()
}

fn aggregate<const LAYOUT: u32, A, F: AggregateFn<A>>(input_len: i32, flags: i32, f: F) {
    let stop_on_error = flags as u32 & abi::FLAG_STOP_ON_ERROR != 0;
    let kept = STATE.with(|state| state.borrow_mut().accumulator.take()).unwrap_or_default();
    // The function takes the accumulator, and an error must leave it as it
    // was. Rather than a copy per record, an error takes it back from the
    // last output, which is the accumulator, or at the batch's first
    // records, from a copy made once per batch. Under stop-on-error the
    // stream ends at an error, so no copy is needed at all.
    let at_batch_start = if stop_on_error { None } else { Some(kept.clone()) };
    // The loop's accumulator is a variable of its own, whose address is
    // taken by nothing outside the loop (`clone` above, `detach` below)
    // and which is never dropped where it lies (dropping an `Arc` takes the
    // address of what it drops): it is replaced, and the old value dropped
    // apart. Then the compiler keeps its fields in registers from record to
    // record. Kept in memory, it was stored field by field at a record's
    // end and read back whole, one 16-byte load, at the next one's start: a
    // store-forwarding stall a record (the count: 67.7 -> 65.5 ms).
    let mut accumulator = kept;
    let mut last_output: Option<ValueAt> = None;
    drive(input_len, flags, false, |index, view, record, input, out| {
        match f.call_aggregate(std::mem::take(&mut accumulator), record) {
            Ok(next) => {
                last_output = Some(out.record::<LAYOUT>(index, view, record.key.as_ref(), &next, input));
                drop(std::mem::replace(&mut accumulator, next));
                Ok(())
            }
            Err(error) => {
                if !stop_on_error {
                    let restored = match last_output {
                        Some(at) => RecordData::from(out.written_value(at, input)),
                        None => at_batch_start.clone().unwrap_or_default(),
                    };
                    drop(std::mem::replace(&mut accumulator, restored));
                }
                Err(error)
            }
        }
    });
    let mut kept = accumulator;
    kept.detach();
    STATE.with(|state| state.borrow_mut().accumulator = Some(kept));
}

/// Feeds one batch of stored records to a `look_back` function, before a
/// stream starts; nothing is output but errors.
pub fn run_look_back<A, F: LookBackFn<A>>(input_len: i32, flags: i32, f: F) -> i64 {
    drive(input_len, flags, false, |_, _, record, _, _| f.call_look_back(record));
    output_location()
}

macro_rules! signature_trait {
    ($trait:ident, $method:ident, $doc:literal, $message:literal, $label:literal, ($($arg:ident: $argty:ty),*) -> $ret:ty) => {
        #[doc = $doc]
        #[diagnostic::on_unimplemented(
            message = $message,
            label = $label,
            note = "`&SmartModuleRecord` may stand in place of `&Record`",
            note = "found `{Self}`"
        )]
        pub trait $trait<Arg> {
            /// Calls the function.
            fn $method(&self, $($arg: $argty),*) -> $ret;
        }
    };
}

signature_trait!(FilterFn, call_filter,
    "A function usable as `#[smartmodule(filter)]`.",
    "`#[smartmodule(filter)]` expects a function `fn(&Record) -> Result<bool>`",
    "this function does not have the signature of a filter",
    (record: &SmartModuleRecord) -> Result<bool>);
signature_trait!(MapFn, call_map,
    "A function usable as `#[smartmodule(map)]`.",
    "`#[smartmodule(map)]` expects a function `fn(&Record) -> Result<(Option<RecordData>, RecordData)>`",
    "this function does not have the signature of a map",
    (record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)>);
signature_trait!(FilterMapFn, call_filter_map,
    "A function usable as `#[smartmodule(filter_map)]`.",
    "`#[smartmodule(filter_map)]` expects a function `fn(&Record) -> Result<Option<(Option<RecordData>, RecordData)>>`",
    "this function does not have the signature of a filter_map",
    (record: &SmartModuleRecord) -> Result<Option<(Option<RecordData>, RecordData)>>);
signature_trait!(ArrayMapFn, call_array_map,
    "A function usable as `#[smartmodule(array_map)]`.",
    "`#[smartmodule(array_map)]` expects a function `fn(&Record) -> Result<Vec<(Option<RecordData>, RecordData)>>`",
    "this function does not have the signature of an array_map",
    (record: &SmartModuleRecord) -> Result<Vec<(Option<RecordData>, RecordData)>>);
signature_trait!(AggregateFn, call_aggregate,
    "A function usable as `#[smartmodule(aggregate)]`.",
    "`#[smartmodule(aggregate)]` expects a function `fn(RecordData, &Record) -> Result<RecordData>`",
    "this function does not have the signature of an aggregate",
    (accumulator: RecordData, record: &SmartModuleRecord) -> Result<RecordData>);

macro_rules! record_impls {
    ($trait:ident, $method:ident, ($($pre:ident: $prety:ty),*) -> $ret:ty) => {
        impl<F> $trait<Record> for F where F: Fn($($prety,)* &Record) -> $ret {
            #[inline]
            fn $method(&self, $($pre: $prety,)* record: &SmartModuleRecord) -> $ret {
                self($($pre,)* record.as_ref())
            }
        }
        impl<F> $trait<SmartModuleRecord> for F where F: Fn($($prety,)* &SmartModuleRecord) -> $ret {
            #[inline]
            fn $method(&self, $($pre: $prety,)* record: &SmartModuleRecord) -> $ret {
                self($($pre,)* record)
            }
        }
    };
}

signature_trait!(LookBackFn, call_look_back,
    "A function usable as `#[smartmodule(look_back)]`.",
    "`#[smartmodule(look_back)]` expects a function `fn(&Record) -> Result<()>`",
    "this function does not have the signature of a look_back",
    (record: &SmartModuleRecord) -> Result<()>);

record_impls!(FilterFn, call_filter, () -> Result<bool>);
record_impls!(LookBackFn, call_look_back, () -> Result<()>);
record_impls!(MapFn, call_map, () -> Result<(Option<RecordData>, RecordData)>);
record_impls!(FilterMapFn, call_filter_map, () -> Result<Option<(Option<RecordData>, RecordData)>>);
record_impls!(ArrayMapFn, call_array_map, () -> Result<Vec<(Option<RecordData>, RecordData)>>);
record_impls!(AggregateFn, call_aggregate, (accumulator: RecordData) -> Result<RecordData>);

/// A function usable as `#[smartmodule(init)]`: `fn(SmartModuleExtraParams) -> Result<()>`.
#[diagnostic::on_unimplemented(
    message = "`#[smartmodule(init)]` expects a function `fn(SmartModuleExtraParams) -> Result<()>`",
    label = "this function does not have the signature of an init function",
    note = "found `{Self}`"
)]
pub trait InitFn {
    /// Calls the function.
    fn call_init(&self, params: SmartModuleExtraParams) -> Result<()>;
}

impl<F> InitFn for F
where
    F: Fn(SmartModuleExtraParams) -> Result<()>,
{
    fn call_init(&self, params: SmartModuleExtraParams) -> Result<()> {
        self(params)
    }
}

// ---------------------------------------------------------------------------
// Host imports and the exports every module shares
// ---------------------------------------------------------------------------

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "fluvio")]
    unsafe extern "C" {
        #[link_name = "log"]
        pub fn log(level: i32, ptr: *const u8, len: i32);
        #[link_name = "panic"]
        pub fn panic(ptr: *const u8, len: i32, record_index: i32);
        #[link_name = "out_of_memory"]
        pub fn out_of_memory(requested: i32);
    }
}

/// Sends one log line to the host (or to stderr when run natively).
pub fn log_line(level: crate::log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr` from our memory, bounds-checked.
    unsafe {
        host::log(level as i32, message.as_ptr(), message.len() as i32)
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[smartmodule {}] {message}", level.name());
}

fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            let record = CURRENT_RECORD.with(Cell::get);
            #[cfg(target_arch = "wasm32")]
            // SAFETY: the host reads `len` bytes at `ptr` from our memory, bounds-checked.
            unsafe {
                host::panic(message.as_ptr(), message.len() as i32, record)
            }
            #[cfg(not(target_arch = "wasm32"))]
            eprintln!("SmartModule panicked at record {record}: {message}");
        }));
    });
}

#[cfg(target_arch = "wasm32")]
mod exports {
    const _: () = assert!(crate::abi::ABI_VERSION == 1, "rename fluvio_abi_v1 when the ABI version changes");

    /// Marks the module as speaking ABI version 1; the name is the message.
    #[unsafe(no_mangle)]
    pub extern "C" fn fluvio_abi_v1() {}

    #[unsafe(no_mangle)]
    pub extern "C" fn fluvio_reserve(len: i32) -> i32 {
        super::reserve(len) as usize as i32
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn fluvio_setup(len: i32) -> i64 {
        super::setup(len)
    }
}

/// A map's new value written straight into the output area.
///
/// Before a map's function runs, the glue offers the allocator the room
/// in the output area past the next record's fixed fields and key. The
/// first byte vector the function allocates that fits is placed there;
/// when it comes back as the value, the glue writes the record's fixed
/// fields before it and the value is in place, where otherwise it would
/// be copied there and freed. A placed block that outlives the call as
/// anything else (the function kept it, or it is the key) cannot be
/// moved: the output area is then left to it, never freed, the glue goes
/// on in a new one, and the module places nothing more (see
/// [`OutputWriter::escape`]).
#[cfg(all(target_arch = "wasm32", feature = "report-oom"))]
pub(crate) mod placement {
    use std::alloc::Layout;
    use std::cell::Cell;

    /// A block of the output area: where it starts, and how far it may
    /// grow there.
    #[derive(Clone, Copy)]
    struct Block {
        ptr: *mut u8,
        room: usize,
    }

    const NONE: Block = Block { ptr: std::ptr::null_mut(), room: 0 };

    struct State {
        /// The room offered for the next allocation.
        offered: Cell<Block>,
        /// The block placed in it, while the glue has not taken it.
        placed: Cell<Block>,
        /// A placed block that outlived its call: never freed.
        escaped: Cell<Block>,
        /// Whether `placed` or `escaped` holds a block: the one look a
        /// free or a reallocation of any other block pays.
        any_placed: Cell<bool>,
        /// Set once a block escaped: nothing is placed any more.
        off: Cell<bool>,
    }

    // SAFETY: a module without the `atomics` feature has one thread; with
    // it, `offer` and `close` write nothing, so no block is ever placed and
    // the state is only read.
    unsafe impl Sync for State {}

    static STATE: State = State {
        offered: Cell::new(NONE),
        placed: Cell::new(NONE),
        escaped: Cell::new(NONE),
        any_placed: Cell::new(false),
        off: Cell::new(false),
    };

    /// Offers `room` bytes at `ptr` to the next allocation of bytes.
    #[inline(always)]
    pub(crate) fn offer(ptr: *mut u8, room: usize) {
        if !cfg!(target_feature = "atomics") && !STATE.off.get() {
            STATE.offered.set(Block { ptr, room });
        }
    }

    /// Ends the offer; the block placed since, if it was not freed.
    #[inline(always)]
    pub(crate) fn close() -> Option<*mut u8> {
        if cfg!(target_feature = "atomics") {
            return None;
        }
        STATE.offered.set(NONE);
        let placed = STATE.placed.get().ptr;
        (!placed.is_null()).then_some(placed)
    }

    /// The placed block became part of the output area.
    #[inline(always)]
    pub(crate) fn taken() {
        STATE.placed.set(NONE);
        STATE.any_placed.set(!STATE.escaped.get().ptr.is_null());
    }

    /// The placed block lives on outside the output area: it stays where
    /// it is for good.
    pub(crate) fn escaped() {
        STATE.escaped.set(STATE.placed.replace(NONE));
        STATE.off.set(true);
    }

    /// Where an allocation of `layout` goes if the offered room takes it.
    #[inline(always)]
    pub(super) fn place(layout: &Layout) -> Option<*mut u8> {
        let offered = STATE.offered.get();
        if offered.ptr.is_null() || layout.align() != 1 || layout.size() > offered.room {
            return None;
        }
        STATE.offered.set(NONE);
        STATE.placed.set(offered);
        STATE.any_placed.set(true);
        Some(offered.ptr)
    }

    /// Whether `ptr` is a placed block, which is not the allocator's to
    /// free; a placed one freed leaves its room to the output area.
    #[inline(always)]
    pub(super) fn release(ptr: *mut u8) -> bool {
        STATE.any_placed.get() && release_placed(ptr)
    }

    #[cold]
    #[inline(never)]
    fn release_placed(ptr: *mut u8) -> bool {
        if ptr == STATE.placed.get().ptr {
            taken();
            return true;
        }
        ptr == STATE.escaped.get().ptr
    }

    /// How far a placed block at `ptr` may grow where it is.
    #[inline(always)]
    pub(super) fn room(ptr: *mut u8) -> Option<usize> {
        if !STATE.any_placed.get() {
            return None;
        }
        room_of_placed(ptr)
    }

    #[cold]
    #[inline(never)]
    fn room_of_placed(ptr: *mut u8) -> Option<usize> {
        [STATE.placed.get(), STATE.escaped.get()].into_iter().find(|block| block.ptr == ptr).map(|block| block.room)
    }
}

/// Without the module's allocator nothing is placed: the glue copies.
#[cfg(not(all(target_arch = "wasm32", feature = "report-oom")))]
pub(crate) mod placement {
    pub(crate) fn offer(_ptr: *mut u8, _room: usize) {}
    pub(crate) fn close() -> Option<*mut u8> {
        None
    }
    pub(crate) fn taken() {}
    pub(crate) fn escaped() {}
}

/// The module's allocator: small blocks are kept for reuse, and a failed
/// allocation is reported to the host before the module traps, so that a
/// memory cap shows up as "out of memory" rather than a bare trap.
#[cfg(all(target_arch = "wasm32", feature = "report-oom"))]
mod allocator {
    use std::alloc::{GlobalAlloc, Layout, System};

    struct ModuleAllocator;

    /// After `System` failed to serve `layout`: gives it every kept small
    /// block, which it may join into room, and asks once more; reports the
    /// failure to the host if that fails too (the module traps next). Out
    /// of line, so that the usual paths stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn again_after_release(layout: Layout, zeroed: bool) -> *mut u8 {
        let ptr = if unsafe { small_blocks::release_all() } {
            let layout = small_blocks::class_of(&layout).map_or(layout, small_blocks::block_layout);
            unsafe { if zeroed { System.alloc_zeroed(layout) } else { System.alloc(layout) } }
        } else {
            std::ptr::null_mut()
        };
        if ptr.is_null() {
            unsafe { super::host::out_of_memory(layout.size() as i32) };
        }
        ptr
    }

    // SAFETY: large blocks are `System`'s; small ones are `System`'s blocks
    // of their class's size, handed out again only after they were freed
    // (see `small_blocks`).
    unsafe impl GlobalAlloc for ModuleAllocator {
        #[inline(always)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if let Some(ptr) = super::placement::place(&layout) {
                return ptr;
            }
            let ptr = match small_blocks::class_of(&layout) {
                Some(class) => unsafe { small_blocks::take(class) },
                None => unsafe { System.alloc(layout) },
            };
            if ptr.is_null() {
                return again_after_release(layout, false);
            }
            ptr
        }
        #[inline(always)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if super::placement::release(ptr) {
                return;
            }
            match small_blocks::class_of(&layout) {
                Some(class) => unsafe { small_blocks::give_back(class, ptr) },
                None => unsafe { System.dealloc(ptr, layout) },
            }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            match small_blocks::class_of(&layout) {
                Some(class) => {
                    let ptr = unsafe { small_blocks::take(class) };
                    if ptr.is_null() {
                        return again_after_release(layout, true);
                    }
                    unsafe { ptr.write_bytes(0, layout.size()) };
                    ptr
                }
                None => {
                    let ptr = unsafe { System.alloc_zeroed(layout) };
                    if ptr.is_null() {
                        return again_after_release(layout, true);
                    }
                    ptr
                }
            }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `GlobalAlloc::realloc` promises a valid layout for
            // `new_size` with the same alignment.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if let Some(room) = super::placement::room(ptr) {
                if new_size <= room {
                    return ptr;
                }
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
                    super::placement::release(ptr);
                }
                return new;
            }
            let (old_class, new_class) = (small_blocks::class_of(&layout), small_blocks::class_of(&new_layout));
            if old_class.is_some() && old_class == new_class {
                // The block already has room: its class's size.
                return ptr;
            }
            let new = match (old_class, new_class) {
                (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
                _ => unsafe { self.alloc(new_layout) },
            };
            if new.is_null() {
                // `alloc` has released the kept blocks and reported already.
                if old_class.is_some() || new_class.is_some() {
                    return new;
                }
                let again = again_after_release(new_layout, false);
                if !again.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, again, layout.size().min(new_size));
                        System.dealloc(ptr, layout);
                    }
                }
                return again;
            }
            if old_class.is_some() || new_class.is_some() {
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }

    /// Free lists of small blocks, one per size class. A module allocates
    /// and frees the same few sizes for every record (a value, its copy);
    /// taking a block off a list is a handful of instructions where
    /// `dlmalloc` runs a hundred, behind two calls. The lists are not
    /// bounded, which would cost a count on every call: when `System`
    /// cannot serve an allocation, every kept block goes back to it and it
    /// is asked again ([`again_after_release`]), so the lists never make an
    /// allocation fail that would have succeeded without them.
    mod small_blocks {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        /// Blocks are multiples of this size, and aligned to it.
        const GRAIN: usize = 16;
        /// Sizes up to this are served from the lists.
        const LARGEST: usize = 512;
        const CLASSES: usize = LARGEST / GRAIN;

        struct Lists([Cell<*mut u8>; CLASSES]);

        // SAFETY: a module without the `atomics` feature has one thread;
        // with it, `class_of` sends every block to `System` and the lists
        // are never touched.
        unsafe impl Sync for Lists {}

        static LISTS: Lists = Lists([const { Cell::new(std::ptr::null_mut()) }; CLASSES]);

        /// The class of blocks serving `layout`, if it is small.
        #[inline(always)]
        pub(super) fn class_of(layout: &Layout) -> Option<usize> {
            if cfg!(target_feature = "atomics") || layout.size() > LARGEST || layout.align() > GRAIN {
                return None;
            }
            Some(layout.size().saturating_sub(1) / GRAIN)
        }

        /// The layout `System` gives a block of `class` with.
        #[inline(always)]
        pub(super) fn block_layout(class: usize) -> Layout {
            // SAFETY: the size is non-zero and the alignment a power of two.
            unsafe { Layout::from_size_align_unchecked((class + 1) * GRAIN, GRAIN) }
        }

        /// A block of `class`: the last one freed, or a new one; null when
        /// memory is out.
        #[inline(always)]
        pub(super) unsafe fn take(class: usize) -> *mut u8 {
            let head = &LISTS.0[class];
            let block = head.get();
            if block.is_null() {
                return unsafe { System.alloc(block_layout(class)) };
            }
            // A free block holds the next free block's address.
            head.set(unsafe { block.cast::<*mut u8>().read() });
            block
        }

        /// Puts a block of `class` back on its list.
        #[inline(always)]
        pub(super) unsafe fn give_back(class: usize, block: *mut u8) {
            let head = &LISTS.0[class];
            unsafe { block.cast::<*mut u8>().write(head.get()) };
            head.set(block);
        }

        /// Gives every kept block back to `System`; whether there was any.
        #[cold]
        pub(super) unsafe fn release_all() -> bool {
            let mut released = false;
            for (class, head) in LISTS.0.iter().enumerate() {
                let mut block = head.replace(std::ptr::null_mut());
                while !block.is_null() {
                    let next = unsafe { block.cast::<*mut u8>().read() };
                    unsafe { System.dealloc(block, block_layout(class)) };
                    block = next;
                    released = true;
                }
            }
            released
        }
    }

    #[global_allocator]
    static ALLOCATOR: ModuleAllocator = ModuleAllocator;
}

/// Runs the glue natively, for benchmarks that compare a module with the
/// same function compiled for the host, and for tests of the glue itself.
pub mod native {
    use super::*;

    /// Has the glue answer in `layout`, as setup does when a host offers
    /// it.
    pub fn use_layout(layout: u32) {
        STATE.with(|state| state.borrow_mut().layout = layout);
    }

    /// Copies `input` into the input buffer, runs `call` with its length,
    /// and hands the output area to `read`.
    pub fn call<R>(input: &[u8], call: impl FnOnce(i32) -> i64, read: impl FnOnce(&[u8]) -> R) -> R {
        let ptr = reserve(input.len() as i32);
        // SAFETY: `reserve` returned a buffer of at least `input.len()` bytes
        // that nothing else refers to until `call` runs.
        unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), ptr, input.len()) };
        call(input.len() as i32);
        STATE.with(|state| read(&state.borrow().output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of keyless records with these values, at offset 0. Written
    /// by hand: `BatchBuilder` lives in fluvio-protocol, which depends on
    /// this crate.
    fn batch(values: &[&str]) -> Vec<u8> {
        let mut records = Vec::new();
        for (delta, value) in values.iter().enumerate() {
            records.put_u32((abi::RECORD_HEADER_LEN - 4 + value.len()) as u32);
            records.put_u32(delta as u32);
            records.put_i64(0);
            records.put_i32(-1);
            records.put_u32(value.len() as u32);
            records.put_u32(0);
            records.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::new();
        out.put_i64(0);
        out.put_u32((abi::BATCH_HEADER_LEN + records.len()) as u32);
        out.put_u32(0);
        out.extend_from_slice(&[abi::BATCH_FORMAT_VERSION, 0, 0, 0]);
        out.put_u32(values.len() as u32);
        out.put_i64(0);
        out.extend_from_slice(&records);
        out
    }

    /// The values of an output area's keyless entries, by record index, and
    /// the indexes of its errors. (In layout 2 an output record names its
    /// source by offset delta, which in [`batch`] is the index.)
    fn outputs(area: &[u8], input: &[u8], layout: u32) -> (Vec<(u32, String)>, Vec<u32>) {
        let mut header = ByteReader::new(&area[..abi::OUTPUT_HEADER_LEN]);
        let words: Vec<u32> = (0..6).map(|_| header.u32("header").unwrap()).collect();
        let (entry_count, error_count, entries_len) = (words[3], words[4], words[5] as usize);
        let mut entries = ByteReader::new(&area[abi::OUTPUT_HEADER_LEN..abi::OUTPUT_HEADER_LEN + entries_len]);
        let mut values = Vec::new();
        let records: Vec<_> = abi::RecordIter::new(input).unwrap().1.map(Result::unwrap).collect();
        for _ in 0..entry_count {
            if layout == abi::ANSWER_LAYOUT_2 {
                let word = entries.u32("first word").unwrap();
                let (index, value) = if word & abi::RECORD_REFERENCE != 0 {
                    let source = records[(word & !abi::RECORD_REFERENCE) as usize];
                    (source.offset_delta, &input[source.value.0..source.value.0 + source.value.1])
                } else {
                    let index = entries.u32("offset delta").unwrap();
                    entries.bytes(8, "timestamp delta").unwrap();
                    assert_eq!(entries.i32("key length").unwrap(), -1, "keyless records have keyless outputs");
                    let value_len = entries.u32("value length").unwrap() as usize;
                    assert_eq!(entries.u32("header count").unwrap(), 0);
                    assert_eq!(word as usize, abi::RECORD_HEADER_LEN - 4 + value_len);
                    (index, entries.bytes(value_len, "value").unwrap())
                };
                values.push((index, String::from_utf8(value.to_vec()).unwrap()));
                continue;
            }
            let index = entries.u32("index").unwrap();
            let tags = entries.bytes(4, "tags").unwrap();
            assert_eq!(tags[0], abi::DATA_NONE, "keyless records have keyless outputs");
            let value = match tags[1] {
                abi::DATA_INLINE => entries.len_prefixed("value").unwrap(),
                abi::DATA_INPUT_RANGE => {
                    let (start, len) = (entries.u32("start").unwrap() as usize, entries.u32("len").unwrap() as usize);
                    &input[start..start + len]
                }
                other => panic!("unexpected value tag {other}"),
            };
            values.push((index, String::from_utf8(value.to_vec()).unwrap()));
        }
        let mut errors = ByteReader::new(&area[abi::OUTPUT_HEADER_LEN + entries_len..]);
        let error_indexes = (0..error_count)
            .map(|_| {
                let index = errors.u32("error index").unwrap();
                errors.len_prefixed("kind").unwrap();
                errors.len_prefixed("message").unwrap();
                index
            })
            .collect();
        (values, error_indexes)
    }

    /// Fails on `x`; answers `echo` with the accumulator as it is; takes
    /// any other value as the new accumulator (a slice of the input).
    fn latest(accumulator: RecordData, record: &Record) -> Result<RecordData> {
        match record.value.as_ref() {
            b"x" => Err(crate::error::eyre!("no")),
            b"echo" => Ok(accumulator),
            _ => Ok(record.value.clone()),
        }
    }

    fn run(values: &[&str], layout: u32) -> (Vec<(u32, String)>, Vec<u32>) {
        let input = batch(values);
        native::use_layout(layout);
        native::call(&input, |len| run_aggregate(len, 0, latest), |area| outputs(area, &input, layout))
    }

    /// An error leaves the accumulator as it was, whether the last output
    /// was written inline (or as a record) or as a range of the input (or a
    /// reference), and at a batch's first record, where there is no output
    /// yet to take it back from.
    #[test]
    fn an_aggregate_error_leaves_the_accumulator_as_it_was() {
        for layout in [abi::ANSWER_LAYOUT_1, abi::ANSWER_LAYOUT_2] {
            STATE.with(|state| state.borrow_mut().accumulator = Some(RecordData::from("start")));
            let (values, errors) = run(&["x", "echo", "a", "x", "echo", "x", "echo"], layout);
            assert_eq!(errors, [0, 3, 5], "layout {layout}");
            let expected = [(1, "start"), (2, "a"), (4, "a"), (6, "a")];
            assert_eq!(values, expected.map(|(index, value)| (index, value.to_owned())), "layout {layout}");
            // The accumulator goes on into the next batch, and there too an
            // error at the first record keeps it.
            let (values, errors) = run(&["x", "echo"], layout);
            assert_eq!((values, errors), (vec![(1, "a".to_owned())], vec![0]), "layout {layout}");
        }
    }
}
