//! Connectors against the plain clients of the systems they talk to, in the
//! same run, on this machine:
//!
//! - `sql-sink`: 1,000,000 records from a topic into a PostgreSQL table
//!   (plain mode, exactly once: each batch and its offset in one
//!   transaction), beside a plain loop that writes the same rows with the
//!   same driver (tokio-postgres) and the same rows per transaction, as a
//!   multi-row INSERT with typed parameters, and beside the limit: the same
//!   rows sent with COPY FROM STDIN by a hand-written loop.
//! - `mqtt-source`: 100,000 QoS 1 messages through a real Mosquitto broker
//!   into a topic, beside a plain rumqttc subscriber loop that receives the
//!   same messages from the same publisher.
//!
//! The PostgreSQL server and the broker are throwaway instances on loopback
//! (or `$DATABASE_URL` and `$MQTT_URL`), the server runs in this process.
//!
//! Run: `cargo bench -p fluvio-benches --bench connectors`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dev_support::server::InProcessServer;
use dev_support::services::{Mosquitto, Postgres};
use fluvio_client::{ConsumerConfig, Fluvio, OffsetSpec, ProducerConfig, RecordKey};
use fluvio_connector::config::{ConnectorConfig, Secrets};
use fluvio_connector::runtime::{Metrics, RunOptions};
use tokio::sync::watch;

const SQL_RECORDS: usize = 1_000_000;
const MQTT_MESSAGES: usize = 100_000;

fn reading(n: usize) -> String {
    format!("{{\"id\": {n}, \"sensor\": \"sensor-{:03}\", \"celsius\": {}.5}}", n % 1000, n % 40)
}

fn connector_config(dir: &std::path::Path, name: &str, text: &str) -> ConnectorConfig {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    ConnectorConfig::from_file(&path, &Secrets::from_env()).unwrap()
}

/// A connector running in this process, with a switch to stop it.
struct Running {
    stop: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<Result<(), fluvio_connector::ConnectorError>>,
}

