//! Writes the seed corpus of every target into `fuzz/corpus/TARGET/`:
//! small valid inputs the fuzzer mutates from. Run by scripts/fuzz.sh
//! before fuzzing; the files are in the repository too. Built like the
//! targets (instrumented, so linked with libFuzzer): it does its work in
//! libFuzzer's start-up hook and exits there.
#![no_main]
// The start-up hook exits, so the target after it is never reached.
#![allow(unreachable_code)]

use std::path::Path;

use fluvio_protocol::frame::encode;
use fluvio_protocol::messages::*;
use fluvio_protocol::requests::*;
use fluvio_protocol::{ApiKind, Batch, BatchBuilder, Compression, Frame, OffsetSpec};
use smartmodule_abi::abi;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn output_area(status: u32, entry_count: u32, entries: &[u8], errors: &[u8], error_count: u32) -> Vec<u8> {
    let mut area = Vec::new();
    for field in [status, 0, 0, entry_count, error_count, entries.len() as u32] {
        area.extend_from_slice(&field.to_le_bytes());
    }
    area.extend_from_slice(entries);
    area.extend_from_slice(errors);
    area
}

fn output_input(kind: u8, area: &[u8]) -> Vec<u8> {
    let mut input = vec![kind];
    input.extend_from_slice(&0u32.to_le_bytes());
    input.extend_from_slice(&(area.len() as u32).to_le_bytes());
    input.extend_from_slice(area);
    input
}

