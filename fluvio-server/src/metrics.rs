//! What the server counts about itself, exposed in Prometheus's text format
//! on the HTTP listener's `/metrics`.
//!
//! Counters on the hot paths (records appended and sent, each module's
//! work) are atomics bumped where the work happens; the rest (connections,
//! consumer lag, derived-topic lag, connectors) is read from the server's
//! state at each scrape. Series whose labels come from clients (module
//! names, consumer ids) are capped, so a client cannot make a scrape
//! unbounded: see [`MAX_MODULE_SERIES`] and [`MAX_CONSUMER_SERIES`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fluvio_smartengine::{ChainBuilder, ChainObserver, ModuleMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ServerContext;

/// Modules with series of their own; the work of modules past it is
/// counted under `module="(other)"`.
pub const MAX_MODULE_SERIES: usize = 1_000;

/// Consumer ids whose lag is shown, per scrape (the first by name); the
/// rest are left out and counted in `fluvio_consumer_lag_series_dropped`.
pub const MAX_CONSUMER_SERIES: usize = 1_000;

/// The label that stands for every module past [`MAX_MODULE_SERIES`].
const OTHER_MODULES: &str = "(other)";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabels {
    module: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
    topic: String,
    partition: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

/// How long the local log's syncs take: one histogram for the process
/// (the storage layer has no server context to reach).
static SYNC_SECONDS: std::sync::LazyLock<Histogram> = std::sync::LazyLock::new(|| {
    // 50 µs to about 1.6 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 16))
});

/// Whether syncs are timed: only in a process whose server counts.
static SYNCS_TIMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Counts a sync of a partition's files (`fsync` of its log and index).
pub(crate) fn observe_sync(took: std::time::Duration) {
    if SYNCS_TIMED.load(Ordering::Relaxed) {
        SYNC_SECONDS.observe(took.as_secs_f64());
    }
}

/// The server's counters, shared by every connection and pipeline.
#[derive(Debug)]
pub struct ServerMetrics {
    records_appended: Family<PartitionLabels, Counter>,
    bytes_appended: Family<PartitionLabels, Counter>,
    records_sent: Family<TopicLabels, Counter>,
    bytes_sent: Family<TopicLabels, Counter>,
    module_records_in: Family<ModuleLabels, Counter>,
    module_records_out: Family<ModuleLabels, Counter>,
    module_errors: Family<ModuleLabels, Counter>,
    module_fuel: Family<ModuleLabels, Counter>,
    module_late: Family<ModuleLabels, Counter>,
    module_seconds: Family<ModuleLabels, Counter<f64>>,
    compile_seconds: Histogram,
    streams: Gauge,
    /// Modules with a series of their own (at most [`MAX_MODULE_SERIES`]).
    module_series: AtomicUsize,
    /// Batches of modules past the cap, counted under `(other)`.
    modules_over_cap: AtomicUsize,
    /// Whether anything is counted: only a server that serves `/metrics`
    /// pays for counting.
    enabled: bool,
}

impl ServerMetrics {
    /// Counters that count when `enabled`, and otherwise stay at zero at no
    /// cost on the hot paths.
    pub fn new(enabled: bool) -> ServerMetrics {
        if enabled {
            SYNCS_TIMED.store(true, Ordering::Relaxed);
        }
        ServerMetrics {
            records_appended: Family::default(),
            bytes_appended: Family::default(),
            records_sent: Family::default(),
            bytes_sent: Family::default(),
            module_records_in: Family::default(),
            module_records_out: Family::default(),
            module_errors: Family::default(),
            module_fuel: Family::default(),
            module_late: Family::default(),
            module_seconds: Family::default(),
            // 1 ms to about 33 s: small filters compile in milliseconds,
            // regex-heavy modules in seconds.
            compile_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)),
            streams: Gauge::default(),
            module_series: AtomicUsize::new(0),
            modules_over_cap: AtomicUsize::new(0),
            enabled,
        }
    }

    /// Whether this server counts (it serves `/metrics`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `builder`, reporting its modules' work here when this server counts.
    pub fn watch_chain(self: &Arc<ServerMetrics>, builder: ChainBuilder) -> ChainBuilder {
        if !self.enabled {
            return builder;
        }
        let observer = ChainCounters { metrics: Arc::clone(self), modules: parking_lot::Mutex::new(Vec::new()) };
        builder.observer(Arc::new(observer))
    }

    /// Counts a batch stored in a partition.
    pub fn appended(&self, topic: &str, partition: u32, records: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        let labels = PartitionLabels { topic: topic.to_string(), partition };
        self.records_appended.get_or_create(&labels).inc_by(records);
        self.bytes_appended.get_or_create(&labels).inc_by(bytes);
    }

    /// The counters of records and bytes a stream of `topic` sends, looked
    /// up once per stream; `None` when this server does not count.
    pub fn stream_counters(&self, topic: &str) -> Option<SentCounters> {
        if !self.enabled {
            return None;
        }
        let labels = TopicLabels { topic: topic.to_string() };
        let records = self.records_sent.get_or_create(&labels).clone();
        let bytes = self.bytes_sent.get_or_create(&labels).clone();
        Some(SentCounters { records, bytes })
    }

    /// Counts a module's compilation.
    pub fn compiled(&self, took: std::time::Duration) {
        if !self.enabled {
            return;
        }
        self.compile_seconds.observe(took.as_secs_f64());
    }

    /// A stream that counts itself open until the guard is dropped.
    pub fn stream_opened(self: &Arc<ServerMetrics>) -> OpenStream {
        self.streams.inc();
        OpenStream(Arc::clone(self))
    }

    /// The label a module's work is counted under: its name, unless a new
    /// series would pass the cap.
    fn module_labels(&self, module: &str) -> ModuleLabels {
        let labels = ModuleLabels { module: module.to_string() };
        if self.module_records_in.get(&labels).is_some() {
            return labels;
        }
        // Two new modules at once may both take the last place: the cap
        // is a bound on memory, not an exact count.
        if self.module_series.fetch_add(1, Ordering::Relaxed) < MAX_MODULE_SERIES {
            return labels;
        }
        self.module_series.fetch_sub(1, Ordering::Relaxed);
        self.modules_over_cap.fetch_add(1, Ordering::Relaxed);
        ModuleLabels { module: OTHER_MODULES.to_string() }
    }

    /// Renders every metric, the counters and what the server's state says
    /// now, in Prometheus's text format (version 0.0.4).
    pub async fn render(&self, context: &ServerContext) -> String {
        let mut registry = Registry::with_prefix("fluvio");
        registry.register(
            "records_appended",
            "Records stored, by topic and partition (producers, connectors and derived topics)",
            self.records_appended.clone(),
        );
        registry.register(
            "bytes_appended",
            "Bytes of record batches stored, by topic and partition",
            self.bytes_appended.clone(),
        );
        registry.register(
            "stream_records_sent",
            "Records sent to consumer streams, by topic",
            self.records_sent.clone(),
        );
        registry.register("stream_bytes_sent", "Bytes sent to consumer streams, by topic", self.bytes_sent.clone());
        registry.register(
            "smartmodule_records_in",
            "Records handed to a SmartModule, by module (streams, derived topics and `sm test` on this server)",
            self.module_records_in.clone(),
        );
        registry.register(
            "smartmodule_records_out",
            "Records a SmartModule produced, by module",
            self.module_records_out.clone(),
        );
        registry.register(
            "smartmodule_errors",
            "Records a SmartModule failed on, by module",
            self.module_errors.clone(),
        );
        registry.register(
            "smartmodule_fuel_used",
            "Fuel (about one unit per WebAssembly instruction) a SmartModule used, by module",
            self.module_fuel.clone(),
        );
        registry.register(
            "smartmodule_late_records",
            "Records a windowed SmartModule dropped because their windows had closed, by module",
            self.module_late.clone(),
        );
        registry.register(
            "smartmodule_seconds",
            "Time spent inside a SmartModule, by module",
            self.module_seconds.clone(),
        );
        registry.register("smartmodule_compile_seconds", "Time to compile a SmartModule", self.compile_seconds.clone());
        let over_cap = Counter::<u64>::default();
        over_cap.inc_by(self.modules_over_cap.load(Ordering::Relaxed) as u64);
        registry.register(
            "smartmodule_batches_over_series_cap",
            "Batches of modules counted as module=\"(other)\": more modules ran than have series of their own",
            over_cap,
        );
        registry.register("streams", "Consumer streams open now", self.streams.clone());
        registry.register(
            "fsync_seconds",
            "Time to sync a partition's files to disk (the local log; with --flush every-batch, once per append)",
            SYNC_SECONDS.clone(),
        );
        let connections = Gauge::<i64>::default();
        connections.set(context.open_connections.load(Ordering::Relaxed) as i64);
        registry.register("connections", "Client connections served now", connections);

        let state = Snapshot::take(context).await;
        let next_offsets = Family::<PartitionLabels, Gauge>::default();
        let stored_bytes = Family::<PartitionLabels, Gauge>::default();
        for (topic, partition, next, stored) in &state.partitions {
            let labels = PartitionLabels { topic: topic.clone(), partition: *partition };
            next_offsets.get_or_create(&labels).set(*next);
            if let Some(stored) = stored {
                stored_bytes.get_or_create(&labels).set(*stored as i64);
            }
        }
        registry.register(
            "partition_next_offset",
            "The offset the next record appended to a partition gets",
            next_offsets,
        );
        registry.register(
            "partition_stored_bytes",
            "Bytes of record batches in a partition's segment logs on disk (the local log; indexes not counted)",
            stored_bytes,
        );
        let consumer_lag = Family::<ConsumerLabels, Gauge>::default();
        let mut dropped = 0i64;
        let mut consumers_shown = std::collections::BTreeSet::new();
        for (consumer, topic, partition, lag) in &state.consumer_lags {
            if !consumers_shown.contains(consumer) && consumers_shown.len() >= MAX_CONSUMER_SERIES {
                dropped += 1;
                continue;
            }
            consumers_shown.insert(consumer.clone());
            let labels = ConsumerLabels { consumer: consumer.clone(), topic: topic.clone(), partition: *partition };
            consumer_lag.get_or_create(&labels).set(*lag);
        }
        registry.register(
            "consumer_lag",
            "Records between a consumer id's committed offset and its partition's end",
            consumer_lag,
        );
        let dropped_series = Gauge::<i64>::default();
        dropped_series.set(dropped);
        registry.register(
            "consumer_lag_series_dropped",
            "Consumer lag series left out of this scrape: more consumer ids than the cap",
            dropped_series,
        );
        let derived_lag = Family::<PartitionLabels, Gauge>::default();
        for (topic, partition, lag) in &state.derived_lags {
            derived_lag.get_or_create(&PartitionLabels { topic: topic.clone(), partition: *partition }).set(*lag);
        }
        registry.register(
            "derived_topic_lag",
            "Source records a derived topic's pipeline has yet to read, by derived topic and source partition",
            derived_lag,
        );
        let connector_families = ConnectorFamilies::default();
        for (info, reported) in &state.connectors {
            connector_families.add(info, reported.as_ref());
        }
        connector_families.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Decrements the open-stream gauge when the stream ends.
pub struct OpenStream(Arc<ServerMetrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams.dec();
    }
}

