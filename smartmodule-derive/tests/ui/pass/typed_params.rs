// Fluvio's typed parameters: `#[derive(SmartOpt)]` and
// `#[smartmodule(kind, params)]`, here on an aggregate, with the root
// `Offset` Fluvio modules import.
use fluvio_smartmodule::{Offset, Record, RecordData, Result, SmartModuleExtraParams, SmartOpt, smartmodule};

#[derive(Default, SmartOpt)]
pub struct SumOpt {
    start: i64,
    step: Option<i64>,
}

#[smartmodule(aggregate, params)]
pub fn aggregate(accumulator: RecordData, record: &Record, opt: &SumOpt) -> Result<RecordData> {
    let sum: i64 = if accumulator.is_empty() { opt.start } else { accumulator.as_str()?.parse()? };
    let value: i64 = record.value.as_str()?.parse()?;
    Ok((sum + value * opt.step.unwrap_or(1)).to_string().into())
}

fn main() {
    let mut params = SmartModuleExtraParams::default();
    params.insert("start", "10");
    let opt = SumOpt::try_from(params).unwrap();
    let first: Offset = 0;
    let sum = aggregate(RecordData::default(), &Record::new("5").with_offset(first), &opt).unwrap();
    assert_eq!(sum.as_str().unwrap(), "15");
}
