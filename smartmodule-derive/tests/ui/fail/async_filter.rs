use fluvio_smartmodule::{smartmodule, Record, Result};

#[smartmodule(filter)]
pub async fn filter(record: &Record) -> Result<bool> {
    Ok(record.value.is_empty())
}

fn main() {}
