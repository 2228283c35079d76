use super::*;
use fluvio_protocol::BatchBuilder;
use smartmodule_abi::abi;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, retention: RetentionSpec::default(), flush: FlushPolicy::EveryBatch }
}

fn batch(values: &[&str]) -> CheckedBatch {
    let mut builder = BatchBuilder::new(0, now_ms());
    for v in values {
        builder.push_value(None, v.as_bytes());
    }
    builder.finish().into()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvio-storage-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_segment_deleted_by_retention_between_a_reads_plan_and_its_open_reads_again_from_the_new_start() {
    let dir = temp_dir("retention-race");
    let small = LogConfig { segment_bytes: 64, ..config() };
    let (log, _) = PartitionLog::open(&dir, small).unwrap();
    let log = Arc::new(log);
    for n in 0..6 {
        log.append(batch(&[&format!("record {n}")])).unwrap();
    }
    assert!(log.state.lock().segments.len() >= 4, "one batch per segment");
    // Retention that keeps only the newest segments, run right after
    // the read planned to start in the oldest one.
    let racing = Arc::clone(&log);
    *log.between_plan_and_open.lock() = Some(Box::new(move || {
        let mut state = racing.state.lock();
        while state.segments.len() > 2 {
            let oldest = state.segments.remove(0);
            fs::remove_file(&oldest.log_path).unwrap();
            fs::remove_file(&oldest.index_path).unwrap();
        }
    }));
    // Not an error and no records from a deleted file: nothing, so
    // the stream loop reads again (the watermark is past its offset).
    assert!(log.read(0, 1 << 20).unwrap().is_empty());
    assert!(*log.watermark.borrow() > 0);
    let again = log.read(0, 1 << 20).unwrap();
    let first = again.first().expect("the records left").base_offset();
    assert_eq!(first, log.start_offset());
    assert_eq!(again.last().unwrap().next_offset(), log.next_offset(), "read through to the end");
}

#[test]
fn a_run_is_the_file_bytes_of_whole_batches_from_a_batch_start() {
    use std::os::unix::fs::FileExt;
    let dir = temp_dir("runs");
    let small = LogConfig { segment_bytes: 300, ..config() };
    let (log, _) = PartitionLog::open(&dir, small).unwrap();
    let batches: Vec<CheckedBatch> =
        (0..8).map(|n| batch(&[&format!("record {n}a"), &format!("record {n}b")])).collect();
    for batch in &batches {
        log.append(batch.clone()).unwrap();
    }
    let stored = log.read(0, u64::MAX).unwrap();
    assert_eq!(stored.len(), 8);
    assert!(log.segment_count() > 1, "several segments");

    // Runs follow one another to the end, each within one segment and
    // each the stored batches' exact bytes.
    let (mut offset, mut seen) = (0, Vec::new());
    while let Some(run) = log.read_run(offset, 1 << 20).unwrap() {
        let mut bytes = vec![0; run.len];
        run.file.read_exact_at(&mut bytes, run.position).unwrap();
        seen.extend_from_slice(&bytes);
        assert!(run.next_offset > offset);
        offset = run.next_offset;
    }
    assert_eq!(offset, 16, "to the end");
    let expected: Vec<u8> = stored.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
    assert_eq!(seen, expected);

    // At least one batch, whatever the limit; more only within it.
    let one = log.read_run(0, 1).unwrap().unwrap();
    assert_eq!((one.len, one.next_offset), (stored[0].as_bytes().len(), 2));
    let two = stored[0].as_bytes().len() + stored[1].as_bytes().len();
    let run = log.read_run(0, two as u64).unwrap().unwrap();
    assert!(run.next_offset <= 4);
    // Inside a batch, past the end: the caller reads batches instead.
    assert!(log.read_run(1, 1 << 20).unwrap().is_none());
    assert!(log.read_run(16, 1 << 20).unwrap().is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_batch_resent_after_a_crash_is_stored_once() {
    let dir = temp_dir("resent-after-crash");
    let stamp = ProducerStamp { id: 42, sequence: 3 };
    {
        // Stored, then the server dies before it can acknowledge.
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        Partition::append(&log, batch(&["x"]), None).await.unwrap();
        assert_eq!(Partition::append(&log, batch(&["a", "b"]), Some(stamp)).await.unwrap(), 1);
    }
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(Partition::append(&log, batch(&["a", "b"]), Some(stamp)).await.unwrap(), 1, "found, not stored again");
    assert_eq!(log.next_offset(), 3);
    let next = ProducerStamp { id: 42, sequence: 4 };
    assert_eq!(Partition::append(&log, batch(&["c"]), Some(next)).await.unwrap(), 3);
    // A journal entry whose batch did not reach the log is forgotten.
    drop(log);
    let journal = dir.join(super::super::producers::JOURNAL_FILE);
    let mut bytes = fs::read(&journal).unwrap();
    bytes.extend(super::super::producers::encode(9, 0, 4));
    fs::write(&journal, bytes).unwrap();
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    let lost = ProducerStamp { id: 9, sequence: 0 };
    assert_eq!(Partition::append(&log, batch(&["d"]), Some(lost)).await.unwrap(), 4, "stored now");
    assert_eq!(log.next_offset(), 5);
}

/// A producer keeps several batches in flight: when the server dies with
/// all of them stored and none acknowledged, the producer sends every one
/// again, in order, and each must be found rather than stored twice (the
/// journal once remembered only a producer's latest batch, and stored the
/// earlier ones again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_batches_in_flight_resent_after_a_crash_are_each_stored_once() {
    let dir = temp_dir("resent-in-flight");
    let stamps: Vec<ProducerStamp> = (10..14).map(|sequence| ProducerStamp { id: 7, sequence }).collect();
    {
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        for (n, stamp) in stamps.iter().enumerate() {
            assert_eq!(Partition::append(&log, batch(&["a", "b"]), Some(*stamp)).await.unwrap(), 2 * n as i64);
        }
    }
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    for (n, stamp) in stamps.iter().enumerate() {
        let base = Partition::append(&log, batch(&["a", "b"]), Some(*stamp)).await.unwrap();
        assert_eq!(base, 2 * n as i64, "batch {n} found where it was stored");
    }
    assert_eq!(log.next_offset(), 8, "nothing stored twice");
}

#[test]
fn a_batch_whose_base_offset_was_damaged_is_reported_not_served() {
    let dir = temp_dir("offset-damage");
    {
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        for value in ["a", "b", "c"] {
            log.append(batch(&[value])).unwrap();
        }
    }
    // The second batch's base offset says 0 again: its CRC still
    // checks out.
    let log_path = dir.join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&log_path).unwrap();
    let first_len = abi::BatchHeader::parse(&bytes).unwrap().batch_len as usize;
    bytes[first_len..first_len + 8].copy_from_slice(&0i64.to_le_bytes());
    fs::write(&log_path, &bytes).unwrap();
    let _ = fs::remove_file(dir.join(format!("{:020}.index", 0)));
    let error = PartitionLog::open(&dir, config()).err().expect("a damaged offset is refused");
    let message = error.to_string();
    assert!(matches!(error, StorageError::Corrupt { .. }), "{message}");
    assert!(message.contains("where offset 1 was expected"), "{message}");
    // Nothing was cut.
    assert_eq!(fs::read(&log_path).unwrap(), bytes);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_written_but_not_acknowledged_are_not_read() {
    let dir = temp_dir("unacknowledged");
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    log.append(batch(&["acknowledged"])).unwrap();
    let (base, next) = log.write(batch(&["in flight"]), None).unwrap();
    assert_eq!((base, next), (1, 2));
    assert_eq!(all_values(&log, 0), [(0, "acknowledged".to_string())]);
    assert!(log.read(1, u64::MAX).unwrap().is_empty());
    log.publish(next);
    assert_eq!(all_values(&log, 0), [(0, "acknowledged".to_string()), (1, "in flight".to_string())]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_sync_stops_the_partition_and_never_shows_the_unacknowledged_batch() {
    let dir = temp_dir("failed-sync");
    {
        let (log, _) = PartitionLog::open(&dir, config()).unwrap();
        log.append(batch(&["kept"])).unwrap();
        log.fail_next_sync.store(true, Ordering::Relaxed);
        let error = log.append(batch(&["lost"])).unwrap_err();
        assert!(error.to_string().contains("injected sync failure"), "{error}");
        assert_eq!(all_values(&log, 0), [(0, "kept".to_string())]);
        let refused = log.append(batch(&["after"])).unwrap_err();
        assert!(refused.to_string().contains("restart the server"), "{refused}");
        assert_eq!(log.next_offset(), 1);
    }
    // After a restart the partition takes appends again, and the batch
    // whose sync failed is not there to be read, nor stored twice when
    // its producer sends it again.
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(log.append(batch(&["lost"])).unwrap(), 1);
    assert_eq!(all_values(&log, 0), [(0, "kept".to_string()), (1, "lost".to_string())]);
    fs::remove_dir_all(&dir).unwrap();
}

fn all_values(log: &PartitionLog, from: i64) -> Vec<(i64, String)> {
    log.read(from, u64::MAX)
        .unwrap()
        .iter()
        .flat_map(|b| {
            let b = b.clone().open().unwrap();
            b.records().map(|r| (r.offset, String::from_utf8_lossy(r.value).into_owned())).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn appends_assign_offsets_and_survive_reopen() {
    let dir = temp_dir("reopen");
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(log.append(batch(&["a", "b"])).unwrap(), 0);
    assert_eq!(log.append(batch(&["c"])).unwrap(), 2);
    drop(log);
    let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(recovery, Recovery { truncated_bytes: 0, batches: 2 });
    assert_eq!(log.next_offset(), 3);
    assert_eq!(all_values(&log, 0), vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
    assert_eq!(all_values(&log, 2), vec![(2, "c".into())]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_appends_share_syncs_and_stay_consistent() {
    let dir = temp_dir("group-commit");
    let log = Arc::new(PartitionLog::open(&dir, LogConfig { segment_bytes: 4096, ..config() }).unwrap().0);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| (log.append(batch(&[&format!("t{t}-{i}")])).unwrap(), format!("t{t}-{i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acknowledged: Vec<(i64, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(log.next_offset(), 200);
    assert_eq!(*log.subscribe().borrow(), 200, "consumers may read everything acknowledged");
    assert!(log.synced.load(Ordering::Acquire) >= 200);
    drop(log);
    let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(recovery.truncated_bytes, 0);
    let stored = all_values(&log, 0);
    assert_eq!(stored.len(), 200);
    for (offset, value) in acknowledged {
        assert_eq!(stored[offset as usize], (offset, value));
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_tail_is_truncated_and_earlier_batches_kept() {
    let dir = temp_dir("torn");
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    log.append(batch(&["kept"])).unwrap();
    log.append(batch(&["torn"])).unwrap();
    drop(log);
    let log_path = dir.join(format!("{:020}.log", 0));
    let len = fs::metadata(&log_path).unwrap().len();
    OpenOptions::new().write(true).open(&log_path).unwrap().set_len(len - 3).unwrap();
    let (log, recovery) = PartitionLog::open(&dir, config()).unwrap();
    assert!(recovery.truncated_bytes > 0);
    assert_eq!(all_values(&log, 0), vec![(0, "kept".into())]);
    assert_eq!(log.append(batch(&["after"])).unwrap(), 1);
    assert_eq!(all_values(&log, 0), vec![(0, "kept".into()), (1, "after".into())]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_bytes_in_the_tail_are_truncated() {
    let dir = temp_dir("corrupt");
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    log.append(batch(&["one"])).unwrap();
    log.append(batch(&["two"])).unwrap();
    drop(log);
    let log_path = dir.join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&log_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&log_path, bytes).unwrap();
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    assert_eq!(all_values(&log, 0), vec![(0, "one".into())]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segments_roll_and_retention_deletes_the_oldest() {
    let dir = temp_dir("retention");
    let config = LogConfig {
        segment_bytes: 200,
        retention: RetentionSpec { max_bytes: Some(600), ..Default::default() },
        flush: FlushPolicy::Os,
    };
    let (log, _) = PartitionLog::open(&dir, config).unwrap();
    let value = "x".repeat(100);
    for _ in 0..20 {
        log.append(batch(&[&value])).unwrap();
    }
    assert!(log.segment_count() > 1);
    assert!(log.size() <= 600 + 200, "size {}", log.size());
    let start = log.start_offset();
    assert!(start > 0);
    // Reading from a deleted offset starts at the first stored one.
    assert_eq!(all_values(&log, 0).first().unwrap().0, start);
    assert_eq!(all_values(&log, 0).last().unwrap().0, 19);
    drop(log);
    let (log, _) = PartitionLog::open(&dir, config).unwrap();
    assert_eq!(log.start_offset(), start);
    assert_eq!(log.next_offset(), 20);
    fs::remove_dir_all(&dir).unwrap();
}

/// One batch of 120 bytes fills a segment; segments go 300 ms after
/// their last append.
fn age_config() -> LogConfig {
    LogConfig {
        segment_bytes: 100,
        retention: RetentionSpec { max_age_ms: Some(300), ..Default::default() },
        flush: FlushPolicy::Os,
    }
}

#[test]
fn retention_by_age_deletes_old_segments() {
    let dir = temp_dir("age");
    let config = age_config();
    let (log, _) = PartitionLog::open(&dir, config).unwrap();
    log.append(batch(&[&"o".repeat(120)])).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    log.append(batch(&[&"n".repeat(120)])).unwrap();
    log.append(batch(&["new"])).unwrap();
    log.apply_retention();
    assert_eq!(log.start_offset(), 1, "the segment appended 400 ms ago is past 300 ms");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn retention_by_age_counts_from_the_append_not_the_record_timestamps() {
    let dir = temp_dir("age-stamps");
    let config = age_config();
    let (log, _) = PartitionLog::open(&dir, config).unwrap();
    // Stamped a year ahead, and an hour ago: neither stamp counts.
    let mut future = BatchBuilder::new(0, now_ms() + 365 * 24 * 3_600_000);
    future.push_value(None, &[b'f'; 120]);
    log.append(future.finish().into()).unwrap();
    let mut past = BatchBuilder::new(0, now_ms() - 3_600_000);
    past.push_value(None, &[b'p'; 120]);
    log.append(past.finish().into()).unwrap();
    log.append(batch(&["new"])).unwrap();
    log.apply_retention();
    assert_eq!(log.start_offset(), 0, "nothing was appended more than 300 ms ago");
    std::thread::sleep(std::time::Duration::from_millis(400));
    log.append(batch(&["newer"])).unwrap();
    log.apply_retention();
    assert_eq!(log.start_offset(), 2, "both old segments went, the future-stamped one too");
    // After a crash that loses the indexes, the segments' last writes stand in.
    drop(log);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "index") {
            fs::remove_file(path).unwrap();
        }
    }
    let (log, _) = PartitionLog::open(&dir, config).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    log.append(batch(&["last"])).unwrap();
    log.apply_retention();
    assert_eq!(log.start_offset(), 4, "rebuilt segments age from their last write");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_with_wrong_deltas_are_refused() {
    let dir = temp_dir("deltas");
    let (log, _) = PartitionLog::open(&dir, config()).unwrap();
    let mut builder = BatchBuilder::new(0, 0);
    builder.push(0, 0, None, b"a", &[]);
    builder.push(5, 0, None, b"b", &[]);
    let error = log.append(builder.finish().into()).unwrap_err();
    assert!(error.to_string().contains("offset delta 5"), "{error}");
    assert_eq!(log.next_offset(), 0);
    fs::remove_dir_all(&dir).unwrap();
}
