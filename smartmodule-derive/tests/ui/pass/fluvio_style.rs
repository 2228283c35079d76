// A module written as Fluvio's `fluvio-smartmodule` documents them: its
// paths, eyre's macros and traits, look_back, init errors, and the record
// constructors its unit tests use.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::core::Offset;
use fluvio_smartmodule::dataplane::record::Record as DataplaneRecord;
use fluvio_smartmodule::dataplane::smartmodule::{SmartModuleExtraParams, SmartModuleInitError};
use fluvio_smartmodule::eyre::{ContextCompat, WrapErr};
use fluvio_smartmodule::{bail, ensure, eyre, smartmodule, Record, RecordData, Result, SmartModuleRecord};

static LIMIT: OnceLock<i64> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let Some(limit) = params.get("limit") else {
        return Err(SmartModuleInitError::MissingParam("limit".to_string()).into());
    };
    let limit: i64 = limit.parse().wrap_err("limit must be a number")?;
    let _ = LIMIT.set(limit);
    Ok(())
}

#[smartmodule(look_back)]
fn look_back(record: &SmartModuleRecord) -> Result<()> {
    let offset: Offset = record.offset();
    ensure!(offset >= 0, "negative offset");
    let first = record.value.first().context("an empty stored record")?;
    ensure!(*first != b'-', "a negative stored value");
    Ok(())
}

#[allow(dead_code)]
fn same_record(record: &DataplaneRecord) -> &Record {
    record
}

#[smartmodule(map)]
fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let text = record.value.as_str()?;
    let n: i64 = text.trim().parse().wrap_err_with(|| format!("{text:?} is not a number"))?;
    if n > *LIMIT.get().ok_or_else(|| eyre!("init did not run"))? {
        bail!("{n} is over the limit");
    }
    Ok((record.key.clone(), RecordData::from(format!("{}", n * 2))))
}

fn main() {
    let params = SmartModuleExtraParams::new(BTreeMap::from([("limit".to_string(), "10".to_string())]), None);
    assert!(params.lookback().is_none());
    init(params).unwrap();
    let mut record = SmartModuleRecord::new(Record::new("4"), 100, 1_700_000_000_000);
    assert_eq!(record.offset(), 100);
    look_back(&record).unwrap();
    let empty = SmartModuleRecord::new(Record::new(""), 0, 0);
    assert_eq!(look_back(&empty).unwrap_err().to_string(), "an empty stored record");
    assert_eq!(map(&record).unwrap().1.as_str().unwrap(), "8");
    record.value = RecordData::from("40");
    let error = map(&record).unwrap_err();
    assert_eq!(error.to_string(), "40 is over the limit");
    record.value = RecordData::from(b"x".to_vec());
    let error = map(&record).unwrap_err();
    assert!(error.root_cause().is::<std::num::ParseIntError>());
    let missing = init(SmartModuleExtraParams::default()).unwrap_err();
    assert!(missing.downcast_ref::<SmartModuleInitError>().is_some());
}
