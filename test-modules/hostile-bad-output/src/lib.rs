//! A map whose output lies to the host. It uses the library's reserve and
//! setup exports but writes its own process export. The first record's value
//! picks the lie:
//! - `bad-pointer`: an output location outside guest memory;
//! - `bad-range`: an entry that points at input bytes past the batch;
//! - `bad-index`: an entry for a record index the batch does not have;
//! - `bad-length`: an inline value whose length runs past the output area;
//! - anything else: an honest empty output.

use fluvio_smartmodule::abi;

static mut OUTPUT: [u8; 256] = [0; 256];

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
        _ => {}
    }
    let mut header = Vec::new();
    let next = fluvio_smartmodule::__private::reserve(0) as usize as u32;
    for word in [abi::STATUS_OK, next, 0, entries, 0, out.len() as u32] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    header.extend_from_slice(&out);
    // SAFETY: the module is single-threaded and the host reads OUTPUT only
    // between calls.
    unsafe {
        let output = &mut *std::ptr::addr_of_mut!(OUTPUT);
        output[..header.len()].copy_from_slice(&header);
        abi::pack_location(output.as_ptr() as usize as u32, header.len() as u32) as i64
    }
}