/// A stream's counters of what it sent.
pub struct SentCounters {
    records: Counter,
    bytes: Counter,
}

impl SentCounters {
    /// Counts a frame of `records` records in `bytes` bytes.
    pub fn sent(&self, records: u64, bytes: u64) {
        self.records.inc_by(records);
        self.bytes.inc_by(bytes);
    }
}

/// One module's series, looked up once per chain.
struct ModuleCounters {
    records_in: Counter,
    records_out: Counter,
    errors: Counter,
    fuel: Counter,
    late: Counter,
    seconds: Counter<f64>,
}

/// The observer of one chain: it finds each module's series the first
/// time the module reports, then only adds (no label allocation, no map
/// lookup per batch).
struct ChainCounters {
    metrics: Arc<ServerMetrics>,
    /// By module name; a chain has a few modules.
    modules: parking_lot::Mutex<Vec<(String, Arc<ModuleCounters>)>>,
}

impl ChainCounters {
    fn counters(&self, module: &str) -> Arc<ModuleCounters> {
        let mut modules = self.modules.lock();
        if let Some((_, counters)) = modules.iter().find(|(name, _)| name == module) {
            return Arc::clone(counters);
        }
        let metrics = &self.metrics;
        let labels = metrics.module_labels(module);
        let counters = Arc::new(ModuleCounters {
            records_in: metrics.module_records_in.get_or_create(&labels).clone(),
            records_out: metrics.module_records_out.get_or_create(&labels).clone(),
            errors: metrics.module_errors.get_or_create(&labels).clone(),
            fuel: metrics.module_fuel.get_or_create(&labels).clone(),
            late: metrics.module_late.get_or_create(&labels).clone(),
            seconds: metrics.module_seconds.get_or_create(&labels).clone(),
        });
        modules.push((module.to_string(), Arc::clone(&counters)));
        counters
    }
}

