//! An array-map SmartModule: a record whose value is a JSON array becomes one
//! record per element, each element written back as compact JSON.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

/// `[1,"a",{"b":2}]` becomes three records: `1`, `"a"`, `{"b":2}`.
#[smartmodule(array_map)]
pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let elements: Vec<serde_json::Value> = serde_json::from_slice(record.value.as_ref())?;
    elements.into_iter().map(|element| Ok((record.key.clone(), serde_json::to_string(&element)?.into()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_an_array() {
        let out = array_map(&Record::new(r#"[1,"a",{"b":2}]"#)).unwrap();
        let values: Vec<_> = out.iter().map(|(_, v)| v.to_string()).collect();
        assert_eq!(values, ["1", "\"a\"", "{\"b\":2}"]);
    }

    #[test]
    fn an_object_is_an_error() {
        assert!(array_map(&Record::new("{}")).unwrap_err().downcast_ref::<serde_json::Error>().is_some());
    }
}
