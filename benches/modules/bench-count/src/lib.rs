//! Benchmark aggregate: counts records; the accumulator is the count in decimal.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

/// Adds one to the count.
#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, _record: &Record) -> Result<RecordData> {
    let count: u64 = if accumulator.is_empty() { 0 } else { std::str::from_utf8(&accumulator)?.parse()? };
    Ok((count + 1).to_string().into())
}
