//! The runtime around a connector: it connects to the cluster, applies the
//! connector's transforms where the seed says they belong, retries
//! transient failures with backoff, stops cleanly on SIGTERM and keeps
//! metrics.
//!
//! - A **source** runs its transforms in its own process, like a producer:
//!   records a filter drops are never sent.
//! - A **sink** uploads its transforms with its stream, so the server runs
//!   them and records a filter drops never cross the network. The sink
//!   resumes from the offset it committed with its last write.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use fluvio_client::{
    ConsumerConfig, ErrorPolicy, Fluvio, FluvioError, OffsetSpec, ProduceOutput, ProducerConfig, RecordKey,
    TopicProducer,
};
use tokio::sync::{mpsc, watch};

use crate::config::{ConnectorConfig, PartitionSelection, StartOffset};
use crate::connector::{Acknowledgement, ConnectorError, ResumeKey, Sink, Source};

/// How a connector is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The cluster's address.
    pub addr: String,
    /// Where to write the metrics (JSON, replaced every few seconds).
    pub metrics_file: Option<PathBuf>,
    /// Turns `true` to stop the connector cleanly.
    pub shutdown: watch::Receiver<bool>,
    /// The connector's counters, readable while it runs.
    pub metrics: Arc<Metrics>,
}

impl RunOptions {
    /// Options for a connector of the cluster at `addr`, stopped by `shutdown`.
    pub fn new(addr: impl Into<String>, shutdown: watch::Receiver<bool>) -> RunOptions {
        RunOptions { addr: addr.into(), metrics_file: None, shutdown, metrics: Metrics::new() }
    }
}

/// A shutdown switch that turns on at SIGTERM or Ctrl-C.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (switch, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: finishing the work in hand");
        let _ = switch.send(true);
    });
    receiver
}

/// Counters of one connector.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read: from the other system (sources), or stored records the
    /// stream covered (sinks).
    pub records_in: AtomicU64,
    /// Records delivered: sent to the topic (sources) or written (sinks).
    pub records_out: AtomicU64,
    /// Records the transforms dropped.
    pub filtered: AtomicU64,
    /// Records that failed: in a transform, or refused by the other system.
    pub failed: AtomicU64,
    /// Offset of the last record delivered; -1 before the first.
    pub last_offset: AtomicI64,
    /// Sinks: stored records not yet written (the topic's end minus the
    /// sink's position); -1 when unknown.
    pub lag: AtomicI64,
    /// Bytes of records sent to the cluster (sources) or received from it
    /// (sinks): what crossed the network after the transforms.
    pub bytes: AtomicU64,
}

impl Metrics {
    /// Zeroed counters, with no offset and no lag known yet.
    pub fn new() -> Arc<Metrics> {
        let metrics = Metrics::default();
        metrics.last_offset.store(-1, Ordering::Relaxed);
        metrics.lag.store(-1, Ordering::Relaxed);
        Arc::new(metrics)
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records_in": self.records_in.load(Ordering::Relaxed),
            "records_out": self.records_out.load(Ordering::Relaxed),
            "filtered": self.filtered.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "last_offset": self.last_offset.load(Ordering::Relaxed),
            "lag": self.lag.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
        })
    }
}

/// Exponential backoff between retries: 100 ms doubling up to 30 s, so an
/// unreachable system is retried patiently without spinning the CPU.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { next: min, max }
    }

    /// Waits before the next attempt; returns `false` if shutdown came first.
    pub async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>, error: &ConnectorError) -> bool {
        tracing::warn!(%error, retry_in = ?self.next, "transient failure; retrying");
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self, min: Duration) {
        self.next = min;
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow()
}

/// Connects to the cluster, retrying while it is unreachable.
async fn connect_cluster(addr: &str, shutdown: &mut watch::Receiver<bool>) -> Result<Option<Fluvio>, ConnectorError> {
    retry_transient(shutdown, || Fluvio::connect_to(addr)).await
}

