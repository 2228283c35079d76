//! The server under stress and abuse, on loopback: a killed server loses no
//! acknowledged record; many clients at once see exactly what they should;
//! malformed frames close only their own connection; a broken topic
//! settings file sets that topic aside with an error naming the file, while
//! the server serves the others, losing nothing.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ServerProcess, data_dir, from_beginning, produce, read_all, values, wasm_path};
use fluvio_client::protocol::{self, ApiKind, ErrorResponse, Frame, RESPONSE_BIT};
use fluvio_client::{ConsumerConfig, OffsetSpec, ProducerConfig, RecordKey, SmartModuleInvocation};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_record() {
    let dir = data_dir("kill9");
    let mut server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("ledger", 1).await.unwrap();

    // Produce continuously, remembering what was acknowledged, and kill the
    // server while it is busy.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fluvio, acknowledged, stop) = (fluvio.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
        tokio::spawn(async move {
            let producer = fluvio.topic_producer("ledger").await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let mut pending = Vec::new();
                for _ in 0..20 {
                    let value = format!("entry-{n:06}");
                    n += 1;
                    match producer.send(RecordKey::NULL, value.clone()).await {
                        Ok(output) => pending.push((value, output)),
                        Err(_) => return,
                    }
                }
                if producer.flush().await.is_err() {
                    return;
                }
                for (value, output) in pending {
                    match output.wait().await.map(|stored| stored.stored_offset()) {
                        Ok(Some(offset)) => acknowledged.lock().unwrap().push((offset, value)),
                        _ => return,
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 500, "only {} records were acknowledged", acknowledged.len());

    let server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    let stored = read_all(&fluvio, "ledger", from_beginning()).await;
    // Offsets are dense, in order, each record exactly once.
    for (i, record) in stored.iter().enumerate() {
        assert_eq!(record.offset, i as i64);
    }
    let stored_values = values(&stored);
    let unique: BTreeSet<&String> = stored_values.iter().collect();
    assert_eq!(unique.len(), stored_values.len(), "no record is stored twice");
    for (offset, value) in &acknowledged {
        assert_eq!(
            stored_values.get(*offset as usize),
            Some(value),
            "acknowledged record at {offset} is missing or different"
        );
    }
    // The partition still takes writes after recovery.
    let next = produce(&fluvio, "ledger", &["after-restart"]).await;
    assert_eq!(next, vec![Some(stored.len() as i64)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_consumers_and_four_producers_at_once() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 250;
    const CONSUMERS: usize = 50;
    let server = ServerProcess::start(&data_dir("concurrency"), &["--flush", "os"]);
    let fluvio = server.client().await;
    fluvio.create_topic("busy", 1).await.unwrap();
    let total = PRODUCERS * PER_PRODUCER;

    // Consumers start first and follow the topic; even ones filter on the
    // server (values with an `a`), odd ones take everything.
    let mut consumers = Vec::new();
    for c in 0..CONSUMERS {
        let fluvio = fluvio.clone();
        let filtered = c % 2 == 0;
        let mut config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: true, ..Default::default() };
        if filtered {
            config = config.smartmodule(SmartModuleInvocation::from_file(wasm_path("my-filter")).unwrap());
        }
        let mut stream = fluvio.consumer_stream("busy", config).await.unwrap();
        let expected = if filtered { total / 2 } else { total };
        consumers.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(expected);
            while seen.len() < expected {
                let record = stream.next().await.expect("stream stays open").expect("no error");
                seen.push(String::from_utf8(record.value.to_vec()).unwrap());
            }
            (filtered, seen)
        }));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let fluvio = fluvio.clone();
        producers.push(tokio::spawn(async move {
            let producer = fluvio.topic_producer("busy").await.unwrap();
            let mut outputs = Vec::new();
            for i in 0..PER_PRODUCER {
                // Half the values contain an `a`.
                let value = if i % 2 == 0 { format!("p{p}-{i:04}-a") } else { format!("p{p}-{i:04}-z") };
                outputs.push(producer.send(RecordKey::NULL, value).await.unwrap());
            }
            producer.flush().await.unwrap();
            for output in outputs {
                output.wait().await.unwrap().stored_offset().expect("stored");
            }
        }));
    }
    for producer in producers {
        tokio::time::timeout(Duration::from_secs(60), producer).await.expect("producers finish").unwrap();
    }
    let stored = values(&read_all(&fluvio, "busy", from_beginning()).await);
    assert_eq!(stored.len(), total);
    let with_a: Vec<String> = stored.iter().filter(|v| v.contains('a')).cloned().collect();
    for consumer in consumers {
        let (filtered, seen) =
            tokio::time::timeout(Duration::from_secs(60), consumer).await.expect("consumers finish").unwrap();
        // Every consumer sees exactly the stored records (or their filtered
        // subset), in the stored order.
        assert_eq!(seen, if filtered { with_a.clone() } else { stored.clone() });
    }
    // Each producer's records are in its own order.
    for p in 0..PRODUCERS {
        let prefix = format!("p{p}-");
        let mine: Vec<&String> = stored.iter().filter(|v| v.starts_with(&prefix)).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_sent_back_to_back_on_one_connection_are_stored_in_the_order_sent() {
    use protocol::requests::{ProduceRequest, ProduceResponse};
    const BATCHES: usize = 300;
    let server = ServerProcess::start(&data_dir("pipelined-order"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("in-order", 2).await.unwrap();

    // A client that does not wait for answers: every batch is on the wire
    // before the first is answered, alternating between the two partitions
    // so that the server has appends of both in flight at once.
    let mut socket = raw_connection(&server.addr).await;
    let mut frames = Vec::new();
    for n in 0..BATCHES {
        let mut batch = protocol::BatchBuilder::new(0, 0);
        batch.push_value(None, format!("{n:04}").as_bytes());
        let (partition, batch) = ((n % 2) as u32, batch.finish().into_bytes());
        let request = ProduceRequest { topic: "in-order".into(), partition, producer: None, follows: None, batch };
        Frame::request(n as u32, request).write(&mut frames).await.unwrap();
    }
    socket.write_all(&frames).await.unwrap();
    // Answers come as appends end, in any order; the offsets they carry
    // show the order of storing.
    let mut answered = BTreeSet::new();
    for _ in 0..BATCHES {
        let answer = tokio::time::timeout(Duration::from_secs(30), Frame::read(&mut socket, 1 << 20))
            .await
            .expect("answered within 30 s")
            .unwrap();
        let n = answer.correlation_id;
        assert!(answered.insert(n), "batch {n} answered once");
        let stored = answer.control::<ProduceResponse>().expect("a produce response");
        assert_eq!(stored.base_offset, (n / 2) as i64, "batch {n} got the offset after the batches sent before it");
    }
    for partition in 0..2 {
        let config = ConsumerConfig { partitions: vec![partition], ..from_beginning() };
        let expected: Vec<String> =
            (0..BATCHES).filter(|n| n % 2 == partition as usize).map(|n| format!("{n:04}")).collect();
        assert_eq!(values(&read_all(&fluvio, "in-order", config).await), expected, "partition {partition}");
    }
}

async fn raw_connection(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads the server's answer: an error frame, or the connection closing.
async fn answer(socket: &mut TcpStream) -> Option<ErrorResponse> {
    match tokio::time::timeout(Duration::from_secs(10), Frame::read(socket, protocol::DEFAULT_MAX_FRAME_BYTES)).await {
        Ok(Ok(frame)) => {
            assert_eq!(frame.kind, ApiKind::Error as u16 | RESPONSE_BIT);
            Some(frame.control().unwrap())
        }
        Ok(Err(_)) => None,
        Err(_) => panic!("the server neither answered nor closed within 10 s"),
    }
}

async fn closed(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let server = ServerProcess::start(&data_dir("malformed"), &["--max-frame-bytes", "1048576"]);
    let fluvio = server.client().await;
    fluvio.create_topic("safe", 1).await.unwrap();
    produce(&fluvio, "safe", &["one", "two"]).await;
    // A consumer that stays connected throughout.
    let mut follower = fluvio
        .consumer_stream(
            "safe",
            ConsumerConfig { offset: OffsetSpec::Beginning, continuous: true, ..Default::default() },
        )
        .await
        .unwrap();
    for _ in 0..2 {
        follower.next().await.unwrap().unwrap();
    }

    // Oversize: refused from the length prefix, before reading the body.
    let mut socket = raw_connection(&server.addr).await;
    socket.write_all(&(512u32 << 20).to_le_bytes()).await.unwrap();
    let error = answer(&mut socket).await.expect("an error answer");
    assert!(error.message.contains("exceeds the limit of 1048576 bytes"), "{}", error.message);
    assert!(closed(&mut socket).await);

    // Garbage: a length shorter than a header.
    let mut socket = raw_connection(&server.addr).await;
    socket.write_all(&[3, 0, 0, 0, 0xde, 0xad, 0xbe]).await.unwrap();
    assert!(answer(&mut socket).await.unwrap().message.contains("shorter than"));

    // Truncated: the connection closes in the middle of a frame.
    let mut socket = raw_connection(&server.addr).await;
    socket.write_all(&100u32.to_le_bytes()).await.unwrap();
    socket.write_all(&[1, 0, 4, 0]).await.unwrap();
    socket.shutdown().await.unwrap();
    let _ = answer(&mut socket).await;

    // Wrong protocol version.
    let mut socket = raw_connection(&server.addr).await;
    let mut frame = Frame::new(ApiKind::ListTopics as u16, 5, &protocol::requests::ListTopicsRequest, Vec::new());
    frame.version = 42;
    frame.write(&mut socket).await.unwrap();
    let error = answer(&mut socket).await.unwrap();
    assert!(error.message.contains("protocol version 42 is not supported"), "{}", error.message);

    // Unknown request kind: answered, and the connection stays usable.
    let mut socket = raw_connection(&server.addr).await;
    Frame::new(0x1234, 6, &protocol::requests::ListTopicsRequest, Vec::new()).write(&mut socket).await.unwrap();
    assert!(answer(&mut socket).await.unwrap().message.contains("unknown request kind 4660"));
    Frame::new(ApiKind::ListTopics as u16, 7, &protocol::requests::ListTopicsRequest, Vec::new())
        .write(&mut socket)
        .await
        .unwrap();
    let listed = Frame::read(&mut socket, protocol::DEFAULT_MAX_FRAME_BYTES).await.unwrap();
    assert_eq!(listed.kind, ApiKind::ListTopics as u16 | RESPONSE_BIT);

    // A produce with a corrupt batch is refused and stores nothing.
    let mut batch = fluvio_client::protocol::BatchBuilder::new(0, 0);
    batch.push_value(None, b"evil");
    let mut bytes = batch.finish().into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let request = protocol::requests::ProduceRequest {
        topic: "safe".into(),
        partition: 0,
        producer: None,
        follows: None,
        batch: bytes,
    };
    Frame::request(8, request).write(&mut socket).await.unwrap();
    let error = answer(&mut socket).await.unwrap();
    assert!(error.message.contains("CRC mismatch"), "{}", error.message);

    // A control part that does not decode.
    Frame {
        version: protocol::PROTOCOL_VERSION,
        kind: ApiKind::CreateTopic as u16,
        correlation_id: 9,
        control: vec![0xff; 7],
        payload: Vec::new(),
    }
    .write(&mut socket)
    .await
    .unwrap();
    assert!(answer(&mut socket).await.unwrap().message.contains("cannot decode"));

    // Everyone else is still served and nothing stored was lost.
    produce(&fluvio, "safe", &["three"]).await;
    let record = tokio::time::timeout(Duration::from_secs(10), follower.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&record.value[..], b"three");
    assert_eq!(values(&read_all(&fluvio, "safe", from_beginning()).await), ["one", "two", "three"]);
}

/// Runs the server binary on a data directory that should not open, and
/// returns its exit status and what it printed on stderr.
fn refused_start(data_dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fluvio-server"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server kept running on a corrupt data directory");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_topic_settings_and_a_broken_settings_file_is_named() {
    let dir = data_dir("settings");
    let settings = dir.join("topics").join("events").join("topic.json");
    {
        let server = ServerProcess::start(&dir, &[]);
        let fluvio = server.client().await;
        fluvio.create_topic("events", 2).await.unwrap();
        produce(&fluvio, "events", &["kept"]).await;
    }
    // Restarts, killed or not, leave the settings whole and no temporary file.
    for round in 0..3 {
        let mut server = ServerProcess::start(&dir, &[]);
        let topics = server.client().await.list_topics().await.unwrap();
        assert_eq!((topics.len(), topics[0].partitions, topics[0].next_offsets[0]), (1, 2, 1), "round {round}");
        server.kill9();
        let leftovers: Vec<_> = std::fs::read_dir(settings.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    let whole = std::fs::read(&settings).unwrap();
    for broken in [Vec::new(), whole[..whole.len() / 2].to_vec()] {
        std::fs::write(&settings, &broken).unwrap();
        // The server starts and serves the other topics; the broken one
        // answers with an error that names the file and what to do.
        let server = ServerProcess::start(&dir, &[]);
        let fluvio = server.client().await;
        fluvio.create_topic("other", 1).await.unwrap();
        produce(&fluvio, "other", &["served"]).await;
        let error = match fluvio.consumer_stream("events", from_beginning().partition(0)).await {
            Err(error) => error,
            Ok(stream) => stream.collect::<Vec<_>>().await.pop().expect("an item").expect_err("not served"),
        };
        let message = error.to_string();
        assert!(message.contains(&settings.display().to_string()), "the error names the file: {message}");
        assert!(message.contains("restore"), "the error says what to do: {message}");
        let refused = fluvio.create_topic("events", 1).await.unwrap_err();
        assert!(refused.to_string().contains("could not be opened"), "{refused}");
        fluvio.delete_topic("other").await.unwrap();
    }

    // Nothing was lost: with the file restored, the record is there.
    std::fs::write(&settings, &whole).unwrap();
    let server = ServerProcess::start(&dir, &[]);
    let fluvio = server.client().await;
    assert_eq!(values(&read_all(&fluvio, "events", from_beginning()).await), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cache_others_can_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = data_dir("cache-permissions");
    let cache = dir.join("module-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, stderr) = refused_start(&dir);
    assert!(!status.success());
    assert!(stderr.contains("module-cache") && stderr.contains("writable by other users (mode 777)"), "{stderr}");
    assert!(stderr.contains("chmod 700"), "{stderr}");

    // Made private, the same directory serves.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = ServerProcess::start(&dir, &[]);
    server.client().await.create_topic("fine", 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_larger_than_a_control_message_reaches_the_consumer() {
    let server = ServerProcess::start(&data_dir("big-dead-letter"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("big", 1).await.unwrap();
    // 20 MiB: more than the 16 MiB a control message may hold.
    let mut big = b"panic".to_vec();
    big.resize(20 << 20, b'x');
    let config = ProducerConfig { max_request_size: 32 << 20, ..Default::default() };
    let producer = fluvio.topic_producer_with("big", config).await.unwrap();
    producer.send(RecordKey::NULL, big.clone()).await.unwrap();
    producer.send(RecordKey::NULL, b"after".to_vec()).await.unwrap();
    producer.flush().await.unwrap();

    let config = ConsumerConfig {
        policy: protocol::ErrorPolicy::DeadLetter,
        ..from_beginning().smartmodule(SmartModuleInvocation::adhoc("hostile-panic", common::wasm("hostile-panic")))
    };
    let stream = fluvio.consumer_stream("big", config).await.unwrap();
    let items =
        tokio::time::timeout(Duration::from_secs(60), stream.collect::<Vec<_>>()).await.expect("the stream ends");
    assert_eq!(items.len(), 2, "the dead letter, then the good record");
    match &items[0] {
        Err(fluvio_client::FluvioError::DeadLetter(failure)) => {
            assert_eq!((failure.offset, failure.value.len()), (0, 20 << 20));
            assert_eq!(failure.value, big);
        }
        other => panic!("expected the dead letter, got {:?}", other.as_ref().map(|r| r.offset)),
    }
    assert_eq!(&items[1].as_ref().unwrap().value[..], b"after");
}
