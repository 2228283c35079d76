//! The configuration types a Fluvio application builds, by the names and
//! shapes of Fluvio's `fluvio` crate: [`Offset`],
//! [`TopicProducerConfigBuilder`], [`ConsumerConfigExtBuilder`], the older
//! [`ConsumerConfigBuilder`], and the shortcuts [`producer`], [`consumer`]
//! and [`PartitionConsumer`].
//!
//! Each builds this crate's own [`ProducerConfig`] or [`ConsumerConfig`],
//! the native configs, so the extras (error policies, dead letters) stay
//! one field away. They are reachable at Fluvio's paths too
//! (`fluvio_client::consumer::ConsumerConfigExtBuilder`, ...).
//!
//! ```no_run
//! use fluvio_client::{ConsumerConfigExtBuilder, Fluvio, Offset, RecordKey};
//! use futures::StreamExt;
//!
//! # async fn run() -> Result<(), fluvio_client::FluvioError> {
//! let fluvio = Fluvio::connect().await?;
//! let producer = fluvio.topic_producer("greetings").await?;
//! producer.send(RecordKey::NULL, "hello").await?;
//! producer.flush().await?;
//! let config = ConsumerConfigExtBuilder::default()
//!     .topic("greetings")
//!     .offset_start(Offset::beginning())
//!     .disable_continuous(true)
//!     .build()?;
//! let mut stream = fluvio.consumer_with_config(config).await?;
//! while let Some(record) = stream.next().await {
//!     println!("{}", record?.get_value().as_utf8_lossy_string());
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use fluvio_protocol::{Compression, OffsetSpec, SmartModuleInvocation};

use crate::consumer::{ConsumerConfig, MultiplePartitionConsumerStream, OffsetManagementStrategy, RecordBytes};
use crate::partitioning::{PartitionId, Partitioner, SpecificPartitioner};
use crate::producer::{Isolation, ProducerConfig, SharedProducerCallback, TopicProducer};
use crate::retry::DeliverySemantic;
use crate::{Fluvio, FluvioError};

/// Where a consumer starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset(OffsetSpec);

impl Offset {
    /// The first record still stored.
    pub fn beginning() -> Offset {
        Offset(OffsetSpec::Beginning)
    }

    /// After the last record: only records produced from now on.
    pub fn end() -> Offset {
        Offset(OffsetSpec::End)
    }

    /// An absolute offset; negative ones are refused.
    pub fn absolute(offset: i64) -> Result<Offset, FluvioError> {
        if offset < 0 {
            return Err(FluvioError::NegativeOffset(offset));
        }
        Ok(Offset(OffsetSpec::Absolute(offset)))
    }

    /// `n` records after the first still stored.
    pub fn from_beginning(n: u32) -> Offset {
        Offset(OffsetSpec::FromBeginning(u64::from(n)))
    }

    /// `n` records before the end.
    pub fn from_end(n: u32) -> Offset {
        Offset(OffsetSpec::FromEnd(u64::from(n)))
    }

    /// The offset as the protocol carries it.
    pub fn spec(self) -> OffsetSpec {
        self.0
    }
}

impl From<Offset> for OffsetSpec {
    fn from(offset: Offset) -> Self {
        offset.0
    }
}

/// Fluvio's name for a consumed record's key or value, borrowed
/// ([`RecordBytes`]).
pub type RecordData = RecordBytes;

/// The name Fluvio code uses for a producer's config.
pub type TopicProducerConfig = ProducerConfig;

/// Builds a [`TopicProducerConfig`], as Fluvio's builder of that name does.
#[derive(Debug, Clone, Default)]
pub struct TopicProducerConfigBuilder {
    config: ProducerConfig,
}

impl TopicProducerConfigBuilder {
    /// A batch is sent once it holds this many bytes of records.
    pub fn batch_size(&mut self, bytes: usize) -> &mut Self {
        self.config.batch_bytes = bytes;
        self
    }