impl ChainObserver for ChainCounters {
    fn observe(&self, module: &str, delta: &ModuleMetrics) {
        let counters = self.counters(module);
        counters.records_in.inc_by(delta.records_in);
        counters.records_out.inc_by(delta.records_out);
        counters.errors.inc_by(delta.errors);
        counters.fuel.inc_by(delta.fuel_used);
        counters.late.inc_by(delta.late);
        counters.seconds.inc_by(delta.time.as_secs_f64());
    }
}

/// What the server's state says at a scrape.
struct Snapshot {
    /// (topic, partition, next offset, bytes stored where known).
    partitions: Vec<(String, u32, i64, Option<u64>)>,
    /// (consumer id, topic, partition, lag), by consumer id.
    consumer_lags: Vec<(String, String, u32, i64)>,
    /// (derived topic, source partition, lag).
    derived_lags: Vec<(String, u32, i64)>,
    connectors: Vec<(fluvio_protocol::ConnectorInfo, Option<crate::connectors::ReportedMetrics>)>,
}

impl Snapshot {
    /// Reads the state; what cannot be read now (a storage cluster that
    /// does not answer) is left out of this scrape rather than failing it.
    async fn take(context: &ServerContext) -> Snapshot {
        let topics = context.storage.list_topics().await.unwrap_or_default();
        let mut ends = std::collections::HashMap::new();
        let mut partitions = Vec::new();
        for topic in &topics {
            for (partition, next) in topic.next_offsets.iter().enumerate() {
                let partition = partition as u32;
                ends.insert((topic.name.as_str(), partition), *next);
                let stored =
                    context.storage.partition(&topic.name, partition).await.ok().and_then(|p| p.stored_bytes());
                partitions.push((topic.name.clone(), partition, *next, stored));
            }
        }
        let mut consumer_lags: Vec<_> = context
            .storage
            .list_offsets()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|owned| {
                let offset = owned.offset;
                let end = *ends.get(&(offset.topic.as_str(), offset.partition))?;
                Some((offset.consumer, offset.topic, offset.partition, (end - offset.offset).max(0)))
            })
            .collect();
        consumer_lags.sort();
        let derived_lags = context
            .derived
            .list(context)
            .await
            .into_iter()
            .flat_map(|topic| {
                topic.pipelines.into_iter().map(move |pipeline| {
                    let lag = (pipeline.source_end - pipeline.source_offset).max(0);
                    (topic.name.clone(), pipeline.source_partition, lag)
                })
            })
            .collect();
        let connectors = context.connectors.metrics().await;
        Snapshot { partitions, consumer_lags, derived_lags, connectors }
    }
}

