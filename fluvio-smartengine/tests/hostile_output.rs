//! Property tests of the engine's output decoder, which reads what a
//! hostile module wrote into its memory: valid answers of every module kind
//! in both answer layouts, damaged at random (a byte changed, a count, length, index or range moved
//! or set huge, bytes cut off) and placed anywhere in a memory of junk, are
//! refused or decoded into a valid output batch of the records they claim,
//! within the output budget; never a panic.

use dev_support::damage::{Lcg, damage};
use fluvio_protocol::batch::{RecordIndex, encode_record};
use fluvio_protocol::{Batch, BatchBuilder, ModuleKind};
use fluvio_smartengine::output::{OutputError, decode_output};
use smartmodule_abi::abi;

const MEMORY_LIMIT: u64 = 1 << 16;

/// A batch of a few records, some with keys and headers, at offset
/// deltas with gaps (as a filter's output has) and varied timestamps.
fn input(random: &mut Lcg) -> Vec<u8> {
    let base_timestamp = 1_700_000_000_000;
    let mut builder = BatchBuilder::new(random.below(1 << 30) as i64, base_timestamp);
    let mut offset_delta = 0;
    for n in 0..random.below(10) + 1 {
        let key = (n % 2 == 0).then(|| vec![b'k'; random.below(4) as usize]);
        let header_value = vec![b'h'; random.below(5) as usize];
        let headers: Vec<(&[u8], &[u8])> = (0..random.below(3)).map(|_| (&b"name"[..], &header_value[..])).collect();
        let timestamp = base_timestamp + random.below(100) as i64;
        builder.push(offset_delta, timestamp, key.as_deref(), &vec![b'v'; random.below(40) as usize], &headers);
        offset_delta += 1 + random.below(2) as u32;
    }
    builder.finish().into_bytes()
}

fn area(status: u32, entry_count: u32, entries: &[u8], errors: &[(u32, &str)]) -> Vec<u8> {
    let mut area = Vec::new();
    let fields = [status, 0, 0, entry_count, errors.len() as u32, entries.len() as u32];
    fields.iter().for_each(|field| area.extend_from_slice(&field.to_le_bytes()));
    area.extend_from_slice(entries);
    for (index, message) in errors {
        area.extend_from_slice(&index.to_le_bytes());
        for text in [&b"Error"[..], message.as_bytes()] {
            area.extend_from_slice(&(text.len() as u32).to_le_bytes());
            area.extend_from_slice(text);
        }
    }
    area
}

/// A valid answer of `kind` in layout 2 to `input`, and the records it
/// puts in the output batch.
fn answer_in_layout_2(random: &mut Lcg, kind: ModuleKind, input: &[u8], records: &RecordIndex) -> (Vec<u8>, Vec<u8>) {
    let mut entries = Vec::new();
    let mut expected = Vec::new();
    let mut count = 0;
    if kind == ModuleKind::Filter {
        let mut bitmap = vec![0u8; records.len().div_ceil(8)];
        for index in 0..records.len() {
            if random.below(2) == 0 {
                bitmap[index / 8] |= 1 << (index % 8);
                expected.extend_from_slice(records.bytes(input, index).unwrap());
                count += 1;
            }
        }
        return (area(abi::STATUS_OK, count, &bitmap, &[]), expected);
    }
    for index in 0..records.len() {
        let source = records.view(input, index).unwrap();
        for _ in 0..if kind == ModuleKind::ArrayMap { random.below(3) } else { random.below(2) } {
            if random.below(3) == 0 {
                entries.extend_from_slice(&(abi::RECORD_REFERENCE | index as u32).to_le_bytes());
                expected.extend_from_slice(source.bytes);
            } else {
                let key = (random.below(2) == 0).then(|| vec![b'K'; random.below(6) as usize]);
                let value = vec![b'V'; random.below(30) as usize];
                let headers = &input[source.headers.0..source.headers.0 + source.headers.1];
                let record_start = entries.len();
                encode_record(
                    &mut entries,
                    source.offset_delta,
                    source.timestamp_delta,
                    key.as_deref(),
                    &value,
                    source.header_count,
                    headers,
                );
                expected.extend_from_slice(&entries[record_start..]);
            }
            count += 1;
        }
    }
    let errors: Vec<(u32, &str)> = match random.below(4) {
        0 => vec![(random.below(records.len() as u64) as u32, "bad record")],
        _ => Vec::new(),
    };
    (area(abi::STATUS_OK, count, &entries, &errors), expected)
}

