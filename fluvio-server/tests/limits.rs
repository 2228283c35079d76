//! The server's resource limits, each hit on purpose against a real server
//! process on loopback: the client that hits one gets an error naming it,
//! and the server goes on serving everyone else.

mod common;

use std::time::{Duration, Instant};

use common::{ServerProcess, data_dir, from_beginning, produce, read_all, values};
use fluvio_client::protocol::{self, ApiKind, ErrorCode, ErrorResponse, Frame, RESPONSE_BIT};
use fluvio_client::{ConsumerConfig, Fluvio, FluvioError, OffsetSpec, SmartModuleInvocation};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn module(name: &str) -> SmartModuleInvocation {
    SmartModuleInvocation::adhoc(name, common::wasm(name))
}

/// The error a consumer stream ends with: at its start, or as its first
/// item.
async fn stream_error(fluvio: &Fluvio, topic: &str, config: ConsumerConfig) -> FluvioError {
    match fluvio.consumer_stream(topic, config).await {
        Err(error) => error,
        Ok(mut stream) => match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Err(error))) => error,
            other => {
                panic!("expected the stream to fail, got {:?}", other.map(|item| item.map(|r| r.map(|r| r.offset))))
            }
        },
    }
}

/// A continuous stream that has started (its first record arrived).
async fn running_stream(fluvio: &Fluvio, topic: &str, config: ConsumerConfig) -> fluvio_client::RecordStream {
    let mut stream = fluvio.consumer_stream(topic, ConsumerConfig { continuous: true, ..config }).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("a record within 30 s");
    first.expect("the stream yields").expect("a record");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_chains_and_smartmodule_memory_are_limited() {
    let server = ServerProcess::start(
        &data_dir("limits-streams"),
        &[
            "--max-streams-per-connection",
            "2",
            "--max-chain-length",
            "2",
            "--smartmodule-memory-bytes",
            "33554432",
            "--smartmodule-memory-total",
            "67108864",
        ],
    );
    let fluvio = server.client().await;
    fluvio.create_topic("t", 1).await.unwrap();
    produce(&fluvio, "t", &["alpha", "plum", "gamma"]).await;

    // A chain of three is refused; two is fine.
    let three = from_beginning()
        .smartmodule(module("my-filter"))
        .smartmodule(module("uppercase-map"))
        .smartmodule(module("my-filter"));
    let error = stream_error(&fluvio, "t", three).await;
    assert_eq!(error.code(), Some(ErrorCode::LimitReached), "{error}");
    assert!(error.to_string().contains("--max-chain-length"), "{error}");
    let two = from_beginning().smartmodule(module("my-filter")).smartmodule(module("uppercase-map"));
    assert_eq!(values(&read_all(&fluvio, "t", two.clone()).await), ["ALPHA", "GAMMA"]);

    // Two running modules reserve the whole 64 MiB: a third is refused
    // until one of them stops.
    let first = running_stream(&fluvio, "t", from_beginning().smartmodule(module("uppercase-map"))).await;
    let other_client = server.client().await;
    let second = running_stream(&other_client, "t", from_beginning().smartmodule(module("uppercase-map"))).await;
    let third_client = server.client().await;
    let error = stream_error(&third_client, "t", from_beginning().smartmodule(module("uppercase-map"))).await;
    assert_eq!(error.code(), Some(ErrorCode::LimitReached), "{error}");
    assert!(error.to_string().contains("--smartmodule-memory-total"), "{error}");
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let config = from_beginning().smartmodule(module("uppercase-map"));
        match third_client.consumer_stream("t", config).await {
            Ok(stream) => {
                let items: Vec<_> = stream.collect().await;
                if items.iter().all(Result::is_ok) {
                    assert_eq!(items.len(), 3);
                    break;
                }
            }
            Err(error) => assert_eq!(error.code(), Some(ErrorCode::LimitReached), "{error}"),
        }
        assert!(Instant::now() < deadline, "the memory of a closed stream was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two streams on one connection (the SDK opens a connection per
    // stream, so this client speaks the protocol itself); a third on it is
    // refused, while other connections are not affected.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    for id in 1..=3u32 {
        open_raw_stream(&mut socket, id, "t").await;
    }
    let refusal = loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), Frame::read(&mut socket, protocol::DEFAULT_MAX_FRAME_BYTES))
                .await
                .expect("frames within 10 s")
                .unwrap();
        if frame.kind == ApiKind::Error as u16 | RESPONSE_BIT {
            break frame;
        }
        assert!(frame.correlation_id <= 2, "the third stream was served");
    };
    assert_eq!(refusal.correlation_id, 3);
    let error: ErrorResponse = refusal.control().unwrap();
    assert_eq!(error.code, ErrorCode::LimitReached);
    assert!(error.message.contains("--max-streams-per-connection"), "{}", error.message);
    assert_eq!(values(&read_all(&other_client, "t", from_beginning()).await), ["alpha", "plum", "gamma"]);
    drop(first);
}

