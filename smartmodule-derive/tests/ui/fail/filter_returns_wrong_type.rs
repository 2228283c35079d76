use fluvio_smartmodule::{smartmodule, Record, Result};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<i32> {
    Ok(record.value.len() as i32)
}

fn main() {}