/// A valid answer of `kind` in layout 1 to a batch of `records` records.
fn answer(random: &mut Lcg, kind: ModuleKind, records: u32, input_len: u32) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count = 0;
    for index in 0..records {
        if kind == ModuleKind::Filter {
            if random.below(2) == 0 {
                entries.extend_from_slice(&index.to_le_bytes());
                count += 1;
            }
            continue;
        }
        for _ in 0..if kind == ModuleKind::ArrayMap { random.below(3) } else { random.below(2) } {
            entries.extend_from_slice(&index.to_le_bytes());
            let (key_tag, value_tag) = (random.below(3) as u8, 1 + random.below(2) as u8);
            entries.extend_from_slice(&[key_tag, value_tag, 0, 0]);
            for tag in [key_tag, value_tag] {
                match tag {
                    abi::DATA_INLINE => {
                        let len = random.below(20) as u32;
                        entries.extend_from_slice(&len.to_le_bytes());
                        entries.extend(std::iter::repeat_n(b'x', len as usize));
                    }
                    abi::DATA_INPUT_RANGE => {
                        let start = random.below(input_len as u64) as u32;
                        let len = random.below((input_len - start) as u64 + 1) as u32;
                        entries.extend_from_slice(&start.to_le_bytes());
                        entries.extend_from_slice(&len.to_le_bytes());
                    }
                    _ => {}
                }
            }
            count += 1;
        }
    }
    let errors: Vec<(u32, &str)> = match random.below(4) {
        0 => vec![(random.below(records as u64) as u32, "bad record")],
        _ => Vec::new(),
    };
    area(abi::STATUS_OK, count, &entries, &errors)
}

#[test]
fn damaged_answers_are_refused_or_make_valid_batches_never_a_panic() {
    let kinds =
        [ModuleKind::Filter, ModuleKind::Map, ModuleKind::FilterMap, ModuleKind::ArrayMap, ModuleKind::Aggregate];
    let mut random = Lcg(0x0123_4567_89ab_cdef);
    let (mut accepted, mut refused) = (0u32, 0u32);
    for round in 0..100_000u32 {
        let input = input(&mut random);
        let records = RecordIndex::new(&input).unwrap();
        let kind = kinds[round as usize % kinds.len()];
        let layout = 1 + (round / kinds.len() as u32) % 2;
        let (mut answer, expected) = match layout {
            abi::ANSWER_LAYOUT_1 => (answer(&mut random, kind, records.len() as u32, input.len() as u32), None),
            _ => {
                let (answer, expected) = answer_in_layout_2(&mut random, kind, &input, &records);
                (answer, Some(expected))
            }
        };
        // A third of the answers stay valid; the rest are damaged, some
        // several times.
        let mut damaged = false;
        for _ in 0..random.below(4) {
            if random.below(3) != 0 {
                damage(&mut random, &mut answer);
                damaged = true;
            }
        }
        let mut memory: Vec<u8> = (0..random.below(64)).map(|_| random.below(256) as u8).collect();
        let ptr = memory.len() as u32;
        memory.extend_from_slice(&answer);
        memory.extend((0..random.below(64)).map(|_| random.below(256) as u8));
        let (ptr, len) = match random.below(10) {
            0 => {
                damaged = true;
                (random.below(1 << 32) as u32, random.below(1 << 32) as u32)
            }
            _ => (ptr, answer.len() as u32),
        };
        let decoded =
            decode_output(kind, layout, &memory, abi::pack_location(ptr, len), &input, &records, MEMORY_LIMIT);
        if let (false, Some(expected)) = (damaged, &expected) {
            let decoded = decoded.as_ref().unwrap_or_else(|error| panic!("round {round}: a valid answer: {error:?}"));
            assert_eq!(&decoded.batch[abi::BATCH_HEADER_LEN..], &expected[..], "round {round}: {kind} records");
        }
        match decoded {
            Ok(decoded) => {
                accepted += 1;
                assert!(decoded.batch.len() <= input.len() + MEMORY_LIMIT as usize, "round {round}: over budget");
                let batch = Batch::from_bytes(Batch::seal_host_written(decoded.batch).into_bytes())
                    .unwrap_or_else(|error| panic!("round {round}: an accepted answer made a bad batch: {error}"));
                assert_eq!(batch.records().count() as u32, decoded.records_out, "round {round}");
                assert_eq!(batch.base_offset(), records.header().base_offset, "round {round}");
            }
            Err(OutputError::Invalid(_) | OutputError::BadInput(_)) => refused += 1,
        }
    }
    assert!(accepted > 20_000 && refused > 20_000, "accepted {accepted}, refused {refused}");
}

