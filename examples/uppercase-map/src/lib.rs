//! A map SmartModule: upper-cases the ASCII letters of each value and keeps
//! the key unchanged.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

/// Returns the record with its value upper-cased.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let upper = record.value.as_ref().to_ascii_uppercase();
    Ok((record.key.clone(), upper.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_value_and_keeps_key() {
        let (key, value) = map(&Record::new_key_value("k", "Hello, World")).unwrap();
        assert_eq!(key.unwrap().as_ref(), b"k");
        assert_eq!(value.as_ref(), b"HELLO, WORLD");
    }
}
