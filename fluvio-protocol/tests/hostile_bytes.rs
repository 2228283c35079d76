//! Property tests of the parsers every byte from a client, a server, a disk
//! or a guest goes through, run on many valid inputs damaged in random
//! ways. No parser may panic (a panic in the server is a crash), and the
//! fast paths must accept exactly what the full checks accept and read it
//! the same way. A deterministic generator makes a failure reproducible
//! from the round number it prints.

use dev_support::damage::{Lcg, damage};
use fluvio_protocol::frame::{decode, encode};
use fluvio_protocol::requests::StreamFetchRequest;
use fluvio_protocol::{Batch, BatchBuilder, Compression, Frame, FrameError, StoredBatch, StreamEvent};

fn batch(random: &mut Lcg) -> Batch {
    let mut builder = BatchBuilder::new(random.below(1 << 40) as i64, 1_700_000_000_000);
    for delta in 0..random.below(8) as u32 {
        let key = vec![b'k'; random.below(4) as usize];
        let value = vec![b'v'; random.below(64) as usize];
        let headers: Vec<(&[u8], &[u8])> = match random.below(3) {
            0 => vec![(b"h", b"x")],
            _ => Vec::new(),
        };
        let key = (random.below(2) == 0).then_some(key.as_slice());
        builder.push(delta, 1_700_000_000_000 + delta as i64, key, &value, &headers);
    }
    builder.finish()
}

/// Refreshes the CRC of a damaged batch, so that the damage reaches the
/// record parsers behind the CRC check (an attacker computes CRCs too).
fn reseal(bytes: &mut [u8]) {
    const CRC_AT: usize = 12;
    const CRC_FROM: usize = 16;
    if bytes.len() >= CRC_FROM {
        let crc = crc32c(&bytes[CRC_FROM..]);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn crc32c(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32C (Castagnoli), independent of the crate under test.
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn damaged_batches_are_refused_or_read_consistently_never_a_panic() {
    let mut random = Lcg(11);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..100_000 {
        let original = batch(&mut random);
        let codec = Compression::ALL[random.below(Compression::ALL.len() as u64) as usize];
        let mut bytes = original.clone().compressed(codec).into_bytes();
        damage(&mut random, &mut bytes);
        if random.below(2) == 0 {
            reseal(&mut bytes);
        }
        let full = Batch::from_bytes(bytes.clone());
        let sent = Batch::from_sent_bytes(bytes.clone())
            .and_then(|batch| batch.try_records().map(|r| r.map(|r| r.offset)).collect::<Result<Vec<_>, _>>());
        match full {
            Ok(batch) => {
                accepted += 1;
                let offsets: Vec<i64> = batch.records().map(|r| r.offset).collect();
                assert_eq!(offsets.len(), batch.record_count() as usize, "round {round}");
                assert_eq!(sent.as_ref().ok(), Some(&offsets), "round {round}: the one-pass read disagrees");
                let next = offsets.last().map_or(batch.base_offset(), |last| last + 1);
                assert_eq!(batch.next_offset(), next, "round {round}");
            }
            Err(_) => {
                refused += 1;
                assert!(sent.is_err(), "round {round}: the one-pass read accepted what the full check refused");
            }
        }
        // Stored bytes are not checked up front; reading where they end,
        // and checking them later, must still never panic, whatever they
        // hold (and they give records only once checked).
        if let Ok(stored) = StoredBatch::from_storage(bytes) {
            let _ = stored.next_offset();
            if let Ok(opened) = stored.clone().open() {
                let _ = opened.trimmed_to(random.below(1 << 41) as i64);
            }
            let _ = stored.verify();
        }
    }
    // Both outcomes are exercised, not just one.
    assert!(accepted > 5_000 && refused > 5_000, "{accepted} accepted, {refused} refused");
}

#[test]
fn damaged_frames_and_control_messages_are_refused_never_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut random = Lcg(12);
    let mut refused = 0;
    for round in 0..50_000 {
        let event = match random.below(3) {
            0 => StreamEvent::Batch { next_offset: random.below(1000) as i64 },
            1 => StreamEvent::Started { offset: random.below(1000) as i64 },
            _ => StreamEvent::End { next_offset: random.below(1000) as i64 },
        };
        let payload = vec![7u8; random.below(100) as usize];
        let frame = Frame::new(5 | fluvio_protocol::RESPONSE_BIT, round, &event, payload);
        let mut bytes = frame.head();
        bytes.extend_from_slice(&frame.payload);
        damage(&mut random, &mut bytes);
        let read = runtime.block_on(Frame::read(&mut bytes.as_slice(), 1 << 20));
        match read {
            Ok(frame) => {
                // Whatever the control bytes now hold, decoding them as any
                // message is an answer, never a panic.
                let _ = frame.control::<StreamEvent>();
                let _ = frame.control::<StreamFetchRequest>();
            }
            Err(FrameError::Closed | FrameError::Malformed(_) | FrameError::TooLarge { .. }) => refused += 1,
            Err(error) => panic!("round {round}: unexpected error {error}"),
        }
        // The control decoder on its own, on damaged messages.
        let mut control = encode(&event);
        damage(&mut random, &mut control);
        let _ = decode::<StreamEvent>(&control);
        let _ = decode::<StreamFetchRequest>(&control);
    }
    assert!(refused > 5_000, "{refused} refused");
}

#[test]
fn damaged_runs_of_batches_are_split_and_checked_without_a_panic() {
    // A stream's `Batch` payload holds several batches back to back: the
    // split reads each header's length, so a damaged length must end the
    // split with an error, never slice out of bounds.
    let mut random = Lcg(23);
    let (mut whole, mut refused) = (0, 0);
    for round in 0..50_000 {
        let batches: Vec<Batch> = (0..random.below(4) + 1).map(|_| batch(&mut random)).collect();
        let mut run: Vec<u8> = batches.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
        let damaged = random.below(4) != 0;
        if damaged {
            damage(&mut random, &mut run);
        }
        let mut read = Vec::new();
        let mut failed = false;
        for range in fluvio_protocol::batch_ranges(&run) {
            let Ok(range) = range else {
                failed = true;
                break;
            };
            assert!(range.end <= run.len(), "round {round}: a range past the end");
            match Batch::check_sent(&run[range.clone()]) {
                Ok(Some(opened)) => read.extend(opened.records().map(|r| r.value.to_vec())),
                Ok(None) => match Batch::from_sent_bytes(run[range].to_vec()) {
                    Ok(batch) => match batch.try_records().collect::<Result<Vec<_>, _>>() {
                        Ok(records) => read.extend(records.iter().map(|r| r.value.to_vec())),
                        Err(_) => failed = true,
                    },
                    Err(_) => failed = true,
                },
                Err(_) => failed = true,
            }
        }
        if failed {
            refused += 1;
        } else {
            whole += 1;
        }
        if !damaged {
            let expected: Vec<Vec<u8>> = batches.iter().flat_map(|b| b.records().map(|r| r.value.to_vec())).collect();
            assert!(!failed, "round {round}: an undamaged run was refused");
            assert_eq!(read, expected, "round {round}: an undamaged run read back");
        }
    }
    assert!(whole > 10_000 && refused > 10_000, "both outcomes seen: {whole} read, {refused} refused");
}
