//! The SDK: connect to a server, administer topics and SmartModules,
//! produce and consume records, and run SmartModules in this process.
//!
//! - [`Fluvio`] is a client of one server: admin calls, [`TopicProducer`]s
//!   (which batch records and can apply SmartModules before sending) and
//!   [`ConsumerStream`]s (which can have the server apply SmartModules before
//!   records cross the network).
//! - [`engine`] loads SmartModules into wasmer, checks them, caches compiled
//!   code, and runs chains of them under memory and CPU caps. Producers, the
//!   server and the CLI all run modules through it.
//! - [`batch`] builds and validates record batches in the one layout used on
//!   disk, on the wire and as SmartModule input; [`protocol`] frames them.
//!
//! This crate does not store records; the server does.
//!
//! ```no_run
//! use futures::StreamExt;
//! use fluvio_client::{ConsumerConfig, Fluvio, SmartModuleSpec};
//!
//! # async fn run() -> Result<(), fluvio_client::FluvioError> {
//! let fluvio = Fluvio::connect("127.0.0.1:9003").await?;
//! let config = ConsumerConfig::default()
//!     .smartmodule(SmartModuleSpec::path("target/wasm32-unknown-unknown/release/my_filter.wasm"));
//! let mut stream = fluvio.consumer_stream("my-topic", config).await?;
//! while let Some(record) = stream.next().await {
//!     println!("{}", String::from_utf8_lossy(&record?.value));
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod batch;
mod client;
mod consumer;
pub mod engine;
mod error;
mod producer;
pub mod protocol;
mod smartmodule;

pub use client::Fluvio;
pub use consumer::{ConsumerConfig, ConsumerRecord, ConsumerStream};
pub use error::FluvioError;
pub use fluvio_smartmodule::abi::SmartModuleKind;
pub use producer::{ProduceOutput, ProducerConfig, TopicProducer};
pub use protocol::OffsetSpec;
pub use smartmodule::{SmartModuleSource, SmartModuleSpec, local_engine};