#[test]
fn a_module_that_cannot_read_its_input_says_why() {
    let input = BatchBuilder::new(0, 0).finish().into_bytes();
    let records = RecordIndex::new(&input).unwrap();
    let answer = area(abi::STATUS_BAD_INPUT, 0, &[], &[(abi::NO_RECORD, "truncated header")]);
    let error =
        decode_output(ModuleKind::Map, 2, &answer, abi::pack_location(0, answer.len() as u32), &input, &records, 1)
            .unwrap_err();
    assert_eq!(error, OutputError::BadInput("truncated header".into()));
}

#[test]
fn an_array_map_that_repeats_a_record_past_the_budget_is_refused() {
    // References of four bytes, each to the same 1 KiB record: 4 KiB of
    // entries ask for a megabyte, against a budget of the input plus 64 KiB.
    let mut builder = BatchBuilder::new(0, 0);
    builder.push_value(None, &[b'v'; 1024]);
    let input = builder.finish().into_bytes();
    let records = RecordIndex::new(&input).unwrap();
    let entries: Vec<u8> = (0..1024).flat_map(|_| abi::RECORD_REFERENCE.to_le_bytes()).collect();
    let answer = area(abi::STATUS_OK, 1024, &entries, &[]);
    let location = abi::pack_location(0, answer.len() as u32);
    let error = decode_output(ModuleKind::ArrayMap, 2, &answer, location, &input, &records, MEMORY_LIMIT).unwrap_err();
    match error {
        OutputError::Invalid(error) => assert!(error.reason.contains("the output grew past"), "{error:?}"),
        other => panic!("expected the output budget to stop it, got {other:?}"),
    }
    // Within the budget, the same repeats are an array-map's right.
    let few = area(abi::STATUS_OK, 8, &entries[..32], &[]);
    let decoded = decode_output(
        ModuleKind::ArrayMap,
        2,
        &few,
        abi::pack_location(0, few.len() as u32),
        &input,
        &records,
        MEMORY_LIMIT,
    )
    .unwrap();
    assert_eq!(decoded.records_out, 8);
    assert_eq!(decoded.last_value.as_deref(), Some(&[b'v'; 1024][..]));
}

#[test]
fn a_record_without_headers_that_carries_bytes_after_its_value_is_refused() {
    // The source has no headers, so the output record's stamp (offset
    // delta, timestamp delta, no headers) matches it; the bytes after the
    // value are headers the source does not have.
    let mut builder = BatchBuilder::new(0, 0);
    builder.push_value(None, b"source");
    let input = builder.finish().into_bytes();
    let records = RecordIndex::new(&input).unwrap();
    let source = records.view(&input, 0).unwrap();
    let decode = |trailing: &[u8]| {
        let mut entries = Vec::new();
        encode_record(&mut entries, source.offset_delta, source.timestamp_delta, None, b"mapped", 0, trailing);
        let answer = area(abi::STATUS_OK, 1, &entries, &[]);
        let location = abi::pack_location(0, answer.len() as u32);
        decode_output(ModuleKind::Map, 2, &answer, location, &input, &records, MEMORY_LIMIT)
    };
    assert_eq!(decode(&[]).unwrap().last_value.as_deref(), Some(&b"mapped"[..]));
    match decode(b"\x00\x00\x00\x01k") {
        Err(OutputError::Invalid(error)) => {
            assert!(error.reason.contains("the output of no input record"), "{error:?}")
        }
        other => panic!("expected the record to be refused, got {other:?}"),
    }
}
