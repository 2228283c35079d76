//! A map SmartModule that turns a sensor reading,
//! `{"sensor": "greenhouse-1", "celsius": 21.5}`, into Fluvio's SQL model:
//! an `Insert` into the table given by the `table` parameter (default
//! `readings`), columns `sensor TEXT` and `celsius DOUBLE PRECISION`. The
//! sql-sink writes what it emits; a sink runs it on the server.

use std::sync::OnceLock;

use fluvio_smartmodule::{Record, RecordData, Result, SmartModuleExtraParams, eyre, smartmodule};

static TABLE: OnceLock<String> = OnceLock::new();

/// Reads the optional `table` parameter.
#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    let table = params.get("table").cloned().unwrap_or_else(|| "readings".to_string());
    // Each instance has its own memory, so this runs once per instance.
    let _ = TABLE.set(table);
    Ok(())
}

/// One reading becomes one SQL model `Insert`.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let reading: serde_json::Value = serde_json::from_slice(record.value.as_ref())?;
    let sensor = reading["sensor"].as_str().ok_or_else(|| eyre!("the reading has no \"sensor\""))?;
    let celsius = reading["celsius"].as_f64().ok_or_else(|| eyre!("the reading has no numeric \"celsius\""))?;
    let table = TABLE.get().map_or("readings", String::as_str);
    let model = serde_json::json!({ "Insert": { "table": table, "values": [
        { "column": "sensor", "raw_value": sensor, "type": "Text" },
        { "column": "celsius", "raw_value": celsius.to_string(), "type": "DoublePrecision" },
    ]}});
    Ok((record.key.clone(), model.to_string().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_becomes_an_insert() {
        let (_, value) = map(&Record::new(r#"{"sensor":"g1","celsius":21.5}"#)).unwrap();
        let model: serde_json::Value = serde_json::from_slice(value.as_ref()).unwrap();
        assert_eq!(model["Insert"]["table"], "readings");
        assert_eq!(model["Insert"]["values"][1]["raw_value"], "21.5");
        assert!(map(&Record::new(r#"{"celsius":1}"#)).is_err());
    }
}