    /// A batch is sent at the latest this long after its first record.
    pub fn linger(&mut self, linger: Duration) -> &mut Self {
        self.config.linger = linger;
        self
    }

    /// How batches are compressed before they are sent and stored.
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.config.compression = compression;
        self
    }

    /// At most or at least once.
    pub fn delivery_semantic(&mut self, semantic: DeliverySemantic) -> &mut Self {
        self.config.delivery_semantic = semantic;
        self
    }

    /// SmartModules applied, in order, before records are sent.
    pub fn smartmodules(&mut self, smartmodules: Vec<SmartModuleInvocation>) -> &mut Self {
        self.config.smartmodules = smartmodules;
        self
    }

    /// Every record goes to this partition (by default they spread).
    pub fn partition(&mut self, partition: u32) -> &mut Self {
        self.config.partition = Some(partition);
        self
    }

    /// Chooses each record's partition (Fluvio's
    /// [`SiphashRoundRobinPartitioner`](crate::SiphashRoundRobinPartitioner)
    /// by default).
    pub fn partitioner(&mut self, partitioner: Arc<dyn Partitioner + Send + Sync>) -> &mut Self {
        self.config.partitioner = partitioner;
        self
    }

    /// The largest batch sent in one request; larger records are refused.
    pub fn max_request_size(&mut self, bytes: usize) -> &mut Self {
        self.config.max_request_size = bytes;
        self
    }

    /// `send` waits while this many batches are queued for a partition.
    pub fn batch_queue_size(&mut self, batches: usize) -> &mut Self {
        self.config.batch_queue_size = batches;
        self
    }

    /// How long the server may take to answer a batch.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.config.timeout = timeout;
        self
    }

    /// Fluvio's isolation level (see [`ProducerConfig::isolation`]).
    pub fn isolation(&mut self, isolation: Isolation) -> &mut Self {
        self.config.isolation = isolation;
        self
    }

    /// Told of each batch the server acknowledged.
    pub fn callback(&mut self, callback: SharedProducerCallback) -> &mut Self {
        self.config.callback = Some(callback);
        self
    }

    /// Every record goes to `partition`, as Fluvio's builder says it.
    pub fn set_specific_partitioner(&mut self, partition: PartitionId) -> &mut Self {
        self.partitioner(Arc::new(SpecificPartitioner::new(partition)))
    }

    /// The config; a batch size, request size or queue size of 0 is
    /// refused.
    pub fn build(&self) -> Result<TopicProducerConfig, FluvioError> {
        if self.config.batch_bytes == 0 {
            return Err(FluvioError::InvalidRequest("a producer's batch size must be at least 1 byte".into()));
        }
        if self.config.max_request_size == 0 || self.config.batch_queue_size == 0 {
            return Err(FluvioError::InvalidRequest(
                "a producer's max request size and batch queue size must be at least 1".into(),
            ));
        }
        Ok(self.config.clone())
    }
}

impl ProducerConfig {
    /// A builder, as Fluvio code makes one.
    pub fn builder() -> TopicProducerConfigBuilder {
        TopicProducerConfigBuilder::default()
    }
}

/// A consumer's config, as Fluvio's `ConsumerConfigExt` has it: the topic,
/// the partitions, where to start and how to store offsets.
#[derive(Debug, Clone)]
pub struct ConsumerConfigExt {
    /// The topic.
    pub topic: String,
    /// The partitions; every partition of the topic when empty.
    pub partition: Vec<u32>,
    /// The consumer id offsets are stored under.
    pub offset_consumer: Option<String>,
    /// Where to start (where the consumer id's stored offset is, if any).
    pub offset_start: Offset,
    /// How offsets are stored.
    pub offset_strategy: OffsetManagementStrategy,
    /// How often offsets are stored under the auto strategy.
    pub offset_flush: Duration,
    /// Stop at the end instead of waiting for new records.
    pub disable_continuous: bool,
    /// Most bytes of stored batches the server reads per step.
    pub max_bytes: i32,
    /// SmartModules the server applies before sending.
    pub smartmodule: Vec<SmartModuleInvocation>,
    /// Fluvio's isolation level. Consumers here only ever see stored
    /// records, so both levels read the same.
    pub isolation: Isolation,
}

