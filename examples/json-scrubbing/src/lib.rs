//! A map SmartModule that parses each record as a JSON object and deletes
//! its `social_security_number` field: the alternative the walkthrough
//! mentions to scrubbing with a regex. Records that are not JSON objects are
//! errors, so the stream's error policy decides what happens to them.

use fluvio_smartmodule::{Record, RecordData, Result, eyre, smartmodule};

/// Removes `social_security_number` from a JSON object.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let mut value: serde_json::Value = serde_json::from_slice(record.value.as_ref())?;
    let object =
        value.as_object_mut().ok_or_else(|| eyre!("record at offset {} is not a JSON object", record.offset()))?;
    if object.remove("social_security_number").is_none() {
        // Nothing to scrub: pass the record through untouched (and uncopied).
        return Ok((record.key.clone(), record.value.clone()));
    }
    Ok((record.key.clone(), serde_json::to_vec(&value)?.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_the_field_and_keeps_the_rest() {
        let input = r#"{"social_security_number":"123-45-6789","first_name":"Daniel"}"#;
        let (_, value) = map(&Record::new(input)).unwrap();
        assert_eq!(value.to_string(), r#"{"first_name":"Daniel"}"#);
    }

    #[test]
    fn non_objects_are_errors() {
        assert!(map(&Record::new("[1,2]")).unwrap_err().to_string().contains("not a JSON object"));
        assert!(map(&Record::new("nope")).is_err());
    }
}
