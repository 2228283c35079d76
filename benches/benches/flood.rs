//! An authenticated producer's rate on a server that requires credentials,
//! with and without a flood of 5,000 connections that never log in, opened
//! while it produces and held until it is done. The goal: the flooded rate
//! is at least 90% of the quiet one (the flood costs the server the accepts
//! and the closing of the connections it evicts, nothing per record).
//!
//! Run: `cargo bench -p fluvio-benches --bench flood`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dev_support::server::InProcessServer;
use fluvio_client::{Fluvio, FluvioClusterConfig, RecordKey};

const RECORDS: usize = 100_000;
const FLOOD_SOCKETS: usize = 5_000;
const TOKEN: &str = "bench-producer-token-0123456789";

fn value(n: usize) -> Vec<u8> {
    format!("{{\"id\":{n:08},\"tag\":\"std\",\"note\":\"lorem ipsum dolor sit amet consectetur adipiscing\"}}")
        .into_bytes()
}

async fn produce_all(fluvio: &Fluvio, topic: &str) {
    let producer = fluvio.topic_producer(topic).await.unwrap();
    for n in 0..RECORDS {
        producer.send(RecordKey::NULL, value(n)).await.unwrap();
    }
    producer.flush().await.unwrap();
}

/// How many flood sockets this process can hold beside the server in it:
/// `FLOOD_SOCKETS`, or fewer under a small open-file limit (the server
/// needs files of its own in the same process).
fn flood_sockets() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok())
        .unwrap_or(1024);
    FLOOD_SOCKETS.min(soft.saturating_sub(512) / 2)
}

/// Opens `flood_sockets()` connections to `addr` that say nothing, as fast
/// as it can, and holds what the server leaves open until `stop` is set.
fn flood(addr: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let sockets = flood_sockets();
            let mut held = Vec::with_capacity(sockets);
            for _ in 0..sockets {
                if let Ok(socket) = tokio::net::TcpStream::connect(&addr).await {
                    held.push(socket);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            held.len()
        })
    })
}

fn flooded(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let access = std::env::temp_dir().join(format!("fluvio-bench-flood-access-{}.toml", std::process::id()));
    std::fs::write(&access, format!("[[principal]]\nname = \"producer\"\nrole = \"admin\"\ntoken = \"{TOKEN}\"\n"))
        .unwrap();
    let server = runtime.block_on(InProcessServer::start_with("bench-flood", |config| {
        config.security.access_file = Some(access.clone());
    }));
    let addr = server.addr.clone();
    let fluvio =
        runtime.block_on(Fluvio::connect_with_config(&FluvioClusterConfig::new(&addr).with_token(TOKEN))).unwrap();
    let bytes: u64 = (0..RECORDS).map(|n| value(n).len() as u64).sum();

    let topics = AtomicU64::new(0);
    let mut group = c.benchmark_group("flood");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(bytes));
    let time_produce = |iterations: u64, with_flood: bool| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let topic = format!("produce-{}", topics.fetch_add(1, Ordering::Relaxed));
            runtime.block_on(fluvio.create_topic(&topic, 1)).unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flooding = with_flood.then(|| flood(addr.clone(), std::sync::Arc::clone(&stop)));
            let start = Instant::now();
            runtime.block_on(produce_all(&fluvio, &topic));
            total += start.elapsed();
            stop.store(true, Ordering::Relaxed);
            if let Some(flooding) = flooding {
                flooding.join().unwrap();
            }
            runtime.block_on(fluvio.delete_topic(&topic)).unwrap();
        }
        total
    };
    group.bench_function("produce-100k-authenticated", |b| b.iter_custom(|iterations| time_produce(iterations, false)));
    group.bench_function("produce-100k-authenticated-while-5000-connect-without-login", |b| {
        b.iter_custom(|iterations| time_produce(iterations, true))
    });
    group.finish();
    drop(fluvio);
    drop(server);
    let _ = std::fs::remove_file(&access);
}

criterion_group!(benches, flooded);
criterion_main!(benches);
