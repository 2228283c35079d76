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

pub mod config;
mod connector;
pub mod http;
pub mod mqtt;
pub mod runtime;
pub mod sql;

pub use connector::{ConnectorError, ResumeKey, Sink, Source, SourceRecord, WriteReport};

use config::ConnectorConfig;
use runtime::RunOptions;

/// The connector types this runtime has built in.
pub const BUILT_IN_TYPES: &[&str] = &["mqtt-source", "http-source", "sql-sink", "http-sink"];

/// Checks everything about a config that can be checked without running
/// it: the common part was checked when it was read; this reads the type's
/// own section.
pub fn check(config: &ConnectorConfig) -> Result<(), ConnectorError> {
    match config.kind.as_str() {
        "mqtt-source" => mqtt::MqttSource::from_config(config).map(drop)?,
        "http-source" => http::HttpSource::from_config(config).map(drop)?,
        "sql-sink" => sql::SqlSink::from_config(config, "").map(drop)?,
        "http-sink" => http::HttpSink::from_config(config).map(drop)?,
        other => return Err(ConnectorError::UnknownType(other.to_string())),
    }
    Ok(())
}

/// Runs the connector a config names until it ends, fails, or
/// `options.shutdown` turns on.
pub async fn run(config: &ConnectorConfig, options: RunOptions) -> Result<(), ConnectorError> {
    match config.kind.as_str() {
        "mqtt-source" => {
            let source = mqtt::MqttSource::from_config(config)?;
            runtime::run_source(config, source, options).await?;
        }
        "http-source" => {
            let source = http::HttpSource::from_config(config)?;
            runtime::run_source(config, source, options).await?;
        }
        "sql-sink" => {
            let sink = sql::SqlSink::from_config(config, &options.addr)?;
            runtime::run_sink(config, sink, options).await?;
        }
        "http-sink" => {
            let sink = http::HttpSink::from_config(config)?;
            runtime::run_sink(config, sink, options).await?;
        }
        other => return Err(ConnectorError::UnknownType(other.to_string())),
    }
    Ok(())
}
