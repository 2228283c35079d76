//! Derived topics on the local log: 1,000,000 records of about 100 bytes
//! through a filter (keeps 10%) and a map into a derived topic, timed from
//! the topic's creation until its pipeline has read the whole source,
//! beside the same chain run for a consumer over the same records in the
//! same run. Then the end-to-end latency of a derived record, from the
//! acknowledgement of its source record to a consumer of the derived topic
//! receiving it, with records produced at 10,000 per second (printed as
//! p50 and p99: a distribution, not a time criterion can chart).
//!
//! Run: `cargo bench -p fluvio-benches --bench derived`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dev_support::server::InProcessServer;
use fluvio_client::protocol::requests::CreateDerivedTopicRequest;
use fluvio_client::{ConsumerConfig, ErrorPolicy, Fluvio, OffsetSpec, RecordKey, SmartModuleInvocation};
use futures::StreamExt;

const RECORDS: usize = 1_000_000;

fn value(n: usize) -> Vec<u8> {
    // About 100 bytes; one in ten contains `#`, which the filter keeps.
    let tag = if n.is_multiple_of(10) { "#vip" } else { "std" };
    format!("{{\"id\":{n:08},\"tag\":\"{tag}\",\"note\":\"lorem ipsum dolor sit amet consectetur adipiscing\"}}")
        .into_bytes()
}

fn chain() -> Vec<SmartModuleInvocation> {
    vec![SmartModuleInvocation::predefined("bench-filter"), SmartModuleInvocation::predefined("uppercase-map")]
}

fn derive(name: &str, source: &str) -> CreateDerivedTopicRequest {
    CreateDerivedTopicRequest {
        name: name.into(),
        partitions: 0,
        replication: 1,
        retention: Default::default(),
        source: source.into(),
        transforms: chain(),
        policy: ErrorPolicy::Fail,
        dead_letter_topic: None,
    }
}

/// Waits until the derived topic's pipelines have read their source to
/// its end.
async fn caught_up(fluvio: &Fluvio, name: &str) {
    loop {
        let topics = fluvio.list_derived_topics().await.unwrap();
        let topic = topics.iter().find(|topic| topic.name == name).unwrap();
        if topic.pipelines.iter().all(|p| p.source_offset >= p.source_end && p.source_end > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn consume_through_chain(fluvio: &Fluvio, topic: &str) -> usize {
    let config = ConsumerConfig {
        offset: OffsetSpec::Beginning,
        continuous: false,
        smartmodules: chain(),
        ..Default::default()
    };
    let mut stream = fluvio.consumer_stream(topic, config).await.unwrap();
    let mut count = 0;
    while let Some(record) = stream.next().await {
        record.unwrap();
        count += 1;
    }
    count
}

/// Produces at `rate` records per second for `seconds` into `source`,
/// and returns each derived record's latency from its source record's
/// acknowledgement to its arrival at a consumer of `derived`, sorted.
async fn latencies(fluvio: &Fluvio, source: &str, derived: &str, rate: u64, seconds: u64) -> Vec<Duration> {
    let count = (rate * seconds) as usize;
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let config = ConsumerConfig { offset: OffsetSpec::End, continuous: true, ..Default::default() };
    let mut stream = fluvio.consumer_stream(derived, config).await.unwrap();
    let kept = (0..count).filter(|n| n.is_multiple_of(10)).count();
    let reader = tokio::spawn(async move {
        let mut arrivals = Vec::with_capacity(kept);
        while arrivals.len() < kept {
            let record = stream.next().await.unwrap().unwrap();
            let text = String::from_utf8_lossy(&record.value).to_string();
            // `{"ID":00000010,...`, upper-cased by the map.
            let id: usize = text[6..14].parse().unwrap();
            arrivals.push((id, origin.elapsed()));
        }
        arrivals
    });
    let producer = fluvio.topic_producer(source).await.unwrap();
    let interval = Duration::from_secs(1) / rate as u32;
    let mut waits = Vec::with_capacity(count);
    for n in 0..count {
        let due = origin + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let output = producer.send(RecordKey::NULL, value(n)).await.unwrap();
        let acknowledged = Arc::clone(&acknowledged);
        waits.push(tokio::spawn(async move {
            output.wait().await.unwrap();
            acknowledged[n].store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }));
    }
    producer.flush().await.unwrap();
    for wait in waits {
        wait.await.unwrap();
    }
    let arrivals = reader.await.unwrap();
    let mut latencies: Vec<Duration> = arrivals
        .into_iter()
        .map(|(id, arrived)| arrived.saturating_sub(Duration::from_nanos(acknowledged[id].load(Ordering::Relaxed))))
        .collect();
    latencies.sort();
    latencies
}

fn derived(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(InProcessServer::start("bench-derived"));
    let fluvio = runtime.block_on(Fluvio::connect_to(&server.addr)).unwrap();
    runtime.block_on(async {
        for module in ["bench-filter", "uppercase-map"] {
            fluvio.create_smartmodule(module, dev_support::wasm(module)).await.unwrap();
        }
        fluvio.create_topic("source", 1).await.unwrap();
        let producer = fluvio.topic_producer("source").await.unwrap();
        for n in 0..RECORDS {
            producer.send(RecordKey::NULL, value(n)).await.unwrap();
        }
        producer.flush().await.unwrap();
    });

    let mut group = c.benchmark_group("derived");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(RECORDS as u64));
    let made = AtomicU64::new(0);
    group.bench_function("derive-1M-filter-map", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let name = format!("derived-{}", made.fetch_add(1, Ordering::Relaxed));
                let start = Instant::now();
                runtime.block_on(async {
                    fluvio.create_derived_topic(derive(&name, "source")).await.unwrap();
                    caught_up(&fluvio, &name).await;
                });
                total += start.elapsed();
                runtime.block_on(fluvio.delete_topic(&name)).unwrap();
            }
            total
        })
    });
    group.bench_function("consume-1M-filter-map", |b| {
        b.iter(|| assert_eq!(runtime.block_on(consume_through_chain(&fluvio, "source")), RECORDS / 10))
    });
    group.finish();

    // Latency at 10,000 records per second, into a derived topic that
    // follows a live source.
    runtime.block_on(async {
        fluvio.create_topic("live", 1).await.unwrap();
        fluvio.create_derived_topic(derive("live-derived", "live")).await.unwrap();
        let latencies = latencies(&fluvio, "live", "live-derived", 10_000, 10).await;
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "derived/latency-10k-per-s: {} derived records, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3
        );
    });
}

criterion_group!(benches, derived);
criterion_main!(benches);
