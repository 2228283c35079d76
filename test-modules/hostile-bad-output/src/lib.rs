//! A map whose output lies to the host. It uses the library's reserve and
//! setup exports but writes its own process export. The first record's value
//! picks the lie:
//! - `bad-pointer`: an output location outside guest memory;
//! - `bad-range`: an entry that points at input bytes past the batch;
//! - `bad-index`: an entry for a record index the batch does not have;
//! - `bad-length`: an inline value whose length runs past the output area;
//! - `repeat-record`: two outputs for the first record, which a map may not
//!   give;
//! - `go-back`: an output for the second record, then one for the first;
//! - `amplify`: an output for every record, each the whole input batch, so
//!   a few bytes of entries ask the host for (records × batch) bytes;
//! - anything else: an honest empty output.

use fluvio_smartmodule::abi;

fn record_count(input_len: i32) -> u32 {
    let ptr = fluvio_smartmodule::__private::reserve(0);
    let batch = unsafe { std::slice::from_raw_parts(ptr, input_len as usize) };
    abi::RecordIter::new(batch).map_or(0, |(_, records)| records.count() as u32)
}

fn first_value(input_len: i32) -> Vec<u8> {
    let ptr = fluvio_smartmodule::__private::reserve(0);
    let batch = unsafe { std::slice::from_raw_parts(ptr, input_len as usize) };
    match abi::RecordIter::new(batch) {
        Ok((_, mut records)) => match records.next() {
            Some(Ok(record)) => batch[record.value.0..record.value.0 + record.value.1].to_vec(),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_map(input_len: i32, _flags: i32) -> i64 {
    let lie = first_value(input_len);
    let mut out = Vec::new();
    let mut entries = 0u32;
    match lie.as_slice() {
        b"bad-pointer" => return abi::pack_location(0xFFFF_0000, 4096) as i64,
        b"bad-range" => {
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INPUT_RANGE, 0, 0]);
            out.extend_from_slice(&(1u32 << 30).to_le_bytes());
            out.extend_from_slice(&64u32.to_le_bytes());
            entries = 1;
        }
        b"bad-index" => {
            out.extend_from_slice(&999_999u32.to_le_bytes());
            out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INLINE, 0, 0]);
            out.extend_from_slice(&1u32.to_le_bytes());
            out.push(b'x');
            entries = 1;
        }
        b"bad-length" => {
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INLINE, 0, 0]);
            out.extend_from_slice(&u32::MAX.to_le_bytes());
            entries = 1;
        }
        b"repeat-record" => {
            for _ in 0..2 {
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INLINE, 0, 0]);
                out.extend_from_slice(&1u32.to_le_bytes());
                out.push(b'x');
            }
            entries = 2;
        }
        b"go-back" => {
            for index in [1u32, 0] {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INLINE, 0, 0]);
                out.extend_from_slice(&1u32.to_le_bytes());
                out.push(b'x');
            }
            entries = 2;
        }
        b"amplify" => {
            entries = record_count(input_len);
            for index in 0..entries {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INPUT_RANGE, 0, 0]);
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&(input_len as u32).to_le_bytes());
            }
        }
        _ => {}
    }
    let mut header = Vec::new();
    let next = fluvio_smartmodule::__private::reserve(0) as usize as u32;
    for word in [abi::STATUS_OK, next, 0, entries, 0, out.len() as u32] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    header.extend_from_slice(&out);
    // Leaked: the host reads it after the call returns, and a hostile
    // module need not tidy up.
    let output = header.leak();
    abi::pack_location(output.as_ptr() as usize as u32, output.len() as u32) as i64
}
