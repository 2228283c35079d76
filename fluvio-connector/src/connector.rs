//! What a connector is: a [`Source`] that yields records from another
//! system, or a [`Sink`] that writes records into one. The runtime
//! ([`crate::runtime`]) does the rest: SmartModules, batching, offsets,
//! retries, shutdown and metrics.

use std::future::Future;
use std::pin::Pin;

use fluvio_client::{ConsumerBatch, FluvioError};

use crate::config::ConfigError;

/// One record a source read.
#[derive(Debug)]
pub struct SourceRecord {
    /// The key, if the source gives one (the MQTT topic, for example).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Run once the cluster stored the record, or a transform dropped it.
    pub acknowledgement: Option<Acknowledgement>,
}

impl SourceRecord {
    /// A record with nothing to acknowledge.
    pub fn new(key: Option<Vec<u8>>, value: Vec<u8>) -> SourceRecord {
        SourceRecord { key, value, acknowledgement: None }
    }

    /// The same record, acknowledged to its system by `acknowledgement`
    /// once the cluster has it: a system that redelivers what was not
    /// acknowledged (an MQTT broker, a queue) then loses nothing even if the
    /// connector is killed.
    pub fn acknowledged_by(mut self, acknowledgement: Acknowledgement) -> SourceRecord {
        self.acknowledgement = Some(acknowledgement);
        self
    }
}

/// Work that tells the other system a record is safe: the runtime runs it
/// after the cluster acknowledged the record. Records are acknowledged in
/// the order they were read; a record that failed is never acknowledged.
pub struct Acknowledgement(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Acknowledgement {
    /// Acknowledges by running `work`.
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Acknowledgement {
        Acknowledgement(Box::pin(work))
    }

    pub(crate) async fn run(self) {
        self.0.await
    }
}

impl std::fmt::Debug for Acknowledgement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acknowledgement")
    }
}

/// Why a connector failed. [`ConnectorError::Transient`] failures are
/// retried with backoff; the others stop the connector.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A failure worth retrying: the other system is unreachable, busy, or
    /// dropped the connection.
    #[error("{system} is unavailable: {reason}")]
    Transient {
        /// What failed (`the MQTT broker at 127.0.0.1:1883`).
        system: String,
        /// Why.
        reason: String,
    },
    /// A failure retrying cannot fix: a record the other system refused
    /// under the `fail` policy, a table that does not exist, a bad URL.
    #[error("{0}")]
    Fatal(String),
    /// The Fluvio cluster refused or failed a request.
    #[error(transparent)]
    Fluvio(#[from] FluvioError),
    /// `meta.type` names no connector this runtime has.
    #[error("unknown connector type {0:?}; the built-in types are {types}", types = crate::built_in_types().join(", "))]
    UnknownType(String),
}

impl ConnectorError {
    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::Transient { .. } => true,
            ConnectorError::Fluvio(error) => {
                matches!(error, FluvioError::Connect { .. } | FluvioError::ConnectionLost { .. })
            }
            _ => false,
        }
    }
}

/// Reads records from another system. The runtime calls
/// [`connect`](Source::connect) first and again after a transient failure,
/// then [`next`](Source::next) for each record.
pub trait Source: Send {
    /// Connects to the other system.
    fn connect(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Waits for the next record; `Ok(None)` when the source has no more
    /// (most never end). The runtime may drop this future when it stops,
    /// so a record must not be acknowledged to its system before it is
    /// returned.
    fn next(&mut self) -> impl Future<Output = Result<Option<SourceRecord>, ConnectorError>> + Send;

    /// Called once at the end, after every record returned was sent and
    /// its acknowledgement run: send what is still queued for the other
    /// system and disconnect.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a sink reports for one written batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Records written.
    pub written: u64,
    /// Records the other system refused and the sink's error policy
    /// dropped (`skip`) or sent to a dead-letter topic (`dead-letter`).
    pub rejected: u64,
}

/// Where a sink's progress is kept: one committed offset per connector,
/// topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumeKey {
    /// The connector's name (`meta.name`).
    pub connector: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// Writes records into another system. The runtime calls
/// [`connect`](Sink::connect) first and again after a transient failure,
/// then [`write`](Sink::write) for each batch the server sends.
pub trait Sink: Send {
    /// Connects to the other system and returns the offset to resume from:
    /// the `next_offset` of the last batch this sink durably wrote for
    /// `key`, when it keeps one; `None` starts from the config's start.
    fn connect(&mut self, key: &ResumeKey) -> impl Future<Output = Result<Option<i64>, ConnectorError>> + Send;

    /// Durably writes one batch, and with it `batch.next_offset` as the
    /// place to resume from. On success, the batch must never be written
    /// again by a later `connect` and `write`; on failure, nothing of it
    /// may count as written.
    fn write(&mut self, batch: &ConsumerBatch) -> impl Future<Output = Result<WriteReport, ConnectorError>> + Send;
}
