use fluvio_smartmodule::{smartmodule, Record, RecordData, Result};

#[smartmodule(aggregate)]
pub fn aggregate(record: &Record) -> Result<RecordData> {
    Ok(record.value.clone())
}

fn main() {}
