//! Connectors against real systems: a real Mosquitto broker and a real
//! PostgreSQL server (throwaway instances on loopback, or `$MQTT_URL` and
//! `$DATABASE_URL`), a real server on loopback, and SmartModules built from
//! this repository. Each test uses its own topics, tables and MQTT topics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dev_support::server::InProcessServer;
use dev_support::services::{Mosquitto, Postgres};
use dev_support::wasm_path;
use fluvio_client::{ConsumerConfig, Fluvio, OffsetSpec, ProducerConfig, RecordKey};
use fluvio_connector::ConnectorError;
use fluvio_connector::config::{ConnectorConfig, Secrets};
use fluvio_connector::runtime::{Metrics, RunOptions};
use futures::StreamExt;
use tokio::sync::watch;

/// A real server on a loopback port, in this process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fluvio-connector-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server in this process and a client of it.
async fn cluster(name: &str) -> (InProcessServer, Fluvio) {
    // The connector's log, shown with a failing test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let server = InProcessServer::start(&format!("connector-test-{name}")).await;
    let fluvio = Fluvio::connect_to(&server.addr).await.unwrap();
    (server, fluvio)
}

fn config(name: &str, text: &str) -> ConnectorConfig {
    let path = scratch(name).join("connector.yaml");
    std::fs::write(&path, text).unwrap();
    ConnectorConfig::from_file(&path, &Secrets::from_env()).unwrap()
}

/// A connector running in this process, with a switch to stop it.
struct Running {
    stop: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<Result<(), ConnectorError>>,
}