impl ConsumerConfigExt {
    /// A builder.
    pub fn builder() -> ConsumerConfigExtBuilder {
        ConsumerConfigExtBuilder::default()
    }

    /// The topic and this crate's config for it.
    pub fn into_parts(self) -> (String, ConsumerConfig) {
        let config = ConsumerConfig {
            partitions: self.partition,
            offset: self.offset_start.spec(),
            continuous: !self.disable_continuous,
            smartmodules: self.smartmodule,
            max_bytes: self.max_bytes.max(1) as u32,
            consumer_id: self.offset_consumer,
            offset_strategy: self.offset_strategy,
            offset_flush: self.offset_flush,
            ..ConsumerConfig::default()
        };
        (self.topic, config)
    }
}

/// Builds a [`ConsumerConfigExt`]; `topic` and `offset_start` are required.
#[derive(Debug, Clone, Default)]
pub struct ConsumerConfigExtBuilder {
    topic: Option<String>,
    partition: Vec<u32>,
    offset_consumer: Option<String>,
    offset_start: Option<Offset>,
    offset_strategy: Option<OffsetManagementStrategy>,
    offset_flush: Option<Duration>,
    disable_continuous: bool,
    max_bytes: Option<i32>,
    smartmodule: Vec<SmartModuleInvocation>,
    isolation: Isolation,
}

impl ConsumerConfigExtBuilder {
    /// Fluvio's isolation level (both read the same here).
    pub fn isolation(&mut self, isolation: Isolation) -> &mut Self {
        self.isolation = isolation;
        self
    }

    /// The topic.
    pub fn topic(&mut self, topic: impl Into<String>) -> &mut Self {
        self.topic = Some(topic.into());
        self
    }

    /// Adds a partition to read (without any, every partition is read).
    pub fn partition(&mut self, partition: u32) -> &mut Self {
        self.partition.push(partition);
        self
    }

    /// The consumer id offsets are stored under.
    pub fn offset_consumer(&mut self, id: impl Into<String>) -> &mut Self {
        self.offset_consumer = Some(id.into());
        self
    }

    /// Where to start, when the consumer id has no stored offset.
    pub fn offset_start(&mut self, offset: Offset) -> &mut Self {
        self.offset_start = Some(offset);
        self
    }

    /// How offsets are stored.
    pub fn offset_strategy(&mut self, strategy: OffsetManagementStrategy) -> &mut Self {
        self.offset_strategy = Some(strategy);
        self
    }

    /// How often offsets are stored under the auto strategy.
    pub fn offset_flush(&mut self, period: Duration) -> &mut Self {
        self.offset_flush = Some(period);
        self
    }

    /// Stop at the end instead of waiting for new records.
    pub fn disable_continuous(&mut self, disable: bool) -> &mut Self {
        self.disable_continuous = disable;
        self
    }

    /// Most bytes of stored batches the server reads per step.
    pub fn max_bytes(&mut self, bytes: i32) -> &mut Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// SmartModules the server applies before sending.
    pub fn smartmodule(&mut self, smartmodules: Vec<SmartModuleInvocation>) -> &mut Self {
        self.smartmodule = smartmodules;
        self
    }

