//! The engine benchmark's functions as plain loops over `Vec<u8>` values,
//! outputs allocated and no batch format: what a user would write without
//! a sandbox, and the limit the engine is measured against.

use fluvio_protocol::Batch;
use fluvio_protocol::abi;
use fluvio_protocol::batch::{RecordIndex, encode_record, write_batch_header};

/// What the regex scrubber masks: something that looks like an SSN.
static SSN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\d{3}-\d{2}-\d{4}").unwrap());

/// The values of every batch, as a plain program would hold them.
pub fn plain_values(input: &[Batch]) -> Vec<Vec<Vec<u8>>> {
    input.iter().map(|batch| batch.records().map(|record| record.value.to_vec()).collect()).collect()
}

/// A plain loop over one batch's values; returns how many outputs it made.
pub type Bare = fn(&[Vec<u8>]) -> usize;

/// Keeps the values that contain `#`, as the `bench-filter` module does.
pub fn bare_filter(values: &[Vec<u8>]) -> usize {
    let kept: Vec<Vec<u8>> = values.iter().filter(|value| value.contains(&b'#')).cloned().collect();
    kept.len()
}

/// ASCII upper-cases every value, as the `uppercase-map` example does.
pub fn bare_uppercase(values: &[Vec<u8>]) -> usize {
    let mapped: Vec<Vec<u8>> = values.iter().map(|value| value.to_ascii_uppercase()).collect();
    mapped.len()
}

/// Masks what looks like an SSN, as the `regex-scrubbing` example does.
pub fn bare_regex_scrub(values: &[Vec<u8>]) -> usize {
    bare_regex_scrub_values(values).len()
}

/// [`bare_regex_scrub`]'s outputs, for a chain's next step.
pub fn bare_regex_scrub_values(values: &[Vec<u8>]) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|value| SSN.replace_all(std::str::from_utf8(value).unwrap(), "***-**-****").into_owned().into_bytes())
        .collect()
}

thread_local! {
    /// The count loops' accumulator: the count so far, as text. It goes on
    /// from batch to batch and from pass to pass, as a module's accumulator
    /// does, so that the loops format and parse numbers as long as the
    /// module's (seven to nine digits in a benchmark run, where counting
    /// each batch from zero would keep them to four).
    static COUNT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Starts the count loops' accumulator again from none, as a module set up
/// without one starts.
pub fn reset_count() {
    COUNT.with(|count| count.borrow_mut().clear());
}

/// The count that follows the accumulator `last`, as text.
fn count_after(last: &[u8]) -> Vec<u8> {
    let count: u64 = if last.is_empty() { 0 } else { std::str::from_utf8(last).unwrap().parse().unwrap() };
    (count + 1).to_string().into_bytes()
}

/// Counts values, as the `bench-count` module does: the count kept as
/// text, as the module keeps its accumulator, and every accumulator an
/// output, since an aggregate answers each record with the value so far.
pub fn bare_count(values: &[Vec<u8>]) -> usize {
    let mut outputs: Vec<Vec<u8>> = Vec::with_capacity(values.len());
    let before = COUNT.take();
    for _ in values {
        let next = count_after(outputs.last().unwrap_or(&before));
        outputs.push(next);
    }
    COUNT.set(outputs.last().cloned().unwrap_or(before));
    outputs.len()
}

/// A plain loop over one batch that writes an output batch: the same
/// function as a bare loop, with the batch format in and out and nothing
/// else (no sandbox, no guest glue, no output area). The distance from a
/// bare loop to this one is what the batch format costs on its own.
pub type BatchLoop = fn(&Batch) -> Batch;

/// Calls `each` with every record's view and value, and seals what it
/// wrote after the input's header into an output batch that counts the
/// records `each` answered `true` for.
fn batch_loop(batch: &Batch, mut each: impl FnMut(&[u8], &abi::RecordView<'_>, &[u8], &mut Vec<u8>) -> bool) -> Batch {
    let bytes = batch.as_bytes();
    let index = RecordIndex::new(bytes).expect("the benchmark's batches are well formed");
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..abi::BATCH_HEADER_LEN]);
    let mut count = 0;
    for i in 0..index.len() {
        let view = index.view(bytes, i).expect("the benchmark's records are well formed");
        let value = &bytes[view.value.0..view.value.0 + view.value.1];
        if each(bytes, &view, value, &mut out) {
            count += 1;
        }
    }
    let header = index.header();
    write_batch_header(&mut out, header.base_offset, count, header.base_timestamp);
    Batch::seal_host_written(out)
}

/// Writes `value` as the output of the record `view`: its offset,
/// timestamp, key and headers kept.
fn write_output(bytes: &[u8], view: &abi::RecordView<'_>, value: &[u8], out: &mut Vec<u8>) {
    let key = view.key.map(|(start, len)| &bytes[start..start + len]);
    let headers = &bytes[view.headers.0..view.headers.0 + view.headers.1];
    encode_record(out, view.offset_delta, view.timestamp_delta, key, value, view.header_count, headers);
}

/// [`bare_filter`] over a batch: kept records are copied whole.
pub fn batch_filter(batch: &Batch) -> Batch {
    batch_loop(batch, |_, view, value, out| {
        let keep = value.contains(&b'#');
        if keep {
            out.extend_from_slice(view.bytes);
        }
        keep
    })
}

/// [`bare_uppercase`] over a batch.
pub fn batch_uppercase(batch: &Batch) -> Batch {
    batch_loop(batch, |bytes, view, value, out| {
        write_output(bytes, view, &value.to_ascii_uppercase(), out);
        true
    })
}

/// [`bare_regex_scrub`] over a batch.
pub fn batch_regex_scrub(batch: &Batch) -> Batch {
    batch_loop(batch, |bytes, view, value, out| {
        let scrubbed = SSN.replace_all(std::str::from_utf8(value).unwrap(), "***-**-****");
        write_output(bytes, view, scrubbed.as_bytes(), out);
        true
    })
}

/// [`bare_count`] over a batch: every record's output is the count so far.
pub fn batch_count(batch: &Batch) -> Batch {
    let mut accumulator = COUNT.take();
    let output = batch_loop(batch, |bytes, view, _, out| {
        accumulator = count_after(&accumulator);
        write_output(bytes, view, &accumulator, out);
        true
    });
    COUNT.set(accumulator);
    output
}
