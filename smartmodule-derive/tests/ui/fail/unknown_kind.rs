use fluvio_smartmodule::{smartmodule, Record, Result};

#[smartmodule(filtermap)]
pub fn filter(record: &Record) -> Result<bool> {
    Ok(record.value.is_empty())
}

fn main() {}
