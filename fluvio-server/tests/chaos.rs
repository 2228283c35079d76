//! A bounded chaos soak on loopback: producers, a consumer through a
//! SmartModule chain, a client sending garbage frames and consumers with
//! hostile modules, all at once, while the server is killed with SIGKILL
//! and restarted at random. Afterwards every acknowledged record is stored
//! exactly once, at its acknowledged offset and in its producer's order,
//! and the consumer saw each of its records once, in order, with no gap.
//!
//! It runs for `CHAOS_SECS` seconds (default 45).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerProcess, data_dir, from_beginning, read_all, wasm_path};
use dev_support::services::free_port;
use fluvio_client::protocol::ErrorCode;
use fluvio_client::{ConsumerConfig, Fluvio, OffsetSpec, RecordKey, SmartModuleInvocation};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "chaos";
const PRODUCERS: usize = 2;

/// A small, seedable generator: the run's seed is printed, so a failure
/// can be replayed with `CHAOS_SEED`.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Value of record `sequence` of producer `producer`; every other one
/// contains an `a`, which the consumer's filter keeps.
fn value(producer: usize, sequence: u64) -> String {
    format!("p{producer}-{sequence:07}-{}", if sequence.is_multiple_of(2) { "kept-a" } else { "dropped" })
}

fn parse(value: &str) -> (usize, u64) {
    let mut parts = value.split('-');
    let producer = parts.next().unwrap().trim_start_matches('p').parse().unwrap();
    let sequence = parts.next().unwrap().parse().unwrap();
    (producer, sequence)
}

async fn connect(addr: &str) -> Fluvio {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Fluvio::connect_to(addr).await {
            Ok(fluvio) => return fluvio,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no server at {addr} for 60 s: {error}"),
        }
    }
}

/// Produces until told to stop; records `(offset, value)` of every
/// acknowledged record. A failed send is not acknowledged (it may or may
/// not be stored); the producer starts again with the next sequence.
async fn produce(addr: String, id: usize, stop: Arc<AtomicBool>, acknowledged: Arc<Mutex<Vec<(i64, String)>>>) {
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let fluvio = connect(&addr).await;
        let Ok(producer) = fluvio.topic_producer(TOPIC).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        'batches: while !stop.load(Ordering::Relaxed) {
            let mut pending = Vec::new();
            for _ in 0..25 {
                let value = value(id, sequence);
                sequence += 1;
                match producer.send(RecordKey::NULL, value.clone()).await {
                    Ok(output) => pending.push((value, output)),
                    Err(_) => break 'batches,
                }
            }
            let _ = producer.flush().await;
            for (value, output) in pending {
                match output.wait().await.map(|stored| stored.stored_offset()) {
                    Ok(Some(offset)) => acknowledged.lock().unwrap().push((offset, value)),
                    _ => break 'batches,
                }
            }
        }
    }
}

/// Consumes through `keep-a` then `upper` from the beginning, resuming
/// after the last delivered offset whenever the stream ends with an error.
async fn consume(addr: String, stop: Arc<AtomicBool>, delivered: Arc<Mutex<Vec<(i64, String)>>>) {
    let chain = ConsumerConfig::default()
        .smartmodule(SmartModuleInvocation::predefined("keep-a"))
        .smartmodule(SmartModuleInvocation::predefined("upper"));
    while !stop.load(Ordering::Relaxed) {
        let next = delivered.lock().unwrap().last().map_or(0, |(offset, _)| offset + 1);
        let fluvio = connect(&addr).await;
        let config = ConsumerConfig { offset: OffsetSpec::Absolute(next), continuous: true, ..chain.clone() };
        let Ok(mut stream) = fluvio.consumer_stream(TOPIC, config).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) { return } else { continue }
                }
            };
            match item {
                Some(Ok(record)) => {
                    delivered.lock().unwrap().push((record.offset, String::from_utf8_lossy(&record.value).into_owned()))
                }
                _ => break,
            }
        }
    }
}

/// Opens connections and sends garbage: random bytes, frames with lying
/// lengths, unknown kinds.
async fn send_garbage(addr: String, stop: Arc<AtomicBool>, seed: u64) {
    let mut random = Random(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Ok(mut socket)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr)).await
        {
            let mut bytes = vec![0u8; random.below(256) as usize + 1];
            bytes.iter_mut().for_each(|b| *b = random.next() as u8);
            if random.below(2) == 0 {
                // A plausible prefix and header, then junk.
                let len = random.below(1 << 20) as u32;
                bytes.splice(0..0, len.to_le_bytes().into_iter().chain([3, 0, random.next() as u8, 0]));
            }
            let _ = socket.write_all(&bytes).await;
            let mut answer = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut answer)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts streams through hostile modules; counts the ones refused with a
