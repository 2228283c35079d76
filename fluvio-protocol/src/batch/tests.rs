use super::*;

fn batch_of(base_offset: i64, values: &[&str]) -> Batch {
    let mut builder = BatchBuilder::new(base_offset, 1_000);
    for value in values {
        builder.push_value(None, value.as_bytes());
    }
    builder.finish()
}

#[test]
fn a_run_of_batches_splits_into_each_batch_and_each_checks() {
    let batches = [batch_of(0, &["a", "b"]), batch_of(2, &["c"]), batch_of(3, &["d", "e", "f"])];
    let run: Vec<u8> = batches.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
    let ranges: Vec<_> = batch_ranges(&run).collect::<Result<_, _>>().unwrap();
    assert_eq!(ranges.len(), 3);
    for (range, batch) in ranges.iter().zip(&batches) {
        assert_eq!(&run[range.clone()], batch.as_bytes());
        assert!(Batch::check_sent(&run[range.clone()]).unwrap().is_none(), "read in place");
    }
    assert_eq!(batch_ranges(&[]).count(), 0);

    // A damaged byte in the second batch fails its CRC, not the split.
    let mut damaged = run.clone();
    damaged[ranges[1].start + abi::BATCH_HEADER_LEN] ^= 0xff;
    assert!(Batch::check_sent(&damaged[ranges[1].clone()]).is_err());
    // A length past the end, too short for a header, or bytes left over
    // end the split with an error.
    let mut too_long = run.clone();
    too_long[ranges[2].start + abi::BATCH_LEN_AT] = 0xff;
    assert!(batch_ranges(&too_long).nth(2).unwrap().is_err());
    let mut too_short = run.clone();
    too_short[abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4].copy_from_slice(&4u32.to_le_bytes());
    let split: Vec<_> = batch_ranges(&too_short).collect();
    assert_eq!(split.len(), 1, "stops at the first bad length");
    assert!(split[0].is_err());
    let leftover = [run.as_slice(), &[1, 2, 3]].concat();
    assert!(batch_ranges(&leftover).nth(3).unwrap().is_err());
}

#[test]
fn a_compressed_batch_of_a_run_comes_back_decompressed() {
    let plain = batch_of(5, &["one", "two", "three"]);
    let compressed = plain.clone().compressed(crate::Compression::Gzip);
    let opened = Batch::check_sent(compressed.as_bytes()).unwrap().expect("decompressed");
    let values: Vec<Vec<u8>> = opened.records().map(|r| r.value.to_vec()).collect();
    assert_eq!(values, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
}

#[test]
fn an_absurd_timestamp_saturates_instead_of_overflowing() {
    // Found by the `batch` fuzz target: a producer's base timestamp
    // plus a record's delta overflowed (a panic with overflow checks,
    // a negative timestamp without).
    let mut builder = BatchBuilder::new(7, i64::MAX - 5);
    builder.push_value(None, b"late");
    let mut bytes = builder.finish().into_bytes();
    let delta_at = abi::BATCH_HEADER_LEN + 8;
    bytes[delta_at..delta_at + 8].copy_from_slice(&i64::MAX.to_le_bytes());
    let batch = Batch::from_bytes(Batch::seal_host_written(bytes).into_bytes()).unwrap();
    let record = batch.records().next().unwrap();
    assert_eq!((record.offset, record.timestamp), (7, i64::MAX));
    let checked = batch.try_records().next().unwrap().unwrap();
    assert_eq!(checked.timestamp, i64::MAX);
}

#[test]
fn compressed_batches_keep_their_header_and_give_their_records_back() {
    let mut builder = BatchBuilder::new(40, 1_000);
    for i in 0..500u32 {
        builder.push(i, 1_000 + i as i64, Some(b"key"), format!("value number {i}").as_bytes(), &[]);
    }
    let plain = builder.finish();
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let packed = plain.clone().compressed(codec);
        assert_eq!(packed.compression(), codec);
        assert!(packed.as_bytes().len() * 3 < plain.as_bytes().len(), "{codec}");
        assert_eq!((packed.base_offset(), packed.record_count(), packed.next_offset()), (40, 500, 540));
        // It travels as bytes and is checked whole on the way in.
        let received = CheckedBatch::from_bytes(packed.clone().into_bytes()).unwrap();
        assert_eq!(received.clone().open().unwrap(), plain, "{codec}");
        // A consumer starting inside it gets the rest, uncompressed.
        let trimmed = packed.open().unwrap().trimmed_to(538);
        assert_eq!(trimmed.records().map(|r| r.offset).collect::<Vec<_>>(), [538, 539]);
        // Records are never read from compressed bytes by mistake.
        assert!(RecordIter::new(received.as_bytes()).is_err());
    }
    // Compressed records that do not decompress are refused, even with a
    // CRC made to match (gzip carries a checksum of its own).
    let mut bytes = plain.clone().compressed(Compression::Gzip).into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let error = Batch::from_bytes(Batch::seal_host_written(bytes).into_bytes()).unwrap_err();
    assert!(error.to_string().contains("decompress") || error.to_string().contains("record"), "{error}");
    // Batches with gaps (chain outputs) stay uncompressed.
    let mut gaps = BatchBuilder::new(0, 0);
    gaps.push(0, 0, None, b"a", &[]);
    gaps.push(5, 0, None, b"b", &[]);
    assert_eq!(gaps.finish().compressed(Compression::Gzip).compression(), Compression::None);
}

