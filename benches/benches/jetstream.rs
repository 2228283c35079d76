//! The JetStream backend against JetStream used directly and against the
//! embedded local log, in the same run, on a three-node NATS cluster on
//! loopback with three copies of every message:
//!
//! - through a `fluvio-server` on the cluster (`-r 3`): produce 1,000,000
//!   records of 100 bytes with one SDK producer (64 KiB batches, each batch
//!   one JetStream message), and consume them;
//! - JetStream directly with `async-nats`, one message per record, as most
//!   users would use it: publish with acknowledgements pipelined, then read
//!   with an ordered consumer;
//! - the same producer with keyed records into a topic of three
//!   partitions (three streams, whose appends the server runs side by side);
//! - the same producer and consumer against a server on the local log;
//! - JetStream directly with the server's own message pattern, the limit
//!   the server can reach: the same records in the same 64 KiB batches,
//!   one message per batch, published one at a time (as the server appends
//!   to a partition) and with 16 in flight, and the topic's stream read
//!   back with 16 direct gets in flight (as the server reads);
//! - the produce through the server and the 16-in-flight publish in turn,
//!   round after round, with the median of the rounds' ratios printed:
//!   the ratio the goal is judged by, which rows run minutes
//!   apart move by ±15%.
//!
//! The NATS nodes are throwaway processes; both servers run in this
//! process. Under `cargo test` (no `--bench`), each case runs once on
//! 20,000 records, as a check that it works.
//!
//! Run: `cargo bench -p fluvio-benches --bench jetstream`

use std::cell::RefCell;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use dev_support::server::InProcessServer;
use dev_support::services::NatsCluster;
use fluvio_client::protocol::RetentionSpec;
use fluvio_client::{ConsumerConfig, Fluvio, OffsetSpec, ProducerConfig, RecordKey};
use fluvio_server::storage::jetstream::JetStreamConfig;
use futures::StreamExt;

const VALUE_BYTES: usize = 100;

fn record_count() -> usize {
    if std::env::args().any(|arg| arg == "--bench") { 1_000_000 } else { 20_000 }
}

fn value(n: usize) -> Vec<u8> {
    let mut value = format!("record-{n:012}-").into_bytes();
    value.resize(VALUE_BYTES, b'x');
    value
}

/// A server in this process, on the JetStream cluster at `jetstream` or on
/// the local log, and a client of it.
async fn start_server(name: &str, jetstream: Option<String>) -> (InProcessServer, Fluvio) {
    let server = InProcessServer::start_with(name, |config| {
        config.jetstream = jetstream.as_deref().map(JetStreamConfig::new);
    })
    .await;
    let fluvio = Fluvio::connect_to(&server.addr).await.unwrap();
    (server, fluvio)
}

/// The records a produce row sends, made before its timer starts, as the
/// direct publishes get their batches made: each row times the moving of
/// data an application already holds, not the making of it (formatting a
/// million values was a fifth of the produce's CPU in the benchmark's
/// process). `keyed`: each record is keyed by its number modulo 64, so
/// that every partition of the topic fills at once; otherwise they have no
/// key.
fn records_to_send(records: usize, keyed: bool) -> Vec<(RecordKey, Vec<u8>)> {
    (0..records)
        .map(|n| {
            let key = if keyed { RecordKey::from(format!("key-{}", n % 64)) } else { RecordKey::NULL };
            (key, value(n))
        })
        .collect()
}

/// Produces the records with one SDK producer, each handed over as an
/// application hands over its own.
async fn produce(fluvio: &Fluvio, topic: &str, records: Vec<(RecordKey, Vec<u8>)>) {
    produce_with(fluvio, topic, records, ProducerConfig { batch_bytes: 64 << 10, ..Default::default() }).await
}

async fn produce_with(fluvio: &Fluvio, topic: &str, records: Vec<(RecordKey, Vec<u8>)>, config: ProducerConfig) {
    let producer = fluvio.topic_producer_with(topic, config).await.unwrap();
    for (key, value) in records {
        producer.send(key, value).await.unwrap();
    }
    producer.flush().await.unwrap();
}

