//! A filter SmartModule for sensor readings such as
//! `{"sensor": "greenhouse-1", "celsius": 21.5}`: keeps readings whose
//! temperature is between -50 and 60 °C and drops the rest (a sensor fault,
//! or a message that is not a reading). The connectors demo runs it in an
//! MQTT source, so bad readings are dropped before they are sent.

use fluvio_smartmodule::{Record, Result, smartmodule};

/// Keeps a reading with a plausible `celsius`.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let Ok(reading) = serde_json::from_slice::<serde_json::Value>(record.value.as_ref()) else { return Ok(false) };
    Ok(reading["celsius"].as_f64().is_some_and(|celsius| (-50.0..=60.0).contains(&celsius)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plausible_readings_only() {
        assert!(filter(&Record::new(r#"{"sensor":"a","celsius":21.5}"#)).unwrap());
        assert!(!filter(&Record::new(r#"{"sensor":"a","celsius":999}"#)).unwrap());
        assert!(!filter(&Record::new(r#"{"sensor":"a"}"#)).unwrap());
        assert!(!filter(&Record::new("garbage")).unwrap());
    }
}
