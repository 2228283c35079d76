//! Source and sink connectors: the two places, besides producers, consumers
//! and the CLI, where SmartModules run.
//!
//! A **source** ([`Source`]) reads records from another system and runs the
//! connector's transforms in its own process before sending, like a
//! producer. A **sink** ([`Sink`]) writes records into another system; its
//! transforms travel with its stream and run on the server, so records a
//! filter drops never cross the network to it.
//!
//! This crate owns the connector traits, the runtime around them
//! ([`runtime`]: retries with backoff, clean shutdown, resume from a sink's
//! committed offset, metrics), the configuration in Fluvio's connector
//! format ([`config`]) and the built-in connectors ([`mqtt`], [`http`], [`sql`]). It
//! talks to the cluster only through the SDK, and knows nothing of storage.
//!
//! ```no_run
//! # async fn run() -> Result<(), fluvio_connector::ConnectorError> {
//! use fluvio_connector::config::{ConnectorConfig, Secrets};
//! use fluvio_connector::runtime::{RunOptions, shutdown_on_signals};
//!
//! let config = ConnectorConfig::from_file("sql-sink.yaml".as_ref(), &Secrets::from_env())?;
//! let options = RunOptions::new("127.0.0.1:9003", shutdown_on_signals());
//! fluvio_connector::run(&config, options).await?;
//! # Ok(()) }
//! ```

pub mod app;
pub mod config;
mod connector;
pub mod egress;
pub mod exposition;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod runtime;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "sql")]
pub mod sql_tls;

pub use connector::{Acknowledgement, ConnectorError, ResumeKey, Sink, Source, SourceRecord, WriteReport};
/// What a sink receives: batches of records, with the position after each.
pub use fluvio_client::{ConsumerBatch, ConsumerRecord};

use config::ConnectorConfig;
use runtime::RunOptions;

/// The connector types built in (with the crate's default features).
pub fn built_in_types() -> Vec<&'static str> {
    let mut types = Vec::new();
    if cfg!(feature = "mqtt") {
        types.push("mqtt-source");
    }
    if cfg!(feature = "http") {
        types.extend(["http-source", "http-sink"]);
    }
    if cfg!(feature = "sql") {
        types.push("sql-sink");
    }
    types
}

/// Checks everything about a config that can be checked without running
/// it: the common part was checked when it was read; this reads the type's
/// own section.
pub fn check(config: &ConnectorConfig) -> Result<(), ConnectorError> {
    match config.kind.as_str() {
        #[cfg(feature = "mqtt")]
        "mqtt-source" => Ok(mqtt::MqttSource::from_config(config).map(drop)?),
        #[cfg(feature = "http")]
        "http-source" => Ok(http::HttpSource::from_config(config).map(drop)?),
        #[cfg(feature = "sql")]
        "sql-sink" => Ok(sql::SqlSink::from_config(config, "").map(drop)?),
        #[cfg(feature = "http")]
        "http-sink" => Ok(http::HttpSink::from_config(config).map(drop)?),
        other => Err(ConnectorError::UnknownType(other.to_string())),
    }
}

/// Runs the connector a config names until it ends, fails, or
/// `options.shutdown` turns on.
#[cfg_attr(not(any(feature = "mqtt", feature = "sql", feature = "http")), allow(unused_variables))]
pub async fn run(config: &ConnectorConfig, options: RunOptions) -> Result<(), ConnectorError> {
    match config.kind.as_str() {
        #[cfg(feature = "mqtt")]
        "mqtt-source" => runtime::run_source(config, mqtt::MqttSource::from_config(config)?, options).await.map(drop),
        #[cfg(feature = "http")]
        "http-source" => runtime::run_source(config, http::HttpSource::from_config(config)?, options).await.map(drop),
        #[cfg(feature = "sql")]
        "sql-sink" => {
            let addr = options.addr.clone();
            let make = || Ok(sql::SqlSink::from_config(config, &addr)?);
            runtime::run_sink(config, make, options).await.map(drop)
        }
        #[cfg(feature = "http")]
        "http-sink" => {
            let make = || Ok(http::HttpSink::from_config(config)?);
            runtime::run_sink(config, make, options).await.map(drop)
        }
        other => Err(ConnectorError::UnknownType(other.to_string())),
    }
}