fn start(config: ConnectorConfig, addr: &str) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let options = RunOptions::new(addr, shutdown);
    let metrics = Arc::clone(&options.metrics);
    let task = tokio::spawn(async move { fluvio_connector::run(&config, options).await });
    Running { stop, metrics, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done().await {
        assert!(Instant::now() < deadline, "the benchmark did not finish within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn topic_end(fluvio: &Fluvio, topic: &str) -> i64 {
    fluvio.list_topics().await.unwrap().iter().find(|t| t.name == topic).map_or(0, |t| t.next_offsets[0])
}

/// Rows of a table, counted with the driver.
async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The baseline: the same rows, `batch` per transaction, as multi-row
/// INSERTs with typed parameters.
async fn plain_insert_loop(client: &mut tokio_postgres::Client, table: &str, batch: usize) {
    for first in (0..SQL_RECORDS).step_by(batch) {
        let rows: Vec<(i64, String, f64)> = (first..(first + batch).min(SQL_RECORDS))
            .map(|n| (n as i64, format!("sensor-{:03}", n % 1000), (n % 40) as f64 + 0.5))
            .collect();
        let transaction = client.transaction().await.unwrap();
        // PostgreSQL takes at most 65,535 parameters per statement.
        for chunk in rows.chunks(20_000) {
            let mut sql = format!("INSERT INTO {table} (id, sensor, celsius) VALUES ");
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::with_capacity(chunk.len() * 3);
            for (i, (id, sensor, celsius)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
                params.push(id);
                params.push(sensor);
                params.push(celsius);
            }
            transaction.execute(&sql, &params).await.unwrap();
        }
        transaction.commit().await.unwrap();
    }
}

/// The limit: the same rows, `batch` per transaction, with COPY FROM STDIN
/// in text format, built by hand.
async fn plain_copy_loop(client: &mut tokio_postgres::Client, table: &str, batch: usize) {
    use futures::SinkExt;
    for first in (0..SQL_RECORDS).step_by(batch) {
        let transaction = client.transaction().await.unwrap();
        let sink = transaction
            .copy_in::<_, bytes::Bytes>(&format!("COPY {table} (id, sensor, celsius) FROM STDIN"))
            .await
            .unwrap();
        futures::pin_mut!(sink);
        let mut chunk = Vec::with_capacity(70 << 10);
        for n in first..(first + batch).min(SQL_RECORDS) {
            chunk.extend_from_slice(format!("{n}\tsensor-{:03}\t{}.5\n", n % 1000, n % 40).as_bytes());
            if chunk.len() >= 64 << 10 {
                sink.send(bytes::Bytes::from(std::mem::take(&mut chunk))).await.unwrap();
            }
        }
        if !chunk.is_empty() {
            sink.send(bytes::Bytes::from(chunk)).await.unwrap();
        }
        sink.finish().await.unwrap();
        transaction.commit().await.unwrap();
    }
}

fn connectors(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("fluvio-bench-connectors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _guard = runtime.enter();
    let server = runtime.block_on(InProcessServer::start("bench-connectors"));
    let addr = server.addr.clone();
    let fluvio = runtime.block_on(Fluvio::connect_to(&addr)).unwrap();
    let runs = AtomicU64::new(0);

    // sql-sink: the topic holds 1,000,000 readings in batches of about
    // 256 KiB; the sink and the baseline write the same number of rows per
    // transaction.
    let pg = Postgres::start();
    let mut client = runtime.block_on(postgres_client(pg.url()));
    runtime.block_on(fluvio.create_topic("readings", 1)).unwrap();
    runtime.block_on(async {
        let producer = fluvio
            .topic_producer_with("readings", ProducerConfig { batch_bytes: 256 << 10, ..Default::default() })
            .await
            .unwrap();
        for n in 0..SQL_RECORDS {
            producer.send(RecordKey::NULL, reading(n)).await.unwrap();
        }
        producer.flush().await.unwrap();
    });
    let batches = runtime.block_on(async {
        let config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() };
        let mut stream = fluvio.consumer_stream("readings", config).await.unwrap();
        let mut batches = 0;
        while let Some(batch) = stream.next_batch().await {
            batch.unwrap();
            batches += 1;
        }
        batches
    });
    let rows_per_transaction = SQL_RECORDS.div_ceil(batches);
    println!("sql-sink and baseline: {rows_per_transaction} rows per transaction ({batches} batches)");
    let fresh_table = |client: &tokio_postgres::Client| {
        let table = format!("readings_{}", runs.fetch_add(1, Ordering::Relaxed));
        runtime
            .block_on(client.batch_execute(&format!(
                "CREATE TABLE {table} (id BIGINT NOT NULL, sensor TEXT NOT NULL, celsius DOUBLE PRECISION NOT NULL)"
            )))
            .unwrap();
        table
    };

    let mut group = c.benchmark_group("connectors");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(SQL_RECORDS as u64));
    group.bench_function("sql-sink-1M-rows", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let table = fresh_table(&client);
                let config = connector_config(
                    &dir,
                    &table,
                    &format!(
                        "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: sink-{table}\n  type: sql-sink\n  \
                         topic: readings\n  consumer: {{ max-bytes: 1MiB }}\nsql:\n  url: {}\n  table: {table}\n",
                        pg.url()
                    ),
                );
                let started = Instant::now();
                let sink = start(config, &addr);
                // The sink counts a row once its transaction committed;
                // counting rows in the table would load the database.
                runtime.block_on(wait_until(|| async {
                    sink.metrics.records_out.load(Ordering::Relaxed) >= SQL_RECORDS as u64
                }));
                total += started.elapsed();
                runtime.block_on(sink.stop());
                assert_eq!(runtime.block_on(count(&client, &table)), SQL_RECORDS as i64);
                runtime.block_on(client.batch_execute(&format!("DROP TABLE {table}"))).unwrap();
            }
            total
        })
    });
    for (name, copy) in [("baseline-plain-insert-loop-1M-rows", false), ("baseline-plain-copy-loop-1M-rows", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let table = fresh_table(&client);
                    let started = Instant::now();
                    if copy {
                        runtime.block_on(plain_copy_loop(&mut client, &table, rows_per_transaction));
                    } else {
                        runtime.block_on(plain_insert_loop(&mut client, &table, rows_per_transaction));
                    }
                    total += started.elapsed();
                    assert_eq!(runtime.block_on(count(&client, &table)), SQL_RECORDS as i64);
                    runtime.block_on(client.batch_execute(&format!("DROP TABLE {table}"))).unwrap();
                }
                total
            })
        });
    }

    // mqtt-source: the same publisher, a source or a plain subscriber.
    let broker = Mosquitto::start();
    let (host, port) = broker.host_port();
    let payload = |n: usize| reading(n).into_bytes();
    let publish_all = {
        let (host, port) = (host.clone(), port);
        move |run: u64| {
            let host = host.clone();
            async move {
                let mut options = rumqttc::MqttOptions::new(format!("bench-publisher-{run}"), host, port);
                options.set_inflight(1000);
                let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10_000);
                let acked = Arc::new(AtomicU64::new(0));
                let counter = Arc::clone(&acked);
                let driver = tokio::spawn(async move {
                    while let Ok(event) = eventloop.poll().await {
                        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = event {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                for n in 0..MQTT_MESSAGES {
                    client
                        .publish(format!("bench/{run}/{}", n % 100), rumqttc::QoS::AtLeastOnce, false, payload(n))
                        .await
                        .unwrap();
                }
                (client, driver, acked)
            }
        }
    };
    group.throughput(Throughput::Elements(MQTT_MESSAGES as u64));
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("mqtt-source-100k-messages", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let run = runs.fetch_add(1, Ordering::Relaxed);
                let topic = format!("mqtt-{run}");
                runtime.block_on(fluvio.create_topic(&topic, 1)).unwrap();
                let config = connector_config(
                    &dir,
                    &topic,
                    &format!(
                        "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: source-{run}\n  type: mqtt-source\n  \
                         topic: {topic}\n  producer: {{ linger: 10ms, batch-size: 256KiB }}\nmqtt:\n  url: {}\n  \
                         topics: [ \"bench/{run}/#\", \"probe/{run}\" ]\n  qos: 1\n",
                        broker.url()
                    ),
                );
                let source = start(config, &addr);
                // Subscribed once a probe arrives; the probe is not timed.
                runtime.block_on(async {
                    let (client, mut eventloop) =
                        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(format!("probe-{run}"), &host, port), 10);
                    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
                    while topic_end(&fluvio, &topic).await == 0 {
                        client
                            .publish(format!("probe/{run}"), rumqttc::QoS::AtLeastOnce, false, "probe")
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    driver.abort();
                });
                let probes = runtime.block_on(topic_end(&fluvio, &topic));
                let started = Instant::now();
                let (_client, publisher, _) = runtime.block_on(publish_all(run));
                runtime.block_on(wait_until(|| async {
                    topic_end(&fluvio, &topic).await >= probes + MQTT_MESSAGES as i64
                }));
                total += started.elapsed();
                publisher.abort();
                runtime.block_on(source.stop());
                runtime.block_on(fluvio.delete_topic(&topic)).unwrap();
            }
            total
        })
    });
    group.bench_function("baseline-plain-subscriber-100k-messages", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let run = runs.fetch_add(1, Ordering::Relaxed);
                let received = Arc::new(AtomicU64::new(0));
                let subscriber = runtime.block_on(async {
                    let (client, mut eventloop) =
                        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(format!("plain-{run}"), &host, port), 1024);
                    client.subscribe(format!("bench/{run}/#"), rumqttc::QoS::AtLeastOnce).await.unwrap();
                    loop {
                        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                            break;
                        }
                    }
                    let counter = Arc::clone(&received);
                    let task = tokio::spawn(async move {
                        while let Ok(event) = eventloop.poll().await {
                            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                                std::hint::black_box(&publish.payload);
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                    (client, task)
                });
                let started = Instant::now();
                let (_client, publisher, _) = runtime.block_on(publish_all(run));
                runtime.block_on(wait_until(|| async { received.load(Ordering::Relaxed) >= MQTT_MESSAGES as u64 }));
                total += started.elapsed();
                publisher.abort();
                subscriber.1.abort();
            }
            total
        })
    });
    group.finish();
    drop(fluvio);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, connectors);
criterion_main!(benches);