fn write_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let batch = fluvio_fuzz::seed_batch();

    // Frames: a produce with its batch, a stream request, an error.
    let produce = ProduceRequest { topic: "orders".into(), partition: 0, producer: None, follows: None, batch: batch.clone() };
    let fetch = StreamFetchRequest {
        topic: "orders".into(),
        partition: 0,
        offset: OffsetSpec::Beginning,
        continuous: true,
        chain: Vec::new(),
        policy: Default::default(),
        max_bytes: 1 << 20,
        consumer_id: None,
    };
    let frames = [
        Frame::request(1, produce.clone()),
        Frame::request(2, fetch.clone()),
        Frame::new(
            ApiKind::Error as u16 | 0x8000,
            0,
            &ErrorResponse { code: ErrorCode::BadFrame, message: "x".into() },
            Vec::new(),
        ),
    ];
    for (n, frame) in frames.iter().enumerate() {
        let mut bytes = frame.head();
        bytes.extend_from_slice(&frame.payload);
        write(&dir, "frame", &format!("frame-{n}"), &bytes[4..]);
    }

    // What a connection sends before login: an Authenticate with a wrong
    // token, then a request it may not send yet; a stream request alone.
    let mut before_login = Vec::new();
    for frame in [
        Frame::request(1, AuthenticateRequest { token: "not-the-token".into() }),
        Frame::request(2, ListTopicsRequest),
    ] {
        before_login.extend_from_slice(&frame.head());
        before_login.extend_from_slice(&frame.payload);
    }
    write(&dir, "pre_login", "authenticate-then-list", &before_login);
    let fetch_frame = Frame::request(3, fetch.clone());
    let mut bytes = fetch_frame.head();
    bytes.extend_from_slice(&fetch_frame.payload);
    write(&dir, "pre_login", "stream-fetch", &bytes);

    // Control messages, each behind its selector byte.
    let messages: Vec<(u8, Vec<u8>)> = vec![
        (
            0,
            encode(&CreateTopicRequest {
                name: "t".into(),
                partitions: 3,
                replication: 1,
                retention: Default::default(),
            }),
        ),
        (1, encode(&DeleteTopicRequest { name: "t".into(), force: false })),
        (2, encode(&produce)),
        (3, encode(&fetch)),
        (10, encode(&AuthenticateRequest { token: "0123456789abcdef".into() })),
        (11, encode(&StreamEvent::Batch { next_offset: 7 })),
    ];
    for (which, bytes) in messages {
        let mut input = vec![which];
        input.extend_from_slice(&bytes);
        write(&dir, "requests", &format!("message-{which}"), &input);
    }

    // Batches: plain and in every codec.
    write(&dir, "batch", "plain", &batch);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let compressed = Batch::from_bytes(batch.clone()).unwrap().compressed(codec).into_bytes();
        write(&dir, "batch", &format!("{codec:?}"), &compressed);
    }
    let mut empty = BatchBuilder::new(5, 0);
    empty.push_value(None, b"");
    write(&dir, "batch", "one-empty-record", &empty.finish().into_bytes());

    // Setup blobs: no params; params, an accumulator, a look-back and the
    // answer layout offered.
    let mut blob = 0u32.to_le_bytes().to_vec();
    blob.extend_from_slice(&(-1i32).to_le_bytes());
    blob.push(0);
    write(&dir, "setup", "empty", &blob);
    let mut blob = 2u32.to_le_bytes().to_vec();
    abi::encode_header(&mut blob, b"key", b"value");
    abi::encode_header(&mut blob, b"regex", b"[0-9]+");
    blob.extend_from_slice(&3i32.to_le_bytes());
    blob.extend_from_slice(b"acc");
    blob.push(1);
    blob.extend_from_slice(&10u64.to_le_bytes());
    blob.extend_from_slice(&(-1i64).to_le_bytes());
    blob.extend_from_slice(&abi::ANSWER_LAYOUT_2.to_le_bytes());
    write(&dir, "setup", "full", &blob);

    // Output areas: a filter keeping three records, a map with inline and
    // input-range values, a record error, a bad-input answer.
    let mut entries = Vec::new();
    for index in [0u32, 2, 5] {
        entries.extend_from_slice(&index.to_le_bytes());
    }
    write(&dir, "output", "filter", &output_input(0, &output_area(abi::STATUS_OK, 3, &entries, &[], 0)));
    let mut entries = Vec::new();
    for index in 0..4u32 {
        entries.extend_from_slice(&index.to_le_bytes());
        entries.extend_from_slice(&[abi::DATA_NONE, abi::DATA_INLINE, 0, 0]);
        entries.extend_from_slice(&3u32.to_le_bytes());
        entries.extend_from_slice(b"NEW");
    }
    entries.extend_from_slice(&4u32.to_le_bytes());
    entries.extend_from_slice(&[abi::DATA_INPUT_RANGE, abi::DATA_INPUT_RANGE, 0, 0]);
    for field in [70u32, 2, 72, 8] {
        entries.extend_from_slice(&field.to_le_bytes());
    }
    let mut errors = 6u32.to_le_bytes().to_vec();
    for text in [&b"Error"[..], b"bad record"] {
        errors.extend_from_slice(&(text.len() as u32).to_le_bytes());
        errors.extend_from_slice(text);
    }
    write(&dir, "output", "map", &output_input(1, &output_area(abi::STATUS_OK, 5, &entries, &errors, 1)));
    write(&dir, "output", "array-map", &output_input(3, &output_area(abi::STATUS_OK, 5, &entries, &[], 0)));
    write(&dir, "output", "bad-input", &output_input(2, &output_area(abi::STATUS_BAD_INPUT, 0, &[], &errors, 1)));

    // The same in answer layout 2 (bit 6 of the first byte, whose value
    // modulo 5 is the kind): a filter's bitmap, and a map's records (the
    // seed batch's with new values), one of them a reference.
    let records: Vec<_> = abi::RecordIter::new(&batch).unwrap().1.map(Result::unwrap).collect();
    let mut bitmap = vec![0u8; records.len().div_ceil(8)];
    for index in [0usize, 2, 5] {
        bitmap[index / 8] |= 1 << (index % 8);
    }
    write(&dir, "output", "filter-layout-2", &output_input(0x41, &output_area(abi::STATUS_OK, 3, &bitmap, &[], 0)));
    let mut entries = Vec::new();
    for (index, record) in records.iter().enumerate() {
        if index == 1 {
            entries.extend_from_slice(&(abi::RECORD_REFERENCE | 1).to_le_bytes());
            continue;
        }
        let headers = &batch[record.headers.0..record.headers.0 + record.headers.1];
        let key = record.key.map(|(start, len)| &batch[start..start + len]);
        fluvio_protocol::batch::encode_record(
            &mut entries,
            record.offset_delta,
            record.timestamp_delta,
            key,
            b"NEW",
            record.header_count,
            headers,
        );
    }
    let area = output_area(abi::STATUS_OK, records.len() as u32, &entries, &errors, 1);
    write(&dir, "output", "map-layout-2", &output_input(0x42, &area));

    // A connector config (the one in docs/connectors.md) with its secrets.
    let config = "DB_PASSWORD=secret\n\n---secrets-end---\napiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: my-sql-sink\n  type: sql-sink\n  topic: sensors\n  consumer:\n    id: my-sql-sink\n    partition: 0\n    offset: { strategy: auto, start: beginning }\n    max-bytes: 1MiB\n  producer:\n    linger: 100ms\n    batch-size: 64KiB\n    compression: gzip\n  secrets:\n    - name: DB_PASSWORD\nsql:\n  url: postgres://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/test\ntransforms:\n  - uses: my-filter\n    with: { key: value }\n";
    write(&dir, "connector_config", "sql-sink", config.as_bytes());
    let mqtt = "apiVersion: 0.2.0\nmeta:\n  version: 0.1.0\n  name: m\n  type: mqtt-source\n  topic: { name: t }\nmqtt:\n  url: mqtt://127.0.0.1:1883\n  topic: sensors/#\n";
    write(&dir, "connector_config", "mqtt-source", mqtt.as_bytes());

    // A profile file.
    let profile = "version = \"2.0\"\ncurrent_profile = \"local\"\n[profile.local]\ncluster = \"local\"\n[cluster.local]\nendpoint = \"127.0.0.1:9003\"\ntoken = \"0123456789abcdef\"\n[cluster.local.tls]\ntls_policy = \"verified\"\nca_cert = \"/etc/ca.pem\"\ndomain = \"localhost\"\n";
    write(&dir, "profile", "local", profile.as_bytes());
    println!("seed corpus written to {}", dir.display());
}

libfuzzer_sys::fuzz_target!(
    init: {
        write_seeds();
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);