async fn consume(fluvio: &Fluvio, topic: &str, records: usize) {
    let config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() };
    let mut stream = fluvio.consumer_stream(topic, config).await.unwrap();
    let mut received = 0;
    while let Some(batch) = stream.next_batch().await {
        received += batch.unwrap().records.len();
    }
    assert_eq!(received, records);
}

/// JetStream alone: one message per record, acknowledgements awaited in
/// windows so that publishing is pipelined.
async fn publish_directly(js: &jetstream::Context, subject: &str, records: usize) {
    let mut acks = Vec::with_capacity(4096);
    for n in 0..records {
        acks.push(js.publish(subject.to_string(), value(n).into()).await.unwrap());
        if acks.len() == 4096 {
            for ack in futures::future::join_all(acks.drain(..).map(IntoFuture::into_future)).await {
                ack.unwrap();
            }
        }
    }
    for ack in futures::future::join_all(acks.into_iter().map(IntoFuture::into_future)).await {
        ack.unwrap();
    }
}

/// The records in batches of `batch_bytes` of record bytes each, counted
/// as the SDK producer counts them: 64 KiB, the producer's batches, or
/// 512 KiB, what it coalesces a backlog into.
fn producer_batches(records: usize, batch_bytes: usize) -> Vec<bytes::Bytes> {
    let mut batches = Vec::new();
    let mut builder = fluvio_protocol::BatchBuilder::new(0, 0);
    let mut counted = 0;
    for n in 0..records {
        let value = value(n);
        counted += value.len() + 32;
        builder.push_value(None, &value);
        if counted >= batch_bytes {
            let full = std::mem::replace(&mut builder, fluvio_protocol::BatchBuilder::new(0, 0));
            batches.push(full.finish().into_bytes().into());
            counted = 0;
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish().into_bytes().into());
    }
    batches
}

