//! An aggregate SmartModule: keeps a running sum of integer values. Each
//! output record carries the sum so far. The initial accumulator, if given,
//! is the starting sum; an empty accumulator counts as zero.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};

/// Adds the record's integer value to the accumulator.
#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let sum: i64 = if accumulator.is_empty() { 0 } else { std::str::from_utf8(&accumulator)?.trim().parse()? };
    let value: i64 = std::str::from_utf8(record.value.as_ref())?.trim().parse()?;
    Ok((sum + value).to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums() {
        let acc = aggregate(RecordData::default(), &Record::new("5")).unwrap();
        let acc = aggregate(acc, &Record::new("7")).unwrap();
        assert_eq!(acc.as_ref(), b"12");
    }
}