/// Runs `attempt` until it succeeds, waiting with backoff after each
/// transient failure; `None` when shutdown came first.
async fn retry_transient<T, F: Future<Output = Result<T, FluvioError>>>(
    shutdown: &mut watch::Receiver<bool>,
    mut attempt: impl FnMut() -> F,
) -> Result<Option<T>, ConnectorError> {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) => ConnectorError::from(error),
        };
        if !error.is_transient() {
            return Err(error);
        }
        if !backoff.wait(shutdown, &error).await {
            return Ok(None);
        }
    }
}

/// Writes the metrics file every few seconds until dropped.
fn report_metrics(name: &str, metrics: Arc<Metrics>, file: Option<PathBuf>) -> tokio::task::JoinHandle<()> {
    let name = name.to_string();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            write_metrics(&name, &metrics, file.as_deref());
        }
    })
}

fn write_metrics(name: &str, metrics: &Metrics, file: Option<&std::path::Path>) {
    let json = metrics.to_json();
    tracing::debug!(connector = name, metrics = %json, "metrics");
    if let Some(file) = file
        && let Err(error) = fluvio_fs::write_atomic(file, json.to_string().as_bytes())
    {
        tracing::warn!(%error, file = %file.display(), "cannot write the metrics file");
    }
}

/// What both kinds of connector start with: the metrics reporter and a
/// cluster connection (retried while the cluster is unreachable); `None`
/// when shutdown came first.
async fn start_run(
    config: &ConnectorConfig,
    options: &mut RunOptions,
) -> Result<Option<(Fluvio, tokio::task::JoinHandle<()>)>, ConnectorError> {
    let reporter = report_metrics(&config.name, Arc::clone(&options.metrics), options.metrics_file.clone());
    let connected = match connect_cluster(&options.addr, &mut options.shutdown).await {
        Ok(Some(fluvio)) => ensure_topic(&fluvio, config).await.map(|()| Some(fluvio)),
        other => other,
    };
    match connected {
        Ok(Some(fluvio)) => Ok(Some((fluvio, reporter))),
        other => {
            reporter.abort();
            other.map(|_| None)
        }
    }
}

