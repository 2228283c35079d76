use fluvio_smartmodule::{smartmodule, Record, RecordData, Result, SmartModuleExtraParams, SmartModuleRecord};

#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    Ok(!record.value.is_empty())
}

mod map {
    use super::*;
    #[smartmodule(map)]
    pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
        Ok((record.key.clone(), record.offset().to_string().into()))
    }
}

mod filter_map {
    use super::*;
    #[smartmodule(filter_map)]
    pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
        Ok(Some((None, record.value.clone())))
    }
}

mod array_map {
    use super::*;
    #[smartmodule(array_map)]
    pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
        Ok(vec![(None, record.value.clone())])
    }
}

mod aggregate {
    use super::*;
    #[smartmodule(aggregate)]
    pub fn aggregate(accumulator: RecordData, record: &SmartModuleRecord) -> Result<RecordData> {
        let mut bytes = accumulator.into_vec();
        bytes.extend_from_slice(record.value.as_ref());
        Ok(bytes.into())
    }
}

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    params.require("x")?;
    Ok(())
}

fn main() {
    // The functions stay callable natively.
    assert!(filter(&Record::new("a")).unwrap());
    assert!(init(SmartModuleExtraParams::default()).is_err());
}
