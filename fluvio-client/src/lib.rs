//! The SDK: connect to a server, administer topics and SmartModules,
//! produce and consume records.
//!
//! - [`Fluvio`] is a client of one server: admin calls, [`TopicProducer`]s
//!   (which batch records and, with the `smartengine` feature, can apply
//!   SmartModules before sending) and [`RecordStream`]s (which can have the
//!   server apply SmartModules before records cross the network).
//! - [`SmartModuleInvocation`] names a SmartModule, its kind and its
//!   parameters; the same value configures producers and consumers.
//! - [`local_chain`] runs SmartModules in this process, as producers do
//!   (the `smartengine` feature, on by default).
//!
//! This crate owns connections and the client side of the protocol. It
//! does not store records (the server does), and it does not define the
//! batch format or the protocol (`fluvio-protocol`, re-exported as
//! [`protocol`]) or run wasm itself (`fluvio-smartengine`, re-exported as
//! [`engine`] with the `smartengine` feature). With
//! `default-features = false` it compiles no wasm runtime at all.
//!
//! ```no_run
//! use futures::StreamExt;
//! use fluvio_client::{ConsumerConfig, Fluvio, SmartModuleInvocation};
//!
//! # async fn run() -> Result<(), fluvio_client::FluvioError> {
//! let fluvio = Fluvio::connect_to("127.0.0.1:9003").await?;
//! let filter = SmartModuleInvocation::from_file("target/wasm32-unknown-unknown/release/my_filter.wasm")?;
//! let config = ConsumerConfig::default().smartmodule(filter);
//! let mut stream = fluvio.consumer_stream("my-topic", config).await?;
//! while let Some(record) = stream.next().await {
//!     println!("{}", String::from_utf8_lossy(&record?.value));
//! }
//! # Ok(()) }
//! ```

mod admin;
mod client;
pub mod compat;
mod connection;
pub mod consumer;
mod error;
pub mod partitioning;
pub mod producer;
mod profile;
mod retry;
mod security;
#[cfg(feature = "smartengine")]
mod smartmodule;

pub use fluvio_protocol as protocol;

/// Fluvio's `fluvio::dataplane` paths for the types programs name there.
pub mod dataplane {
    /// Records and partitions.
    pub mod record {
        pub use crate::compat::offsets::ReplicaKey;
        pub use crate::consumer::{ConsumerRecord, Record, RecordData};
        pub use crate::producer::RecordKey;
        /// A record's offset in its partition.
        pub type Offset = i64;
    }
    /// The error consumer streams yield under Fluvio's trait.
    pub mod link {
        pub use crate::compat::link::ErrorCode;
        /// SmartModule failures.
        pub mod smartmodule {
            pub use crate::compat::link::SmartModuleTransformRuntimeError;
        }
    }
}

/// Fluvio's paths to the admin specs: `metadata::topic::TopicSpec` and
/// `metadata::smartmodule::SmartModuleSpec`.
pub mod metadata {
    /// Topics.
    pub mod topic {
        pub use crate::compat::admin::{PartitionMap, PartitionMaps, TopicSpec, TopicStatus};
    }
    /// Partitions.
    pub mod partition {
        pub use crate::compat::offsets::ReplicaKey;
        pub use crate::compat::watch::{PartitionSpec, PartitionStatus, ReplicaStatus};
    }
    /// The servers, as Fluvio's SPUs.
    pub mod spu {
        pub use crate::compat::spu::{
            EncryptionEnum, Endpoint, IngressAddr, IngressPort, SpuSpec, SpuStatus, SpuStatusResolution, SpuType,
        };
    }
    /// What watches yield.
    pub mod store {
        pub use crate::compat::watch::{Message, MetadataChanges, MetadataUpdate, MsgType, WatchResponse};
    }
    /// The admin objects' common shapes.
    pub mod objects {
        pub use crate::compat::admin::{CommonCreateRequest, Metadata};
    }
    /// SmartModules.
    pub mod smartmodule {
        pub use crate::compat::admin::{
            SmartModuleSpec, SmartModuleWasm, SmartModuleWasmFormat, SmartModuleWasmSummary,
        };
        pub use fluvio_protocol::messages::SmartModuleInfo;
    }
}
#[cfg(feature = "smartengine")]
pub use fluvio_smartengine as engine;

/// The shared byte buffer consumed records hold their keys and values in
/// (slices of the batch they arrived in, so reading a record copies nothing).
pub use bytes::Bytes;
pub use client::Fluvio;
pub use compat::admin::{
    AdminSpec, CommonCreateRequest, CreatableAdminSpec, DeletableAdminSpec, FluvioAdmin, Metadata, SmartModuleSpec,
    TopicSpec, TopicStatus, Validate,
};
/// Fluvio's names at the crate root, where Fluvio has them.
pub use compat::config::{
    ConsumerConfigBuilder, ConsumerConfigExt, ConsumerConfigExtBuilder, Offset, PartitionConsumer, TopicProducerConfig,
    TopicProducerConfigBuilder, consumer, producer,
};
pub use consumer::{
    ConsumerBatch, ConsumerConfig, ConsumerRecord, ConsumerStream, DeadLetterSink, MultiplePartitionConsumerStream,
    OffsetManagementStrategy, Record, RecordBytes, RecordStream,
};
pub use error::{FluvioError, ProducerError};
pub use fluvio_protocol::{
    Compression, ConnectorInfo, ConsumerOffset, ErrorPolicy, Lookback, ModuleKind, OffsetSpec, RecordFailure,
    SmartModuleContextData, SmartModuleExtraParams, SmartModuleInvocation, SmartModuleInvocationWasm, SmartModuleKind,
};
pub use partitioning::{
    PartitionCount, PartitionId, Partitioner, PartitionerConfig, SiphashRoundRobinPartitioner, SpecificPartitioner,
    partition_for_key,
};
pub use producer::{
    ClientMetrics, Isolation, ProduceCompletionBatchEvent, ProduceOutput, ProducerCallback, ProducerConfig,
    RecordCounter, RecordKey, RecordMetadata, SharedProducerCallback, TopicProducer,
};
pub use profile::{ConfigFile, FluvioClusterConfig, FluvioConfig, Profile, default_addr, fluvio_home};
pub use retry::{DeliverySemantic, RetryPolicy, RetryStrategy};
pub use security::{TlsConfig, TlsPolicy};

/// The name Fluvio code uses for a topic's producer.
pub type TopicProducerPool = TopicProducer;
#[cfg(feature = "smartengine")]
pub use smartmodule::{local_chain, local_engine};
