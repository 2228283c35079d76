//! A well-behaved filter-map that works the guest crate's placement of a
//! new value in the output area (see `value-placement`, its map twin) on
//! the filter-map's own path: records it leaves out. A value's first word,
//! up to a `:`, says what the record's first allocation becomes:
//!
//! - `drop`: a block freed, and the record left out;
//! - `keep-drop`: a block kept for good, and the record left out;
//! - `keep`: a block kept for good, and the value upper-cased;
//! - anything else: the value, upper-cased (placed and taken).
//!
//! Every record first checks the blocks kept so far, so that an output
//! record written over one fails the record. [`expected`] gives the answer
//! the host must see.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};
use kept_blocks::split;

/// Answers as [`expected`] says, after checking the kept blocks.
#[smartmodule(filter_map)]
pub fn filter_map(record: &Record) -> Result<Option<(Option<RecordData>, RecordData)>> {
    kept_blocks::check()?;
    let value = record.value.as_ref();
    let (mode, rest) = split(value);
    match mode {
        b"drop" => {
            drop(rest.to_vec());
            return Ok(None);
        }
        b"keep-drop" => {
            kept_blocks::keep(rest.to_vec());
            return Ok(None);
        }
        b"keep" => kept_blocks::keep(rest.to_vec()),
        _ => {}
    }
    Ok(Some((record.key.clone(), value.to_ascii_uppercase().into())))
}

/// The key and value `filter_map` answers for a record with `key` and
/// `value`, or `None` for one it leaves out.
pub fn expected(key: Option<&[u8]>, value: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    match split(value).0 {
        b"drop" | b"keep-drop" => None,
        _ => Some((key.map(<[u8]>::to_vec), value.to_ascii_uppercase())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_answers_as_expected_says() {
        for value in ["drop:ab", "keep-drop:cd", "keep:ef", "upper:gh", "plain"] {
            let answer = filter_map(&Record::new_key_value("k", value)).unwrap();
            let answer = answer.map(|(key, value)| (key.map(|key| key.as_ref().to_vec()), value.as_ref().to_vec()));
            assert_eq!(answer, expected(Some(b"k"), value.as_bytes()), "{value}");
        }
    }
}