/// Creates the connector's topic with the settings its config gives, when
/// it gives them and the topic does not exist yet (as Fluvio's connectors
/// do with a 0.2.0 topic config). An existing topic is used as it is.
async fn ensure_topic(fluvio: &Fluvio, config: &ConnectorConfig) -> Result<(), ConnectorError> {
    let Some(settings) = &config.topic_settings else { return Ok(()) };
    match fluvio.topic_info(&config.topic).await {
        Ok(_) => return Ok(()),
        Err(FluvioError::TopicNotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    tracing::info!(topic = %config.topic, partitions = settings.partitions, "creating the connector's topic");
    match fluvio
        .create_replicated_topic(&config.topic, settings.partitions, settings.replication, settings.retention)
        .await
    {
        Err(error) if error.code() != Some(fluvio_client::protocol::ErrorCode::TopicExists) => Err(error.into()),
        _ => Ok(()),
    }
}

/// Runs a source until it ends or shutdown: records go through the
/// connector's transforms in this process, and only their outputs are sent.
pub async fn run_source<S: Source>(
    config: &ConnectorConfig,
    mut source: S,
    mut options: RunOptions,
) -> Result<Arc<Metrics>, ConnectorError> {
    let metrics = Arc::clone(&options.metrics);
    let Some((fluvio, reporter)) = start_run(config, &mut options).await? else {
        return Ok(metrics);
    };
    let producer_config = ProducerConfig {
        batch_bytes: config.producer.batch_size,
        linger: config.producer.linger,
        compression: config.producer.compression,
        smartmodules: config.transforms.clone(),
        // A record a transform fails on is counted and logged; one bad
        // message does not stop the data of everyone else.
        policy: ErrorPolicy::Skip,
        ..Default::default()
    };
    let producer = Arc::new(fluvio.topic_producer_with(&config.topic, producer_config).await?);
    // The producer sends in the background; its byte count is copied into
    // the metrics here, in a task of its own: `source.next()` is never
    // interrupted for it, because a source's client may not survive being
    // interrupted mid-read (rumqttc can lose an acknowledgement it was
    // writing).
    let byte_counter = {
        let (producer, metrics) = (Arc::clone(&producer), Arc::clone(&metrics));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                metrics.bytes.store(producer.bytes_sent(), Ordering::Relaxed);
            }
        })
    };
    let (acks, settled) = mpsc::channel::<(ProduceOutput, Option<Acknowledgement>)>(65_536);
    let settler = tokio::spawn(settle(settled, Arc::clone(&metrics)));
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let result = 'connect: loop {
        if stopping(&options.shutdown) {
            break Ok(());
        }
        if let Err(error) = source.connect().await {
            if error.is_transient() && backoff.wait(&mut options.shutdown, &error).await {
                continue;
            }
            break if error.is_transient() { Ok(()) } else { Err(error) };
        }
        backoff.reset(MIN_BACKOFF);
        loop {
            let next = tokio::select! {
                next = source.next() => next,
                _ = options.shutdown.wait_for(|stop| *stop) => break 'connect Ok(()),
            };
            match next {
                Ok(Some(record)) => {
                    metrics.records_in.fetch_add(1, Ordering::Relaxed);
                    match producer.send(RecordKey::from_option(record.key), record.value).await {
                        Ok(output) => {
                            if acks.send((output, record.acknowledgement)).await.is_err() {
                                break 'connect Err(ConnectorError::Fatal("the acknowledgement task stopped".into()));
                            }
                        }
                        Err(error) => break 'connect Err(error.into()),
                    }
                }
                Ok(None) => break 'connect Ok(()),
                Err(error) if error.is_transient() => {
                    if !backoff.wait(&mut options.shutdown, &error).await {
                        break 'connect Ok(());
                    }
                    continue 'connect;
                }
                Err(error) => break 'connect Err(error),
            }
        }
    };
    // Whatever was read is sent before the connector stops.
    let flushed = producer.flush().await;
    drop(acks);
    let _ = settler.await;
    byte_counter.abort();
    source.close().await;
    metrics.failed.fetch_add(producer.skipped(), Ordering::Relaxed);
    metrics.bytes.store(producer.bytes_sent(), Ordering::Relaxed);
    let skipped = producer.skipped();
    metrics.filtered.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some(f.saturating_sub(skipped))).ok();
    reporter.abort();
    write_metrics(&config.name, &metrics, options.metrics_file.as_deref());
    result?;
    flushed?;
    Ok(metrics)
}

