//! Any bytes as a record batch: the full check and the consumer's one-pass
//! read accept exactly the same batches and read the same offsets; a stored
//! batch that was never checked tells where it ends, and is checked, opened
//! and trimmed, without a panic.
#![no_main]

use fluvio_protocol::{Batch, CheckedBatch, StoredBatch};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A compressed batch passes the full check as it is, and is read
    // decompressed (its decompression is checked by the full check too).
    let full = CheckedBatch::from_bytes(data.to_vec()).map(|batch| batch.open().expect("checked whole"));
    let sent = Batch::from_sent_bytes(data.to_vec())
        .and_then(|batch| batch.try_records().map(|r| r.map(|r| r.offset)).collect::<Result<Vec<_>, _>>());
    match (&full, &sent) {
        (Ok(batch), Ok(sent_offsets)) => {
            let offsets: Vec<i64> = batch.records().map(|r| r.offset).collect();
            assert_eq!(offsets.len(), batch.record_count() as usize);
            assert_eq!(&offsets, sent_offsets);
            let next = offsets.last().map_or(batch.base_offset(), |last| last + 1);
            assert_eq!(batch.next_offset(), next);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("the full check says {:?} but the one-pass read says {:?}", full.is_ok(), sent.is_ok()),
    }
    if let Ok(stored) = StoredBatch::from_storage(data.to_vec()) {
        let next = stored.next_offset();
        if let Ok(opened) = stored.clone().open() {
            let _ = opened.trimmed_to(next.wrapping_sub(1));
        }
        let _ = stored.verify();
    }
});
