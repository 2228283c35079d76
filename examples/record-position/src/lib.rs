//! A map SmartModule that takes `&SmartModuleRecord` to read each record's
//! offset and timestamp, and writes them in front of the value:
//! `offset:timestamp:value`.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, smartmodule};

/// Prefixes the value with `offset:timestamp:`.
#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let value = format!("{}:{}:{}", record.offset(), record.timestamp(), record.value.as_utf8_lossy_string());
    Ok((record.key.clone(), value.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_smartmodule::Record;

    #[test]
    fn prefixes_position() {
        // Built as Fluvio builds one: a batch's base offset and timestamp
        // plus the record's own.
        let record = SmartModuleRecord::new(Record::new("x").with_offset(2).with_timestamp(100), 5, 900);
        assert_eq!(map(&record).unwrap().1.as_ref(), b"7:1000:x");
    }
}
