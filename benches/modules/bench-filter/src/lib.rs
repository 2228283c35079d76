//! Benchmark filter: keeps records whose value contains the byte `#`.

use fluvio_smartmodule::{Record, Result, smartmodule};

/// Keeps a record when its value contains `#`.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    Ok(record.value.contains(&b'#'))
}