/// Per-connector series, from the supervisor and the connectors' own
/// counters.
#[derive(Default)]
struct ConnectorFamilies {
    records_in: Family<ConnectorLabels, Gauge>,
    records_out: Family<ConnectorLabels, Gauge>,
    failed: Family<ConnectorLabels, Gauge>,
    lag: Family<ConnectorLabels, Gauge>,
    restarts: Family<ConnectorLabels, Gauge>,
    running: Family<ConnectorLabels, Gauge>,
}

impl ConnectorFamilies {
    fn add(&self, info: &fluvio_protocol::ConnectorInfo, reported: Option<&crate::connectors::ReportedMetrics>) {
        let labels = ConnectorLabels { connector: info.name.clone() };
        self.restarts.get_or_create(&labels).set(i64::from(info.restarts));
        self.running.get_or_create(&labels).set(i64::from(info.status == "running"));
        if let Some(reported) = reported {
            // Counts of the current process: they start again at 0 when it
            // is restarted, so they are gauges, not counters.
            self.records_in.get_or_create(&labels).set(reported.records_in as i64);
            self.records_out.get_or_create(&labels).set(reported.records_out as i64);
            self.failed.get_or_create(&labels).set(reported.failed as i64);
            if reported.lag >= 0 {
                self.lag.get_or_create(&labels).set(reported.lag);
            }
        }
    }

    fn register(self, registry: &mut Registry) {
        registry.register("connector_records_in", "Records a connector's current process read", self.records_in);
        registry.register("connector_records_out", "Records a connector's current process delivered", self.records_out);
        registry.register("connector_failed", "Records that failed in a connector's current process", self.failed);
        registry.register("connector_lag", "A sink connector's records stored but not yet written", self.lag);
        registry.register(
            "connector_restarts",
            "Times a connector was restarted after stopping on its own",
            self.restarts,
        );
        registry.register("connector_running", "1 while a connector's process runs", self.running);
    }
}