#[test]
fn shared_storage_checks_the_crc_and_leaves_compressed_records_to_open() {
    let mut builder = BatchBuilder::new(10, 0);
    for i in 0..50u32 {
        builder.push(i, 0, None, format!("value {i}").as_bytes(), &[]);
    }
    let plain = builder.finish();
    let stored = StoredBatch::from_shared_storage(plain.clone().into_bytes()).unwrap();
    assert_eq!((stored.base_offset(), stored.next_offset()), (10, 60));
    let packed = plain.clone().compressed(Compression::Zstd);
    let stored = StoredBatch::from_shared_storage(packed.clone().into_bytes()).unwrap();
    assert_eq!((stored.compression(), stored.next_offset()), (Compression::Zstd, 60));
    assert_eq!(stored.open().unwrap(), plain);
    // A damaged byte fails the CRC, compressed or not.
    for batch in [plain.clone().into_bytes(), packed.clone().into_bytes()] {
        let mut damaged = batch;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let error = StoredBatch::from_shared_storage(damaged).unwrap_err();
        assert!(error.to_string().contains("CRC"), "{error}");
    }
    // Compressed records that do not parse, under a matching CRC, pass
    // here (nothing is inflated) and are refused when opened.
    let mut bytes = packed.into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let resealed = Batch::seal_host_written(bytes).into_bytes();
    let stored = StoredBatch::from_shared_storage(resealed).unwrap();
    assert!(stored.open().is_err());
    // Uncompressed records are checked here: a record length past the
    // batch's end, under a matching CRC, is refused.
    let mut bytes = plain.into_bytes();
    bytes[abi::BATCH_HEADER_LEN..abi::BATCH_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let resealed = Batch::seal_host_written(bytes).into_bytes();
    let error = StoredBatch::from_shared_storage(resealed).unwrap_err();
    assert!(!error.to_string().contains("CRC"), "{error}");
}

#[test]
fn a_stored_batch_knows_its_next_offset_however_it_was_made() {
    // Offsets with a gap (as a filter's outputs keep them), and none.
    let mut gapped = BatchBuilder::new(100, 0);
    for delta in [0u32, 1, 5, 9] {
        gapped.push(delta, 0, None, b"v", &[]);
    }
    for (batch, next) in [(gapped.finish(), 110), (BatchBuilder::new(7, 0).finish(), 7)] {
        let checked = CheckedBatch::from_bytes(batch.clone().into_bytes()).unwrap();
        assert_eq!(checked.next_offset(), next);
        assert_eq!(batch.next_offset(), next);
        let shared = StoredBatch::from_shared_storage(batch.clone().into_bytes()).unwrap();
        assert_eq!(shared.next_offset(), next);
        assert_eq!(StoredBatch::from_storage(batch.clone().into_bytes()).unwrap().next_offset(), next);
        assert_eq!(StoredBatch::from(checked).next_offset(), next);
        assert_eq!(StoredBatch::from(batch).next_offset(), next);
    }
}

/// A batch of `records` identical records of `value_len` zero bytes: it
/// compresses about as well as anything can.
fn zeros(records: u32, value_len: usize) -> Batch {
    let mut builder = BatchBuilder::new(0, 0);
    let value = vec![0u8; value_len];
    for i in 0..records {
        builder.push(i, 0, None, &value, &[]);
    }
    builder.finish()
}

#[test]
fn a_batch_inflating_past_its_ratio_is_refused_before_it_is_inflated_whole() {
    use crate::compression::{MAX_DECOMPRESSION_RATIO, RATIO_FREE_DECOMPRESSED_BYTES, decompressed_limit};
    assert_eq!(decompressed_limit(10), RATIO_FREE_DECOMPRESSED_BYTES);
    assert_eq!(decompressed_limit(64 << 10), (64 << 10) * MAX_DECOMPRESSION_RATIO);
    assert_eq!(decompressed_limit(usize::MAX), crate::compression::MAX_DECOMPRESSED_BATCH_BYTES);
    // 64 MiB of zero-filled records, packed by hand as a hostile producer
    // would: every codec packs it far past the ratio.
    let plain = zeros(64, 1 << 20);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let records = &plain.as_bytes()[crate::abi::BATCH_HEADER_LEN..];
        let packed = codec.compress(records);
        let mut bytes = plain.as_bytes()[..crate::abi::BATCH_HEADER_LEN].to_vec();
        bytes.extend_from_slice(&packed);
        let len = bytes.len() as u32;
        bytes[crate::abi::BATCH_LEN_AT..crate::abi::BATCH_LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
        bytes[crate::abi::BATCH_ATTRIBUTES_AT] = codec.code();
        let bytes = Batch::seal_host_written(bytes).into_bytes();
        if records.len() <= decompressed_limit(packed.len()) {
            // Snappy and LZ4 do not pack zeros that well: within the ratio.
            assert_eq!(CheckedBatch::from_bytes(bytes).unwrap().open().unwrap(), plain, "{codec}");
            continue;
        }
        let error = CheckedBatch::from_bytes(bytes).unwrap_err();
        assert!(error.to_string().contains("times its size"), "{codec}: {error}");
    }
    // A producer never makes such a batch: it sends it uncompressed.
    assert_eq!(plain.clone().compressed(Compression::Zstd).compression(), Compression::None);
    // Small ones compress whatever their ratio.
    let small = zeros(4, 512 << 10);
    let packed = small.clone().compressed(Compression::Zstd);
    assert_eq!(packed.compression(), Compression::Zstd);
    assert_eq!(packed.open().unwrap(), small);
}

#[test]
fn the_checked_next_offset_is_the_one_the_batch_reports() {
    let mut gaps = BatchBuilder::new(70, 0);
    gaps.push(0, 0, None, b"a", &[]);
    gaps.push(9, 0, None, b"b", &[(b"h".as_slice(), b"x".as_slice())]);
    let mut many = BatchBuilder::new(3, 0);
    for i in 0..300u32 {
        many.push(i, 0, None, format!("value {i}").as_bytes(), &[]);
    }
    let many = many.finish();
    let batches: [CheckedBatch; 5] = [
        BatchBuilder::new(12, 0).finish().into(),
        batch_of(5, &["one", "two", "three"]).into(),
        gaps.finish().into(),
        many.clone().compressed(Compression::Zstd),
        many.into(),
    ];
    for batch in batches {
        let (checked, next_offset) = CheckedBatch::from_bytes_with_next_offset(batch.clone().into_bytes()).unwrap();
        assert_eq!((&checked, next_offset), (&batch, batch.next_offset()));
    }
    assert_eq!(CheckedBatch::from_bytes_with_next_offset(batch_of(5, &["x"]).into_bytes()).unwrap().1, 6);
    assert_eq!(
        CheckedBatch::from_bytes_with_next_offset(BatchBuilder::new(12, 0).finish().into_bytes()).unwrap().1,
        12
    );
}

#[test]
fn round_trips_records_with_keys_and_headers() {
    let mut builder = BatchBuilder::new(100, 1_000);
    builder.push(0, 1_000, Some(b"k1"), b"v1", &[(b"h".as_slice(), b"x".as_slice())]);
    builder.push(1, 1_005, None, b"", &[]);
    let batch = Batch::from_bytes(builder.finish().into_bytes()).unwrap();
    let records: Vec<_> = batch.records().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].offset, records[0].timestamp, records[0].key, records[0].value),
        (100, 1_000, Some(&b"k1"[..]), &b"v1"[..])
    );
    assert_eq!(records[0].headers, vec![(&b"h"[..], &b"x"[..])]);
    assert_eq!(
        (records[1].offset, records[1].timestamp, records[1].key, records[1].value),
        (101, 1_005, None, &b""[..])
    );
    assert_eq!(batch.next_offset(), 102);
}