    /// The config. A missing topic or start offset, and a strategy other
    /// than `None` without a consumer id, are refused. The strategy is
    /// `None` unless set, as in Fluvio (the native [`ConsumerConfig`]'s is
    /// `Auto`).
    pub fn build(&self) -> Result<ConsumerConfigExt, FluvioError> {
        let missing = |field: &str| FluvioError::ConsumerConfig(format!("`{field}` is required"));
        let topic = self.topic.clone().ok_or_else(|| missing("topic"))?;
        let offset_start = self.offset_start.ok_or_else(|| missing("offset_start"))?;
        let defaults = ConsumerConfig::default();
        let offset_strategy = match (self.offset_strategy, &self.offset_consumer) {
            (Some(strategy), None) if strategy != OffsetManagementStrategy::None => {
                return Err(FluvioError::ConsumerConfig(
                    "an offset strategy needs a consumer id; set `offset_consumer`".into(),
                ));
            }
            (Some(strategy), _) => strategy,
            // Fluvio's default: a consumer id alone says where to start,
            // and nothing is stored unless the application asks for it.
            (None, _) => OffsetManagementStrategy::None,
        };
        if self.max_bytes.is_some_and(|bytes| bytes <= 0) {
            return Err(FluvioError::ConsumerConfig("`max_bytes` must be positive".into()));
        }
        Ok(ConsumerConfigExt {
            topic,
            partition: self.partition.clone(),
            offset_consumer: self.offset_consumer.clone(),
            offset_start,
            offset_strategy,
            offset_flush: self.offset_flush.unwrap_or(defaults.offset_flush),
            disable_continuous: self.disable_continuous,
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes as i32),
            smartmodule: self.smartmodule.clone(),
            isolation: self.isolation,
        })
    }
}

/// Builds this crate's [`ConsumerConfig`] the way Fluvio's older
/// `ConsumerConfig::builder()` does, for [`PartitionConsumer`] streams.
#[derive(Debug, Clone, Default)]
pub struct ConsumerConfigBuilder {
    disable_continuous: bool,
    max_bytes: Option<i32>,
    smartmodule: Vec<SmartModuleInvocation>,
}

impl ConsumerConfigBuilder {
    /// Fluvio's isolation level; consumers here only ever see stored
    /// records, so both levels read the same.
    pub fn isolation(&mut self, isolation: Isolation) -> &mut Self {
        let _ = isolation;
        self
    }

    /// Stop at the end instead of waiting for new records.
    pub fn disable_continuous(&mut self, disable: bool) -> &mut Self {
        self.disable_continuous = disable;
        self
    }

    /// Most bytes of stored batches the server reads per step.
    pub fn max_bytes(&mut self, bytes: i32) -> &mut Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// SmartModules the server applies before sending.
    pub fn smartmodule(&mut self, smartmodules: Vec<SmartModuleInvocation>) -> &mut Self {
        self.smartmodule = smartmodules;
        self
    }

    /// The config.
    pub fn build(&self) -> Result<ConsumerConfig, FluvioError> {
        let defaults = ConsumerConfig::default();
        if self.max_bytes.is_some_and(|bytes| bytes <= 0) {
            return Err(FluvioError::ConsumerConfig("`max_bytes` must be positive".into()));
        }
        Ok(ConsumerConfig {
            continuous: !self.disable_continuous,
            max_bytes: self.max_bytes.map_or(defaults.max_bytes, |bytes| bytes as u32),
            smartmodules: self.smartmodule.clone(),
            ..defaults
        })
    }
}

impl ConsumerConfig {
    /// A builder, as Fluvio's older API makes one.
    pub fn builder() -> ConsumerConfigBuilder {
        ConsumerConfigBuilder::default()
    }
}

impl Fluvio {
    /// A producer with a config built by [`TopicProducerConfigBuilder`].
    pub async fn topic_producer_with_config(
        &self,
        topic: impl Into<String>,
        config: TopicProducerConfig,
    ) -> Result<TopicProducer, FluvioError> {
        self.topic_producer_with(&topic.into(), config).await
    }

    /// A stream as a [`ConsumerConfigExt`] describes it, under Fluvio's
    /// [`ConsumerStream`](crate::ConsumerStream) trait (commits and flushes
    /// are awaited).
    pub async fn consumer_with_config(
        &self,
        config: ConsumerConfigExt,
    ) -> Result<MultiplePartitionConsumerStream, FluvioError> {
        let (topic, config) = config.into_parts();
        Ok(MultiplePartitionConsumerStream::new(self.consumer_stream(&topic, config).await?))
    }

