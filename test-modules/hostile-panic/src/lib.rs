//! A map that panics on records whose value contains `panic` and passes
//! every other record through unchanged.
use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    if value.contains("panic") {
        panic!("refusing record {value:?}");
    }
    Ok((record.key.clone(), record.value.clone()))
}