#[test]
fn detects_corruption() {
    let mut builder = BatchBuilder::new(0, 0);
    builder.push_value(None, b"hello");
    let mut bytes = builder.finish().into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let error = Batch::from_bytes(bytes).unwrap_err();
    assert!(error.reason.contains("CRC mismatch"), "{error}");
}

#[test]
fn rejects_truncated_and_lying_batches() {
    let mut builder = BatchBuilder::new(0, 0);
    builder.push_value(None, b"hello");
    let bytes = builder.finish().into_bytes();
    assert!(Batch::from_bytes(bytes[..bytes.len() - 2].to_vec()).is_err());
    let mut lying = bytes.clone();
    lying[abi::BATCH_RECORD_COUNT_AT] = 200;
    assert!(Batch::from_bytes(lying).is_err());
    assert!(Batch::from_bytes(vec![0; 5]).is_err());
}

#[test]
fn base_offset_moves_without_breaking_the_crc() {
    let mut builder = BatchBuilder::new(0, 0);
    builder.push_value(None, b"a");
    let mut batch = builder.finish();
    batch.set_base_offset(42);
    let batch = Batch::from_bytes(batch.into_bytes()).unwrap();
    assert_eq!(batch.records().next().unwrap().offset, 42);
}

#[test]
fn record_index_agrees_with_the_full_parser_and_checks_lengths() {
    let mut builder = BatchBuilder::new(5, 0);
    builder.push(0, 1, Some(b"k"), b"first", &[(b"h".as_slice(), b"v".as_slice())]);
    builder.push(1, 2, None, b"second", &[]);
    let batch = builder.finish();
    let bytes = batch.as_bytes();
    let index = RecordIndex::new(bytes).unwrap();
    let (_, views) = RecordIter::new(bytes).unwrap();
    for (i, view) in views.enumerate() {
        let view = view.unwrap();
        assert_eq!(index.bytes(bytes, i), Some(view.bytes));
        assert_eq!(index.head(bytes, i), Some(&view.bytes[..abi::RECORD_HEADER_LEN]));
        assert_eq!(index.view(bytes, i).unwrap(), view);
    }
    assert_eq!(index.bytes(bytes, 2), None);
    assert_eq!(index.head(bytes, 2), None);
    // A shorter buffer than the one indexed: no fields past its end.
    let last_start = index.start(1).unwrap();
    assert_eq!(index.head(&bytes[..last_start + 10], 1), None);
    let mut lying = bytes.to_vec();
    lying[abi::BATCH_HEADER_LEN] = 0xff;
    assert!(RecordIndex::new(&lying).is_err());
}

#[test]
fn trimming_keeps_records_from_the_offset() {
    let mut builder = BatchBuilder::new(10, 0);
    for v in ["a", "b", "c"] {
        builder.push_value(None, v.as_bytes());
    }
    let trimmed = builder.finish().trimmed_to(11);
    let offsets: Vec<i64> = trimmed.records().map(|r| r.offset).collect();
    assert_eq!(offsets, [11, 12]);
    assert_eq!(trimmed.next_offset(), 13);
}
