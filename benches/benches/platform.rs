//! The platform end to end on loopback: produce 1,000,000 records of about
//! 100 bytes, then consume them all without a SmartModule and with a filter
//! that keeps 10%, next to the physical limits measured in the same run:
//! loopback TCP throughput and sequential disk writes (with one fsync at the
//! end, and with an fsync per 64 KiB as the server's default flush policy
//! does per batch). Then the produce and the filtered consume again on a
//! server that serves `/metrics` (so counts appends, streams and module
//! work): the cost of metrics on the hot paths.
//!
//! Run: `cargo bench -p fluvio-benches --bench platform`

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dev_support::server::InProcessServer;
use fluvio_client::{ConsumerConfig, Fluvio, OffsetSpec, RecordKey, SmartModuleInvocation};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RECORDS: usize = 1_000_000;

fn value(n: usize) -> Vec<u8> {
    // About 100 bytes; one in ten contains `#`, which the filter keeps.
    if n.is_multiple_of(10) {
        format!("{{\"id\":{n:08},\"tag\":\"#vip\",\"note\":\"lorem ipsum dolor sit amet consectetur adipiscing\"}}")
            .into_bytes()
    } else {
        format!("{{\"id\":{n:08},\"tag\":\"std\",\"note\":\"lorem ipsum dolor sit amet consectetur adipiscing\"}}")
            .into_bytes()
    }
}

fn payload_bytes() -> u64 {
    (0..RECORDS).map(|n| value(n).len() as u64).sum()
}

/// The values producers send, made before a produce is timed (as the disk
/// baseline's bytes are): `producers` lists, the one for producer `p`
/// holding records `p`, `p + producers`, and so on.
fn values_for(producers: usize) -> Vec<Vec<Vec<u8>>> {
    (0..producers).map(|p| (p..RECORDS).step_by(producers).map(value).collect()).collect()
}

/// Sends `values` with one SDK producer, each handed over as an
/// application hands over its own.
async fn produce_all(fluvio: &Fluvio, topic: &str, values: Vec<Vec<u8>>) {
    let producer = fluvio.topic_producer(topic).await.unwrap();
    for value in values {
        producer.send(RecordKey::NULL, value).await.unwrap();
    }
    producer.flush().await.unwrap();
}

async fn consume_all(fluvio: &Fluvio, topic: &str, filter: bool) -> (usize, u64) {
    let mut config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() };
    if filter {
        config = config.smartmodule(SmartModuleInvocation::from_file(dev_support::wasm_path("bench-filter")).unwrap());
    }
    let mut stream = fluvio.consumer_stream(topic, config).await.unwrap();
    let mut count = 0;
    while let Some(record) = stream.next().await {
        record.unwrap();
        count += 1;
    }
    (count, stream.bytes_received())
}

