//! A filter SmartModule: keeps the records whose value contains the letter `a`.

use fluvio_smartmodule::{Record, Result, smartmodule};

/// Keeps a record when its value, read as UTF-8, contains `a`.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let string = std::str::from_utf8(record.value.as_ref())?;
    Ok(string.contains('a'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_values_with_an_a() {
        assert!(filter(&Record::new("banana")).unwrap());
        assert!(!filter(&Record::new("cherry")).unwrap());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let error = filter(&Record::new(vec![0xff, 0xfe])).unwrap_err();
        assert!(error.downcast_ref::<std::str::Utf8Error>().is_some(), "{error:?}");
    }
}
