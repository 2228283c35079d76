{% if smartmodule_params %}use std::sync::OnceLock;

{% endif %}{% if smartmodule_params %}use fluvio_smartmodule::dataplane::smartmodule::{SmartModuleExtraParams, SmartModuleInitError};
{% endif %}use fluvio_smartmodule::{smartmodule, Record, Result{% if smartmodule_type == "map" or smartmodule_type == "filter-map" or smartmodule_type == "array-map" or smartmodule_type == "aggregate" %}, RecordData{% endif %}};
{% if smartmodule_params %}
/// Set once by `init` from the `-e` parameters.
static NEEDLE: OnceLock<String> = OnceLock::new();

/// Reads the parameters before the first record: `-e contains=TEXT`.
#[smartmodule(init)]
pub fn init(params: SmartModuleExtraParams) -> Result<()> {
    let Some(needle) = params.get("contains") else {
        return Err(SmartModuleInitError::MissingParam("contains".to_string()).into());
    };
    let _ = NEEDLE.set(needle.clone());
    Ok(())
}

fn needle() -> &'static str {
    NEEDLE.get().map_or("a", String::as_str)
}
{% else %}
fn needle() -> &'static str {
    "a"
}
{% endif %}{% if smartmodule_type == "filter" %}
/// Keeps the records whose value contains the needle.
#[smartmodule(filter)]
pub fn filter(record: &Record) -> Result<bool> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value.contains(needle()))
}
{% elsif smartmodule_type == "map" %}
/// Upper-cases values that contain the needle; passes the others through.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    if value.contains(needle()) {
        Ok((record.key.clone(), value.to_uppercase().into()))
    } else {
        Ok((record.key.clone(), record.value.clone()))
    }
}
{% elsif smartmodule_type == "filter-map" %}
/// Keeps the records that contain the needle, upper-cased.
#[smartmodule(filter_map)]
pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    if value.contains(needle()) {
        Ok(Some((record.key.clone(), value.to_uppercase().into())))
    } else {
        Ok(None)
    }
}
{% elsif smartmodule_type == "array-map" %}
/// Splits each value into words and keeps the words that contain the needle.
#[smartmodule(array_map)]
pub fn array_map(record: &Record) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let value = std::str::from_utf8(record.value.as_ref())?;
    Ok(value
        .split_whitespace()
        .filter(|word| word.contains(needle()))
        .map(|word| (record.key.clone(), RecordData::from(word)))
        .collect())
}
{% elsif smartmodule_type == "aggregate" %}
/// Counts the records that contain the needle; the accumulator is the count.
#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, record: &Record) -> Result<RecordData> {
    let count: u64 = if accumulator.is_empty() { 0 } else { std::str::from_utf8(&accumulator)?.trim().parse()? };
    let value = std::str::from_utf8(record.value.as_ref())?;
    let count = if value.contains(needle()) { count + 1 } else { count };
    Ok(count.to_string().into())
}
{% endif %}
#[cfg(test)]
mod tests {
    use super::*;
{% if smartmodule_type == "filter" %}
    #[test]
    fn keeps_records_with_the_needle() {
        assert!(filter(&Record::new("banana")).unwrap());
        assert!(!filter(&Record::new("kiwi")).unwrap());
    }
{% elsif smartmodule_type == "map" %}
    #[test]
    fn upper_cases_records_with_the_needle() {
        assert_eq!(map(&Record::new("banana")).unwrap().1.as_ref(), b"BANANA");
        assert_eq!(map(&Record::new("kiwi")).unwrap().1.as_ref(), b"kiwi");
    }
{% elsif smartmodule_type == "filter-map" %}
    #[test]
    fn keeps_and_upper_cases() {
        assert_eq!(filter_map(&Record::new("banana")).unwrap().unwrap().1.as_ref(), b"BANANA");
        assert!(filter_map(&Record::new("kiwi")).unwrap().is_none());
    }
{% elsif smartmodule_type == "array-map" %}
    #[test]
    fn splits_into_matching_words() {
        let words: Vec<String> = array_map(&Record::new("a banana and a kiwi")).unwrap().into_iter().map(|(_, w)| w.to_string()).collect();
        assert_eq!(words, ["a", "banana", "and", "a"]);
    }
{% elsif smartmodule_type == "aggregate" %}
    #[test]
    fn counts_matching_records() {
        let count = aggregate(RecordData::default(), &Record::new("banana")).unwrap();
        let count = aggregate(count, &Record::new("kiwi")).unwrap();
        assert_eq!(count.as_ref(), b"1");
    }
{% endif %}}
