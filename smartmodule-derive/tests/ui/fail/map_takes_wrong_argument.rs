use fluvio_smartmodule::{smartmodule, RecordData, Result};

#[smartmodule(map)]
pub fn map(value: String) -> Result<(Option<RecordData>, RecordData)> {
    Ok((None, value.into()))
}

fn main() {}
