//! A map whose output lies to the host. It uses the library's reserve and
//! setup exports but writes its own process export, in the answer layout
//! setup agreed. The first record's value picks the lie; in layout 1:
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
//!
//! In layout 2 (records in the batch layout, or references to input
//! records):
//! - `bad-pointer`: as in layout 1;
//! - `bad-range`: a record at an offset delta no input record has;
//! - `bad-index`: a reference to a record the batch does not have;
//! - `bad-length`: a record whose length runs past the output area;
//! - `repeat-record`: two references to the first record;
//! - `go-back`: a reference to the second record, then to the first;
//! - `retime`: the first record with another timestamp;
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

/// A record of the batch layout without key or headers, with value `x`, at
/// `offset_delta` and stamped `timestamp_delta`.
fn record_for_first(out: &mut Vec<u8>, offset_delta: u32, timestamp_delta: i64) {
    abi::encode_record(out, offset_delta, timestamp_delta, None, b"x", 0, &[]);
}

/// The lies of layout 2, as (entries, entry count).
fn layout_2_lie(lie: &[u8]) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    let reference = |index: u32| (abi::RECORD_REFERENCE | index).to_le_bytes();
    let entries = match lie {
        b"bad-range" => {
            record_for_first(&mut out, 1 << 30, 0);
            1
        }
        b"bad-index" => {
            out.extend_from_slice(&reference(999_999));
            1
        }
        b"bad-length" => {
            out.extend_from_slice(&(i32::MAX as u32).to_le_bytes());
            1
        }
        b"repeat-record" => {
            out.extend_from_slice(&reference(0));
            out.extend_from_slice(&reference(0));
            2
        }
        b"go-back" => {
            out.extend_from_slice(&reference(1));
            out.extend_from_slice(&reference(0));
            2
        }
        b"retime" => {
            record_for_first(&mut out, 0, 12_345);
            1
        }
        _ => 0,
    };
    (out, entries)
}

#[unsafe(no_mangle)]
pub extern "C" fn fluvio_map(input_len: i32, _flags: i32) -> i64 {
    let lie = first_value(input_len);
    let mut out = Vec::new();
    let mut entries = 0u32;
    let layout = fluvio_smartmodule::__private::answer_layout();
    if lie == b"bad-pointer" {
        return abi::pack_location(0xFFFF_0000, 4096) as i64;
    }
    if layout != abi::ANSWER_LAYOUT_1 {
        (out, entries) = layout_2_lie(&lie);
    } else {
        match lie.as_slice() {
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
