//! A well-behaved map that works the module's allocator hard: per record it
//! grows a vector one byte at a time (a reallocation into every small size
//! class and past the largest), keeps copies of every prefix of the value
//! alive at once and frees them out of order, asks for zeroed memory, and
//! shrinks a copy in place. It checks every block's contents before it
//! answers, so a block handed out twice or copied short fails the record;
//! its output, the lengths it saw and the grown and shrunk copies, lets the
//! host check the same from outside.

use fluvio_smartmodule::{Record, RecordData, Result, ensure, smartmodule};

/// Every prefix of a value this many bytes apart is copied and kept.
const PREFIX_STEP: usize = 7;

/// Returns `LEN:PIECES:` followed by the value grown byte by byte and its
/// first half shrunk to fit, after checking every allocation on the way.
/// A value `phases:N` instead holds N MiB in 64-byte blocks, frees them,
/// then holds N MiB in one block, and answers `phases:done`.
#[smartmodule(map)]
pub fn map(record: &Record) -> Result<(Option<RecordData>, RecordData)> {
    let value = record.value.as_ref();
    if let Some(mebibytes) = value.strip_prefix(b"phases:") {
        let mebibytes: usize = std::str::from_utf8(mebibytes)?.parse()?;
        let small: Vec<Box<[u8; 64]>> = (0..mebibytes << 14).map(|_| Box::new([1u8; 64])).collect();
        ensure!(small.iter().all(|block| block[63] == 1), "a small block was overwritten");
        drop(small);
        let large = vec![2u8; mebibytes << 20];
        ensure!(large[large.len() - 1] == 2, "the large block was overwritten");
        return Ok((None, RecordData::from("phases:done")));
    }
    let mut grown = Vec::new();
    for &byte in value {
        grown.push(byte);
    }
    let mut prefixes: Vec<Vec<u8>> = (0..=value.len()).step_by(PREFIX_STEP).map(|n| value[..n].to_vec()).collect();
    let zeroed = vec![0u8; value.len()];
    // Free every other prefix first, then check the ones still held.
    let mut kept = Vec::new();
    for (i, prefix) in prefixes.drain(..).enumerate() {
        if i % 2 == 1 {
            kept.push((i * PREFIX_STEP, prefix));
        }
    }
    // Blocks freed above come back here, for other prefixes.
    let again: Vec<Vec<u8>> = (0..=value.len()).step_by(PREFIX_STEP * 2).map(|n| value[..n].to_vec()).collect();
    let mut shrunk = grown.clone();
    shrunk.truncate(value.len() / 2);
    shrunk.shrink_to_fit();
    ensure!(grown == value, "the grown copy differs from the value");
    ensure!(zeroed.iter().all(|&byte| byte == 0), "zeroed memory holds data");
    for (len, prefix) in kept.iter().rev() {
        ensure!(prefix.as_slice() == &value[..*len], "a prefix of {len} bytes was overwritten");
    }
    for (i, prefix) in again.iter().enumerate() {
        ensure!(prefix.as_slice() == &value[..i * PREFIX_STEP * 2], "a reused block holds the wrong bytes");
    }
    let pieces = kept.len() + again.len();
    let mut out = format!("{}:{pieces}:", value.len()).into_bytes();
    out.extend_from_slice(&grown);
    out.extend_from_slice(&shrunk);
    Ok((record.key.clone(), out.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_lengths_then_grown_and_shrunk_copies() {
        let (_, out) = map(&Record::new("abcdefghijklmno")).unwrap();
        // Prefixes of 0, 7 and 14 bytes: 7 is kept; 0 and 14 again.
        assert_eq!(out.as_ref(), b"15:3:abcdefghijklmnoabcdefg");
    }
}