fn platform(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(InProcessServer::start("bench-platform"));
    let addr = server.addr.clone();
    let fluvio = runtime.block_on(Fluvio::connect_to(&addr)).unwrap();
    let bytes = payload_bytes();

    let topics = AtomicU64::new(0);
    let mut group = c.benchmark_group("platform");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(bytes));
    // Times `produce` into a fresh topic per iteration, handed the values
    // of `producers` producers; creating and deleting the topic and making
    // the values are not timed.
    type Produce<'a> =
        dyn Fn(String, Vec<Vec<Vec<u8>>>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + 'a;
    let time_produce_to = |iterations: u64, partitions: u32, producers: usize, produce: &Produce<'_>| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let topic = format!("produce-{}", topics.fetch_add(1, Ordering::Relaxed));
            runtime.block_on(fluvio.create_topic(&topic, partitions)).unwrap();
            let values = values_for(producers);
            let start = Instant::now();
            runtime.block_on(produce(topic.clone(), values));
            total += start.elapsed();
            runtime.block_on(fluvio.delete_topic(&topic)).unwrap();
        }
        total
    };
    group.bench_function("produce-1M", |b| {
        b.iter_custom(|iterations| {
            time_produce_to(iterations, 1, 1, &|topic, mut values| {
                let fluvio = fluvio.clone();
                Box::pin(async move { produce_all(&fluvio, &topic, values.remove(0)).await })
            })
        })
    });

    // Records without keys take turns over four partitions, one at a time
    // (Fluvio's round robin): four batches fill at once.
    group.bench_function("produce-1M-keyless-4-partitions", |b| {
        b.iter_custom(|iterations| {
            time_produce_to(iterations, 4, 1, &|topic, mut values| {
                let fluvio = fluvio.clone();
                Box::pin(async move { produce_all(&fluvio, &topic, values.remove(0)).await })
            })
        })
    });

    group.bench_function("produce-1M-4-producers", |b| {
        b.iter_custom(|iterations| {
            time_produce_to(iterations, 1, 4, &|topic, values| {
                let addr = addr.clone();
                Box::pin(async move {
                    // Four clients, each with its own connection, 250,000 records each.
                    let mut tasks = Vec::new();
                    for values in values {
                        let (addr, topic) = (addr.clone(), topic.clone());
                        tasks.push(tokio::spawn(async move {
                            let client = Fluvio::connect_to(&addr).await.unwrap();
                            produce_all(&client, &topic, values).await;
                        }));
                    }
                    for task in tasks {
                        task.await.unwrap();
                    }
                })
            })
        })
    });

    runtime.block_on(fluvio.create_topic("consume", 1)).unwrap();
    runtime.block_on(produce_all(&fluvio, "consume", values_for(1).remove(0)));
    let (all, all_bytes) = runtime.block_on(consume_all(&fluvio, "consume", false));
    let (kept, kept_bytes) = runtime.block_on(consume_all(&fluvio, "consume", true));
    assert_eq!((all, kept), (RECORDS, RECORDS / 10));
    println!(
        "bytes sent to the consumer: {all_bytes} without a SmartModule, {kept_bytes} with the 10% filter ({:.1}%)",
        100.0 * kept_bytes as f64 / all_bytes as f64
    );
    group.bench_function("consume-1M", |b| b.iter(|| runtime.block_on(consume_all(&fluvio, "consume", false))));
    group.bench_function("consume-1M-filter-10pct", |b| {
        b.iter(|| runtime.block_on(consume_all(&fluvio, "consume", true)))
    });

    // The physical limits, measured on the same bytes.
    group.bench_function("baseline-loopback-tcp", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let reader = tokio::spawn(async move {
                    let (mut socket, _) = listener.accept().await.unwrap();
                    let mut buf = vec![0u8; 64 << 10];
                    let mut read = 0u64;
                    loop {
                        let n = socket.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break read;
                        }
                        read += n as u64;
                    }
                });
                let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
                let chunk = vec![7u8; 64 << 10];
                let mut sent = 0u64;
                while sent < bytes {
                    let n = chunk.len().min((bytes - sent) as usize);
                    socket.write_all(&chunk[..n]).await.unwrap();
                    sent += n as u64;
                }
                socket.shutdown().await.unwrap();
                assert_eq!(reader.await.unwrap(), bytes);
            })
        })
    });
    let disk = |sync_every_chunk: bool| {
        // On the server's own file system: the disk it syncs to.
        let path = server.data_dir.join("baseline-disk");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 64 << 10];
        let mut written = 0u64;
        while written < bytes {
            let n = chunk.len().min((bytes - written) as usize);
            file.write_all(&chunk[..n]).unwrap();
            if sync_every_chunk {
                file.sync_data().unwrap();
            }
            written += n as u64;
        }
        file.sync_all().unwrap();
        drop(file);
        std::fs::remove_file(&path).unwrap();
    };
    group.bench_function("baseline-disk-write-fsync-at-end", |b| b.iter(|| disk(false)));
    group.bench_function("baseline-disk-write-fsync-per-64KiB", |b| b.iter(|| disk(true)));

    // The same produce and filtered consume on a server that serves
    // `/metrics`, and so counts: what counting costs the hot paths. Each
    // iteration runs the counting server and the plain one back to back
    // (in turn first), so both see the same machine; the counting one is
    // timed, and the plain one's times are printed beside it. (Started
    // last: the process then times its syncs, for the plain server too.)
    let counting = runtime.block_on(InProcessServer::start_with("bench-platform-metrics", |config| {
        let addr = "127.0.0.1:0".parse().unwrap();
        config.http = Some(fluvio_server::http::HttpConfig { addr, metrics_public: false });
    }));
    let counted = runtime.block_on(Fluvio::connect_to(&counting.addr)).unwrap();
    let produce_once = |client: &Fluvio| {
        let topic = format!("produce-{}", topics.fetch_add(1, Ordering::Relaxed));
        runtime.block_on(client.create_topic(&topic, 1)).unwrap();
        let values = values_for(1).remove(0);
        let start = Instant::now();
        runtime.block_on(produce_all(client, &topic, values));
        let took = start.elapsed();
        runtime.block_on(client.delete_topic(&topic)).unwrap();
        took
    };
    let consume_once = |client: &Fluvio| {
        let start = Instant::now();
        runtime.block_on(consume_all(client, "consume", true));
        start.elapsed()
    };
    runtime.block_on(counted.create_topic("consume", 1)).unwrap();
    runtime.block_on(produce_all(&counted, "consume", values_for(1).remove(0)));
    let paired = |name: &str, run: &dyn Fn(&Fluvio) -> Duration, group: &mut criterion::BenchmarkGroup<'_, _>| {
        let (mut plain_times, mut counted_times) = (Vec::new(), Vec::new());
        let mut round = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    round += 1;
                    let (plain, counting) = if round.is_multiple_of(2) {
                        let plain = run(&fluvio);
                        (plain, run(&counted))
                    } else {
                        let counting = run(&counted);
                        (run(&fluvio), counting)
                    };
                    plain_times.push(plain);
                    counted_times.push(counting);
                    total += counting;
                }
                total
            })
        });
        plain_times.sort();
        counted_times.sort();
        if !plain_times.is_empty() {
            let (plain, counting) = (plain_times[plain_times.len() / 2], counted_times[counted_times.len() / 2]);
            println!(
                "{name}: medians over the same {} iterations: metrics on {counting:?}, off {plain:?} ({:+.1}%)",
                plain_times.len(),
                100.0 * (counting.as_secs_f64() / plain.as_secs_f64() - 1.0)
            );
        }
    };
    paired("produce-1M-metrics-on", &produce_once, &mut group);
    paired("consume-1M-filter-10pct-metrics-on", &consume_once, &mut group);
    group.finish();
    drop((fluvio, counted));
    drop((server, counting));
}

criterion_group!(benches, platform);
criterion_main!(benches);
