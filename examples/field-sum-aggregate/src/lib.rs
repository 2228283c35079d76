//! An aggregate SmartModule over JSON records: keeps a running sum of the
//! integer at the JSON pointer given as the `field` parameter (default
//! `/v`). Run in a window (`--window tumbling=1m,key=/k,time=/ts`), it
//! becomes "the sum of v per k per minute" without a line about windows.

use std::sync::OnceLock;

use fluvio_smartmodule::{Record, RecordData, Result, SmartModuleExtraParams, smartmodule};

static FIELD: OnceLock<String> = OnceLock::new();

/// Reads the `field` parameter once.
#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    let field = params.get("field").cloned().unwrap_or_else(|| "/v".to_string());
    if !field.starts_with('/') {
        return Err(fluvio_smartmodule::eyre!("field {field:?} is not a JSON pointer (write it like /v)"));
    }
    let _ = FIELD.set(field);
    Ok(())
}

/// Adds the record's field to the accumulator.
#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let sum: i64 = if accumulator.is_empty() { 0 } else { std::str::from_utf8(&accumulator)?.parse()? };
    let value: serde_json::Value = serde_json::from_slice(record.value.as_ref())?;
    let field = FIELD.get().map_or("/v", String::as_str);
    let Some(number) = value.pointer(field).and_then(serde_json::Value::as_i64) else {
        return Err(fluvio_smartmodule::eyre!("the record has no integer at {field}"));
    };
    Ok((sum + number).to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_field() {
        let acc = aggregate(RecordData::default(), &Record::new(r#"{"k":"a","v":5}"#)).unwrap();
        let acc = aggregate(acc, &Record::new(r#"{"k":"a","v":7}"#)).unwrap();
        assert_eq!(acc.as_ref(), b"12");
        assert!(aggregate(acc, &Record::new(r#"{"k":"a"}"#)).is_err());
    }
}