/// SmartModule error (the rest meet a killed server).
async fn run_hostile_modules(addr: String, stop: Arc<AtomicBool>, refused: Arc<AtomicUsize>) {
    let modules = ["hostile-infinite-loop", "hostile-memory-bomb", "hostile-panic", "hostile-fill-loop"];
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let module = modules[round % modules.len()];
        round += 1;
        let fluvio = connect(&addr).await;
        let invocation = SmartModuleInvocation::from_file(wasm_path(module)).unwrap();
        let config = ConsumerConfig { partitions: vec![0], ..from_beginning().smartmodule(invocation) };
        if let Ok(mut stream) = fluvio.consumer_stream(TOPIC, config).await {
            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(item) = stream.next().await {
                    if let Err(error) = item {
                        return Some(error);
                    }
                }
                None
            })
            .await;
            if let Ok(Some(error)) = outcome
                && error.code() == Some(ErrorCode::SmartModuleFailed)
            {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_of_kills_garbage_and_hostile_modules_loses_and_repeats_no_acknowledged_record() {
    let seconds = env_number("CHAOS_SECS", 45);
    let seed = env_number("CHAOS_SEED", std::process::id() as u64 * 0x9e37_79b9 + 1);
    println!("chaos soak: {seconds} s, CHAOS_SEED={seed}");
    let mut random = Random(seed | 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = data_dir("chaos");
    // Hostile modules stop within 300 ms each, so they keep coming.
    let server_args = ["--smartmodule-call-ms", "300", "--smartmodule-memory-bytes", "67108864"];
    let start = |addr: &str| ServerProcess::start_at(addr, &dir, &server_args, std::process::Stdio::null());
    let mut server = start(&addr);
    {
        let admin = connect(&addr).await;
        admin.create_topic(TOPIC, 1).await.unwrap();
        admin.create_smartmodule("keep-a", common::wasm("my-filter")).await.unwrap();
        admin.create_smartmodule("upper", common::wasm("uppercase-map")).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for id in 0..PRODUCERS {
        tasks.push(tokio::spawn(produce(addr.clone(), id, Arc::clone(&stop), Arc::clone(&acknowledged))));
    }
    tasks.push(tokio::spawn(consume(addr.clone(), Arc::clone(&stop), Arc::clone(&delivered))));
    tasks.push(tokio::spawn(send_garbage(addr.clone(), Arc::clone(&stop), random.next())));
    tasks.push(tokio::spawn(run_hostile_modules(addr.clone(), Arc::clone(&stop), Arc::clone(&refused))));

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut kills = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500 + random.below(3000))).await;
        server.kill9();
        kills += 1;
        server = start(&addr);
    }
    // A last stretch without kills, so the work in flight settles.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(90), task).await.expect("every task stops").unwrap();
    }

    let fluvio = connect(&addr).await;
    let stored: Vec<(i64, String)> = read_all(&fluvio, TOPIC, from_beginning())
        .await
        .into_iter()
        .map(|record| (record.offset, String::from_utf8_lossy(&record.value).into_owned()))
        .collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let delivered = delivered.lock().unwrap().clone();
    println!(
        "{kills} kills; {} records acknowledged, {} stored, {} delivered through the chain, {} hostile streams refused",
        acknowledged.len(),
        stored.len(),
        delivered.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(kills >= 3, "the server was killed {kills} times");
    assert!(acknowledged.len() > 1000, "only {} records were acknowledged", acknowledged.len());

    // Dense offsets, every value stored once, each producer's in order.
    for (n, (offset, _)) in stored.iter().enumerate() {
        assert_eq!(*offset, n as i64, "offsets are dense");
    }
    let mut last_sequence: HashMap<usize, u64> = HashMap::new();
    for (offset, value) in &stored {
        let (producer, sequence) = parse(value);
        if let Some(previous) = last_sequence.insert(producer, sequence) {
            assert!(sequence > previous, "{value} at offset {offset} repeats or goes back from sequence {previous}");
        }
    }
    // Every acknowledged record is where its acknowledgement said.
    let by_offset: BTreeMap<i64, &str> = stored.iter().map(|(o, v)| (*o, v.as_str())).collect();
    for (offset, value) in &acknowledged {
        assert_eq!(by_offset.get(offset).copied(), Some(value.as_str()), "acknowledged record at offset {offset}");
    }

    // The consumer saw exactly what the chain makes of the stored records,
    // each once and in order, up to where it got.
    let expected: Vec<(i64, String)> = stored
        .iter()
        .filter(|(_, value)| value.contains('a'))
        .map(|(offset, value)| (*offset, value.to_uppercase()))
        .collect();
    assert!(!delivered.is_empty(), "the consumer delivered nothing");
    assert_eq!(delivered, expected[..delivered.len()], "the consumer's records are the chain's output, once each");
    assert!(refused.load(Ordering::Relaxed) > 0, "no hostile module was stopped with a SmartModule error");
}
