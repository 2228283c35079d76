//! A SmartModule's answer, from any guest memory: the output area at any
//! location, for every module kind and answer layout, against a real input
//! batch. Refused or decoded, never a panic; an accepted answer always
//! makes a valid output batch of the records it claims, within the size
//! budget.
#![no_main]

use std::sync::OnceLock;

use fluvio_protocol::batch::RecordIndex;
use fluvio_protocol::{Batch, ModuleKind};
use fluvio_smartengine::output::decode_output;
use smartmodule_abi::abi;

const MEMORY_LIMIT: u64 = 1 << 16;

fn input() -> &'static (Vec<u8>, RecordIndex) {
    static INPUT: OnceLock<(Vec<u8>, RecordIndex)> = OnceLock::new();
    INPUT.get_or_init(|| {
        let batch = fluvio_fuzz::seed_batch();
        let index = RecordIndex::new(&batch).expect("the seed batch is valid");
        (batch, index)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let kind = match data[0] % 5 {
        0 => ModuleKind::Filter,
        1 => ModuleKind::Map,
        2 => ModuleKind::FilterMap,
        3 => ModuleKind::ArrayMap,
        _ => ModuleKind::Aggregate,
    };
    let memory = &data[9..];
    let raw_ptr = u32::from_le_bytes(data[1..5].try_into().unwrap());
    let raw_len = u32::from_le_bytes(data[5..9].try_into().unwrap());
    // Mostly in range, so the decoders beyond the bounds checks are reached.
    let (ptr, len) = if data[0] & 0x80 != 0 {
        (raw_ptr, raw_len)
    } else {
        let ptr = raw_ptr % (memory.len() as u32 + 1);
        (ptr, raw_len % (memory.len() as u32 - ptr + 1))
    };
    let (batch, records) = input();
    let location = abi::pack_location(ptr, len);
    // Bit 6 of the first byte chooses the answer layout.
    let layout = if data[0] & 0x40 != 0 { abi::ANSWER_LAYOUT_2 } else { abi::ANSWER_LAYOUT_1 };
    if let Ok(decoded) = decode_output(kind, layout, memory, location, batch, records, MEMORY_LIMIT) {
        assert!(decoded.batch.len() <= batch.len() + MEMORY_LIMIT as usize + 64 * 1024, "output over its budget");
        let output =
            Batch::from_bytes(Batch::seal_host_written(decoded.batch).into_bytes()).expect("an accepted answer is a valid batch");
        assert_eq!(output.records().count() as u32, decoded.records_out);
    }
});