impl Running {
    async fn stop(self) -> Result<Arc<Metrics>, ConnectorError> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the connector stops within 30 s")
            .unwrap()?;
        Ok(self.metrics)
    }

    /// Waits until `done`, failing at once (with the connector's error)
    /// if the connector stops first, and with its counters on timeout.
    async fn wait_until(&mut self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            if self.task.is_finished() {
                let ended = (&mut self.task).await;
                panic!("the connector stopped before {what}: {ended:?}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting until {what}; connector metrics: {}",
                self.metrics.to_json()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs the connector the config's `meta.type` names, as the binary does.
fn start(config: ConnectorConfig, addr: &str) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let options = RunOptions::new(addr, shutdown);
    let metrics = Arc::clone(&options.metrics);
    let task = tokio::spawn(async move { fluvio_connector::run(&config, options).await });
    Running { stop, metrics, task }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce_all(fluvio: &Fluvio, topic: &str, values: &[String]) {
    produce_all_with(fluvio, topic, values, ProducerConfig::default()).await;
}

async fn produce_all_with(fluvio: &Fluvio, topic: &str, values: &[String], config: ProducerConfig) {
    let producer = fluvio.topic_producer_with(topic, config).await.unwrap();
    let mut outputs = Vec::with_capacity(values.len());
    for value in values {
        outputs.push(producer.send(RecordKey::NULL, value.clone()).await.unwrap());
    }
    producer.flush().await.unwrap();
    for output in outputs {
        output.wait().await.unwrap();
    }
}

async fn topic_end(fluvio: &Fluvio, topic: &str) -> i64 {
    let topics = fluvio.list_topics().await.unwrap();
    topics.iter().find(|t| t.name == topic).map_or(0, |t| t.next_offsets[0])
}

async fn read_values(fluvio: &Fluvio, topic: &str) -> Vec<String> {
    let config = ConsumerConfig { offset: OffsetSpec::Beginning, continuous: false, ..Default::default() };
    let stream = fluvio.consumer_stream(topic, config).await.unwrap();
    stream.map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()).collect().await
}

fn reading(sensor: &str, celsius: f64) -> String {
    format!(r#"{{"sensor":"{sensor}","celsius":{celsius}}}"#)
}

fn count(pg: &Postgres, table: &str) -> i64 {
    pg.psql(&format!("SELECT count(*) FROM {table}")).parse().unwrap()
}

fn sink_config(name: &str, pg: &Postgres, topic: &str, section_extra: &str, transforms: &str) -> ConnectorConfig {
    config(
        name,
        &format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: {name}\n  type: sql-sink\n  topic: {topic}\n\
             sql:\n  url: {url}\n{section_extra}{transforms}",
            url = pg.url()
        ),
    )
}

/// MQTT topics and client ids of this test run, so runs against one
/// shared broker (`$MQTT_URL`) never see each other's messages or sessions.
fn mqtt_prefix() -> String {
    format!("test-{}", std::process::id())
}

fn mqtt_source_config(broker: &Mosquitto, name: &str, topic: &str, transforms: &str) -> ConnectorConfig {
    config(
        name,
        &format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: {name}-{prefix}\n  type: mqtt-source\n  topic: {topic}\n  \
             producer: {{ linger: 200ms, batch-size: 1MiB }}\nmqtt:\n  url: {}\n  topics: [ \"{prefix}/readings/#\" ]\n  qos: 1\n  \
             topic-as-key: true\n{transforms}",
            broker.url(),
            prefix = mqtt_prefix(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_source_sends_every_message_once_and_filters_before_sending() {
    let broker = Mosquitto::start();
    let (cluster, fluvio) = cluster("mqtt").await;
    fluvio.create_topic("readings-mqtt", 1).await.unwrap();
    fluvio.create_topic("readings-mqtt-all", 1).await.unwrap();
    // Two sources on the same MQTT messages: one filters, one does not, so
    // the bytes each sends can be compared in one run.
    let transforms = format!("transforms:\n  - uses: {}\n", wasm_path("reading-filter").display());
    let filtering = start(mqtt_source_config(&broker, "mqtt-filtering", "readings-mqtt", &transforms), &cluster.addr);
    let plain = start(mqtt_source_config(&broker, "mqtt-plain", "readings-mqtt-all", ""), &cluster.addr);

    let (host, port) = broker.host_port();
    let (client, mut eventloop) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new(format!("publisher-{}", mqtt_prefix()), host, port), 1024);
    let publisher = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // Publish probes until both sources are subscribed and one arrived at each.
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_end(&fluvio, "readings-mqtt").await == 0 || topic_end(&fluvio, "readings-mqtt-all").await == 0 {
        assert!(Instant::now() < deadline, "the sources never delivered a probe");
        client
            .publish(
                format!("{}/readings/probe", mqtt_prefix()),
                rumqttc::QoS::AtLeastOnce,
                false,
                reading("probe", 0.0),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probes = topic_end(&fluvio, "readings-mqtt").await;
    let probe_bytes = (filtering.metrics.bytes.load(Ordering::Relaxed), plain.metrics.bytes.load(Ordering::Relaxed));
    for i in 0..500 {
        // Every other reading is implausible: the filter drops it.
        let celsius = if i % 2 == 0 { 999.0 } else { (i % 40) as f64 };
        let value = reading(&format!("s{i}"), celsius);
        client
            .publish(format!("{}/readings/{i}", mqtt_prefix()), rumqttc::QoS::AtLeastOnce, false, value)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kept = read_values(&fluvio, "readings-mqtt").await.iter().filter(|v| !v.contains("probe")).count();
        let all = read_values(&fluvio, "readings-mqtt-all").await.iter().filter(|v| !v.contains("probe")).count();
        if kept >= 250 && all >= 500 {
            break;
        }
        assert!(Instant::now() < deadline, "only {kept} kept and {all} unfiltered readings arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let filtered_metrics = filtering.stop().await.unwrap();
    let plain_metrics = plain.stop().await.unwrap();
    publisher.abort();

    let sensors = |topic_values: Vec<String>| {
        let mut sensors: Vec<String> = topic_values
            .iter()
            .filter(|v| !v.contains("probe"))
            .map(|v| serde_json::from_str::<serde_json::Value>(v).unwrap()["sensor"].as_str().unwrap().to_string())
            .collect();
        sensors.sort();
        sensors
    };
    let mut expected: Vec<String> = (0..500).filter(|i| i % 2 != 0).map(|i| format!("s{i}")).collect();
    expected.sort();
    assert_eq!(
        sensors(read_values(&fluvio, "readings-mqtt").await),
        expected,
        "every kept reading arrives exactly once"
    );
    let mut everything: Vec<String> = (0..500).map(|i| format!("s{i}")).collect();
    everything.sort();
    assert_eq!(
        sensors(read_values(&fluvio, "readings-mqtt-all").await),
        everything,
        "every message arrives exactly once"
    );
    assert_eq!(filtered_metrics.filtered.load(Ordering::Relaxed), 250, "the source dropped the implausible readings");
    assert_eq!(plain_metrics.filtered.load(Ordering::Relaxed), 0);
    // The dropped half never left the source: it sent about half the bytes
    // the unfiltered source sent for the same messages.
    let filtered_sent = filtered_metrics.bytes.load(Ordering::Relaxed) - probe_bytes.0;
    let plain_sent = plain_metrics.bytes.load(Ordering::Relaxed) - probe_bytes.1;
    assert!(
        filtered_sent * 10 < plain_sent * 7,
        "the filtering source sent {filtered_sent} bytes, the unfiltered one {plain_sent}"
    );
    // The MQTT topic became the key.
    let config = ConsumerConfig { offset: OffsetSpec::Absolute(probes), continuous: false, ..Default::default() };
    let first = fluvio.consumer_stream("readings-mqtt", config).await.unwrap().next().await.unwrap().unwrap();
    assert!(first.key.unwrap().starts_with(format!("{}/readings/", mqtt_prefix()).as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sink_writes_rows_that_match_the_records() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE plain_readings (sensor TEXT PRIMARY KEY, celsius DOUBLE PRECISION NOT NULL)");
    let (cluster, fluvio) = cluster("sql-plain").await;
    fluvio.create_topic("plain", 1).await.unwrap();
    let values: Vec<String> = (0..1000).map(|i| reading(&format!("s{i}"), i as f64 / 4.0)).collect();
    produce_all(&fluvio, "plain", &values).await;
    let mut running = start(sink_config("plain-sink", &pg, "plain", "  table: plain_readings\n", ""), &cluster.addr);
    running.wait_until("1000 rows are written", Duration::from_secs(60), || count(&pg, "plain_readings") == 1000).await;
    let metrics = running.stop().await.unwrap();
    assert_eq!(pg.psql("SELECT celsius FROM plain_readings WHERE sensor = 's998'"), "249.5");
    assert_eq!(
        pg.psql("SELECT sum(celsius) FROM plain_readings"),
        (0..1000).map(|i| i as f64 / 4.0).sum::<f64>().to_string()
    );
    assert_eq!(
        pg.psql("SELECT next_offset FROM fluvio_connector_offsets WHERE connector = 'plain-sink' AND topic = 'plain'"),
        "1000"
    );
    assert_eq!(metrics.records_out.load(Ordering::Relaxed), 1000);
    assert_eq!(metrics.last_offset.load(Ordering::Relaxed), 999);

    // A restarted sink resumes after what it wrote: new records only.
    produce_all(&fluvio, "plain", &[reading("late", 1.0)]).await;
    let mut running = start(sink_config("plain-sink", &pg, "plain", "  table: plain_readings\n", ""), &cluster.addr);
    running
        .wait_until("the late record is written", Duration::from_secs(60), || count(&pg, "plain_readings") == 1001)
        .await;
    running.stop().await.unwrap();
}

/// A sink reads every partition by default, as Fluvio's `partition: all`,
/// each with its own place to resume; `partition: [1]` reads one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sink_reads_every_partition_and_resumes_each_where_it_stopped() {
    let pg = Postgres::start();
    for table in ["spread_readings", "middle_readings"] {
        pg.psql(&format!("CREATE TABLE {table} (sensor TEXT PRIMARY KEY, celsius DOUBLE PRECISION NOT NULL)"));
    }
    let (cluster, fluvio) = cluster("sql-spread").await;
    fluvio.create_topic("spread", 3).await.unwrap();
    let values: Vec<String> = (0..90).map(|i| reading(&format!("s{i}"), i as f64)).collect();
    produce_all(&fluvio, "spread", &values).await;
    let ends = fluvio.topic_info("spread").await.unwrap().next_offsets;
    assert!(ends.iter().all(|&end| end > 0), "records went to every partition: {ends:?}");

    let all = || sink_config("spread-sink", &pg, "spread", "  table: spread_readings\n", "");
    let mut running = start(all(), &cluster.addr);
    running.wait_until("90 rows are written", Duration::from_secs(60), || count(&pg, "spread_readings") == 90).await;
    running.stop().await.unwrap();
    let stored = pg.psql(
        "SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition) \
         FROM fluvio_connector_offsets WHERE connector = 'spread-sink'",
    );
    let expected: Vec<String> = ends.iter().enumerate().map(|(p, end)| format!("{p}:{end}")).collect();
    assert_eq!(stored, expected.join(","), "each partition resumes from its own offset");

    // Restarted, it writes only the new records, whichever partition they
    // went to (a row written twice would break the primary key).
    let late: Vec<String> = (90..120).map(|i| reading(&format!("s{i}"), i as f64)).collect();
    produce_all(&fluvio, "spread", &late).await;
    let mut running = start(all(), &cluster.addr);
    running.wait_until("120 rows are written", Duration::from_secs(60), || count(&pg, "spread_readings") == 120).await;
    let metrics = running.stop().await.unwrap();
    assert_eq!(metrics.failed.load(Ordering::Relaxed), 0, "no row was refused as a duplicate");

    // One listed partition: only its records.
    let middle =
        sink_config("middle-sink", &pg, "spread\n  consumer: { partition: [1] }", "  table: middle_readings\n", "");
    let in_middle = fluvio.topic_info("spread").await.unwrap().next_offsets[1];
    let mut running = start(middle, &cluster.addr);
    running
        .wait_until("partition 1 is written", Duration::from_secs(60), || count(&pg, "middle_readings") == in_middle)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await.unwrap();
    assert_eq!(count(&pg, "middle_readings"), in_middle);

    // A topic given with its settings (Fluvio's 0.2.0 shape) is created
    // with them when it does not exist yet.
    let fresh = sink_config(
        "fresh-sink",
        &pg,
        "{ meta: { name: fresh }, partition: { count: 2, replication: 1 }, retention: { time: 1h } }",
        "  table: middle_readings\n",
        "",
    );
    let running = start(fresh, &cluster.addr);
    let mut created = None;
    for _ in 0..200 {
        if let Ok(info) = fluvio.topic_info("fresh").await {
            created = Some(info);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
    let created = created.expect("the sink created its topic");
    assert_eq!((created.partitions, created.retention.max_age_ms), (2, Some(3_600_000)));

    // A partition the topic does not have stops the sink, naming it.
    let missing =
        sink_config("nowhere-sink", &pg, "spread\n  consumer: { partition: 7 }", "  table: middle_readings\n", "");
    let failed = start(missing, &cluster.addr);
    let error = tokio::time::timeout(Duration::from_secs(30), failed.task).await.unwrap().unwrap().unwrap_err();
    assert!(error.to_string().contains("no partition 7"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sink_keeps_text_nulls_booleans_and_json_exactly() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE odd (id INT PRIMARY KEY, note TEXT, flag BOOLEAN, doc JSONB, maybe TEXT)");
    let (cluster, fluvio) = cluster("sql-odd").await;
    fluvio.create_topic("odd", 1).await.unwrap();
    let values = [
        r#"{"id": 1, "note": "tab\there\nnew line \\ back\\slash", "flag": true, "doc": {"a": [1, 2]}, "maybe": null}"#,
        r#"{"id": 2, "note": "\u00e9t\u00e9 \\N", "flag": false, "doc": "just a string", "maybe": "x"}"#,
    ]
    .map(String::from);
    produce_all(&fluvio, "odd", &values).await;
    let mut running = start(sink_config("odd-sink", &pg, "odd", "  table: odd\n", ""), &cluster.addr);
    running.wait_until("both rows are written", Duration::from_secs(60), || count(&pg, "odd") == 2).await;
    running.stop().await.unwrap();
    assert_eq!(
        pg.psql("SELECT json_agg(json_build_array(note, flag, doc, maybe) ORDER BY id) FROM odd"),
        r#"[["tab\there\nnew line \\ back\\slash", true, {"a": [1, 2]}, null], ["été \\N", false, "just a string", "x"]]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sink_transforms_run_on_the_server_and_only_kept_records_cross_the_network() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE all_readings (sensor TEXT, celsius DOUBLE PRECISION)");
    pg.psql("CREATE TABLE kept_readings (sensor TEXT, celsius DOUBLE PRECISION)");
    let (cluster, fluvio) = cluster("sql-model").await;
    fluvio.create_topic("model", 1).await.unwrap();
    // Half of the readings are implausible.
    let values: Vec<String> =
        (0..2000).map(|i| reading(&format!("s{i}"), if i % 2 == 0 { 500.0 } else { i as f64 / 100.0 })).collect();
    produce_all(&fluvio, "model", &values).await;
    let to_sql =
        |table: &str| format!("  - uses: {}\n    with: {{ table: {table} }}\n", wasm_path("reading-to-sql").display());
    let everything = sink_config("all-sink", &pg, "model", "", &format!("transforms:\n{}", to_sql("all_readings")));
    let filtered = sink_config(
        "kept-sink",
        &pg,
        "model",
        "",
        &format!("transforms:\n  - uses: {}\n{}", wasm_path("reading-filter").display(), to_sql("kept_readings")),
    );
    let mut all = start(everything, &cluster.addr);
    let mut kept = start(filtered, &cluster.addr);
    all.wait_until("all readings are written", Duration::from_secs(60), || count(&pg, "all_readings") == 2000).await;
    kept.wait_until("kept readings are written", Duration::from_secs(60), || count(&pg, "kept_readings") == 1000).await;
    let all = all.stop().await.unwrap();
    let kept = kept.stop().await.unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM kept_readings WHERE celsius > 60"), "0");
    let (all_bytes, kept_bytes) = (all.bytes.load(Ordering::Relaxed), kept.bytes.load(Ordering::Relaxed));
    assert!(
        kept_bytes * 10 < all_bytes * 6,
        "the filtering sink received {kept_bytes} bytes, the other {all_bytes}: dropped records crossed the network"
    );
    assert_eq!(kept.records_out.load(Ordering::Relaxed), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_follow_the_error_policy() {
    let pg = Postgres::start();
    let (cluster, fluvio) = cluster("sql-policy").await;
    fluvio.create_topic("strict", 1).await.unwrap();
    fluvio.create_topic("rejected", 1).await.unwrap();
    // One batch: s3 breaks the CHECK constraint, the second s1 the primary key.
    let mut values: Vec<String> = (0..10).map(|i| reading(&format!("s{i}"), i as f64)).collect();
    values[3] = reading("s3", 500.0);
    values[6] = reading("s1", 6.0);
    produce_all(&fluvio, "strict", &values).await;
    for policy in ["skip", "dead-letter", "fail"] {
        let table = format!("strict_{}", policy.replace('-', "_"));
        pg.psql(&format!(
            "CREATE TABLE {table} (sensor TEXT PRIMARY KEY, celsius DOUBLE PRECISION CHECK (celsius < 100))"
        ));
        let extra = format!("  table: {table}\n  error-policy: {policy}\n  dead-letter-topic: rejected\n");
        let mut running = start(sink_config(&format!("{policy}-sink"), &pg, "strict", &extra, ""), &cluster.addr);
        match policy {
            "fail" => {
                let error = tokio::time::timeout(Duration::from_secs(60), running.task)
                    .await
                    .expect("the fail policy stops the connector")
                    .unwrap()
                    .unwrap_err();
                let message = error.to_string();
                assert!(message.contains("offset 3") && message.contains("check"), "{message}");
                assert_eq!(count(&pg, &table), 0, "nothing of the batch is committed");
            }
            _ => {
                running.wait_until("eight rows are written", Duration::from_secs(60), || count(&pg, &table) == 8).await;
                let metrics = running.stop().await.unwrap();
                assert_eq!(metrics.failed.load(Ordering::Relaxed), 2, "{policy}");
                assert_eq!(pg.psql(&format!("SELECT celsius FROM {table} WHERE sensor = 's1'")), "1");
            }
        }
    }
    let letters = read_values(&fluvio, "rejected").await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let offsets: Vec<i64> = letters
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [3, 6]);
    assert!(letters[0].contains("check constraint"), "{}", letters[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_retried_patiently_until_shutdown() {
    let (cluster, fluvio) = cluster("sql-down").await;
    fluvio.create_topic("down", 1).await.unwrap();
    let port = dev_support::services::free_port();
    let config = config(
        "down-sink",
        &format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: down-sink\n  type: sql-sink\n  topic: down\n\
             sql:\n  url: postgres://postgres@127.0.0.1:{port}/postgres\n"
        ),
    );
    let running = start(config, &cluster.addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.task.is_finished(), "a transient failure must not stop the connector");
    let started = Instant::now();
    running.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown interrupts the backoff");
}

/// Runs the connector binary; it writes its metrics beside its config.
/// A connector process that is killed when dropped, so that a failing
/// test leaves none running behind it.
struct ConnectorProcess(Child);

impl std::ops::Deref for ConnectorProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ConnectorProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ConnectorProcess {
    fn drop(&mut self) {
        // A child already waited for is not signalled again.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connector_binary(config: &Path, addr: &str) -> ConnectorProcess {
    connector_binary_with(config, addr, &[])
}

fn connector_binary_with(config: &Path, addr: &str, extra_args: &[&str]) -> ConnectorProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_fluvio-connector"))
        .arg("--config")
        .arg(config)
        .arg("--metrics-file")
        .arg(config.with_extension("metrics.json"))
        .args(["--addr", addr])
        .args(extra_args)
        .env("RUST_LOG", std::env::var("CONNECTOR_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the connector binary starts");
    ConnectorProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_with_sigkill_writes_each_record_exactly_once() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE ledger (sensor TEXT NOT NULL, celsius DOUBLE PRECISION NOT NULL)");
    let (cluster, fluvio) = cluster("sql-kill").await;
    fluvio.create_topic("ledger", 1).await.unwrap();
    let values: Vec<String> = (0..100_000).map(|i| reading(&format!("s{i}"), (i % 50) as f64)).collect();
    // Small stored batches (a read returns whole ones): the sink then runs
    // thousands of transactions, and the kill lands in the middle. With
    // 64 KiB batches it wrote all 100,000 rows faster than this test polls.
    let small_batches = ProducerConfig { batch_bytes: 2048, ..Default::default() };
    produce_all_with(&fluvio, "ledger", &values, small_batches).await;
    let dir = scratch("kill-sink");
    let file = dir.join("sink.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: ledger-sink\n  type: sql-sink\n  topic: ledger\n  \
             consumer: {{ max-bytes: 2KiB }}\nsql:\n  url: {}\n  table: ledger\n",
            pg.url()
        ),
    )
    .unwrap();
    let mut sink = connector_binary(&file, &cluster.addr);
    wait_until("the sink is writing", Duration::from_secs(120), || count(&pg, "ledger") >= 1_000).await;
    sink.kill().unwrap();
    sink.wait().unwrap();
    let at_kill = count(&pg, "ledger");
    assert!(at_kill < 100_000, "the sink finished before it could be killed");

    // Run again, serving its own /metrics as `fluvio connector run
    // --metrics-addr` does.
    let metrics_addr = format!("127.0.0.1:{}", dev_support::services::free_port());
    let mut sink = connector_binary_with(&file, &cluster.addr, &["--metrics-addr", &metrics_addr]);
    wait_until("every record is written", Duration::from_secs(120), || count(&pg, "ledger") >= 100_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = format!("fluvio_connector_records_out_total{{connector=\"ledger-sink\"}} {}", 100_000 - at_kill);
    let caught_up = "fluvio_connector_lag{connector=\"ledger-sink\"} 0";
    // The lag is measured every 2 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, exposition) = dev_support::services::http_get(&metrics_addr, "/metrics", &[]);
        assert_eq!(status, 200, "{exposition}");
        if exposition.lines().any(|line| line == written) && exposition.lines().any(|line| line == caught_up) {
            break;
        }
        assert!(Instant::now() < deadline, "no `{written}` and `{caught_up}` in {exposition}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill").arg(sink.id().to_string()).status();
    let status = sink.wait().unwrap();
    assert!(status.success(), "SIGTERM stops the sink cleanly: {status}");
    assert_eq!(count(&pg, "ledger"), 100_000);
    assert_eq!(pg.psql("SELECT count(DISTINCT sensor) FROM ledger"), "100000");
    assert_eq!(pg.psql("SELECT next_offset FROM fluvio_connector_offsets WHERE connector = 'ledger-sink'"), "100000");
}

/// Publishes 3000 QoS 1 messages while the source binary is stopped with
/// `signal` after the first 1000 and started again after 2000; every
/// message must reach the topic.
async fn source_stopped_while_messages_flow_loses_none(name: &str, acknowledge: &str, signal: &str) {
    let broker = Mosquitto::start();
    let (cluster, fluvio) = cluster(name).await;
    fluvio.create_topic("flowing", 1).await.unwrap();
    let dir = scratch(name);
    let file = dir.join("source.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: {name}-{prefix}\n  type: mqtt-source\n  topic: flowing\n  \
             producer: {{ linger: 5ms }}\nmqtt:\n  url: {}\n  topics: [ \"{prefix}/{name}/#\" ]\n  qos: 1\n  \
             acknowledge: {acknowledge}\n",
            broker.url(),
            prefix = mqtt_prefix(),
        ),
    )
    .unwrap();
    let mut source = connector_binary(&file, &cluster.addr);
    let (host, port) = broker.host_port();
    let (client, mut eventloop) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new(format!("{name}-publisher-{}", mqtt_prefix()), host, port),
        1024,
    );
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher_acks = Arc::clone(&acked);
    let publisher = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    publisher_acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => panic!("the test's publisher failed: {error}"),
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_end(&fluvio, "flowing").await == 0 {
        assert!(Instant::now() < deadline, "the source never subscribed");
        client
            .publish(format!("{}/{name}/probe", mqtt_prefix()), rumqttc::QoS::AtLeastOnce, false, "probe")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Messages keep flowing while the source is stopped and started again:
    // the broker keeps QoS 1 messages for its persistent session, and what
    // the source had taken from the broker it sends before exiting.
    for i in 0..3000 {
        if i == 1000 {
            let _ = Command::new("kill").args(["-s", signal]).arg(source.id().to_string()).status();
            let status = tokio::task::block_in_place(|| source.wait().unwrap());
            if signal == "TERM" {
                assert!(status.success(), "SIGTERM stops the source cleanly: {status}");
            }
        }
        if i == 2000 {
            source = connector_binary(&file, &cluster.addr);
        }
        client
            .publish(format!("{}/{name}/data", mqtt_prefix()), rumqttc::QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let values: std::collections::HashSet<String> = read_values(&fluvio, "flowing").await.into_iter().collect();
        let missing: Vec<usize> = (0..3000).filter(|i| !values.contains(&format!("m{i}"))).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = Command::new("kill").arg(source.id().to_string()).status();
    let _ = tokio::task::block_in_place(|| source.wait());
    if publisher.is_finished() {
        publisher.await.expect("the test's publisher stopped");
        panic!("the test's publisher stopped");
    }
    publisher.abort();
    let published = acked.load(Ordering::Relaxed);
    assert!(published >= 3000, "the broker acknowledged only {published} of the test's messages");
    assert!(
        missing.is_empty(),
        "{} messages never arrived, the first {:?}; the source's last metrics: {}",
        missing.len(),
        &missing[..missing.len().min(10)],
        std::fs::read_to_string(file.with_extension("metrics.json")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_with_sigterm_while_messages_flow_loses_none() {
    source_stopped_while_messages_flow_loses_none("mqtt-sigterm", "received", "TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_acknowledging_stored_records_killed_with_sigkill_loses_none() {
    source_stopped_while_messages_flow_loses_none("mqtt-sigkill", "stored", "KILL").await;
}

#[test]
fn the_binary_refuses_bad_configs_naming_the_file_and_the_key() {
    let dir = scratch("bad-config");
    let file = dir.join("bad.yaml");
    let base = "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: bad\n  type: sql-sink\n  topic: t\n  secrets: [ { name: FLUVIO_TEST_NO_SUCH_SECRET } ]\nsql:\n  url: postgres://u:${{ secrets.FLUVIO_TEST_NO_SUCH_SECRET }}@127.0.0.1/db\n";
    for (text, expected) in [
        (base.to_string(), "`sql.url` needs the secret FLUVIO_TEST_NO_SUCH_SECRET".to_string()),
        (
            base.replace("  topic: t\n", "  topic: t\n  producer: { linger: sometime }\n"),
            "`meta.producer.linger` \"sometime\" is not a duration".into(),
        ),
        (
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: bad\n  type: telepathy-sink\n  topic: t\n".to_string(),
            "unknown connector type \"telepathy-sink\"".into(),
        ),
        ("meta: [".to_string(), "is not valid YAML".into()),
    ] {
        std::fs::write(&file, &text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_fluvio-connector"))
            .arg("--config")
            .arg(&file)
            .arg("--check")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()) || expected.starts_with("unknown"), "{stderr}");
        assert!(stderr.contains(&expected), "expected {expected:?} in {stderr}");
    }
}

/// Run as the cluster runs it (its state directory given, `--cluster-run`),
/// a connector reaches nothing of the host beyond its own directory: an
/// `offsets-file` elsewhere, a `uses:` path outside, `/dev/zero`, and a
/// secret only the environment holds are all refused.
#[test]
fn a_connector_the_cluster_runs_is_kept_to_its_own_directory() {
    let dir = scratch("cluster-run");
    let file = dir.join("connector.yaml");
    let secrets = dir.join("secrets");
    std::fs::write(&secrets, "TOKEN=from-the-file\n").unwrap();
    let http = |extra: &str, transforms: &str| {
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: h\n  type: http-sink\n  topic: t\n  secrets: [ {{ name: TOKEN }}, {{ name: HOME }} ]\n\
             http:\n  endpoint: http://127.0.0.1:1/in\n  headers: [ \"Authorization: ${{{{ secrets.TOKEN }}}}\" ]\n{extra}{transforms}"
        )
    };
    for (text, expected) in [
        (
            http("  offsets-file: /tmp/anywhere.json\n", ""),
            "`http.offsets-file` \"/tmp/anywhere.json\" is outside the connector's directory",
        ),
        (http("  offsets-file: ../up.json\n", ""), "is outside the connector's directory"),
        (http("", "transforms:\n  - uses: /etc/hostname\n"), "is outside the connector's directory"),
        (http("", "transforms:\n  - uses: /dev/zero\n"), "is outside the connector's directory"),
        (
            http("  headers: [ \"X-Home: ${{ secrets.HOME }}\" ]\n", "")
                .replace("  headers: [ \"Authorization: ${{ secrets.TOKEN }}\" ]\n", ""),
            "`http.headers[0]` needs the secret HOME, which its secrets file does not hold",
        ),
    ] {
        std::fs::write(&file, &text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_fluvio-connector"))
            .arg("--config")
            .arg(&file)
            .arg("--secrets")
            .arg(&secrets)
            .arg("--cluster-run")
            .arg("--check")
            .env("FLUVIO_CONNECTOR_STATE_DIR", &dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}\n{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
        assert!(!stderr.contains("from-the-file"), "{stderr}");
    }
    // The same config with its state in its directory is accepted.
    std::fs::write(&file, http("  offsets-file: offsets.json\n", "")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fluvio-connector"))
        .args(["--config", file.to_str().unwrap(), "--secrets", secrets.to_str().unwrap(), "--cluster-run", "--check"])
        .env("FLUVIO_CONNECTOR_STATE_DIR", &dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// A small HTTP/1.1 server on loopback for the HTTP connectors: it records
/// every request and answers by path.
///
/// - `GET /poll`: `{"n": N}`, N counting up from 0.
/// - `GET /stream`: 50 lines `line-0` .. `line-49`, split across writes at
///   awkward places, then the connection closes.
/// - `POST /ingest`: records the body; the first `fail_first` requests are
///   answered 503, the rest 200.
/// - `POST /reject`: 400.
struct HttpServer {
    addr: std::net::SocketAddr,
    requests: Arc<std::sync::Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

/// One request the test server received.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    async fn start(fail_first: usize) -> HttpServer {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
        let log = Arc::clone(&requests);
        let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ingests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let (log, polls, ingests) = (Arc::clone(&log), Arc::clone(&polls), Arc::clone(&ingests));
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let path = parts.nth(1).unwrap_or("").to_string();
                        let mut headers = Vec::new();
                        loop {
                            let mut header = String::new();
                            read.read_line(&mut header).await.unwrap();
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            let (name, value) = header.split_once(':').unwrap();
                            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                        }
                        let length: usize = headers
                            .iter()
                            .find(|(name, _)| name == "content-length")
                            .map_or(0, |(_, value)| value.parse().unwrap());
                        let mut body = vec![0; length];
                        read.read_exact(&mut body).await.unwrap();
                        log.lock().unwrap().push(Request { path: path.clone(), headers, body });
                        let respond = |status: &str, body: String| {
                            format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                        };
                        let answer = match path.as_str() {
                            "/poll" => {
                                let n = polls.fetch_add(1, Ordering::Relaxed);
                                respond("200 OK", format!("{{\"n\": {n}}}"))
                            }
                            "/stream" => {
                                write.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").await.unwrap();
                                let text: String = (0..50).map(|i| format!("line-{i}\n")).collect();
                                for chunk in text.as_bytes().chunks(7) {
                                    write.write_all(chunk).await.unwrap();
                                    write.flush().await.unwrap();
                                    tokio::time::sleep(Duration::from_millis(2)).await;
                                }
                                return;
                            }
                            "/ingest" if ingests.fetch_add(1, Ordering::Relaxed) < fail_first => {
                                respond("503 Service Unavailable", "try later".into())
                            }
                            "/ingest" => respond("200 OK", String::new()),
                            _ => respond("400 Bad Request", "no such thing".into()),
                        };
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpServer { addr, requests, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Bodies of the requests to `path`.
    fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().iter().filter(|r| r.path == path).map(|r| r.body.clone()).collect()
    }
}

fn config_with_secrets(name: &str, text: &str, secrets: &str) -> ConnectorConfig {
    let path = scratch(name).join("connector.yaml");
    std::fs::write(&path, text).unwrap();
    ConnectorConfig::from_file(&path, &Secrets::parse(secrets, &path.with_file_name("secrets")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_polls_with_headers_and_reads_streams_line_by_line() {
    let server = HttpServer::start(0).await;
    let (cluster, fluvio) = cluster("http-source").await;
    fluvio.create_topic("polled", 1).await.unwrap();
    fluvio.create_topic("streamed", 1).await.unwrap();
    let polling = start(
        config_with_secrets(
            "http-poll",
            &format!(
                "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: http-poll\n  type: http-source\n  topic: polled\n  \
                 secrets: [ {{ name: API_TOKEN }} ]\nhttp:\n  endpoint: {}\n  interval: 100ms\n  \
                 headers: [ \"Authorization: Bearer ${{{{ secrets.API_TOKEN }}}}\" ]\n",
                server.url("/poll")
            ),
            "API_TOKEN=s3cret\n",
        ),
        &cluster.addr,
    );
    let streaming = start(
        config(
            "http-stream",
            &format!(
                "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: http-stream\n  type: http-source\n  topic: streamed\n\
                 http:\n  endpoint: {}\n  stream: true\n",
                server.url("/stream")
            ),
        ),
        &cluster.addr,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_end(&fluvio, "polled").await < 5 || topic_end(&fluvio, "streamed").await < 50 {
        assert!(Instant::now() < deadline, "the HTTP sources did not deliver");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    polling.stop().await.unwrap();
    streaming.stop().await.unwrap();

    // Each poll is one record, in order, and carried the secret header.
    let polled = read_values(&fluvio, "polled").await;
    for (i, value) in polled.iter().enumerate() {
        assert_eq!(value, &format!("{{\"n\": {i}}}"));
    }
    let requests = server.requests.lock().unwrap().clone();
    let poll = requests.iter().find(|r| r.path == "/poll").unwrap();
    assert!(poll.headers.contains(&("authorization".into(), "Bearer s3cret".into())), "{:?}", poll.headers);
    // Each line of the stream is one record; when the stream ends the
    // source reconnects (after a backoff), so the lines may come again.
    let streamed = read_values(&fluvio, "streamed").await;
    let expected: Vec<String> = (0..50).map(|i| format!("line-{i}")).collect();
    assert_eq!(&streamed[..50], &expected[..]);
}

fn http_sink_config(name: &str, server: &HttpServer, path: &str, extra: &str, offsets: &Path) -> ConnectorConfig {
    config(
        name,
        &format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: {name}\n  type: http-sink\n  topic: outgoing\n\
             http:\n  endpoint: {}\n  offsets-file: {}\n{extra}",
            server.url(path),
            offsets.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_delivers_every_record_through_failures_and_resumes_where_it_stopped() {
    // The first three requests fail with 503: the sink retries.
    let server = HttpServer::start(3).await;
    let (cluster, fluvio) = cluster("http-sink").await;
    fluvio.create_topic("outgoing", 1).await.unwrap();
    let values: Vec<String> = (0..100).map(|i| format!("{{\"id\": {i}}}")).collect();
    produce_all(&fluvio, "outgoing", &values).await;
    let dir = scratch("http-sink-state");
    let offsets = dir.join("offsets.json");

    let sink = start(http_sink_config("http-each", &server, "/ingest", "", &offsets), &cluster.addr);
    let delivered = |server: &HttpServer| {
        let bodies: std::collections::BTreeSet<String> =
            server.bodies("/ingest").into_iter().map(|b| String::from_utf8(b).unwrap()).collect();
        bodies
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered(&server).len() < 100 {
        assert!(Instant::now() < deadline, "only {} records delivered", delivered(&server).len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = sink.stop().await.unwrap();
    assert_eq!(delivered(&server), values.iter().cloned().collect(), "every record arrives, at least once");
    assert_eq!(metrics.last_offset.load(Ordering::Relaxed), 99);

    // Restarted, it resumes after what it delivered: only new records go.
    let before = server.bodies("/ingest").len();
    let sink = start(http_sink_config("http-each", &server, "/ingest", "", &offsets), &cluster.addr);
    produce_all(&fluvio, "outgoing", &["{\"id\": 100}".to_string()]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.bodies("/ingest").len() == before {
        assert!(Instant::now() < deadline, "the new record was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink.stop().await.unwrap();
    let after = server.bodies("/ingest");
    assert_eq!(after[before..], [b"{\"id\": 100}".to_vec()], "a restart sends only what was not delivered");

    // One JSON array per batch.
    let arrays = start(
        http_sink_config("http-array", &server, "/batch-ok", "  mode: json-array\n", &dir.join("array.json")),
        &cluster.addr,
    );
    // `/batch-ok` answers 400: the sink stops, naming the refusal.
    let error = tokio::time::timeout(Duration::from_secs(30), arrays.task).await.unwrap().unwrap().unwrap_err();
    assert!(error.to_string().contains("400"), "{error}");
    let body = server.bodies("/batch-ok").into_iter().next().expect("the batch was sent");
    let array: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(array[0], serde_json::json!({"id": 0}));
    assert!(array.len() > 1, "a batch travels as one array");
    let request = server.requests.lock().unwrap().iter().find(|r| r.path == "/batch-ok").cloned().unwrap();
    assert!(request.headers.contains(&("content-type".into(), "application/json".into())));
    let _ = arrays.stop;
}

/// SQL model records choose their table: one naming a table outside the
/// sink's `tables`, the sink's own offsets table (in any schema), or a name
/// with a NUL is refused as a record under `skip`, and the sink goes on
/// writing the others (it never retries such a batch forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_model_records_write_only_the_allowed_tables() {
    let pg = Postgres::start();
    let (cluster, fluvio) = cluster("sql-allowed").await;
    fluvio.create_topic("model", 1).await.unwrap();
    pg.psql("CREATE TABLE allowed_rows (id TEXT PRIMARY KEY); CREATE TABLE other_rows (id TEXT PRIMARY KEY)");
    let insert = |table: &str, id: &str| {
        serde_json::json!({"Insert": {"table": table, "values": [{"column": "id", "raw_value": id, "type": "Text"}]}})
            .to_string()
    };
    let values = vec![
        insert("allowed_rows", "a"),
        insert("other_rows", "b"),
        insert("fluvio_connector_offsets", "c"),
        insert("public.fluvio_connector_offsets", "d"),
        insert("allowed\u{0}rows", "e"),
        insert("allowed_rows", "f\u{0}"),
        insert("allowed_rows", "g"),
    ];
    produce_all(&fluvio, "model", &values).await;
    let extra = "  error-policy: skip\n  tables: [allowed_rows]\n";
    let mut running = start(sink_config("model-sink", &pg, "model", extra, ""), &cluster.addr);
    running
        .wait_until("the two allowed rows are written", Duration::from_secs(60), || count(&pg, "allowed_rows") == 2)
        .await;
    let metrics = running.stop().await.unwrap();
    assert_eq!(metrics.failed.load(Ordering::Relaxed), 5);
    assert_eq!(count(&pg, "other_rows"), 0);
    assert_eq!(pg.psql("SELECT string_agg(id, ',' ORDER BY id) FROM allowed_rows"), "a,g");
    // A list that names the offsets table is refused when the config is read.
    let config = sink_config("bad-list", &pg, "model", "  tables: [allowed_rows, fluvio_connector_offsets]\n", "");
    let error = fluvio_connector::sql::SqlSink::from_config(&config, &cluster.addr).unwrap_err();
    assert!(error.to_string().contains("offsets table"), "{error}");
}

/// The sql-sink speaks TLS to a PostgreSQL started with a test
/// certificate, by libpq's `sslmode` names: `verify-full` with the right
/// authority writes over TLS (the server says so), with another authority
/// it writes nothing, and `sslmode` in the URL's query works as in libpq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sink_speaks_tls_to_postgres_by_libpq_sslmode() {
    let dir = scratch("pg-tls");
    let ca = dev_support::pki::TestCa::new(&dir, "pg");
    let other = dev_support::pki::TestCa::new(&dir, "other");
    let (cert, key) = ca.server("pg-server");
    let pg = Postgres::start_with_tls(&cert, &key);
    pg.psql("CREATE TABLE tls_rows (id TEXT PRIMARY KEY)");
    let (cluster, fluvio) = cluster("sql-tls").await;
    fluvio.create_topic("tls", 1).await.unwrap();
    produce_all(&fluvio, "tls", &[r#"{"id":"a"}"#.to_string(), r#"{"id":"b"}"#.to_string()]).await;

    // Another authority: the handshake fails, for good (retrying cannot
    // help), and nothing is written.
    let extra = format!("  table: tls_rows\n  sslmode: verify-full\n  sslrootcert: {}\n", other.cert().display());
    let running = start(sink_config("tls-wrong-ca", &pg, "tls", &extra, ""), &cluster.addr);
    let error = tokio::time::timeout(Duration::from_secs(60), running.task)
        .await
        .expect("a refused certificate stops the connector")
        .unwrap()
        .unwrap_err();
    assert!(error.to_string().contains("certificate was refused"), "{error}");
    assert_eq!(count(&pg, "tls_rows"), 0, "a server the authority did not sign is not written to");

    // The right one: written, over TLS.
    let extra = format!("  table: tls_rows\n  sslmode: verify-full\n  sslrootcert: {}\n", ca.cert().display());
    let mut running = start(sink_config("tls-sink", &pg, "tls", &extra, ""), &cluster.addr);
    running.wait_until("both rows are written", Duration::from_secs(60), || count(&pg, "tls_rows") == 2).await;
    let encrypted: i64 = pg
        .psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'")
        .parse()
        .unwrap();
    assert!(encrypted >= 1, "the sink's connection is encrypted");
    running.stop().await.unwrap();

    // libpq's query form, and a mode it does not know.
    let url_form = config(
        "tls-url",
        &format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: tls-url\n  type: sql-sink\n  topic: tls\nsql:\n  url: {}?sslmode=verify-ca&sslrootcert={}\n  table: tls_rows\n",
            pg.url(),
            ca.cert().display()
        ),
    );
    fluvio_connector::sql::SqlSink::from_config(&url_form, &cluster.addr).expect("libpq's query settings are read");
    let bad = sink_config("tls-bad", &pg, "tls", "  table: tls_rows\n  sslmode: allow\n", "");
    let error = fluvio_connector::sql::SqlSink::from_config(&bad, &cluster.addr).unwrap_err();
    assert!(error.to_string().contains("is not one of disable, prefer, require, verify-ca, verify-full"), "{error}");
}

/// Under an egress list (what `fluvio-server --connector-egress` hands its
/// connectors), an http or mqtt endpoint outside it is refused when the
/// config is read, naming the address and the list; inside it, accepted.
#[test]
fn endpoints_outside_the_egress_list_are_refused() {
    let dir = scratch("egress");
    let file = dir.join("connector.yaml");
    let http = "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: h\n  type: http-sink\n  topic: t\nhttp:\n  endpoint: http://127.0.0.1:1/in\n";
    let mqtt = "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: m\n  type: mqtt-source\n  topic: t\nmqtt:\n  url: mqtt://127.0.0.1:1883\n  topic: a\n";
    for text in [http, mqtt] {
        std::fs::write(&file, text).unwrap();
        let check = |list: &str| {
            Command::new(env!("CARGO_BIN_EXE_fluvio-connector"))
                .args(["--config", file.to_str().unwrap(), "--check"])
                .env(fluvio_connector::egress::EGRESS_ENV, list)
                .output()
                .unwrap()
        };
        let refused = check("10.0.0.0/8,api.example.com");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("127.0.0.1") && stderr.contains("10.0.0.0/8,api.example.com"), "{stderr}");
        let allowed = check("127.0.0.0/8");
        assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    }
}
