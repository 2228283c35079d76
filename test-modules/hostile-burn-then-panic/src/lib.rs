//! A map that spends most of a CPU budget on each record, then panics on
//! it: the host retries the batch without that record, and must not grant
//! a fresh budget each time.
use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let rounds: u64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    let mut spins = 0u64;
    for _ in 0..rounds {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    panic!("spun {spins} rounds, now refusing the record");
}