    /// A consumer of one partition, whose streams say where they start.
    pub async fn partition_consumer(
        &self,
        topic: impl Into<String>,
        partition: u32,
    ) -> Result<PartitionConsumer, FluvioError> {
        let topic = topic.into();
        let info = self.topic_info(&topic).await?;
        if partition >= info.partitions {
            return Err(FluvioError::PartitionNotFound(topic, partition));
        }
        Ok(PartitionConsumer { fluvio: self.clone(), topic, partition })
    }
}

/// A consumer of one partition of a topic (Fluvio's older consumer API).
#[derive(Debug, Clone)]
pub struct PartitionConsumer {
    fluvio: Fluvio,
    topic: String,
    partition: u32,
}

impl PartitionConsumer {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// A continuous stream from `offset`.
    pub async fn stream(&self, offset: Offset) -> Result<MultiplePartitionConsumerStream, FluvioError> {
        self.stream_with_config(offset, ConsumerConfig::default()).await
    }

    /// A stream from `offset` with a config (its partitions and start are
    /// this consumer's).
    pub async fn stream_with_config(
        &self,
        offset: Offset,
        config: ConsumerConfig,
    ) -> Result<MultiplePartitionConsumerStream, FluvioError> {
        let config = ConsumerConfig { partitions: vec![self.partition], offset: offset.spec(), ..config };
        Ok(MultiplePartitionConsumerStream::new(self.fluvio.consumer_stream(&self.topic, config).await?))
    }
}

/// A producer for `topic` on the cluster [`Fluvio::connect`] finds.
pub async fn producer(topic: impl Into<String>) -> Result<TopicProducer, FluvioError> {
    Fluvio::connect().await?.topic_producer(&topic.into()).await
}

/// A consumer of one partition on the cluster [`Fluvio::connect`] finds.
pub async fn consumer(topic: impl Into<String>, partition: u32) -> Result<PartitionConsumer, FluvioError> {
    Fluvio::connect().await?.partition_consumer(topic, partition).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_check_what_they_are_given() {
        let config = ConsumerConfigExtBuilder::default()
            .topic("t")
            .partition(2)
            .offset_start(Offset::from_end(3))
            .offset_consumer("app")
            .offset_strategy(OffsetManagementStrategy::Manual)
            .disable_continuous(true)
            .max_bytes(4096)
            .build()
            .unwrap();
        let (topic, config) = config.into_parts();
        assert_eq!((topic.as_str(), config.partitions.as_slice()), ("t", &[2][..]));
        assert_eq!((config.offset, config.continuous, config.max_bytes), (OffsetSpec::FromEnd(3), false, 4096));
        assert_eq!(
            (config.consumer_id.as_deref(), config.offset_strategy),
            (Some("app"), OffsetManagementStrategy::Manual)
        );

        let error = ConsumerConfigExtBuilder::default().topic("t").build().unwrap_err();
        assert!(error.to_string().contains("`offset_start` is required"), "{error}");
        let error = ConsumerConfigExtBuilder::default()
            .topic("t")
            .offset_start(Offset::end())
            .offset_strategy(OffsetManagementStrategy::Auto)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("needs a consumer id"), "{error}");
        assert!(Offset::absolute(-1).is_err());
        assert_eq!(Offset::absolute(7).unwrap().spec(), OffsetSpec::Absolute(7));

        let producer = TopicProducerConfigBuilder::default()
            .batch_size(1000)
            .linger(Duration::from_millis(7))
            .delivery_semantic(DeliverySemantic::AtMostOnce)
            .compression(Compression::Zstd)
            .build()
            .unwrap();
        assert_eq!((producer.batch_bytes, producer.linger), (1000, Duration::from_millis(7)));
        assert_eq!(producer.compression, Compression::Zstd);
        assert_eq!(producer.delivery_semantic.retry_policy().max_retries, 0);
        assert!(TopicProducerConfigBuilder::default().batch_size(0).build().is_err());
    }
}