/// JetStream alone with whole batches as messages, at most `in_flight`
/// unacknowledged at a time.
async fn publish_batches(js: &jetstream::Context, subject: &str, batches: &[bytes::Bytes], in_flight: usize) {
    let mut acks = std::collections::VecDeque::with_capacity(in_flight);
    for batch in batches {
        acks.push_back(js.publish(subject.to_string(), batch.clone()).await.unwrap());
        if acks.len() == in_flight {
            acks.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// JetStream alone reading a topic's stream as the server does: direct
/// gets of whole batches, 16 in flight.
async fn read_batches_directly(js: &jetstream::Context, stream_name: &str, records: usize) {
    let stream = js.get_stream(stream_name).await.unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut gets = futures::stream::iter(1..=last)
        .map(|sequence| {
            let stream = stream.clone();
            async move { stream.direct_get(sequence).await.unwrap() }
        })
        .buffered(16);
    let mut received = 0;
    while let Some(message) = gets.next().await {
        received +=
            fluvio_protocol::StoredBatch::from_storage(message.payload.to_vec()).unwrap().record_count() as usize;
    }
    assert_eq!(received, records);
}

async fn read_directly(js: &jetstream::Context, stream_name: &str, records: usize) {
    let stream = js.get_stream(stream_name).await.unwrap();
    let consumer = stream.create_consumer(consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    for _ in 0..records {
        let message = messages.next().await.unwrap().unwrap();
        assert_eq!(message.payload.len(), VALUE_BYTES);
    }
}

/// CPU time spent so far by this process (the SDK producer and the
/// server in it) and by the NATS nodes, from `/proc`: where a run's time
/// goes when both cores are busy.
#[derive(Clone, Copy, Default)]
struct CpuSpent {
    own: Duration,
    nats: Duration,
}

impl CpuSpent {
    fn now() -> CpuSpent {
        // `/proc` counts in USER_HZ, 100 a second on Linux.
        let ticks = |stat: &str| -> Option<(String, u64)> {
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let fields: Vec<&str> = rest.split(' ').collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some((name.to_string(), user + system))
        };
        let own_pid = std::process::id().to_string();
        let mut spent = CpuSpent::default();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let Some((name, ticks)) = ticks(&stat) else { continue };
            let time = Duration::from_millis(ticks * 10);
            if entry.file_name().to_str() == Some(own_pid.as_str()) {
                spent.own += time;
            } else if name == "nats-server" {
                spent.nats += time;
            }
        }
        spent
    }

    fn since(self, before: CpuSpent) -> CpuSpent {
        CpuSpent { own: self.own.saturating_sub(before.own), nats: self.nats.saturating_sub(before.nats) }
    }
}

/// One timed run: how long it took, and the CPU it took.
#[derive(Clone, Copy)]
struct Run {
    elapsed: Duration,
    cpu: CpuSpent,
}

/// How long `write` takes on `name`, made before it and removed after it
/// (neither timed).
fn timed_between(name: &str, make: &dyn Fn(&str), write: &dyn Fn(&str), remove: &dyn Fn(&str)) -> Duration {
    timed_run_between(name, make, write, remove).elapsed
}

/// [`timed_between`], with the CPU the run took.
fn timed_run_between(name: &str, make: &dyn Fn(&str), write: &dyn Fn(&str), remove: &dyn Fn(&str)) -> Run {
    make(name);
    let run = timed_run(|| write(name));
    remove(name);
    run
}

/// Prints the median ratio of rounds measured in turn: the time of
/// `theirs` (JetStream's own client) to the time of `ours` (through the
/// server), the share of JetStream's own speed the server reaches; and
/// the median CPU each kind of run took in this process and in the NATS
/// nodes. Each round is `(ours, theirs)`.
fn report_in_turn(row: &str, ours: &str, theirs: &str, rounds: &[(Run, Run)]) {
    if rounds.is_empty() {
        return;
    }
    let mut shares: Vec<f64> =
        rounds.iter().map(|(ours, theirs)| theirs.elapsed.as_secs_f64() / ours.elapsed.as_secs_f64()).collect();
    shares.sort_by(f64::total_cmp);
    let at = |quantile: f64| shares[((shares.len() - 1) as f64 * quantile).round() as usize] * 100.0;
    let median_ms = |cpu: &dyn Fn(&(Run, Run)) -> Duration| {
        let mut times: Vec<Duration> = rounds.iter().map(cpu).collect();
        times.sort();
        times[times.len() / 2].as_millis()
    };
    eprintln!(
        "{row}: {} rounds, {ours} reaches {:.0}% of {theirs} \
         (median of the rounds; middle half {:.0}% to {:.0}%; lowest {:.0}%, highest {:.0}%); \
         CPU a run (medians): {ours} {} ms here and {} ms in the NATS nodes, {theirs} {} ms here and {} ms in the NATS nodes",
        rounds.len(),
        at(0.5),
        at(0.25),
        at(0.75),
        at(0.0),
        at(1.0),
        median_ms(&|(ours, _)| ours.cpu.own),
        median_ms(&|(ours, _)| ours.cpu.nats),
        median_ms(&|(_, theirs)| theirs.cpu.own),
        median_ms(&|(_, theirs)| theirs.cpu.nats),
    );
}

/// Runs `ours` and `theirs` in turn, the first of the two alternating
/// from round to round: the pair of runs of `round`.
fn in_turn(round: u32, ours: impl FnOnce() -> Run, theirs: impl FnOnce() -> Run) -> (Run, Run) {
    if round.is_multiple_of(2) {
        let ours = ours();
        (ours, theirs())
    } else {
        let theirs = theirs();
        (ours(), theirs)
    }
}

/// How long `work` takes, and the CPU it takes.
fn timed_run(work: impl FnOnce()) -> Run {
    let before = CpuSpent::now();
    let start = Instant::now();
    work();
    let elapsed = start.elapsed();
    Run { elapsed, cpu: CpuSpent::now().since(before) }
}

fn jetstream_backend(c: &mut Criterion) {
    let records = record_count();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let cluster = NatsCluster::start(3);
    let (_jetstream_server, on_jetstream) = runtime.block_on(start_server("bench-js", Some(cluster.urls())));
    let (_local_server, on_local) = runtime.block_on(start_server("bench-local", None));
    let nats = runtime.block_on(async_nats::connect(cluster.url(0))).unwrap();
    let js = jetstream::new(nats);
    let mut run = 0u32;

    let mut group = c.benchmark_group("jetstream");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(records as u64));

    // Each produce run writes a fresh topic (or stream): `make` and
    // `remove` are not timed, `write` is.
    let mut fresh =
        |iterations: u64, prefix: &str, make: &dyn Fn(&str), write: &dyn Fn(&str), remove: &dyn Fn(&str)| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                run += 1;
                let name = format!("{prefix}-{run}");
                total += timed_between(&name, make, write, remove);
            }
            total
        };
    // The records of the next produce, made with its topic (not timed).
    let ready: RefCell<Vec<(RecordKey, Vec<u8>)>> = RefCell::default();
    for (id, partitions, keyed) in
        [("produce-via-server-r3", 1, false), ("produce-via-server-r3-3-partitions-keyed", 3, true)]
    {
        group.bench_function(id, |b| {
            b.iter_custom(|iterations| {
                fresh(
                    iterations,
                    "produce",
                    &|topic| {
                        runtime
                            .block_on(on_jetstream.create_replicated_topic(
                                topic,
                                partitions,
                                3,
                                RetentionSpec::default(),
                            ))
                            .unwrap();
                        *ready.borrow_mut() = records_to_send(records, keyed);
                    },
                    &|topic| runtime.block_on(produce(&on_jetstream, topic, ready.take())),
                    &|topic| runtime.block_on(on_jetstream.delete_topic(topic)).unwrap(),
                )
            })
        });
    }
    // A three-copy stream `name` for subject `name.suffix`.
    let make_stream = |name: &str, suffix: &str| {
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{name}.{suffix}")],
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        runtime.block_on(js.create_stream(config)).unwrap();
    };
    let remove_stream = |name: &str| {
        runtime.block_on(js.delete_stream(name)).unwrap();
    };
    group.bench_function("publish-directly-per-record-r3", |b| {
        b.iter_custom(|iterations| {
            fresh(
                iterations,
                "direct",
                &|name| make_stream(name, "records"),
                &|name| runtime.block_on(publish_directly(&js, &format!("{name}.records"), records)),
                &remove_stream,
            )
        })
    });
    let batches = producer_batches(records, 64 << 10);
    let large_batches = producer_batches(records, 512 << 10);
    for (id, batches, in_flight) in [
        ("publish-batches-directly-one-at-a-time-r3", &batches, 1),
        ("publish-batches-directly-16-in-flight-r3", &batches, 16),
        ("publish-512KiB-batches-directly-16-in-flight-r3", &large_batches, 16),
    ] {
        group.bench_function(id, |b| {
            b.iter_custom(|iterations| {
                fresh(
                    iterations,
                    "batches",
                    &|name| make_stream(name, "batches"),
                    &|name| runtime.block_on(publish_batches(&js, &format!("{name}.batches"), batches, in_flight)),
                    &remove_stream,
                )
            })
        });
    }
    // The produce row and the 16-in-flight publish, measured in turn in
    // each round (which goes first alternates), so that the machine's
    // drift between rows, ±15% of the ratio on this two-core machine,
    // falls on both alike. The row's time is the produce's; the ratio of
    // each round's two times is collected and its median printed.
    // A round's ratio spreads from about 60% to 120%: 11 rounds left the
    // median moving from 79% to 97% between runs, so this row runs 20 to
    // 35 rounds (flat sampling: the same number of rounds in every sample).
    let mut rounds: Vec<(Run, Run)> = Vec::new();
    let mut round = 0u32;
    group.sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(80));
    group.bench_function("produce-via-server-r3-interleaved", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                round += 1;
                let topic = format!("interleaved-{round}");
                let stream_name = format!("interleaved-direct-{round}");
                let subject = format!("{stream_name}.batches");
                // Each run between the making of its own topic or stream
                // and its removal, as in the rows above: then each runs
                // while the NATS nodes clean up after one removed stream.
                // (Made a run ahead, a stream has settled and its run is a
                // fifth faster; removed together after both, the first
                // run pays for both removals of the round before, and the
                // second ran twice as fast as the first.)
                let timed_produce = || {
                    timed_run_between(
                        &topic,
                        &|topic| {
                            runtime
                                .block_on(on_jetstream.create_replicated_topic(topic, 1, 3, RetentionSpec::default()))
                                .unwrap();
                            *ready.borrow_mut() = records_to_send(records, false);
                        },
                        &|topic| runtime.block_on(produce(&on_jetstream, topic, ready.take())),
                        &|topic| runtime.block_on(on_jetstream.delete_topic(topic)).unwrap(),
                    )
                };
                let timed_publish = || {
                    timed_run_between(
                        &stream_name,
                        &|name| make_stream(name, "batches"),
                        &|_| runtime.block_on(publish_batches(&js, &subject, &batches, 16)),
                        &remove_stream,
                    )
                };
                let (produced, published) = in_turn(round, timed_produce, timed_publish);
                rounds.push((produced, published));
                total += produced.elapsed;
            }
            total
        })
    });
    group.sampling_mode(SamplingMode::Auto).measurement_time(Duration::from_secs(30));
    report_in_turn("produce-via-server-r3-interleaved", "produce", "the 16-in-flight publish", &rounds);
    group.bench_function("produce-local-log", |b| {
        b.iter_custom(|iterations| {
            fresh(
                iterations,
                "local",
                &|topic| {
                    runtime.block_on(on_local.create_topic(topic, 1)).unwrap();
                    *ready.borrow_mut() = records_to_send(records, false);
                },
                &|topic| runtime.block_on(produce(&on_local, topic, ready.take())),
                &|topic| runtime.block_on(on_local.delete_topic(topic)).unwrap(),
            )
        })
    });

    // Reading: one topic (or stream) written once, read by each run.
    runtime.block_on(on_jetstream.create_replicated_topic("read", 1, 3, RetentionSpec::default())).unwrap();
    runtime.block_on(produce(&on_jetstream, "read", records_to_send(records, false)));
    runtime.block_on(on_local.create_topic("read", 1)).unwrap();
    runtime.block_on(produce(&on_local, "read", records_to_send(records, false)));
    let config = stream::Config {
        name: "direct-read".into(),
        subjects: vec!["direct.read".into()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    runtime.block_on(js.create_stream(config)).unwrap();
    runtime.block_on(publish_directly(&js, "direct.read", records));

    // The same records in batches of at most 64 KiB: a producer that may
    // queue one batch sends its batches as they fill, never coalesced.
    runtime.block_on(on_jetstream.create_replicated_topic("read-64KiB", 1, 3, RetentionSpec::default())).unwrap();
    let one_batch_queued = ProducerConfig { batch_bytes: 64 << 10, batch_queue_size: 1, ..Default::default() };
    runtime.block_on(produce_with(&on_jetstream, "read-64KiB", records_to_send(records, false), one_batch_queued));

    for topic in ["read", "read-64KiB"] {
        let stream_name = fluvio_server::storage::jetstream::stream_name(topic, 0);
        let batches = runtime
            .block_on(async { js.get_stream(&stream_name).await.unwrap().get_info().await.unwrap().state.messages });
        eprintln!("topic {topic}: {records} records in {batches} batches");
        let suffix = if topic == "read" { "" } else { "-64KiB-batches" };
        group.bench_function(format!("consume-via-server-r3{suffix}"), |b| {
            b.iter(|| runtime.block_on(consume(&on_jetstream, topic, records)))
        });
        group.bench_function(format!("read-batches-directly-r3{suffix}"), |b| {
            b.iter(|| runtime.block_on(read_batches_directly(&js, &stream_name, records)))
        });
        // The consume and the direct read in turn, as the produce and the
        // publish above: the ratio of two rows measured minutes apart
        // moved from 64% to 88% between runs of the whole benchmark.
        let mut rounds: Vec<(Run, Run)> = Vec::new();
        let mut round = 0u32;
        let row = format!("consume-via-server-r3{suffix}-interleaved");
        group.bench_function(&row, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    round += 1;
                    let (consumed, read) = in_turn(
                        round,
                        || timed_run(|| runtime.block_on(consume(&on_jetstream, topic, records))),
                        || timed_run(|| runtime.block_on(read_batches_directly(&js, &stream_name, records))),
                    );
                    rounds.push((consumed, read));
                    total += consumed.elapsed;
                }
                total
            })
        });
        report_in_turn(&row, "consume", "the direct batch read", &rounds);
    }
    group.bench_function("read-directly-ordered-consumer-r3", |b| {
        b.iter(|| runtime.block_on(read_directly(&js, "direct-read", records)))
    });
    group.bench_function("consume-local-log", |b| b.iter(|| runtime.block_on(consume(&on_local, "read", records))));
    group.finish();
    drop(cluster);
}

criterion_group!(benches, jetstream_backend);
criterion_main!(benches);