/// Counts each sent record once the cluster acknowledged it, and then
/// acknowledges it to its system.
async fn settle(mut outputs: mpsc::Receiver<(ProduceOutput, Option<Acknowledgement>)>, metrics: Arc<Metrics>) {
    while let Some((output, acknowledgement)) = outputs.recv().await {
        match output.wait().await.map(|metadata| metadata.stored_offset()) {
            Ok(Some(offset)) => {
                metrics.records_out.fetch_add(1, Ordering::Relaxed);
                metrics.last_offset.fetch_max(offset, Ordering::Relaxed);
                if let Some(acknowledgement) = acknowledgement {
                    acknowledgement.run().await;
                }
            }
            // Dropped by a transform (or skipped after failing in one:
            // moved to `failed` at the end); done with, either way.
            Ok(None) => {
                metrics.filtered.fetch_add(1, Ordering::Relaxed);
                if let Some(acknowledgement) = acknowledgement {
                    acknowledgement.run().await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "a record was not delivered");
                metrics.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs a sink until shutdown: the server applies the transforms, the sink
/// writes each batch with its offset, and a restart resumes after the last
/// batch written. Each partition the config selects gets a sink of its own
/// (`make` builds them), its own stream and its own place to resume from,
/// so one slow or failing partition does not reorder another's records.
pub async fn run_sink<K: Sink>(
    config: &ConnectorConfig,
    make: impl Fn() -> Result<K, ConnectorError>,
    mut options: RunOptions,
) -> Result<Arc<Metrics>, ConnectorError> {
    let metrics = Arc::clone(&options.metrics);
    let Some((fluvio, reporter)) = start_run(config, &mut options).await? else {
        return Ok(metrics);
    };
    let result = async {
        let Some(partitions) = sink_partitions(&fluvio, config, &mut options.shutdown).await? else {
            return Ok(());
        };
        tracing::info!(connector = %config.name, ?partitions, "reading partitions");
        let sinks = partitions.iter().map(|_| make()).collect::<Result<Vec<K>, _>>()?;
        let positions: Vec<(u32, Arc<AtomicI64>)> =
            partitions.iter().map(|&partition| (partition, Arc::new(AtomicI64::new(-1)))).collect();
        let lag =
            tokio::spawn(track_lag(fluvio.clone(), config.topic.clone(), positions.clone(), Arc::clone(&metrics)));
        let runs = sinks.into_iter().zip(positions).map(|(sink, (partition, position))| {
            let key = ResumeKey { connector: config.name.clone(), topic: config.topic.clone(), partition };
            run_partition(config, &fluvio, sink, key, position, &metrics, options.shutdown.clone())
        });
        let result = futures::future::try_join_all(runs).await.map(drop);
        lag.abort();
        result
    }
    .await;
    reporter.abort();
    write_metrics(&config.name, &metrics, options.metrics_file.as_deref());
    result.map(|()| metrics)
}

/// The partitions a sink reads: those the config lists (each checked to
/// exist), or every partition the topic has now. `None` when shutdown
/// came while the cluster was unreachable.
async fn sink_partitions(
    fluvio: &Fluvio,
    config: &ConnectorConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Vec<u32>>, ConnectorError> {
    let Some(info) = retry_transient(shutdown, || fluvio.topic_info(&config.topic)).await? else {
        return Ok(None);
    };
    let count = info.partitions;
    match &config.consumer.partitions {
        PartitionSelection::All => Ok(Some((0..count).collect())),
        PartitionSelection::Listed(listed) => match listed.iter().find(|&&partition| partition >= count) {
            Some(&missing) => Err(FluvioError::PartitionNotFound(config.topic.clone(), missing).into()),
            None => Ok(Some(listed.clone())),
        },
    }
}

/// Runs one partition's sink until shutdown or a failure that is not
/// transient.
async fn run_partition<K: Sink>(
    config: &ConnectorConfig,
    fluvio: &Fluvio,
    mut sink: K,
    key: ResumeKey,
    position: Arc<AtomicI64>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectorError> {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    'connect: loop {
        if stopping(&shutdown) {
            return Ok(());
        }
        let resume = match sink.connect(&key).await {
            Ok(resume) => resume,
            Err(error) if error.is_transient() => {
                if backoff.wait(&mut shutdown, &error).await {
                    continue;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let offset = match resume {
            Some(next) => OffsetSpec::Absolute(next),
            None => match config.consumer.start {
                StartOffset::Beginning => OffsetSpec::Beginning,
                StartOffset::End => OffsetSpec::End,
                StartOffset::Absolute(offset) => OffsetSpec::Absolute(offset),
                StartOffset::FromEnd(n) => OffsetSpec::FromEnd(n),
            },
        };
        if let Some(next) = resume {
            position.store(next, Ordering::Relaxed);
        }
        let consumer = ConsumerConfig {
            partitions: vec![key.partition],
            offset,
            continuous: true,
            smartmodules: config.transforms.clone(),
            policy: ErrorPolicy::Skip,
            max_bytes: config.consumer.max_bytes,
            ..Default::default()
        };
        let mut stream = match fluvio.consumer_stream(&config.topic, consumer).await {
            Ok(stream) => stream,
            Err(error) => {
                let error = ConnectorError::from(error);
                if error.is_transient() && backoff.wait(&mut shutdown, &error).await {
                    continue;
                }
                return if error.is_transient() { Ok(()) } else { Err(error) };
            }
        };
        tracing::info!(connector = %config.name, partition = key.partition, ?offset, "streaming");
        let mut covered_from = resume;
        let mut counted_bytes = 0;
        loop {
            let next = tokio::select! {
                next = stream.next_batch() => next,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let batch = match next {
                Some(Ok(batch)) => batch,
                Some(Err(FluvioError::DeadLetter(failure))) => {
                    tracing::warn!(%failure, "a transform failed on a record");
                    metrics.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(Err(error)) => {
                    let error = ConnectorError::from(error);
                    if error.is_transient() && backoff.wait(&mut shutdown, &error).await {
                        continue 'connect;
                    }
                    return if error.is_transient() { Ok(()) } else { Err(error) };
                }
                None => {
                    let error =
                        ConnectorError::Transient { system: "the cluster".into(), reason: "the stream ended".into() };
                    if backoff.wait(&mut shutdown, &error).await {
                        continue 'connect;
                    }
                    return Ok(());
                }
            };
            metrics.bytes.fetch_add(stream.bytes_received().saturating_sub(counted_bytes), Ordering::Relaxed);
            counted_bytes = stream.bytes_received();
            match sink.write(&batch).await {
                Ok(report) => {
                    backoff.reset(MIN_BACKOFF);
                    let covered = covered_from
                        .map_or(batch.records.len() as u64, |from| (batch.next_offset - from).max(0) as u64);
                    covered_from = Some(batch.next_offset);
                    metrics.records_in.fetch_add(covered, Ordering::Relaxed);
                    metrics.records_out.fetch_add(report.written, Ordering::Relaxed);
                    metrics.failed.fetch_add(report.rejected, Ordering::Relaxed);
                    let delivered = report.written + report.rejected;
                    metrics.filtered.fetch_add(covered.saturating_sub(delivered), Ordering::Relaxed);
                    if let Some(last) = batch.records.last() {
                        metrics.last_offset.fetch_max(last.offset, Ordering::Relaxed);
                    }
                    position.store(batch.next_offset, Ordering::Relaxed);
                }
                // Whether the write landed is known only to the sink: ask
                // it again where to resume.
                Err(error) if error.is_transient() => {
                    if backoff.wait(&mut shutdown, &error).await {
                        continue 'connect;
                    }
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Keeps `metrics.lag` current: over the sink's partitions, each
/// partition's end minus the sink's position in it (known once the sink
/// has a position in every partition).
async fn track_lag(fluvio: Fluvio, topic: String, positions: Vec<(u32, Arc<AtomicI64>)>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let Ok(topics) = fluvio.list_topics().await else { continue };
        let Some(ends) = topics.iter().find(|t| t.name == topic).map(|t| &t.next_offsets) else { continue };
        let lags: Option<Vec<i64>> = positions
            .iter()
            .map(|(partition, position)| {
                let at = position.load(Ordering::Relaxed);
                let end = ends.get(*partition as usize)?;
                (at >= 0).then(|| (end - at).max(0))
            })
            .collect();
        if let Some(lags) = lags {
            metrics.lag.store(lags.iter().sum(), Ordering::Relaxed);
        }
    }
}

/// A producer for a dead-letter topic, for sinks whose policy sends refused
/// records there.
pub async fn dead_letter_producer(addr: &str, topic: &str) -> Result<TopicProducer, ConnectorError> {
    let fluvio = Fluvio::connect_to(addr).await?;
    Ok(fluvio.topic_producer(topic).await?)
}
