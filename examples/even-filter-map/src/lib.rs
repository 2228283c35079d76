//! A filter-map SmartModule: keeps records whose value is an even integer and
//! replaces the value with half of it. Values that are not integers are errors.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

/// `"4"` becomes `"2"`, `"3"` is dropped, `"x"` is an error.
#[smartmodule(filter_map)]
pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let number: i64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    if number % 2 == 0 { Ok(Some((record.key.clone(), (number / 2).to_string().into()))) } else { Ok(None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_even_drops_odd() {
        assert_eq!(filter_map(&Record::new("10")).unwrap().unwrap().1.as_ref(), b"5");
        assert!(filter_map(&Record::new("7")).unwrap().is_none());
        assert!(filter_map(&Record::new("seven")).is_err());
    }
}