/// Asks for a continuous stream of partition 0 of `topic` from the
/// beginning, with no SmartModule, as correlation `id`.
async fn open_raw_stream(socket: &mut TcpStream, id: u32, topic: &str) {
    let request = protocol::requests::StreamFetchRequest {
        topic: topic.into(),
        partition: 0,
        offset: OffsetSpec::Beginning,
        max_bytes: 1 << 20,
        consumer_id: None,
        continuous: true,
        chain: Vec::new(),
        policy: Default::default(),
    };
    Frame::new(ApiKind::StreamFetch as u16, id, &request, Vec::new()).write(socket).await.unwrap();
}

async fn request_topics(socket: &mut TcpStream) -> Option<Frame> {
    let request = Frame::new(ApiKind::ListTopics as u16, 7, &protocol::requests::ListTopicsRequest, Vec::new());
    request.write(socket).await.ok()?;
    tokio::time::timeout(Duration::from_secs(10), Frame::read(socket, protocol::DEFAULT_MAX_FRAME_BYTES))
        .await
        .expect("an answer or a close within 10 s")
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_told_why_and_closed() {
    let server = ServerProcess::start(&data_dir("limits-connections"), &["--max-connections", "2"]);
    let mut first = TcpStream::connect(&server.addr).await.unwrap();
    let mut second = TcpStream::connect(&server.addr).await.unwrap();
    assert!(request_topics(&mut first).await.is_some());
    assert!(request_topics(&mut second).await.is_some());

    let mut third = TcpStream::connect(&server.addr).await.unwrap();
    let answer = request_topics(&mut third).await.expect("an answer before the close");
    assert_eq!(answer.kind, ApiKind::Error as u16 | RESPONSE_BIT);
    let error: ErrorResponse = answer.control().unwrap();
    assert_eq!(error.code, ErrorCode::LimitReached);
    assert!(error.message.contains("--max-connections"), "{}", error.message);
    let mut byte = [0u8; 1];
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), third.read(&mut byte)).await.unwrap().unwrap(), 0);

    // Once one closes, a new connection is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = TcpStream::connect(&server.addr).await.unwrap();
        let answer = request_topics(&mut again).await.expect("an answer");
        if answer.kind == ApiKind::ListTopics as u16 | RESPONSE_BIT {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection was never counted out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_sdk_carries_on() {
    let server = ServerProcess::start(&data_dir("limits-idle"), &["--idle-timeout-secs", "1"]);
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the idle connection was not closed: {read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the idle timeout");

    // An SDK client whose connection was closed for idleness reconnects on
    // its next request.
    let fluvio = server.client().await;
    fluvio.create_topic("after-idle", 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bounded = Duration::from_secs(30);
    tokio::time::timeout(bounded, fluvio.list_topics()).await.expect("a request after an idle close").unwrap();
    tokio::time::timeout(bounded, produce(&fluvio, "after-idle", &["still", "here"])).await.expect("produce");
    assert_eq!(values(&read_all(&fluvio, "after-idle", from_beginning()).await), ["still", "here"]);

    // A connection with an open stream is not idle, however quiet.
    let mut stream = fluvio
        .consumer_stream(
            "after-idle",
            ConsumerConfig { offset: OffsetSpec::End, continuous: true, ..Default::default() },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producer_client = server.client().await;
    produce(&producer_client, "after-idle", &["later"]).await;
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&next.value[..], b"later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let server = ServerProcess::start(
        &data_dir("limits-slow-reader"),
        &["--max-queued-bytes", "1048576", "--write-timeout-secs", "2"],
    );
    let fluvio = server.client().await;
    fluvio.create_topic("big", 1).await.unwrap();
    let producer = fluvio.topic_producer("big").await.unwrap();
    let value = vec![b'x'; 16 << 10];
    for _ in 0..4096 {
        producer.send(fluvio_client::RecordKey::NULL, value.clone()).await.unwrap();
    }
    producer.flush().await.unwrap();

    // 64 MiB to stream; the client asks and then reads nothing.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    open_raw_stream(&mut socket, 1, "big").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The server gave up: what it had written is there, then the end,
    // well short of the 64 MiB.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let read_all_of_it = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(read_all_of_it.is_ok(), "the server kept the connection of a client that does not read");
    assert!(received < 48 << 20, "{received} bytes arrived; the server should have stopped writing");
    // Everyone else is served.
    assert_eq!(
        read_all(&fluvio, "big", ConsumerConfig { offset: OffsetSpec::FromEnd(1), ..from_beginning() }).await.len(),
        1
    );
}

/// CPU time (user + system) the process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    dev_support::cpu_time(std::path::Path::new(&format!("/proc/{pid}/stat"))).expect("the server runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_stops_running_when_its_consumer_goes_away() {
    // Fuel and time limits far beyond the test: only the consumer leaving
    // can stop the endless module.
    let server = ServerProcess::start(
        &data_dir("limits-cancel"),
        &["--smartmodule-fuel", "1000000000000000", "--smartmodule-call-ms", "3600000"],
    );
    let fluvio = server.client().await;
    fluvio.create_topic("spin", 1).await.unwrap();
    produce(&fluvio, "spin", &["x"]).await;
    let consumer = server.client().await;
    let stream =
        consumer.consumer_stream("spin", from_beginning().smartmodule(module("hostile-infinite-loop"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.pid();
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(cpu_time(pid) - before > Duration::from_millis(500), "the module was not running");
    drop(stream);
    drop(consumer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    assert!(spent < Duration::from_millis(500), "the server used {spent:?} of CPU in 2 s after the consumer left");
    assert_eq!(values(&read_all(&fluvio, "spin", from_beginning()).await), ["x"]);
}

/// The most resident memory the process has had, from `/proc/PID/status`.
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("a VmHWM line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB");
    kib << 10
}

/// Ad hoc modules arrive compressed and stay so until the request has
/// passed its checks: a request of a few MiB naming twenty modules that
/// each inflate to 64 MiB is refused for its chain length without one of
/// them inflated, and the modules of one chain inflate to 64 MiB in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_modules_are_not_inflated_before_the_request_is_checked() {
    let server = ServerProcess::start(&data_dir("limits-gzip-bombs"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("t", 1).await.unwrap();
    let bomb = protocol::Compression::Gzip.compress(&vec![0u8; protocol::MAX_WASM_BYTES as usize]);
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    // Handed over compressed, the bytes travel as they are.
    let bomb = |name: &str| SmartModuleInvocation::adhoc(name, bomb.clone());
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    let fetch = |id: u32, topic: &str, chain: Vec<SmartModuleInvocation>| {
        let request = protocol::requests::StreamFetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: OffsetSpec::Beginning,
            max_bytes: 1 << 20,
            consumer_id: None,
            continuous: false,
            chain,
            policy: Default::default(),
        };
        Frame::new(ApiKind::StreamFetch as u16, id, &request, Vec::new())
    };
    let answer = |frame: Frame| frame.control::<ErrorResponse>().expect("an error answer");

    // Twenty bombs (1.25 GiB inflated), to a topic that exists and one that
    // does not.
    for (id, topic) in [(1, "t"), (2, "missing")] {
        let chain = (0..20).map(|i| bomb(&format!("bomb-{i}"))).collect();
        fetch(id, topic, chain).write(&mut socket).await.unwrap();
        let error = answer(Frame::read(&mut socket, u32::MAX).await.unwrap());
        assert!(matches!(error.code, ErrorCode::LimitReached | ErrorCode::TopicNotFound), "{error:?}");
    }
    // A real module, then a bomb: the bomb would take the chain past what
    // its modules may inflate to.
    let filter = module("my-filter");
    fetch(3, "t", vec![filter, bomb("bomb")]).write(&mut socket).await.unwrap();
    let error = answer(Frame::read(&mut socket, u32::MAX).await.unwrap());
    assert!(error.message.contains("`bomb`") && error.message.contains("in all"), "{error:?}");

    let peak = peak_resident_bytes(server.pid());
    assert!(peak < 400 << 20, "the server's resident memory peaked at {} MiB", peak >> 20);
    // Still serving.
    produce(&fluvio, "t", &["alpha"]).await;
    assert_eq!(values(&read_all(&fluvio, "t", from_beginning()).await), ["alpha"]);
}

/// A zstd batch of a few KiB that inflates to 256 MiB of zeros, with a
/// header that says so, as a hostile producer would send it.
fn zstd_bomb() -> Vec<u8> {
    use protocol::abi;
    let records = vec![0u8; protocol::compression::MAX_DECOMPRESSED_BATCH_BYTES];
    let packed = protocol::Compression::Zstd.compress(&records);
    let mut bytes = protocol::BatchBuilder::new(0, 0).finish().into_bytes();
    bytes.truncate(abi::BATCH_HEADER_LEN);
    bytes.extend_from_slice(&packed);
    let len = bytes.len() as u32;
    bytes[abi::BATCH_LEN_AT..abi::BATCH_LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
    bytes[abi::BATCH_ATTRIBUTES_AT] = protocol::Compression::Zstd.code();
    bytes[abi::BATCH_RECORD_COUNT_AT..abi::BATCH_RECORD_COUNT_AT + 4].copy_from_slice(&1u32.to_le_bytes());
    // The CRC is right: only the inflated size is hostile.
    protocol::Batch::seal_host_written(bytes).into_bytes()
}

/// Compressed batches are inflated at most so many times their size, off
/// the runtime's threads and within one budget: sixteen connections each
/// sending a zstd bomb at once get `InvalidBatch`, the server's memory stays
/// bounded, and an honest producer is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_within_their_ratio() {
    let server = ServerProcess::start(&data_dir("limits-zstd-bombs"), &[]);
    let fluvio = server.client().await;
    fluvio.create_topic("t", 1).await.unwrap();
    let bomb = zstd_bomb();
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let mut senders = Vec::new();
    for id in 0..16u32 {
        let (addr, batch) = (server.addr.clone(), bomb.clone());
        senders.push(tokio::spawn(async move {
            let mut socket = TcpStream::connect(&addr).await.unwrap();
            let request = protocol::requests::ProduceRequest {
                topic: "t".into(),
                partition: 0,
                producer: None,
                follows: None,
                batch,
            };
            Frame::request(id, request).write(&mut socket).await.unwrap();
            let answer = Frame::read(&mut socket, u32::MAX).await.unwrap();
            answer.control::<ErrorResponse>().expect("an error answer")
        }));
    }
    produce(&fluvio, "t", &["honest"]).await;
    for sender in senders {
        let error = sender.await.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidBatch, "{}", error.message);
        assert!(error.message.contains("times its size"), "{}", error.message);
    }
    let peak = peak_resident_bytes(server.pid());
    assert!(peak < 400 << 20, "the server's resident memory peaked at {} MiB", peak >> 20);
    assert_eq!(values(&read_all(&fluvio, "t", from_beginning()).await), ["honest"]);
}

/// Under a low open-file limit the server takes only the partitions whose
/// files fit beside its connections: with every one of them created and
/// written, new connections are still accepted and served, everything
/// reads back, and a restart under the same limit opens it all again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_partitions_under_a_low_open_file_limit_leave_accept_working() {
    const FILES: u64 = 512;
    let data = data_dir("limits-ulimit");
    let args = ["--max-connections", "64", "--max-pre-login-connections", "64"];
    let mut server = ServerProcess::start_with_open_file_limit(&data, FILES, &args);
    let admin = server.client().await;
    // Topics of eight partitions, then of one, until the server refuses.
    let mut topics: Vec<(String, u32)> = Vec::new();
    for partitions in [8, 1] {
        loop {
            let name = format!("t{}", topics.len());
            match admin.create_topic(&name, partitions).await {
                Ok(()) => topics.push((name, partitions)),
                Err(error) => {
                    assert!(error.to_string().contains("ulimit -n"), "{error}");
                    break;
                }
            }
            assert!(topics.len() < 1000, "a limit of {FILES} files bounds the partitions");
        }
    }
    let total: u32 = topics.iter().map(|(_, partitions)| partitions).sum();
    assert!(total >= 32, "only {total} partitions within {FILES} files");
    // Every partition written: its segment, index and journal are open.
    for (name, partitions) in &topics {
        for partition in 0..*partitions {
            let config = fluvio_client::ProducerConfig { partition: Some(partition), ..Default::default() };
            let producer = admin.topic_producer_with(name, config).await.unwrap();
            producer.send(fluvio_client::RecordKey::NULL, format!("{name}/{partition}")).await.unwrap();
            producer.flush().await.unwrap();
        }
    }
    // New connections, up to the limit, are accepted and served.
    let mut clients = Vec::new();
    for _ in 0..60 {
        let client = tokio::time::timeout(Duration::from_secs(10), Fluvio::connect_to(&server.addr))
            .await
            .expect("accepted in time")
            .expect("accepted");
        assert_eq!(client.list_topics().await.unwrap().len(), topics.len());
        clients.push(client);
    }
    let reader = clients.last().unwrap();
    for (name, partitions) in &topics {
        for partition in 0..*partitions {
            let config = ConsumerConfig { partitions: vec![partition], ..from_beginning() };
            assert_eq!(values(&read_all(reader, name, config).await), [format!("{name}/{partition}")]);
        }
    }
    drop((clients, admin));
    // A restart under the same limit opens every partition again.
    server.kill9();
    let server = ServerProcess::start_with_open_file_limit(&data, FILES, &args);
    let client = server.client().await;
    let (name, partitions) = topics.last().unwrap();
    let config = ConsumerConfig { partitions: vec![partitions - 1], ..from_beginning() };
    assert_eq!(values(&read_all(&client, name, config).await), [format!("{name}/{}", partitions - 1)]);
    assert_eq!(client.list_topics().await.unwrap().len(), topics.len());
}
