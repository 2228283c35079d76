//! A well-behaved map that works the glue's placement of a map's value in
//! its output area (the guest crate writes a new value's first allocation
//! where the output record's value goes, and takes it as the value when it
//! comes back as one). A value's first word, up to a `:`, says what the
//! record's first allocation becomes:
//!
//! - `upper`: the value, upper-cased (placed and taken);
//! - `keep`: a block the module keeps for good, and checks on every later
//!   record, so that an output record written over it fails the record;
//! - `key`: a new key, allocated before the value;
//! - `grow`: the value, grown a byte at a time far past the room offered;
//! - `shrink`: the value, made longer and then shrunk to fit;
//! - `spare`: the value, with capacity to spare;
//! - `scratch`: a block freed before the value is made;
//! - `fail`: the message of the error the record fails with;
//! - `keep-fail`: a block kept for good, by a record that then fails.
//!
//! `expected` gives the answer the host must see for each value.

use fluvio_smartmodule::{Record, RecordData, Result, smartmodule};
use kept_blocks::split;

/// How far `grow` grows its value: far past any room the glue offers
/// for a short record.
pub const GROWN_LEN: usize = 40_000;

/// Answers as `expected` says, after checking that every block kept so far
/// holds what it held.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    kept_blocks::check()?;
    let value = record.value.as_ref();
    let (mode, rest) = split(value);
    let key = record.key.clone();
    let answer = match mode {
        b"keep" => {
            let block = rest.to_vec();
            let upper = value.to_ascii_uppercase();
            kept_blocks::keep(block);
            (key, upper)
        }
        b"key" => {
            let new_key = format!("key-of-{}", rest.len()).into_bytes();
            (Some(new_key.into()), value.to_ascii_uppercase())
        }
        b"grow" => {
            let mut grown = Vec::new();
            for n in 0..GROWN_LEN {
                grown.push(grown_byte(rest, n));
            }
            (key, grown)
        }
        b"shrink" => {
            let mut longer = value.to_ascii_uppercase();
            longer.extend_from_slice(&[b'!'; 300]);
            longer.truncate(value.len());
            longer.shrink_to_fit();
            (key, longer)
        }
        b"spare" => {
            let mut spare = Vec::with_capacity(value.len() + 8);
            spare.extend(value.iter().map(u8::to_ascii_uppercase));
            (key, spare)
        }
        b"scratch" => {
            let scratch = rest.to_vec();
            drop(scratch);
            (key, value.to_ascii_uppercase())
        }
        b"keep-fail" => {
            kept_blocks::keep(rest.to_vec());
            return Err(fluvio_smartmodule::eyre!("kept a block and failed"));
        }
        b"fail" => {
            let message = format!("refused {} bytes", rest.len());
            return Err(fluvio_smartmodule::eyre!(message));
        }
        _ => (key, value.to_ascii_uppercase()),
    };
    Ok((answer.0, answer.1.into()))
}

/// Byte `n` of a `grow` record's value: its bytes over and over, or dots
/// for one with none.
fn grown_byte(rest: &[u8], n: usize) -> u8 {
    rest.get(n % rest.len().max(1)).copied().unwrap_or(b'.')
}

/// The key and value `map` answers for a record with `key` and `value`,
/// or `None` for one it fails.
pub fn expected(key: Option<&[u8]>, value: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let (mode, rest) = split(value);
    let key = key.map(<[u8]>::to_vec);
    match mode {
        b"fail" | b"keep-fail" => None,
        b"key" => Some((Some(format!("key-of-{}", rest.len()).into_bytes()), value.to_ascii_uppercase())),
        b"grow" => Some((key, (0..GROWN_LEN).map(|n| grown_byte(rest, n)).collect())),
        _ => Some((key, value.to_ascii_uppercase())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_answers_as_expected_says() {
        for value in ["upper:a", "keep:bc", "key:xyz", "grow:ab", "shrink:q", "spare:w", "scratch:e", "plain"] {
            let record = Record::new_key_value("k", value);
            let (key, answer) = map(&record).unwrap();
            let (expected_key, expected_value) = expected(Some(b"k"), value.as_bytes()).unwrap();
            assert_eq!(key.map(|key| key.as_ref().to_vec()), expected_key, "{value}");
            assert_eq!(answer.as_ref(), expected_value.as_slice(), "{value}");
        }
        assert!(map(&Record::new("fail:abc")).is_err());
        assert!(map(&Record::new("keep-fail:abc")).is_err());
        assert_eq!(expected(None, b"fail:abc"), None);
    }
}
